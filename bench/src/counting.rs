//! A disk wrapper that counts the I/O the journal submits, so the report can say how many
//! barriers and bytes each batch really cost, not only how long it took.

use chronon_engine::disk::{AlignedBuf, Completion, VirtualDisk};

/// What was submitted through a [`Counting`] disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounts {
    pub writes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub barriers: u64,
}

impl DiskCounts {
    /// The counts accumulated since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &DiskCounts) -> DiskCounts {
        DiskCounts {
            writes: self.writes - earlier.writes,
            write_bytes: self.write_bytes - earlier.write_bytes,
            reads: self.reads - earlier.reads,
            read_bytes: self.read_bytes - earlier.read_bytes,
            barriers: self.barriers - earlier.barriers,
        }
    }
}

impl std::ops::AddAssign for DiskCounts {
    fn add_assign(&mut self, other: DiskCounts) {
        self.writes += other.writes;
        self.write_bytes += other.write_bytes;
        self.reads += other.reads;
        self.read_bytes += other.read_bytes;
        self.barriers += other.barriers;
    }
}

/// Delegates to `D`, counting submissions. Costs a few additions per I/O.
#[derive(Debug)]
pub struct Counting<D> {
    inner: D,
    counts: DiskCounts,
}

impl<D: VirtualDisk> Counting<D> {
    pub fn new(inner: D) -> Counting<D> {
        Counting {
            inner,
            counts: DiskCounts::default(),
        }
    }

    #[must_use]
    pub fn counts(&self) -> DiskCounts {
        self.counts
    }

    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: VirtualDisk> VirtualDisk for Counting<D> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn submit_read(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        self.counts.reads += 1;
        self.counts.read_bytes += buf.len() as u64;
        self.inner.submit_read(offset, buf, token);
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        self.counts.writes += 1;
        self.counts.write_bytes += buf.len() as u64;
        self.inner.submit_write(offset, buf, token);
    }

    fn submit_barrier(&mut self, token: u64) {
        self.counts.barriers += 1;
        self.inner.submit_barrier(token);
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        self.inner.poll(out);
    }

    fn wait(&mut self, out: &mut Vec<Completion>) {
        self.inner.wait(out);
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use chronon_engine::disk::{MemoryDisk, SECTOR_SIZE, drain};

    use super::*;

    // The counts match what was submitted, and the wrapped disk still does the I/O.
    #[test]
    fn counts_what_was_submitted() {
        let mut disk = Counting::new(MemoryDisk::new(8 * SECTOR_SIZE as u64));
        disk.submit_write(0, AlignedBuf::zeroed(2 * SECTOR_SIZE), 1);
        disk.submit_barrier(2);
        disk.submit_read(0, AlignedBuf::zeroed(SECTOR_SIZE), 3);
        let mut out = Vec::new();
        drain(&mut disk, &mut out);
        assert_eq!(out.len(), 3);
        let counts = disk.counts();
        assert_eq!(
            (counts.writes, counts.write_bytes),
            (1, 2 * SECTOR_SIZE as u64)
        );
        assert_eq!((counts.reads, counts.read_bytes), (1, SECTOR_SIZE as u64));
        assert_eq!(counts.barriers, 1);
        assert_eq!(counts.since(&counts), DiskCounts::default());
    }
}
