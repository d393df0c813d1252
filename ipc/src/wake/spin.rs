//! The spin phase of a wait, bounded by time rather than iterations.

use std::time::{Duration, Instant};

use super::WaitStrategy;

/// What one end of a ring learned about its waits: an average of how long
/// the recent ones took, from which the next spin's budget follows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Learned {
    /// Moving average (weight 1/4) of recent waits, a wait longer than
    /// [`WaitStrategy::spin_max`] counted as zero.
    average: Duration,
}

impl Learned {
    /// How long to spin before parking: twice the recent average, at least
    /// `wait.spin`, at most `wait.spin_max`.
    pub(crate) fn budget(&self, wait: &WaitStrategy) -> Duration {
        (self.average * 2).clamp(wait.spin, wait.spin_max.max(wait.spin))
    }

    /// Records a wait that ended (spun or parked) after `waited`. A wait
    /// past `spin_max` means the peer was idle, not busy: it pulls the
    /// average down, so that an idle peer is not spun for.
    pub(crate) fn record(&mut self, wait: &WaitStrategy, waited: Duration) {
        let sample = if waited <= wait.spin_max {
            waited
        } else {
            Duration::ZERO
        };
        self.average = (self.average * 3 + sample) / 4;
    }
}

/// Calls `ready` until it returns true or `budget` has passed; returns
/// whether it became ready. The clock is read only every 64 polls so the
/// spin itself stays cheap, and the spinner yields its core between
/// rounds.
#[cfg(not(loom))]
pub(crate) fn spin_until(budget: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    if budget.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        if start.elapsed() >= budget {
            return false;
        }
        // Let another runnable thread on this core go first: with more busy
        // threads than cores (a host thread and two workers on two cores),
        // a spinner that never yields delays the very peer it waits for.
        std::thread::yield_now();
    }
}

/// Under loom there is no time: check once, then let the model park.
#[cfg(loom)]
pub(crate) fn spin_until(_budget: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let _ = Instant::now;
    ready()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Records `times` waits of `waited` each.
    fn waits(l: &mut Learned, w: &WaitStrategy, waited: Duration, times: usize) {
        for _ in 0..times {
            l.record(w, waited);
        }
    }

    #[test]
    fn the_budget_starts_at_the_base_spin() {
        let w = WaitStrategy::DEFAULT;
        assert_eq!(Learned::default().budget(&w), w.spin);
    }

    #[test]
    fn steady_short_waits_are_spun_through() {
        let w = WaitStrategy::DEFAULT;
        let mut l = Learned::default();
        waits(&mut l, &w, us(60), 20);
        // Twice the rhythm, so a wait a little longer than usual is caught.
        let b = l.budget(&w);
        assert!(b > us(110) && b <= us(120), "{b:?}");
        // Waits longer than spin_max never raise the budget past it.
        waits(&mut l, &w, us(190), 20);
        assert_eq!(l.budget(&w), w.spin_max);
    }

    #[test]
    fn an_idle_peer_brings_the_spin_back_down() {
        let w = WaitStrategy::DEFAULT;
        let mut l = Learned::default();
        waits(&mut l, &w, us(150), 20);
        assert_eq!(l.budget(&w), w.spin_max);
        // Each wait of 10 ms (an idle peer) cuts the average by a quarter.
        waits(&mut l, &w, Duration::from_millis(10), 12);
        assert_eq!(l.budget(&w), w.spin);
    }

    #[test]
    fn park_immediately_never_spins() {
        let w = WaitStrategy::park_immediately();
        let mut l = Learned::default();
        waits(&mut l, &w, Duration::ZERO, 20);
        assert_eq!(l.budget(&w), Duration::ZERO);
    }

    #[test]
    fn a_spin_max_below_the_spin_keeps_the_spin() {
        let w = WaitStrategy {
            spin: us(50),
            spin_max: us(10),
            ..WaitStrategy::DEFAULT
        };
        let mut l = Learned::default();
        waits(&mut l, &w, us(5), 20);
        assert_eq!(l.budget(&w), us(50));
    }
}
