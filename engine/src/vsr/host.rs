//! What every host of a replica does with its journal, written once for the simulator and the
//! node: queue the replica's journal actions in order, hand them to the journal at the disk's
//! pace, and report durability back to the replica as inputs.

use std::collections::VecDeque;

use super::replica::{Action, Input, Recovered};
use crate::disk::VirtualDisk;
use crate::ids::{Op, View};
use crate::log::{CheckpointRef, Journal, JournalError, RecoveryReport};

/// A replica's journal with the queue of work the replica asked for.
#[derive(Debug)]
pub struct JournalHost<D: VirtualDisk> {
    journal: Journal<D>,
    /// The replica's journal actions (appends, repairs, truncations, view state), in order.
    queue: VecDeque<Action>,
    reported_durable: Op,
    reported_view: (View, View),
    /// The checkpoint reference last reported: a rewrite of the same checkpoint (a damaged copy
    /// replaced by one fetched from a peer) lands in the other copy, and is reported too.
    reported_checkpoint: Option<CheckpointRef>,
}

impl<D: VirtualDisk> JournalHost<D> {
    /// Wraps an opened journal; durability already on disk counts as reported (the replica
    /// recovered from it).
    #[must_use]
    pub fn new(journal: Journal<D>) -> JournalHost<D> {
        let superblock = *journal.superblock();
        JournalHost {
            reported_durable: journal.head().op,
            reported_view: (superblock.view, superblock.log_view),
            reported_checkpoint: superblock.checkpoint,
            journal,
            queue: VecDeque::new(),
        }
    }

    /// Queues the journal work among `actions`, in order; other actions are the caller's.
    pub fn enqueue(&mut self, actions: &[Action]) {
        let journal_work = actions.iter().filter(|action| {
            matches!(
                action,
                Action::Append { .. }
                    | Action::Repair { .. }
                    | Action::Truncate { .. }
                    | Action::PersistView { .. }
                    | Action::WriteCheckpoint { .. }
                    | Action::InstallCheckpoint { .. }
            )
        });
        self.queue.extend(journal_work.cloned());
    }

    /// Collects finished I/O, hands queued work to the journal until it pushes back, flushes,
    /// and appends the durability the replica has not heard of yet to `inputs`.
    ///
    /// Durability is measured before the new work is submitted, so that work stays in flight
    /// until the next call (which is what lets the simulator crash in between).
    pub fn run(&mut self, inputs: &mut Vec<Input>) -> Result<(), JournalError> {
        let journal = &mut self.journal;
        journal.poll()?;
        let durable = journal.durable_op();
        let durable_checksum = journal.header(durable).map(|h| h.checksum);
        let superblock = *journal.superblock();
        while let Some(op) = self.queue.front() {
            let result = match op {
                Action::Append { header, body } => journal.append_entry(header, body),
                Action::Repair { header, body } => match journal.repair(header, body) {
                    // The entry was truncated or overwritten since: nothing left to repair.
                    Err(JournalError::ChainMismatch { .. }) => Ok(()),
                    other => other,
                },
                Action::Truncate { after } => journal.truncate_after(*after),
                Action::PersistView {
                    view,
                    log_view,
                    commit,
                    recovering_head,
                } => journal.write_superblock(*view, *log_view, *commit, *recovering_head),
                Action::WriteCheckpoint {
                    header,
                    checksum,
                    bytes,
                } => journal.write_checkpoint(header, *checksum, bytes),
                Action::InstallCheckpoint {
                    header,
                    checksum,
                    bytes,
                } => journal.install_checkpoint(header, *checksum, bytes),
                // `enqueue` keeps only journal work.
                Action::Send { .. }
                | Action::Executed { .. }
                | Action::Applied { .. }
                | Action::Attempt { .. }
                | Action::Outboxed { .. }
                | Action::Restored { .. } => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.queue.pop_front();
                }
                Err(JournalError::Backpressure { .. }) => break,
                Err(other) => return Err(other),
            }
        }
        journal.flush()?;
        if durable != self.reported_durable {
            self.reported_durable = durable;
            if let Some(checksum) = durable_checksum {
                inputs.push(Input::Durable {
                    op: durable,
                    checksum,
                });
            }
        }
        let view_state = (superblock.view, superblock.log_view);
        if view_state != self.reported_view {
            self.reported_view = view_state;
            inputs.push(Input::ViewDurable {
                view: view_state.0,
                log_view: view_state.1,
            });
        }
        if superblock.checkpoint != self.reported_checkpoint {
            self.reported_checkpoint = superblock.checkpoint;
            if let Some(checkpoint) = superblock.checkpoint {
                inputs.push(Input::CheckpointDurable {
                    op: checkpoint.header.op,
                    checksum: checkpoint.header.checksum,
                });
            }
        }
        Ok(())
    }

    /// Hands the disk any I/O the journal queued, collects what finished, and says whether
    /// there is durability the replica has not heard of (then [`JournalHost::run`] reports it).
    pub fn poll(&mut self) -> Result<bool, JournalError> {
        self.journal.poll()?;
        let superblock = self.journal.superblock();
        Ok(self.journal.durable_op() != self.reported_durable
            || (superblock.view, superblock.log_view) != self.reported_view
            || superblock.checkpoint != self.reported_checkpoint)
    }

    /// Journal work queued and not yet handed to the journal.
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued and no I/O is in flight.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.journal.is_idle()
    }

    #[must_use]
    pub fn journal(&self) -> &Journal<D> {
        &self.journal
    }

    pub fn journal_mut(&mut self) -> &mut Journal<D> {
        &mut self.journal
    }

    /// The journal; queued work is forgotten (as a crash forgets it).
    #[must_use]
    pub fn into_journal(self) -> Journal<D> {
        self.journal
    }
}

/// Reads everything a replica recovers from: the superblock, the durable checkpoint and every
/// entry after it (or from the oldest op without one) to the head. Entries recovery found faulty come without a body (and without a header where
/// both witnesses were lost); the replica repairs them from its peers.
pub fn recovered<D: VirtualDisk>(
    journal: &mut Journal<D>,
    report: &RecoveryReport,
) -> Result<Recovered, JournalError> {
    let head = journal.head().op;
    let mut entries = Vec::with_capacity(usize::try_from(head.0).unwrap_or(0) + 1);
    for op in journal.op_min().0..=head.0 {
        let header = journal.header(Op(op));
        let body = match journal.read(Op(op)) {
            Ok(entry) => Some(entry.body),
            Err(JournalError::Faulty { .. } | JournalError::ReadFailed { .. }) => None,
            Err(other) => return Err(other),
        };
        entries.push((header, body));
    }
    Ok(Recovered {
        superblock: *journal.superblock(),
        checkpoint: journal.read_checkpoint()?,
        entries,
        head_uncertain: report.analysis.head_uncertain(),
    })
}
