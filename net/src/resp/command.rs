//! Parsed arguments to a typed command, with Redis' wording for every error a client can
//! recover from. Such errors are replies: the connection stays open.

use crate::resp::parser::parse_i64;
use crate::resp::table::CommandSpec;

/// A command the client got wrong, as the error reply's text (`ERR ...`, `NOPROTO ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

type Bytes = Vec<u8>;

/// `SET`'s condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// `NX`: only if the key is absent.
    IfAbsent,
    /// `XX`: only if the key is present.
    IfPresent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: every command's info.
    All,
    Count,
    /// `COMMAND DOCS [name ...]`: answered with no docs.
    Docs(Vec<Bytes>),
    /// `COMMAND INFO [name ...]`.
    Info(Vec<Bytes>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientQuery {
    SetName(Bytes),
    GetName,
    Id,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`, which client libraries send on connect.
    SetInfo {
        attribute: Bytes,
        value: Bytes,
    },
    Info,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterQuery {
    Slots,
    Shards,
    Nodes,
    Info,
    KeySlot(Bytes),
    MyId,
}

/// A command of the RESP front end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespCommand {
    Get {
        key: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
    },
    Del {
        keys: Vec<Bytes>,
    },
    Exists {
        keys: Vec<Bytes>,
    },
    /// `INCR` is `INCRBY key 1`.
    IncrBy {
        key: Bytes,
        delta: i64,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
    },
    Ping {
        message: Option<Bytes>,
    },
    Echo {
        message: Bytes,
    },
    Command(CommandQuery),
    Info {
        sections: Vec<Bytes>,
    },
    /// `HELLO [2|3 [AUTH user pass] [SETNAME name]]`. RESP3 is spoken as far as the
    /// commands here need (its null and its map for `HELLO`); other versions get `NOPROTO`.
    Hello {
        protocol: Option<u8>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    },
    Client(ClientQuery),
    /// `SELECT 0`: the only database.
    Select,
    /// `READONLY`: this connection opts in to stale reads. `GET`, `MGET` and `EXISTS` of keys
    /// whose shard lives on the core the connection reached are then answered from that
    /// replica's state, without the log: fast, possibly stale (a backup may lag, a deposed
    /// primary may not know it). Redis Cluster's command for reading from replicas.
    ReadOnly,
    /// `READWRITE`: back to linearizable reads (the default).
    ReadWrite,
    Cluster(ClusterQuery),
    Quit,
}

fn arity_error(name: &str) -> CommandError {
    CommandError(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn syntax_error() -> CommandError {
    CommandError("ERR syntax error".to_owned())
}

fn not_integer() -> CommandError {
    CommandError("ERR value is not an integer or out of range".to_owned())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn subcommand_error(command: &str, sub: &[u8]) -> CommandError {
    let sub: String = lossy(sub).chars().take(128).collect();
    CommandError(format!(
        "ERR unknown subcommand '{sub}'. Try {} HELP.",
        command.to_ascii_uppercase()
    ))
}

/// Redis' reply to an unknown command: the name as sent and the first arguments, quoted,
/// each followed by a space, until 128 bytes of them are shown.
fn unknown_command(args: &[&[u8]]) -> CommandError {
    let name: String = lossy(args[0]).chars().take(128).collect();
    let mut shown = String::new();
    for arg in &args[1..] {
        if shown.len() >= 128 {
            break;
        }
        let room = 128 - shown.len();
        let arg: String = lossy(arg).chars().take(room).collect();
        shown += &format!("'{arg}' ");
    }
    CommandError(format!(
        "ERR unknown command '{name}', with args beginning with: {shown}"
    ))
}

fn owned(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|arg| arg.to_vec()).collect()
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

impl RespCommand {
    /// Parses a command from its arguments (the name first).
    pub fn parse(args: &[&[u8]]) -> Result<RespCommand, CommandError> {
        let Some(name) = args.first() else {
            return Err(CommandError("ERR empty command".to_owned()));
        };
        let Some(spec) = CommandSpec::find(name) else {
            return Err(unknown_command(args));
        };
        if !spec.accepts(args.len()) {
            return Err(arity_error(spec.name));
        }
        let rest = &args[1..];
        let command = match spec.name {
            "get" => RespCommand::Get {
                key: rest[0].to_vec(),
            },
            "set" => parse_set(rest)?,
            "del" => RespCommand::Del { keys: owned(rest) },
            "exists" => RespCommand::Exists { keys: owned(rest) },
            "incr" => RespCommand::IncrBy {
                key: rest[0].to_vec(),
                delta: 1,
            },
            "incrby" => RespCommand::IncrBy {
                key: rest[0].to_vec(),
                delta: parse_i64(rest[1]).ok_or_else(not_integer)?,
            },
            "mget" => RespCommand::MGet { keys: owned(rest) },
            "mset" => parse_mset(rest)?,
            "ping" => match rest {
                [] => RespCommand::Ping { message: None },
                [message] => RespCommand::Ping {
                    message: Some(message.to_vec()),
                },
                _ => return Err(arity_error("ping")),
            },
            "echo" => RespCommand::Echo {
                message: rest[0].to_vec(),
            },
            "command" => RespCommand::Command(parse_command_query(rest)?),
            "info" => RespCommand::Info {
                sections: rest.iter().map(|s| s.to_ascii_lowercase()).collect(),
            },
            "hello" => parse_hello(rest)?,
            "client" => RespCommand::Client(parse_client(rest)?),
            "select" => parse_select(rest[0])?,
            "cluster" => RespCommand::Cluster(parse_cluster(rest)?),
            "quit" => RespCommand::Quit,
            "readonly" => RespCommand::ReadOnly,
            "readwrite" => RespCommand::ReadWrite,
            other => unreachable!("the command table names {other} but the parser does not"),
        };
        Ok(command)
    }

    /// The keys this command touches, for routing (`CLUSTER KEYSLOT`'s key is an argument, not
    /// a key: it names no data).
    #[must_use]
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            RespCommand::Get { key }
            | RespCommand::Set { key, .. }
            | RespCommand::IncrBy { key, .. } => {
                vec![key.as_slice()]
            }
            RespCommand::Del { keys }
            | RespCommand::Exists { keys }
            | RespCommand::MGet { keys } => keys.iter().map(Vec::as_slice).collect(),
            RespCommand::MSet { pairs } => pairs.iter().map(|(key, _)| key.as_slice()).collect(),
            _ => Vec::new(),
        }
    }
}

fn parse_set(rest: &[&[u8]]) -> Result<RespCommand, CommandError> {
    let mut condition = SetCondition::Always;
    for option in &rest[2..] {
        condition = match condition {
            SetCondition::Always | SetCondition::IfAbsent if is(option, "nx") => {
                SetCondition::IfAbsent
            }
            SetCondition::Always | SetCondition::IfPresent if is(option, "xx") => {
                SetCondition::IfPresent
            }
            _ => {
                let known = ["get", "ex", "px", "exat", "pxat", "keepttl"];
                if known.iter().any(|word| is(option, word)) {
                    return Err(CommandError(format!(
                        "ERR SET option '{}' is not supported: keys do not expire and SET does \
                         not return the old value; use NX or XX only",
                        lossy(option).to_ascii_uppercase()
                    )));
                }
                return Err(syntax_error());
            }
        };
    }
    Ok(RespCommand::Set {
        key: rest[0].to_vec(),
        value: rest[1].to_vec(),
        condition,
    })
}

fn parse_mset(rest: &[&[u8]]) -> Result<RespCommand, CommandError> {
    if !rest.len().is_multiple_of(2) {
        return Err(arity_error("mset"));
    }
    let pairs = rest
        .chunks_exact(2)
        .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
        .collect();
    Ok(RespCommand::MSet { pairs })
}

fn parse_select(index: &[u8]) -> Result<RespCommand, CommandError> {
    match parse_i64(index) {
        Some(0) => Ok(RespCommand::Select),
        Some(_) => Err(CommandError(
            "ERR DB index is out of range: this server has only database 0".to_owned(),
        )),
        None => Err(not_integer()),
    }
}

fn parse_command_query(rest: &[&[u8]]) -> Result<CommandQuery, CommandError> {
    let Some((sub, names)) = rest.split_first() else {
        return Ok(CommandQuery::All);
    };
    if is(sub, "count") {
        if !names.is_empty() {
            return Err(arity_error("command|count"));
        }
        Ok(CommandQuery::Count)
    } else if is(sub, "docs") {
        Ok(CommandQuery::Docs(owned(names)))
    } else if is(sub, "info") {
        Ok(CommandQuery::Info(owned(names)))
    } else {
        Err(subcommand_error("command", sub))
    }
}

fn parse_hello(rest: &[&[u8]]) -> Result<RespCommand, CommandError> {
    let Some((version, mut options)) = rest.split_first() else {
        return Ok(RespCommand::Hello {
            protocol: None,
            auth: None,
            setname: None,
        });
    };
    let protocol = match parse_i64(version) {
        Some(2) => 2,
        Some(3) => 3,
        Some(_) => {
            return Err(CommandError(
                "NOPROTO sorry, this protocol version is not supported: this server speaks \
                 RESP2 and RESP3"
                    .to_owned(),
            ));
        }
        None => {
            return Err(CommandError(
                "ERR Protocol version is not an integer or out of range".to_owned(),
            ));
        }
    };
    let (mut auth, mut setname) = (None, None);
    while let Some((option, after)) = options.split_first() {
        match after {
            [user, password, tail @ ..] if is(option, "auth") => {
                auth = Some((user.to_vec(), password.to_vec()));
                options = tail;
            }
            [name, tail @ ..] if is(option, "setname") => {
                setname = Some(valid_client_name(name)?);
                options = tail;
            }
            _ => {
                return Err(CommandError(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    lossy(option)
                )));
            }
        }
    }
    Ok(RespCommand::Hello {
        protocol: Some(protocol),
        auth,
        setname,
    })
}

fn valid_client_name(name: &[u8]) -> Result<Bytes, CommandError> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(name.to_vec())
    } else {
        Err(CommandError(
            "ERR Client names cannot contain spaces, newlines or special characters.".to_owned(),
        ))
    }
}

fn parse_client(rest: &[&[u8]]) -> Result<ClientQuery, CommandError> {
    let (sub, args) = (rest[0], &rest[1..]);
    let (query, arity) = if is(sub, "setname") {
        match args {
            [name] => return Ok(ClientQuery::SetName(valid_client_name(name)?)),
            _ => (None, "client|setname"),
        }
    } else if is(sub, "getname") {
        (Some(ClientQuery::GetName), "client|getname")
    } else if is(sub, "id") {
        (Some(ClientQuery::Id), "client|id")
    } else if is(sub, "info") {
        (Some(ClientQuery::Info), "client|info")
    } else if is(sub, "setinfo") {
        return match args {
            [attribute, value] if is(attribute, "lib-name") || is(attribute, "lib-ver") => {
                Ok(ClientQuery::SetInfo {
                    attribute: attribute.to_ascii_lowercase(),
                    value: value.to_vec(),
                })
            }
            [attribute, _] => Err(CommandError(format!(
                "ERR Unrecognized option '{}'",
                lossy(attribute)
            ))),
            _ => Err(arity_error("client|setinfo")),
        };
    } else {
        return Err(subcommand_error("client", sub));
    };
    match query {
        Some(query) if args.is_empty() => Ok(query),
        _ => Err(arity_error(arity)),
    }
}

fn parse_cluster(rest: &[&[u8]]) -> Result<ClusterQuery, CommandError> {
    let (sub, args) = (rest[0], &rest[1..]);
    let simple = [
        ("slots", ClusterQuery::Slots),
        ("shards", ClusterQuery::Shards),
        ("nodes", ClusterQuery::Nodes),
        ("info", ClusterQuery::Info),
        ("myid", ClusterQuery::MyId),
    ];
    if let Some((name, query)) = simple.into_iter().find(|(name, _)| is(sub, name)) {
        return if args.is_empty() {
            Ok(query)
        } else {
            Err(arity_error(&format!("cluster|{name}")))
        };
    }
    if is(sub, "keyslot") {
        return match args {
            [key] => Ok(ClusterQuery::KeySlot(key.to_vec())),
            _ => Err(arity_error("cluster|keyslot")),
        };
    }
    Err(subcommand_error("cluster", sub))
}
