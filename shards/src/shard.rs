//! One shard's thread: its replica, its journal, its listeners and connections, driven by one
//! readiness loop. The replica is the same `chronon-engine` code the simulator runs; this file
//! only moves bytes and time to and from it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronon_disk::{AnyDisk, DiskChoice};
use chronon_engine::app::kv::KvStore;
use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::constants::{
    BATCH_REQUESTS_MAX, HEADER_SIZE, REQUEST_QUEUE_MAX, SESSIONS_MAX_DEFAULT,
    SLOT_COUNT_CHECKPOINT_MIN,
};
use chronon_engine::ids::{ClientId, ReplicaIndex, ShardId, Timestamp, View};
use chronon_engine::log::{Journal, JournalError};
use chronon_engine::vsr::{
    Action, Endpoint, Envelope, Input, JournalHost, Message, Replica, ReplicaConfig, ReplyError,
    Timeouts,
};
use chronon_net::constants::FRAME_PAYLOAD_MAX;
use chronon_net::frame::FrameKind;
use chronon_net::resp::{
    Execution, KvPlan, KvResult, NodeView, RespCommand, RespLimits, RespParser, RespSession,
    RespValue,
};
use chronon_net::{Backoff, FrameDecoder, Hello, Topology};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::conn::{Conn, ReadOutcome};
use crate::eventfd::EventFd;
use crate::proxy::{Outcome, Proxy, Tag};

/// How often the replica's clock ticks (its timeouts are counted in ticks).
pub const TICK: Duration = Duration::from_millis(10);

/// Bytes a replica link may have queued before messages to that peer are dropped (the
/// protocol retransmits what matters): backpressure instead of unbounded buffering.
pub const PEER_BUFFER_MAX: usize = 32 * 1024 * 1024;

const REPLICA_LISTENER: Token = Token(0);
const NATIVE_LISTENER: Token = Token(1);
const RESP_LISTENER: Token = Token(2);
pub(crate) const WAKER: Token = Token(3);
const DISK: Token = Token(4);
const PEER_BASE: usize = 16;
const CONN_BASE: usize = 1024;

/// Polls with a zero timeout this many times after work before blocking: a short spin that
/// catches the next message of a busy connection without a sleep and wakeup.
const SPIN_POLLS: u32 = 16;

/// What one shard's thread needs to start.
#[derive(Clone, Debug)]
pub struct ShardSetup {
    pub topology: Topology,
    pub host: ReplicaIndex,
    pub shard: ShardId,
    pub data_file: PathBuf,
    pub disk: DiskChoice,
}

impl ShardSetup {
    /// An error about this shard's data file.
    fn open_error(&self, detail: String) -> ShardError {
        ShardError::Open {
            shard: self.shard,
            file: self.data_file.display().to_string(),
            detail,
        }
    }
}

/// A message between the shards of one process.
#[derive(Debug)]
pub(crate) struct Mail {
    pub from_shard: u16,
    pub envelope: Envelope,
}

/// The shards' inboxes, for sending mail to any of them, and each shard's latest view (for
/// the `CLUSTER` replies, which name every shard's primary).
#[derive(Clone, Debug)]
pub(crate) struct Post {
    pub boxes: Vec<(Sender<Mail>, Arc<Waker>)>,
    pub views: Arc<Vec<AtomicU64>>,
}

/// Why a shard could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("shard {shard}: cannot listen on {address}: {source}; {hint}")]
    Listen {
        shard: ShardId,
        address: SocketAddr,
        source: io::Error,
        hint: &'static str,
    },
    #[error("shard {shard}: {file}: {detail}")]
    Open {
        shard: ShardId,
        file: String,
        detail: String,
    },
    #[error(
        "shard {shard}: the journal failed: {source}. The shard stopped to lose nothing \
         acknowledged; check the disk, then restart the node"
    )]
    Journal {
        shard: ShardId,
        source: JournalError,
    },
    #[error("shard {shard}: {detail}")]
    Io { shard: ShardId, detail: String },
}

/// Where the reply for a client goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Conn(Token),
    Peer(u8),
    Shard(u16),
    /// A proxy session of this thread (on behalf of RESP connections).
    Local,
}

/// A RESP command waiting for its turn to be answered (replies go out in command order).
#[derive(Debug)]
struct Pending {
    seq: u64,
    state: PendingState,
    close_after: bool,
}

#[derive(Debug)]
enum PendingState {
    Ready(RespValue),
    Waiting {
        plan: KvPlan,
        results: Vec<Vec<Option<KvResult>>>,
        missing: usize,
    },
}

#[derive(Debug)]
struct RespState {
    session: RespSession,
    queue: VecDeque<Pending>,
    next_seq: u64,
    closing: bool,
}

#[derive(Debug)]
enum ConnKind {
    /// A replica link another host dialed; `peer` once its hello checked out.
    InboundPeer {
        peer: Option<u8>,
    },
    Native,
    Resp(Box<RespState>),
}

#[derive(Debug)]
struct Connection {
    conn: Conn,
    kind: ConnKind,
    decoder: FrameDecoder,
}

#[derive(Debug)]
enum PeerState {
    Idle { retry_at: Instant },
    Connecting,
    Connected,
}

/// The link this shard dials to the same shard on another host (outbound messages only).
#[derive(Debug)]
struct Peer {
    address: SocketAddr,
    state: PeerState,
    conn: Option<Conn>,
    decoder: FrameDecoder,
    backoff: Backoff,
    /// The last failure logged, so a peer that stays down is reported once, not per retry.
    last_problem: Option<String>,
    /// Messages dropped because the link was down or its buffer full (shown by `INFO`).
    dropped: u64,
}

/// One shard's runtime.
#[derive(Debug)]
pub(crate) struct Shard {
    setup: ShardSetup,
    /// Held while the shard runs: an exclusive lock on its data file.
    _lock: std::fs::File,
    hello: Hello,
    replica: Replica<KvStore>,
    host: JournalHost<AnyDisk>,
    poll: Poll,
    disk_signal: Option<EventFd>,
    listeners: Vec<(Token, TcpListener)>,
    peers: Vec<Option<Peer>>,
    conns: BTreeMap<Token, Connection>,
    next_conn: usize,
    routes: BTreeMap<ClientId, Route>,
    post: Post,
    inbox: Receiver<Mail>,
    proxies: Vec<Proxy>,
    resp_parser: RespParser,
    actions: Vec<Action>,
    /// Where sockets are read into before their bytes join a connection's buffer.
    scratch: Vec<u8>,
    next_tick: Instant,
    frame: Vec<u8>,
}

fn listen(shard: ShardId, address: SocketAddr) -> Result<TcpListener, ShardError> {
    TcpListener::bind(address).map_err(|source| {
        let hint = if source.kind() == io::ErrorKind::AddrInUse {
            "another process holds this port: stop it, or choose other --addresses"
        } else {
            "check the address in --addresses"
        };
        ShardError::Listen {
            shard,
            address,
            source,
            hint,
        }
    })
}

/// The links this shard dials, one per other host.
fn peers(setup: &ShardSetup) -> Vec<Option<Peer>> {
    let (topology, shard) = (&setup.topology, setup.shard);
    (0..topology.replica_count())
        .map(|r| {
            (r != setup.host.0).then(|| Peer {
                address: topology.replica_addr(ReplicaIndex(r), shard),
                state: PeerState::Idle {
                    retry_at: Instant::now(),
                },
                conn: None,
                decoder: FrameDecoder::new(FRAME_PAYLOAD_MAX),
                backoff: Backoff::new(
                    Duration::from_millis(20),
                    Duration::from_secs(2),
                    u64::from(r) ^ (u64::from(shard.0) << 8) ^ 0x5eed,
                ),
                last_problem: None,
                dropped: 0,
            })
        })
        .collect()
}

/// This thread's sessions towards every shard, with ids unlikely to repeat across restarts.
fn proxies(topology: &Topology, shard: ShardId) -> Vec<Proxy> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (0..topology.shard_count)
        .map(|t| {
            let id = nanos ^ (u64::from(shard.0) << 48) ^ (u64::from(t) << 32) ^ 0x5e55;
            Proxy::new(topology.cluster, ShardId(t), ClientId(id | 1))
        })
        .collect()
}

/// A recovered replica, its journal, the actions recovery asked for, and the data file's lock.
type Recovered = (
    Replica<KvStore>,
    Journal<AnyDisk>,
    Vec<Action>,
    std::fs::File,
);

/// Opens a shard's data file, checks it belongs here, and recovers its replica.
fn recover(setup: &ShardSetup) -> Result<Recovered, ShardError> {
    let shard = setup.shard;
    let topology = &setup.topology;
    let open_error = |detail: String| setup.open_error(detail);
    // One process per data file: a second node on the same directory would write the same log.
    let lock = std::fs::File::open(&setup.data_file)
        .map_err(|e| open_error(format!("cannot open: {e}")))?;
    if let Err(error) = lock.try_lock() {
        return Err(open_error(match error {
            std::fs::TryLockError::WouldBlock => "another process is using this data file (is \
                                                  a node already running on this data \
                                                  directory?)"
                .to_owned(),
            std::fs::TryLockError::Error(e) => format!("cannot lock: {e}"),
        }));
    }
    let (disk, warning) =
        chronon_disk::open(&setup.data_file, setup.disk).map_err(|e| open_error(e.to_string()))?;
    if let Some(cause) = warning {
        tracing::warn!(%shard, "falling back to the sync disk: {cause}");
    }
    let (journal, report) =
        Journal::open(disk).map_err(|e| open_error(format!("recovery failed: {e}")))?;
    let superblock = report.superblock;
    if superblock.cluster != topology.cluster {
        return Err(open_error(format!(
            "the file belongs to cluster {}, but this node was started for cluster {}; \
                 check --cluster or the data directory",
            superblock.cluster, topology.cluster
        )));
    }
    if superblock.replica != setup.host
        || superblock.replica_count != topology.replica_count()
        || superblock.shard != shard
    {
        return Err(open_error(format!(
            "the file was formatted for replica {} of {} (shard {}), but this node is \
                 replica {} of {} (shard {}); check --addresses and the data directory",
            superblock.replica,
            superblock.replica_count,
            superblock.shard,
            setup.host,
            topology.replica_count(),
            shard
        )));
    }
    if !report.analysis.faulty.is_empty() {
        tracing::warn!(
            %shard,
            faulty = report.analysis.faulty.len(),
            "recovery found faulty entries; they will be repaired from the other replicas"
        );
    }
    let mut journal = journal;
    let recovered = chronon_engine::vsr::host::recovered(&mut journal, &report)
        .map_err(|e| open_error(format!("reading the log: {e}")))?;
    let log_ops_max = superblock.config.ops_beyond_checkpoint_max();
    if ReplicaConfig::checkpoint_interval_max(log_ops_max) == 0 {
        return Err(open_error(format!(
            "the log ring has {} slots, too few to checkpoint (at least {} are needed); \
             reformat with a larger --slot-count",
            superblock.config.slot_count, SLOT_COUNT_CHECKPOINT_MIN
        )));
    }
    let config = ReplicaConfig {
        cluster: topology.cluster,
        shard,
        replica: setup.host,
        replica_count: topology.replica_count(),
        sessions_max: SESSIONS_MAX_DEFAULT,
        body_max: superblock.config.slot_size as usize - HEADER_SIZE,
        batch_requests_max: BATCH_REQUESTS_MAX,
        request_queue_max: REQUEST_QUEUE_MAX,
        timeouts: Timeouts::default(),
        checkpoint_interval: ReplicaConfig::checkpoint_interval_max(log_ops_max),
        log_ops_max,
        record_applied: false,
        bug: None,
    };
    let mut actions = Vec::new();
    let replica = Replica::recover(config, KvStore, recovered, &mut actions)
        .map_err(|e| open_error(e.to_string()))?;
    Ok((replica, journal, actions, lock))
}

impl Shard {
    /// Opens the shard's data file, recovers its replica and binds its ports.
    pub fn open(
        setup: ShardSetup,
        poll: Poll,
        post: Post,
        inbox: Receiver<Mail>,
    ) -> Result<Shard, ShardError> {
        let shard = setup.shard;
        let topology = &setup.topology;
        let open_error = |detail: String| setup.open_error(detail);
        let (replica, journal, actions, lock) = recover(&setup)?;
        let mut host = JournalHost::new(journal);
        let disk_signal =
            EventFd::new().map_err(|e| open_error(format!("creating an eventfd: {e}")))?;
        let signalled = host
            .journal()
            .disk()
            .register_eventfd(disk_signal.as_raw_fd())
            .map_err(|e| open_error(format!("registering the disk's eventfd: {e}")))?;
        let disk_signal = if signalled {
            poll.registry()
                .register(
                    &mut SourceFd(&disk_signal.as_raw_fd()),
                    DISK,
                    Interest::READABLE,
                )
                .map_err(|e| open_error(format!("polling the disk's eventfd: {e}")))?;
            Some(disk_signal)
        } else {
            None
        };
        let mut listeners = Vec::new();
        for (token, address) in [
            (REPLICA_LISTENER, topology.replica_addr(setup.host, shard)),
            (NATIVE_LISTENER, topology.native_addr(setup.host, shard)),
            (RESP_LISTENER, topology.resp_addr(setup.host, shard)),
        ] {
            let mut listener = listen(shard, address)?;
            poll.registry()
                .register(&mut listener, token, Interest::READABLE)
                .map_err(|e| ShardError::Io {
                    shard,
                    detail: format!("registering {address}: {e}"),
                })?;
            listeners.push((token, listener));
        }
        let peers = peers(&setup);
        host.enqueue(&actions);
        let hello = Hello::new(
            topology.cluster,
            topology.shard_count,
            setup.host,
            topology.replica_count(),
        );
        tracing::info!(
            %shard,
            view = %replica.view(),
            op = %replica.op(),
            commit = %replica.commit_max(),
            status = ?replica.status(),
            disk = host.journal().disk().kind_name(),
            "shard recovered"
        );
        let proxies = proxies(topology, shard);
        let mut shard_runtime = Shard {
            _lock: lock,
            setup,
            hello,
            replica,
            host,
            poll,
            disk_signal,
            listeners,
            peers,
            conns: BTreeMap::new(),
            next_conn: CONN_BASE,
            routes: BTreeMap::new(),
            proxies,
            post,
            inbox,
            resp_parser: RespParser::new(RespLimits::default()),
            actions: Vec::new(),
            scratch: vec![0; crate::conn::READ_CHUNK],
            next_tick: Instant::now(),
            frame: Vec::new(),
        };
        // Recovery's sends (a restarted primary's start_view_change) go out once links are up;
        // its journal work is queued above.
        shard_runtime.route_sends(actions);
        Ok(shard_runtime)
    }

    /// Runs until `stop` is set, then lets queued journal work settle.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), ShardError> {
        let mut events = Events::with_capacity(1024);
        let mut spins = 0;
        while !stop.load(Ordering::Relaxed) {
            let timeout = if spins > 0 {
                Duration::ZERO
            } else {
                self.idle_timeout()
            };
            if let Err(error) = self.poll.poll(&mut events, Some(timeout))
                && error.kind() != io::ErrorKind::Interrupted
            {
                return Err(ShardError::Io {
                    shard: self.setup.shard,
                    detail: format!("epoll failed: {error}"),
                });
            }
            let busy = !events.is_empty();
            for event in &events {
                self.on_event(event.token(), event.is_readable(), event.is_writable());
            }
            self.read_inbox();
            self.tick_if_due();
            self.pump_journal()?;
            self.dial_peers();
            spins = if busy {
                SPIN_POLLS
            } else {
                spins.saturating_sub(1)
            };
        }
        self.settle()
    }

    /// How long the loop may sleep: until the next tick or peer retry, or not at all while the
    /// journal's I/O completes without a doorbell (the sync disk).
    fn idle_timeout(&self) -> Duration {
        let now = Instant::now();
        if self.disk_signal.is_none() && !self.host.is_idle() {
            return Duration::ZERO;
        }
        let mut wake = self.next_tick;
        for peer in self.peers.iter().flatten() {
            if let PeerState::Idle { retry_at } = peer.state {
                wake = wake.min(retry_at);
            }
        }
        wake.saturating_duration_since(now)
    }

    fn settle(mut self) -> Result<(), ShardError> {
        let shard = self.setup.shard;
        let journal_error = |source| ShardError::Journal { shard, source };
        let mut inputs = Vec::new();
        for _ in 0..10_000 {
            self.host.run(&mut inputs).map_err(journal_error)?;
            if self.host.backlog() == 0 {
                break;
            }
        }
        self.host.journal_mut().sync().map_err(journal_error)?;
        tracing::info!(%shard, op = %self.replica.op(), "shard stopped");
        Ok(())
    }

    fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        match token {
            REPLICA_LISTENER | NATIVE_LISTENER | RESP_LISTENER => self.accept(token),
            WAKER => {}
            DISK => {
                if let Some(signal) = &self.disk_signal {
                    signal.drain();
                }
            }
            Token(t) if (PEER_BASE..CONN_BASE).contains(&t) => {
                self.on_peer_event((t - PEER_BASE) as u8, readable, writable);
            }
            token => self.on_conn_event(token, readable, writable),
        }
    }

    fn accept(&mut self, token: Token) {
        loop {
            let index = self
                .listeners
                .iter()
                .position(|(t, _)| *t == token)
                .expect("invariant: a listener token");
            let (mut stream, _) = match self.listeners[index].1.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(shard = %self.setup.shard, "accept failed: {e}");
                    return;
                }
            };
            let kind = match token {
                REPLICA_LISTENER => ConnKind::InboundPeer { peer: None },
                NATIVE_LISTENER => ConnKind::Native,
                _ => ConnKind::Resp(Box::new(RespState {
                    session: RespSession::new(
                        (u64::from(self.setup.shard.0) << 40) | self.next_conn as u64,
                    ),
                    queue: VecDeque::new(),
                    next_seq: 0,
                    closing: false,
                })),
            };
            let _ = stream.set_nodelay(true);
            let conn_token = Token(self.next_conn);
            self.next_conn += 1;
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                conn_token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(shard = %self.setup.shard, "registering a connection: {e}");
                continue;
            }
            self.conns.insert(
                conn_token,
                Connection {
                    conn: Conn::new(stream),
                    kind,
                    decoder: FrameDecoder::new(FRAME_PAYLOAD_MAX),
                },
            );
        }
    }

    fn close_conn(&mut self, token: Token) {
        if let Some(mut connection) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut connection.conn.stream);
            self.routes.retain(|_, route| *route != Route::Conn(token));
            if matches!(connection.kind, ConnKind::Resp(_)) {
                for proxy in &mut self.proxies {
                    proxy.forget_conn(token.0);
                }
            }
        }
    }

    fn on_conn_event(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(connection) = self.conns.get_mut(&token) else {
            return;
        };
        if writable && connection.conn.flush().is_err() {
            self.close_conn(token);
            return;
        }
        if !readable {
            return;
        }
        let closed = connection.conn.read_available(&mut self.scratch) == ReadOutcome::Closed;
        if matches!(connection.kind, ConnKind::Resp(_)) {
            self.on_resp_input(token);
            if closed {
                self.close_conn(token);
            }
            return;
        }
        let bytes = std::mem::take(&mut connection.conn.read);
        let mut input = bytes.as_slice();
        let mut frames = Vec::new();
        let mut failed = None;
        while !input.is_empty() {
            match connection.decoder.push(&mut input) {
                Ok(Some(frame)) => frames.push((frame.kind, frame.payload.to_vec())),
                Ok(None) => {}
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        for (kind, payload) in frames {
            if !self.on_conn_frame(token, kind, &payload) {
                self.close_conn(token);
                return;
            }
        }
        if let Some(error) = failed {
            tracing::debug!(shard = %self.setup.shard, "closing a connection: {error}");
            self.close_conn(token);
        } else if closed {
            self.close_conn(token);
        }
    }

    /// Handles one frame from a connection; false closes it.
    fn on_conn_frame(&mut self, token: Token, kind: FrameKind, payload: &[u8]) -> bool {
        let shard = self.setup.shard;
        let Some(connection) = self.conns.get_mut(&token) else {
            return false;
        };
        match (&mut connection.kind, kind) {
            (ConnKind::InboundPeer { peer: peer @ None }, FrameKind::Hello) => {
                let theirs = match Hello::decode(payload) {
                    Ok(hello) => hello,
                    Err(error) => {
                        tracing::warn!(%shard, "refused a replica link: {error}");
                        return false;
                    }
                };
                let mut reply = Vec::new();
                self.hello.encode_frame(&mut reply);
                let _ = connection.conn.queue(&reply);
                let _ = connection.conn.flush();
                if let Err(error) = self.hello.check_peer(&theirs, None) {
                    tracing::error!(%shard, "refused a replica link: {error}");
                    return false;
                }
                *peer = Some(theirs.replica.0);
                true
            }
            (ConnKind::InboundPeer { peer: Some(peer) }, FrameKind::Envelope) => {
                let peer = *peer;
                match chronon_net::wire::decode_envelope(payload) {
                    Ok(envelope) => {
                        self.on_envelope(envelope, Route::Peer(peer));
                        true
                    }
                    Err(error) => {
                        tracing::debug!(%shard, peer, "undecodable envelope: {error}");
                        false
                    }
                }
            }
            (ConnKind::Native, FrameKind::Envelope) => {
                match chronon_net::wire::decode_envelope(payload) {
                    Ok(envelope) if matches!(envelope.message, Message::Request(_)) => {
                        self.on_envelope(envelope, Route::Conn(token));
                        true
                    }
                    Ok(_) | Err(_) => false,
                }
            }
            _ => false,
        }
    }

    /// An envelope from a connection, a peer or another shard of this process.
    fn on_envelope(&mut self, envelope: Envelope, source: Route) {
        match (&envelope.message, envelope.from) {
            (Message::Reply(reply), _) => {
                let client = reply.client;
                self.deliver(client, &envelope);
            }
            (Message::Request(request), Endpoint::Client(id)) if request.client == id => {
                self.routes.insert(id, source);
                if envelope.shard != self.setup.shard {
                    if envelope.shard.0 < self.setup.topology.shard_count {
                        self.mail(envelope.shard.0, envelope);
                    }
                    return;
                }
                // A proxy's request is carried to the primary over the replica link, so a
                // RESP client can use any port; a native client is redirected instead.
                let proxied = matches!(source, Route::Local | Route::Shard(_));
                if proxied && !self.replica.is_primary() {
                    let view = self.replica.view().max(envelope.view);
                    let primary = self.setup.topology.primary(self.setup.shard, view);
                    if primary != self.setup.host {
                        self.send_to_peer(primary.0, &envelope);
                        return;
                    }
                }
                self.step(Input::Message(envelope));
            }
            (_, Endpoint::Replica(_)) if envelope.shard == self.setup.shard => {
                self.step(Input::Message(envelope));
            }
            _ => {}
        }
    }

    /// Sends a reply envelope towards the client it names.
    fn deliver(&mut self, client: ClientId, envelope: &Envelope) {
        match self.routes.get(&client).copied() {
            Some(Route::Conn(token)) => {
                self.frame.clear();
                if chronon_net::wire::encode_envelope_frame(
                    envelope,
                    FRAME_PAYLOAD_MAX,
                    &mut self.frame,
                )
                .is_err()
                {
                    return;
                }
                let Some(connection) = self.conns.get_mut(&token) else {
                    return;
                };
                if !connection.conn.queue(&self.frame) || connection.conn.flush().is_err() {
                    self.close_conn(token);
                }
            }
            Some(Route::Peer(peer)) => self.send_to_peer(peer, envelope),
            Some(Route::Shard(shard)) => self.mail(shard, envelope.clone()),
            Some(Route::Local) => {
                if let Message::Reply(reply) = &envelope.message {
                    self.on_proxy_reply(reply.clone());
                }
            }
            None => {}
        }
    }

    fn mail(&mut self, shard: u16, envelope: Envelope) {
        let from_shard = self.setup.shard.0;
        if let Some((sender, waker)) = self.post.boxes.get(usize::from(shard))
            && sender
                .send(Mail {
                    from_shard,
                    envelope,
                })
                .is_ok()
        {
            let _ = waker.wake();
        }
    }

    fn read_inbox(&mut self) {
        while let Ok(mail) = self.inbox.try_recv() {
            self.on_envelope(mail.envelope, Route::Shard(mail.from_shard));
        }
    }

    fn tick_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.step(Input::Tick {
            now: Timestamp(wall),
        });
        let (mut out, mut done) = (Vec::new(), Vec::new());
        for proxy in &mut self.proxies {
            proxy.on_tick(now, &mut out, &mut done);
        }
        self.proxy_output(out, done);
    }

    /// Runs one input through the replica and carries out its actions.
    fn step(&mut self, input: Input) {
        let mut actions = std::mem::take(&mut self.actions);
        let before = (self.replica.view(), self.replica.status());
        self.replica.step(input, &mut actions);
        let after = (self.replica.view(), self.replica.status());
        if before != after {
            self.post.views[usize::from(self.setup.shard.0)].store(after.0.0, Ordering::Relaxed);
            tracing::info!(
                shard = %self.setup.shard,
                view = %after.0,
                status = ?after.1,
                primary = self.replica.is_primary(),
                op = %self.replica.op(),
                commit = %self.replica.commit_max(),
                "view state"
            );
        }
        #[cfg(debug_assertions)]
        self.replica.check_invariants();
        self.host.enqueue(&actions);
        self.route_sends(std::mem::take(&mut actions));
        self.actions = actions;
    }

    fn route_sends(&mut self, actions: Vec<Action>) {
        for action in actions {
            if let Action::Send { to, envelope } = action {
                match to {
                    Endpoint::Replica(r) => self.send_to_peer(r.0, &envelope),
                    Endpoint::Client(client) => self.deliver(client, &envelope),
                }
            }
        }
    }

    /// Hands the replica's journal work to the disk and reports durability back, until
    /// neither has anything new.
    fn pump_journal(&mut self) -> Result<(), ShardError> {
        let shard = self.setup.shard;
        let journal_error = |source| ShardError::Journal { shard, source };
        loop {
            let mut inputs = Vec::new();
            self.host.run(&mut inputs).map_err(journal_error)?;
            let news = self.host.poll().map_err(journal_error)?;
            let idle = inputs.is_empty();
            for input in inputs {
                self.step(input);
            }
            if idle && !news {
                return Ok(());
            }
        }
    }

    // ---- Replica links ----

    fn send_to_peer(&mut self, peer: u8, envelope: &Envelope) {
        self.frame.clear();
        if chronon_net::wire::encode_envelope_frame(envelope, FRAME_PAYLOAD_MAX, &mut self.frame)
            .is_err()
        {
            return;
        }
        let Some(Some(link)) = self.peers.get_mut(usize::from(peer)) else {
            return;
        };
        let Some(conn) = link
            .conn
            .as_mut()
            .filter(|_| matches!(link.state, PeerState::Connected))
        else {
            link.dropped += 1;
            return;
        };
        if conn.pending() + self.frame.len() > PEER_BUFFER_MAX {
            link.dropped += 1;
            return;
        }
        let _ = conn.queue(&self.frame);
        if conn.flush().is_err() {
            self.peer_failed(peer, "the connection broke".to_owned());
        }
    }

    fn dial_peers(&mut self) {
        let now = Instant::now();
        for index in 0..self.peers.len() {
            let Some(peer) = self.peers[index].as_mut() else {
                continue;
            };
            let PeerState::Idle { retry_at } = peer.state else {
                continue;
            };
            if now < retry_at {
                continue;
            }
            match TcpStream::connect(peer.address) {
                Ok(mut stream) => {
                    let token = Token(PEER_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        peer.state = PeerState::Idle {
                            retry_at: now + peer.backoff.next_delay(),
                        };
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    peer.conn = Some(Conn::new(stream));
                    peer.decoder = FrameDecoder::new(FRAME_PAYLOAD_MAX);
                    peer.state = PeerState::Connecting;
                }
                Err(error) => {
                    let delay = peer.backoff.next_delay();
                    peer.state = PeerState::Idle {
                        retry_at: now + delay,
                    };
                    let problem = format!("cannot connect: {error}");
                    self.report_peer_problem(index as u8, problem);
                }
            }
        }
    }

    fn on_peer_event(&mut self, index: u8, readable: bool, writable: bool) {
        let shard = self.setup.shard;
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        let Some(conn) = peer.conn.as_mut() else {
            return;
        };
        if matches!(peer.state, PeerState::Connecting) && (writable || readable) {
            match conn.stream.take_error() {
                Ok(None) if conn.stream.peer_addr().is_ok() => {
                    let mut hello = Vec::new();
                    self.hello.encode_frame(&mut hello);
                    let _ = conn.queue(&hello);
                    peer.state = PeerState::Connected;
                }
                Ok(None) => return, // Not connected yet.
                Ok(Some(error)) | Err(error) => {
                    self.peer_failed(index, format!("cannot connect: {error}"));
                    return;
                }
            }
        }
        let Some(conn) = peer.conn.as_mut() else {
            return;
        };
        if conn.flush().is_err() {
            self.peer_failed(index, "the connection broke".to_owned());
            return;
        }
        if !readable {
            return;
        }
        let closed = conn.read_available(&mut self.scratch) == ReadOutcome::Closed;
        let bytes = std::mem::take(&mut conn.read);
        let mut input = bytes.as_slice();
        let mut problem = None;
        while !input.is_empty() && problem.is_none() {
            match peer.decoder.push(&mut input) {
                Ok(Some(frame)) if frame.kind == FrameKind::Hello => {
                    match Hello::decode(frame.payload).and_then(|theirs| {
                        self.hello.check_peer(&theirs, Some(ReplicaIndex(index)))
                    }) {
                        Ok(()) => {
                            peer.state = PeerState::Connected;
                            peer.backoff.reset();
                            if peer.last_problem.take().is_some() {
                                tracing::info!(%shard, peer = index, "replica link up");
                            }
                        }
                        Err(error) => problem = Some(format!("refused: {error}")),
                    }
                }
                Ok(Some(_)) => problem = Some("unexpected frame on an outbound link".to_owned()),
                Ok(None) => {}
                Err(error) => problem = Some(error.to_string()),
            }
        }
        if let Some(problem) = problem {
            self.peer_failed(index, problem);
        } else if closed {
            self.peer_failed(index, "the peer closed the connection".to_owned());
        }
    }

    fn peer_failed(&mut self, index: u8, problem: String) {
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        if let Some(mut conn) = peer.conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        peer.state = PeerState::Idle {
            retry_at: Instant::now() + peer.backoff.next_delay(),
        };
        self.report_peer_problem(index, problem);
    }

    /// Logs a peer's trouble once per distinct problem, not once per retry.
    fn report_peer_problem(&mut self, index: u8, problem: String) {
        let shard = self.setup.shard;
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        if peer.last_problem.as_deref() != Some(problem.as_str()) {
            tracing::warn!(
                %shard,
                peer = index,
                address = %peer.address,
                "replica link: {problem}; retrying with backoff"
            );
            peer.last_problem = Some(problem);
        }
    }
}

// ---- The Redis front end ----

/// True for the key-value commands, which are answered by the log, not by this node.
fn goes_to_the_log(command: &RespCommand) -> bool {
    matches!(
        command,
        RespCommand::Get { .. }
            | RespCommand::Set { .. }
            | RespCommand::Del { .. }
            | RespCommand::Exists { .. }
            | RespCommand::IncrBy { .. }
            | RespCommand::MGet { .. }
            | RespCommand::MSet { .. }
    )
}

/// A command's part: which batch of its plan, and which command in that batch.
fn part_of(batch: usize, index: usize) -> usize {
    (batch << 20) | index
}

fn split_part(part: usize) -> (usize, usize) {
    (part >> 20, part & ((1 << 20) - 1))
}

/// A replica's answer to one key-value command, as the plan's merge expects it.
fn kv_result(outcome: Outcome) -> KvResult {
    match outcome {
        Ok(bytes) => KvReply::decode(&bytes)
            .ok_or_else(|| "ERR internal error: an undecodable reply from the shard".to_owned()),
        Err(ReplyError::Rejected(text)) => Err(text),
        Err(ReplyError::NoSession) => {
            Err("TRYAGAIN the node's session with the shard was evicted; retry".to_owned())
        }
        Err(ReplyError::TooLarge { size, max }) => Err(format!(
            "ERR the command is {size} bytes, more than a log entry holds ({max})"
        )),
        Err(ReplyError::NotPrimary { .. }) => {
            Err("TRYAGAIN the shard is changing primary; retry".to_owned())
        }
    }
}

impl Shard {
    /// Parses every complete command a RESP connection sent, answers or dispatches each, and
    /// writes whatever replies are ready, in order.
    fn on_resp_input(&mut self, token: Token) {
        let mut args = Vec::new();
        loop {
            let Some(connection) = self.conns.get_mut(&token) else {
                return;
            };
            let ConnKind::Resp(state) = &mut connection.kind else {
                return;
            };
            if state.closing {
                connection.conn.read.clear();
                break;
            }
            let buffer = &connection.conn.read;
            let used = match self.resp_parser.parse(buffer, &mut args) {
                Ok(Some(used)) => used,
                Ok(None) => break,
                Err(error) => {
                    // The stream's framing is lost: answer, then close, as Redis does.
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.queue.push_back(Pending {
                        seq,
                        state: PendingState::Ready(RespValue::Error(format!(
                            "ERR Protocol error: {error}"
                        ))),
                        close_after: true,
                    });
                    state.closing = true;
                    connection.conn.read.clear();
                    break;
                }
            };
            if args.is_empty() {
                connection.conn.read.drain(..used);
                continue;
            }
            let parts: Vec<&[u8]> = args.iter().map(|r| &buffer[r.clone()]).collect();
            let parsed = RespCommand::parse(&parts);
            connection.conn.read.drain(..used);
            let seq = state.next_seq;
            state.next_seq += 1;
            self.run_resp_command(token, seq, parsed);
        }
        self.write_resp_replies(token);
    }

    fn node_view_primaries(&self) -> Vec<ReplicaIndex> {
        let topology = &self.setup.topology;
        (0..topology.shard_count)
            .map(|t| {
                let view = if t == self.setup.shard.0 {
                    self.replica.view()
                } else {
                    View(self.post.views[usize::from(t)].load(Ordering::Relaxed))
                };
                topology.primary(ShardId(t), view)
            })
            .collect()
    }

    fn run_resp_command(
        &mut self,
        token: Token,
        seq: u64,
        parsed: Result<RespCommand, chronon_net::resp::CommandError>,
    ) {
        // Key-value commands go to the log: only commands answered here need the cluster's
        // view, and only `INFO` this replica's state, so neither is built per request.
        let key_value = matches!(&parsed, Ok(command) if goes_to_the_log(command));
        let primaries = if key_value {
            Vec::new()
        } else {
            self.node_view_primaries()
        };
        let status = if matches!(parsed, Ok(RespCommand::Info { .. })) {
            self.status_lines()
        } else {
            String::new()
        };
        let Some(connection) = self.conns.get_mut(&token) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                state.queue.push_back(Pending {
                    seq,
                    state: PendingState::Ready(RespValue::Error(error.0)),
                    close_after: false,
                });
                return;
            }
        };
        let view = NodeView {
            topology: &self.setup.topology,
            host: self.setup.host,
            shard: self.setup.shard,
            primaries: &primaries,
        };
        let is_info = matches!(command, RespCommand::Info { .. });
        let (pending, plan) = match chronon_net::resp::execute(&command, &view, &mut state.session)
        {
            Execution::Reply(RespValue::Bulk(mut text)) if is_info => {
                text.extend_from_slice(status.as_bytes());
                (PendingState::Ready(RespValue::Bulk(text)), None)
            }
            Execution::Reply(reply) => (PendingState::Ready(reply), None),
            Execution::Close(reply) => {
                state.closing = true;
                state.queue.push_back(Pending {
                    seq,
                    state: PendingState::Ready(reply),
                    close_after: true,
                });
                return;
            }
            Execution::Kv(plan) => {
                let results: Vec<Vec<Option<KvResult>>> = plan
                    .batches()
                    .iter()
                    .map(|b| vec![None; b.commands.len()])
                    .collect();
                let missing = results.iter().map(Vec::len).sum();
                let batches: Vec<(ShardId, Vec<Vec<u8>>)> = plan
                    .batches()
                    .iter()
                    .map(|b| (b.shard, b.commands.iter().map(KvCommand::encode).collect()))
                    .collect();
                (
                    PendingState::Waiting {
                        plan,
                        results,
                        missing,
                    },
                    Some(batches),
                )
            }
        };
        state.queue.push_back(Pending {
            seq,
            state: pending,
            close_after: false,
        });
        let Some(batches) = plan else {
            return;
        };
        let now = Instant::now();
        let mut out = Vec::new();
        for (batch, (target, bodies)) in batches.into_iter().enumerate() {
            for (index, body) in bodies.into_iter().enumerate() {
                let tag = Tag {
                    conn: token.0,
                    command: seq,
                    part: part_of(batch, index),
                };
                self.proxies[usize::from(target.0)].submit(tag, body, now, &mut out);
            }
        }
        self.proxy_output(out, Vec::new());
    }

    /// The `# Chronon` section appended to `INFO`: this shard's replica state, so operators
    /// and tests can compare replicas.
    fn status_lines(&self) -> String {
        format!(
            "\r\n# Chronon\r\nchronon_shard:{}\r\nchronon_replica:{}\r\nchronon_view:{}\r\n\
             chronon_status:{:?}\r\nchronon_op:{}\r\nchronon_commit:{}\r\n\
             chronon_executed:{}\r\nchronon_state_hash:{:032x}\r\n\
             chronon_peer_messages_dropped:{}\r\nchronon_log_base:{}\r\n\
             chronon_checkpoint_durable:{}\r\nchronon_state_transfers:{}\r\n",
            self.setup.shard,
            self.setup.host,
            self.replica.view(),
            self.replica.status(),
            self.replica.op(),
            self.replica.commit_max(),
            self.replica.commit_min(),
            self.replica.state_hash().0,
            self.peers.iter().flatten().map(|p| p.dropped).sum::<u64>(),
            self.replica.log_base(),
            self.replica.checkpoint_durable(),
            self.replica.stats().state_transfers,
        )
    }

    /// Sends a proxy's requests towards their shards and files its finished results.
    fn proxy_output(&mut self, out: Vec<Envelope>, done: Vec<(Tag, Outcome)>) {
        for envelope in out {
            self.on_envelope(envelope, Route::Local);
        }
        let mut touched = Vec::new();
        for (tag, outcome) in done {
            self.file_result(tag, outcome);
            touched.push(Token(tag.conn));
        }
        touched.sort_unstable();
        touched.dedup();
        for token in touched {
            self.write_resp_replies(token);
        }
    }

    fn on_proxy_reply(&mut self, reply: chronon_engine::vsr::Reply) {
        let Some(index) = self.proxies.iter().position(|p| p.client() == reply.client) else {
            return;
        };
        let (mut out, mut done) = (Vec::new(), Vec::new());
        self.proxies[index].on_reply(reply, Instant::now(), &mut out, &mut done);
        self.proxy_output(out, done);
    }

    fn file_result(&mut self, tag: Tag, outcome: Outcome) {
        let Some(connection) = self.conns.get_mut(&Token(tag.conn)) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let Some(pending) = state.queue.iter_mut().find(|p| p.seq == tag.command) else {
            return;
        };
        let PendingState::Waiting {
            plan,
            results,
            missing,
        } = &mut pending.state
        else {
            return;
        };
        let (batch, index) = split_part(tag.part);
        let Some(slot) = results.get_mut(batch).and_then(|b| b.get_mut(index)) else {
            return;
        };
        if slot.is_none() {
            *missing -= 1;
        }
        *slot = Some(kv_result(outcome));
        if *missing == 0 {
            let complete: Vec<Vec<KvResult>> = results
                .iter_mut()
                .map(|b| b.iter_mut().map(|r| r.take().expect("complete")).collect())
                .collect();
            pending.state = PendingState::Ready(plan.reply(&complete));
        }
    }

    /// Writes the replies at the front of a RESP connection's queue that are ready.
    fn write_resp_replies(&mut self, token: Token) {
        let Some(connection) = self.conns.get_mut(&token) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let mut close = false;
        let mut bytes = Vec::new();
        let protocol = state.session.protocol;
        while let Some(Pending {
            state: PendingState::Ready(_),
            ..
        }) = state.queue.front()
        {
            let pending = state.queue.pop_front().expect("front exists");
            if let PendingState::Ready(reply) = pending.state {
                reply.encode_as(protocol, &mut bytes);
            }
            if pending.close_after {
                close = true;
                break;
            }
        }
        if bytes.is_empty() && !close {
            return;
        }
        let failed = !connection.conn.queue(&bytes) || connection.conn.flush().is_err();
        if failed || close {
            self.close_conn(token);
        }
    }
}
