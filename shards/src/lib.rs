//! The per-core runtime: one shard per thread, each with its own replica, journal, listeners
//! and connections, and no locks between them. It owns what cannot be simulated and contains no
//! protocol logic: the replica is the `chronon-engine` code the simulator runs.
//!
//! Each shard thread runs one event loop over its own I/O driver: an `io_uring` ring that
//! serves its sockets (accept, recv, send), its timers (the wait's timeout) and its doorbells
//! (eventfd reads: mail from other shards, and the disk's ring signalling completions), or,
//! where `io_uring` is blocked or the memlock limit too low, an epoll loop (`mio`) over the
//! same. The protocol code above the driver is the same on both paths.
//!
//! The router's slot mapping is pure and lives in `chronon_net::slots` (Redis Cluster's
//! `CRC16(key) mod 16384` with hash tags, and each shard's contiguous slot range), where the
//! RESP front end's `CLUSTER` replies use it too.

pub mod effects;
mod eventfd;
pub mod io;
pub mod node;
mod proxy;
pub mod shard;

pub use chronon_net::slots;
pub use effects::Sinks;
pub use io::{IoChoice, IoMode};
pub use node::{Node, NodeConfig, Stopper};
pub use shard::{ShardError, ShardSetup};
