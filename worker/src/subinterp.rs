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

use crate::executor::UdfSpec;
use crate::serve::ServeError;

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

/// Serves `region` like [`serve_in_process`](crate::serve_in_process), in a
/// new own-GIL sub-interpreter owned by this thread; header word 2 holds
/// the interpreter for [`interrupt_in`].
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
    use pyo3::ffi;
    use pyo3::Python;

    let mut rx = region.consumer(0)?;
    let mut tx = region.producer(1)?;
    Python::initialize();
    Python::attach(|_main| {
        // SAFETY: attached to the main interpreter just above, so there is a
        // current thread state to save.
        let main_ts = unsafe { ffi::PyThreadState_Get() };
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut sub_ts: *mut ffi::PyThreadState = std::ptr::null_mut();
        // SAFETY: the main interpreter is initialized and this thread holds
        // its GIL (attached); `config` and `sub_ts` outlive the call. On
        // success the new interpreter's thread state is current on this
        // thread and holds the new interpreter's own GIL; on failure CPython
        // restores `main_ts`.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut sub_ts, &config) };
        // SAFETY: `status` is the value CPython just returned.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 || sub_ts.is_null() {
            let message = "CPython could not create an own-GIL sub-interpreter".to_string();
            crate::serve::report_load_failure(&mut tx, "RuntimeError", &message);
            return Err(ServeError::Unsupported(message));
        }
        // SAFETY: the sub-interpreter's thread state is current and holds
        // its GIL, and pyo3 counts this thread as attached (we are inside
        // `Python::attach`), so the token is valid until `Py_EndInterpreter`
        // below; every object made with it is dropped inside `run`.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: attached (above); this only reads the current
        // interpreter.
        let interp = unsafe { ffi::PyInterpreterState_Get() };
        if let Some(w2) = region.user_word(2) {
            w2.store(interp as u64);
        }
        let result = crate::serve::run_in_process(py, region, spec, max_message, &mut rx, &mut tx);
        if let Some(w2) = region.user_word(2) {
            w2.store(0);
        }
        // SAFETY: `sub_ts` is the current thread state (every detach in
        // `run` restored it) and no Python object of this interpreter is
        // alive any more; ending it leaves no current thread state, and
        // restoring `main_ts` re-attaches this thread to the main
        // interpreter, as `Python::attach` expects when it releases.
        unsafe {
            ffi::Py_EndInterpreter(sub_ts);
            ffi::PyEval_RestoreThread(main_ts);
        }
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
