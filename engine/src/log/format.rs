//! Byte layout of entries, headers and the data file. `docs/internals/log-format.md` has the
//! diagrams; this file is the source of truth and the tests pin it.

use crate::checksum::Checksum;
use crate::constants::{
    CHECKPOINT_COPIES, CHECKPOINT_SIZE_MAX, FORMAT_VERSION, HEADER_SIZE, HEADERS_PER_SECTOR,
    SECTOR_SIZE, SLOT_COUNT_MAX, SLOT_COUNT_MIN, SLOT_SIZE_MAX, SUPERBLOCK_COPIES,
};
use crate::ids::{ClientId, ClusterId, Op, RequestNumber, ShardId, Timestamp, View};

/// What an entry holds. The log layer gives meaning only to [`Operation::ROOT`]; the layers
/// above (VSR, the kernel) define the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation(pub u8);

impl Operation {
    /// The entry at op 0, written at format time, that anchors the hash chain.
    pub const ROOT: Operation = Operation(1);
    /// Test and benchmark payloads.
    pub const DATA: Operation = Operation(2);
}

/// The fields of an entry's header that its writer chooses; the journal adds op, parent,
/// cluster, shard, size and checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub view: View,
    pub timestamp: Timestamp,
    pub operation: Operation,
    pub client: ClientId,
    pub request: RequestNumber,
}

/// A decoded, checksum-verified entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Checksum of header bytes 16..128; it covers `checksum_body`, so it names the whole
    /// entry and is what the next entry's `parent` holds.
    pub checksum: Checksum,
    pub checksum_body: Checksum,
    /// The previous op's `checksum`: the hash chain. Zero only for the root.
    pub parent: Checksum,
    pub op: Op,
    pub view: View,
    pub timestamp: Timestamp,
    pub cluster: ClusterId,
    pub client: ClientId,
    pub request: RequestNumber,
    /// Header plus body, in bytes.
    pub size: u32,
    pub shard: ShardId,
    pub operation: Operation,
}

/// What a 128-byte header slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderState {
    /// All zero bytes: never written, or erased by a truncation.
    Zero,
    /// Not a valid header: bad checksum, unknown version, or non-zero reserved bytes.
    Corrupt,
    Valid(Header),
}

impl Header {
    /// Builds the header of an entry with `body`, computing both checksums.
    #[must_use]
    pub fn new(
        meta: &EntryMeta,
        op: Op,
        parent: Checksum,
        cluster: ClusterId,
        shard: ShardId,
        body: &[u8],
    ) -> Header {
        let size = u32::try_from(HEADER_SIZE + body.len()).expect("invariant: entry size fits u32");
        let mut header = Header {
            checksum: Checksum::ZERO,
            checksum_body: Checksum::of_body(body),
            parent,
            op,
            view: meta.view,
            timestamp: meta.timestamp,
            cluster,
            client: meta.client,
            request: meta.request,
            size,
            shard,
            operation: meta.operation,
        };
        let bytes = header.encode();
        header.checksum = Checksum::of(&bytes[16..]);
        header
    }

    /// The root entry of a shard's log: op 0, no parent, no body.
    #[must_use]
    pub fn root(cluster: ClusterId, shard: ShardId) -> Header {
        let meta = EntryMeta {
            view: View(0),
            timestamp: Timestamp(0),
            operation: Operation::ROOT,
            client: ClientId(0),
            request: RequestNumber(0),
        };
        Header::new(&meta, Op(0), Checksum::ZERO, cluster, shard, &[])
    }

    /// Bytes the entry occupies on disk: header plus body, rounded up to whole sectors.
    #[must_use]
    pub fn padded_size(&self) -> usize {
        (self.size as usize).div_ceil(SECTOR_SIZE) * SECTOR_SIZE
    }

    /// Encodes the header, little-endian, as laid out in `docs/internals/log-format.md`.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..16].copy_from_slice(&self.checksum.to_le_bytes());
        b[16..32].copy_from_slice(&self.checksum_body.to_le_bytes());
        b[32..48].copy_from_slice(&self.parent.to_le_bytes());
        b[48..56].copy_from_slice(&self.op.0.to_le_bytes());
        b[56..64].copy_from_slice(&self.view.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.timestamp.0.to_le_bytes());
        b[72..80].copy_from_slice(&self.cluster.0.to_le_bytes());
        b[80..88].copy_from_slice(&self.client.0.to_le_bytes());
        b[88..96].copy_from_slice(&self.request.0.to_le_bytes());
        b[96..100].copy_from_slice(&self.size.to_le_bytes());
        b[100..102].copy_from_slice(&self.shard.0.to_le_bytes());
        b[102] = self.operation.0;
        b[103] = FORMAT_VERSION;
        b
    }

    /// Decodes and verifies a header. Never panics, whatever the bytes.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> HeaderState {
        let Some(b) = bytes.get(..HEADER_SIZE) else {
            return HeaderState::Corrupt;
        };
        if b.iter().all(|&x| x == 0) {
            return HeaderState::Zero;
        }
        let checksum = Checksum::from_le_bytes(le(b, 0));
        if Checksum::of(&b[16..]) != checksum {
            return HeaderState::Corrupt;
        }
        if b[103] != FORMAT_VERSION || b[104..].iter().any(|&x| x != 0) {
            return HeaderState::Corrupt;
        }
        let size = u32::from_le_bytes(le(b, 96));
        if (size as usize) < HEADER_SIZE {
            return HeaderState::Corrupt;
        }
        HeaderState::Valid(Header {
            checksum,
            checksum_body: Checksum::from_le_bytes(le(b, 16)),
            parent: Checksum::from_le_bytes(le(b, 32)),
            op: Op(u64::from_le_bytes(le(b, 48))),
            view: View(u64::from_le_bytes(le(b, 56))),
            timestamp: Timestamp(u64::from_le_bytes(le(b, 64))),
            cluster: ClusterId(u64::from_le_bytes(le(b, 72))),
            client: ClientId(u64::from_le_bytes(le(b, 80))),
            request: RequestNumber(u64::from_le_bytes(le(b, 88))),
            size,
            shard: ShardId(u16::from_le_bytes(le(b, 100))),
            operation: Operation(b[102]),
        })
    }
}

/// Reads `N` bytes at `at`. Callers pass in-bounds offsets of a fixed-size layout.
pub(crate) fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// The shape of a journal ring, fixed at format time and recorded in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub slot_count: u32,
    /// Largest entry, header included; a multiple of [`SECTOR_SIZE`].
    pub slot_size: u32,
    /// Bytes of each checkpoint copy: the largest encoded checkpoint; a multiple of
    /// [`SECTOR_SIZE`].
    pub checkpoint_size: u32,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            slot_count: crate::constants::SLOT_COUNT_DEFAULT,
            slot_size: crate::constants::SLOT_SIZE_DEFAULT,
            checkpoint_size: crate::constants::CHECKPOINT_SIZE_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Why this configuration cannot be used, if it cannot.
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        if !(SLOT_COUNT_MIN..=SLOT_COUNT_MAX).contains(&self.slot_count) {
            return Some(format!(
                "slot count {} is outside {SLOT_COUNT_MIN}..={SLOT_COUNT_MAX}",
                self.slot_count
            ));
        }
        if self.slot_size == 0
            || self.slot_size > SLOT_SIZE_MAX
            || !(self.slot_size as usize).is_multiple_of(SECTOR_SIZE)
        {
            return Some(format!(
                "slot size {} must be a positive multiple of {SECTOR_SIZE} up to {SLOT_SIZE_MAX}",
                self.slot_size
            ));
        }
        if self.checkpoint_size == 0
            || self.checkpoint_size > CHECKPOINT_SIZE_MAX
            || !(self.checkpoint_size as usize).is_multiple_of(SECTOR_SIZE)
        {
            return Some(format!(
                "checkpoint size {} must be a positive multiple of {SECTOR_SIZE} up to \
                 {CHECKPOINT_SIZE_MAX}",
                self.checkpoint_size
            ));
        }
        None
    }

    /// Ops a replica may hold beyond its durable checkpoint: the journal promises the newest
    /// `slot_count - in_flight_max` ops of its ring (see [`Layout::in_flight_max`]), and every op
    /// after the checkpoint must survive a crash for the replica to replay it.
    #[must_use]
    pub fn ops_beyond_checkpoint_max(&self) -> u64 {
        u64::from(self.slot_count - self.slot_count / 2)
    }
}

/// Where everything lives in a data file:
///
/// ```text
/// [ superblock copies: 4 x 4 KiB ][ header zone: slot_count x 128 B, sector-rounded ][ slots ]
/// [ checkpoint copy 0 ][ checkpoint copy 1 ]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub config: LogConfig,
}

impl Layout {
    #[must_use]
    pub fn new(config: LogConfig) -> Layout {
        assert!(config.problem().is_none(), "invalid log config: {config:?}");
        Layout { config }
    }

    #[must_use]
    pub fn superblock_offset(copy: usize) -> u64 {
        assert!(copy < SUPERBLOCK_COPIES);
        (copy * SECTOR_SIZE) as u64
    }

    #[must_use]
    pub fn header_zone_offset(&self) -> u64 {
        (SUPERBLOCK_COPIES * SECTOR_SIZE) as u64
    }

    #[must_use]
    pub fn header_sector_count(&self) -> usize {
        (self.config.slot_count as usize).div_ceil(HEADERS_PER_SECTOR)
    }

    #[must_use]
    pub fn header_zone_size(&self) -> usize {
        self.header_sector_count() * SECTOR_SIZE
    }

    #[must_use]
    pub fn slot_zone_offset(&self) -> u64 {
        self.header_zone_offset() + self.header_zone_size() as u64
    }

    #[must_use]
    pub fn slot_size(&self) -> usize {
        self.config.slot_size as usize
    }

    /// Where the checkpoint zone starts: right after the slot zone.
    #[must_use]
    pub fn checkpoint_zone_offset(&self) -> u64 {
        self.slot_zone_offset()
            + u64::from(self.config.slot_count) * u64::from(self.config.slot_size)
    }

    /// Offset of checkpoint copy `copy`.
    #[must_use]
    pub fn checkpoint_offset(&self, copy: usize) -> u64 {
        assert!(copy < CHECKPOINT_COPIES);
        self.checkpoint_zone_offset() + copy as u64 * u64::from(self.config.checkpoint_size)
    }

    /// The data file's total size.
    #[must_use]
    pub fn total_size(&self) -> u64 {
        self.checkpoint_zone_offset()
            + CHECKPOINT_COPIES as u64 * u64::from(self.config.checkpoint_size)
    }

    /// Entries that may be appended but not yet durable. Half the ring, so that an in-flight
    /// write can only overwrite (and, at a crash, tear) an op that is at least half a ring
    /// older than the newest op: the newest `slot_count - in_flight_max` ops are never at risk.
    #[must_use]
    pub fn in_flight_max(&self) -> u64 {
        u64::from(self.config.slot_count / 2)
    }

    #[must_use]
    pub fn slot_of(&self, op: Op) -> usize {
        (op.0 % u64::from(self.config.slot_count)) as usize
    }

    #[must_use]
    pub fn slot_offset(&self, slot: usize) -> u64 {
        assert!(slot < self.config.slot_count as usize);
        self.slot_zone_offset() + slot as u64 * u64::from(self.config.slot_size)
    }

    /// Offset of the header-zone sector holding `slot`'s redundant header.
    #[must_use]
    pub fn header_sector_offset(&self, sector: usize) -> u64 {
        assert!(sector < self.header_sector_count());
        self.header_zone_offset() + (sector * SECTOR_SIZE) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let meta = EntryMeta {
            view: View(3),
            timestamp: Timestamp(1_700_000_000_000),
            operation: Operation::DATA,
            client: ClientId(9),
            request: RequestNumber(12),
        };
        Header::new(
            &meta,
            Op(41),
            Checksum(77),
            ClusterId(5),
            ShardId(2),
            b"hello",
        )
    }

    // Pair assertion on the write and the read of a header: every field survives.
    #[test]
    fn header_roundtrip() {
        let header = sample();
        assert_eq!(Header::decode(&header.encode()), HeaderState::Valid(header));
        assert_eq!(header.size as usize, HEADER_SIZE + 5);
        assert_eq!(header.padded_size(), SECTOR_SIZE);
    }

    // Any single flipped bit makes the header corrupt, and no input panics the decoder.
    #[test]
    fn header_detects_every_bit_flip() {
        let bytes = sample().encode();
        for bit in 0..HEADER_SIZE * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Header::decode(&flipped), HeaderState::Corrupt, "bit {bit}");
        }
        assert_eq!(Header::decode(&[0u8; HEADER_SIZE]), HeaderState::Zero);
        assert_eq!(Header::decode(&[1u8; 3]), HeaderState::Corrupt);
        let mut rng = crate::rng::Rng::new(1);
        for _ in 0..1000 {
            let mut junk = [0u8; HEADER_SIZE];
            rng.fill(&mut junk);
            assert_eq!(Header::decode(&junk), HeaderState::Corrupt);
        }
    }

    // The byte offsets documented in log-format.md.
    #[test]
    fn header_layout_is_pinned() {
        let header = sample();
        let b = header.encode();
        assert_eq!(u64::from_le_bytes(le(&b, 48)), 41);
        assert_eq!(u64::from_le_bytes(le(&b, 56)), 3);
        assert_eq!(u64::from_le_bytes(le(&b, 72)), 5);
        assert_eq!(u16::from_le_bytes(le(&b, 100)), 2);
        assert_eq!(b[102], Operation::DATA.0);
        assert_eq!(b[103], FORMAT_VERSION);
    }

    #[test]
    fn layout_regions_do_not_overlap() {
        let layout = Layout::new(LogConfig {
            slot_count: 100,
            slot_size: 8192,
            checkpoint_size: 8192,
        });
        assert_eq!(layout.header_zone_offset(), 4 * 4096);
        assert_eq!(layout.header_sector_count(), 4);
        assert_eq!(layout.slot_zone_offset(), 8 * 4096);
        assert_eq!(
            layout.slot_offset(99) + 8192,
            layout.checkpoint_zone_offset()
        );
        assert_eq!(layout.checkpoint_offset(1) + 8192, layout.total_size());
        assert_eq!(layout.slot_of(Op(250)), 50);
        assert!(
            LogConfig {
                slot_count: 2,
                slot_size: 4096,
                checkpoint_size: 4096,
            }
            .problem()
            .is_some()
        );
        assert!(
            LogConfig {
                slot_count: 8,
                slot_size: 4000,
                checkpoint_size: 4096,
            }
            .problem()
            .is_some()
        );
    }
}
