//! `Checksum::of` (BLAKE3 truncated to 128 bits) and `Checksum::of_body` (the same over a body
//! zero-padded to whole groups of four chunks) at the sizes the log hashes: a 128 B body, the
//! 3968 B body of a 4 KiB entry, a whole 4 KiB and a 64 KiB slot. Every append hashes its body
//! and its header, and recovery hashes every entry it reads, so this bounds both.
//!
//! 3968 B sits next to 4096 B on purpose: BLAKE3 hashes whole 1 KiB chunks in parallel only in
//! groups of four or more, so unpadded, a body a little short of 4 KiB costs far more than a
//! full 4 KiB. `checksum/body/3968B` shows what the padding buys.

use std::hint::black_box;
use std::time::Duration;

use chronon_bench::body;
use chronon_engine::Checksum;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Input sizes in bytes.
const SIZES: [usize; 4] = [128, 4096 - 128, 4096, 64 * 1024];

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for size in SIZES {
        let bytes = body(size, 0xc4ec);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| Checksum::of(black_box(&bytes)));
        });
        group.bench_function(format!("body/{size}B"), |b| {
            b.iter(|| Checksum::of_body(black_box(&bytes)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Hashing is CPU-bound and stable: short runs are enough on a 2-vCPU machine.
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = checksum
}
criterion_main!(benches);
