//! The application interface: what Chronon replicates and executes.
//!
//! An application is a deterministic state machine. Every replica applies the same committed
//! events, in the same order, with the same [`ApplyContext`], and must reach the same state.
//! Nothing in `apply` may read a clock, draw unseeded randomness or iterate a hash map.

pub mod codec;
pub mod kv;

use crate::checksum::Checksum;
use crate::ids::{Op, ShardId, Timestamp, View};

/// What `apply` knows besides the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    pub shard: ShardId,
    pub op: Op,
    pub view: View,
    /// Consensus time, assigned by the primary, identical on every replica.
    pub timestamp: Timestamp,
    /// Derived from the op's parent checksum and the op: randomness every replica agrees on.
    pub seed: u64,
    /// The ordinal the first effect this event returns will get: effect `i` of the returned
    /// list gets the id [`ApplyContext::effect_id`]`(i)`, so `apply` can tell a client the ids
    /// of the effects its command caused.
    pub effect_ordinal: u32,
}

impl ApplyContext {
    #[must_use]
    pub fn seed_for(parent: Checksum, op: Op) -> u64 {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(&parent.to_le_bytes());
        bytes[16..].copy_from_slice(&op.0.to_le_bytes());
        Checksum::of(&bytes).0 as u64
    }

    /// The id effect `index` of this event's returned list will get.
    #[must_use]
    pub fn effect_id(&self, index: u32) -> EffectId {
        EffectId {
            shard: self.shard,
            op: self.op,
            ordinal: self.effect_ordinal + index,
        }
    }
}

/// The stable name of one side effect: the op whose execution returned it and its position
/// among the effects that op returned. It never contains the view, so every attempt, by any
/// primary, carries the same id; a receiver deduplicates by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EffectId {
    pub shard: ShardId,
    pub op: Op,
    pub ordinal: u32,
}

impl EffectId {
    /// Bytes in [`EffectId::to_bytes`].
    pub const SIZE: usize = 14;

    /// A fixed-size little-endian encoding (shard, op, ordinal), for applications that keep
    /// ids in their state or snapshots.
    #[must_use]
    pub fn to_bytes(self) -> [u8; EffectId::SIZE] {
        let mut out = [0u8; EffectId::SIZE];
        out[..2].copy_from_slice(&self.shard.0.to_le_bytes());
        out[2..10].copy_from_slice(&self.op.0.to_le_bytes());
        out[10..].copy_from_slice(&self.ordinal.to_le_bytes());
        out
    }

    /// Reads [`EffectId::to_bytes`]'s encoding; `None` unless `bytes` is exactly that long.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<EffectId> {
        let bytes: &[u8; EffectId::SIZE] = bytes.try_into().ok()?;
        Some(EffectId {
            shard: ShardId(u16::from_le_bytes([bytes[0], bytes[1]])),
            op: Op(u64::from_le_bytes(bytes[2..10].try_into().ok()?)),
            ordinal: u32::from_le_bytes(bytes[10..].try_into().ok()?),
        })
    }
}

impl std::fmt::Display for EffectId {
    /// The form sent as `Idempotency-Key`: `chronon-<shard>-<op>-<ordinal>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chronon-{}-{}-{}", self.shard, self.op, self.ordinal)
    }
}

impl std::str::FromStr for EffectId {
    type Err = String;

    /// Parses the `Display` form, `chronon-<shard>-<op>-<ordinal>`.
    fn from_str(text: &str) -> Result<EffectId, String> {
        let bad = || format!("{text:?} is not an effect id (chronon-<shard>-<op>-<ordinal>)");
        let rest = text.strip_prefix("chronon-").ok_or_else(bad)?;
        let mut parts = rest.split('-');
        let (Some(shard), Some(op), Some(ordinal), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(EffectId {
            shard: ShardId(shard.parse().map_err(|_| bad())?),
            op: Op(op.parse().map_err(|_| bad())?),
            ordinal: ordinal.parse().map_err(|_| bad())?,
        })
    }
}

/// What `apply` is asked to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A client's command.
    Command(&'a [u8]),
    /// A timer the application scheduled with [`SideEffect::Schedule`] came due: consensus
    /// time passed its `at`. Each timer fires exactly once.
    Timer { id: EffectId, payload: &'a [u8] },
    /// An effect was carried out; `response` is what the receiver answered (an HTTP body, or
    /// what a sink returned).
    EffectCompleted { id: EffectId, response: &'a [u8] },
    /// An effect failed on every attempt the retry policy allows and is now dead-lettered. It
    /// can still be retried by command; a later success then arrives as `EffectCompleted`.
    EffectFailed { id: EffectId, error: &'a str },
}

/// A side effect an application asks Chronon to carry out. The kernel records it in the
/// replicated outbox and executes it under the primary's fenced authority (`docs/internals/
/// outbox.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideEffect {
    Emit {
        sink: String,
        payload: Vec<u8>,
    },
    Schedule {
        at: Timestamp,
        payload: Vec<u8>,
    },
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// The result of applying one event.
#[derive(Clone, Debug)]
pub struct Applied<S> {
    pub state: S,
    /// Returned to the client that sent the event (discarded for events the kernel feeds in:
    /// timers and effect outcomes).
    pub reply: Vec<u8>,
    pub effects: Vec<SideEffect>,
}

/// A replicated application. `apply` is deterministic; an `Err` rejects that one event on every
/// replica alike (the client gets the error; the state and effects of the failed call are
/// discarded), and a panic halts the shard with a message naming the op (a poison pill: the
/// replicas stop rather than diverge).
pub trait ChrApplication {
    /// Cheap to clone: `apply` returns a new state from a shared one.
    type State: Clone;
    type Error: std::fmt::Display;

    fn genesis(&self) -> Self::State;

    fn apply(
        &self,
        state: &Self::State,
        event: Event<'_>,
        context: &ApplyContext,
    ) -> Result<Applied<Self::State>, Self::Error>;

    fn query(&self, state: &Self::State, query: &[u8]) -> Result<Vec<u8>, Self::Error>;

    fn snapshot(&self, state: &Self::State) -> Vec<u8>;

    fn restore(&self, snapshot: &[u8]) -> Result<Self::State, Self::Error>;
}
