//! One shard's thread: its replica, its journal, its listeners and connections, driven by one
//! event loop over its I/O driver (`io_uring`, or epoll as the fallback). The replica is the
//! same `chronon-engine` code the simulator runs; this module only moves bytes and time to and
//! from it. The protocol handling (framing, handshakes, RESP) is written once, here and in
//! `links.rs` and `resp.rs`; only the driver underneath differs between the two I/O paths.

mod links;
mod resp;

use std::collections::BTreeMap;
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
use chronon_engine::constants::{
    BATCH_REQUESTS_MAX, HEADER_SIZE, REQUEST_QUEUE_MAX, SESSIONS_MAX_DEFAULT,
    SLOT_COUNT_CHECKPOINT_MIN,
};
use chronon_engine::ids::{ClientId, ReplicaIndex, ShardId, Timestamp};
use chronon_engine::log::{Journal, JournalError};
use chronon_engine::vsr::{
    Action, Endpoint, Envelope, Input, JournalHost, Message, Replica, ReplicaConfig, Timeouts,
};
use chronon_net::constants::FRAME_PAYLOAD_MAX;
use chronon_net::frame::FrameKind;
use chronon_net::resp::{RespLimits, RespParser};
use chronon_net::{Backoff, FrameDecoder, Hello, Topology};

use crate::effects::{Done, EffectRunner, Job};
use crate::eventfd::EventFd;
use crate::io::{ConnId, Driver, Event, IoMode, ListenerKind, Received};
use crate::proxy::{Outcome, Proxy, Tag};
use resp::RespState;

/// How often the replica's clock ticks (its timeouts are counted in ticks).
pub const TICK: Duration = Duration::from_millis(10);

/// Bytes a replica link may have queued before messages to that peer are dropped (the
/// protocol retransmits what matters): backpressure instead of unbounded buffering.
pub const PEER_BUFFER_MAX: usize = 32 * 1024 * 1024;

/// Waits with a zero timeout this many times after work before blocking: a short spin that
/// catches the next message of a busy connection without a sleep and wakeup (DESIGN §7: spin
/// briefly, then block in the kernel wait).
const SPIN_POLLS: u32 = 16;

/// What one shard's thread needs to start.
#[derive(Clone, Debug)]
pub struct ShardSetup {
    pub topology: Topology,
    pub host: ReplicaIndex,
    pub shard: ShardId,
    pub data_file: PathBuf,
    pub disk: DiskChoice,
    /// Where `Emit` effects go.
    pub sinks: crate::effects::Sinks,
    /// Ops between checkpoints; `None`: as many as the log ring allows.
    pub checkpoint_interval: Option<u64>,
    /// The network path the node settled on (see [`crate::io::resolve`]).
    pub io: IoMode,
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

/// The shards' inboxes, for sending mail to any of them (and ringing its doorbell), and each
/// shard's latest view (for the `CLUSTER` replies, which name every shard's primary).
#[derive(Clone, Debug)]
pub(crate) struct Post {
    pub boxes: Vec<(Sender<Mail>, Arc<EventFd>)>,
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
    Conn(ConnId),
    Peer(u8),
    Shard(u16),
    /// A proxy session of this thread (on behalf of RESP connections).
    Local,
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

/// An accepted connection's protocol state; its socket and send buffer are the driver's.
#[derive(Debug)]
struct Connection {
    kind: ConnKind,
    decoder: FrameDecoder,
    /// Bytes received and not yet decoded.
    input: Vec<u8>,
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
    conn: Option<ConnId>,
    decoder: FrameDecoder,
    input: Vec<u8>,
    backoff: Backoff,
    /// The last failure logged, so a peer that stays down is reported once, not per retry.
    last_problem: Option<String>,
    /// Messages dropped because the link was down or its buffer full (shown by `INFO`).
    dropped: u64,
}

/// Buffers the loop reuses, so that a correctly routed request allocates none of them.
#[derive(Debug, Default)]
struct Scratch {
    events: Vec<Event>,
    /// One frame being encoded.
    frame: Vec<u8>,
    /// The argument ranges of the RESP command being parsed.
    resp_args: Vec<std::ops::Range<usize>>,
    /// The replies being written to one RESP connection.
    replies: Vec<u8>,
    /// A proxy session's envelopes to send and its finished results.
    proxy_out: Vec<Envelope>,
    proxy_done: Vec<(Tag, Outcome)>,
    touched: Vec<ConnId>,
    /// Durability reports for the replica.
    inputs: Vec<Input>,
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
    io: Driver,
    /// True if the disk rings a doorbell on completions (`io_uring`); the sync disk completes
    /// inside `submit_*` and needs none.
    disk_signals: bool,
    peers: Vec<Option<Peer>>,
    conns: BTreeMap<ConnId, Connection>,
    routes: BTreeMap<ClientId, Route>,
    post: Post,
    inbox: Receiver<Mail>,
    proxies: Vec<Proxy>,
    resp_parser: RespParser,
    actions: Vec<Action>,
    scratch: Scratch,
    next_tick: Instant,
    /// Carries out the effects the replica attempts, off this thread.
    effects: EffectRunner,
    /// Attempts that failed before reaching a worker (a full queue), reported on the next turn.
    effects_refused: Vec<Done>,
}

fn listen_error(shard: ShardId, address: SocketAddr, source: io::Error) -> ShardError {
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
}

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
                input: Vec::new(),
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
    let interval_max = ReplicaConfig::checkpoint_interval_max(log_ops_max);
    let checkpoint_interval = match setup.checkpoint_interval {
        None => interval_max,
        Some(interval) if (1..=interval_max).contains(&interval) => interval,
        Some(interval) => {
            return Err(open_error(format!(
                "--checkpoint-interval {interval} does not fit this log ring of {} slots: give \
                 1 to {interval_max}, or reformat with a larger --slot-count",
                superblock.config.slot_count
            )));
        }
    };
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
        effects: chronon_engine::vsr::EffectPolicy::default(),
        checkpoint_interval,
        log_ops_max,
        record_applied: false,
        bug: None,
    };
    let mut actions = Vec::new();
    let replica = Replica::recover(config, KvStore, recovered, &mut actions)
        .map_err(|e| open_error(e.to_string()))?;
    Ok((replica, journal, actions, lock))
}

/// The shard's I/O driver of the kind the node chose. If this shard cannot set up its own ring
/// although the node's probe could, it runs on epoll rather than not at all.
fn driver(setup: &ShardSetup) -> Result<Driver, ShardError> {
    let shard = setup.shard;
    match Driver::new(setup.io) {
        Ok(driver) => Ok(driver),
        Err(error) if setup.io == IoMode::Uring => {
            tracing::warn!(%shard, "falling back to the epoll network path: setting up the \
                                    shard's io_uring ring failed: {error}");
            Driver::new(IoMode::Epoll).map_err(|e| ShardError::Io {
                shard,
                detail: format!("creating epoll: {e}"),
            })
        }
        Err(error) => Err(ShardError::Io {
            shard,
            detail: format!("creating epoll: {error}"),
        }),
    }
}

impl Shard {
    /// Opens the shard's data file, recovers its replica and binds its ports. `doorbell` is
    /// what other shards ring when they post this one mail.
    pub fn open(
        setup: ShardSetup,
        post: Post,
        inbox: Receiver<Mail>,
        doorbell: Arc<EventFd>,
    ) -> Result<Shard, ShardError> {
        let shard = setup.shard;
        let topology = &setup.topology;
        let open_error = |detail: String| setup.open_error(detail);
        let io_error = |detail: String| ShardError::Io { shard, detail };
        let (replica, journal, actions, lock) = recover(&setup)?;
        let mut host = JournalHost::new(journal);
        let mut io = driver(&setup)?;
        io.add_doorbell(doorbell)
            .map_err(|e| io_error(format!("watching the mailbox doorbell: {e}")))?;
        let disk_signal =
            EventFd::new().map_err(|e| open_error(format!("creating an eventfd: {e}")))?;
        let disk_signals = host
            .journal()
            .disk()
            .register_eventfd(disk_signal.as_raw_fd())
            .map_err(|e| open_error(format!("registering the disk's eventfd: {e}")))?;
        if disk_signals {
            io.add_doorbell(Arc::new(disk_signal))
                .map_err(|e| io_error(format!("watching the disk's eventfd: {e}")))?;
        }
        for (kind, address) in [
            (
                ListenerKind::Replica,
                topology.replica_addr(setup.host, shard),
            ),
            (
                ListenerKind::Native,
                topology.native_addr(setup.host, shard),
            ),
            (ListenerKind::Resp, topology.resp_addr(setup.host, shard)),
        ] {
            io.listen(kind, address)
                .map_err(|source| listen_error(shard, address, source))?;
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
            io = io.mode().name(),
            "shard recovered"
        );
        let proxies = proxies(topology, shard);
        let waker = Arc::clone(&post.boxes[usize::from(shard.0)].1);
        let doorbell: crate::effects::Doorbell = Arc::new(move || waker.ring());
        let effects =
            EffectRunner::start(&format!("shard-{shard}"), setup.sinks.clone(), &doorbell)
                .map_err(|e| ShardError::Io {
                    shard,
                    detail: format!("starting the effect workers: {e}"),
                })?;
        let mut shard_runtime = Shard {
            _lock: lock,
            setup,
            hello,
            replica,
            host,
            io,
            disk_signals,
            peers,
            conns: BTreeMap::new(),
            routes: BTreeMap::new(),
            proxies,
            post,
            inbox,
            resp_parser: RespParser::new(RespLimits::default()),
            actions: Vec::new(),
            scratch: Scratch::default(),
            next_tick: Instant::now(),
            effects,
            effects_refused: Vec::new(),
        };
        // Recovery's sends (a restarted primary's start_view_change) go out once links are up;
        // its journal work is queued above.
        shard_runtime.route_sends(actions);
        Ok(shard_runtime)
    }

    /// Runs until `stop` is set, then lets queued journal work settle.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), ShardError> {
        let mut events = std::mem::take(&mut self.scratch.events);
        let mut spins = 0;
        while !stop.load(Ordering::Relaxed) {
            let timeout = if spins > 0 {
                Duration::ZERO
            } else {
                self.idle_timeout()
            };
            let busy = self
                .io
                .wait(timeout, &mut events)
                .map_err(|error| ShardError::Io {
                    shard: self.setup.shard,
                    detail: format!(
                        "waiting for I/O ({}) failed: {error}",
                        self.io.mode().name()
                    ),
                })?;
            for event in events.drain(..) {
                self.on_event(event);
            }
            self.read_inbox();
            self.report_effects();
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
        if !self.disk_signals && !self.host.is_idle() {
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

    /// Lets queued journal work finish. The driver, dropped with the shard, cancels its
    /// requests and waits for them before freeing their buffers.
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

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Accepted { listener, conn } => self.accepted(listener, conn),
            Event::Connected { conn } => match self.peer_of(conn) {
                Some(index) => self.peer_connected(index),
                None => self.io.close(conn),
            },
            Event::ConnectFailed { conn, error } => {
                if let Some(index) = self.peer_of(conn) {
                    self.peer_failed(index, format!("cannot connect: {error}"));
                }
            }
            Event::Readable { conn } => match self.peer_of(conn) {
                Some(index) => self.on_peer_readable(index),
                None => self.on_conn_readable(conn),
            },
            Event::Broken { conn } => match self.peer_of(conn) {
                Some(index) => self.peer_failed(index, "the connection broke".to_owned()),
                None => self.close_conn(conn),
            },
        }
    }

    fn accepted(&mut self, listener: ListenerKind, conn: ConnId) {
        let kind = match listener {
            ListenerKind::Replica => ConnKind::InboundPeer { peer: None },
            ListenerKind::Native => ConnKind::Native,
            ListenerKind::Resp => ConnKind::Resp(Box::new(RespState::new(
                (u64::from(self.setup.shard.0) << 40) | conn as u64,
            ))),
        };
        self.conns.insert(
            conn,
            Connection {
                kind,
                decoder: FrameDecoder::new(FRAME_PAYLOAD_MAX),
                input: Vec::new(),
            },
        );
    }

    fn close_conn(&mut self, conn: ConnId) {
        self.io.close(conn);
        if let Some(connection) = self.conns.remove(&conn) {
            self.routes.retain(|_, route| *route != Route::Conn(conn));
            if matches!(connection.kind, ConnKind::Resp(_)) {
                for proxy in &mut self.proxies {
                    proxy.forget_conn(conn);
                }
            }
        }
    }

    fn on_conn_readable(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else {
            self.io.close(conn);
            return;
        };
        let closed = self.io.receive(conn, &mut connection.input) == Received::Closed;
        if matches!(connection.kind, ConnKind::Resp(_)) {
            self.on_resp_input(conn);
        } else {
            self.on_frame_input(conn);
        }
        if closed {
            self.close_conn(conn);
        }
    }

    /// Decodes and handles every complete frame a native or replica connection sent. The
    /// input buffer and the decoder are lent out of the connection meanwhile (neither
    /// allocates to do so), since handling a frame may reach back into the connection table.
    fn on_frame_input(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut input = std::mem::take(&mut connection.input);
        let mut decoder = std::mem::replace(
            &mut connection.decoder,
            FrameDecoder::new(FRAME_PAYLOAD_MAX),
        );
        let mut rest = input.as_slice();
        let mut open = true;
        while open && !rest.is_empty() {
            match decoder.push(&mut rest) {
                Ok(Some(frame)) => open = self.on_conn_frame(conn, frame.kind, frame.payload),
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(shard = %self.setup.shard, "closing a connection: {error}");
                    open = false;
                }
            }
        }
        if !open {
            self.close_conn(conn);
            return;
        }
        if let Some(connection) = self.conns.get_mut(&conn) {
            input.clear();
            connection.input = input;
            connection.decoder = decoder;
        }
    }

    /// Handles one frame from a connection; false closes it.
    fn on_conn_frame(&mut self, conn: ConnId, kind: FrameKind, payload: &[u8]) -> bool {
        let shard = self.setup.shard;
        let Some(connection) = self.conns.get_mut(&conn) else {
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
                let frame = &mut self.scratch.frame;
                frame.clear();
                self.hello.encode_frame(frame);
                let _ = self.io.send(conn, frame);
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
                        // Another cluster's request, or one for a shard this node lacks, is
                        // refused by name so that its client fails fast instead of timing out.
                        let view = self.replica.view();
                        let refusal =
                            chronon_net::misdirected_reply(&envelope, &self.hello, shard, view);
                        if let Some(refusal) = refusal {
                            let frame = &mut self.scratch.frame;
                            frame.clear();
                            let _ = chronon_net::wire::encode_envelope_frame(
                                &refusal,
                                FRAME_PAYLOAD_MAX,
                                frame,
                            );
                            let _ = self.io.send(conn, frame);
                            return true;
                        }
                        self.on_envelope(envelope, Route::Conn(conn));
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
                self.deliver(client, envelope);
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
    fn deliver(&mut self, client: ClientId, envelope: Envelope) {
        match self.routes.get(&client).copied() {
            Some(Route::Conn(conn)) => {
                let frame = &mut self.scratch.frame;
                frame.clear();
                if chronon_net::wire::encode_envelope_frame(&envelope, FRAME_PAYLOAD_MAX, frame)
                    .is_err()
                {
                    return;
                }
                if !self.io.send(conn, frame) {
                    self.close_conn(conn);
                }
            }
            Some(Route::Peer(peer)) => self.send_to_peer(peer, &envelope),
            Some(Route::Shard(shard)) => self.mail(shard, envelope),
            Some(Route::Local) => {
                if let Message::Reply(reply) = envelope.message {
                    self.on_proxy_reply(reply);
                }
            }
            None => {}
        }
    }

    fn mail(&mut self, shard: u16, envelope: Envelope) {
        let from_shard = self.setup.shard.0;
        if let Some((sender, doorbell)) = self.post.boxes.get(usize::from(shard))
            && sender
                .send(Mail {
                    from_shard,
                    envelope,
                })
                .is_ok()
        {
            doorbell.ring();
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
        let mut out = std::mem::take(&mut self.scratch.proxy_out);
        let mut done = std::mem::take(&mut self.scratch.proxy_done);
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
        self.route_sends(actions.drain(..));
        // A nested step (a reply delivered to this thread's own proxy) may have put its own
        // vector back meanwhile; keep whichever holds more room.
        if actions.capacity() > self.actions.capacity() {
            self.actions = actions;
        }
    }

    fn route_sends(&mut self, actions: impl IntoIterator<Item = Action>) {
        for action in actions {
            match action {
                Action::Send { to, envelope } => match to {
                    Endpoint::Replica(r) => self.send_to_peer(r.0, &envelope),
                    Endpoint::Client(client) => self.deliver(client, envelope),
                },
                Action::Attempt {
                    id,
                    view,
                    attempt,
                    effect,
                } => {
                    let job = Job {
                        id,
                        view,
                        attempt,
                        effect,
                    };
                    if let Some(refused) = self.effects.submit(job) {
                        self.effects_refused.push(refused);
                    }
                }
                _ => {}
            }
        }
    }

    /// Feeds the effect workers' results (and refused attempts) to the replica.
    fn report_effects(&mut self) {
        let mut results = std::mem::take(&mut self.effects_refused);
        results.extend(self.effects.drain());
        for done in results {
            self.step(Input::EffectResult {
                id: done.id,
                view: done.view,
                attempt: done.attempt,
                result: done.result,
            });
        }
    }

    /// Hands the replica's journal work to the disk and reports durability back, until
    /// neither has anything new.
    fn pump_journal(&mut self) -> Result<(), ShardError> {
        let shard = self.setup.shard;
        let journal_error = |source| ShardError::Journal { shard, source };
        let mut inputs = std::mem::take(&mut self.scratch.inputs);
        loop {
            self.host.run(&mut inputs).map_err(journal_error)?;
            let news = self.host.poll().map_err(journal_error)?;
            let idle = inputs.is_empty();
            for input in inputs.drain(..) {
                self.step(input);
            }
            if idle && !news {
                self.scratch.inputs = inputs;
                return Ok(());
            }
        }
    }
}
