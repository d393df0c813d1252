//! Every raw CPython call of coil-worker, in one place.
//!
//! # Contract
//!
//! - A function that takes a `Python<'py>` token (or a `Bound<'py, _>`)
//!   runs on a thread attached to the interpreter that token stands for,
//!   holding that interpreter's GIL; the objects it receives belong to that
//!   interpreter.
//! - A sub-interpreter is created, used and ended on one OS thread
//!   ([`SubInterpreter`] is `!Send`); its thread state never moves. Inside
//!   it only pyo3's "plain" API is used (calls, attributes, built-in types,
//!   `import`, `PyErr`); no `intern!`, no `#[pyclass]`, no `GILOnceCell`
//!   statics, no `PyGILState_*`: pyo3's safe API assumes the main
//!   interpreter there (its statics would share one interpreter's objects
//!   with another), which is why creating, ending and interrupting
//!   sub-interpreters use raw FFI here.
//! - The thread that created a sub-interpreter stays inside
//!   `Python::attach` for its whole life, so pyo3 counts it as attached and
//!   releases every `Py<T>` dropped there at once, in the right interpreter,
//!   never through pyo3's process-wide deferred-release pool.
//!
//! # Deadlocks
//!
//! Two kinds of lock meet here: GILs (the main interpreter's, and one per
//! sub-interpreter) and two Rust mutexes, the process-wide life-cycle lock
//! of sub-interpreters (`lifecycle()`, below) and an [`InterruptTarget`]'s. The
//! rules: the life-cycle lock is taken before any GIL and never by a thread
//! holding one it does not release first; an interrupt target's lock is
//! taken by an executor only with its own GIL released. Scenario that the
//! second rule prevents: a host thread holds the target's lock and waits
//! for the sub-interpreter's GIL to raise `TimeoutError` in it, while the
//! executor thread, holding that GIL, waits for the target's lock to
//! retire it before ending its interpreter: each waits for the other
//! forever. So [`SubInterpreter`]'s `Drop` releases the sub-interpreter's
//! GIL around retiring its target.

use std::os::raw::c_long;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;
use smallvec::SmallVec;

/// Calls `func(*args)` through the vectorcall protocol: no argument tuple
/// is built (10–25 % faster than a tuple call for small functions).
#[inline]
pub(crate) fn call_vectored<'py>(
    func: &Bound<'py, PyAny>,
    args: &[Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    let ret = if let [one] = args {
        // The common case, without building an array.
        let ptr = one.as_ptr();
        // SAFETY: as below, with an array of exactly one live argument.
        unsafe { ffi::PyObject_Vectorcall(func.as_ptr(), &ptr, 1, std::ptr::null_mut()) }
    } else {
        let ptrs: SmallVec<[*mut ffi::PyObject; 8]> = args.iter().map(Bound::as_ptr).collect();
        // SAFETY: we hold the GIL (`py`); `func` and every argument are
        // live objects borrowed for the call (CPython does not keep the
        // array), the array holds exactly `args.len()` pointers, and no
        // keyword names are passed.
        unsafe {
            ffi::PyObject_Vectorcall(
                func.as_ptr(),
                ptrs.as_ptr(),
                args.len(),
                std::ptr::null_mut(),
            )
        }
    };
    // SAFETY: `ret` is what `PyObject_Vectorcall` returned just above, with
    // the GIL held: a new reference we own, or NULL with an exception set,
    // which `from_owned_ptr_or_err` turns into the `PyErr`.
    unsafe { Bound::from_owned_ptr_or_err(py, ret) }
}

/// What one step of a coroutine gave: its result, the object it yielded
/// (an awaited future: it is suspended), or the exception it raised.
pub(crate) enum Sent<'py> {
    /// It returned this.
    Return(Bound<'py, PyAny>),
    /// It is suspended, awaiting this.
    Yield(Bound<'py, PyAny>),
    /// It raised this.
    Error(PyErr),
}

/// Runs `coro` (a coroutine or generator) one step, sending it `None`:
/// `PyIter_Send`, which hands back a return value without raising
/// `StopIteration` (the cheap way to run a coroutine that never awaits).
pub(crate) fn send<'py>(coro: &Bound<'py, PyAny>) -> Sent<'py> {
    let py = coro.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: we hold the GIL (`py`); `coro` is a live object borrowed for
    // the call, `Py_None` is an immortal object, and `out` is a valid place
    // for CPython to store one new reference (or NULL on error).
    let result = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut out) };
    match result {
        // SAFETY: on PYGEN_RETURN and PYGEN_NEXT CPython stored a new,
        // non-NULL reference in `out`, which we now own.
        ffi::PySendResult::PYGEN_RETURN => Sent::Return(unsafe { Bound::from_owned_ptr(py, out) }),
        // SAFETY: as above.
        ffi::PySendResult::PYGEN_NEXT => Sent::Yield(unsafe { Bound::from_owned_ptr(py, out) }),
        ffi::PySendResult::PYGEN_ERROR => Sent::Error(PyErr::take(py).unwrap_or_else(|| {
            pyo3::exceptions::PySystemError::new_err("a coroutine failed without an exception")
        })),
    }
}

/// Serialises the life-cycle of sub-interpreters in this process: creating
/// one and loading its UDF (the first import of every module it uses), and
/// ending one. Taken **before** attaching to the main interpreter and never
/// while holding its GIL, so the lock order is always this lock, then a GIL.
#[cfg(Py_3_13)]
static LIFECYCLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the life-cycle lock of sub-interpreters ([`LIFECYCLE`]); a
/// poisoned lock is taken all the same.
#[cfg(Py_3_13)]
pub(crate) fn lifecycle() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves nothing half-done that the next
    // holder could trip over (the guard below ends the interpreter).
    LIFECYCLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where to raise `TimeoutError` to stop a runaway UDF in an in-process
/// executor: the executor's thread, in its interpreter. The executor hands
/// one to the host when its thread starts.
///
/// Valid only while the executor lives: the executor *retires* it (under
/// its lock) before it ends its interpreter or its thread, and
/// [`InterruptTarget::interrupt`] holds the same lock while it raises, so a
/// late interrupt never touches an interpreter that has ended; it does
/// nothing instead.
#[derive(Debug, Clone)]
pub struct InterruptTarget {
    target: Arc<Mutex<Option<Target>>>,
    /// Set while an interrupt is on its way to the executor, for it to
    /// tell the host's `TimeoutError` from one the UDF raised itself.
    interrupted: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    /// The executor thread's Python thread identifier.
    ident: c_long,
    /// Its sub-interpreter, or null for the main interpreter.
    interp: *mut ffi::PyInterpreterState,
}

// SAFETY: `Target` is two plain values; the pointer is only dereferenced by
// CPython, in `interrupt`, while the target's lock proves the interpreter
// is alive (the executor retires the target under that lock before ending
// it).
unsafe impl Send for Target {}

impl InterruptTarget {
    /// The current thread, attached to its interpreter through `py`.
    pub(crate) fn current(_py: Python<'_>) -> InterruptTarget {
        // SAFETY: the token proves this thread is attached, so there is a
        // current interpreter; the call only reads it.
        let interp = unsafe { ffi::PyInterpreterState_Get() };
        // SAFETY: the runtime is initialized (this thread is attached); the
        // call only reads the main interpreter's address.
        let main = unsafe { ffi::PyInterpreterState_Main() };
        // SAFETY: only reads the calling thread's identifier.
        let ident = unsafe { ffi::PyThread_get_thread_ident() } as c_long;
        let interp = if interp == main {
            std::ptr::null_mut()
        } else {
            interp
        };
        InterruptTarget {
            target: Arc::new(Mutex::new(Some(Target { ident, interp }))),
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag [`InterruptTarget::interrupt`] sets before it raises in the
    /// executor's thread (the executor clears it when it sees it).
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupted)
    }

    /// Raises `TimeoutError` in the executor's thread; it lands when that
    /// thread next runs Python bytecode (a thread blocked in C, in a long
    /// `time.sleep` or a C extension's loop, is not interrupted until it
    /// returns). Does nothing once the executor has ended. Returns whether
    /// the exception was set in the executor's thread.
    pub fn interrupt(&self) -> bool {
        let guard = self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(t) = *guard else { return false };
        // Set before the exception can land, cleared if it was not set.
        self.interrupted.store(true, Ordering::Release);
        let marked = self.raise_in(t);
        if !marked {
            self.interrupted.store(false, Ordering::Release);
        }
        drop(guard);
        marked
    }

    /// Raises `TimeoutError` in `t`'s thread; call with the target's lock
    /// held.
    fn raise_in(&self, t: Target) -> bool {
        if t.interp.is_null() {
            return Python::attach(|_py| {
                // SAFETY: attached to the main interpreter, which the target
                // thread runs in; `PyExc_TimeoutError` is a static
                // exception type; the call only marks the target thread and
                // returns how many threads it marked.
                unsafe { ffi::PyThreadState_SetAsyncExc(t.ident, ffi::PyExc_TimeoutError) == 1 }
            });
        }
        // `PyThreadState_SetAsyncExc` only searches the current thread's
        // interpreter, and attaching to a sub-interpreter needs a thread
        // with no thread state of any interpreter: a fresh one.
        std::thread::spawn(move || {
            // The whole `Target` moves here (it is `Send`), not its fields.
            let t: Target = t;
            // SAFETY: `t.interp` is alive: we hold the target's lock, and
            // the executor retires the target under it before ending its
            // interpreter. The new thread state belongs to that
            // interpreter and to this fresh thread, which has no thread
            // state of its own yet.
            let ts = unsafe { ffi::PyThreadState_New(t.interp) };
            // SAFETY: `ts` is the thread state just created for this thread
            // in a live interpreter, and no thread state is current here:
            // restoring it attaches this thread and takes that
            // interpreter's GIL.
            unsafe { ffi::PyEval_RestoreThread(ts) };
            // SAFETY: attached to the target's interpreter (above), the one
            // `PyThreadState_SetAsyncExc` searches; `PyExc_TimeoutError` is
            // a static exception type; the call only marks the target
            // thread and returns how many threads it marked.
            let marked =
                unsafe { ffi::PyThreadState_SetAsyncExc(t.ident, ffi::PyExc_TimeoutError) };
            // SAFETY: `ts` is current and holds the GIL; clearing it drops
            // what it holds (nothing: it ran no Python code).
            unsafe { ffi::PyThreadState_Clear(ts) };
            // SAFETY: `ts` is the current thread state, cleared above;
            // deleting it releases the GIL and leaves this thread with no
            // thread state, as it started.
            unsafe { ffi::PyThreadState_DeleteCurrent() };
            marked == 1
        })
        .join()
        .unwrap_or(false)
    }

    /// Makes [`InterruptTarget::interrupt`] do nothing from now on. Call
    /// with this thread's GIL released (see the module's `# Deadlocks`).
    pub(crate) fn retire(&self) {
        *self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// An own-GIL sub-interpreter whose thread state is current on this
/// thread. Dropping it (also while unwinding) retires its interrupt target,
/// ends the interpreter and makes the main interpreter's thread state
/// current again. It cannot leave its thread:
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// fn check(sub: coil_worker::SubInterpreter) {
///     needs_send(sub);
/// }
/// ```
#[cfg(Py_3_13)]
pub struct SubInterpreter {
    sub: *mut ffi::PyThreadState,
    main: *mut ffi::PyThreadState,
    target: InterruptTarget,
}

#[cfg(Py_3_13)]
impl SubInterpreter {
    /// Creates one on this thread, which must be attached to the main
    /// interpreter (`_main`) and hold the sub-interpreters' life-cycle lock;
    /// on success its thread state is current and holds its own GIL.
    pub(crate) fn new(_main: Python<'_>) -> Option<SubInterpreter> {
        // SAFETY: the `Python` token proves this thread is attached to the
        // main interpreter, so there is a current thread state to save.
        let main = unsafe { ffi::PyThreadState_Get() };
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut sub: *mut ffi::PyThreadState = std::ptr::null_mut();
        // SAFETY: the main interpreter is initialized and this thread holds
        // its GIL (attached); `config` and `sub` outlive the call. On
        // success the new interpreter's thread state is current on this
        // thread and holds the new interpreter's own GIL; on failure CPython
        // restores `main`.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut sub, &config) };
        // SAFETY: `status` is the value CPython just returned.
        let failed = unsafe { ffi::PyStatus_Exception(status) } != 0;
        if failed || sub.is_null() {
            return None;
        }
        // SAFETY: the new interpreter's thread state is current and this
        // thread is counted as attached by pyo3 (inside `Python::attach`);
        // the token is used for this one call.
        let target = InterruptTarget::current(unsafe { Python::assume_attached() });
        Some(SubInterpreter { sub, main, target })
    }

    /// Where to raise `TimeoutError` in this interpreter's thread.
    pub(crate) fn interrupt_target(&self) -> InterruptTarget {
        self.target.clone()
    }

    /// Runs `f` with a token for this interpreter; the token cannot outlive
    /// the borrow of `self`, so no object of this interpreter outlives it.
    pub(crate) fn with<R>(&self, f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
        // SAFETY: this interpreter's thread state is current on this thread
        // and holds its GIL (`new`; every detach inside `f` restores it),
        // and pyo3 counts this thread as attached (the creating thread
        // stays inside `Python::attach`). The token lives only for `f`,
        // inside the borrow of `self`.
        f(unsafe { Python::assume_attached() })
    }
}

#[cfg(Py_3_13)]
impl Drop for SubInterpreter {
    fn drop(&mut self) {
        // Retire the interrupt target with this interpreter's GIL released:
        // an interrupt in progress holds the target's lock and waits for
        // this GIL (module docs, `# Deadlocks`).
        // SAFETY: `self.sub` is current and holds the GIL; saving releases
        // it and leaves no current thread state until it is restored just
        // below, on this same thread.
        let saved = unsafe { ffi::PyEval_SaveThread() };
        self.target.retire();
        // The life-cycle lock is taken detached, as its rule says (the
        // lock, then a GIL): on a free-threaded build `Py_EndInterpreter`
        // stops the world and waits for every attached thread, so a thread
        // waiting for this lock while attached would never let the holder
        // finish.
        let lifecycle = lifecycle();
        // SAFETY: `saved` is this interpreter's thread state, saved above.
        unsafe { ffi::PyEval_RestoreThread(saved) };
        // SAFETY: `self.sub` is the current thread state (restored above)
        // and no Python object of this interpreter is alive any more (they
        // are dropped inside the serve loop, within `with`). Ending it
        // leaves no current thread state.
        unsafe { ffi::Py_EndInterpreter(self.sub) };
        drop(lifecycle);
        // SAFETY: no thread state is current (ended above) and `self.main`
        // is this thread's main-interpreter thread state, saved by `new`:
        // restoring it re-attaches this thread to the main interpreter, as
        // the enclosing `Python::attach` expects when it releases.
        unsafe { ffi::PyEval_RestoreThread(self.main) };
    }
}
