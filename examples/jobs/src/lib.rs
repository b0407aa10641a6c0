//! A durable job queue, written as a Chronon application: a worked example of how to write
//! your own.
//!
//! A client submits a job (a name, an `http://` URL and a payload, and optionally a delay);
//! the queue POSTs the payload to the URL, at once or when the delay has passed, retries it
//! while the receiver fails, and records the outcome: the receiver's response, or the error
//! after the last attempt. Jobs can be cancelled while they wait for their delay, and listed.
//! The queue survives the loss of any minority of replicas, and a job runs even if the
//! primary that accepted it dies before running it.
//!
//! The crate is small on purpose. Read it in this order: [`JobCommand`] (the wire format),
//! [`Job`] (what is stored), [`JobQueue`] (the state machine), then
//! `tests/three_replicas.rs`, which runs the queue inside three real replicas.
//!
//! # 1. An application is a deterministic state machine
//!
//! Chronon replicates a log of events and feeds each committed event to your application's
//! [`ChrApplication::apply`] on every replica, in the same order. You implement five methods:
//!
//! - `genesis`: the empty state.
//! - `apply(state, event, context)`: the next state, a reply for the client and a list of side
//!   effects, or an error. Events are a client's command ([`Event::Command`], bytes in your own
//!   format) or the kernel's news about effects you asked for (below).
//! - `query(state, bytes)`: a read-only answer from one replica's state.
//! - `snapshot` / `restore`: the state as bytes and back.
//!
//! Every replica must reach the same state from the same events. Each replica keeps a running
//! hash of the ops it executed and the replies they gave, which tests and the simulator compare,
//! but nothing can repair an application that diverges, so `apply` must depend on nothing but
//! its arguments:
//!
//! - **No clocks.** Use [`ApplyContext::timestamp`]: consensus time, chosen by the primary
//!   when it proposed the event and identical on every replica. Here it stamps jobs and
//!   computes when a delayed job is due.
//! - **No randomness** except [`ApplyContext::seed`], which every replica derives alike from
//!   the log.
//! - **No iteration over a `HashMap` or `HashSet`**: their order differs between processes.
//!   Use ordered maps. This crate uses [`imbl::OrdMap`], whose clone is O(1), so `apply` can
//!   return a changed state cheaply; a `BTreeMap` is fine for small states.
//! - **No I/O**: no files, no sockets, no environment variables, no thread-locals that differ
//!   between replicas. Anything that touches the world is a side effect (section 2).
//! - **Errors, not panics.** Return `Err` for a command you refuse (a malformed one, an unknown
//!   job, a cancel that comes too late): every replica refuses it alike, the state stays as it
//!   was, and the client gets the error's text. A panic halts the shard on every replica, as a
//!   poison pill, rather than let the replicas diverge; keep panics for your own bugs. In
//!   particular, decoding must accept any bytes without panicking: clients send what they
//!   like.
//!
//! # 2. Side effects, their ids and the events that come back
//!
//! `apply` never calls out. It returns [`SideEffect`]s, and the kernel records them in the
//! replicated outbox as part of the same committed event, so no replica can forget them:
//!
//! - [`SideEffect::Http`]: an HTTP request, attempted by the primary and retried with backoff
//!   until the receiver answers with a 2xx status or the retry budget is spent.
//! - [`SideEffect::Schedule`]: a timer. When consensus time passes its `at`, the kernel feeds
//!   [`Event::Timer`] back with the payload you gave it, exactly once. Timers cannot be
//!   withdrawn, so `apply` must expect a timer it no longer cares about (here: the timer of a
//!   cancelled job, which it ignores).
//! - [`SideEffect::Emit`]: a message to a sink the host registers.
//!
//! Each effect gets an [`EffectId`] `(shard, op, ordinal)`: the op that returned it and its
//! position among the effects that op returned. The id never contains the view, so it is the
//! same on every replica and for every attempt by every primary.
//! [`ApplyContext::effect_id`]`(i)` tells `apply` the id its `i`-th returned effect will get,
//! before the kernel records it. That is how this queue ties effects to jobs: when it returns a
//! job's request, it stores `effect_id(0) -> job` in its state, and when the kernel later
//! reports on that id it knows which job to update. Nothing else is needed to find the job,
//! and every replica finds the same one.
//!
//! The outcome of an effect comes back as an event through the log, so every replica applies
//! it at the same point:
//!
//! - [`Event::EffectCompleted`] with the receiver's response: the job is done.
//! - [`Event::EffectFailed`] with the last error, once every attempt the retry policy allows
//!   has failed and the effect is dead-lettered: the job failed. An operator may still retry a
//!   dead letter, and a later success arrives as `EffectCompleted`, so the queue keeps the
//!   effect's owner until then.
//!
//! Failed attempts that will be retried are not reported: the outbox handles them.
//!
//! # 3. What the receiver must do
//!
//! The primary hands each attempt to its host with the effect id and its view (the fence), and
//! the node sends them with every HTTP attempt as headers (with `Chronon-Attempt`, the attempt's
//! number):
//!
//! - `Idempotency-Key: chronon-<shard>-<op>-<ordinal>`, the effect id. The same effect can
//!   arrive more than once: an attempt may reach the receiver and its response be lost, or a
//!   primary may fail after sending it, and the next attempt carries the same key. The receiver
//!   must remember the keys it has acted on (with the response it gave) and answer a repeat
//!   with the stored response instead of acting again.
//! - `Chronon-Fence: <view>`, the view of the primary making the attempt. Views only grow.
//!   A receiver that remembers the highest fence it has seen and refuses lower ones will, once
//!   a newer primary has reached it, never again act for an older one that is still retrying
//!   on its own (for example, one cut off by a partition that has not noticed yet).
//!
//! `tests/three_replicas.rs` has a receiver that does both, in a few lines.
//!
//! # 4. The guarantee, honestly
//!
//! - Every effect `apply` returns is recorded once, in the log, with a stable id.
//! - It is **attempted at least once** (more after failures, lost responses or a change of
//!   primary), only by a primary that holds its view durably.
//! - Its outcome is **applied exactly once to the state**: `apply` sees one `EffectCompleted`
//!   or `EffectFailed` per settlement, on every replica.
//! - The effect happens **exactly once at a receiver that deduplicates** by
//!   `Idempotency-Key`. Checking the fence alone is not enough: the same primary retries after
//!   a lost response with the same fence. A receiver that does not deduplicate may act more
//!   than once; no system can promise exactly-once delivery to an arbitrary receiver.
//!
//! # 5. Running it
//!
//! An application plugs into [`chronon_engine::vsr::Replica`], which is generic over it:
//! `Replica::new(config, JobQueue)`. The tests show the whole loop in memory: deliver the
//! replica's messages, acknowledge its writes, tick its clock, and carry out the attempts it
//! asks for. The production node (`chronon-shards`) runs the key-value store today.

mod codec;
mod command;
mod error;
mod job;
mod queue;

pub use command::{JobCommand, JobReply, JobSummary};
pub use error::JobError;
pub use job::{Job, JobId, Phase, Stage};
pub use queue::{JobQueue, JobsState};

#[cfg(doc)]
use chronon_engine::app::{ApplyContext, ChrApplication, EffectId, Event, SideEffect};

/// The longest job name, in bytes.
pub const NAME_MAX: usize = 256;
/// The longest URL, in bytes.
pub const URL_MAX: usize = 2048;
/// The largest payload, in bytes. A submission carries the payload, URL and name in one
/// prepare, so together they must fit a prepare's body: a journal slot less its header.
pub const PAYLOAD_MAX: usize = 32 * 1024;

// A submission of the largest fields, with a kilobyte for framing, fits a default slot.
const _: () = assert!(
    NAME_MAX + URL_MAX + PAYLOAD_MAX + 1024
        <= chronon_engine::constants::SLOT_SIZE_DEFAULT as usize
            - chronon_engine::constants::HEADER_SIZE
);
