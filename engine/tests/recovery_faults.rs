//! Every fault the simulated disk can inject is detected by recovery and classified as the
//! decision table (`engine/src/log/recovery.rs`) says: torn and lost unacknowledged writes are
//! truncated, while damage to anything a header copy vouches for is reported as a faulty slot
//! for repair, never dropped. Write and barrier errors poison the journal.

use chronon_engine::disk::{CrashMode, SimDisk};
use chronon_engine::log::conformance::{test_body, test_meta};
use chronon_engine::log::recovery::{Decision, TABLE};
use chronon_engine::log::{FormatParams, Journal, JournalError, Layout, LogConfig, RecoveryReport};
use chronon_engine::{ClusterId, Op, ReplicaIndex, ShardId};

const SLOTS: u32 = 16;
const ACKED: u64 = 20; // more than the ring: every slot has been written, some twice

fn params() -> FormatParams {
    FormatParams {
        cluster: ClusterId(42),
        shard: ShardId(0),
        replica: ReplicaIndex(0),
        replica_count: 3,
        config: LogConfig {
            slot_count: SLOTS,
            slot_size: 16 * 1024,
            checkpoint_size: 64 * 1024,
        },
    }
}

fn layout() -> Layout {
    Layout::new(params().config)
}

/// A journal with ops 1..=ACKED acknowledged, on a simulated disk seeded with `seed`.
fn acked_journal(seed: u64) -> Journal<SimDisk> {
    let mut disk = SimDisk::new(layout().total_size(), seed);
    Journal::format(&mut disk, &params()).expect("format");
    let (mut journal, _) = Journal::open(disk).expect("open");
    for op in 1..=ACKED {
        journal
            .append(&test_meta(op), &test_body(op))
            .expect("append");
        if op % 4 == 0 {
            journal.sync().expect("sync");
        }
    }
    journal.sync().expect("sync");
    assert_eq!(journal.durable_op(), Op(ACKED));
    journal
}

fn reopen(disk: SimDisk) -> (Journal<SimDisk>, RecoveryReport) {
    Journal::open(disk).expect("recovery opens the log")
}

fn decision(report: &RecoveryReport, op: u64) -> Decision {
    TABLE[report.analysis.rows[layout().slot_of(Op(op))]].decision
}

fn faulty_ops(report: &RecoveryReport) -> Vec<Op> {
    report.analysis.faulty.iter().filter_map(|f| f.op).collect()
}

fn entry_offset(op: u64) -> u64 {
    layout().slot_offset(layout().slot_of(Op(op)))
}

/// Every acknowledged op the journal promises to keep (the newest `slot_count - in_flight_max`)
/// reads back with its body.
fn assert_acked_intact(journal: &mut Journal<SimDisk>, except: &[u64]) {
    let kept = u64::from(SLOTS) - layout().in_flight_max();
    for op in ACKED - kept + 1..=ACKED {
        if !except.contains(&op) {
            let entry = journal.read(Op(op)).expect("acknowledged op reads back");
            assert_eq!(entry.body, test_body(op));
        }
    }
}

// Torn and lost writes: an appended entry that no barrier covered persists, tears or vanishes
// at a crash. Over many seeds all three happen; a torn one is truncated by the
// "torn write, copy never written" rows (or, if the tear kept the old entry's header, drops the
// old op the write was replacing from the start of the ring), a lost one leaves the slot's
// older contents (here a valid older op), and no acknowledged op is ever reported faulty.
#[test]
fn torn_and_lost_tail_writes_are_truncated() {
    let (mut torn, mut lost, mut kept) = (0, 0, 0);
    for seed in 0..48 {
        let mut journal = acked_journal(seed);
        let next = ACKED + 1;
        journal
            .append(&test_meta(next), &test_body(next))
            .expect("append");
        // Submit the write (and its round's barrier), but crash before either completes.
        journal.flush().expect("flush");
        let mut disk = journal.into_disk();
        // Each 512-byte unit tears independently, so a random crash almost always tears a
        // multi-unit entry; the other two modes cover a wholly lost and a wholly kept write.
        let mode =
            [CrashMode::Random, CrashMode::LoseAll, CrashMode::PersistAll][seed as usize % 3];
        disk.crash(mode);
        let (mut journal, report) = reopen(disk);
        assert!(report.is_clean(), "seed {seed}: {:?}", report.analysis);
        match decision(&report, next) {
            Decision::Truncate => torn += 1,
            Decision::FaultyCopyOp => {
                // Torn with the old entry's header sector intact: the slot's previous op (the
                // oldest in the ring, which this write was replacing) is damaged, and dropped
                // from the start of the log rather than reported for repair.
                assert_eq!(
                    report.analysis.dropped_prefix,
                    Some(Op(next - u64::from(SLOTS)))
                );
                torn += 1;
            }
            Decision::KeepEntry => kept += 1,
            Decision::Ok => lost += 1, // the slot still holds op next - SLOTS, intact
            other => panic!("seed {seed}: unexpected decision {other:?}"),
        }
        let head = journal.head().op;
        assert!(
            head == Op(ACKED) || head == Op(next),
            "seed {seed}: head {head}"
        );
        assert_acked_intact(&mut journal, &[]);
    }
    assert!(
        torn > 0 && lost > 0 && kept > 0,
        "torn {torn}, lost {lost}, kept {kept}"
    );
}

// A crash that loses every un-barriered write, including a whole round of header copies,
// loses nothing acknowledged.
#[test]
fn lost_round_loses_nothing_acknowledged() {
    let mut journal = acked_journal(1);
    for op in ACKED + 1..=ACKED + 4 {
        journal
            .append(&test_meta(op), &test_body(op))
            .expect("append");
    }
    let mut disk = journal.into_disk();
    disk.crash(CrashMode::LoseAll);
    let (mut journal, report) = reopen(disk);
    assert!(report.is_clean());
    assert_eq!(journal.head().op, Op(ACKED));
    assert_acked_intact(&mut journal, &[]);
}

// Bit flips: in an acknowledged entry's body (row "vouched entry's body corrupt") and in its
// header (row "vouched entry corrupt") the slot is faulty with its op; in a header copy the
// intact entry wins and the copy is rewritten. A flipped superblock copy is outvoted.
#[test]
fn bit_flips_are_detected_and_classified() {
    let body_op = ACKED - 2;
    let header_op = ACKED - 5;
    let copy_op = ACKED - 7;
    let mut journal = acked_journal(2);
    let disk = journal.disk_mut();
    disk.flip_bit(entry_offset(body_op) + 200, 1);
    disk.flip_bit(entry_offset(header_op) + 50, 6);
    let copy_slot = layout().slot_of(Op(copy_op));
    disk.flip_bit(
        layout().header_zone_offset() + (copy_slot * 128 + 60) as u64,
        0,
    );
    disk.flip_bit(Layout::superblock_offset(1) + 40, 2);
    let (mut journal, report) = reopen(journal.into_disk());
    assert_eq!(decision(&report, body_op), Decision::FaultyCopyOp);
    assert_eq!(decision(&report, header_op), Decision::FaultyCopyOp);
    assert_eq!(decision(&report, copy_op), Decision::KeepEntry);
    let mut faulty = faulty_ops(&report);
    faulty.sort();
    assert_eq!(faulty, vec![Op(header_op), Op(body_op)]);
    assert!(report.analysis.copy_repairs.contains(&copy_slot));
    assert!(matches!(
        journal.read(Op(body_op)),
        Err(JournalError::Faulty { .. })
    ));
    assert_acked_intact(&mut journal, &[body_op, header_op]);
    // The rewritten copy makes the next recovery find that slot whole.
    let (_, report) = reopen(journal.into_disk());
    assert_eq!(decision(&report, copy_op), Decision::Ok);
}

// A misdirected write: the entry of a new op lands on an acknowledged op's slot. Both are
// caught: the new op's header copy vouches for an entry that is not in its slot, and the
// acknowledged op's slot holds an entry that belongs elsewhere.
#[test]
fn misdirected_write_is_detected_at_both_ends() {
    let victim = ACKED - 3;
    let next = ACKED + 1;
    let mut journal = acked_journal(3);
    journal
        .disk_mut()
        .misdirect_next_write(entry_offset(victim));
    journal
        .append(&test_meta(next), &test_body(next))
        .expect("append");
    journal.sync().expect("sync");
    let (_, report) = reopen(journal.into_disk());
    assert_eq!(decision(&report, next), Decision::FaultyCopyOp);
    assert_eq!(decision(&report, victim), Decision::FaultyCopyOp);
    let mut faulty = faulty_ops(&report);
    faulty.sort();
    assert_eq!(faulty, vec![Op(victim), Op(next)]);
    assert_eq!(report.analysis.head, Some(Op(next)));
}

// A latent read error on an acknowledged entry makes its slot faulty (it cannot be verified),
// and one on a header-zone sector leaves the entries to vouch for themselves. With both
// witnesses unreadable the op is still reported, named by its position in the ring.
#[test]
fn read_errors_are_detected() {
    let victim = ACKED - 1;
    let mut journal = acked_journal(4);
    journal
        .disk_mut()
        .add_latent_read_error(entry_offset(victim));
    let (_, report) = reopen(journal.into_disk());
    assert_eq!(decision(&report, victim), Decision::FaultyCopyOp);
    assert_eq!(faulty_ops(&report), vec![Op(victim)]);

    let mut journal = acked_journal(4);
    journal
        .disk_mut()
        .add_latent_read_error(layout().header_zone_offset());
    let (_, report) = reopen(journal.into_disk());
    assert!(report.is_clean());
    // The first header sector covers every slot of this 16-slot ring.
    let kept = (ACKED - 15..=ACKED).filter(|&op| decision(&report, op) == Decision::KeepEntry);
    assert_eq!(kept.count(), 16);

    let mut journal = acked_journal(4);
    journal
        .disk_mut()
        .add_latent_read_error(entry_offset(victim));
    journal
        .disk_mut()
        .add_latent_read_error(layout().header_zone_offset());
    let (_, report) = reopen(journal.into_disk());
    assert_eq!(decision(&report, victim), Decision::FaultyUnknownOp);
    assert_eq!(faulty_ops(&report), vec![Op(victim)]);
}

// fsyncgate: a failed write or barrier poisons the journal; it refuses further work with the
// cause, and what was acknowledged before survives a restart.
#[test]
fn write_and_barrier_errors_poison_the_journal() {
    for fail_barrier in [false, true] {
        let mut journal = acked_journal(5);
        if fail_barrier {
            journal.disk_mut().fail_next_barrier();
        } else {
            journal.disk_mut().fail_next_write();
        }
        let next = ACKED + 1;
        journal
            .append(&test_meta(next), &test_body(next))
            .expect("append is only submitted");
        let error = journal.sync().expect_err("the failure surfaces");
        assert!(matches!(error, JournalError::Poisoned { .. }), "{error}");
        assert!(error.to_string().contains("nothing is retried"));
        let again = journal.append(&test_meta(next + 1), b"x");
        assert!(matches!(again, Err(JournalError::Poisoned { .. })));
        assert_eq!(journal.durable_op(), Op(ACKED));
        let mut disk = journal.into_disk();
        disk.crash(CrashMode::Random);
        let (mut journal, report) = reopen(disk);
        assert!(report.is_clean());
        assert_acked_intact(&mut journal, &[]);
    }
}

// The crash property, on the simulated disk: appends, flushes and polls interleave at random,
// a crash strikes at a random point with writes in flight (each 512-byte unit persisting or
// not), and recovery must keep every acknowledged op that the journal promises to keep, with
// an unbroken chain and no faulty slot. Repeated over several crashes per seed.
#[test]
fn random_crashes_never_lose_acknowledged_entries() {
    let kept = u64::from(SLOTS) - layout().in_flight_max();
    for seed in 0..200u64 {
        let mut rng = chronon_engine::rng::Rng::new(seed);
        let mut disk = SimDisk::new(layout().total_size(), seed);
        Journal::format(&mut disk, &params()).expect("format");
        let mut acked = std::collections::BTreeMap::new();
        for _crash in 0..4 {
            let (mut journal, report) = reopen(disk);
            assert!(report.is_clean(), "seed {seed}: {:?}", report.analysis);
            let head = journal.head().op.0;
            let newest = acked.keys().next_back().copied().unwrap_or(0);
            assert!(
                head >= newest,
                "seed {seed}: head {head} behind acknowledged {newest}"
            );
            for (&op, checksum) in acked.range(newest.saturating_sub(kept) + 1..) {
                let entry = journal.read(Op(op)).expect("acknowledged op survives");
                assert_eq!(&entry.header.checksum, checksum, "seed {seed} op {op}");
                assert_eq!(entry.body, test_body(op));
            }
            // Ops after the recovered head are gone; forget acknowledgements of older lives
            // of those op numbers (they were never acknowledged if head is behind them).
            acked.retain(|&op, _| op <= head);
            for _step in 0..rng.below(40) {
                match rng.below(4) {
                    0 | 1 => {
                        let op = journal.head().op.0 + 1;
                        match journal.append(&test_meta(op), &test_body(op)) {
                            Ok(_) | Err(JournalError::Backpressure { .. }) => {}
                            Err(other) => panic!("seed {seed}: {other}"),
                        }
                    }
                    2 => journal.flush().expect("flush"),
                    _ => journal.poll().expect("poll"),
                }
                let durable = journal.durable_op().0;
                for op in acked.keys().next_back().map_or(1, |&op| op + 1)..=durable {
                    let header = journal.read(Op(op)).expect("durable op reads").header;
                    acked.insert(op, header.checksum);
                }
            }
            disk = journal.into_disk();
            disk.crash(CrashMode::Random);
        }
    }
}

// Regression: acknowledged ops stay protected when unacknowledged entries sit past the
// acknowledgement point. The at-risk zone at the start of the ring is measured from the
// newest vouched op, not the newest op on disk; measured from the latter, one flipped byte in
// an acknowledged op once dropped several acknowledged ops silently.
#[test]
fn unacknowledged_tail_does_not_widen_the_overwritten_zone() {
    let victim = ACKED - 1;
    let mut journal = acked_journal(6);
    for op in ACKED + 1..=ACKED + layout().in_flight_max() {
        journal
            .append(&test_meta(op), &test_body(op))
            .expect("append");
    }
    journal.flush().expect("flush");
    // Let the entries land without a round writing their header copies.
    let mut disk = journal.into_disk();
    disk.crash(CrashMode::PersistAll);
    disk.flip_bit(entry_offset(victim) + 300, 4);
    let (_, report) = reopen(disk);
    assert_eq!(faulty_ops(&report), vec![Op(victim)]);
    assert_eq!(report.analysis.dropped_prefix, None);
    assert!(!report.is_clean());
}

// A file too small to hold the superblock is refused with an error, not a panic.
#[test]
fn tiny_file_is_an_error() {
    let mut disk = SimDisk::new(4096, 0);
    let error = Journal::inspect(&mut disk).expect_err("too small");
    assert!(
        matches!(error, JournalError::DiskTooSmall { .. }),
        "{error}"
    );
}

// Regression: two crashes in a row, one in the second half of a superblock update and one in
// the first half of the next, never bring back an older view. Recovery rewrites the copies
// that lag, so each update starts from four identical copies.
#[test]
fn consecutive_superblock_crashes_never_regress_the_view() {
    use chronon_engine::{CommitIndex, View};
    for seed in 0..64 {
        let mut journal = acked_journal(seed);
        journal
            .write_superblock(View(1), View(1), CommitIndex(Some(Op(ACKED))), false)
            .expect("write");
        // The log barrier and the first half complete; the second half is in flight when the
        // power fails.
        journal.poll().expect("poll");
        journal.poll().expect("poll");
        let mut disk = journal.into_disk();
        disk.crash(CrashMode::LoseAll);
        let (mut journal, _) = reopen(disk);
        assert_eq!(
            journal.superblock().view,
            View(1),
            "seed {seed}: first crash"
        );
        journal
            .write_superblock(View(2), View(2), CommitIndex(Some(Op(ACKED))), false)
            .expect("write");
        let mut disk = journal.into_disk();
        disk.crash(CrashMode::Random);
        let (journal, _) = reopen(disk);
        assert!(
            journal.superblock().view >= View(1),
            "seed {seed}: view went back"
        );
    }
}

// Regression: view state never lands on disk ahead of the log it vouches for. Entries are
// appended and a new log view is written right after; whatever a crash keeps, if the recovered
// superblock shows the new log view, the entries are there too. (Found by the simulator: a new
// primary's log view survived a crash that lost the entries it had just repaired.)
#[test]
fn view_state_never_outruns_the_log() {
    use chronon_engine::{CommitIndex, View};
    let mut kept_view = 0;
    for seed in 0..200u64 {
        let mut journal = acked_journal(seed);
        for op in ACKED + 1..=ACKED + 3 {
            journal
                .append(&test_meta(op), &test_body(op))
                .expect("append");
        }
        journal
            .write_superblock(View(1), View(1), CommitIndex(Some(Op(ACKED))), false)
            .expect("write");
        for _ in 0..seed % 4 {
            journal.poll().expect("poll");
        }
        let mut disk = journal.into_disk();
        disk.crash(CrashMode::Random);
        let (journal, _) = reopen(disk);
        if journal.superblock().log_view == View(1) {
            kept_view += 1;
            assert!(
                journal.head().op >= Op(ACKED + 3),
                "seed {seed}: log view without its log"
            );
        }
    }
    assert!(
        kept_view > 0,
        "no crash kept the new view: the test proves nothing"
    );
}
