//! The drivers' conformance suite: every test runs against both drivers (the `io_uring` one
//! only where it can be set up), so the protocol code above them can rely on one behaviour.
//! Each test drives real loopback sockets; waits are bounded by a number of rounds, never by
//! a time that a loaded machine could miss.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{ConnId, Driver, Event, IoMode, ListenerKind, Received};
use crate::eventfd::EventFd;

/// Rounds of `wait` (each up to `ROUND`) before a test gives up on an event.
const ROUNDS: usize = 2_000;
const ROUND: Duration = Duration::from_millis(10);

fn modes() -> Vec<IoMode> {
    let mut modes = vec![IoMode::Epoll];
    match super::uring::probe() {
        Ok(()) => modes.push(IoMode::Uring),
        Err(cause) => eprintln!("skipping the io_uring driver: {cause}"),
    }
    modes
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Waits until `want` picks an event out of what the driver reports; other events are kept
/// in `seen` for later checks.
fn wait_for<T>(
    driver: &mut Driver,
    seen: &mut Vec<Event>,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    for _ in 0..ROUNDS {
        if let Some(index) = seen.iter().position(|e| want(e).is_some()) {
            let event = seen.remove(index);
            return want(&event).expect("matched above");
        }
        driver.wait(ROUND, seen).expect("wait");
    }
    panic!("no such event in {ROUNDS} rounds; saw {seen:?}");
}

/// Receives on `conn` until `into` holds `len` bytes or the stream ends.
fn receive_until(
    driver: &mut Driver,
    seen: &mut Vec<Event>,
    conn: ConnId,
    into: &mut Vec<u8>,
    len: usize,
) -> Received {
    loop {
        let outcome = driver.receive(conn, into);
        if into.len() >= len || outcome == Received::Closed {
            return outcome;
        }
        wait_for(driver, seen, |e| {
            matches!(e, Event::Readable { conn: c } if *c == conn).then_some(())
        });
    }
}

fn accept(driver: &mut Driver, seen: &mut Vec<Event>) -> ConnId {
    wait_for(driver, seen, |e| match e {
        Event::Accepted {
            listener: ListenerKind::Resp,
            conn,
        } => Some(*conn),
        _ => None,
    })
}

/// Bytes go both ways on an accepted connection, and the peer's close is reported.
#[test]
fn accepted_connections_carry_bytes_both_ways_and_report_the_close() {
    for mode in modes() {
        let mut driver = Driver::new(mode).expect("driver");
        let address = driver
            .listen(ListenerKind::Resp, loopback())
            .expect("listen");
        let mut client = TcpStream::connect(address).expect("connect");
        let mut seen = Vec::new();
        let conn = accept(&mut driver, &mut seen);
        client.write_all(b"ping").expect("write");
        let mut got = Vec::new();
        let outcome = receive_until(&mut driver, &mut seen, conn, &mut got, 4);
        assert_eq!(
            (outcome, got.as_slice()),
            (Received::Open, &b"ping"[..]),
            "{mode:?}"
        );
        assert!(driver.send(conn, b"pong"), "{mode:?}");
        // The send is handed to the kernel by the next wait.
        driver.wait(Duration::ZERO, &mut seen).expect("wait");
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).expect("read");
        assert_eq!(&reply, b"pong", "{mode:?}");
        drop(client);
        let outcome = receive_until(&mut driver, &mut seen, conn, &mut got, usize::MAX);
        assert_eq!(outcome, Received::Closed, "{mode:?}");
        driver.close(conn);
    }
}

/// A connection closed right after a large send still delivers every byte queued before the
/// close (the reply to `QUIT`, the error before a protocol failure), then ends.
#[test]
fn close_sends_what_was_queued_first() {
    const LEN: usize = 4 * 1024 * 1024;
    for mode in modes() {
        let mut driver = Driver::new(mode).expect("driver");
        let address = driver
            .listen(ListenerKind::Resp, loopback())
            .expect("listen");
        let client = TcpStream::connect(address).expect("connect");
        let mut seen = Vec::new();
        let conn = accept(&mut driver, &mut seen);
        let bytes: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        assert!(driver.send(conn, &bytes), "{mode:?}");
        driver.close(conn);
        let reader = std::thread::spawn(move || {
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).map(|_| got)
        });
        while !reader.is_finished() {
            driver.wait(ROUND, &mut seen).expect("wait");
        }
        let got = reader.join().expect("reader").expect("read to the end");
        assert_eq!(got.len(), LEN, "{mode:?}");
        assert!(got == bytes, "{mode:?}: the bytes differ");
    }
}

/// A dial reports its connection; bytes queued while it connects go out once it is up. A dial
/// to a closed port reports the failure.
#[test]
fn dials_connect_or_fail() {
    for mode in modes() {
        let listener = TcpListener::bind(loopback()).expect("bind");
        let mut driver = Driver::new(mode).expect("driver");
        let mut seen = Vec::new();
        let conn = driver
            .connect(listener.local_addr().expect("addr"))
            .expect("dial");
        assert!(driver.send(conn, b"hello"), "{mode:?}");
        // The io_uring driver hands the dial to the kernel in its next wait.
        driver.wait(Duration::ZERO, &mut seen).expect("wait");
        let (mut accepted, _) = listener.accept().expect("accept");
        wait_for(&mut driver, &mut seen, |e| {
            matches!(e, Event::Connected { conn: c } if *c == conn).then_some(())
        });
        driver.wait(Duration::ZERO, &mut seen).expect("wait");
        let mut got = [0u8; 5];
        accepted.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello", "{mode:?}");
        driver.close(conn);

        let closed = listener.local_addr().expect("addr");
        drop(listener);
        drop(accepted);
        let conn = driver.connect(closed).expect("dial");
        wait_for(&mut driver, &mut seen, |e| {
            matches!(e, Event::ConnectFailed { conn: c, .. } if *c == conn).then_some(())
        });
    }
}

/// A doorbell rung from another thread ends a long wait.
#[test]
fn a_doorbell_ends_the_wait() {
    for mode in modes() {
        let mut driver = Driver::new(mode).expect("driver");
        let doorbell = Arc::new(EventFd::new().expect("eventfd"));
        driver
            .add_doorbell(Arc::clone(&doorbell))
            .expect("doorbell");
        let mut seen = Vec::new();
        // Settle anything the setup itself completed.
        driver.wait(Duration::ZERO, &mut seen).expect("wait");
        let ringer = std::thread::spawn(move || doorbell.ring());
        let mut woken = false;
        for _ in 0..ROUNDS {
            if driver
                .wait(Duration::from_mins(1), &mut seen)
                .expect("wait")
            {
                woken = true;
                break;
            }
        }
        assert!(woken, "{mode:?}");
        ringer.join().expect("ringer");
    }
}

/// A driver dropped with requests in flight (receives waiting, a send stuck behind a peer
/// that does not read, a dial pending) cancels them and waits for the kernel to let go of
/// their buffers, instead of freeing memory the kernel may still write.
#[test]
fn dropping_the_driver_with_requests_in_flight_is_clean() {
    for mode in modes() {
        let mut driver = Driver::new(mode).expect("driver");
        let address = driver
            .listen(ListenerKind::Resp, loopback())
            .expect("listen");
        let mut seen = Vec::new();
        let clients: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(address).expect("connect"))
            .collect();
        let conns: Vec<ConnId> = (0..clients.len())
            .map(|_| accept(&mut driver, &mut seen))
            .collect();
        let stuck = vec![7u8; 8 * 1024 * 1024];
        assert!(driver.send(conns[0], &stuck), "{mode:?}");
        // A dial to an address that never answers (TEST-NET-1), left pending.
        let _ = driver.connect(SocketAddr::from(([192, 0, 2, 1], 9)));
        driver.wait(Duration::ZERO, &mut seen).expect("wait");
        driver.close(conns[1]);
        drop(driver);
        drop(clients);
    }
}

/// A connection whose peer stops reading is refused more bytes past the bound, rather than
/// buffered for without limit.
#[test]
fn sends_are_bounded() {
    for mode in modes() {
        let mut driver = Driver::new(mode).expect("driver");
        let address = driver
            .listen(ListenerKind::Resp, loopback())
            .expect("listen");
        let _client = TcpStream::connect(address).expect("connect");
        let mut seen = Vec::new();
        let conn = accept(&mut driver, &mut seen);
        let chunk = vec![0u8; 1024 * 1024];
        // The socket itself takes a few MiB; past that, the driver's bound must refuse more.
        let refused = (0..4 * super::WRITE_BUFFER_MAX / chunk.len()).any(|_| {
            let queued = driver.send(conn, &chunk);
            let _ = driver.wait(Duration::ZERO, &mut seen);
            !queued
        });
        assert!(refused, "{mode:?}");
        assert!(driver.pending(conn) <= super::WRITE_BUFFER_MAX, "{mode:?}");
    }
}
