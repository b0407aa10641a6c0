//! io_uring + O_DIRECT disk. (Being implemented: see the helper task.)

use std::path::Path;

use chronon_engine::disk::{AlignedBuf, Completion, VirtualDisk};

use crate::DiskOpenError;

/// Bytes of locked memory the io_uring disk needs.
#[must_use]
pub fn memlock_required_bytes() -> u64 {
    0
}

#[derive(Debug)]
pub struct IoUringDisk {
    size: u64,
}

impl IoUringDisk {
    pub fn open(_path: &Path) -> Result<IoUringDisk, DiskOpenError> {
        Err(DiskOpenError::IoUringUnavailable { reason: "not built yet".to_owned() })
    }
}

impl VirtualDisk for IoUringDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn submit_read(&mut self, _offset: u64, _buf: AlignedBuf, _token: u64) {}
    fn submit_write(&mut self, _offset: u64, _buf: AlignedBuf, _token: u64) {}
    fn submit_barrier(&mut self, _token: u64) {}
    fn poll(&mut self, _out: &mut Vec<Completion>) {}
    fn wait(&mut self, _out: &mut Vec<Completion>) {}
    fn in_flight(&self) -> usize {
        0
    }
}
