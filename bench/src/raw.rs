//! The floors the log is compared against: durable writes with nothing above the disk.
//!
//! - [`DirectFile`]: plain `pwrite` on an `O_DIRECT` file, then `fdatasync`. One call per
//!   batch: the best a single thread can do with the syscalls the disks use.
//! - [`DiskBatch`]: the same batch submitted through a [`VirtualDisk`] as one 4 KiB write per
//!   sector and one barrier, which is how the journal submits entries. The gap between it and
//!   [`DirectFile`] is the disk implementation's; the gap between it and the log is the
//!   journal's.
//!
//! - [`RoundPattern`]: the journal's own I/O shape (entries, header-copy sectors, one barrier
//!   per batch) with pipelining but no CPU work: what the log could reach on that disk.
//!
//! The first two walk sequentially through a preallocated file and wrap at its end.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use chronon_engine::constants::HEADERS_PER_SECTOR;
use chronon_engine::disk::{AlignedBuf, Completion, IoKind, SECTOR_SIZE, VirtualDisk, drain};
use chronon_engine::log::{Layout, LogConfig};

/// An `O_DIRECT` file written with `pwrite` + `fdatasync`.
#[derive(Debug)]
pub struct DirectFile {
    file: File,
    size: u64,
    offset: u64,
    buf: AlignedBuf,
}

impl DirectFile {
    /// Opens `path` for direct I/O, with a buffer for batches of up to `sectors_max` sectors.
    /// `None` when the filesystem refuses `O_DIRECT`.
    #[must_use]
    pub fn open(path: &Path, sectors_max: usize) -> Option<DirectFile> {
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => file,
            Err(error) => {
                eprintln!(
                    "skipping the O_DIRECT floor: cannot open {}: {error}",
                    path.display()
                );
                return None;
            }
        };
        let size = file.metadata().expect("stat the bench file").len();
        let mut buf = AlignedBuf::zeroed(sectors_max * SECTOR_SIZE);
        chronon_engine::rng::Rng::new(0xf100).fill(buf.as_mut_slice());
        Some(DirectFile {
            file,
            size,
            offset: 0,
            buf,
        })
    }

    /// Writes `sectors` consecutive sectors with one `pwrite`, then `fdatasync`s.
    pub fn write_durable(&mut self, sectors: usize) {
        let len = sectors * SECTOR_SIZE;
        assert!(len <= self.buf.len(), "batch larger than the buffer");
        if self.offset + len as u64 > self.size {
            self.offset = 0;
        }
        self.file
            .write_all_at(&self.buf.as_slice()[..len], self.offset)
            .expect("O_DIRECT pwrite on the bench file");
        self.file.sync_data().expect("fdatasync on the bench file");
        self.offset += len as u64;
    }
}

/// Batches of 4 KiB writes and one barrier through a disk.
#[derive(Debug)]
pub struct DiskBatch<D> {
    disk: D,
    offset: u64,
    /// Buffers come back with their completions and are reused, so a batch allocates nothing.
    pool: Vec<AlignedBuf>,
    completions: Vec<Completion>,
}

impl<D: VirtualDisk> DiskBatch<D> {
    #[must_use]
    pub fn new(disk: D, sectors_max: usize) -> DiskBatch<D> {
        let mut rng = chronon_engine::rng::Rng::new(0xba7c);
        let pool = (0..sectors_max)
            .map(|_| {
                let mut buf = AlignedBuf::zeroed(SECTOR_SIZE);
                rng.fill(buf.as_mut_slice());
                buf
            })
            .collect();
        DiskBatch {
            disk,
            offset: 0,
            pool,
            completions: Vec::with_capacity(sectors_max + 1),
        }
    }

    /// Submits `sectors` writes of consecutive sectors and a barrier, then blocks until the
    /// barrier completes.
    pub fn write_durable(&mut self, sectors: usize) {
        assert!(
            sectors <= self.pool.len(),
            "batch larger than the buffer pool"
        );
        let len = (sectors * SECTOR_SIZE) as u64;
        if self.offset + len > self.disk.size() {
            self.offset = 0;
        }
        for i in 0..sectors {
            let buf = self
                .pool
                .pop()
                .expect("invariant: checked the pool size above");
            self.disk
                .submit_write(self.offset + (i * SECTOR_SIZE) as u64, buf, i as u64);
        }
        self.disk.submit_barrier(u64::MAX);
        drain(&mut self.disk, &mut self.completions);
        for completion in self.completions.drain(..) {
            if let Err(error) = &completion.result {
                panic!(
                    "raw {:?} failed on the bench file: {error}",
                    completion.kind
                );
            }
            if completion.kind == IoKind::Write {
                self.pool.push(
                    completion
                        .buf
                        .expect("invariant: a write returns its buffer"),
                );
            }
        }
        self.offset += len;
    }
}

#[cfg(test)]
mod tests {
    use chronon_engine::disk::MemoryDisk;

    use super::*;

    // Rounds keep their buffers circulating and leave nothing in flight after a drain.
    #[test]
    fn round_patterns_return_every_buffer() {
        let config = LogConfig {
            slot_count: 64,
            slot_size: 4096,
            checkpoint_size: 64 * 1024,
        };
        let disk = MemoryDisk::new(Layout::new(config).total_size());
        let mut pattern = RoundPattern::new(disk, config, 16, 2);
        let pool = pattern.pool.len();
        for _ in 0..10 {
            pattern.write_round(16);
        }
        pattern.drain();
        assert_eq!(pattern.pool.len(), pool);
        assert_eq!(pattern.barriers_in_flight, 0);
    }

    // Batches wrap at the end of the disk and hand every buffer back to the pool.
    #[test]
    fn disk_batches_wrap_and_reuse_buffers() {
        let mut batch = DiskBatch::new(MemoryDisk::new(10 * SECTOR_SIZE as u64), 4);
        for _ in 0..5 {
            batch.write_durable(4);
            assert_eq!(batch.pool.len(), 4);
            assert!(batch.offset <= batch.disk.size());
        }
        assert!(
            batch.disk.bytes().iter().any(|&b| b != 0),
            "the writes reached the disk"
        );
    }
}

/// The I/O the journal would issue if every barrier carried exactly one batch: the batch's
/// entries in consecutive slots, one header-zone sector per 32 entries (the copies of the batch
/// before), and one barrier, with up to `depth` barriers in flight. No hashing or copying, so
/// this is the bound the log's protocol itself puts on throughput through a given disk.
#[derive(Debug)]
pub struct RoundPattern<D> {
    disk: D,
    layout: Layout,
    depth: usize,
    next_slot: usize,
    next_copy_sector: usize,
    barriers_in_flight: usize,
    pool: Vec<AlignedBuf>,
    completions: Vec<Completion>,
}

impl<D: VirtualDisk> RoundPattern<D> {
    /// A pattern over a disk holding a journal of `config`, for batches of up to
    /// `entries_max` entries.
    #[must_use]
    pub fn new(disk: D, config: LogConfig, entries_max: usize, depth: usize) -> RoundPattern<D> {
        let layout = Layout::new(config);
        assert!(disk.size() >= layout.total_size());
        assert!(
            depth * entries_max <= config.slot_count as usize,
            "in-flight slots would overlap"
        );
        let sectors_max = depth * (entries_max + entries_max.div_ceil(HEADERS_PER_SECTOR));
        let batch = DiskBatch::new(disk, sectors_max);
        RoundPattern {
            disk: batch.disk,
            layout,
            depth,
            next_slot: 0,
            next_copy_sector: 0,
            barriers_in_flight: 0,
            pool: batch.pool,
            completions: batch.completions,
        }
    }

    /// Submits one round of `entries` entry writes, their copy sectors and a barrier, then
    /// waits until fewer than `depth` rounds are in flight.
    pub fn write_round(&mut self, entries: usize) {
        let slot_count = self.layout.config.slot_count as usize;
        for _ in 0..entries {
            let buf = self
                .pool
                .pop()
                .expect("invariant: the pool covers depth rounds");
            self.disk
                .submit_write(self.layout.slot_offset(self.next_slot), buf, 0);
            self.next_slot = (self.next_slot + 1) % slot_count;
        }
        // Consecutive rounds write different copy sectors, so no two writes in flight overlap
        // (the seam's contract), while the I/O shape matches the journal's.
        for _ in 0..entries.div_ceil(HEADERS_PER_SECTOR) {
            let buf = self
                .pool
                .pop()
                .expect("invariant: the pool covers depth rounds");
            let offset = self.layout.header_sector_offset(self.next_copy_sector);
            self.disk.submit_write(offset, buf, 0);
            self.next_copy_sector = (self.next_copy_sector + 1) % self.layout.header_sector_count();
        }
        self.disk.submit_barrier(1);
        self.barriers_in_flight += 1;
        self.settle(self.depth - 1);
    }

    /// Waits until every round is durable.
    pub fn drain(&mut self) {
        self.settle(0);
    }

    fn settle(&mut self, rounds_max: usize) {
        while self.barriers_in_flight > rounds_max {
            self.disk.wait(&mut self.completions);
            for completion in self.completions.drain(..) {
                if let Err(error) = &completion.result {
                    panic!(
                        "round {:?} failed on the bench file: {error}",
                        completion.kind
                    );
                }
                match completion.kind {
                    IoKind::Barrier => self.barriers_in_flight -= 1,
                    IoKind::Write => self.pool.push(completion.buf.expect("a write's buffer")),
                    IoKind::Read => unreachable!("a round pattern reads nothing"),
                }
            }
        }
    }
}
