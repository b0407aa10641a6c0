//! What a node tells Redis Cluster clients about the cluster: `CLUSTER SLOTS`, `SHARDS`,
//! `NODES`, `INFO`, `MYID`, `KEYSLOT`, and `-MOVED` redirections.
//!
//! Each (host, shard) pair looks to a Redis client like one Redis node at that shard's RESP
//! port (`Topology::resp_addr`): the shard's primary is a master owning the shard's slot range
//! (`slots::shard_slots`), and the shard's other replicas are its replicas. Clients parse these
//! replies to build their slot maps: redis-py's `RedisCluster` reads `CLUSTER SLOTS` (the
//! first three fields of each node), redis-benchmark and redis-cli `--cluster` read
//! `CLUSTER NODES` (space-separated fields, every line ending in `\n`, replicas skipped by
//! their `slave` flag or master id). A primary change moves a shard's master to another port;
//! a client that still sends there gets `-MOVED` and reloads the map.

use std::fmt::Write as _;
use std::net::SocketAddr;

use chronon_engine::ids::{ReplicaIndex, ShardId};

use crate::constants::SLOT_COUNT;
use crate::resp::command::{ClusterQuery, RespCommand};
use crate::resp::value::RespValue;
use crate::slots::{Slot, SlotRange, key_shard, key_slot, shard_slots};
use crate::topology::Topology;

/// What a node knows of the cluster when it answers a command by itself.
#[derive(Clone, Copy, Debug)]
pub struct NodeView<'a> {
    pub topology: &'a Topology,
    /// This node's host (its replica index in every shard's group).
    pub host: ReplicaIndex,
    /// The shard whose RESP port the client is connected to.
    pub shard: ShardId,
    /// For each shard, by shard id, the host this node believes is its primary.
    pub primaries: &'a [ReplicaIndex],
}

/// A Redis node id for shard `shard` of host `host` in the cluster `cluster`: 40 lower-case hex
/// digits, the cluster id (16), the host (8) and the shard (16), so it is stable across
/// restarts and a person can read the pair back from it.
#[must_use]
pub fn node_id(topology: &Topology, host: ReplicaIndex, shard: ShardId) -> String {
    let id = format!("{:016x}{:08x}{:016x}", topology.cluster.0, host.0, shard.0);
    assert_eq!(id.len(), 40);
    id
}

/// The redirection a Redis Cluster client follows: `-MOVED <slot> <ip>:<port>`, the address
/// of the slot's primary. IPv6 addresses are written without brackets, as Redis does; clients
/// split at the last colon.
#[must_use]
pub fn moved(slot: Slot, addr: SocketAddr) -> RespValue {
    RespValue::Error(format!("MOVED {} {}:{}", slot.0, addr.ip(), addr.port()))
}

/// A node's role, as `CLUSTER SHARDS` and `INFO` name it.
fn role(is_primary: bool) -> &'static str {
    if is_primary { "master" } else { "replica" }
}

impl NodeView<'_> {
    fn check(&self) {
        let topology = self.topology;
        assert_eq!(self.primaries.len(), usize::from(topology.shard_count));
        assert!(self.shard.0 < topology.shard_count);
        assert!(self.host.0 < topology.replica_count());
        for primary in self.primaries {
            assert!(primary.0 < topology.replica_count());
        }
    }

    fn shards(&self) -> impl Iterator<Item = ShardId> {
        (0..self.topology.shard_count).map(ShardId)
    }

    fn primary(&self, shard: ShardId) -> ReplicaIndex {
        self.primaries[usize::from(shard.0)]
    }

    /// The shard's hosts as a client should see them: the primary, then the other replicas in
    /// host order.
    fn members(&self, shard: ShardId) -> impl Iterator<Item = ReplicaIndex> {
        let primary = self.primary(shard);
        let others = (0..self.topology.replica_count())
            .map(ReplicaIndex)
            .filter(move |host| *host != primary);
        std::iter::once(primary).chain(others)
    }

    fn slots(&self, shard: ShardId) -> SlotRange {
        shard_slots(shard, self.topology.shard_count)
    }

    /// True if this node is its shard's primary.
    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.primary(self.shard) == self.host
    }

    /// The RESP address of `shard`'s primary, where a client should send that shard's keys.
    #[must_use]
    pub fn primary_addr(&self, shard: ShardId) -> SocketAddr {
        self.topology.resp_addr(self.primary(shard), shard)
    }

    /// For a client in cluster mode: `-MOVED` if every key of `command` is on one shard and
    /// this node is not that shard's primary (a client with a stale slot map, or one that
    /// ignored it). `None` if this node should serve the command: it has no keys, its keys are
    /// this node's and it is the primary, or its keys span shards (cluster clients never send
    /// those, and a plain client's are split by `KvPlan`).
    #[must_use]
    pub fn redirect(&self, command: &RespCommand) -> Option<RespValue> {
        self.check();
        let keys = command.keys();
        let (first, rest) = keys.split_first()?;
        let shard_count = self.topology.shard_count;
        let shard = key_shard(first, shard_count);
        if rest.iter().any(|key| key_shard(key, shard_count) != shard) {
            return None;
        }
        if shard == self.shard && self.is_primary() {
            return None;
        }
        Some(moved(key_slot(first), self.primary_addr(shard)))
    }

    /// The reply to a `CLUSTER` subcommand.
    #[must_use]
    pub fn cluster_reply(&self, query: &ClusterQuery) -> RespValue {
        self.check();
        match query {
            ClusterQuery::Slots => self.cluster_slots(),
            ClusterQuery::Shards => self.cluster_shards(),
            ClusterQuery::Nodes => RespValue::Bulk(self.cluster_nodes().into_bytes()),
            ClusterQuery::Info => RespValue::Bulk(self.cluster_info().into_bytes()),
            ClusterQuery::MyId => RespValue::bulk(&node_id(self.topology, self.host, self.shard)),
            ClusterQuery::KeySlot(key) => RespValue::Integer(i64::from(key_slot(key).0)),
        }
    }

    /// `CLUSTER SLOTS`: per shard, `[first, last, primary, replica...]`, each node as
    /// `[ip, port, id, []]` (the empty array is Redis 7's networking metadata).
    fn cluster_slots(&self) -> RespValue {
        let entries = self.shards().map(|shard| {
            let range = self.slots(shard);
            let mut entry = vec![
                RespValue::Integer(i64::from(range.first.0)),
                RespValue::Integer(i64::from(range.last.0)),
            ];
            for host in self.members(shard) {
                let addr = self.topology.resp_addr(host, shard);
                entry.push(RespValue::Array(vec![
                    RespValue::bulk(&addr.ip().to_string()),
                    RespValue::Integer(i64::from(addr.port())),
                    RespValue::bulk(&node_id(self.topology, host, shard)),
                    RespValue::Array(Vec::new()),
                ]));
            }
            RespValue::Array(entry)
        });
        RespValue::Array(entries.collect())
    }

    /// `CLUSTER SHARDS`: per shard, `slots` (first and last) and `nodes`, each node a flat
    /// list of field names and values as Redis 7 writes it in RESP2.
    fn cluster_shards(&self) -> RespValue {
        let shards = self.shards().map(|shard| {
            let range = self.slots(shard);
            let nodes = self.members(shard).map(|host| {
                let addr = self.topology.resp_addr(host, shard);
                let ip = addr.ip().to_string();
                RespValue::Array(vec![
                    RespValue::bulk("id"),
                    RespValue::bulk(&node_id(self.topology, host, shard)),
                    RespValue::bulk("port"),
                    RespValue::Integer(i64::from(addr.port())),
                    RespValue::bulk("ip"),
                    RespValue::bulk(&ip),
                    RespValue::bulk("endpoint"),
                    RespValue::bulk(&ip),
                    RespValue::bulk("role"),
                    RespValue::bulk(role(host == self.primary(shard))),
                    RespValue::bulk("replication-offset"),
                    RespValue::Integer(0),
                    RespValue::bulk("health"),
                    RespValue::bulk("online"),
                ])
            });
            RespValue::Array(vec![
                RespValue::bulk("slots"),
                RespValue::Array(vec![
                    RespValue::Integer(i64::from(range.first.0)),
                    RespValue::Integer(i64::from(range.last.0)),
                ]),
                RespValue::bulk("nodes"),
                RespValue::Array(nodes.collect()),
            ])
        });
        RespValue::Array(shards.collect())
    }

    /// `CLUSTER NODES`: one line per (host, shard), ending in `\n`:
    /// `<id> <ip>:<port>@<cport> <flags> <master id or -> 0 0 <epoch> connected [<slots>]`.
    /// The bus port `cport` is the shard's replica link, the nearest thing to Redis' cluster
    /// bus; each shard's config epoch is its index plus one, unique per master as Redis wants.
    #[must_use]
    pub fn cluster_nodes(&self) -> String {
        let mut out = String::new();
        for shard in self.shards() {
            let primary = self.primary(shard);
            for host in self.members(shard) {
                let addr = self.topology.resp_addr(host, shard);
                let bus = self.topology.replica_addr(host, shard).port();
                let myself = if host == self.host && shard == self.shard {
                    "myself,"
                } else {
                    ""
                };
                let (flags, master) = if host == primary {
                    ("master", "-".to_owned())
                } else {
                    ("slave", node_id(self.topology, primary, shard))
                };
                let _ = write!(
                    out,
                    "{} {}:{}@{bus} {myself}{flags} {master} 0 0 {} connected",
                    node_id(self.topology, host, shard),
                    addr.ip(),
                    addr.port(),
                    u32::from(shard.0) + 1,
                );
                if host == primary {
                    let range = self.slots(shard);
                    if range.first == range.last {
                        let _ = write!(out, " {}", range.first.0);
                    } else {
                        let _ = write!(out, " {}-{}", range.first.0, range.last.0);
                    }
                }
                out.push('\n');
            }
        }
        out
    }

    /// `CLUSTER INFO`: `field:value` lines ending in CRLF. The state is always `ok`: every slot
    /// has an owning shard by construction; whether its group can commit is not known here.
    #[must_use]
    pub fn cluster_info(&self) -> String {
        let topology = self.topology;
        let nodes = usize::from(topology.shard_count) * usize::from(topology.replica_count());
        let fields = [
            ("cluster_state", "ok".to_owned()),
            ("cluster_slots_assigned", SLOT_COUNT.to_string()),
            ("cluster_slots_ok", SLOT_COUNT.to_string()),
            ("cluster_slots_pfail", "0".to_owned()),
            ("cluster_slots_fail", "0".to_owned()),
            ("cluster_known_nodes", nodes.to_string()),
            ("cluster_size", topology.shard_count.to_string()),
            ("cluster_current_epoch", topology.shard_count.to_string()),
            (
                "cluster_my_epoch",
                (u32::from(self.shard.0) + 1).to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, value) in fields {
            let _ = write!(out, "{name}:{value}\r\n");
        }
        out
    }
}
