//! A replica link's outbound bytes, bounded. Whole frames go in or are refused: when the peer
//! reads slower than this node sends, [`SendBuffer::push`] reports [`Full`] and the caller
//! drops the message (VSR retransmits what matters) instead of buffering without bound.
//!
//! The buffer is allocated once, at its capacity, and never grows.

/// The frame did not fit: nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "send buffer full: a frame of {frame_size} bytes does not fit in {free} free bytes; the frame was dropped"
)]
pub struct Full {
    pub frame_size: usize,
    pub free: usize,
}

#[derive(Debug)]
pub struct SendBuffer {
    bytes: Box<[u8]>,
    /// Unwritten bytes are `bytes[head..tail]`.
    head: usize,
    tail: usize,
}

impl SendBuffer {
    #[must_use]
    pub fn new(capacity: usize) -> SendBuffer {
        assert!(capacity > 0);
        SendBuffer {
            bytes: vec![0; capacity].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes queued and not yet written.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Queues a whole encoded frame, or nothing.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), Full> {
        let free = self.capacity() - self.len();
        if frame.len() > free {
            return Err(Full {
                frame_size: frame.len(),
                free,
            });
        }
        if self.tail + frame.len() > self.capacity() {
            // Move the unwritten bytes to the front; this happens at most once per buffer's
            // worth of writes.
            self.bytes.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        self.bytes[self.tail..self.tail + frame.len()].copy_from_slice(frame);
        self.tail += frame.len();
        Ok(())
    }

    /// The bytes to hand to the socket next.
    #[must_use]
    pub fn unwritten(&self) -> &[u8] {
        &self.bytes[self.head..self.tail]
    }

    /// Records that the socket took `count` bytes of [`SendBuffer::unwritten`].
    pub fn consume(&mut self, count: usize) {
        assert!(count <= self.len());
        self.head += count;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Drops everything queued, as on a disconnect: a half-written frame must not be resumed
    /// on a new connection.
    pub fn clear(&mut self) {
        self.head = 0;
        self.tail = 0;
    }
}
