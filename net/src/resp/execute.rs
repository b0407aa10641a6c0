//! What the node does with a parsed command: the reply to a command it answers by itself
//! (`PING`, `HELLO`, `CLIENT`, `INFO`, `CLUSTER ...`), or the [`KvPlan`] of one that reaches
//! the key-value application. Pure: the connection's state is a [`RespSession`] the node keeps
//! per connection, and the cluster's a [`NodeView`].

use std::fmt::Write as _;

use crate::resp::cluster::NodeView;
use crate::resp::command::{ClientQuery, CommandQuery, RespCommand};
use crate::resp::plan::KvPlan;
use crate::resp::table::{COMMANDS, CommandSpec};
use crate::resp::value::RespValue;

/// The Redis version whose behaviour this front end follows. Clients gate features on it
/// (`HELLO`, `INFO`'s `redis_version`), so it names the version the replies were checked
/// against, not Chronon's.
pub const REDIS_VERSION: &str = "7.2.0";

/// One RESP connection's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RespSession {
    /// `CLIENT ID` and `HELLO`'s `id`: unique among this node's connections.
    pub id: u64,
    pub name: Option<Vec<u8>>,
    pub lib_name: Option<Vec<u8>>,
    pub lib_ver: Option<Vec<u8>>,
    /// The RESP version `HELLO` chose: 2 (the default) or 3.
    pub protocol: u8,
    /// `READONLY` was sent: reads of keys on the reached core may be served stale, from its
    /// replica's state.
    pub stale_reads: bool,
}

impl RespSession {
    #[must_use]
    pub fn new(id: u64) -> RespSession {
        RespSession {
            id,
            protocol: 2,
            ..RespSession::default()
        }
    }
}

/// What the node does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Execution {
    /// Send this reply.
    Reply(RespValue),
    /// Send each shard its engine commands, then `plan.reply(results)`.
    Kv(KvPlan),
    /// Send this reply, then close the connection (`QUIT`).
    Close(RespValue),
}

fn ok() -> RespValue {
    RespValue::Simple("OK".to_owned())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`: a key-value command becomes a plan, any other is answered here.
#[must_use]
pub fn execute(command: &RespCommand, view: &NodeView<'_>, session: &mut RespSession) -> Execution {
    if let Some(plan) = KvPlan::new(command, view.topology.shard_count) {
        return Execution::Kv(plan);
    }
    let reply = match command {
        RespCommand::Ping { message: None } => RespValue::Simple("PONG".to_owned()),
        RespCommand::Ping {
            message: Some(message),
        }
        | RespCommand::Echo { message } => RespValue::Bulk(message.clone()),
        RespCommand::Command(query) => command_reply(query),
        RespCommand::Info { sections } => RespValue::Bulk(info(view, sections).into_bytes()),
        RespCommand::Hello {
            protocol,
            auth,
            setname,
        } => {
            let reply = hello(view, session, auth.as_ref(), setname.as_ref());
            if let (Some(protocol), RespValue::Map(_)) = (protocol, &reply) {
                session.protocol = *protocol;
            }
            return Execution::Reply(match reply {
                RespValue::Map(mut pairs) => {
                    for (key, value) in &mut pairs {
                        if *key == RespValue::bulk("proto") {
                            *value = RespValue::Integer(i64::from(session.protocol));
                        }
                    }
                    RespValue::Map(pairs)
                }
                other => other,
            });
        }
        RespCommand::Client(query) => client(view, session, query),
        RespCommand::Select => ok(),
        RespCommand::ReadOnly => {
            session.stale_reads = true;
            ok()
        }
        RespCommand::ReadWrite => {
            session.stale_reads = false;
            ok()
        }
        RespCommand::Cluster(query) => view.cluster_reply(query),
        RespCommand::Quit => return Execution::Close(ok()),
        RespCommand::Get { .. }
        | RespCommand::Set { .. }
        | RespCommand::Del { .. }
        | RespCommand::Exists { .. }
        | RespCommand::IncrBy { .. }
        | RespCommand::MGet { .. }
        | RespCommand::MSet { .. } => unreachable!("key-value commands have a plan"),
    };
    Execution::Reply(reply)
}

fn command_reply(query: &CommandQuery) -> RespValue {
    let all = || RespValue::Array(COMMANDS.iter().map(CommandSpec::info).collect());
    match query {
        CommandQuery::All => all(),
        CommandQuery::Count => {
            RespValue::Integer(i64::try_from(COMMANDS.len()).expect("invariant: a short table"))
        }
        CommandQuery::Docs(_) => RespValue::Array(Vec::new()),
        CommandQuery::Info(names) if names.is_empty() => all(),
        CommandQuery::Info(names) => RespValue::Array(
            names
                .iter()
                .map(|name| CommandSpec::find(name).map_or(RespValue::Null, CommandSpec::info))
                .collect(),
        ),
    }
}

/// `HELLO [2 [AUTH user pass] [SETNAME name]]` in RESP2: the server's properties as a flat
/// list of names and values. No passwords are configured, so, as for Redis' `default` user
/// with `nopass`, `default` is accepted with any password and other users do not exist.
fn hello(
    view: &NodeView<'_>,
    session: &mut RespSession,
    auth: Option<&(Vec<u8>, Vec<u8>)>,
    setname: Option<&Vec<u8>>,
) -> RespValue {
    if let Some((user, _)) = auth
        && user.as_slice() != b"default"
    {
        return RespValue::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".to_owned(),
        );
    }
    if let Some(name) = setname {
        session.name = Some(name.clone());
    }
    let role = if view.is_primary() {
        "master"
    } else {
        "replica"
    };
    RespValue::Map(vec![
        (RespValue::bulk("server"), RespValue::bulk("redis")),
        (RespValue::bulk("version"), RespValue::bulk(REDIS_VERSION)),
        (RespValue::bulk("proto"), RespValue::Integer(2)),
        (
            RespValue::bulk("id"),
            RespValue::Integer(session_id(session)),
        ),
        (RespValue::bulk("mode"), RespValue::bulk("cluster")),
        (RespValue::bulk("role"), RespValue::bulk(role)),
        (RespValue::bulk("modules"), RespValue::Array(Vec::new())),
    ])
}

fn session_id(session: &RespSession) -> i64 {
    i64::try_from(session.id).unwrap_or(i64::MAX)
}

fn client(view: &NodeView<'_>, session: &mut RespSession, query: &ClientQuery) -> RespValue {
    match query {
        ClientQuery::SetName(name) => {
            // `CLIENT SETNAME ""` clears the name, as in Redis.
            session.name = (!name.is_empty()).then(|| name.clone());
            ok()
        }
        ClientQuery::GetName => session
            .name
            .as_ref()
            .map_or(RespValue::Null, |name| RespValue::Bulk(name.clone())),
        ClientQuery::Id => RespValue::Integer(session_id(session)),
        ClientQuery::SetInfo { attribute, value } => {
            let slot = if attribute.as_slice() == b"lib-name" {
                &mut session.lib_name
            } else {
                &mut session.lib_ver
            };
            *slot = Some(value.clone());
            ok()
        }
        ClientQuery::Info => {
            let field = |value: &Option<Vec<u8>>| value.as_deref().map(lossy).unwrap_or_default();
            let addr = view.topology.resp_addr(view.host, view.shard);
            let line = format!(
                "id={} laddr={}:{} name={} db=0 lib-name={} lib-ver={}\n",
                session.id,
                addr.ip(),
                addr.port(),
                field(&session.name),
                field(&session.lib_name),
                field(&session.lib_ver),
            );
            RespValue::Bulk(line.into_bytes())
        }
    }
}

/// `INFO [section...]`: the sections asked for (all of them for none, `default`, `all` or
/// `everything`), as `# Name` then `field:value` lines, sections separated by a blank line.
/// Unknown sections are left out, as in Redis.
fn info(view: &NodeView<'_>, sections: &[Vec<u8>]) -> String {
    let addr = view.topology.resp_addr(view.host, view.shard);
    let role = if view.is_primary() { "master" } else { "slave" };
    let replicas = if view.is_primary() {
        usize::from(view.topology.replica_count()) - 1
    } else {
        0
    };
    let table: [(&str, Vec<(&str, String)>); 4] = [
        (
            "Server",
            vec![
                ("redis_version", REDIS_VERSION.to_owned()),
                ("redis_mode", "cluster".to_owned()),
                ("chronon_version", env!("CARGO_PKG_VERSION").to_owned()),
                ("tcp_port", addr.port().to_string()),
            ],
        ),
        (
            "Replication",
            vec![
                ("role", role.to_owned()),
                ("connected_slaves", replicas.to_string()),
            ],
        ),
        ("Cluster", vec![("cluster_enabled", "1".to_owned())]),
        ("Keyspace", Vec::new()),
    ];
    let everything = sections.is_empty()
        || sections
            .iter()
            .any(|s| [&b"default"[..], b"all", b"everything"].contains(&s.as_slice()));
    let mut out = String::new();
    for (name, fields) in table {
        let wanted = sections
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name.as_bytes()));
        if !(everything || wanted) {
            continue;
        }
        if !out.is_empty() {
            out += "\r\n";
        }
        let _ = write!(out, "# {name}\r\n");
        for (field, value) in fields {
            let _ = write!(out, "{field}:{value}\r\n");
        }
    }
    out
}
