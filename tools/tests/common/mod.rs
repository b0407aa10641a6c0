//! Helpers shared by the integration tests.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::PathBuf;

/// A directory under the system temp dir (ext4 here, where `O_DIRECT` works; tmpfs would
/// not). Removed on drop unless the test is failing, so a failure leaves the files for
/// `chronon inspect`.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("chronon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub mod cluster;
