//! The native codec of VSR envelopes: the envelope's checksum (16 bytes, little-endian)
//! followed by exactly the bytes `Envelope::encode_fields` writes, which are what that checksum
//! covers.
//!
//! The decoder is the exact inverse of the encoder and accepts only canonical input: every tag,
//! flag and length must be one the encoder can produce, and no byte may be left over. So a
//! decoded envelope re-encodes to the very bytes it came from, and its `is_intact()` holds
//! exactly when the checksum in those bytes is the checksum of the rest, that is, when the
//! bytes are what `encode` wrote for some envelope. The decoder does not drop envelopes with a
//! bad checksum itself: the replica counts and drops them, as it does for the simulator's
//! network.
//!
//! Decoding never panics and allocates at most the input's size: every length and count is
//! checked against the bytes that remain before anything is allocated.

use std::sync::Arc;

use chronon_engine::constants::HEADER_SIZE;
use chronon_engine::log::{Header, HeaderState};
use chronon_engine::vsr::{Endpoint, Envelope, Message, Reply, ReplyError, Request, RequestKind};
use chronon_engine::{
    Checksum, ClientId, ClusterId, Op, ReplicaIndex, RequestNumber, ShardId, View,
};

use crate::cursor::Cursor;
use crate::error::NetError;
use crate::frame::{FrameKind, write_frame};

/// Appends the envelope's encoding to `out`.
pub fn encode_envelope(envelope: &Envelope, out: &mut Vec<u8>) {
    out.extend_from_slice(&envelope.checksum.to_le_bytes());
    envelope.encode_fields(out);
}

/// Appends one frame holding the envelope. Fails, leaving `out` as it was, if the encoding
/// exceeds `payload_max`.
pub fn encode_envelope_frame(
    envelope: &Envelope,
    payload_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), NetError> {
    write_frame(out, FrameKind::Envelope, payload_max, |out| {
        encode_envelope(envelope, out);
    })
}

/// Decodes one envelope from exactly `bytes`.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, NetError> {
    let mut c = Cursor::new(bytes);
    let checksum = Checksum(c.u128("envelope checksum")?);
    let cluster = ClusterId(c.u64("cluster")?);
    let shard = ShardId(c.u16("shard")?);
    let view = View(c.u64("view")?);
    let from = match c.u8("sender")? {
        0 => Endpoint::Replica(ReplicaIndex(c.u8("sender replica")?)),
        1 => Endpoint::Client(ClientId(c.u64("sender client")?)),
        tag => {
            return Err(NetError::UnknownTag {
                field: "sender",
                tag,
            });
        }
    };
    let message = decode_message(&mut c)?;
    c.finish()?;
    Ok(Envelope {
        cluster,
        shard,
        view,
        from,
        checksum,
        message,
    })
}

fn decode_message(c: &mut Cursor<'_>) -> Result<Message, NetError> {
    let message = match c.u8("message")? {
        1 => Message::Request(decode_request(c)?),
        2 => Message::Reply(Reply {
            client: ClientId(c.u64("reply client")?),
            request: RequestNumber(c.u64("reply request")?),
            result: decode_result(c)?,
        }),
        3 => Message::Prepare {
            header: decode_header(c, "prepare header")?,
            body: Arc::from(c.bytes("prepare body")?),
            commit: Op(c.u64("prepare commit")?),
        },
        4 => Message::PrepareOk {
            op: Op(c.u64("prepare_ok op")?),
            checksum: Checksum(c.u128("prepare_ok checksum")?),
        },
        5 => Message::Commit {
            commit: Op(c.u64("commit")?),
            checksum: Checksum(c.u128("commit checksum")?),
        },
        6 => Message::StartViewChange,
        7 => Message::DoViewChange {
            log_view: View(c.u64("do_view_change log view")?),
            op: Op(c.u64("do_view_change op")?),
            commit: Op(c.u64("do_view_change commit")?),
            headers: decode_headers(c)?,
            faulty: decode_ops(c)?,
        },
        8 => Message::StartView {
            op: Op(c.u64("start_view op")?),
            commit: Op(c.u64("start_view commit")?),
            headers: decode_headers(c)?,
        },
        9 => Message::RequestStartView,
        10 => Message::RequestPrepare {
            op: Op(c.u64("request_prepare op")?),
            checksum: match c.u8("request_prepare checksum flag")? {
                0 => None,
                1 => Some(Checksum(c.u128("request_prepare checksum")?)),
                tag => {
                    return Err(NetError::UnknownTag {
                        field: "request_prepare checksum flag",
                        tag,
                    });
                }
            },
        },
        11 => Message::RequestCheckpoint {
            op: Op(c.u64("request_checkpoint op")?),
            checksum: match c.u8("request_checkpoint checksum flag")? {
                0 => None,
                1 => Some(Checksum(c.u128("request_checkpoint checksum")?)),
                tag => {
                    return Err(NetError::UnknownTag {
                        field: "request_checkpoint checksum flag",
                        tag,
                    });
                }
            },
            offset: c.u64("request_checkpoint offset")?,
        },
        12 => Message::Checkpoint {
            header: decode_header(c, "checkpoint header")?,
            checksum: Checksum(c.u128("checkpoint checksum")?),
            size: c.u64("checkpoint size")?,
            offset: c.u64("checkpoint offset")?,
            chunk: Arc::from(c.bytes("checkpoint chunk")?),
        },
        tag => {
            return Err(NetError::UnknownTag {
                field: "message",
                tag,
            });
        }
    };
    Ok(message)
}

fn decode_request(c: &mut Cursor<'_>) -> Result<Request, NetError> {
    let client = ClientId(c.u64("request client")?);
    let request = RequestNumber(c.u64("request number")?);
    let tag = c.u8("request kind")?;
    let kind = RequestKind::from_tag(tag).ok_or(NetError::UnknownTag {
        field: "request kind",
        tag,
    })?;
    let body = c.bytes("request body")?.to_vec();
    Ok(Request {
        client,
        request,
        kind,
        body,
    })
}

fn decode_result(c: &mut Cursor<'_>) -> Result<Result<Vec<u8>, ReplyError>, NetError> {
    let result = match c.u8("reply result")? {
        0 => Ok(c.bytes("reply body")?.to_vec()),
        1 => Err(ReplyError::NoSession),
        2 => {
            let reason = c.bytes("reply rejection")?;
            let reason = std::str::from_utf8(reason).map_err(|_| NetError::InvalidUtf8 {
                field: "reply rejection",
            })?;
            Err(ReplyError::Rejected(reason.to_owned()))
        }
        3 => Err(ReplyError::NotPrimary {
            view: View(c.u64("reply view")?),
        }),
        4 => Err(ReplyError::TooLarge {
            size: usize_of(c.u64("reply size")?, "reply size")?,
            max: usize_of(c.u64("reply max")?, "reply max")?,
        }),
        5 => Err(ReplyError::Misdirected {
            cluster: ClusterId(c.u64("reply cluster")?),
            shard_count: c.u16("reply shard count")?,
        }),
        tag => {
            return Err(NetError::UnknownTag {
                field: "reply result",
                tag,
            });
        }
    };
    Ok(result)
}

fn usize_of(value: u64, field: &'static str) -> Result<usize, NetError> {
    usize::try_from(value).map_err(|_| NetError::OutOfRange { field, value })
}

fn decode_header(c: &mut Cursor<'_>, field: &'static str) -> Result<Header, NetError> {
    match Header::decode(c.take(HEADER_SIZE, field)?) {
        HeaderState::Valid(header) => Ok(header),
        HeaderState::Zero | HeaderState::Corrupt => Err(NetError::CorruptHeader { field }),
    }
}

fn decode_ops(c: &mut Cursor<'_>) -> Result<Vec<Op>, NetError> {
    let count = c.u64("faulty op count")?;
    // Checked against the remaining bytes first: the allocation below is bounded by the input.
    let mut bytes = Cursor::new(c.counted(count, 8, "faulty ops")?);
    let mut ops = Vec::with_capacity(bytes.remaining() / 8);
    while bytes.remaining() > 0 {
        ops.push(Op(bytes.u64("faulty op")?));
    }
    Ok(ops)
}

fn decode_headers(c: &mut Cursor<'_>) -> Result<Vec<Header>, NetError> {
    let count = c.u64("header count")?;
    // Checked against the remaining bytes first: the allocation below is bounded by the input.
    let mut bytes = Cursor::new(c.counted(count, HEADER_SIZE, "headers")?);
    let mut headers = Vec::with_capacity(bytes.remaining() / HEADER_SIZE);
    while bytes.remaining() > 0 {
        headers.push(decode_header(&mut bytes, "view-change header")?);
    }
    Ok(headers)
}
