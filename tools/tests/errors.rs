//! What the real `chronon` binary says when something is wrong: wrong usage, an unformatted or
//! foreign data directory, a port in use, an unreachable cluster, a client with the wrong
//! cluster id, a peer that is down and a peer of another cluster. Each case runs the binary on
//! loopback and checks its exit status and its one error line (or, for a running node, its
//! log). Ports come from binding port 0; every wait is bounded and nothing asserts on timing.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

const CLUSTER: u64 = 7;
/// The longest any one command here may run before the test gives up on it.
const COMMAND_DEADLINE: Duration = Duration::from_mins(1);

fn chronon() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronon"));
    command.stdin(Stdio::null());
    command
}

/// Runs a command to its end, killing it if it outlives `COMMAND_DEADLINE`.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chronon runs");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            panic!("{command:?} still ran after {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs a command that must fail with `status` and print exactly one error line, which must
/// contain every one of `needles`. Returns that line.
fn fails_with(command: &mut Command, status: i32, needles: &[&str]) -> String {
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(status), "{command:?}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{command:?}: one error line, got: {stderr}"
    );
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "{command:?}: {needle:?} in {stderr}"
        );
    }
    errors[0].to_owned()
}

/// A base port whose `span` ports from it are all free now, found by binding port 0.
fn free_base(span: u16) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind port 0")
            .port();
        if port.checked_add(span).is_none() {
            continue;
        }
        let free = (port..port + span).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return port;
        }
    }
}

fn format(dir: &Path, cluster: u64, replica: u8) {
    let output = run(chronon()
        .arg("format")
        .arg("--data")
        .arg(dir)
        .args(["--cluster", &cluster.to_string()])
        .args(["--replica", &replica.to_string(), "--replicas", "2"])
        .args(["--shards", "1", "--slot-count", "64"]));
    assert!(output.status.success(), "format: {output:?}");
}

/// A `chronon start` that is killed when dropped, logging to a file.
struct Node {
    child: Child,
    log: std::path::PathBuf,
}

impl Node {
    fn start(data: &Path, addresses: &str, log: std::path::PathBuf) -> Node {
        let file = std::fs::File::create(&log).expect("log file");
        let child = chronon()
            .arg("start")
            .arg("--data")
            .arg(data)
            .args(["--addresses", addresses, "--disk", "sync"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("chronon start runs");
        Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every needle; panics after the deadline.
    fn wait_for_line(&mut self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            let exited = self.child.try_wait().expect("wait");
            assert!(
                exited.is_none() && start.elapsed() < COMMAND_DEADLINE,
                "no line with {needles:?} (exited: {exited:?}); log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Missing flags give one line naming them and the usage, with clap's status 2.
#[test]
fn wrong_usage_names_the_missing_flags() {
    fails_with(
        chronon().arg("start"),
        2,
        &["missing --data <DIR>", "usage: chronon start"],
    );
    fails_with(
        chronon().args(["kv", "get", "key"]),
        2,
        &[
            "missing --addresses",
            "--cluster <ID>",
            "usage: chronon kv get",
        ],
    );
}

// `chronon start` refuses a directory it cannot run from, each with its own line: missing,
// empty (never formatted), holding a file that is not a data file, formatted for another
// cluster, or for a cluster of another size than --addresses describes.
#[test]
fn start_refuses_unformatted_and_foreign_data_directories() {
    let dir = TempDir::new("errors-data");
    let base = free_base(6);
    let addresses = format!("127.0.0.1:{base},127.0.0.1:{}", base + 3);
    let start = |data: &Path| {
        let mut command = chronon();
        command
            .arg("start")
            .arg("--data")
            .arg(data)
            .args(["--addresses", &addresses]);
        command
    };
    let missing = dir.path.join("missing");
    fails_with(
        &mut start(&missing),
        1,
        &["does not exist", "chronon format"],
    );
    let empty = dir.path.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    fails_with(
        &mut start(&empty),
        1,
        &["holds no shard files", "chronon format"],
    );
    let junk = dir.path.join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("shard-000.chronon"), vec![0x5a; 64 * 1024]).expect("junk");
    fails_with(
        &mut start(&junk),
        1,
        &["no valid superblock", "chronon inspect"],
    );
    let data = dir.path.join("r0");
    format(&data, CLUSTER, 0);
    fails_with(
        start(&data).args(["--cluster", "8"]),
        1,
        &["belongs to cluster 7, not 8", "check --cluster"],
    );
    fails_with(
        chronon()
            .arg("start")
            .arg("--data")
            .arg(&data)
            .args(["--addresses", &format!("127.0.0.1:{base}")]),
        1,
        &["replica 0 of 2", "needs 2 addresses"],
    );
}

// A port of the node held by another socket: start exits non-zero naming the address and
// what to do.
#[test]
fn start_refuses_a_port_in_use() {
    let dir = TempDir::new("errors-port");
    let data = dir.path.join("r0");
    format(&data, CLUSTER, 0);
    let base = free_base(6);
    let _holder = TcpListener::bind(("127.0.0.1", base + 1)).expect("hold the native port");
    fails_with(
        chronon()
            .arg("start")
            .arg("--data")
            .arg(&data)
            .args(["--disk", "sync", "--addresses"])
            .arg(format!("127.0.0.1:{base},127.0.0.1:{}", base + 3)),
        1,
        &[
            &format!("cannot listen on 127.0.0.1:{}", base + 1),
            "another process holds this port",
        ],
    );
}

// A client pointed at addresses where nothing listens ends within its timeout with one line
// naming what it tried and saying nothing was sent.
#[test]
fn kv_reports_an_unreachable_cluster() {
    let base = free_base(3);
    fails_with(
        chronon()
            .args(["kv", "get", "key", "--cluster", "7", "--shards", "1"])
            .args(["--timeout", "2", "--addresses"])
            .arg(format!("127.0.0.1:{base}")),
        1,
        &[
            "could not connect",
            &format!("127.0.0.1:{}", base + 1),
            "nothing was sent",
        ],
    );
}

// One node of a two-host cluster, its peer down: it keeps running and warns about the
// unreachable peer once, not per retry; a client with the wrong cluster id is told at once
// which cluster the node belongs to; and when a node of another cluster comes up at the
// peer's address, the link is refused with a line naming both clusters.
#[test]
fn node_with_a_peer_down_a_wrong_cluster_client_and_a_foreign_peer() {
    let dir = TempDir::new("errors-cluster");
    let (r0, foreign) = (dir.path.join("r0"), dir.path.join("foreign"));
    format(&r0, CLUSTER, 0);
    format(&foreign, 8, 1);
    let base0 = free_base(6);
    let base1 = base0 + 3;
    let addresses = format!("127.0.0.1:{base0},127.0.0.1:{base1}");
    let mut node = Node::start(&r0, &addresses, dir.path.join("r0.log"));
    let peer = format!("address=127.0.0.1:{base1}");
    node.wait_for_line(&["replica link: cannot connect", &peer]);

    let line = fails_with(
        chronon()
            .args(["kv", "get", "key", "--cluster", "9", "--shards", "1"])
            .args(["--timeout", "30", "--addresses", &addresses]),
        1,
        &[&format!(
            "node 127.0.0.1:{} belongs to cluster 7, not cluster 9: check --cluster",
            base0 + 1
        )],
    );
    assert!(line.contains("nothing was executed"), "{line}");

    // Still running, and the down peer was reported once however often it was redialed.
    assert!(
        node.child.try_wait().expect("wait").is_none(),
        "{}",
        node.log()
    );
    let log = node.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("replica link: cannot connect") && l.contains(&peer))
        .count();
    assert_eq!(warnings, 1, "{log}");

    let _foreign = Node::start(&foreign, &addresses, dir.path.join("foreign.log"));
    node.wait_for_line(&[
        "peer replica 1 belongs to cluster 8, this node to cluster 7",
        "check --cluster",
    ]);
}
