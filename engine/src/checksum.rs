//! BLAKE3 truncated to 128 bits: the checksum of headers, bodies, superblocks and the hash
//! chain. Measured at 1.0-1.6 µs per 4 KiB on the development machines.

use std::fmt;

use crate::constants::{BODY_HASH_PAD, BODY_HASH_UNPADDED_MAX};

/// A 128-bit checksum. The all-zero value is reserved for "no parent" (the root entry).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checksum(pub u128);

impl Checksum {
    pub const ZERO: Checksum = Checksum(0);

    #[must_use]
    pub fn of(bytes: &[u8]) -> Checksum {
        Checksum::truncated(&blake3::hash(bytes))
    }

    /// The checksum of an entry's body: BLAKE3-128 of the body followed by zeros up to the next
    /// multiple of [`BODY_HASH_PAD`], or of the body as it is when it is at most
    /// [`BODY_HASH_UNPADDED_MAX`] bytes.
    ///
    /// Why pad: BLAKE3 hashes 1 KiB chunks side by side with SIMD only in groups of four (or
    /// eight, or sixteen) whole chunks; any other chunk, and a partial last chunk, is compressed
    /// one block after another. The 3968-byte body of a 4 KiB entry is three whole chunks and a
    /// partial one, and costs about 2.5 times as much as 4096 bytes. Padded, it is one group of
    /// four. A body of one chunk or less gains nothing from padding (one chunk is always
    /// serial), so it is hashed as it is. Padding makes `b` and `b` followed by zeros hash alike;
    /// the header's `size`, which the header checksum covers, tells them apart.
    #[must_use]
    pub fn of_body(body: &[u8]) -> Checksum {
        if body.len() <= BODY_HASH_UNPADDED_MAX {
            return Checksum::of(body);
        }
        let whole = body.len() - body.len() % BODY_HASH_PAD;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&body[..whole]);
        let tail = &body[whole..];
        if !tail.is_empty() {
            let mut padded = [0u8; BODY_HASH_PAD];
            padded[..tail.len()].copy_from_slice(tail);
            hasher.update(&padded);
        }
        Checksum::truncated(&hasher.finalize())
    }

    fn truncated(hash: &blake3::Hash) -> Checksum {
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

    // Pins the body checksum's padding against plain BLAKE3 over an explicitly padded copy, on
    // both sides of each boundary: bodies up to one chunk are not padded, longer ones are
    // padded with zeros to a multiple of BODY_HASH_PAD, and one already a multiple is hashed
    // as it is.
    #[test]
    fn body_checksum_pads_to_whole_groups_of_chunks() {
        let mut rng = crate::rng::Rng::new(7);
        let mut bytes = vec![0u8; 3 * BODY_HASH_PAD + 1];
        rng.fill(&mut bytes);
        let unpadded = [0, 1, 128, BODY_HASH_UNPADDED_MAX];
        for len in unpadded {
            assert_eq!(
                Checksum::of_body(&bytes[..len]),
                Checksum::of(&bytes[..len])
            );
        }
        let padded = [
            BODY_HASH_UNPADDED_MAX + 1,
            4096 - 128,
            BODY_HASH_PAD,
            BODY_HASH_PAD + 1,
            2 * BODY_HASH_PAD - 1,
            3 * BODY_HASH_PAD + 1,
        ];
        for len in padded {
            let mut copy = bytes[..len].to_vec();
            copy.resize(len.next_multiple_of(BODY_HASH_PAD), 0);
            assert_eq!(
                Checksum::of_body(&bytes[..len]),
                Checksum::of(&copy),
                "{len}"
            );
        }
        // Padding adds zeros only: a body that differs in its last byte still differs.
        let mut changed = bytes[..4096 - 128].to_vec();
        changed[4096 - 129] ^= 1;
        assert_ne!(
            Checksum::of_body(&changed),
            Checksum::of_body(&bytes[..4096 - 128])
        );
    }
}
