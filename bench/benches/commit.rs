//! The VSR commit path in memory: three replicas in one thread, no disk, no network. Closed-loop
//! clients keep the pipeline full; each iteration runs a fixed number of puts through the group,
//! which commits, executes and answers all of them. Criterion reports client requests committed
//! per second at batch sizes (requests per prepare, at most) of 1, 64 and 1024. With one request
//! per prepare the cost is the protocol's per-prepare work (headers, checksums, messages); with
//! larger batches it spreads over the batch.
//!
//! `cargo bench -p chronon-bench --bench commit`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use chronon_bench::MemoryCluster;
use chronon_engine::constants::PIPELINE_MAX;

fn commit_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_path_3_replicas");
    group.sample_size(10);
    for batch in [1usize, 64, 1024] {
        // Enough clients to fill the pipeline with full batches.
        let clients = (batch * PIPELINE_MAX) as u64;
        let requests = (clients * 4).max(4096);
        let mut cluster = MemoryCluster::new(3, batch, clients);
        group.throughput(Throughput::Elements(requests));
        group.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.iter(|| cluster.run(requests));
        });
    }
    group.finish();
}

criterion_group!(benches, commit_path);
criterion_main!(benches);
