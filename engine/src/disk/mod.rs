//! The disk seam. Every disk the engine writes to (memory, simulated, `O_DSYNC`, `io_uring`)
//! implements [`VirtualDisk`], and all of them pass [`conformance`].
//!
//! The seam is completion-based so that a shard loop never blocks on it: the caller submits
//! reads, writes and barriers with a token it chooses, and later collects [`Completion`]s with
//! [`VirtualDisk::poll`] (never blocks) or [`VirtualDisk::wait`] (blocks until something
//! finishes; for tools, tests and recovery).
//!
//! Contract, which the conformance suite checks:
//! - Offsets and lengths are multiples of [`SECTOR_SIZE`] and lie within the disk.
//! - A write is speculative until a barrier submitted after it completes: a crash may lose it
//!   or tear it (leave any mix of old and new [`crate::constants::TEAR_SIZE`] units).
//! - A barrier makes durable every write submitted before it, and its completion is reported
//!   after the completions of all those writes.
//! - The caller never has two writes to overlapping ranges in flight, nor a read overlapping
//!   a write in flight.
//! - A fresh disk reads as zeros: data files are preallocated and zero-filled.
//! - A failed write or barrier is reported, never retried; the journal above then poisons
//!   itself (fsyncgate).

mod aligned;
pub mod conformance;
mod memory;
mod sim;

pub use aligned::{AlignedBuf, Sector};
pub use memory::MemoryDisk;
pub use sim::{CrashMode, SimDisk, SimDiskStats, SimFaults};

pub use crate::constants::SECTOR_SIZE;

/// What an I/O did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read,
    Write,
    Barrier,
}

/// A finished I/O. Reads and writes hand their buffer back, so buffers can be reused.
#[derive(Debug)]
pub struct Completion {
    pub token: u64,
    pub kind: IoKind,
    pub result: Result<(), DiskError>,
    pub buf: Option<AlignedBuf>,
}

/// A failed I/O.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    #[error("read of {len} bytes at offset {offset} failed: {reason}")]
    Read {
        offset: u64,
        len: usize,
        reason: String,
    },
    #[error("write of {len} bytes at offset {offset} failed: {reason}")]
    Write {
        offset: u64,
        len: usize,
        reason: String,
    },
    #[error("barrier (fdatasync) failed: {reason}")]
    Barrier { reason: String },
}

/// The disk seam. See the module documentation for the contract.
pub trait VirtualDisk {
    /// Size of the disk (the data file) in bytes, a multiple of [`SECTOR_SIZE`].
    fn size(&self) -> u64;

    /// Starts reading `buf.len()` bytes at `offset` into `buf`.
    fn submit_read(&mut self, offset: u64, buf: AlignedBuf, token: u64);

    /// Starts writing `buf` at `offset`.
    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64);

    /// Starts a barrier covering every write submitted before it.
    fn submit_barrier(&mut self, token: u64);

    /// Moves finished I/Os into `out`. Never blocks.
    fn poll(&mut self, out: &mut Vec<Completion>);

    /// Blocks until at least one I/O has finished (returning at once if none is in flight),
    /// then moves finished I/Os into `out`.
    fn wait(&mut self, out: &mut Vec<Completion>);

    /// I/Os submitted and not yet handed back by `poll` or `wait`.
    fn in_flight(&self) -> usize;
}

/// Asserts the alignment rules of the contract; shared by every implementation so that a
/// misaligned request fails the same way on every disk.
pub fn check_io(disk_size: u64, offset: u64, len: usize) {
    assert!(len > 0, "I/O of zero bytes");
    assert!(
        offset.is_multiple_of(SECTOR_SIZE as u64),
        "offset {offset} is not sector-aligned"
    );
    assert!(
        len.is_multiple_of(SECTOR_SIZE),
        "length {len} is not a whole number of sectors"
    );
    assert!(
        offset + len as u64 <= disk_size,
        "I/O [{offset}, +{len}) beyond disk of {disk_size}"
    );
}

/// Blocks until every I/O in flight has finished, collecting their completions.
pub fn drain<D: VirtualDisk + ?Sized>(disk: &mut D, out: &mut Vec<Completion>) {
    while disk.in_flight() > 0 {
        disk.wait(out);
    }
}
