//! Helpers shared by the chronon-disk integration tests: temporary directories, a watchdog that
//! bounds each test's time, disk I/O shortcuts, and re-running one test in a child process.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]
// engine/clippy.toml bans threads and clocks to keep the deterministic core deterministic. These
// are tests of real disks in real processes: bounding them in time needs a watchdog thread and a
// deadline.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chronon_engine::disk::{AlignedBuf, Completion, IoKind, SECTOR_SIZE, VirtualDisk, drain};

/// How long any one test may run before the watchdog fails it. Real-disk I/O here takes
/// milliseconds; the limit only catches a hang (a wait for a completion that never comes).
pub const TEST_TIME_LIMIT: Duration = Duration::from_mins(1);

/// The environment variable that tells a re-executed test binary which test should run its
/// child branch.
pub const CHILD_ENV: &str = "CHRONON_DISK_TEST_CHILD";

/// What a child branch prints when it finished, so the parent can tell it really ran (libtest
/// exits successfully when `--exact` matches no test at all).
pub const CHILD_DONE: &str = "chronon-disk child branch finished:";

/// A directory that is removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory inside `std::env::temp_dir()`.
    pub fn new(label: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), label)
    }

    /// A fresh directory inside `parent`, named after the test, the process and a counter so
    /// that tests running in parallel never share one.
    pub fn new_in(parent: &Path, label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(
            "chronon-disk-{label}-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Aborts the process if it is still alive after `limit`, unless dropped first. A hung
/// `io_uring` wait would otherwise stall the run forever instead of failing it.
#[derive(Debug)]
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(what: &str, limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = std::thread::spawn(move || {
            if finished.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("{what} still running after {limit:?}: aborting the test process");
                std::process::abort();
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A buffer of `len` bytes of a pattern that differs per `seed` and per sector.
pub fn pattern(seed: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for byte in buf.as_mut_slice() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state.to_le_bytes()[0];
    }
    buf
}

/// Sector `index` as a byte offset.
pub fn sector(index: u64) -> u64 {
    index * SECTOR_SIZE as u64
}

/// Submits one I/O and waits for its completion.
pub fn one_io<D: VirtualDisk + ?Sized>(disk: &mut D, submit: impl FnOnce(&mut D)) -> Completion {
    submit(disk);
    let mut out = Vec::new();
    drain(disk, &mut out);
    assert_eq!(out.len(), 1, "one I/O gives one completion");
    out.pop().expect("checked above")
}

/// Writes `buf` at `offset` and a barrier after it, and checks both succeed.
pub fn write_durably<D: VirtualDisk + ?Sized>(disk: &mut D, offset: u64, buf: AlignedBuf) {
    disk.submit_write(offset, buf, 1);
    disk.submit_barrier(2);
    let mut out = Vec::new();
    drain(disk, &mut out);
    let kinds: Vec<IoKind> = out.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [IoKind::Write, IoKind::Barrier]);
    for completion in out {
        completion.result.expect("write and barrier succeed");
    }
}

/// Reads `len` bytes at `offset`, which must succeed.
pub fn read_ok<D: VirtualDisk + ?Sized>(disk: &mut D, offset: u64, len: usize) -> Vec<u8> {
    let completion = one_io(disk, |disk| {
        disk.submit_read(offset, AlignedBuf::zeroed(len), 9);
    });
    completion.result.expect("read succeeds");
    completion
        .buf
        .expect("a read returns its buffer")
        .as_slice()
        .to_vec()
}

/// Whether this test process is the child that `run_child(test)` started.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|value| value == test)
}

/// Tells the parent the child branch of `test` ran to the end.
pub fn child_done(test: &str) {
    println!("{CHILD_DONE} {test}");
}

/// Re-executes this test binary to run only `test`, with [`CHILD_ENV`] set so that the test
/// takes its child branch, and fails unless the child passes and reports that branch finished.
/// Process-wide changes (resource limits, seccomp filters) then stay in the child. Works under
/// both `cargo test` and `cargo nextest`, which both accept libtest's `--exact`.
pub fn run_child(test: &str) {
    let exe = std::env::current_exe().expect("find the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture"])
        .env(CHILD_ENV, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test process");
    let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + TEST_TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child for {test} still running after {TEST_TIME_LIMIT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success() && stdout.contains(&format!("{CHILD_DONE} {test}")),
        "child for {test} failed ({status}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}
