//! The `io_uring` disk's own paths beyond the shared contract: deep queues, polling, failed
//! reads, and closing with I/O in flight.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::Path;

use chronon_disk::{DiskOpenError, IoUringDisk, SyncDisk, create_data_file};
use chronon_engine::disk::{
    AlignedBuf, Completion, DiskError, IoKind, SECTOR_SIZE, VirtualDisk, drain,
};
use common::{TEST_TIME_LIMIT, TempDir, Watchdog, one_io, pattern, read_ok, sector, write_durably};

/// More requests than three full rings (the ring holds 256), so most start in the backlog.
const DEEP_QUEUE_COUNT: u64 = 3 * 256 + 5;

fn fresh_disk(dir: &TempDir, sectors: u64) -> IoUringDisk {
    let path = dir.file("data.chronon");
    create_data_file(&path, sector(sectors)).expect("create the data file");
    IoUringDisk::open(&path).expect("open with io_uring")
}

// Proves a full ring loses nothing: 773 writes and a barrier submitted at once (the ring takes
// 256) each complete exactly once with their own buffer, the barrier completes last, and 773
// reads in flight at once read every write back.
#[test]
fn more_requests_than_the_ring_holds_all_complete() {
    let _watchdog = Watchdog::start("more_requests_than_the_ring_holds", TEST_TIME_LIMIT);
    let dir = TempDir::new("deep-queue");
    let mut disk = fresh_disk(&dir, DEEP_QUEUE_COUNT);
    for i in 0..DEEP_QUEUE_COUNT {
        disk.submit_write(sector(i), pattern(i, SECTOR_SIZE), i);
    }
    disk.submit_barrier(u64::MAX);
    assert_eq!(disk.in_flight() as u64, DEEP_QUEUE_COUNT + 1);
    let mut out = Vec::new();
    drain(&mut disk, &mut out);
    let barrier = out.pop().expect("completions");
    assert_eq!(
        (barrier.kind, barrier.token),
        (IoKind::Barrier, u64::MAX),
        "barrier not last"
    );
    barrier.result.expect("barrier succeeds");
    check_each_token_once(&out, IoKind::Write);

    for i in 0..DEEP_QUEUE_COUNT {
        disk.submit_read(sector(i), AlignedBuf::zeroed(SECTOR_SIZE), i);
    }
    out.clear();
    drain(&mut disk, &mut out);
    check_each_token_once(&out, IoKind::Read);
    assert_eq!(disk.in_flight(), 0);
}

// Proves barriers keep their contract when the disk alternates lanes per barrier epoch: rounds of
// writes and reads, each closed by a barrier, are submitted back to back without waiting (so a
// barrier's epoch on one lane is still running while the next epoch starts on the other), some
// rounds deeper than a ring; every barrier's completion comes after the completion of every
// write and read submitted before it, every request completes once, and the data reads back.
#[test]
fn barriers_order_across_epochs_submitted_back_to_back() {
    const ROUNDS: u64 = 7;
    let _watchdog = Watchdog::start("barriers_order_across_epochs", TEST_TIME_LIMIT);
    let sizes = [1, 300, 2, 17, 260, 1, 5];
    let total: u64 = sizes.iter().sum();
    let dir = TempDir::new("epochs");
    // One sector more than the writes, never written: the rounds read it.
    let mut disk = fresh_disk(&dir, total + 1);
    // Token layout: round in the high bits; barriers are u64::MAX - round.
    let mut submitted_before: Vec<BTreeSet<u64>> = Vec::new();
    let mut all = BTreeSet::new();
    let mut next_sector = 0;
    for round in 0..ROUNDS {
        for i in 0..sizes[round as usize] {
            let token = (round << 32) | i;
            disk.submit_write(sector(next_sector), pattern(token, SECTOR_SIZE), token);
            next_sector += 1;
            all.insert(token);
        }
        if round > 0 {
            // A read too, of the sector no write touches (the contract forbids overlapping one).
            let token = (round << 32) | 0xffff_ffff;
            disk.submit_read(sector(total), AlignedBuf::zeroed(SECTOR_SIZE), token);
            all.insert(token);
        }
        submitted_before.push(all.clone());
        let barrier = u64::MAX - round;
        disk.submit_barrier(barrier);
        all.insert(barrier);
    }
    let mut out = Vec::new();
    drain(&mut disk, &mut out);
    let position = |token: u64| {
        let found: Vec<usize> = (0..out.len()).filter(|&i| out[i].token == token).collect();
        assert_eq!(
            found.len(),
            1,
            "token {token:#x} completed {} times",
            found.len()
        );
        found[0]
    };
    assert_eq!(out.len(), all.len());
    for round in 0..ROUNDS {
        let barrier_at = position(u64::MAX - round);
        assert_eq!(out[barrier_at].kind, IoKind::Barrier);
        for &token in &submitted_before[round as usize] {
            assert!(
                position(token) < barrier_at,
                "barrier {round} completed before request {token:#x} submitted before it"
            );
        }
    }
    assert!(out.iter().all(|c| c.result.is_ok()));
    let mut next_sector = 0;
    for round in 0..ROUNDS {
        for i in 0..sizes[round as usize] {
            let token = (round << 32) | i;
            assert_eq!(
                read_ok(&mut disk, sector(next_sector), SECTOR_SIZE),
                pattern(token, SECTOR_SIZE).as_slice()
            );
            next_sector += 1;
        }
    }
}

/// Checks `out` holds one successful completion of `kind` per token below the queue count,
/// each with the pattern that token wrote.
fn check_each_token_once(out: &[Completion], kind: IoKind) {
    assert_eq!(out.len() as u64, DEEP_QUEUE_COUNT);
    let mut seen = BTreeSet::new();
    for completion in out {
        assert_eq!(completion.kind, kind);
        assert!(
            seen.insert(completion.token),
            "token {} completed twice",
            completion.token
        );
        assert!(completion.result.is_ok(), "{:?}", completion.result);
        let buf = completion
            .buf
            .as_ref()
            .expect("reads and writes return their buffer");
        assert_eq!(
            buf.as_slice(),
            pattern(completion.token, SECTOR_SIZE).as_slice()
        );
    }
}

// Proves `poll` alone (no `wait`) starts submitted I/O and eventually reports it, as the shard
// loop relies on, by polling a write and a barrier to completion with a bounded number of polls.
#[test]
fn polling_alone_completes_io() {
    let _watchdog = Watchdog::start("polling_alone_completes_io", TEST_TIME_LIMIT);
    let dir = TempDir::new("poll");
    let mut disk = fresh_disk(&dir, 8);
    disk.submit_write(0, pattern(5, 2 * SECTOR_SIZE), 1);
    disk.submit_barrier(2);
    let mut out = Vec::new();
    let mut polls = 0u64;
    while disk.in_flight() > 0 {
        polls += 1;
        assert!(polls < 100_000_000, "poll never reported the I/O");
        disk.poll(&mut out);
        std::hint::spin_loop();
    }
    let tokens: Vec<u64> = out.iter().map(|c| c.token).collect();
    assert_eq!(tokens, [1, 2]);
    assert!(out.iter().all(|c| c.result.is_ok()));
    assert_eq!(
        read_ok(&mut disk, 0, 2 * SECTOR_SIZE),
        pattern(5, 2 * SECTOR_SIZE).as_slice()
    );
}

// Proves a read the file can no longer satisfy comes back as an `Err` completion with its
// buffer, not a panic or a silent success: the data file is truncated from outside while the
// disk is open, then a read past the new end, and one straddling it (a short read whose rest
// hits end of file), both fail while a read before the end still succeeds. SyncDisk is held to
// the same behaviour.
#[test]
fn reads_past_a_truncated_end_fail_cleanly() {
    let _watchdog = Watchdog::start("reads_past_a_truncated_end", TEST_TIME_LIMIT);
    reads_past_truncated_end(IoUringDisk::open, true);
    reads_past_truncated_end(SyncDisk::open, false);
}

/// `counts_bytes`: the disk's error names how many bytes the short read got.
fn reads_past_truncated_end<D: VirtualDisk>(
    open: fn(&Path) -> Result<D, DiskOpenError>,
    counts_bytes: bool,
) {
    let dir = TempDir::new("truncated");
    let path = dir.file("data.chronon");
    create_data_file(&path, sector(64)).expect("create the data file");
    let mut disk = open(&path).expect("open");
    let written = pattern(3, 16 * SECTOR_SIZE);
    write_durably(&mut disk, sector(0), written.clone());
    let outside = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open from outside");
    outside.set_len(sector(12)).expect("truncate from outside");

    let len = 8 * SECTOR_SIZE;
    // Sector 32 is past the new end; sectors 8..16 straddle it, so only 4 sectors are there.
    for (start, readable) in [(32u64, 0), (8, 4 * SECTOR_SIZE)] {
        let completion = one_io(&mut disk, |disk| {
            disk.submit_read(sector(start), AlignedBuf::zeroed(len), 7);
        });
        assert_eq!((completion.kind, completion.token), (IoKind::Read, 7));
        assert_eq!(
            completion.buf.as_ref().map(AlignedBuf::len),
            Some(len),
            "buffer handed back"
        );
        match completion.result {
            Err(DiskError::Read {
                offset,
                len: failed_len,
                reason,
            }) => {
                assert_eq!((offset, failed_len), (sector(start), len));
                assert!(!reason.is_empty());
                if counts_bytes {
                    let count = format!("short read: end of file after {readable} of {len} bytes");
                    assert!(reason.contains(&count), "{reason}");
                }
            }
            other => panic!("read at sector {start} past the end gave {other:?}"),
        }
    }
    let before_end = read_ok(&mut disk, 0, 4 * SECTOR_SIZE);
    assert_eq!(before_end, written.as_slice()[..4 * SECTOR_SIZE]);
    assert_eq!(disk.in_flight(), 0);
}

// Proves closing the disk with I/O still in flight is safe and loses nothing that completed:
// the disk is dropped right after submitting writes, reads and a barrier, which makes `Drop`
// wait for the kernel to finish with every buffer, and a reopened disk then reads the writes.
#[test]
fn dropping_with_io_in_flight_waits_for_the_kernel() {
    let _watchdog = Watchdog::start("dropping_with_io_in_flight", TEST_TIME_LIMIT);
    let dir = TempDir::new("drop");
    let path = dir.file("data.chronon");
    create_data_file(&path, sector(64)).expect("create the data file");
    let mut disk = IoUringDisk::open(&path).expect("open with io_uring");
    for i in 0..32 {
        disk.submit_write(sector(i), pattern(i, SECTOR_SIZE), i);
        disk.submit_read(sector(32 + i), AlignedBuf::zeroed(SECTOR_SIZE), 100 + i);
    }
    disk.submit_barrier(1000);
    let mut out = Vec::new();
    disk.poll(&mut out);
    drop(disk);

    let mut disk = IoUringDisk::open(&path).expect("reopen with io_uring");
    for i in 0..32 {
        assert_eq!(
            read_ok(&mut disk, sector(i), SECTOR_SIZE),
            pattern(i, SECTOR_SIZE).as_slice()
        );
    }
}

// Proves a file that is not a whole number of sectors is refused with `BadSize` (not a panic
// or an EINVAL later), by opening a 4097-byte file.
#[test]
fn a_file_of_partial_sectors_is_refused() {
    let dir = TempDir::new("bad-size");
    let path = dir.file("data.chronon");
    std::fs::write(&path, vec![0u8; SECTOR_SIZE + 1]).expect("write the file");
    match IoUringDisk::open(&path) {
        Err(DiskOpenError::BadSize { actual, .. }) => assert_eq!(actual, SECTOR_SIZE as u64 + 1),
        other => panic!("expected BadSize, got {other:?}"),
    }
}
