//! Client sessions: part of the replicated state, updated only by committed ops, so every
//! replica (and every future primary) agrees on which requests were applied and what they
//! returned.

use std::collections::BTreeMap;

use super::message::ReplyError;
use crate::app::codec::{Reader, put_bytes, put_u64};
use crate::ids::{ClientId, Op, RequestNumber, View};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The latest request applied for this client.
    pub request: RequestNumber,
    /// Its reply, returned again to a retry.
    pub reply: Result<Vec<u8>, ReplyError>,
    /// The op that last touched the session: eviction picks the oldest.
    pub last_op: Op,
}

/// What to do with a committed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Already applied: return the cached reply, apply nothing.
    Duplicate(Result<Vec<u8>, ReplyError>),
    /// Older than the latest applied request: the client has moved on; ignore it.
    Stale,
    NoSession,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    sessions: BTreeMap<ClientId, Session>,
    max: usize,
}

impl Sessions {
    #[must_use]
    pub fn new(max: usize) -> Sessions {
        assert!(max > 0);
        Sessions {
            sessions: BTreeMap::new(),
            max,
        }
    }

    #[must_use]
    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.sessions.get(&client)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Registers `client` at `op`, evicting the least recently used session if full. A repeat
    /// registration keeps the existing session.
    pub fn register(&mut self, client: ClientId, op: Op) {
        if self.sessions.contains_key(&client) {
            return;
        }
        if self.sessions.len() >= self.max {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(id, session)| (session.last_op, **id))
                .map(|(id, _)| *id)
                .expect("invariant: a full table has a session");
            self.sessions.remove(&oldest);
        }
        let reply = Ok(Vec::new());
        self.sessions.insert(
            client,
            Session {
                request: RequestNumber(0),
                reply,
                last_op: op,
            },
        );
        assert!(self.sessions.len() <= self.max);
    }

    #[must_use]
    pub fn verdict(&self, client: ClientId, request: RequestNumber) -> Verdict {
        match self.sessions.get(&client) {
            None => Verdict::NoSession,
            Some(session) if request == session.request => {
                Verdict::Duplicate(session.reply.clone())
            }
            Some(session) if request < session.request => Verdict::Stale,
            Some(_) => Verdict::Apply,
        }
    }

    /// Records the reply of an applied request.
    pub fn record(
        &mut self,
        client: ClientId,
        request: RequestNumber,
        reply: Result<Vec<u8>, ReplyError>,
        op: Op,
    ) {
        let session = self
            .sessions
            .get_mut(&client)
            .expect("invariant: recorded client has a session");
        assert!(
            request > session.request,
            "invariant: requests apply in order"
        );
        *session = Session {
            request,
            reply,
            last_op: op,
        };
    }

    /// Iterates sessions in client order (deterministic), for snapshots and hashing.
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.sessions.iter()
    }

    /// The table for a checkpoint: the count, then per session in client order its client id,
    /// request number, last op and reply. Every replica encodes the same table to the same bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.sessions.len() as u64);
        for (client, session) in &self.sessions {
            put_u64(&mut out, client.0);
            put_u64(&mut out, session.request.0);
            put_u64(&mut out, session.last_op.0);
            match &session.reply {
                Ok(bytes) => {
                    out.push(0);
                    put_bytes(&mut out, bytes);
                }
                Err(ReplyError::NoSession) => out.push(1),
                Err(ReplyError::Rejected(reason)) => {
                    out.push(2);
                    put_bytes(&mut out, reason.as_bytes());
                }
                Err(ReplyError::NotPrimary { view }) => {
                    out.push(3);
                    put_u64(&mut out, view.0);
                }
                Err(ReplyError::TooLarge { size, max }) => {
                    out.push(4);
                    put_u64(&mut out, *size as u64);
                    put_u64(&mut out, *max as u64);
                }
                // Never cached: the node refuses misdirected requests before the log. Encoded
                // anyway, so that the table's encoding is total.
                Err(ReplyError::Misdirected {
                    cluster,
                    shard_count,
                }) => {
                    out.push(5);
                    put_u64(&mut out, cluster.0);
                    out.extend_from_slice(&shard_count.to_le_bytes());
                }
            }
        }
        out
    }

    /// The inverse of [`Sessions::encode`], for a table of at most `max` sessions; `None` if the
    /// bytes are not exactly an encoded table (decoding never panics).
    #[must_use]
    pub fn decode(bytes: &[u8], max: usize) -> Option<Sessions> {
        let mut r = Reader::new(bytes);
        let count = r.u64()?;
        if count > max as u64 {
            return None;
        }
        let mut sessions = BTreeMap::new();
        for _ in 0..count {
            let client = ClientId(r.u64()?);
            let request = RequestNumber(r.u64()?);
            let last_op = Op(r.u64()?);
            let reply = match r.u8()? {
                0 => Ok(r.bytes()?.to_vec()),
                1 => Err(ReplyError::NoSession),
                2 => Err(ReplyError::Rejected(
                    String::from_utf8(r.bytes()?.to_vec()).ok()?,
                )),
                3 => Err(ReplyError::NotPrimary {
                    view: View(r.u64()?),
                }),
                4 => Err(ReplyError::TooLarge {
                    size: usize::try_from(r.u64()?).ok()?,
                    max: usize::try_from(r.u64()?).ok()?,
                }),
                5 => Err(ReplyError::Misdirected {
                    cluster: crate::ids::ClusterId(r.u64()?),
                    shard_count: u16::from_le_bytes(r.take(2)?.try_into().ok()?),
                }),
                _ => return None,
            };
            let session = Session {
                request,
                reply,
                last_op,
            };
            // Client ids strictly increase: one canonical encoding per table.
            if sessions
                .keys()
                .next_back()
                .is_some_and(|last| *last >= client)
            {
                return None;
            }
            sessions.insert(client, session);
        }
        r.is_empty().then_some(Sessions { sessions, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Duplicates get the cached reply, stale retries are ignored, and eviction removes the
    // least recently used session so that its next request is refused.
    #[test]
    fn session_verdicts_and_eviction() {
        let mut sessions = Sessions::new(2);
        sessions.register(ClientId(1), Op(1));
        sessions.register(ClientId(2), Op(2));
        assert_eq!(
            sessions.verdict(ClientId(1), RequestNumber(1)),
            Verdict::Apply
        );
        sessions.record(ClientId(1), RequestNumber(1), Ok(b"r1".to_vec()), Op(3));
        assert_eq!(
            sessions.verdict(ClientId(1), RequestNumber(1)),
            Verdict::Duplicate(Ok(b"r1".to_vec()))
        );
        sessions.record(ClientId(1), RequestNumber(2), Ok(vec![]), Op(4));
        assert_eq!(
            sessions.verdict(ClientId(1), RequestNumber(1)),
            Verdict::Stale
        );
        sessions.register(ClientId(3), Op(5));
        assert_eq!(
            sessions.verdict(ClientId(2), RequestNumber(1)),
            Verdict::NoSession
        );
        assert_eq!(
            sessions.verdict(ClientId(1), RequestNumber(3)),
            Verdict::Apply
        );
        assert_eq!(sessions.len(), 2);
    }

    // Pair assertion on the checkpoint encoding: what encode writes, decode reads back, and a
    // truncated or over-full table is refused rather than misread.
    #[test]
    fn sessions_roundtrip_through_checkpoint_encoding() {
        let mut sessions = Sessions::new(4);
        sessions.register(ClientId(7), Op(1));
        sessions.register(ClientId(3), Op(2));
        sessions.record(ClientId(7), RequestNumber(1), Ok(b"ok".to_vec()), Op(3));
        let rejected = Err(ReplyError::Rejected("no".to_owned()));
        sessions.record(ClientId(3), RequestNumber(1), rejected, Op(4));
        let bytes = sessions.encode();
        assert_eq!(Sessions::decode(&bytes, 4), Some(sessions.clone()));
        assert_eq!(Sessions::decode(&bytes, 1), None);
        assert_eq!(Sessions::decode(&bytes[..bytes.len() - 1], 4), None);
        assert_eq!(
            Sessions::decode(&Sessions::new(4).encode(), 4),
            Some(Sessions::new(4))
        );
    }
}
