//! Viewstamped Replication for one shard: the replica as a pure state machine, its messages,
//! the client-session table, the effect outbox and the prepare batch format.

pub mod batch;
pub mod checkpoint;
pub mod host;
pub mod message;
pub mod outbox;
pub mod replica;
pub mod sessions;

pub use checkpoint::{Checkpoint, CheckpointState};
pub use host::JournalHost;
pub use message::{Body, Endpoint, Envelope, Message, Reply, ReplyError, Request, RequestKind};
pub use outbox::{EffectPolicy, KernelEvent, Outbox};
pub use replica::{
    Action, Input, KERNEL_CLIENT, OPERATION_BATCH, Outboxed, PlantedBug, RecoverError, Recovered,
    Replica, ReplicaConfig, ReplicaStats, Status, Timeouts,
};
pub use sessions::Sessions;
