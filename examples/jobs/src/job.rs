//! One job and the stages it moves through.

use chronon_engine::Timestamp;
use chronon_engine::app::EffectId;
use chronon_engine::app::codec::{Reader, put_bytes, put_u64};

use crate::codec::{
    put_effect_id, put_string, put_timestamp, read_effect_id, read_string, read_timestamp,
};

/// A job's number, assigned in submission order by the replicated state (so every replica
/// gives the same job the same number). The first job is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {}", self.0)
    }
}

/// A submitted job: what to POST where, and how far it has got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// An `http://` URL the payload is sent to (in a POST).
    pub url: String,
    pub payload: Vec<u8>,
    /// Consensus time of the `Submit`.
    pub submitted_at: Timestamp,
    pub phase: Phase,
}

/// Where a job is. Every change of phase happens in `apply`, at a committed event, so every
/// replica sees the same phases at the same ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its timer, which fires when consensus time reaches `at`.
    Scheduled { at: Timestamp, timer: EffectId },
    /// Its HTTP effect is in the outbox since `since`: being attempted, or backing off between
    /// attempts. It can no longer be cancelled: an attempt may already have reached the
    /// receiver.
    Running { effect: EffectId, since: Timestamp },
    /// The receiver answered with a 2xx status; `response` is the body it sent.
    Done {
        effect: EffectId,
        response: Vec<u8>,
        at: Timestamp,
    },
    /// Every attempt the retry policy allows failed and the effect is dead-lettered; `error` is
    /// the last attempt's. An operator can still retry the dead letter (a kernel `Retry`), and
    /// a later success moves the job to `Done`.
    Failed {
        effect: EffectId,
        error: String,
        at: Timestamp,
    },
    /// Cancelled before it started.
    Cancelled { at: Timestamp },
}

/// A phase without its details, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Scheduled,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl Phase {
    #[must_use]
    pub fn stage(&self) -> Stage {
        match self {
            Phase::Scheduled { .. } => Stage::Scheduled,
            Phase::Running { .. } => Stage::Running,
            Phase::Done { .. } => Stage::Done,
            Phase::Failed { .. } => Stage::Failed,
            Phase::Cancelled { .. } => Stage::Cancelled,
        }
    }
}

impl Stage {
    /// The stage's byte in encodings (and the matching [`Phase`]'s).
    #[must_use]
    pub fn tag(self) -> u8 {
        match self {
            Stage::Scheduled => 1,
            Stage::Running => 2,
            Stage::Done => 3,
            Stage::Failed => 4,
            Stage::Cancelled => 5,
        }
    }

    #[must_use]
    pub fn from_tag(tag: u8) -> Option<Stage> {
        match tag {
            1 => Some(Stage::Scheduled),
            2 => Some(Stage::Running),
            3 => Some(Stage::Done),
            4 => Some(Stage::Failed),
            5 => Some(Stage::Cancelled),
            _ => None,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Stage::Scheduled => "scheduled",
            Stage::Running => "running",
            Stage::Done => "done",
            Stage::Failed => "failed",
            Stage::Cancelled => "cancelled",
        };
        f.write_str(name)
    }
}

pub(crate) fn put_job(out: &mut Vec<u8>, job: &Job) {
    put_string(out, &job.name);
    put_string(out, &job.url);
    put_bytes(out, &job.payload);
    put_timestamp(out, job.submitted_at);
    out.push(job.phase.stage().tag());
    match &job.phase {
        Phase::Scheduled { at, timer } => {
            put_timestamp(out, *at);
            put_effect_id(out, *timer);
        }
        Phase::Running { effect, since } => {
            put_effect_id(out, *effect);
            put_timestamp(out, *since);
        }
        Phase::Done {
            effect,
            response,
            at,
        } => {
            put_effect_id(out, *effect);
            put_bytes(out, response);
            put_timestamp(out, *at);
        }
        Phase::Failed { effect, error, at } => {
            put_effect_id(out, *effect);
            put_string(out, error);
            put_timestamp(out, *at);
        }
        Phase::Cancelled { at } => put_timestamp(out, *at),
    }
}

/// Reads a job written by [`put_job`]; `None` if malformed.
pub(crate) fn read_job(r: &mut Reader<'_>) -> Option<Job> {
    let name = read_string(r)?;
    let url = read_string(r)?;
    let payload = r.bytes()?.to_vec();
    let submitted_at = read_timestamp(r)?;
    let phase = match Stage::from_tag(r.u8()?)? {
        Stage::Scheduled => Phase::Scheduled {
            at: read_timestamp(r)?,
            timer: read_effect_id(r)?,
        },
        Stage::Running => Phase::Running {
            effect: read_effect_id(r)?,
            since: read_timestamp(r)?,
        },
        Stage::Done => Phase::Done {
            effect: read_effect_id(r)?,
            response: r.bytes()?.to_vec(),
            at: read_timestamp(r)?,
        },
        Stage::Failed => Phase::Failed {
            effect: read_effect_id(r)?,
            error: read_string(r)?,
            at: read_timestamp(r)?,
        },
        Stage::Cancelled => Phase::Cancelled {
            at: read_timestamp(r)?,
        },
    };
    Some(Job {
        name,
        url,
        payload,
        submitted_at,
        phase,
    })
}

pub(crate) fn put_job_id(out: &mut Vec<u8>, job: JobId) {
    put_u64(out, job.0);
}

pub(crate) fn read_job_id(r: &mut Reader<'_>) -> Option<JobId> {
    Some(JobId(r.u64()?))
}
