//! Why the job queue rejected an event.

use chronon_engine::app::EffectId;

use crate::job::{JobId, Stage};

/// Why an event was rejected. A rejection is deterministic: every replica rejects the same
/// event with the same error and keeps its state as it was; a client's command gets the text
/// back as its reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error(
        "malformed job-queue command ({len} bytes): the client and the application disagree on \
         the format; nothing was done"
    )]
    Malformed { len: usize },
    #[error("{job} does not exist; nothing was done (`List` shows the jobs there are)")]
    UnknownJob { job: JobId },
    #[error(
        "{job} is {stage}, so it cannot be cancelled: only a job still waiting for its delay \
         can, since an attempt of a running job may already have reached its receiver"
    )]
    NotCancellable { job: JobId, stage: Stage },
    #[error("the job was not submitted: {reason}")]
    Invalid { reason: &'static str },
    #[error(
        "a query must be `Status` or `List` ({len} bytes were something else); commands that \
         change the queue go through the log"
    )]
    NotAQuery { len: usize },
    /// The kernel reported on an effect no job is waiting for. Cannot happen with a kernel
    /// that fires each timer once and settles each effect once; the event changes nothing.
    #[error("the kernel reported on effect {id}, which no job is waiting for; nothing was done")]
    UnexpectedEffect { id: EffectId },
    #[error(
        "malformed job-queue snapshot ({reason}): it was not written by this version of the \
         application, or is damaged; nothing was restored"
    )]
    BadSnapshot { reason: &'static str },
}
