//! The replica link's pure parts: the handshake refuses foreign and misconfigured peers with
//! an error that says what to check, the reconnect backoff stays within its bounds, and the
//! send buffer refuses instead of growing.

use std::time::Duration;

use chronon_engine::{ClusterId, ReplicaIndex};
use chronon_net::constants::{HELLO_SIZE, PROTOCOL_VERSION};
use chronon_net::frame::{FrameDecoder, FrameKind};
use chronon_net::{Backoff, Full, Hello, NetError, SendBuffer};
use proptest::prelude::*;

/// A peer's hello, whom this node dialed (if it did), and the error expected.
type Case = (Hello, Option<ReplicaIndex>, fn(&NetError) -> bool);

fn local() -> Hello {
    Hello::new(ClusterId(7), 4, ReplicaIndex(0), 3)
}

// A hello survives its frame and decoding, and a matching peer is accepted on both sides.
#[test]
fn hello_round_trips_and_matching_peer_is_accepted() {
    let peer = Hello::new(ClusterId(7), 4, ReplicaIndex(2), 3);
    let mut stream = Vec::new();
    peer.encode_frame(&mut stream);
    let mut decoder = FrameDecoder::new(HELLO_SIZE);
    let frame = decoder
        .push(&mut stream.as_slice())
        .expect("valid")
        .expect("complete");
    assert_eq!(frame.kind, FrameKind::Hello);
    let decoded = Hello::decode(frame.payload).expect("valid hello");
    assert_eq!(decoded, peer);
    assert_eq!(local().check_peer(&decoded, None), Ok(()));
    assert_eq!(local().check_peer(&decoded, Some(ReplicaIndex(2))), Ok(()));
    assert_eq!(decoded.check_peer(&local(), None), Ok(()));
}

// A peer from another cluster is refused, and the message names both clusters and what to
// check.
#[test]
fn wrong_cluster_is_refused_with_a_clear_message() {
    let foreign = Hello::new(ClusterId(9), 4, ReplicaIndex(1), 3);
    let error = local().check_peer(&foreign, None).expect_err("foreign");
    assert_eq!(
        error,
        NetError::ClusterMismatch {
            peer: ReplicaIndex(1),
            peer_cluster: ClusterId(9),
            local_cluster: ClusterId(7),
        }
    );
    let text = error.to_string();
    assert!(text.starts_with("peer replica 1 belongs to cluster 9, this node to cluster 7"));
    assert!(text.contains("check --cluster and the data directory"));
}

// Every other mismatch, table-driven: each is refused with its own error.
#[test]
fn mismatched_peers_are_refused() {
    let mut other_protocol = Hello::new(ClusterId(7), 4, ReplicaIndex(1), 3);
    other_protocol.protocol = PROTOCOL_VERSION + 1;
    let cases: [Case; 6] = [
        (other_protocol, None, |e| {
            matches!(e, NetError::ProtocolMismatch { .. })
        }),
        (Hello::new(ClusterId(7), 2, ReplicaIndex(1), 3), None, |e| {
            matches!(e, NetError::ShapeMismatch { .. })
        }),
        (Hello::new(ClusterId(7), 4, ReplicaIndex(1), 5), None, |e| {
            matches!(e, NetError::ShapeMismatch { .. })
        }),
        (Hello::new(ClusterId(7), 4, ReplicaIndex(0), 3), None, |e| {
            matches!(e, NetError::WrongReplica { .. })
        }),
        (
            Hello::new(ClusterId(7), 4, ReplicaIndex(1), 3),
            Some(ReplicaIndex(2)),
            |e| matches!(e, NetError::WrongReplica { .. }),
        ),
        (
            Hello {
                replica: ReplicaIndex(3),
                ..local()
            },
            None,
            |e| matches!(e, NetError::WrongReplica { .. }),
        ),
    ];
    for (peer, dialed, expected) in cases {
        let error = local().check_peer(&peer, dialed).expect_err("mismatch");
        assert!(expected(&error), "{peer:?}: {error}");
    }
}

// A hello with a flipped bit fails its checksum; a short or long one is refused.
#[test]
fn damaged_hello_is_refused() {
    let bytes = local().encode();
    for at in 0..bytes.len() {
        let mut damaged = bytes;
        damaged[at] ^= 0x10;
        assert!(Hello::decode(&damaged).is_err(), "byte {at}");
    }
    assert!(Hello::decode(&bytes[..HELLO_SIZE - 1]).is_err());
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(Hello::decode(&long).is_err());
}

proptest! {
    // Every delay lies within [min / 2, max], the ceiling doubles until the cap, and a reset
    // starts over; the same seed gives the same schedule.
    #[test]
    fn backoff_stays_within_bounds(seed in any::<u64>(), min_ms in 1u64..100, factor in 1u64..200) {
        let min = Duration::from_millis(min_ms);
        let max = Duration::from_millis(min_ms * factor);
        let mut backoff = Backoff::new(min, max, seed);
        let mut twin = Backoff::new(min, max, seed);
        for attempt in 0..80u32 {
            let delay = backoff.next_delay();
            prop_assert_eq!(delay, twin.next_delay());
            let ceiling = min.checked_mul(1 << attempt.min(31)).map_or(max, |c| c.min(max));
            prop_assert!(delay <= ceiling && delay >= ceiling / 2);
        }
        prop_assert_eq!(backoff.attempt(), 80);
        backoff.reset();
        let first = backoff.next_delay();
        prop_assert!(first <= min && first >= min / 2);
    }

    // The send buffer never holds more than its capacity, refuses whole frames when full
    // (leaving its contents alone), and hands bytes out in the order they were pushed.
    #[test]
    fn send_buffer_applies_backpressure(
        ops in prop::collection::vec((any::<bool>(), 1usize..40, any::<u8>()), 1..200),
    ) {
        let mut buffer = SendBuffer::new(64);
        let mut model: Vec<u8> = Vec::new();
        for (push, size, fill) in ops {
            if push {
                let frame = vec![fill; size];
                match buffer.push(&frame) {
                    Ok(()) => model.extend_from_slice(&frame),
                    Err(Full { frame_size, free }) => {
                        prop_assert_eq!(frame_size, size);
                        prop_assert!(size > free);
                        prop_assert_eq!(free, 64 - model.len());
                    }
                }
            } else {
                let count = size.min(buffer.len());
                buffer.consume(count);
                model.drain(..count);
            }
            prop_assert!(buffer.len() <= buffer.capacity());
            prop_assert_eq!(buffer.unwritten(), model.as_slice());
        }
        buffer.clear();
        prop_assert!(buffer.is_empty());
    }
}
