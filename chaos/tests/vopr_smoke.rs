//! The simulator smoke that CI runs: 200 seeds with every fault kind drawn across them, each
//! through the safety, liveness and scrub phases and every checker. A failure names the seed and
//! the command that reproduces it.

use chronon_chaos::{Options, reproduce_command, run_seed};

const SEEDS: u64 = 200;

#[test]
fn vopr_smoke_200_seeds() {
    let mut ops = 0;
    for seed in 0..SEEDS {
        match run_seed(Options::from_seed(seed)) {
            Ok(stats) => ops += stats.ops_committed,
            Err(failure) => {
                panic!(
                    "seed {seed} failed: {failure}\nreproduce: {}",
                    reproduce_command(seed, None)
                )
            }
        }
    }
    println!("{SEEDS} seeds passed, {ops} ops committed");
    assert!(
        ops > SEEDS * 20,
        "the smoke committed almost nothing: {ops} ops"
    );
}
