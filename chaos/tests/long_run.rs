//! A long run stays bounded: a calm cluster with a 64-slot ring commits thousands of ops, so the
//! journal's ring wraps well over a hundred times and every replica's log is reclaimed behind its
//! checkpoints again and again. The replica's invariant check (run after every step) asserts the
//! in-memory log never holds more than the ring's window; the run must pass every checker, and
//! every replica keeps checkpointing (about one per interval each).

use chronon_chaos::{Options, Simulation};

#[test]
fn a_long_run_wraps_the_ring_many_times_and_stays_bounded() {
    let mut options = Options::calm(7);
    options.slot_count = 64;
    options.checkpoint_interval = 8;
    options.clients_per_shard = 6;
    options.requests_per_client = 1_500;
    options.safety_ticks = 100;
    options.liveness_ticks_max = 60_000;
    let stats = Simulation::new(options).run().expect("the long run passes");
    assert!(
        stats.ring_wraps >= 100,
        "the ring wrapped only {} times ({} ops)",
        stats.ring_wraps,
        stats.ops_committed
    );
    assert!(stats.checkpoints_taken > 3 * stats.ops_committed / 8 / 2);
}
