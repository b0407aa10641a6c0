//! The job queue inside three real replicas (`chronon_engine::vsr::Replica`), wired together in
//! memory by a small deterministic harness: the whole loop an application author needs to
//! see, with nothing faked inside the replicas.
//!
//! The harness plays every part around the replicas. It delivers their messages in order,
//! acknowledges each journal write and view change at once (`Input::Durable`,
//! `Input::ViewDurable`), advances a fake clock by one tick at a time (consensus time comes
//! from it), and carries out the attempts the primary asks for (`Action::Attempt`) against a
//! fake HTTP receiver, whose answer returns on the next tick (`Input::EffectResult`). The
//! receiver behaves as the crate docs ask: it deduplicates by `Idempotency-Key` and refuses a
//! fence lower than the highest it has seen. Each URL's path says how it misbehaves.

use std::collections::{BTreeMap, VecDeque};

use chronon_engine::app::codec::Reader;
use chronon_engine::app::{ChrApplication, EffectId, SideEffect};
use chronon_engine::vsr::{
    Action, EffectPolicy, Endpoint, Envelope, Input, Message, Replica, ReplicaConfig, ReplyError,
    Request, RequestKind, Status, Timeouts,
};
use chronon_engine::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId, Timestamp, View};
use chronon_example_jobs::{Job, JobCommand, JobId, JobQueue, JobReply, Phase, Stage};

const CLUSTER: ClusterId = ClusterId(0x10b5);
const SHARD: ShardId = ShardId(0);
const CLIENT: ClientId = ClientId(1);
const REPLICAS: u8 = 3;
/// One tick of the fake clock: 10 ms of consensus time.
const TICK_NS: u64 = 10_000_000;
/// Ticks a client waits for a reply before sending its request again.
const RESEND_TICKS: u64 = 20;
/// A run that has not settled after this many ticks is stuck.
const TICKS_MAX: u64 = 5_000;

// ---- The receiver ----

/// One attempt that reached the receiver.
#[derive(Clone, Debug)]
struct Delivery {
    key: EffectId,
    fence: View,
    path: String,
    at: Timestamp,
    result: Result<Vec<u8>, String>,
}

/// A fake HTTP endpoint that does what a real receiver must: act once per `Idempotency-Key`
/// (answering repeats with the stored response) and refuse fences older than the newest seen.
/// How it treats a request depends on the URL's path:
///
/// - `/ok`: acts and answers.
/// - `/flaky`: fails the first attempt of each key without acting (a 503), then acts.
/// - `/lossy`: acts on the first attempt, but the answer is lost on the way back (a timeout
///   at the primary), so the retry must be deduplicated.
/// - `/down`: always fails; the effect is dead-lettered.
#[derive(Debug, Default)]
struct Receiver {
    /// What the receiver acted on: its response by key.
    acted: BTreeMap<EffectId, Vec<u8>>,
    /// Every time the receiver acted, in order: a key appears twice if deduplication failed.
    actions: Vec<EffectId>,
    /// Keys seen at least once (acted on or not).
    seen: BTreeMap<EffectId, u32>,
    fence_max: View,
    deliveries: Vec<Delivery>,
}

impl Receiver {
    fn handle(
        &mut self,
        key: EffectId,
        fence: View,
        effect: &SideEffect,
        at: Timestamp,
    ) -> Result<Vec<u8>, String> {
        let SideEffect::Http { url, body, .. } = effect else {
            panic!("the job queue only makes HTTP requests, got {effect:?}");
        };
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
        let path = path.unwrap_or("/").to_owned();
        let result = self.respond(key, fence, &path, body);
        self.deliveries.push(Delivery {
            key,
            fence,
            path,
            at,
            result: result.clone(),
        });
        result
    }

    fn respond(
        &mut self,
        key: EffectId,
        fence: View,
        path: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        if fence < self.fence_max {
            return Err(format!(
                "409 fence {fence} is older than {}",
                self.fence_max
            ));
        }
        self.fence_max = fence;
        let sightings = self.seen.entry(key).or_insert(0);
        *sightings += 1;
        let first = *sightings == 1;
        if let Some(response) = self.acted.get(&key) {
            return Ok(response.clone());
        }
        match path {
            "/down" => return Err("503 down for maintenance".to_owned()),
            "/flaky" if first => return Err("503 try again".to_owned()),
            _ => {}
        }
        let response = [b"ran ", body].concat();
        self.acted.insert(key, response.clone());
        self.actions.push(key);
        if path == "/lossy" && first {
            return Err("timed out waiting for the response".to_owned());
        }
        Ok(response)
    }

    fn times_acted(&self, key: EffectId) -> usize {
        self.actions.iter().filter(|&&k| k == key).count()
    }

    fn deliveries_of(&self, key: EffectId) -> Vec<&Delivery> {
        self.deliveries.iter().filter(|d| d.key == key).collect()
    }
}

// ---- The harness ----

/// Three replicas and everything around them, in one thread, in a fixed order.
struct Cluster {
    replicas: Vec<Replica<JobQueue>>,
    now: Timestamp,
    ticks: u64,
    network: VecDeque<(u8, Envelope)>,
    /// Attempt results on their way back to the replica that asked, delivered next tick.
    results: Vec<(u8, Input)>,
    /// A replica cut off from the others, the client and the receiver: its messages are
    /// dropped and its attempts held (a slow link), to reach the receiver when it heals.
    isolated: Option<u8>,
    held: Vec<(u8, EffectId, View, u32, SideEffect)>,
    /// Isolate the primary the moment it asks for its first attempt.
    isolate_on_attempt: bool,
    receiver: Receiver,
    replies: BTreeMap<RequestNumber, Result<Vec<u8>, ReplyError>>,
    next_request: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let replicas = (0..REPLICAS)
            .map(|r| {
                let config = ReplicaConfig {
                    cluster: CLUSTER,
                    shard: SHARD,
                    replica: ReplicaIndex(r),
                    replica_count: REPLICAS,
                    sessions_max: 4,
                    body_max: 64 * 1024,
                    batch_requests_max: 16,
                    request_queue_max: 16,
                    timeouts: Timeouts::default(),
                    // Checkpoints every 32 ops, acknowledged at once like every write here: the
                    // queue's snapshot and the outbox go through checkpoints too.
                    checkpoint_interval: 32,
                    log_ops_max: 256,
                    // Short backoffs, so a run takes seconds of consensus time; a breaker that
                    // never opens, so the failing URLs do not hold back the others.
                    effects: EffectPolicy {
                        attempts_max: 3,
                        backoff_base_ns: 5 * TICK_NS,
                        backoff_max_ns: 20 * TICK_NS,
                        breaker_threshold: u32::MAX,
                        breaker_cooldown_ns: 0,
                        in_flight_max: 16,
                    },
                    record_applied: false,
                    bug: None,
                };
                Replica::new(config, JobQueue)
            })
            .collect();
        let mut cluster = Cluster {
            replicas,
            now: Timestamp(0),
            ticks: 0,
            network: VecDeque::new(),
            results: Vec::new(),
            isolated: None,
            held: Vec::new(),
            isolate_on_attempt: false,
            receiver: Receiver::default(),
            replies: BTreeMap::new(),
            next_request: 0,
        };
        cluster
            .request(RequestKind::Register, Vec::new())
            .expect("the client registers");
        cluster
    }

    fn replica(&self, index: u8) -> &Replica<JobQueue> {
        &self.replicas[usize::from(index)]
    }

    /// The reachable replica that is primary of the newest view, in normal status.
    fn primary(&self) -> Option<u8> {
        (0..REPLICAS)
            .filter(|&r| Some(r) != self.isolated)
            .filter(|&r| self.replica(r).is_primary() && self.replica(r).status() == Status::Normal)
            .max_by_key(|&r| self.replica(r).view())
    }

    /// Steps one replica and carries out what it asks for, following up writes at once.
    fn step(&mut self, index: u8, input: Input) {
        let mut actions = Vec::new();
        self.replicas[usize::from(index)].step(input, &mut actions);
        self.replica(index).check_invariants();
        let mut follow_ups = Vec::new();
        for action in actions {
            match action {
                Action::Send { to, envelope } => self.send(index, to, envelope),
                Action::Append { header, .. } => follow_ups.push(Input::Durable {
                    op: header.op,
                    checksum: header.checksum,
                }),
                Action::PersistView { view, log_view, .. } => {
                    follow_ups.push(Input::ViewDurable { view, log_view });
                }
                Action::WriteCheckpoint {
                    header, checksum, ..
                }
                | Action::InstallCheckpoint {
                    header, checksum, ..
                } => follow_ups.push(Input::CheckpointDurable {
                    op: header.op,
                    checksum,
                }),
                Action::Attempt {
                    id,
                    view,
                    attempt,
                    effect,
                } => {
                    self.attempt(index, id, view, attempt, effect);
                }
                Action::Truncate { .. }
                | Action::Executed { .. }
                | Action::Repair { .. }
                | Action::Applied { .. }
                | Action::Outboxed { .. }
                | Action::Restored { .. } => {}
            }
        }
        for input in follow_ups {
            self.step(index, input);
        }
    }

    fn send(&mut self, from: u8, to: Endpoint, envelope: Envelope) {
        match to {
            Endpoint::Replica(ReplicaIndex(r)) => {
                if self.isolated != Some(from) && self.isolated != Some(r) {
                    self.network.push_back((r, envelope));
                }
            }
            Endpoint::Client(_) => {
                if let Message::Reply(reply) = envelope.message
                    && self.isolated != Some(from)
                {
                    self.replies.insert(reply.request, reply.result);
                }
            }
        }
    }

    fn attempt(&mut self, index: u8, id: EffectId, view: View, attempt: u32, effect: SideEffect) {
        if self.isolate_on_attempt {
            self.isolate_on_attempt = false;
            self.isolated = Some(index);
        }
        if self.isolated == Some(index) {
            self.held.push((index, id, view, attempt, effect));
            return;
        }
        let result = self.receiver.handle(id, view, &effect, self.now);
        self.results.push((
            index,
            Input::EffectResult {
                id,
                view,
                attempt,
                result,
            },
        ));
    }

    /// Delivers messages until none is in flight.
    fn deliver(&mut self) {
        while let Some((to, envelope)) = self.network.pop_front() {
            self.step(to, Input::Message(envelope));
        }
    }

    /// Advances the clock by one tick: attempt results arrive, then every replica ticks.
    fn tick(&mut self) {
        self.ticks += 1;
        self.now = Timestamp(self.now.0 + TICK_NS);
        for (index, input) in std::mem::take(&mut self.results) {
            self.step(index, input);
        }
        for index in 0..REPLICAS {
            self.step(index, Input::Tick { now: self.now });
            self.deliver();
        }
    }

    /// Reconnects the isolated replica; the attempts it held reach the receiver now, late.
    fn heal(&mut self) {
        self.isolated = None;
        for (index, id, view, attempt, effect) in std::mem::take(&mut self.held) {
            let result = self.receiver.handle(id, view, &effect, self.now);
            self.results.push((
                index,
                Input::EffectResult {
                    id,
                    view,
                    attempt,
                    result,
                },
            ));
        }
    }

    /// Sends a request to the primary, again every `RESEND_TICKS` until a reply comes.
    fn request(&mut self, kind: RequestKind, body: Vec<u8>) -> Result<Vec<u8>, ReplyError> {
        let number = RequestNumber(self.next_request);
        self.next_request += 1;
        let request = Request {
            client: CLIENT,
            request: number,
            kind,
            body,
        };
        for _ in 0..TICKS_MAX / RESEND_TICKS {
            if let Some(primary) = self.primary() {
                let view = self.replica(primary).view();
                let message = Message::Request(request.clone());
                let envelope =
                    Envelope::seal(CLUSTER, SHARD, view, Endpoint::Client(CLIENT), message);
                self.step(primary, Input::Message(envelope));
                self.deliver();
            }
            for _ in 0..RESEND_TICKS {
                if let Some(reply) = self.replies.remove(&number) {
                    return reply;
                }
                self.tick();
            }
        }
        panic!("request {number} got no reply in {TICKS_MAX} ticks");
    }

    /// Runs a command through the log: the decoded reply, or the rejection's text.
    fn command(&mut self, command: &JobCommand) -> Result<JobReply, String> {
        self.command_bytes(command.encode())
    }

    fn command_bytes(&mut self, bytes: Vec<u8>) -> Result<JobReply, String> {
        match self.request(RequestKind::Command, bytes) {
            Ok(reply) => Ok(JobReply::decode(&reply).expect("the queue's replies decode")),
            Err(ReplyError::Rejected(text)) => Err(text),
            Err(error) => panic!("the request failed outside the application: {error:?}"),
        }
    }

    fn submit(&mut self, name: &str, path: &str, delay_ns: Option<u64>) -> (JobId, EffectId) {
        let command = JobCommand::Submit {
            name: name.to_owned(),
            url: format!("http://hooks.test{path}"),
            payload: name.as_bytes().to_vec(),
            run_at_delay_ns: delay_ns,
        };
        match self.command(&command) {
            Ok(JobReply::Submitted { job, effect }) => (job, effect),
            other => panic!("submitting {name}: {other:?}"),
        }
    }

    fn status(&mut self, job: JobId) -> Job {
        match self.command(&JobCommand::Status { job }) {
            Ok(JobReply::Status { details, .. }) => details,
            other => panic!("status of {job}: {other:?}"),
        }
    }

    /// Ticks until every job is settled (done, failed or cancelled) on every replica, and the
    /// replicas have executed the same ops with nothing left in their outboxes.
    fn settle(&mut self) {
        while !self.settled() {
            assert!(
                self.ticks < TICKS_MAX,
                "not settled after {TICKS_MAX} ticks"
            );
            self.tick();
        }
    }

    fn settled(&self) -> bool {
        let first = self.replica(0);
        self.replicas.iter().all(|replica| {
            let unfinished = replica
                .state()
                .jobs()
                .any(|(_, job)| matches!(job.phase.stage(), Stage::Scheduled | Stage::Running));
            !unfinished
                && replica.outbox().is_idle()
                && replica.commit_min() == first.commit_max()
                && replica.commit_max() == first.commit_max()
        })
    }

    /// Settles, then checks every replica reached the same state: the same state hash (over
    /// every op executed) and byte-identical snapshots.
    fn assert_replicas_agree(&mut self) {
        self.settle();
        let hash = self.replica(0).state_hash();
        let snapshot = JobQueue.snapshot(self.replica(0).state());
        for index in 1..REPLICAS {
            let replica = self.replica(index);
            assert_eq!(
                replica.state_hash(),
                hash,
                "replica {index}'s state hash differs"
            );
            assert_eq!(
                JobQueue.snapshot(replica.state()),
                snapshot,
                "replica {index}'s state differs"
            );
        }
    }
}

/// The job's effect that ran it (its HTTP request).
fn request_effect(job: &Job) -> EffectId {
    match &job.phase {
        Phase::Done { effect, .. }
        | Phase::Failed { effect, .. }
        | Phase::Running { effect, .. } => *effect,
        phase => panic!("{} never ran: {phase:?}", job.name),
    }
}

// ---- Tests ----

// A client submits immediate and delayed jobs to a healthy group. Proves: jobs run; a job whose
// receiver fails or loses the answer is retried and completes, acted on once at the receiver
// thanks to the Idempotency-Key; a job whose receiver is down is dead-lettered and marked
// failed after exactly the policy's attempts; a delayed job runs once, not before its time;
// a cancelled one never runs; bad commands are rejected with the application's error; and all
// three replicas end with the same state hash and state.
#[test]
fn jobs_run_retry_and_settle_alike_on_three_replicas() {
    let mut cluster = Cluster::new();
    let (ok, _) = cluster.submit("ok", "/ok", None);
    let (flaky, _) = cluster.submit("flaky", "/flaky", None);
    let (lossy, _) = cluster.submit("lossy", "/lossy", None);
    let (down, _) = cluster.submit("down", "/down", None);
    let (later, later_timer) = cluster.submit("later", "/ok", Some(1_000_000_000));
    let (later_flaky, _) = cluster.submit("later-flaky", "/flaky", Some(2_000_000_000));
    let (cancelled, _) = cluster.submit("cancelled", "/ok", Some(1_000_000_000));

    assert_eq!(
        cluster.command(&JobCommand::Cancel { job: cancelled }),
        Ok(JobReply::Cancelled { job: cancelled })
    );
    let refused = cluster
        .command(&JobCommand::Cancel { job: ok })
        .expect_err("ok is running");
    assert!(refused.contains("cannot be cancelled"), "{refused}");
    let malformed = cluster.command_bytes(vec![0xff, 1, 2]).expect_err("junk");
    assert!(
        malformed.starts_with("malformed job-queue command"),
        "{malformed}"
    );
    assert!(
        cluster
            .command(&JobCommand::Status { job: JobId(99) })
            .is_err()
    );

    cluster.settle();

    for (job, attempts_min) in [
        (ok, 1),
        (flaky, 2),
        (lossy, 2),
        (later, 1),
        (later_flaky, 2),
    ] {
        let details = cluster.status(job);
        let effect = request_effect(&details);
        let Phase::Done { response, .. } = &details.phase else {
            panic!("{job} did not complete: {details:?}");
        };
        assert_eq!(response, &[b"ran ", details.name.as_bytes()].concat());
        let deliveries = cluster.receiver.deliveries_of(effect);
        assert!(deliveries.len() >= attempts_min, "{job}: {deliveries:?}");
        assert_eq!(cluster.receiver.acted.get(&effect), Some(response));
        assert_eq!(
            cluster.receiver.times_acted(effect),
            1,
            "{job} acted on once"
        );
    }
    let details = cluster.status(down);
    let Phase::Failed { effect, error, .. } = &details.phase else {
        panic!("down did not fail: {details:?}");
    };
    assert_eq!(error, "503 down for maintenance");
    assert_eq!(
        cluster.receiver.deliveries_of(*effect).len(),
        3,
        "attempts_max attempts"
    );
    assert!(!cluster.receiver.acted.contains_key(effect));

    // The delayed job ran once, when consensus time reached its due time, never before.
    let details = cluster.status(later);
    let due = details.submitted_at.0 + 1_000_000_000;
    let deliveries = cluster.receiver.deliveries_of(request_effect(&details));
    assert_eq!(deliveries.len(), 1);
    assert!(
        deliveries[0].at.0 >= due,
        "ran at {} before {due}",
        deliveries[0].at
    );
    assert!(
        later_timer.op < request_effect(&details).op,
        "the timer's op started it"
    );

    assert_eq!(cluster.status(cancelled).phase.stage(), Stage::Cancelled);
    let cancelled_runs = cluster
        .receiver
        .deliveries
        .iter()
        .filter(|d| d.path == "/ok")
        .count();
    assert_eq!(cancelled_runs, 2, "only ok and later reached /ok");
    for index in 0..REPLICAS {
        let counts = cluster.replica(index).outbox().counts();
        assert_eq!(
            counts.timers_fired, 3,
            "each timer fired once, the cancelled job's too"
        );
        assert_eq!(counts.dead_lettered, 1);
    }
    assert!(
        cluster
            .receiver
            .deliveries
            .iter()
            .all(|d| d.fence == View(0))
    );
    cluster.assert_replicas_agree();
}

// The primary is cut off the moment it sends a job's first attempt, which is held on its slow
// link. The other two elect a new primary, which runs the job again under the same
// Idempotency-Key with a newer fence, and fires a delayed job's timer. When the old primary's
// attempt finally arrives, the receiver refuses its stale fence. Proves: a job accepted by a
// primary that dies still runs, once at the receiver; the fence keeps the deposed primary
// out; and once the old primary rejoins, all three replicas agree.
#[test]
fn a_new_primary_runs_the_jobs_of_a_deposed_one() {
    let mut cluster = Cluster::new();
    let (later, _) = cluster.submit("later", "/ok", Some(2_000_000_000));
    cluster.isolate_on_attempt = true;
    let (now, effect) = cluster.submit("now", "/ok", None);
    // The attempt goes out once the primary's clock reaches the op's timestamp: at once, or
    // at the next tick when several ops shared a tick.
    while cluster.isolated.is_none() {
        assert!(
            cluster.ticks < TICKS_MAX,
            "the primary never attempted the job"
        );
        cluster.tick();
    }
    assert_eq!(
        cluster.isolated,
        Some(0),
        "the primary of view 0 was cut off"
    );
    assert!(cluster.receiver.deliveries.is_empty());

    let (after, _) = cluster.submit("after", "/ok", None);
    assert!(cluster.primary().is_some_and(|p| p != 0));
    while cluster.receiver.acted.len() < 3 {
        assert!(
            cluster.ticks < TICKS_MAX,
            "the new primary did not run the jobs"
        );
        cluster.tick();
    }
    cluster.heal();
    cluster.settle();

    for job in [later, now, after] {
        assert_eq!(cluster.status(job).phase.stage(), Stage::Done, "{job}");
    }
    let deliveries = cluster.receiver.deliveries_of(effect);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let (new, old) = (deliveries[0], deliveries[1]);
    assert!(new.fence > View(0) && new.result.is_ok(), "{new:?}");
    assert_eq!(old.fence, View(0));
    assert!(
        old.result.as_ref().is_err_and(|e| e.starts_with("409")),
        "{old:?}"
    );
    assert_eq!(cluster.receiver.actions.len(), 3, "each job acted on once");
    assert_eq!(cluster.receiver.times_acted(effect), 1);
    cluster.assert_replicas_agree();
}

// The timer payload the queue records names its job, so a reader of the outbox can tell which
// job a timer will start.
#[test]
fn a_timer_names_its_job() {
    let mut cluster = Cluster::new();
    let (job, timer) = cluster.submit("later", "/ok", Some(5_000_000_000));
    let outbox = cluster.replica(0).outbox();
    let armed = &outbox.timers()[&timer];
    let mut r = Reader::new(&armed.payload);
    assert_eq!(r.u64(), Some(job.0));
    assert!(r.is_empty());
}
