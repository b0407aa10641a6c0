//! The shard's I/O driver: the one place its sockets, doorbells and sleep live.
//!
//! Two drivers implement the same small interface, so the protocol code in `shard.rs`
//! (framing, handshakes, RESP parsing and replies, routing) is written once:
//!
//! - [`UringDriver`]: completion-based. Accepts, connects, receives, sends and the doorbell
//!   reads are requests on the shard's own `io_uring` ring, and the shard sleeps in one
//!   `io_uring_enter` whose timeout is its next timer. The default.
//! - [`EpollDriver`]: readiness-based (`mio`, i.e. epoll), for machines where `io_uring` is
//!   blocked or the memlock limit is too low. Chosen at start ([`IoChoice::Auto`]), with a
//!   warning that names the cause.
//!
//! Either way the shard sees the same [`Event`]s: a connection accepted or dialed, bytes to
//! take with [`Driver::receive`], a connection broken. Bytes to send are handed over with
//! [`Driver::send`], which buffers them (bounded) until the socket takes them.

mod epoll;
#[cfg(test)]
mod tests;
mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use epoll::EpollDriver;
pub(crate) use uring::UringDriver;

use crate::eventfd::EventFd;

/// A connection, as the driver numbers them. Never reused while the shard runs, so a late
/// event for a closed connection cannot reach a new one.
pub(crate) type ConnId = usize;

/// Bytes a connection may have waiting to be written before it is closed as too slow.
pub const WRITE_BUFFER_MAX: usize = 64 * 1024 * 1024;

/// Bytes one receive takes at most (the epoll driver's scratch buffer, each `io_uring`
/// connection's receive buffer).
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a closed connection may go on sending what was queued for it (a reply before
/// `QUIT`) before it is dropped: a client that stops reading cannot hold it for ever.
pub const LINGER: Duration = Duration::from_secs(5);

const _: () = assert!(READ_CHUNK <= u32::MAX as usize);
const _: () = assert!(WRITE_BUFFER_MAX > READ_CHUNK);

/// Which network path to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoChoice {
    /// `io_uring` if it works here, else epoll with a warning naming the cause.
    #[default]
    Auto,
    /// `io_uring`; refuse to start if it is unavailable.
    Uring,
    /// epoll (through `mio`), the readiness-based fallback.
    Epoll,
}

impl IoChoice {
    /// The name `--io` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            IoChoice::Auto => "auto",
            IoChoice::Uring => "uring",
            IoChoice::Epoll => "epoll",
        }
    }
}

impl std::str::FromStr for IoChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<IoChoice, String> {
        match s {
            "auto" => Ok(IoChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoChoice::Uring),
            "epoll" => Ok(IoChoice::Epoll),
            other => Err(format!(
                "unknown network I/O kind {other:?}: use auto, uring or epoll"
            )),
        }
    }
}

/// The network path a node settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    Uring,
    Epoll,
}

impl IoMode {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Uring => "uring",
            IoMode::Epoll => "epoll",
        }
    }
}

/// Settles `choice`: `Auto` becomes `Uring` if a ring can be set up here, else `Epoll` with
/// the cause as the second value (to log). `Uring` fails with the cause instead.
pub fn resolve(choice: IoChoice) -> Result<(IoMode, Option<String>), String> {
    match choice {
        IoChoice::Epoll => Ok((IoMode::Epoll, None)),
        IoChoice::Uring => uring::probe().map(|()| (IoMode::Uring, None)),
        IoChoice::Auto => match uring::probe() {
            Ok(()) => Ok((IoMode::Uring, None)),
            Err(cause) => Ok((IoMode::Epoll, Some(cause))),
        },
    }
}

/// The shard's three listening ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Replica,
    Native,
    Resp,
}

/// Something the shard must act on.
#[derive(Debug)]
pub(crate) enum Event {
    /// A listener accepted `conn`.
    Accepted {
        listener: ListenerKind,
        conn: ConnId,
    },
    /// A connection dialed with [`Driver::connect`] is established.
    Connected { conn: ConnId },
    /// A dial failed; the connection is gone (no [`Driver::close`] needed).
    ConnectFailed { conn: ConnId, error: io::Error },
    /// Bytes (or the end of the stream) wait for [`Driver::receive`].
    Readable { conn: ConnId },
    /// Sending failed: the connection is broken and the shard should close it.
    Broken { conn: ConnId },
}

/// What [`Driver::receive`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The connection is open; new bytes (maybe none) were appended.
    Open,
    /// The peer closed the connection or it failed.
    Closed,
}

/// One shard's I/O driver. There is one per shard thread, never a collection of them, so the
/// variants' sizes do not matter, and a box would only add an indirection to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Driver {
    Uring(UringDriver),
    Epoll(EpollDriver),
}

macro_rules! delegate {
    ($self:ident, $driver:ident => $call:expr) => {
        match $self {
            Driver::Uring($driver) => $call,
            Driver::Epoll($driver) => $call,
        }
    };
}

impl Driver {
    /// A driver of the kind `mode` names.
    pub fn new(mode: IoMode) -> io::Result<Driver> {
        Ok(match mode {
            IoMode::Uring => Driver::Uring(UringDriver::new()?),
            IoMode::Epoll => Driver::Epoll(EpollDriver::new()?),
        })
    }

    pub fn mode(&self) -> IoMode {
        match self {
            Driver::Uring(_) => IoMode::Uring,
            Driver::Epoll(_) => IoMode::Epoll,
        }
    }

    /// Binds and listens on `address`; accepted connections come as [`Event::Accepted`].
    /// Returns the bound address (its port, if `address` asked for any).
    pub fn listen(&mut self, kind: ListenerKind, address: SocketAddr) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(address)?;
        let bound = listener.local_addr()?;
        delegate!(self, d => d.listen(kind, listener))?;
        Ok(bound)
    }

    /// Wakes the driver's wait whenever `doorbell` is signalled (mail from another shard, a
    /// disk completion). The driver resets it.
    pub fn add_doorbell(&mut self, doorbell: Arc<EventFd>) -> io::Result<()> {
        delegate!(self, d => d.add_doorbell(doorbell))
    }

    /// Starts dialing `address`: [`Event::Connected`] or [`Event::ConnectFailed`] follows.
    pub fn connect(&mut self, address: SocketAddr) -> io::Result<ConnId> {
        delegate!(self, d => d.connect(address))
    }

    /// Appends what `conn` received since the last call to `into`.
    pub fn receive(&mut self, conn: ConnId, into: &mut Vec<u8>) -> Received {
        delegate!(self, d => d.receive(conn, into))
    }

    /// Queues `bytes` for `conn`. False if they would take its buffer past
    /// [`WRITE_BUFFER_MAX`] (nothing is queued) or the connection is gone: close it.
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        delegate!(self, d => d.send(conn, bytes))
    }

    /// Bytes queued for `conn` and not yet taken by its socket.
    pub fn pending(&self, conn: ConnId) -> usize {
        delegate!(self, d => d.pending(conn))
    }

    /// Closes `conn` once what is queued for it is sent (for at most [`LINGER`]); what it
    /// receives from now on is dropped. The driver lets go of its buffers once the kernel has.
    pub fn close(&mut self, conn: ConnId) {
        delegate!(self, d => d.close(conn));
    }

    /// Hands queued work to the kernel and waits up to `timeout` for something to happen.
    /// Returns true if anything did (events, doorbells, sends completing).
    pub fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> io::Result<bool> {
        delegate!(self, d => d.wait(timeout, events))
    }
}
