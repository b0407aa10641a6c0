//! One deterministic simulation run: shards of replicas on simulated disks, a faulty network,
//! skewed clocks and clients, driven tick by tick from one seed.
//!
//! The run has a safety phase (faults on: drops, duplicates, corruption, partitions, crashes
//! with torn writes, disk stalls) and a liveness phase (faults off, crashed replicas restarted):
//! the cluster must then converge and serve every client. Checkers watch throughout.

use chronon_engine::ids::{ClientId, ClusterId, Op, ReplicaIndex, ShardId};
use chronon_engine::rng::Rng;
use chronon_engine::vsr::{Action, Endpoint, Input, Message, ReplicaConfig, Timeouts};

use crate::checkers::checkpoint::CheckpointChecker;
use crate::checkers::effects::EffectChecker;
use crate::checkers::exactly_once::ExactlyOnceChecker;
use crate::checkers::prefix::PrefixChecker;
use crate::checkers::state_hash::StateHashChecker;
use crate::checkers::{acknowledged, chain};
use crate::client::{SimClient, Target};
use crate::history::History;
use crate::network::{Address, Network, NetworkStats};
use crate::node::{Node, NodeStats, sim_log};
use crate::options::Options;

const CLUSTER: ClusterId = ClusterId(0x5eed);

/// What a passing run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub ticks: u64,
    pub ops_committed: u64,
    pub requests_acknowledged: u64,
    pub network: NetworkStats,
    pub nodes: NodeStats,
    pub view_changes: u64,
    /// Uncommitted ops new primaries dropped on a nack quorum.
    pub ops_nacked: u64,
    /// Restarts whose log might lack acknowledged ops (the replica recovered its head from a
    /// primary).
    pub recovering_heads: u64,
    pub skewed_clocks: u64,
    pub client_crashes: u64,
    pub disk_bit_flips: u64,
    pub disk_misdirected_writes: u64,
    pub disk_read_errors: u64,
    pub session_evictions: u64,
    /// Checkpoints taken, by every replica.
    pub checkpoints_taken: u64,
    /// Checkpoints installed from a peer (state transfers completed).
    pub state_transfers: u64,
    /// Restarts that restored their state from their own checkpoint.
    pub checkpoints_restored: u64,
    /// Restarts whose checkpoint copy was damaged.
    pub checkpoints_lost: u64,
    /// Transferred checkpoints refused by verification.
    pub checkpoints_refused: u64,
    /// Ops the longest journal ring of the run wrapped past (highest op / slot count).
    pub ring_wraps: u64,
    pub effects_recorded: u64,
    pub effect_attempts: u64,
    pub effects_completed: u64,
    pub effects_dead_lettered: u64,
    pub timers_fired: u64,
    /// Deliveries the deduplicating sink dropped: attempts repeated after a lost
    /// acknowledgement, a failover or a crash.
    pub sink_duplicates: u64,
    /// Dead letters revived by a client's retry.
    pub effects_revived: u64,
}

/// An attempt's result on its way back to the replica that asked.
struct EffectResult {
    due: u64,
    shard: usize,
    replica: u8,
    /// The node's crash count when it asked: a restarted node never hears of its former
    /// incarnation's attempts.
    incarnation: u64,
    input: Input,
}

struct Shard {
    nodes: Vec<Node>,
    clients: Vec<SimClient>,
    history: History,
    prefix: PrefixChecker,
    state_hashes: StateHashChecker,
    checkpoints: CheckpointChecker,
    exactly_once: ExactlyOnceChecker,
    effects: EffectChecker,
    acknowledged: Vec<(
        ClientId,
        chronon_engine::ids::RequestNumber,
        crate::history::KvOp,
    )>,
}

#[allow(missing_debug_implementations)]
pub struct Simulation {
    options: Options,
    rng: Rng,
    tick: u64,
    network: Network,
    shards: Vec<Shard>,
    actions: Vec<Action>,
    stats: RunStats,
    next_client_id: u64,
    effect_results: Vec<EffectResult>,
}

impl Simulation {
    #[must_use]
    pub fn new(options: Options) -> Simulation {
        let mut rng = Rng::new(options.seed);
        let mut stats = RunStats::default();
        let mut next_client_id = 1;
        let shards = (0..options.shard_count)
            .map(|shard| {
                // The fault atlas: at most f replicas of this shard get disk corruption.
                let mut corruptible = vec![false; usize::from(options.replica_count)];
                for _ in 0..options.corruptible_replicas {
                    let free: Vec<usize> = (0..corruptible.len())
                        .filter(|&i| !corruptible[i])
                        .collect();
                    corruptible[free[rng.below(free.len() as u64) as usize]] = true;
                }
                let nodes = (0..options.replica_count)
                    .map(|r| {
                        let skew = rng.below(options.clock_skew_ns_max + 1).cast_signed();
                        let drift = rng.below(options.clock_drift_ppm_max + 1).cast_signed();
                        stats.skewed_clocks += u64::from(skew != 0 || drift != 0);
                        let config = replica_config(&options, shard, r);
                        Node::new(
                            config,
                            rng.next_u64(),
                            skew - options.clock_skew_ns_max.cast_signed() / 2,
                            drift,
                            corruptible[usize::from(r)].then_some(options.disk_faults),
                            sim_log(options.slot_count),
                        )
                    })
                    .collect();
                let first = next_client_id;
                next_client_id += options.clients_per_shard as u64;
                let peers = (first, next_client_id - 1);
                let clients = (first..next_client_id)
                    .map(|id| {
                        SimClient::new(
                            ClientId(id),
                            shard,
                            options.replica_count,
                            options.requests_per_client,
                            peers,
                        )
                    })
                    .collect();
                Shard {
                    nodes,
                    clients,
                    history: History::default(),
                    prefix: PrefixChecker::default(),
                    state_hashes: StateHashChecker::default(),
                    checkpoints: CheckpointChecker::default(),
                    exactly_once: ExactlyOnceChecker::default(),
                    effects: EffectChecker::default(),
                    acknowledged: Vec::new(),
                }
            })
            .collect();
        Simulation {
            network: Network::new(options.network, options.seed),
            options,
            rng,
            tick: 0,
            shards,
            actions: Vec::new(),
            stats,
            next_client_id: 1_000_000,
            effect_results: Vec::new(),
        }
    }

    /// Runs both phases and every checker.
    pub fn run(mut self) -> Result<RunStats, String> {
        while self.tick < self.options.safety_ticks {
            self.inject_faults();
            self.step()?;
        }
        self.heal();
        self.converge()?;
        self.scrub();
        self.converge()?;
        self.check_final()?;
        self.finish_stats();
        Ok(self.stats)
    }

    /// Runs until every client is served and every replica has executed the same log.
    fn converge(&mut self) -> Result<(), String> {
        let deadline = self.tick + self.options.liveness_ticks_max;
        while !self.converged() {
            if self.tick >= deadline {
                return Err(format!(
                    "liveness: no convergence {} ticks after healing: {}",
                    self.options.liveness_ticks_max,
                    self.describe()
                ));
            }
            self.step()?;
        }
        Ok(())
    }

    /// Restarts every replica whose disk the atlas let corrupt: recovery finds the damage that
    /// accumulated since its last restart, and the replica repairs it from its peers. After
    /// this, every journal must read back clean.
    fn scrub(&mut self) {
        let tick = self.tick;
        for shard in &mut self.shards {
            for node in &mut shard.nodes {
                if node.disk_corruptible() {
                    node.stop(tick, tick + 1, chronon_engine::disk::CrashMode::PersistAll);
                }
            }
        }
    }

    /// One tick of the whole world.
    pub fn step(&mut self) -> Result<(), String> {
        self.tick += 1;
        self.network.tick(self.tick, self.options.replica_count);
        for shard in 0..self.shards.len() {
            self.restart_due(shard)?;
        }
        self.deliver_effect_results()?;
        for packet in self.network.deliver(self.tick) {
            let shard = usize::from(packet.to.shard);
            match packet.to.endpoint {
                Endpoint::Replica(r) => {
                    self.shards[shard].nodes[usize::from(r.0)]
                        .step(Input::Message(packet.envelope), &mut self.actions);
                    self.dispatch(shard, r.0)?;
                }
                Endpoint::Client(id) => self.deliver_to_client(shard, id, packet.envelope.message),
            }
        }
        for shard in 0..self.shards.len() {
            for r in 0..self.shards[shard].nodes.len() {
                let node = &mut self.shards[shard].nodes[r];
                let now = node.clock(self.tick);
                node.step(Input::Tick { now }, &mut self.actions);
                self.dispatch(shard, r as u8)?;
                self.shards[shard].nodes[r].run_disk(self.tick, &mut self.actions);
                self.dispatch(shard, r as u8)?;
            }
            self.tick_clients(shard);
        }
        Ok(())
    }

    fn restart_due(&mut self, shard: usize) -> Result<(), String> {
        for r in 0..self.shards[shard].nodes.len() {
            let node = &mut self.shards[shard].nodes[r];
            if !node.is_up() && self.tick >= node.restart_at {
                node.restart(&mut self.actions);
                self.shards[shard].exactly_once.restarted(r as u8);
                self.shards[shard].effects.restarted(r as u8);
                self.dispatch(shard, r as u8)?;
            }
        }
        Ok(())
    }

    /// One line per action, with the replica's state (`VOPR_TRACE`).
    fn trace(&self, shard: usize, replica: u8, action: &Action) {
        let line = match action {
            Action::Send { to, envelope } => format!(
                "send {} v{} to {to:?}",
                envelope.message.name(),
                envelope.view
            ),
            Action::Append { header, .. } => format!(
                "append op{} v{} {}",
                header.op, header.view, header.checksum
            ),
            other => format!("{other:?}"),
        };
        let state = self.shards[shard].nodes[usize::from(replica)]
            .replica
            .as_ref()
            .map(|r| {
                format!(
                    "{:?} v{} lv{} op{} c{}/{}",
                    r.status(),
                    r.view(),
                    r.log_view(),
                    r.op(),
                    r.commit_min(),
                    r.commit_max()
                )
            })
            .unwrap_or_default();
        eprintln!("t{} s{shard} r{replica} [{state}] {line}", self.tick);
    }

    /// Routes a node's actions: sends to the network, executions to the checkers.
    fn dispatch(&mut self, shard: usize, replica: u8) -> Result<(), String> {
        let from = Address {
            shard: shard as u16,
            endpoint: Endpoint::Replica(ReplicaIndex(replica)),
        };
        let trace = std::env::var_os("VOPR_TRACE").is_some();
        for action in std::mem::take(&mut self.actions) {
            if trace {
                self.trace(shard, replica, &action);
            }
            match action {
                Action::Send { to, envelope } => {
                    self.network.send(
                        self.tick,
                        from,
                        Address {
                            shard: shard as u16,
                            endpoint: to,
                        },
                        &envelope,
                    );
                }
                Action::Executed { op, state_hash } => {
                    self.observe_state(shard, replica, op, state_hash, "executed")?;
                }
                // A restored replica must agree with those that executed the log: the same op
                // (prefix) and the same state hash after it.
                Action::Restored { op, state_hash } => {
                    self.observe_state(shard, replica, op, state_hash, "restored")?;
                }
                Action::WriteCheckpoint {
                    header, checksum, ..
                }
                | Action::InstallCheckpoint {
                    header, checksum, ..
                } => {
                    self.shards[shard]
                        .checkpoints
                        .observe(replica, header.op, checksum)
                        .map_err(|e| self.fail(shard, &e))?;
                }
                Action::Applied {
                    client,
                    request,
                    op,
                } => {
                    self.shards[shard]
                        .exactly_once
                        .observe(replica, client, request, op)
                        .map_err(|e| self.fail(shard, &e))?;
                }
                Action::Outboxed { op, id, event } => {
                    self.shards[shard]
                        .effects
                        .outboxed(replica, op, id, event)
                        .map_err(|e| self.fail(shard, &e))?;
                }
                Action::Attempt {
                    id,
                    view,
                    attempt,
                    effect,
                } => self.attempt(shard, replica, id, view, attempt, &effect)?,
                Action::Append { .. }
                | Action::Repair { .. }
                | Action::Truncate { .. }
                | Action::PersistView { .. } => {}
            }
        }
        Ok(())
    }

    /// The host side of an attempt: the checker vets it, the simulated sink takes it (or is
    /// down, or loses its acknowledgement), and the result returns a few ticks later.
    fn attempt(
        &mut self,
        shard: usize,
        replica: u8,
        id: chronon_engine::app::EffectId,
        view: chronon_engine::ids::View,
        attempt: u32,
        effect: &chronon_engine::app::SideEffect,
    ) -> Result<(), String> {
        let node = &self.shards[shard].nodes[usize::from(replica)];
        let durable = node.durable_view();
        let incarnation = node.stats.crashes;
        let primary = ((view.0 + shard as u64) % u64::from(self.options.replica_count)) as u8;
        self.shards[shard]
            .effects
            .attempt(replica, id, view, attempt, effect, durable, primary)
            .map_err(|e| self.fail(shard, &e))?;
        let options = self.options.effects;
        let faulty = self.tick < self.options.safety_ticks;
        let result = if faulty && self.rng.chance(u64::from(options.fail_ppm), 1_000_000) {
            Err("the sink is unavailable".to_owned())
        } else {
            let chronon_engine::app::SideEffect::Emit { payload, .. } = effect else {
                return Err(self.fail(shard, &format!("unexpected effect {effect:?}")));
            };
            self.shards[shard]
                .effects
                .deliver(id, payload)
                .map_err(|e| self.fail(shard, &e))?;
            if faulty && self.rng.chance(u64::from(options.lost_ack_ppm), 1_000_000) {
                Err("no acknowledgement from the sink".to_owned())
            } else {
                Ok(b"ok".to_vec())
            }
        };
        let due = self.tick + 1 + self.rng.below(options.latency_ticks_max);
        self.effect_results.push(EffectResult {
            due,
            shard,
            replica,
            incarnation,
            input: Input::EffectResult {
                id,
                view,
                attempt,
                result,
            },
        });
        Ok(())
    }

    fn deliver_effect_results(&mut self) -> Result<(), String> {
        let tick = self.tick;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.effect_results)
            .into_iter()
            .partition(|r| r.due <= tick);
        self.effect_results = later;
        for result in due {
            let node = &mut self.shards[result.shard].nodes[usize::from(result.replica)];
            if node.stats.crashes == result.incarnation {
                node.step(result.input, &mut self.actions);
                self.dispatch(result.shard, result.replica)?;
            }
        }
        Ok(())
    }

    /// `replica` reached the state after `op` (by executing it, or by restoring a checkpoint):
    /// the prefix and state-hash checkers see it.
    fn observe_state(
        &mut self,
        shard: usize,
        replica: u8,
        op: Op,
        state_hash: chronon_engine::checksum::Checksum,
        how: &str,
    ) -> Result<(), String> {
        let shard_state = &mut self.shards[shard];
        let checksum = shard_state.nodes[usize::from(replica)]
            .checksum_at(op)
            .ok_or_else(|| format!("replica {replica} {how} op {op} it does not hold"))?;
        shard_state
            .prefix
            .observe(replica, op, checksum)
            .map_err(|e| self.fail(shard, &e))?;
        self.shards[shard]
            .state_hashes
            .observe(replica, op, state_hash)
            .map_err(|e| self.fail(shard, &e))
    }

    fn fail(&self, shard: usize, message: &str) -> String {
        format!("shard {shard} at tick {}: {message}", self.tick)
    }

    fn deliver_to_client(&mut self, shard: usize, id: ClientId, message: Message) {
        let Message::Reply(reply) = message else {
            return;
        };
        let tick = self.tick;
        let shard_state = &mut self.shards[shard];
        let Some(index) = shard_state.clients.iter().position(|c| c.id == id) else {
            return;
        };
        let client = &mut shard_state.clients[index];
        let before = client.acknowledged.len();
        let resend = client.on_reply(tick, reply, &mut shard_state.history);
        let new: Vec<_> = client.acknowledged[before..].to_vec();
        shard_state.acknowledged.extend(new);
        if let Some((target, request)) = resend {
            self.send_request(shard, id, target, &request);
        }
    }

    fn tick_clients(&mut self, shard: usize) {
        let keys = self.options.keys_per_shard;
        let effects = self.options.effects;
        for index in 0..self.shards[shard].clients.len() {
            let shard_state = &mut self.shards[shard];
            let client = &mut shard_state.clients[index];
            let id = client.id;
            if let Some((target, request)) = client.tick(
                self.tick,
                &mut self.rng,
                keys,
                &effects,
                &mut shard_state.history,
            ) {
                self.send_request(shard, id, target, &request);
            }
        }
    }

    fn send_request(
        &mut self,
        shard: usize,
        id: ClientId,
        target: Target,
        request: &chronon_engine::vsr::Request,
    ) {
        let from = Address {
            shard: shard as u16,
            endpoint: Endpoint::Client(id),
        };
        let targets: Vec<u8> = match target {
            Target::Primary(r) => vec![r],
            Target::All => (0..self.options.replica_count).collect(),
        };
        for r in targets {
            let envelope = chronon_engine::vsr::Envelope::seal(
                CLUSTER,
                ShardId(shard as u16),
                chronon_engine::ids::View(0),
                Endpoint::Client(id),
                Message::Request(request.clone()),
            );
            let to = Address {
                shard: shard as u16,
                endpoint: Endpoint::Replica(ReplicaIndex(r)),
            };
            self.network.send(self.tick, from, to, &envelope);
        }
    }

    fn inject_faults(&mut self) {
        let options = self.options;
        for shard in &mut self.shards {
            for node in &mut shard.nodes {
                let crash = self.rng.chance(u64::from(options.crash_ppm), 1_000_000);
                if node.is_up() && crash {
                    let restart_at = self.tick + 1 + self.rng.below(options.restart_ticks_max);
                    node.crash(self.tick, restart_at);
                }
                node.maybe_stall(
                    &mut self.rng,
                    self.tick,
                    options.disk_stall_ppm,
                    options.disk_stall_ticks_max,
                );
            }
            for client in &mut shard.clients {
                if self
                    .rng
                    .chance(u64::from(options.client_crash_ppm), 1_000_000)
                {
                    self.next_client_id += 1;
                    client.crash(ClientId(self.next_client_id));
                    self.stats.client_crashes += 1;
                }
            }
        }
    }

    /// Ends the safety phase: no more faults, partitions healed, crashed replicas restarted.
    fn heal(&mut self) {
        self.network.heal();
        for shard in &mut self.shards {
            for node in &mut shard.nodes {
                node.heal_disk();
                if !node.is_up() {
                    node.restart_at = self.tick + 1;
                }
            }
        }
    }

    fn converged(&self) -> bool {
        self.shards.iter().all(|shard| {
            let clients_done = shard.clients.iter().all(SimClient::is_done);
            let replicas: Vec<_> = shard
                .nodes
                .iter()
                .filter_map(|n| n.replica.as_ref())
                .collect();
            let all_up = replicas.len() == shard.nodes.len();
            let first = replicas.first();
            clients_done
                && all_up
                && shard.nodes.iter().all(|n| n.journal_backlog() == 0)
                && first.is_some_and(|first| {
                    replicas.iter().all(|r| {
                        r.status() == chronon_engine::vsr::Status::Normal
                            && r.outbox().is_idle()
                            && r.view() == first.view()
                            && r.commit_min() == first.commit_max()
                            && r.op() == first.op()
                            && r.commit_min() == r.op()
                    })
                })
        })
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (s, shard) in self.shards.iter().enumerate() {
            let pending = shard.clients.iter().filter(|c| !c.is_done()).count();
            out.push_str(&format!("shard {s}: {pending} clients pending;"));
            for node in &shard.nodes {
                match &node.replica {
                    Some(r) => out.push_str(&format!(
                        " r{} {:?} v{} lv{} op{} commit{}/{} backlog{} effects pending {} timers {};",
                        node.index,
                        r.status(),
                        r.view(),
                        r.log_view(),
                        r.op(),
                        r.commit_min(),
                        r.commit_max(),
                        node.journal_backlog(),
                        r.outbox().pending().len(),
                        r.outbox().timers().len()
                    )),
                    None => out.push_str(&format!(" r{} down;", node.index)),
                }
            }
        }
        out
    }

    fn check_final(&mut self) -> Result<(), String> {
        for (s, shard) in self.shards.iter_mut().enumerate() {
            if let Some(error) = shard.clients.iter().flat_map(|c| c.errors.iter()).next() {
                return Err(format!("shard {s}: {error}"));
            }
            crate::linearizability::check(&shard.history)
                .map_err(|v| format!("shard {s}: history not linearizable: {v}"))?;
            shard
                .effects
                .check_final()
                .map_err(|e| format!("shard {s}: {e}"))?;
            let commit = shard.prefix.highest();
            acknowledged::check(&shard.acknowledged, &shard.exactly_once, commit)
                .map_err(|e| format!("shard {s}: {e}"))?;
            for node in &mut shard.nodes {
                let replica = node
                    .replica
                    .as_ref()
                    .expect("invariant: converged replicas are up");
                chain::check_replica(node.index, replica, &shard.prefix)
                    .map_err(|e| format!("shard {s}: {e}"))?;
                let rejected = replica.stats().kernel_events_rejected;
                if rejected > 0 {
                    return Err(format!(
                        "shard {s}: replica {} saw the key-value store reject {rejected} timer \
                         or effect events, which it never should",
                        node.index
                    ));
                }
                let head = replica.op();
                let report = node.journal_report();
                chain::check_journal(node.index, report, head)
                    .map_err(|e| format!("shard {s}: {e}"))?;
            }
        }
        Ok(())
    }

    fn finish_stats(&mut self) {
        self.stats.ticks = self.tick;
        self.stats.network = self.network.stats;
        for shard in &self.shards {
            self.stats.ops_committed += shard.prefix.highest().0;
            self.stats.requests_acknowledged += shard.acknowledged.len() as u64;
            self.stats.session_evictions += shard.clients.iter().map(|c| c.evictions).sum::<u64>();
            let (recorded, completed, dead, fired) = shard.effects.counts();
            self.stats.effects_recorded += recorded;
            self.stats.effects_completed += completed;
            self.stats.effects_dead_lettered += dead;
            self.stats.timers_fired += fired;
            self.stats.effect_attempts += shard.effects.attempts;
            self.stats.sink_duplicates += shard.effects.duplicates;
            self.stats.effects_revived += shard.effects.revivals();
            for node in &shard.nodes {
                self.stats.nodes.crashes += node.stats.crashes;
                self.stats.nodes.disk_stalls += node.stats.disk_stalls;
                self.stats.nodes.torn_units += node.stats.torn_units;
                self.stats.nodes.faulty_at_restart += node.stats.faulty_at_restart;
                self.stats.checkpoints_lost += node.stats.checkpoint_lost_at_restart;
                if let Some(disk) = node.disk_stats() {
                    self.stats.disk_bit_flips += disk.bit_flips;
                    self.stats.disk_misdirected_writes += disk.misdirected_writes;
                    self.stats.disk_read_errors += disk.read_errors;
                }
                let replica = node.replica_stats();
                self.stats.view_changes += replica.view_changes;
                self.stats.ops_nacked += replica.ops_nacked;
                self.stats.recovering_heads += replica.recovering_head;
                self.stats.checkpoints_taken += replica.checkpoints_taken;
                self.stats.state_transfers += replica.state_transfers;
                self.stats.checkpoints_restored += replica.checkpoints_restored;
                self.stats.checkpoints_refused += replica.checkpoints_refused;
            }
            let wraps = shard.prefix.highest().0 / u64::from(self.options.slot_count);
            self.stats.ring_wraps = self.stats.ring_wraps.max(wraps);
        }
    }

    /// The run's parameters.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Test access for targeted scenarios.
    #[must_use]
    pub fn tick(&self) -> u64 {
        self.tick
    }

    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    pub fn node_mut(&mut self, shard: usize, replica: u8) -> &mut Node {
        &mut self.shards[shard].nodes[usize::from(replica)]
    }

    #[must_use]
    pub fn node(&self, shard: usize, replica: u8) -> &Node {
        &self.shards[shard].nodes[usize::from(replica)]
    }
}

fn replica_config(options: &Options, shard: u16, replica: u8) -> ReplicaConfig {
    ReplicaConfig {
        cluster: CLUSTER,
        shard: ShardId(shard),
        replica: ReplicaIndex(replica),
        replica_count: options.replica_count,
        sessions_max: options.sessions_max,
        body_max: crate::node::SIM_SLOT_SIZE as usize - chronon_engine::constants::HEADER_SIZE,
        timeouts: Timeouts::default(),
        effects: options.effects.policy,
        checkpoint_interval: options.checkpoint_interval,
        log_ops_max: sim_log(options.slot_count).ops_beyond_checkpoint_max(),
        record_applied: true,
        batch_requests_max: chronon_engine::constants::BATCH_REQUESTS_MAX,
        request_queue_max: chronon_engine::constants::REQUEST_QUEUE_MAX,
        bug: options.bug,
    }
}

/// Ops committed so far in shard `shard` (for scenarios).
#[must_use]
pub fn committed(sim: &Simulation, shard: usize) -> Op {
    sim.shards[shard].prefix.highest()
}
