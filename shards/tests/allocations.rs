//! Counts heap allocations per request on a running node, on each network path, with a
//! counting global allocator: one process, one replica, one shard, and one RESP client that
//! pipelines 16 commands at a time from buffers built before counting starts.
//!
//! What it proves: a command answered by the node itself (`PING`) costs the I/O driver and the
//! RESP front end almost nothing (receive buffers, parse ranges, reply and send buffers are all
//! reused), so the path from the socket to the parser and back allocates nothing per request.
//! `SET` and `GET` go through the log, and the test prints what they cost, so that the figure
//! can be followed; its bound on them is only a tripwire against a per-request blowup, not a
//! target (the remaining allocations are in the engine's replica and state, and in the RESP
//! plan and merge: see docs/ARCHITECTURE.md, "The path of one request").

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chronon_disk::DiskChoice;
use chronon_engine::log::{FormatParams, Journal, Layout as LogLayout, LogConfig};
use chronon_engine::{ClusterId, ReplicaIndex, ShardId};
use chronon_net::Topology;
use chronon_shards::{IoChoice, Node, NodeConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PIPELINE: usize = 16;
const KEYS: usize = 1000;
const VALUE: &str = "0123456789abcdef";

fn free_base() -> u16 {
    let mut candidate = 30_000 + (std::process::id() % 1_000) as u16 * 20;
    loop {
        if (candidate..candidate + 3).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return candidate;
        }
        candidate += 7;
    }
}

fn format(path: &Path, cluster: ClusterId) {
    let config = LogConfig {
        slot_count: 1024,
        slot_size: 8192,
        checkpoint_size: 1 << 20,
    };
    chronon_disk::create_data_file(path, LogLayout::new(config).total_size()).expect("create");
    let (mut disk, _) = chronon_disk::open(path, DiskChoice::Auto).expect("open");
    Journal::format(
        &mut disk,
        &FormatParams {
            cluster,
            shard: ShardId(0),
            replica: ReplicaIndex(0),
            replica_count: 1,
            config,
        },
    )
    .expect("format");
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    bytes
}

/// Pipelined batches of one command kind over every key, with the reply size of each batch.
fn batches(kind: &str) -> (Vec<Vec<u8>>, usize) {
    let mut batches = Vec::new();
    for start in (0..KEYS).step_by(PIPELINE) {
        let mut batch = Vec::new();
        for k in start..start + PIPELINE {
            let key = format!("key:{:04}", k % KEYS);
            batch.extend(match kind {
                "SET" => command(&["SET", &key, VALUE]),
                "GET" => command(&["GET", &key]),
                _ => command(&["PING"]),
            });
        }
        batches.push(batch);
    }
    let reply = match kind {
        "SET" => "+OK\r\n".len(),
        "GET" => format!("${}\r\n{VALUE}\r\n", VALUE.len()).len(),
        _ => "+PONG\r\n".len(),
    };
    (batches, reply * PIPELINE)
}

/// Runs every batch once; allocations per command.
fn run(stream: &mut TcpStream, batches: &[Vec<u8>], reply_len: usize) -> f64 {
    let mut reply = vec![0u8; reply_len];
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for batch in batches {
        stream.write_all(batch).expect("write");
        stream.read_exact(&mut reply).expect("read");
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    // Counts far below 2^52: the conversions are exact.
    let (allocations, requests) = (after - before, batches.len() * PIPELINE);
    f64::from(u32::try_from(allocations).expect("count fits"))
        / f64::from(u32::try_from(requests).expect("count fits"))
}

fn measure(io: IoChoice) -> [(&'static str, f64); 3] {
    let dir =
        std::env::temp_dir().join(format!("chronon-allocations-{}-{io:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("shard-000.chronon");
    let cluster = ClusterId(99);
    format(&file, cluster);
    let base = SocketAddr::from(([127, 0, 0, 1], free_base()));
    let topology = Topology::new(cluster, 1, vec![base]).expect("topology");
    let resp = topology.resp_addr(ReplicaIndex(0), ShardId(0));
    let node = Node::start(&NodeConfig {
        topology,
        host: ReplicaIndex(0),
        data_files: vec![file],
        disk: DiskChoice::Auto,
        io,
        sinks: chronon_shards::Sinks::default(),
        checkpoint_interval: None,
        pin: false,
    })
    .expect("node starts");
    let mut stream = TcpStream::connect(resp).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .expect("timeout");
    let mut results = [("PING", 0.0), ("SET", 0.0), ("GET", 0.0)];
    for (kind, per_request) in &mut results {
        let (batches, reply_len) = batches(kind);
        // Twice: the first pass warms up (a registered session, grown buffers, a populated
        // store), the second is counted.
        run(&mut stream, &batches, reply_len);
        *per_request = run(&mut stream, &batches, reply_len);
    }
    drop(stream);
    node.request_stop();
    node.wait().expect("node stops");
    let _ = std::fs::remove_dir_all(&dir);
    results
}

#[test]
fn allocations_per_request() {
    for io in [IoChoice::Uring, IoChoice::Epoll] {
        if io == IoChoice::Uring && chronon_shards::io::resolve(io).is_err() {
            eprintln!("skipping io_uring: unavailable here");
            continue;
        }
        let results = measure(io);
        for (kind, per_request) in results {
            eprintln!("{io:?} {kind}: {per_request:.2} allocations per request");
        }
        let [(_, ping), (_, set), (_, get)] = results;
        // One: the `+PONG` reply's string (`RespValue::Simple`).
        assert!(
            ping < 1.5,
            "{io:?}: PING allocates {ping:.2} times per request"
        );
        assert!(
            set < 256.0,
            "{io:?}: SET allocates {set:.2} times per request"
        );
        assert!(
            get < 256.0,
            "{io:?}: GET allocates {get:.2} times per request"
        );
    }
}
