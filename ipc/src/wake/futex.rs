//! The park phase of a wait: a doorbell word and a "waiter present" flag in
//! the ring's control block.
//!
//! Waiter ([`park`]): set `waiting = 1`, full fence, read the bell, re-check
//! the condition, and only then sleep on the bell with `FUTEX_WAIT`.
//! Notifier ([`notify`]), right after its Release store of head or tail: full
//! fence, read `waiting`; only if it is set, bump the bell and `FUTEX_WAKE`.
//!
//! Why no wake-up is lost: the two fences are ordered. If the notifier's
//! comes first, the waiter's re-check sees the new counter and does not
//! sleep. If the waiter's comes first, the notifier sees `waiting == 1` and
//! bumps the bell; the waiter either read the bumped bell (then, by the bell's
//! Release/Acquire, its re-check sees the counter) or sleeps on the old value,
//! which `FUTEX_WAIT` refuses because the word changed, or is woken by the
//! `FUTEX_WAKE` that follows. The loom model in `ring.rs` checks this.

use std::time::Duration;

use crate::sync::{fence, futex_wait, futex_wake, AtomicU32, Ordering};

/// Sleeps on `bell` for at most `slice` unless `ready` holds after
/// announcing the wait. The caller loops and re-checks in every case.
pub(crate) fn park(
    bell: &AtomicU32,
    waiting: &AtomicU32,
    slice: Duration,
    mut ready: impl FnMut() -> bool,
) {
    waiting.store(1, Ordering::Relaxed);
    // SYNC POINT: pairs with the fence in `notify`; orders our `waiting = 1`
    // before the re-check below.
    fence(Ordering::SeqCst);
    // SYNC POINT: Acquire pairs with the Release bump in `notify`.
    let seen = bell.load(Ordering::Acquire);
    if !ready() {
        futex_wait(bell, seen, slice);
    }
    waiting.store(0, Ordering::Relaxed);
}

/// Wakes the peer if it announced that it may be parked. Call right after
/// the Release store that made the peer's condition true.
#[inline]
pub(crate) fn notify(bell: &AtomicU32, waiting: &AtomicU32) {
    // SYNC POINT: pairs with the fence in `park`.
    fence(Ordering::SeqCst);
    if waiting.load(Ordering::Relaxed) != 0 {
        ring(bell);
    }
}

/// Bumps the bell and wakes whoever sleeps on it, unconditionally (used on
/// close, which is rare).
pub(crate) fn ring(bell: &AtomicU32) {
    // SYNC POINT: Release pairs with the Acquire read of the bell in `park`.
    bell.fetch_add(1, Ordering::Release);
    futex_wake(bell);
}
