//! One replica of one shard's VSR group, as a pure state machine.
//!
//! [`Replica::step`] takes one [`Input`] and appends [`Action`]s for the host to carry out in
//! order. The replica never waits for the disk: it asks for writes ([`Action::Append`],
//! [`Action::PersistView`]) and learns of their durability later ([`Input::Durable`],
//! [`Input::ViewDurable`]). Anything that depends on durable state (a `prepare_ok`, a
//! `do_view_change`, a `start_view`) is sent only after that input arrives, so the control
//! plane keeps running while a disk is slow. `docs/internals/vsr.md` describes the protocol.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::batch;
use super::checkpoint::{Checkpoint, CheckpointState};
use super::message::{Body, Endpoint, Envelope, Message, ReplyError, Request, RequestKind};
use super::outbox::{Change, EffectPolicy, KernelEvent, Outbox};
use super::sessions::{Sessions, Verdict};
use crate::app::{ApplyContext, ChrApplication, EffectId, Event, SideEffect};
use crate::checksum::Checksum;
use crate::constants::{
    CHECKPOINT_CHUNKS_IN_FLIGHT_MAX, CHECKPOINT_SIZE_MAX, CHECKPOINTS_SERVED_MAX, HEADER_SIZE,
    PIPELINE_MAX, REORDER_MAX, REPAIR_REQUESTS_MAX, VIEW_HEADERS_MAX,
};
use crate::ids::{
    ClientId, ClusterId, CommitIndex, Op, ReplicaIndex, RequestNumber, ShardId, Timestamp, View,
};
use crate::log::{EntryMeta, Header, HeaderState, Operation, Superblock};

/// The operation of a prepare holding a batch of client requests.
pub const OPERATION_BATCH: Operation = Operation(3);

/// The client id of the kernel's own requests (effect outcomes, timer firings). No client may
/// register it.
pub const KERNEL_CLIENT: ClientId = ClientId(0);

/// Bugs that can be switched on to prove the simulator catches them. Never set outside tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum PlantedBug {
    /// The new primary picks the longest log instead of the highest log view.
    LongestLog,
    /// A backup acknowledges a prepare before it is durable.
    PrepareOkBeforeDurable,
    /// A backup executes with its own clock instead of the primary's timestamp.
    BackupClockTimestamps,
    /// The new primary keeps its own log and ignores the suffixes it received.
    IgnoreViewChangeLogs,
    /// Effects are attempted by whoever was primary of its log view, durable view or not: a
    /// deposed primary keeps executing during a view change.
    UnfencedEffects,
    /// A new primary attempts only effects recorded in its own view, forgetting the pending
    /// work it inherited.
    ForgetInheritedEffects,
    /// A replica restoring a checkpoint keeps the application's genesis state instead of the
    /// snapshot (after the checkpoint was verified).
    RestoreGenesis,
}

/// Timeouts, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The primary's commit heartbeat period.
    pub heartbeat: u64,
    /// A backup that hears nothing from its primary for this long starts a view change.
    pub normal: u64,
    /// A view change that has not completed after this long moves to the next view.
    pub view_change: u64,
    /// Period of retransmitting prepares, view-change messages and repair requests.
    pub retransmit: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            heartbeat: 5,
            normal: 50,
            view_change: 60,
            retransmit: 10,
        }
    }
}

/// A replica's fixed configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub cluster: ClusterId,
    pub shard: ShardId,
    pub replica: ReplicaIndex,
    pub replica_count: u8,
    pub sessions_max: usize,
    /// Largest prepare body: the journal's slot size less the header.
    pub body_max: usize,
    /// Client requests batched into one prepare at most (normally
    /// [`BATCH_REQUESTS_MAX`](crate::constants::BATCH_REQUESTS_MAX)).
    pub batch_requests_max: usize,
    /// Client requests the primary queues while its pipeline is full (normally
    /// [`REQUEST_QUEUE_MAX`](crate::constants::REQUEST_QUEUE_MAX)); beyond it requests are
    /// dropped and clients retry.
    pub request_queue_max: usize,
    pub timeouts: Timeouts,
    /// How effects are retried; every replica of a group must use the same policy.
    pub effects: EffectPolicy,
    /// A checkpoint is taken once this many ops have executed since the previous one.
    pub checkpoint_interval: u64,
    /// Ops the log may hold beyond the durable checkpoint: the journal's guaranteed window,
    /// [`LogConfig::ops_beyond_checkpoint_max`](crate::log::LogConfig::ops_beyond_checkpoint_max).
    /// Appending stops there until the next checkpoint is durable.
    pub log_ops_max: u64,
    /// Emit [`Action::Applied`] for every request applied (for the simulator's exactly-once
    /// checker; off in production).
    pub record_applied: bool,
    #[doc(hidden)]
    pub bug: Option<PlantedBug>,
}

impl ReplicaConfig {
    /// The largest checkpoint interval a log window of `log_ops_max` ops allows: room for two
    /// intervals (one checkpoint being written while the next comes due) and a full pipeline.
    /// Zero when the window is too small for checkpoints at all.
    #[must_use]
    pub fn checkpoint_interval_max(log_ops_max: u64) -> u64 {
        log_ops_max.saturating_sub(PIPELINE_MAX as u64) / 2
    }
}

/// What happens to a replica.
// Inputs are built and consumed once per step, never stored in bulk: boxing the message would
// only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// Time passed; `now` is this replica's clock reading.
    Tick {
        now: Timestamp,
    },
    Message(Envelope),
    /// The journal holds every op up to `op` durably; `checksum` names the op, so a report
    /// about a log that has since been truncated is ignored.
    Durable {
        op: Op,
        checksum: Checksum,
    },
    /// The superblock holds this view state durably.
    ViewDurable {
        view: View,
        log_view: View,
    },
    /// The host finished an attempt of an effect it was asked to make by
    /// [`Action::Attempt`]: `Ok` with the receiver's response, or `Err` with why it failed.
    EffectResult {
        id: EffectId,
        view: View,
        attempt: u32,
        result: Result<Vec<u8>, String>,
    },
    /// The superblock names this checkpoint durably: the log before its op may be reclaimed.
    CheckpointDurable {
        op: Op,
        checksum: Checksum,
    },
}

/// What the host must do, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Append this entry to the journal (after the head) and flush it.
    Append {
        header: Header,
        body: Body,
    },
    /// Erase every journal entry after `after`.
    Truncate {
        after: Op,
    },
    /// Write the view state to the superblock.
    PersistView {
        view: View,
        log_view: View,
        commit: CommitIndex,
        /// [`Superblock::recovering_head`]: the log may lack ops this replica acknowledged.
        recovering_head: bool,
    },
    Send {
        to: Endpoint,
        envelope: Envelope,
    },
    /// `op` was executed; the running state hash after it.
    Executed {
        op: Op,
        state_hash: Checksum,
    },
    /// Rewrite a faulty journal entry with this body, fetched from a peer.
    Repair {
        header: Header,
        body: Body,
    },
    /// A client request was applied to the application (only with `record_applied`).
    Applied {
        client: ClientId,
        request: RequestNumber,
        op: Op,
    },
    /// Write this checkpoint (taken after executing the op of `header`) to the checkpoint zone
    /// and name it in the superblock; report [`Input::CheckpointDurable`] when done.
    WriteCheckpoint {
        header: Header,
        checksum: Checksum,
        bytes: Body,
    },
    /// Install this checkpoint, fetched from a peer: write it as `WriteCheckpoint` does, and
    /// make the journal's log follow it (erasing every entry after its op unless the journal
    /// holds its op with the same checksum).
    InstallCheckpoint {
        header: Header,
        checksum: Checksum,
        bytes: Body,
    },
    /// The state after `op` was restored from a verified checkpoint (at a restart or by state
    /// transfer) instead of by executing; the running state hash after it.
    Restored {
        op: Op,
        state_hash: Checksum,
    },
    /// Carry out attempt `attempt` of an effect, as the primary of `view` (the fencing token),
    /// and report with [`Input::EffectResult`]. Only a primary holding a durable view asks.
    Attempt {
        id: EffectId,
        view: View,
        attempt: u32,
        effect: SideEffect,
    },
    /// The outbox changed at `op` (only with `record_applied`, for the simulator's checkers).
    Outboxed {
        op: Op,
        id: EffectId,
        event: Outboxed,
    },
}

/// What [`Action::Outboxed`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outboxed {
    /// `apply` returned this effect (a timer too).
    Recorded(SideEffect),
    Completed,
    DeadLettered,
    TimerFired,
    /// A dead letter went back to pending on a client's retry.
    Revived,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    ViewChange,
    /// Restarted with a log that may lack ops it acknowledged (recovery lost both witnesses
    /// of an entry): it votes in no view change and waits for a view's log from a primary.
    RecoveringHead,
}

#[derive(Clone, Debug)]
struct Prepare {
    header: Header,
    body: Body,
}

/// A log position: the header is always known; the body may be missing after a restart found
/// the entry faulty on disk, until a peer repairs it.
#[derive(Clone, Debug)]
struct Entry {
    header: Header,
    body: Option<Body>,
}

#[derive(Clone, Debug)]
struct DoViewChange {
    log_view: View,
    op: Op,
    commit: Op,
    /// The sender's newest headers, contiguous and ending at `op`.
    headers: Vec<Header>,
    /// Ops among `headers` whose bodies the sender lost (sorted).
    faulty: Vec<Op>,
}

impl DoViewChange {
    /// True if the sender holds `(op, checksum)` with its body.
    fn holds_intact(&self, op: Op, checksum: Checksum) -> bool {
        self.header_at(op).is_some_and(|h| h.checksum == checksum)
            && self.faulty.binary_search(&op).is_err()
    }

    /// True if the sender says it does not hold `(op, checksum)`: its log ends before `op`, or
    /// holds another entry there that it has not lost. Such a replica never acknowledged that
    /// entry in a view that committed it (committed entries stay in every later view's log),
    /// so it counts towards PAR's nack quorum. A replica never nacks an entry it holds as
    /// faulty, and says nothing of ops older than the headers it sent.
    fn nacks(&self, op: Op, checksum: Checksum) -> bool {
        if op > self.op {
            return true;
        }
        self.faulty.binary_search(&op).is_err()
            && self.header_at(op).is_some_and(|h| h.checksum != checksum)
    }

    fn header_at(&self, op: Op) -> Option<&Header> {
        let first = self.headers.first()?.op;
        let index = usize::try_from(op.0.checked_sub(first.0)?).ok()?;
        self.headers.get(index).filter(|h| h.op == op)
    }
}

/// Counters for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    pub dropped_foreign: u64,
    pub dropped_corrupt: u64,
    pub view_changes: u64,
    pub ops_executed: u64,
    /// Uncommitted ops a new primary dropped on a nack quorum (PAR) because no replica it
    /// heard from still held them.
    pub ops_nacked: u64,
    /// Restarts that found the log may lack acknowledged ops.
    pub recovering_head: u64,
    /// Effect attempts this replica started as primary.
    pub effect_attempts: u64,
    /// Kernel events (timers, effect outcomes) the application answered with an error: its
    /// state change was dropped, alike on every replica. Non-zero usually means an application
    /// bug.
    pub kernel_events_rejected: u64,
    /// Checkpoints taken (and asked to be written).
    pub checkpoints_taken: u64,
    /// Checkpoints installed from a peer.
    pub state_transfers: u64,
    /// Restarts that restored their state from their own durable checkpoint.
    pub checkpoints_restored: u64,
    /// Checkpoints received from a peer and refused by verification.
    pub checkpoints_refused: u64,
}

/// Why a replica cannot start from its journal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    #[error(
        "the journal holds no checkpoint and no longer holds op 1 (it starts at op {op_min}): \
         the log was written without checkpoints; reformat this replica and let it catch up by \
         state transfer"
    )]
    LogWrapped { op_min: Op },
    #[error("the journal's op {op} is faulty; it must be repaired before the replica can start")]
    Faulty { op: Op },
}

/// One replica of a shard.
#[derive(Debug)]
pub struct Replica<A: ChrApplication> {
    config: ReplicaConfig,
    app: A,
    state: A::State,
    status: Status,
    view: View,
    log_view: View,
    view_durable: View,
    log_view_durable: View,
    /// The log from its base: `log[i]` holds op `base + i`, where the base (`log[0]`) is the
    /// root or the op of the durable checkpoint, whose body may be absent. Ops before the base
    /// were reclaimed.
    log: Vec<Entry>,
    commit_max: Op,
    commit_min: Op,
    durable: Op,
    prepare_ok_sent: Option<Op>,
    reorder: BTreeMap<Op, Prepare>,
    /// Checksums the log must reach, learned from a view change: repairs are checked by them.
    target: BTreeMap<Op, Checksum>,
    acked: Vec<Op>,
    requests: VecDeque<Request>,
    requests_pending: BTreeSet<(ClientId, RequestNumber)>,
    start_view_change_from: BTreeSet<u8>,
    do_view_change_from: BTreeMap<u8, DoViewChange>,
    /// The new primary has chosen its log and waits for it to be complete and durable.
    view_log_chosen: bool,
    /// The log may lack ops this replica acknowledged: it sends no `do_view_change` until its
    /// log view advances (persisted as [`Superblock::recovering_head`]).
    recovering_head: bool,
    /// A backup installing a view's log must reach this op before its log view advances.
    view_log_end: Option<Op>,
    tick: u64,
    primary_contact_tick: u64,
    view_change_tick: u64,
    heartbeat_tick: u64,
    retransmit_tick: u64,
    clock: Timestamp,
    sessions: Sessions,
    state_hash: Checksum,
    stats: ReplicaStats,
    /// `Action::Applied` records waiting to be moved into the caller's actions.
    applied: Vec<Action>,
    /// The newest checkpoints taken or installed (oldest first), kept to serve state transfers.
    checkpoints: VecDeque<Checkpoint>,
    /// The op of the newest durable checkpoint (op 0, the root, before the first).
    checkpoint_durable: Op,
    /// A checkpoint asked to be written and not yet durable.
    checkpoint_writing: Option<Op>,
    /// The application state and sessions are not held: this replica restarted and its
    /// checkpoint copy was damaged. It executes nothing until it installs a checkpoint.
    state_missing: bool,
    /// A state transfer in progress.
    transfer: Option<Transfer>,
    /// Headers of the newest ops reclaimed behind the checkpoint (at most `VIEW_HEADERS_MAX`,
    /// oldest first, ending just before the log's base): view-change messages still carry them,
    /// so a replica somewhat behind the checkpoint connects its log to the view's and catches
    /// up by state transfer without dropping what it holds.
    reclaimed: VecDeque<Header>,
    /// Replicated: the side effects applications asked for.
    outbox: Outbox,
    /// Not replicated: this primary's attempts and kernel proposals in flight.
    executor: Executor,
}

/// What a primary is doing about the outbox right now. Nothing here survives a view change: a
/// new primary starts from the committed outbox alone.
#[derive(Debug, Default)]
struct Executor {
    /// The view these attempts belong to.
    view: View,
    /// Attempts made and not yet settled by a committed outcome.
    attempts: BTreeMap<EffectId, Attempt>,
    /// Timers whose `Fire` this primary proposed, with the tick it did.
    fires: BTreeMap<EffectId, u64>,
    /// The last op of earlier views in this view's log. Until it is executed, the outbox may
    /// lack outcomes that are already decided, and attempting from it would repeat work (or
    /// report a success after the effect was dead-lettered).
    inherited: Op,
}

#[derive(Debug)]
struct Attempt {
    number: u32,
    /// The host's report, once it arrives; proposed (again) until its outcome commits.
    result: Option<Result<Vec<u8>, String>>,
    proposed_tick: u64,
}

impl Executor {
    /// A kernel event committed: the attempt or timer proposal it settles is done.
    fn settle(&mut self, event: &KernelEvent) {
        match event {
            KernelEvent::Outcome {
                id,
                attempt,
                result,
                ..
            } => {
                if self
                    .attempts
                    .get(id)
                    .is_some_and(|a| a.number == *attempt || result.is_ok())
                {
                    self.attempts.remove(id);
                }
            }
            KernelEvent::Fire { id } => {
                self.fires.remove(id);
            }
            KernelEvent::Retry { .. } => {}
        }
    }
}

/// A checkpoint being received in chunks.
#[derive(Clone, Debug)]
struct Transfer {
    header: Header,
    checksum: Checksum,
    bytes: Vec<u8>,
    /// Per chunk of `chunk_size` bytes, whether it arrived.
    received: Vec<bool>,
    chunk_size: usize,
    /// Request rounds without a new chunk; the transfer is abandoned after a few.
    idle_rounds: u32,
}

/// Request rounds a state transfer may go without progress before it is abandoned (its
/// checkpoint may have been replaced on every peer).
const TRANSFER_IDLE_ROUNDS_MAX: u32 = 5;

/// Everything recovered from a journal that the replica starts from.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub superblock: Superblock,
    /// The durable checkpoint's bytes, verified against the superblock's checksum: `None` when
    /// there is none, or when it was damaged (then the replica fetches one from a peer).
    pub checkpoint: Option<Vec<u8>>,
    /// Every entry after the checkpoint's op (or from op 0 without one) to the head, in order.
    /// A body is `None` for an entry the journal holds as faulty; the replica fetches it from a
    /// peer by the header's checksum. A header is `None` where recovery lost both witnesses of
    /// the entry: the replica drops the log from there and recovers its head from a primary.
    pub entries: Vec<(Option<Header>, Option<Vec<u8>>)>,
    /// Recovery could not vouch that the log holds every op it acknowledged
    /// ([`Analysis::head_uncertain`](crate::log::Analysis::head_uncertain)).
    pub head_uncertain: bool,
}

impl<A: ChrApplication> Replica<A> {
    /// A replica starting from a freshly formatted journal.
    pub fn new(config: ReplicaConfig, app: A) -> Replica<A> {
        let root = Header::root(config.cluster, config.shard);
        let state = app.genesis();
        let replica = Replica {
            config,
            app,
            state,
            status: Status::Normal,
            view: View(0),
            log_view: View(0),
            view_durable: View(0),
            log_view_durable: View(0),
            log: vec![Entry {
                header: root,
                body: Some(Body::from(Vec::new())),
            }],
            commit_max: Op(0),
            commit_min: Op(0),
            durable: Op(0),
            prepare_ok_sent: None,
            reorder: BTreeMap::new(),
            target: BTreeMap::new(),
            acked: vec![Op(0); usize::from(config.replica_count)],
            requests: VecDeque::new(),
            requests_pending: BTreeSet::new(),
            start_view_change_from: BTreeSet::new(),
            do_view_change_from: BTreeMap::new(),
            view_log_chosen: false,
            recovering_head: false,
            view_log_end: None,
            tick: 0,
            primary_contact_tick: 0,
            view_change_tick: 0,
            heartbeat_tick: 0,
            retransmit_tick: 0,
            clock: Timestamp(0),
            sessions: Sessions::new(config.sessions_max),
            state_hash: Checksum::ZERO,
            stats: ReplicaStats::default(),
            applied: Vec::new(),
            outbox: Outbox::default(),
            executor: Executor::default(),
            checkpoints: VecDeque::new(),
            checkpoint_durable: Op(0),
            checkpoint_writing: None,
            state_missing: false,
            transfer: None,
            reclaimed: VecDeque::new(),
        };
        assert!(config.checkpoint_interval > 0, "checkpoint interval of 0");
        assert!(
            2 * config.checkpoint_interval + PIPELINE_MAX as u64 <= config.log_ops_max,
            "checkpoint interval {} too large for a log window of {} ops",
            config.checkpoint_interval,
            config.log_ops_max
        );
        replica.check_invariants();
        replica
    }

    /// A replica restarting from what its journal recovered. A replica that was primary of
    /// its durable view starts a view change: its pipeline was lost with the process, and
    /// reusing op numbers in the same view would fork the log.
    pub fn recover(
        config: ReplicaConfig,
        app: A,
        recovered: Recovered,
        actions: &mut Vec<Action>,
    ) -> Result<Replica<A>, RecoverError> {
        let mut replica = Replica::new(config, app);
        let superblock = recovered.superblock;
        let mut entries = recovered.entries.into_iter();
        if let Some(checkpoint) = superblock.checkpoint {
            replica.recover_checkpoint(checkpoint.header, recovered.checkpoint, actions);
        } else {
            match entries.next() {
                Some((Some(root), body)) if root.op == Op(0) => {
                    assert_eq!(root, replica.log[0].header);
                    if body.is_none() {
                        // The root's body is empty and known to all: repair it at once.
                        actions.push(Action::Repair {
                            header: root,
                            body: Body::from(Vec::new()),
                        });
                    }
                }
                Some((Some(first), _)) => {
                    return Err(RecoverError::LogWrapped { op_min: first.op });
                }
                Some((None, _)) | None => return Err(RecoverError::LogWrapped { op_min: Op(0) }),
            }
        }
        let mut lost = recovered.head_uncertain || superblock.recovering_head;
        let mut dropped = false;
        for (header, body) in entries {
            let next = header
                .filter(|h| h.op == replica.op().next() && h.parent == replica.head().checksum);
            let Some(header) = next else {
                // Both witnesses of this entry were lost (or the chain breaks here): what
                // follows cannot be trusted, and what was lost may have been acknowledged.
                lost = true;
                dropped = true;
                break;
            };
            replica.log.push(Entry {
                header,
                body: body.map(Body::from),
            });
        }
        replica.view = superblock.view;
        replica.log_view = superblock.log_view;
        replica.view_durable = superblock.view;
        replica.log_view_durable = superblock.log_view;
        replica.durable = replica.op();
        replica.commit_max = superblock
            .commit
            .0
            .unwrap_or(Op(0))
            .max(replica.commit_min)
            .min(replica.op());
        // Replaying committed ops must not reply to clients as a primary would.
        replica.status = Status::ViewChange;
        replica.execute_committed(actions);
        replica.status = Status::Normal;
        if lost {
            replica.status = Status::RecoveringHead;
            replica.recovering_head = true;
            replica.stats.recovering_head += 1;
            // The mark is durable before the log is cut, so a crash in between cannot leave a
            // short log that looks complete for its log view.
            if !superblock.recovering_head {
                replica.persist_view(replica.view, replica.log_view, actions);
            }
            if dropped {
                actions.push(Action::Truncate {
                    after: replica.op(),
                });
            }
            replica.check_invariants();
            return Ok(replica);
        }
        if replica.log_view < replica.view {
            replica.status = Status::ViewChange;
        }
        if replica.is_primary_of(replica.view) {
            replica.start_view_change(replica.view.next(), actions);
        }
        replica.check_invariants();
        Ok(replica)
    }

    #[must_use]
    pub fn view(&self) -> View {
        self.view
    }

    #[must_use]
    pub fn log_view(&self) -> View {
        self.log_view
    }

    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }

    #[must_use]
    pub fn op(&self) -> Op {
        self.head().op
    }

    #[must_use]
    pub fn commit_max(&self) -> Op {
        self.commit_max
    }

    #[must_use]
    pub fn commit_min(&self) -> Op {
        self.commit_min
    }

    #[must_use]
    pub fn state_hash(&self) -> Checksum {
        self.state_hash
    }

    #[must_use]
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }

    #[must_use]
    pub fn state(&self) -> &A::State {
        &self.state
    }

    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Answers a read from this replica's state as it stands, without the log: a stale read.
    /// A backup may lag its primary, and a primary may have been deposed without knowing it,
    /// so only a caller that opted in to stale reads may use this; linearizable reads go
    /// through the log.
    ///
    /// # Errors
    /// The application's, for a query it cannot answer.
    pub fn query(&self, query: &[u8]) -> Result<Vec<u8>, A::Error> {
        self.app.query(&self.state, query)
    }

    #[must_use]
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    #[must_use]
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The header at `op`, if the log holds it.
    #[must_use]
    pub fn header(&self, op: Op) -> Option<&Header> {
        self.entry(op).map(|p| &p.header)
    }

    /// The body at `op`, if the log holds it.
    #[must_use]
    pub fn body(&self, op: Op) -> Option<&[u8]> {
        self.entry(op).and_then(|p| p.body.as_deref())
    }

    /// The oldest op the log holds: the durable checkpoint's op (or the root).
    #[must_use]
    pub fn log_base(&self) -> Op {
        self.log[0].header.op
    }

    /// The newest checkpoint this replica took or installed.
    #[must_use]
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.back()
    }

    /// The op of the newest durable checkpoint.
    #[must_use]
    pub fn checkpoint_durable(&self) -> Op {
        self.checkpoint_durable
    }

    /// True while the state is not held (a damaged checkpoint at restart) and execution waits
    /// for a state transfer.
    #[must_use]
    pub fn state_missing(&self) -> bool {
        self.state_missing
    }

    fn entry(&self, op: Op) -> Option<&Entry> {
        let index = op.0.checked_sub(self.log_base().0)?;
        self.log.get(usize::try_from(index).ok()?)
    }

    fn entry_mut(&mut self, op: Op) -> Option<&mut Entry> {
        let index = op.0.checked_sub(self.log_base().0)?;
        self.log.get_mut(usize::try_from(index).ok()?)
    }

    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && self.is_primary_of(self.view)
    }

    fn head(&self) -> &Header {
        &self
            .log
            .last()
            .expect("invariant: the log holds the root")
            .header
    }

    fn quorum(&self) -> usize {
        usize::from(self.config.replica_count) / 2 + 1
    }

    /// The primary of `view`: `(view + shard) mod replicas`, so that different shards' primaries
    /// spread over the hosts.
    #[must_use]
    pub fn primary_of(&self, view: View) -> ReplicaIndex {
        let count = u64::from(self.config.replica_count);
        ReplicaIndex(((view.0 + u64::from(self.config.shard.0)) % count) as u8)
    }

    fn is_primary_of(&self, view: View) -> bool {
        self.primary_of(view) == self.config.replica
    }

    /// Checks the replica's invariants; run after every step in tests and the simulator.
    pub fn check_invariants(&self) {
        assert!(
            self.commit_min <= self.commit_max,
            "commit_min {} > commit_max",
            self.commit_min
        );
        assert!(self.commit_min <= self.op(), "executed beyond the log");
        assert!(self.durable <= self.op(), "durable beyond the log");
        assert!(self.log_view <= self.view, "log view ahead of view");
        assert!(self.view_durable <= self.view && self.log_view_durable <= self.log_view);
        assert!(self.status != Status::RecoveringHead || self.recovering_head);
        // Constant time: `append` asserts each new op extends the head, and truncation only
        // shortens the log, so the head's position is the one to check.
        let head_index = self.log.len() - 1;
        assert_eq!(
            self.head().op,
            Op(self.log_base().0 + head_index as u64),
            "the head sits at another position"
        );
        assert!(
            self.log_base() <= self.commit_min,
            "executed ops were reclaimed"
        );
        assert!(
            self.checkpoint_durable <= self.commit_min,
            "checkpoint beyond execution"
        );
        assert!(
            self.op().0
                <= self.checkpoint_durable.0.max(self.log_base().0) + self.config.log_ops_max,
            "the log outgrew the journal's window beyond the durable checkpoint"
        );
        assert!(
            self.log.len() as u64 <= self.config.log_ops_max + 1,
            "log unbounded"
        );
        if let Some(last) = self.log.len().checked_sub(1).filter(|&n| n > 0) {
            let (previous, current) = (&self.log[last - 1].header, &self.log[last].header);
            assert_eq!(
                current.parent, previous.checksum,
                "chain broken at the head"
            );
            assert!(current.timestamp > previous.timestamp || previous.op == Op(0));
        }
        if self.status == Status::Normal && self.is_primary_of(self.view) {
            assert_eq!(
                self.log_view, self.view,
                "a normal primary's log is of its view"
            );
        }
    }

    /// Handles one input.
    pub fn step(&mut self, input: Input, actions: &mut Vec<Action>) {
        match input {
            Input::Tick { now } => self.on_tick(now, actions),
            Input::Message(envelope) => self.on_envelope(envelope, actions),
            Input::Durable { op, checksum } => self.on_durable(op, checksum, actions),
            Input::ViewDurable { view, log_view } => self.on_view_durable(view, log_view, actions),
            Input::EffectResult {
                id,
                view,
                attempt,
                result,
            } => self.on_effect_result(id, view, attempt, result, actions),
            Input::CheckpointDurable { op, checksum } => {
                self.on_checkpoint_durable(op, checksum, actions);
            }
        }
    }

    fn send(&self, to: Endpoint, message: Message, actions: &mut Vec<Action>) {
        let from = Endpoint::Replica(self.config.replica);
        let (cluster, shard) = (self.config.cluster, self.config.shard);
        let envelope = Envelope::seal(cluster, shard, self.view, from, message);
        actions.push(Action::Send { to, envelope });
    }

    fn send_to_replica(&self, to: u8, message: Message, actions: &mut Vec<Action>) {
        self.send(Endpoint::Replica(ReplicaIndex(to)), message, actions);
    }

    fn broadcast(&self, message: &Message, actions: &mut Vec<Action>) {
        for other in 0..self.config.replica_count {
            if other != self.config.replica.0 {
                self.send_to_replica(other, message.clone(), actions);
            }
        }
    }

    fn on_tick(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        self.tick += 1;
        self.clock = now;
        let timeouts = self.config.timeouts;
        let retransmit_due = self.tick - self.retransmit_tick >= timeouts.retransmit;
        if retransmit_due {
            self.retransmit_tick = self.tick;
        }
        if retransmit_due {
            self.request_checkpoint(actions);
        }
        match self.status {
            Status::Normal if self.is_primary_of(self.view) => {
                if self.tick - self.heartbeat_tick >= timeouts.heartbeat {
                    self.heartbeat_tick = self.tick;
                    let checksum = self
                        .header(self.commit_max)
                        .expect("invariant: a primary holds its commit point")
                        .checksum;
                    self.broadcast(
                        &Message::Commit {
                            commit: self.commit_max,
                            checksum,
                        },
                        actions,
                    );
                }
                if retransmit_due {
                    self.retransmit_prepares(actions);
                    self.repair_bodies(actions);
                }
                self.run_effects(actions);
            }
            Status::Normal => {
                if self.tick - self.primary_contact_tick >= timeouts.normal {
                    self.start_view_change(self.view.next(), actions);
                } else if retransmit_due {
                    self.repair(actions);
                }
            }
            Status::ViewChange => {
                if self.tick - self.view_change_tick >= timeouts.view_change {
                    self.start_view_change(self.view.next(), actions);
                } else if retransmit_due {
                    self.retransmit_view_change(actions);
                }
            }
            Status::RecoveringHead => {
                // No timeouts: a replica that cannot vote must not push the others into ever
                // newer views. It asks whoever is primary for the view's log, and announces
                // its own durable view, which it cannot go back on: if it promised a view the
                // others never reached, they must move to it (without this replica's vote)
                // before any primary can answer it.
                if retransmit_due {
                    self.broadcast(&Message::RequestStartView, actions);
                    self.broadcast(&Message::StartViewChange, actions);
                }
            }
        }
        let deposed = self.status != Status::Normal || !self.is_primary();
        if deposed && self.config.bug == Some(PlantedBug::UnfencedEffects) {
            self.run_effects(actions);
        }
    }

    fn on_envelope(&mut self, envelope: Envelope, actions: &mut Vec<Action>) {
        if envelope.cluster != self.config.cluster || envelope.shard != self.config.shard {
            self.stats.dropped_foreign += 1;
            return;
        }
        if !envelope.is_intact() {
            self.stats.dropped_corrupt += 1;
            return;
        }
        let view = envelope.view;
        let replica_from = match envelope.from {
            Endpoint::Replica(r) if r.0 < self.config.replica_count && r != self.config.replica => {
                Some(r.0)
            }
            Endpoint::Replica(_) => {
                self.stats.dropped_foreign += 1;
                return;
            }
            Endpoint::Client(_) => None,
        };
        if self.status == Status::RecoveringHead {
            match (&envelope.message, replica_from) {
                (
                    Message::StartView { .. }
                    | Message::RequestPrepare { .. }
                    | Message::RequestCheckpoint { .. }
                    | Message::Checkpoint { .. },
                    Some(_),
                ) => {}
                (Message::Prepare { .. } | Message::Commit { .. }, Some(from)) => {
                    if self.behind_primary(view, from) {
                        self.send_to_replica(from, Message::RequestStartView, actions);
                    }
                    return;
                }
                _ => return,
            }
        }
        match (envelope.message, replica_from) {
            (Message::Request(request), None) => self.on_request(request, actions),
            (
                Message::Prepare {
                    header,
                    body,
                    commit,
                },
                Some(from),
            ) => {
                self.on_prepare(view, from, header, body, commit, actions);
            }
            (Message::PrepareOk { op, checksum }, Some(from)) => {
                self.on_prepare_ok(view, from, op, checksum, actions);
            }
            (Message::Commit { commit, checksum }, Some(from)) => {
                self.on_commit(view, from, commit, checksum, actions);
            }
            (Message::StartViewChange, Some(from)) => {
                self.on_start_view_change(view, from, actions);
            }
            (
                Message::DoViewChange {
                    log_view,
                    op,
                    commit,
                    headers,
                    faulty,
                },
                Some(from),
            ) => {
                let dvc = DoViewChange {
                    log_view,
                    op,
                    commit,
                    headers,
                    faulty,
                };
                self.on_do_view_change(view, from, dvc, actions);
            }
            (
                Message::StartView {
                    op,
                    commit,
                    headers,
                },
                Some(from),
            ) => {
                self.on_start_view(view, from, op, commit, &headers, actions);
            }
            (Message::RequestStartView, Some(from)) => {
                self.on_request_start_view(view, from, actions);
            }
            (Message::RequestPrepare { op, checksum }, Some(from)) => {
                self.on_request_prepare(from, op, checksum, actions);
            }
            (
                message @ (Message::RequestCheckpoint { .. } | Message::Checkpoint { .. }),
                Some(from),
            ) => self.on_state_transfer(from, message, actions),
            _ => self.stats.dropped_foreign += 1,
        }
        self.check_invariants();
    }

    // ---- Client requests (primary) ----

    fn on_request(&mut self, request: Request, actions: &mut Vec<Action>) {
        let client = Endpoint::Client(request.client);
        if !self.is_primary() {
            if self.status == Status::Normal {
                let result = Err(ReplyError::NotPrimary { view: self.view });
                self.reply(client, &request, result, actions);
            }
            return;
        }
        if request.client == KERNEL_CLIENT {
            let error = ReplyError::Rejected(format!("client id {KERNEL_CLIENT} is reserved"));
            return self.reply(client, &request, Err(error), actions);
        }
        let size = request.body.len() + batch::REQUEST_OVERHEAD + 4;
        if size > self.config.body_max {
            let result = Err(ReplyError::TooLarge {
                size,
                max: self.config.body_max,
            });
            self.reply(client, &request, result, actions);
            return;
        }
        if request.kind != RequestKind::Register {
            match self.sessions.verdict(request.client, request.request) {
                Verdict::Duplicate(reply) => return self.reply(client, &request, reply, actions),
                Verdict::Stale => return,
                Verdict::NoSession => {
                    return self.reply(client, &request, Err(ReplyError::NoSession), actions);
                }
                Verdict::Apply => {}
            }
        }
        let key = (request.client, request.request);
        if self.requests_pending.contains(&key)
            || self.requests.len() >= self.config.request_queue_max
        {
            return;
        }
        self.requests_pending.insert(key);
        self.requests.push_back(request);
        self.prepare_requests(actions);
    }

    fn reply(
        &self,
        to: Endpoint,
        request: &Request,
        result: Result<Vec<u8>, ReplyError>,
        actions: &mut Vec<Action>,
    ) {
        let reply = super::message::Reply {
            client: request.client,
            request: request.request,
            result,
        };
        self.send(to, Message::Reply(reply), actions);
    }

    /// Turns queued requests into prepares while the pipeline has room.
    fn prepare_requests(&mut self, actions: &mut Vec<Action>) {
        if !self.is_primary() || self.log_view_durable != self.view {
            return;
        }
        while !self.requests.is_empty()
            && (self.op().0 - self.commit_max.0) < PIPELINE_MAX as u64
            && !self.log_full()
        {
            let mut batch = Vec::new();
            let mut size = 4;
            while let Some(request) = self.requests.front() {
                let request_size = batch::REQUEST_OVERHEAD + request.body.len();
                let full = batch.len() == self.config.batch_requests_max;
                if full || size + request_size > self.config.body_max {
                    break;
                }
                size += request_size;
                batch.push(self.requests.pop_front().expect("invariant: front exists"));
            }
            let body = batch::encode(&batch);
            self.prepare(body, actions);
        }
    }

    fn prepare(&mut self, body: Vec<u8>, actions: &mut Vec<Action>) {
        let head = *self.head();
        // Strictly monotonic, and following this replica's clock when it is ahead.
        let timestamp = Timestamp(self.clock.0.max(head.timestamp.0 + 1));
        let meta = EntryMeta {
            view: self.view,
            timestamp,
            operation: OPERATION_BATCH,
            client: ClientId(0),
            request: RequestNumber(0),
        };
        let (cluster, shard) = (self.config.cluster, self.config.shard);
        let header = Header::new(&meta, head.op.next(), head.checksum, cluster, shard, &body);
        let body = Body::from(body);
        self.append(header, body.clone(), actions);
        let message = Message::Prepare {
            header,
            body,
            commit: self.commit_max,
        };
        self.broadcast(&message, actions);
    }

    fn append(&mut self, header: Header, body: Body, actions: &mut Vec<Action>) {
        assert!(!self.log_full(), "append beyond the journal's window");
        assert_eq!(header.op, self.op().next());
        assert_eq!(header.parent, self.head().checksum);
        self.log.push(Entry {
            header,
            body: Some(body.clone()),
        });
        self.target.remove(&header.op);
        actions.push(Action::Append { header, body });
        if self.config.bug == Some(PlantedBug::PrepareOkBeforeDurable)
            && !self.is_primary_of(self.view)
        {
            self.durable = self.op();
            self.send_prepare_ok(actions);
        }
    }

    fn retransmit_prepares(&self, actions: &mut Vec<Action>) {
        for replica in 0..self.config.replica_count {
            if replica == self.config.replica.0 {
                continue;
            }
            let acked = self.acked[usize::from(replica)];
            let first = acked.max(self.commit_max).0 + 1;
            let last = self.op().0.min(first + PIPELINE_MAX as u64 - 1);
            for op in first..=last {
                if let Some(message) = self.prepare_message(Op(op)) {
                    self.send_to_replica(replica, message, actions);
                }
            }
        }
    }

    // ---- Normal operation (backup) ----

    fn on_prepare(
        &mut self,
        view: View,
        from: u8,
        header: Header,
        body: Body,
        commit: Op,
        actions: &mut Vec<Action>,
    ) {
        if !self.prepare_is_valid(&header, &body) {
            self.stats.dropped_corrupt += 1;
            return;
        }
        let from_primary = view == self.view
            && self.status == Status::Normal
            && ReplicaIndex(from) == self.primary_of(view)
            && !self.is_primary_of(view);
        if self.behind_primary(view, from) {
            self.send_to_replica(from, Message::RequestStartView, actions);
            return;
        }
        let expected = self.target.get(&header.op) == Some(&header.checksum)
            || self
                .entry(header.op)
                .is_some_and(|e| e.body.is_none() && e.header.checksum == header.checksum);
        if !from_primary && !expected {
            return;
        }
        if from_primary {
            self.primary_contact_tick = self.tick;
            self.commit_max = self.commit_max.max(commit);
        }
        let op = header.op;
        if op <= self.log_base() {
            // Behind the checkpoint: nothing to do with it.
        } else if op <= self.op() {
            let entry = self
                .entry_mut(op)
                .expect("invariant: the log holds base..=op");
            if entry.header.checksum == header.checksum && entry.body.is_none() {
                // A repair of a body this replica lost to a faulty disk.
                entry.body = Some(body.clone());
                actions.push(Action::Repair { header, body });
            } else if from_primary && entry.header.checksum == header.checksum && self.durable >= op
            {
                self.prepare_ok_sent = None;
                self.send_prepare_ok(actions);
            }
        } else if op > self.op().next() {
            if self.reorder.len() < REORDER_MAX {
                self.reorder.insert(op, Prepare { header, body });
            }
        } else if header.parent == self.head().checksum && !self.log_full() {
            self.append(header, body, actions);
            self.drain_reorder(actions);
        }
        self.execute_committed(actions);
        self.complete_view_log(actions);
        if self.view_log_chosen {
            self.maybe_finish_view_change(actions);
        }
    }

    /// True if `from`, the primary of `view`, is in normal operation in a view this replica
    /// has not installed: it must ask for the `start_view` it missed.
    fn behind_primary(&self, view: View, from: u8) -> bool {
        ReplicaIndex(from) == self.primary_of(view)
            && !self.is_primary_of(view)
            && (view > self.view || (view == self.view && self.status != Status::Normal))
    }

    fn drain_reorder(&mut self, actions: &mut Vec<Action>) {
        let stale: Vec<Op> = self
            .reorder
            .range(..=self.op())
            .map(|(op, _)| *op)
            .collect();
        for op in stale {
            self.reorder.remove(&op);
        }
        while !self.log_full()
            && let Some(prepare) = self.reorder.remove(&self.op().next())
        {
            let conflicts = self
                .target
                .get(&prepare.header.op)
                .is_some_and(|c| *c != prepare.header.checksum);
            if prepare.header.parent != self.head().checksum || conflicts {
                self.reorder.clear();
                break;
            }
            self.append(prepare.header, prepare.body, actions);
        }
    }

    fn prepare_is_valid(&self, header: &Header, body: &[u8]) -> bool {
        header.cluster == self.config.cluster
            && header.shard == self.config.shard
            && header.op > Op(0)
            && header.size as usize == HEADER_SIZE + body.len()
            && Checksum::of_body(body) == header.checksum_body
            && Header::decode(&header.encode()) == HeaderState::Valid(*header)
    }

    fn on_durable(&mut self, op: Op, checksum: Checksum, actions: &mut Vec<Action>) {
        let matches = self.header(op).is_some_and(|h| h.checksum == checksum);
        if !matches || op <= self.durable {
            return;
        }
        self.durable = op;
        if self.is_primary() {
            self.acked[usize::from(self.config.replica.0)] = op;
            self.advance_commit(actions);
        } else if self.status == Status::Normal {
            self.send_prepare_ok(actions);
        }
        if self.view_log_chosen {
            self.maybe_finish_view_change(actions);
        }
        self.check_invariants();
    }

    fn send_prepare_ok(&mut self, actions: &mut Vec<Action>) {
        if self.status != Status::Normal || self.log_view_durable != self.view {
            return;
        }
        if self.is_primary_of(self.view) || self.prepare_ok_sent == Some(self.durable) {
            return;
        }
        self.prepare_ok_sent = Some(self.durable);
        let checksum = self
            .header(self.durable)
            .expect("invariant: the log holds its durable op")
            .checksum;
        let primary = self.primary_of(self.view).0;
        self.send_to_replica(
            primary,
            Message::PrepareOk {
                op: self.durable,
                checksum,
            },
            actions,
        );
    }

    fn on_prepare_ok(
        &mut self,
        view: View,
        from: u8,
        op: Op,
        checksum: Checksum,
        actions: &mut Vec<Action>,
    ) {
        if view != self.view || !self.is_primary() {
            return;
        }
        if self.header(op).is_some_and(|h| h.checksum == checksum) {
            let acked = &mut self.acked[usize::from(from)];
            *acked = (*acked).max(op);
            self.advance_commit(actions);
        }
    }

    fn advance_commit(&mut self, actions: &mut Vec<Action>) {
        let mut acked = self.acked.clone();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_op = acked[self.quorum() - 1];
        if quorum_op > self.commit_max {
            self.commit_max = quorum_op;
            self.execute_committed(actions);
            self.prepare_requests(actions);
        }
    }

    fn on_commit(
        &mut self,
        view: View,
        from: u8,
        commit: Op,
        checksum: Checksum,
        actions: &mut Vec<Action>,
    ) {
        if self.behind_primary(view, from) {
            self.send_to_replica(from, Message::RequestStartView, actions);
            return;
        }
        let from_primary = view == self.view
            && self.status == Status::Normal
            && ReplicaIndex(from) == self.primary_of(view);
        if !from_primary {
            return;
        }
        self.primary_contact_tick = self.tick;
        if self.header(commit).is_none_or(|h| h.checksum == checksum) {
            self.commit_max = self.commit_max.max(commit);
        }
        self.execute_committed(actions);
    }

    /// Asks for what the log is missing: ops a view change named, ops known committed, and
    /// gaps before out-of-order prepares.
    fn repair(&mut self, actions: &mut Vec<Action>) {
        let wanted_end = [
            self.target.keys().next_back().copied(),
            Some(self.commit_max),
            self.reorder.keys().next().map(|op| Op(op.0 - 1)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Op(0));
        self.repair_bodies(actions);
        let first = self.op().0 + 1;
        let last = wanted_end.0.min(self.op().0 + REPAIR_REQUESTS_MAX as u64);
        for op in first..=last {
            let op = Op(op);
            let checksum = self.target.get(&op).copied();
            let message = Message::RequestPrepare { op, checksum };
            // With a checksum any replica holding the entry can answer; without one only the
            // primary, whose log defines the view, may extend the chain.
            if checksum.is_none() && self.status == Status::Normal {
                self.send_to_replica(self.primary_of(self.view).0, message, actions);
            } else {
                self.broadcast(&message, actions);
            }
        }
    }

    /// Asks every peer for bodies this replica's log lost to a faulty disk, oldest first:
    /// any replica holding the same checksum can answer.
    fn repair_bodies(&self, actions: &mut Vec<Action>) {
        let missing = self
            .log
            .iter()
            .skip((self.commit_min.0 - self.log_base().0) as usize + 1)
            .filter(|e| e.body.is_none());
        for entry in missing.take(REPAIR_REQUESTS_MAX) {
            let message = Message::RequestPrepare {
                op: entry.header.op,
                checksum: Some(entry.header.checksum),
            };
            self.broadcast(&message, actions);
        }
    }

    fn on_request_prepare(
        &mut self,
        from: u8,
        op: Op,
        checksum: Option<Checksum>,
        actions: &mut Vec<Action>,
    ) {
        if op < self.log_base() || (op == self.log_base() && self.body(op).is_none()) {
            // Reclaimed behind the checkpoint: offer the checkpoint instead (state transfer).
            self.offer_checkpoint(from, actions);
            return;
        }
        if checksum.is_some_and(|c| self.header(op).is_none_or(|h| h.checksum != c)) {
            return;
        }
        // Without a checksum the requester trusts the chain, which only this view's primary
        // may extend.
        if checksum.is_none() && !self.is_primary() {
            return;
        }
        if let Some(message) = self.prepare_message(op) {
            self.send_to_replica(from, message, actions);
        }
    }

    /// The prepare at `op` as a message, if this replica holds its body.
    fn prepare_message(&self, op: Op) -> Option<Message> {
        let entry = self.entry(op)?;
        Some(Message::Prepare {
            header: entry.header,
            body: entry.body.clone()?,
            commit: self.commit_max,
        })
    }

    // ---- Execution ----

    fn execute_committed(&mut self, actions: &mut Vec<Action>) {
        if self.state_missing {
            return; // Waits for a state transfer.
        }
        while self.commit_min < self.commit_max.min(self.op()) {
            let next = self.commit_min.next();
            if self.body(next).is_none() {
                break; // Waits for a repair of the faulty entry.
            }
            self.execute(next, actions);
        }
        self.maybe_checkpoint(actions);
        if self.status == Status::Normal && self.is_primary() {
            self.run_effects(actions);
        }
    }

    fn execute(&mut self, op: Op, actions: &mut Vec<Action>) {
        let prepare = self
            .entry(op)
            .expect("invariant: executes held ops")
            .clone();
        let header = prepare.header;
        let timestamp = match self.config.bug {
            Some(PlantedBug::BackupClockTimestamps) if !self.is_primary() => self.clock,
            _ => header.timestamp,
        };
        let mut context = ApplyContext {
            shard: self.config.shard,
            op,
            view: header.view,
            timestamp,
            seed: ApplyContext::seed_for(header.parent, op),
            effect_ordinal: 0,
        };
        let body = prepare
            .body
            .expect("invariant: only ops with a body execute");
        let requests = batch::decode(&body).unwrap_or_else(|| {
            panic!("op {op}: a committed prepare's batch does not decode (checksummed, so a bug)")
        });
        let mut hash_input = Vec::with_capacity(64);
        hash_input.extend_from_slice(&self.state_hash.to_le_bytes());
        hash_input.extend_from_slice(&header.checksum.to_le_bytes());
        hash_input.extend_from_slice(&timestamp.0.to_le_bytes());
        for request in &requests {
            let result = self.execute_request(request, op, &mut context);
            if let Ok(reply) = &result {
                hash_input.extend_from_slice(reply);
            }
            self.requests_pending
                .remove(&(request.client, request.request));
            if self.is_primary() && request.client != KERNEL_CLIENT {
                self.reply(Endpoint::Client(request.client), request, result, actions);
            }
        }
        self.state_hash = Checksum::of(&hash_input);
        actions.append(&mut self.applied);
        self.commit_min = op;
        self.stats.ops_executed += 1;
        actions.push(Action::Executed {
            op,
            state_hash: self.state_hash,
        });
    }

    fn execute_request(
        &mut self,
        request: &Request,
        op: Op,
        context: &mut ApplyContext,
    ) -> Result<Vec<u8>, ReplyError> {
        match request.kind {
            RequestKind::Register if request.client == KERNEL_CLIENT => {
                return Err(ReplyError::Rejected("reserved client id".to_owned()));
            }
            RequestKind::Register => {
                self.sessions.register(request.client, op);
                return Ok(Vec::new());
            }
            RequestKind::Kernel if request.client == KERNEL_CLIENT => {
                return self.execute_kernel(&request.body, false, context);
            }
            RequestKind::Kernel | RequestKind::Command => {}
        }
        match self.sessions.verdict(request.client, request.request) {
            Verdict::Duplicate(reply) => reply,
            Verdict::Stale => Err(ReplyError::Rejected("stale request".to_owned())),
            Verdict::NoSession => Err(ReplyError::NoSession),
            Verdict::Apply => {
                if self.config.record_applied {
                    let (client, number) = (request.client, request.request);
                    self.applied.push(Action::Applied {
                        client,
                        request: number,
                        op,
                    });
                }
                let result = if request.kind == RequestKind::Kernel {
                    self.execute_kernel(&request.body, true, context)
                } else {
                    self.apply_event(Event::Command(&request.body), context)
                        .map_err(ReplyError::Rejected)
                };
                self.sessions
                    .record(request.client, request.request, result.clone(), op);
                result
            }
        }
    }

    /// Applies one event to the application. On success the state advances and the returned
    /// effects enter the outbox with the next ordinals of the op; on an error nothing changes.
    /// A panic halts the replica with a message naming the op: the application is broken, and
    /// every replica would stop at the same op rather than diverge.
    fn apply_event(
        &mut self,
        event: Event<'_>,
        context: &mut ApplyContext,
    ) -> Result<Vec<u8>, String> {
        let (app, state) = (&self.app, &self.state);
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            app.apply(state, event, context)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            panic!(
                "shard {} op {}: the application panicked in apply ({message}); the shard halts \
                 here on every replica (a poison pill) instead of diverging: fix the \
                 application so that it rejects this event with an error",
                self.config.shard, context.op
            )
        });
        let applied = applied.map_err(|error| error.to_string())?;
        self.state = applied.state;
        for effect in applied.effects {
            let id = context.effect_id(0);
            context.effect_ordinal += 1;
            if self.config.record_applied {
                let event = Outboxed::Recorded(effect.clone());
                self.applied.push(Action::Outboxed {
                    op: context.op,
                    id,
                    event,
                });
            }
            self.outbox.record(id, effect, context.timestamp);
        }
        Ok(applied.reply)
    }

    /// Executes a committed kernel event: the outbox changes, and the application hears of a
    /// completion, a dead letter or a timer. A client (`from_client`) may only retry a dead
    /// letter.
    fn execute_kernel(
        &mut self,
        body: &[u8],
        from_client: bool,
        context: &mut ApplyContext,
    ) -> Result<Vec<u8>, ReplyError> {
        let Some(event) = KernelEvent::decode(body) else {
            return Err(ReplyError::Rejected("malformed kernel event".to_owned()));
        };
        if from_client && !matches!(event, KernelEvent::Retry { .. }) {
            return Err(ReplyError::Rejected(
                "a client may only retry a dead-lettered effect".to_owned(),
            ));
        }
        let id = event.id();
        self.executor.settle(&event);
        let policy = self.config.effects;
        let change = self
            .outbox
            .execute(&event, context.timestamp, context.seed, &policy);
        let (app_event, outboxed) = match &change {
            Change::Completed { response } => (
                Some(Event::EffectCompleted { id, response }),
                Outboxed::Completed,
            ),
            Change::DeadLettered { error } => (
                Some(Event::EffectFailed { id, error }),
                Outboxed::DeadLettered,
            ),
            Change::Fired { payload } => (Some(Event::Timer { id, payload }), Outboxed::TimerFired),
            Change::Nothing if from_client => {
                return Err(ReplyError::Rejected(format!(
                    "effect {id} is not dead-lettered: nothing to retry"
                )));
            }
            Change::Revived => (None, Outboxed::Revived),
            Change::Nothing | Change::Failed => return Ok(Vec::new()),
        };
        if self.config.record_applied {
            let op = context.op;
            self.applied.push(Action::Outboxed {
                op,
                id,
                event: outboxed,
            });
        }
        if let Some(app_event) = app_event {
            // The application's answer to a kernel event goes to no client; an error rejects
            // only its own state change, alike on every replica.
            if self.apply_event(app_event, context).is_err() {
                self.stats.kernel_events_rejected += 1;
            }
        }
        Ok(Vec::new())
    }

    // ---- Effects (primary) ----

    /// Starts attempts of due effects, proposes due timers and re-proposes outcomes that have
    /// not committed. Only a primary in normal status holding a durable view that has executed
    /// everything it committed does this; anything a former view started is forgotten.
    fn run_effects(&mut self, actions: &mut Vec<Action>) {
        if self.executor.view != self.view {
            let inherited = self
                .log
                .iter()
                .rev()
                .find(|entry| entry.header.view < self.view)
                .map_or(Op(0), |entry| entry.header.op);
            self.executor = Executor {
                view: self.view,
                inherited,
                ..Executor::default()
            };
        }
        let durable = self.view_durable == self.view && self.log_view_durable == self.view;
        let mut view = self.view;
        if self.config.bug == Some(PlantedBug::UnfencedEffects) {
            if !self.is_primary_of(self.log_view) || self.status == Status::RecoveringHead {
                return;
            }
            view = self.log_view;
        } else if self.status != Status::Normal
            || !self.is_primary()
            || !durable
            || self.commit_min != self.commit_max
            || self.commit_min < self.executor.inherited
        {
            return;
        }
        let forget = self.config.bug == Some(PlantedBug::ForgetInheritedEffects);
        // Consensus time as far as this primary has executed it: an op's timestamp may run
        // ahead of the clock (timestamps are strictly increasing), and an effect it recorded
        // is due at once.
        let executed = self
            .header(self.commit_min)
            .map_or(Timestamp(0), |h| h.timestamp);
        let (now, tick) = (self.clock.max(executed), self.tick);
        let policy = self.config.effects;
        let again = 4 * self.config.timeouts.retransmit;
        let mut proposals = Vec::new();
        for (id, attempt) in &mut self.executor.attempts {
            if let Some(result) = &attempt.result
                && tick - attempt.proposed_tick >= again
            {
                attempt.proposed_tick = tick;
                proposals.push(KernelEvent::Outcome {
                    id: *id,
                    view,
                    attempt: attempt.number,
                    result: result.clone(),
                });
            }
        }
        for (id, pending) in self.outbox.due(now) {
            if self.executor.attempts.len() >= policy.in_flight_max {
                break;
            }
            if self.executor.attempts.contains_key(&id)
                || (forget && self.header(id.op).is_some_and(|h| h.view != self.view))
            {
                continue;
            }
            let number = pending.next_attempt();
            let attempt = Attempt {
                number,
                result: None,
                proposed_tick: tick,
            };
            self.executor.attempts.insert(id, attempt);
            self.stats.effect_attempts += 1;
            actions.push(Action::Attempt {
                id,
                view,
                attempt: number,
                effect: pending.effect.clone(),
            });
        }
        for id in self.outbox.timers_due(now).take(policy.in_flight_max) {
            let proposed = self.executor.fires.get(&id);
            if proposed.is_none_or(|&at| tick - at >= again) {
                self.executor.fires.insert(id, tick);
                proposals.push(KernelEvent::Fire { id });
            }
        }
        if !proposals.is_empty() {
            for event in proposals {
                self.propose_kernel(&event);
            }
            self.prepare_requests(actions);
        }
    }

    /// Queues a kernel event for the log, outside any session and the client queue's bound
    /// (the executor bounds these itself).
    fn propose_kernel(&mut self, event: &KernelEvent) {
        self.requests.push_back(Request {
            client: KERNEL_CLIENT,
            request: RequestNumber(0),
            kind: RequestKind::Kernel,
            body: event.encode(),
        });
    }

    fn on_effect_result(
        &mut self,
        id: EffectId,
        view: View,
        number: u32,
        result: Result<Vec<u8>, String>,
        actions: &mut Vec<Action>,
    ) {
        if view != self.view || self.executor.view != view || !self.is_primary() {
            return; // An attempt of a former view: its outcome is not this primary's to report.
        }
        let Some(attempt) = self.executor.attempts.get_mut(&id) else {
            return;
        };
        if attempt.number != number || attempt.result.is_some() {
            return;
        }
        attempt.result = Some(result.clone());
        attempt.proposed_tick = self.tick;
        self.propose_kernel(&KernelEvent::Outcome {
            id,
            view,
            attempt: number,
            result,
        });
        self.prepare_requests(actions);
    }

    // ---- View change ----

    fn start_view_change(&mut self, view: View, actions: &mut Vec<Action>) {
        assert!(view > self.view);
        self.view = view;
        self.status = Status::ViewChange;
        self.view_change_tick = self.tick;
        self.start_view_change_from = BTreeSet::from([self.config.replica.0]);
        self.do_view_change_from.clear();
        self.view_log_chosen = false;
        self.view_log_end = None;
        self.requests.clear();
        self.requests_pending.clear();
        self.reorder.clear();
        self.target.clear();
        self.prepare_ok_sent = None;
        self.stats.view_changes += 1;
        self.persist_view(view, self.log_view, actions);
        self.broadcast(&Message::StartViewChange, actions);
    }

    /// Asks for the view state to be written to the superblock.
    fn persist_view(&self, view: View, log_view: View, actions: &mut Vec<Action>) {
        actions.push(Action::PersistView {
            view,
            log_view,
            commit: CommitIndex(Some(self.commit_max.min(self.op()))),
            recovering_head: self.recovering_head,
        });
    }

    /// The log now holds the whole log of this replica's view: the log view advances, and a
    /// recovering head is recovered.
    fn advance_log_view(&mut self, actions: &mut Vec<Action>) {
        if self.log_view != self.view || self.recovering_head {
            self.log_view = self.view;
            self.recovering_head = false;
            self.persist_view(self.view, self.view, actions);
        }
    }

    fn retransmit_view_change(&mut self, actions: &mut Vec<Action>) {
        self.broadcast(&Message::StartViewChange, actions);
        self.send_do_view_change(actions);
        if self.view_log_chosen {
            self.repair(actions);
        } else {
            self.repair_bodies(actions);
        }
    }

    fn on_start_view_change(&mut self, view: View, from: u8, actions: &mut Vec<Action>) {
        if view > self.view {
            self.start_view_change(view, actions);
        }
        if view == self.view && self.status == Status::ViewChange {
            self.start_view_change_from.insert(from);
            self.send_do_view_change(actions);
        }
    }

    /// The newest headers of the log, for view-change messages, reaching back behind the
    /// checkpoint to reclaimed ops while there is room.
    fn suffix_headers(&self) -> Vec<Header> {
        let start = self.suffix_start();
        let room = VIEW_HEADERS_MAX - (self.log.len() - start);
        let older = if start == 0 {
            room.min(self.reclaimed.len())
        } else {
            0
        };
        self.reclaimed
            .iter()
            .skip(self.reclaimed.len() - older)
            .copied()
            .chain(self.log[start..].iter().map(|p| p.header))
            .collect()
    }

    /// The root is never sent (every replica has it); a checkpoint's op is, so a log that is only
    /// a checkpoint still names its head.
    fn suffix_start(&self) -> usize {
        let first = usize::from(self.log_base() == Op(0));
        self.log.len().saturating_sub(VIEW_HEADERS_MAX).max(first)
    }

    fn send_do_view_change(&mut self, actions: &mut Vec<Action>) {
        let ready = self.status == Status::ViewChange
            && self.start_view_change_from.len() >= self.quorum()
            && self.view_durable == self.view
            && !self.recovering_head;
        if !ready {
            return;
        }
        let base = self.log_base();
        let faulty = self.log[self.suffix_start()..]
            .iter()
            .filter(|e| e.body.is_none() && e.header.op > base)
            .map(|e| e.header.op)
            .collect();
        let dvc = DoViewChange {
            log_view: self.log_view,
            op: self.op(),
            commit: self.commit_max,
            headers: self.suffix_headers(),
            faulty,
        };
        let primary = self.primary_of(self.view).0;
        if primary == self.config.replica.0 {
            self.record_do_view_change(primary, dvc, actions);
        } else {
            let message = Message::DoViewChange {
                log_view: dvc.log_view,
                op: dvc.op,
                commit: dvc.commit,
                headers: dvc.headers,
                faulty: dvc.faulty,
            };
            self.send_to_replica(primary, message, actions);
        }
    }

    fn on_do_view_change(
        &mut self,
        view: View,
        from: u8,
        dvc: DoViewChange,
        actions: &mut Vec<Action>,
    ) {
        if view > self.view {
            self.start_view_change(view, actions);
        }
        if view != self.view || !self.is_primary_of(view) {
            return;
        }
        match self.status {
            Status::ViewChange => self.record_do_view_change(from, dvc, actions),
            Status::Normal => self.send_start_view(from, actions),
            Status::RecoveringHead => {}
        }
    }

    fn record_do_view_change(&mut self, from: u8, dvc: DoViewChange, actions: &mut Vec<Action>) {
        self.do_view_change_from.insert(from, dvc);
        if !self.view_log_chosen && self.do_view_change_from.len() >= self.quorum() {
            self.choose_view_log(actions);
        } else if self.view_log_chosen {
            // A later vote may complete a nack quorum.
            self.drop_unrecoverable(actions);
        }
    }

    /// PAR's rule for an uncommitted entry of the chosen log that no replica heard from still
    /// holds: if a nack quorum says it does not hold it, it cannot have been committed, and
    /// the log is cut before it (and everything after it, which chains from it). Without the
    /// quorum the entry may be committed: the view change waits for a replica that has it.
    fn drop_unrecoverable(&mut self, actions: &mut Vec<Action>) {
        let deciding = self.status == Status::ViewChange
            && self.view_log_chosen
            && self.is_primary_of(self.view);
        if !deciding {
            return;
        }
        let commit = self
            .do_view_change_from
            .values()
            .map(|d| d.commit)
            .fold(self.commit_max, Op::max);
        let end = self.target.keys().next_back().copied().unwrap_or(Op(0));
        let end = end.max(self.op());
        let nack_quorum = usize::from(self.config.replica_count) - self.quorum() + 1;
        let mut cut = None;
        for op in commit.0 + 1..=end.0 {
            let op = Op(op);
            let checksum = match self.entry(op) {
                Some(entry) if entry.body.is_some() => continue,
                Some(entry) => entry.header.checksum,
                None => match self.target.get(&op) {
                    Some(checksum) => *checksum,
                    None => continue,
                },
            };
            let votes = self.do_view_change_from.values();
            if votes.clone().any(|d| d.holds_intact(op, checksum)) {
                continue; // Repair will fetch it.
            }
            if votes.filter(|d| d.nacks(op, checksum)).count() >= nack_quorum {
                cut = Some(op);
                break;
            }
        }
        let Some(op) = cut else {
            return;
        };
        let keep = Op(op.0 - 1);
        let dropped = self.target.range(op..).count() as u64 + self.op().0.saturating_sub(keep.0);
        self.stats.ops_nacked += dropped;
        self.target.retain(|target, _| *target < op);
        self.truncate_to(keep, actions);
        self.maybe_finish_view_change(actions);
    }

    /// The new primary picks the log of the view: the highest log view, then the highest op.
    /// Never the longest log alone: a long log from an old view may hold ops that a later view
    /// replaced.
    fn choose_view_log(&mut self, actions: &mut Vec<Action>) {
        let commit = self
            .do_view_change_from
            .values()
            .map(|d| d.commit)
            .max()
            .unwrap_or(Op(0));
        let best = match self.config.bug {
            Some(PlantedBug::LongestLog) => self.do_view_change_from.values().max_by_key(|d| d.op),
            _ => self
                .do_view_change_from
                .values()
                .max_by_key(|d| (d.log_view, d.op)),
        }
        .expect("invariant: a quorum of do_view_change")
        .clone();
        if self.config.bug == Some(PlantedBug::IgnoreViewChangeLogs) {
            self.view_log_chosen = true;
            self.commit_max = self.commit_max.max(commit).min(self.op());
            self.maybe_finish_view_change(actions);
            return;
        }
        // The quorum's commit point is trusted only once this log is a prefix of the chosen
        // one: before that, ops below it here may be a divergent suffix of an older view.
        if self.adopt_log(&best.headers, best.op, actions) {
            self.commit_max = self.commit_max.max(commit);
            self.view_log_chosen = true;
            self.drop_unrecoverable(actions);
            self.repair(actions);
            self.maybe_finish_view_change(actions);
        }
    }

    /// Makes this replica's log a prefix of the log ending at `op` whose newest headers are
    /// `headers`: truncates what diverges and records the checksums still to be repaired.
    /// Returns false if the headers do not connect to this log (it is too far behind).
    fn adopt_log(&mut self, headers: &[Header], op: Op, actions: &mut Vec<Action>) -> bool {
        let Some(first) = headers.first() else {
            // The chosen log is just the root.
            self.truncate_to(Op(0).max(self.commit_min), actions);
            return true;
        };
        // The headers connect where this log holds their parent, or one of them (ops this log
        // reclaimed behind its checkpoint are skipped: the chain through the base vouches for
        // them).
        let anchor = Op(first.op.0.saturating_sub(1));
        let mut keep = self
            .header(anchor)
            .is_some_and(|h| h.checksum == first.parent)
            .then_some(anchor);
        for header in headers {
            if header.op < self.log_base() {
                continue;
            }
            match self.header(header.op) {
                Some(ours) if ours.checksum == header.checksum => keep = Some(header.op),
                _ => break,
            }
        }
        let Some(keep) = keep else {
            return false;
        };
        assert!(
            keep >= self.commit_min,
            "a view change would truncate executed op {}",
            self.commit_min
        );
        self.truncate_to(keep, actions);
        self.target = headers
            .iter()
            .filter(|h| h.op > keep && h.op <= op)
            .map(|h| (h.op, h.checksum))
            .collect();
        true
    }

    fn truncate_to(&mut self, op: Op, actions: &mut Vec<Action>) {
        if op >= self.op() {
            return;
        }
        assert!(op >= self.commit_min, "truncating executed ops");
        assert!(op >= self.log_base());
        self.log.truncate((op.0 - self.log_base().0) as usize + 1);
        self.durable = self.durable.min(op);
        self.reorder.clear();
        actions.push(Action::Truncate { after: op });
    }

    fn maybe_finish_view_change(&mut self, actions: &mut Vec<Action>) {
        if self.status != Status::ViewChange || !self.target.is_empty() {
            return;
        }
        self.advance_log_view(actions);
    }

    /// A backup whose log now holds the whole log of its view advances its log view.
    fn complete_view_log(&mut self, actions: &mut Vec<Action>) {
        let Some(end) = self.view_log_end else {
            return;
        };
        if self.status != Status::Normal || self.op() < end || !self.target.is_empty() {
            return;
        }
        self.view_log_end = None;
        self.advance_log_view(actions);
    }

    fn on_view_durable(&mut self, view: View, log_view: View, actions: &mut Vec<Action>) {
        if view > self.view_durable && view <= self.view {
            self.view_durable = view;
        }
        if log_view > self.log_view_durable && log_view <= self.log_view {
            self.log_view_durable = log_view;
        }
        match self.status {
            Status::ViewChange if self.is_primary_of(self.view) && self.view_log_chosen => {
                if self.log_view_durable == self.view {
                    self.become_primary(actions);
                }
            }
            Status::ViewChange => self.send_do_view_change(actions),
            Status::Normal => {
                self.send_prepare_ok(actions);
                self.prepare_requests(actions);
            }
            Status::RecoveringHead => {}
        }
        self.check_invariants();
    }

    fn become_primary(&mut self, actions: &mut Vec<Action>) {
        assert_eq!(self.log_view, self.view);
        self.status = Status::Normal;
        self.view_log_chosen = false;
        self.do_view_change_from.clear();
        self.acked = vec![Op(0); usize::from(self.config.replica_count)];
        self.acked[usize::from(self.config.replica.0)] = self.durable;
        self.commit_max = self.commit_max.min(self.op());
        for replica in 0..self.config.replica_count {
            if replica != self.config.replica.0 {
                self.send_start_view(replica, actions);
            }
        }
        self.heartbeat_tick = self.tick;
        self.advance_commit(actions);
        self.execute_committed(actions);
    }

    fn send_start_view(&self, to: u8, actions: &mut Vec<Action>) {
        let message = Message::StartView {
            op: self.op(),
            commit: self.commit_max,
            headers: self.suffix_headers(),
        };
        self.send_to_replica(to, message, actions);
    }

    fn on_request_start_view(&mut self, view: View, from: u8, actions: &mut Vec<Action>) {
        if view <= self.view && self.is_primary() {
            self.send_start_view(from, actions);
        }
    }

    fn on_start_view(
        &mut self,
        view: View,
        from: u8,
        op: Op,
        commit: Op,
        headers: &[Header],
        actions: &mut Vec<Action>,
    ) {
        let newer = view > self.view || (view == self.view && self.status != Status::Normal);
        if !newer || ReplicaIndex(from) != self.primary_of(view) {
            return;
        }
        // Out-of-order prepares from an older view may not belong to this view's log.
        self.reorder.clear();
        self.view = view;
        if !self.adopt_log(headers, op, actions) {
            // Too far behind to connect: keep the committed prefix, which every view's log
            // shares, and repair forward from the primary. Ops beyond it may have been
            // acknowledged, so the log is marked as recovering its head, durably, before it is
            // cut.
            let keep = self.commit_max.min(self.op()).max(self.commit_min);
            if keep < self.op() && !self.recovering_head {
                self.recovering_head = true;
                self.persist_view(view, self.log_view, actions);
            }
            self.truncate_to(keep, actions);
            self.target.clear();
        }
        self.status = Status::Normal;
        self.view_log_chosen = false;
        self.primary_contact_tick = self.tick;
        self.prepare_ok_sent = None;
        self.commit_max = self.commit_max.max(commit);
        self.view_log_end = Some(op);
        // The view is durable at once; the log view only once the log holds the whole view
        // log: a log view on disk vouches that the log beside it is complete for that view.
        self.persist_view(view, self.log_view, actions);
        self.complete_view_log(actions);
        self.repair(actions);
        self.execute_committed(actions);
    }

    // ---- Checkpoints, compaction and state transfer ----
    //
    // A checkpoint is the replicated state after an executed (so committed) op. It is written
    // to the journal's checkpoint zone; once the superblock names it durably, the log before
    // its op is reclaimed, in memory and in the journal's ring. The log may hold at most
    // `log_ops_max` ops beyond the durable checkpoint, the journal's guaranteed window, so a
    // restart always finds every op after its checkpoint. A replica that needs ops its peers
    // reclaimed is sent a checkpoint instead (state transfer), verified before it is used.

    /// True when the log holds as many ops beyond the durable checkpoint as the journal
    /// guarantees: nothing more may be appended until the next checkpoint is durable.
    fn log_full(&self) -> bool {
        let floor = self.checkpoint_durable.max(self.log_base());
        self.op().0 >= floor.0 + self.config.log_ops_max
    }

    /// At a restart: the log starts at the durable checkpoint, restored from `bytes` (already
    /// checked against the superblock's checksum), or, if its copy was damaged, is marked as
    /// missing its state until a peer sends a checkpoint.
    fn recover_checkpoint(
        &mut self,
        header: Header,
        bytes: Option<Vec<u8>>,
        actions: &mut Vec<Action>,
    ) {
        self.log = vec![Entry { header, body: None }];
        self.checkpoint_durable = header.op;
        self.commit_min = header.op;
        self.commit_max = header.op;
        let restored = bytes.and_then(|bytes| {
            let state = CheckpointState::decode(&bytes).filter(|s| s.header == header)?;
            let (app_state, sessions, outbox) = self.restore_checkpoint(&state)?;
            Some((state, app_state, sessions, outbox, bytes))
        });
        let Some((state, app_state, sessions, outbox, bytes)) = restored else {
            self.state_missing = true;
            return;
        };
        self.state = app_state;
        self.sessions = sessions;
        self.outbox = outbox;
        self.state_hash = state.state_hash;
        self.stats.checkpoints_restored += 1;
        let bytes: Body = Body::from(bytes);
        self.checkpoints.push_back(Checkpoint {
            header,
            checksum: Checksum::of(&bytes),
            state_hash: state.state_hash,
            bytes,
        });
        actions.push(Action::Restored {
            op: header.op,
            state_hash: self.state_hash,
        });
    }

    /// Takes a checkpoint once `checkpoint_interval` ops executed since the newest one, if no
    /// other is being written.
    fn maybe_checkpoint(&mut self, actions: &mut Vec<Action>) {
        if self.state_missing || self.checkpoint_writing.is_some() {
            return;
        }
        // Measured from the durable checkpoint, not from one taken only to serve a peer: the log
        // window is measured from it too. A full window takes one at once.
        let durable = self.checkpoint_durable;
        let due = self.commit_min.0 >= durable.0 + self.config.checkpoint_interval
            || (self.log_full() && self.commit_min > durable);
        if !due {
            return;
        }
        let checkpoint = self.take_checkpoint();
        self.checkpoint_writing = Some(checkpoint.header.op);
        actions.push(Action::WriteCheckpoint {
            header: checkpoint.header,
            checksum: checkpoint.checksum,
            bytes: checkpoint.bytes,
        });
    }

    /// Snapshots the state after `commit_min` and keeps it to serve state transfers.
    fn take_checkpoint(&mut self) -> Checkpoint {
        assert!(!self.state_missing);
        let header = *self
            .header(self.commit_min)
            .expect("invariant: the log holds its executed head");
        if let Some(newest) = self.checkpoints.back().filter(|c| c.header == header) {
            return newest.clone();
        }
        let state = CheckpointState {
            header,
            state_hash: self.state_hash,
            app: self.app.snapshot(&self.state),
            sessions: self.sessions.encode(),
            outbox: self.outbox.encode(),
        };
        let checkpoint = Checkpoint::new(&state);
        if self.checkpoints.len() == CHECKPOINTS_SERVED_MAX {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back(checkpoint.clone());
        self.stats.checkpoints_taken += 1;
        checkpoint
    }

    fn on_checkpoint_durable(&mut self, op: Op, checksum: Checksum, actions: &mut Vec<Action>) {
        if self.checkpoint_writing == Some(op) {
            self.checkpoint_writing = None;
        }
        let ours = self.header(op).is_some_and(|h| h.checksum == checksum)
            || self.checkpoints.iter().any(|c| c.header.op == op);
        if op > self.checkpoint_durable && op <= self.commit_min && ours {
            self.checkpoint_durable = op;
            self.compact();
        }
        self.maybe_checkpoint(actions);
        self.prepare_requests(actions);
        self.check_invariants();
    }

    /// Reclaims the log before the durable checkpoint.
    fn compact(&mut self) {
        let base = self.checkpoint_durable;
        if base <= self.log_base() {
            return;
        }
        let reclaimed = (base.0 - self.log_base().0) as usize;
        for entry in self.log.drain(..reclaimed) {
            if entry.header.op == Op(0) {
                continue; // Every replica holds the root; view-change headers never carry it.
            }
            if self.reclaimed.len() == VIEW_HEADERS_MAX {
                self.reclaimed.pop_front();
            }
            self.reclaimed.push_back(entry.header);
        }
        // The checkpoint holds every op up to its own durably.
        self.durable = self.durable.max(base);
        self.target.retain(|op, _| *op > base);
        self.reorder.retain(|op, _| *op > base);
    }

    /// Bytes of checkpoint per chunk message: what a prepare's body may hold, less the chunk
    /// message's extra fields, so a chunk always fits a frame that fits a prepare.
    fn chunk_size(&self) -> usize {
        self.config.body_max.saturating_sub(64).max(512)
    }

    /// Answers a request for an op this log reclaimed with the start of its newest checkpoint.
    fn offer_checkpoint(&mut self, to: u8, actions: &mut Vec<Action>) {
        if let Some(checkpoint) = self.checkpoints.back().cloned() {
            self.send_checkpoint_chunk(to, &checkpoint, 0, actions);
        }
    }

    fn on_state_transfer(&mut self, from: u8, message: Message, actions: &mut Vec<Action>) {
        match message {
            Message::RequestCheckpoint {
                op,
                checksum,
                offset,
            } => self.on_request_checkpoint(from, op, checksum, offset, actions),
            Message::Checkpoint {
                header,
                checksum,
                size,
                offset,
                chunk,
            } => self.on_checkpoint_chunk(header, checksum, size, offset, &chunk, actions),
            _ => unreachable!("only state-transfer messages"),
        }
    }

    fn on_request_checkpoint(
        &mut self,
        from: u8,
        op: Op,
        checksum: Option<Checksum>,
        offset: u64,
        actions: &mut Vec<Action>,
    ) {
        if self.state_missing {
            return;
        }
        let found = match checksum {
            Some(c) => self.checkpoints.iter().find(|k| k.checksum == c).cloned(),
            None => self
                .checkpoints
                .iter()
                .rev()
                .find(|k| k.header.op >= op)
                .cloned(),
        };
        // A peer may need a newer state than any checkpoint kept here (its own checkpoint is
        // newer): one taken now, at any executed op, is as good.
        let checkpoint = match found {
            Some(checkpoint) => checkpoint,
            None if checksum.is_none() && self.commit_min >= op && self.commit_min > Op(0) => {
                self.take_checkpoint()
            }
            None => return,
        };
        self.send_checkpoint_chunk(from, &checkpoint, offset, actions);
    }

    fn send_checkpoint_chunk(
        &self,
        to: u8,
        checkpoint: &Checkpoint,
        offset: u64,
        actions: &mut Vec<Action>,
    ) {
        let size = checkpoint.bytes.len();
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if start >= size {
            return;
        }
        let end = size.min(start + self.chunk_size());
        let message = Message::Checkpoint {
            header: checkpoint.header,
            checksum: checkpoint.checksum,
            size: size as u64,
            offset,
            chunk: Body::from(&checkpoint.bytes[start..end]),
        };
        self.send_to_replica(to, message, actions);
    }

    /// True if a checkpoint at the op of `header` would help this replica: it lacks its state,
    /// or it is a backup that has not executed that far (it asked for ops its peers reclaimed).
    fn wants_checkpoint(&self, header: &Header) -> bool {
        let holds = self
            .header(header.op)
            .is_some_and(|h| h.checksum == header.checksum);
        let conflicts = self
            .target
            .get(&header.op)
            .is_some_and(|c| *c != header.checksum);
        if conflicts {
            return false;
        }
        let backup = self.status == Status::Normal && !self.is_primary_of(self.view);
        if self.state_missing {
            header.op >= self.log_base() && (holds || backup)
        } else {
            header.op > self.commit_min && (holds || backup)
        }
    }

    /// Asks for the checkpoint chunks still missing, spreading the requests over the peers.
    fn request_checkpoint(&mut self, actions: &mut Vec<Action>) {
        let peers: Vec<u8> = (0..self.config.replica_count)
            .filter(|r| *r != self.config.replica.0)
            .collect();
        if peers.is_empty() {
            return;
        }
        let Some(transfer) = self.transfer.as_mut() else {
            if self.state_missing {
                let message = Message::RequestCheckpoint {
                    op: self.log_base(),
                    checksum: None,
                    offset: 0,
                };
                self.broadcast(&message, actions);
            }
            return;
        };
        transfer.idle_rounds += 1;
        if transfer.idle_rounds > TRANSFER_IDLE_ROUNDS_MAX {
            self.transfer = None;
            return;
        }
        let transfer = self.transfer.as_ref().expect("checked above");
        let missing = (0..transfer.received.len())
            .filter(|&i| !transfer.received[i])
            .take(CHECKPOINT_CHUNKS_IN_FLIGHT_MAX);
        let mut messages = Vec::new();
        for (n, chunk) in missing.enumerate() {
            let peer = peers[(n + self.tick as usize) % peers.len()];
            let message = Message::RequestCheckpoint {
                op: transfer.header.op,
                checksum: Some(transfer.checksum),
                offset: (chunk * transfer.chunk_size) as u64,
            };
            messages.push((peer, message));
        }
        for (peer, message) in messages {
            self.send_to_replica(peer, message, actions);
        }
    }

    fn on_checkpoint_chunk(
        &mut self,
        header: Header,
        checksum: Checksum,
        size: u64,
        offset: u64,
        chunk: &[u8],
        actions: &mut Vec<Action>,
    ) {
        if !self.wants_checkpoint(&header) || size == 0 || size > u64::from(CHECKPOINT_SIZE_MAX) {
            return;
        }
        let chunk_size = self.chunk_size();
        let size = size as usize;
        let replace = match &self.transfer {
            Some(t) => t.checksum != checksum && header.op > t.header.op,
            None => true,
        };
        if replace {
            self.transfer = Some(Transfer {
                header,
                checksum,
                bytes: vec![0; size],
                received: vec![false; size.div_ceil(chunk_size)],
                chunk_size,
                idle_rounds: 0,
            });
        }
        let transfer = self.transfer.as_mut().expect("invariant: set above");
        if transfer.checksum != checksum || transfer.bytes.len() != size {
            return;
        }
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let index = start / chunk_size;
        let expected = chunk_size.min(size.saturating_sub(start));
        if start % chunk_size != 0 || start >= size || chunk.len() != expected {
            return;
        }
        if !transfer.received[index] {
            transfer.received[index] = true;
            transfer.bytes[start..start + expected].copy_from_slice(chunk);
            transfer.idle_rounds = 0;
        }
        if transfer.received.iter().all(|r| *r) {
            self.finish_transfer(actions);
        } else if replace {
            self.request_checkpoint(actions);
        }
    }

    /// Verifies a fully received checkpoint and installs it. Verified: its bytes against the
    /// checksum it was announced with; its decoding and the header it names; that its op's
    /// checksum matches this log (or a view change's target) where either names that op; and
    /// that restoring it reproduces it (the snapshot of the restored state is the snapshot sent).
    fn finish_transfer(&mut self, actions: &mut Vec<Action>) {
        let transfer = self
            .transfer
            .take()
            .expect("invariant: a transfer to finish");
        let state = (Checksum::of(&transfer.bytes) == transfer.checksum)
            .then(|| CheckpointState::decode(&transfer.bytes))
            .flatten()
            .filter(|state| state.header == transfer.header);
        let Some(state) = state.filter(|s| self.wants_checkpoint(&s.header)) else {
            self.stats.checkpoints_refused += 1;
            return;
        };
        let Some((app_state, sessions, outbox)) = self.restore_checkpoint(&state) else {
            self.stats.checkpoints_refused += 1;
            return;
        };
        let header = state.header;
        let op = header.op;
        let holds = self
            .header(op)
            .is_some_and(|h| h.checksum == header.checksum);
        if !holds {
            // This log ends before the checkpoint or diverges at or before it (then what
            // follows is an uncommitted suffix: the committed log holds the checkpoint's op).
            // The log becomes the checkpoint alone; the journal erases the rest.
            self.log = vec![Entry { header, body: None }];
            self.reclaimed.clear();
            self.durable = op;
            self.prepare_ok_sent = None;
            self.reorder.retain(|o, _| *o > op);
        }
        self.target.retain(|o, _| *o > op);
        self.state = app_state;
        self.sessions = sessions;
        self.outbox = outbox;
        self.state_hash = state.state_hash;
        self.commit_min = op;
        self.commit_max = self.commit_max.max(op);
        self.state_missing = false;
        let bytes: Body = Body::from(transfer.bytes);
        let checkpoint = Checkpoint {
            header,
            checksum: transfer.checksum,
            state_hash: state.state_hash,
            bytes: bytes.clone(),
        };
        if self.checkpoints.len() == CHECKPOINTS_SERVED_MAX {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back(checkpoint);
        self.checkpoint_writing = Some(op);
        self.stats.state_transfers += 1;
        actions.push(Action::InstallCheckpoint {
            header,
            checksum: transfer.checksum,
            bytes,
        });
        actions.push(Action::Restored {
            op,
            state_hash: self.state_hash,
        });
        self.execute_committed(actions);
        self.repair(actions);
    }

    /// The application state, sessions and outbox a checkpoint holds, if restoring it
    /// reproduces it.
    fn restore_checkpoint(&self, state: &CheckpointState) -> Option<(A::State, Sessions, Outbox)> {
        let app_state = self.app.restore(&state.app).ok()?;
        if self.app.snapshot(&app_state) != state.app {
            return None;
        }
        let sessions = Sessions::decode(&state.sessions, self.config.sessions_max)?;
        let outbox = Outbox::decode(&state.outbox).filter(|o| o.encode() == state.outbox)?;
        if self.config.bug == Some(PlantedBug::RestoreGenesis) {
            return Some((self.app.genesis(), sessions, outbox));
        }
        Some((app_state, sessions, outbox))
    }
}

impl View {
    #[must_use]
    pub fn next(self) -> View {
        View(self.0 + 1)
    }
}
