//! The crate's one error type. Every variant means the bytes from a peer or client cannot be
//! used; the caller's action is to count it and close that connection (after a RESP error
//! reply, for a Redis client). Command-level mistakes a Redis client can recover from (an
//! unknown command, a wrong argument count) are not errors of this crate but replies:
//! [`crate::resp::CommandError`].

use chronon_engine::{ClusterId, ReplicaIndex};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("message truncated: {field} needs {needed} bytes but only {remaining} remain")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("bad length: {field} declares {declared} bytes but only {remaining} remain")]
    BadLength {
        field: &'static str,
        declared: u64,
        remaining: usize,
    },
    #[error("message has {count} bytes after its last field")]
    TrailingBytes { count: usize },
    #[error("unknown {field} tag {tag}")]
    UnknownTag { field: &'static str, tag: u8 },
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field} value {value} does not fit this platform")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("the log header inside a message fails its checksum ({field})")]
    CorruptHeader { field: &'static str },

    #[error(
        "frame of {size} bytes exceeds the limit of {max} bytes; the connection is closed \
         (is the peer configured with a larger slot size?)"
    )]
    FrameTooLarge { size: u64, max: usize },
    #[error("not a Chronon frame (magic {found:02x?}); is something else connecting to this port?")]
    BadMagic { found: [u8; 4] },
    #[error("frame version {found}, this node speaks {supported}: upgrade the older node")]
    FrameVersion { found: u8, supported: u8 },
    #[error("frame header has non-zero reserved bytes {found:02x?}")]
    FrameReserved { found: [u8; 2] },

    #[error("the peer's handshake fails its checksum; the connection is closed")]
    HelloCorrupt,
    #[error(
        "peer speaks protocol version {peer}, this node {local}: connection refused; run the \
         same Chronon version on every host"
    )]
    ProtocolMismatch { peer: u16, local: u16 },
    #[error(
        "peer replica {peer} belongs to cluster {peer_cluster}, this node to cluster \
         {local_cluster}: connection refused; check --cluster and the data directory on both \
         hosts"
    )]
    ClusterMismatch {
        peer: ReplicaIndex,
        peer_cluster: ClusterId,
        local_cluster: ClusterId,
    },
    #[error(
        "peer replica {peer} runs {peer_replicas} replicas of {peer_shards} shards, this node \
         {local_replicas} replicas of {local_shards} shards: connection refused; every host \
         must be started with the same --replicas and --shards"
    )]
    ShapeMismatch {
        peer: ReplicaIndex,
        peer_replicas: u8,
        peer_shards: u16,
        local_replicas: u8,
        local_shards: u16,
    },
    #[error(
        "peer says it is replica {peer}, which is {reason}: connection refused; check the \
         --replica index and the address list on both hosts"
    )]
    WrongReplica {
        peer: ReplicaIndex,
        reason: &'static str,
    },

    #[error("Protocol error: {detail}")]
    RespProtocol { detail: String },
    #[error("Protocol error: {what} of {size} exceeds the limit of {max}")]
    RespTooLarge {
        what: &'static str,
        size: u64,
        max: usize,
    },
}
