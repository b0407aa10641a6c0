//! The control plane is decoupled from the data plane (DESIGN.md §3): heartbeats and view
//! changes never wait on the disk, so a slow disk alone never triggers an election, while a
//! primary cut off from the network is replaced within the timeouts.

use chronon_chaos::simulation::committed;
use chronon_chaos::{Options, Simulation};
use chronon_engine::vsr::{Status, Timeouts};

fn calm(seed: u64) -> Options {
    let mut options = Options::calm(seed);
    // These scenarios keep whatever disk corruption the seed draws.
    options.corruptible_replicas = Options::from_seed(seed).corruptible_replicas;
    options
}

fn run(sim: &mut Simulation, ticks: u64) {
    for _ in 0..ticks {
        sim.step().expect("no checker fails in a calm run");
    }
}

/// The replica that is primary, with its view.
fn primary(sim: &Simulation) -> (u8, chronon_engine::ids::View) {
    (0..3)
        .find_map(|r| {
            let replica = sim.node(0, r).replica.as_ref()?;
            replica.is_primary().then(|| (r, replica.view()))
        })
        .expect("a calm cluster has a primary")
}

// The primary's disk stalls for ten view-change timeouts while its network is healthy. It
// keeps its view (its heartbeats never waited on the disk) and commits keep coming, on the
// backups' durable writes: with three replicas, the two backups are a quorum.
#[test]
fn stalled_primary_disk_keeps_the_view_and_commits_continue() {
    let timeouts = Timeouts::default();
    let mut sim = Simulation::new(calm(7));
    run(&mut sim, 100);
    let (p, view) = primary(&sim);
    let before = committed(&sim, 0);
    let stall = 10 * timeouts.view_change;
    let until = sim.tick() + stall;
    sim.node_mut(0, p).disk_stalled_until = until;
    run(&mut sim, stall - 1);
    let (still, view_after) = primary(&sim);
    assert_eq!(
        (still, view_after),
        (p, view),
        "the stalled primary lost its view"
    );
    let after = committed(&sim, 0);
    assert!(
        after.0 >= before.0 + 20,
        "commits stalled with the disk: {before} -> {after}"
    );
    assert!(
        sim.node(0, p).journal_backlog() > 0,
        "the primary's disk was not really stalled"
    );
}

// The primary is cut off from the other replicas. Within the normal timeout plus one
// view-change timeout (and message delays), the other two elect a new primary in a later view.
#[test]
fn isolated_primary_loses_its_view_within_the_timeout() {
    let timeouts = Timeouts::default();
    let mut sim = Simulation::new(calm(11));
    run(&mut sim, 100);
    let (p, view) = primary(&sim);
    sim.network_mut().isolate(p, 3);
    let deadline = timeouts.normal + timeouts.view_change + 10;
    let mut replaced_after = None;
    for tick in 1..=deadline {
        run(&mut sim, 1);
        let others: Vec<_> = (0..3)
            .filter(|&r| r != p)
            .filter_map(|r| sim.node(0, r).replica.as_ref())
            .collect();
        let new_primary = others.iter().any(|r| r.is_primary() && r.view() > view);
        let all_moved = others
            .iter()
            .all(|r| r.view() > view && r.status() == Status::Normal);
        if new_primary && all_moved {
            replaced_after = Some(tick);
            break;
        }
    }
    let states: Vec<String> = (0..3)
        .filter_map(|r| sim.node(0, r).replica.as_ref())
        .map(|r| {
            format!(
                "{:?} v{} lv{} op{} c{}",
                r.status(),
                r.view(),
                r.log_view(),
                r.op(),
                r.commit_max()
            )
        })
        .collect();
    let ticks =
        replaced_after.unwrap_or_else(|| panic!("no new primary within the timeout: {states:?}"));
    println!(
        "new primary after {ticks} ticks (normal timeout {})",
        timeouts.normal
    );
    assert!(
        ticks >= timeouts.normal,
        "view changed before the timeout: {ticks} ticks"
    );
}
