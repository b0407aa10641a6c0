//! Recovery scan throughput: `Journal::open` over a full ring (1024 slots x 64 KiB, every slot
//! holding an entry, sizes mixed from 256 B to a whole 64 KiB slot), which is what a replica
//! does on every restart before it can serve.
//!
//! - `recovery/memory`: the scan and decision table alone, on a `MemoryDisk`.
//! - `recovery/io_uring`: `O_DIRECT` reads, up to 64 in flight.
//! - `recovery/sync_cold`: `SyncDisk`'s buffered reads, one at a time, with the file evicted
//!   from the page cache before each scan (as after a reboot).
//! - `recovery/sync_warm`: the same with the file in the page cache (as after a process crash).
//!
//! Each reports slots per second to criterion; the table printed to stderr at the end adds the
//! bytes actually read per scan and per-scan latency percentiles.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chronon_bench::{
    Counting, DiskCounts, Latencies, RECOVERY_RING, RealDisk, Report, Row, RowKind, TempFile,
    bench_meta, body, format_params,
};
use chronon_disk::{IoUringDisk, SyncDisk};
use chronon_engine::Op;
use chronon_engine::constants::HEADER_SIZE;
use chronon_engine::disk::{MemoryDisk, VirtualDisk};
use chronon_engine::log::{Journal, Layout};
use criterion::{Criterion, SamplingMode, Throughput};

/// Body sizes appended in turn: on disk 4, 4, 8, 16, 32, 64 (a full slot), 4 and 12 KiB.
const BODY_LENS: [usize; 8] = [
    128,
    3968,
    8064,
    16_256,
    32_640,
    65_536 - HEADER_SIZE,
    1000,
    12_000,
];

/// Ops appended: more than the ring, so it has wrapped and every slot holds an entry.
const FILL_OPS: u64 = RECOVERY_RING.slot_count as u64 + 100;

/// Entries appended between syncs while filling; below the journal's in-flight limit of half
/// the ring.
const FILL_SYNC_EVERY: u64 = 256;

/// A full ring, built in memory once and copied into each data file.
struct FullRing {
    disk: MemoryDisk,
    head: Op,
}

fn fill_ring() -> FullRing {
    let layout = Layout::new(RECOVERY_RING);
    let mut disk = MemoryDisk::new(layout.total_size());
    Journal::format(&mut disk, &format_params(RECOVERY_RING)).expect("format the memory ring");
    let (mut journal, _) = Journal::open(disk).expect("open the memory ring");
    let bodies: Vec<Vec<u8>> = BODY_LENS
        .iter()
        .enumerate()
        .map(|(i, &len)| body(len, i as u64))
        .collect();
    for op in 1..=FILL_OPS {
        journal
            .append(&bench_meta(), &bodies[op as usize % bodies.len()])
            .expect("append");
        if op % FILL_SYNC_EVERY == 0 {
            journal.sync().expect("sync the memory ring");
        }
    }
    journal.sync().expect("sync the memory ring");
    let head = journal.head().op;
    FullRing {
        disk: journal.into_disk(),
        head,
    }
}

/// Writes the ring's image into a new data file and makes it durable.
fn write_image(ring: &FullRing, label: &str) -> TempFile {
    let temp = TempFile::create(label, ring.disk.size());
    let file = OpenOptions::new()
        .write(true)
        .open(temp.path())
        .expect("open the recovery file");
    file.write_all_at(ring.disk.bytes(), 0)
        .expect("write the recovery image");
    file.sync_all().expect("fsync the recovery image");
    temp
}

/// Drops `path` from the page cache (`posix_fadvise(DONTNEED)` through GNU dd, which keeps
/// this crate free of `unsafe`). Only clean pages are dropped; the image was fsynced.
fn evict_page_cache(path: &Path) {
    let status = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .expect("run dd to evict the page cache");
    assert!(
        status.success(),
        "dd iflag=nocache failed on {}",
        path.display()
    );
}

/// Opens the journal on `disk`, checks it recovered the whole ring, and returns the time the
/// open took and the disk.
fn timed_open<D: VirtualDisk>(disk: Counting<D>, head: Op) -> (Duration, Counting<D>) {
    let start = Instant::now();
    let (journal, report) = Journal::open(disk).expect("recover the full ring");
    let elapsed = start.elapsed();
    assert!(report.is_clean(), "the full ring must recover clean");
    assert_eq!(journal.head().op, head);
    (elapsed, journal.into_disk())
}

fn scan_row(name: &str, disk: &'static str) -> Row {
    Row {
        name: format!("recovery/{name}"),
        kind: RowKind::Scan,
        disk,
        per_batch: RECOVERY_RING.slot_count as usize,
        elements: 0,
        bytes: 0,
        batches: 0,
        elapsed: Duration::ZERO,
        counts: None,
        latencies: Latencies::new(),
    }
}

fn account(row: &mut Row, elapsed: Duration, counts: DiskCounts) {
    row.elements += row.per_batch as u64;
    row.bytes += counts.read_bytes;
    row.batches += 1;
    row.elapsed += elapsed;
    row.latencies.record(elapsed);
    *row.counts.get_or_insert_with(DiskCounts::default) += counts;
}

/// One scan of a real file per iteration; opening the disk (and evicting the cache) is not
/// timed.
fn scan_file<D: RealDisk>(
    row: &mut Row,
    path: &Path,
    head: Op,
    cold: bool,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if cold {
            evict_page_cache(path);
        }
        let disk = Counting::new(D::open(path).expect("probed this disk first"));
        let (elapsed, disk) = timed_open(disk, head);
        account(row, elapsed, disk.counts());
        total += elapsed;
    }
    total
}

fn bench_file<D: RealDisk>(
    criterion: &mut Criterion,
    report: &mut Report,
    ring: &FullRing,
    name: &str,
    cold: bool,
) {
    let temp = write_image(ring, name);
    if let Err(error) = D::open(temp.path()) {
        eprintln!("skipping recovery/{name}: {error}");
        return;
    }
    let mut row = scan_row(name, D::NAME);
    let mut group = group(criterion);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| scan_file::<D>(&mut row, temp.path(), ring.head, cold, iters));
    });
    group.finish();
    if !row.elapsed.is_zero() {
        report.push(row);
    }
}

fn bench_memory(criterion: &mut Criterion, report: &mut Report, ring: FullRing) {
    let head = ring.head;
    let mut disk = Some(Counting::new(ring.disk));
    let mut row = scan_row("memory", "memory");
    let mut group = group(criterion);
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = disk
                    .as_ref()
                    .expect("invariant: the disk is put back")
                    .counts();
                let (elapsed, after) = timed_open(disk.take().expect("invariant: put back"), head);
                account(&mut row, elapsed, after.counts().since(&before));
                disk = Some(after);
                total += elapsed;
            }
            total
        });
    });
    group.finish();
    if !row.elapsed.is_zero() {
        report.push(row);
    }
}

fn group(
    criterion: &mut Criterion,
) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group("recovery");
    group.throughput(Throughput::Elements(u64::from(RECOVERY_RING.slot_count)));
    // A scan takes milliseconds: flat sampling keeps the iteration count, and so the run
    // time, bounded.
    group.sampling_mode(SamplingMode::Flat);
    group
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut report = Report::default();
    let ring = fill_ring();
    bench_file::<IoUringDisk>(&mut criterion, &mut report, &ring, "io_uring", false);
    bench_file::<SyncDisk>(&mut criterion, &mut report, &ring, "sync_cold", true);
    bench_file::<SyncDisk>(&mut criterion, &mut report, &ring, "sync_warm", false);
    bench_memory(&mut criterion, &mut report, ring);
    criterion.final_summary();
    eprint!("{}", report.render_scans());
}
