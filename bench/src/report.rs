//! The end-of-run table: every log result as a ratio to the raw floors measured in the same
//! run, with per-batch latency percentiles and what each batch cost the disk.
//!
//! Criterion reports each bench on its own; comparisons across benches, which are what tell
//! whether the journal wastes the disk, are made here. Printed to stderr so that criterion's own
//! stdout stays machine-readable.

use std::fmt::Write as _;
use std::time::Duration;

use crate::{DiskCounts, Latencies, f64_of};

/// The share of the raw sequential durable bandwidth the `io_uring` log should reach with
/// 256 x 4 KiB entries per barrier.
pub const TARGET_PERCENT: f64 = 90.0;

/// Bytes in a MiB, for rates.
const MIB: f64 = 1024.0 * 1024.0;

/// What a row measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// `pwrite` + `fdatasync` on an `O_DIRECT` file: the floor.
    Floor,
    /// 4 KiB writes and one barrier straight through a disk, no journal.
    DiskBatch,
    /// The journal's I/O shape (entries, header copies, one barrier per batch), pipelined,
    /// with none of its CPU work.
    Pattern,
    /// The journal, appending pipelined batches.
    Log,
    /// `Journal::open` over a full ring: elements are slots, bytes are bytes read.
    Scan,
}

/// One bench's totals over everything it ran (for criterion runs, warm-up included).
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub kind: RowKind,
    /// The disk under test: `pwrite`, `sync`, `io_uring` or `memory`.
    pub disk: &'static str,
    /// Entries (or sectors, or slots) per batch, barrier or scan.
    pub per_batch: usize,
    /// Entries (or sectors, or slots) in total.
    pub elements: u64,
    /// On-disk bytes those elements occupy (written for writes, read for scans).
    pub bytes: u64,
    pub batches: u64,
    pub elapsed: Duration,
    /// What the disk was asked to do, when it was wrapped in [`crate::Counting`].
    pub counts: Option<DiskCounts>,
    pub latencies: Latencies,
}

impl Row {
    #[must_use]
    pub fn elements_per_second(&self) -> f64 {
        f64_of(self.elements) / self.elapsed.as_secs_f64()
    }

    #[must_use]
    pub fn mib_per_second(&self) -> f64 {
        f64_of(self.bytes) / MIB / self.elapsed.as_secs_f64()
    }
}

/// One alternation of the paired measurement: the raw sequential floor and one case, measured
/// back to back, so that both see the same state of the host's disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// The case compared with the floor.
    pub name: String,
    pub floor_mib_per_second: f64,
    pub case_mib_per_second: f64,
}

impl Pair {
    #[must_use]
    pub fn percent(&self) -> f64 {
        100.0 * self.case_mib_per_second / self.floor_mib_per_second
    }
}

/// The case the 90% target is about.
pub const TARGET_CASE: &str = "log/io_uring/4KiB/256";

/// Rows collected by one bench binary.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    pairs: Vec<Pair>,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        assert!(!row.elapsed.is_zero(), "row {} measured no time", row.name);
        self.rows.push(row);
    }

    #[must_use]
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn push_pair(&mut self, pair: Pair) {
        assert!(pair.floor_mib_per_second > 0.0 && pair.case_mib_per_second > 0.0);
        self.pairs.push(pair);
    }

    fn find(&self, kind: RowKind, disk: &str, per_batch: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.kind == kind && r.disk == disk && r.per_batch == per_batch)
    }

    /// The write table with ratios and the 90% target line.
    #[must_use]
    pub fn render_writes(&self) -> String {
        let mut out = String::new();
        let floor = self.find(RowKind::Floor, "pwrite", 1);
        let sequential = self.find(RowKind::Floor, "pwrite", 256);
        let _ = writeln!(
            out,
            "\n{:<26} {:>10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
            "bench",
            "elem/s",
            "MiB/s",
            "x_floor",
            "vs_raw",
            "vs_seq",
            "barr/bat",
            "KiB/bat",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us"
        );
        for row in self.rows.iter().filter(|r| r.kind != RowKind::Scan) {
            // A memory disk does no I/O: ratios to disk floors would mean nothing.
            let on_disk = row.disk != "memory";
            let floor = floor.filter(|_| on_disk);
            let sequential = sequential.filter(|_| on_disk);
            let raw = self
                .find(RowKind::Floor, "pwrite", row.per_batch)
                .filter(|_| on_disk);
            let _ = writeln!(
                out,
                "{:<26} {:>10.0} {:>9.1} {:>8} {:>8} {:>8} {:>9} {:>9} {}",
                row.name,
                row.elements_per_second(),
                row.mib_per_second(),
                ratio(row, floor, Row::elements_per_second, 2, ""),
                ratio(row, raw, Row::mib_per_second, 0, "%"),
                ratio(row, sequential, Row::mib_per_second, 0, "%"),
                per_batch(row, |c| f64_of(c.barriers)),
                per_batch(row, |c| f64_of(c.write_bytes) / 1024.0),
                percentiles(&row.latencies),
            );
        }
        out.push_str(
            "x_floor: elements/s over one 4 KiB pwrite+fdatasync per second. vs_raw: MiB/s over \
             raw pwrite+fdatasync of the same batch size. vs_seq: MiB/s over raw 256 x 4 KiB \
             (1 MiB) pwrite+fdatasync. Latency: per batch, first append to durable (log), per \
             call (floor, disk_batch), or per wait for room (pattern).\n",
        );
        self.render_target(&mut out, sequential);
        self.render_pairs(&mut out);
        out
    }

    fn render_target(&self, out: &mut String, sequential: Option<&Row>) {
        let log = self.rows.iter().find(|r| r.name == TARGET_CASE);
        let (Some(log), Some(sequential)) = (log, sequential) else {
            return;
        };
        let percent = 100.0 * log.mib_per_second() / sequential.mib_per_second();
        let verdict = if percent >= TARGET_PERCENT {
            "MET"
        } else {
            "NOT MET"
        };
        let _ = writeln!(
            out,
            "target: {} at {:.1} MiB/s is {percent:.1}% of raw sequential durable bandwidth \
             {:.1} MiB/s in this table (target {TARGET_PERCENT}%): {verdict}",
            log.name,
            log.mib_per_second(),
            sequential.mib_per_second(),
        );
        let bounds = [
            (
                RowKind::DiskBatch,
                "io_uring",
                "one batch at a time through IoUringDisk",
            ),
            (
                RowKind::Pattern,
                "io_uring",
                "the log's I/O shape through IoUringDisk, pipelined",
            ),
            (
                RowKind::Log,
                "memory",
                "the journal's CPU alone (memory disk)",
            ),
        ];
        for (kind, disk, what) in bounds {
            let row = self.rows.iter().find(|r| {
                r.kind == kind && r.disk == disk && r.per_batch == 256 && !r.name.contains("128B")
            });
            if let Some(row) = row {
                let _ = writeln!(
                    out,
                    "        bound: {what}: {:.1} MiB/s ({:.1}% of raw)",
                    row.mib_per_second(),
                    100.0 * row.mib_per_second() / sequential.mib_per_second(),
                );
            }
        }
    }

    /// The recovery scan table.
    #[must_use]
    pub fn render_scans(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<26} {:>10} {:>9} {:>8} {:>9} {:>9} per scan: p50_us p99_us p999_us max_us",
            "bench", "slots/s", "MiB/s", "scans", "reads", "MiB_read"
        );
        for row in self.rows.iter().filter(|r| r.kind == RowKind::Scan) {
            let reads = row.counts.map_or(0, |c| c.reads / row.batches.max(1));
            let _ = writeln!(
                out,
                "{:<26} {:>10.0} {:>9.1} {:>8} {:>9} {:>9.1} {}",
                row.name,
                row.elements_per_second(),
                row.mib_per_second(),
                row.batches,
                reads,
                f64_of(row.bytes / row.batches.max(1)) / MIB,
                percentiles(&row.latencies),
            );
        }
        out.push_str("MiB/s counts the bytes the scan read; reads and MiB_read are per scan.\n");
        out
    }

    /// The paired measurement: the verdict to trust when the host's disk drifts during a run
    /// (its durable bandwidth was seen to vary by 2x within minutes).
    fn render_pairs(&self, out: &mut String) {
        // Cases in the order they were first measured.
        let mut names: Vec<&str> = Vec::new();
        for pair in &self.pairs {
            if !names.contains(&pair.name.as_str()) {
                names.push(&pair.name);
            }
        }
        for name in names {
            let pairs: Vec<&Pair> = self.pairs.iter().filter(|p| p.name == name).collect();
            let mut percents: Vec<f64> = pairs.iter().map(|p| p.percent()).collect();
            percents.sort_by(f64::total_cmp);
            let median = percents[percents.len() / 2];
            let verdict = match (name == TARGET_CASE, median >= TARGET_PERCENT) {
                (false, _) => "",
                (true, true) => ": target MET",
                (true, false) => ": target NOT MET",
            };
            let each: Vec<String> = pairs
                .iter()
                .map(|p| format!("{:.0}/{:.0}", p.case_mib_per_second, p.floor_mib_per_second))
                .collect();
            let _ = writeln!(
                out,
                "paired: {name} over floor/pwrite_fdatasync/256: median {median:.1}% (min {:.1}%, \
                 max {:.1}%, {} pairs){verdict}\n        MiB/s case/floor: {}",
                percents[0],
                percents[percents.len() - 1],
                percents.len(),
                each.join(" "),
            );
        }
    }
}

/// `row` over `base` by `metric`, as a factor or (with suffix `%`) a percentage; `-` when
/// there is no base to compare with.
fn ratio(
    row: &Row,
    base: Option<&Row>,
    metric: fn(&Row) -> f64,
    decimals: usize,
    suffix: &str,
) -> String {
    let Some(base) = base else {
        return "-".to_owned();
    };
    let scale = if suffix == "%" { 100.0 } else { 1.0 };
    format!("{:.decimals$}{suffix}", scale * metric(row) / metric(base))
}

fn per_batch(row: &Row, metric: fn(&DiskCounts) -> f64) -> String {
    match row.counts {
        Some(counts) if row.batches > 0 => format!("{:.2}", metric(&counts) / f64_of(row.batches)),
        _ => "-".to_owned(),
    }
}

fn percentiles(latencies: &Latencies) -> String {
    let us = |ns: u64| f64_of(ns) / 1000.0;
    match latencies.percentiles() {
        Some(p) => format!(
            "{:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            us(p.p50),
            us(p.p99),
            us(p.p999),
            us(p.max)
        ),
        None => "-".to_owned(),
    }
}
