//! The conformance suite every [`VirtualDisk`] passes, written once.
//!
//! Each implementation's tests provide a [`DiskHarness`] and call [`run_all`]. The checks cover
//! the seam's contract (see the `disk` module) and the journal running on top of the disk, so a
//! disk that passes here is one the log can use.

use std::collections::BTreeMap;

use super::{AlignedBuf, Completion, IoKind, SECTOR_SIZE, VirtualDisk, drain};

/// Creates and reopens disks of one implementation for the suite.
pub trait DiskHarness {
    type Disk: VirtualDisk;

    /// A fresh, zero-filled disk of `size` bytes.
    fn create(&mut self, size: u64) -> Self::Disk;

    /// The disk as a restarted process finds it after a clean stop (every barrier completed).
    fn reopen(&mut self, disk: Self::Disk) -> Self::Disk;
}

/// Runs every check in the suite.
pub fn run_all<H: DiskHarness>(harness: &mut H) {
    fresh_disk_reads_zero(harness);
    write_then_read(harness);
    barrier_completes_after_its_writes(harness);
    many_in_flight_keep_their_tokens(harness);
    barriered_data_survives_reopen(harness);
    crate::log::conformance::journal_roundtrip(harness);
}

const DISK_SIZE: u64 = 64 * SECTOR_SIZE as u64;

fn pattern(seed: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    crate::rng::Rng::new(seed).fill(buf.as_mut_slice());
    buf
}

fn read_at<D: VirtualDisk>(disk: &mut D, offset: u64, len: usize) -> Vec<u8> {
    disk.submit_read(offset, AlignedBuf::zeroed(len), u64::MAX);
    let mut out = Vec::new();
    drain(disk, &mut out);
    let completion = out.pop().expect("a read completes");
    assert_eq!(completion.kind, IoKind::Read);
    assert_eq!(completion.token, u64::MAX);
    completion.result.expect("read succeeds");
    completion
        .buf
        .expect("a read returns its buffer")
        .as_slice()
        .to_vec()
}

fn write_durably<D: VirtualDisk>(disk: &mut D, offset: u64, buf: AlignedBuf) {
    disk.submit_write(offset, buf, 1);
    disk.submit_barrier(2);
    let mut out = Vec::new();
    drain(disk, &mut out);
    assert_eq!(out.len(), 2);
    for completion in out {
        completion.result.expect("write and barrier succeed");
    }
}

/// Data files are preallocated and zero-filled: a fresh disk reads as zeros everywhere.
pub fn fresh_disk_reads_zero<H: DiskHarness>(harness: &mut H) {
    let mut disk = harness.create(DISK_SIZE);
    assert_eq!(disk.size(), DISK_SIZE);
    let bytes = read_at(&mut disk, 0, DISK_SIZE as usize);
    assert!(
        bytes.iter().all(|&b| b == 0),
        "a fresh disk is not zero-filled"
    );
}

/// A completed write is visible to a later read, at every alignment and length.
pub fn write_then_read<H: DiskHarness>(harness: &mut H) {
    let mut disk = harness.create(DISK_SIZE);
    for (sectors, at) in [(1usize, 0u64), (3, 5), (16, 40), (1, 63)] {
        let offset = at * SECTOR_SIZE as u64;
        let buf = pattern(at, sectors * SECTOR_SIZE);
        let expected = buf.as_slice().to_vec();
        write_durably(&mut disk, offset, buf);
        assert_eq!(read_at(&mut disk, offset, sectors * SECTOR_SIZE), expected);
    }
}

/// A barrier's completion comes after the completions of every write submitted before it.
pub fn barrier_completes_after_its_writes<H: DiskHarness>(harness: &mut H) {
    let mut disk = harness.create(DISK_SIZE);
    for i in 0..8u64 {
        disk.submit_write(i * SECTOR_SIZE as u64, pattern(i, SECTOR_SIZE), i);
    }
    disk.submit_barrier(100);
    let mut out: Vec<Completion> = Vec::new();
    drain(&mut disk, &mut out);
    let barrier_at = out
        .iter()
        .position(|c| c.kind == IoKind::Barrier)
        .expect("barrier done");
    assert_eq!(barrier_at, 8, "barrier completed before a write it covers");
    assert!(out.iter().all(|c| c.result.is_ok()));
}

/// Many reads and writes in flight at once each complete once, with their own token and
/// their own buffer.
pub fn many_in_flight_keep_their_tokens<H: DiskHarness>(harness: &mut H) {
    let mut disk = harness.create(DISK_SIZE);
    let mut expected = BTreeMap::new();
    for i in 0..48u64 {
        let buf = pattern(1000 + i, SECTOR_SIZE);
        expected.insert(i, buf.as_slice().to_vec());
        disk.submit_write(i * SECTOR_SIZE as u64, buf, i);
    }
    let mut out = Vec::new();
    drain(&mut disk, &mut out);
    assert_eq!(out.len(), 48);
    for completion in &out {
        let buf = completion.buf.as_ref().expect("write returns its buffer");
        assert_eq!(buf.as_slice(), expected[&completion.token].as_slice());
    }
    out.clear();
    for i in 0..48u64 {
        disk.submit_read(i * SECTOR_SIZE as u64, AlignedBuf::zeroed(SECTOR_SIZE), i);
    }
    drain(&mut disk, &mut out);
    assert_eq!(out.len(), 48);
    let mut seen = std::collections::BTreeSet::new();
    for completion in out {
        assert!(seen.insert(completion.token), "token completed twice");
        let buf = completion.buf.expect("read returns its buffer");
        assert_eq!(buf.as_slice(), expected[&completion.token].as_slice());
    }
}

/// What a barrier covered survives closing and reopening the disk.
pub fn barriered_data_survives_reopen<H: DiskHarness>(harness: &mut H) {
    let mut disk = harness.create(DISK_SIZE);
    let buf = pattern(77, 4 * SECTOR_SIZE);
    let expected = buf.as_slice().to_vec();
    write_durably(&mut disk, 8 * SECTOR_SIZE as u64, buf);
    let mut disk = harness.reopen(disk);
    assert_eq!(
        read_at(&mut disk, 8 * SECTOR_SIZE as u64, 4 * SECTOR_SIZE),
        expected
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{CrashMode, MemoryDisk, SimDisk};

    struct Memory;
    impl DiskHarness for Memory {
        type Disk = MemoryDisk;
        fn create(&mut self, size: u64) -> MemoryDisk {
            MemoryDisk::new(size)
        }
        fn reopen(&mut self, disk: MemoryDisk) -> MemoryDisk {
            disk
        }
    }

    struct Sim;
    impl DiskHarness for Sim {
        type Disk = SimDisk;
        fn create(&mut self, size: u64) -> SimDisk {
            SimDisk::new(size, 0x5eed)
        }
        fn reopen(&mut self, mut disk: SimDisk) -> SimDisk {
            // A clean stop leaves nothing pending, so even a random crash loses nothing.
            disk.crash(CrashMode::Random);
            disk
        }
    }

    #[test]
    fn memory_disk_conforms() {
        run_all(&mut Memory);
    }

    #[test]
    fn sim_disk_conforms() {
        run_all(&mut Sim);
    }
}
