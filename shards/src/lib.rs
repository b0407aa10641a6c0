//! The per-core runtime: one shard per thread, each with its own `io_uring` ring, plus the key
//! router. It owns what cannot be simulated and contains no protocol logic.
//!
//! The router's slot mapping is pure and lives in `chronon_net::slots` (Redis Cluster's
//! `CRC16(key) mod 16384` with hash tags, and each shard's contiguous slot range), where the
//! RESP front end's `CLUSTER` replies use it too. The reactor and node arrive with the node
//! issue.

pub use chronon_net::slots;
