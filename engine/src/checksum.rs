//! BLAKE3 truncated to 128 bits: the checksum of headers, bodies, superblocks and the hash
//! chain. Measured at 1.0-1.6 µs per 4 KiB on the development machines.

use std::fmt;

/// A 128-bit checksum. The all-zero value is reserved for "no parent" (the root entry).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checksum(pub u128);

impl Checksum {
    pub const ZERO: Checksum = Checksum(0);

    #[must_use]
    pub fn of(bytes: &[u8]) -> Checksum {
        let hash = blake3::hash(bytes);
        let mut low = [0u8; 16];
        low.copy_from_slice(&hash.as_bytes()[..16]);
        Checksum(u128::from_le_bytes(low))
    }

    #[must_use]
    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    #[must_use]
    pub fn from_le_bytes(bytes: [u8; 16]) -> Checksum {
        Checksum(u128::from_le_bytes(bytes))
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({:032x})", self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the truncation: the checksum is the first 16 bytes of BLAKE3, little-endian, so a
    // change of library or byte order shows up here before it corrupts a data file.
    #[test]
    fn checksum_is_truncated_blake3() {
        let full = blake3::hash(b"chronon");
        let sum = Checksum::of(b"chronon");
        assert_eq!(sum.to_le_bytes(), full.as_bytes()[..16]);
        assert_ne!(sum, Checksum::of(b"chronom"));
    }
}
