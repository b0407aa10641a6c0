//! The outbox: the side effects an application asked for, as replicated state.
//!
//! Every replica updates its outbox only by executing committed ops, so every replica (and every
//! future primary) agrees on which effects are pending, which completed, which are dead-lettered,
//! which timers are armed and how each target's circuit breaker stands. The primary alone
//! *executes* pending effects, from this state; what happened comes back as a kernel event
//! through the log ([`KernelEvent`]), and only its execution changes the outbox. Retry delays
//! and jitter are computed from the consensus timestamp and the op's seed, so they are the same
//! on every replica. `docs/internals/outbox.md` describes the protocol and its guarantee.

use std::collections::{BTreeMap, BTreeSet};

use crate::app::codec::{Reader, put_bytes, put_u64};
use crate::app::{EffectId, SideEffect};
use crate::ids::{Timestamp, View};

/// The retry policy. Part of every replica's configuration; replicas of a group must agree on
/// it, as on every other input of `execute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectPolicy {
    /// Failed attempts after which an effect is dead-lettered.
    pub attempts_max: u32,
    /// The delay before the second attempt; it doubles per failure up to `backoff_max_ns`.
    pub backoff_base_ns: u64,
    pub backoff_max_ns: u64,
    /// Consecutive failures of one target that open its circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker holds back every effect to its target; the first attempt after
    /// it is the probe (half-open): a success closes the breaker, a failure opens it again.
    pub breaker_cooldown_ns: u64,
    /// Attempts a primary keeps in flight at once (not replicated; a bound on the host's work).
    pub in_flight_max: usize,
}

impl Default for EffectPolicy {
    fn default() -> EffectPolicy {
        EffectPolicy {
            attempts_max: 10,
            backoff_base_ns: 100_000_000,
            backoff_max_ns: 60_000_000_000,
            breaker_threshold: 5,
            breaker_cooldown_ns: 5_000_000_000,
            in_flight_max: 64,
        }
    }
}

/// An effect waiting for a successful attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEffect {
    pub effect: SideEffect,
    /// Failed attempts committed so far; the next attempt is number `failures + 1`, so attempt
    /// numbers never repeat, across views and revivals alike.
    pub failures: u32,
    /// `failures` when this life of the effect began: 0, or the count at its last revival from
    /// the dead letters. The retry budget and the backoff count from here.
    pub life_start: u32,
    /// No attempt before this consensus time (the backoff).
    pub not_before: Timestamp,
    pub last_error: Option<String>,
}

impl PendingEffect {
    /// The number the next attempt carries.
    #[must_use]
    pub fn next_attempt(&self) -> u32 {
        self.failures + 1
    }
}

/// An effect that failed `attempts_max` times; kept until retried by command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadEffect {
    pub effect: SideEffect,
    pub failures: u32,
    pub error: String,
    /// When it was dead-lettered (consensus time).
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub at: Timestamp,
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Timestamp,
}

/// Replicated counters, for `INFO` and summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub recorded: u64,
    pub completed: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub timers_fired: u64,
}

/// What the kernel feeds through the log about effects. Every variant is idempotent: applying
/// it twice changes nothing the second time, so a primary may propose it again after a lost
/// message or a view change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// The outcome of attempt `attempt` of effect `id`, made by the primary of `view`.
    Outcome {
        id: EffectId,
        view: View,
        attempt: u32,
        result: Result<Vec<u8>, String>,
    },
    /// Consensus time passed the timer's `at`: fire it.
    Fire { id: EffectId },
    /// An operator asks to retry a dead-lettered effect (`RETRY` by command).
    Retry { id: EffectId },
}

/// What executing a kernel event did, for the application and the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Nothing,
    Completed {
        response: Vec<u8>,
    },
    /// A failed attempt; the effect stays pending.
    Failed,
    DeadLettered {
        error: String,
    },
    Fired {
        payload: Vec<u8>,
    },
    Revived,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outbox {
    pending: BTreeMap<EffectId, PendingEffect>,
    timers: BTreeMap<EffectId, Timer>,
    /// `timers` ordered by when they fire.
    timers_due: BTreeSet<(Timestamp, EffectId)>,
    dead: BTreeMap<EffectId, DeadEffect>,
    breakers: BTreeMap<String, Breaker>,
    counts: OutboxCounts,
}

/// The circuit-breaker key of an effect: the sink's name, or an HTTP URL's scheme and
/// authority.
#[must_use]
pub fn target_of(effect: &SideEffect) -> String {
    match effect {
        SideEffect::Emit { sink, .. } => format!("sink:{sink}"),
        SideEffect::Http { url, .. } => {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme);
            format!("{scheme}://{authority}")
        }
        SideEffect::Schedule { .. } => "timer".to_owned(),
    }
}

impl Outbox {
    #[must_use]
    pub fn counts(&self) -> OutboxCounts {
        self.counts
    }

    #[must_use]
    pub fn pending(&self) -> &BTreeMap<EffectId, PendingEffect> {
        &self.pending
    }

    #[must_use]
    pub fn dead(&self) -> &BTreeMap<EffectId, DeadEffect> {
        &self.dead
    }

    #[must_use]
    pub fn timers(&self) -> &BTreeMap<EffectId, Timer> {
        &self.timers
    }

    /// True if nothing waits: no pending effect and no armed timer.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.timers.is_empty()
    }

    /// Records an effect returned by `apply` at consensus time `now`.
    pub fn record(&mut self, id: EffectId, effect: SideEffect, now: Timestamp) {
        self.counts.recorded += 1;
        match effect {
            SideEffect::Schedule { at, payload } => {
                self.timers_due.insert((at, id));
                self.timers.insert(id, Timer { at, payload });
            }
            effect => {
                let pending = PendingEffect {
                    effect,
                    failures: 0,
                    life_start: 0,
                    not_before: now,
                    last_error: None,
                };
                self.pending.insert(id, pending);
            }
        }
    }

    /// Executes a committed kernel event at consensus time `now`; `seed` is the op's
    /// deterministic seed (for the retry jitter).
    pub fn execute(
        &mut self,
        event: &KernelEvent,
        now: Timestamp,
        seed: u64,
        policy: &EffectPolicy,
    ) -> Change {
        match event {
            KernelEvent::Outcome {
                id,
                attempt,
                result: Ok(response),
                ..
            } => self.complete(*id, *attempt, response),
            KernelEvent::Outcome {
                id,
                attempt,
                result: Err(error),
                ..
            } => self.fail(*id, *attempt, error, now, seed, policy),
            KernelEvent::Fire { id } => self.fire(*id, now),
            KernelEvent::Retry { id } => self.revive(*id, now),
        }
    }

    /// A success completes the effect whatever attempt reported it: it did happen. A late
    /// success of a dead-lettered effect completes it too.
    fn complete(&mut self, id: EffectId, _attempt: u32, response: &[u8]) -> Change {
        let effect = match (self.pending.remove(&id), self.dead.remove(&id)) {
            (Some(pending), _) => pending.effect,
            (None, Some(dead)) => dead.effect,
            (None, None) => return Change::Nothing,
        };
        self.breakers.remove(&target_of(&effect));
        self.counts.completed += 1;
        Change::Completed {
            response: response.to_vec(),
        }
    }

    /// A failure counts only for the attempt the outbox expects: an older attempt's failure
    /// (reported late, or by a deposed primary) was already counted or superseded.
    fn fail(
        &mut self,
        id: EffectId,
        attempt: u32,
        error: &str,
        now: Timestamp,
        seed: u64,
        policy: &EffectPolicy,
    ) -> Change {
        let Some(pending) = self.pending.get_mut(&id) else {
            return Change::Nothing;
        };
        if attempt != pending.next_attempt() {
            return Change::Nothing;
        }
        self.counts.failed_attempts += 1;
        pending.failures += 1;
        pending.last_error = Some(error.to_owned());
        let failures = pending.failures - pending.life_start;
        let total_failures = pending.failures;
        let target = target_of(&pending.effect);
        let breaker = self.breakers.entry(target).or_default();
        breaker.consecutive_failures += 1;
        if breaker.consecutive_failures >= policy.breaker_threshold {
            breaker.open_until = Timestamp(now.0.saturating_add(policy.breaker_cooldown_ns));
        }
        if failures >= policy.attempts_max {
            let pending = self
                .pending
                .remove(&id)
                .expect("invariant: the effect was pending above");
            self.dead.insert(
                id,
                DeadEffect {
                    effect: pending.effect,
                    failures: total_failures,
                    error: error.to_owned(),
                    at: now,
                },
            );
            self.counts.dead_lettered += 1;
            return Change::DeadLettered {
                error: error.to_owned(),
            };
        }
        let delay = backoff(failures, seed ^ u64::from(id.ordinal) ^ id.op.0, policy);
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.not_before = Timestamp(now.0.saturating_add(delay));
        }
        Change::Failed
    }

    /// Fires a timer whose time has come; a timer fires once, since firing removes it.
    fn fire(&mut self, id: EffectId, now: Timestamp) -> Change {
        match self.timers.get(&id) {
            Some(timer) if timer.at <= now => {
                let timer = self
                    .timers
                    .remove(&id)
                    .expect("invariant: the timer exists above");
                self.timers_due.remove(&(timer.at, id));
                self.counts.timers_fired += 1;
                Change::Fired {
                    payload: timer.payload,
                }
            }
            _ => Change::Nothing,
        }
    }

    /// Moves a dead-lettered effect back to pending with a fresh attempt budget; its attempt
    /// numbers go on from where they stopped.
    fn revive(&mut self, id: EffectId, now: Timestamp) -> Change {
        let Some(dead) = self.dead.remove(&id) else {
            return Change::Nothing;
        };
        self.breakers.remove(&target_of(&dead.effect));
        self.pending.insert(
            id,
            PendingEffect {
                effect: dead.effect,
                failures: dead.failures,
                life_start: dead.failures,
                not_before: now,
                last_error: Some(dead.error),
            },
        );
        Change::Revived
    }

    /// Pending effects a primary may attempt at time `now`: past their backoff, with their
    /// target's breaker closed (or past its cooldown, for the probe), oldest first.
    pub fn due(&self, now: Timestamp) -> impl Iterator<Item = (EffectId, &PendingEffect)> + '_ {
        self.pending.iter().filter_map(move |(id, pending)| {
            // Naming the target allocates: skip it while no target has failed.
            let open = !self.breakers.is_empty()
                && self
                    .breakers
                    .get(&target_of(&pending.effect))
                    .is_some_and(|b| b.open_until > now);
            (pending.not_before <= now && !open).then_some((*id, pending))
        })
    }

    /// Timers whose time has come at `now`, earliest first.
    pub fn timers_due(&self, now: Timestamp) -> impl Iterator<Item = EffectId> + '_ {
        self.timers_due
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, id)| *id)
    }

    /// The outbox as bytes, for checkpoints.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.pending.len() as u64);
        for (id, pending) in &self.pending {
            put_id(&mut out, *id);
            put_effect(&mut out, &pending.effect);
            out.extend_from_slice(&pending.failures.to_le_bytes());
            out.extend_from_slice(&pending.life_start.to_le_bytes());
            put_u64(&mut out, pending.not_before.0);
            put_option(&mut out, pending.last_error.as_deref());
        }
        put_u64(&mut out, self.timers.len() as u64);
        for (id, timer) in &self.timers {
            put_id(&mut out, *id);
            put_u64(&mut out, timer.at.0);
            put_bytes(&mut out, &timer.payload);
        }
        put_u64(&mut out, self.dead.len() as u64);
        for (id, dead) in &self.dead {
            put_id(&mut out, *id);
            put_effect(&mut out, &dead.effect);
            out.extend_from_slice(&dead.failures.to_le_bytes());
            put_bytes(&mut out, dead.error.as_bytes());
            put_u64(&mut out, dead.at.0);
        }
        put_u64(&mut out, self.breakers.len() as u64);
        for (target, breaker) in &self.breakers {
            put_bytes(&mut out, target.as_bytes());
            out.extend_from_slice(&breaker.consecutive_failures.to_le_bytes());
            put_u64(&mut out, breaker.open_until.0);
        }
        let c = self.counts;
        for count in [
            c.recorded,
            c.completed,
            c.failed_attempts,
            c.dead_lettered,
            c.timers_fired,
        ] {
            put_u64(&mut out, count);
        }
        out
    }

    /// Decodes [`Outbox::encode`]'s bytes; `None` if malformed.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Outbox> {
        let mut r = Reader::new(bytes);
        let mut outbox = Outbox::default();
        for _ in 0..r.u64()? {
            let id = read_id(&mut r)?;
            let pending = PendingEffect {
                effect: read_effect(&mut r)?,
                failures: r.u32()?,
                life_start: r.u32()?,
                not_before: Timestamp(r.u64()?),
                last_error: read_option(&mut r)?,
            };
            outbox.pending.insert(id, pending);
        }
        for _ in 0..r.u64()? {
            let id = read_id(&mut r)?;
            let at = Timestamp(r.u64()?);
            let payload = r.bytes()?.to_vec();
            outbox.timers_due.insert((at, id));
            outbox.timers.insert(id, Timer { at, payload });
        }
        for _ in 0..r.u64()? {
            let id = read_id(&mut r)?;
            let dead = DeadEffect {
                effect: read_effect(&mut r)?,
                failures: r.u32()?,
                error: read_string(&mut r)?,
                at: Timestamp(r.u64()?),
            };
            outbox.dead.insert(id, dead);
        }
        for _ in 0..r.u64()? {
            let target = read_string(&mut r)?;
            let breaker = Breaker {
                consecutive_failures: r.u32()?,
                open_until: Timestamp(r.u64()?),
            };
            outbox.breakers.insert(target, breaker);
        }
        outbox.counts = OutboxCounts {
            recorded: r.u64()?,
            completed: r.u64()?,
            failed_attempts: r.u64()?,
            dead_lettered: r.u64()?,
            timers_fired: r.u64()?,
        };
        r.is_empty().then_some(outbox)
    }
}

/// Exponential backoff with jitter: the cap doubles per failure from `backoff_base_ns` up to
/// `backoff_max_ns`, and the delay is drawn from its upper half, so retries of many effects
/// that failed together spread out without ever retrying at once.
#[must_use]
pub fn backoff(failures: u32, seed: u64, policy: &EffectPolicy) -> u64 {
    let doublings = failures.saturating_sub(1).min(40);
    let cap = policy
        .backoff_base_ns
        .saturating_mul(1u64 << doublings)
        .min(policy.backoff_max_ns)
        .max(1);
    let half = cap / 2;
    half + mix(seed) % (cap - half).max(1)
}

/// splitmix64's finalizer: spreads a seed's bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---- Encoding ----

fn put_id(out: &mut Vec<u8>, id: EffectId) {
    out.extend_from_slice(&id.to_bytes());
}

fn read_id(r: &mut Reader<'_>) -> Option<EffectId> {
    EffectId::from_bytes(r.take(EffectId::SIZE)?)
}

fn put_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
    }
}

/// Reads an optional string; the outer `None` means malformed input.
#[allow(clippy::option_option)]
fn read_option(r: &mut Reader<'_>) -> Option<Option<String>> {
    match r.u8()? {
        0 => Some(None),
        1 => Some(Some(read_string(r)?)),
        _ => None,
    }
}

fn read_string(r: &mut Reader<'_>) -> Option<String> {
    String::from_utf8(r.bytes()?.to_vec()).ok()
}

/// Appends a side effect's encoding.
pub fn put_effect(out: &mut Vec<u8>, effect: &SideEffect) {
    match effect {
        SideEffect::Emit { sink, payload } => {
            out.push(1);
            put_bytes(out, sink.as_bytes());
            put_bytes(out, payload);
        }
        SideEffect::Schedule { at, payload } => {
            out.push(2);
            put_u64(out, at.0);
            put_bytes(out, payload);
        }
        SideEffect::Http {
            method,
            url,
            headers,
            body,
        } => {
            out.push(3);
            put_bytes(out, method.as_bytes());
            put_bytes(out, url.as_bytes());
            put_u64(out, headers.len() as u64);
            for (name, value) in headers {
                put_bytes(out, name.as_bytes());
                put_bytes(out, value.as_bytes());
            }
            put_bytes(out, body);
        }
    }
}

/// Reads a side effect written by [`put_effect`]; `None` if malformed.
pub fn read_effect(r: &mut Reader<'_>) -> Option<SideEffect> {
    let effect = match r.u8()? {
        1 => SideEffect::Emit {
            sink: read_string(r)?,
            payload: r.bytes()?.to_vec(),
        },
        2 => SideEffect::Schedule {
            at: Timestamp(r.u64()?),
            payload: r.bytes()?.to_vec(),
        },
        3 => {
            let method = read_string(r)?;
            let url = read_string(r)?;
            let count = r.u64()?;
            let mut headers = Vec::new();
            for _ in 0..count {
                headers.push((read_string(r)?, read_string(r)?));
            }
            SideEffect::Http {
                method,
                url,
                headers,
                body: r.bytes()?.to_vec(),
            }
        }
        _ => return None,
    };
    Some(effect)
}

impl KernelEvent {
    /// The effect or timer the event is about.
    #[must_use]
    pub fn id(&self) -> EffectId {
        match self {
            KernelEvent::Outcome { id, .. }
            | KernelEvent::Fire { id }
            | KernelEvent::Retry { id } => *id,
        }
    }

    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            KernelEvent::Outcome {
                id,
                view,
                attempt,
                result,
            } => {
                out.push(1);
                put_id(&mut out, *id);
                put_u64(&mut out, view.0);
                out.extend_from_slice(&attempt.to_le_bytes());
                match result {
                    Ok(response) => {
                        out.push(0);
                        put_bytes(&mut out, response);
                    }
                    Err(error) => {
                        out.push(1);
                        put_bytes(&mut out, error.as_bytes());
                    }
                }
            }
            KernelEvent::Fire { id } => {
                out.push(2);
                put_id(&mut out, *id);
            }
            KernelEvent::Retry { id } => {
                out.push(3);
                put_id(&mut out, *id);
            }
        }
        out
    }

    /// Decodes [`KernelEvent::encode`]'s bytes; `None` if malformed (never panics: a client may
    /// send a `Retry`).
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<KernelEvent> {
        let mut r = Reader::new(bytes);
        let event = match r.u8()? {
            1 => {
                let id = read_id(&mut r)?;
                let view = View(r.u64()?);
                let attempt = r.u32()?;
                let result = match r.u8()? {
                    0 => Ok(r.bytes()?.to_vec()),
                    1 => Err(read_string(&mut r)?),
                    _ => return None,
                };
                KernelEvent::Outcome {
                    id,
                    view,
                    attempt,
                    result,
                }
            }
            2 => KernelEvent::Fire {
                id: read_id(&mut r)?,
            },
            3 => KernelEvent::Retry {
                id: read_id(&mut r)?,
            },
            _ => return None,
        };
        r.is_empty().then_some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Op, ShardId};

    fn id(op: u64, ordinal: u32) -> EffectId {
        EffectId {
            shard: ShardId(1),
            op: Op(op),
            ordinal,
        }
    }

    fn emit(sink: &str) -> SideEffect {
        SideEffect::Emit {
            sink: sink.to_owned(),
            payload: b"p".to_vec(),
        }
    }

    fn outcome(id: EffectId, attempt: u32, result: Result<&[u8], &str>) -> KernelEvent {
        KernelEvent::Outcome {
            id,
            view: View(3),
            attempt,
            result: result.map(<[u8]>::to_vec).map_err(str::to_owned),
        }
    }

    #[test]
    fn an_effect_completes_once_and_stale_failures_do_not_count() {
        let policy = EffectPolicy::default();
        let mut outbox = Outbox::default();
        let e = id(5, 0);
        outbox.record(e, emit("a"), Timestamp(10));
        assert_eq!(outbox.due(Timestamp(10)).count(), 1);
        // Attempt 2's failure before attempt 1's is stale.
        let stale = outbox.execute(&outcome(e, 2, Err("x")), Timestamp(11), 7, &policy);
        assert_eq!(stale, Change::Nothing);
        let failed = outbox.execute(&outcome(e, 1, Err("x")), Timestamp(11), 7, &policy);
        assert_eq!(failed, Change::Failed);
        // The same failure again (a re-proposal) changes nothing.
        let again = outbox.execute(&outcome(e, 1, Err("x")), Timestamp(12), 7, &policy);
        assert_eq!(again, Change::Nothing);
        let pending = &outbox.pending()[&e];
        assert_eq!(pending.next_attempt(), 2);
        assert!(pending.not_before.0 >= 11 + policy.backoff_base_ns / 2);
        assert_eq!(outbox.due(Timestamp(12)).count(), 0, "backing off");
        // A success from the old attempt still completes it; a second success is a no-op.
        let done = outbox.execute(&outcome(e, 1, Ok(b"r")), Timestamp(13), 7, &policy);
        assert_eq!(
            done,
            Change::Completed {
                response: b"r".to_vec()
            }
        );
        let twice = outbox.execute(&outcome(e, 2, Ok(b"r")), Timestamp(14), 7, &policy);
        assert_eq!(twice, Change::Nothing);
        assert!(outbox.is_idle());
        assert_eq!(outbox.counts().completed, 1);
    }

    #[test]
    fn dead_letter_after_the_budget_and_retry_by_command() {
        let policy = EffectPolicy {
            attempts_max: 3,
            breaker_threshold: 100,
            ..EffectPolicy::default()
        };
        let mut outbox = Outbox::default();
        let e = id(9, 2);
        outbox.record(e, emit("a"), Timestamp(0));
        let mut now = Timestamp(0);
        for attempt in 1..=3 {
            now = Timestamp(now.0 + policy.backoff_max_ns);
            let change = outbox.execute(&outcome(e, attempt, Err("down")), now, 1, &policy);
            let expected = if attempt < 3 {
                Change::Failed
            } else {
                Change::DeadLettered {
                    error: "down".to_owned(),
                }
            };
            assert_eq!(change, expected);
        }
        assert!(outbox.pending().is_empty());
        assert_eq!(outbox.dead()[&e].failures, 3);
        assert_eq!(
            outbox.execute(&KernelEvent::Retry { id: e }, now, 1, &policy),
            Change::Revived
        );
        assert_eq!(outbox.pending()[&e].next_attempt(), 4, "numbers go on");
        assert_eq!(outbox.due(now).count(), 1);
    }

    #[test]
    fn a_breaker_holds_back_a_failing_target_only() {
        let policy = EffectPolicy {
            breaker_threshold: 2,
            ..EffectPolicy::default()
        };
        let mut outbox = Outbox::default();
        let (a1, a2, b) = (id(1, 0), id(1, 1), id(1, 2));
        outbox.record(a1, emit("a"), Timestamp(0));
        outbox.record(a2, emit("a"), Timestamp(0));
        outbox.record(b, emit("b"), Timestamp(0));
        outbox.execute(&outcome(a1, 1, Err("x")), Timestamp(1), 1, &policy);
        outbox.execute(&outcome(a2, 1, Err("x")), Timestamp(1), 2, &policy);
        let later = Timestamp(1 + policy.backoff_base_ns);
        let due: Vec<EffectId> = outbox.due(later).map(|(id, _)| id).collect();
        assert_eq!(due, vec![b], "target a's breaker is open");
        let after = Timestamp(1 + policy.breaker_cooldown_ns + policy.backoff_max_ns);
        assert_eq!(outbox.due(after).count(), 3, "cooldown over: probes go out");
        outbox.execute(&outcome(a1, 2, Ok(b"")), after, 3, &policy);
        assert_eq!(outbox.breakers.get("sink:a"), None, "a success closes it");
    }

    #[test]
    fn timers_fire_once_and_not_early() {
        let policy = EffectPolicy::default();
        let mut outbox = Outbox::default();
        let t = id(4, 0);
        let timer = SideEffect::Schedule {
            at: Timestamp(100),
            payload: b"wake".to_vec(),
        };
        outbox.record(t, timer, Timestamp(1));
        assert_eq!(outbox.timers_due(Timestamp(99)).count(), 0);
        let early = outbox.execute(&KernelEvent::Fire { id: t }, Timestamp(99), 0, &policy);
        assert_eq!(early, Change::Nothing);
        assert_eq!(
            outbox.timers_due(Timestamp(100)).collect::<Vec<_>>(),
            vec![t]
        );
        let fired = outbox.execute(&KernelEvent::Fire { id: t }, Timestamp(100), 0, &policy);
        assert_eq!(
            fired,
            Change::Fired {
                payload: b"wake".to_vec()
            }
        );
        let again = outbox.execute(&KernelEvent::Fire { id: t }, Timestamp(101), 0, &policy);
        assert_eq!(again, Change::Nothing);
        assert!(outbox.is_idle());
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        let policy = EffectPolicy::default();
        for failures in 1..30 {
            for seed in 0..20 {
                let delay = backoff(failures, seed, &policy);
                let cap =
                    (policy.backoff_base_ns << (failures - 1).min(40)).min(policy.backoff_max_ns);
                assert!(
                    delay >= cap / 2 && delay <= cap,
                    "{failures} {seed} {delay}"
                );
            }
        }
    }

    #[test]
    fn encodings_roundtrip_and_reject_junk() {
        let policy = EffectPolicy::default();
        let mut outbox = Outbox::default();
        outbox.record(id(1, 0), emit("a"), Timestamp(3));
        let http = SideEffect::Http {
            method: "POST".to_owned(),
            url: "http://127.0.0.1:9/hook?x=1".to_owned(),
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: b"body".to_vec(),
        };
        assert_eq!(target_of(&http), "http://127.0.0.1:9");
        outbox.record(id(1, 1), http, Timestamp(3));
        outbox.record(
            id(2, 0),
            SideEffect::Schedule {
                at: Timestamp(50),
                payload: vec![1, 2],
            },
            Timestamp(3),
        );
        outbox.execute(&outcome(id(1, 0), 1, Err("e")), Timestamp(4), 5, &policy);
        let bytes = outbox.encode();
        assert_eq!(Outbox::decode(&bytes), Some(outbox));
        for len in 0..bytes.len() {
            assert_eq!(Outbox::decode(&bytes[..len]), None);
        }
        for event in [
            outcome(id(7, 1), 2, Ok(b"ok")),
            outcome(id(7, 1), 3, Err("no")),
            KernelEvent::Fire { id: id(8, 0) },
            KernelEvent::Retry { id: id(8, 1) },
        ] {
            let bytes = event.encode();
            assert_eq!(KernelEvent::decode(&bytes), Some(event));
            for len in 0..bytes.len() {
                assert_eq!(KernelEvent::decode(&bytes[..len]), None);
            }
        }
        assert_eq!(KernelEvent::decode(&[9, 9, 9]), None);
    }

    #[test]
    fn effect_ids_print_and_parse() {
        let e = id(123, 4);
        assert_eq!(EffectId::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(EffectId::from_bytes(&e.to_bytes()[1..]), None);
        assert_eq!(e.to_string(), "chronon-1-123-4");
        assert_eq!("chronon-1-123-4".parse::<EffectId>(), Ok(e));
        for junk in [
            "",
            "chronon-1-2",
            "chronon-1-2-3-4",
            "x-1-2-3",
            "chronon-a-2-3",
        ] {
            assert!(junk.parse::<EffectId>().is_err(), "{junk}");
        }
    }
}
