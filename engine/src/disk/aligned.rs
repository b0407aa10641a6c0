//! Sector-aligned buffers without `unsafe`: a `Vec` of 4 KiB-aligned sectors viewed as bytes.

use std::fmt;

use bytemuck::{Pod, Zeroable};

use crate::constants::SECTOR_SIZE;

/// One sector, aligned to its size so that a buffer of them suits `O_DIRECT`.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
pub struct Sector(pub [u8; SECTOR_SIZE]);

const _: () = assert!(std::mem::align_of::<Sector>() == SECTOR_SIZE);

impl fmt::Debug for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sector")
    }
}

/// A heap buffer of whole sectors, aligned to [`SECTOR_SIZE`]. Its memory does not move when
/// the buffer is moved, so a disk may hand its address to the kernel while it owns it.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    sectors: Vec<Sector>,
}

impl AlignedBuf {
    /// A zero-filled buffer of `len` bytes; `len` must be a multiple of [`SECTOR_SIZE`].
    #[must_use]
    pub fn zeroed(len: usize) -> AlignedBuf {
        assert!(
            len.is_multiple_of(SECTOR_SIZE),
            "buffer length {len} is not a whole number of sectors"
        );
        AlignedBuf {
            sectors: vec![Sector::zeroed(); len / SECTOR_SIZE],
        }
    }

    /// An empty buffer with room for `capacity` bytes, so that later [`AlignedBuf::resize`]
    /// calls up to that size do not allocate.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        AlignedBuf {
            sectors: Vec::with_capacity(capacity.div_ceil(SECTOR_SIZE)),
        }
    }

    /// Bytes the buffer can hold without allocating.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.sectors.capacity() * SECTOR_SIZE
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.sectors.len() * SECTOR_SIZE
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sectors.is_empty()
    }

    /// Sets the length to `len` bytes, zero-filling any new sectors. Keeps the allocation, so
    /// a pooled buffer can be reused for shorter or equal I/Os without allocating.
    pub fn resize(&mut self, len: usize) {
        assert!(
            len.is_multiple_of(SECTOR_SIZE),
            "buffer length {len} is not a whole number of sectors"
        );
        self.sectors.resize(len / SECTOR_SIZE, Sector::zeroed());
    }

    /// Zero-fills the whole buffer.
    pub fn clear(&mut self) {
        self.sectors.fill(Sector::zeroed());
    }

    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        bytemuck::cast_slice(&self.sectors)
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.sectors)
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // O_DIRECT rejects misaligned buffers with EINVAL; this pins the alignment for every
    // length and after every resize.
    #[test]
    fn buffers_are_sector_aligned() {
        for sectors in [1usize, 2, 3, 16, 255] {
            let mut buf = AlignedBuf::zeroed(sectors * SECTOR_SIZE);
            assert_eq!(buf.as_slice().as_ptr() as usize % SECTOR_SIZE, 0);
            assert_eq!(buf.len(), sectors * SECTOR_SIZE);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
            buf.as_mut_slice()[0] = 7;
            buf.resize((sectors + 1) * SECTOR_SIZE);
            assert_eq!(buf.as_slice().as_ptr() as usize % SECTOR_SIZE, 0);
            assert_eq!(buf.as_slice()[0], 7);
            assert_eq!(buf.as_slice()[sectors * SECTOR_SIZE], 0);
        }
    }
}
