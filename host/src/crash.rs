//! Last words for a crash in an in-process executor.
//!
//! In `process` mode a UDF that segfaults kills its worker, and the error
//! names the UDF and the row. In `multi-thread` and `sub-interpreter` mode
//! the same crash ends the host, which used to die with exit 139 and an
//! empty stderr. So each executor thread registers here what it runs (the
//! UDF's name, where its progress word is, the first row of the batch it
//! was sent), and a handler for the fatal signals writes, with `write(2)`
//! alone, which UDF and which row were running on the thread that faulted;
//! then the signal goes on as before (the previous handler, or the default
//! action: the exit status and a core dump stay what they were).

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use coil_ipc::UserWord;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signals a crash arrives as.
const FATAL: [Signal; 5] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
];

/// Executor threads registered at once, at most (more run unreported).
const ENTRIES: usize = 256;

/// One executor thread's registration: all atomics, read by the handler.
struct Entry {
    /// The thread's id (`gettid`); 0: free.
    tid: AtomicI32,
    /// The UDF's name (a leaked `Box<[u8]>`, freed when unregistered).
    name: AtomicPtr<u8>,
    name_len: AtomicUsize,
    /// The executor's progress word (a leaked `Box<UserWord>`).
    progress: AtomicPtr<UserWord>,
    /// The first row of the batch it was sent (an `Arc<AtomicU64>`'s raw
    /// pointer, the host thread writing it).
    first_row: AtomicPtr<AtomicU64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Entry = Entry {
    tid: AtomicI32::new(0),
    name: AtomicPtr::new(std::ptr::null_mut()),
    name_len: AtomicUsize::new(0),
    progress: AtomicPtr::new(std::ptr::null_mut()),
    first_row: AtomicPtr::new(std::ptr::null_mut()),
};

static TABLE: [Entry; ENTRIES] = [FREE; ENTRIES];

/// The handlers there were before ours, per signal in [`FATAL`].
static PREVIOUS: OnceLock<Vec<(Signal, SigAction)>> = OnceLock::new();

/// An executor thread's registration; ends when dropped (on that thread).
pub(crate) struct Registration {
    index: usize,
}

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Registers the calling thread as the executor of UDF `name`, whose
/// progress word is `progress` and whose batches' first rows the host
/// writes to `first_row`; installs the handlers the first time. `None`
/// when every entry is taken.
pub(crate) fn register(
    name: &str,
    progress: Option<UserWord>,
    first_row: Arc<AtomicU64>,
) -> Option<Registration> {
    PREVIOUS.get_or_init(install);
    let tid = gettid();
    let index = TABLE.iter().position(|e| {
        e.tid
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    let e = &TABLE[index];
    let name: Box<[u8]> = name.as_bytes().into();
    e.name_len.store(name.len(), Ordering::Relaxed);
    e.name
        .store(Box::into_raw(name).cast::<u8>(), Ordering::Release);
    if let Some(word) = progress {
        e.progress
            .store(Box::into_raw(Box::new(word)), Ordering::Release);
    }
    e.first_row
        .store(Arc::into_raw(first_row).cast_mut(), Ordering::Release);
    Some(Registration { index })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let e = &TABLE[self.index];
        let name = e.name.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let len = e.name_len.load(Ordering::Relaxed);
        let progress = e.progress.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let first_row = e.first_row.swap(std::ptr::null_mut(), Ordering::AcqRel);
        e.tid.store(0, Ordering::Release);
        if !name.is_null() {
            // SAFETY: `name` came from `Box::into_raw` of a `Box<[u8]>` of
            // `len` bytes in `register`, and was swapped out above, so it
            // is freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(name, len)) });
        }
        if !progress.is_null() {
            // SAFETY: from `Box::into_raw` in `register`, swapped out once.
            drop(unsafe { Box::from_raw(progress) });
        }
        if !first_row.is_null() {
            // SAFETY: from `Arc::into_raw` in `register`, swapped out once.
            drop(unsafe { Arc::from_raw(first_row) });
        }
    }
}

fn install() -> Vec<(Signal, SigAction)> {
    let ours = SigAction::new(
        SigHandler::SigAction(on_fatal),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    let mut previous = Vec::new();
    for sig in FATAL {
        // SAFETY: `on_fatal` is async-signal-safe (it reads atomics, calls
        // `gettid`, `write` and `sigaction`, and allocates nothing), and
        // it hands the signal on to the handler it replaces.
        if let Ok(prev) = unsafe { sigaction(sig, &ours) } {
            previous.push((sig, prev));
        }
    }
    previous
}

/// Appends `bytes` to `buf` at `*at`, as far as it fits.
fn put(buf: &mut [u8], at: &mut usize, bytes: &[u8]) {
    let n = bytes.len().min(buf.len() - *at);
    buf[*at..*at + n].copy_from_slice(&bytes[..n]);
    *at += n;
}

/// Appends `n` in decimal.
fn put_number(buf: &mut [u8], at: &mut usize, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(buf, at, &digits[i..]);
}

/// The message for a crash on the thread of entry `e` (signal `sig`).
fn last_words(e: &Entry, sig: c_int, buf: &mut [u8]) -> usize {
    let mut at = 0;
    put(buf, &mut at, b"\ncoil: the Python UDF ");
    let name = e.name.load(Ordering::Acquire);
    if !name.is_null() {
        // SAFETY: registered by this thread, which is the one running this
        // handler, so it cannot be unregistered (freed) meanwhile.
        let name = unsafe { std::slice::from_raw_parts(name, e.name_len.load(Ordering::Relaxed)) };
        put(buf, &mut at, name);
    }
    put(buf, &mut at, b" crashed the process (signal ");
    put_number(buf, &mut at, sig as u64);
    put(buf, &mut at, b")");
    let progress = e.progress.load(Ordering::Acquire);
    let first = e.first_row.load(Ordering::Acquire);
    if !progress.is_null() && !first.is_null() {
        // SAFETY: as for `name`: this thread's own registration.
        let (at_row, first) = unsafe { ((*progress).load(), (*first).load(Ordering::Relaxed)) };
        if at_row > 0 {
            put(buf, &mut at, b" on row ");
            put_number(buf, &mut at, first + at_row - 1);
            put(buf, &mut at, b" (from 0) of its input");
        }
    }
    put(
        buf,
        &mut at,
        b"; in-process modes cannot survive a crash: process mode would have replaced the worker\n",
    );
    at
}

extern "C" fn on_fatal(sig: c_int, _info: *mut nix::libc::siginfo_t, _ctx: *mut c_void) {
    let tid = gettid();
    if let Some(e) = TABLE.iter().find(|e| e.tid.load(Ordering::Acquire) == tid) {
        let mut buf = [0u8; 512];
        let n = last_words(e, sig, &mut buf);
        // SAFETY: write(2) is async-signal-safe; `buf[..n]` is initialised.
        let _ = unsafe { nix::libc::write(2, buf.as_ptr().cast(), n) };
    }
    // Hand the signal on: put back the handler there was and return, so
    // the fault happens again under it (or `abort` goes on to the default
    // action), exactly as without us.
    if let (Some(previous), Ok(signal)) = (PREVIOUS.get(), Signal::try_from(sig)) {
        if let Some((_, prev)) = previous.iter().find(|(s, _)| *s == signal) {
            // SAFETY: restores the action `install` replaced.
            let _ = unsafe { sigaction(signal, prev) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_words_name_the_udf_and_the_row() {
        let region = coil_ipc::Region::create_private(&[4096, 4096]).unwrap();
        let word = region.user_word(coil_proto::layout::WORD_PROGRESS).unwrap();
        word.store(3);
        let first = Arc::new(AtomicU64::new(100));
        let registration = register("crashy", Some(word), first).unwrap();
        let e = &TABLE[registration.index];
        let mut buf = [0u8; 512];
        let n = last_words(e, 11, &mut buf);
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.contains("the Python UDF crashy crashed the process (signal 11) on row 102"),
            "{text}"
        );
        drop(registration);
        assert_eq!(
            TABLE
                .iter()
                .filter(|e| e.tid.load(Ordering::Relaxed) == gettid())
                .count(),
            0
        );
    }
}
