//! The simulated network: every message is delayed, and may be dropped, duplicated, corrupted
//! or blocked by a partition between hosts. Delivery order follows (delivery tick, send order),
//! so random delays reorder messages deterministically.

use std::collections::{BTreeMap, BTreeSet};

use chronon_engine::rng::Rng;
use chronon_engine::vsr::{Endpoint, Envelope};

use crate::options::NetworkOptions;

/// A network address: the shard's group and the endpoint within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    pub shard: u16,
    pub endpoint: Endpoint,
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub from: Address,
    pub to: Address,
    pub envelope: Envelope,
}

/// Fault counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub blocked_by_partition: u64,
    pub partitions: u64,
}

#[derive(Debug)]
pub struct Network {
    options: NetworkOptions,
    rng: Rng,
    queue: BTreeMap<(u64, u64), Packet>,
    sequence: u64,
    /// Directed links between hosts (replica indexes) that drop everything.
    blocked: BTreeSet<(u8, u8)>,
    partition_ends: u64,
    faults_enabled: bool,
    pub stats: NetworkStats,
}

fn host(address: &Address) -> Option<u8> {
    match address.endpoint {
        Endpoint::Replica(r) => Some(r.0),
        Endpoint::Client(_) => None,
    }
}

impl Network {
    #[must_use]
    pub fn new(options: NetworkOptions, seed: u64) -> Network {
        Network {
            options,
            rng: Rng::new(seed ^ 0x6e65_7477),
            queue: BTreeMap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            partition_ends: 0,
            faults_enabled: true,
            stats: NetworkStats::default(),
        }
    }

    /// Turns every fault off and heals partitions (the liveness phase).
    pub fn heal(&mut self) {
        self.faults_enabled = false;
        self.blocked.clear();
    }

    /// Blocks all traffic to and from `replica` until healed (for targeted scenarios).
    pub fn isolate(&mut self, replica: u8, replica_count: u8) {
        self.partition_ends = u64::MAX;
        for other in 0..replica_count {
            if other != replica {
                self.blocked.insert((replica, other));
                self.blocked.insert((other, replica));
            }
        }
    }

    pub fn send(&mut self, now: u64, from: Address, to: Address, envelope: &Envelope) {
        self.stats.sent += 1;
        if let (Some(a), Some(b)) = (host(&from), host(&to))
            && self.blocked.contains(&(a, b))
        {
            self.stats.blocked_by_partition += 1;
            return;
        }
        if self.faults_enabled && self.rng.chance(u64::from(self.options.drop_ppm), 1_000_000) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.faults_enabled
            && self
                .rng
                .chance(u64::from(self.options.duplicate_ppm), 1_000_000)
        {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut envelope = envelope.clone();
            if self.faults_enabled
                && self
                    .rng
                    .chance(u64::from(self.options.corrupt_ppm), 1_000_000)
            {
                // A flipped bit anywhere is caught by the envelope checksum; flipping the
                // checksum itself is the cheapest way to make the envelope not match.
                envelope.checksum.0 ^= 1 << self.rng.below(128);
                self.stats.corrupted += 1;
            }
            let span = self.options.delay_max - self.options.delay_min + 1;
            let delay = self.options.delay_min
                + if self.faults_enabled {
                    self.rng.below(span)
                } else {
                    0
                };
            self.sequence += 1;
            self.queue.insert(
                (now + delay, self.sequence),
                Packet {
                    from,
                    to,
                    envelope: envelope.clone(),
                },
            );
        }
    }

    /// Removes and returns the packets due at or before `now`, in delivery order.
    pub fn deliver(&mut self, now: u64) -> Vec<Packet> {
        let later = self.queue.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.queue, later);
        self.stats.delivered += due.len() as u64;
        due.into_values().collect()
    }

    /// Starts and ends random partitions between hosts.
    pub fn tick(&mut self, now: u64, replica_count: u8) {
        if !self.faults_enabled || replica_count < 2 {
            return;
        }
        if !self.blocked.is_empty() && now >= self.partition_ends {
            self.blocked.clear();
        }
        if self.blocked.is_empty()
            && self
                .rng
                .chance(u64::from(self.options.partition_ppm), 1_000_000)
        {
            self.partition(replica_count);
            self.partition_ends = now + 1 + self.rng.below(self.options.partition_ticks_max);
        }
    }

    fn partition(&mut self, replica_count: u8) {
        self.stats.partitions += 1;
        let side: Vec<bool> = (0..replica_count).map(|_| self.rng.chance(1, 2)).collect();
        let one_way = self.options.asymmetric && self.rng.chance(1, 2);
        for a in 0..replica_count {
            for b in 0..replica_count {
                if side[a as usize] && !side[b as usize] {
                    self.blocked.insert((a, b));
                    if !one_way {
                        self.blocked.insert((b, a));
                    }
                }
            }
        }
    }

    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
