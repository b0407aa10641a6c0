//! The data directory's conventions, shared by every command that touches one (`format`,
//! `inspect`, and later `start` and `dev`): one data file per shard, named
//! `shard-{s:03}.chronon`, so a directory listing sorts by shard and a stray file is obvious.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chronon_engine::ShardId;

const PREFIX: &str = "shard-";
const SUFFIX: &str = ".chronon";

/// Shard numbers are zero-padded to this many digits, so that `ls` lists up to 1000 shards in
/// order; larger numbers simply grow wider.
const SHARD_DIGITS: usize = 3;

/// One shard's data file in a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFile {
    pub shard: ShardId,
    pub path: PathBuf,
}

/// The file name of `shard`'s data file.
#[must_use]
pub fn shard_file_name(shard: ShardId) -> String {
    format!("{PREFIX}{:0width$}{SUFFIX}", shard.0, width = SHARD_DIGITS)
}

/// The path of `shard`'s data file in `dir`.
#[must_use]
pub fn shard_path(dir: &Path, shard: ShardId) -> PathBuf {
    dir.join(shard_file_name(shard))
}

/// The shard a file name belongs to, if it is a data file name. Only the canonical spelling
/// counts (`shard-007.chronon`, not `shard-7.chronon`), so that no two files claim one shard.
#[must_use]
pub fn parse_shard_file_name(name: &str) -> Option<ShardId> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let shard = ShardId(digits.parse().ok()?);
    (shard_file_name(shard) == name).then_some(shard)
}

/// The shard data files in `dir`, sorted by shard. Other files are ignored. Fails with a
/// message saying what to do when `dir` is missing or is not a directory.
pub fn list_shards(dir: &Path) -> anyhow::Result<Vec<ShardFile>> {
    if !dir.exists() {
        bail!(
            "data directory {} does not exist: check the path, or create it with `chronon format \
             --data {}`",
            dir.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the data directory that holds the shard files",
            dir.display()
        );
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list data directory {}", dir.display()))?;
    let mut shards = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot list data directory {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(shard) = name.to_str().and_then(parse_shard_file_name) {
            shards.push(ShardFile {
                shard,
                path: entry.path(),
            });
        }
    }
    shards.sort_by_key(|file| file.shard);
    Ok(shards)
}

/// Shards below the highest one present that have no file: a data directory holds shards
/// `0..count`, so a gap means a file was lost or moved.
#[must_use]
pub fn missing_shards(files: &[ShardFile]) -> Vec<ShardId> {
    let Some(last) = files.last() else {
        return Vec::new();
    };
    (0..last.shard.0)
        .map(ShardId)
        .filter(|shard| {
            files
                .binary_search_by_key(shard, |file| file.shard)
                .is_err()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // File names round-trip through parsing, and only canonical names parse, so `list_shards`
    // can never see two files for one shard.
    #[test]
    fn shard_file_names_roundtrip_and_are_canonical() {
        for shard in [0u16, 7, 42, 999, 1000, u16::MAX] {
            let name = shard_file_name(ShardId(shard));
            assert_eq!(parse_shard_file_name(&name), Some(ShardId(shard)), "{name}");
        }
        assert_eq!(shard_file_name(ShardId(7)), "shard-007.chronon");
        for junk in [
            "shard-7.chronon",
            "shard-0007.chronon",
            "shard-+07.chronon",
            "shard-abc.chronon",
            "shard-007.chronon.tmp",
            "shard-99999.chronon",
            "shard-.chronon",
            "notes.txt",
        ] {
            assert_eq!(parse_shard_file_name(junk), None, "{junk}");
        }
    }

    // A gap in the shard numbers is reported; a complete set is not.
    #[test]
    fn missing_shards_finds_gaps() {
        let file = |s| ShardFile {
            shard: ShardId(s),
            path: PathBuf::new(),
        };
        assert!(missing_shards(&[]).is_empty());
        assert!(missing_shards(&[file(0), file(1), file(2)]).is_empty());
        assert_eq!(
            missing_shards(&[file(0), file(3)]),
            vec![ShardId(1), ShardId(2)]
        );
        assert_eq!(missing_shards(&[file(1)]), vec![ShardId(0)]);
    }
}
