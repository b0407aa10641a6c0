use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use chronon_engine::constants::SECTOR_SIZE;

use crate::DiskOpenError;

/// Zero-filled chunk written at creation.
const CREATE_CHUNK_BYTES: usize = 1 << 20;

/// Creates a data file of `size` bytes, preallocated and zero-filled with real writes, then
/// fsynced (file and directory). Writing zeros up front, rather than leaving unwritten extents,
/// keeps later durable writes from also committing filesystem metadata: measured here, that
/// costs ~175-200 µs per 4 KiB durable write instead of ~100-130 µs.
///
/// Refuses to overwrite an existing file.
pub fn create_data_file(path: &Path, size: u64) -> Result<(), DiskOpenError> {
    assert!(
        size.is_multiple_of(SECTOR_SIZE as u64),
        "data file size must be whole sectors"
    );
    let io = |action| {
        move |source| DiskOpenError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("create"))?;
    let no_space = |source: std::io::Error| {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            DiskOpenError::NoSpace {
                path: path.to_owned(),
                size,
                source,
            }
        } else {
            DiskOpenError::Io {
                action: "zero-fill",
                path: path.to_owned(),
                source,
            }
        }
    };
    let zeros = vec![0u8; CREATE_CHUNK_BYTES];
    let mut left = size;
    while left > 0 {
        let n = left.min(CREATE_CHUNK_BYTES as u64) as usize;
        if let Err(source) = file.write_all(&zeros[..n]) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(no_space(source));
        }
        left -= n as u64;
    }
    file.sync_all().map_err(io("fsync"))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync the directory of"))?;
    }
    Ok(())
}

/// The size of an existing data file, checked to be whole sectors.
pub(crate) fn data_file_size(file: &File, path: &Path) -> Result<u64, DiskOpenError> {
    let size = file
        .metadata()
        .map_err(|source| DiskOpenError::Io {
            action: "stat",
            path: path.to_owned(),
            source,
        })?
        .len();
    if size == 0 || size % SECTOR_SIZE as u64 != 0 {
        return Err(DiskOpenError::BadSize {
            path: path.to_owned(),
            actual: size,
        });
    }
    Ok(size)
}
