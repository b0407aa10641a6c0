//! The deterministic simulator (`vopr`). It depends only on `chronon-engine`: the replicas it
//! runs are the production replica code, on simulated disks, network and clocks.

pub mod checkers;
pub mod client;
pub mod history;
pub mod linearizability;
pub mod network;
pub mod node;
pub mod options;
pub mod simulation;

use std::panic::AssertUnwindSafe;

pub use options::Options;
pub use simulation::{RunStats, Simulation};

/// Runs one seed, turning a panic (a replica's invariant failing) into a failure.
pub fn run_seed(options: Options) -> Result<RunStats, String> {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| Simulation::new(options).run()));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(format!("panicked: {message}"))
        }
    }
}

/// The command that reproduces a seed.
#[must_use]
pub fn reproduce_command(seed: u64, bug: Option<chronon_engine::vsr::PlantedBug>) -> String {
    let bug = bug
        .map(|b| format!(" --bug {}", bug_name(b)))
        .unwrap_or_default();
    format!("cargo run --release -p chronon-chaos --bin vopr -- --seed {seed}{bug}")
}

#[must_use]
pub fn bug_name(bug: chronon_engine::vsr::PlantedBug) -> &'static str {
    use chronon_engine::vsr::PlantedBug;
    match bug {
        PlantedBug::LongestLog => "longest-log",
        PlantedBug::PrepareOkBeforeDurable => "prepare-ok-before-durable",
        PlantedBug::BackupClockTimestamps => "backup-clock-timestamps",
        PlantedBug::IgnoreViewChangeLogs => "ignore-view-change-logs",
        PlantedBug::UnfencedEffects => "unfenced-effects",
        PlantedBug::ForgetInheritedEffects => "forget-inherited-effects",
        PlantedBug::RestoreGenesis => "restore-genesis",
    }
}

#[must_use]
pub fn parse_bug(name: &str) -> Option<chronon_engine::vsr::PlantedBug> {
    use chronon_engine::vsr::PlantedBug;
    [
        PlantedBug::LongestLog,
        PlantedBug::PrepareOkBeforeDurable,
        PlantedBug::BackupClockTimestamps,
        PlantedBug::IgnoreViewChangeLogs,
        PlantedBug::UnfencedEffects,
        PlantedBug::ForgetInheritedEffects,
        PlantedBug::RestoreGenesis,
    ]
    .into_iter()
    .find(|bug| bug_name(*bug) == name)
}
