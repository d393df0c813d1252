//! Serving a region's ring pair with an [`Executor`]: the loop every mode
//! runs (batches in, answers out, each batch under `catch_unwind`), here;
//! the ways into it are one file each: `process.rs` (a `coil-worker`
//! process, [`serve`]), `thread.rs` (a host thread, [`serve_in_process`])
//! and `subinterp.rs` (a host thread in its own sub-interpreter,
//! [`serve_in_subinterpreter`]).

mod pipelined;
mod process;
mod subinterp;
mod thread;

pub use process::{serve, watch_parent};
pub use subinterp::{
    serve_in_subinterpreter, FIXED_IN_3_14, IMPORTED_IN_MAIN_FIRST, SUBINTERPRETERS,
};
pub use thread::serve_in_process;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use coil_ipc::{ByteSource, Consumer, Producer, Region, RingRecvError};
use coil_proto::{layout, Answer, Batch, ProtoError, PyErrorInfo, RowFailure, Tag, Times, UdfSpec};
use pyo3::prelude::*;

use crate::error::{BatchError, ServeError};
use crate::executor::Executor;

/// How long a worker waits for its next batch before it checks in with
/// itself (it waits again; the host closes the ring to stop it).
const IDLE: Duration = Duration::from_secs(3600);
/// How long a worker waits for room for an answer.
const ANSWER: Duration = Duration::from_secs(600);

/// Sends the start-up message `answer` (ready or load failed).
fn send_start(tx: &mut Producer, answer: &Answer) -> Result<(), coil_ipc::RingPushError> {
    let mut out = Vec::new();
    let tag = answer.encode(&mut out).expect("a Vec never fills");
    tx.push_timeout(tag.raw(), &out, ANSWER)?;
    tx.flush();
    Ok(())
}

/// Tells the host that loading failed, as a `LoadFailed` message.
pub(crate) fn report_load_failure(tx: &mut Producer, type_name: &str, message: &str) {
    let error = PyErrorInfo {
        type_name: type_name.into(),
        message: message.into(),
        traceback: String::new(),
    };
    let _ = send_start(
        tx,
        &Answer::LoadFailed {
            error,
            blocker: None,
        },
    );
}

/// What a serve loop runs: built once by each way of serving.
pub(crate) struct Job<'a> {
    /// The UDF.
    pub spec: &'a UdfSpec,
    /// The largest message, in bytes.
    pub max_message: usize,
    /// The flag the host's interrupt sets (in-process executors only).
    pub interrupted: Option<Arc<AtomicBool>>,
    /// The rate limit the UDF's executors share, if it has one.
    pub limiter: Option<coil_ipc::RateLimiter>,
    /// Where an in-process executor's column batches and results are
    /// handed over without copies (`None`: they travel as bytes).
    pub shelf: Option<Arc<coil_proto::Shelf>>,
    /// Whether the executor runs in a sub-interpreter (not the main one).
    pub sub_interpreter: bool,
    /// A worker process's arena, where column buffers are placed instead
    /// of copied through the rings (see [`coil_ipc::Arena`]).
    pub arena: Option<coil_ipc::Arena>,
}

impl<'a> Job<'a> {
    /// The UDF `spec` with messages up to `max_message` bytes; an
    /// in-process executor also gets the flag the host's interrupt sets.
    /// The first header word of `limiter` (shared by all of the UDF's
    /// executors) holds the rate limit `spec.calls.rate` asks for.
    pub(crate) fn new(
        spec: &'a UdfSpec,
        max_message: usize,
        interrupted: Option<Arc<AtomicBool>>,
        limiter: Option<&Region>,
    ) -> Job<'a> {
        let limiter = spec.calls.rate.and_then(|rate| {
            let word = limiter?.user_word(0)?;
            Some(coil_ipc::RateLimiter::new(word, rate.interval, rate.burst))
        });
        Job {
            spec,
            max_message,
            interrupted,
            limiter,
            shelf: None,
            sub_interpreter: false,
            arena: None,
        }
    }
}

/// The executor's ends of `region`'s rings: batches in, answers out.
pub(crate) fn rings(region: &Region) -> Result<(Consumer, Producer), ServeError> {
    Ok((
        region.consumer(layout::REQUESTS)?,
        region.producer(layout::ANSWERS)?,
    ))
}

/// The in-process serve loop, in whichever interpreter this thread is
/// attached to: routes the interpreter's output to the log and runs.
/// `loaded` is called once the UDF has loaded (or failed to), before the
/// first batch.
pub(crate) fn run_in_process(
    py: Python<'_>,
    region: &Region,
    job: &Job<'_>,
    rx: &mut Consumer,
    tx: &mut Producer,
    loaded: impl FnOnce(),
) -> Result<(), ServeError> {
    if let Err(e) = crate::log::route_output_to_log(py) {
        tracing::warn!("cannot route Python's output to the log: {e}");
    }
    run(py, region, job, rx, tx, loaded)
}

pub(crate) fn run(
    py: Python<'_>,
    region: &Region,
    job: &Job<'_>,
    rx: &mut Consumer,
    tx: &mut Producer,
    loaded: impl FnOnce(),
) -> Result<(), ServeError> {
    let max_message = job.max_message;
    let exec = Executor::load_with(py, job.spec, job.limiter.clone());
    loaded();
    let mut exec = match exec {
        Ok(e) => e,
        Err(e) => {
            send_start(
                tx,
                &Answer::LoadFailed {
                    error: e.error.clone(),
                    blocker: e.blocker.clone(),
                },
            )?;
            return Err(e.into());
        }
    };
    if let Some(word) = region.user_word(layout::WORD_PROGRESS) {
        exec.set_progress(word);
    }
    if let Some(flag) = &job.interrupted {
        exec.set_interrupt_flag(Arc::clone(flag));
    }
    if let Some(shelf) = &job.shelf {
        exec.set_shelf(Arc::clone(shelf));
    }
    exec.set_results_in_place(!job.sub_interpreter);
    if let Some(arena) = &job.arena {
        exec.set_arena(arena.clone());
    }
    if let (Some(attempts), Some(retries)) = (
        region.user_word(layout::WORD_ATTEMPTS),
        region.user_word(layout::WORD_RETRIES),
    ) {
        exec.set_counters(attempts, retries);
    }
    send_start(
        tx,
        &Answer::Ready {
            pid: std::process::id(),
            python: Python::version_str().to_string(),
            returns: exec.returns().cloned(),
            signature: exec.signature().clone(),
            gil: exec.gil_enabled_by().map(str::to_string),
        },
    )?;
    let served = if exec.is_async() {
        pipelined::serve(py, region, rx, tx, &mut exec, max_message)
    } else {
        serve_batches(py, rx, tx, &mut exec, max_message)
    };
    if let Err(e) = exec.close(py) {
        // The host may be gone: a line nobody reads is not worth a panic.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "coil-worker: close() raised {e}\n{}",
            e.traceback
        );
    }
    served
}

/// Serves a sync UDF's batches one after another until the host closes
/// the ring.
fn serve_batches(
    py: Python<'_>,
    rx: &mut Consumer,
    tx: &mut Producer,
    exec: &mut Executor,
    max_message: usize,
) -> Result<(), ServeError> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut big = Vec::new();
    loop {
        let frame = match py.detach(|| rx.recv_timeout(IDLE)) {
            Ok(f) => f,
            Err(RingRecvError::Closed) => break,
            Err(RingRecvError::Timeout { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let tag = if frame.tag() == Tag::Part.raw() {
            // A batch larger than a frame: collect its pieces first.
            big.clear();
            frame.copy_into(&mut big);
            drop(frame);
            let tag = py.detach(|| coil_proto::assemble_rest(rx, &mut big, max_message, IDLE))?;
            run_one(py, exec, tag, &big[..], &mut out, max_message)?
        } else {
            run_one(
                py,
                exec,
                Tag::try_from(frame.tag())?,
                &frame,
                &mut out,
                max_message,
            )?
        };
        if tag == Tag::BadRow {
            // Possibly a panic: leave no half-run batch behind (the
            // progress word, a pending Python exception).
            exec.after_failure(py);
        }
        py.detach(|| coil_proto::send_message(tx, tag, &out, ANSWER))?;
        exec.check_gil(py);
    }
    Ok(())
}

/// Runs the batch in `src`, a frame tagged `tag` (rows or columns, failing
/// as a batch or row by row), and leaves its answer in `out`; returns the
/// answer's tag. A frame that is not a batch is an error.
fn run_one<S: ByteSource + ?Sized>(
    py: Python<'_>,
    exec: &mut Executor,
    tag: Tag,
    src: &S,
    out: &mut Vec<u8>,
    max_message: usize,
) -> Result<Tag, ProtoError> {
    let (columnar, per_row) = crate::executor::batch_kind(tag)?;
    if columnar {
        let batch = coil_proto::Columns::decode_from(src, exec.refs())?;
        Ok(answer_batch(batch.seq, true, out, max_message, |out| {
            exec.run_columns(py, &batch, out, per_row)
                .map(|()| (exec.last_times(), exec.take_failures()))
        }))
    } else {
        let seq = Batch::seq(src)?;
        Ok(answer_batch(seq, false, out, max_message, |out| {
            exec.run_batch(py, &Batch::rows(src), out, per_row)
                .map(|()| (exec.last_times(), exec.take_failures()))
        }))
    }
}

/// Runs batch `seq` with `run` (which appends its results to the buffer
/// and returns the executor's times and the rows that failed) and leaves
/// its answer in `out`:
/// results, or the error answer. A panic inside `run` becomes the batch's
/// `BadRow` answer, so no panic crosses into CPython or ends the executor
/// without an answer (`BadRow` because the protocol has no answer of its
/// own for it; the message says what happened).
pub(crate) fn answer_batch(
    seq: u64,
    columnar: bool,
    out: &mut Vec<u8>,
    max_message: usize,
    run: impl FnOnce(&mut Vec<u8>) -> Result<(Times, Vec<RowFailure>), BatchError>,
) -> Tag {
    Answer::begin_results(seq, out);
    // AssertUnwindSafe: after a panic, nothing `run` touched is used to
    // answer this batch except `out`, which is rewritten from scratch
    // below; the executor resets its own per-batch state
    // (`Executor::after_failure`).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut *out)));
    let answer = match result {
        Ok(Ok((times, failed))) if out.len() <= max_message => {
            Answer::finish_results(out, times);
            return Answer::append_failures(out, &failed, columnar).expect("a Vec never fills");
        }
        Ok(Ok(_)) => Answer::TooLarge {
            seq,
            bytes: out.len() as u64,
            limit: max_message as u64,
        },
        Ok(Err(BatchError::Udf { row, error } | BatchError::TimedOut { row, error })) => {
            Answer::UdfError { seq, row, error }
        }
        Ok(Err(BatchError::Incompatible { row, module, error })) => Answer::Incompatible {
            seq,
            row,
            module,
            error,
        },
        Ok(Err(BatchError::BadRow { row, message })) => Answer::BadRow { seq, row, message },
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Answer::BadRow {
                seq,
                row: None,
                message: format!("the executor panicked running this batch: {what}"),
            }
        }
    };
    answer.encode(out).expect("a Vec never fills")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use coil_ipc::{Consumer, Producer, Region, Row, Value};
    use coil_proto::Expect;

    use super::*;
    use crate::interp::InterruptTarget;

    /// Bounds a broken test's waits; a working executor answers in
    /// milliseconds.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// The largest message in these tests.
    pub(crate) const MAX: usize = 1 << 20;

    /// A UDF that never returns by itself: a pure-Python loop.
    pub(crate) const SPIN: &str = "def spin(x):\n    while True:\n        pass\n";

    pub(crate) use crate::executor::tests::udf;

    /// The host's end of an executor thread under test.
    pub(crate) struct TestHost {
        region: Region,
        tx: Producer,
        rx: Consumer,
        thread: JoinHandle<Result<(), ServeError>>,
        /// What the executor handed over as it started.
        pub(crate) target: InterruptTarget,
    }

    impl TestHost {
        /// Starts `serve` on a thread of its own (it gets the region and
        /// the callback for its interrupt target) and waits until it is
        /// ready.
        pub(crate) fn start(
            serve: impl FnOnce(&Region, &dyn Fn(InterruptTarget)) -> Result<(), ServeError>
                + Send
                + 'static,
        ) -> TestHost {
            let region = Region::create_private(&[1 << 16, 1 << 16]).expect("a region");
            let theirs = region.clone();
            let (send_target, got_target) = mpsc::channel();
            let thread = std::thread::spawn(move || {
                serve(&theirs, &move |t| {
                    let _ = send_target.send(t);
                })
            });
            let target = got_target
                .recv_timeout(PATIENCE)
                .expect("the executor hands over its target first");
            let tx = region.producer(layout::REQUESTS).expect("a fresh region");
            let rx = region.consumer(layout::ANSWERS).expect("a fresh region");
            let mut host = TestHost {
                region,
                tx,
                rx,
                thread,
                target,
            };
            match host.next(Expect::Start) {
                Answer::Ready { .. } => host,
                other => panic!("expected Ready, got {other:?}"),
            }
        }

        fn next(&mut self, expect: Expect) -> Answer {
            let frame = self.rx.recv_timeout(PATIENCE).expect("an answer");
            let tag = Tag::try_from(frame.tag()).expect("a known tag");
            let answer = Answer::decode(tag, &frame, expect).expect("a well-formed answer");
            drop(frame);
            self.rx.flush();
            answer
        }

        /// Sends batch `seq`.
        pub(crate) fn send(&mut self, seq: u64, rows: &[Row]) {
            let mut payload = Vec::new();
            Batch::encode(seq, rows, &mut payload).expect("encoding a batch");
            coil_proto::send_message(&mut self.tx, Tag::Batch, &payload, PATIENCE)
                .expect("sending a batch");
        }

        /// The answer to batch `seq` of `rows` rows.
        pub(crate) fn answer(&mut self, seq: u64, rows: usize) -> Answer {
            self.next(Expect::Batch {
                seq,
                rows: rows as u64,
            })
        }

        /// Waits until the UDF runs row `row` of the current batch.
        pub(crate) fn wait_for_row(&self, row: u64) {
            let deadline = Instant::now() + PATIENCE;
            let progress = || {
                self.region
                    .user_word(layout::WORD_PROGRESS)
                    .map_or(0, |w| w.load())
            };
            while progress() != row + 1 {
                assert!(Instant::now() < deadline, "the UDF never reached row {row}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        /// Closes the executor's input and waits for it to stop.
        pub(crate) fn finish(mut self) -> Result<(), ServeError> {
            self.tx.close();
            self.thread
                .join()
                .expect("the executor thread does not panic")
        }
    }

    /// Runs [`SPIN`] in the executor `host` serves, interrupts it, expects
    /// the `TimeoutError` answer, stops the executor, and checks that a
    /// late interrupt finds nothing to touch.
    pub(crate) fn interrupt_then_retire(mut host: TestHost) {
        let target = host.target.clone();
        host.send(0, &[vec![Value::Int(1)]]);
        host.wait_for_row(0);
        assert!(target.interrupt(), "the executor thread was found");
        match host.answer(0, 1) {
            Answer::UdfError { row: 0, error, .. } => assert_eq!(error.type_name, "TimeoutError"),
            other => panic!("expected a TimeoutError, got {other:?}"),
        }
        host.finish().expect("the executor stops cleanly");
        assert!(!target.interrupt(), "a late interrupt finds no executor");
    }

    #[test]
    fn an_interrupt_raises_timeout_error_in_the_udf_and_does_nothing_once_the_executor_is_gone() {
        let spec = udf("spin", SPIN);
        interrupt_then_retire(TestHost::start(move |region, started| {
            serve_in_process(region, &spec, MAX, None, None, started)
        }));
    }

    #[test]
    fn a_panic_in_a_batch_becomes_its_error_answer() {
        let mut out = Vec::new();
        let tag = answer_batch(7, false, &mut out, 1 << 20, |_| panic!("boom in row 3"));
        assert_eq!(tag, Tag::BadRow);
        match Answer::decode(tag, &out[..], Expect::Batch { seq: 7, rows: 5 }).unwrap() {
            Answer::BadRow {
                row: None, message, ..
            } => {
                assert!(
                    message.contains("panicked") && message.contains("boom in row 3"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        // And the next batch is answered as usual.
        let tag = answer_batch(8, false, &mut out, 1 << 20, |out| {
            coil_ipc::encode_batch(&[vec![Value::Int(1)]], out).unwrap();
            Ok((Times::default(), Vec::new()))
        });
        assert_eq!(tag, Tag::Results);
        assert!(matches!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 8, rows: 1 }),
            Ok(Answer::Results { .. })
        ));
    }

    #[test]
    fn results_over_the_limit_are_a_too_large_answer() {
        let mut out = Vec::new();
        let tag = answer_batch(1, false, &mut out, 64, |out| {
            coil_ipc::encode_batch(&[vec![Value::Str("x".repeat(100))]], out).unwrap();
            Ok((Times::default(), Vec::new()))
        });
        assert_eq!(tag, Tag::TooLarge);
        assert!(matches!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 1, rows: 1 }),
            Ok(Answer::TooLarge { limit: 64, .. })
        ));
    }
}
