//! The pipelined append loop the log benches time: append a batch, flush it, and keep at most
//! [`PIPELINE_DEPTH`] batches in flight, waiting for the oldest to become durable before the
//! next batch starts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chronon_engine::Op;
use chronon_engine::disk::VirtualDisk;
use chronon_engine::log::{EntryMeta, Journal, JournalError};

use crate::{EntryShape, Latencies, PIPELINE_DEPTH, bench_meta, body};

/// Drives a journal with batches of one shape. Batches still in flight when a timed call
/// returns stay in flight into the next call, so every call measures the steady state rather
/// than a pipeline that fills and drains; [`AppendDriver::drain`] empties it at the end.
#[derive(Debug)]
pub struct AppendDriver {
    meta: EntryMeta,
    body: Vec<u8>,
    entries_per_batch: usize,
    /// Batches allowed in flight: [`PIPELINE_DEPTH`] unless a diagnosis asks for another.
    depth: usize,
    /// The last op of each batch in flight, and when that batch's first append started.
    pending: VecDeque<(Op, Instant)>,
    batches_done: u64,
}

impl AppendDriver {
    #[must_use]
    pub fn new(shape: EntryShape, entries_per_batch: usize) -> AppendDriver {
        AppendDriver::with_depth(shape, entries_per_batch, PIPELINE_DEPTH)
    }

    /// A driver keeping up to `depth` batches in flight.
    #[must_use]
    pub fn with_depth(shape: EntryShape, entries_per_batch: usize, depth: usize) -> AppendDriver {
        assert!(entries_per_batch > 0);
        assert!(depth > 0);
        AppendDriver {
            meta: bench_meta(),
            body: body(shape.body_len, 0x5eed),
            entries_per_batch,
            depth,
            pending: VecDeque::with_capacity(depth),
            batches_done: 0,
        }
    }

    /// Batches whose last op the journal has reported durable.
    #[must_use]
    pub fn batches_done(&self) -> u64 {
        self.batches_done
    }

    /// Starts `batches` batches and returns the time taken. Each batch's latency, from its
    /// first append until the journal reports its last op durable, goes into `latencies`.
    pub fn run<D: VirtualDisk>(
        &mut self,
        journal: &mut Journal<D>,
        batches: u64,
        latencies: &mut Latencies,
    ) -> Result<Duration, JournalError> {
        let start = Instant::now();
        for _ in 0..batches {
            let batch_start = Instant::now();
            for _ in 0..self.entries_per_batch {
                journal.append(&self.meta, &self.body)?;
            }
            journal.flush()?;
            self.pending.push_back((journal.head().op, batch_start));
            self.retire(journal, self.depth - 1, latencies)?;
        }
        Ok(start.elapsed())
    }

    /// Waits until every batch in flight is durable.
    pub fn drain<D: VirtualDisk>(
        &mut self,
        journal: &mut Journal<D>,
        latencies: &mut Latencies,
    ) -> Result<(), JournalError> {
        self.retire(journal, 0, latencies)
    }

    /// Records the batches the journal has made durable, waiting for I/O until at most `keep`
    /// remain in flight.
    fn retire<D: VirtualDisk>(
        &mut self,
        journal: &mut Journal<D>,
        keep: usize,
        latencies: &mut Latencies,
    ) -> Result<(), JournalError> {
        journal.poll()?;
        loop {
            while let Some(&(last, started)) = self.pending.front()
                && journal.durable_op() >= last
            {
                latencies.record(started.elapsed());
                self.pending.pop_front();
                self.batches_done += 1;
            }
            if self.pending.len() <= keep {
                return Ok(());
            }
            journal.wait()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use chronon_engine::disk::MemoryDisk;
    use chronon_engine::log::{Journal, Layout, LogConfig};

    use super::*;
    use crate::format_params;

    // Drives a memory journal through more batches than the ring holds and checks that every
    // batch was retired, every entry is durable, and one latency was recorded per batch.
    #[test]
    fn every_batch_becomes_durable() {
        let config = LogConfig {
            slot_count: 64,
            slot_size: 4096,
            checkpoint_size: 64 * 1024,
        };
        let mut disk = MemoryDisk::new(Layout::new(config).total_size());
        Journal::format(&mut disk, &format_params(config)).expect("format");
        let (mut journal, _) = Journal::open(disk).expect("open");
        let mut driver = AppendDriver::new(EntryShape::SECTOR, 16);
        let mut latencies = Latencies::new();
        driver.run(&mut journal, 7, &mut latencies).expect("run");
        driver.run(&mut journal, 5, &mut latencies).expect("run");
        driver.drain(&mut journal, &mut latencies).expect("drain");
        assert_eq!(driver.batches_done(), 12);
        assert_eq!(latencies.count(), 12);
        assert_eq!(journal.durable_op(), Op(12 * 16));
        assert!(journal.is_idle());
    }
}
