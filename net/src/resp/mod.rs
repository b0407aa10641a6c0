//! The Redis protocol (RESP2) front end of the key-value application: a request parser, reply
//! writers and the typed command set. `docs/internals/net.md` lists the subset and its limits.

pub mod command;
pub mod parser;
pub mod table;
pub mod value;

pub use command::{
    ClientQuery, ClusterQuery, CommandError, CommandQuery, KvPlan, RespCommand, SetCondition,
};
pub use parser::{RespLimits, RespParser};
pub use table::{COMMANDS, CommandSpec};
pub use value::{
    RespValue, write_array_len, write_bulk, write_error, write_integer, write_null, write_simple,
};
