//! The Redis protocol (RESP2) front end of the key-value application: a request parser, reply
//! writers, the typed command set, and its execution (per-shard engine commands and merged
//! replies, local commands, `CLUSTER` replies). `docs/internals/net.md` lists the subset and its limits.

pub mod cluster;
pub mod command;
pub mod execute;
pub mod parser;
pub mod plan;
pub mod table;
pub mod value;

pub use cluster::{NodeView, moved, node_id};
pub use command::{
    ClientQuery, ClusterQuery, CommandError, CommandQuery, RespCommand, SetCondition,
};
pub use execute::{Execution, REDIS_VERSION, RespSession, execute};
pub use parser::{RespLimits, RespParser};
pub use plan::{KvPlan, KvResult, ShardBatch, error_text};
pub use table::{COMMANDS, CommandSpec};
pub use value::{
    RespValue, write_array_len, write_bulk, write_error, write_integer, write_null, write_simple,
};
