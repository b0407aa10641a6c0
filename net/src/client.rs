//! The native Rust client: key-value commands to a Chronon cluster over the native protocol.
//!
//! Unlike the rest of this crate, this module opens sockets, reads the clock and (for
//! [`Client::pipeline`]) spawns threads: it runs in the application's process, not in a node.
//! It uses blocking `std::net` I/O with a timeout on every read, write and connect, and no
//! async runtime.
//!
//! - **Routing.** A command goes to the shard owning its key ([`crate::slots::key_shard`]),
//!   and there to the primary of the latest view the client knows of that shard
//!   ([`Topology::primary`]), on the shard's native port ([`Topology::native_addr`], or the
//!   addresses in [`ClientConfig::addresses`]).
//! - **Exactly once.** Each session has a random nonzero client id, registers through
//!   consensus (request 0) before its first command, and numbers its commands 1, 2, 3, ....
//!   Every retry of a command carries the same number, so the cluster applies it at most
//!   once and answers a duplicate with the saved reply.
//! - **Finding the primary.** A `NotPrimary { view }` reply sends the same request to that
//!   view's primary, and the client remembers the view. Silence for `attempt_timeout` sends
//!   it again to the same host once, then to the next hosts in turn; a refused or broken
//!   connection moves on at once. Once every host has failed quickly in a row, the client
//!   waits a short, growing pause between attempts.
//! - **Deadlines.** Every call ends by `call_timeout` (registration included) with a reply or
//!   an error; [`ClientError::Timeout`] names the shard, request and hosts tried.
//! - **Pipelining.** The cluster keeps only each session's latest reply, so a session has one
//!   request in flight. [`Client::pipeline`] runs up to `pipeline_depth` sessions per shard
//!   side by side, each on its own thread and connection.
//!
//! Connections are opened lazily, one per session (to the host it last talked to), and
//! reused until they fail.

mod connection;
mod error;
mod session;

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chronon_engine::app::EffectId;
use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::vsr::{KernelEvent, RequestKind};
use chronon_engine::{ReplicaIndex, RequestNumber, ShardId, View};

pub use self::error::ClientError;
use self::session::{Session, ShardContext};
use crate::constants::{
    CLIENT_ATTEMPT_TIMEOUT_DEFAULT_MS, CLIENT_CALL_TIMEOUT_DEFAULT_MS,
    CLIENT_PIPELINE_DEPTH_DEFAULT, CLIENT_PIPELINE_DEPTH_MAX,
};
use crate::slots::key_shard;
use crate::topology::Topology;

/// How a [`Client`] reaches the cluster and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub topology: Topology,
    /// The native port of each shard's replica on each host, as `addresses[shard][host]`.
    /// [`ClientConfig::new`] fills it from the topology's port scheme; replace entries when
    /// the ports seen from the client differ (port forwarding, tests).
    pub addresses: Vec<Vec<SocketAddr>>,
    /// The longest one call (a command, with its session's registration if due) takes before
    /// it ends in [`ClientError::Timeout`].
    pub call_timeout: Duration,
    /// How long one attempt waits for a reply before the request is sent again.
    pub attempt_timeout: Duration,
    /// Sessions per shard that [`Client::pipeline`] runs side by side, `1..=64`.
    pub pipeline_depth: usize,
}

impl ClientConfig {
    /// The defaults: 10 s per call, 500 ms per attempt, 8 sessions per shard in a pipeline.
    #[must_use]
    pub fn new(topology: Topology) -> ClientConfig {
        let addresses = (0..topology.shard_count)
            .map(|shard| {
                (0..topology.replica_count())
                    .map(|host| topology.native_addr(ReplicaIndex(host), ShardId(shard)))
                    .collect()
            })
            .collect();
        ClientConfig {
            topology,
            addresses,
            call_timeout: Duration::from_millis(CLIENT_CALL_TIMEOUT_DEFAULT_MS),
            attempt_timeout: Duration::from_millis(CLIENT_ATTEMPT_TIMEOUT_DEFAULT_MS),
            pipeline_depth: CLIENT_PIPELINE_DEPTH_DEFAULT,
        }
    }

    fn check(&self) -> Result<(), String> {
        let shards = usize::from(self.topology.shard_count);
        let hosts = usize::from(self.topology.replica_count());
        if self.addresses.len() != shards || self.addresses.iter().any(|a| a.len() != hosts) {
            return Err(format!(
                "addresses must list {hosts} hosts for each of {shards} shards; build the \
                 config with ClientConfig::new"
            ));
        }
        if self.call_timeout.is_zero() || self.attempt_timeout.is_zero() {
            return Err("call_timeout and attempt_timeout must be positive".to_owned());
        }
        if self.pipeline_depth == 0 || self.pipeline_depth > CLIENT_PIPELINE_DEPTH_MAX {
            return Err(format!(
                "pipeline_depth is {}, it must be 1 to {CLIENT_PIPELINE_DEPTH_MAX}",
                self.pipeline_depth
            ));
        }
        Ok(())
    }
}

/// The outcome of a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// True if the new value was stored.
    pub swapped: bool,
    /// The value before the command (`None`: the key was absent).
    pub current: Option<Vec<u8>>,
}

/// One shard's known view and its sessions; sessions are opened lazily, the first one for
/// single calls and up to `pipeline_depth` for pipelines.
#[derive(Debug)]
struct ShardState {
    id: ShardId,
    view: AtomicU64,
    sessions: Vec<Session>,
}

/// The first `count` sessions, opening any that do not exist yet (no I/O until used).
fn sessions_up_to(sessions: &mut Vec<Session>, count: usize) -> &mut [Session] {
    while sessions.len() < count {
        sessions.push(Session::new());
    }
    &mut sessions[..count]
}

/// A connection to a Chronon cluster running the key-value application. See the module
/// documentation for how calls are routed and retried.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    shards: Vec<ShardState>,
}

impl Client {
    /// Checks the configuration; connects nothing until the first call.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        config
            .check()
            .map_err(|reason| ClientError::Config { reason })?;
        let shards = (0..config.topology.shard_count)
            .map(|shard| ShardState {
                id: ShardId(shard),
                view: AtomicU64::new(0),
                sessions: Vec::new(),
            })
            .collect();
        Ok(Client { config, shards })
    }

    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The shard that owns `key`.
    #[must_use]
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        key_shard(key, self.config.topology.shard_count)
    }

    /// The latest view of `shard` this client has heard of (0 before any reply).
    #[must_use]
    pub fn known_view(&self, shard: ShardId) -> View {
        View(
            self.shards[usize::from(shard.0)]
                .view
                .load(Ordering::Relaxed),
        )
    }

    /// Runs one command on its key's shard and waits for the reply, at most `call_timeout`.
    pub fn execute(&mut self, command: &KvCommand) -> Result<KvReply, ClientError> {
        let shard = self.shard_of(command.key());
        let ShardState { id, view, sessions } = &mut self.shards[usize::from(shard.0)];
        let context = ShardContext {
            config: &self.config,
            shard: *id,
            view,
        };
        sessions_up_to(sessions, 1)[0].execute(&context, command)
    }

    /// Asks the cluster to retry a dead-lettered effect: it goes back to pending with a fresh
    /// attempt budget. Fails with [`ClientError::Rejected`] if the effect is not dead-lettered
    /// (never recorded, still pending, or completed).
    pub fn retry_effect(&mut self, id: EffectId) -> Result<(), ClientError> {
        let shard = id.shard;
        let Some(ShardState {
            id: shard_id,
            view,
            sessions,
        }) = self.shards.get_mut(usize::from(shard.0))
        else {
            return Err(ClientError::Rejected {
                shard,
                request: RequestNumber(0),
                reason: format!("effect {id} names shard {shard}, which this cluster lacks"),
            });
        };
        let context = ShardContext {
            config: &self.config,
            shard: *shard_id,
            view,
        };
        let body = KernelEvent::Retry { id }.encode();
        sessions_up_to(sessions, 1)[0]
            .execute_raw(&context, RequestKind::Kernel, body)
            .map(|_| ())
    }

    /// Runs many commands at once and returns their results in input order.
    ///
    /// Each shard's commands are spread over up to `pipeline_depth` sessions by a hash of the
    /// key, so commands on one key run one after another in input order, while commands on
    /// different keys may run in any order. Each command has its own `call_timeout` from when
    /// its session sends it, so the whole pipeline takes at most `call_timeout` times the
    /// most commands any one session runs.
    pub fn pipeline(&mut self, commands: &[KvCommand]) -> Vec<Result<KvReply, ClientError>> {
        let depth = self.config.pipeline_depth;
        let mut lanes: Vec<Vec<Vec<usize>>> = self.shards.iter().map(|_| Vec::new()).collect();
        for (index, command) in commands.iter().enumerate() {
            let shard = usize::from(self.shard_of(command.key()).0);
            if lanes[shard].is_empty() {
                lanes[shard] = vec![Vec::new(); depth];
            }
            lanes[shard][lane_of(command.key(), depth)].push(index);
        }
        let mut results: Vec<Option<Result<KvReply, ClientError>>> =
            commands.iter().map(|_| None).collect();
        let config = &self.config;
        std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (state, shard_lanes) in self.shards.iter_mut().zip(&lanes) {
                let ShardState { id, view, sessions } = state;
                let context = ShardContext {
                    config,
                    shard: *id,
                    view,
                };
                let sessions = sessions_up_to(sessions, shard_lanes.len());
                for (session, lane) in sessions.iter_mut().zip(shard_lanes) {
                    if lane.is_empty() {
                        continue;
                    }
                    threads.push(scope.spawn(move || {
                        lane.iter()
                            .map(|&index| (index, session.execute(&context, &commands[index])))
                            .collect::<Vec<_>>()
                    }));
                }
            }
            for thread in threads {
                let done = thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for (index, result) in done {
                    results[index] = Some(result);
                }
            }
        });
        results
            .into_iter()
            .map(|result| result.expect("invariant: every command ran in exactly one lane"))
            .collect()
    }

    /// The value of `key`, `None` if it is absent.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        match self.execute(&KvCommand::Get { key: key.to_vec() })? {
            KvReply::Value(value) => Ok(value),
            reply => Err(unexpected("get", reply)),
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let command = KvCommand::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.execute(&command)? {
            KvReply::Done => Ok(()),
            reply => Err(unexpected("put", reply)),
        }
    }

    /// Deletes `key`; true if it existed.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, ClientError> {
        match self.execute(&KvCommand::Delete { key: key.to_vec() })? {
            KvReply::Deleted(existed) => Ok(existed),
            reply => Err(unexpected("delete", reply)),
        }
    }

    /// Stores `new` if the current value is `expected` (`None`: the key is absent).
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, ClientError> {
        let command = KvCommand::Cas {
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        match self.execute(&command)? {
            KvReply::Cas { swapped, current } => Ok(CasOutcome { swapped, current }),
            reply => Err(unexpected("cas", reply)),
        }
    }
}

/// The pipeline lane of `key` among `depth`: a fixed hash, so one key always takes one lane.
fn lane_of(key: &[u8], depth: usize) -> usize {
    assert!(depth > 0);
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (hash % depth as u64) as usize
}

fn unexpected(command: &'static str, reply: KvReply) -> ClientError {
    ClientError::UnexpectedReply { command, reply }
}
