//! The portable disk: `O_DSYNC` positional writes, each durable when it returns.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use chronon_engine::disk::{AlignedBuf, Completion, DiskError, IoKind, VirtualDisk, check_io};

use crate::DiskOpenError;
use crate::file::data_file_size;

/// A disk whose every write is synchronous and durable (`O_DSYNC`), so a barrier only reports
/// completion. I/O happens inside `submit_*`; completions are handed out by `poll`/`wait`.
#[derive(Debug)]
pub struct SyncDisk {
    file: File,
    size: u64,
    completed: VecDeque<Completion>,
}

impl SyncDisk {
    pub fn open(path: &Path) -> Result<SyncDisk, DiskOpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(path)
            .map_err(|source| DiskOpenError::Io {
                action: "open",
                path: path.to_owned(),
                source,
            })?;
        let size = data_file_size(&file, path)?;
        Ok(SyncDisk {
            file,
            size,
            completed: VecDeque::new(),
        })
    }
}

impl VirtualDisk for SyncDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn submit_read(&mut self, offset: u64, mut buf: AlignedBuf, token: u64) {
        check_io(self.size, offset, buf.len());
        let len = buf.len();
        let result = self
            .file
            .read_exact_at(buf.as_mut_slice(), offset)
            .map_err(|error| DiskError::Read {
                offset,
                len,
                reason: error.to_string(),
            });
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Read,
            result,
            buf: Some(buf),
        });
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_io(self.size, offset, buf.len());
        let len = buf.len();
        let result = self
            .file
            .write_all_at(buf.as_slice(), offset)
            .map_err(|error| DiskError::Write {
                offset,
                len,
                reason: error.to_string(),
            });
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Write,
            result,
            buf: Some(buf),
        });
    }

    fn submit_barrier(&mut self, token: u64) {
        // Every write was O_DSYNC: nothing submitted before this barrier is still volatile.
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
