//! One blocking TCP connection to a shard's native port: envelope frames out, envelopes in,
//! every read and write bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use chronon_engine::ReplicaIndex;
use chronon_engine::vsr::Envelope;

use crate::constants::{CLIENT_READ_BUFFER_SIZE, FRAME_PAYLOAD_MAX};
use crate::frame::{FrameDecoder, FrameKind};
use crate::wire::decode_envelope;

/// The time left before `deadline`, or `None` once it has passed (a zero timeout means "no
/// timeout" to the socket calls, so it must never reach them).
pub(super) fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the attempt's deadline passed")
}

#[derive(Debug)]
pub(super) struct Connection {
    pub(super) host: ReplicaIndex,
    stream: TcpStream,
    decoder: FrameDecoder,
    read_buffer: Box<[u8]>,
    /// Bytes of `read_buffer` read from the socket but not yet given to the decoder.
    unread: Range<usize>,
}

impl Connection {
    pub(super) fn open(
        host: ReplicaIndex,
        address: SocketAddr,
        deadline: Instant,
    ) -> io::Result<Connection> {
        let timeout = remaining(deadline).ok_or_else(timed_out)?;
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        // One small request per round trip: Nagle's delay would only add latency.
        stream.set_nodelay(true)?;
        Ok(Connection {
            host,
            stream,
            decoder: FrameDecoder::new(FRAME_PAYLOAD_MAX),
            read_buffer: vec![0; CLIENT_READ_BUFFER_SIZE].into_boxed_slice(),
            unread: 0..0,
        })
    }

    /// Writes one whole frame. After an error the stream may hold part of it: the caller
    /// drops the connection.
    pub(super) fn send(&mut self, frame: &[u8], deadline: Instant) -> io::Result<()> {
        let timeout = remaining(deadline).ok_or_else(timed_out)?;
        self.stream.set_write_timeout(Some(timeout))?;
        self.stream.write_all(frame)
    }

    /// The next envelope, or `None` if `deadline` passes first. An error (the peer closed,
    /// reset, or sent bytes that are not envelope frames) leaves the stream unusable.
    pub(super) fn receive(&mut self, deadline: Instant) -> io::Result<Option<Envelope>> {
        loop {
            if !self.unread.is_empty() {
                let mut input = &self.read_buffer[self.unread.clone()];
                let before = input.len();
                let frame = self.decoder.push(&mut input).map_err(io::Error::other)?;
                let consumed = before - input.len();
                let envelope = match frame {
                    Some(frame) if frame.kind == FrameKind::Envelope => {
                        Some(decode_envelope(frame.payload).map_err(io::Error::other)?)
                    }
                    Some(frame) => {
                        return Err(io::Error::other(format!(
                            "a {:?} frame on a client connection",
                            frame.kind
                        )));
                    }
                    None => None,
                };
                self.unread.start += consumed;
                if envelope.is_some() {
                    return Ok(envelope);
                }
                assert!(
                    self.unread.is_empty(),
                    "invariant: no frame means all consumed"
                );
            }
            let Some(timeout) = remaining(deadline) else {
                return Ok(None);
            };
            self.stream.set_read_timeout(Some(timeout))?;
            match self.stream.read(&mut self.read_buffer) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the replica closed the connection",
                    ));
                }
                Ok(n) => self.unread = 0..n,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
}
