use std::path::PathBuf;

/// Why a data file could not be created or opened. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskOpenError {
    #[error("cannot {action} data file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data file {path} is {actual} bytes, not a whole number of 4096-byte sectors; it is not \
         a Chronon data file or was truncated. Reformat this replica"
    )]
    BadSize { path: PathBuf, actual: u64 },
    #[error(
        "not enough free space to create {path} ({size} bytes): {source}. Free space on the \
         disk or choose a smaller --slot-count/--slot-size"
    )]
    NoSpace {
        path: PathBuf,
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "io_uring is unavailable here ({reason}). It may be disabled by \
         kernel.io_uring_disabled, a container's seccomp profile, or an old kernel. Allow it, or \
         run with --disk sync"
    )]
    IoUringUnavailable { reason: String },
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {limit} bytes, but io_uring needs {required} \
         bytes. Raise it (`ulimit -l`, or LimitMEMLOCK= in a systemd unit, or --ulimit memlock \
         in a container), or run with --disk sync"
    )]
    MemlockTooLow { limit: u64, required: u64 },
    #[error(
        "the filesystem holding {path} does not support direct I/O (O_DIRECT), which the io_uring \
         disk needs; tmpfs is one such filesystem. Put the data directory on ext4 or xfs, or run \
         with --disk sync"
    )]
    DirectIoUnsupported { path: PathBuf },
}

impl DiskOpenError {
    /// True for the causes after which `DiskChoice::Auto` falls back to the sync disk.
    #[must_use]
    pub fn is_fallback_cause(&self) -> bool {
        matches!(
            self,
            DiskOpenError::IoUringUnavailable { .. }
                | DiskOpenError::MemlockTooLow { .. }
                | DiskOpenError::DirectIoUnsupported { .. }
        )
    }
}
