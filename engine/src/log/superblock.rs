//! The superblock: the durable view state of one replica of one shard, kept in
//! [`SUPERBLOCK_COPIES`] copies at the start of the data file.
//!
//! An update writes copies 0 and 1, waits for a barrier, then writes copies 2 and 3 and waits
//! again. A crash at any point therefore leaves one whole half (a quorum of identical copies)
//! of either the old or the new version, and [`select`] picks the newest version that has a
//! quorum. A torn or corrupt single copy is outvoted.

use crate::checksum::Checksum;
use crate::constants::{
    CHECKPOINT_COPIES, FORMAT_VERSION, HEADER_SIZE, SECTOR_SIZE, SUPERBLOCK_COPIES,
    SUPERBLOCK_QUORUM,
};
use crate::ids::{ClusterId, CommitIndex, Op, ReplicaIndex, ShardId, View};
use crate::log::format::{Header, HeaderState, LogConfig, le};

const MAGIC: [u8; 8] = *b"CHRONON\0";

/// Where the superblock's checkpoint reference starts (see `docs/internals/log-format.md`).
const CHECKPOINT_AT: usize = 84;
const CHECKPOINT_HEADER_AT: usize = 112;

/// The durable checkpoint a superblock names: which copy of the checkpoint zone holds it, how
/// long it is, its checksum, and the header of the op it was taken at (the anchor of the log
/// that follows it: recovery starts the hash chain from this header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRef {
    pub header: Header,
    /// BLAKE3-128 of the encoded checkpoint (`size` bytes at the start of the copy).
    pub checksum: Checksum,
    pub size: u64,
    /// 0 or 1: the copy of the checkpoint zone that holds it.
    pub copy: u8,
}

/// The durable state of one replica's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Incremented by every update; the newest quorum wins.
    pub sequence: u64,
    pub cluster: ClusterId,
    pub shard: ShardId,
    pub replica: ReplicaIndex,
    pub replica_count: u8,
    pub view: View,
    /// The view in which this replica's log was last known to be complete. Never regresses.
    pub log_view: View,
    pub commit: CommitIndex,
    /// The log may lack ops this replica acknowledged (recovery lost both witnesses of an
    /// entry, or the replica dropped entries it could not connect to a new view's log). Until
    /// its log view advances, the replica votes in no view change: its log is not evidence of
    /// what was committed. Cleared by the update that advances the log view.
    pub recovering_head: bool,
    pub config: LogConfig,
    /// The newest durable checkpoint; `None` until the first one (the log then starts at the
    /// root). Ops up to its op are no longer needed from the log.
    pub checkpoint: Option<CheckpointRef>,
}

impl Superblock {
    /// Encodes copy `copy` of the superblock into one sector.
    #[must_use]
    pub fn encode(&self, copy: usize) -> [u8; SECTOR_SIZE] {
        assert!(copy < SUPERBLOCK_COPIES);
        let mut b = [0u8; SECTOR_SIZE];
        b[16..24].copy_from_slice(&MAGIC);
        b[24] = FORMAT_VERSION;
        b[25] = copy as u8;
        b[26..28].copy_from_slice(&self.shard.0.to_le_bytes());
        b[28] = self.replica.0;
        b[29] = self.replica_count;
        b[30] = u8::from(self.commit.0.is_some());
        b[31] = u8::from(self.recovering_head);
        b[32..40].copy_from_slice(&self.sequence.to_le_bytes());
        b[40..48].copy_from_slice(&self.cluster.0.to_le_bytes());
        b[48..56].copy_from_slice(&self.view.0.to_le_bytes());
        b[56..64].copy_from_slice(&self.log_view.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.commit.0.map_or(0, |op| op.0).to_le_bytes());
        b[72..76].copy_from_slice(&self.config.slot_count.to_le_bytes());
        b[76..80].copy_from_slice(&self.config.slot_size.to_le_bytes());
        b[80..84].copy_from_slice(&self.config.checkpoint_size.to_le_bytes());
        if let Some(checkpoint) = &self.checkpoint {
            assert!(usize::from(checkpoint.copy) < CHECKPOINT_COPIES);
            let at = CHECKPOINT_AT;
            b[at] = 1;
            b[at + 1] = checkpoint.copy;
            b[88..96].copy_from_slice(&checkpoint.size.to_le_bytes());
            b[96..112].copy_from_slice(&checkpoint.checksum.to_le_bytes());
            b[CHECKPOINT_HEADER_AT..CHECKPOINT_HEADER_AT + HEADER_SIZE]
                .copy_from_slice(&checkpoint.header.encode());
        }
        let checksum = Checksum::of(&b[16..]);
        b[0..16].copy_from_slice(&checksum.to_le_bytes());
        b
    }

    /// Decodes copy `copy`, or `None` if it is not a valid copy at that position.
    #[must_use]
    pub fn decode(bytes: &[u8], copy: usize) -> Option<Superblock> {
        let b = bytes.get(..SECTOR_SIZE)?;
        if Checksum::of(&b[16..]) != Checksum::from_le_bytes(le(b, 0)) {
            return None;
        }
        if b[16..24] != MAGIC || b[24] != FORMAT_VERSION || usize::from(b[25]) != copy {
            return None;
        }
        let commit = match b[30] {
            0 => CommitIndex::NONE,
            1 => CommitIndex(Some(Op(u64::from_le_bytes(le(b, 64))))),
            _ => return None,
        };
        let recovering_head = match b[31] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let checkpoint = decode_checkpoint(b)?;
        let superblock = Superblock {
            sequence: u64::from_le_bytes(le(b, 32)),
            cluster: ClusterId(u64::from_le_bytes(le(b, 40))),
            shard: ShardId(u16::from_le_bytes(le(b, 26))),
            replica: ReplicaIndex(b[28]),
            replica_count: b[29],
            view: View(u64::from_le_bytes(le(b, 48))),
            log_view: View(u64::from_le_bytes(le(b, 56))),
            commit,
            recovering_head,
            config: LogConfig {
                slot_count: u32::from_le_bytes(le(b, 72)),
                slot_size: u32::from_le_bytes(le(b, 76)),
                checkpoint_size: u32::from_le_bytes(le(b, 80)),
            },
            checkpoint,
        };
        let fits =
            checkpoint.is_none_or(|c| c.size <= u64::from(superblock.config.checkpoint_size));
        (superblock.config.problem().is_none() && superblock.log_view <= superblock.view && fits)
            .then_some(superblock)
    }
}

/// The checkpoint reference of a superblock copy: `Some(None)` when it names none (every byte
/// of it zero), `None` when it is malformed.
#[allow(clippy::option_option)]
fn decode_checkpoint(b: &[u8]) -> Option<Option<CheckpointRef>> {
    let at = CHECKPOINT_AT;
    let header_bytes = &b[CHECKPOINT_HEADER_AT..CHECKPOINT_HEADER_AT + HEADER_SIZE];
    match b[at] {
        0 => b[at..CHECKPOINT_HEADER_AT + HEADER_SIZE]
            .iter()
            .all(|&x| x == 0)
            .then_some(None),
        1 => {
            let copy = b[at + 1];
            if usize::from(copy) >= CHECKPOINT_COPIES || b[at + 2..88].iter().any(|&x| x != 0) {
                return None;
            }
            let HeaderState::Valid(header) = Header::decode(header_bytes) else {
                return None;
            };
            Some(Some(CheckpointRef {
                header,
                checksum: Checksum::from_le_bytes(le(b, 96)),
                size: u64::from_le_bytes(le(b, 88)),
                copy,
            }))
        }
        _ => None,
    }
}

/// Picks the newest superblock version held by at least [`SUPERBLOCK_QUORUM`] identical
/// copies, or `None` if no version has a quorum.
#[must_use]
pub fn select(copies: &[Option<Superblock>]) -> Option<Superblock> {
    copies
        .iter()
        .flatten()
        .filter(|candidate| {
            copies
                .iter()
                .flatten()
                .filter(|other| other == candidate)
                .count()
                >= SUPERBLOCK_QUORUM
        })
        .max_by_key(|candidate| candidate.sequence)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sequence: u64) -> Superblock {
        Superblock {
            sequence,
            cluster: ClusterId(7),
            shard: ShardId(1),
            replica: ReplicaIndex(2),
            replica_count: 3,
            view: View(sequence + 4),
            log_view: View(sequence + 3),
            commit: CommitIndex(Some(Op(0))),
            recovering_head: false,
            config: LogConfig {
                slot_count: 64,
                slot_size: 8192,
                checkpoint_size: 8192,
            },
            checkpoint: None,
        }
    }

    // Pair assertion: what encode writes, decode reads back, at its own copy position only;
    // commit Some(0) stays distinct from "nothing committed".
    #[test]
    fn superblock_roundtrip() {
        let sb = sample(5);
        for copy in 0..SUPERBLOCK_COPIES {
            assert_eq!(Superblock::decode(&sb.encode(copy), copy), Some(sb));
            assert_eq!(Superblock::decode(&sb.encode(copy), (copy + 1) % 4), None);
        }
        let none = Superblock {
            commit: CommitIndex::NONE,
            ..sb
        };
        assert_eq!(Superblock::decode(&none.encode(0), 0), Some(none));
        assert_ne!(none.encode(0), sb.encode(0));
        let recovering = Superblock {
            recovering_head: true,
            ..sb
        };
        assert_eq!(
            Superblock::decode(&recovering.encode(1), 1),
            Some(recovering)
        );
        assert_ne!(recovering.encode(1), sb.encode(1));
        let header = Header::root(ClusterId(7), ShardId(1));
        let checkpointed = Superblock {
            checkpoint: Some(CheckpointRef {
                header,
                checksum: Checksum(99),
                size: 4000,
                copy: 1,
            }),
            ..sb
        };
        assert_eq!(
            Superblock::decode(&checkpointed.encode(2), 2),
            Some(checkpointed)
        );
        let mut too_big = checkpointed;
        too_big.checkpoint.as_mut().expect("set above").size = 8193;
        assert_eq!(Superblock::decode(&too_big.encode(2), 2), None);
        let mut torn = sb.encode(0);
        torn[600] ^= 1;
        assert_eq!(Superblock::decode(&torn, 0), None);
    }

    // Every crash point of the two-half update leaves a quorum of the old or new version, and
    // a single corrupt copy is outvoted.
    #[test]
    fn quorum_selection_survives_torn_updates() {
        let (old, new) = (Some(sample(1)), Some(sample(2)));
        let cases = [
            ([old, old, old, old], old),
            ([None, old, old, old], old),
            ([new, None, old, old], old),
            ([new, new, old, old], new),
            ([new, new, None, old], new),
            ([new, new, new, None], new),
            ([new, None, None, old], None),
        ];
        for (copies, expected) in cases {
            assert_eq!(select(&copies), expected, "{copies:?}");
        }
    }
}
