//! Shared pieces of Chronon's benches: temporary data files, a disk wrapper that counts what the
//! journal asks of the disk, the raw durable-write floors, the pipelined append driver, latency
//! percentiles and the ratio report.
//!
//! The benches themselves live in `benches/`; `docs/BENCHMARKS.md` says what each measures and
//! how to run it. Everything here panics on an I/O error: a bench that cannot write its file has
//! nothing to report, and the message names the file.

mod append;
mod cluster;
mod counting;
mod latency;
mod raw;
mod report;
mod temp;

use std::path::Path;

use chronon_disk::{DiskOpenError, IoUringDisk, SyncDisk};
use chronon_engine::disk::{MemoryDisk, VirtualDisk};
use chronon_engine::log::{EntryMeta, FormatParams, Journal, Layout, LogConfig, Operation};
use chronon_engine::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId, Timestamp, View};

pub use append::AppendDriver;
pub use cluster::MemoryCluster;
pub use counting::{Counting, DiskCounts};
pub use latency::Latencies;
pub use raw::{DirectFile, DiskBatch, RoundPattern};
pub use report::{Pair, Report, Row, RowKind, TARGET_CASE, TARGET_PERCENT};
pub use temp::TempFile;

/// Batches kept in flight by the append benches: the driver appends batch k + 1 while the round
/// carrying batch k's entries (and batch k - 1's header copies) is in flight, and waits only for
/// batch k - 1. The journal acknowledges an op one round after its entry's round, so this is the
/// smallest depth at which appending and the disk overlap; at 2 the driver waits after each
/// `flush` for the round it has just started, and they take turns.
///
/// It is the depth that matches the node. A shard (`shards/src/shard.rs`, through
/// `JournalHost::run`) never waits for durability before appending more: each pass of its loop
/// polls the journal, appends every prepare the replica queued and flushes, and the primary keeps
/// up to `PIPELINE_MAX` (8) prepares uncommitted, so prepares keep arriving while a round is in
/// flight and ride in the next one. `--depth 2` reproduces the older figures.
pub const PIPELINE_DEPTH: usize = 3;

/// Entries per barrier the append benches try.
pub const ENTRIES_PER_BATCH: [usize; 3] = [1, 16, 256];

/// The append bench's ring: 4096 slots of 4 KiB (16 MiB of slots). Twice the deepest pipeline
/// (2 x 256 entries) fits well inside the journal's in-flight limit of half the ring.
pub const APPEND_RING: LogConfig = LogConfig {
    slot_count: 4096,
    slot_size: 4096,
    checkpoint_size: 64 * 1024,
};

/// The recovery bench's ring: the default 1024 slots of 64 KiB (64 MiB of slots).
pub const RECOVERY_RING: LogConfig = LogConfig {
    slot_count: 1024,
    slot_size: 64 * 1024,
    checkpoint_size: 64 * 1024,
};

/// The raw-floor file: big enough that 1 MiB writes walk through it for a while before
/// wrapping, small enough to create in well under a second.
pub const RAW_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// An entry size the append benches use. `body_len` is what the caller appends; the header
/// (128 B) comes on top, and the entry occupies whole 4 KiB sectors on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryShape {
    pub name: &'static str,
    pub body_len: usize,
}

impl EntryShape {
    /// A 128-byte body: 256 bytes with its header, one 4 KiB sector on disk.
    pub const SMALL: EntryShape = EntryShape {
        name: "128B",
        body_len: 128,
    };
    /// An entry of exactly 4096 bytes on disk, header included: a 3968-byte body.
    pub const SECTOR: EntryShape = EntryShape {
        name: "4KiB",
        body_len: chronon_engine::constants::SECTOR_SIZE - chronon_engine::constants::HEADER_SIZE,
    };

    /// Bytes the entry occupies on disk: header plus body, rounded up to whole sectors.
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        let size = chronon_engine::constants::HEADER_SIZE + self.body_len;
        size.div_ceil(chronon_engine::constants::SECTOR_SIZE) as u64
            * chronon_engine::constants::SECTOR_SIZE as u64
    }
}

/// A real disk the benches can open on a data file.
pub trait RealDisk: VirtualDisk + Sized {
    /// The name used in bench ids and the report.
    const NAME: &'static str;

    fn open(path: &Path) -> Result<Self, DiskOpenError>;
}

impl RealDisk for SyncDisk {
    const NAME: &'static str = "sync";

    fn open(path: &Path) -> Result<SyncDisk, DiskOpenError> {
        SyncDisk::open(path)
    }
}

impl RealDisk for IoUringDisk {
    const NAME: &'static str = "io_uring";

    fn open(path: &Path) -> Result<IoUringDisk, DiskOpenError> {
        IoUringDisk::open(path)
    }
}

/// Any disk a bench can run a journal on: a real one on a fresh data file, or memory (which
/// measures the journal's own CPU cost with no I/O wait at all).
pub trait BenchDisk: VirtualDisk + Sized {
    const NAME: &'static str;

    /// A zero-filled disk of `size` bytes, and the data file behind it if there is one.
    fn make(label: &str, size: u64) -> Result<(Option<TempFile>, Self), DiskOpenError>;
}

impl<D: RealDisk> BenchDisk for D {
    const NAME: &'static str = <D as RealDisk>::NAME;

    fn make(label: &str, size: u64) -> Result<(Option<TempFile>, D), DiskOpenError> {
        let file = TempFile::create(label, size);
        let disk = D::open(file.path())?;
        Ok((Some(file), disk))
    }
}

impl BenchDisk for MemoryDisk {
    const NAME: &'static str = "memory";

    fn make(_label: &str, size: u64) -> Result<(Option<TempFile>, MemoryDisk), DiskOpenError> {
        Ok((None, MemoryDisk::new(size)))
    }
}

/// The format parameters every bench log uses, with the given ring.
#[must_use]
pub fn format_params(config: LogConfig) -> FormatParams {
    FormatParams {
        cluster: ClusterId(0xbe9c),
        shard: ShardId(0),
        replica: ReplicaIndex(0),
        replica_count: 1,
        config,
    }
}

/// The header fields of every bench entry. The journal fills in op, parent and checksums.
#[must_use]
pub fn bench_meta() -> EntryMeta {
    EntryMeta {
        view: View(1),
        timestamp: Timestamp(1),
        operation: Operation::DATA,
        client: ClientId(1),
        request: RequestNumber(1),
    }
}

/// A body of `len` deterministic, incompressible bytes, so no layer below can shortcut zeros.
#[must_use]
pub fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    chronon_engine::rng::Rng::new(seed).fill(&mut bytes);
    bytes
}

/// Makes a `D` disk for `config`, formats it and opens the journal on it. Returns `None` when
/// `D` cannot be opened here (`io_uring` unavailable), with the reason printed, so the
/// remaining benches still run.
#[must_use]
pub fn fresh_journal<D: BenchDisk>(
    label: &str,
    config: LogConfig,
) -> Option<(Option<TempFile>, Journal<Counting<D>>)> {
    let (file, mut disk) = match D::make(label, Layout::new(config).total_size()) {
        Ok(made) => made,
        Err(error) => {
            eprintln!("skipping {label}: cannot open a {} disk: {error}", D::NAME);
            return None;
        }
    };
    Journal::format(&mut disk, &format_params(config))
        .unwrap_or_else(|error| panic!("format the log of {label}: {error}"));
    let (journal, report) = Journal::open(Counting::new(disk))
        .unwrap_or_else(|error| panic!("open the log of {label}: {error}"));
    assert!(
        report.is_clean(),
        "a freshly formatted log must recover clean"
    );
    Some((file, journal))
}

/// Converts a count to `f64` for rates and ratios. Counts here stay far below 2^52, so the
/// conversion is exact in practice; this is the one place that says so.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn f64_of(count: u64) -> f64 {
    count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    // The doc defines a "4 KiB entry" as exactly one sector on disk, header included; this pins
    // that definition and that a 128 B body still costs a whole sector.
    #[test]
    fn entry_shapes_match_their_definitions() {
        assert_eq!(EntryShape::SECTOR.body_len, 3968);
        assert_eq!(EntryShape::SECTOR.disk_bytes(), 4096);
        assert_eq!(EntryShape::SMALL.disk_bytes(), 4096);
        let deepest = (PIPELINE_DEPTH * ENTRIES_PER_BATCH[2]) as u32;
        assert!(
            deepest <= APPEND_RING.slot_count / 2,
            "pipeline exceeds in_flight_max"
        );
    }
}
