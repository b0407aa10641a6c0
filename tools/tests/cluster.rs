//! Three real `chronon start` processes on loopback, two shards each: writes through the native
//! client and through RESP, a SIGKILL of the process holding a primary, writes continuing after
//! the view change, the restart catching up, every acknowledged write readable, and equal state
//! hashes across the replicas. The test runs twice, once per network path: on `io_uring`
//! (`--io uring`), with one of the three processes at `RLIMIT_MEMLOCK` 0 so that it takes both
//! fallbacks (the sync disk and the epoll network path) and must say so; and with every process
//! forced onto the epoll path (`--io epoll`).

mod common;

use std::time::Duration;

use chronon_net::client::{Client, ClientConfig};
use chronon_net::resp::RespValue;
use common::cluster::{Cluster, field, resp_session, resp_until_ok};

const SHARDS: u16 = 2;
const CLUSTER: u64 = 77;

/// Which network path the processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// `--io uring`, except replica 2, which runs `--io auto` without lockable memory.
    Uring,
    /// `--io epoll` everywhere.
    Epoll,
}

/// Starts host `replica` on `path`. On the `io_uring` path, replica 2 runs with no lockable
/// memory: `io_uring` is refused, and the node must fall back to the sync disk and the epoll
/// network path, and say so.
fn start(cluster: &mut Cluster, path: Path, replica: usize) {
    let starved = path == Path::Uring && replica == 2;
    let (prefix, io): (&[&str], &str) = match (path, starved) {
        (Path::Uring, true) => (&["prlimit", "--memlock=0"], "auto"),
        (Path::Uring, false) => (&[], "uring"),
        (Path::Epoll, _) => (&[], "epoll"),
    };
    cluster.start_with(replica, prefix, &["--io", io]);
}

#[test]
fn three_processes_survive_a_primary_kill_on_io_uring() {
    three_processes_survive_a_primary_kill(Path::Uring, 0);
}

#[test]
fn three_processes_survive_a_primary_kill_on_epoll() {
    three_processes_survive_a_primary_kill(Path::Epoll, 2);
}

fn three_processes_survive_a_primary_kill(path: Path, salt: u16) {
    let name = format!("cluster-{path:?}");
    let mut cluster = Cluster::format(&name, CLUSTER, SHARDS, salt);
    for replica in 0..3 {
        start(&mut cluster, path, replica);
    }
    let mut config = ClientConfig::new(cluster.topology.clone());
    config.call_timeout = Duration::from_mins(1);
    let mut client = Client::new(config).expect("client");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut write = |client: &mut Client, cluster: &Cluster, round: &str, n: usize| {
        for i in 0..n {
            let (key, value) = (format!("native-{round}-{i}"), format!("v{i}-{round}"));
            client
                .put(key.as_bytes(), value.as_bytes())
                .expect("native put");
            acknowledged.push((key, value));
            let (key, value) = (format!("resp-{round}-{i}"), format!("r{i}-{round}"));
            let shard = chronon_net::key_shard(key.as_bytes(), SHARDS).0;
            let reply = resp_until_ok(cluster, shard, &["SET", &key, &value]);
            assert_eq!(reply, RespValue::Simple("OK".to_owned()));
            acknowledged.push((key, value));
        }
    };
    write(&mut client, &cluster, "before", 40);

    // Kill the process holding shard 0's primary; writes to both shards must go on.
    let victim = cluster.primary_host(0);
    cluster.kill(victim);
    write(&mut client, &cluster, "during", 40);
    let new_primary = cluster.primary_host(0);
    assert_ne!(new_primary, victim, "shard 0 did not change primary");

    // The killed process restarts and catches up.
    start(&mut cluster, path, victim);
    write(&mut client, &cluster, "after", 20);

    for (key, value) in &acknowledged {
        let got = client.get(key.as_bytes()).expect("native get");
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "native read of {key}"
        );
        let shard = chronon_net::key_shard(key.as_bytes(), SHARDS).0;
        let reply = resp_until_ok(&cluster, shard, &["GET", key]);
        assert_eq!(
            reply,
            RespValue::Bulk(value.clone().into_bytes()),
            "RESP read of {key}"
        );
    }

    assert_converged(&cluster);
    check_paths(&cluster, path);
    check_stale_reads(&cluster, &acknowledged);
    cluster.remove();
}

/// Every replica of each shard reaches the same executed op with the same state hash.
fn assert_converged(cluster: &Cluster) {
    for shard in 0..SHARDS {
        cluster.converge(shard, &["chronon_executed", "chronon_state_hash"]);
    }
}

/// `READONLY` reads from a backup's own state: once the replicas have converged, a backup
/// answers every acknowledged key; after `READWRITE` reads go through the log again.
fn check_stale_reads(cluster: &Cluster, acknowledged: &[(String, String)]) {
    for shard in 0..SHARDS {
        let backup = (cluster.primary_host(shard) + 1) % 3;
        let address = cluster.resp_addr(backup, shard);
        for (key, value) in acknowledged {
            if chronon_net::key_shard(key.as_bytes(), SHARDS).0 != shard {
                continue;
            }
            let replies = resp_session(
                address,
                &[&["READONLY"], &["GET", key], &["READWRITE"], &["GET", key]],
            )
            .expect("the backup answers");
            let ok = RespValue::Simple("OK".to_owned());
            let value = RespValue::Bulk(value.clone().into_bytes());
            assert_eq!(replies, [ok.clone(), value.clone(), ok, value], "{key}");
        }
    }
}

/// Each process runs the network path and disk it was meant to, and the starved one says why.
fn check_paths(cluster: &Cluster, path: Path) {
    for host in 0..3 {
        let fields = cluster.info(host, 0).expect("INFO answers");
        let starved = path == Path::Uring && host == 2;
        let io = if path == Path::Uring && !starved {
            "uring"
        } else {
            "epoll"
        };
        assert_eq!(
            field(&fields, "chronon_io"),
            io,
            "host {host}'s network path"
        );
        if starved {
            assert_eq!(field(&fields, "chronon_disk"), "sync", "host {host}'s disk");
        }
    }
    if path == Path::Uring {
        let log = cluster.log(2);
        for warning in [
            "falling back to the sync disk",
            "falling back to the epoll network path",
        ] {
            assert!(
                log.contains(warning),
                "replica 2 ran without lockable memory but did not say {warning:?}:\n{log}"
            );
        }
    }
}

// Logs of 32 slots (a window of 16 ops beyond the checkpoint, a checkpoint every 4 ops) under
// hundreds of writes: every ring wraps many times and the nodes keep serving, so checkpoints
// are written and the log is reclaimed. A backup is killed while the others write on far past
// its log (their rings reuse every slot it would need), restarted, and must catch up by state
// transfer: every acknowledged write is readable and all replicas agree on the state hash.
#[test]
fn wrapping_logs_keep_running_and_a_restart_catches_up_by_state_transfer() {
    let mut cluster = Cluster::format_with("wrap", CLUSTER, SHARDS, 3, 32);
    for replica in 0..3 {
        cluster.start(replica);
    }
    let mut config = ClientConfig::new(cluster.topology.clone());
    config.call_timeout = Duration::from_mins(1);
    let mut client = Client::new(config).expect("client");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut write = |client: &mut Client, round: &str, n: usize| {
        for i in 0..n {
            // A few keys rewritten often, so the state stays small while the log runs on.
            let (key, value) = (format!("wrap-{}", i % 16), format!("{round}-{i}"));
            client
                .put(key.as_bytes(), value.as_bytes())
                .expect("native put");
            acknowledged.retain(|(k, _)| *k != key);
            acknowledged.push((key, value));
        }
    };
    write(&mut client, "first", 200);
    let victim = (cluster.primary_host(0) + 1) % 3;
    cluster.kill(victim);
    write(&mut client, "without", 300);
    cluster.start(victim);
    write(&mut client, "after", 100);
    // The logs were reclaimed behind checkpoints far past a whole ring.
    let fields = cluster
        .info(cluster.primary_host(0), 0)
        .expect("primary answers INFO");
    let base: u64 = field(&fields, "chronon_log_base")
        .parse()
        .expect("a log base");
    assert!(
        base > 64,
        "the primary's log was not reclaimed: base {base}"
    );
    for (key, value) in &acknowledged {
        let got = client.get(key.as_bytes()).expect("native get");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "read of {key}");
    }
    assert_converged(&cluster);
    let transfers: u64 = (0..SHARDS)
        .filter_map(|shard| cluster.info(victim, shard))
        .map(|f| {
            field(&f, "chronon_state_transfers")
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        transfers > 0,
        "the restarted replica caught up without a state transfer"
    );
    cluster.remove();
}
