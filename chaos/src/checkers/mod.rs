//! The simulator's checkers, one file per property. Each records what it needs while the run
//! goes and reports a violation as a sentence naming the shard, replica and op.
//!
//! - `linearizability` (in `crate::linearizability`): the client history is linearizable per
//!   key (Herlihy & Wing 1990).
//! - [`acknowledged`]: no acknowledged request is missing from the committed log.
//! - [`prefix`]: replicas agree on every committed op (VRR §4's safety property).
//! - [`state_hash`]: replicas that executed the same op have the same state hash.
//! - [`chain`]: every replica's log, in memory and on disk, is an unbroken hash chain.
//! - [`checkpoint`]: replicas' checkpoints at the same op are identical.
//! - [`exactly_once`]: no client request is applied twice, and all replicas apply each at
//!   the same op.
//! - [`effects`]: effects are attempted only under a durable primary view, never invented,
//!   settled once and the same way everywhere, and all settled once faults heal.

pub mod acknowledged;
pub mod chain;
pub mod checkpoint;
pub mod effects;
pub mod exactly_once;
pub mod prefix;
pub mod state_hash;
