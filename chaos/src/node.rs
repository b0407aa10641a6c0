//! The simulated host of one replica: it owns the replica, its journal on a simulated disk and
//! its clock, and carries out the replica's actions exactly as a real host must: journal work
//! in order, at the disk's own pace, reporting durability back; sends at once.

use chronon_engine::app::kv::KvStore;
use chronon_engine::checksum::Checksum;
use chronon_engine::disk::{CrashMode, SimDisk, SimDiskStats, SimFaults};
use chronon_engine::ids::{Op, ReplicaIndex, Timestamp, View};
use chronon_engine::log::{FormatParams, Journal, Layout, LogConfig};
use chronon_engine::rng::Rng;
use chronon_engine::vsr::{Action, Input, JournalHost, Replica, ReplicaConfig, ReplicaStats};

use crate::options::TICK_NS;

/// The shape of every simulated journal but its slot count (drawn per seed, small, so that the
/// ring wraps many times in a run and checkpoints, compaction and state transfer happen often).
pub const SIM_SLOT_SIZE: u32 = 4096;

/// Each checkpoint copy of a simulated journal: the simulated key-value states are tiny.
pub const SIM_CHECKPOINT_SIZE: u32 = 64 * 1024;

/// The log configuration of a simulated journal with `slot_count` slots.
#[must_use]
pub fn sim_log(slot_count: u32) -> LogConfig {
    LogConfig {
        slot_count,
        slot_size: SIM_SLOT_SIZE,
        checkpoint_size: SIM_CHECKPOINT_SIZE,
    }
}

/// Counters of injected faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub crashes: u64,
    pub disk_stalls: u64,
    pub torn_units: u64,
    /// Faulty entries recovery found at restarts (each then repaired from a peer).
    pub faulty_at_restart: u64,
    /// Restarts whose checkpoint copy was damaged (the replica then fetched a checkpoint).
    pub checkpoint_lost_at_restart: u64,
    /// Counters of replicas that have since crashed (a restart starts a new replica).
    pub retired: ReplicaStats,
}

#[derive(Debug)]
pub struct Node {
    pub index: u8,
    config: ReplicaConfig,
    pub replica: Option<Replica<KvStore>>,
    journal: Option<JournalHost<SimDisk>>,
    /// The disk of a crashed node, kept for its restart.
    parked_disk: Option<SimDisk>,
    pub restart_at: u64,
    pub disk_stalled_until: u64,
    clock_offset_ns: i64,
    clock_drift_ppm: i64,
    pub stats: NodeStats,
    corruptible: bool,
}

impl Node {
    /// A node with a freshly formatted journal.
    #[must_use]
    pub fn new(
        config: ReplicaConfig,
        seed: u64,
        clock_offset_ns: i64,
        clock_drift_ppm: i64,
        disk_faults: Option<SimFaults>,
        log: LogConfig,
    ) -> Node {
        let layout = Layout::new(log);
        let mut disk = SimDisk::new(layout.total_size(), seed);
        let params = FormatParams {
            cluster: config.cluster,
            shard: config.shard,
            replica: config.replica,
            replica_count: config.replica_count,
            config: log,
        };
        Journal::format(&mut disk, &params).expect("formatting a simulated disk cannot fail");
        if let Some(faults) = disk_faults {
            // The header zone, the slot zone and the checkpoint zone; the superblock copies stay
            // intact (they have their own quorum, tested on its own). A misdirected checkpoint
            // write may land on the other copy, the durable one: the replica then fetches a
            // checkpoint from a peer, which the atlas keeps intact.
            disk.set_zones(vec![
                layout.header_zone_offset()..layout.slot_zone_offset(),
                layout.slot_zone_offset()..layout.checkpoint_zone_offset(),
                layout.checkpoint_zone_offset()..layout.total_size(),
            ]);
            disk.set_faults(faults);
        }
        let (journal, _) = Journal::open(disk).expect("a fresh journal opens");
        Node {
            index: config.replica.0,
            config,
            replica: Some(Replica::new(config, KvStore)),
            journal: Some(JournalHost::new(journal)),
            parked_disk: None,
            restart_at: 0,
            disk_stalled_until: 0,
            clock_offset_ns,
            clock_drift_ppm,
            stats: NodeStats::default(),
            corruptible: disk_faults.is_some(),
        }
    }

    #[must_use]
    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// This node's clock at `tick`: true time, skewed and drifting.
    #[must_use]
    pub fn clock(&self, tick: u64) -> Timestamp {
        let true_ns = i128::from(tick) * i128::from(TICK_NS);
        let drift = true_ns * i128::from(self.clock_drift_ppm) / 1_000_000;
        let ns = true_ns + drift + i128::from(self.clock_offset_ns);
        Timestamp(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
    }

    /// Runs one input through the replica and returns its actions; journal work is queued.
    pub fn step(&mut self, input: Input, actions: &mut Vec<Action>) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let start = actions.len();
        replica.step(input, actions);
        replica.check_invariants();
        self.enqueue(&actions[start..]);
    }

    fn enqueue(&mut self, actions: &[Action]) {
        if let Some(host) = self.journal.as_mut() {
            host.enqueue(actions);
        }
    }

    /// Lets the disk make progress (unless stalled) and reports new durability to the replica.
    pub fn run_disk(&mut self, tick: u64, actions: &mut Vec<Action>) {
        if self.replica.is_none() || tick < self.disk_stalled_until {
            return;
        }
        let host = self
            .journal
            .as_mut()
            .expect("invariant: an up node has a journal");
        let mut inputs = Vec::new();
        if let Err(error) = host.run(&mut inputs) {
            panic!("replica {}: journal failed: {error}", self.index);
        }
        for input in inputs {
            self.step(input, actions);
        }
    }

    /// Power loss: the process dies, un-barriered writes persist, vanish or tear.
    pub fn crash(&mut self, now: u64, restart_at: u64) {
        self.stop(now, restart_at, CrashMode::Random);
    }

    /// Stops the process: a crash (`CrashMode::Random`) or a clean stop after the disk drained
    /// (`CrashMode::PersistAll`), as before the final scrub.
    pub fn stop(&mut self, now: u64, restart_at: u64, mode: CrashMode) {
        let Some(host) = self.journal.take() else {
            return;
        };
        let journal = host.into_journal();
        if let Some(replica) = self.replica.take() {
            let (retired, stats) = (&mut self.stats.retired, replica.stats());
            retired.view_changes += stats.view_changes;
            retired.ops_nacked += stats.ops_nacked;
            retired.recovering_head += stats.recovering_head;
            retired.effect_attempts += stats.effect_attempts;
            add_checkpoint_stats(retired, &stats);
        }
        let mut disk = journal.into_disk();
        let before = disk.stats().units_lost_at_crash;
        disk.crash(mode);
        self.stats.torn_units += disk.stats().units_lost_at_crash - before;
        self.stats.crashes += 1;
        self.parked_disk = Some(disk);
        self.restart_at = restart_at.max(now + 1);
    }

    /// Restarts a crashed node from its disk: journal recovery, then replica recovery.
    pub fn restart(&mut self, actions: &mut Vec<Action>) {
        let disk = self
            .parked_disk
            .take()
            .expect("invariant: a crashed node parks its disk");
        let (mut journal, report) = Journal::open(disk).expect("recovery of a simulated journal");
        // The fault atlas corrupts at most f replicas' disks, so every op keeps a good copy
        // somewhere; this replica may have lost both witnesses of an entry, in which case it
        // recovers its head from the others.
        self.stats.faulty_at_restart += report.analysis.faulty.len() as u64;
        let recovered = chronon_engine::vsr::host::recovered(&mut journal, &report)
            .unwrap_or_else(|error| panic!("replica {}: reading the journal: {error}", self.index));
        if recovered.superblock.checkpoint.is_some() && recovered.checkpoint.is_none() {
            self.stats.checkpoint_lost_at_restart += 1;
        }
        let start = actions.len();
        let replica = Replica::recover(self.config, KvStore, recovered, actions)
            .unwrap_or_else(|error| panic!("replica {}: {error}", self.index));
        self.journal = Some(JournalHost::new(journal));
        self.replica = Some(replica);
        // Recovery may already have asked for journal work (a view change persists its view).
        self.enqueue(&actions[start..]);
    }

    /// The view state (view, log view) the superblock holds durably, while the node is up.
    #[must_use]
    pub fn durable_view(&self) -> Option<(View, View)> {
        let superblock = self.journal.as_ref()?.journal().superblock();
        Some((superblock.view, superblock.log_view))
    }

    /// The disk of a stopped node, for targeted scenarios that damage it before the restart.
    pub fn parked_disk_mut(&mut self) -> Option<&mut SimDisk> {
        self.parked_disk.as_mut()
    }

    /// Stops injecting disk faults (the liveness phase).
    pub fn heal_disk(&mut self) {
        self.disk_stalled_until = 0;
        if let Some(journal) = self.journal.as_mut() {
            journal
                .journal_mut()
                .disk_mut()
                .set_faults(SimFaults::default());
        }
        if let Some(disk) = self.parked_disk.as_mut() {
            disk.set_faults(SimFaults::default());
        }
    }

    /// True if the fault atlas let this node's disk be corrupted.
    #[must_use]
    pub fn disk_corruptible(&self) -> bool {
        self.corruptible
    }

    /// What this node's disk injected (for summaries).
    #[must_use]
    pub fn disk_stats(&self) -> Option<SimDiskStats> {
        let journal_disk = self.journal.as_ref().map(|j| j.journal().disk().stats());
        journal_disk.or_else(|| self.parked_disk.as_ref().map(SimDisk::stats))
    }

    /// The on-disk chain check of this node's journal (hash chain checker).
    #[must_use]
    pub fn journal_report(&mut self) -> Option<chronon_engine::log::RecoveryReport> {
        self.journal.as_mut()?.journal_mut().verify().ok()
    }

    #[must_use]
    pub fn replica_index(&self) -> ReplicaIndex {
        self.config.replica
    }

    /// Pending journal operations (for liveness diagnostics).
    #[must_use]
    pub fn journal_backlog(&self) -> usize {
        self.journal.as_ref().map_or(0, JournalHost::backlog)
    }

    /// Randomly stalls the disk for a while.
    pub fn maybe_stall(&mut self, rng: &mut Rng, now: u64, ppm: u32, ticks_max: u64) {
        if self.is_up() && now >= self.disk_stalled_until && rng.chance(u64::from(ppm), 1_000_000) {
            self.disk_stalled_until = now + 1 + rng.below(ticks_max);
            self.stats.disk_stalls += 1;
        }
    }

    /// Replica counters over every incarnation of this node's replica.
    #[must_use]
    pub fn replica_stats(&self) -> ReplicaStats {
        let mut total = self.stats.retired;
        if let Some(stats) = self.replica.as_ref().map(Replica::stats) {
            total.view_changes += stats.view_changes;
            total.ops_nacked += stats.ops_nacked;
            total.recovering_head += stats.recovering_head;
            total.effect_attempts += stats.effect_attempts;
            add_checkpoint_stats(&mut total, &stats);
        }
        total
    }

    #[must_use]
    pub fn checksum_at(&self, op: Op) -> Option<Checksum> {
        self.replica.as_ref()?.header(op).map(|h| h.checksum)
    }
}

fn add_checkpoint_stats(total: &mut ReplicaStats, stats: &ReplicaStats) {
    total.checkpoints_taken += stats.checkpoints_taken;
    total.state_transfers += stats.state_transfers;
    total.checkpoints_restored += stats.checkpoints_restored;
    total.checkpoints_refused += stats.checkpoints_refused;
}
