//! Per-batch latencies and their percentiles (nearest rank), reported as p50, p99, p99.9 and
//! max rather than a mean, which hides the stalls a durable log cares about.

use std::time::Duration;

/// Samples kept per bench. At one sample per batch this covers a minute of the fastest bench;
/// samples beyond it are counted but not kept, so recording never allocates.
pub const LATENCY_SAMPLES_MAX: usize = 1 << 18;

/// Recorded latencies, in nanoseconds.
#[derive(Clone, Debug)]
pub struct Latencies {
    samples_ns: Vec<u64>,
    dropped: u64,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

impl Latencies {
    #[must_use]
    pub fn new() -> Latencies {
        Latencies {
            samples_ns: Vec::with_capacity(LATENCY_SAMPLES_MAX),
            dropped: 0,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        if self.samples_ns.len() < LATENCY_SAMPLES_MAX {
            self.samples_ns
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        } else {
            self.dropped += 1;
        }
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.samples_ns.len() as u64 + self.dropped
    }

    /// Summarises the samples. `None` when nothing was recorded.
    #[must_use]
    pub fn percentiles(&self) -> Option<PercentilesNs> {
        if self.samples_ns.is_empty() {
            return None;
        }
        let mut sorted = self.samples_ns.clone();
        sorted.sort_unstable();
        let rank = |permille: usize| {
            // Nearest rank: the smallest sample with at least `permille`/1000 of all samples at
            // or below it.
            let index = (sorted.len() * permille).div_ceil(1000).max(1) - 1;
            sorted[index]
        };
        Some(PercentilesNs {
            p50: rank(500),
            p99: rank(990),
            p999: rank(999),
            max: *sorted.last().expect("invariant: checked non-empty above"),
        })
    }
}

/// Latency percentiles, in nanoseconds as the type's name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PercentilesNs {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Nearest-rank percentiles on 1..=1000 ns land exactly on the rank, and a single sample is
    // every percentile.
    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::new();
        assert_eq!(latencies.percentiles(), None);
        for ns in (1..=1000u64).rev() {
            latencies.record(Duration::from_nanos(ns));
        }
        let p = latencies.percentiles().expect("samples recorded");
        assert_eq!(p.p50, 500);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
        let mut one = Latencies::new();
        one.record(Duration::from_nanos(7));
        assert_eq!(one.percentiles().map(|p| p.p999), Some(7));
        assert_eq!(one.count(), 1);
    }
}
