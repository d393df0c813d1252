//! The spin phase of a wait, bounded by time rather than iterations.

use std::time::{Duration, Instant};

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
