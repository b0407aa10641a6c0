//! The commands the RESP front end knows, with Redis' arity convention (a positive arity is
//! the exact argument count, the command's name included; a negative one is a minimum). The
//! same table checks arity and answers `COMMAND`, so the two never disagree.

use crate::resp::value::RespValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower case, as `COMMAND` reports it.
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// Positions of the first and last key argument and the step between keys (0 if none;
    /// a last of -1 means "through the last argument").
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);

pub const COMMANDS: &[CommandSpec] = &[
    spec("get", 2, &["readonly", "fast"], (1, 1, 1)),
    spec("set", -3, &["write", "denyoom"], (1, 1, 1)),
    spec("del", -2, &["write"], (1, -1, 1)),
    spec("exists", -2, &["readonly", "fast"], (1, -1, 1)),
    spec("incr", 2, &["write", "denyoom", "fast"], (1, 1, 1)),
    spec("incrby", 3, &["write", "denyoom", "fast"], (1, 1, 1)),
    spec("mget", -2, &["readonly", "fast"], (1, -1, 1)),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2)),
    spec("ping", -1, &["fast"], NO_KEYS),
    spec("echo", 2, &["fast"], NO_KEYS),
    spec("command", -1, &["loading", "stale"], NO_KEYS),
    spec("info", -1, &["loading", "stale"], NO_KEYS),
    spec(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast"],
        NO_KEYS,
    ),
    spec("client", -2, &["noscript", "loading", "stale"], NO_KEYS),
    spec("select", 2, &["loading", "stale", "fast"], NO_KEYS),
    spec("cluster", -2, &[], NO_KEYS),
    spec("readonly", 1, &["loading", "stale", "fast"], NO_KEYS),
    spec("readwrite", 1, &["loading", "stale", "fast"], NO_KEYS),
    spec(
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast"],
        NO_KEYS,
    ),
];

impl CommandSpec {
    /// The spec of `name`, in any case.
    #[must_use]
    pub fn find(name: &[u8]) -> Option<&'static CommandSpec> {
        COMMANDS
            .iter()
            .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
    }

    /// True if `count` arguments (the name included) satisfy the arity.
    #[must_use]
    pub fn accepts(&self, count: usize) -> bool {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            count == self.arity
        } else {
            count >= -self.arity
        }
    }

    /// This command's entry in a `COMMAND` or `COMMAND INFO` reply: name, arity, flags, key
    /// positions, then empty ACL categories, tips, key specs and subcommands.
    #[must_use]
    pub fn info(&self) -> RespValue {
        let flags = self
            .flags
            .iter()
            .map(|flag| RespValue::Simple((*flag).to_owned()))
            .collect();
        RespValue::Array(vec![
            RespValue::bulk(self.name),
            RespValue::Integer(self.arity),
            RespValue::Array(flags),
            RespValue::Integer(self.first_key),
            RespValue::Integer(self.last_key),
            RespValue::Integer(self.step),
            RespValue::Array(Vec::new()),
            RespValue::Array(Vec::new()),
            RespValue::Array(Vec::new()),
            RespValue::Array(Vec::new()),
        ])
    }
}
