//! A checkpoint: the replicated state after a committed op, encoded as explicit sections, so
//! that the log before that op can be reclaimed and a replica too far behind can be sent the
//! state instead of the log (state transfer).
//!
//! Every replica that executes op `n` holds the same state after it, so every replica's
//! checkpoint at op `n` is the same bytes: its checksum names it cluster-wide.
//!
//! ```text
//! 0        8   9   10       16                      144              160
//! +--------+---+---+--------+-----------------------+----------------+------------------
//! | magic  |ver|cnt| zero   | header of op (128 B)  | state hash     | sections ...
//! +--------+---+---+--------+-----------------------+----------------+------------------
//! section: tag (u8) | length (u64) | bytes; tags strictly increasing, each exactly once:
//!   1 = application snapshot (`ChrApplication::snapshot`)
//!   2 = client sessions (`Sessions::encode`)
//!   3 = effect outbox (`Outbox::encode`)
//! ```

use std::sync::Arc;

use crate::app::codec::{Reader, put_u64};
use crate::checksum::Checksum;
use crate::constants::HEADER_SIZE;
use crate::log::{Header, HeaderState};

const MAGIC: [u8; 8] = *b"CHRCKPT\0";
const VERSION: u8 = 1;
const PREAMBLE_SIZE: usize = 16 + HEADER_SIZE + 16;

/// Section tags, in the order they are encoded.
const SECTION_APP: u8 = 1;
const SECTION_SESSIONS: u8 = 2;
const SECTION_OUTBOX: u8 = 3;
const SECTIONS: [u8; 3] = [SECTION_APP, SECTION_SESSIONS, SECTION_OUTBOX];

/// The replicated state after the op of `header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointState {
    /// The header of the op the state follows: the anchor of the log after it.
    pub header: Header,
    /// The running state hash after that op (`Action::Executed`'s hash).
    pub state_hash: Checksum,
    /// The application's snapshot.
    pub app: Vec<u8>,
    /// The client-session table.
    pub sessions: Vec<u8>,
    /// The effect outbox ([`Outbox::encode`](super::outbox::Outbox::encode)).
    pub outbox: Vec<u8>,
}

impl CheckpointState {
    /// The section contents, by tag, in encoding order.
    fn sections(&self) -> [(u8, &[u8]); 3] {
        [
            (SECTION_APP, &self.app),
            (SECTION_SESSIONS, &self.sessions),
            (SECTION_OUTBOX, &self.outbox),
        ]
    }

    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let sections = self.sections();
        let size: usize = sections.iter().map(|(_, b)| 9 + b.len()).sum();
        let mut out = Vec::with_capacity(PREAMBLE_SIZE + size);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(sections.len() as u8);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.state_hash.to_le_bytes());
        for (tag, bytes) in sections {
            out.push(tag);
            put_u64(&mut out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Decodes exactly what [`CheckpointState::encode`] writes; `None` for anything else.
    /// Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<CheckpointState> {
        let mut r = Reader::new(bytes);
        let preamble = r.take(16)?;
        if preamble[..8] != MAGIC
            || preamble[8] != VERSION
            || usize::from(preamble[9]) != SECTIONS.len()
            || preamble[10..].iter().any(|&b| b != 0)
        {
            return None;
        }
        let HeaderState::Valid(header) = Header::decode(r.take(HEADER_SIZE)?) else {
            return None;
        };
        let state_hash = Checksum::from_le_bytes(r.take(16)?.try_into().ok()?);
        let mut contents: Vec<Vec<u8>> = Vec::with_capacity(SECTIONS.len());
        for tag in SECTIONS {
            if r.u8()? != tag {
                return None;
            }
            let len = usize::try_from(r.u64()?).ok()?;
            contents.push(r.take(len)?.to_vec());
        }
        if !r.is_empty() {
            return None;
        }
        let mut contents = contents.into_iter();
        Some(CheckpointState {
            header,
            state_hash,
            app: contents.next()?,
            sessions: contents.next()?,
            outbox: contents.next()?,
        })
    }
}

/// A checkpoint as a replica keeps and serves it: the encoded bytes and what names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub header: Header,
    /// BLAKE3-128 of `bytes`.
    pub checksum: Checksum,
    pub state_hash: Checksum,
    pub bytes: Arc<[u8]>,
}

impl Checkpoint {
    #[must_use]
    pub fn new(state: &CheckpointState) -> Checkpoint {
        let bytes: Arc<[u8]> = Arc::from(state.encode());
        Checkpoint {
            header: state.header,
            checksum: Checksum::of(&bytes),
            state_hash: state.state_hash,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClusterId, ShardId};

    fn sample() -> CheckpointState {
        CheckpointState {
            header: Header::root(ClusterId(1), ShardId(2)),
            state_hash: Checksum(42),
            app: b"application".to_vec(),
            sessions: vec![0; 8],
            outbox: vec![1, 2, 3],
        }
    }

    // Pair assertion: what encode writes, decode reads back; every truncation and a trailing
    // byte are refused.
    #[test]
    fn checkpoint_roundtrip_and_strict_decode() {
        let state = sample();
        let bytes = state.encode();
        assert_eq!(CheckpointState::decode(&bytes), Some(state));
        for len in 0..bytes.len() {
            assert_eq!(CheckpointState::decode(&bytes[..len]), None, "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(CheckpointState::decode(&longer), None);
        let mut flipped = bytes;
        flipped[PREAMBLE_SIZE] = SECTION_SESSIONS;
        assert_eq!(CheckpointState::decode(&flipped), None);
    }
}
