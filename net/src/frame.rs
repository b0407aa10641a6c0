//! Length-prefixed frames on a replica link, and an incremental decoder over partial reads.
//!
//! ```text
//! 0      4         5      6          8                 12
//! +------+---------+------+----------+-----------------+------------------+
//! | CHRN | version | kind | reserved | payload size    | payload ...      |
//! |      |   u8    |  u8  | 2 x 0u8  | u32 little-end. | size bytes       |
//! +------+---------+------+----------+-----------------+------------------+
//! ```
//!
//! The decoder checks a header as soon as its 12 bytes have arrived and refuses a frame larger
//! than its bound before buffering any of the payload, so a connection holds at most one
//! header and one bounded payload.

use crate::constants::{FRAME_HEADER_SIZE, FRAME_MAGIC, FRAME_PAYLOAD_MAX, FRAME_VERSION};
use crate::error::NetError;

/// What a frame's payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// The handshake, the first frame each side sends ([`crate::handshake::Hello`]).
    Hello,
    /// A VSR envelope ([`crate::wire`]).
    Envelope,
}

impl FrameKind {
    fn tag(self) -> u8 {
        match self {
            FrameKind::Hello => 1,
            FrameKind::Envelope => 2,
        }
    }

    fn from_tag(tag: u8) -> Result<FrameKind, NetError> {
        match tag {
            1 => Ok(FrameKind::Hello),
            2 => Ok(FrameKind::Envelope),
            tag => Err(NetError::UnknownTag {
                field: "frame kind",
                tag,
            }),
        }
    }
}

/// A complete frame, borrowed from the decoder until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

/// Appends a frame whose payload `fill` writes. Fails, leaving `out` as it was, if the
/// payload exceeds `payload_max`.
pub fn write_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    payload_max: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<(), NetError> {
    assert!(payload_max <= FRAME_PAYLOAD_MAX);
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(FRAME_VERSION);
    out.push(kind.tag());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let size = out.len() - start - FRAME_HEADER_SIZE;
    if size > payload_max {
        out.truncate(start);
        return Err(NetError::FrameTooLarge {
            size: size as u64,
            max: payload_max,
        });
    }
    let size = u32::try_from(size).expect("invariant: payload_max fits u32");
    out[start + 8..start + FRAME_HEADER_SIZE].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// Reassembles frames from a byte stream read in arbitrary pieces.
///
/// After an error the stream's framing is lost: every later call returns the same error, and
/// the caller closes the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    payload_max: usize,
    header: [u8; FRAME_HEADER_SIZE],
    header_len: usize,
    /// Kind and size of the frame being read, once its header is complete and checked.
    pending: Option<(FrameKind, usize)>,
    payload: Vec<u8>,
    /// The previous call returned a frame: clear it before reading on.
    returned: bool,
    failed: Option<NetError>,
}

impl FrameDecoder {
    /// A decoder that refuses payloads over `payload_max` (at most [`FRAME_PAYLOAD_MAX`]).
    #[must_use]
    pub fn new(payload_max: usize) -> FrameDecoder {
        assert!(payload_max <= FRAME_PAYLOAD_MAX);
        FrameDecoder {
            payload_max,
            header: [0; FRAME_HEADER_SIZE],
            header_len: 0,
            pending: None,
            payload: Vec::new(),
            returned: false,
            failed: None,
        }
    }

    /// Consumes bytes from the front of `input` until one frame is complete (returned, and
    /// `input` keeps whatever follows it) or `input` is empty (`None`). Call again while
    /// `input` is not empty.
    pub fn push<'d>(&'d mut self, input: &mut &[u8]) -> Result<Option<Frame<'d>>, NetError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.returned {
            self.returned = false;
            self.header_len = 0;
            self.pending = None;
            self.payload.clear();
        }
        match self.fill(input) {
            Ok(true) => {
                self.returned = true;
                let (kind, _) = self
                    .pending
                    .expect("invariant: a complete frame has a header");
                Ok(Some(Frame {
                    kind,
                    payload: &self.payload,
                }))
            }
            Ok(false) => Ok(None),
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// True if no partial frame is buffered: the stream ends cleanly here.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.returned || (self.header_len == 0 && self.pending.is_none())
    }

    /// Reads into the header, then the payload; true once the frame is complete.
    fn fill(&mut self, input: &mut &[u8]) -> Result<bool, NetError> {
        if self.pending.is_none() {
            let wanted = FRAME_HEADER_SIZE - self.header_len;
            let n = wanted.min(input.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
            self.header_len += n;
            *input = &input[n..];
            if self.header_len < FRAME_HEADER_SIZE {
                return Ok(false);
            }
            let (kind, size) = check_header(&self.header, self.payload_max)?;
            // Bounded by `payload_max`: an oversized frame was refused just above.
            self.payload.reserve_exact(size);
            self.pending = Some((kind, size));
        }
        let (_, size) = self.pending.expect("invariant: the header was read above");
        let n = (size - self.payload.len()).min(input.len());
        self.payload.extend_from_slice(&input[..n]);
        *input = &input[n..];
        Ok(self.payload.len() == size)
    }
}

fn check_header(
    header: &[u8; FRAME_HEADER_SIZE],
    payload_max: usize,
) -> Result<(FrameKind, usize), NetError> {
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != FRAME_MAGIC {
        return Err(NetError::BadMagic { found: magic });
    }
    if header[4] != FRAME_VERSION {
        return Err(NetError::FrameVersion {
            found: header[4],
            supported: FRAME_VERSION,
        });
    }
    let kind = FrameKind::from_tag(header[5])?;
    if header[6..8] != [0, 0] {
        return Err(NetError::FrameReserved {
            found: [header[6], header[7]],
        });
    }
    let size = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    match usize::try_from(size) {
        Ok(size) if size <= payload_max => Ok((kind, size)),
        _ => Err(NetError::FrameTooLarge {
            size: u64::from(size),
            max: payload_max,
        }),
    }
}
