//! The hash-chained, durable log of one shard: its format, the superblock, the recovery
//! decision table and the journal that drives them over a [`crate::disk::VirtualDisk`].

pub mod conformance;
pub mod format;
mod journal;
pub mod recovery;
pub mod superblock;

pub use format::{EntryMeta, Header, HeaderState, Layout, LogConfig, Operation};
pub use journal::{Entry, FormatParams, Journal, JournalError, RecoveryReport};
pub use recovery::{Analysis, Faulty};
pub use superblock::{CheckpointRef, Superblock};
