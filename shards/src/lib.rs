//! The per-core runtime: one shard per thread, each with its own replica, journal, listeners
//! and connections, and no locks between them. It owns what cannot be simulated and contains no
//! protocol logic: the replica is the `chronon-engine` code the simulator runs.
//!
//! Each shard thread runs one readiness loop (epoll, through `mio`) over its sockets, its
//! inbox from the other shards, its clock and its disk: an `io_uring` disk rings an eventfd on
//! every completion, so the loop sleeps in epoll and still wakes for the journal.
//!
//! The router's slot mapping is pure and lives in `chronon_net::slots` (Redis Cluster's
//! `CRC16(key) mod 16384` with hash tags, and each shard's contiguous slot range), where the
//! RESP front end's `CLUSTER` replies use it too.

mod conn;
pub mod effects;
mod eventfd;
pub mod node;
mod proxy;
pub mod shard;

pub use chronon_net::slots;
pub use effects::Sinks;
pub use node::{Node, NodeConfig, Stopper};
pub use shard::{ShardError, ShardSetup};
