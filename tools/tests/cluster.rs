//! Three real `chronon start` processes on loopback, two shards each: writes through the native
//! client and through RESP, a SIGKILL of the process holding a primary, writes continuing after
//! the view change, the restart catching up, every acknowledged write readable, and equal state
//! hashes across the replicas. One of the three runs with `RLIMIT_MEMLOCK` at 0, so it takes the
//! fallback path (sync disk instead of `io_uring`) and must say so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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

/// A base port whose 3 x SHARDS ports are free now, for each of three hosts. Tests running at
/// once pass different `lane`s, so they do not pick the same ports.
fn free_bases(lane: u16) -> Vec<u16> {
    let mut bases = Vec::new();
    let mut candidate = 20_000 + (std::process::id() % 2_000) as u16 * 10 + lane * 5_000;
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

struct Cluster {
    dir: PathBuf,
    topology: Topology,
    children: Vec<Option<Child>>,
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
        // Replica 2 runs with no lockable memory: io_uring is refused and the node must fall
        // back to the sync disk, and say so.
        let mut command = if replica == 2 {
            let mut c = Command::new("prlimit");
            c.arg("--memlock=0").arg(env!("CARGO_BIN_EXE_chronon"));
            c
        } else {
            chronon()
        };
        let child = command
            .arg("start")
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

fn format_dirs(dir: &Path, topology: &Topology, slot_count: u32) {
    for replica in 0..3 {
        let status = chronon()
            .args(["format", "--data"])
            .arg(dir.join(format!("r{replica}")))
            .args(["--cluster", &CLUSTER.to_string()])
            .args(["--replica", &replica.to_string(), "--replicas", "3"])
            .args(["--shards", &topology.shard_count.to_string()])
            .args([
                "--slot-count",
                &slot_count.to_string(),
                "--slot-size",
                "8192",
            ])
            .args(["--checkpoint-size", "1048576"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("chronon format runs");
        assert!(status.success());
    }
}

#[test]
fn three_processes_survive_a_primary_kill() {
    let dir = std::env::temp_dir().join(format!("chronon-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hosts = free_bases(0)
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let topology = Topology::new(ClusterId(CLUSTER), SHARDS, hosts).expect("topology");
    format_dirs(&dir, &topology, 2048);
    let mut cluster = Cluster {
        dir: dir.clone(),
        topology: topology.clone(),
        children: vec![None, None, None],
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

    assert_converged(&cluster);
    assert!(
        cluster.log(2).contains("falling back to the sync disk"),
        "replica 2 ran without lockable memory but did not report the fallback:\n{}",
        cluster.log(2)
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every replica of each shard reaches the same executed op with the same state hash.
fn assert_converged(cluster: &Cluster) {
    for shard in 0..SHARDS {
        let start = Instant::now();
        loop {
            let states: Vec<Option<(String, String)>> = (0..3)
                .map(|host| {
                    info(cluster, host, shard).map(|f| {
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
}

// Logs of 32 slots (a window of 16 ops beyond the checkpoint, a checkpoint every 4 ops) under
// hundreds of writes: every ring wraps many times and the nodes keep serving, so checkpoints
// are written and the log is reclaimed. A backup is killed while the others write on far past
// its log (their rings reuse every slot it would need), restarted, and must catch up by state
// transfer: every acknowledged write is readable and all replicas agree on the state hash.
#[test]
fn wrapping_logs_keep_running_and_a_restart_catches_up_by_state_transfer() {
    let dir = std::env::temp_dir().join(format!("chronon-wrap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hosts = free_bases(1)
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let topology = Topology::new(ClusterId(CLUSTER), SHARDS, hosts).expect("topology");
    format_dirs(&dir, &topology, 32);
    let mut cluster = Cluster {
        dir: dir.clone(),
        topology: topology.clone(),
        children: vec![None, None, None],
    };
    for replica in 0..3 {
        cluster.start(replica);
    }
    let mut config = ClientConfig::new(topology.clone());
    config.call_timeout = Duration::from_mins(1);
    let mut client = Client::new(config).expect("client");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut write = |client: &mut Client, round: &str, n: usize| {
        for i in 0..n {
            // A few keys rewritten often, so the state stays small while the log runs on.
            let (key, value) = (format!("wrap-{}", i % 16), format!("{round}-{i}"));
            client
                .put(key.as_bytes(), value.as_bytes())
                .expect("native put");
            acknowledged.retain(|(k, _)| *k != key);
            acknowledged.push((key, value));
        }
    };
    write(&mut client, "first", 200);
    let victim = (primary_host(&cluster, 0) + 1) % 3;
    cluster.kill(victim);
    write(&mut client, "without", 300);
    cluster.start(victim);
    write(&mut client, "after", 100);
    // The logs were reclaimed behind checkpoints far past a whole ring.
    let fields = info(&cluster, primary_host(&cluster, 0), 0).expect("primary answers INFO");
    let base: u64 = field(&fields, "chronon_log_base")
        .parse()
        .expect("a log base");
    assert!(
        base > 64,
        "the primary's log was not reclaimed: base {base}"
    );
    for (key, value) in &acknowledged {
        let got = client.get(key.as_bytes()).expect("native get");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "read of {key}");
    }
    assert_converged(&cluster);
    let transfers: u64 = (0..SHARDS)
        .filter_map(|shard| info(&cluster, victim, shard))
        .map(|f| {
            field(&f, "chronon_state_transfers")
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        transfers > 0,
        "the restarted replica caught up without a state transfer"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
