//! Three real `chronon start` processes on loopback, two shards each: writes through the native
//! client and through RESP, a SIGKILL of the process holding a primary, writes continuing after
//! the view change, the restart catching up, every acknowledged write readable, and equal state
//! hashes across the replicas. The test runs twice, once per network path: on `io_uring`
//! (`--io uring`), with one of the three processes at `RLIMIT_MEMLOCK` 0 so that it takes both
//! fallbacks (the sync disk and the epoll network path) and must say so; and with every process
//! forced onto the epoll path (`--io epoll`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronon_engine::ids::{ClusterId, ReplicaIndex, ShardId};
use chronon_net::Topology;
use chronon_net::client::{Client, ClientConfig};
use chronon_net::resp::{RespLimits, RespValue};

const SHARDS: u16 = 2;
const CLUSTER: u64 = 77;
const DEADLINE: Duration = Duration::from_mins(2);

fn chronon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chronon"))
}

/// A base port whose 3 x SHARDS ports are free now, for each of three hosts. Each test of this
/// process passes its own `from`, so that tests running at once do not pick the same ports.
fn free_bases(from: u16) -> Vec<u16> {
    let mut bases = Vec::new();
    let mut candidate = from + (std::process::id() % 1_000) as u16 * 20;
    while bases.len() < 3 {
        let ports = candidate..candidate + 3 * SHARDS;
        let free = ports
            .clone()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            bases.push(candidate);
        }
        candidate += 3 * SHARDS + 4;
    }
    bases
}

/// Which network path the processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// `--io uring`, except replica 2, which runs `--io auto` without lockable memory.
    Uring,
    /// `--io epoll` everywhere.
    Epoll,
}

struct Cluster {
    dir: PathBuf,
    topology: Topology,
    children: Vec<Option<Child>>,
    path: Path,
}

impl Cluster {
    fn start(&mut self, replica: usize) {
        let addresses: Vec<String> = self
            .topology
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("replica-{replica}.log")))
            .expect("log file");
        // On the io_uring path, replica 2 runs with no lockable memory: io_uring is refused,
        // and the node must fall back to the sync disk and the epoll network path, and say so.
        let starved = self.path == Path::Uring && replica == 2;
        let mut command = if starved {
            let mut c = Command::new("prlimit");
            c.arg("--memlock=0").arg(env!("CARGO_BIN_EXE_chronon"));
            c
        } else {
            chronon()
        };
        let io = match (self.path, starved) {
            (Path::Uring, true) => "auto",
            (Path::Uring, false) => "uring",
            (Path::Epoll, _) => "epoll",
        };
        let child = command
            .arg("start")
            .args(["--io", io])
            .arg("--data")
            .arg(self.dir.join(format!("r{replica}")))
            .arg("--addresses")
            .arg(addresses.join(","))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chronon start runs");
        self.children[replica] = Some(child);
    }

    fn kill(&mut self, replica: usize) {
        if let Some(mut child) = self.children[replica].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    fn log(&self, replica: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("replica-{replica}.log"))).unwrap_or_default()
    }

    fn resp(&self, host: usize, shard: u16) -> SocketAddr {
        self.topology
            .resp_addr(ReplicaIndex(host as u8), ShardId(shard))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in 0..self.children.len() {
            self.kill(replica);
        }
    }
}

/// One RESP command on a fresh connection; `None` if the node did not answer.
fn resp(address: SocketAddr, args: &[&str]) -> Option<RespValue> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((value, _))) = RespValue::decode(&buffer, &RespLimits::default()) {
            return Some(value);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Retries a RESP command until it gets a non-error reply.
fn resp_until_ok(cluster: &Cluster, shard: u16, args: &[&str]) -> RespValue {
    let start = Instant::now();
    let mut host = 0;
    loop {
        match resp(cluster.resp(host, shard), args) {
            Some(RespValue::Error(_)) | None => host = (host + 1) % 3,
            Some(value) => return value,
        }
        assert!(start.elapsed() < DEADLINE, "RESP {args:?} never succeeded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `# Chronon` fields of a shard's `INFO`, if that process answers.
fn info(cluster: &Cluster, host: usize, shard: u16) -> Option<Vec<(String, String)>> {
    let Some(RespValue::Bulk(text)) = resp(cluster.resp(host, shard), &["INFO"]) else {
        return None;
    };
    let text = String::from_utf8(text).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.starts_with("chronon_"))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn primary_host(cluster: &Cluster, shard: u16) -> usize {
    let start = Instant::now();
    loop {
        for host in 0..3 {
            if let Some(fields) = info(cluster, host, shard) {
                let view: u64 = field(&fields, "chronon_view").parse().unwrap_or(0);
                let primary = cluster
                    .topology
                    .primary(ShardId(shard), chronon_engine::ids::View(view));
                if field(&fields, "chronon_status") == "Normal" && usize::from(primary.0) == host {
                    return host;
                }
            }
        }
        assert!(start.elapsed() < DEADLINE, "shard {shard} has no primary");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn format_dirs(dir: &std::path::Path, topology: &Topology) {
    for replica in 0..3 {
        let status = chronon()
            .args(["format", "--data"])
            .arg(dir.join(format!("r{replica}")))
            .args(["--cluster", &CLUSTER.to_string()])
            .args(["--replica", &replica.to_string(), "--replicas", "3"])
            .args(["--shards", &topology.shard_count.to_string()])
            .args(["--slot-count", "2048", "--slot-size", "8192"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("chronon format runs");
        assert!(status.success());
    }
}

#[test]
fn three_processes_survive_a_primary_kill_on_io_uring() {
    three_processes_survive_a_primary_kill(Path::Uring, 20_000);
}

#[test]
fn three_processes_survive_a_primary_kill_on_epoll() {
    three_processes_survive_a_primary_kill(Path::Epoll, 42_000);
}

fn three_processes_survive_a_primary_kill(path: Path, ports_from: u16) {
    let dir = std::env::temp_dir().join(format!("chronon-cluster-{}-{path:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hosts = free_bases(ports_from)
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let topology = Topology::new(ClusterId(CLUSTER), SHARDS, hosts).expect("topology");
    format_dirs(&dir, &topology);
    let mut cluster = Cluster {
        dir: dir.clone(),
        topology: topology.clone(),
        children: vec![None, None, None],
        path,
    };
    for replica in 0..3 {
        cluster.start(replica);
    }
    let mut config = ClientConfig::new(topology.clone());
    config.call_timeout = Duration::from_mins(1);
    let mut client = Client::new(config).expect("client");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut write = |client: &mut Client, cluster: &Cluster, round: &str, n: usize| {
        for i in 0..n {
            let (key, value) = (format!("native-{round}-{i}"), format!("v{i}-{round}"));
            client
                .put(key.as_bytes(), value.as_bytes())
                .expect("native put");
            acknowledged.push((key, value));
            let (key, value) = (format!("resp-{round}-{i}"), format!("r{i}-{round}"));
            let shard = chronon_net::key_shard(key.as_bytes(), SHARDS).0;
            let reply = resp_until_ok(cluster, shard, &["SET", &key, &value]);
            assert_eq!(reply, RespValue::Simple("OK".to_owned()));
            acknowledged.push((key, value));
        }
    };
    write(&mut client, &cluster, "before", 40);

    // Kill the process holding shard 0's primary; writes to both shards must go on.
    let victim = primary_host(&cluster, 0);
    cluster.kill(victim);
    write(&mut client, &cluster, "during", 40);
    let new_primary = primary_host(&cluster, 0);
    assert_ne!(new_primary, victim, "shard 0 did not change primary");

    // The killed process restarts and catches up.
    cluster.start(victim);
    write(&mut client, &cluster, "after", 20);

    for (key, value) in &acknowledged {
        let got = client.get(key.as_bytes()).expect("native get");
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "native read of {key}"
        );
        let shard = chronon_net::key_shard(key.as_bytes(), SHARDS).0;
        let reply = resp_until_ok(&cluster, shard, &["GET", key]);
        assert_eq!(
            reply,
            RespValue::Bulk(value.clone().into_bytes()),
            "RESP read of {key}"
        );
    }

    // Every replica of each shard reaches the same executed op with the same state hash.
    for shard in 0..SHARDS {
        let start = Instant::now();
        loop {
            let states: Vec<Option<(String, String)>> = (0..3)
                .map(|host| {
                    info(&cluster, host, shard).map(|f| {
                        (
                            field(&f, "chronon_executed"),
                            field(&f, "chronon_state_hash"),
                        )
                    })
                })
                .collect();
            let first = states[0].clone();
            if first.is_some() && states.iter().all(|s| *s == first) {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "shard {shard}: replicas did not converge: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    check_paths(&cluster);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each process runs the network path and disk it was meant to, and the starved one says why.
fn check_paths(cluster: &Cluster) {
    for host in 0..3 {
        let fields = info(cluster, host, 0).expect("INFO answers");
        let starved = cluster.path == Path::Uring && host == 2;
        let io = if cluster.path == Path::Uring && !starved {
            "uring"
        } else {
            "epoll"
        };
        assert_eq!(
            field(&fields, "chronon_io"),
            io,
            "host {host}'s network path"
        );
        if starved {
            assert_eq!(field(&fields, "chronon_disk"), "sync", "host {host}'s disk");
        }
    }
    if cluster.path == Path::Uring {
        let log = cluster.log(2);
        for warning in [
            "falling back to the sync disk",
            "falling back to the epoll network path",
        ] {
            assert!(
                log.contains(warning),
                "replica 2 ran without lockable memory but did not say {warning:?}:\n{log}"
            );
        }
    }
}
