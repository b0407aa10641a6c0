//! The job queue as a [`ChrApplication`]: its state, and how each event changes it.

use chronon_engine::Timestamp;
use chronon_engine::app::codec::{Reader, put_u64};
use chronon_engine::app::{Applied, ApplyContext, ChrApplication, EffectId, Event, SideEffect};
use imbl::OrdMap;

use crate::codec::{put_effect_id, read_effect_id};
use crate::command::{JobCommand, JobReply, JobSummary};
use crate::error::JobError;
use crate::job::{Job, JobId, Phase, put_job, put_job_id, read_job, read_job_id};
use crate::{NAME_MAX, PAYLOAD_MAX, URL_MAX};

/// The application. It holds no state of its own (the replica keeps [`JobsState`] and hands
/// it to every call), so every replica's `JobQueue` is the same.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobQueue;

/// The replicated state: every job, and which job each HTTP effect belongs to.
///
/// Ordered, persistent maps: iteration order is the key order on every replica (a `HashMap`'s
/// would differ between processes), and cloning is O(1), so `apply` can return a changed copy
/// without copying the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobsState {
    /// The number the next submitted job gets.
    next_job: u64,
    jobs: OrdMap<JobId, Job>,
    /// The job of each HTTP effect whose outcome may still arrive: running jobs, and failed
    /// ones (a dead letter can be retried, and its success then arrives as a completion).
    owners: OrdMap<EffectId, JobId>,
}

impl JobsState {
    #[must_use]
    pub fn job(&self, job: JobId) -> Option<&Job> {
        self.jobs.get(&job)
    }

    /// Every job, in job order.
    pub fn jobs(&self) -> impl Iterator<Item = (JobId, &Job)> + '_ {
        self.jobs.iter().map(|(id, job)| (*id, job))
    }

    /// The job an HTTP effect belongs to, while its outcome may still arrive.
    #[must_use]
    pub fn owner(&self, effect: EffectId) -> Option<JobId> {
        self.owners.get(&effect).copied()
    }

    fn summaries(&self) -> Vec<JobSummary> {
        self.jobs()
            .map(|(job, details)| JobSummary {
                job,
                name: details.name.clone(),
                stage: details.phase.stage(),
            })
            .collect()
    }

    fn status(&self, job: JobId) -> Result<JobReply, JobError> {
        let details = self.job(job).ok_or(JobError::UnknownJob { job })?.clone();
        Ok(JobReply::Status { job, details })
    }

    /// This state with `job`'s phase replaced.
    fn with_phase(&self, job: JobId, phase: Phase) -> JobsState {
        let mut next = self.clone();
        let details = next
            .jobs
            .get_mut(&job)
            .expect("invariant: the caller found the job");
        details.phase = phase;
        next
    }
}

/// The HTTP request that runs a job. The kernel adds `Idempotency-Key` (the effect id) and
/// `Chronon-Fence` (the primary's view) to every attempt; `Chronon-Job` is this application's
/// own, for the receiver's logs.
fn request(job: JobId, url: &str, payload: &[u8]) -> SideEffect {
    SideEffect::Http {
        method: "POST".to_owned(),
        url: url.to_owned(),
        headers: vec![
            (
                "Content-Type".to_owned(),
                "application/octet-stream".to_owned(),
            ),
            ("Chronon-Job".to_owned(), job.0.to_string()),
        ],
        body: payload.to_vec(),
    }
}

/// Checks a submission. Only the bytes decide, so every replica decides alike.
fn validate(name: &str, url: &str, payload: &[u8]) -> Result<(), JobError> {
    let reason = if name.is_empty() || name.len() > NAME_MAX {
        "the name must be 1 to NAME_MAX (256) bytes"
    } else if !url.starts_with("http://") || url.len() > URL_MAX {
        "the URL must start with http:// and be at most URL_MAX (2048) bytes"
    } else if url.contains(['\r', '\n', ' ']) {
        "the URL must not contain spaces or line breaks"
    } else if payload.len() > PAYLOAD_MAX {
        "the payload must be at most PAYLOAD_MAX (32 KiB)"
    } else {
        return Ok(());
    };
    Err(JobError::Invalid { reason })
}

/// What one event did: the next state, the reply and the effects to record.
fn applied(state: JobsState, reply: &JobReply, effects: Vec<SideEffect>) -> Applied<JobsState> {
    Applied {
        state,
        reply: reply.encode(),
        effects,
    }
}

/// An event that changes nothing and answers nothing (a timer of a cancelled job).
fn unchanged(state: &JobsState) -> Applied<JobsState> {
    Applied {
        state: state.clone(),
        reply: Vec::new(),
        effects: Vec::new(),
    }
}

impl JobQueue {
    fn command(
        state: &JobsState,
        command: JobCommand,
        context: &ApplyContext,
    ) -> Result<Applied<JobsState>, JobError> {
        match command {
            JobCommand::Submit {
                name,
                url,
                payload,
                run_at_delay_ns,
            } => {
                validate(&name, &url, &payload)?;
                Ok(Self::submit(
                    state,
                    name,
                    url,
                    payload,
                    run_at_delay_ns,
                    context,
                ))
            }
            JobCommand::Cancel { job } => Self::cancel(state, job, context),
            JobCommand::Status { job } => Ok(applied(state.clone(), &state.status(job)?, vec![])),
            JobCommand::List => {
                let reply = JobReply::List(state.summaries());
                Ok(applied(state.clone(), &reply, vec![]))
            }
        }
    }

    /// Adds a job with the one effect that moves it on: a timer for a delayed job, the HTTP
    /// request for an immediate one. The effect is the first this event returns, so
    /// [`ApplyContext::effect_id`]`(0)` is the id the kernel will give it.
    fn submit(
        state: &JobsState,
        name: String,
        url: String,
        payload: Vec<u8>,
        run_at_delay_ns: Option<u64>,
        context: &ApplyContext,
    ) -> Applied<JobsState> {
        let job = JobId(state.next_job);
        let effect_id = context.effect_id(0);
        let now = context.timestamp;
        let mut next = state.clone();
        next.next_job += 1;
        let (phase, effect) = if let Some(delay_ns) = run_at_delay_ns {
            let at = Timestamp(now.0.saturating_add(delay_ns));
            let mut job_bytes = Vec::new();
            put_job_id(&mut job_bytes, job);
            let timer = SideEffect::Schedule {
                at,
                payload: job_bytes,
            };
            (
                Phase::Scheduled {
                    at,
                    timer: effect_id,
                },
                timer,
            )
        } else {
            next.owners.insert(effect_id, job);
            let since = now;
            (
                Phase::Running {
                    effect: effect_id,
                    since,
                },
                request(job, &url, &payload),
            )
        };
        let details = Job {
            name,
            url,
            payload,
            submitted_at: now,
            phase,
        };
        next.jobs.insert(job, details);
        let reply = JobReply::Submitted {
            job,
            effect: effect_id,
        };
        applied(next, &reply, vec![effect])
    }

    fn cancel(
        state: &JobsState,
        job: JobId,
        context: &ApplyContext,
    ) -> Result<Applied<JobsState>, JobError> {
        let details = state.job(job).ok_or(JobError::UnknownJob { job })?;
        if !matches!(details.phase, Phase::Scheduled { .. }) {
            let stage = details.phase.stage();
            return Err(JobError::NotCancellable { job, stage });
        }
        // The timer stays armed in the outbox (there is no way to withdraw an effect); when it
        // fires, `start` finds the job cancelled and does nothing.
        let at = context.timestamp;
        let next = state.with_phase(job, Phase::Cancelled { at });
        Ok(applied(next, &JobReply::Cancelled { job }, vec![]))
    }

    /// A delayed job's timer fired: the job starts, with its HTTP request as this event's first
    /// effect.
    fn start(
        state: &JobsState,
        timer: EffectId,
        payload: &[u8],
        context: &ApplyContext,
    ) -> Result<Applied<JobsState>, JobError> {
        let unexpected = JobError::UnexpectedEffect { id: timer };
        let mut r = Reader::new(payload);
        let job = read_job_id(&mut r).ok_or_else(|| unexpected.clone())?;
        let details = state.job(job).ok_or_else(|| unexpected.clone())?;
        match details.phase {
            Phase::Scheduled { timer: armed, .. } if armed == timer && r.is_empty() => {}
            Phase::Cancelled { .. } => return Ok(unchanged(state)),
            _ => return Err(unexpected),
        }
        let effect = context.effect_id(0);
        let http = request(job, &details.url, &details.payload);
        let since = context.timestamp;
        let mut next = state.with_phase(job, Phase::Running { effect, since });
        next.owners.insert(effect, job);
        Ok(Applied {
            state: next,
            reply: Vec::new(),
            effects: vec![http],
        })
    }

    /// The kernel settled a job's HTTP effect: `Ok` with the receiver's response once an
    /// attempt succeeded, `Err` once the effect was dead-lettered.
    fn finish(
        state: &JobsState,
        id: EffectId,
        outcome: Result<&[u8], &str>,
        context: &ApplyContext,
    ) -> Result<Applied<JobsState>, JobError> {
        let job = state.owner(id).ok_or(JobError::UnexpectedEffect { id })?;
        let at = context.timestamp;
        let phase = match outcome {
            Ok(response) => Phase::Done {
                effect: id,
                response: response.to_vec(),
                at,
            },
            Err(error) => Phase::Failed {
                effect: id,
                error: error.to_owned(),
                at,
            },
        };
        let mut next = state.with_phase(job, phase);
        if outcome.is_ok() {
            next.owners.remove(&id);
        }
        Ok(unchanged(&next))
    }
}

impl ChrApplication for JobQueue {
    type State = JobsState;
    type Error = JobError;

    fn genesis(&self) -> JobsState {
        JobsState {
            next_job: 1,
            jobs: OrdMap::new(),
            owners: OrdMap::new(),
        }
    }

    fn apply(
        &self,
        state: &JobsState,
        event: Event<'_>,
        context: &ApplyContext,
    ) -> Result<Applied<JobsState>, JobError> {
        match event {
            Event::Command(bytes) => {
                let command =
                    JobCommand::decode(bytes).ok_or(JobError::Malformed { len: bytes.len() })?;
                Self::command(state, command, context)
            }
            Event::Timer { id, payload } => Self::start(state, id, payload, context),
            Event::EffectCompleted { id, response } => {
                Self::finish(state, id, Ok(response), context)
            }
            Event::EffectFailed { id, error } => Self::finish(state, id, Err(error), context),
        }
    }

    /// Answers `Status` and `List` from this replica's state, without the log: fast, but it may
    /// lag the primary. Send them as commands for an answer that reflects every committed
    /// event.
    fn query(&self, state: &JobsState, query: &[u8]) -> Result<Vec<u8>, JobError> {
        let reply = match JobCommand::decode(query) {
            Some(JobCommand::Status { job }) => state.status(job)?,
            Some(JobCommand::List) => JobReply::List(state.summaries()),
            _ => return Err(JobError::NotAQuery { len: query.len() }),
        };
        Ok(reply.encode())
    }

    fn snapshot(&self, state: &JobsState) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        put_u64(&mut out, state.next_job);
        put_u64(&mut out, state.jobs.len() as u64);
        for (job, details) in &state.jobs {
            put_job_id(&mut out, *job);
            put_job(&mut out, details);
        }
        put_u64(&mut out, state.owners.len() as u64);
        for (effect, job) in &state.owners {
            put_effect_id(&mut out, *effect);
            put_job_id(&mut out, *job);
        }
        out
    }

    fn restore(&self, snapshot: &[u8]) -> Result<JobsState, JobError> {
        restore(snapshot)
    }
}

/// The first byte of every snapshot: a later version of the format gets a new number.
const SNAPSHOT_VERSION: u8 = 1;

/// Decodes a snapshot and checks what the state's invariants need: job numbers strictly
/// increasing and below `next_job`, and every owner naming a job that exists.
fn restore(snapshot: &[u8]) -> Result<JobsState, JobError> {
    let bad = |reason| JobError::BadSnapshot { reason };
    let truncated = || bad("truncated or malformed");
    let mut r = Reader::new(snapshot);
    if r.u8().ok_or_else(truncated)? != SNAPSHOT_VERSION {
        return Err(bad("unknown version"));
    }
    let next_job = r.u64().ok_or_else(truncated)?;
    let mut state = JobsState {
        next_job,
        jobs: OrdMap::new(),
        owners: OrdMap::new(),
    };
    let mut last = JobId(0);
    for _ in 0..r.u64().ok_or_else(truncated)? {
        let job = read_job_id(&mut r).ok_or_else(truncated)?;
        let details = read_job(&mut r).ok_or_else(truncated)?;
        if job <= last || job.0 >= next_job {
            return Err(bad("job numbers out of order"));
        }
        last = job;
        state.jobs.insert(job, details);
    }
    for _ in 0..r.u64().ok_or_else(truncated)? {
        let effect = read_effect_id(&mut r).ok_or_else(truncated)?;
        let job = read_job_id(&mut r).ok_or_else(truncated)?;
        if !state.jobs.contains_key(&job) || state.owners.insert(effect, job).is_some() {
            return Err(bad("an effect names a missing job, or twice"));
        }
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use chronon_engine::{Op, ShardId, View};

    use super::*;
    use crate::job::Stage;

    const URL: &str = "http://hooks.example/run";

    /// The context of op `op` at consensus time `at`, whose first effect gets ordinal 0.
    fn at(op: u64, at: u64) -> ApplyContext {
        ApplyContext {
            shard: ShardId(2),
            op: Op(op),
            view: View(1),
            timestamp: Timestamp(at),
            seed: op,
            effect_ordinal: 0,
        }
    }

    fn submit(name: &str, delay: Option<u64>) -> Vec<u8> {
        JobCommand::Submit {
            name: name.to_owned(),
            url: URL.to_owned(),
            payload: name.as_bytes().to_vec(),
            run_at_delay_ns: delay,
        }
        .encode()
    }

    /// Applies `event`, keeping the new state on success: the result's reply (decoded when it
    /// has one) and effects.
    fn step(
        state: &mut JobsState,
        event: Event<'_>,
        context: &ApplyContext,
    ) -> Result<(Option<JobReply>, Vec<SideEffect>), JobError> {
        let applied = JobQueue.apply(state, event, context)?;
        *state = applied.state;
        let reply = (!applied.reply.is_empty())
            .then(|| JobReply::decode(&applied.reply).expect("the queue's replies decode"));
        Ok((reply, applied.effects))
    }

    fn phase(state: &JobsState, job: u64) -> Phase {
        state.job(JobId(job)).expect("the job exists").phase.clone()
    }

    // An immediate job records its HTTP request as the submission's first effect, under the id
    // the context names, and a completion of that id marks it done with the response. A second
    // completion of the same id finds no owner and is refused.
    #[test]
    fn an_immediate_job_runs_at_once_and_completes() {
        let mut state = JobQueue.genesis();
        let context = ApplyContext {
            effect_ordinal: 3,
            ..at(5, 100)
        };
        let (reply, effects) = step(&mut state, Event::Command(&submit("a", None)), &context)
            .expect("a valid submission");
        let effect = context.effect_id(0);
        assert_eq!(effect.ordinal, 3, "the id the kernel will give the effect");
        assert_eq!(
            reply,
            Some(JobReply::Submitted {
                job: JobId(1),
                effect
            })
        );
        let [
            SideEffect::Http {
                method,
                url,
                headers,
                body,
            },
        ] = effects.as_slice()
        else {
            panic!("one HTTP effect, got {effects:?}");
        };
        assert_eq!(
            (method.as_str(), url.as_str(), body.as_slice()),
            ("POST", URL, &b"a"[..])
        );
        assert!(headers.contains(&("Chronon-Job".to_owned(), "1".to_owned())));
        let since = Timestamp(100);
        assert_eq!(phase(&state, 1), Phase::Running { effect, since });
        assert_eq!(state.owner(effect), Some(JobId(1)));

        let done = Event::EffectCompleted {
            id: effect,
            response: b"ok",
        };
        assert_eq!(step(&mut state, done, &at(9, 200)), Ok((None, vec![])));
        let response = b"ok".to_vec();
        let at_done = Timestamp(200);
        assert_eq!(
            phase(&state, 1),
            Phase::Done {
                effect,
                response,
                at: at_done
            }
        );
        assert_eq!(state.owner(effect), None);
        assert_eq!(
            step(&mut state, done, &at(10, 300)),
            Err(JobError::UnexpectedEffect { id: effect })
        );
    }

    // A delayed job arms a timer at submission time plus the delay, whose payload names the
    // job; the timer's event starts it with an HTTP request under the firing op's effect id.
    // The same timer again is refused: the job is no longer waiting for it.
    #[test]
    fn a_delayed_job_waits_for_its_timer() {
        let mut state = JobQueue.genesis();
        step(
            &mut state,
            Event::Command(&submit("first", None)),
            &at(1, 10),
        )
        .expect("valid");
        let context = at(2, 1_000);
        let (reply, effects) = step(
            &mut state,
            Event::Command(&submit("later", Some(500))),
            &context,
        )
        .expect("valid");
        let timer = context.effect_id(0);
        assert_eq!(
            reply,
            Some(JobReply::Submitted {
                job: JobId(2),
                effect: timer
            })
        );
        let due = Timestamp(1_500);
        assert_eq!(phase(&state, 2), Phase::Scheduled { at: due, timer });
        let [SideEffect::Schedule { at: armed, payload }] = effects.as_slice() else {
            panic!("one timer, got {effects:?}");
        };
        assert_eq!(*armed, due);
        assert_eq!(
            state.owner(timer),
            None,
            "timers name their job in the payload"
        );

        let fire = Event::Timer { id: timer, payload };
        let firing = at(7, 1_600);
        let (reply, effects) = step(&mut state, fire, &firing).expect("the job's timer");
        assert_eq!(reply, None);
        assert!(matches!(effects.as_slice(), [SideEffect::Http { .. }]));
        let effect = firing.effect_id(0);
        let since = Timestamp(1_600);
        assert_eq!(phase(&state, 2), Phase::Running { effect, since });
        assert_eq!(state.owner(effect), Some(JobId(2)));
        assert_eq!(
            step(&mut state, fire, &at(8, 1_700)),
            Err(JobError::UnexpectedEffect { id: timer })
        );
        // A timer whose payload names another job, or no job, is refused too.
        let wrong = Event::Timer {
            id: timer,
            payload: &[1, 0, 0, 0, 0, 0, 0, 0],
        };
        assert!(step(&mut state, wrong, &at(9, 1_800)).is_err());
        let junk = Event::Timer {
            id: timer,
            payload: b"x",
        };
        assert!(step(&mut state, junk, &at(9, 1_800)).is_err());
    }

    // Only a job waiting for its delay can be cancelled; its timer still fires later and
    // changes nothing. Cancelling a running, cancelled or unknown job is refused.
    #[test]
    fn cancel_only_before_the_job_starts() {
        let mut state = JobQueue.genesis();
        let context = at(1, 10);
        step(&mut state, Event::Command(&submit("d", Some(50))), &context).expect("valid");
        step(&mut state, Event::Command(&submit("n", None)), &at(2, 11)).expect("valid");
        let cancel = |job| JobCommand::Cancel { job: JobId(job) }.encode();
        assert_eq!(
            step(&mut state, Event::Command(&cancel(1)), &at(3, 20)),
            Ok((Some(JobReply::Cancelled { job: JobId(1) }), vec![]))
        );
        assert_eq!(phase(&state, 1), Phase::Cancelled { at: Timestamp(20) });
        let refused = [
            (
                1,
                JobError::NotCancellable {
                    job: JobId(1),
                    stage: Stage::Cancelled,
                },
            ),
            (
                2,
                JobError::NotCancellable {
                    job: JobId(2),
                    stage: Stage::Running,
                },
            ),
            (3, JobError::UnknownJob { job: JobId(3) }),
        ];
        for (job, error) in refused {
            assert_eq!(
                step(&mut state, Event::Command(&cancel(job)), &at(4, 30)),
                Err(error)
            );
        }
        let before = state.clone();
        let fire = Event::Timer {
            id: context.effect_id(0),
            payload: &1u64.to_le_bytes(),
        };
        assert_eq!(step(&mut state, fire, &at(5, 60)), Ok((None, vec![])));
        assert_eq!(state, before, "a cancelled job's timer fires into nothing");
    }

    // A dead-lettered effect fails its job with the last error; the job keeps the effect's
    // owner, so an operator's retry that later succeeds still completes it.
    #[test]
    fn a_dead_letter_fails_the_job_and_a_later_success_completes_it() {
        let mut state = JobQueue.genesis();
        let context = at(1, 10);
        step(&mut state, Event::Command(&submit("a", None)), &context).expect("valid");
        let effect = context.effect_id(0);
        let failed = Event::EffectFailed {
            id: effect,
            error: "503 Service Unavailable",
        };
        assert_eq!(step(&mut state, failed, &at(6, 90)), Ok((None, vec![])));
        assert_eq!(
            phase(&state, 1),
            Phase::Failed {
                effect,
                error: "503 Service Unavailable".to_owned(),
                at: Timestamp(90)
            }
        );
        assert_eq!(state.owner(effect), Some(JobId(1)));
        let late = Event::EffectCompleted {
            id: effect,
            response: b"finally",
        };
        step(&mut state, late, &at(9, 200)).expect("the revived effect completes");
        assert_eq!(phase(&state, 1).stage(), Stage::Done);
    }

    // Malformed and invalid commands are refused with an error naming the reason, and a
    // refused submission uses no job number.
    #[test]
    fn bad_commands_are_refused() {
        let mut state = JobQueue.genesis();
        let context = at(1, 10);
        let long = "x".repeat(URL_MAX);
        let invalid = [
            ("", URL, 0),
            ("a", "https://hooks.example/", 0),
            ("a", "hooks.example", 0),
            ("a", "http://hooks.example/a b", 0),
            ("a", &format!("http://{long}"), 0),
            ("a", URL, PAYLOAD_MAX + 1),
        ];
        for (name, url, payload_len) in invalid {
            let command = JobCommand::Submit {
                name: name.to_owned(),
                url: url.to_owned(),
                payload: vec![0; payload_len],
                run_at_delay_ns: None,
            };
            let result = step(&mut state, Event::Command(&command.encode()), &context);
            assert!(
                matches!(result, Err(JobError::Invalid { .. })),
                "{name:?} {url:?}: {result:?}"
            );
        }
        for junk in [&b""[..], b"\x00", b"\x01", b"\x04\x00", b"\xff\xff\xff"] {
            assert_eq!(
                step(&mut state, Event::Command(junk), &context),
                Err(JobError::Malformed { len: junk.len() })
            );
        }
        let status = JobCommand::Status { job: JobId(1) }.encode();
        assert_eq!(
            step(&mut state, Event::Command(&status), &context),
            Err(JobError::UnknownJob { job: JobId(1) })
        );
        assert_eq!(state, JobQueue.genesis());
        let (reply, _) =
            step(&mut state, Event::Command(&submit("a", None)), &context).expect("valid");
        assert!(matches!(
            reply,
            Some(JobReply::Submitted { job: JobId(1), .. })
        ));
    }

    // Status and List answer alike through apply (the log) and query (one replica's state);
    // query refuses commands that would change the queue.
    #[test]
    fn status_and_list_through_apply_and_query() {
        let mut state = JobQueue.genesis();
        step(&mut state, Event::Command(&submit("a", None)), &at(1, 10)).expect("valid");
        step(
            &mut state,
            Event::Command(&submit("b", Some(5))),
            &at(2, 20),
        )
        .expect("valid");
        let list = JobCommand::List.encode();
        let expected = JobReply::List(vec![
            JobSummary {
                job: JobId(1),
                name: "a".to_owned(),
                stage: Stage::Running,
            },
            JobSummary {
                job: JobId(2),
                name: "b".to_owned(),
                stage: Stage::Scheduled,
            },
        ]);
        let queried = JobQueue.query(&state, &list).expect("a query");
        assert_eq!(JobReply::decode(&queried), Some(expected.clone()));
        let before = state.clone();
        let (reply, effects) = step(&mut state, Event::Command(&list), &at(3, 30)).expect("ok");
        assert_eq!((reply, effects), (Some(expected), vec![]));
        assert_eq!(state, before, "reading changes nothing");
        let status = JobCommand::Status { job: JobId(2) }.encode();
        let Some(JobReply::Status { job, details }) =
            JobReply::decode(&JobQueue.query(&state, &status).expect("a query"))
        else {
            panic!("a status reply");
        };
        assert_eq!((job, details.name.as_str()), (JobId(2), "b"));
        assert_eq!(details.submitted_at, Timestamp(20));
        let unknown = JobCommand::Status { job: JobId(9) }.encode();
        assert_eq!(
            JobQueue.query(&state, &unknown),
            Err(JobError::UnknownJob { job: JobId(9) })
        );
        let submit = submit("c", None);
        assert_eq!(
            JobQueue.query(&state, &submit),
            Err(JobError::NotAQuery { len: submit.len() })
        );
    }

    // A snapshot restores to an equal state at every stage of a job's life; every truncation,
    // a trailing byte, an unknown version and inconsistent contents are refused.
    #[test]
    fn snapshot_roundtrip_and_refusals() {
        let mut state = JobQueue.genesis();
        let mut snapshots = vec![JobQueue.snapshot(&state)];
        let first = at(1, 10);
        step(&mut state, Event::Command(&submit("now", None)), &first).expect("valid");
        step(
            &mut state,
            Event::Command(&submit("later", Some(9))),
            &at(2, 11),
        )
        .expect("valid");
        step(
            &mut state,
            Event::Command(&submit("never", Some(9))),
            &at(3, 12),
        )
        .expect("valid");
        let cancel = JobCommand::Cancel { job: JobId(3) }.encode();
        step(&mut state, Event::Command(&cancel), &at(4, 13)).expect("valid");
        snapshots.push(JobQueue.snapshot(&state));
        let failed = Event::EffectFailed {
            id: first.effect_id(0),
            error: "down",
        };
        step(&mut state, failed, &at(5, 14)).expect("valid");
        let bytes = JobQueue.snapshot(&state);
        snapshots.push(bytes.clone());
        for snapshot in &snapshots {
            let restored = JobQueue.restore(snapshot).expect("a snapshot restores");
            assert_eq!(&JobQueue.snapshot(&restored), snapshot);
        }
        assert_eq!(JobQueue.restore(&bytes), Ok(state.clone()));
        for cut in 0..bytes.len() {
            assert!(JobQueue.restore(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(JobQueue.restore(&longer).is_err());
        let mut version = bytes.clone();
        version[0] = SNAPSHOT_VERSION + 1;
        assert!(JobQueue.restore(&version).is_err());
        // `next_job` at or below an existing job's number would hand the number out again.
        let mut reused = bytes.clone();
        reused[1..9].copy_from_slice(&3u64.to_le_bytes());
        assert!(JobQueue.restore(&reused).is_err());
        // An owner naming a job that does not exist.
        let mut orphan = JobQueue.genesis();
        orphan.owners.insert(first.effect_id(0), JobId(1));
        assert!(JobQueue.restore(&JobQueue.snapshot(&orphan)).is_err());
    }
}
