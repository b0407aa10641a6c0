//! Every parameter of a simulation run, derived from one seed (swarm testing: each seed tries a
//! different mix of cluster shape and fault rates, so rare combinations get exercised).

use chronon_engine::disk::SimFaults;
use chronon_engine::rng::Rng;
use chronon_engine::vsr::{EffectPolicy, PlantedBug};

/// Simulated time per tick.
pub const TICK_NS: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Per message, parts per million.
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,
    pub corrupt_ppm: u32,
    /// Delivery delay in ticks, uniform in `delay_min..=delay_max` (which also reorders).
    pub delay_min: u64,
    pub delay_max: u64,
    /// Per tick, the chance that a partition starts (if none is active).
    pub partition_ppm: u32,
    /// Whether partitions may be one-way.
    pub asymmetric: bool,
    pub partition_ticks_max: u64,
}

/// Side effects: how often clients ask for them and how the simulated sink behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectOptions {
    /// Per client command, parts per thousand that it is an `Emit` or a `Schedule`d `Emit`.
    pub per_mille: u32,
    /// Per attempt during the safety phase, parts per million that the sink is unavailable
    /// (nothing delivered), and that its acknowledgement is lost after delivery.
    pub fail_ppm: u32,
    pub lost_ack_ppm: u32,
    /// The host reports an attempt's result after 1..=this many ticks.
    pub latency_ticks_max: u64,
    /// The longest delay a client schedules, in ticks.
    pub timer_ticks_max: u64,
    pub policy: EffectPolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    pub replica_count: u8,
    pub shard_count: u16,
    pub clients_per_shard: usize,
    pub keys_per_shard: usize,
    /// Requests each client issues before it stops (its first is the registration).
    pub requests_per_client: usize,
    pub safety_ticks: u64,
    /// The liveness phase must converge within this many ticks.
    pub liveness_ticks_max: u64,
    pub network: NetworkOptions,
    /// Per tick per replica, the chance of a crash.
    pub crash_ppm: u32,
    pub restart_ticks_max: u64,
    /// Per tick per replica, the chance that its disk stalls.
    pub disk_stall_ppm: u32,
    pub disk_stall_ticks_max: u64,
    /// Largest clock offset between replicas, in nanoseconds.
    pub clock_skew_ns_max: u64,
    /// Largest clock drift, parts per million.
    pub clock_drift_ppm_max: u64,
    /// Chance per tick that a client crashes and a new one (with a new id) takes its place.
    pub client_crash_ppm: u32,
    /// Client sessions each shard keeps; in some seeds fewer than the clients, so sessions are
    /// evicted and evicted clients must register again.
    pub sessions_max: usize,
    /// The fault atlas: how many replicas of each shard (at most `f`) may have their disks
    /// corrupted, so that every committed op keeps a good copy on some replica.
    pub corruptible_replicas: u8,
    /// Disk corruption rates for those replicas: bit flips, misdirected writes, read errors,
    /// all within the entry zone of the journal.
    pub disk_faults: SimFaults,
    pub effects: EffectOptions,
    /// Slots in every journal ring of the run: small, so the ring wraps many times.
    pub slot_count: u32,
    /// Ops between checkpoints: small, so checkpoints, compaction and state transfer happen
    /// often. At most `(slot_count / 2 - PIPELINE_MAX) / 2` (the replica's bound).
    pub checkpoint_interval: u64,
    pub bug: Option<PlantedBug>,
}

impl Options {
    /// Raises crash, disk-stall and partition rates and uses at least three replicas: the
    /// settings under which planted bugs that need a crash in a narrow window show up quickly.
    #[must_use]
    pub fn hostile(mut self) -> Options {
        self.crash_ppm = self.crash_ppm.max(4_000);
        self.disk_stall_ppm = self.disk_stall_ppm.max(8_000);
        self.network.partition_ppm = self.network.partition_ppm.max(10_000);
        self.replica_count = self.replica_count.max(3);
        self
    }

    /// A calm three-replica, one-shard cluster with busy clients and no random faults: the
    /// base of targeted scenario tests, which inject their own faults.
    #[must_use]
    pub fn calm(seed: u64) -> Options {
        let mut options = Options::from_seed(seed);
        options.replica_count = 3;
        options.shard_count = 1;
        options.clients_per_shard = 4;
        options.keys_per_shard = 8;
        options.requests_per_client = 100;
        options.network = NetworkOptions {
            drop_ppm: 0,
            duplicate_ppm: 0,
            corrupt_ppm: 0,
            delay_min: 1,
            delay_max: 2,
            partition_ppm: 0,
            asymmetric: false,
            partition_ticks_max: 1,
        };
        options.crash_ppm = 0;
        options.disk_stall_ppm = 0;
        options.client_crash_ppm = 0;
        options.corruptible_replicas = 0;
        options.effects.per_mille = 0;
        options
    }

    /// Draws every parameter from `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Options {
        let mut rng = Rng::new(seed ^ 0x0c4a_05f0_7e57);
        let replica_count = [1u8, 3, 3, 3, 5][rng.below(5) as usize];
        // Drawn from their own generator, so the other parameters stay what they were.
        let mut log_rng = Rng::new(seed ^ 0x10c_c4ec_4901);
        let slot_count = [64u32, 128, 256][log_rng.below(3) as usize];
        let window = u64::from(slot_count / 2);
        let interval_max = ((window - chronon_engine::constants::PIPELINE_MAX as u64) / 2).min(64);
        let checkpoint_interval = 8 + log_rng.below(interval_max - 8 + 1);
        let clients_per_shard = 1 + rng.below(6) as usize;
        let lossy = rng.chance(3, 4);
        let network = NetworkOptions {
            drop_ppm: if lossy { rng.below(100_000) as u32 } else { 0 },
            duplicate_ppm: if lossy { rng.below(50_000) as u32 } else { 0 },
            corrupt_ppm: if lossy { rng.below(10_000) as u32 } else { 0 },
            delay_min: 1,
            delay_max: 1 + rng.below(12),
            partition_ppm: if rng.chance(1, 2) {
                rng.below(20_000) as u32
            } else {
                0
            },
            asymmetric: rng.chance(1, 2),
            partition_ticks_max: 50 + rng.below(400),
        };
        Options {
            seed,
            replica_count,
            shard_count: 1 + rng.below(2) as u16,
            clients_per_shard,
            keys_per_shard: 2 + rng.below(8) as usize,
            requests_per_client: 10 + rng.below(50) as usize,
            safety_ticks: 1_000 + rng.below(3_000),
            liveness_ticks_max: 6_000,
            network,
            crash_ppm: if rng.chance(2, 3) {
                rng.below(2_000) as u32
            } else {
                0
            },
            restart_ticks_max: 10 + rng.below(300),
            disk_stall_ppm: if rng.chance(1, 2) {
                rng.below(2_000) as u32
            } else {
                0
            },
            disk_stall_ticks_max: 10 + rng.below(200),
            clock_skew_ns_max: rng.below(2_000) * 1_000_000,
            clock_drift_ppm_max: rng.below(500),
            client_crash_ppm: if rng.chance(1, 3) {
                rng.below(1_000) as u32
            } else {
                0
            },
            corruptible_replicas: if rng.chance(1, 2) {
                (replica_count - 1) / 2
            } else {
                0
            },
            disk_faults: SimFaults {
                misdirect_ppm: rng.below(3_000) as u32,
                bit_flip_ppm: rng.below(5_000) as u32,
                read_error_ppm: rng.below(5_000) as u32,
            },
            sessions_max: if rng.chance(1, 4) {
                clients_per_shard.saturating_sub(1).max(2)
            } else {
                chronon_engine::constants::SESSIONS_MAX_DEFAULT
            },
            slot_count,
            checkpoint_interval,
            effects: effect_options(&mut rng),
            bug: None,
        }
    }
}

/// Drawn last, so that the other parameters of a seed stay what they were before effects.
fn effect_options(rng: &mut Rng) -> EffectOptions {
    EffectOptions {
        per_mille: if rng.chance(3, 4) {
            50 + rng.below(300) as u32
        } else {
            0
        },
        fail_ppm: rng.below(500_000) as u32,
        lost_ack_ppm: rng.below(200_000) as u32,
        latency_ticks_max: 1 + rng.below(30),
        timer_ticks_max: 1 + rng.below(200),
        policy: EffectPolicy {
            attempts_max: 2 + rng.below(6) as u32,
            backoff_base_ns: TICK_NS * (1 + rng.below(5)),
            backoff_max_ns: TICK_NS * (10 + rng.below(100)),
            breaker_threshold: 2 + rng.below(6) as u32,
            breaker_cooldown_ns: TICK_NS * (5 + rng.below(100)),
            in_flight_max: 1 + rng.below(32) as usize,
        },
    }
}
