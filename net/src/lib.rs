//! Wire codecs, the replica-to-replica transport's pure parts and the Redis protocol front
//! end. Nothing here opens a socket, reads a clock or spawns a thread: the node's reactor
//! drives these types, and decoding never panics on any input.
//!
//! - [`wire`]: VSR envelopes to bytes and back.
//! - [`frame`]: length-prefixed frames and an incremental decoder.
//!
//! `docs/internals/net.md` has the byte layouts.

pub mod constants;
mod cursor;
pub mod error;
pub mod frame;
pub mod wire;

pub use error::NetError;
pub use frame::{Frame, FrameDecoder, FrameKind};
