//! `chronon format` and `chronon inspect` end to end, through the real binary.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use chronon_disk::DiskChoice;
use chronon_engine::constants::{HEADER_SIZE, SECTOR_SIZE};
use chronon_engine::log::{EntryMeta, Journal, Layout, LogConfig, Operation};
use chronon_engine::{ClientId, Op, RequestNumber, Timestamp, View};
use common::TempDir;

const SLOT_COUNT: u32 = 32;
const SLOT_SIZE: u32 = 16384;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn chronon(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_chronon"))
        .args(args)
        .output()
        .expect("run the chronon binary");
    let run = Run {
        success: status.success(),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    };
    // A bad file must produce a message, never a panic.
    assert!(
        !run.stderr.contains("panicked"),
        "chronon panicked:\n{}",
        run.stderr
    );
    run
}

fn inspect(data: &Path) -> Run {
    chronon(&["inspect", path_str(data)])
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn format_dir(data: &Path, shards: &str) -> Run {
    chronon(&[
        "format",
        "--data",
        path_str(data),
        "--cluster",
        "9",
        "--replica",
        "1",
        "--replicas",
        "3",
        "--shards",
        shards,
        "--slot-count",
        &SLOT_COUNT.to_string(),
        "--slot-size",
        &SLOT_SIZE.to_string(),
        "--checkpoint-size",
        "65536",
        "--disk",
        "sync",
    ])
}

/// Appends ops `1..=count` through the library and waits until all are acknowledged.
fn append_acknowledged(path: &Path, count: u64) {
    let (disk, _) = chronon_disk::open(path, DiskChoice::Sync).expect("open the data file");
    let (mut journal, report) = Journal::open(disk).expect("open the log");
    assert!(report.is_clean());
    for op in 1..=count {
        let meta = EntryMeta {
            view: View(0),
            timestamp: Timestamp(op),
            operation: Operation::DATA,
            client: ClientId(1),
            request: RequestNumber(op),
        };
        journal
            .append(&meta, &vec![op as u8; 100 + op as usize * 300])
            .expect("append");
        if op % 4 == 0 {
            // The journal keeps at most half the ring in flight.
            journal.sync().expect("sync");
        }
    }
    journal.sync().expect("sync");
    assert_eq!(journal.durable_op(), Op(count));
}

fn flip_byte(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read a byte");
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset).expect("flip a byte");
}

// A fresh directory inspects clean; after acknowledged appends it still does, naming the op
// range and the verified chain; a flipped superblock copy is outvoted and shown but is not an
// error; a flipped byte in an acknowledged entry's body makes inspect fail, naming the file,
// the op and the decision-table row; and inspect never writes, so the damage is still there
// for a second look.
#[test]
fn inspect_verifies_a_data_dir_and_names_a_corrupt_op() {
    let dir = TempDir::new("inspect-corrupt");
    let data = dir.path.join("data");
    let formatted = format_dir(&data, "2");
    assert!(formatted.success, "format failed:\n{}", formatted.stderr);
    let fresh = inspect(&data);
    assert!(
        fresh.success,
        "fresh dir not clean:\n{}{}",
        fresh.stdout, fresh.stderr
    );
    assert!(fresh.stdout.contains("0..=0 (1 op)"), "{}", fresh.stdout);
    assert!(
        fresh.stdout.contains("verified over ops 0..=0"),
        "{}",
        fresh.stdout
    );
    assert!(
        fresh.stdout.contains("2 shard file(s): 2 clean"),
        "{}",
        fresh.stdout
    );

    let shard = data.join("shard-001.chronon");
    append_acknowledged(&shard, 36); // 36 ops in a ring of 32: op_min is 5
    let appended = inspect(&data);
    assert!(
        appended.success,
        "not clean:\n{}{}",
        appended.stdout, appended.stderr
    );
    assert!(
        appended.stdout.contains("5..=36 (32 ops)"),
        "{}",
        appended.stdout
    );
    assert!(
        appended.stdout.contains("verified over ops 5..=36"),
        "{}",
        appended.stdout
    );

    flip_byte(
        &data.join("shard-000.chronon"),
        3 * SECTOR_SIZE as u64 + 100,
    );
    let outvoted = inspect(&data);
    assert!(
        outvoted.success,
        "one bad superblock copy is outvoted:\n{}",
        outvoted.stderr
    );
    assert!(outvoted.stdout.contains("3 invalid"), "{}", outvoted.stdout);

    let layout = Layout::new(LogConfig {
        slot_count: SLOT_COUNT,
        slot_size: SLOT_SIZE,
        checkpoint_size: 64 * 1024,
    });
    let slot = layout.slot_of(Op(30));
    flip_byte(&shard, layout.slot_offset(slot) + HEADER_SIZE as u64 + 50);
    for _ in 0..2 {
        let corrupt = inspect(&data);
        assert!(
            !corrupt.success,
            "corruption not reported:\n{}",
            corrupt.stdout
        );
        assert!(
            corrupt
                .stderr
                .contains("shard-001.chronon: op 30 is faulty"),
            "{}",
            corrupt.stderr
        );
        let row = format!("slot {slot}, op 30: vouched entry's body corrupt");
        assert!(corrupt.stdout.contains(&row), "{}", corrupt.stdout);
        assert!(
            corrupt.stdout.contains("1 clean, 1 with problems"),
            "{}",
            corrupt.stdout
        );
    }
}

// Everything that is not a formatted data directory fails with a one-line explanation and a
// non-zero exit: a missing directory, an empty one, a zero-filled (never formatted) file, a
// file too short to hold a superblock, and one that is not whole sectors.
#[test]
fn inspect_explains_what_is_not_a_data_dir() {
    let dir = TempDir::new("inspect-unformatted");
    let missing = inspect(&dir.path.join("missing"));
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );

    let empty = inspect(&dir.path);
    assert!(!empty.success);
    assert!(
        empty.stderr.contains("holds no shard files"),
        "{}",
        empty.stderr
    );

    let zeros = dir.path.join("shard-000.chronon");
    chronon_disk::create_data_file(&zeros, 1 << 20).expect("create a zero-filled file");
    let unformatted = inspect(&dir.path);
    assert!(!unformatted.success);
    assert!(
        unformatted
            .stderr
            .contains("shard-000.chronon: no superblock found"),
        "{}",
        unformatted.stderr
    );
    assert!(
        unformatted.stderr.contains("chronon format"),
        "{}",
        unformatted.stderr
    );

    std::fs::write(dir.path.join("shard-001.chronon"), vec![0u8; SECTOR_SIZE]).expect("write");
    std::fs::write(dir.path.join("shard-002.chronon"), vec![0u8; 1000]).expect("write");
    let short = inspect(&dir.path);
    assert!(!short.success);
    assert!(
        short.stderr.contains("smaller than the superblock zone"),
        "{}",
        short.stderr
    );
    assert!(
        short.stderr.contains("not a whole number"),
        "{}",
        short.stderr
    );
    assert_eq!(
        short.stderr.lines().count(),
        3,
        "one line per file:\n{}",
        short.stderr
    );
}

// Format reports every bad argument on its own line, and never overwrites: a second format
// of the same directory fails and leaves the first one's data intact.
#[test]
fn format_validates_arguments_and_never_overwrites() {
    let dir = TempDir::new("format-checks");
    let data = dir.path.join("data");
    let bad = chronon(&[
        "format",
        "--data",
        path_str(&data),
        "--cluster",
        "1",
        "--replica",
        "3",
        "--replicas",
        "3",
        "--shards",
        "0",
        "--slot-size",
        "1000",
    ]);
    assert!(!bad.success);
    assert_eq!(
        bad.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        3,
        "{}",
        bad.stderr
    );
    assert!(!data.exists(), "a refused format created the directory");

    assert!(format_dir(&data, "1").success);
    append_acknowledged(&data.join("shard-000.chronon"), 3);
    let again = format_dir(&data, "1");
    assert!(!again.success);
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
    let after = inspect(&data);
    assert!(
        after.success && after.stdout.contains("0..=3 (4 ops)"),
        "{}",
        after.stdout
    );
}
