//! The reconnect schedule of a replica link: exponential backoff with jitter, capped.
//!
//! Attempt `n` (from 0) waits a delay drawn uniformly from `[ceiling / 2, ceiling]`, where
//! `ceiling = min(delay_max, delay_min * 2^n)`. The jitter keeps the hosts of a restarted
//! cluster from dialing each other in lockstep; the cap keeps a peer that comes back from
//! waiting long. The schedule is pure: the caller supplies the seed and adds the delay to its
//! own clock.

use std::time::Duration;

use chronon_engine::rng::Rng;

#[derive(Clone, Debug)]
pub struct Backoff {
    delay_min: Duration,
    delay_max: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    #[must_use]
    pub fn new(delay_min: Duration, delay_max: Duration, seed: u64) -> Backoff {
        assert!(!delay_min.is_zero());
        assert!(delay_min <= delay_max);
        Backoff {
            delay_min,
            delay_max,
            attempt: 0,
            rng: Rng::new(seed),
        }
    }

    /// Failed attempts since the last [`Backoff::reset`].
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next attempt; counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        let half = ceiling / 2;
        let spread = u64::try_from(ceiling.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
        let delay = half + Duration::from_nanos(self.rng.below(spread.saturating_add(1)));
        self.attempt = self.attempt.saturating_add(1);
        assert!(delay <= self.delay_max);
        assert!(delay >= self.delay_min / 2);
        delay
    }

    /// Called once a connection completes its handshake: the next failure starts over.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn ceiling(&self) -> Duration {
        // 2^31 times any positive minimum already exceeds every useful maximum.
        let factor = 1u32 << self.attempt.min(31);
        self.delay_min
            .checked_mul(factor)
            .map_or(self.delay_max, |delay| delay.min(self.delay_max))
    }
}
