//! Data files for the benches, under `std::env::temp_dir()` (ext4 on the development machines,
//! so `O_DIRECT` works), removed again when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes files created by one process; the process id distinguishes processes.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A preallocated, zero-filled data file that is deleted on drop.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Creates a file of `size` bytes with [`chronon_disk::create_data_file`], the same way
    /// `chronon format` does, so durable writes into it cost what they cost in production.
    #[must_use]
    pub fn create(label: &str, size: u64) -> TempFile {
        let sequence = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "chronon-bench-{}-{sequence}-{}.dat",
            std::process::id(),
            label.replace(['/', ' '], "_")
        );
        let path = std::env::temp_dir().join(name);
        chronon_disk::create_data_file(&path, size)
            .unwrap_or_else(|error| panic!("cannot create bench file: {error}"));
        TempFile { path }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // A leftover file only wastes space in the temp directory; nothing to do if it is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}
