//! An in-memory disk: every write is durable at once, and I/O completes on the next poll.
//! The fastest seam, for unit tests and benches of the code above the disk.

use std::collections::VecDeque;

use super::{AlignedBuf, Completion, IoKind, VirtualDisk, check_io};

#[derive(Debug)]
pub struct MemoryDisk {
    bytes: Vec<u8>,
    completed: VecDeque<Completion>,
}

impl MemoryDisk {
    /// A zero-filled disk of `size` bytes.
    #[must_use]
    pub fn new(size: u64) -> MemoryDisk {
        check_io(
            size,
            0,
            usize::try_from(size).expect("invariant: memory disk fits in memory"),
        );
        MemoryDisk {
            bytes: vec![0; size as usize],
            completed: VecDeque::new(),
        }
    }

    /// The disk's contents, for inspection in tests.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl VirtualDisk for MemoryDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn submit_read(&mut self, offset: u64, mut buf: AlignedBuf, token: u64) {
        check_io(self.size(), offset, buf.len());
        let start = offset as usize;
        let len = buf.len();
        buf.as_mut_slice()
            .copy_from_slice(&self.bytes[start..start + len]);
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Read,
            result: Ok(()),
            buf: Some(buf),
        });
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_io(self.size(), offset, buf.len());
        let start = offset as usize;
        self.bytes[start..start + buf.len()].copy_from_slice(buf.as_slice());
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Write,
            result: Ok(()),
            buf: Some(buf),
        });
    }

    fn submit_barrier(&mut self, token: u64) {
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Barrier,
            result: Ok(()),
            buf: None,
        });
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.completed.drain(..));
    }

    fn wait(&mut self, out: &mut Vec<Completion>) {
        self.poll(out);
    }

    fn in_flight(&self) -> usize {
        self.completed.len()
    }
}
