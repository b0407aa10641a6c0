//! The replica link's handshake. Each side's first frame is a [`Hello`] naming its cluster,
//! the cluster's shape and its own replica index; each side checks the other's with
//! [`Hello::check_peer`] and closes the connection, logging the error, on a mismatch. A host
//! from another cluster (a stale data directory, a mistyped address) is refused here, before
//! any VSR message is read from it.
//!
//! ```text
//! 0          16        24         26            28        29              30         32
//! +----------+---------+----------+-------------+---------+---------------+----------+
//! | checksum | cluster | protocol | shard count | replica | replica count | reserved |
//! |   u128   |   u64   |   u16    |     u16     |   u8    |      u8       |  2 x 0   |
//! +----------+---------+----------+-------------+---------+---------------+----------+
//! ```
//!
//! All little-endian; the checksum is BLAKE3-128 of bytes 16..32.

use chronon_engine::{Checksum, ClusterId, ReplicaIndex};

use crate::constants::{HELLO_SIZE, PROTOCOL_VERSION};
use crate::cursor::Cursor;
use crate::error::NetError;
use crate::frame::{FrameKind, write_frame};

/// What a node says about itself when a replica link opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster: ClusterId,
    pub protocol: u16,
    /// Shards per host (one VSR group each).
    pub shard_count: u16,
    /// This host's index: it is replica `replica` of every shard's group.
    pub replica: ReplicaIndex,
    /// Hosts in the cluster, and so replicas per group.
    pub replica_count: u8,
}

impl Hello {
    /// This node's hello, at the current protocol version.
    #[must_use]
    pub fn new(
        cluster: ClusterId,
        shard_count: u16,
        replica: ReplicaIndex,
        replica_count: u8,
    ) -> Hello {
        assert!(shard_count > 0);
        assert!(replica.0 < replica_count);
        Hello {
            cluster,
            protocol: PROTOCOL_VERSION,
            shard_count,
            replica,
            replica_count,
        }
    }

    #[must_use]
    pub fn encode(&self) -> [u8; HELLO_SIZE] {
        let mut b = [0u8; HELLO_SIZE];
        b[16..24].copy_from_slice(&self.cluster.0.to_le_bytes());
        b[24..26].copy_from_slice(&self.protocol.to_le_bytes());
        b[26..28].copy_from_slice(&self.shard_count.to_le_bytes());
        b[28] = self.replica.0;
        b[29] = self.replica_count;
        let checksum = Checksum::of(&b[16..]);
        b[..16].copy_from_slice(&checksum.to_le_bytes());
        b
    }

    /// Appends the hello as a frame.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        write_frame(out, FrameKind::Hello, HELLO_SIZE, |out| {
            out.extend_from_slice(&self.encode());
        })
        .expect("invariant: a hello fits its own frame bound");
    }

    /// Decodes a hello payload; the checksum and reserved bytes must be right.
    pub fn decode(bytes: &[u8]) -> Result<Hello, NetError> {
        let mut c = Cursor::new(bytes);
        let checksum = Checksum(c.u128("hello checksum")?);
        let covered = bytes.get(16..).unwrap_or_default();
        let cluster = ClusterId(c.u64("hello cluster")?);
        let protocol = c.u16("hello protocol")?;
        let shard_count = c.u16("hello shard count")?;
        let replica = ReplicaIndex(c.u8("hello replica")?);
        let replica_count = c.u8("hello replica count")?;
        let reserved = c.u16("hello reserved")?;
        c.finish()?;
        if Checksum::of(covered) != checksum || reserved != 0 {
            return Err(NetError::HelloCorrupt);
        }
        Ok(Hello {
            cluster,
            protocol,
            shard_count,
            replica,
            replica_count,
        })
    }

    /// Checks a peer's hello against this node's. `dialed` is the replica this node connected
    /// to, if it dialed; `None` on the accepting side.
    pub fn check_peer(&self, peer: &Hello, dialed: Option<ReplicaIndex>) -> Result<(), NetError> {
        // The version first: under another version the other fields may mean something else.
        if peer.protocol != self.protocol {
            return Err(NetError::ProtocolMismatch {
                peer: peer.protocol,
                local: self.protocol,
            });
        }
        if peer.cluster != self.cluster {
            return Err(NetError::ClusterMismatch {
                peer: peer.replica,
                peer_cluster: peer.cluster,
                local_cluster: self.cluster,
            });
        }
        if peer.shard_count != self.shard_count || peer.replica_count != self.replica_count {
            return Err(NetError::ShapeMismatch {
                peer: peer.replica,
                peer_replicas: peer.replica_count,
                peer_shards: peer.shard_count,
                local_replicas: self.replica_count,
                local_shards: self.shard_count,
            });
        }
        let reason = if peer.replica.0 >= self.replica_count {
            Some("out of range for the cluster")
        } else if peer.replica == self.replica {
            Some("this node's own index")
        } else if dialed.is_some_and(|dialed| dialed != peer.replica) {
            Some("not the replica this node dialed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(NetError::WrongReplica {
                peer: peer.replica,
                reason,
            }),
            None => Ok(()),
        }
    }
}
