//! Chronon's deterministic core.
//!
//! Nothing here does I/O, reads a clock, sleeps or spawns a thread: disks reach the engine
//! through the [`disk::VirtualDisk`] seam, and the same code runs in production and in the
//! simulator.
#![forbid(unsafe_code)]

pub mod app;
pub mod checksum;
pub mod constants;
pub mod disk;
pub mod ids;
pub mod log;
pub mod rng;
pub mod vsr;

pub use checksum::Checksum;
pub use ids::{
    ClientId, ClusterId, CommitIndex, Op, ReplicaIndex, RequestNumber, ShardId, Timestamp, View,
};
