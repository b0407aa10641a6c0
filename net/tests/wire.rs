//! Properties of the native wire codec and its framing: every message round-trips, the
//! decoder accepts only what the encoder writes (so `is_intact` is exact), and truncated,
//! mutated or random bytes give an error, never a panic.

use std::sync::Arc;

use chronon_engine::log::{EntryMeta, Header, Operation};
use chronon_engine::vsr::{Endpoint, Envelope, Message, Reply, ReplyError, Request, RequestKind};
use chronon_engine::{
    Checksum, ClientId, ClusterId, Op, ReplicaIndex, RequestNumber, ShardId, Timestamp, View,
};
use chronon_net::NetError;
use chronon_net::constants::{FRAME_HEADER_SIZE, FRAME_PAYLOAD_MAX};
use chronon_net::frame::{FrameDecoder, FrameKind};
use chronon_net::wire::{decode_envelope, encode_envelope, encode_envelope_frame};
use proptest::prelude::*;

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<u128>(),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(op, view, client, operation, parent, shard, body)| {
            let meta = EntryMeta {
                view: View(view),
                timestamp: Timestamp(op ^ view),
                operation: Operation(operation),
                client: ClientId(client),
                request: RequestNumber(client.rotate_left(7)),
            };
            Header::new(
                &meta,
                Op(op),
                Checksum(parent),
                ClusterId(op),
                ShardId(shard),
                &body,
            )
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn reply_result() -> impl Strategy<Value = Result<Vec<u8>, ReplyError>> {
    prop_oneof![
        bytes().prop_map(Ok),
        Just(Err(ReplyError::NoSession)),
        ".{0,20}".prop_map(|reason| Err(ReplyError::Rejected(reason))),
        any::<u64>().prop_map(|view| Err(ReplyError::NotPrimary { view: View(view) })),
        (any::<u32>(), any::<u32>()).prop_map(|(size, max)| Err(ReplyError::TooLarge {
            size: size as usize,
            max: max as usize,
        })),
        (any::<u64>(), any::<u16>()).prop_map(|(cluster, shard_count)| Err(
            ReplyError::Misdirected {
                cluster: ClusterId(cluster),
                shard_count,
            }
        )),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let headers = || prop::collection::vec(header(), 0..4);
    prop_oneof![
        (any::<u64>(), any::<u64>(), 0u8..3, bytes()).prop_map(|(c, r, k, body)| {
            Message::Request(Request {
                client: ClientId(c),
                request: RequestNumber(r),
                kind: RequestKind::from_tag(k).expect("tags 0..3 are kinds"),
                body,
            })
        }),
        (any::<u64>(), any::<u64>(), reply_result()).prop_map(|(c, r, result)| {
            Message::Reply(Reply {
                client: ClientId(c),
                request: RequestNumber(r),
                result,
            })
        }),
        (header(), bytes(), any::<u64>()).prop_map(|(header, body, commit)| Message::Prepare {
            header,
            body: Arc::from(body),
            commit: Op(commit),
        }),
        (any::<u64>(), any::<u128>()).prop_map(|(op, c)| Message::PrepareOk {
            op: Op(op),
            checksum: Checksum(c),
        }),
        (any::<u64>(), any::<u128>()).prop_map(|(op, c)| Message::Commit {
            commit: Op(op),
            checksum: Checksum(c),
        }),
        Just(Message::StartViewChange),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            headers(),
            proptest::collection::vec(any::<u64>(), 0..4)
        )
            .prop_map(
                |(log_view, op, commit, headers, faulty)| Message::DoViewChange {
                    log_view: View(log_view),
                    op: Op(op),
                    commit: Op(commit),
                    headers,
                    faulty: faulty.into_iter().map(Op).collect(),
                }
            ),
        (any::<u64>(), any::<u64>(), headers()).prop_map(|(op, commit, headers)| {
            Message::StartView {
                op: Op(op),
                commit: Op(commit),
                headers,
            }
        }),
        Just(Message::RequestStartView),
        (any::<u64>(), any::<Option<u128>>()).prop_map(|(op, c)| Message::RequestPrepare {
            op: Op(op),
            checksum: c.map(Checksum),
        }),
        (any::<u64>(), any::<Option<u128>>(), any::<u64>()).prop_map(|(op, c, offset)| {
            Message::RequestCheckpoint {
                op: Op(op),
                checksum: c.map(Checksum),
                offset,
            }
        }),
        (header(), any::<u128>(), any::<u64>(), any::<u64>(), bytes()).prop_map(
            |(header, c, size, offset, chunk)| Message::Checkpoint {
                header,
                checksum: Checksum(c),
                size,
                offset,
                chunk: Arc::from(chunk),
            }
        ),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let from = prop_oneof![
        any::<u8>().prop_map(|r| Endpoint::Replica(ReplicaIndex(r))),
        any::<u64>().prop_map(|c| Endpoint::Client(ClientId(c))),
    ];
    (any::<u64>(), any::<u16>(), any::<u64>(), from, message()).prop_map(
        |(cluster, shard, view, from, message)| {
            Envelope::seal(
                ClusterId(cluster),
                ShardId(shard),
                View(view),
                from,
                message,
            )
        },
    )
}

fn encoded(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::new();
    encode_envelope(envelope, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    // decode(encode(x)) == x for every message variant, and the result is intact.
    #[test]
    fn envelopes_round_trip(envelope in envelope()) {
        let bytes = encoded(&envelope);
        let decoded = decode_envelope(&bytes).expect("an encoded envelope decodes");
        prop_assert!(decoded.is_intact());
        prop_assert_eq!(decoded, envelope);
    }

    // Every proper prefix is refused with an error, and one extra byte is refused too.
    #[test]
    fn truncated_and_extended_envelopes_are_refused(envelope in envelope()) {
        let bytes = encoded(&envelope);
        for len in 0..bytes.len() {
            prop_assert!(decode_envelope(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(decode_envelope(&longer), Err(NetError::TrailingBytes { count: 1 }));
    }

    // The decoder is canonical: whatever a mutated encoding decodes to re-encodes to the same
    // bytes. So `is_intact` on a decoded envelope holds exactly when its checksum matches the
    // bytes it came from, and a flipped byte outside the checksum is caught by it.
    #[test]
    fn mutated_envelopes_decode_canonically(
        envelope in envelope(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let mut bytes = encoded(&envelope);
        for (at, mask) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        if let Ok(decoded) = decode_envelope(&bytes) {
            prop_assert_eq!(encoded(&decoded), bytes.clone());
            let sealed = Checksum::of(&bytes[16..]).to_le_bytes() == bytes[..16];
            prop_assert_eq!(decoded.is_intact(), sealed);
        }
    }

    // Random bytes decode to an error or to a canonical envelope, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(decoded) = decode_envelope(&bytes) {
            prop_assert_eq!(encoded(&decoded), bytes);
        }
    }

    // Frames survive any split of the stream into reads: each envelope comes out whole, once,
    // in order, however the bytes are cut.
    #[test]
    fn frames_reassemble_across_any_split(
        envelopes in prop::collection::vec(envelope(), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for envelope in &envelopes {
            encode_envelope_frame(envelope, FRAME_PAYLOAD_MAX, &mut stream).expect("fits");
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_MAX);
        let mut decoded = Vec::new();
        for pair in cuts.windows(2) {
            let mut input = &stream[pair[0]..pair[1]];
            while let Some(frame) = decoder.push(&mut input).expect("valid stream") {
                prop_assert_eq!(frame.kind, FrameKind::Envelope);
                decoded.push(decode_envelope(frame.payload).expect("valid envelope"));
            }
            prop_assert!(input.is_empty());
        }
        prop_assert!(decoder.is_idle());
        prop_assert_eq!(decoded, envelopes);
    }

    // Random streams give frames or an error, and after an error only that error.
    #[test]
    fn random_streams_never_panic(stream in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut decoder = FrameDecoder::new(64);
        let mut input = stream.as_slice();
        let result = loop {
            match decoder.push(&mut input) {
                Ok(Some(frame)) => prop_assert!(frame.payload.len() <= 64),
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        if let Err(error) = result {
            prop_assert_eq!(decoder.push(&mut &b"more"[..]).err(), Some(error));
        }
    }
}

// A frame header that declares more than the bound is refused as soon as the header is in,
// before any of its payload is buffered.
#[test]
fn oversized_frame_is_refused_before_buffering() {
    let envelope = Envelope::seal(
        ClusterId(1),
        ShardId(0),
        View(0),
        Endpoint::Replica(ReplicaIndex(0)),
        Message::Prepare {
            header: Header::root(ClusterId(1), ShardId(0)),
            body: Arc::from(vec![7u8; 1000]),
            commit: Op(0),
        },
    );
    let mut stream = Vec::new();
    encode_envelope_frame(&envelope, FRAME_PAYLOAD_MAX, &mut stream).expect("fits");
    let mut decoder = FrameDecoder::new(512);
    let mut input = &stream[..FRAME_HEADER_SIZE];
    let error = decoder.push(&mut input).expect_err("oversized");
    assert!(
        matches!(error, NetError::FrameTooLarge { max: 512, .. }),
        "{error}"
    );

    // The encoder refuses it too, leaving the output as it was.
    let mut out = vec![1, 2, 3];
    assert!(encode_envelope_frame(&envelope, 512, &mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
}

/// A frame-header byte to overwrite, its new value, and the error expected.
type HeaderCase = (usize, u8, fn(&NetError) -> bool);

// Table of malformed frame headers: each gets its own error.
#[test]
fn malformed_frame_headers() {
    let good = {
        let mut out = Vec::new();
        let envelope = Envelope::seal(
            ClusterId(1),
            ShardId(0),
            View(0),
            Endpoint::Replica(ReplicaIndex(0)),
            Message::StartViewChange,
        );
        encode_envelope_frame(&envelope, FRAME_PAYLOAD_MAX, &mut out).expect("fits");
        out
    };
    let cases: [HeaderCase; 4] = [
        (0, b'X', |e| matches!(e, NetError::BadMagic { .. })),
        (4, 9, |e| {
            matches!(e, NetError::FrameVersion { found: 9, .. })
        }),
        (5, 7, |e| matches!(e, NetError::UnknownTag { tag: 7, .. })),
        (6, 1, |e| matches!(e, NetError::FrameReserved { .. })),
    ];
    for (at, value, expected) in cases {
        let mut bytes = good.clone();
        bytes[at] = value;
        let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_MAX);
        let error = decoder.push(&mut bytes.as_slice()).expect_err("malformed");
        assert!(expected(&error), "byte {at}: {error}");
    }
}

// A prepare whose embedded log header fails its own checksum is refused by name.
#[test]
fn corrupt_embedded_header_is_refused() {
    let envelope = Envelope::seal(
        ClusterId(1),
        ShardId(0),
        View(0),
        Endpoint::Replica(ReplicaIndex(0)),
        Message::Prepare {
            header: Header::root(ClusterId(1), ShardId(0)),
            body: Arc::from(Vec::new()),
            commit: Op(0),
        },
    );
    let mut bytes = encoded(&envelope);
    // Checksum 16, cluster 8, shard 2, view 8, sender 2, tag 1: the header starts at 37; its
    // own checksum covers its bytes from 16 on.
    bytes[37 + 60] ^= 1;
    assert_eq!(
        decode_envelope(&bytes),
        Err(NetError::CorruptHeader {
            field: "prepare header"
        })
    );
}

// A header count that claims more headers than the bytes hold is refused without allocating
// for it.
#[test]
fn lying_header_count_is_refused() {
    let envelope = Envelope::seal(
        ClusterId(1),
        ShardId(0),
        View(0),
        Endpoint::Replica(ReplicaIndex(0)),
        Message::StartView {
            op: Op(0),
            commit: Op(0),
            headers: Vec::new(),
        },
    );
    let mut bytes = encoded(&envelope);
    let count_at = bytes.len() - 8;
    bytes[count_at..].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode_envelope(&bytes),
        Err(NetError::BadLength {
            field: "headers",
            ..
        })
    ));
}

// The state-transfer messages round-trip through the codec, and a checkpoint chunk whose
// embedded header fails its checksum is refused by name.
#[test]
fn checkpoint_messages_roundtrip() {
    let header = Header::root(ClusterId(1), ShardId(0));
    for message in [
        Message::RequestCheckpoint {
            op: Op(64),
            checksum: Some(Checksum(9)),
            offset: 4096,
        },
        Message::RequestCheckpoint {
            op: Op(1),
            checksum: None,
            offset: 0,
        },
        Message::Checkpoint {
            header,
            checksum: Checksum(5),
            size: 10_000,
            offset: 8192,
            chunk: Arc::from(vec![7u8; 1808]),
        },
    ] {
        let envelope = Envelope::seal(
            ClusterId(1),
            ShardId(0),
            View(3),
            Endpoint::Replica(ReplicaIndex(2)),
            message,
        );
        let bytes = encoded(&envelope);
        assert_eq!(decode_envelope(&bytes), Ok(envelope));
    }
    let envelope = Envelope::seal(
        ClusterId(1),
        ShardId(0),
        View(0),
        Endpoint::Replica(ReplicaIndex(0)),
        Message::Checkpoint {
            header,
            checksum: Checksum(5),
            size: 1,
            offset: 0,
            chunk: Arc::from(vec![1u8]),
        },
    );
    let mut bytes = encoded(&envelope);
    bytes[37 + 60] ^= 1;
    assert_eq!(
        decode_envelope(&bytes),
        Err(NetError::CorruptHeader {
            field: "checkpoint header"
        })
    );
}
