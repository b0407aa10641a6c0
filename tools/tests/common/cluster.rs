//! Real-process clusters for the integration tests: free ports, formatting, starting and killing
//! `chronon start` processes, and reading a shard's `INFO` over RESP.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronon_engine::ids::{ClusterId, ReplicaIndex, ShardId, View};
use chronon_net::Topology;
use chronon_net::resp::{RespLimits, RespValue};

pub const DEADLINE: Duration = Duration::from_mins(2);

pub fn chronon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chronon"))
}

/// Base ports for three hosts whose `3 x shards` ports are all free now. `salt` keeps test
/// binaries running at the same time apart.
pub fn free_bases(shards: u16, salt: u16) -> Vec<u16> {
    let mut bases = Vec::new();
    let mut candidate = 20_000 + salt * 4_000 + (std::process::id() % 300) as u16 * 10;
    while bases.len() < 3 {
        let ports = candidate..candidate + 3 * shards;
        let free = ports
            .clone()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            bases.push(candidate);
        }
        candidate += 3 * shards + 4;
    }
    bases
}

/// Three hosts on loopback, formatted but not started.
pub struct Cluster {
    pub dir: PathBuf,
    pub topology: Topology,
    children: Vec<Option<Child>>,
    /// Extra `chronon start` flags.
    pub flags: Vec<String>,
}

impl Cluster {
    /// Formats three replicas of `shards` shards in a fresh temp dir named after `name`.
    pub fn format(name: &str, cluster: u64, shards: u16, salt: u16) -> Cluster {
        Cluster::format_with(name, cluster, shards, salt, 2048)
    }

    /// As [`Cluster::format`], with journal rings of `slot_count` slots.
    pub fn format_with(
        name: &str,
        cluster: u64,
        shards: u16,
        salt: u16,
        slot_count: u32,
    ) -> Cluster {
        let dir = std::env::temp_dir().join(format!("chronon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let hosts = free_bases(shards, salt)
            .into_iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let topology = Topology::new(ClusterId(cluster), shards, hosts).expect("topology");
        format_dirs(&dir, &topology, slot_count);
        Cluster {
            dir,
            topology,
            children: vec![None, None, None],
            flags: Vec::new(),
        }
    }

    /// Starts host `replica` with `args` added to `chronon start`'s; `prefix` runs it under a
    /// wrapper (for example `prlimit`).
    pub fn start_with(&mut self, replica: usize, prefix: &[&str], args: &[&str]) {
        let addresses: Vec<String> = self
            .topology
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(replica))
            .expect("log file");
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_chronon"));
                c
            }
            None => chronon(),
        };
        let child = command
            .arg("start")
            .arg("--data")
            .arg(self.dir.join(format!("r{replica}")))
            .arg("--addresses")
            .arg(addresses.join(","))
            .args(&self.flags)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chronon start runs");
        self.children[replica] = Some(child);
    }

    pub fn start(&mut self, replica: usize) {
        self.start_with(replica, &[], &[]);
    }

    pub fn kill(&mut self, replica: usize) {
        if let Some(mut child) = self.children[replica].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    fn log_path(&self, replica: usize) -> PathBuf {
        self.dir.join(format!("replica-{replica}.log"))
    }

    pub fn log(&self, replica: usize) -> String {
        std::fs::read_to_string(self.log_path(replica)).unwrap_or_default()
    }

    pub fn resp_addr(&self, host: usize, shard: u16) -> SocketAddr {
        self.topology
            .resp_addr(ReplicaIndex(host as u8), ShardId(shard))
    }

    /// The `# Chronon` fields of a shard's `INFO`, if that process answers.
    pub fn info(&self, host: usize, shard: u16) -> Option<Vec<(String, String)>> {
        let Some(RespValue::Bulk(text)) = resp(self.resp_addr(host, shard), &["INFO"]) else {
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

    /// The host holding `shard`'s primary in normal status, waiting for one.
    pub fn primary_host(&self, shard: u16) -> usize {
        let start = Instant::now();
        loop {
            for host in 0..3 {
                if let Some(fields) = self.info(host, shard) {
                    let view: u64 = field(&fields, "chronon_view").parse().unwrap_or(0);
                    let primary = self.topology.primary(ShardId(shard), View(view));
                    if field(&fields, "chronon_status") == "Normal"
                        && usize::from(primary.0) == host
                    {
                        return host;
                    }
                }
            }
            assert!(start.elapsed() < DEADLINE, "shard {shard} has no primary");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every replica of `shard` reports the same value of each of `names`, and
    /// returns those values.
    pub fn converge(&self, shard: u16, names: &[&str]) -> Vec<String> {
        let start = Instant::now();
        loop {
            let states: Vec<Option<Vec<String>>> = (0..3)
                .map(|host| {
                    self.info(host, shard)
                        .map(|f| names.iter().map(|n| field(&f, n)).collect())
                })
                .collect();
            if let Some(Some(first)) = states.first()
                && states.iter().all(|s| s.as_ref() == Some(first))
            {
                return first.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "shard {shard}: replicas did not converge on {names:?}: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn remove(self) {
        let dir = self.dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in 0..self.children.len() {
            self.kill(replica);
        }
    }
}

pub fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Retries a RESP command on each host in turn until one gives a non-error reply.
pub fn resp_until_ok(cluster: &Cluster, shard: u16, args: &[&str]) -> RespValue {
    let start = Instant::now();
    let mut host = 0;
    loop {
        match resp(cluster.resp_addr(host, shard), args) {
            Some(RespValue::Error(_)) | None => host = (host + 1) % 3,
            Some(value) => return value,
        }
        assert!(start.elapsed() < DEADLINE, "RESP {args:?} never succeeded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One RESP command on a fresh connection; `None` if the node did not answer.
pub fn resp(address: SocketAddr, args: &[&str]) -> Option<RespValue> {
    resp_session(address, &[args])?.pop()
}

/// RESP commands, in order, on one fresh connection; `None` if the node did not answer them
/// all.
pub fn resp_session(address: SocketAddr, commands: &[&[&str]]) -> Option<Vec<RespValue>> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    let mut replies = Vec::new();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    for args in commands {
        let mut request = format!("*{}\r\n", args.len());
        for arg in *args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        loop {
            if let Ok(Some((value, used))) = RespValue::decode(&buffer, &RespLimits::default()) {
                buffer.drain(..used);
                replies.push(value);
                break;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    }
    Some(replies)
}

pub fn format_dirs(dir: &Path, topology: &Topology, slot_count: u32) {
    for replica in 0..3 {
        let status = chronon()
            .args(["format", "--data"])
            .arg(dir.join(format!("r{replica}")))
            .args(["--cluster", &topology.cluster.0.to_string()])
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
