//! Every fixed limit of the on-disk format and the journal, in one place.
//!
//! Limits that a deployment may change (slot count, slot size) are carried in
//! [`crate::log::LogConfig`] and recorded in the superblock; the values here are the
//! format's own bounds and the defaults.

/// The unit of every disk I/O: offsets and lengths are multiples of it, and buffers are
/// aligned to it, so that the same code works with `O_DIRECT`.
pub const SECTOR_SIZE: usize = 4096;

/// Size of an entry header, and of each redundant copy of it in the header zone.
pub const HEADER_SIZE: usize = 128;

/// Headers per sector of the header zone.
pub const HEADERS_PER_SECTOR: usize = SECTOR_SIZE / HEADER_SIZE;

/// Number of superblock copies. Writes go to all of them (in two halves, each made durable
/// before the next starts); reads need [`SUPERBLOCK_QUORUM`] identical copies.
pub const SUPERBLOCK_COPIES: usize = 4;

/// Identical copies needed to trust a superblock. With two halves written in turn, a crash
/// leaves at least one whole half (two copies) of either the old or the new version.
pub const SUPERBLOCK_QUORUM: usize = 2;

/// The granularity at which the simulated disk tears an interrupted write. Real disks
/// guarantee at best 512-byte atomicity, so the simulator assumes no more.
pub const TEAR_SIZE: usize = 512;

/// Smallest and largest number of slots in a journal ring.
pub const SLOT_COUNT_MIN: u32 = 4;
pub const SLOT_COUNT_MAX: u32 = 1 << 20;

/// Largest slot (and so largest entry, header included).
pub const SLOT_SIZE_MAX: u32 = 1 << 24;

/// Default ring: 1024 slots of 64 KiB gives a 64 MiB log per shard, which stays modest when
/// multiplied by one shard per core.
pub const SLOT_COUNT_DEFAULT: u32 = 1024;
pub const SLOT_SIZE_DEFAULT: u32 = 64 * 1024;

/// Largest single write the journal builds from entries of adjacent slots (and from adjacent
/// header-zone sectors): one request instead of one per entry, as a raw sequential write would.
pub const WRITE_RUN_BYTES_MAX: usize = 1 << 20;

/// Reads the recovery scan keeps in flight at once.
pub const RECOVERY_READS_MAX: usize = 64;

/// The on-disk format version written in every header and superblock. Version 3 adds the
/// checkpoint zone and the superblock's checkpoint reference; version 2 padded bodies for their
/// checksum ([`BODY_HASH_PAD`]); version 1 hashed them as they were.
pub const FORMAT_VERSION: u8 = 3;

/// Copies of the checkpoint zone. A new checkpoint is written to the copy the durable superblock
/// does not reference, so a crash while writing it leaves the previous checkpoint intact.
pub const CHECKPOINT_COPIES: usize = 2;

/// Default size of each checkpoint copy: the largest encoded checkpoint (application snapshot,
/// client sessions) a shard can hold. A checkpoint that outgrows it stops the replica with an
/// error that says to reformat with a larger `--checkpoint-size`.
pub const CHECKPOINT_SIZE_DEFAULT: u32 = 16 * 1024 * 1024;

/// Largest checkpoint copy the format allows.
pub const CHECKPOINT_SIZE_MAX: u32 = 1 << 30;

/// An entry body longer than [`BODY_HASH_UNPADDED_MAX`] is hashed followed by zeros up to a
/// multiple of this: four BLAKE3 chunks of 1 KiB, the smallest group BLAKE3 hashes in parallel
/// (see `Checksum::of_body`).
pub const BODY_HASH_PAD: usize = 4096;

/// Bodies of at most one BLAKE3 chunk are hashed unpadded: a single chunk is compressed
/// serially whatever its length, so padding it would only add work.
pub const BODY_HASH_UNPADDED_MAX: usize = 1024;

const _: () = {
    assert!(SECTOR_SIZE.is_power_of_two());
    assert!(SECTOR_SIZE.is_multiple_of(HEADER_SIZE));
    assert!(SECTOR_SIZE.is_multiple_of(TEAR_SIZE));
    // A header never straddles a tear unit, so a torn header-zone write leaves every header
    // either wholly old or wholly new.
    assert!(TEAR_SIZE.is_multiple_of(HEADER_SIZE));
    assert!(SUPERBLOCK_COPIES == 2 * SUPERBLOCK_QUORUM);
    assert!(WRITE_RUN_BYTES_MAX.is_multiple_of(SECTOR_SIZE));
    assert!((SLOT_SIZE_DEFAULT as usize).is_multiple_of(SECTOR_SIZE));
    assert!((SLOT_SIZE_MAX as usize).is_multiple_of(SECTOR_SIZE));
    assert!(SLOT_COUNT_DEFAULT >= SLOT_COUNT_MIN && SLOT_COUNT_DEFAULT <= SLOT_COUNT_MAX);
    assert!(BODY_HASH_PAD.is_multiple_of(4 * BODY_HASH_UNPADDED_MAX));
    assert!((CHECKPOINT_SIZE_DEFAULT as usize).is_multiple_of(SECTOR_SIZE));
    assert!(CHECKPOINT_SIZE_DEFAULT <= CHECKPOINT_SIZE_MAX);
};

/// Prepares the primary keeps in flight (uncommitted) at once.
pub const PIPELINE_MAX: usize = 8;

/// Client requests batched into one prepare at most.
pub const BATCH_REQUESTS_MAX: usize = 64;

/// Client requests the primary queues while the pipeline is full; beyond it, requests are
/// dropped and clients retry.
pub const REQUEST_QUEUE_MAX: usize = 1024;

/// Out-of-order prepares a backup holds while it waits for the gap before them.
pub const REORDER_MAX: usize = 64;

/// Prepares requested per repair round.
pub const REPAIR_REQUESTS_MAX: usize = 8;

/// Headers a `do_view_change` or `start_view` carries: the newest of the sender's log. A
/// replica further behind than this catches up by repair after the view change.
pub const VIEW_HEADERS_MAX: usize = 256;

/// The fewest slots a VSR replica's ring may have: its log window (half the ring) must hold
/// two checkpoint intervals of at least one op and a full pipeline.
pub const SLOT_COUNT_CHECKPOINT_MIN: u32 = 2 * (2 + PIPELINE_MAX as u32);

/// Checkpoint chunks a replica receiving a state transfer requests per retransmit period.
pub const CHECKPOINT_CHUNKS_IN_FLIGHT_MAX: usize = 8;

/// Checkpoints a replica keeps in memory to serve state transfers: the newest and the one
/// before it, so a transfer that started on the older one can finish while the next is taken.
pub const CHECKPOINTS_SERVED_MAX: usize = 2;

/// Default maximum of client sessions per shard.
pub const SESSIONS_MAX_DEFAULT: usize = 1024;

const _: () = {
    assert!(PIPELINE_MAX < VIEW_HEADERS_MAX);
    assert!(REORDER_MAX >= PIPELINE_MAX);
};
