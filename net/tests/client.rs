//! The native client against a scripted fake cluster: real TCP listeners on 127.0.0.1 with
//! OS-assigned ports, one per (shard, host), that decode each request, log it and answer as
//! the test's script says. The logs show where every request went and with which numbers.
//!
//! Every fake server thread stops when its test drops the cluster, and at the latest after
//! `SERVER_LIFETIME`; every client call has a timeout. No assertion depends on elapsed time.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::vsr::{Endpoint, Envelope, Message, Reply, ReplyError, RequestKind};
use chronon_engine::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId, View};
use chronon_net::client::CasOutcome;
use chronon_net::constants::FRAME_PAYLOAD_MAX;
use chronon_net::wire::{decode_envelope, encode_envelope_frame};
use chronon_net::{
    Client, ClientConfig, ClientError, FrameDecoder, FrameKind, Topology, key_shard,
};

const CLUSTER: ClusterId = ClusterId(7);
/// The longest any fake server thread lives, so that no test can hang on one.
const SERVER_LIFETIME: Duration = Duration::from_mins(1);
/// How often server threads look at their stop flag.
const SERVER_POLL: Duration = Duration::from_millis(10);

/// One request as a fake server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    host: u8,
    shard: u16,
    /// The view the client put on the envelope.
    view: u64,
    client: u64,
    request: u64,
    kind: RequestKind,
    body: Vec<u8>,
}

impl Seen {
    fn command(&self) -> KvCommand {
        KvCommand::decode(&self.body).expect("the client encodes valid commands")
    }
}

/// The reply to send: the view to seal it in and its result. `None` drops the request.
type Answer = Option<(u64, Result<Vec<u8>, ReplyError>)>;
type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// Protocol violations the servers noticed; a test fails if any is here.
    violations: Vec<String>,
}

struct FakeCluster {
    shard_count: u16,
    host_count: u8,
    /// `addresses[shard][host]`, as `ClientConfig::addresses` wants them.
    addresses: Vec<Vec<SocketAddr>>,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    fn start(shard_count: u16, host_count: u8, script: &Arc<Script>) -> FakeCluster {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut addresses = Vec::new();
        let mut threads = Vec::new();
        for shard in 0..shard_count {
            let mut row = Vec::new();
            for host in 0..host_count {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
                row.push(listener.local_addr().expect("bound"));
                let server = Server {
                    shard,
                    host,
                    script: script.clone(),
                    log: log.clone(),
                    stop: stop.clone(),
                };
                threads.push(std::thread::spawn(move || server.listen(&listener)));
            }
            addresses.push(row);
        }
        FakeCluster {
            shard_count,
            host_count,
            addresses,
            log,
            stop,
            threads,
        }
    }

    fn config(&self, call_ms: u64, attempt_ms: u64, depth: usize) -> ClientConfig {
        // The base addresses only feed the port scheme, which `addresses` replaces.
        let bases = (0..self.host_count)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], 1)))
            .collect();
        let topology = Topology::new(CLUSTER, self.shard_count, bases).expect("valid shape");
        let mut config = ClientConfig::new(topology);
        config.addresses.clone_from(&self.addresses);
        config.call_timeout = Duration::from_millis(call_ms);
        config.attempt_timeout = Duration::from_millis(attempt_ms);
        config.pipeline_depth = depth;
        config
    }

    fn client(&self, call_ms: u64, attempt_ms: u64, depth: usize) -> Client {
        Client::new(self.config(call_ms, attempt_ms, depth)).expect("valid config")
    }

    /// Every request received so far, in arrival order, after checking no server saw a
    /// protocol violation.
    fn seen(&self) -> Vec<Seen> {
        let log = self.log.lock().expect("log lock");
        assert!(log.violations.is_empty(), "{:?}", log.violations);
        log.seen.clone()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("fake server threads do not panic");
        }
    }
}

/// One fake replica of one shard.
struct Server {
    shard: u16,
    host: u8,
    script: Arc<Script>,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn running(&self, started: Instant) -> bool {
        !self.stop.load(Ordering::Relaxed) && started.elapsed() < SERVER_LIFETIME
    }

    fn listen(self, listener: &TcpListener) {
        let started = Instant::now();
        listener.set_nonblocking(true).expect("nonblocking");
        let this = Arc::new(self);
        let mut connections = Vec::new();
        while this.running(started) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let server = this.clone();
                    connections.push(std::thread::spawn(move || {
                        server.serve(stream, started);
                    }));
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(SERVER_POLL);
                }
                Err(_) => break,
            }
        }
        for connection in connections {
            connection.join().expect("connection threads do not panic");
        }
    }

    fn serve(&self, mut stream: TcpStream, started: Instant) {
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(SERVER_POLL)).expect("timeout");
        let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_MAX);
        let mut buffer = vec![0; 4096];
        while self.running(started) {
            let n = match stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => n,
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(_) => return,
            };
            let mut input = &buffer[..n];
            while !input.is_empty() {
                let frame = match decoder.push(&mut input) {
                    Ok(Some(frame)) if frame.kind == FrameKind::Envelope => frame,
                    Ok(None) => break,
                    other => return self.violation(format!("bad frame: {other:?}")),
                };
                let reply = match decode_envelope(frame.payload) {
                    Ok(envelope) => self.answer(&envelope),
                    Err(error) => return self.violation(format!("bad envelope: {error}")),
                };
                let Ok(reply) = reply else { return };
                if let Some(reply) = reply {
                    let mut out = Vec::new();
                    encode_envelope_frame(&reply, FRAME_PAYLOAD_MAX, &mut out).expect("fits");
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn violation(&self, text: String) {
        self.log.lock().expect("log lock").violations.push(text);
    }

    /// Checks and logs one request and builds the script's reply to it.
    fn answer(&self, envelope: &Envelope) -> Result<Option<Envelope>, ()> {
        let Message::Request(request) = &envelope.message else {
            self.violation(format!("not a request: {envelope:?}"));
            return Err(());
        };
        if !envelope.is_intact()
            || envelope.cluster != CLUSTER
            || envelope.shard != ShardId(self.shard)
            || envelope.from != Endpoint::Client(request.client)
            || request.client == ClientId(0)
        {
            self.violation(format!("bad request envelope: {envelope:?}"));
            return Err(());
        }
        let seen = Seen {
            host: self.host,
            shard: self.shard,
            view: envelope.view.0,
            client: request.client.0,
            request: request.request.0,
            kind: request.kind,
            body: request.body.clone(),
        };
        self.log.lock().expect("log lock").seen.push(seen.clone());
        Ok((self.script)(&seen).map(|(view, result)| {
            Envelope::seal(
                CLUSTER,
                ShardId(self.shard),
                View(view),
                Endpoint::Replica(ReplicaIndex(self.host)),
                Message::Reply(Reply {
                    client: request.client,
                    request: request.request,
                    result,
                }),
            )
        }))
    }
}

/// The replicated state a real cluster would keep: sessions with their latest reply, and the
/// store. Scripts share one between their fake hosts, as replicas share committed state.
#[derive(Default)]
struct Replicated {
    sessions: BTreeMap<u64, (u64, Result<Vec<u8>, ReplyError>)>,
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commands applied to the store: a duplicate must not add one.
    applied: usize,
}

impl Replicated {
    /// What the engine's primary would reply once the request commits; `None` for a stale
    /// request, which gets no reply.
    fn execute(&mut self, seen: &Seen) -> Option<Result<Vec<u8>, ReplyError>> {
        if seen.kind == RequestKind::Register {
            self.sessions
                .entry(seen.client)
                .or_insert((0, Ok(Vec::new())));
            return Some(Ok(Vec::new()));
        }
        let Some((latest, reply)) = self.sessions.get(&seen.client) else {
            return Some(Err(ReplyError::NoSession));
        };
        if seen.request == *latest {
            return Some(reply.clone());
        }
        if seen.request < *latest {
            return None;
        }
        let reply = Ok(self.apply(seen.command()).encode());
        self.sessions
            .insert(seen.client, (seen.request, reply.clone()));
        Some(reply)
    }

    fn apply(&mut self, command: KvCommand) -> KvReply {
        self.applied += 1;
        match command {
            KvCommand::Get { key } => KvReply::Value(self.store.get(&key).cloned()),
            KvCommand::Put { key, value } => {
                self.store.insert(key, value);
                KvReply::Done
            }
            KvCommand::Delete { key } => KvReply::Deleted(self.store.remove(&key).is_some()),
            KvCommand::Cas { key, expected, new } => {
                let current = self.store.get(&key).cloned();
                let swapped = current == expected;
                if swapped {
                    self.store.insert(key, new);
                }
                KvReply::Cas { swapped, current }
            }
            other => panic!("the fake replica does not model {other:?}"),
        }
    }
}

/// A script under which every host answers as the primary of view 0.
fn kv_script(state: &Arc<Mutex<Replicated>>) -> Arc<Script> {
    let state = state.clone();
    Arc::new(move |seen: &Seen| {
        let result = state.lock().expect("state lock").execute(seen)?;
        Some((0, result))
    })
}

/// `count` keys owned by `shard` of `shard_count`.
fn keys_of(shard: u16, shard_count: u16, count: usize) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("key-{i}").into_bytes())
        .filter(|key| key_shard(key, shard_count) == ShardId(shard))
        .take(count)
        .collect()
}

/// (kind, request) pairs of `seen` for one client, in arrival order.
fn numbers(seen: &[Seen], client: u64) -> Vec<(RequestKind, u64)> {
    seen.iter()
        .filter(|s| s.client == client)
        .map(|s| (s.kind, s.request))
        .collect()
}

// Keys reach the shard that owns them: with two shards on one host, each shard's listener
// sees only commands on its own keys, after a registration of its own session, and numbered
// 1, 2, 3, ... in order.
#[test]
fn commands_are_routed_to_the_key_owning_shard() {
    let state = Arc::new(Mutex::new(Replicated::default()));
    let cluster = FakeCluster::start(2, 1, &kv_script(&state));
    let mut client = cluster.client(10_000, 1_000, 4);
    let keys: Vec<Vec<u8>> = [keys_of(0, 2, 3), keys_of(1, 2, 3)].concat();
    for key in &keys {
        client.put(key, b"v").expect("put");
    }
    for key in &keys {
        assert_eq!(client.get(key).expect("get"), Some(b"v".to_vec()));
    }

    let seen = cluster.seen();
    for shard in 0..2 {
        let here: Vec<&Seen> = seen.iter().filter(|s| s.shard == shard).collect();
        assert!(!here.is_empty(), "shard {shard} saw nothing");
        let client_id = here[0].client;
        let mut expected = vec![(RequestKind::Register, 0)];
        expected.extend((1..=6).map(|n| (RequestKind::Command, n)));
        let owned: Vec<Seen> = here.into_iter().cloned().collect();
        assert_eq!(numbers(&owned, client_id), expected, "shard {shard}");
        for s in owned.iter().filter(|s| s.kind == RequestKind::Command) {
            assert_eq!(key_shard(s.command().key(), 2), ShardId(shard));
        }
    }
}

// A `NotPrimary { view: 1 }` reply sends the very same request number to the primary of view
// 1 (host 1 of 3), and the client remembers the view: its next command goes straight there,
// sealed in view 1. Host 2 is never bothered.
#[test]
fn not_primary_redirects_with_the_same_request_number() {
    let state = Arc::new(Mutex::new(Replicated::default()));
    let shared = state.clone();
    let script: Arc<Script> = Arc::new(move |seen: &Seen| match seen.host {
        // Host 0 registered the session in view 0, then lost the primacy to host 1.
        0 if seen.kind == RequestKind::Register => {
            Some((0, shared.lock().expect("lock").execute(seen)?))
        }
        0 => Some((1, Err(ReplyError::NotPrimary { view: View(1) }))),
        1 => Some((1, shared.lock().expect("lock").execute(seen)?)),
        _ => None,
    });
    let cluster = FakeCluster::start(1, 3, &script);
    let mut client = cluster.client(10_000, 1_000, 1);
    client.put(b"k", b"v").expect("put");
    assert_eq!(client.known_view(ShardId(0)), View(1));
    assert_eq!(client.get(b"k").expect("get"), Some(b"v".to_vec()));

    let trace: Vec<(u8, RequestKind, u64, u64)> = cluster
        .seen()
        .iter()
        .map(|s| (s.host, s.kind, s.request, s.view))
        .collect();
    assert_eq!(
        trace,
        [
            (0, RequestKind::Register, 0, 0),
            (0, RequestKind::Command, 1, 0),
            (1, RequestKind::Command, 1, 1),
            (1, RequestKind::Command, 2, 1),
        ]
    );
    assert_eq!(state.lock().expect("lock").applied, 2);
}

// A request whose reply is lost is sent again with the same (client, request): to the same
// host once, then to the next host, which (as the new primary) answers the duplicate with the
// saved reply. The compare-and-set is applied once and the client sees its first outcome
// (swapped), not the outcome a second application would have had.
#[test]
fn lost_reply_is_retried_on_the_next_host_and_the_duplicate_is_answered() {
    let state = Arc::new(Mutex::new(Replicated::default()));
    let shared = state.clone();
    let script: Arc<Script> = Arc::new(move |seen: &Seen| {
        let result = shared.lock().expect("lock").execute(seen);
        match seen.host {
            // The old primary commits the command, but its reply never leaves.
            0 if seen.kind == RequestKind::Command => None,
            0 => Some((0, result?)),
            1 => Some((1, result?)),
            _ => None,
        }
    });
    let cluster = FakeCluster::start(1, 3, &script);
    let mut client = cluster.client(20_000, 100, 1);
    let outcome = client.cas(b"k", None, b"a").expect("cas");
    assert_eq!(
        outcome,
        CasOutcome {
            swapped: true,
            current: None
        }
    );
    assert_eq!(state.lock().expect("lock").applied, 1);
    assert_eq!(client.known_view(ShardId(0)), View(1));

    let seen = cluster.seen();
    // Counted per host rather than compared as one sequence: the servers log on their own
    // threads, so arrival order across hosts is not something to assert on.
    let client_id = seen[0].client;
    let commands = |host: u8| -> Vec<(u64, u64)> {
        seen.iter()
            .filter(|s| s.host == host && s.kind == RequestKind::Command)
            .map(|s| (s.client, s.request))
            .collect()
    };
    assert_eq!(commands(0), [(client_id, 1), (client_id, 1)]);
    assert_eq!(commands(1), [(client_id, 1)]);
    assert!(seen.iter().all(|s| s.host != 2));
}

// A pipeline spreads commands over several sessions per shard and returns results in input
// order: puts then gets of 24 keys on two shards, then the gets again in reverse. Each
// session registers once and numbers its commands 1, 2, 3, ... with none skipped or reused,
// and the commands on one key keep their order (the gets see the puts).
#[test]
fn pipeline_uses_several_sessions_and_keeps_input_order() {
    let state = Arc::new(Mutex::new(Replicated::default()));
    let cluster = FakeCluster::start(2, 1, &kv_script(&state));
    let mut client = cluster.client(10_000, 1_000, 4);
    let keys: Vec<Vec<u8>> = [keys_of(0, 2, 12), keys_of(1, 2, 12)].concat();
    let value = |key: &[u8]| [b"value-".as_slice(), key].concat();
    let mut commands: Vec<KvCommand> = keys
        .iter()
        .map(|key| KvCommand::Put {
            key: key.clone(),
            value: value(key),
        })
        .collect();
    commands.extend(keys.iter().map(|key| KvCommand::Get { key: key.clone() }));
    let results = client.pipeline(&commands);
    assert_eq!(results.len(), 48);
    for (i, result) in results.iter().enumerate() {
        let expected = if i < 24 {
            KvReply::Done
        } else {
            KvReply::Value(Some(value(&keys[i - 24])))
        };
        assert_eq!(
            result.as_ref().expect("command succeeds"),
            &expected,
            "#{i}"
        );
    }

    let reversed: Vec<KvCommand> = keys
        .iter()
        .rev()
        .map(|key| KvCommand::Get { key: key.clone() })
        .collect();
    let results = client.pipeline(&reversed);
    for (result, key) in results.iter().zip(keys.iter().rev()) {
        assert_eq!(
            result.as_ref().expect("get succeeds"),
            &KvReply::Value(Some(value(key)))
        );
    }

    let seen = cluster.seen();
    let mut clients: Vec<u64> = seen.iter().map(|s| s.client).collect();
    clients.sort_unstable();
    clients.dedup();
    assert!(clients.len() >= 4, "only {} sessions", clients.len());
    for client_id in clients {
        let numbers = numbers(&seen, client_id);
        assert_eq!(numbers[0], (RequestKind::Register, 0));
        for (i, number) in numbers.iter().enumerate().skip(1) {
            assert_eq!(*number, (RequestKind::Command, i as u64));
        }
    }
    assert_eq!(state.lock().expect("lock").applied, 72);
}

// When no replica ever answers, a call ends with a timeout error naming the shard, the request
// (0: the registration) and the hosts tried, instead of hanging.
#[test]
fn silent_cluster_ends_in_a_clear_timeout() {
    let silent: Arc<Script> = Arc::new(|_: &Seen| None);
    let cluster = FakeCluster::start(1, 2, &silent);
    let mut client = cluster.client(300, 50, 1);
    let error = client.get(b"k").expect_err("nobody answers");
    let ClientError::Timeout {
        shard,
        request,
        hosts,
        ..
    } = &error
    else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!((*shard, *request), (ShardId(0), RequestNumber(0)));
    assert!(!hosts.is_empty());
    assert!(hosts.iter().all(|h| cluster.addresses[0].contains(h)));
    let text = error.to_string();
    assert!(text.contains("no reply to request 0"), "{text}");
    assert!(text.contains("may or may not have taken effect"), "{text}");
}

// With nothing listening at all (ports that were OS-assigned and then closed), connections are
// refused on every host and the call ends by its deadline in `Unreachable`, which names the
// hosts and the connect error and says nothing was sent.
#[test]
fn refused_connections_end_in_unreachable() {
    let closed: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("bound")
        })
        .collect();
    let bases = vec![SocketAddr::from(([127, 0, 0, 1], 1)); 2];
    let mut config = ClientConfig::new(Topology::new(CLUSTER, 1, bases).expect("valid"));
    config.addresses = vec![closed.clone()];
    config.call_timeout = Duration::from_millis(300);
    config.attempt_timeout = Duration::from_millis(50);
    let mut client = Client::new(config).expect("valid config");
    let error = client.put(b"k", b"v").expect_err("nothing listens");
    match &error {
        ClientError::Unreachable { hosts, error, .. } => {
            assert!(!hosts.is_empty());
            assert!(hosts.iter().all(|h| closed.contains(h)));
            assert!(error.contains("refused"), "{error}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("could not connect"), "{text}");
    assert!(text.contains("nothing was sent"), "{text}");
}

// A node's `Misdirected` refusal ends the call at once, with no retry on the other host: as
// `WrongCluster` naming both clusters when the node's cluster differs, else as `WrongShard`
// naming the node's shard count.
#[test]
fn misdirected_refusals_end_the_call_at_once() {
    let cases = [
        (
            ClusterId(9),
            1,
            "belongs to cluster 9, not cluster 7: check --cluster",
        ),
        (CLUSTER, 1, "runs 1 shard(s) per host, so it has no shard"),
    ];
    for (node_cluster, shard_count, needle) in cases {
        let script: Arc<Script> = Arc::new(move |_: &Seen| {
            let refusal = ReplyError::Misdirected {
                cluster: node_cluster,
                shard_count,
            };
            Some((0, Err(refusal)))
        });
        let cluster = FakeCluster::start(1, 2, &script);
        let mut client = cluster.client(10_000, 1_000, 1);
        let error = client.get(b"k").expect_err("refused");
        match &error {
            ClientError::WrongCluster {
                host,
                node_cluster: got,
                cluster: ours,
            } => {
                assert_eq!((*got, *ours), (node_cluster, CLUSTER));
                assert!(cluster.addresses[0].contains(host));
            }
            ClientError::WrongShard {
                shard_count: got, ..
            } => assert_eq!(*got, shard_count),
            other => panic!("expected a misdirected error, got {other:?}"),
        }
        assert!(error.to_string().contains(needle), "{error}");
        assert_eq!(cluster.seen().len(), 1, "{needle}: sent once, not retried");
    }
}

// An evicted session is reported, not silently re-registered: the command is sent once under
// its session and the caller gets `SessionEvicted`. The next call opens a new session (a new
// client id, registered, numbering from 1) and succeeds.
#[test]
fn evicted_session_is_reported_and_replaced() {
    let state = Arc::new(Mutex::new(Replicated::default()));
    let first_client = Arc::new(Mutex::new(None));
    let (shared, first) = (state.clone(), first_client.clone());
    let script: Arc<Script> = Arc::new(move |seen: &Seen| {
        let mut first = first.lock().expect("lock");
        let evicted = *first.get_or_insert(seen.client) == seen.client;
        if evicted && seen.kind == RequestKind::Command {
            return Some((0, Err(ReplyError::NoSession)));
        }
        Some((0, shared.lock().expect("lock").execute(seen)?))
    });
    let cluster = FakeCluster::start(1, 1, &script);
    let mut client = cluster.client(10_000, 1_000, 1);
    let error = client.put(b"k", b"v").expect_err("evicted");
    assert!(
        matches!(
            error,
            ClientError::SessionEvicted {
                request: RequestNumber(1),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("was evicted"), "{error}");
    client.put(b"k", b"w").expect("a new session works");

    let seen = cluster.seen();
    let old = first_client
        .lock()
        .expect("lock")
        .expect("a client was seen");
    assert_eq!(
        numbers(&seen, old),
        [(RequestKind::Register, 0), (RequestKind::Command, 1)]
    );
    let new = seen.last().expect("requests").client;
    assert_ne!(new, old);
    assert_eq!(
        numbers(&seen, new),
        [(RequestKind::Register, 0), (RequestKind::Command, 1)]
    );
    assert_eq!(
        state.lock().expect("lock").store.get(b"k".as_slice()),
        Some(&b"w".to_vec())
    );
}

// Application refusals and size limits come back as their own errors, and a configuration
// that cannot work is refused before anything is sent.
#[test]
fn rejections_and_bad_configs_are_reported() {
    let script: Arc<Script> = Arc::new(|seen: &Seen| {
        if seen.kind == RequestKind::Register {
            return Some((0, Ok(Vec::new())));
        }
        match seen.command().key() {
            b"big" => Some((0, Err(ReplyError::TooLarge { size: 10, max: 5 }))),
            _ => Some((0, Err(ReplyError::Rejected("no such thing".to_owned())))),
        }
    });
    let cluster = FakeCluster::start(1, 1, &script);
    let mut client = cluster.client(10_000, 1_000, 1);
    let rejected = client.get(b"k").expect_err("rejected");
    assert!(
        matches!(&rejected, ClientError::Rejected { reason, .. } if reason == "no such thing"),
        "{rejected:?}"
    );
    let too_large = client.put(b"big", b"v").expect_err("too large");
    assert!(
        matches!(
            too_large,
            ClientError::TooLarge {
                size: 10,
                max: 5,
                ..
            }
        ),
        "{too_large:?}"
    );

    for depth in [0, 65] {
        let config = cluster.config(1_000, 100, depth);
        assert!(matches!(
            Client::new(config),
            Err(ClientError::Config { .. })
        ));
    }
    let mut config = cluster.config(1_000, 100, 1);
    config.attempt_timeout = Duration::ZERO;
    assert!(matches!(
        Client::new(config),
        Err(ClientError::Config { .. })
    ));
}
