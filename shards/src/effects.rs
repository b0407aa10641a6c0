//! Carrying out the outbox's effects, off the shard thread.
//!
//! The replica asks for an attempt with `Action::Attempt` only while it is the primary of a
//! view it holds durably. The shard hands the attempt to a small pool of worker threads
//! (bounded: a full queue fails the attempt at once, and the outbox retries it later), and a
//! worker's result comes back through a channel and a doorbell, to be fed to the replica as
//! `Input::EffectResult`. Nothing here blocks the shard loop.
//!
//! Every attempt carries its effect id, its fence (the primary's view) and its attempt number:
//! HTTP effects send them as the `Idempotency-Key`, `Chronon-Fence` and `Chronon-Attempt`
//! headers; sinks write them with the payload.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use chronon_engine::app::{EffectId, SideEffect};
use chronon_engine::ids::View;

/// Worker threads per shard: effects wait on networks, not CPUs.
pub const WORKERS: usize = 4;
/// Attempts waiting for a worker, at most.
pub const QUEUE_MAX: usize = 256;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest HTTP response body kept as an effect's response.
pub const RESPONSE_MAX: usize = 64 * 1024;

/// Where `Emit` effects go, by sink name. `log` is always there: it writes the effect to the
/// node's log. Others are files, registered with `--sink NAME=FILE`.
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    pub files: BTreeMap<String, PathBuf>,
}

/// One attempt, as the replica asked for it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: EffectId,
    pub view: View,
    pub attempt: u32,
    pub effect: SideEffect,
}

/// An attempt's result, for the replica.
#[derive(Clone, Debug)]
pub struct Done {
    pub id: EffectId,
    pub view: View,
    pub attempt: u32,
    pub result: Result<Vec<u8>, String>,
}

/// Wakes the shard loop when a result is ready.
pub type Doorbell = Arc<dyn Fn() + Send + Sync>;

pub struct EffectRunner {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EffectRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectRunner")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl EffectRunner {
    /// Starts the workers of one shard.
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start(name: &str, sinks: Sinks, doorbell: &Doorbell) -> std::io::Result<EffectRunner> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE_MAX);
        let (done, results) = mpsc::channel::<Done>();
        let queue = Arc::new(Mutex::new(queue));
        let sinks = Arc::new(sinks);
        let mut workers = Vec::with_capacity(WORKERS);
        for worker in 0..WORKERS {
            let (queue, done, sinks, doorbell) = (
                Arc::clone(&queue),
                done.clone(),
                Arc::clone(&sinks),
                Arc::clone(doorbell),
            );
            let handle = std::thread::Builder::new()
                .name(format!("{name}-effects-{worker}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job, never while running one.
                        let job = {
                            let Ok(queue) = queue.lock() else { return };
                            match queue.recv() {
                                Ok(job) => job,
                                Err(_) => return, // The shard stopped.
                            }
                        };
                        let result = run(&job, &sinks);
                        let finished = Done {
                            id: job.id,
                            view: job.view,
                            attempt: job.attempt,
                            result,
                        };
                        if done.send(finished).is_err() {
                            return;
                        }
                        doorbell();
                    }
                })?;
            workers.push(handle);
        }
        Ok(EffectRunner {
            jobs: Some(jobs),
            results,
            workers,
        })
    }

    /// Queues an attempt without blocking. A full queue fails it at once: the outbox counts the
    /// failure and retries after its backoff.
    #[must_use]
    pub fn submit(&self, job: Job) -> Option<Done> {
        let jobs = self.jobs.as_ref()?;
        match jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Some(Done {
                id: job.id,
                view: job.view,
                attempt: job.attempt,
                result: Err(format!(
                    "the node's effect queue is full ({QUEUE_MAX} attempts waiting)"
                )),
            }),
        }
    }

    /// Results that arrived since the last call.
    pub fn drain(&self) -> impl Iterator<Item = Done> + '_ {
        self.results.try_iter()
    }
}

impl Drop for EffectRunner {
    /// Closes the queue; workers finish the attempt they are on (bounded by the timeouts) and
    /// exit. Their results are dropped: a restarted primary attempts again.
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn run(job: &Job, sinks: &Sinks) -> Result<Vec<u8>, String> {
    match &job.effect {
        SideEffect::Emit { sink, payload } => emit(job, sink, payload, sinks),
        SideEffect::Http {
            method,
            url,
            headers,
            body,
        } => {
            let request = HttpRequest {
                method,
                url,
                headers,
                body,
            };
            http(&request, job)
        }
        SideEffect::Schedule { .. } => Err("a timer is not an attempt".to_owned()),
    }
}

fn emit(job: &Job, sink: &str, payload: &[u8], sinks: &Sinks) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(payload);
    if sink == "log" {
        tracing::info!(
            effect = %job.id,
            fence = %job.view,
            attempt = job.attempt,
            payload = %text,
            "effect emitted to the log sink"
        );
        return Ok(Vec::new());
    }
    let Some(path) = sinks.files.get(sink) else {
        return Err(format!(
            "no sink named {sink:?} on this node; register it on every node with --sink \
             {sink}=FILE"
        ));
    };
    let line = format!(
        "{{\"id\":\"{}\",\"fence\":{},\"attempt\":{},\"payload\":{}}}\n",
        job.id,
        job.view,
        job.attempt,
        json_string(&text)
    );
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()
    };
    write().map_err(|e| format!("sink {sink:?} ({}): {e}", path.display()))?;
    Ok(Vec::new())
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct HttpRequest<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
}

/// `http://host[:port]/path` split into its authority and path.
fn parse_url(url: &str) -> Result<(String, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url}: only http:// URLs are supported (put a local TLS proxy in front of https)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// One HTTP/1.1 request on a fresh connection. A 2xx status is a success (its body the
/// response); anything else, including a timeout, is a failure the outbox retries.
fn http(request: &HttpRequest<'_>, job: &Job) -> Result<Vec<u8>, String> {
    let url = request.url;
    let (authority, path) = parse_url(url)?;
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: {authority} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|e| format!("{url}: cannot connect to {address}: {e}"))?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let host = authority.trim_end_matches(":80");
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nIdempotency-Key: {}\r\nChronon-Fence: {}\r\n\
         Chronon-Attempt: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        request.method,
        job.id,
        job.view,
        job.attempt,
        request.body.len()
    );
    for (name, value) in request.headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(format!("{url}: header {name:?} is malformed"));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(request.body).map_err(io)?;
    let mut response = Vec::new();
    stream
        .take((RESPONSE_MAX + 16 * 1024) as u64)
        .read_to_end(&mut response)
        .map_err(io)?;
    let (status, body) =
        parse_response(&response).ok_or_else(|| format!("{url}: the response is not HTTP/1.x"))?;
    if (200..300).contains(&status) {
        Ok(body[..body.len().min(RESPONSE_MAX)].to_vec())
    } else {
        Err(format!("{url}: HTTP status {status}"))
    }
}

/// The status and body of a raw response read to the connection's close.
fn parse_response(response: &[u8]) -> Option<(u16, &[u8])> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, &response[end + 4..]))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use chronon_engine::ids::{Op, ShardId};

    use super::*;

    fn job(effect: SideEffect) -> Job {
        Job {
            id: EffectId {
                shard: ShardId(2),
                op: Op(40),
                ordinal: 1,
            },
            view: View(7),
            attempt: 3,
            effect,
        }
    }

    #[test]
    fn urls_and_responses_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/a/b?c=1"),
            Ok(("127.0.0.1:9000".to_owned(), "/a/b?c=1".to_owned()))
        );
        assert_eq!(
            parse_url("http://example.com"),
            Ok(("example.com:80".to_owned(), "/".to_owned()))
        );
        assert!(parse_url("https://example.com/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\nbody"),
            Some((204, &b"body"[..]))
        );
        assert_eq!(parse_response(b"junk"), None);
        assert_eq!(parse_response(b"SPDY 200\r\n\r\n"), None);
    }

    // A real request on loopback carries the id, the fence and the attempt.
    #[test]
    fn http_attempts_carry_the_id_and_fence() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.ends_with(b"hello") {
                let n = stream.read(&mut chunk).expect("read");
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .expect("write");
            String::from_utf8(request).expect("text")
        });
        let effect = SideEffect::Http {
            method: "POST".to_owned(),
            url: format!("http://127.0.0.1:{port}/hook"),
            headers: vec![("X-Test".to_owned(), "1".to_owned())],
            body: b"hello".to_vec(),
        };
        let result = run(&job(effect), &Sinks::default());
        let request = server.join().expect("server");
        assert_eq!(result, Ok(b"ok".to_vec()));
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        for header in [
            "Idempotency-Key: chronon-2-40-1\r\n",
            "Chronon-Fence: 7\r\n",
            "Chronon-Attempt: 3\r\n",
            "X-Test: 1\r\n",
        ] {
            assert!(request.contains(header), "{header} missing from {request}");
        }
    }

    #[test]
    fn unknown_sinks_and_refused_connections_fail_clearly() {
        let emit = SideEffect::Emit {
            sink: "nowhere".to_owned(),
            payload: Vec::new(),
        };
        let error = run(&job(emit), &Sinks::default()).expect_err("no such sink");
        assert!(error.contains("--sink nowhere=FILE"), "{error}");
        // A port nothing listens on: bind one, then close it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let http = SideEffect::Http {
            method: "POST".to_owned(),
            url: format!("http://127.0.0.1:{port}/"),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let error = run(&job(http), &Sinks::default()).expect_err("refused");
        assert!(error.contains("cannot connect"), "{error}");
    }

    #[test]
    fn file_sinks_append_one_json_line_per_attempt() {
        let dir = std::env::temp_dir().join(format!("chronon-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let sinks = Sinks {
            files: BTreeMap::from([("audit".to_owned(), path.clone())]),
        };
        let emit = SideEffect::Emit {
            sink: "audit".to_owned(),
            payload: b"say \"hi\"".to_vec(),
        };
        assert_eq!(run(&job(emit.clone()), &sinks), Ok(Vec::new()));
        assert_eq!(run(&job(emit), &sinks), Ok(Vec::new()));
        let text = std::fs::read_to_string(&path).expect("sink file");
        let line =
            "{\"id\":\"chronon-2-40-1\",\"fence\":7,\"attempt\":3,\"payload\":\"say \\\"hi\\\"\"}";
        assert_eq!(text, format!("{line}\n{line}\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_runner_reports_results_through_the_doorbell() {
        let (rang, heard) = mpsc::channel();
        let rang = Mutex::new(rang);
        let doorbell: Doorbell = Arc::new(move || {
            let _ = rang.lock().map(|s| s.send(()));
        });
        let runner = EffectRunner::start("test", Sinks::default(), &doorbell).expect("start");
        let emit = SideEffect::Emit {
            sink: "log".to_owned(),
            payload: b"x".to_vec(),
        };
        assert!(runner.submit(job(emit)).is_none());
        heard
            .recv_timeout(Duration::from_secs(30))
            .expect("the doorbell rang");
        let done: Vec<Done> = runner.drain().collect();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result, Ok(Vec::new()));
        assert_eq!(done[0].attempt, 3);
    }
}
