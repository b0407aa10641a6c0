//! `chronon dev`: formats (on first use) and runs a local cluster of `chronon start`
//! processes on loopback, writes `DIR/cluster.json` once every shard serves, and stops them all
//! on Ctrl-C.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chronon_engine::app::kv::KvCommand;
use chronon_engine::ids::{ClusterId, ReplicaIndex, ShardId};
use chronon_net::Topology;
use chronon_net::client::{Client, ClientConfig};

use crate::data_dir;
use crate::format::{self, FormatArgs};

/// Ports reserved per replica: replica `r` uses ports from `base + PORT_SPAN * r`.
const PORT_SPAN: u32 = 100;

/// How long one readiness probe waits before the loop checks the processes again.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for the replicas' data, logs and cluster.json (formatted on first use).
    #[arg(long, value_name = "DIR", default_value = "chronon-dev")]
    pub data: PathBuf,
    /// Replicas (local processes).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub replicas: u8,
    /// Shards per replica.
    #[arg(long, value_name = "S", default_value_t = 2)]
    pub shards: u16,
    /// Base port: replica r uses ports from base + 100 r.
    #[arg(long, value_name = "PORT", default_value_t = 7000)]
    pub base_port: u16,
    /// Slots in each shard's log ring.
    #[arg(long, value_name = "C", default_value_t = 16384)]
    pub slot_count: u32,
    /// Bytes per log slot (the largest prepare).
    #[arg(long, value_name = "BYTES", default_value_t = 8192)]
    pub slot_size: u32,
    /// Network I/O of every replica: auto, uring or epoll (passed to `chronon start --io`).
    #[arg(long, value_name = "KIND", default_value = "auto")]
    pub io: chronon_shards::IoChoice,
    /// How long to wait for the cluster to serve before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub ready_timeout: u64,
}

/// Each checkpoint copy of a dev cluster's shard: room for a few MiB of keys, without the
/// production default's 32 MiB per shard file on a laptop.
const DEV_CHECKPOINT_SIZE: u32 = 4 * 1024 * 1024;

fn replica_dir(data: &Path, replica: u8) -> PathBuf {
    data.join(format!("replica-{replica}"))
}

/// The cluster id of an existing dev directory, or a new one.
fn cluster_id(args: &DevArgs) -> anyhow::Result<(u64, bool)> {
    let first = replica_dir(&args.data, 0);
    if first.exists() && !data_dir::list_shards(&first)?.is_empty() {
        let node = crate::start::node_config(&crate::start::StartArgs {
            config: None,
            data: Some(first),
            addresses: (0..args.replicas)
                .map(|_| "127.0.0.1:1".to_owned())
                .collect(),
            cluster: None,
            disk: chronon_disk::DiskChoice::Auto,
            io: chronon_shards::IoChoice::Auto,
            pin: false,
            sinks: Vec::new(),
            checkpoint_interval: None,
        })?;
        if node.topology.shard_count != args.shards {
            bail!(
                "{} holds a cluster with {} shards, not {}: pass --shards {} or another --data",
                args.data.display(),
                node.topology.shard_count,
                args.shards,
                node.topology.shard_count
            );
        }
        return Ok((node.topology.cluster.0, false));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    Ok(((nanos as u64) | 1, true))
}

/// Runs `chronon dev`.
pub fn run(args: &DevArgs) -> anyhow::Result<()> {
    if args.replicas == 0 || args.shards == 0 {
        bail!("--replicas and --shards must be at least 1");
    }
    let last = u32::from(args.base_port) + PORT_SPAN * u32::from(args.replicas);
    if u32::from(args.shards) * u32::from(chronon_net::topology::PORTS_PER_SHARD) > PORT_SPAN
        || last > u32::from(u16::MAX)
    {
        bail!(
            "--base-port {} with {} replicas and {} shards needs ports past 65535 or more than \
             100 per replica: lower --base-port or --shards",
            args.base_port,
            args.replicas,
            args.shards
        );
    }
    let (cluster, fresh) = cluster_id(args)?;
    let addresses: Vec<String> = (0..u16::from(args.replicas))
        .map(|r| {
            format!(
                "127.0.0.1:{}",
                u32::from(args.base_port) + PORT_SPAN * u32::from(r)
            )
        })
        .collect();
    if fresh {
        for replica in 0..args.replicas {
            format::run(&FormatArgs {
                data: replica_dir(&args.data, replica),
                cluster,
                replica,
                replicas: args.replicas,
                shards: args.shards,
                slot_count: args.slot_count,
                slot_size: args.slot_size,
                checkpoint_size: DEV_CHECKPOINT_SIZE,
                disk: chronon_disk::DiskChoice::Auto,
            })?;
        }
    }
    let hosts = addresses
        .iter()
        .map(|a| a.parse::<SocketAddr>().map_err(|e| anyhow!("{a}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let topology = Topology::new(ClusterId(cluster), args.shards, hosts)?;
    let exe = std::env::current_exe().context("cannot find the chronon executable")?;
    let mut children = Vec::new();
    for replica in 0..args.replicas {
        let dir = replica_dir(&args.data, replica);
        let log = File::create(args.data.join(format!("replica-{replica}.log")))
            .context("cannot create a replica log file")?;
        let child = Command::new(&exe)
            .arg("start")
            .arg("--data")
            .arg(&dir)
            .arg("--addresses")
            .arg(addresses.join(","))
            .args(["--io", args.io.name()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start replica {replica}"))?;
        children.push(child);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
        .context("cannot install the Ctrl-C handler")?;
    let result = serve(args, &topology, &mut children, &stop);
    for child in &mut children {
        terminate(child);
    }
    let _ = std::fs::remove_file(args.data.join("cluster.json"));
    result
}

fn serve(
    args: &DevArgs,
    topology: &Topology,
    children: &mut [Child],
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    let mut config = ClientConfig::new(topology.clone());
    config.call_timeout = READY_PROBE_TIMEOUT;
    let mut client = Client::new(config)?;
    let mut pending: Vec<ShardId> = (0..topology.shard_count).map(ShardId).collect();
    while !pending.is_empty() {
        check_children(args, children)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster did not serve shards {pending:?} within {} s; see the logs in {}",
                args.ready_timeout,
                args.data.display()
            );
        }
        pending.retain(|shard| !serves(&mut client, *shard));
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = cluster_json(topology, children);
    let path = args.data.join("cluster.json");
    let temp = args.data.join("cluster.json.tmp");
    std::fs::write(&temp, json.to_string()).context("cannot write cluster.json")?;
    std::fs::rename(&temp, &path).context("cannot write cluster.json")?;
    say!(
        "cluster {} is up: {} replicas x {} shards",
        topology.cluster,
        topology.replica_count(),
        topology.shard_count
    );
    say!("  layout:  {}", path.display());
    for (r, _) in children.iter().enumerate() {
        let host = ReplicaIndex(r as u8);
        let resp: Vec<String> = (0..topology.shard_count)
            .map(|s| topology.resp_addr(host, ShardId(s)).to_string())
            .collect();
        say!("  replica {r}: RESP {}", resp.join(" "));
    }
    say!(
        "  try:     redis-cli -p {} set hello world",
        topology.resp_addr(ReplicaIndex(0), ShardId(0)).port()
    );
    say!(
        "           chronon kv set hello world --cluster {} --shards {} --addresses {}",
        topology.cluster,
        topology.shard_count,
        topology
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    say!(
        "  logs:    {}/replica-*.log; stop with Ctrl-C",
        args.data.display()
    );
    while !stop.load(Ordering::Relaxed) {
        check_children(args, children)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    say!("stopping the cluster");
    Ok(())
}

fn check_children(args: &DevArgs, children: &mut [Child]) -> anyhow::Result<()> {
    for (r, child) in children.iter_mut().enumerate() {
        if let Some(status) = child.try_wait().context("cannot check a replica process")? {
            bail!(
                "replica {r} exited ({status}); its log is {}",
                args.data.join(format!("replica-{r}.log")).display()
            );
        }
    }
    Ok(())
}

fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SIGTERM lets the node stop cleanly; a node that ignores it is killed below.
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn cluster_json(topology: &Topology, children: &[Child]) -> serde_json::Value {
    let replicas: Vec<serde_json::Value> = children
        .iter()
        .enumerate()
        .map(|(r, child)| {
            let host = ReplicaIndex(r as u8);
            let shards = 0..topology.shard_count;
            serde_json::json!({
                "replica": r,
                "pid": child.id(),
                "native": shards.clone().map(|s| topology.native_addr(host, ShardId(s)).to_string()).collect::<Vec<_>>(),
                "resp": shards.map(|s| topology.resp_addr(host, ShardId(s)).to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "cluster": topology.cluster.0,
        "shards": topology.shard_count,
        "replicas": replicas,
    })
}

/// True if `shard` commits: a read of a key it owns goes through its log.
fn serves(client: &mut Client, shard: ShardId) -> bool {
    let key = (0..u32::MAX)
        .map(|i| format!("chronon-dev-ready-{i}").into_bytes())
        .find(|key| client.shard_of(key) == shard)
        .expect("some key maps to every shard");
    client.execute(&KvCommand::Exists { key }).is_ok()
}
