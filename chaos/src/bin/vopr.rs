//! `vopr`: runs the deterministic simulator over one seed or many.
//!
//! ```text
//! vopr --seed N            run one seed (prints its parameters)
//! vopr --seeds K [--from S] run K seeds starting at S (default 0)
//! vopr --budget-secs T     run seeds until T seconds have passed
//! --bug NAME               plant a known bug (to see the simulator catch it)
//! --hostile                raise crash, stall and partition rates (as the planted-bug test)
//! ```

use std::process::ExitCode;
use std::time::Instant;

use chronon_chaos::{Options, RunStats, parse_bug, reproduce_command, run_seed};

struct Args {
    seed: Option<u64>,
    seeds: Option<u64>,
    from: u64,
    budget_secs: Option<u64>,
    bug: Option<chronon_engine::vsr::PlantedBug>,
    hostile: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: None,
        seeds: None,
        from: 0,
        budget_secs: None,
        bug: None,
        hostile: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seed" => args.seed = Some(number(&value()?)?),
            "--seeds" => args.seeds = Some(number(&value()?)?),
            "--from" => args.from = number(&value()?)?,
            "--budget-secs" => args.budget_secs = Some(number(&value()?)?),
            "--hostile" => args.hostile = true,
            "--bug" => {
                let name = value()?;
                args.bug = Some(parse_bug(&name).ok_or_else(|| format!("unknown bug {name:?}"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn options_for(seed: u64, args: &Args) -> Options {
    let mut options = Options::from_seed(seed);
    if args.hostile {
        options = options.hostile();
    }
    options.bug = args.bug;
    options
}

fn number(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

#[derive(Default)]
struct Summary {
    seeds: u64,
    total: RunStats,
}

impl Summary {
    fn add(&mut self, stats: &RunStats) {
        self.seeds += 1;
        let t = &mut self.total;
        t.ticks += stats.ticks;
        t.ops_committed += stats.ops_committed;
        t.requests_acknowledged += stats.requests_acknowledged;
        t.view_changes += stats.view_changes;
        t.ops_nacked += stats.ops_nacked;
        t.recovering_heads += stats.recovering_heads;
        t.skewed_clocks += stats.skewed_clocks;
        t.client_crashes += stats.client_crashes;
        t.nodes.crashes += stats.nodes.crashes;
        t.nodes.disk_stalls += stats.nodes.disk_stalls;
        t.nodes.torn_units += stats.nodes.torn_units;
        t.nodes.faulty_at_restart += stats.nodes.faulty_at_restart;
        t.disk_bit_flips += stats.disk_bit_flips;
        t.disk_misdirected_writes += stats.disk_misdirected_writes;
        t.disk_read_errors += stats.disk_read_errors;
        t.session_evictions += stats.session_evictions;
        t.effects_recorded += stats.effects_recorded;
        t.effect_attempts += stats.effect_attempts;
        t.effects_completed += stats.effects_completed;
        t.effects_dead_lettered += stats.effects_dead_lettered;
        t.timers_fired += stats.timers_fired;
        t.sink_duplicates += stats.sink_duplicates;
        t.effects_revived += stats.effects_revived;
        t.checkpoints_taken += stats.checkpoints_taken;
        t.state_transfers += stats.state_transfers;
        t.checkpoints_restored += stats.checkpoints_restored;
        t.checkpoints_lost += stats.checkpoints_lost;
        t.checkpoints_refused += stats.checkpoints_refused;
        t.ring_wraps = t.ring_wraps.max(stats.ring_wraps);
        let (n, s) = (&mut t.network, &stats.network);
        n.sent += s.sent;
        n.dropped += s.dropped;
        n.duplicated += s.duplicated;
        n.corrupted += s.corrupted;
        n.blocked_by_partition += s.blocked_by_partition;
        n.partitions += s.partitions;
    }

    // A rate for humans: f64's 52-bit mantissa is plenty.
    #[allow(clippy::cast_precision_loss)]
    fn print(&self, elapsed_secs: f64) {
        let t = &self.total;
        println!("seeds run:               {}", self.seeds);
        println!("simulated ticks:         {}", t.ticks);
        println!("ops committed:           {}", t.ops_committed);
        println!("requests acknowledged:   {}", t.requests_acknowledged);
        println!("view changes:            {}", t.view_changes);
        println!(
            "uncommitted ops dropped on a nack quorum (PAR): {}",
            t.ops_nacked
        );
        println!(
            "effects:                 {} recorded ({} timers), {} attempts, {} completed, {} \
             dead-lettered ({} revived by a retry), {} timers fired, {} duplicate deliveries \
             deduplicated by the sink",
            t.effects_recorded,
            t.effects_recorded - t.effects_completed - t.effects_dead_lettered,
            t.effect_attempts,
            t.effects_completed,
            t.effects_dead_lettered,
            t.effects_revived,
            t.timers_fired,
            t.sink_duplicates
        );
        println!("checkpoints taken:       {}", t.checkpoints_taken);
        println!(
            "restarts from a checkpoint: {} ({} with a damaged copy)",
            t.checkpoints_restored, t.checkpoints_lost
        );
        println!(
            "state transfers:         {} ({} transferred checkpoints refused)",
            t.state_transfers, t.checkpoints_refused
        );
        println!("most journal ring wraps in a seed: {}", t.ring_wraps);
        println!("faults injected:");
        println!("  messages dropped:      {}", t.network.dropped);
        println!("  messages duplicated:   {}", t.network.duplicated);
        println!("  messages corrupted:    {}", t.network.corrupted);
        println!(
            "  partitions:            {} ({} messages blocked)",
            t.network.partitions, t.network.blocked_by_partition
        );
        println!(
            "  replica crashes:       {} ({} torn/lost 512 B units)",
            t.nodes.crashes, t.nodes.torn_units
        );
        println!("  disk stalls:           {}", t.nodes.disk_stalls);
        println!("  disk bit flips:        {}", t.disk_bit_flips);
        println!("  misdirected writes:    {}", t.disk_misdirected_writes);
        println!("  disk read errors:      {}", t.disk_read_errors);
        println!(
            "  faulty entries found at restart (repaired from peers): {}",
            t.nodes.faulty_at_restart
        );
        println!(
            "  restarts recovering their head (both witnesses of an entry lost): {}",
            t.recovering_heads
        );
        println!("  skewed clocks:         {}", t.skewed_clocks);
        println!("  client crashes:        {}", t.client_crashes);
        println!("  sessions evicted:      {}", t.session_evictions);
        println!("wall time:               {elapsed_secs:.1} s");
        println!(
            "committed ops per second (wall): {:.0}",
            t.ops_committed as f64 / elapsed_secs.max(1e-9)
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!(
                "vopr: {error}\nusage: vopr --seed N | --seeds K [--from S] | --budget-secs T [--bug NAME] [--hostile]"
            );
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut summary = Summary::default();
    if let Some(seed) = args.seed {
        let options = options_for(seed, &args);
        println!("{options:#?}");
        return match run_seed(options) {
            Ok(stats) => {
                summary.add(&stats);
                summary.print(start.elapsed().as_secs_f64());
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!(
                    "seed {seed} FAILED: {failure}\nreproduce: {}",
                    reproduce_command(seed, args.bug)
                );
                ExitCode::FAILURE
            }
        };
    }
    let mut seed = args.from;
    loop {
        let done = match (args.seeds, args.budget_secs) {
            (Some(count), _) => seed >= args.from + count,
            (None, Some(secs)) => start.elapsed().as_secs() >= secs,
            (None, None) => seed >= args.from + 100,
        };
        if done {
            break;
        }
        let options = options_for(seed, &args);
        match run_seed(options) {
            Ok(stats) => summary.add(&stats),
            Err(failure) => {
                eprintln!(
                    "seed {seed} FAILED: {failure}\nreproduce: {}",
                    reproduce_command(seed, args.bug)
                );
                summary.print(start.elapsed().as_secs_f64());
                return ExitCode::FAILURE;
            }
        }
        seed += 1;
    }
    summary.print(start.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
