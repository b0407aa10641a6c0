//! `chronon format`: creates a replica's data directory, one preallocated, zero-filled data
//! file per shard with an empty log in it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use chronon_disk::DiskChoice;
use chronon_engine::constants::{
    CHECKPOINT_SIZE_DEFAULT, SLOT_COUNT_CHECKPOINT_MIN, SLOT_COUNT_DEFAULT, SLOT_SIZE_DEFAULT,
};
use chronon_engine::log::{FormatParams, Journal, Layout, LogConfig};
use chronon_engine::{ClusterId, ReplicaIndex, ShardId};

use crate::data_dir::{self, ShardFile};
use crate::disk::DiskOpener;

/// Largest replica group. VSR needs `2f + 1` replicas to survive `f` failures; 16 is far past
/// any sensible group, and the bound keeps a typo from describing a group no one can run.
pub const REPLICA_COUNT_MAX: u8 = 16;

/// Largest number of shards per replica. A shard runs per core, so 1024 is beyond any host;
/// the bound keeps a typo from creating thousands of preallocated files.
pub const SHARD_COUNT_MAX: u16 = 1024;

#[derive(Debug, clap::Args)]
pub struct FormatArgs {
    /// Data directory to create the shard files in (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Cluster id, the same on every replica of the cluster.
    #[arg(long, value_name = "ID")]
    pub cluster: u64,
    /// This replica's index in each shard's group, from 0 to replicas - 1.
    #[arg(long, value_name = "R")]
    pub replica: u8,
    /// Replicas per shard group (hosts in the cluster).
    #[arg(long, value_name = "N")]
    pub replicas: u8,
    /// Shards on this replica (usually one per core).
    #[arg(long, value_name = "S")]
    pub shards: u16,
    /// Slots in each shard's log ring.
    #[arg(long, value_name = "C", default_value_t = SLOT_COUNT_DEFAULT)]
    pub slot_count: u32,
    /// Bytes per slot: the largest entry, header included; a multiple of 4096.
    #[arg(long, value_name = "BYTES", default_value_t = SLOT_SIZE_DEFAULT)]
    pub slot_size: u32,
    /// Bytes of each of the two checkpoint copies: the largest application state (snapshot plus
    /// client sessions) a shard can checkpoint; a multiple of 4096.
    #[arg(long, value_name = "BYTES", default_value_t = CHECKPOINT_SIZE_DEFAULT)]
    pub checkpoint_size: u32,
    // A help string, not a doc comment, so the help shows `io_uring` without markdown quotes.
    #[arg(
        long,
        value_name = "KIND",
        default_value = "auto",
        help = "Disk implementation: auto, sync or io_uring"
    )]
    pub disk: DiskChoice,
}

impl FormatArgs {
    fn config(&self) -> LogConfig {
        LogConfig {
            slot_count: self.slot_count,
            slot_size: self.slot_size,
            checkpoint_size: self.checkpoint_size,
        }
    }

    fn params(&self, shard: ShardId) -> FormatParams {
        FormatParams {
            cluster: ClusterId(self.cluster),
            shard,
            replica: ReplicaIndex(self.replica),
            replica_count: self.replicas,
            config: self.config(),
        }
    }
}

/// Runs `chronon format`.
pub fn run(args: &FormatArgs) -> anyhow::Result<()> {
    let problems = problems(args);
    if !problems.is_empty() {
        return Err(anyhow!(problems.join("\n")));
    }
    let dir_created = create_dir(&args.data)?;
    let size = Layout::new(args.config()).total_size();
    let mut created = Vec::new();
    if let Err(error) = format_all(args, size, &mut created) {
        // Leave nothing half-formatted behind, so that the same command can be rerun.
        for path in &created {
            let _ = std::fs::remove_file(path);
        }
        if dir_created {
            let _ = std::fs::remove_dir(&args.data);
        }
        return Err(error.context(format!(
            "format failed; removed the {} file(s) this run created",
            created.len()
        )));
    }
    say!(
        "formatted {} shard(s) in {}: cluster {}, replica {} of {}, {} slots x {} bytes, {} bytes \
         per file",
        args.shards,
        args.data.display(),
        args.cluster,
        args.replica,
        args.replicas,
        args.slot_count,
        args.slot_size,
        size
    );
    Ok(())
}

/// Every reason the arguments cannot be used, one sentence each, saying what to do.
fn problems(args: &FormatArgs) -> Vec<String> {
    let mut problems = Vec::new();
    if !(1..=REPLICA_COUNT_MAX).contains(&args.replicas) {
        problems.push(format!(
            "--replicas {} is outside 1..={REPLICA_COUNT_MAX}: use 3 (or 5) replicas for a \
             fault-tolerant cluster, 1 for a single-host one",
            args.replicas
        ));
    } else if args.replica >= args.replicas {
        problems.push(format!(
            "--replica {} is not below --replicas {}: replicas are numbered 0 to {}",
            args.replica,
            args.replicas,
            args.replicas - 1
        ));
    }
    if !(1..=SHARD_COUNT_MAX).contains(&args.shards) {
        problems.push(format!(
            "--shards {} is outside 1..={SHARD_COUNT_MAX}: use one shard per core",
            args.shards
        ));
    }
    if let Some(reason) = args.config().problem() {
        problems.push(format!(
            "invalid --slot-count/--slot-size/--checkpoint-size: {reason}"
        ));
    } else if args.slot_count < SLOT_COUNT_CHECKPOINT_MIN {
        problems.push(format!(
            "--slot-count {} is below {SLOT_COUNT_CHECKPOINT_MIN}: a replica keeps half the \
             ring beyond its checkpoint, and that half must hold two checkpoint intervals and a \
             full pipeline",
            args.slot_count
        ));
    }
    problems.extend(directory_problem(&args.data));
    problems
}

/// Why `dir` cannot receive new shard files: it is a file, or it already holds shard files
/// (formatting never overwrites a replica's data).
fn directory_problem(dir: &Path) -> Option<String> {
    if !dir.exists() {
        return None;
    }
    let existing = match data_dir::list_shards(dir) {
        Ok(existing) => existing,
        Err(error) => return Some(format!("{error:#}")),
    };
    if existing.is_empty() {
        return None;
    }
    let names: Vec<String> = existing.iter().take(3).map(file_name).collect();
    let more = if existing.len() > names.len() {
        ", ..."
    } else {
        ""
    };
    Some(format!(
        "{} already holds {} shard file(s) ({}{more}): refusing to overwrite a replica's data. \
         Choose another directory, or delete the files (losing that data) to reformat",
        dir.display(),
        existing.len(),
        names.join(", "),
    ))
}

fn file_name(file: &ShardFile) -> String {
    data_dir::shard_file_name(file.shard)
}

/// Creates `dir` and makes its directory entry durable, so that a crash right after format
/// cannot lose the directory with the files in it. Returns whether it created it.
fn create_dir(dir: &Path) -> anyhow::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|parent| parent.sync_all())
        .with_context(|| {
            format!(
                "cannot fsync {}, the parent of the data directory",
                parent.display()
            )
        })?;
    Ok(true)
}

fn format_all(args: &FormatArgs, size: u64, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut opener = DiskOpener::new(args.disk);
    for shard in (0..args.shards).map(ShardId) {
        let path = data_dir::shard_path(&args.data, shard);
        format_shard(&mut opener, &path, size, &args.params(shard), created)
            .with_context(|| format!("formatting {}", path.display()))?;
    }
    Ok(())
}

/// Creates and formats one shard's data file, recording it in `created` as soon as it exists.
fn format_shard(
    opener: &mut DiskOpener,
    path: &Path,
    size: u64,
    params: &FormatParams,
    created: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    chronon_disk::create_data_file(path, size)?;
    created.push(path.to_owned());
    let mut disk = opener.open(path)?;
    Journal::format(&mut disk, params)?;
    tracing::info!(
        path = %path.display(),
        shard = params.shard.0,
        disk = disk.kind_name(),
        "formatted"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> FormatArgs {
        FormatArgs {
            data: std::env::temp_dir().join("chronon-format-unit-test-does-not-exist"),
            cluster: 1,
            replica: 0,
            replicas: 3,
            shards: 2,
            slot_count: 64,
            slot_size: 8192,
            checkpoint_size: 8192,
            disk: DiskChoice::Sync,
        }
    }

    // Every invalid argument gets its own line, and a valid set gets none, so the user fixes
    // everything in one go instead of one error per run.
    #[test]
    fn each_problem_is_reported_once() {
        assert!(problems(&args()).is_empty(), "{:?}", problems(&args()));
        let bad = FormatArgs {
            replica: 3,
            shards: 0,
            slot_size: 4000,
            ..args()
        };
        let found = problems(&bad);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("--replica 3"), "{}", found[0]);
        assert!(found[1].contains("--shards 0"), "{}", found[1]);
        assert!(found[2].contains("slot size 4000"), "{}", found[2]);
        let too_many = FormatArgs {
            replicas: 17,
            ..args()
        };
        assert_eq!(problems(&too_many).len(), 1);
    }
}
