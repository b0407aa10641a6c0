//! The RESP2 front end: requests round-trip through the parser however they are split,
//! limits are enforced before the bytes that break them are buffered, random input gives an
//! error and never a panic, and commands parse (or are refused) with Redis' wording.

use std::ops::Range;

use chronon_net::NetError;
use chronon_net::resp::{
    ClientQuery, ClusterQuery, CommandError, CommandQuery, RespCommand, RespLimits, RespParser,
    RespValue, SetCondition,
};
use proptest::prelude::*;

/// How redis-cli and every client library send a command.
fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
    let items = args.iter().map(|a| RespValue::Bulk(a.clone())).collect();
    let mut out = Vec::new();
    RespValue::Array(items).encode(&mut out);
    out
}

/// Parses every command in `buffer`; the error, if any, ends the list.
fn parse_all(parser: &RespParser, buffer: &[u8]) -> (Vec<Vec<Vec<u8>>>, Result<usize, NetError>) {
    let mut commands = Vec::new();
    let mut args: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    loop {
        match parser.parse(&buffer[at..], &mut args) {
            Ok(Some(consumed)) => {
                assert!(consumed > 0 && consumed <= buffer.len() - at);
                let base = at;
                commands.push(
                    args.iter()
                        .map(|r| buffer[base..][r.clone()].to_vec())
                        .collect(),
                );
                at += consumed;
            }
            Ok(None) => return (commands, Ok(at)),
            Err(error) => return (commands, Err(error)),
        }
    }
}

fn parse(words: &[&str]) -> Result<RespCommand, CommandError> {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    RespCommand::parse(&args)
}

fn error(words: &[&str]) -> String {
    parse(words).expect_err("refused").0
}

fn value() -> impl Strategy<Value = RespValue> {
    let leaf = prop_oneof![
        "[^\r\n]{0,16}".prop_map(RespValue::Simple),
        "ERR [^\r\n]{0,16}".prop_map(RespValue::Error),
        any::<i64>().prop_map(RespValue::Integer),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(RespValue::Bulk),
        Just(RespValue::Null),
        Just(RespValue::NullArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(RespValue::Array)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    // A pipeline of commands comes back argument for argument; every proper prefix of it
    // parses to the whole commands it holds and then asks for more, never an error.
    #[test]
    fn requests_round_trip_at_any_split(
        commands in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6),
            1..5,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        let stream: Vec<u8> = commands.iter().flat_map(|c| encode_request(c)).collect();
        let parser = RespParser::default();
        let (parsed, end) = parse_all(&parser, &stream);
        prop_assert_eq!(&parsed, &commands);
        prop_assert_eq!(end, Ok(stream.len()));

        let cut = cut.index(stream.len());
        let (prefix, end) = parse_all(&parser, &stream[..cut]);
        prop_assert!(end.is_ok());
        prop_assert_eq!(prefix.as_slice(), &commands[..prefix.len()]);
    }

    // Inline commands split on spaces and tabs, with or without a carriage return.
    #[test]
    fn inline_commands_round_trip(
        words in prop::collection::vec("[a-zA-Z0-9{}:_-]{1,10}", 1..6),
        crlf in any::<bool>(),
    ) {
        let mut line = words.join(" \t ").into_bytes();
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let (parsed, end) = parse_all(&RespParser::default(), &line);
        let expected: Vec<Vec<u8>> = words.iter().map(|w| w.clone().into_bytes()).collect();
        prop_assert_eq!(parsed, vec![expected]);
        prop_assert_eq!(end, Ok(line.len()));
    }

    // Replies round-trip through the encoder and the reply decoder, and every prefix of one
    // asks for more.
    #[test]
    fn replies_round_trip(value in value()) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let limits = RespLimits::default();
        prop_assert_eq!(RespValue::decode(&bytes, &limits), Ok(Some((value, bytes.len()))));
        for len in 0..bytes.len() {
            prop_assert_eq!(RespValue::decode(&bytes[..len], &limits), Ok(None));
        }
    }

    // Random bytes, and random mutations of valid requests, never panic either parser.
    #[test]
    fn random_input_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..256),
        args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let limits = RespLimits { bulk_len_max: 64, array_len_max: 8, inline_len_max: 64, command_bytes_max: 256 };
        let parser = RespParser::new(limits);
        let _ = parse_all(&parser, &noise);
        let _ = RespValue::decode(&noise, &limits);
        let mut request = encode_request(&args);
        for (at, value) in flips {
            let at = at.index(request.len());
            request[at] = value;
        }
        let (commands, _) = parse_all(&parser, &request);
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            let _ = RespCommand::parse(&args);
        }
        let _ = RespValue::decode(&request, &limits);
    }

    // Whatever arguments a command gets, parsing it gives a command or an error reply.
    #[test]
    fn command_parsing_never_panics(
        name in prop::sample::select(vec![
            "get", "SET", "del", "exists", "incr", "incrby", "mget", "mset", "ping", "echo",
            "command", "info", "hello", "client", "select", "cluster", "quit", "nope",
        ]),
        rest in prop::collection::vec(
            prop::sample::select(vec!["nx", "XX", "2", "3", "-1", "setname", "auth", "keyslot",
                "slots", "count", "lib-name", "x y", "", "0"]),
            0..5,
        ),
    ) {
        let mut words = vec![name];
        words.extend(rest);
        let _ = parse(&words);
    }
}

// Limits are enforced from the declared length, before the data arrives.
#[test]
fn limits_are_enforced_early() {
    let limits = RespLimits {
        bulk_len_max: 16,
        array_len_max: 4,
        inline_len_max: 32,
        command_bytes_max: 64,
    };
    let parser = RespParser::new(limits);
    let mut args = Vec::new();
    let cases: [(&[u8], &str); 7] = [
        (
            b"*1\r\n$17\r\n",
            "bulk length of 17 exceeds the limit of 16",
        ),
        (b"*5\r\n", "multibulk length of 5 exceeds the limit of 4"),
        (&[b'a'; 33], "too big inline request"),
        (b"*2\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-3\r\n", "invalid bulk length"),
        (
            b"*4\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n$16\r\n",
            "a command's size in bytes of 73 exceeds the limit of 64",
        ),
    ];
    for (input, expected) in cases {
        let error = parser.parse(input, &mut args).expect_err("over a limit");
        assert_eq!(
            error.to_string(),
            format!("Protocol error: {expected}"),
            "{input:?}"
        );
    }
    assert_eq!(
        parser
            .parse(b"*1\r\n$3\r\nabcX\r", &mut args)
            .map_err(|e| e.to_string()),
        Err("Protocol error: expected CRLF after bulk data".to_owned())
    );
    // Empty commands are skipped, as Redis does.
    assert_eq!(parser.parse(b"*0\r\n", &mut args), Ok(Some(4)));
    assert!(args.is_empty());
    assert_eq!(parser.parse(b"\r\n", &mut args), Ok(Some(2)));
    assert!(args.is_empty());
}

// What redis-benchmark sends: many pipelined commands in one read.
#[test]
fn pipelined_benchmark_commands() {
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n");
        stream.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n");
    }
    stream.extend_from_slice(b"PING\r\n");
    let (commands, end) = parse_all(&RespParser::default(), &stream);
    assert_eq!(end, Ok(stream.len()));
    assert_eq!(commands.len(), 7);
    let parsed: Vec<RespCommand> = commands
        .iter()
        .map(|c| {
            RespCommand::parse(&c.iter().map(Vec::as_slice).collect::<Vec<_>>()).expect("valid")
        })
        .collect();
    assert_eq!(parsed[6], RespCommand::Ping { message: None });
    assert_eq!(
        parsed[1],
        RespCommand::Get {
            key: b"key:__rand_int__".to_vec()
        }
    );
}

// Error replies worded as Redis words them, table-driven.
#[test]
fn command_errors_match_redis() {
    let cases: [(&[&str], &str); 14] = [
        (&["get"], "ERR wrong number of arguments for 'get' command"),
        (
            &["GET", "a", "b"],
            "ERR wrong number of arguments for 'get' command",
        ),
        (
            &["mset", "a", "1", "b"],
            "ERR wrong number of arguments for 'mset' command",
        ),
        (
            &["ping", "a", "b"],
            "ERR wrong number of arguments for 'ping' command",
        ),
        (
            &["FOO", "a", "b"],
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
        ),
        (
            &["foo"],
            "ERR unknown command 'foo', with args beginning with: ",
        ),
        (&["set", "k", "v", "nx", "xx"], "ERR syntax error"),
        (&["set", "k", "v", "bogus"], "ERR syntax error"),
        (
            &["incrby", "k", "1.5"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["select", "1"],
            "ERR DB index is out of range: this server has only database 0",
        ),
        (
            &["cluster", "bogus"],
            "ERR unknown subcommand 'bogus'. Try CLUSTER HELP.",
        ),
        (
            &["cluster", "keyslot"],
            "ERR wrong number of arguments for 'cluster|keyslot' command",
        ),
        (
            &["client", "setname", "a b"],
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        (
            &["hello", "x"],
            "ERR Protocol version is not an integer or out of range",
        ),
    ];
    for (words, expected) in cases {
        assert_eq!(error(words), expected, "{words:?}");
    }
    assert!(error(&["hello", "4"]).starts_with("NOPROTO "));
    assert!(
        error(&["set", "k", "v", "EX", "10"]).starts_with("ERR SET option 'EX' is not supported")
    );
    // The argument list shown for an unknown command stops once 128 bytes are shown.
    let long = "x".repeat(100);
    let text = error(&["nope", &long, &long, &long]);
    assert_eq!(text.matches('\'').count(), 6);
}

// Accepted commands, table-driven, with names in any case. The table is long by nature.
#[test]
#[allow(clippy::too_many_lines)]
fn commands_parse() {
    let b = |s: &str| s.as_bytes().to_vec();
    let cases: Vec<(&[&str], RespCommand)> = vec![
        (&["GeT", "k"], RespCommand::Get { key: b("k") }),
        (
            &["set", "k", "v"],
            RespCommand::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::Always,
            },
        ),
        (
            &["set", "k", "v", "NX"],
            RespCommand::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::IfAbsent,
            },
        ),
        (
            &["set", "k", "v", "xx", "XX"],
            RespCommand::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::IfPresent,
            },
        ),
        (
            &["incr", "k"],
            RespCommand::IncrBy {
                key: b("k"),
                delta: 1,
            },
        ),
        (
            &["incrby", "k", "-9223372036854775808"],
            RespCommand::IncrBy {
                key: b("k"),
                delta: i64::MIN,
            },
        ),
        (
            &["mset", "a", "1", "b", "2"],
            RespCommand::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            },
        ),
        (
            &["del", "a", "b"],
            RespCommand::Del {
                keys: vec![b("a"), b("b")],
            },
        ),
        (&["echo", "hi"], RespCommand::Echo { message: b("hi") }),
        (&["command"], RespCommand::Command(CommandQuery::All)),
        (
            &["command", "docs"],
            RespCommand::Command(CommandQuery::Docs(Vec::new())),
        ),
        (
            &["hello"],
            RespCommand::Hello {
                protocol: None,
                auth: None,
                setname: None,
            },
        ),
        (
            &["hello", "2", "auth", "u", "p", "setname", "me"],
            RespCommand::Hello {
                protocol: Some(2),
                auth: Some((b("u"), b("p"))),
                setname: Some(b("me")),
            },
        ),
        (
            &["client", "setinfo", "LIB-NAME", "redis-py"],
            RespCommand::Client(ClientQuery::SetInfo {
                attribute: b("lib-name"),
                value: b("redis-py"),
            }),
        ),
        (&["select", "0"], RespCommand::Select),
        (
            &["cluster", "keyslot", "{user}.x"],
            RespCommand::Cluster(ClusterQuery::KeySlot(b("{user}.x"))),
        ),
        (
            &["cluster", "SLOTS"],
            RespCommand::Cluster(ClusterQuery::Slots),
        ),
        (
            &["info", "Server"],
            RespCommand::Info {
                sections: vec![b("server")],
            },
        ),
    ];
    for (words, expected) in cases {
        assert_eq!(parse(words), Ok(expected), "{words:?}");
    }
}

// The COMMAND table answers for each command with Redis' ten-field entry.
#[test]
fn command_table_entries() {
    let spec = chronon_net::resp::CommandSpec::find(b"MSET").expect("known");
    let RespValue::Array(fields) = spec.info() else {
        panic!("an array");
    };
    assert_eq!(fields.len(), 10);
    assert_eq!(fields[0], RespValue::bulk("mset"));
    assert_eq!(fields[1], RespValue::Integer(-3));
    assert_eq!(fields[5], RespValue::Integer(2));
}
