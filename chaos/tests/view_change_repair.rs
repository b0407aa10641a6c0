//! Targeted scenarios for the two repairs a view change relies on when disks lose data:
//! PAR's nack quorum, which drops an uncommitted entry that no replica still holds, and a
//! replica recovering its head after recovery lost both witnesses of an entry it acknowledged.

use chronon_chaos::node::sim_log;
use chronon_chaos::simulation::committed;
use chronon_chaos::{Options, Simulation};
use chronon_engine::constants::HEADER_SIZE;
use chronon_engine::disk::CrashMode;
use chronon_engine::ids::{Op, View};
use chronon_engine::log::Layout;
use chronon_engine::vsr::Status;

fn calm(seed: u64) -> Options {
    let mut options = Options::calm(seed);
    options.requests_per_client = 200;
    options
}

fn run(sim: &mut Simulation, ticks: u64) {
    for _ in 0..ticks {
        sim.step().expect("every checker holds");
    }
}

fn primary(sim: &Simulation) -> Option<(u8, View)> {
    (0..3).find_map(|r| {
        let replica = sim.node(0, r).replica.as_ref()?;
        replica.is_primary().then(|| (r, replica.view()))
    })
}

fn states(sim: &Simulation) -> Vec<String> {
    (0..3)
        .map(|r| match sim.node(0, r).replica.as_ref() {
            Some(r) => format!(
                "{:?} v{} lv{} op{} c{}",
                r.status(),
                r.view(),
                r.log_view(),
                r.op(),
                r.commit_max()
            ),
            None => "down".to_owned(),
        })
        .collect()
}

/// Flips a bit of op `op`'s body in a stopped replica's journal: its header copy still vouches
/// for it, so recovery reports it faulty with a known header.
fn damage_body(sim: &mut Simulation, replica: u8, op: Op) {
    let layout = Layout::new(sim_log(sim.options().slot_count));
    let offset = layout.slot_offset(layout.slot_of(op)) + HEADER_SIZE as u64 + 7;
    let disk = sim.node_mut(0, replica).parked_disk_mut().expect("stopped");
    disk.flip_bit(offset, 3);
}

/// Flips a bit of op `op`'s entry header and of its redundant header copy: recovery can no
/// longer tell which op the slot held.
fn damage_both_witnesses(sim: &mut Simulation, replica: u8, op: Op) {
    let layout = Layout::new(sim_log(sim.options().slot_count));
    let slot = layout.slot_of(op);
    let entry = layout.slot_offset(slot) + 40;
    let copy = layout.header_zone_offset() + (slot * HEADER_SIZE) as u64 + 40;
    let disk = sim.node_mut(0, replica).parked_disk_mut().expect("stopped");
    disk.flip_bit(entry, 1);
    disk.flip_bit(copy, 1);
}

// The primary prepares ops that never leave it (it is cut off), writes them durably, and stops.
// The first of them rots on its disk. It restarts and starts a view change in which its log,
// the longest of the newest log view, is chosen. No replica holds that op intact, and both
// others say they never had it: a nack quorum, so it cannot have been committed, and the new
// primary drops it and everything after it. Without the nack rule the view change would wait
// forever for an entry that exists nowhere.
#[test]
fn unrecoverable_uncommitted_suffix_is_dropped_on_a_nack_quorum() {
    let mut sim = Simulation::new(calm(21));
    run(&mut sim, 100);
    let (p, view) = primary(&sim).expect("a calm cluster has a primary");
    sim.network_mut().isolate(p, 3);
    run(&mut sim, 12);
    let others_op = (0..3)
        .filter(|&r| r != p)
        .filter_map(|r| {
            sim.node(0, r)
                .replica
                .as_ref()
                .map(chronon_engine::vsr::Replica::op)
        })
        .max()
        .expect("two backups");
    let p_op = sim.node(0, p).replica.as_ref().expect("up").op();
    assert!(
        p_op > others_op,
        "the isolated primary prepared nothing new: {:?}",
        states(&sim)
    );
    let lost = others_op.next();
    let tick = sim.tick();
    sim.node_mut(0, p)
        .stop(tick, tick + 2, CrashMode::PersistAll);
    damage_body(&mut sim, p, lost);
    sim.network_mut().heal();
    let before = committed(&sim, 0);
    let mut progressed = false;
    for _ in 0..1_500 {
        run(&mut sim, 1);
        let moved = primary(&sim).is_some_and(|(_, v)| v > view);
        if moved && committed(&sim, 0).0 >= before.0 + 20 {
            progressed = true;
            break;
        }
    }
    assert!(
        progressed,
        "no progress after the primary's unrecoverable op {lost}: {:?}",
        states(&sim)
    );
    let nacked: u64 = (0..3)
        .map(|r| sim.node(0, r).replica_stats().ops_nacked)
        .sum();
    assert!(
        nacked >= p_op.0 - others_op.0,
        "expected ops {lost}..={p_op} dropped on a nack quorum, counted {nacked}"
    );
    // The op committed in its place is another entry.
    let (q, _) = primary(&sim).expect("a primary");
    let replica = sim.node(0, q).replica.as_ref().expect("up");
    assert!(replica.op() >= lost);
}

// A backup stops and loses both witnesses (entry and header copy) of an op it acknowledged.
// It restarts recovering its head: it drops its log from that op, votes in no view change,
// and installs the primary's log, after which it is a full replica again.
#[test]
fn replica_that_lost_both_witnesses_recovers_its_head() {
    let mut sim = Simulation::new(calm(22));
    run(&mut sim, 150);
    let (p, _) = primary(&sim).expect("a calm cluster has a primary");
    let b = (p + 1) % 3;
    let commit = sim.node(0, b).replica.as_ref().expect("up").commit_max();
    assert!(commit.0 > 10, "too little committed: {:?}", states(&sim));
    // An op after the backup's checkpoint: ops before it are no longer part of its log.
    let backup = sim.node(0, b).replica.as_ref().expect("up");
    let victim = Op((backup.log_base().0 + 1 + backup.op().0) / 2);
    assert!(victim > backup.log_base() && victim <= commit);
    let tick = sim.tick();
    sim.node_mut(0, b)
        .stop(tick, tick + 2, CrashMode::PersistAll);
    damage_both_witnesses(&mut sim, b, victim);
    run(&mut sim, 3);
    let restarted = sim.node(0, b).replica.as_ref().expect("restarted");
    assert_eq!(
        restarted.status(),
        Status::RecoveringHead,
        "{:?}",
        states(&sim)
    );
    assert!(
        restarted.op() < victim,
        "the log was not cut at the lost op"
    );
    assert_eq!(restarted.stats().recovering_head, 1);
    let mut recovered = false;
    for _ in 0..1_000 {
        run(&mut sim, 1);
        let replica = sim.node(0, b).replica.as_ref().expect("up");
        let primary_op = sim.node(0, p).replica.as_ref().expect("up").op();
        if replica.status() == Status::Normal
            && replica.log_view() == replica.view()
            && replica.op() >= primary_op
            && primary_op > commit
        {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the backup never recovered: {:?}", states(&sim));
    let report = sim.node_mut(0, b).journal_report().expect("a journal");
    assert!(
        report.analysis.faulty.is_empty() && report.analysis.chain_break.is_none(),
        "the journal still has damage: {:?}",
        report.analysis
    );
    assert!(!report.superblock.recovering_head);
}
