//! Exactly-once effects (DESIGN.md section 1's guarantee, checked as section 8 lists it):
//!
//! - fencing: no attempt comes from a replica that is not the primary of a view it holds
//!   durably (its superblock says view = log view = the attempt's view);
//! - no phantom: every attempt, and every delivery a sink saw, is of an effect a committed op
//!   recorded, with the id and payload that op gave it (identical across retries and views);
//! - determinism: every replica records the same effect under an id and settles it the same
//!   way at the same op; each replica fires a timer and settles an effect at most once per
//!   incarnation;
//! - delivery: once faults heal, every recorded effect has a committed outcome (completed or
//!   dead-lettered) and every timer has fired; every completed effect reached the sink, which,
//!   deduplicating by id, holds each exactly once.

use std::collections::{BTreeMap, BTreeSet};

use chronon_engine::app::{EffectId, SideEffect};
use chronon_engine::ids::{Op, View};
use chronon_engine::vsr::Outboxed;

/// How an effect was settled, by the op that settled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Completed(Op),
    DeadLettered(Op),
    Fired(Op),
}

/// An effect's life: its id and how many times a dead letter of it was revived before.
type Generation = (EffectId, u32);

#[derive(Debug, Default)]
pub struct EffectChecker {
    recorded: BTreeMap<EffectId, SideEffect>,
    settled: BTreeMap<Generation, Settled>,
    /// Per replica, what its current incarnation settled.
    settled_by: BTreeMap<u8, BTreeSet<Generation>>,
    /// Per generation, the op that revived it (the same on every replica). An event's
    /// generation follows from its op: the revivals of its id at earlier ops. (A replica
    /// restored from a checkpoint never sees the revivals before it, so counting what each
    /// replica saw would not do.)
    revived_at: BTreeMap<Generation, Op>,
    /// The deduplicating sink: each effect id once, with its payload.
    delivered: BTreeMap<EffectId, Vec<u8>>,
    pub attempts: u64,
    /// Every attempt: (id, fence, attempt number).
    attempt_log: BTreeSet<(EffectId, View, u32)>,
    pub deliveries: u64,
    /// Deliveries the sink dropped as duplicates of an id it already had.
    pub duplicates: u64,
}

impl EffectChecker {
    /// A replica restarted: it executes its log again.
    pub fn restarted(&mut self, replica: u8) {
        self.settled_by.remove(&replica);
    }

    /// The outbox of `replica` changed at `op`.
    pub fn outboxed(
        &mut self,
        replica: u8,
        op: Op,
        id: EffectId,
        event: Outboxed,
    ) -> Result<(), String> {
        let settled = match event {
            Outboxed::Recorded(effect) => {
                if id.op != op {
                    return Err(format!(
                        "replica {replica} recorded effect {id} while executing op {op}"
                    ));
                }
                return match self.recorded.get(&id) {
                    Some(first) if *first != effect => Err(format!(
                        "replica {replica} recorded effect {id} as {effect:?}, another replica \
                         as {first:?}"
                    )),
                    Some(_) => Ok(()),
                    None => {
                        self.recorded.insert(id, effect);
                        Ok(())
                    }
                };
            }
            Outboxed::Completed => Settled::Completed(op),
            Outboxed::DeadLettered => Settled::DeadLettered(op),
            Outboxed::TimerFired => Settled::Fired(op),
            Outboxed::Revived => {
                let generation = self.generation(id, op);
                if !matches!(
                    self.settled.get(&generation),
                    Some(Settled::DeadLettered(_))
                ) {
                    return Err(format!(
                        "replica {replica} revived effect {id} at op {op}, which was not \
                         dead-lettered"
                    ));
                }
                let first = *self.revived_at.entry(generation).or_insert(op);
                if first != op {
                    return Err(format!(
                        "replica {replica} revived effect {id} at op {op}, another at op {first}"
                    ));
                }
                return Ok(());
            }
        };
        let generation = self.generation(id, op);
        if !self
            .settled_by
            .entry(replica)
            .or_default()
            .insert(generation)
        {
            return Err(format!(
                "replica {replica} settled effect {id} twice (again at op {op}: {settled:?})"
            ));
        }
        match self.settled.get(&generation) {
            Some(first) if *first != settled => Err(format!(
                "effect {id}: replica {replica} settled it as {settled:?}, another replica as \
                 {first:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.settled.insert(generation, settled);
                Ok(())
            }
        }
    }

    /// The life of `id` that an event at `op` belongs to.
    fn generation(&self, id: EffectId, op: Op) -> Generation {
        let revivals = self
            .revived_at
            .range((id, 0)..=(id, u32::MAX))
            .filter(|(_, at)| **at < op)
            .count();
        (id, u32::try_from(revivals).unwrap_or(u32::MAX))
    }

    /// `replica` attempts an effect as primary of `view`; `durable` is the view state its
    /// superblock holds (view, log view) and `primary` the primary of `view`.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt(
        &mut self,
        replica: u8,
        id: EffectId,
        view: View,
        attempt: u32,
        effect: &SideEffect,
        durable: Option<(View, View)>,
        primary: u8,
    ) -> Result<(), String> {
        self.attempts += 1;
        // Every attempt, as the sink saw it: the same (id, fence, attempt) twice would mean a
        // primary started one attempt twice.
        if !self.attempt_log.insert((id, view, attempt)) {
            return Err(format!(
                "replica {replica} made attempt {attempt} of effect {id} under fence {view} twice"
            ));
        }
        if attempt == 0 {
            return Err(format!("replica {replica} numbered an attempt of {id} 0"));
        }
        if primary != replica || durable != Some((view, view)) {
            return Err(format!(
                "replica {replica} attempted effect {id} with fence view {view}, but the primary \
                 of that view is replica {primary} and its durable view state (view, log view) \
                 is {durable:?}"
            ));
        }
        match self.recorded.get(&id) {
            None => Err(format!(
                "replica {replica} attempted effect {id}, which no committed op recorded"
            )),
            Some(recorded) if recorded != effect => Err(format!(
                "replica {replica} attempted effect {id} as {effect:?}, but it was recorded as \
                 {recorded:?}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// The sink received an attempt's payload. It deduplicates by id.
    pub fn deliver(&mut self, id: EffectId, payload: &[u8]) -> Result<(), String> {
        self.deliveries += 1;
        match self.delivered.get(&id) {
            Some(first) if first != payload => Err(format!(
                "the sink received effect {id} twice with different payloads"
            )),
            Some(_) => {
                self.duplicates += 1;
                Ok(())
            }
            None => {
                self.delivered.insert(id, payload.to_vec());
                Ok(())
            }
        }
    }

    /// After the liveness phase: everything recorded settled, completions reached the sink,
    /// and the sink holds nothing that was never recorded.
    pub fn check_final(&self) -> Result<(), String> {
        for (id, effect) in &self.recorded {
            // The last life of the effect decides.
            let settled = self
                .settled
                .range((*id, 0)..=(*id, u32::MAX))
                .next_back()
                .map(|(_, s)| s)
                .filter(|_| {
                    let revivals = self.revived_at.range((*id, 0)..=(*id, u32::MAX)).count();
                    let lives = self.settled.range((*id, 0)..=(*id, u32::MAX)).count();
                    lives > revivals
                });
            match (effect, settled) {
                (SideEffect::Schedule { .. }, Some(Settled::Fired(_)))
                | (
                    SideEffect::Emit { .. } | SideEffect::Http { .. },
                    Some(Settled::DeadLettered(_)),
                ) => {}
                (
                    SideEffect::Emit { .. } | SideEffect::Http { .. },
                    Some(Settled::Completed(_)),
                ) => {
                    if !self.delivered.contains_key(id) {
                        return Err(format!(
                            "effect {id} was committed as completed, but the sink never \
                             received it"
                        ));
                    }
                }
                (effect, settled) => {
                    return Err(format!(
                        "effect {id} ({effect:?}) has no committed outcome after the liveness \
                         phase (settled: {settled:?})"
                    ));
                }
            }
        }
        if let Some(id) = self
            .delivered
            .keys()
            .find(|id| !self.recorded.contains_key(id))
        {
            return Err(format!(
                "the sink received effect {id}, which no op recorded"
            ));
        }
        Ok(())
    }

    /// Dead letters revived by clients' retries.
    #[must_use]
    pub fn revivals(&self) -> u64 {
        self.revived_at.len() as u64
    }

    /// Effects recorded, completed, dead-lettered (in their last life) and timers fired.
    #[must_use]
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let count = |f: fn(&Settled) -> bool| {
            let last: BTreeMap<EffectId, &Settled> =
                self.settled.iter().map(|((id, _), s)| (*id, s)).collect();
            last.values().filter(|s| f(s)).count() as u64
        };
        (
            self.recorded.len() as u64,
            count(|s| matches!(s, Settled::Completed(_))),
            count(|s| matches!(s, Settled::DeadLettered(_))),
            count(|s| matches!(s, Settled::Fired(_))),
        )
    }
}
