//! A rate limit shared by every process that maps one region: the
//! generic cell rate algorithm over one header word.
//!
//! The word holds the *theoretical arrival time* (TAT) of the next call, in
//! nanoseconds of `CLOCK_MONOTONIC` (one clock for every process on the
//! machine). A call reserves its slot with one compare-and-swap, moving the
//! TAT on by one interval, and is told how long to wait for it. Callers
//! are served in the order they reserve, whichever process they are in,
//! and over any window of `w` seconds at most `rate × w + burst` calls
//! start.

use std::time::Duration;

use crate::UserWord;

/// A shared rate limit: `burst` calls at once, then one per `interval`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    word: UserWord,
    interval: u64,
    /// How far ahead of the TAT a call may start: `(burst - 1) × interval`.
    tolerance: u64,
}

/// Nanoseconds of `CLOCK_MONOTONIC`: the same clock in every process.
pub fn monotonic_nanos() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    (t.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec() as u64)
}

impl RateLimiter {
    /// A limiter over `word`, shared by everyone who maps its region:
    /// one call per `interval`, `burst` (at least 1) at once.
    pub fn new(word: UserWord, interval: Duration, burst: u32) -> RateLimiter {
        let interval = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        RateLimiter {
            word,
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1)) - 1),
        }
    }

    /// Reserves the next call's slot: how long to wait before making it
    /// (zero when it may go now).
    pub fn reserve(&self) -> Duration {
        self.reserve_at(monotonic_nanos())
    }

    /// [`RateLimiter::reserve`] at time `now` (nanoseconds of the shared
    /// clock).
    pub fn reserve_at(&self, now: u64) -> Duration {
        let mut tat = self.word.load();
        loop {
            // The call goes at `start`: now, or as soon as the TAT is
            // within the burst's tolerance; the TAT moves one interval on
            // from the later of the two.
            let start = now.max(tat.saturating_sub(self.tolerance));
            let next = tat.max(now).saturating_add(self.interval);
            match self.word.compare_exchange(tat, next) {
                Ok(_) => return Duration::from_nanos(start - now),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Region;

    fn limiter(interval_ms: u64, burst: u32) -> (Region, RateLimiter) {
        let region = Region::create_private(&[crate::MIN_CAPACITY]).unwrap();
        let word = region.user_word(0).unwrap();
        let l = RateLimiter::new(word, Duration::from_millis(interval_ms), burst);
        (region, l)
    }

    #[test]
    fn calls_are_spaced_one_interval_apart_after_the_burst() {
        let (_r, l) = limiter(100, 3);
        let now = 10_000_000_000;
        let waits: Vec<u64> = (0..6)
            .map(|_| l.reserve_at(now).as_millis() as u64)
            .collect();
        // Three at once, then one per 100 ms.
        assert_eq!(waits, [0, 0, 0, 100, 200, 300]);
        // An idle limiter refills: long after, the burst is back.
        let later = now + 10_000_000_000;
        assert_eq!(l.reserve_at(later), Duration::ZERO);
        assert_eq!(l.reserve_at(later), Duration::ZERO);
    }

    #[test]
    fn threads_sharing_a_word_never_start_more_than_the_rate_allows() {
        let (_r, l) = limiter(1, 2);
        let now = 5_000_000_000;
        let starts = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..250 {
                        let w = l.reserve_at(now);
                        starts.lock().unwrap().push(now + w.as_nanos() as u64);
                    }
                });
            }
        });
        let mut starts = starts.into_inner().unwrap();
        starts.sort_unstable();
        // 1,000 calls: every window of 10 ms holds at most 10 + 2 - 1.
        for (i, &t) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .take_while(|&&u| u < t + 10_000_000)
                .count();
            assert!(within <= 11, "{within} calls within 10 ms of {t}");
        }
        assert_eq!(*starts.last().unwrap() - now, 998_000_000);
    }
}
