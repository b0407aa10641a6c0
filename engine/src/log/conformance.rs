//! The journal's part of the disk conformance suite: a log written on a disk reads back whole
//! after the disk is reopened.

use crate::disk::conformance::DiskHarness;
use crate::ids::{
    ClientId, ClusterId, CommitIndex, Op, ReplicaIndex, RequestNumber, ShardId, Timestamp, View,
};
use crate::log::{EntryMeta, FormatParams, Journal, LogConfig, Operation};

/// Parameters of the small log the suite writes.
#[must_use]
pub fn test_params() -> FormatParams {
    FormatParams {
        cluster: ClusterId(0xc1),
        shard: ShardId(3),
        replica: ReplicaIndex(1),
        replica_count: 3,
        config: LogConfig {
            slot_count: 32,
            slot_size: 16 * 1024,
            checkpoint_size: 64 * 1024,
        },
    }
}

/// A deterministic body for op `op`, of a size that varies with it (0 to ~13 KiB).
#[must_use]
pub fn test_body(op: u64) -> Vec<u8> {
    let len = ((op * 2_654_435_761) % 13_000) as usize;
    (0..len).map(|i| (i as u64 ^ op) as u8).collect()
}

#[must_use]
pub fn test_meta(op: u64) -> EntryMeta {
    EntryMeta {
        view: View(1),
        timestamp: Timestamp(op * 1000),
        operation: Operation::DATA,
        client: ClientId(op % 5),
        request: RequestNumber(op),
    }
}

/// Formats, appends across a ring wrap, updates the superblock, reopens, and reads back.
pub fn journal_roundtrip<H: DiskHarness>(harness: &mut H) {
    let params = test_params();
    let size = crate::log::Layout::new(params.config).total_size();
    let mut disk = harness.create(size);
    Journal::format(&mut disk, &params).expect("format");
    let (mut journal, report) = Journal::open(disk).expect("open a fresh log");
    assert!(report.is_clean(), "fresh log not clean: {report:?}");
    assert_eq!(journal.head().op, Op(0));
    let ops = 40u64; // more than the ring, so it wraps
    for op in 1..=ops {
        journal
            .append(&test_meta(op), &test_body(op))
            .expect("append");
        if op % 7 == 0 {
            journal.sync().expect("sync");
        }
    }
    journal
        .write_superblock(View(2), View(1), CommitIndex(Some(Op(30))), false)
        .expect("superblock");
    journal.sync().expect("sync");
    assert_eq!(journal.durable_op(), Op(ops));
    let disk = harness.reopen(journal.into_disk());
    let (mut journal, report) = Journal::open(disk).expect("reopen");
    assert!(
        report.is_clean(),
        "reopened log not clean: {:?}",
        report.analysis
    );
    assert_eq!(report.analysis.head, Some(Op(ops)));
    assert_eq!(journal.superblock().view, View(2));
    assert_eq!(journal.superblock().commit, CommitIndex(Some(Op(30))));
    let op_min = journal.op_min();
    assert_eq!(op_min, Op(ops - 31));
    let mut parent = None;
    for op in op_min.0..=ops {
        let entry = journal.read(Op(op)).expect("read back");
        assert_eq!(entry.body, test_body(op), "body of op {op}");
        assert_eq!(entry.header.request, RequestNumber(op));
        if let Some(parent) = parent {
            assert_eq!(entry.header.parent, parent, "chain at op {op}");
        }
        parent = Some(entry.header.checksum);
    }
    journal.truncate_after(Op(ops - 3)).expect("truncate");
    journal
        .append(&test_meta(99), b"after truncation")
        .expect("append after truncation");
    journal.sync().expect("sync");
    let disk = harness.reopen(journal.into_disk());
    let (mut journal, report) = Journal::open(disk).expect("reopen after truncation");
    assert!(report.is_clean(), "{:?}", report.analysis);
    assert_eq!(journal.head().op, Op(ops - 2));
    assert_eq!(
        journal.read(Op(ops - 2)).expect("read").body,
        b"after truncation"
    );
}
