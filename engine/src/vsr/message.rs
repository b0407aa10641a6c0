//! Messages between replicas and clients. Every message travels in an [`Envelope`] that names
//! the cluster, shard, view and sender and carries a checksum over all of it; receivers drop
//! (and count) foreign and corrupt envelopes. A node answers a client's request for another
//! cluster or a missing shard with [`ReplyError::Misdirected`] before it reaches a replica, so
//! the client learns what is wrong instead of timing out.

use std::sync::Arc;

use crate::app::codec::{put_bytes, put_u64};
use crate::checksum::Checksum;
use crate::ids::{ClientId, ClusterId, Op, ReplicaIndex, RequestNumber, ShardId, View};
use crate::log::Header;

/// A prepare's body, shared between the log and the messages that carry it.
pub type Body = Arc<[u8]>;

/// Who sent or receives a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Replica(ReplicaIndex),
    Client(ClientId),
}

/// What a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    /// Opens a session; its request number is 0.
    Register,
    /// An application event; request numbers start at 1 and grow by one.
    Command,
    /// A kernel event about side effects ([`KernelEvent`](super::outbox::KernelEvent)). The
    /// primary proposes outcomes and timer firings itself, as client
    /// [`KERNEL_CLIENT`](super::KERNEL_CLIENT), outside any session; a client may send only a
    /// `Retry` of a dead-lettered effect, in its session like a command.
    Kernel,
}

impl RequestKind {
    /// The kind's byte in encodings.
    #[must_use]
    pub fn tag(self) -> u8 {
        match self {
            RequestKind::Register => 0,
            RequestKind::Command => 1,
            RequestKind::Kernel => 2,
        }
    }

    #[must_use]
    pub fn from_tag(tag: u8) -> Option<RequestKind> {
        match tag {
            0 => Some(RequestKind::Register),
            1 => Some(RequestKind::Command),
            2 => Some(RequestKind::Kernel),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub client: ClientId,
    pub request: RequestNumber,
    pub kind: RequestKind,
    pub body: Vec<u8>,
}

/// Why a request got no application reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The client has no session: it never registered, or its session was evicted (the
    /// cluster keeps at most a configured number of sessions, evicting the least recently
    /// used). Register again with a new client id.
    NoSession,
    /// The application rejected the event (deterministically, on every replica).
    Rejected(String),
    /// This replica is not the primary of `view`; try the primary of that view.
    NotPrimary { view: View },
    /// The request is larger than a prepare can hold.
    TooLarge { size: usize, max: usize },
    /// The request named another cluster, or a shard the node does not have, so no replica of
    /// this node will ever execute it. `cluster` and `shard_count` are the node's own, so the
    /// client can say which setting is wrong instead of waiting out its timeout.
    Misdirected {
        cluster: ClusterId,
        shard_count: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub client: ClientId,
    pub request: RequestNumber,
    pub result: Result<Vec<u8>, ReplyError>,
}

/// The protocol's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Reply(Reply),
    /// A log entry, from the primary in normal operation or from any replica as a repair.
    Prepare {
        header: Header,
        body: Body,
        commit: Op,
    },
    /// "I hold `op` (and every op before it in this view's log) durably."
    PrepareOk {
        op: Op,
        checksum: Checksum,
    },
    /// The primary's heartbeat: its commit point and that op's checksum.
    Commit {
        commit: Op,
        checksum: Checksum,
    },
    StartViewChange,
    /// A vote for the new primary, with the sender's log suffix headers and the ops among them
    /// whose entries it holds as faulty (it lost their bodies and never nacks them).
    DoViewChange {
        log_view: View,
        op: Op,
        commit: Op,
        headers: Vec<Header>,
        faulty: Vec<Op>,
    },
    /// The new primary's log suffix headers and commit point.
    StartView {
        op: Op,
        commit: Op,
        headers: Vec<Header>,
    },
    /// "Send me the current view's `StartView`."
    RequestStartView,
    /// "Send me the prepare for `op`" (matching `checksum` if given).
    RequestPrepare {
        op: Op,
        checksum: Option<Checksum>,
    },
    /// "Send me the bytes from `offset` of a checkpoint at op `op` or later" (exactly the one
    /// named by `checksum` if given): state transfer, for a replica whose log cannot catch up.
    RequestCheckpoint {
        op: Op,
        checksum: Option<Checksum>,
        offset: u64,
    },
    /// A chunk of the sender's checkpoint at the op of `header`: `size` bytes in all, named by
    /// `checksum`; this chunk starts at `offset`. Also sent, from offset 0, in answer to a
    /// `RequestPrepare` for an op the sender's log no longer holds.
    Checkpoint {
        header: Header,
        checksum: Checksum,
        size: u64,
        offset: u64,
        chunk: Body,
    },
}

impl Message {
    /// A short name for counters and traces.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Message::Request(_) => "request",
            Message::Reply(_) => "reply",
            Message::Prepare { .. } => "prepare",
            Message::PrepareOk { .. } => "prepare_ok",
            Message::Commit { .. } => "commit",
            Message::StartViewChange => "start_view_change",
            Message::DoViewChange { .. } => "do_view_change",
            Message::StartView { .. } => "start_view",
            Message::RequestStartView => "request_start_view",
            Message::RequestPrepare { .. } => "request_prepare",
            Message::RequestCheckpoint { .. } => "request_checkpoint",
            Message::Checkpoint { .. } => "checkpoint",
        }
    }
}

/// A message with its routing fields and checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub cluster: ClusterId,
    pub shard: ShardId,
    pub view: View,
    pub from: Endpoint,
    pub checksum: Checksum,
    pub message: Message,
}

impl Envelope {
    /// Builds an envelope and computes its checksum.
    #[must_use]
    pub fn seal(
        cluster: ClusterId,
        shard: ShardId,
        view: View,
        from: Endpoint,
        message: Message,
    ) -> Envelope {
        let mut envelope = Envelope {
            cluster,
            shard,
            view,
            from,
            checksum: Checksum::ZERO,
            message,
        };
        envelope.checksum = envelope.compute_checksum();
        envelope
    }

    /// True if the checksum matches the contents.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.compute_checksum() == self.checksum
    }

    fn compute_checksum(&self) -> Checksum {
        let mut bytes = Vec::with_capacity(256);
        self.encode_fields(&mut bytes);
        Checksum::of(&bytes)
    }

    /// Encodes everything but the checksum, little-endian and explicit.
    pub fn encode_fields(&self, out: &mut Vec<u8>) {
        put_u64(out, self.cluster.0);
        out.extend_from_slice(&self.shard.0.to_le_bytes());
        put_u64(out, self.view.0);
        match self.from {
            Endpoint::Replica(r) => {
                out.push(0);
                out.push(r.0);
            }
            Endpoint::Client(c) => {
                out.push(1);
                put_u64(out, c.0);
            }
        }
        encode_message(&self.message, out);
    }
}

fn encode_headers(headers: &[Header], out: &mut Vec<u8>) {
    put_u64(out, headers.len() as u64);
    for header in headers {
        out.extend_from_slice(&header.encode());
    }
}

fn encode_message(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::Request(request) => {
            out.push(1);
            put_u64(out, request.client.0);
            put_u64(out, request.request.0);
            out.push(request.kind.tag());
            put_bytes(out, &request.body);
        }
        Message::Reply(reply) => {
            out.push(2);
            put_u64(out, reply.client.0);
            put_u64(out, reply.request.0);
            encode_result(&reply.result, out);
        }
        Message::Prepare {
            header,
            body,
            commit,
        } => {
            out.push(3);
            out.extend_from_slice(&header.encode());
            put_bytes(out, body);
            put_u64(out, commit.0);
        }
        Message::PrepareOk { op, checksum } => {
            out.push(4);
            put_u64(out, op.0);
            out.extend_from_slice(&checksum.to_le_bytes());
        }
        Message::Commit { commit, checksum } => {
            out.push(5);
            put_u64(out, commit.0);
            out.extend_from_slice(&checksum.to_le_bytes());
        }
        Message::StartViewChange => out.push(6),
        Message::DoViewChange {
            log_view,
            op,
            commit,
            headers,
            faulty,
        } => {
            out.push(7);
            put_u64(out, log_view.0);
            put_u64(out, op.0);
            put_u64(out, commit.0);
            encode_headers(headers, out);
            put_u64(out, faulty.len() as u64);
            for op in faulty {
                put_u64(out, op.0);
            }
        }
        Message::StartView {
            op,
            commit,
            headers,
        } => {
            out.push(8);
            put_u64(out, op.0);
            put_u64(out, commit.0);
            encode_headers(headers, out);
        }
        Message::RequestStartView => out.push(9),
        Message::RequestPrepare { op, checksum } => {
            out.push(10);
            put_u64(out, op.0);
            match checksum {
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        Message::RequestCheckpoint { .. } | Message::Checkpoint { .. } => {
            encode_state_transfer(message, out);
        }
    }
}

/// The state-transfer messages (tags 11 and 12).
fn encode_state_transfer(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::RequestCheckpoint {
            op,
            checksum,
            offset,
        } => {
            out.push(11);
            put_u64(out, op.0);
            match checksum {
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.to_le_bytes());
                }
                None => out.push(0),
            }
            put_u64(out, *offset);
        }
        Message::Checkpoint {
            header,
            checksum,
            size,
            offset,
            chunk,
        } => {
            out.push(12);
            out.extend_from_slice(&header.encode());
            out.extend_from_slice(&checksum.to_le_bytes());
            put_u64(out, *size);
            put_u64(out, *offset);
            put_bytes(out, chunk);
        }
        _ => unreachable!("only state-transfer messages"),
    }
}

fn encode_result(result: &Result<Vec<u8>, ReplyError>, out: &mut Vec<u8>) {
    match result {
        Ok(bytes) => {
            out.push(0);
            put_bytes(out, bytes);
        }
        Err(ReplyError::NoSession) => out.push(1),
        Err(ReplyError::Rejected(reason)) => {
            out.push(2);
            put_bytes(out, reason.as_bytes());
        }
        Err(ReplyError::NotPrimary { view }) => {
            out.push(3);
            put_u64(out, view.0);
        }
        Err(ReplyError::TooLarge { size, max }) => {
            out.push(4);
            put_u64(out, *size as u64);
            put_u64(out, *max as u64);
        }
        Err(ReplyError::Misdirected {
            cluster,
            shard_count,
        }) => {
            out.push(5);
            put_u64(out, cluster.0);
            out.extend_from_slice(&shard_count.to_le_bytes());
        }
    }
}
