//! Redis Cluster's hash slots, so that cluster-aware Redis clients route keys straight to the
//! owning shard.
//!
//! A key's slot is `CRC16(hashed) mod 16384`, with CRC16-XMODEM (polynomial 0x1021, initial
//! value 0, no reflection) as in the Redis Cluster specification. `hashed` is the whole key,
//! unless the key holds a hash tag: if it has a `{`, and a `}` somewhere after that first `{`,
//! and at least one byte between them, only the bytes between the first `{` and the first `}`
//! after it are hashed. So `{user1000}.following` and `{user1000}.followers` share a slot.
//!
//! Shard `s` of `S` owns the contiguous slots `floor(s * 16384 / S) ..= floor((s + 1) * 16384
//! / S) - 1`. Every slot has exactly one owner, the ranges are in shard order, and their sizes
//! differ by at most one. The owner of slot `k` is `floor(((k + 1) * S - 1) / 16384)`.

use chronon_engine::ShardId;

use crate::constants::SLOT_COUNT;

/// A hash slot, `0..16384`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u16);

/// An inclusive range of slots, as `CLUSTER SLOTS` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub first: Slot,
    pub last: Slot,
}

impl SlotRange {
    #[must_use]
    pub fn contains(&self, slot: Slot) -> bool {
        self.first <= slot && slot <= self.last
    }

    #[must_use]
    pub fn count(&self) -> usize {
        usize::from(self.last.0 - self.first.0) + 1
    }
}

const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// CRC16-XMODEM of `bytes`.
#[must_use]
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one, else all of it.
#[must_use]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after = &key[open + 1..];
    match after.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &after[..close],
        _ => key,
    }
}

#[must_use]
pub fn key_slot(key: &[u8]) -> Slot {
    Slot(crc16(hash_tag(key)) % SLOT_COUNT)
}

/// The slots shard `shard` of `shard_count` owns.
#[must_use]
pub fn shard_slots(shard: ShardId, shard_count: u16) -> SlotRange {
    assert!(shard_count > 0 && shard_count <= SLOT_COUNT);
    assert!(shard.0 < shard_count);
    let start = |s: u32| s * u32::from(SLOT_COUNT) / u32::from(shard_count);
    let first = start(u32::from(shard.0));
    let end = start(u32::from(shard.0) + 1);
    assert!(first < end);
    SlotRange {
        first: Slot(first as u16),
        last: Slot((end - 1) as u16),
    }
}

/// The shard of `shard_count` that owns `slot`.
#[must_use]
pub fn slot_shard(slot: Slot, shard_count: u16) -> ShardId {
    assert!(shard_count > 0 && shard_count <= SLOT_COUNT);
    assert!(slot.0 < SLOT_COUNT);
    let shard = ((u32::from(slot.0) + 1) * u32::from(shard_count) - 1) / u32::from(SLOT_COUNT);
    ShardId(shard as u16)
}

/// The shard of `shard_count` that owns `key`.
#[must_use]
pub fn key_shard(key: &[u8], shard_count: u16) -> ShardId {
    slot_shard(key_slot(key), shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the Redis Cluster specification and the `CLUSTER KEYSLOT` documentation.
    #[test]
    fn redis_test_vectors() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // 0x31C3 = 12739 is below 16384, so the slot is the CRC itself.
        assert_eq!(key_slot(b"123456789"), Slot(12739));
        assert_eq!(key_slot(b"somekey"), Slot(11058));
        assert_eq!(key_slot(b"foo"), Slot(12182));
        assert_eq!(key_slot(b"bar"), Slot(5061));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    // The specification's hash-tag cases, table-driven: the first `{`, the first `}` after it,
    // and an empty tag means "hash the whole key".
    #[test]
    fn hash_tag_cases() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"foo", b"foo"),
            (b"{user1000}.following", b"user1000"),
            (b"foo{}{bar}", b"foo{}{bar}"),
            (b"foo{{bar}}zap", b"{bar"),
            (b"foo{bar}{zap}", b"bar"),
            (b"{}", b"{}"),
            (b"{a", b"{a"),
            (b"}a{b}", b"b"),
            (b"", b""),
        ];
        for (key, hashed) in cases {
            assert_eq!(
                hash_tag(key),
                hashed,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    // Every slot has exactly one owner under the documented ranges, for every shard count up
    // to 64 and a few large ones, and `slot_shard` inverts `shard_slots`.
    #[test]
    fn ranges_partition_the_slots() {
        for shard_count in (1..=64).chain([100, 1000, 16383, 16384]) {
            let mut next = 0u32;
            for s in 0..shard_count {
                let range = shard_slots(ShardId(s), shard_count);
                assert_eq!(u32::from(range.first.0), next);
                let size = range.count();
                let even = usize::from(SLOT_COUNT / shard_count);
                assert!(size == even || size == even + 1);
                for slot in [range.first, range.last] {
                    assert_eq!(slot_shard(slot, shard_count), ShardId(s));
                }
                next = u32::from(range.last.0) + 1;
            }
            assert_eq!(next, u32::from(SLOT_COUNT));
        }
        for slot in 0..SLOT_COUNT {
            let shard = slot_shard(Slot(slot), 3);
            assert!(shard_slots(shard, 3).contains(Slot(slot)));
        }
        assert_eq!(shard_slots(ShardId(0), 3).last, Slot(5460));
        assert_eq!(shard_slots(ShardId(2), 3).first, Slot(10922));
    }
}
