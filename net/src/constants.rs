//! Every limit of the wire formats in one place, with compile-time checks on how they relate.

use chronon_engine::constants::{HEADER_SIZE, SLOT_SIZE_MAX, VIEW_HEADERS_MAX};

/// The first four bytes of every frame: "CHRN". A peer speaking anything else (HTTP, RESP, a
/// port scanner) is refused at its first frame header.
pub const FRAME_MAGIC: [u8; 4] = *b"CHRN";

/// The frame layout's version, in every frame header.
pub const FRAME_VERSION: u8 = 1;

/// Bytes of a frame header: magic, version, kind, two reserved bytes, payload size.
pub const FRAME_HEADER_SIZE: usize = 12;

/// The replica protocol's version, named in the handshake. Bumped when a message's encoding
/// changes, so mixed versions refuse each other instead of misreading.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the handshake payload (`Hello`).
pub const HELLO_SIZE: usize = 32;

/// Bytes an envelope adds around a prepare's header and body: checksum (16), cluster (8),
/// shard (2), view (8), sender (1 + 8 at most), message tag (1), body length (4), commit (8).
pub const ENVELOPE_PREPARE_OVERHEAD: usize = 16 + 8 + 2 + 8 + 9 + 1 + 4 + 8;

/// Largest frame payload: a prepare of the largest slot the log format allows (header plus
/// body fill the slot), in its envelope. A decoder may be built with a smaller bound, matching
/// the cluster's configured slot size.
pub const FRAME_PAYLOAD_MAX: usize = SLOT_SIZE_MAX as usize + ENVELOPE_PREPARE_OVERHEAD;

/// The largest view-change message: `VIEW_HEADERS_MAX` headers plus a few fixed fields.
const VIEW_CHANGE_SIZE_MAX: usize =
    ENVELOPE_PREPARE_OVERHEAD + 3 * 8 + VIEW_HEADERS_MAX * HEADER_SIZE;

/// Largest frames a replica link's send buffer holds per peer: a full pipeline of prepares
/// and the heartbeats beside it. The node sizes the buffer as this many frames of its
/// configured slot size; a full buffer drops messages (VSR retransmits them) instead of
/// growing: backpressure, not unbounded memory.
pub const SEND_BUFFER_FRAMES: usize = 2 * chronon_engine::constants::PIPELINE_MAX;

/// Reconnect backoff bounds, in milliseconds.
pub const RECONNECT_DELAY_MIN_MS: u64 = 50;
pub const RECONNECT_DELAY_MAX_MS: u64 = 5_000;

/// Redis Cluster's hash-slot count: a key's slot is `CRC16(key) mod 16384`.
pub const SLOT_COUNT: u16 = 16384;

/// RESP limits. A bulk string (one key or value) at most 1 MiB: far above what one prepare
/// holds in the default 64 KiB slots, so the engine's own "too large" reply is what a user
/// sees for large values; this bound only caps memory per connection.
pub const RESP_BULK_LEN_MAX: usize = 1024 * 1024;
/// Arguments of one command (an MSET of 32768 pairs).
pub const RESP_ARRAY_LEN_MAX: usize = 64 * 1024;
/// An inline command line, or a `*`/`$` header line, without its newline (Redis' own bound).
pub const RESP_INLINE_LEN_MAX: usize = 64 * 1024;
/// All the bytes of one command, framing included: a connection buffers at most this much
/// (plus one read) before a command is complete or refused.
pub const RESP_COMMAND_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Nesting of reply arrays a reply decoder accepts.
pub const RESP_DEPTH_MAX: usize = 8;

/// Native client defaults. A call (registration included) ends with a timeout error after
/// `CLIENT_CALL_TIMEOUT_DEFAULT_MS`: long enough to ride out a view change (a few election
/// timeouts), short enough that an application notices a dead cluster.
pub const CLIENT_CALL_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// How long one attempt waits for a reply before the request is sent again (same host once,
/// then the next hosts): loopback round trips are ~50 µs and a durable commit ~1 ms, so 500 ms
/// of silence means a lost request or a failed primary, not a slow one.
pub const CLIENT_ATTEMPT_TIMEOUT_DEFAULT_MS: u64 = 500;
/// Sessions per shard a pipeline spreads its commands over (one request in flight each).
pub const CLIENT_PIPELINE_DEPTH_DEFAULT: usize = 8;
/// Every session takes a slot in the cluster's bounded session table, and a pipeline runs one
/// thread per session: the depth is capped well below the table's default size.
pub const CLIENT_PIPELINE_DEPTH_MAX: usize = 64;
/// The pause between quick failures (refused connections, redirects) once every host has
/// failed in a row, so a down cluster is not dialed in a hot loop.
pub const CLIENT_RETRY_PAUSE_MIN_MS: u64 = 5;
pub const CLIENT_RETRY_PAUSE_MAX_MS: u64 = 200;
/// Bytes a client connection reads at once.
pub const CLIENT_READ_BUFFER_SIZE: usize = 64 * 1024;

const _: () = {
    // A frame's size travels as a u32.
    assert!(FRAME_PAYLOAD_MAX <= u32::MAX as usize);
    assert!(VIEW_CHANGE_SIZE_MAX <= FRAME_PAYLOAD_MAX);
    // A send buffer holds at least a whole pipeline of prepares.
    assert!(SEND_BUFFER_FRAMES > chronon_engine::constants::PIPELINE_MAX);
    assert!(RECONNECT_DELAY_MIN_MS > 0 && RECONNECT_DELAY_MIN_MS <= RECONNECT_DELAY_MAX_MS);
    assert!(SLOT_COUNT.is_power_of_two());
    assert!(RESP_BULK_LEN_MAX <= RESP_COMMAND_BYTES_MAX);
    assert!(RESP_INLINE_LEN_MAX <= RESP_COMMAND_BYTES_MAX);
    // A call outlasts several attempts, or it could never try a second host.
    assert!(CLIENT_ATTEMPT_TIMEOUT_DEFAULT_MS * 4 <= CLIENT_CALL_TIMEOUT_DEFAULT_MS);
    assert!(CLIENT_PIPELINE_DEPTH_DEFAULT >= 1);
    assert!(CLIENT_PIPELINE_DEPTH_DEFAULT <= CLIENT_PIPELINE_DEPTH_MAX);
    // One client's sessions must not be able to evict each other from the default table.
    assert!(CLIENT_PIPELINE_DEPTH_MAX < chronon_engine::constants::SESSIONS_MAX_DEFAULT);
    assert!(
        CLIENT_RETRY_PAUSE_MIN_MS > 0 && CLIENT_RETRY_PAUSE_MIN_MS <= CLIENT_RETRY_PAUSE_MAX_MS
    );
    assert!(CLIENT_READ_BUFFER_SIZE >= FRAME_HEADER_SIZE);
};
