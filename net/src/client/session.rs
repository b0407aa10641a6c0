//! One client session on one shard: its id, its request numbers and its connection, and the
//! retry loop that carries one request to whichever replica is primary.
//!
//! A session has at most one request in flight. The cluster keeps only a session's latest
//! reply, and ignores a request numbered below the latest applied one, so a second request in
//! flight could hide the first one's reply for ever.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::vsr::{Endpoint, Envelope, Message, ReplyError, Request, RequestKind};
use chronon_engine::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId, View};

use super::connection::{Connection, remaining};
use super::{ClientConfig, ClientError};
use crate::backoff::Backoff;
use crate::constants::{CLIENT_RETRY_PAUSE_MAX_MS, CLIENT_RETRY_PAUSE_MIN_MS, FRAME_PAYLOAD_MAX};
use crate::error::NetError;
use crate::wire::encode_envelope_frame;

/// What one call needs to know about its shard; shared by the shard's sessions.
#[derive(Clone, Copy, Debug)]
pub(super) struct ShardContext<'a> {
    pub(super) config: &'a ClientConfig,
    pub(super) shard: ShardId,
    /// The latest view of the shard this client has heard of; only ever grows.
    pub(super) view: &'a AtomicU64,
}

impl ShardContext<'_> {
    fn view(&self) -> View {
        View(self.view.load(Ordering::Relaxed))
    }

    fn learn(&self, view: View) {
        self.view.fetch_max(view.0, Ordering::Relaxed);
    }

    fn address(&self, host: ReplicaIndex) -> SocketAddr {
        self.config.addresses[usize::from(self.shard.0)][usize::from(host.0)]
    }
}

/// A random nonzero client id. Two clients that picked the same id would share a session and
/// read each other's replies, so it comes from std's randomly keyed hasher (seeded from the
/// operating system) over the time, the process and a counter.
fn random_client_id() -> ClientId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = std::hash::RandomState::new().hash_one((nanos, std::process::id(), count));
        if id != 0 {
            return ClientId(id);
        }
    }
}

/// Which host the next attempt goes to. After silence the request goes to the same host once
/// more (the reply may only have been lost), then on to the next hosts in turn (the primary
/// may have failed, or moved in a view change this client missed). A refused or broken
/// connection moves on at once; a `NotPrimary` reply jumps to the primary it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Route {
    pub(super) host: ReplicaIndex,
    replica_count: u8,
    /// Silent attempts at `host` since the call moved there.
    silent: u8,
    /// Failures in a row that cost no waiting (refusals, redirects).
    quick: u32,
}

impl Route {
    pub(super) fn new(host: ReplicaIndex, replica_count: u8) -> Route {
        assert!(replica_count > 0);
        assert!(host.0 < replica_count);
        Route {
            host,
            replica_count,
            silent: 0,
            quick: 0,
        }
    }

    pub(super) fn after_silence(&mut self) {
        self.quick = 0;
        if self.silent == 0 {
            self.silent = 1;
        } else {
            self.move_to(ReplicaIndex((self.host.0 + 1) % self.replica_count));
        }
    }

    pub(super) fn after_broken(&mut self) {
        self.quick += 1;
        self.move_to(ReplicaIndex((self.host.0 + 1) % self.replica_count));
    }

    pub(super) fn after_redirect(&mut self, primary: ReplicaIndex) {
        assert!(primary.0 < self.replica_count);
        self.quick += 1;
        self.move_to(primary);
    }

    /// True once every host has failed quickly in a row: wait before the next attempt.
    pub(super) fn should_pause(&self) -> bool {
        self.quick >= u32::from(self.replica_count)
    }

    fn move_to(&mut self, host: ReplicaIndex) {
        self.host = host;
        self.silent = 0;
    }
}

/// How one attempt ended.
enum Outcome {
    Reply {
        view: View,
        result: Result<Vec<u8>, ReplyError>,
    },
    /// The node serves another cluster, or has no such shard: no retry can help.
    Misdirected {
        cluster: ClusterId,
        shard_count: u16,
    },
    /// No reply before the attempt's deadline.
    Silent,
    /// No connection could be opened, so nothing was sent.
    Unreachable { error: String },
    /// The connection could not be opened, or failed. `reused`: it was an older connection,
    /// which the replica may simply have closed while idle, so the same host is worth a fresh
    /// one.
    Broken { reused: bool },
}

#[derive(Debug)]
pub(super) struct Session {
    client: ClientId,
    registered: bool,
    /// The number the next command gets. A number is used up by its call, whatever the
    /// outcome, so a retry after a timeout is never confused with the request that timed out.
    request_next: RequestNumber,
    connection: Option<Connection>,
    pause: Backoff,
}

impl Session {
    pub(super) fn new() -> Session {
        let client = random_client_id();
        Session {
            client,
            registered: false,
            request_next: RequestNumber(1),
            connection: None,
            pause: Backoff::new(
                Duration::from_millis(CLIENT_RETRY_PAUSE_MIN_MS),
                Duration::from_millis(CLIENT_RETRY_PAUSE_MAX_MS),
                client.0,
            ),
        }
    }

    /// Runs one command, registering the session first if it is new. Registration and
    /// command share one deadline, `call_timeout` from now.
    pub(super) fn execute(
        &mut self,
        context: &ShardContext<'_>,
        command: &KvCommand,
    ) -> Result<KvReply, ClientError> {
        let (bytes, host, request) =
            self.execute_raw(context, RequestKind::Command, command.encode())?;
        KvReply::decode(&bytes).ok_or_else(|| ClientError::BadReply {
            shard: context.shard,
            request,
            host,
            detail: format!("{} bytes that are not a key-value reply", bytes.len()),
        })
    }

    /// Runs one request of `kind` (a command or a kernel request) in this session; returns
    /// the reply's bytes, who sent them and the request's number.
    pub(super) fn execute_raw(
        &mut self,
        context: &ShardContext<'_>,
        kind: RequestKind,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, SocketAddr, RequestNumber), ClientError> {
        let deadline = Instant::now() + context.config.call_timeout;
        if !self.registered {
            let register = RequestKind::Register;
            self.call(context, register, RequestNumber(0), Vec::new(), deadline)?;
            self.registered = true;
        }
        let request = self.request_next;
        self.request_next = RequestNumber(request.0 + 1);
        let result = self.call(context, kind, request, body, deadline);
        match result {
            Ok((bytes, host)) => Ok((bytes, host, request)),
            Err(error) => {
                if matches!(error, ClientError::SessionEvicted { .. }) {
                    // This id is dead on the cluster. A fresh session (new id, new numbers)
                    // serves the next call; the failed request is never resent under it.
                    let connection = self.connection.take();
                    *self = Session::new();
                    self.connection = connection;
                }
                Err(error)
            }
        }
    }

    /// Carries one request until a replica answers it or `deadline` passes; every attempt
    /// sends the same (client, request). Returns the reply's bytes and who sent them.
    fn call(
        &mut self,
        context: &ShardContext<'_>,
        kind: RequestKind,
        request: RequestNumber,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Vec<u8>, SocketAddr), ClientError> {
        let shard = context.shard;
        let topology = &context.config.topology;
        let message = Message::Request(Request {
            client: self.client,
            request,
            kind,
            body,
        });
        let mut envelope = self.seal(context, message);
        let mut frame = encode_frame(&envelope, shard)?;
        let mut route = Route::new(
            topology.primary(shard, context.view()),
            topology.replica_count(),
        );
        let mut hosts = Vec::new();
        // Whether any attempt got as far as sending, and the last reason one could not: a call
        // that never connected ends in `Unreachable` (nothing sent), not `Timeout`.
        let mut sent = false;
        let mut unreachable = String::new();
        self.pause.reset();
        while let Some(left) = remaining(deadline) {
            if envelope.view != context.view() {
                envelope = self.seal(context, envelope.message);
                frame = encode_frame(&envelope, shard)?;
            }
            let address = context.address(route.host);
            if !hosts.contains(&address) {
                hosts.push(address);
            }
            let attempt_deadline = Instant::now() + left.min(context.config.attempt_timeout);
            let outcome = self.attempt(context, route.host, request, &frame, attempt_deadline);
            sent |= !matches!(outcome, Outcome::Unreachable { .. });
            match outcome {
                Outcome::Misdirected {
                    cluster,
                    shard_count,
                } => return Err(misdirected(context, address, cluster, shard_count)),
                Outcome::Reply { view, result } => {
                    context.learn(view);
                    match result {
                        Ok(bytes) => return Ok((bytes, address)),
                        Err(ReplyError::NotPrimary { view }) => {
                            route.after_redirect(topology.primary(shard, view));
                        }
                        Err(error) => return Err(reply_error(shard, self.client, request, error)),
                    }
                }
                Outcome::Silent => {
                    route.after_silence();
                    self.pause.reset();
                }
                Outcome::Broken { reused: true } => {}
                Outcome::Broken { reused: false } => route.after_broken(),
                Outcome::Unreachable { error } => {
                    unreachable = format!("{address}: {error}");
                    route.after_broken();
                }
            }
            if route.should_pause() {
                let pause = self.pause.next_delay();
                if let Some(left) = remaining(deadline) {
                    std::thread::sleep(pause.min(left));
                }
            }
        }
        if !sent && !unreachable.is_empty() {
            return Err(ClientError::Unreachable {
                shard,
                timeout: context.config.call_timeout,
                hosts,
                error: unreachable,
            });
        }
        Err(ClientError::Timeout {
            shard,
            client: self.client,
            request,
            timeout: context.config.call_timeout,
            hosts,
        })
    }

    fn seal(&self, context: &ShardContext<'_>, message: Message) -> Envelope {
        Envelope::seal(
            context.config.topology.cluster,
            context.shard,
            context.view(),
            Endpoint::Client(self.client),
            message,
        )
    }

    /// Sends the frame to `host` (over the open connection if it is there) and waits for the
    /// reply to this very request until `deadline`.
    fn attempt(
        &mut self,
        context: &ShardContext<'_>,
        host: ReplicaIndex,
        request: RequestNumber,
        frame: &[u8],
        deadline: Instant,
    ) -> Outcome {
        let reused = self.connection.as_ref().is_some_and(|c| c.host == host);
        if !reused {
            self.connection = None;
            match Connection::open(host, context.address(host), deadline) {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => {
                    return Outcome::Unreachable {
                        error: error.to_string(),
                    };
                }
            }
        }
        let client = self.client;
        let connection = self
            .connection
            .as_mut()
            .expect("invariant: connected to the attempt's host above");
        if connection.send(frame, deadline).is_err() {
            self.connection = None;
            return Outcome::Broken { reused };
        }
        loop {
            match connection.receive(deadline) {
                Ok(None) => return Outcome::Silent,
                Ok(Some(envelope)) => {
                    if let Some(outcome) = reply_to(context, client, request, envelope) {
                        return outcome;
                    }
                }
                Err(_) => {
                    self.connection = None;
                    return Outcome::Broken { reused };
                }
            }
        }
    }
}

/// The envelope's reply if it is an intact reply from a replica of this shard to this
/// very request. Anything else (a late reply to an earlier request, a corrupt frame) is
/// dropped. A `Misdirected` refusal comes from a node of another cluster or another shape, so
/// its cluster and shard are not this call's: it is taken on the client and request alone.
fn reply_to(
    context: &ShardContext<'_>,
    client: ClientId,
    request: RequestNumber,
    envelope: Envelope,
) -> Option<Outcome> {
    if !envelope.is_intact() || !matches!(envelope.from, Endpoint::Replica(_)) {
        return None;
    }
    let Message::Reply(reply) = envelope.message else {
        return None;
    };
    if reply.client != client || reply.request != request {
        return None;
    }
    if let Err(ReplyError::Misdirected {
        cluster,
        shard_count,
    }) = reply.result
    {
        return Some(Outcome::Misdirected {
            cluster,
            shard_count,
        });
    }
    if envelope.cluster != context.config.topology.cluster || envelope.shard != context.shard {
        return None;
    }
    Some(Outcome::Reply {
        view: envelope.view,
        result: reply.result,
    })
}

/// The error for a node's `Misdirected` refusal: the cluster id is wrong if the node's differs,
/// else the client's shard count is (it routed the key to a shard the node lacks).
fn misdirected(
    context: &ShardContext<'_>,
    host: SocketAddr,
    node_cluster: ClusterId,
    shard_count: u16,
) -> ClientError {
    let cluster = context.config.topology.cluster;
    if node_cluster == cluster {
        ClientError::WrongShard {
            host,
            shard: context.shard,
            shard_count,
        }
    } else {
        ClientError::WrongCluster {
            host,
            node_cluster,
            cluster,
        }
    }
}

fn encode_frame(envelope: &Envelope, shard: ShardId) -> Result<Vec<u8>, ClientError> {
    let mut frame = Vec::new();
    match encode_envelope_frame(envelope, FRAME_PAYLOAD_MAX, &mut frame) {
        Ok(()) => Ok(frame),
        Err(NetError::FrameTooLarge { size, max }) => Err(ClientError::TooLarge {
            shard,
            size,
            max: max as u64,
        }),
        Err(error) => unreachable!("invariant: encoding fails only on size: {error}"),
    }
}

fn reply_error(
    shard: ShardId,
    client: ClientId,
    request: RequestNumber,
    error: ReplyError,
) -> ClientError {
    match error {
        ReplyError::NoSession => ClientError::SessionEvicted {
            shard,
            client,
            request,
        },
        ReplyError::Rejected(reason) => ClientError::Rejected {
            shard,
            request,
            reason,
        },
        ReplyError::TooLarge { size, max } => ClientError::TooLarge {
            shard,
            size: size as u64,
            max: max as u64,
        },
        ReplyError::NotPrimary { .. } => unreachable!("invariant: redirects are retried"),
        ReplyError::Misdirected { .. } => unreachable!("invariant: refusals end the call first"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The retry schedule, table-driven over one call's events: silence retries the same host
    // once and then walks the others in turn; a refusal moves on at once; a redirect jumps to
    // the named primary; a pause is due only after every host failed quickly in a row.
    #[test]
    fn route_schedule() {
        #[derive(Clone, Copy)]
        enum Event {
            Silent,
            Broken,
            Redirect(u8),
        }
        let cases: [(&[Event], u8, bool); 6] = [
            (&[], 1, false),
            (&[Event::Silent], 1, false),
            (&[Event::Silent, Event::Silent], 2, false),
            (&[Event::Silent, Event::Silent, Event::Silent], 2, false),
            (&[Event::Broken, Event::Broken], 0, false),
            (
                &[Event::Redirect(2), Event::Broken, Event::Redirect(0)],
                0,
                true,
            ),
        ];
        for (events, host, pause) in cases {
            let mut route = Route::new(ReplicaIndex(1), 3);
            for event in events {
                match *event {
                    Event::Silent => route.after_silence(),
                    Event::Broken => route.after_broken(),
                    Event::Redirect(to) => route.after_redirect(ReplicaIndex(to)),
                }
            }
            assert_eq!(
                route.host,
                ReplicaIndex(host),
                "after {} events",
                events.len()
            );
            assert_eq!(route.should_pause(), pause, "after {} events", events.len());
        }
    }

    #[test]
    fn client_ids_are_nonzero_and_distinct() {
        let ids: Vec<ClientId> = (0..64).map(|_| random_client_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_ne!(id.0, 0);
            assert!(!ids[..i].contains(id));
        }
    }
}
