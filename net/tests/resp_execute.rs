//! RESP execution: key-value commands split into per-shard engine commands and merged back
//! into Redis' reply bytes, local commands answered from the connection and the node view,
//! and the `CLUSTER` replies Redis Cluster clients build their slot maps from.

use std::net::SocketAddr;

use chronon_engine::app::kv::{KvCommand, KvReply, KvState, KvStore};
use chronon_engine::app::{ApplyContext, ChrApplication, Event};
use chronon_engine::ids::{ClusterId, Op, ReplicaIndex, ShardId, Timestamp, View};
use chronon_net::resp::{
    Execution, KvPlan, KvResult, NodeView, RespCommand, RespSession, RespValue, execute, moved,
    node_id,
};
use chronon_net::slots::{Slot, key_shard, key_slot};
use chronon_net::topology::Topology;

const SHARDS: u16 = 3;

fn topology() -> Topology {
    let hosts = [7000, 8000, 9000]
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .to_vec();
    Topology::new(ClusterId(7), SHARDS, hosts).expect("valid topology")
}

fn parse(words: &[&str]) -> RespCommand {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    RespCommand::parse(&args).expect("valid command")
}

fn bytes(value: &RespValue) -> String {
    let mut out = Vec::new();
    value.encode(&mut out);
    String::from_utf8(out).expect("text replies")
}

/// The first key named `<prefix><n>` that lives on `shard`.
fn key_on(shard: u16, prefix: &str) -> String {
    (0..1000)
        .map(|n| format!("{prefix}{n}"))
        .find(|key| key_shard(key.as_bytes(), SHARDS) == ShardId(shard))
        .expect("some key hashes to every shard")
}

fn plan(words: &[&str]) -> KvPlan {
    KvPlan::new(&parse(words), SHARDS).expect("a key-value command")
}

/// One in-memory key-value store per shard, run as the node would run a plan's batches.
struct Stores {
    shards: Vec<KvState>,
}

impl Stores {
    fn new() -> Stores {
        Stores {
            shards: vec![KvStore.genesis(); usize::from(SHARDS)],
        }
    }

    fn apply(&mut self, shard: ShardId, command: &KvCommand) -> KvResult {
        let context = ApplyContext {
            shard,
            op: Op(1),
            view: View(0),
            timestamp: Timestamp(0),
            seed: 0,
            effect_ordinal: 0,
        };
        let state = &mut self.shards[usize::from(shard.0)];
        match KvStore.apply(state, Event::Command(&command.encode()), &context) {
            Ok(applied) => {
                *state = applied.state;
                Ok(KvReply::decode(&applied.reply).expect("valid reply"))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Runs `words` end to end and returns the reply's bytes.
    fn run(&mut self, words: &[&str]) -> String {
        let plan = plan(words);
        let results: Vec<Vec<KvResult>> = plan
            .batches()
            .iter()
            .map(|batch| {
                for command in &batch.commands {
                    assert_eq!(key_shard(command.key(), SHARDS), batch.shard);
                }
                batch
                    .commands
                    .iter()
                    .map(|command| self.apply(batch.shard, command))
                    .collect()
            })
            .collect();
        bytes(&plan.reply(&results))
    }
}

// Every key-value command, run against real stores, gives Redis' exact reply bytes: the
// conditional SETs answer nil when they do not write, DEL and EXISTS count (duplicates
// included, as Redis does), INCR's errors carry Redis' text, and MGET keeps argument order
// across shards.
#[test]
fn key_value_replies_match_redis() {
    let (a, b, c) = (key_on(0, "a"), key_on(1, "b"), key_on(2, "c"));
    let mut stores = Stores::new();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["get", &a], "$-1\r\n"),
        (vec!["set", &a, "1", "xx"], "$-1\r\n"),
        (vec!["exists", &a], ":0\r\n"),
        (vec!["set", &a, "1", "nx"], "+OK\r\n"),
        (vec!["set", &a, "2", "nx"], "$-1\r\n"),
        (vec!["get", &a], "$1\r\n1\r\n"),
        (vec!["set", &a, "3", "xx"], "+OK\r\n"),
        (vec!["set", &b, ""], "+OK\r\n"),
        (vec!["get", &b], "$0\r\n\r\n"),
        (vec!["incr", &a], ":4\r\n"),
        (vec!["incrby", &a, "-10"], ":-6\r\n"),
        (vec!["incrby", &c, "5"], ":5\r\n"),
        (vec!["get", &c], "$1\r\n5\r\n"),
        (
            vec!["incr", &b],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            vec!["incrby", &c, "9223372036854775807"],
            "-ERR increment or decrement would overflow\r\n",
        ),
        (vec!["exists", &a, &b, &c, &a, "nope"], ":4\r\n"),
        (
            vec!["mget", &c, "nope", &a, &b],
            "*4\r\n$1\r\n5\r\n$-1\r\n$2\r\n-6\r\n$0\r\n\r\n",
        ),
        (vec!["mset", &a, "x", &b, "y", &c, "z"], "+OK\r\n"),
        (
            vec!["mget", &a, &b, &c],
            "*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n",
        ),
        (vec!["del", &a, &a, &c, "nope"], ":2\r\n"),
        (vec!["exists", &a, &b, &c], ":1\r\n"),
        (vec!["set", &c, "v"], "+OK\r\n"),
    ];
    for (words, expected) in cases {
        assert_eq!(stores.run(&words), expected, "{words:?}");
    }
}

// A multi-key command becomes one batch per shard, in the order the shards first appear,
// each batch in argument order, and the merged reply follows argument order again.
#[test]
fn multi_key_commands_split_by_shard_and_merge_in_order() {
    let (a0, a1) = (key_on(0, "a"), key_on(0, "z"));
    let (b, c) = (key_on(1, "b"), key_on(2, "c"));
    let plan = plan(&["mget", &c, &a0, &b, &a1]);
    let layout: Vec<(ShardId, Vec<Vec<u8>>)> = plan
        .batches()
        .iter()
        .map(|batch| {
            let keys = batch.commands.iter().map(|c| c.key().to_vec()).collect();
            (batch.shard, keys)
        })
        .collect();
    let k = |key: &String| key.as_bytes().to_vec();
    assert_eq!(
        layout,
        vec![
            (ShardId(2), vec![k(&c)]),
            (ShardId(0), vec![k(&a0), k(&a1)]),
            (ShardId(1), vec![k(&b)]),
        ]
    );
    let value = |text: &str| Ok(KvReply::Value(Some(text.as_bytes().to_vec())));
    let results = vec![
        vec![value("c")],
        vec![value("a0"), Ok(KvReply::Value(None))],
        vec![value("b")],
    ];
    assert_eq!(
        bytes(&plan.reply(&results)),
        "*4\r\n$1\r\nc\r\n$2\r\na0\r\n$1\r\nb\r\n$-1\r\n"
    );

    // MSET sends one Put per pair; DEL and EXISTS one Delete or Exists per key.
    let mset = self::plan(&["mset", &a0, "1", &b, "2"]);
    assert_eq!(
        mset.batches()[1].commands,
        vec![KvCommand::Put {
            key: k(&b),
            value: b"2".to_vec()
        }]
    );
    let del = self::plan(&["del", &b]);
    assert_eq!(
        del.batches()[0].commands,
        vec![KvCommand::Delete { key: k(&b) }]
    );
    let exists = self::plan(&["exists", &b]);
    assert_eq!(
        exists.batches()[0].commands,
        vec![KvCommand::Exists { key: k(&b) }]
    );
}

// A failed engine command turns the whole reply into the first failure in argument order;
// text without an error code gets `ERR`, and a reply of the wrong kind is an error, not a
// panic.
#[test]
fn failures_and_mismatched_replies_become_errors() {
    let (a, b) = (key_on(0, "a"), key_on(1, "b"));
    let plan = plan(&["mset", &a, "1", &b, "2"]);
    let results = vec![
        vec![Err("stale request".to_owned())],
        vec![Err("TRYAGAIN shard 1 has no primary; retry".to_owned())],
    ];
    assert_eq!(bytes(&plan.reply(&results)), "-ERR stale request\r\n");
    let results = vec![
        vec![Ok(KvReply::Done)],
        vec![Err("TRYAGAIN shard 1 has no primary; retry".to_owned())],
    ];
    assert_eq!(
        bytes(&plan.reply(&results)),
        "-TRYAGAIN shard 1 has no primary; retry\r\n"
    );
    let get = self::plan(&["get", &a]);
    let reply = get.reply(&[vec![Ok(KvReply::Done)]]);
    assert!(matches!(reply, RespValue::Error(text) if text.starts_with("ERR internal error")));
    let del = self::plan(&["del", &a]);
    let reply = del.reply(&[vec![Ok(KvReply::Exists(true))]]);
    assert!(matches!(reply, RespValue::Error(_)));
}

fn view<'a>(
    topology: &'a Topology,
    host: u8,
    shard: u16,
    primaries: &'a [ReplicaIndex],
) -> NodeView<'a> {
    NodeView {
        topology,
        host: ReplicaIndex(host),
        shard: ShardId(shard),
        primaries,
    }
}

fn reply(view: &NodeView<'_>, session: &mut RespSession, words: &[&str]) -> String {
    match execute(&parse(words), view, session) {
        Execution::Reply(value) => bytes(&value),
        other => panic!("{words:?} answered locally, got {other:?}"),
    }
}

// The commands a node answers by itself, byte for byte, with the connection's state kept in
// its session.
#[test]
fn local_commands() {
    let topology = topology();
    let primaries = [ReplicaIndex(0), ReplicaIndex(1), ReplicaIndex(2)];
    let view = view(&topology, 1, 1, &primaries);
    let mut session = RespSession::new(42);
    let mut run = |words: &[&str]| reply(&view, &mut session, words);
    assert_eq!(run(&["ping"]), "+PONG\r\n");
    assert_eq!(run(&["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(run(&["echo", "a b"]), "$3\r\na b\r\n");
    assert_eq!(run(&["select", "0"]), "+OK\r\n");
    assert_eq!(run(&["client", "id"]), ":42\r\n");
    assert_eq!(run(&["client", "getname"]), "$-1\r\n");
    assert_eq!(run(&["client", "setname", "me"]), "+OK\r\n");
    assert_eq!(run(&["client", "getname"]), "$2\r\nme\r\n");
    assert_eq!(
        run(&["client", "setinfo", "lib-name", "redis-py"]),
        "+OK\r\n"
    );
    assert_eq!(
        run(&["client", "info"]),
        "$67\r\nid=42 laddr=127.0.0.1:8005 name=me db=0 lib-name=redis-py lib-ver=\n\r\n"
    );
    assert_eq!(
        run(&["command", "count"]),
        format!(":{}\r\n", chronon_net::resp::COMMANDS.len())
    );
    assert_eq!(run(&["command", "docs"]), "*0\r\n");
    assert!(run(&["command", "info", "get", "nope"]).ends_with("$-1\r\n"));
    assert_eq!(
        run(&["hello", "2", "auth", "alice", "pw"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello = run(&["hello", "2", "auth", "default", "pw", "setname", "x"]);
    assert!(
        hello.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{hello}"
    );
    assert!(hello.contains(
        "$2\r\nid\r\n:42\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    ));
    assert_eq!(run(&["client", "getname"]), "$1\r\nx\r\n");
    let info = run(&["info", "replication"]);
    assert_eq!(
        info,
        "$48\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\r\n"
    );
    let info = run(&["info"]);
    for section in [
        "# Server\r\n",
        "redis_version:7.2.0\r\n",
        "tcp_port:8005\r\n",
        "\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n",
    ] {
        assert!(info.contains(section), "{info}");
    }
    assert_eq!(run(&["info", "nosuchsection"]), "$0\r\n\r\n");
    assert_eq!(
        execute(&parse(&["quit"]), &view, &mut session),
        Execution::Close(RespValue::Simple("OK".to_owned()))
    );
    assert!(matches!(
        execute(&parse(&["get", "k"]), &view, &mut session),
        Execution::Kv(_)
    ));
}

// CLUSTER SLOTS lists each shard's slot range with its primary first and then its replicas,
// each at that shard's RESP port, as redis-py reads it; CLUSTER SHARDS says the same in
// Redis 7's field list; MYID and KEYSLOT answer for this node.
#[test]
fn cluster_slots_shards_myid_keyslot() {
    let topology = topology();
    // Shard 1's primary moved to host 2.
    let primaries = [ReplicaIndex(0), ReplicaIndex(2), ReplicaIndex(2)];
    let view = view(&topology, 0, 1, &primaries);
    let mut session = RespSession::new(1);
    let value =
        |words: &[&str], session: &mut RespSession| match execute(&parse(words), &view, session) {
            Execution::Reply(value) => value,
            other => panic!("{other:?}"),
        };
    let node = |port: i64, host: u8, shard: u16| {
        RespValue::Array(vec![
            RespValue::bulk("127.0.0.1"),
            RespValue::Integer(port),
            RespValue::bulk(&node_id(&topology, ReplicaIndex(host), ShardId(shard))),
            RespValue::Array(Vec::new()),
        ])
    };
    let RespValue::Array(slots) = value(&["cluster", "slots"], &mut session) else {
        panic!("an array");
    };
    assert_eq!(slots.len(), 3);
    assert_eq!(
        slots[1],
        RespValue::Array(vec![
            RespValue::Integer(5461),
            RespValue::Integer(10921),
            node(9005, 2, 1),
            node(7005, 0, 1),
            node(8005, 1, 1),
        ])
    );
    assert_eq!(
        slots[0],
        RespValue::Array(vec![
            RespValue::Integer(0),
            RespValue::Integer(5460),
            node(7002, 0, 0),
            node(8002, 1, 0),
            node(9002, 2, 0),
        ])
    );

    let RespValue::Array(shards) = value(&["cluster", "shards"], &mut session) else {
        panic!("an array");
    };
    let RespValue::Array(shard) = &shards[2] else {
        panic!("an array");
    };
    assert_eq!(shard[0], RespValue::bulk("slots"));
    assert_eq!(
        shard[1],
        RespValue::Array(vec![RespValue::Integer(10922), RespValue::Integer(16383)])
    );
    let RespValue::Array(nodes) = &shard[3] else {
        panic!("an array");
    };
    let RespValue::Array(primary) = &nodes[0] else {
        panic!("an array");
    };
    assert_eq!(primary[3], RespValue::Integer(9008));
    assert_eq!(primary[9], RespValue::bulk("master"));
    let RespValue::Array(replica) = &nodes[1] else {
        panic!("an array");
    };
    assert_eq!(replica[3], RespValue::Integer(7008));
    assert_eq!(replica[9], RespValue::bulk("replica"));

    let id = node_id(&topology, ReplicaIndex(0), ShardId(1));
    assert_eq!(id, "0000000000000007000000000000000000000001");
    assert_eq!(
        value(&["cluster", "myid"], &mut session),
        RespValue::bulk(&id)
    );
    assert_eq!(
        value(&["cluster", "keyslot", "foo"], &mut session),
        RespValue::Integer(12182)
    );
    let info = value(&["cluster", "info"], &mut session);
    let RespValue::Bulk(info) = info else {
        panic!("a bulk string")
    };
    let info = String::from_utf8(info).expect("text");
    assert!(
        info.starts_with("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"),
        "{info}"
    );
    assert!(
        info.contains("cluster_known_nodes:9\r\ncluster_size:3\r\n"),
        "{info}"
    );
}

// CLUSTER NODES, parsed the way redis-benchmark and redis-cli do: space-separated fields,
// every line ending in `\n`, masters with their slot range, replicas naming their master,
// `myself` on exactly this node's line.
#[test]
fn cluster_nodes_lines() {
    let topology = topology();
    let primaries = [ReplicaIndex(0), ReplicaIndex(2), ReplicaIndex(2)];
    let view = view(&topology, 0, 1, &primaries);
    let text = view.cluster_nodes();
    assert!(text.ends_with('\n'));
    let id = |host: u8, shard: u16| node_id(&topology, ReplicaIndex(host), ShardId(shard));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(
        lines[3],
        format!(
            "{} 127.0.0.1:9005@9003 master - 0 0 2 connected 5461-10921",
            id(2, 1)
        )
    );
    assert_eq!(
        lines[4],
        format!(
            "{} 127.0.0.1:7005@7003 myself,slave {} 0 0 2 connected",
            id(0, 1),
            id(2, 1)
        )
    );
    let mut covered = 0;
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0].len(), 40);
        assert!(fields[0].bytes().all(|b| b.is_ascii_hexdigit()));
        let master = fields[2].contains("master");
        assert_eq!(master, fields[3] == "-");
        assert_eq!(fields.len(), if master { 9 } else { 8 });
        if master {
            let (first, last) = fields[8].split_once('-').expect("a range");
            let (first, last): (u32, u32) = (first.parse().unwrap_or(0), last.parse().unwrap_or(0));
            assert_eq!(first, covered);
            covered = last + 1;
        }
    }
    assert_eq!(covered, 16384);
    assert_eq!(text.matches("myself").count(), 1);
    let mut session = RespSession::new(1);
    assert_eq!(
        execute(&parse(&["cluster", "nodes"]), &view, &mut session),
        Execution::Reply(RespValue::Bulk(text.into_bytes()))
    );
}

// MOVED names the slot and its shard's primary; a node redirects a cluster client that sent
// one shard's keys to a node that is not that shard's primary, and serves the rest.
#[test]
fn moved_and_redirect() {
    let addr = SocketAddr::from(([10, 0, 0, 1], 7002));
    assert_eq!(
        bytes(&moved(Slot(3999), addr)),
        "-MOVED 3999 10.0.0.1:7002\r\n"
    );
    let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 7002));
    assert_eq!(bytes(&moved(Slot(1), v6)), "-MOVED 1 ::1:7002\r\n");

    let topology = topology();
    let primaries = [ReplicaIndex(0), ReplicaIndex(2), ReplicaIndex(2)];
    let (a, b) = (key_on(0, "a"), key_on(1, "b"));
    let on_primary = view(&topology, 0, 0, &primaries);
    assert_eq!(on_primary.redirect(&parse(&["get", &a])), None);
    assert_eq!(on_primary.redirect(&parse(&["ping"])), None);
    assert_eq!(on_primary.redirect(&parse(&["mget", &a, &b])), None);
    assert_eq!(
        on_primary.redirect(&parse(&["get", &b])),
        Some(moved(
            key_slot(b.as_bytes()),
            topology.resp_addr(ReplicaIndex(2), ShardId(1))
        ))
    );
    // Host 0 is not shard 1's primary any more: even shard 1's own keys go to host 2.
    let stale = view(&topology, 0, 1, &primaries);
    assert_eq!(
        bytes(
            &stale
                .redirect(&parse(&["set", &b, "v"]))
                .expect("redirected")
        ),
        format!("-MOVED {} 127.0.0.1:9005\r\n", key_slot(b.as_bytes()).0)
    );
}

// `HELLO 3` switches a connection to RESP3: the reply is a map with `proto` 3, and nulls are
// written as RESP3's `_`; without `HELLO 3` the same values keep their RESP2 bytes.
#[test]
fn hello_3_switches_the_connection_to_resp3() {
    use chronon_engine::ids::{ClusterId, ReplicaIndex, ShardId};
    use chronon_net::Topology;
    use chronon_net::resp::{Execution, NodeView, RespCommand, RespSession, RespValue, execute};
    let topology = Topology::new(
        ClusterId(1),
        1,
        vec![std::net::SocketAddr::from(([127, 0, 0, 1], 7000))],
    )
    .expect("topology");
    let primaries = [ReplicaIndex(0)];
    let view = NodeView {
        topology: &topology,
        host: ReplicaIndex(0),
        shard: ShardId(0),
        primaries: &primaries,
    };
    let mut session = RespSession::new(1);
    let hello = RespCommand::parse(&[b"HELLO", b"3"]).expect("parses");
    let Execution::Reply(reply) = execute(&hello, &view, &mut session) else {
        panic!("HELLO is answered locally");
    };
    assert_eq!(session.protocol, 3);
    let mut bytes = Vec::new();
    reply.encode_as(session.protocol, &mut bytes);
    assert!(
        bytes.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(String::from_utf8_lossy(&bytes).contains("$5\r\nproto\r\n:3\r\n"));
    let (mut resp2, mut resp3) = (Vec::new(), Vec::new());
    RespValue::Null.encode_as(2, &mut resp2);
    RespValue::Null.encode_as(3, &mut resp3);
    assert_eq!(
        (resp2.as_slice(), resp3.as_slice()),
        (&b"$-1\r\n"[..], &b"_\r\n"[..])
    );
}
