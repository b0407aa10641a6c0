//! `chronon start`: runs one host's node, one thread per shard of its data directory.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chronon_disk::DiskChoice;
use chronon_engine::constants::{SECTOR_SIZE, SUPERBLOCK_COPIES};
use chronon_engine::log::Superblock;
use chronon_engine::log::superblock;
use chronon_net::Topology;
use chronon_shards::{IoChoice, Node, NodeConfig, Sinks};

use crate::data_dir;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// A TOML file with any of: data = "DIR", addresses = ["ip:port", ...], cluster = ID,
    /// disk = "auto", io = "auto", pin = true, sinks = { NAME = "FILE" },
    /// `checkpoint_interval` = N. Flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory created by `chronon format`.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub data: Option<PathBuf>,
    /// Every host's base address, in replica order (ip:port,...). Shard s of a host listens on
    /// port+3s (replicas), port+3s+1 (native clients) and port+3s+2 (RESP).
    #[arg(long, value_name = "A0,A1,...", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// The cluster id this node must belong to (checked against the data files).
    #[arg(long, value_name = "ID")]
    pub cluster: Option<u64>,
    #[arg(
        long,
        value_name = "KIND",
        default_value = "auto",
        help = "Disk implementation: auto, sync or io_uring"
    )]
    pub disk: DiskChoice,
    #[arg(
        long,
        value_name = "KIND",
        default_value = "auto",
        help = "Network I/O: auto (io_uring, or epoll if io_uring is unavailable), uring or epoll"
    )]
    pub io: IoChoice,
    /// Pin each shard's thread to a core (shard s to core s mod cores).
    #[arg(long)]
    pub pin: bool,
    /// A file sink for `Emit` effects: each attempt appends a JSON line (id, fence, attempt,
    /// payload) to FILE. Repeat for more sinks; `log` is built in. Give every node the same
    /// sinks, since any of them may become primary.
    #[arg(long = "sink", value_name = "NAME=FILE")]
    pub sinks: Vec<String>,
    /// Take a checkpoint (and reclaim the log behind it) every N executed ops. Default: as
    /// many as the log ring allows (half the ring less the pipeline, halved).
    #[arg(long, value_name = "N")]
    pub checkpoint_interval: Option<u64>,
}

/// `chronon start`'s settings as a TOML file may give them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    addresses: Option<Vec<String>>,
    cluster: Option<u64>,
    disk: Option<String>,
    io: Option<String>,
    pin: Option<bool>,
    /// Sink name to file.
    sinks: Option<std::collections::BTreeMap<String, PathBuf>>,
    checkpoint_interval: Option<u64>,
}

/// The flags, completed from `--config` where a flag was not given.
fn merged(args: &StartArgs) -> anyhow::Result<StartArgs> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| anyhow!("config file {}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data = args.data.clone().or(file.data).ok_or_else(|| {
        anyhow!("no data directory: pass --data DIR or set data = \"DIR\" in the config file")
    })?;
    let addresses = if args.addresses.is_empty() {
        file.addresses.unwrap_or_default()
    } else {
        args.addresses.clone()
    };
    if addresses.is_empty() {
        bail!(
            "no addresses: pass --addresses A0,A1,... or set addresses = [...] in the config file"
        );
    }
    let disk = match (&args.config, file.disk) {
        (Some(_), Some(kind)) if args.disk == DiskChoice::Auto => kind
            .parse()
            .map_err(|e: String| anyhow!("config file: disk: {e}"))?,
        _ => args.disk,
    };
    let io = match (&args.config, file.io) {
        (Some(_), Some(kind)) if args.io == IoChoice::Auto => kind
            .parse()
            .map_err(|e: String| anyhow!("config file: io: {e}"))?,
        _ => args.io,
    };
    Ok(StartArgs {
        config: None,
        data: Some(data),
        addresses,
        cluster: args.cluster.or(file.cluster),
        disk,
        io,
        pin: args.pin || file.pin.unwrap_or(false),
        checkpoint_interval: args.checkpoint_interval.or(file.checkpoint_interval),
        sinks: file
            .sinks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, path)| format!("{name}={}", path.display()))
            .chain(args.sinks.iter().cloned())
            .collect(),
    })
}

/// `--sink NAME=FILE` flags as sinks; a later flag for the same name wins.
fn sinks(flags: &[String]) -> anyhow::Result<Sinks> {
    let mut sinks = Sinks::default();
    for flag in flags {
        let Some((name, path)) = flag.split_once('=') else {
            bail!(
                "--sink {flag}: expected NAME=FILE, for example --sink audit=/var/log/audit.jsonl"
            );
        };
        if name.is_empty() || name == "log" || path.is_empty() {
            bail!("--sink {flag}: give a name other than the built-in `log`, and a file");
        }
        sinks.files.insert(name.to_owned(), PathBuf::from(path));
    }
    Ok(sinks)
}

/// The view state of a data file, read without recovering its log.
fn read_superblock(path: &Path) -> anyhow::Result<Superblock> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open data file {}", path.display()))?;
    let mut bytes = vec![0u8; SECTOR_SIZE * SUPERBLOCK_COPIES];
    file.read_exact(&mut bytes).with_context(|| {
        format!(
            "{} is too short to be a data file: create it with `chronon format`",
            path.display()
        )
    })?;
    let copies: Vec<Option<Superblock>> = bytes
        .chunks(SECTOR_SIZE)
        .enumerate()
        .map(|(copy, sector)| Superblock::decode(sector, copy))
        .collect();
    superblock::select(&copies).ok_or_else(|| {
        anyhow!(
            "{} has no valid superblock: it is not a Chronon data file, or it is damaged (run \
             `chronon inspect --data {}`)",
            path.display(),
            path.parent().unwrap_or(Path::new(".")).display()
        )
    })
}

/// An `ip:port` (or `host:port`) as a socket address, or an error naming it.
pub(crate) fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve address {address:?}: use ip:port"))?
        .next()
        .ok_or_else(|| anyhow!("address {address:?} resolves to nothing"))
}

/// Reads the data directory and the flags into a node configuration.
pub fn node_config(args: &StartArgs) -> anyhow::Result<NodeConfig> {
    let args = &merged(args)?;
    let data = args.data.as_ref().expect("merged fills it");
    let files = data_dir::list_shards(data)?;
    if files.is_empty() {
        bail!(
            "{} holds no shard files: create them with `chronon format --data {} ...`",
            data.display(),
            data.display()
        );
    }
    let missing = data_dir::missing_shards(&files);
    if !missing.is_empty() {
        bail!(
            "{} lacks the files of shards {missing:?}: restore them, or format a new directory",
            data.display()
        );
    }
    let first = read_superblock(&files[0].path)?;
    for file in &files[1..] {
        let sb = read_superblock(&file.path)?;
        if (sb.cluster, sb.replica, sb.replica_count)
            != (first.cluster, first.replica, first.replica_count)
        {
            bail!(
                "{} belongs to cluster {} replica {} of {}, but {} to cluster {} replica {} of \
                 {}: a data directory holds one replica's shards",
                file.path.display(),
                sb.cluster,
                sb.replica,
                sb.replica_count,
                files[0].path.display(),
                first.cluster,
                first.replica,
                first.replica_count
            );
        }
    }
    if let Some(cluster) = args.cluster
        && cluster != first.cluster.0
    {
        bail!(
            "{} belongs to cluster {}, not {cluster}: check --cluster and --data",
            data.display(),
            first.cluster
        );
    }
    if args.addresses.len() != usize::from(first.replica_count) {
        bail!(
            "the data directory is replica {} of {}, so --addresses needs {} addresses (one per \
             host, in replica order), not {}",
            first.replica,
            first.replica_count,
            first.replica_count,
            args.addresses.len()
        );
    }
    let hosts = args
        .addresses
        .iter()
        .map(|a| resolve(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let topology = Topology::new(first.cluster, files.len() as u16, hosts)?;
    Ok(NodeConfig {
        topology,
        host: first.replica,
        data_files: files.into_iter().map(|f| f.path).collect(),
        disk: args.disk,
        sinks: sinks(&args.sinks)?,
        checkpoint_interval: args.checkpoint_interval,
        io: args.io,
        pin: args.pin,
    })
}

/// Runs `chronon start` until SIGTERM or Ctrl-C, or until a shard fails.
pub fn run(args: &StartArgs) -> anyhow::Result<()> {
    let config = node_config(args)?;
    let topology = &config.topology;
    let node = Node::start(&config).map_err(|e| anyhow!("{e}"))?;
    let stopper = node.stopper();
    let on_signal = stopper.clone();
    ctrlc::set_handler(move || on_signal.stop())
        .context("cannot install the SIGTERM/SIGINT handler")?;
    tracing::info!(
        cluster = %topology.cluster,
        replica = %config.host,
        shards = topology.shard_count,
        "node started; stop it with SIGTERM or Ctrl-C"
    );
    while !stopper.is_stopping() && !node.any_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    node.request_stop();
    node.wait().map_err(|e| anyhow!("{e}"))?;
    tracing::info!("node stopped");
    Ok(())
}
