//! One TCP connection of a shard: its socket, the bytes read and not yet decoded, and the bytes
//! waiting to be written (bounded: a peer or client that stops reading is disconnected rather
//! than buffered for without limit).

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// Bytes a connection may have waiting to be written before it is closed as too slow.
pub const WRITE_BUFFER_MAX: usize = 64 * 1024 * 1024;

/// Bytes one `read` call takes at most (the size of the shard's scratch buffer).
pub const READ_CHUNK: usize = 64 * 1024;

/// What reading found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// New bytes are in the buffer (possibly none, if the socket had nothing).
    Open,
    /// The peer closed the connection or it failed.
    Closed,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub read: Vec<u8>,
    write: Vec<u8>,
    written: usize,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            read: Vec::new(),
            write: Vec::new(),
            written: 0,
        }
    }

    /// Reads everything the socket holds now into `read`, through `scratch` (a buffer the
    /// caller reuses, so no read zero-fills or allocates a fresh chunk).
    pub fn read_available(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => self.read.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Appends bytes to send; false if the connection is too far behind and must be closed.
    pub fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.pending() + bytes.len() > WRITE_BUFFER_MAX {
            return false;
        }
        self.write.extend_from_slice(bytes);
        true
    }

    pub fn pending(&self) -> usize {
        self.write.len() - self.written
    }

    /// Writes what the socket accepts now. Err means the connection failed.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.write.len() {
            match self.stream.write(&self.write[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.write.len() {
            self.write.clear();
            self.written = 0;
        } else if self.written > READ_CHUNK * 16 {
            self.write.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }
}
