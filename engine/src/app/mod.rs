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
}

impl ApplyContext {
    #[must_use]
    pub fn seed_for(parent: Checksum, op: Op) -> u64 {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(&parent.to_le_bytes());
        bytes[16..].copy_from_slice(&op.0.to_le_bytes());
        Checksum::of(&bytes).0 as u64
    }
}

/// A side effect an application asks Chronon to carry out. Executed by the kernel (the outbox);
/// until it lands, applications return none.
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
    /// Returned to the client that sent the event.
    pub reply: Vec<u8>,
    pub effects: Vec<SideEffect>,
}

/// A replicated application. `apply` is deterministic; an `Err` rejects that one event on every
/// replica alike (the client gets the error), and a panic halts the shard.
pub trait ChrApplication {
    /// Cheap to clone: `apply` returns a new state from a shared one.
    type State: Clone;
    type Error: std::fmt::Display;

    fn genesis(&self) -> Self::State;

    fn apply(
        &self,
        state: &Self::State,
        event: &[u8],
        context: &ApplyContext,
    ) -> Result<Applied<Self::State>, Self::Error>;

    fn query(&self, state: &Self::State, query: &[u8]) -> Result<Vec<u8>, Self::Error>;

    fn snapshot(&self, state: &Self::State) -> Vec<u8>;

    fn restore(&self, snapshot: &[u8]) -> Result<Self::State, Self::Error>;
}
