//! The completion-based driver: the shard's own `io_uring` ring.
//!
//! Every socket operation is a request on the ring: `ACCEPT` on each listener, `CONNECT` for a
//! dialed link, one `RECV` per open connection into that connection's receive buffer, at most
//! one `SEND` per connection, and one `READ` on each doorbell (an eventfd rung by other shards'
//! mail and by the disk's own ring on every completion). The shard sleeps in one
//! `io_uring_enter` whose timeout is its next timer (`IORING_ENTER_EXT_ARG`), so sockets,
//! doorbells, the disk and ticks all end the same wait.
//!
//! Buffers handed to the kernel, and why each stays alive and unmoved until its completion:
//!
//! - A connection's receive buffer is a `Box<[u8]>` owned by its [`Socket`]; the send buffer is
//!   a `Vec<u8>` that is neither written to nor resized while its `SEND` is in flight (new bytes
//!   go to a second vector, swapped in when the send completes); a dial's address is a `Box`.
//!   Moving a `Socket` (the map rebalancing) moves only the pointers, never the heap memory.
//! - A `Socket` is dropped only when none of its requests is in flight: [`UringDriver::close`]
//!   cancels what is in flight and parks the socket in `closing` until the last completion.
//! - A doorbell's 8-byte target is a `Box<u64>` owned by the driver.
//! - [`Drop`] cancels every request and waits for every completion before anything is freed;
//!   if the ring fails during that wait, the buffers are leaked rather than freed.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode, squeue, types};

use super::{ConnId, Event, LINGER, ListenerKind, READ_CHUNK, Received, WRITE_BUFFER_MAX};
use crate::eventfd::EventFd;

/// Submission queue entries. Each connection has at most a receive, a send and a cancel in
/// flight; a full queue is handed to the kernel to make room, so this bounds no connection.
const SQ_ENTRIES: u32 = 256;
/// Completion queue entries: room for the completions of 2000 busy connections between two
/// reaps. Beyond that the kernel keeps them in its overflow list (`IORING_FEAT_NODROP`, which
/// `probe` requires), so none is lost.
const CQ_ENTRIES: u32 = 4096;

const _: () = assert!(SQ_ENTRIES.is_power_of_two() && CQ_ENTRIES.is_power_of_two());
const _: () = assert!(CQ_ENTRIES >= 2 * SQ_ENTRIES);

/// What a request's `user_data` names, in its low bits; the rest is the connection, listener
/// or doorbell index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Recv = 0,
    Send = 1,
    Connect = 2,
    Accept = 3,
    Doorbell = 4,
    Cancel = 5,
}

const OP_BITS: u32 = 3;

fn user_data(op: Op, index: usize) -> u64 {
    ((index as u64) << OP_BITS) | op as u64
}

fn split_user_data(data: u64) -> (Op, usize) {
    let op = match data & ((1 << OP_BITS) - 1) {
        0 => Op::Recv,
        1 => Op::Send,
        2 => Op::Connect,
        3 => Op::Accept,
        4 => Op::Doorbell,
        5 => Op::Cancel,
        other => panic!("invariant: user_data op {other} is one this driver sets"),
    };
    (op, (data >> OP_BITS) as usize)
}

/// Checks that a ring with what this driver needs can be set up here: memlock, `io_uring`
/// itself, and the opcodes and features it uses. The error says why not.
pub(super) fn probe() -> Result<(), String> {
    let required = chronon_disk::memlock_required_bytes();
    if let Some(limit) = memlock_soft_limit()
        && limit < required
    {
        return Err(format!(
            "the locked-memory limit (RLIMIT_MEMLOCK) is {limit} bytes, below the {required} \
             bytes io_uring needs; raise it (ulimit -l, systemd LimitMEMLOCK=) for io_uring, or \
             pass --io epoll to choose the fallback without this warning"
        ));
    }
    let ring = IoUring::new(8).map_err(|e| {
        format!(
            "io_uring is unavailable: io_uring_setup: {e}{}; pass --io epoll to choose the \
             fallback without this warning",
            disabled_note()
        )
    })?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(
            "the kernel's io_uring lacks wait timeouts or no-drop completions (Linux \
                    5.11 or later has both)"
                .to_owned(),
        );
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("cannot probe the kernel's io_uring opcodes: {e}"))?;
    let needed = [
        ("ACCEPT", opcode::Accept::CODE),
        ("CONNECT", opcode::Connect::CODE),
        ("RECV", opcode::Recv::CODE),
        ("SEND", opcode::Send::CODE),
        ("READ", opcode::Read::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(format!("the kernel's io_uring has no {name} operation"));
        }
    }
    Ok(())
}

/// `; kernel.io_uring_disabled = N` when that setting is what blocks `io_uring`.
fn disabled_note() -> String {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|setting| setting != "0")
        .map(|setting| format!("; kernel.io_uring_disabled = {setting}"))
        .unwrap_or_default()
}

/// The soft `RLIMIT_MEMLOCK`, or `None` if unlimited or unreadable.
fn memlock_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the local it is given.
    #[allow(unsafe_code)]
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// A dial's address, kept where the kernel reads it until the `CONNECT` completes.
#[derive(Debug)]
enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    fn new(address: SocketAddr) -> SockAddr {
        match address {
            SocketAddr::V4(a) => SockAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => SockAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn domain(&self) -> libc::c_int {
        match self {
            SockAddr::V4(_) => libc::AF_INET,
            SockAddr::V6(_) => libc::AF_INET6,
        }
    }

    fn as_ptr(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            SockAddr::V4(a) => (
                (&raw const *a).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SockAddr::V6(a) => (
                (&raw const *a).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

/// One connection and the buffers its requests use.
// The flags are independent: one per kind of request that may be in flight, and whether
// sending failed. A state enum would have to spell out their product.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    /// Set while dialing; the `CONNECT` reads it.
    dial: Option<Box<SockAddr>>,
    connect_armed: bool,
    recv: Box<[u8]>,
    recv_armed: bool,
    /// A finished receive's result, until `receive` takes it.
    received: Option<i32>,
    /// Bytes queued behind the send in flight.
    out: Vec<u8>,
    /// The bytes of the send in flight, and how many of them the kernel took so far.
    sending: Vec<u8>,
    sent: usize,
    send_armed: bool,
    /// Sending failed (or was given up): nothing more is sent.
    failed: bool,
    /// When the shard closed it, while it lingers to send what was queued.
    closed_at: Option<Instant>,
}

impl Socket {
    fn new(stream: TcpStream, dial: Option<Box<SockAddr>>) -> Socket {
        Socket {
            stream,
            dial,
            connect_armed: false,
            recv: vec![0; READ_CHUNK].into_boxed_slice(),
            recv_armed: false,
            received: None,
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send_armed: false,
            failed: false,
            closed_at: None,
        }
    }

    fn in_flight(&self) -> bool {
        self.connect_armed || self.recv_armed || self.send_armed
    }

    fn pending(&self) -> usize {
        self.out.len() + self.sending.len() - self.sent
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.stream.as_raw_fd())
    }
}

#[derive(Debug)]
struct Listener {
    kind: ListenerKind,
    socket: TcpListener,
    armed: bool,
}

#[derive(Debug)]
struct Doorbell {
    fd: Arc<EventFd>,
    value: Box<u64>,
    armed: bool,
}

/// One shard's ring and everything its requests point into.
pub(crate) struct UringDriver {
    ring: IoUring,
    listeners: Vec<Listener>,
    doorbells: Vec<Doorbell>,
    sockets: BTreeMap<ConnId, Socket>,
    /// Closed connections with requests still in flight, kept until their last completion.
    closing: BTreeMap<ConnId, Socket>,
    next_conn: ConnId,
    /// Requests pushed whose completion has not been reaped.
    in_ring: usize,
    /// Completions taken from the ring and not yet handled (reused, never shrunk).
    cqes: Vec<(u64, i32)>,
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("sockets", &self.sockets.len())
            .field("closing", &self.closing.len())
            .field("in_ring", &self.in_ring)
            .finish_non_exhaustive()
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
    )
}

impl UringDriver {
    pub fn new() -> io::Result<UringDriver> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)?;
        Ok(UringDriver {
            ring,
            listeners: Vec::new(),
            doorbells: Vec::new(),
            sockets: BTreeMap::new(),
            closing: BTreeMap::new(),
            next_conn: 0,
            in_ring: 0,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        })
    }

    /// Puts `entry` in the submission queue, handing the queue to the kernel first if full.
    ///
    /// # Safety
    ///
    /// Every buffer and descriptor `entry` names must stay valid, and unmoved, until its
    /// completion is reaped.
    #[allow(unsafe_code)]
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: the caller vouches for the entry's buffers (this function's contract).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_ring += 1;
                return;
            }
            match self.ring.submit() {
                Ok(_) => {}
                // The kernel holds back submissions while its completion overflow list is
                // full: take completions out (handled by the next `wait`), then try again.
                Err(error) if is_transient(&error) => self.take_cqes(),
                Err(error) => panic!("io_uring_enter failed: {error}; the ring is unusable"),
            }
        }
    }

    /// Pushes an `ASYNC_CANCEL` for the request named `target`.
    #[allow(unsafe_code)]
    fn cancel(&mut self, target: u64, index: usize) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(Op::Cancel, index));
        // SAFETY: a cancel names no buffer or descriptor, only another request's user_data.
        unsafe { self.push(&entry) };
    }

    pub fn listen(&mut self, kind: ListenerKind, socket: TcpListener) -> io::Result<()> {
        // Blocking, so that the kernel waits for a connection instead of failing with EAGAIN.
        socket.set_nonblocking(false)?;
        self.listeners.push(Listener {
            kind,
            socket,
            armed: false,
        });
        self.arm_accept(self.listeners.len() - 1);
        Ok(())
    }

    #[allow(unsafe_code)]
    fn arm_accept(&mut self, index: usize) {
        let listener = &mut self.listeners[index];
        if listener.armed {
            return;
        }
        listener.armed = true;
        let fd = types::Fd(listener.socket.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, index));
        // SAFETY: no address buffer (null); the listening socket is owned by `self.listeners`,
        // which is never shrunk, and `Drop` waits for this request before closing it.
        unsafe { self.push(&entry) };
    }

    pub fn add_doorbell(&mut self, fd: Arc<EventFd>) -> io::Result<()> {
        // Blocking, so that a read waits for the counter instead of failing with EAGAIN.
        fd.set_nonblocking(false)?;
        self.doorbells.push(Doorbell {
            fd,
            value: Box::new(0),
            armed: false,
        });
        self.arm_doorbell(self.doorbells.len() - 1);
        Ok(())
    }

    #[allow(unsafe_code)]
    fn arm_doorbell(&mut self, index: usize) {
        let doorbell = &mut self.doorbells[index];
        if doorbell.armed {
            return;
        }
        doorbell.armed = true;
        let target: *mut u64 = &raw mut *doorbell.value;
        let entry = opcode::Read::new(
            types::Fd(doorbell.fd.as_raw_fd()),
            target.cast::<u8>(),
            size_of::<u64>() as u32,
        )
        .build()
        .user_data(user_data(Op::Doorbell, index));
        // SAFETY: the 8 bytes are the heap allocation of `doorbell.value`, a `Box` owned by
        // `self.doorbells` (never shrunk) and only read after this request's completion; the
        // eventfd is kept open by the `Arc` beside it. `Drop` waits for the completion.
        unsafe { self.push(&entry) };
    }

    pub fn connect(&mut self, address: SocketAddr) -> io::Result<ConnId> {
        let dial = Box::new(SockAddr::new(address));
        // SAFETY: socket takes no pointers; it returns a new descriptor or -1.
        #[allow(unsafe_code)]
        let raw: RawFd =
            unsafe { libc::socket(dial.domain(), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a TCP socket socket() just returned, owned by nothing else.
        #[allow(unsafe_code)]
        let stream = unsafe { TcpStream::from_raw_fd(raw) };
        let conn = self.next_conn;
        self.next_conn += 1;
        let mut socket = Socket::new(stream, Some(dial));
        socket.connect_armed = true;
        let (addr, len) = socket.dial.as_ref().expect("just set").as_ptr();
        let entry = opcode::Connect::new(socket.fd(), addr, len)
            .build()
            .user_data(user_data(Op::Connect, conn));
        self.sockets.insert(conn, socket);
        // SAFETY: the address is the heap allocation of the socket's `dial` box, which stays in
        // the socket (in `sockets`, or `closing` once closed) until this completion is reaped;
        // the socket's descriptor lives as long.
        #[allow(unsafe_code)]
        unsafe {
            self.push(&entry);
        }
        Ok(conn)
    }

    #[allow(unsafe_code)]
    fn arm_recv(&mut self, conn: ConnId) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        if socket.recv_armed || socket.failed {
            return;
        }
        socket.recv_armed = true;
        let entry = opcode::Recv::new(
            socket.fd(),
            socket.recv.as_mut_ptr(),
            socket.recv.len() as u32,
        )
        .build()
        .user_data(user_data(Op::Recv, conn));
        // SAFETY: the buffer is the heap allocation of the socket's `recv` box, of the length
        // given, which nothing reads or frees until this completion is reaped (`receive` reads
        // it only after, `close` parks the socket in `closing` while the request is in flight).
        unsafe { self.push(&entry) };
    }

    #[allow(unsafe_code)]
    fn arm_send(&mut self, conn: ConnId) {
        let socket = match self.sockets.get_mut(&conn) {
            Some(socket) => socket,
            None => match self.closing.get_mut(&conn) {
                Some(socket) => socket,
                None => return,
            },
        };
        let Some(entry) = send_entry(socket, conn) else {
            return;
        };
        // SAFETY: the bytes are in the heap allocation of the socket's `sending` vector, which
        // is not written, resized or swapped while `send_armed` is set (new bytes go to `out`),
        // and the socket outlives the request (`closing`).
        unsafe { self.push(&entry) };
    }

    pub fn receive(&mut self, conn: ConnId, into: &mut Vec<u8>) -> Received {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return Received::Closed;
        };
        match socket.received.take() {
            None => return Received::Open,
            Some(n) if n > 0 => into.extend_from_slice(&socket.recv[..n.unsigned_abs() as usize]),
            Some(n) if n == -libc::EINTR || n == -libc::EAGAIN => {}
            Some(_) => return Received::Closed,
        }
        self.arm_recv(conn);
        Received::Open
    }

    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return false;
        };
        if socket.failed || socket.pending() + bytes.len() > WRITE_BUFFER_MAX {
            return false;
        }
        socket.out.extend_from_slice(bytes);
        self.arm_send(conn);
        true
    }

    pub fn pending(&self, conn: ConnId) -> usize {
        self.sockets.get(&conn).map_or(0, Socket::pending)
    }

    /// Closes `conn` after the bytes already queued for it are sent (a reply before `QUIT`, an
    /// error before a protocol failure closes the stream), for at most [`LINGER`]. What is in
    /// flight keeps its buffers until its completion: the socket waits in `closing`.
    pub fn close(&mut self, conn: ConnId) {
        let Some(mut socket) = self.sockets.remove(&conn) else {
            return;
        };
        if socket.dial.is_some() {
            socket.failed = true; // Never connected: nothing to send.
        }
        if !socket.in_flight() && (socket.failed || socket.pending() == 0) {
            return; // Dropping it closes the descriptor.
        }
        socket.closed_at = Some(Instant::now());
        let armed = [
            (socket.connect_armed, Op::Connect),
            (socket.recv_armed, Op::Recv),
        ];
        self.closing.insert(conn, socket);
        for (_, op) in armed.into_iter().filter(|(armed, _)| *armed) {
            self.cancel(user_data(op, conn), conn);
        }
        self.arm_send(conn);
    }

    /// Cancels the sends of closed connections that lingered too long (a peer not reading).
    fn expire_lingering(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<ConnId> = self
            .closing
            .iter_mut()
            .filter(|(_, s)| {
                s.send_armed && !s.failed && s.closed_at.is_some_and(|at| now - at >= LINGER)
            })
            .map(|(&conn, socket)| {
                socket.failed = true;
                conn
            })
            .collect();
        for conn in expired {
            self.cancel(user_data(Op::Send, conn), conn);
        }
    }

    pub fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> io::Result<bool> {
        self.expire_lingering();
        for index in 0..self.listeners.len() {
            self.arm_accept(index);
        }
        let ready = !self.ring.completion().is_empty();
        let queued = !self.ring.submission().is_empty();
        let result = if ready || timeout.is_zero() {
            // Spinning, or completions are waiting: no sleep, and no system call at all unless
            // there is something to submit.
            if queued { self.ring.submit() } else { Ok(0) }
        } else {
            let timespec = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&timespec);
            self.ring.submitter().submit_with_args(1, &args)
        };
        match result {
            Ok(_) => {}
            Err(error) if is_transient(&error) => {}
            Err(error) => return Err(error),
        }
        self.take_cqes();
        let busy = !self.cqes.is_empty();
        let mut at = 0;
        while at < self.cqes.len() {
            let (data, res) = self.cqes[at];
            at += 1;
            self.complete(data, res, events);
        }
        self.cqes.clear();
        Ok(busy)
    }

    /// Moves every completion out of the ring into `cqes`.
    fn take_cqes(&mut self) {
        let before = self.cqes.len();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        let taken = self.cqes.len() - before;
        assert!(taken <= self.in_ring, "invariant: a CQE answers a request");
        self.in_ring -= taken;
    }

    fn complete(&mut self, data: u64, res: i32, events: &mut Vec<Event>) {
        let (op, index) = split_user_data(data);
        match op {
            Op::Cancel => {}
            Op::Doorbell => {
                self.doorbells[index].armed = false;
                self.arm_doorbell(index);
            }
            Op::Accept => self.accepted(index, res, events),
            Op::Recv | Op::Send | Op::Connect => {
                if let Some(socket) = self.closing.get_mut(&index) {
                    match op {
                        Op::Recv => socket.recv_armed = false,
                        Op::Connect => socket.connect_armed = false,
                        Op::Send => {
                            socket.send_armed = false;
                            if res > 0 {
                                socket.sent += res.unsigned_abs() as usize;
                            } else {
                                socket.failed = true;
                            }
                        }
                        _ => {}
                    }
                    self.arm_send(index);
                    if let Some(socket) = self.closing.get(&index)
                        && !socket.in_flight()
                    {
                        self.closing.remove(&index);
                    }
                    return;
                }
                match op {
                    Op::Recv => self.received(index, res, events),
                    Op::Send => self.sent(index, res, events),
                    _ => self.connected(index, res, events),
                }
            }
        }
    }

    fn accepted(&mut self, index: usize, res: i32, events: &mut Vec<Event>) {
        self.listeners[index].armed = false;
        if res < 0 {
            if res != -libc::ECANCELED {
                let error = io::Error::from_raw_os_error(-res);
                tracing::warn!("accept failed: {error}");
            }
            // Rearmed by the next `wait`, not here: a persistent failure (out of descriptors)
            // must not spin within one pass.
            return;
        }
        {
            // SAFETY: a successful ACCEPT's result is a new connected socket, owned by nothing
            // else.
            #[allow(unsafe_code)]
            let stream = unsafe { TcpStream::from_raw_fd(res) };
            let _ = stream.set_nodelay(true);
            let conn = self.next_conn;
            self.next_conn += 1;
            self.sockets.insert(conn, Socket::new(stream, None));
            self.arm_recv(conn);
            events.push(Event::Accepted {
                listener: self.listeners[index].kind,
                conn,
            });
        }
        self.arm_accept(index);
    }

    fn received(&mut self, conn: ConnId, res: i32, events: &mut Vec<Event>) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        socket.recv_armed = false;
        socket.received = Some(res);
        events.push(Event::Readable { conn });
    }

    fn sent(&mut self, conn: ConnId, res: i32, events: &mut Vec<Event>) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        socket.send_armed = false;
        if res > 0 {
            socket.sent += res.unsigned_abs() as usize;
            assert!(
                socket.sent <= socket.sending.len(),
                "invariant: the kernel sent no more than it was given"
            );
        } else if res != -libc::EINTR && res != -libc::EAGAIN {
            socket.failed = true;
            events.push(Event::Broken { conn });
            return;
        }
        self.arm_send(conn);
    }

    fn connected(&mut self, conn: ConnId, res: i32, events: &mut Vec<Event>) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        socket.connect_armed = false;
        if res < 0 {
            self.sockets.remove(&conn);
            events.push(Event::ConnectFailed {
                conn,
                error: io::Error::from_raw_os_error(-res),
            });
            return;
        }
        socket.dial = None;
        let _ = socket.stream.set_nodelay(true);
        self.arm_recv(conn);
        self.arm_send(conn);
        events.push(Event::Connected { conn });
    }
}

/// The next `SEND` for `socket`, if it has bytes to send and none in flight; marks it in
/// flight. Bytes queued behind a finished send are swapped in (no copy, no allocation).
fn send_entry(socket: &mut Socket, conn: ConnId) -> Option<squeue::Entry> {
    if socket.send_armed || socket.failed || socket.dial.is_some() {
        return None;
    }
    if socket.sent == socket.sending.len() {
        socket.sending.clear();
        socket.sent = 0;
        if socket.out.is_empty() {
            return None;
        }
        std::mem::swap(&mut socket.out, &mut socket.sending);
    }
    socket.send_armed = true;
    let rest = &socket.sending[socket.sent..];
    // A connection buffers at most WRITE_BUFFER_MAX bytes, so the length fits.
    let entry = opcode::Send::new(socket.fd(), rest.as_ptr(), rest.len() as u32)
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(Op::Send, conn));
    Some(entry)
}

impl Drop for UringDriver {
    /// Cancels every request and waits for every completion before the buffers and sockets
    /// they name are freed.
    fn drop(&mut self) {
        let mut targets = Vec::new();
        for (index, listener) in self.listeners.iter().enumerate() {
            if listener.armed {
                targets.push((user_data(Op::Accept, index), index));
            }
        }
        for (index, doorbell) in self.doorbells.iter().enumerate() {
            if doorbell.armed {
                targets.push((user_data(Op::Doorbell, index), index));
            }
        }
        for (&conn, socket) in self.sockets.iter().chain(self.closing.iter()) {
            for (armed, op) in [
                (socket.connect_armed, Op::Connect),
                (socket.recv_armed, Op::Recv),
                (socket.send_armed, Op::Send),
            ] {
                if armed {
                    targets.push((user_data(op, conn), conn));
                }
            }
        }
        for (target, index) in targets {
            self.cancel(target, index);
        }
        while self.in_ring > 0 {
            if let Err(error) = self.ring.submit_and_wait(1)
                && !is_transient(&error)
            {
                // The kernel may still own the buffers: leak them rather than free them.
                std::mem::forget(std::mem::take(&mut self.sockets));
                std::mem::forget(std::mem::take(&mut self.closing));
                std::mem::forget(std::mem::take(&mut self.doorbells));
                return;
            }
            self.cqes.clear();
            self.take_cqes();
        }
    }
}
