//! Client sessions: part of the replicated state, updated only by committed ops, so every
//! replica (and every future primary) agrees on which requests were applied and what they
//! returned.

use std::collections::BTreeMap;

use super::message::ReplyError;
use crate::ids::{ClientId, Op, RequestNumber};

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
}
