//! `sub-interpreter` mode: each executor thread owns a CPython
//! sub-interpreter with its own GIL and runs the same serve loop in it.
//! This module orchestrates (what to import in the main interpreter first,
//! in which order interpreters start and load); the raw CPython calls, the
//! life-cycle lock and the guard that ends an interpreter are in
//! `interp.rs`, with their contract.
//!
//! Own-GIL sub-interpreters are enabled on CPython ≥ 3.13 only: on 3.12.1
//! `datetime`, `decimal` and `ctypes` cannot load in them and standard
//! modules crashed the process inside them.

use coil_ipc::Region;

use crate::error::ServeError;
use crate::interp::InterruptTarget;
use coil_proto::UdfSpec;

/// Whether this build can run own-GIL sub-interpreters (CPython ≥ 3.13).
pub const SUBINTERPRETERS: bool = cfg!(Py_3_13);

/// Standard-library modules imported in the **main** interpreter before the
/// first sub-interpreter is created.
///
/// On CPython 3.13, `datetime` is the one that must be: CPython 3.13.0's `_datetime` is the
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
///
/// On 3.14, whose `_datetime` has per-interpreter types (gh-136421 fixed),
/// [`FIXED_IN_3_14`] (`datetime`, and `zoneinfo`, which imports it) are
/// skipped: the work-around stays only where it is needed. The tests run
/// the stdlib stress of issue 10 on both (3.13, and 3.14t in CI).
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

/// The modules of [`IMPORTED_IN_MAIN_FIRST`] that CPython 3.14 no longer
/// needs imported in the main interpreter first.
pub const FIXED_IN_3_14: &[&str] = &["datetime", "zoneinfo"];

/// Imports [`IMPORTED_IN_MAIN_FIRST`] in the main interpreter, once per
/// process. Call with the life-cycle lock (`interp::lifecycle`) held and attached to the main
/// interpreter.
#[cfg(Py_3_13)]
fn import_in_main_first(main: pyo3::Python<'_>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Acquire) {
        return;
    }
    for module in IMPORTED_IN_MAIN_FIRST {
        if cfg!(Py_3_14) && FIXED_IN_3_14.contains(module) {
            continue;
        }
        if let Err(e) = main.import(*module) {
            // A Python built without a module (e.g. no sqlite3) is fine: a
            // UDF cannot import it in a sub-interpreter either.
            tracing::debug!("importing {module} in the main interpreter: {e}");
        }
    }
    DONE.store(true, Ordering::Release);
}

/// The lock under which every sub-interpreter coil creates runs an
/// extension module's init (`udf.py`'s `serialise_extension_imports` wraps
/// `ExtensionFileLoader.create_module` and `exec_module` in it). CPython
/// runs a single-phase module's init *before* it refuses the module in an
/// isolated interpreter, and some inits are not safe to run in two
/// interpreters at once: two sub-interpreters importing `readline` on their
/// first batch crashed a free-threaded 3.14 host (`malloc_consolidate():
/// invalid chunk size`, 19 runs of 60 here). Loading UDFs is already
/// serialised by the life-cycle lock; this covers imports made later, from
/// inside a UDF.
///
/// Re-entrant on the thread that holds it (an extension's init may import
/// another extension); a thread waits for it with its interpreter detached,
/// so the holder's interpreter never waits for a waiter's. (Not
/// `parking_lot::ReentrantMutex`: its guard is not `Send`, so it cannot be
/// taken inside pyo3's `detach` and held after it.)
#[cfg(Py_3_13)]
struct ExtensionInits {
    /// The holder and how many times it took the lock.
    holder: std::sync::Mutex<(Option<std::thread::ThreadId>, usize)>,
    /// Signalled when the holder lets go.
    freed: std::sync::Condvar,
}

#[cfg(Py_3_13)]
static EXTENSION_INITS: ExtensionInits = ExtensionInits {
    holder: std::sync::Mutex::new((None, 0)),
    freed: std::sync::Condvar::new(),
};

#[cfg(Py_3_13)]
impl ExtensionInits {
    fn holder(&self) -> std::sync::MutexGuard<'_, (Option<std::thread::ThreadId>, usize)> {
        // Nothing is left half-done under this mutex by a panic.
        self.holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn acquire(&self) {
        let me = std::thread::current().id();
        let mut held = self.holder();
        loop {
            match held.0 {
                None => {
                    *held = (Some(me), 1);
                    return;
                }
                Some(t) if t == me => {
                    held.1 += 1;
                    return;
                }
                Some(_) => {
                    held = self
                        .freed
                        .wait(held)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                }
            }
        }
    }

    fn release(&self) {
        let me = std::thread::current().id();
        let mut held = self.holder();
        if held.0 == Some(me) {
            held.1 -= 1;
            if held.1 == 0 {
                held.0 = None;
                self.freed.notify_one();
            }
        }
    }
}

/// Holds [`EXTENSION_INITS`] until dropped.
#[cfg(Py_3_13)]
struct ExtensionInitHeld;

#[cfg(Py_3_13)]
impl Drop for ExtensionInitHeld {
    fn drop(&mut self) {
        EXTENSION_INITS.release();
    }
}

/// Wraps this interpreter's extension-module loader in [`EXTENSION_INITS`].
#[cfg(Py_3_13)]
fn serialise_extension_imports(py: pyo3::Python<'_>) -> pyo3::PyResult<()> {
    use pyo3::prelude::*;
    use pyo3::types::{PyCFunction, PyDict, PyTuple};

    let helper = crate::helper::udf_helper(py)?;
    // `locked(f, *args)`: `f(*args)` under the lock. Taking the lock, the
    // call and letting go are one call from Python, so an exception raised
    // into the thread (a timeout) can never fall between taking the lock
    // and the `try` that would let it go.
    let locked = PyCFunction::new_closure(
        py,
        Some(c"coil_extension_init_locked"),
        None,
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<Py<PyAny>> {
            let py = args.py();
            let f = args.get_item(0)?;
            let rest = args.get_slice(1, args.len());
            // Detached while it waits: the holder may be in this very
            // interpreter's import machinery on another thread.
            py.detach(|| EXTENSION_INITS.acquire());
            let _held = ExtensionInitHeld;
            Ok(f.call1(rest)?.unbind())
        },
    )?;
    helper
        .getattr("serialise_extension_imports")?
        .call1((locked,))?;
    Ok(())
}

/// Serves `region` like [`serve_in_process`](super::serve_in_process), in a
/// new own-GIL sub-interpreter owned by this thread; `started` receives the
/// interpreter's [`InterruptTarget`] before the UDF loads.
///
/// Sub-interpreters are created and their UDFs loaded one at a time in a
/// process, after [`IMPORTED_IN_MAIN_FIRST`] was imported in the main
/// interpreter; they are also ended one at a time.
///
/// # Errors
///
/// As [`serve`](super::serve); [`ServeError::Unsupported`] on a build
/// before CPython 3.13.
#[cfg(Py_3_13)]
pub fn serve_in_subinterpreter(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    limiter: Option<&Region>,
    shelf: Option<std::sync::Arc<coil_proto::Shelf>>,
    started: &dyn Fn(InterruptTarget),
) -> Result<(), ServeError> {
    use pyo3::Python;

    let (mut rx, mut tx) = super::rings(region)?;
    Python::initialize();
    let starting = crate::interp::lifecycle();
    Python::attach(|main| {
        import_in_main_first(main);
        let Some(sub) = crate::interp::SubInterpreter::new(main) else {
            drop(starting);
            let message = "CPython could not create an own-GIL sub-interpreter".to_string();
            super::report_load_failure(&mut tx, "RuntimeError", &message);
            return Err(ServeError::Unsupported(message));
        };
        let target = sub.interrupt_target();
        started(target.clone());
        let mut starting = Some(starting);
        let mut job = super::Job::new(spec, max_message, Some(target.flag()), limiter);
        job.shelf = shelf;
        job.sub_interpreter = true;
        let result = sub.with(|py| {
            if let Err(e) = serialise_extension_imports(py) {
                tracing::warn!("cannot serialise extension-module inits in a sub-interpreter: {e}");
            }
            super::run_in_process(py, region, &job, &mut rx, &mut tx, || drop(starting.take()))
        });
        // Released when the UDF loaded; this covers a serve loop that ended
        // before it got that far (ending `sub` takes the lock again).
        drop(starting);
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
    _limiter: Option<&Region>,
    _shelf: Option<std::sync::Arc<coil_proto::Shelf>>,
    _started: &dyn Fn(InterruptTarget),
) -> Result<(), ServeError> {
    Err(ServeError::Unsupported(
        "sub-interpreter mode needs CPython >= 3.13 (on 3.12 decimal and datetime crash inside own-GIL sub-interpreters)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(Py_3_13)]
    #[test]
    fn an_interrupt_reaches_a_sub_interpreter_and_does_nothing_once_it_has_ended() {
        use crate::serve::tests::{interrupt_then_retire, udf, TestHost, MAX, SPIN};

        let spec = udf("spin", SPIN);
        // After `finish` the interpreter has ended: the late interrupt must
        // not touch it.
        interrupt_then_retire(TestHost::start(move |region, started| {
            serve_in_subinterpreter(region, &spec, MAX, None, None, started)
        }));
    }
}
