//! The per-core runtime: one shard per thread, each with its own `io_uring` ring, plus the key
//! router. It owns what cannot be simulated and contains no protocol logic.
//!
//! The router's slot mapping lives here already; the reactor and node arrive with the node
//! issue.

/// Redis Cluster's hash-slot count: keys map to `CRC16(key) mod 16384`.
pub const HASH_SLOT_COUNT: u16 = 16384;
