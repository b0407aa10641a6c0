//! Real-process crash test of the journal on each real disk (sync and `io_uring`).
//!
//! What it proves: after a SIGKILL at a random moment, recovery finds no faulty slot and no
//! chain break, every op the killed process acknowledged (and whose slot no later write can
//! have reached) is still in the log with the exact body and checksum that were acknowledged,
//! and the hash chain verifies over the whole recovered range.
//!
//! How: the parent formats a small ring (64 slots of 8 KiB, so it wraps many times) and then,
//! over and over, re-executes this test binary as a child (`--exact <test> --nocapture`, with
//! the role and parameters in `CHRONON_CRASH_CHILD*` environment variables, so it works under
//! `cargo test` and `cargo nextest` alike). The child recovers the journal, appends entries
//! whose bodies are a function of their op, and prints `ACK <op> <checksum>` once
//! `durable_op()` covers an op. The parent reads those lines, kills the child after 5-80 ms,
//! and checks the file: read-only with `Journal::inspect` after every kill, and by opening
//! (recovering) and reading every entry back after every other kill. The other kills leave
//! recovery to the next child, so kills also land in the middle of a recovery's own writes.
//!
//! What it cannot prove: SIGKILL loses no write the kernel has accepted (the page cache
//! survives, and an exiting process waits for its in-flight `io_uring` requests in
//! `io_uring_cancel_generic`), so this covers process crashes against real disks and kernels.
//! Torn writes and lost unsynced writes (power loss) are the simulator's job.
//!
//! Reproduce: the seed (printed; set `CHRONON_CRASH_SEED` to reuse it) fixes kill delays and
//! batch sizes, but not the kernel's timing, so a rerun follows the same plan, not the same
//! interleaving.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use chronon_disk::{AnyDisk, DiskChoice};
use chronon_engine::constants::HEADER_SIZE;
use chronon_engine::log::{
    EntryMeta, FormatParams, Header, Journal, Layout, LogConfig, Operation, RecoveryReport,
};
use chronon_engine::rng::Rng;
use chronon_engine::{
    Checksum, ClientId, ClusterId, Op, ReplicaIndex, RequestNumber, ShardId, Timestamp, View,
};
use common::TempDir;

/// Kills per disk kind.
const KILLS: usize = 100;
/// Small enough that the ring wraps many times in a run, large enough to hold entries of
/// two sectors (so a write can be half done).
const SLOT_COUNT: u32 = 64;
const SLOT_SIZE: u32 = 8 * 1024;
/// Milliseconds between starting a child and killing it: short enough that some kills land
/// during the child's recovery, long enough that most land among appends.
const KILL_DELAY_MS_MIN: u64 = 5;
const KILL_DELAY_MS_MAX: u64 = 80;
/// Entries a child appends before each flush, at most.
const BATCH_MAX: u64 = 16;
/// How long the parent waits for a killed child to exit and for its output to drain.
const CHILD_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A child that is never killed (the parent died) stops by itself after this.
const CHILD_RUN_MAX: Duration = Duration::from_secs(30);

const ENV_CHILD: &str = "CHRONON_CRASH_CHILD";
const ENV_CHILD_PATH: &str = "CHRONON_CRASH_CHILD_PATH";
const ENV_CHILD_DISK: &str = "CHRONON_CRASH_CHILD_DISK";
const ENV_CHILD_ACKED: &str = "CHRONON_CRASH_CHILD_ACKED";
const ENV_CHILD_SEED: &str = "CHRONON_CRASH_CHILD_SEED";
const ENV_SEED: &str = "CHRONON_CRASH_SEED";

#[test]
fn crash_recovery_sync() {
    crash_test("crash_recovery_sync", DiskChoice::Sync);
}

#[test]
fn crash_recovery_io_uring() {
    crash_test("crash_recovery_io_uring", DiskChoice::IoUring);
}

/// Runs the child role if this process was started as one, else the parent.
fn crash_test(test: &str, choice: DiskChoice) {
    match std::env::var(ENV_CHILD) {
        Ok(role) => {
            assert_eq!(role, test, "a child runs only the test that started it");
            child_main(&ChildArgs::from_env());
        }
        Err(_) => Parent::new(test, choice).run(),
    }
}

// ---------------------------------------------------------------------------------------------
// What both roles agree on: the entry for each op.

/// The body of `op`: pseudo-random bytes of a length that varies from 0 to a full slot, so
/// entries span one or two sectors. Deterministic, so the parent can check content.
fn body(op: u64) -> Vec<u8> {
    let mut rng = Rng::new(op ^ 0x5eed_b0d1);
    let len = rng.below(u64::from(SLOT_SIZE) - HEADER_SIZE as u64 + 1) as usize;
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// What op `op` must hold: the root (empty, written by format) or a child's entry.
fn expected_body(op: u64) -> Vec<u8> {
    if op == 0 { Vec::new() } else { body(op) }
}

fn meta(op: u64) -> EntryMeta {
    EntryMeta {
        view: View(0),
        timestamp: Timestamp(op),
        operation: Operation::DATA,
        client: ClientId(1),
        request: RequestNumber(op),
    }
}

fn disk_name(choice: DiskChoice) -> &'static str {
    match choice {
        DiskChoice::Sync => "sync",
        DiskChoice::IoUring => "io_uring",
        DiskChoice::Auto => "auto",
    }
}

/// Opens the data file with exactly the disk asked for: the `io_uring` case must fail, not fall
/// back, when `io_uring` does not work.
fn open_disk(path: &Path, choice: DiskChoice) -> AnyDisk {
    assert_ne!(choice, DiskChoice::Auto, "the test names its disk");
    match chronon_disk::open(path, choice) {
        Ok((disk, None)) => disk,
        Ok((_, Some(fallback))) => panic!("unexpected fallback: {fallback}"),
        Err(error) => panic!(
            "cannot open {} with the {} disk: {error}. This test needs that disk and does not \
             skip without it",
            path.display(),
            disk_name(choice)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The child: recover, append, acknowledge, until killed.

#[derive(Debug)]
struct ChildArgs {
    path: PathBuf,
    choice: DiskChoice,
    /// The highest op any earlier child acknowledged; this one acknowledges only later ops.
    acked_max: u64,
    seed: u64,
}

impl ChildArgs {
    fn from_env() -> ChildArgs {
        let var = |name| std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"));
        let number = |name| {
            var(name)
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad {name}"))
        };
        ChildArgs {
            path: PathBuf::from(var(ENV_CHILD_PATH)),
            choice: var(ENV_CHILD_DISK).parse().expect("disk kind"),
            acked_max: number(ENV_CHILD_ACKED),
            seed: number(ENV_CHILD_SEED),
        }
    }
}

/// The child's loop. Before each batch it prints an ACK for every op up to `durable_op()`,
/// and only then appends: so when it appends op `y`, `y <= acked + in_flight_max` for the
/// `acked` the parent has already read. The parent's bound on overwritten slots rests on this.
fn child_main(args: &ChildArgs) {
    let disk = open_disk(&args.path, args.choice);
    let (mut journal, report) = Journal::open(disk).expect("child: recover the journal");
    assert!(
        report.is_clean(),
        "child: recovery found damage: {:?}",
        report.analysis
    );
    let durable = journal.durable_op().0;
    assert!(
        durable >= args.acked_max,
        "child: recovery lost acknowledged ops"
    );
    // Ops that recovery kept (durable, never acknowledged) are durable now: acknowledge them
    // before appending, like every other durable op.
    let mut pending: VecDeque<(Op, Checksum)> = (args.acked_max + 1..=durable)
        .map(|op| (Op(op), read_checksum(&mut journal, Op(op))))
        .collect();
    let mut rng = Rng::new(args.seed);
    let mut stdout = std::io::stdout().lock();
    // The harness prints `test <name> ... ` without a newline before running the test; end
    // that line so every ACK starts one of its own.
    stdout
        .write_all(b"\n")
        .and_then(|()| stdout.flush())
        .expect("child: write stdout");
    let deadline = Instant::now() + CHILD_RUN_MAX;
    while Instant::now() < deadline {
        acknowledge(&mut stdout, &mut pending, journal.durable_op());
        for _ in 0..=rng.below(BATCH_MAX) {
            let op = journal.head().op.next();
            if op.0 - journal.durable_op().0 > journal.in_flight_max() {
                break;
            }
            let header = journal
                .append(&meta(op.0), &body(op.0))
                .expect("child: append");
            pending.push_back((header.op, header.checksum));
        }
        journal.flush().expect("child: flush");
        journal.wait().expect("child: wait");
    }
}

fn read_checksum(journal: &mut Journal<AnyDisk>, op: Op) -> Checksum {
    let entry = journal.read(op).expect("child: read a recovered op");
    entry.header.checksum
}

/// Prints (and flushes) one ACK line per pending op that `durable` covers.
fn acknowledge(out: &mut impl Write, pending: &mut VecDeque<(Op, Checksum)>, durable: Op) {
    let mut text = Vec::new();
    while let Some(&(op, checksum)) = pending.front()
        && op <= durable
    {
        writeln!(text, "ACK {op} {checksum}").expect("format into memory");
        pending.pop_front();
    }
    if !text.is_empty() {
        // One write of the whole batch: the parent sees whole lines or (at a kill) a cut one.
        out.write_all(&text).expect("child: write ACKs");
        out.flush().expect("child: flush ACKs");
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: format, then kill children and check what they left.

/// ACK lines as read: op and checksum.
type Acks = Vec<(u64, Checksum)>;

/// Every op acknowledged so far, with its checksum.
#[derive(Debug, Default)]
struct Acked {
    ops: BTreeMap<u64, Checksum>,
}

impl Acked {
    fn max(&self) -> u64 {
        self.ops.last_key_value().map_or(0, |(&op, _)| op)
    }

    /// Records a child's ACKs. They must continue the sequence: an op acknowledged twice means
    /// an acknowledged op was lost and appended again.
    fn extend(&mut self, acks: &[(u64, Checksum)]) -> Result<(), String> {
        for &(op, checksum) in acks {
            if op != self.max() + 1 {
                return Err(format!(
                    "ACK for op {op} after op {}: not the next op",
                    self.max()
                ));
            }
            self.ops.insert(op, checksum);
        }
        Ok(())
    }
}

/// The log as recovered: one intact header per op from `op_min` to `head`.
struct Recovered {
    op_min: u64,
    head: u64,
    headers: Vec<Header>,
}

struct Parent {
    test: String,
    choice: DiskChoice,
    seed: u64,
    dir: TempDir,
    path: PathBuf,
    in_flight_max: u64,
    kill: usize,
}

#[derive(Debug, Default)]
struct Stats {
    acks: usize,
    kills_before_any_ack: usize,
    torn_slots: usize,
    copy_repairs: usize,
}

impl Parent {
    fn new(test: &str, choice: DiskChoice) -> Parent {
        let seed = std::env::var(ENV_SEED).map_or_else(
            |_| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock")
                    .as_nanos() as u64
            },
            |seed| seed.parse().expect("CHRONON_CRASH_SEED is a u64"),
        );
        eprintln!(
            "{test}: seed {seed} (rerun the same plan with {ENV_SEED}={seed} cargo test -p \
             chronon --test crash_recovery -- --exact {test})"
        );
        let dir = TempDir::new(test);
        let path = dir.path.join("shard-000.chronon");
        Parent {
            test: test.to_owned(),
            choice,
            seed,
            dir,
            path,
            in_flight_max: 0,
            kill: 0,
        }
    }

    fn run(mut self) {
        let started = Instant::now();
        self.format();
        let mut rng = Rng::new(self.seed);
        let mut acked = Acked::default();
        let mut stats = Stats::default();
        for kill in 0..KILLS {
            self.kill = kill;
            let delay = KILL_DELAY_MS_MIN + rng.below(KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN + 1);
            let acks = self.run_child(acked.max(), rng.next_u64(), Duration::from_millis(delay));
            stats.acks += acks.len();
            stats.kills_before_any_ack += usize::from(acks.is_empty());
            if let Err(error) = acked.extend(&acks) {
                self.fail(&error);
            }
            let report = self.check_inspect(&acked);
            stats.torn_slots += report.analysis.truncated.len();
            stats.copy_repairs += report.analysis.copy_repairs.len();
            if kill % 2 == 0 {
                self.check_recovered(&acked);
            }
        }
        self.check_recovered(&acked);
        eprintln!(
            "{}: {KILLS} kills, {} ops acknowledged (ring of {SLOT_COUNT} wrapped {} times), {} \
             kills before any ACK, recovery saw {} torn slots and {} copies to rewrite, {:.1} s",
            self.test,
            stats.acks,
            acked.max() / u64::from(SLOT_COUNT),
            stats.kills_before_any_ack,
            stats.torn_slots,
            stats.copy_repairs,
            started.elapsed().as_secs_f64()
        );
        // Without wraps the test would not exercise slot reuse; fail loudly rather than pass
        // vacuously on a machine too slow for the kill delays.
        assert!(
            acked.max() > 4 * u64::from(SLOT_COUNT),
            "{}: the ring wrapped too rarely",
            self.test
        );
    }

    fn fail(&self, message: &str) -> ! {
        panic!(
            "{} (disk {}, seed {}, kill {}): {message}\ndata file kept at {} (try `chronon \
             inspect {}`)",
            self.test,
            disk_name(self.choice),
            self.seed,
            self.kill,
            self.path.display(),
            self.dir.path.display()
        )
    }

    fn format(&mut self) {
        let params = FormatParams {
            cluster: ClusterId(0xc4a5),
            shard: ShardId(0),
            replica: ReplicaIndex(0),
            replica_count: 1,
            config: LogConfig {
                slot_count: SLOT_COUNT,
                slot_size: SLOT_SIZE,
                checkpoint_size: 64 * 1024,
            },
        };
        let size = Layout::new(params.config).total_size();
        chronon_disk::create_data_file(&self.path, size).expect("create the data file");
        let mut disk = open_disk(&self.path, self.choice);
        Journal::format(&mut disk, &params).expect("format");
        let (journal, report) = Journal::open(disk).expect("open the fresh log");
        assert!(report.is_clean());
        self.in_flight_max = journal.in_flight_max();
        assert!(
            self.in_flight_max < u64::from(SLOT_COUNT),
            "the window below needs this"
        );
    }

    /// Starts a child, kills it after `delay`, and returns the ACKs it printed.
    fn run_child(&self, acked_max: u64, seed: u64, delay: Duration) -> Acks {
        let stderr_path = self.dir.path.join("child-stderr.log");
        let stderr = File::create(&stderr_path).expect("child stderr file");
        let mut child = Command::new(std::env::current_exe().expect("test binary path"))
            .args([
                self.test.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_CHILD, &self.test)
            .env(ENV_CHILD_PATH, &self.path)
            .env(ENV_CHILD_DISK, disk_name(self.choice))
            .env(ENV_CHILD_ACKED, acked_max.to_string())
            .env(ENV_CHILD_SEED, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the child");
        let acks = read_acks_in_background(child.stdout.take().expect("piped stdout"));
        std::thread::sleep(delay);
        // Child::kill sends SIGKILL: no destructor, no flush, no chance to finish a round.
        child.kill().expect("kill the child");
        let status = wait_with_timeout(&mut child, CHILD_EXIT_TIMEOUT)
            .unwrap_or_else(|| self.fail("the killed child did not exit"));
        if status.signal() != Some(libc::SIGKILL) {
            let mut log = String::new();
            let _ = File::open(&stderr_path).and_then(|mut f| f.read_to_string(&mut log));
            self.fail(&format!(
                "the child ended with {status} before the kill:\n{log}"
            ));
        }
        match acks.recv_timeout(CHILD_EXIT_TIMEOUT) {
            Ok(Ok(acks)) => acks,
            Ok(Err(error)) => self.fail(&error),
            Err(_) => self.fail("the child's stdout did not close"),
        }
    }

    /// Checks the file as the crash left it, without writing: what any recovery would see.
    fn check_inspect(&self, acked: &Acked) -> RecoveryReport {
        let mut disk = open_disk(&self.path, self.choice);
        let report = Journal::inspect(&mut disk).expect("inspect after the kill");
        let recovered = self.recovered(&report);
        for header in &recovered.headers {
            // The scan verified the on-disk body against `checksum_body`; this pins the body.
            if header.checksum_body != Checksum::of_body(&expected_body(header.op.0)) {
                self.fail(&format!(
                    "op {} holds a body that was never appended",
                    header.op
                ));
            }
        }
        self.check_log(&recovered, acked);
        report
    }

    /// Opens (recovers) the log and reads every entry back.
    fn check_recovered(&self, acked: &Acked) {
        let disk = open_disk(&self.path, self.choice);
        let (mut journal, report) = Journal::open(disk).expect("recover after the kill");
        let recovered = self.recovered(&report);
        if journal.durable_op().0 != recovered.head {
            self.fail("after recovery, durable_op is not the recovered head");
        }
        for (op, expected) in (recovered.op_min..=recovered.head).zip(&recovered.headers) {
            let entry = journal
                .read(Op(op))
                .unwrap_or_else(|e| self.fail(&format!("read: {e}")));
            if entry.header != *expected || entry.body != expected_body(op) {
                self.fail(&format!(
                    "op {op} reads back different from what recovery found"
                ));
            }
        }
        self.check_log(&recovered, acked);
    }

    /// The recovered range, failing on any damage recovery reports.
    fn recovered(&self, report: &RecoveryReport) -> Recovered {
        let analysis = &report.analysis;
        if !analysis.faulty.is_empty() || analysis.chain_break.is_some() {
            self.fail(&format!(
                "recovery found damage: faulty {:?}, chain break {:?}",
                analysis.faulty, analysis.chain_break
            ));
        }
        let head = analysis
            .head
            .unwrap_or_else(|| self.fail("the log is empty"))
            .0;
        let layout = Layout::new(report.superblock.config);
        let headers = (analysis.op_min.0..=head)
            .map(|op| {
                analysis.headers[layout.slot_of(Op(op))]
                    .filter(|header| header.op == Op(op))
                    .unwrap_or_else(|| self.fail(&format!("op {op} is in range but not held")))
            })
            .collect();
        Recovered {
            op_min: analysis.op_min.0,
            head,
            headers,
        }
    }

    /// The properties every recovered log must have, whichever way it was read.
    fn check_log(&self, recovered: &Recovered, acked: &Acked) {
        for pair in recovered.headers.windows(2) {
            if pair[1].parent != pair[0].checksum {
                self.fail(&format!("the chain breaks at op {}", pair[1].op));
            }
        }
        for header in &recovered.headers {
            if acked
                .ops
                .get(&header.op.0)
                .is_some_and(|&checksum| checksum != header.checksum)
            {
                self.fail(&format!(
                    "op {} differs from the acknowledged entry",
                    header.op
                ));
            }
        }
        // A child appends op y only after acknowledging every op up to its durable point, and
        // the journal refuses y beyond that point + in_flight_max. So no op above
        // acked_max + in_flight_max was ever written, and an acknowledged op x can have been
        // overwritten (by x + k * slot_count, k >= 1) only if
        // x <= acked_max + in_flight_max - slot_count. Every acknowledged op above that must
        // be in the log.
        let slot_count = u64::from(SLOT_COUNT);
        let written_max = acked.max() + self.in_flight_max;
        if recovered.head > written_max {
            self.fail(&format!(
                "head {} is beyond any op written ({written_max})",
                recovered.head
            ));
        }
        let safe_from = (written_max + 1).saturating_sub(slot_count);
        for (&op, _) in acked.ops.range(safe_from..) {
            if op < recovered.op_min || op > recovered.head {
                self.fail(&format!(
                    "acknowledged op {op} is missing: the log holds {}..={}",
                    recovered.op_min, recovered.head
                ));
            }
        }
    }
}

/// Collects the child's complete `ACK` lines until its stdout closes. A line cut short by the
/// kill has no newline and is ignored: its op was not acknowledged as far as anyone knows.
fn read_acks_in_background(stdout: ChildStdout) -> mpsc::Receiver<Result<Acks, String>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut acks = Vec::new();
        let mut line = String::new();
        let result = loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break Ok(acks),
                Ok(_) if !line.ends_with('\n') => break Ok(acks),
                Ok(_) => match parse_ack(&line) {
                    Ok(Some(ack)) => acks.push(ack),
                    Ok(None) => {}
                    Err(error) => break Err(error),
                },
                Err(error) => break Err(format!("reading the child's stdout: {error}")),
            }
        };
        let _ = sender.send(result);
    });
    receiver
}

/// Parses `ACK <op> <checksum>`; other lines (the test harness's own) are skipped.
fn parse_ack(line: &str) -> Result<Option<(u64, Checksum)>, String> {
    let Some(rest) = line.strip_prefix("ACK ") else {
        return Ok(None);
    };
    let mut parts = rest.split_whitespace();
    let op = parts.next().and_then(|op| op.parse().ok());
    let checksum = parts.next().and_then(|c| u128::from_str_radix(c, 16).ok());
    match (op, checksum) {
        (Some(op), Some(checksum)) => Ok(Some((op, Checksum(checksum)))),
        _ => Err(format!("malformed ACK line {line:?}")),
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}
