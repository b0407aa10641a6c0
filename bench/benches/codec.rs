//! The key-value store's encodings, hand-written (`engine/src/app/kv.rs`) against rkyv 0.8, side
//! by side in one run (issue 4: "use rkyv where it measures better than a hand-written format").
//!
//! - `command/{put,get,cas}`: a `KvCommand` with a 16 B key and (for put and cas) 100 B values.
//!   `encode` builds the bytes; `decode` turns untrusted bytes into an owned command, which is
//!   what `apply` consumes; `view` only checks the bytes and borrows the fields, without copying
//!   them out. rkyv's `decode` and `view` validate (`bytecheck`), as bytes from a disk or a peer
//!   must be. (rkyv's unvalidated access needs `unsafe`, which this project keeps to the disk
//!   and shard crates; an earlier run measured it at about 1 ns, for reference.)
//! - `snapshot/100k`: a state of 100,000 keys (16 B keys, 100 B values). `encode` is
//!   `KvStore::snapshot` against rkyv's archived B-tree; `restore` rebuilds the `imbl::OrdMap`
//!   from untrusted bytes; `check` only validates the bytes (no map is built); `get` finds one
//!   key in the encoded snapshot without restoring it: a scan for the hand-written format (whose
//!   entries are sorted, so the scan stops at the key), a validation of the whole buffer plus a
//!   B-tree lookup for rkyv, and, for `get_validated_once`, a lookup in an archive validated
//!   once beforehand (what serving reads from a loaded snapshot would do).
//!
//! Criterion reports each case on its own. The table printed to stderr at the end puts them
//! side by side: encoded bytes, ns per operation over everything criterion ran (warm-up
//! included), p50 and p99 over criterion's samples (each sample's mean; for the snapshot cases
//! each operation is timed on its own), throughput, and the time as a ratio to the hand-written
//! codec's for the same operation.
//!
//! `cargo bench -p chronon-bench --bench codec`

use std::fmt::Write as _;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chronon_bench::{Latencies, body, f64_of};
use chronon_engine::app::ChrApplication;
use chronon_engine::app::codec::{Reader, put_bytes, put_u64};
use chronon_engine::app::kv::{KvCommand, KvState, KvStore};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use rkyv::collections::btree_map::{ArchivedBTreeMap, BTreeMapResolver};
use rkyv::rancor::{Error as RkyvError, Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Deserialize, Place, Serialize};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// Keys in the snapshot cases' state.
const SNAPSHOT_KEYS: usize = 100_000;
/// Distinct keys the `get` cases look up in turn, spread over the whole state.
const LOOKUP_KEYS: usize = 1024;
/// Batches shorter than this stay out of the percentiles (they still count in ns/op): the
/// clock's own cost, and criterion's first warm-up calls of one or two iterations, would
/// dominate them.
const SAMPLE_MIN: Duration = Duration::from_micros(10);

/// `KvCommand` as rkyv would archive it: the same variants and fields, derived. The engine does
/// not depend on rkyv, so the bench keeps this mirror and converts outside the timed loops.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(
    // `Schedule` holds a boxed command: the derive cannot infer bounds for a recursive type.
    bytecheck(bounds(__C: rkyv::validation::ArchiveContext, __C::Error: Source)),
    serialize_bounds(__S: Writer + Allocator, __S::Error: Source),
    deserialize_bounds(__D::Error: Source),
)]
enum RkyvCommand {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    PutIfPresent {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    IncrBy {
        key: Vec<u8>,
        delta: i64,
    },
    Exists {
        key: Vec<u8>,
    },
    Emit {
        sink: String,
        payload: Vec<u8>,
    },
    Schedule {
        delay_ns: u64,
        #[rkyv(omit_bounds)]
        command: Box<RkyvCommand>,
    },
    Webhook {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl From<&KvCommand> for RkyvCommand {
    fn from(command: &KvCommand) -> RkyvCommand {
        match command.clone() {
            KvCommand::Get { key } => RkyvCommand::Get { key },
            KvCommand::Put { key, value } => RkyvCommand::Put { key, value },
            KvCommand::Delete { key } => RkyvCommand::Delete { key },
            KvCommand::Cas { key, expected, new } => RkyvCommand::Cas { key, expected, new },
            KvCommand::PutIfPresent { key, value } => RkyvCommand::PutIfPresent { key, value },
            KvCommand::IncrBy { key, delta } => RkyvCommand::IncrBy { key, delta },
            KvCommand::Exists { key } => RkyvCommand::Exists { key },
            KvCommand::Emit { sink, payload } => RkyvCommand::Emit { sink, payload },
            KvCommand::Schedule { delay_ns, command } => RkyvCommand::Schedule {
                delay_ns,
                command: Box::new(RkyvCommand::from(&*command)),
            },
            KvCommand::Webhook {
                method,
                url,
                headers,
                body,
            } => RkyvCommand::Webhook {
                method,
                url,
                headers,
                body,
            },
        }
    }
}

/// The fields of a command, borrowed from its encoding.
type CommandView<'a> = (u8, &'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

/// The hand-written format's zero-copy read of the three benched shapes: checks the bytes as
/// `KvCommand::decode` does and borrows the fields instead of copying them.
fn hand_view(bytes: &[u8]) -> Option<CommandView<'_>> {
    let mut r = Reader::new(bytes);
    let tag = r.u8()?;
    let key = r.bytes()?;
    let view = match tag {
        1 => (tag, key, None, None),
        2 => (tag, key, Some(r.bytes()?), None),
        4 => {
            let expected = match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?),
                _ => return None,
            };
            (tag, key, expected, Some(r.bytes()?))
        }
        _ => return None,
    };
    r.is_empty().then_some(view)
}

/// `KvCommand::encode` for the three benched shapes with the buffer allocated once at its final
/// size, where the engine grows it from empty: the same bytes, to show what presizing is worth
/// before blaming the format.
fn hand_encode_presized(command: &KvCommand) -> Vec<u8> {
    const LEN: usize = 4;
    let out = match command {
        KvCommand::Get { key } => {
            let mut out = Vec::with_capacity(1 + LEN + key.len());
            out.push(1);
            put_bytes(&mut out, key);
            out
        }
        KvCommand::Put { key, value } => {
            let mut out = Vec::with_capacity(1 + 2 * LEN + key.len() + value.len());
            out.push(2);
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
            out
        }
        KvCommand::Cas { key, expected, new } => {
            let expected_len = expected.as_ref().map_or(0, |e| LEN + e.len());
            let mut out = Vec::with_capacity(2 + 2 * LEN + key.len() + expected_len + new.len());
            out.push(4);
            put_bytes(&mut out, key);
            match expected {
                Some(expected) => {
                    out.push(1);
                    put_bytes(&mut out, expected);
                }
                None => out.push(0),
            }
            put_bytes(&mut out, new);
            out
        }
        other => other.encode(),
    };
    debug_assert_eq!(out.len(), out.capacity());
    out
}

/// `KvStore::snapshot` with the buffer allocated once at its final size (one extra pass over
/// the map to sum the lengths), where the engine grows it by doubling: the same bytes.
fn hand_snapshot_presized(state: &KvState) -> Vec<u8> {
    let len = 8 + state
        .iter()
        .map(|(key, value)| 8 + key.len() + value.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(len);
    put_u64(&mut out, state.len() as u64);
    for (key, value) in state {
        put_bytes(&mut out, key);
        put_bytes(&mut out, value);
    }
    out
}

/// The key-value state archived as rkyv's B-tree map, serialized straight from the `OrdMap`
/// (whose iterator is ordered and exact-sized) without an intermediate `BTreeMap`.
struct RkyvSnapshot<'a>(&'a KvState);

type ArchivedSnapshot = ArchivedBTreeMap<ArchivedVec<u8>, ArchivedVec<u8>>;

impl Archive for RkyvSnapshot<'_> {
    type Archived = ArchivedSnapshot;
    type Resolver = BTreeMapResolver;

    fn resolve(&self, resolver: BTreeMapResolver, out: Place<ArchivedSnapshot>) {
        ArchivedSnapshot::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<S> Serialize<S> for RkyvSnapshot<'_>
where
    S: Fallible + Allocator + Writer + ?Sized,
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<BTreeMapResolver, S::Error> {
        ArchivedSnapshot::serialize_from_ordered_iter::<_, _, _, Vec<u8>, Vec<u8>, _>(
            self.0.iter(),
            serializer,
        )
    }
}

fn rkyv_snapshot(state: &KvState) -> AlignedVec {
    rkyv::to_bytes::<RkyvError>(&RkyvSnapshot(state)).expect("serialize the snapshot")
}

/// Restores the state from untrusted rkyv bytes: validate, then copy every entry out.
fn rkyv_restore(bytes: &[u8]) -> Result<KvState, RkyvError> {
    let archived = rkyv::access::<ArchivedSnapshot, RkyvError>(bytes)?;
    let mut state = KvState::new();
    archived.visit(|key, value| {
        state.insert(key.to_vec(), value.to_vec());
        ControlFlow::<()>::Continue(())
    });
    Ok(state)
}

/// Finds `key` in a hand-written snapshot without restoring it. Entries are written in key
/// order, so the scan stops at the first key past `key`.
fn hand_get<'a>(snapshot: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut r = Reader::new(snapshot);
    let count = r.u64()?;
    for _ in 0..count {
        let candidate = r.bytes()?;
        let value = r.bytes()?;
        match candidate.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Some(value),
            std::cmp::Ordering::Greater => return None,
        }
    }
    None
}

/// Walks a hand-written snapshot checking every bound, as `restore` does, without building
/// the map: the format's validation cost.
fn hand_check(snapshot: &[u8]) -> Option<u64> {
    let mut r = Reader::new(snapshot);
    let count = r.u64()?;
    for _ in 0..count {
        r.bytes()?;
        r.bytes()?;
    }
    r.is_empty().then_some(count)
}

/// One line of the final table: everything criterion ran for one case.
#[derive(Debug)]
struct Row {
    group: String,
    op: &'static str,
    codec: &'static str,
    /// Encoded bytes the operation reads or writes.
    bytes: usize,
    ops: u64,
    elapsed: Duration,
    /// ns per operation: per criterion sample (its mean), or per operation where each is timed.
    samples: Latencies,
}

impl Row {
    fn new(group: &str, op: &'static str, codec: &'static str, bytes: usize) -> Row {
        Row {
            group: group.to_owned(),
            op,
            codec,
            bytes,
            ops: 0,
            elapsed: Duration::ZERO,
            samples: Latencies::new(),
        }
    }

    fn ns_per_op(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / f64_of(self.ops)
    }

    /// Runs `iters` operations as one timed batch: for cases of nanoseconds, where the clock
    /// would cost more than the work.
    fn batch<T>(&mut self, iters: u64, mut operation: impl FnMut() -> T) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(operation());
        }
        let elapsed = start.elapsed();
        self.ops += iters;
        self.elapsed += elapsed;
        if elapsed >= SAMPLE_MIN {
            let per_op_ns = elapsed.as_nanos() / u128::from(iters.max(1));
            self.samples.record(Duration::from_nanos(
                u64::try_from(per_op_ns).unwrap_or(u64::MAX),
            ));
        }
        elapsed
    }

    /// Times each of `iters` operations on its own and drops what each returns outside the
    /// clock: for cases of milliseconds, whose results (a 100k-key map) are costly to free.
    fn each<T>(&mut self, iters: u64, mut operation: impl FnMut() -> T) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let result = black_box(operation());
            let elapsed = start.elapsed();
            drop(result);
            self.samples.record(elapsed);
            total += elapsed;
        }
        self.ops += iters;
        self.elapsed += total;
        total
    }
}

#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn push(&mut self, row: Row) {
        if row.ops > 0 {
            self.rows.push(row);
        }
    }

    fn hand_ns(&self, row: &Row) -> Option<f64> {
        let hand_op = match row.op {
            "get_validated_once" => "get",
            op => op,
        };
        self.rows
            .iter()
            .find(|r| r.group == row.group && r.op == hand_op && r.codec == "hand")
            .map(Row::ns_per_op)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        out += "\ncodec: hand-written (engine/src/app/kv.rs) against rkyv 0.8, one run\n";
        out += "ns/op over all iterations (warm-up included); p50/p99 over criterion samples \
                (rows timed in batches: each sample's mean, samples under 10 us left out;\n";
        out += "snapshot encode/restore/check/get: each operation)\n";
        out += "x_hand = this row's ns/op over the hand-written codec's for the same operation \
                (below 1 is faster)\n\n";
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:<16} {:>10} {:>12} {:>12} {:>12} {:>14} {:>10} {:>7}",
            "case", "op", "codec", "bytes", "ns/op", "p50 ns", "p99 ns", "ops/s", "MiB/s", "x_hand"
        );
        for row in &self.rows {
            let ns = row.ns_per_op();
            let (p50, p99) = row.samples.percentiles().map_or((0, 0), |p| (p.p50, p.p99));
            // Lookups read a few entries, not the whole encoding: no bandwidth for them.
            let mib_per_second = if row.op.starts_with("get") {
                "-".to_owned()
            } else {
                format!(
                    "{:.1}",
                    f64_of(row.bytes as u64) / (1024.0 * 1024.0) / (ns * 1e-9)
                )
            };
            let ratio = self.hand_ns(row).map_or_else(
                || "-".to_owned(),
                |hand| {
                    let ratio = ns / hand;
                    if ratio < 0.1 {
                        format!("{ratio:.4}")
                    } else {
                        format!("{ratio:.2}")
                    }
                },
            );
            let _ = writeln!(
                out,
                "{:<16} {:<20} {:<16} {:>10} {:>12.1} {:>12} {:>12} {:>14.0} {:>10} {:>7}",
                row.group,
                row.op,
                row.codec,
                row.bytes,
                ns,
                p50,
                p99,
                1e9 / ns,
                mib_per_second,
                ratio,
            );
        }
        out
    }
}

fn key(i: usize) -> Vec<u8> {
    let key = format!("key:{i:012}").into_bytes();
    assert_eq!(key.len(), KEY_LEN);
    key
}

/// The benched command shapes.
fn commands() -> [(&'static str, KvCommand); 3] {
    let value = body(VALUE_LEN, 0x0a1e);
    [
        (
            "command/put",
            KvCommand::Put {
                key: key(42),
                value: value.clone(),
            },
        ),
        ("command/get", KvCommand::Get { key: key(42) }),
        (
            "command/cas",
            KvCommand::Cas {
                key: key(42),
                expected: Some(value.clone()),
                new: body(VALUE_LEN, 0x0a1f),
            },
        ),
    ]
}

fn command_group<'a>(criterion: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = criterion.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group
}

fn bench_command(criterion: &mut Criterion, report: &mut Report, name: &str, command: &KvCommand) {
    let hand_bytes = command.encode();
    let mirror = RkyvCommand::from(command);
    let rkyv_bytes = rkyv::to_bytes::<RkyvError>(&mirror).expect("serialize the command");
    // Pair assertions: both codecs give back what they were given before anything is timed.
    assert_eq!(KvCommand::decode(&hand_bytes).as_ref(), Some(command));
    assert_eq!(hand_encode_presized(command), hand_bytes);
    assert!(hand_view(&hand_bytes).is_some());
    let decoded = rkyv::from_bytes::<RkyvCommand, RkyvError>(&rkyv_bytes).expect("valid archive");
    assert_eq!(decoded, mirror);

    let mut rows = [
        Row::new(name, "encode", "hand", hand_bytes.len()),
        Row::new(name, "encode", "hand_presized", hand_bytes.len()),
        Row::new(name, "encode", "rkyv", rkyv_bytes.len()),
        Row::new(name, "decode", "hand", hand_bytes.len()),
        Row::new(name, "decode", "rkyv", rkyv_bytes.len()),
        Row::new(name, "view", "hand", hand_bytes.len()),
        Row::new(name, "view", "rkyv", rkyv_bytes.len()),
    ];
    let [
        encode_hand,
        encode_presized,
        encode_rkyv,
        decode_hand,
        decode_rkyv,
        view_hand,
        view_rkyv,
    ] = &mut rows;
    let mut group = command_group(criterion, name);
    group.bench_function("encode/hand", |b| {
        b.iter_custom(|iters| encode_hand.batch(iters, || black_box(command).encode()));
    });
    group.bench_function("encode/hand_presized", |b| {
        b.iter_custom(|iters| {
            encode_presized.batch(iters, || hand_encode_presized(black_box(command)))
        });
    });
    group.bench_function("encode/rkyv", |b| {
        b.iter_custom(|iters| {
            encode_rkyv.batch(iters, || {
                rkyv::to_bytes::<RkyvError>(black_box(&mirror)).expect("serialize")
            })
        });
    });
    group.bench_function("decode/hand", |b| {
        b.iter_custom(|iters| {
            decode_hand.batch(iters, || KvCommand::decode(black_box(&hand_bytes)))
        });
    });
    group.bench_function("decode/rkyv", |b| {
        b.iter_custom(|iters| {
            decode_rkyv.batch(iters, || {
                rkyv::from_bytes::<RkyvCommand, RkyvError>(black_box(&rkyv_bytes))
            })
        });
    });
    group.bench_function("view/hand", |b| {
        b.iter_custom(|iters| view_hand.batch(iters, || hand_view(black_box(&hand_bytes))));
    });
    group.bench_function("view/rkyv", |b| {
        b.iter_custom(|iters| {
            view_rkyv.batch(iters, || {
                rkyv::access::<ArchivedRkyvCommand, RkyvError>(black_box(&rkyv_bytes)).is_ok()
            })
        });
    });
    group.finish();
    for row in rows {
        report.push(row);
    }
}

fn snapshot_state() -> KvState {
    let mut state = KvState::new();
    for i in 0..SNAPSHOT_KEYS {
        state.insert(key(i), body(VALUE_LEN, i as u64));
    }
    state
}

fn snapshot_group(criterion: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = criterion.benchmark_group("snapshot/100k");
    // Whole-snapshot operations take milliseconds: flat sampling bounds the run time.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Elements(SNAPSHOT_KEYS as u64));
    group
}

fn bench_snapshot(criterion: &mut Criterion, report: &mut Report) {
    const NAME: &str = "snapshot/100k";
    let state = snapshot_state();
    let hand_bytes = KvStore.snapshot(&state);
    let rkyv_bytes = rkyv_snapshot(&state);
    assert_eq!(KvStore.restore(&hand_bytes).as_ref(), Ok(&state));
    assert_eq!(rkyv_restore(&rkyv_bytes).ok().as_ref(), Some(&state));
    assert_eq!(hand_check(&hand_bytes), Some(SNAPSHOT_KEYS as u64));
    assert_eq!(hand_snapshot_presized(&state), hand_bytes);
    // Encoding is deterministic: replicas must produce identical snapshots of identical states.
    assert_eq!(rkyv_snapshot(&state).as_slice(), rkyv_bytes.as_slice());

    let mut rows = [
        Row::new(NAME, "encode", "hand", hand_bytes.len()),
        Row::new(NAME, "encode", "hand_presized", hand_bytes.len()),
        Row::new(NAME, "encode", "rkyv", rkyv_bytes.len()),
        Row::new(NAME, "restore", "hand", hand_bytes.len()),
        Row::new(NAME, "restore", "rkyv", rkyv_bytes.len()),
        Row::new(NAME, "check", "hand", hand_bytes.len()),
        Row::new(NAME, "check", "rkyv", rkyv_bytes.len()),
    ];
    let [
        encode_hand,
        encode_presized,
        encode_rkyv,
        restore_hand,
        restore_rkyv,
        check_hand,
        check_rkyv,
    ] = &mut rows;
    let mut group = snapshot_group(criterion);
    group.bench_function("encode/hand", |b| {
        b.iter_custom(|iters| encode_hand.each(iters, || KvStore.snapshot(black_box(&state))));
    });
    group.bench_function("encode/hand_presized", |b| {
        b.iter_custom(|iters| {
            encode_presized.each(iters, || hand_snapshot_presized(black_box(&state)))
        });
    });
    group.bench_function("encode/rkyv", |b| {
        b.iter_custom(|iters| encode_rkyv.each(iters, || rkyv_snapshot(black_box(&state))));
    });
    group.bench_function("restore/hand", |b| {
        b.iter_custom(|iters| restore_hand.each(iters, || KvStore.restore(black_box(&hand_bytes))));
    });
    group.bench_function("restore/rkyv", |b| {
        b.iter_custom(|iters| restore_rkyv.each(iters, || rkyv_restore(black_box(&rkyv_bytes))));
    });
    group.bench_function("check/hand", |b| {
        b.iter_custom(|iters| check_hand.each(iters, || hand_check(black_box(&hand_bytes))));
    });
    group.bench_function("check/rkyv", |b| {
        b.iter_custom(|iters| {
            check_rkyv.each(iters, || {
                rkyv::access::<ArchivedSnapshot, RkyvError>(black_box(&rkyv_bytes)).is_ok()
            })
        });
    });
    group.finish();
    for row in rows {
        report.push(row);
    }
    bench_snapshot_get(criterion, report, &hand_bytes, &rkyv_bytes);
}

/// One key out of an encoded snapshot, without restoring it.
fn bench_snapshot_get(
    criterion: &mut Criterion,
    report: &mut Report,
    hand_bytes: &[u8],
    rkyv_bytes: &[u8],
) {
    const NAME: &str = "snapshot/100k";
    // Keys spread evenly over the state, visited in a scrambled order.
    let keys: Vec<Vec<u8>> = (0..LOOKUP_KEYS)
        .map(|i| key((i * 7919) % LOOKUP_KEYS * (SNAPSHOT_KEYS / LOOKUP_KEYS)))
        .collect();
    let validated =
        rkyv::access::<ArchivedSnapshot, RkyvError>(rkyv_bytes).expect("a valid snapshot");
    for key in &keys {
        let hand = hand_get(hand_bytes, key).expect("the key is in the snapshot");
        let archived = validated.get(key.as_slice()).expect("the key is archived");
        assert_eq!(hand, archived.as_slice());
    }
    let mut rows = [
        Row::new(NAME, "get", "hand", hand_bytes.len()),
        Row::new(NAME, "get", "rkyv", rkyv_bytes.len()),
        Row::new(NAME, "get_validated_once", "rkyv", rkyv_bytes.len()),
    ];
    let [get_hand, get_rkyv, get_once] = &mut rows;
    let mut next = 0usize;
    let mut next_key = || {
        next = (next + 1) % LOOKUP_KEYS;
        keys[next].as_slice()
    };
    let mut group = snapshot_group(criterion);
    group.throughput(Throughput::Elements(1));
    group.bench_function("get/hand", |b| {
        b.iter_custom(|iters| {
            get_hand.each(iters, || {
                hand_get(black_box(hand_bytes), next_key()).is_some()
            })
        });
    });
    group.bench_function("get/rkyv", |b| {
        b.iter_custom(|iters| {
            get_rkyv.each(iters, || {
                rkyv::access::<ArchivedSnapshot, RkyvError>(black_box(rkyv_bytes))
                    .ok()
                    .and_then(|archived| archived.get(next_key()))
                    .is_some()
            })
        });
    });
    // Nanoseconds per lookup: timed in batches, like the command cases.
    group.sampling_mode(SamplingMode::Auto);
    group.bench_function("get_validated_once/rkyv", |b| {
        b.iter_custom(|iters| {
            get_once.batch(iters, || black_box(validated).get(next_key()).is_some())
        });
    });
    group.finish();
    for row in rows {
        report.push(row);
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut report = Report::default();
    for (name, command) in commands() {
        bench_command(&mut criterion, &mut report, name, &command);
    }
    bench_snapshot(&mut criterion, &mut report);
    criterion.final_summary();
    eprint!("{}", report.render());
}
