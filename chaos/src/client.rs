//! A simulated client: registers a session, then issues one key-value command at a time,
//! retrying with the same request number until it learns the outcome. Every key-value call goes
//! into the history for the linearizability checker; some commands instead ask for a side
//! effect (an `Emit` to a sink, now or from a timer), which the effect checker follows.

use chronon_engine::app::EffectId;
use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::ids::{ClientId, RequestNumber, View};
use chronon_engine::rng::Rng;
use chronon_engine::vsr::{KernelEvent, Reply, ReplyError, Request, RequestKind};

use crate::history::{History, KvOp, KvOutcome};
use crate::options::{EffectOptions, TICK_NS};

/// The sinks simulated effects go to: several, so that one target's circuit breaker can open
/// while the others keep going.
pub const SINKS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Ticks a client waits for a reply before resending to every replica.
pub const CLIENT_TIMEOUT_TICKS: u64 = 40;

/// Where a client sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The replica it believes is primary.
    Primary(u8),
    /// Every replica (after a timeout).
    All,
}

#[derive(Clone, Debug)]
struct Pending {
    request: Request,
    /// The history entry, for commands.
    call: Option<usize>,
    op: Option<KvOp>,
    /// An effect command, or a retry of a dead-lettered effect (not in the history).
    effect: bool,
    sent_at: u64,
}

#[derive(Debug)]
pub struct SimClient {
    pub id: ClientId,
    shard: u16,
    replica_count: u8,
    registered: bool,
    next_request: u64,
    pending: Option<Pending>,
    view: View,
    pub requests_left: usize,
    wake_at: u64,
    /// Problems a checker should report (a reply no correct cluster sends).
    pub errors: Vec<String>,
    /// Commands whose outcome this client learned: (request, op).
    pub acknowledged: Vec<(ClientId, RequestNumber, KvOp)>,
    peers: (u64, u64),
    /// Times this client found its session evicted.
    pub evictions: u64,
    /// Ids of the effects this client caused, for retries of dead letters.
    effect_ids: Vec<EffectId>,
    /// Retries of dead letters the cluster accepted.
    pub revived: u64,
}

impl SimClient {
    #[must_use]
    pub fn new(
        id: ClientId,
        shard: u16,
        replica_count: u8,
        requests: usize,
        peers: (u64, u64),
    ) -> SimClient {
        SimClient {
            id,
            shard,
            replica_count,
            registered: false,
            next_request: 0,
            pending: None,
            view: View(0),
            requests_left: requests,
            wake_at: 0,
            errors: Vec::new(),
            acknowledged: Vec::new(),
            peers,
            evictions: 0,
            effect_ids: Vec::new(),
            revived: 0,
        }
    }

    #[must_use]
    pub fn is_done(&self) -> bool {
        self.requests_left == 0 && self.pending.is_none()
    }

    fn primary(&self) -> u8 {
        ((self.view.0 + u64::from(self.shard)) % u64::from(self.replica_count)) as u8
    }

    /// Advances the client; returns a request to send, if any.
    pub fn tick(
        &mut self,
        now: u64,
        rng: &mut Rng,
        keys: usize,
        effects: &EffectOptions,
        history: &mut History,
    ) -> Option<(Target, Request)> {
        if let Some(pending) = &mut self.pending {
            if now - pending.sent_at >= CLIENT_TIMEOUT_TICKS {
                pending.sent_at = now;
                return Some((Target::All, pending.request.clone()));
            }
            return None;
        }
        if self.requests_left == 0 || now < self.wake_at {
            return None;
        }
        let effect = self.registered && rng.chance(u64::from(effects.per_mille), 1000);
        let (kind, body, op, call) = if effect && !self.effect_ids.is_empty() && rng.chance(1, 8) {
            // Ask for a retry of one of this client's effects; it is rejected unless the effect
            // is dead-lettered.
            let id = self.effect_ids[rng.below(self.effect_ids.len() as u64) as usize];
            (
                RequestKind::Kernel,
                KernelEvent::Retry { id }.encode(),
                None,
                None,
            )
        } else if effect {
            let command = random_effect(rng, effects, self.id, self.next_request);
            (RequestKind::Command, command.encode(), None, None)
        } else if self.registered {
            let op = random_op(rng, keys, self.id, self.next_request, self.peers);
            let call = history.invoke(self.id.0, op.clone(), now);
            (
                RequestKind::Command,
                command_of(&op).encode(),
                Some(op),
                Some(call),
            )
        } else {
            (RequestKind::Register, Vec::new(), None, None)
        };
        let request = Request {
            client: self.id,
            request: RequestNumber(self.next_request),
            kind,
            body,
        };
        self.pending = Some(Pending {
            request: request.clone(),
            call,
            op,
            effect,
            sent_at: now,
        });
        Some((Target::Primary(self.primary()), request))
    }

    /// Handles a reply; returns a request to resend at once, if the reply redirects.
    pub fn on_reply(
        &mut self,
        now: u64,
        reply: Reply,
        history: &mut History,
    ) -> Option<(Target, Request)> {
        let pending = self.pending.as_ref()?;
        if reply.client != self.id || reply.request != pending.request.request {
            return None;
        }
        match reply.result {
            Ok(bytes) => self.complete(now, &bytes, history),
            Err(ReplyError::NotPrimary { view }) => {
                if view > self.view {
                    self.view = view;
                    return Some((Target::Primary(self.primary()), pending.request.clone()));
                }
            }
            Err(ReplyError::Rejected(_)) if pending.request.kind == RequestKind::Kernel => {
                // A retry of an effect that was not dead-lettered: nothing happened.
                self.complete(now, &[0], history);
            }
            Err(ReplyError::NoSession) => {
                // Evicted: the outcome is unknown (the call stays open in the history), and
                // the client must start over with a new identity.
                self.pending = None;
                self.evictions += 1;
                self.registered = false;
                self.next_request = 0;
                self.id = ClientId(self.id.0 + 1_000_000_000);
            }
            Err(other) => {
                self.errors
                    .push(format!("client {}: unexpected reply {other:?}", self.id));
                self.pending = None;
            }
        }
        None
    }

    fn complete(&mut self, now: u64, bytes: &[u8], history: &mut History) {
        let pending = self
            .pending
            .take()
            .expect("invariant: completing a pending request");
        self.next_request += 1;
        self.wake_at = now + 1;
        if pending.effect {
            self.requests_left = self.requests_left.saturating_sub(1);
            if pending.request.kind == RequestKind::Kernel {
                self.revived += u64::from(bytes.is_empty());
                return;
            }
            if let Some(KvReply::Effect(id)) = KvReply::decode(bytes) {
                // Timers are not dead-lettered; remembering them too is harmless.
                self.effect_ids.push(id);
            } else {
                self.errors.push(format!(
                    "client {}: an effect command got {bytes:?}",
                    self.id
                ));
            }
            return;
        }
        let (Some(call), Some(op)) = (pending.call, pending.op) else {
            self.registered = true;
            return;
        };
        self.requests_left = self.requests_left.saturating_sub(1);
        match KvReply::decode(bytes).and_then(outcome_of) {
            Some(outcome) => {
                if !op.returns_kind_of(&outcome) {
                    self.errors
                        .push(format!("client {}: {op:?} answered {outcome:?}", self.id));
                }
                history.complete(call, now, outcome);
                self.acknowledged
                    .push((self.id, pending.request.request, op));
            }
            None => self.errors.push(format!(
                "client {}: {op:?} got a reply that is undecodable or of a command the \
                 simulator never issues",
                self.id
            )),
        }
    }

    /// The client process dies: its open call stays unknown, and a new client takes over.
    pub fn crash(&mut self, new_id: ClientId) {
        if self
            .pending
            .take()
            .is_some_and(|p| p.call.is_some() || p.effect)
        {
            self.requests_left = self.requests_left.saturating_sub(1);
        }
        self.id = new_id;
        self.registered = false;
        self.next_request = 0;
    }
}

/// A random command. `peers` is the range of client ids in this shard, so that a
/// compare-and-set sometimes expects a value another client really wrote.
fn random_op(
    rng: &mut Rng,
    keys: usize,
    client: ClientId,
    request: u64,
    peers: (u64, u64),
) -> KvOp {
    let key = format!("k{}", rng.below(keys as u64)).into_bytes();
    // Values are unique per client and request, so a write applied twice is visible.
    let value = format!("{}-{request}", client.0).into_bytes();
    match rng.below(10) {
        0..=3 => KvOp::Get { key },
        4..=6 => KvOp::Put { key, value },
        7 => KvOp::Delete { key },
        _ => {
            let expected = if rng.chance(1, 3) {
                None
            } else {
                let peer = peers.0 + rng.below(peers.1 - peers.0 + 1);
                Some(format!("{peer}-{}", 1 + rng.below(8)).into_bytes())
            };
            KvOp::Cas {
                key,
                expected,
                new: value,
            }
        }
    }
}

/// An `Emit` to a random sink, or one a timer runs later. Payloads are unique per client and
/// request, so a delivery can be traced to the command that caused it.
fn random_effect(
    rng: &mut Rng,
    effects: &EffectOptions,
    client: ClientId,
    request: u64,
) -> KvCommand {
    let sink = SINKS[rng.below(SINKS.len() as u64) as usize].to_owned();
    let emit = KvCommand::Emit {
        sink,
        payload: format!("{}-{request}", client.0).into_bytes(),
    };
    if rng.chance(1, 3) {
        KvCommand::Schedule {
            delay_ns: TICK_NS * (1 + rng.below(effects.timer_ticks_max)),
            command: Box::new(emit),
        }
    } else {
        emit
    }
}

#[must_use]
pub fn command_of(op: &KvOp) -> KvCommand {
    match op.clone() {
        KvOp::Get { key } => KvCommand::Get { key },
        KvOp::Put { key, value } => KvCommand::Put { key, value },
        KvOp::Delete { key } => KvCommand::Delete { key },
        KvOp::Cas { key, expected, new } => KvCommand::Cas { key, expected, new },
    }
}

/// The history's outcome for `reply`; `None` for replies to commands the simulator never
/// issues.
fn outcome_of(reply: KvReply) -> Option<KvOutcome> {
    let outcome = match reply {
        KvReply::Value(value) => KvOutcome::Value(value),
        // The checker's register model does not (yet) use whether a Delete found its key.
        KvReply::Done | KvReply::Deleted(_) => KvOutcome::Done,
        KvReply::Cas { swapped, current } => KvOutcome::Cas { swapped, current },
        KvReply::Written(_) | KvReply::Integer(_) | KvReply::Exists(_) | KvReply::Effect(_) => {
            return None;
        }
    };
    Some(outcome)
}
