//! Known-bug validation: each bug planted behind the test-only `PlantedBug` switch is caught
//! by the simulator within a bounded number of seeds. These are the mistakes the design names
//! (DESIGN.md §5): picking the longest log in a view change, acknowledging a prepare before it
//! is durable, stamping with a backup's clock, a new primary ignoring the logs it was sent, and
//! a checkpoint restore that loses the application state; and two of the outbox (DESIGN.md
//! §6): a deposed primary still executing effects, and a new primary forgetting the pending
//! effects it inherited.
//! If a checker or fault stops working, the bug it guards against slips through and this test
//! fails.

use chronon_chaos::{Options, bug_name, reproduce_command, run_seed};
use chronon_engine::vsr::PlantedBug;

/// Seeds each bug may take to be caught. `LongestLog` needs the most (seed 280 since
/// checkpoints: a longest log from an old view now often fails to connect to the new primary's
/// short log, so that view change times out instead of adopting it).
const SEEDS_MAX: u64 = 400;

/// Fault rates for this test: every seed crashes replicas and stalls disks often enough that a
/// bug needing a crash in a narrow window shows up within the bound.
fn hostile(seed: u64, bug: PlantedBug) -> Options {
    let mut options = Options::from_seed(seed).hostile();
    options.bug = Some(bug);
    options
}

fn first_catch(bug: PlantedBug) -> Option<(u64, String)> {
    (0..SEEDS_MAX).find_map(|seed| {
        run_seed(hostile(seed, bug))
            .err()
            .map(|failure| (seed, failure))
    })
}

fn assert_caught(bug: PlantedBug) {
    match first_catch(bug) {
        Some((seed, failure)) => {
            println!("{} caught at seed {seed}: {failure}", bug_name(bug));
            println!(
                "reproduce: {} --hostile",
                reproduce_command(seed, Some(bug))
            );
        }
        None => panic!("{} was not caught in {SEEDS_MAX} seeds", bug_name(bug)),
    }
}

#[test]
fn longest_log_view_change_is_caught() {
    assert_caught(PlantedBug::LongestLog);
}

#[test]
fn prepare_ok_before_durable_is_caught() {
    assert_caught(PlantedBug::PrepareOkBeforeDurable);
}

#[test]
fn backup_clock_timestamps_are_caught() {
    assert_caught(PlantedBug::BackupClockTimestamps);
}

#[test]
fn new_primary_ignoring_view_change_logs_is_caught() {
    assert_caught(PlantedBug::IgnoreViewChangeLogs);
}

#[test]
fn effects_from_a_deposed_primary_are_caught() {
    assert_caught(PlantedBug::UnfencedEffects);
}

#[test]
fn a_new_primary_forgetting_inherited_effects_is_caught() {
    assert_caught(PlantedBug::ForgetInheritedEffects);
}

// A replica restored from a checkpoint (at a restart or by state transfer) must reach the state
// of one that executed the log: restoring the genesis state instead is caught by the state-hash
// or checkpoint checkers.
#[test]
fn restore_keeping_the_genesis_state_is_caught() {
    assert_caught(PlantedBug::RestoreGenesis);
}

// The same hostile settings without a planted bug pass: the catches above are the bugs, not
// the fault rates.
#[test]
fn hostile_settings_pass_without_a_bug() {
    for seed in 0..20 {
        let mut options = hostile(seed, PlantedBug::LongestLog);
        options.bug = None;
        if let Err(failure) = run_seed(options) {
            panic!("seed {seed} failed without a bug: {failure}");
        }
    }
}
