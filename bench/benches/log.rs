//! Log append throughput against the raw durable-write floor, in one binary so that every
//! ratio compares figures measured in the same run on the same machine state.
//!
//! - `floor/pwrite_fdatasync/N`: N x 4 KiB in one `pwrite` on an `O_DIRECT` file, then
//!   `fdatasync`. N = 1 is the latency floor; N = 256 (1 MiB) is the raw sequential durable
//!   bandwidth the 90% target refers to.
//! - `disk_batch/{io_uring,sync}/N`: N 4 KiB writes and one barrier through the disk, one
//!   batch at a time, without the journal.
//! - `pattern/io_uring/N`: the journal's I/O shape with one barrier per batch and three batches
//!   in flight, without the journal's CPU work.
//! - `log/{io_uring,sync,memory}/{4KiB,128B}/N`: N entries appended, `flush`, three batches in
//!   flight; on memory this is the journal's CPU cost alone.
//!
//! `cargo bench -p chronon-bench --bench log` runs them under criterion and then prints the
//! ratio table to stderr. `-- --summary [FILTER...] [--depth N]` runs the matching cases for a
//! fixed time each without criterion: quicker, and the way to run under `perf`.

use std::time::{Duration, Instant};

use chronon_bench::{
    APPEND_RING, AppendDriver, BenchDisk, Counting, DirectFile, DiskBatch, DiskCounts,
    ENTRIES_PER_BATCH, EntryShape, Latencies, PIPELINE_DEPTH, Pair, RAW_FILE_BYTES, RealDisk,
    Report, RoundPattern, Row, RowKind, TempFile, fresh_journal,
};
use chronon_disk::{IoUringDisk, SyncDisk};
use chronon_engine::constants::SECTOR_SIZE;
use chronon_engine::disk::MemoryDisk;
use chronon_engine::log::{Journal, Layout};
use criterion::{Criterion, Throughput};

/// Per case in `--summary` mode: run this long untimed first, then this long timed.
const SUMMARY_WARM_UP: Duration = Duration::from_millis(500);
const SUMMARY_MEASURE: Duration = Duration::from_secs(2);

/// Alternations of the paired measurement, and how long each side of a pair runs. The host's
/// durable bandwidth drifts within minutes, so the target is judged on back-to-back pairs
/// rather than on figures measured minutes apart.
const PAIRS: usize = 6;
const PAIR_SIDE: Duration = Duration::from_millis(500);

/// Batches per timed step in `--summary` mode, at most: small enough to stop close to the
/// measuring time, large enough that the clock is read rarely.
const SUMMARY_CHUNK_MAX: u64 = 64;

/// One measured configuration. Set-up (creating and formatting a data file) happens on the
/// first `step`, outside the timed part, so criterion's filter skips it for unselected cases.
trait Case {
    fn row(&self) -> &Row;
    fn throughput(&self) -> Throughput;
    /// Runs `iters` batches and returns the time they took.
    fn step(&mut self, iters: u64) -> Duration;
    /// Forgets what was measured so far (after a warm-up).
    fn reset(&mut self);
    /// Waits for work still in flight, untimed, so the next case starts on an idle disk.
    fn quiesce(&mut self) {}
    /// Finishes in-flight work and returns the totals, if anything ran.
    fn finish(self: Box<Self>) -> Option<Row>;
}

fn empty_row(name: String, kind: RowKind, disk: &'static str, per_batch: usize) -> Row {
    Row {
        name,
        kind,
        disk,
        per_batch,
        elements: 0,
        bytes: 0,
        batches: 0,
        elapsed: Duration::ZERO,
        counts: None,
        latencies: Latencies::new(),
    }
}

fn clear(row: &mut Row) {
    row.elements = 0;
    row.bytes = 0;
    row.batches = 0;
    row.elapsed = Duration::ZERO;
    row.latencies = Latencies::new();
}

fn ran(row: Row) -> Option<Row> {
    (!row.elapsed.is_zero()).then_some(row)
}

/// Adds `iters` batches of `row.per_batch` elements of `element_bytes` each to `row`.
fn account(row: &mut Row, iters: u64, element_bytes: u64, elapsed: Duration) {
    let per_batch = row.per_batch as u64;
    row.elements += iters * per_batch;
    row.bytes += iters * per_batch * element_bytes;
    row.batches += iters;
    row.elapsed += elapsed;
}

/// Times `iters` calls of `once`, recording each call's latency.
fn timed(iters: u64, latencies: &mut Latencies, mut once: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let call_start = Instant::now();
        once();
        latencies.record(call_start.elapsed());
    }
    start.elapsed()
}

fn sector_throughput(sectors: usize) -> Throughput {
    Throughput::Bytes((sectors * SECTOR_SIZE) as u64)
}

/// `pwrite` + `fdatasync` on an `O_DIRECT` file.
struct FloorCase {
    file: Option<(TempFile, DirectFile)>,
    row: Row,
}

impl FloorCase {
    fn new(sectors: usize) -> FloorCase {
        let name = format!("floor/pwrite_fdatasync/{sectors}");
        FloorCase {
            file: None,
            row: empty_row(name, RowKind::Floor, "pwrite", sectors),
        }
    }
}

impl Case for FloorCase {
    fn row(&self) -> &Row {
        &self.row
    }

    fn throughput(&self) -> Throughput {
        sector_throughput(self.row.per_batch)
    }

    fn step(&mut self, iters: u64) -> Duration {
        let sectors = self.row.per_batch;
        let (_, direct) = self.file.get_or_insert_with(|| {
            let temp = TempFile::create("floor", RAW_FILE_BYTES);
            let direct = DirectFile::open(temp.path(), sectors).expect("probed O_DIRECT first");
            (temp, direct)
        });
        let elapsed = timed(iters, &mut self.row.latencies, || {
            direct.write_durable(sectors);
        });
        account(&mut self.row, iters, SECTOR_SIZE as u64, elapsed);
        elapsed
    }

    fn reset(&mut self) {
        clear(&mut self.row);
    }

    fn finish(self: Box<Self>) -> Option<Row> {
        ran(self.row)
    }
}

/// 4 KiB writes and one barrier straight through a disk, one batch at a time.
struct DiskBatchCase<D: RealDisk> {
    state: Option<(TempFile, DiskBatch<D>)>,
    row: Row,
}

impl<D: RealDisk> DiskBatchCase<D> {
    fn new(sectors: usize) -> DiskBatchCase<D> {
        let name = format!("disk_batch/{}/{sectors}", <D as RealDisk>::NAME);
        let row = empty_row(name, RowKind::DiskBatch, <D as RealDisk>::NAME, sectors);
        DiskBatchCase { state: None, row }
    }
}

impl<D: RealDisk> Case for DiskBatchCase<D> {
    fn row(&self) -> &Row {
        &self.row
    }

    fn throughput(&self) -> Throughput {
        sector_throughput(self.row.per_batch)
    }

    fn step(&mut self, iters: u64) -> Duration {
        let sectors = self.row.per_batch;
        let (_, batch) = self.state.get_or_insert_with(|| {
            let temp = TempFile::create("disk_batch", RAW_FILE_BYTES);
            let disk = D::open(temp.path()).expect("probed this disk kind first");
            (temp, DiskBatch::new(disk, sectors))
        });
        let elapsed = timed(iters, &mut self.row.latencies, || {
            batch.write_durable(sectors);
        });
        account(&mut self.row, iters, SECTOR_SIZE as u64, elapsed);
        elapsed
    }

    fn reset(&mut self) {
        clear(&mut self.row);
    }

    fn finish(self: Box<Self>) -> Option<Row> {
        ran(self.row)
    }
}

/// The journal's I/O shape, one barrier per batch, pipelined, through a disk.
struct PatternCase<D: RealDisk> {
    depth: usize,
    state: Option<(TempFile, RoundPattern<D>)>,
    row: Row,
}

impl<D: RealDisk> PatternCase<D> {
    fn new(entries: usize, depth: usize) -> PatternCase<D> {
        let name = format!("pattern/{}/{entries}", <D as RealDisk>::NAME);
        let row = empty_row(name, RowKind::Pattern, <D as RealDisk>::NAME, entries);
        PatternCase {
            depth,
            state: None,
            row,
        }
    }
}

impl<D: RealDisk> Case for PatternCase<D> {
    fn row(&self) -> &Row {
        &self.row
    }

    fn throughput(&self) -> Throughput {
        sector_throughput(self.row.per_batch)
    }

    fn step(&mut self, iters: u64) -> Duration {
        let (entries, depth) = (self.row.per_batch, self.depth);
        let (_, pattern) = self.state.get_or_insert_with(|| {
            let temp = TempFile::create("pattern", Layout::new(APPEND_RING).total_size());
            let disk = D::open(temp.path()).expect("probed this disk kind first");
            (temp, RoundPattern::new(disk, APPEND_RING, entries, depth))
        });
        // Latency here is per submission: with rounds in flight it is the time to get room
        // for the next round, not a round's time to durability.
        let elapsed = timed(iters, &mut self.row.latencies, || {
            pattern.write_round(entries);
        });
        account(&mut self.row, iters, SECTOR_SIZE as u64, elapsed);
        elapsed
    }

    fn reset(&mut self) {
        clear(&mut self.row);
    }

    fn quiesce(&mut self) {
        if let Some((_, pattern)) = &mut self.state {
            pattern.drain();
        }
    }

    fn finish(mut self: Box<Self>) -> Option<Row> {
        self.quiesce();
        ran(self.row)
    }
}

/// The journal appending pipelined batches.
struct LogCase<D: BenchDisk> {
    shape: EntryShape,
    depth: usize,
    state: Option<(Option<TempFile>, Journal<Counting<D>>, AppendDriver)>,
    counts_at_reset: DiskCounts,
    row: Row,
}

impl<D: BenchDisk> LogCase<D> {
    fn new(shape: EntryShape, per_batch: usize, depth: usize) -> LogCase<D> {
        let name = format!("log/{}/{}/{per_batch}", <D as BenchDisk>::NAME, shape.name);
        let row = empty_row(name, RowKind::Log, <D as BenchDisk>::NAME, per_batch);
        LogCase {
            shape,
            depth,
            state: None,
            counts_at_reset: DiskCounts::default(),
            row,
        }
    }
}

impl<D: BenchDisk> Case for LogCase<D> {
    fn row(&self) -> &Row {
        &self.row
    }

    fn throughput(&self) -> Throughput {
        // 4 KiB entries compare with the raw floors in bytes; 128 B entries occupy a sector
        // each as well, so for them the meaningful rate is entries per second.
        let per_batch = self.row.per_batch as u64;
        if self.shape == EntryShape::SECTOR {
            Throughput::Bytes(per_batch * self.shape.disk_bytes())
        } else {
            Throughput::Elements(per_batch)
        }
    }

    fn step(&mut self, iters: u64) -> Duration {
        if self.state.is_none() {
            let (temp, mut journal) =
                fresh_journal::<D>(&self.row.name, APPEND_RING).expect("probed this disk first");
            self.counts_at_reset = journal.disk_mut().counts();
            let driver = AppendDriver::with_depth(self.shape, self.row.per_batch, self.depth);
            self.state = Some((temp, journal, driver));
        }
        let (_, journal, driver) = self.state.as_mut().expect("invariant: set up above");
        let elapsed = driver
            .run(journal, iters, &mut self.row.latencies)
            .unwrap_or_else(|error| panic!("{}: {error}", self.row.name));
        account(&mut self.row, iters, self.shape.disk_bytes(), elapsed);
        elapsed
    }

    fn reset(&mut self) {
        clear(&mut self.row);
        if let Some((_, journal, _)) = &mut self.state {
            self.counts_at_reset = journal.disk_mut().counts();
        }
    }

    fn quiesce(&mut self) {
        if let Some((_, journal, driver)) = &mut self.state {
            driver
                .drain(journal, &mut self.row.latencies)
                .unwrap_or_else(|error| panic!("{}: {error}", self.row.name));
        }
    }

    fn finish(mut self: Box<Self>) -> Option<Row> {
        let (_, journal, _) = self.state.as_mut()?;
        // Counted before the drain: the drain's I/O finishes batches already accounted for.
        self.row.counts = Some(journal.disk_mut().counts().since(&self.counts_at_reset));
        self.quiesce();
        ran(self.row)
    }
}

/// True when `D` opens a data file here (`io_uring` may be disabled or not built).
fn disk_works<D: RealDisk>() -> bool {
    let temp = TempFile::create("probe", 1 << 20);
    match D::open(temp.path()) {
        Ok(_) => true,
        Err(error) => {
            eprintln!("skipping every {} bench: {error}", <D as RealDisk>::NAME);
            false
        }
    }
}

fn direct_io_works() -> bool {
    let temp = TempFile::create("probe", 1 << 20);
    DirectFile::open(temp.path(), 1).is_some()
}

/// Every case, in the order they run: floors first, so the machine state they see is the one
/// the logs see next.
fn cases(depth: usize) -> Vec<Box<dyn Case>> {
    let mut cases: Vec<Box<dyn Case>> = Vec::new();
    if direct_io_works() {
        cases.extend(ENTRIES_PER_BATCH.map(|n| Box::new(FloorCase::new(n)) as Box<dyn Case>));
    }
    let uring = disk_works::<IoUringDisk>();
    if uring {
        cases
            .extend(ENTRIES_PER_BATCH.map(|n| Box::new(DiskBatchCase::<IoUringDisk>::new(n)) as _));
        cases.extend(
            ENTRIES_PER_BATCH.map(|n| Box::new(PatternCase::<IoUringDisk>::new(n, depth)) as _),
        );
    }
    cases.extend(ENTRIES_PER_BATCH.map(|n| Box::new(DiskBatchCase::<SyncDisk>::new(n)) as _));
    for shape in [EntryShape::SECTOR, EntryShape::SMALL] {
        if uring {
            cases.extend(ENTRIES_PER_BATCH.map(|n| log_case::<IoUringDisk>(shape, n, depth)));
        }
        cases.extend(ENTRIES_PER_BATCH.map(|n| log_case::<SyncDisk>(shape, n, depth)));
        cases.extend(ENTRIES_PER_BATCH.map(|n| log_case::<MemoryDisk>(shape, n, depth)));
    }
    cases
}

fn log_case<D: BenchDisk + 'static>(shape: EntryShape, n: usize, depth: usize) -> Box<dyn Case> {
    Box::new(LogCase::<D>::new(shape, n, depth))
}

fn run_criterion(report: &mut Report) {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for mut case in cases(PIPELINE_DEPTH) {
        let name = case.row().name.clone();
        let (group_name, id) = name.split_once('/').expect("invariant: names are group/id");
        let mut group = criterion.benchmark_group(group_name);
        group.throughput(case.throughput());
        group.bench_function(id, |b| b.iter_custom(|iters| case.step(iters)));
        group.finish();
        if let Some(row) = case.finish() {
            report.push(row);
        }
    }
    criterion.final_summary();
    // Criterion's test mode (`cargo test --benches`) runs without `--bench`; skip the pairs
    // there, as it only checks that every case runs.
    if std::env::args().any(|arg| arg == "--bench") {
        run_pairs(report, PIPELINE_DEPTH);
    }
}

/// The cases measured in turn with the raw sequential floor: the target case and the three
/// bounds that explain it. Their order in each alternation is fixed; each is compared with the
/// floor measured just before it.
fn paired_cases(depth: usize) -> Vec<Box<dyn Case>> {
    vec![
        Box::new(LogCase::<IoUringDisk>::new(EntryShape::SECTOR, 256, depth)),
        Box::new(DiskBatchCase::<IoUringDisk>::new(256)),
        Box::new(PatternCase::<IoUringDisk>::new(256, depth)),
        log_case::<MemoryDisk>(EntryShape::SECTOR, 256, depth),
    ]
}

/// Alternates the raw sequential floor with each of [`paired_cases`], [`PAIRS`] times.
fn run_pairs(report: &mut Report, depth: usize) {
    if !direct_io_works() || !disk_works::<IoUringDisk>() {
        return;
    }
    let mut floor = FloorCase::new(256);
    let mut cases = paired_cases(depth);
    measure_for(&mut floor, PAIR_SIDE);
    for case in &mut cases {
        measure_for(case.as_mut(), PAIR_SIDE);
        case.quiesce();
    }
    for _ in 0..PAIRS {
        for case in &mut cases {
            floor.reset();
            measure_for(&mut floor, PAIR_SIDE);
            case.reset();
            measure_for(case.as_mut(), PAIR_SIDE);
            case.quiesce();
            report.push_pair(Pair {
                name: case.row().name.clone(),
                floor_mib_per_second: floor.row().mib_per_second(),
                case_mib_per_second: case.row().mib_per_second(),
            });
        }
    }
    for case in cases {
        case.finish();
    }
}

/// Runs every case whose name contains one of `filters` (all when there is none).
fn run_summary(report: &mut Report, filters: &[String], depth: usize) {
    let wanted = |case: &dyn Case| {
        filters.is_empty() || filters.iter().any(|f| case.row().name.contains(f.as_str()))
    };
    for mut case in cases(depth)
        .into_iter()
        .filter(|case| wanted(case.as_ref()))
    {
        measure_for(case.as_mut(), SUMMARY_WARM_UP);
        case.reset();
        measure_for(case.as_mut(), SUMMARY_MEASURE);
        eprintln!("measured {}", case.row().name);
        if let Some(row) = case.finish() {
            report.push(row);
        }
    }
    if filters.is_empty() || filters.iter().any(|f| "paired".contains(f.as_str())) {
        run_pairs(report, depth);
    }
}

/// Steps a case in growing chunks until `how_long` has been measured.
fn measure_for(case: &mut dyn Case, how_long: Duration) {
    let until = case.row().elapsed + how_long;
    let mut chunk = 1;
    while case.row().elapsed < until {
        case.step(chunk);
        chunk = (chunk * 2).min(SUMMARY_CHUNK_MAX);
    }
}

/// `--summary [FILTER...] [--depth N]`: the criterion-free mode. `None` when not asked for.
fn summary_args() -> Option<(Vec<String>, usize)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|arg| arg == "--summary") {
        return None;
    }
    let mut filters = Vec::new();
    let mut depth = PIPELINE_DEPTH;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--depth" {
            let value = args.next().and_then(|v| v.parse().ok()).filter(|&d| d > 0);
            depth = value.expect("--depth takes a positive number of batches");
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    Some((filters, depth))
}

fn main() {
    let mut report = Report::default();
    if let Some((filters, depth)) = summary_args() {
        if depth != PIPELINE_DEPTH {
            eprintln!("diagnosis run: {depth} batches in flight instead of {PIPELINE_DEPTH}");
        }
        run_summary(&mut report, &filters, depth);
    } else {
        run_criterion(&mut report);
    }
    eprint!("{}", report.render_writes());
}
