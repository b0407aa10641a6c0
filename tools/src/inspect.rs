//! `chronon inspect`: verifies every shard file of a data directory without writing to it,
//! and says what recovery would find and do.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use chronon_disk::{AnyDisk, DiskChoice};
use chronon_engine::constants::{SECTOR_SIZE, SUPERBLOCK_COPIES};
use chronon_engine::disk::{AlignedBuf, VirtualDisk, drain};
use chronon_engine::log::{Journal, JournalError, Layout, RecoveryReport, Superblock};

use crate::data_dir::{self, ShardFile};
use crate::disk::DiskOpener;
use crate::inspect_report;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Data directory holding the shard files.
    #[arg(value_name = "DATA-DIR")]
    pub data: PathBuf,
    // A help string, not a doc comment, so the help shows `io_uring` without markdown quotes.
    #[arg(
        long,
        value_name = "KIND",
        default_value = "sync",
        help = "Disk implementation to read with: sync, io_uring or auto. The default, sync, \
                works on every filesystem; inspecting never writes, so speed does not matter"
    )]
    pub disk: DiskChoice,
}

/// What was read from one shard file.
#[derive(Debug)]
pub struct Inspection {
    pub disk_kind: &'static str,
    pub size: u64,
    /// Each superblock copy as decoded, `None` where it is not a valid copy.
    pub copies: Vec<Option<Superblock>>,
    pub result: Result<RecoveryReport, JournalError>,
}

/// Runs `chronon inspect`. Fails, with one line per problem, unless every file is clean.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let files = data_dir::list_shards(&args.data)?;
    if files.is_empty() {
        bail!(
            "{} holds no shard files ({}, ...): it was never formatted, or is not a data \
             directory. Check the path, or create one with `chronon format --data {}`",
            args.data.display(),
            data_dir::shard_file_name(chronon_engine::ShardId(0)),
            args.data.display()
        );
    }
    say!(
        "data directory {}: {} shard file(s)",
        args.data.display(),
        files.len()
    );
    let mut opener = DiskOpener::new(args.disk);
    let mut problems = Vec::new();
    let mut readable = Vec::new();
    let mut clean_count = 0;
    for file in &files {
        say!("");
        let file_problems = match inspect_file(&mut opener, &file.path) {
            Ok(inspection) => {
                inspect_report::print(file, &inspection);
                let found = inspect_report::problems(file, &inspection);
                if let Ok(report) = &inspection.result {
                    readable.push((file.clone(), report.superblock));
                }
                found
            }
            Err(error) => {
                for line in inspect_report::unusable_lines(file) {
                    say!("{line}");
                }
                vec![format!("{error:#}")]
            }
        };
        clean_count += usize::from(file_problems.is_empty());
        problems.extend(file_problems);
    }
    problems.extend(directory_problems(&args.data, &files, &readable));
    say!("");
    say!(
        "{} shard file(s): {clean_count} clean, {} with problems",
        files.len(),
        files.len() - clean_count
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(problems.join("\n")))
    }
}

/// Reads one file: its superblock copies and the recovery analysis. Never writes.
fn inspect_file(opener: &mut DiskOpener, path: &Path) -> anyhow::Result<Inspection> {
    let mut disk = opener.open(path)?;
    let size = disk.size();
    // The scan reads the superblock copies before it knows the layout; a file shorter than
    // them is not a data file, and reading past its end would be a programming error.
    let superblock_zone = (SUPERBLOCK_COPIES * SECTOR_SIZE) as u64;
    if size < superblock_zone {
        bail!(
            "{} is {size} bytes, smaller than the superblock zone ({superblock_zone} bytes): it \
             is not a Chronon data file, or it was truncated. Reformat this replica",
            path.display()
        );
    }
    let copies = read_superblock_copies(&mut disk);
    let result = Journal::inspect(&mut disk);
    Ok(Inspection {
        disk_kind: disk.kind_name(),
        size,
        copies,
        result,
    })
}

/// Decodes each superblock copy on its own, so the report can show a copy that recovery
/// outvoted (a torn update, or rot) even though the file is usable.
fn read_superblock_copies(disk: &mut AnyDisk) -> Vec<Option<Superblock>> {
    for copy in 0..SUPERBLOCK_COPIES {
        let buf = AlignedBuf::zeroed(SECTOR_SIZE);
        disk.submit_read(Layout::superblock_offset(copy), buf, copy as u64);
    }
    let mut completions = Vec::new();
    drain(disk, &mut completions);
    let mut copies = vec![None; SUPERBLOCK_COPIES];
    for completion in completions {
        let copy = completion.token as usize;
        if let (Ok(()), Some(buf)) = (completion.result, completion.buf) {
            copies[copy] = Superblock::decode(buf.as_slice(), copy);
        }
    }
    copies
}

/// Problems across files: gaps in the shard numbers, and files of one directory that belong
/// to different clusters or replicas (a file copied in from another host).
fn directory_problems(
    dir: &Path,
    files: &[ShardFile],
    readable: &[(ShardFile, Superblock)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let missing = data_dir::missing_shards(files);
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|&shard| data_dir::shard_file_name(shard))
            .collect();
        problems.push(format!(
            "{}: {} is missing, though higher shards exist: restore it from a backup, or \
             reformat this replica and let it catch up from its peers",
            dir.display(),
            names.join(", ")
        ));
    }
    let Some((first_file, first)) = readable.first() else {
        return problems;
    };
    for (file, superblock) in &readable[1..] {
        let identity = |sb: &Superblock| (sb.cluster, sb.replica, sb.replica_count);
        if identity(superblock) != identity(first) {
            problems.push(format!(
                "{}: belongs to cluster {} as replica {} of {}, but {} belongs to cluster {} as \
                 replica {} of {}: one directory holds one replica. Move the stray file back \
                 where it came from",
                file.path.display(),
                superblock.cluster,
                superblock.replica,
                superblock.replica_count,
                data_dir::shard_file_name(first_file.shard),
                first.cluster,
                first.replica,
                first.replica_count
            ));
        }
    }
    problems
}
