//! Client sessions a shard thread holds on behalf of Redis connections.
//!
//! RESP has no client ids or request numbers, so the node is the VSR client: each shard thread
//! keeps one session per target shard, registered through consensus like any client's, and
//! numbers the requests of all its RESP connections in that session. Requests travel in order
//! (the thread's own replica, a mailbox, a replica link), so several may be in flight; a
//! request that gets no answer is resent with the same number, which the replicas deduplicate.
//! A request that stays unanswered through a failover fails with `TRYAGAIN`: a session keeps
//! only its latest reply, so an older request's reply may be gone.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chronon_engine::ids::{ClientId, ClusterId, RequestNumber, ShardId, View};
use chronon_engine::vsr::{Endpoint, Envelope, Message, Reply, ReplyError, Request, RequestKind};

/// How long a request waits for its reply before it is resent.
pub const RESEND_AFTER: Duration = Duration::from_millis(500);

/// Resends before a request fails with `TRYAGAIN`.
pub const ATTEMPTS_MAX: u32 = 20;

/// Where a result goes: a connection, and the command's slot in that connection's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    pub conn: usize,
    pub command: u64,
    pub part: usize,
}

/// What became of a request.
pub type Outcome = Result<Vec<u8>, ReplyError>;

#[derive(Debug)]
struct InFlight {
    tag: Tag,
    body: Vec<u8>,
    sent_at: Instant,
    attempts: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Unregistered,
    Registering { sent_at: Instant, attempts: u32 },
    Ready,
}

/// One session towards one shard.
#[derive(Debug)]
pub struct Proxy {
    cluster: ClusterId,
    shard: ShardId,
    client: ClientId,
    state: State,
    next: u64,
    view: View,
    in_flight: BTreeMap<u64, InFlight>,
    waiting: VecDeque<(Tag, Vec<u8>)>,
}

impl Proxy {
    #[must_use]
    pub fn new(cluster: ClusterId, shard: ShardId, client: ClientId) -> Proxy {
        Proxy {
            cluster,
            shard,
            client,
            state: State::Unregistered,
            next: 1,
            view: View(0),
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
        }
    }

    #[must_use]
    pub fn client(&self) -> ClientId {
        self.client
    }

    fn envelope(&self, request: u64, kind: RequestKind, body: Vec<u8>) -> Envelope {
        Envelope::seal(
            self.cluster,
            self.shard,
            self.view,
            Endpoint::Client(self.client),
            Message::Request(Request {
                client: self.client,
                request: RequestNumber(request),
                kind,
                body,
            }),
        )
    }

    fn registration(&self) -> Envelope {
        self.envelope(0, RequestKind::Register, Vec::new())
    }

    /// Queues a command body; returns the envelopes to send now.
    pub fn submit(&mut self, tag: Tag, body: Vec<u8>, now: Instant, out: &mut Vec<Envelope>) {
        match self.state {
            State::Ready => self.send(tag, body, now, out),
            State::Registering { .. } => self.waiting.push_back((tag, body)),
            State::Unregistered => {
                self.waiting.push_back((tag, body));
                self.state = State::Registering {
                    sent_at: now,
                    attempts: 1,
                };
                out.push(self.registration());
            }
        }
    }

    fn send(&mut self, tag: Tag, body: Vec<u8>, now: Instant, out: &mut Vec<Envelope>) {
        let number = self.next;
        self.next += 1;
        out.push(self.envelope(number, RequestKind::Command, body.clone()));
        self.in_flight.insert(
            number,
            InFlight {
                tag,
                body,
                sent_at: now,
                attempts: 1,
            },
        );
    }

    /// Takes a reply for this session. Results go to `done`; envelopes to send go to `out`.
    pub fn on_reply(
        &mut self,
        reply: Reply,
        now: Instant,
        out: &mut Vec<Envelope>,
        done: &mut Vec<(Tag, Outcome)>,
    ) {
        if reply.client != self.client {
            return;
        }
        if let Err(ReplyError::NotPrimary { view }) = &reply.result {
            // The request reached a replica that is not primary: retry soon, via the newer view.
            self.view = self.view.max(*view);
            return;
        }
        if let Err(ReplyError::NoSession) = &reply.result {
            self.evicted(done);
            return;
        }
        if reply.request == RequestNumber(0) {
            if matches!(self.state, State::Registering { .. }) && reply.result.is_ok() {
                self.state = State::Ready;
                while let Some((tag, body)) = self.waiting.pop_front() {
                    self.send(tag, body, now, out);
                }
            }
            return;
        }
        if let Some(in_flight) = self.in_flight.remove(&reply.request.0) {
            done.push((in_flight.tag, reply.result));
        }
    }

    /// The session was evicted: everything in flight fails, and a new session (new id) starts
    /// with the next command.
    fn evicted(&mut self, done: &mut Vec<(Tag, Outcome)>) {
        for (_, in_flight) in std::mem::take(&mut self.in_flight) {
            done.push((in_flight.tag, Err(ReplyError::NoSession)));
        }
        for (tag, _) in self.waiting.drain(..) {
            done.push((tag, Err(ReplyError::NoSession)));
        }
        self.client = ClientId(self.client.0.wrapping_add(0x9e37_79b9_7f4a_7c15) | 1);
        self.state = State::Unregistered;
        self.next = 1;
    }

    /// Resends what waited too long, and fails what waited through too many attempts.
    pub fn on_tick(
        &mut self,
        now: Instant,
        out: &mut Vec<Envelope>,
        done: &mut Vec<(Tag, Outcome)>,
    ) {
        if let State::Registering { sent_at, attempts } = self.state
            && now.duration_since(sent_at) >= RESEND_AFTER
        {
            if attempts >= ATTEMPTS_MAX {
                for (tag, _) in self.waiting.drain(..) {
                    done.push((tag, Err(unavailable())));
                }
                self.state = State::Unregistered;
            } else {
                self.state = State::Registering {
                    sent_at: now,
                    attempts: attempts + 1,
                };
                out.push(self.registration());
            }
        }
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.duration_since(f.sent_at) >= RESEND_AFTER)
            .map(|(n, _)| *n)
            .collect();
        for number in due {
            let Some(in_flight) = self.in_flight.get_mut(&number) else {
                continue;
            };
            if in_flight.attempts >= ATTEMPTS_MAX {
                let failed = self.in_flight.remove(&number).expect("present");
                done.push((failed.tag, Err(unavailable())));
                continue;
            }
            in_flight.attempts += 1;
            in_flight.sent_at = now;
            let body = in_flight.body.clone();
            out.push(self.envelope(number, RequestKind::Command, body));
        }
    }

    /// Forgets the results owed to a closed connection (their requests still run).
    pub fn forget_conn(&mut self, conn: usize) {
        self.waiting.retain(|(tag, _)| tag.conn != conn);
        for in_flight in self.in_flight.values_mut() {
            if in_flight.tag.conn == conn {
                in_flight.tag.conn = usize::MAX;
            }
        }
    }
}

fn unavailable() -> ReplyError {
    ReplyError::Rejected(
        "TRYAGAIN the shard did not answer (a failover may be in progress); retry".to_owned(),
    )
}
