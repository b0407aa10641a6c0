//! Where every shard of every host listens.
//!
//! A cluster has `replica_count` hosts (one process each) and `shard_count` shards per host.
//! Host `r` is replica `r` of every shard's group. Each host is named by one base address
//! `ip:P`; shard `s` of that host listens on three consecutive ports:
//!
//! | port | what |
//! |---|---|
//! | `P + 3s` | the replica link: VSR envelopes between shard `s` of every host |
//! | `P + 3s + 1` | the native client protocol (framed VSR requests and replies) |
//! | `P + 3s + 2` | RESP2, for Redis clients |
//!
//! So a host with four shards uses ports `P..P + 12`.

use std::net::SocketAddr;

use chronon_engine::ids::{ClusterId, ReplicaIndex, ShardId, View};

/// Ports each shard uses, counted from its host's base port.
pub const PORTS_PER_SHARD: u16 = 3;

/// What a host's port range cannot hold, or another malformed shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    #[error("a cluster needs 1 to 255 hosts (got {count}); pass one address per host")]
    HostCount { count: usize },
    #[error("a host needs at least one shard")]
    NoShards,
    #[error(
        "host {host} at {address}: {shards} shards need ports {address_port} to {last}, past \
         65535; choose a lower base port"
    )]
    PortRange {
        host: usize,
        address: SocketAddr,
        address_port: u16,
        shards: u16,
        last: u32,
    },
}

/// The cluster's shape and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub cluster: ClusterId,
    pub shard_count: u16,
    /// Each host's base address; the position is the host's replica index.
    pub hosts: Vec<SocketAddr>,
}

impl Topology {
    /// Checks the shape: 1..=255 hosts, at least one shard, and every port in range.
    pub fn new(
        cluster: ClusterId,
        shard_count: u16,
        hosts: Vec<SocketAddr>,
    ) -> Result<Topology, TopologyError> {
        if hosts.is_empty() || hosts.len() > usize::from(u8::MAX) {
            return Err(TopologyError::HostCount { count: hosts.len() });
        }
        if shard_count == 0 {
            return Err(TopologyError::NoShards);
        }
        for (host, address) in hosts.iter().enumerate() {
            let last =
                u32::from(address.port()) + u32::from(shard_count) * u32::from(PORTS_PER_SHARD) - 1;
            if last > u32::from(u16::MAX) {
                return Err(TopologyError::PortRange {
                    host,
                    address: *address,
                    address_port: address.port(),
                    shards: shard_count,
                    last,
                });
            }
        }
        Ok(Topology {
            cluster,
            shard_count,
            hosts,
        })
    }

    #[must_use]
    pub fn replica_count(&self) -> u8 {
        self.hosts.len() as u8
    }

    /// The primary of `shard`'s group in `view`: `(view + shard) mod replicas`.
    #[must_use]
    pub fn primary(&self, shard: ShardId, view: View) -> ReplicaIndex {
        let n = u64::from(self.replica_count());
        ReplicaIndex(((view.0 % n + u64::from(shard.0) % n) % n) as u8)
    }

    fn port(&self, host: ReplicaIndex, shard: ShardId, offset: u16) -> SocketAddr {
        let mut address = self.hosts[usize::from(host.0)];
        address.set_port(address.port() + shard.0 * PORTS_PER_SHARD + offset);
        address
    }

    /// Shard `shard`'s replica link on host `host`.
    #[must_use]
    pub fn replica_addr(&self, host: ReplicaIndex, shard: ShardId) -> SocketAddr {
        self.port(host, shard, 0)
    }

    /// Shard `shard`'s native client port on host `host`.
    #[must_use]
    pub fn native_addr(&self, host: ReplicaIndex, shard: ShardId) -> SocketAddr {
        self.port(host, shard, 1)
    }

    /// Shard `shard`'s RESP port on host `host`.
    #[must_use]
    pub fn resp_addr(&self, host: ReplicaIndex, shard: ShardId) -> SocketAddr {
        self.port(host, shard, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    #[test]
    fn ports_follow_the_documented_scheme() {
        let t = Topology::new(ClusterId(1), 4, hosts(&[7000, 8000, 9000])).expect("valid");
        let (r1, s2) = (ReplicaIndex(1), ShardId(2));
        assert_eq!(t.replica_addr(r1, s2).port(), 8006);
        assert_eq!(t.native_addr(r1, s2).port(), 8007);
        assert_eq!(t.resp_addr(r1, s2).port(), 8008);
        assert_eq!(t.primary(ShardId(2), View(0)), ReplicaIndex(2));
        assert_eq!(t.primary(ShardId(2), View(2)), ReplicaIndex(1));
    }

    #[test]
    fn bad_shapes_are_refused_with_the_cause() {
        assert!(matches!(
            Topology::new(ClusterId(1), 1, Vec::new()),
            Err(TopologyError::HostCount { count: 0 })
        ));
        assert_eq!(
            Topology::new(ClusterId(1), 0, hosts(&[7000])),
            Err(TopologyError::NoShards)
        );
        let error = Topology::new(ClusterId(1), 3, hosts(&[65530])).expect_err("out of range");
        assert!(
            error.to_string().contains("choose a lower base port"),
            "{error}"
        );
    }
}
