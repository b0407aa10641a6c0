//! Chronon's real disks behind the engine's [`VirtualDisk`] seam.
//!
//! - [`SyncDisk`]: `O_DSYNC` positional writes; every write is durable when it returns, so a
//!   barrier has nothing left to do. Works on any filesystem.
//! - [`IoUringDisk`]: `io_uring` with `O_DIRECT` and an explicit barrier (`fdatasync` ordered
//!   after the writes it covers). Needs `io_uring` and a filesystem with direct I/O.
//!
//! [`open`] picks one. With [`DiskChoice::Auto`] a missing `io_uring`, a too-low memlock limit or
//! a filesystem without `O_DIRECT` falls back to [`SyncDisk`] with a warning naming the cause.

mod error;
mod file;
mod memlock;
mod slab;
mod sync;
mod uring;

use std::path::Path;

use chronon_engine::disk::{AlignedBuf, Completion, VirtualDisk};

pub use error::DiskOpenError;
pub use file::create_data_file;
pub use memlock::memlock_required_bytes;
pub use sync::SyncDisk;
pub use uring::IoUringDisk;

/// Which disk implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DiskChoice {
    /// `O_DSYNC` writes.
    Sync,
    /// `io_uring` with `O_DIRECT`; fails with a clear error if unavailable.
    IoUring,
    /// `io_uring` if it works here, else `Sync` with a warning.
    #[default]
    Auto,
}

impl std::str::FromStr for DiskChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<DiskChoice, String> {
        match s {
            "sync" => Ok(DiskChoice::Sync),
            "io_uring" | "io-uring" | "uring" => Ok(DiskChoice::IoUring),
            "auto" => Ok(DiskChoice::Auto),
            other => Err(format!(
                "unknown disk kind {other:?}: use sync, io_uring or auto"
            )),
        }
    }
}

/// A disk of either kind.
// The io_uring variant is a few hundred bytes (the ring's mappings and queue state) and the sync
// one is small; there is one `AnyDisk` per shard, never a collection of them, so boxing would
// only add an indirection to every I/O.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyDisk {
    Sync(SyncDisk),
    IoUring(IoUringDisk),
}

impl AnyDisk {
    /// The kind actually in use, for logs and reports.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            AnyDisk::Sync(_) => "sync",
            AnyDisk::IoUring(_) => "io_uring",
        }
    }

    /// Has an `io_uring` disk signal the eventfd `fd` on every completion (see
    /// [`IoUringDisk::register_eventfd`]). Returns false for the sync disk, whose I/O completes
    /// before `submit_*` returns.
    pub fn register_eventfd(&self, fd: std::os::fd::RawFd) -> std::io::Result<bool> {
        match self {
            AnyDisk::Sync(_) => Ok(false),
            AnyDisk::IoUring(disk) => disk.register_eventfd(fd).map(|()| true),
        }
    }
}

/// Opens an existing data file with the chosen disk. The second value is a warning to log when
/// `Auto` fell back to [`SyncDisk`].
pub fn open(
    path: &Path,
    choice: DiskChoice,
) -> Result<(AnyDisk, Option<DiskOpenError>), DiskOpenError> {
    match choice {
        DiskChoice::Sync => Ok((AnyDisk::Sync(SyncDisk::open(path)?), None)),
        DiskChoice::IoUring => Ok((AnyDisk::IoUring(IoUringDisk::open(path)?), None)),
        DiskChoice::Auto => match IoUringDisk::open(path) {
            Ok(disk) => Ok((AnyDisk::IoUring(disk), None)),
            Err(cause) if cause.is_fallback_cause() => {
                Ok((AnyDisk::Sync(SyncDisk::open(path)?), Some(cause)))
            }
            Err(other) => Err(other),
        },
    }
}

macro_rules! delegate {
    ($self:ident, $disk:ident => $call:expr) => {
        match $self {
            AnyDisk::Sync($disk) => $call,
            AnyDisk::IoUring($disk) => $call,
        }
    };
}

impl VirtualDisk for AnyDisk {
    fn size(&self) -> u64 {
        delegate!(self, disk => disk.size())
    }

    fn submit_read(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        delegate!(self, disk => disk.submit_read(offset, buf, token));
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        delegate!(self, disk => disk.submit_write(offset, buf, token));
    }

    fn submit_barrier(&mut self, token: u64) {
        delegate!(self, disk => disk.submit_barrier(token));
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        delegate!(self, disk => disk.poll(out));
    }

    fn wait(&mut self, out: &mut Vec<Completion>) {
        delegate!(self, disk => disk.wait(out));
    }

    fn in_flight(&self) -> usize {
        delegate!(self, disk => disk.in_flight())
    }
}
