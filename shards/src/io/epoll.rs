//! The readiness-based driver: epoll through `mio`. Each socket is non-blocking; a readable
//! event becomes [`Event::Readable`], and `receive` reads until the socket is empty. Sends are
//! queued and written by the next `wait` (one `write` per connection per pass of the loop, as
//! the `io_uring` driver submits them), as far as the socket takes them, and the rest when it
//! is writable again.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{ConnId, Event, LINGER, ListenerKind, READ_CHUNK, Received, WRITE_BUFFER_MAX};
use crate::eventfd::EventFd;

/// Tokens below this are listeners and doorbells; connections use their id plus this.
const CONN_BASE: usize = 64;
const DOORBELL_BASE: usize = 16;

/// Events taken per `epoll_wait`.
const EVENTS_MAX: usize = 1024;

#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    /// Dialed and not yet established.
    connecting: bool,
    write: Vec<u8>,
    written: usize,
}

impl Socket {
    fn pending(&self) -> usize {
        self.write.len() - self.written
    }

    /// Writes what the socket accepts now. Err means the connection failed.
    fn flush(&mut self) -> io::Result<()> {
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

/// One shard's epoll loop.
#[derive(Debug)]
pub(crate) struct EpollDriver {
    poll: Poll,
    events: Events,
    listeners: Vec<(ListenerKind, TcpListener)>,
    doorbells: Vec<Arc<EventFd>>,
    sockets: BTreeMap<ConnId, Socket>,
    next_conn: ConnId,
    /// Where sockets are read into before their bytes join the caller's buffer.
    scratch: Vec<u8>,
    /// Connections with bytes queued since the last `wait` and not yet written: `wait` writes
    /// them all before it polls, so the replies of one pass leave in one `write` per
    /// connection rather than one per reply.
    unflushed: Vec<ConnId>,
    /// The last wait's readiness, copied out of `events` (reused).
    ready: Vec<(Token, bool, bool)>,
    /// Closed connections still sending what was queued, and since when.
    closing: BTreeMap<ConnId, (Socket, Instant)>,
}

impl EpollDriver {
    pub fn new() -> io::Result<EpollDriver> {
        Ok(EpollDriver {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_MAX),
            listeners: Vec::new(),
            doorbells: Vec::new(),
            sockets: BTreeMap::new(),
            next_conn: 0,
            scratch: vec![0; READ_CHUNK],
            unflushed: Vec::new(),
            ready: Vec::with_capacity(EVENTS_MAX),
            closing: BTreeMap::new(),
        })
    }

    pub fn listen(
        &mut self,
        kind: ListenerKind,
        listener: std::net::TcpListener,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let token = Token(self.listeners.len());
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        self.listeners.push((kind, listener));
        Ok(())
    }

    pub fn add_doorbell(&mut self, doorbell: Arc<EventFd>) -> io::Result<()> {
        doorbell.set_nonblocking(true)?;
        let token = Token(DOORBELL_BASE + self.doorbells.len());
        assert!(token.0 < CONN_BASE, "invariant: few doorbells");
        self.poll.registry().register(
            &mut SourceFd(&doorbell.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        self.doorbells.push(doorbell);
        Ok(())
    }

    fn add(&mut self, mut stream: TcpStream, connecting: bool) -> io::Result<ConnId> {
        let conn = self.next_conn;
        self.poll.registry().register(
            &mut stream,
            Token(CONN_BASE + conn),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.next_conn += 1;
        let _ = stream.set_nodelay(true);
        self.sockets.insert(
            conn,
            Socket {
                stream,
                connecting,
                write: Vec::new(),
                written: 0,
            },
        );
        Ok(conn)
    }

    pub fn connect(&mut self, address: SocketAddr) -> io::Result<ConnId> {
        let stream = TcpStream::connect(address)?;
        self.add(stream, true)
    }

    pub fn receive(&mut self, conn: ConnId, into: &mut Vec<u8>) -> Received {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return Received::Closed;
        };
        loop {
            match socket.stream.read(&mut self.scratch) {
                Ok(0) => return Received::Closed,
                Ok(n) => into.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Received::Closed,
            }
        }
    }

    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return false;
        };
        if socket.pending() + bytes.len() > WRITE_BUFFER_MAX {
            return false;
        }
        if socket.pending() == 0 && !socket.connecting {
            self.unflushed.push(conn);
        }
        socket.write.extend_from_slice(bytes);
        true
    }

    pub fn pending(&self, conn: ConnId) -> usize {
        self.sockets.get(&conn).map_or(0, Socket::pending)
    }

    /// Closes `conn` after the bytes already queued for it are sent (a reply before `QUIT`),
    /// for at most [`LINGER`].
    pub fn close(&mut self, conn: ConnId) {
        let Some(mut socket) = self.sockets.remove(&conn) else {
            return;
        };
        if socket.connecting || socket.pending() == 0 || socket.flush().is_err() {
            let _ = self.poll.registry().deregister(&mut socket.stream);
            return;
        }
        if socket.pending() > 0 {
            self.closing.insert(conn, (socket, Instant::now()));
        }
    }

    /// Sends more of what closed connections still owe, and drops those done, failed or
    /// lingering too long.
    fn flush_closing(&mut self, conn: Option<ConnId>) {
        let now = Instant::now();
        let registry = self.poll.registry();
        self.closing.retain(|&c, (socket, since)| {
            if conn.is_some_and(|target| target != c) {
                return true;
            }
            let keep = now.duration_since(*since) < LINGER
                && socket.flush().is_ok()
                && socket.pending() > 0;
            if !keep {
                let _ = registry.deregister(&mut socket.stream);
            }
            keep
        });
    }

    pub fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> io::Result<bool> {
        let reported = events.len();
        for conn in self.unflushed.drain(..) {
            if let Some(socket) = self.sockets.get_mut(&conn)
                && socket.flush().is_err()
            {
                events.push(Event::Broken { conn });
            }
        }
        // A broken connection is news: report it without sleeping first.
        let timeout = if events.len() > reported {
            Duration::ZERO
        } else {
            timeout
        };
        if !self.closing.is_empty() {
            self.flush_closing(None);
        }
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(error) => return Err(error),
        }
        let busy = !self.events.is_empty() || events.len() > reported;
        let mut ready = std::mem::take(&mut self.ready);
        ready.extend(
            self.events
                .iter()
                .map(|e| (e.token(), e.is_readable(), e.is_writable())),
        );
        for &(token, readable, writable) in &ready {
            self.on_ready(token, readable, writable, events);
        }
        ready.clear();
        self.ready = ready;
        Ok(busy)
    }

    fn on_ready(&mut self, token: Token, readable: bool, writable: bool, events: &mut Vec<Event>) {
        match token.0 {
            t if t < DOORBELL_BASE => self.accept(t, events),
            t if t < CONN_BASE => self.doorbells[t - DOORBELL_BASE].drain(),
            t => {
                let conn = t - CONN_BASE;
                let Some(socket) = self.sockets.get_mut(&conn) else {
                    if self.closing.contains_key(&conn) {
                        self.flush_closing(Some(conn));
                    }
                    return;
                };
                if socket.connecting {
                    match socket.stream.take_error() {
                        Ok(None) if socket.stream.peer_addr().is_ok() => {
                            socket.connecting = false;
                            events.push(Event::Connected { conn });
                        }
                        Ok(None) => return, // Not connected yet.
                        Ok(Some(error)) | Err(error) => {
                            self.close(conn);
                            events.push(Event::ConnectFailed { conn, error });
                            return;
                        }
                    }
                }
                if (writable || socket.pending() > 0) && socket.flush().is_err() {
                    events.push(Event::Broken { conn });
                    return;
                }
                if readable {
                    events.push(Event::Readable { conn });
                }
            }
        }
    }

    fn accept(&mut self, index: usize, events: &mut Vec<Event>) {
        loop {
            let (kind, listener) = &self.listeners[index];
            let kind = *kind;
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            match self.add(stream, false) {
                Ok(conn) => events.push(Event::Accepted {
                    listener: kind,
                    conn,
                }),
                Err(e) => tracing::warn!("registering a connection: {e}"),
            }
        }
    }
}
