//! Opening data files with the disk the user chose, warning once (not once per shard) when
//! `--disk auto` falls back to the sync disk.

use std::path::Path;

use chronon_disk::{AnyDisk, DiskChoice, DiskOpenError};

/// Opens data files for one command.
#[derive(Debug)]
pub struct DiskOpener {
    choice: DiskChoice,
}

impl DiskOpener {
    #[must_use]
    pub fn new(choice: DiskChoice) -> DiskOpener {
        DiskOpener { choice }
    }

    /// Opens `path`. After `auto` has fallen back once, later files go straight to the sync
    /// disk: the cause (no `io_uring`, low memlock, no `O_DIRECT`) is the same for every file in
    /// a directory, and one warning says it. The errors name the file where it matters.
    pub fn open(&mut self, path: &Path) -> Result<AnyDisk, DiskOpenError> {
        let (disk, fallback) = chronon_disk::open(path, self.choice)?;
        if let Some(cause) = fallback {
            tracing::warn!("using the sync disk instead of io_uring: {cause}");
            self.choice = DiskChoice::Sync;
        }
        tracing::debug!(path = %path.display(), disk = disk.kind_name(), "opened data file");
        Ok(disk)
    }
}
