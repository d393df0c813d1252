//! The worker process: serve a region's ring pair with an [`Executor`].

use std::time::Duration;

use coil_ipc::{Consumer, ParentWatch, Producer, Region, RingRecvError, Value};
use pyo3::prelude::*;

use crate::executor::{BatchError, Executor, PyErrorInfo, UdfSpec};
use crate::protocol::{self, After};

/// How long a worker waits for its next batch before it checks in with
/// itself (it waits again; the host closes the ring to stop it).
const IDLE: Duration = Duration::from_secs(3600);
/// How long a worker waits for room for an answer.
const ANSWER: Duration = Duration::from_secs(600);

/// Why a worker stopped other than by the host closing its ring.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The UDF could not be loaded (already reported to the host).
    #[error(transparent)]
    Load(#[from] crate::executor::LoadError),
    /// The region's rings could not be taken.
    #[error("ring endpoint: {0}")]
    Endpoint(#[from] coil_ipc::EndpointError),
    /// A ring failed: the host died, or wrote something no host would.
    #[error("ring: {0}")]
    Recv(#[from] RingRecvError),
    /// An answer could not be sent.
    #[error("sending an answer: {0}")]
    Push(#[from] coil_ipc::RingPushError),
    /// A frame that is not a batch.
    #[error("unexpected frame tag {0}")]
    UnexpectedTag(u16),
    /// A message could not be sent or reassembled.
    #[error("message: {0}")]
    Message(#[from] protocol::MessageError),
    /// The mode cannot run in this build or on this machine.
    #[error("{0}")]
    Unsupported(String),
    /// A batch frame too short for its sequence number.
    #[error("batch frame: {0}")]
    Decode(#[from] coil_ipc::DecodeError),
}

fn one_row(tag_seq: Option<u64>, row: &[Value], out: &mut Vec<u8>) {
    out.clear();
    if let Some(seq) = tag_seq {
        protocol::put_seq(out, seq).expect("a Vec never fills");
    }
    coil_ipc::encode_batch(std::slice::from_ref(&row.to_vec()), out).expect("a Vec never fills");
}

/// Tells the host that loading failed, as a `LOAD_FAILED` frame.
pub(crate) fn report_load_failure(tx: &mut Producer, type_name: &str, message: &str) {
    let mut out = Vec::new();
    one_row(
        None,
        &[
            Value::Str(type_name.into()),
            Value::Str(message.into()),
            Value::Str(String::new()),
        ],
        &mut out,
    );
    if tx
        .push_timeout(protocol::TAG_LOAD_FAILED, &out, ANSWER)
        .is_ok()
    {
        tx.flush();
    }
}

fn error_row(e: &PyErrorInfo) -> [Value; 3] {
    [
        Value::Str(e.type_name.clone()),
        Value::Str(e.message.clone()),
        Value::Str(e.traceback.clone()),
    ]
}

/// Serves ring 0 (batches in) and ring 1 (answers out) of `region` with the
/// UDF `spec` until the host closes ring 0, then runs the UDF's `close()`.
/// Batches and answers larger than a frame travel in pieces, up to
/// `max_message` bytes.
///
/// # Errors
///
/// [`ServeError`]; a load failure has been reported to the host first.
pub fn serve(region: &Region, spec: &UdfSpec, max_message: usize) -> Result<(), ServeError> {
    let mut rx = region.consumer(0)?;
    let mut tx = region.producer(1)?;
    rx.set_peer_watch(ParentWatch::new());
    tx.set_peer_watch(ParentWatch::new());
    Python::initialize();
    Python::attach(|py| run(py, region, spec, max_message, &mut rx, &mut tx, || {}))
}

/// Serves `region` like [`serve`], on the calling thread of a process that
/// embeds Python itself (the in-process modes): no parent watch, output of
/// the interpreter routed to `tracing` (target `coil::worker`), and the
/// thread's Python ident published in header word 1 so that
/// [`interrupt`](crate::interrupt) can raise `TimeoutError` in it.
///
/// # Errors
///
/// As [`serve`].
pub fn serve_in_process(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
) -> Result<(), ServeError> {
    let mut rx = region.consumer(0)?;
    let mut tx = region.producer(1)?;
    Python::initialize();
    Python::attach(|py| run_in_process(py, region, spec, max_message, &mut rx, &mut tx, || {}))
}

/// The in-process serve loop, in whichever interpreter this thread is
/// attached to: routes the interpreter's output to the log, publishes the
/// thread's Python ident in header word 1 (for interrupting it), and runs.
/// `loaded` is called once the UDF has loaded (or failed to), before the
/// first batch.
pub(crate) fn run_in_process(
    py: Python<'_>,
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    rx: &mut Consumer,
    tx: &mut Producer,
    loaded: impl FnOnce(),
) -> Result<(), ServeError> {
    if let Err(e) = crate::executor::route_output_to_log(py) {
        tracing::warn!("cannot route Python's output to the log: {e}");
    }
    // SAFETY: the runtime is initialized and this thread is attached; the
    // call only reads the current thread's identifier.
    let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    if let Some(w) = region.user_word(1) {
        w.store(ident as u64);
    }
    run(py, region, spec, max_message, rx, tx, loaded)
}

/// Raises `TimeoutError` in the main-interpreter thread whose Python ident
/// is `ident` (as [`serve_in_process`] publishes it). It lands when that
/// thread next runs Python bytecode: a thread blocked in C (a long
/// `time.sleep`, a C extension's loop) is not interrupted until it returns.
pub fn interrupt(ident: u64) {
    Python::attach(|_py| {
        // SAFETY: we are attached to the interpreter the thread runs in
        // (the main one); `PyExc_TimeoutError` is a static exception type;
        // the call only marks the target thread state.
        unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(
                ident as std::os::raw::c_long,
                pyo3::ffi::PyExc_TimeoutError,
            );
        }
    });
}

fn run(
    py: Python<'_>,
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    rx: &mut Consumer,
    tx: &mut Producer,
    loaded: impl FnOnce(),
) -> Result<(), ServeError> {
    let mut out = Vec::with_capacity(64 * 1024);
    let exec = Executor::load(py, spec);
    loaded();
    let mut exec = match exec {
        Ok(e) => e,
        Err(e) => {
            one_row(None, &error_row(&e.error), &mut out);
            tx.push_timeout(protocol::TAG_LOAD_FAILED, &out, ANSWER)?;
            tx.flush();
            return Err(e.into());
        }
    };
    if let Some(word) = region.user_word(0) {
        exec.set_progress(word);
    }
    let version = Python::version_str().to_string();
    one_row(
        None,
        &[
            Value::Int(i64::from(std::process::id())),
            Value::Str(version),
        ],
        &mut out,
    );
    tx.push_timeout(protocol::TAG_READY, &out, ANSWER)?;
    tx.flush();
    let mut big = Vec::new();
    loop {
        let frame = match py.detach(|| rx.recv_timeout(IDLE)) {
            Ok(f) => f,
            Err(RingRecvError::Closed) => break,
            Err(RingRecvError::Timeout { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        out.clear();
        let (seq, result) = if frame.tag() == protocol::TAG_PART {
            // A batch larger than a frame: collect its pieces first.
            big.clear();
            frame.copy_into(&mut big);
            drop(frame);
            let tag = py.detach(|| protocol::assemble_rest(rx, &mut big, max_message, IDLE))?;
            if tag != protocol::TAG_BATCH {
                return Err(ServeError::UnexpectedTag(tag));
            }
            let seq = protocol::read_seq(&big[..])?;
            protocol::put_seq(&mut out, seq).expect("a Vec never fills");
            out.extend_from_slice(&[0; protocol::TIMES_LEN]);
            (
                seq,
                exec.run_batch(py, &After::new(&big[..], protocol::SEQ_LEN), &mut out),
            )
        } else {
            if frame.tag() != protocol::TAG_BATCH {
                return Err(ServeError::UnexpectedTag(frame.tag()));
            }
            let seq = protocol::read_seq(&frame)?;
            protocol::put_seq(&mut out, seq).expect("a Vec never fills");
            out.extend_from_slice(&[0; protocol::TIMES_LEN]);
            (
                seq,
                exec.run_batch(py, &After::new(&frame, protocol::SEQ_LEN), &mut out),
            )
        };
        let tag = match result {
            Ok(()) if out.len() <= max_message => {
                let mut times = Vec::with_capacity(protocol::TIMES_LEN);
                protocol::put_times(&mut times, exec.last_times()).expect("a Vec never fills");
                out[protocol::SEQ_LEN..protocol::SEQ_LEN + protocol::TIMES_LEN]
                    .copy_from_slice(&times);
                protocol::TAG_RESULT
            }
            Ok(()) => {
                let msg = format!(
                    "the results of this batch take {} bytes, more than python.fn-execution.max-message-size ({max_message})",
                    out.len(),
                );
                one_row(Some(seq), &[Value::Int(-1), Value::Str(msg)], &mut out);
                protocol::TAG_BAD_ROW
            }
            Err(BatchError::Udf { row, error }) => {
                let mut r = vec![Value::Int(i64::from(row))];
                r.extend(error_row(&error));
                one_row(Some(seq), &r, &mut out);
                protocol::TAG_UDF_ERROR
            }
            Err(BatchError::Incompatible { row, module, error }) => {
                let mut r = vec![Value::Int(i64::from(row)), Value::Str(module)];
                r.extend(error_row(&error));
                one_row(Some(seq), &r, &mut out);
                protocol::TAG_INCOMPATIBLE
            }
            Err(BatchError::BadRow { row, message }) => {
                let row = row.map(i64::from).unwrap_or(-1);
                one_row(Some(seq), &[Value::Int(row), Value::Str(message)], &mut out);
                protocol::TAG_BAD_ROW
            }
        };
        py.detach(|| protocol::send_message(tx, tag, &out, ANSWER))?;
    }
    if let Err(e) = exec.close(py) {
        eprintln!("coil-worker: close() raised {e}\n{}", e.traceback);
    }
    Ok(())
}

/// Exits the process when its parent dies, even while a UDF runs and the
/// ring is not being waited on: children must not outlive the host.
///
/// `host` is the parent's pid as the parent itself said (the host passes
/// `COIL_HOST_PID`): comparing with it also catches a host that died before
/// this process got this far, whose orphan would otherwise take its new
/// parent for the host.
pub fn watch_parent(host: Option<u32>) {
    let parent = host.unwrap_or_else(std::os::unix::process::parent_id);
    if std::os::unix::process::parent_id() != parent {
        // SAFETY: `_exit` has no preconditions; it ends the process at once,
        // which is what we want: the host is already gone.
        unsafe { libc::_exit(70) };
    }
    std::thread::Builder::new()
        .name("coil-parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                // SAFETY: `_exit` ends the process without running
                // destructors or atexit handlers, which is what we want
                // when the host is gone; it has no preconditions.
                unsafe { libc::_exit(70) };
            }
        })
        .expect("spawning the parent watch thread");
}
