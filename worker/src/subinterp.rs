//! `sub-interpreter` mode: each executor thread owns a CPython
//! sub-interpreter with its own GIL, created with
//! `Py_NewInterpreterFromConfig`, and runs the same serve loop in it.
//!
//! Where pyo3's safe API is not sound inside a sub-interpreter, this module
//! uses `pyo3::ffi` directly, for these reasons:
//!
//! - **Creating and ending the interpreter** has no safe API. The thread
//!   first attaches to the main interpreter through `Python::attach` (so
//!   pyo3 counts it as attached for the whole life of the sub-interpreter:
//!   every `Py<T>` dropped on it is released at once, in the right
//!   interpreter, never through pyo3's global deferred-release pool), then
//!   `Py_NewInterpreterFromConfig` makes the new interpreter's thread state
//!   current and holds its own GIL. At the end, `Py_EndInterpreter` and
//!   `PyEval_RestoreThread` of the saved main thread state put things back
//!   as `Python::attach` left them.
//! - **`PyGILState_*` is never called inside** (it only knows the main
//!   interpreter); the loop's waits use `Python::detach`, which saves and
//!   restores the current (sub-interpreter) thread state.
//! - **No process-global Python objects**: the executor keeps its helper
//!   module, UDF and arguments per interpreter; coil uses no `intern!`,
//!   `#[pyclass]` or `GILOnceCell` statics.
//! - **Interrupting** a runaway UDF needs a thread state of that
//!   interpreter: [`interrupt_in`] makes one on a fresh thread.
//!
//! Own-GIL sub-interpreters are enabled on CPython ≥ 3.13 only: on 3.12.1
//! `decimal` and `datetime` crash the process inside them.

use coil_ipc::Region;

use crate::serve::ServeError;
use coil_proto::UdfSpec;

/// Whether this build can run own-GIL sub-interpreters (CPython ≥ 3.13).
pub const SUBINTERPRETERS: bool = cfg!(Py_3_13);

/// The message CPython gives when a single-phase-init extension module is
/// imported in an isolated sub-interpreter.
pub const INCOMPATIBLE: &str = "does not support loading in subinterpreters";

/// The top-level package named in an [`INCOMPATIBLE`] import error, if
/// `text` (an exception message or traceback) holds one.
pub fn incompatible_module(text: &str) -> Option<String> {
    let at = text.find(INCOMPATIBLE)?;
    let before = text[..at].trim_end();
    let module = before.rsplit(' ').next()?;
    let top = module
        .split('.')
        .next()?
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
    (!top.is_empty()).then(|| top.to_string())
}

/// Standard-library modules imported in the **main** interpreter before the
/// first sub-interpreter is created.
///
/// `datetime` is the one that must be: CPython 3.13.0's `_datetime` is the
/// only extension module with *static* types (`datetime.date`,
/// `datetime.datetime`, ...), and they are initialised by whichever
/// interpreter imports it first (`_PyStaticType_InitForExtension`, which is
/// not thread-safe across interpreters) and torn down when that interpreter
/// ends. Two sub-interpreters importing it at once corrupt the type
/// registry: the process crashes (`munmap_chunk(): invalid pointer`), or one
/// interpreter looks up another type's attributes (`datetime.isoformat`
/// answered by `date.isoformat`, a silently wrong value). Ending the first
/// interpreter while another still uses the types frees them under it.
/// CPython issues gh-136421 and gh-136423; the upstream fix (3.14, and later
/// 3.13 patch releases) initialises these types at interpreter start-up in
/// the main interpreter, which is what importing it here first does on
/// 3.13.0: the main interpreter then owns the types for the life of the
/// process, and each sub-interpreter only adds its own per-interpreter state.
///
/// The others are the stdlib modules UDFs commonly use that are backed by C
/// extension modules: their first initialisation in the process (shared
/// library state such as libmpdec's, OpenSSL's or SQLite's) then happens
/// once, single-threaded, in the main interpreter. It costs about 40 ms once
/// per process, only in sub-interpreter mode.
pub const IMPORTED_IN_MAIN_FIRST: &[&str] = &[
    "datetime",
    "zoneinfo",
    "decimal",
    "hashlib",
    "sqlite3",
    "json",
    "re",
    "unicodedata",
    "zlib",
    "pickle",
    "struct",
    "math",
    "array",
    "random",
    "csv",
    "bisect",
    "heapq",
    "binascii",
    "xml.etree.ElementTree",
];

/// Serialises the life-cycle of sub-interpreters in this process: creating
/// one and loading its UDF (the first import of every module it uses), and
/// ending one. Taken **before** attaching to the main interpreter and never
/// while holding its GIL, so the lock order is always this lock, then a GIL.
#[cfg(Py_3_13)]
static LIFECYCLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(Py_3_13)]
fn lifecycle() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves nothing half-done that the next
    // holder could trip over (the guard below ends the interpreter).
    LIFECYCLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Imports [`IMPORTED_IN_MAIN_FIRST`] in the main interpreter, once per
/// process. Call with [`LIFECYCLE`] held and attached to the main
/// interpreter.
#[cfg(Py_3_13)]
fn import_in_main_first(main: pyo3::Python<'_>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Acquire) {
        return;
    }
    for module in IMPORTED_IN_MAIN_FIRST {
        if let Err(e) = main.import(*module) {
            // A Python built without a module (e.g. no sqlite3) is fine: a
            // UDF cannot import it in a sub-interpreter either.
            tracing::debug!("importing {module} in the main interpreter: {e}");
        }
    }
    DONE.store(true, Ordering::Release);
}

/// An own-GIL sub-interpreter whose thread state is current on this thread;
/// dropping it (also while unwinding) ends the interpreter and makes the
/// main interpreter's thread state current again.
#[cfg(Py_3_13)]
struct SubInterpreter {
    sub: *mut pyo3::ffi::PyThreadState,
    main: *mut pyo3::ffi::PyThreadState,
}

#[cfg(Py_3_13)]
impl SubInterpreter {
    /// Creates one on this thread, which must be attached to the main
    /// interpreter (the caller holds [`LIFECYCLE`]); on success its thread
    /// state is current and holds its own GIL.
    fn new(_main: pyo3::Python<'_>) -> Option<SubInterpreter> {
        use pyo3::ffi;
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
        (!failed && !sub.is_null()).then_some(SubInterpreter { sub, main })
    }

    /// The interpreter, for [`interrupt_in`].
    fn interp(&self) -> *mut pyo3::ffi::PyInterpreterState {
        // SAFETY: `self.sub` is this live interpreter's thread state, current
        // on this thread (`new`); the call only reads it.
        unsafe { pyo3::ffi::PyThreadState_GetInterpreter(self.sub) }
    }
}

#[cfg(Py_3_13)]
impl Drop for SubInterpreter {
    fn drop(&mut self) {
        let _lifecycle = lifecycle();
        // SAFETY: `self.sub` is the current thread state (created current in
        // `new`; every detach in the serve loop restores it, also when it
        // unwinds) and no Python object of this interpreter is alive any
        // more (they are dropped inside the serve loop). Ending it leaves no
        // current thread state; restoring `self.main` re-attaches this
        // thread to the main interpreter, as the enclosing
        // `Python::attach` expects when it releases.
        unsafe {
            pyo3::ffi::Py_EndInterpreter(self.sub);
            pyo3::ffi::PyEval_RestoreThread(self.main);
        }
    }
}

/// Serves `region` like [`serve_in_process`](crate::serve_in_process), in a
/// new own-GIL sub-interpreter owned by this thread; header word 2 holds
/// the interpreter for [`interrupt_in`].
///
/// Sub-interpreters are created and their UDFs loaded one at a time in a
/// process, after [`IMPORTED_IN_MAIN_FIRST`] was imported in the main
/// interpreter; they are also ended one at a time.
///
/// # Errors
///
/// As [`serve`](crate::serve); [`ServeError::Unsupported`] on a build
/// before CPython 3.13.
#[cfg(Py_3_13)]
pub fn serve_in_subinterpreter(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
) -> Result<(), ServeError> {
    use pyo3::Python;

    let mut rx = region.consumer(coil_proto::layout::REQUESTS)?;
    let mut tx = region.producer(coil_proto::layout::ANSWERS)?;
    Python::initialize();
    let starting = lifecycle();
    Python::attach(|main| {
        import_in_main_first(main);
        let Some(sub) = SubInterpreter::new(main) else {
            drop(starting);
            let message = "CPython could not create an own-GIL sub-interpreter".to_string();
            crate::serve::report_load_failure(&mut tx, "RuntimeError", &message);
            return Err(ServeError::Unsupported(message));
        };
        // SAFETY: the sub-interpreter's thread state is current and holds
        // its GIL, and pyo3 counts this thread as attached (we are inside
        // `Python::attach`), so the token is valid until `sub` is dropped
        // below; every object made with it is dropped inside `run`.
        let py = unsafe { Python::assume_attached() };
        if let Some(w2) = region.user_word(coil_proto::layout::WORD_INTERPRETER) {
            w2.store(sub.interp() as u64);
        }
        let mut starting = Some(starting);
        let result =
            crate::serve::run_in_process(py, region, spec, max_message, &mut rx, &mut tx, || {
                drop(starting.take())
            });
        // Released when the UDF loaded; this covers a serve loop that ended
        // before it got that far (ending `sub` takes the lock again).
        drop(starting);
        if let Some(w2) = region.user_word(coil_proto::layout::WORD_INTERPRETER) {
            w2.store(0);
        }
        drop(sub);
        result
    })
}

/// Refuses: this build's CPython is older than 3.13.
///
/// # Errors
///
/// Always [`ServeError::Unsupported`].
#[cfg(not(Py_3_13))]
pub fn serve_in_subinterpreter(
    _region: &Region,
    _spec: &UdfSpec,
    _max_message: usize,
) -> Result<(), ServeError> {
    Err(ServeError::Unsupported(
        "sub-interpreter mode needs CPython >= 3.13 (on 3.12 decimal and datetime crash inside own-GIL sub-interpreters)".into(),
    ))
}

/// Raises `TimeoutError` in the thread with Python ident `ident` running
/// in sub-interpreter `interp` (as [`serve_in_subinterpreter`] publishes
/// them). Lands when that thread next runs bytecode.
///
/// # Safety
///
/// `interp` must be a live interpreter of this process: the executor clears
/// the word before it ends its interpreter, so read it while the executor is
/// known to be running a batch.
#[cfg(Py_3_13)]
pub unsafe fn interrupt_in(interp: u64, ident: u64) {
    use pyo3::ffi;
    // A fresh thread has no thread state of any interpreter, as attaching
    // one requires.
    let _ = std::thread::spawn(move || {
        // SAFETY: `interp` is live (the caller's contract); the new thread
        // state belongs to it and to this fresh thread, which attaches it
        // (taking that interpreter's GIL), marks the target thread, and
        // deletes it again while it is current.
        unsafe {
            let ts = ffi::PyThreadState_New(interp as *mut ffi::PyInterpreterState);
            ffi::PyEval_RestoreThread(ts);
            ffi::PyThreadState_SetAsyncExc(ident as std::os::raw::c_long, ffi::PyExc_TimeoutError);
            ffi::PyThreadState_Clear(ts);
            ffi::PyThreadState_DeleteCurrent();
        }
    })
    .join();
}

/// Does nothing: no sub-interpreters before CPython 3.13.
///
/// # Safety
///
/// None needed; kept `unsafe` to match the 3.13 signature.
#[cfg(not(Py_3_13))]
pub unsafe fn interrupt_in(_interp: u64, _ident: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incompatible_module_is_named_from_cpythons_message() {
        let msg = "ImportError: module numpy._core._multiarray_umath does not support loading in subinterpreters";
        assert_eq!(incompatible_module(msg).as_deref(), Some("numpy"));
        assert_eq!(incompatible_module("ImportError: no module named x"), None);
    }
}
