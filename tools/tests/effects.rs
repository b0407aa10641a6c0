//! Exactly-once effects through real processes: three `chronon start` processes run webhooks
//! (`KvCommand::Webhook`) against a local HTTP receiver that records every attempt's
//! `Idempotency-Key` and `Chronon-Fence`. The receiver holds its answers, so the first attempts
//! are in flight when the process holding shard 0's primary is killed (SIGKILL). Every effect id must
//! still reach the receiver, the receiver's view deduplicated by id must hold each effect
//! exactly once with its body, no attempt may carry a fence older than one the receiver has
//! already seen from that shard, and every replica must end with the outcomes committed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_net::client::{Client, ClientConfig};
use common::cluster::{Cluster, DEADLINE};

/// One request the receiver got, in arrival order.
#[derive(Clone, Debug)]
struct Seen {
    key: String,
    fence: u64,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers wait until this is set.
    release: Arc<AtomicBool>,
}

impl Receiver {
    fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let receiver = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let receiver = receiver.clone();
                std::thread::spawn(move || receiver.serve(stream));
            }
        });
        port
    }

    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body) = loop {
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).into_owned();
                let length: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break (head, request[end + 4..end + 4 + length].to_vec());
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        };
        let (Some(key), Some(fence)) = (
            header(&head, "idempotency-key"),
            header(&head, "chronon-fence").and_then(|f| f.parse().ok()),
        ) else {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        self.seen
            .lock()
            .expect("lock")
            .push(Seen { key, fence, body });
        let start = Instant::now();
        while !self.release.load(Ordering::Relaxed) && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
}

/// Records `count` webhooks through the native client; returns (effect id, body) pairs.
fn webhooks(client: &mut Client, port: u16, from: usize, count: usize) -> Vec<(String, Vec<u8>)> {
    (from..from + count)
        .map(|i| {
            let body = format!("job-{i}").into_bytes();
            let command = KvCommand::Webhook {
                method: "POST".to_owned(),
                url: format!("http://127.0.0.1:{port}/hook/{i}"),
                headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
                body: body.clone(),
            };
            match client.execute(&command).expect("webhook recorded") {
                KvReply::Effect(id) => (id.to_string(), body),
                other => panic!("a webhook answered {other:?}"),
            }
        })
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webhooks_survive_a_primary_kill_exactly_once_at_a_deduplicating_receiver() {
    let mut cluster = Cluster::format("effects", 78, 2, 1);
    for replica in 0..3 {
        cluster.start(replica);
    }
    let receiver = Receiver::default();
    let port = receiver.start();
    let mut config = ClientConfig::new(cluster.topology.clone());
    config.call_timeout = Duration::from_mins(1);
    let mut client = Client::new(config).expect("client");

    let mut expected = webhooks(&mut client, port, 0, 20);
    // Shard 0's primary has attempts in flight (the receiver holds every answer): kill it.
    wait_for("an attempt from shard 0", || {
        receiver
            .seen()
            .iter()
            .any(|s| s.key.starts_with("chronon-0-"))
    });
    let victim = cluster.primary_host(0);
    cluster.kill(victim);
    receiver.release.store(true, Ordering::Relaxed);
    expected.extend(webhooks(&mut client, port, 20, 20));

    let ids: BTreeSet<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    wait_for("every effect at the receiver", || {
        let seen = receiver.seen();
        ids.iter().all(|id| seen.iter().any(|s| s.key == *id))
    });
    // The killed process restarts, and every replica ends with every outcome committed.
    cluster.start(victim);
    for shard in 0..2 {
        let state = cluster.converge(shard, &["chronon_effects_pending", "chronon_executed"]);
        assert_eq!(state[0], "0", "shard {shard} still has pending effects");
    }

    let seen = receiver.seen();
    // The receiver's view, deduplicated by id: each effect exactly once, with its body.
    let mut deduplicated: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for s in &seen {
        let body = deduplicated.entry(&s.key).or_insert(&s.body);
        assert_eq!(
            *body,
            s.body.as_slice(),
            "{} retried with another body",
            s.key
        );
    }
    assert_eq!(
        deduplicated.keys().copied().collect::<BTreeSet<_>>(),
        ids,
        "the receiver saw other ids than the ones recorded"
    );
    for (id, body) in &expected {
        assert_eq!(deduplicated[id.as_str()], body.as_slice(), "{id}");
    }
    // Fences only move forward, per shard, in the order the receiver saw attempts.
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for s in &seen {
        let shard = s.key.split('-').nth(1).expect("id format").to_owned();
        let fence = newest.entry(shard).or_insert(0);
        assert!(
            s.fence >= *fence,
            "{} arrived with fence {} after fence {} from the same shard",
            s.key,
            s.fence,
            *fence
        );
        *fence = s.fence;
    }
    // The failover really happened under the effects: the new primary attempted again some of
    // what the killed one had in flight, under a newer fence.
    let retried = seen
        .iter()
        .filter(|s| s.key.starts_with("chronon-0-"))
        .fold(BTreeMap::<&str, BTreeSet<u64>>::new(), |mut fences, s| {
            fences.entry(&s.key).or_default().insert(s.fence);
            fences
        })
        .values()
        .any(|fences| fences.len() > 1);
    assert!(
        retried,
        "no effect of shard 0 was attempted under two fences: {seen:?}"
    );
    println!(
        "{} effects, {} attempts at the receiver",
        expected.len(),
        seen.len()
    );
    cluster.remove();
}
