//! The checkpoint zone: a checkpoint survives a crash at any point of the write of the next one
//! (the superblock names the old or the new one, and the named copy reads back intact); a
//! damaged copy reads as missing rather than as wrong bytes; and a ring wrapped many times behind
//! a checkpoint recovers starting from it, with a clean chain.

use chronon_engine::checksum::Checksum;
use chronon_engine::disk::{CrashMode, SimDisk};
use chronon_engine::log::conformance::{test_body, test_meta};
use chronon_engine::log::{FormatParams, Journal, Layout, LogConfig};
use chronon_engine::{ClusterId, Op, ReplicaIndex, ShardId};

const SLOTS: u32 = 16;

fn params() -> FormatParams {
    FormatParams {
        cluster: ClusterId(42),
        shard: ShardId(0),
        replica: ReplicaIndex(0),
        replica_count: 3,
        config: LogConfig {
            slot_count: SLOTS,
            slot_size: 16 * 1024,
            checkpoint_size: 16 * 1024,
        },
    }
}

fn layout() -> Layout {
    Layout::new(params().config)
}

/// Stand-in checkpoint bytes for `op`: longer than a sector, different per op.
fn checkpoint_bytes(op: u64) -> Vec<u8> {
    (0..5000u64).map(|i| (i * 7 + op) as u8).collect()
}

fn fresh(seed: u64) -> Journal<SimDisk> {
    let mut disk = SimDisk::new(layout().total_size(), seed);
    Journal::format(&mut disk, &params()).expect("format");
    Journal::open(disk).expect("open").0
}

fn append_through(journal: &mut Journal<SimDisk>, last: u64) {
    for op in journal.head().op.0 + 1..=last {
        journal
            .append(&test_meta(op), &test_body(op))
            .expect("append");
        journal.sync().expect("sync");
    }
}

fn checkpoint(journal: &mut Journal<SimDisk>, op: u64) {
    let header = journal.header(Op(op)).expect("the log holds the op");
    let bytes = checkpoint_bytes(op);
    journal
        .write_checkpoint(&header, Checksum::of(&bytes), &bytes)
        .expect("write checkpoint");
}

// A crash after any number of I/O completions during the write of checkpoint 12 leaves the
// superblock naming checkpoint 6 or 12, and the named copy reads back whole: the new copy goes
// to the other half of the zone, and no superblock names it before a barrier covered it.
#[test]
fn a_checkpoint_survives_a_crash_during_the_next_one() {
    for seed in 0..40 {
        for polls in 0..8 {
            let mut journal = fresh(seed);
            append_through(&mut journal, 12);
            checkpoint(&mut journal, 6);
            journal.sync().expect("sync");
            assert_eq!(journal.anchor().map(|h| h.op), Some(Op(6)));
            checkpoint(&mut journal, 12);
            for _ in 0..polls {
                journal.poll().expect("poll");
            }
            let mut disk = journal.into_disk();
            disk.crash(CrashMode::Random);
            let (mut journal, report) = Journal::open(disk).expect("reopen");
            let named = report.superblock.checkpoint.expect("a checkpoint is named");
            let op = named.header.op.0;
            assert!(op == 6 || op == 12, "seed {seed} polls {polls}: op {op}");
            let bytes = journal.read_checkpoint().expect("read");
            assert_eq!(
                bytes,
                Some(checkpoint_bytes(op)),
                "seed {seed} polls {polls}"
            );
        }
    }
}

// A bit flip in the named copy makes it read as missing (the replica then fetches one from a
// peer); the superblock still names it.
#[test]
fn a_damaged_checkpoint_copy_reads_as_missing() {
    let mut journal = fresh(1);
    append_through(&mut journal, 4);
    checkpoint(&mut journal, 3);
    journal.sync().expect("sync");
    let copy = journal.superblock().checkpoint.expect("named").copy;
    let mut disk = journal.into_disk();
    disk.flip_bit(layout().checkpoint_offset(usize::from(copy)) + 4000, 2);
    let (mut journal, report) = Journal::open(disk).expect("reopen");
    assert!(report.superblock.checkpoint.is_some());
    assert_eq!(journal.read_checkpoint().expect("read"), None);
}

// Checkpoints every few ops let the ring of 16 slots wrap many times: recovery starts the log at
// the newest checkpoint's op, finds every op after it intact and chained from it, and ignores
// what the slots before it hold.
#[test]
fn a_ring_wrapped_behind_checkpoints_recovers_from_the_newest() {
    let mut journal = fresh(3);
    let window = params().config.ops_beyond_checkpoint_max();
    let mut anchor = 0;
    for round in 1..=12u64 {
        let last = anchor + window;
        append_through(&mut journal, last);
        anchor = last - 2;
        checkpoint(&mut journal, anchor);
        journal.sync().expect("sync");
        assert!(round * window > u64::from(SLOTS) || round < 3);
    }
    let head = journal.head().op;
    assert!(
        head.0 > 4 * u64::from(SLOTS),
        "the ring wrapped several times"
    );
    let mut disk = journal.into_disk();
    disk.crash(CrashMode::PersistAll);
    let (mut journal, report) = Journal::open(disk).expect("reopen");
    assert!(report.is_clean(), "{:?}", report.analysis.faulty);
    assert_eq!(report.analysis.head, Some(head));
    assert_eq!(journal.op_min(), Op(anchor + 1));
    assert_eq!(journal.anchor().map(|h| h.op), Some(Op(anchor)));
    for op in anchor + 1..=head.0 {
        let entry = journal
            .read(Op(op))
            .expect("ops after the checkpoint read back");
        assert_eq!(entry.body, test_body(op));
    }
    assert_eq!(
        journal.read_checkpoint().expect("read"),
        Some(checkpoint_bytes(anchor))
    );
}
