//! The primitives the ring synchronises with: atomics, fences, futexes and
//! pidfds.
//!
//! Every atomic the ring touches comes from here, so that `--cfg loom` can
//! swap them for loom's model-checked versions (`ipc/clippy.toml` forbids the
//! `std` atomics elsewhere). Under loom a futex wait becomes a yielding spin on
//! the word: it never sleeps, so a lost wake-up shows up as a model that never
//! finishes instead of a test that hangs for its timeout.
//!
//! The futex words live in memory that may be shared with another process, so
//! they are used *without* `FUTEX_PRIVATE_FLAG`: the kernel then keys the wait
//! queue on the physical page, which both processes map.

#[cfg(not(loom))]
#[allow(clippy::disallowed_types)] // this module is the one place they are allowed
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A state word of an arena (see the arena module): a `u32` in memory another
/// process maps, taken with `from_ptr`, which loom's atomics cannot model;
/// std's atomic under every cfg. Arenas are outside the ring's loom models.
#[allow(clippy::disallowed_types)] // this module is the one place they are allowed
pub(crate) use std::sync::atomic::{AtomicU32 as ArenaWord, Ordering as ArenaOrdering};

use std::time::Duration;

/// Sleeps while `word` holds `expected`, for at most `timeout`.
///
/// Returns early on a wake-up, a signal, a changed value or a spurious
/// wake-up; the caller re-checks its condition in every case.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, 4-byte aligned atomic for the duration of the
    // call (it is borrowed), `ts` outlives the call, and FUTEX_WAIT only reads
    // the word. Errors (EAGAIN when the value changed, EINTR, ETIMEDOUT) all
    // mean "re-check", so the return value is deliberately ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every thread (in any process) sleeping on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned atomic; FUTEX_WAKE does not access the
    // memory at all, it only uses the address as the wait-queue key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Loom's stand-in for a futex wait: yield until the word changes. Timeouts
/// are ignored so that a lost wake-up makes the model spin forever, which
/// loom reports, instead of being papered over by the timeout.
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
    while word.load(Ordering::SeqCst) == expected {
        loom::thread::yield_now();
    }
}

/// Loom's stand-in for a futex wake: waiters spin on the word, so there is
/// nothing to do.
#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32) {}

/// Opens a pidfd for `pid` (Linux ≥ 5.3): it becomes readable when the
/// process exits, whether or not it has been reaped, and is not fooled by pid
/// reuse.
pub(crate) fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or
    // -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd =
        i32::try_from(fd).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
