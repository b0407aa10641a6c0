//! What a client call can end in besides a reply.

use std::net::SocketAddr;
use std::time::Duration;

use chronon_engine::app::kv::KvReply;
use chronon_engine::{ClientId, ClusterId, RequestNumber, ShardId};

/// Why a call returned no application reply. Each variant says whether the command may have
/// taken effect, because that decides what the caller may do next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration cannot work; nothing was sent.
    #[error("invalid client configuration: {reason}; nothing was sent")]
    Config { reason: String },

    /// No replica answered before the call's deadline. Request 0 is the session's
    /// registration.
    #[error(
        "shard {shard}: no reply to request {request} of client {client} within {timeout:?} \
         (hosts tried: {hosts:?}); the command may or may not have taken effect. Check that \
         the cluster is up and reachable from here, and read the key before retrying a \
         command that is not idempotent"
    )]
    Timeout {
        shard: ShardId,
        client: ClientId,
        request: RequestNumber,
        timeout: Duration,
        hosts: Vec<SocketAddr>,
    },

    /// No host of the shard accepted a connection before the call's deadline, so the request
    /// was never sent: the nodes are down, or the addresses are wrong.
    #[error(
        "shard {shard}: could not connect to any of {hosts:?} within {timeout:?} (last error: \
         {error}); nothing was sent. Check that the nodes are running and that the addresses \
         (--addresses, each host's base address) are right"
    )]
    Unreachable {
        shard: ShardId,
        timeout: Duration,
        hosts: Vec<SocketAddr>,
        error: String,
    },

    /// A node answered that it belongs to another cluster; the request was not executed.
    #[error(
        "node {host} belongs to cluster {node_cluster}, not cluster {cluster}: check --cluster \
         (or whether {host} is the address you meant); nothing was executed"
    )]
    WrongCluster {
        host: SocketAddr,
        node_cluster: ClusterId,
        cluster: ClusterId,
    },

    /// A node of the right cluster has fewer shards than the client assumed, so the key's
    /// shard does not exist there; the request was not executed.
    #[error(
        "node {host} runs {shard_count} shard(s) per host, so it has no shard {shard}: give the \
         client the cluster's shard count (--shards {shard_count}); nothing was executed"
    )]
    WrongShard {
        host: SocketAddr,
        shard: ShardId,
        shard_count: u16,
    },

    /// The cluster no longer knows this session: it keeps a bounded number and evicted this
    /// one. The request was not retried under a new session, which could apply it twice.
    #[error(
        "shard {shard}: the session of client {client} was evicted (the cluster keeps a bounded \
         number of sessions); request {request} may or may not have taken effect and was not \
         retried. The next call opens a new session: check the outcome before retrying, or \
         raise the cluster's session limit if this recurs"
    )]
    SessionEvicted {
        shard: ShardId,
        client: ClientId,
        request: RequestNumber,
    },

    /// The application refused the command on every replica; it had no effect.
    #[error("shard {shard} rejected request {request}: {reason}; the command had no effect")]
    Rejected {
        shard: ShardId,
        request: RequestNumber,
        reason: String,
    },

    /// The command does not fit one log entry (or one frame); it had no effect.
    #[error(
        "shard {shard}: a request of {size} bytes exceeds the limit of {max} bytes and was not \
         executed; split the value or raise the cluster's slot size"
    )]
    TooLarge { shard: ShardId, size: u64, max: u64 },

    /// A replica's reply does not decode as a key-value reply.
    #[error(
        "shard {shard}: the reply to request {request} from {host} cannot be understood \
         ({detail}); the command may have taken effect. Are the client and the cluster the \
         same Chronon version?"
    )]
    BadReply {
        shard: ShardId,
        request: RequestNumber,
        host: SocketAddr,
        detail: String,
    },

    /// The reply decodes but is not the kind the command calls for (a value for a put).
    #[error(
        "a {command} got the reply {reply:?}, which only another command returns; the command \
         may have taken effect. Are the client and the cluster the same Chronon version?"
    )]
    UnexpectedReply {
        command: &'static str,
        reply: KvReply,
    },
}
