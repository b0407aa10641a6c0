//! Wire codecs, the replica-to-replica transport's pure parts, the Redis protocol front end
//! and the native client library. Apart from [`client`], nothing here opens a socket, reads a
//! clock or spawns a thread: the node's reactor drives these types, and decoding never panics
//! on any input. [`client`] is the exception: it runs in an application's process and does
//! its own blocking network I/O.
//!
//! - [`wire`]: VSR envelopes to bytes and back.
//! - [`frame`]: length-prefixed frames and an incremental decoder.
//! - [`handshake`]: the first frame of a replica link and the checks on it.
//! - [`misdirected`]: the refusal a node sends a client request for another cluster or shard.
//! - [`backoff`]: the reconnect schedule.
//! - [`send_buffer`]: bounded outbound bytes with backpressure.
//! - [`slots`]: Redis Cluster hash slots and each shard's slot range.
//! - [`resp`]: RESP2 requests, replies and commands.
//! - [`topology`]: which ports each shard of each host listens on.
//! - [`client`]: the native Rust client (routing, sessions, retries, pipelining).
//!
//! `docs/internals/net.md` has the byte layouts.

pub mod backoff;
pub mod client;
pub mod constants;
mod cursor;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod misdirected;
pub mod resp;
pub mod send_buffer;
pub mod slots;
pub mod topology;
pub mod wire;

pub use backoff::Backoff;
pub use client::{Client, ClientConfig, ClientError};
pub use error::NetError;
pub use frame::{Frame, FrameDecoder, FrameKind};
pub use handshake::Hello;
pub use misdirected::misdirected_reply;
pub use send_buffer::{Full, SendBuffer};
pub use slots::{Slot, SlotRange, key_shard, key_slot};
pub use topology::{Topology, TopologyError};
