//! Three (or more) replicas wired together in memory, in one thread, with no disk and no
//! network: every message is delivered at once and every write is durable at once. What is
//! left is the cost of the replication protocol itself (batching, hashing, the session table,
//! the application), which the commit-path bench measures.

use std::collections::VecDeque;

use chronon_engine::app::kv::{KvCommand, KvStore};
use chronon_engine::ids::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId};
use chronon_engine::vsr::{
    Action, Endpoint, Envelope, Input, Message, Replica, ReplicaConfig, Request, RequestKind,
    Timeouts,
};

const CLUSTER: ClusterId = ClusterId(0xbe7c);

/// A VSR group in memory, driven by closed-loop clients: each client sends its next request as
/// soon as it gets a reply, so the pipeline stays full and batches fill up.
#[derive(Debug)]
pub struct MemoryCluster {
    replicas: Vec<Replica<KvStore>>,
    inbox: VecDeque<(u8, Envelope)>,
    actions: Vec<Action>,
    replies: u64,
    /// Next request number per client.
    next_request: Vec<u64>,
    /// Requests still to send in the current run.
    budget: u64,
}

/// The log window of the default ring (1024 slots): checkpoints come as often as they would in
/// a node, so their cost is part of the measurement.
const LOG_OPS_MAX: u64 = 512;

impl MemoryCluster {
    /// A group of `replica_count` replicas that batches up to `batch` requests per prepare,
    /// with `clients` registered sessions.
    #[must_use]
    pub fn new(replica_count: u8, batch: usize, clients: u64) -> MemoryCluster {
        let clients_usize = usize::try_from(clients).expect("client count fits memory");
        let replicas = (0..replica_count)
            .map(|r| {
                let config = ReplicaConfig {
                    cluster: CLUSTER,
                    shard: ShardId(0),
                    replica: ReplicaIndex(r),
                    replica_count,
                    sessions_max: clients_usize,
                    body_max: 4 << 20,
                    batch_requests_max: batch,
                    request_queue_max: clients_usize,
                    timeouts: Timeouts::default(),
                    effects: chronon_engine::vsr::EffectPolicy::default(),
                    checkpoint_interval: ReplicaConfig::checkpoint_interval_max(LOG_OPS_MAX),
                    log_ops_max: LOG_OPS_MAX,
                    record_applied: false,
                    bug: None,
                };
                Replica::new(config, KvStore)
            })
            .collect();
        let mut cluster = MemoryCluster {
            replicas,
            inbox: VecDeque::new(),
            actions: Vec::new(),
            replies: 0,
            next_request: vec![0; clients_usize],
            budget: 0,
        };
        for client in 0..clients {
            cluster.submit(client, RequestKind::Register, Vec::new());
        }
        cluster.drain();
        assert_eq!(cluster.replies, clients, "every client registered");
        cluster
    }

    /// Client `client` (an index) has id `client + 1`: id 0 is the kernel's.
    fn submit(&mut self, client: u64, kind: RequestKind, body: Vec<u8>) {
        let index = usize::try_from(client).expect("client index fits memory");
        let request = Request {
            client: ClientId(client + 1),
            request: RequestNumber(self.next_request[index]),
            kind,
            body,
        };
        self.next_request[index] += 1;
        let envelope = Envelope::seal(
            CLUSTER,
            ShardId(0),
            self.replicas[0].view(),
            Endpoint::Client(ClientId(client + 1)),
            Message::Request(request),
        );
        self.inbox.push_back((0, envelope));
    }

    fn submit_put(&mut self, client: u64) {
        let key = format!("key-{}", client % 1024).into_bytes();
        let value = self.replies.to_le_bytes().to_vec();
        self.submit(
            client,
            RequestKind::Command,
            KvCommand::Put { key, value }.encode(),
        );
    }

    /// Runs `requests` puts through the group with every client busy, and returns the requests
    /// committed, executed and answered.
    pub fn run(&mut self, requests: u64) -> u64 {
        let before = self.replies;
        let clients = self.next_request.len() as u64;
        let first = requests.min(clients);
        self.budget = requests - first;
        for client in 0..first {
            self.submit_put(client);
        }
        self.drain();
        let done = self.replies - before;
        assert_eq!(done, requests, "every request was answered");
        done
    }

    fn drain(&mut self) {
        while let Some((to, envelope)) = self.inbox.pop_front() {
            self.step(to, Input::Message(envelope));
        }
    }

    fn step(&mut self, replica: u8, input: Input) {
        let mut actions = std::mem::take(&mut self.actions);
        self.replicas[usize::from(replica)].step(input, &mut actions);
        let mut follow_ups = Vec::new();
        for action in actions.drain(..) {
            match action {
                Action::Send {
                    to: Endpoint::Replica(r),
                    envelope,
                } => {
                    self.inbox.push_back((r.0, envelope));
                }
                Action::Send {
                    to: Endpoint::Client(client),
                    ..
                } => {
                    self.replies += 1;
                    if self.budget > 0 {
                        self.budget -= 1;
                        self.submit_put(client.0 - 1);
                    }
                }
                Action::Append { header, .. } => {
                    follow_ups.push(Input::Durable {
                        op: header.op,
                        checksum: header.checksum,
                    });
                }
                Action::PersistView { view, log_view, .. } => {
                    follow_ups.push(Input::ViewDurable { view, log_view });
                }
                Action::WriteCheckpoint { header, .. }
                | Action::InstallCheckpoint { header, .. } => {
                    follow_ups.push(Input::CheckpointDurable {
                        op: header.op,
                        checksum: header.checksum,
                    });
                }
                Action::Repair { .. }
                | Action::Truncate { .. }
                | Action::Executed { .. }
                | Action::Applied { .. }
                | Action::Attempt { .. }
                | Action::Outboxed { .. }
                | Action::Restored { .. } => {}
            }
        }
        self.actions = actions;
        for input in follow_ups {
            self.step(replica, input);
        }
    }

    /// Prepares committed by the primary so far.
    #[must_use]
    pub fn prepares_committed(&self) -> u64 {
        self.replicas[0].commit_max().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The in-memory group commits every request it is given, and batches: a bench that stalled,
    // dropped requests or never batched would measure the wrong thing.
    #[test]
    fn runs_commit_every_request_in_batches() {
        for batch in [1, 64] {
            let mut cluster = MemoryCluster::new(3, batch, 64 * 8);
            let registered = cluster.prepares_committed();
            assert_eq!(cluster.run(4096), 4096);
            let prepares = cluster.prepares_committed() - registered;
            if batch == 1 {
                assert_eq!(prepares, 4096);
            } else {
                assert!(
                    prepares < 4096 / 16,
                    "{prepares} prepares for 4096 requests"
                );
            }
        }
    }
}
