//! A link: the host's end of one executor — a `coil-worker` process behind
//! a pair of rings in a sealed memfd, or an executor thread in this process
//! behind rings in private memory. It sends batches, reads and checks
//! answers and turns them into [`Reply`]s (here); it starts the executor
//! ([`spawn`]), notices deaths and hangs and stops it
//! ([`exit`]), and relays a worker's output to `tracing`
//! ([`output`]).

mod exit;
mod output;
mod spawn;

use std::ops::Range;
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coil_ipc::{ByteSource, Consumer, Producer, Region, RingPushError, RingRecvError, Value};
use coil_proto::{layout, Answer, Expect, MessageError, RowFailure, RowFault, Tag, Times};
use coil_worker::InterruptTarget;

use crate::error::{Direction, ProtocolError, RunError};

use output::StderrTail;
pub(crate) use spawn::Spawn;
pub use spawn::WorkerCommand;

/// The first frame of an answer: decoded, or the first piece of a large
/// one, copied out of the ring.
enum First {
    Whole(Result<Answer, ProtocolError>),
    Piece(Vec<u8>),
    Nothing,
}

/// A batch's results: values of the row codec (answering rows), or one
/// Arrow column (answering a column batch).
#[derive(Debug)]
pub(crate) enum Results {
    /// One value per row.
    Rows(Vec<Value>),
    /// One column, a value per row.
    Column(arrow_array::ArrayRef),
}

impl Results {
    /// How many rows they answer.
    pub(crate) fn len(&self) -> usize {
        match self {
            Results::Rows(v) => v.len(),
            Results::Column(c) => arrow_array::Array::len(c.as_ref()),
        }
    }
}

/// How waiting for a batch's answer ended.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The batch's results, where the executor's time went, how long the
    /// host took to decode them, and the rows that failed alone (a null
    /// in the results holds each one's place).
    Values(Results, Times, Duration, Vec<(u64, RunError)>),
    /// The row running timed out and was interrupted, and the executor
    /// went on with the batch's other rows (a per-row batch in an executor
    /// thread); or the batch timed out with no row running (its answer is
    /// on its way); or an async executor's batch timed out while its
    /// event loop still turns (its rows time out one by one): wait
    /// again, with a fresh deadline.
    Interrupted,
    /// An error the UDF or a row caused; the executor is fine.
    Error(RunError),
    /// The executor broke (died, hung, wrote garbage) and must be replaced.
    Broken(RunError),
    /// Not back yet (only when not waiting).
    Pending,
}

/// Where an executor runs.
enum Executor {
    /// A `coil-worker` process: the child, the threads relaying its stdout
    /// and stderr to `tracing`, and the last lines of its stderr.
    Process {
        child: Child,
        logs: Vec<JoinHandle<()>>,
        stderr: StderrTail,
    },
    /// An executor thread of this process: its handle (`None` once
    /// abandoned), and where to raise `TimeoutError` in it.
    Thread {
        handle: Option<JoinHandle<()>>,
        interrupt: Option<InterruptTarget>,
    },
}

/// One executor and the host's ends of its rings.
pub(crate) struct Link {
    slot: usize,
    executor: Executor,
    region: Region,
    tx: Producer,
    rx: Consumer,
    max_message: usize,
    /// The tag batches go with: [`Tag::BatchPerRow`] when rows fail alone.
    batch_tag: Tag,
    /// An executor thread's batch timed out with no row running, and it
    /// was given more time; reset by its answer.
    waited_idle: bool,
    /// The Arrow type of the UDF's results, as the executor said when it
    /// was ready (declared, or read from the return annotation).
    returns: Option<arrow_schema::DataType>,
    /// What the UDF's signature says, as the executor read it.
    signature: coil_proto::UdfSignature,
    /// The module that turned a free-threaded CPython's GIL back on when
    /// the UDF loaded ("" if none did), as the executor said.
    gil: Option<String>,
    /// The async executor's pulse word when its batch's timeout was last
    /// checked.
    pulse: u64,
    /// The runner's counters, and the executor's counts of attempts and
    /// retries already added to them.
    counters: std::sync::Arc<crate::metrics::Counters>,
    counted: (u64, u64),
    /// `python.worker.memory-limit` of a worker process.
    memory_limit: Option<u64>,
    /// An executor thread's: the first row of the batch it was last sent,
    /// for what it says if it crashes the process (`crate::crash`).
    first_row: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// A worker process's place under `python.worker.max-processes`,
    /// given back when the link drops.
    pub(crate) ticket: Option<crate::capacity::Ticket>,
    /// An executor thread's hand-off of column batches and results (see
    /// [`coil_proto::Shelf`]); `None` for a worker process, whose frames
    /// may then never name one.
    shelf: Option<std::sync::Arc<coil_proto::Shelf>>,
    /// A worker process's arena: batches' fixed-width values are placed in
    /// its requests half, and results' claimed from its answers half.
    arena: Option<coil_ipc::Arena>,
}

impl Link {
    /// A link to a just started executor, before it said it is ready.
    fn new(slot: usize, executor: Executor, region: Region, spawn: &Spawn) -> Link {
        let tx = region.producer(layout::REQUESTS).expect("a fresh region");
        let rx = region.consumer(layout::ANSWERS).expect("a fresh region");
        Link {
            slot,
            executor,
            region,
            tx,
            rx,
            max_message: spawn.tuning.max_message,
            // Scalar and table UDFs run row by row: their batches travel
            // per row under every policy, so that under `fail` the rows
            // before a failed one are answered (the host stops at the
            // failure). A vectorized UDF's call covers its whole batch.
            batch_tag: if spawn.tuning.per_row
                || matches!(
                    spawn.spec.kind,
                    crate::UdfKind::Scalar | crate::UdfKind::Table
                ) {
                Tag::BatchPerRow
            } else {
                Tag::Batch
            },
            waited_idle: false,
            returns: None,
            signature: coil_proto::UdfSignature::default(),
            gil: None,
            pulse: 0,
            counters: std::sync::Arc::clone(&spawn.counters),
            counted: (0, 0),
            memory_limit: match spawn.mode {
                crate::ExecutionMode::Process => spawn.tuning.memory_limit,
                _ => None,
            },
            first_row: None,
            ticket: None,
            shelf: None,
            arena: None,
        }
    }

    /// Whether an async executor's event loop turned since this was last
    /// asked: its batch is slow because its rows wait (each one is
    /// cancelled at its own timeout), not because the executor hangs. A
    /// sync executor's pulse never moves.
    fn pulse_moved(&mut self) -> bool {
        let now = self
            .region
            .user_word(layout::WORD_PULSE)
            .map_or(0, |w| w.load());
        std::mem::replace(&mut self.pulse, now) != now
    }

    /// Adds the calls of the UDF this executor made since last counted,
    /// and the retries among them, to the runner's counters. The executor
    /// counts them when retries, a rate limit or an async UDF make it
    /// count; untrusted words, only summed into metrics.
    fn count_attempts(&mut self) {
        let word = |w| self.region.user_word(w).map_or(0, |w| w.load());
        let now = (word(layout::WORD_ATTEMPTS), word(layout::WORD_RETRIES));
        let (attempts, retries) = (
            now.0.saturating_sub(self.counted.0),
            now.1.saturating_sub(self.counted.1),
        );
        self.counted = now;
        self.counters.record_attempts(attempts, retries);
    }

    /// The Arrow type of the UDF's results, as the executor said.
    pub fn returns(&self) -> Option<&arrow_schema::DataType> {
        self.returns.as_ref()
    }

    /// What the UDF's signature says, as the executor said.
    pub fn signature(&self) -> &coil_proto::UdfSignature {
        &self.signature
    }

    /// On a free-threaded CPython whose GIL is on once the UDF loaded: the
    /// module whose import turned it on ("" if none did).
    pub fn gil_enabled_by(&self) -> Option<&str> {
        self.gil.as_deref()
    }

    /// The worker process's id (`None` for an executor thread).
    pub fn pid(&self) -> Option<u32> {
        match &self.executor {
            Executor::Process { child, .. } => Some(child.id()),
            Executor::Thread { .. } => None,
        }
    }

    /// An executor thread's shelf, on which column batches are handed over
    /// instead of encoded (`None` for a worker process).
    pub fn shelf(&self) -> Option<&std::sync::Arc<coil_proto::Shelf>> {
        self.shelf.as_ref()
    }

    /// A worker process's arena (`None` for an executor thread, or when
    /// `python.fn-execution.arena.size` is 0).
    pub fn arena(&self) -> Option<&coil_ipc::Arena> {
        self.arena.as_ref()
    }

    /// Closes the request ring: the executor runs the UDF's `close()` and
    /// stops.
    pub fn close_input(&mut self) {
        self.tx.close();
    }

    /// Puts a batch (`seq` and rows, encoded) into the request ring
    /// without waiting; `Ok(false)` if there is no room yet.
    pub fn try_send(&mut self, payload: &[u8], columnar: bool) -> Result<bool, RunError> {
        let tag = batch_tag(self.batch_tag, columnar);
        match self.tx.try_reserve(payload.len()) {
            Ok(mut w) => {
                w.append(payload).expect("reserved exactly this much");
                w.commit(tag.raw());
                self.tx.flush();
                Ok(true)
            }
            Err(RingPushError::Full) => Ok(false),
            Err(RingPushError::PeerDead | RingPushError::Closed) => Err(self.died(0..0)),
            Err(e) => Err(self.protocol(0..0, e.into())),
        }
    }

    /// Whether a batch of `len` bytes must travel in pieces.
    pub fn needs_pieces(&self, len: usize) -> bool {
        len > self.tx.max_frame_len()
    }

    /// Sends a batch, in pieces if it is larger than a frame, waiting up to
    /// `wait` for room for each frame. Only call it while the executor has
    /// nothing else of ours to answer: it reads while we write.
    pub fn send(&mut self, payload: &[u8], columnar: bool, wait: Duration) -> Result<(), RunError> {
        let tag = batch_tag(self.batch_tag, columnar);
        match coil_proto::send_message(&mut self.tx, tag, payload, wait) {
            Ok(()) => Ok(()),
            Err(MessageError::Push(RingPushError::PeerDead | RingPushError::Closed)) => {
                Err(self.died(0..0))
            }
            Err(MessageError::Push(RingPushError::Timeout { .. })) => {
                Err(self.timed_out(0..0, Some(wait)))
            }
            Err(e) => Err(self.protocol(0..0, e.into())),
        }
    }

    /// The answer to batch `seq` (rows `rows`), the next one this executor
    /// sends: waits until `deadline` if `wait`, else only looks.
    pub fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Reply {
        let left = deadline.map_or(Duration::from_secs(365 * 24 * 3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        if let Some(first) = &self.first_row {
            first.store(rows.start, std::sync::atomic::Ordering::Relaxed);
        }
        let expect = Expect::Batch {
            seq,
            rows: rows.end - rows.start,
        };
        // Host decode time runs from here when the frame is already there;
        // when we wait, it includes the wait's last moments only.
        let decode_started;
        let refs = coil_proto::Refs {
            shelf: self.shelf.as_deref(),
            arena: self.arena.as_ref().map(|a| (a, coil_ipc::Half::Answers)),
        };
        // The first frame, decoded (or its bytes copied) before the borrow
        // of the ring ends.
        let first = {
            let f = if wait {
                self.rx.recv_timeout(left).map(Some)
            } else {
                self.rx.try_recv()
            };
            decode_started = Instant::now();
            match f {
                Ok(Some(frame)) if frame.tag() == Tag::Part.raw() => {
                    let mut buf = Vec::new();
                    frame.copy_into(&mut buf);
                    Ok(First::Piece(buf))
                }
                Ok(Some(frame)) => Ok(First::Whole(decode(frame.tag(), &frame, expect, refs))),
                Ok(None) => Ok(First::Nothing),
                Err(e) => Err(e),
            }
        };
        let got = match first {
            Ok(First::Piece(mut buf)) => {
                // An answer larger than a frame: collect its pieces.
                let left = deadline.map_or(left, |d| d.saturating_duration_since(Instant::now()));
                match coil_proto::assemble_rest(&mut self.rx, &mut buf, self.max_message, left) {
                    Ok(tag) => Ok(Some(decode(tag.raw(), &buf[..], expect, refs))),
                    Err(MessageError::Recv(e)) => Err(e),
                    Err(e) => Ok(Some(Err(e.into()))),
                }
            }
            Ok(First::Whole(answer)) => Ok(Some(answer)),
            Ok(First::Nothing) => Ok(None),
            Err(e) => Err(e),
        };
        match got {
            Ok(None) => Reply::Pending,
            Ok(Some(Ok(answer))) => {
                self.rx.flush();
                self.waited_idle = false;
                self.count_attempts();
                let reply = reply(answer, rows, timeout);
                match reply {
                    Reply::Values(results, times, _, failed) => {
                        Reply::Values(results, times, decode_started.elapsed(), failed)
                    }
                    other => other,
                }
            }
            Ok(Some(Err(e))) => Reply::Broken(self.protocol(rows, e)),
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => Reply::Broken(self.died(rows)),
            Err(RingRecvError::Timeout { .. })
                if self.signature.asynchronous && self.pulse_moved() =>
            {
                Reply::Interrupted
            }
            Err(RingRecvError::Timeout { .. })
                if matches!(self.executor, Executor::Thread { .. }) =>
            {
                self.interrupt(rows, timeout)
            }
            Err(RingRecvError::Timeout { .. }) => Reply::Broken(self.timed_out(rows, timeout)),
            Err(e) => Reply::Broken(self.protocol(rows, e.into())),
        }
    }

    /// The row of `rows` the executor says it is running, if it is running
    /// one of them. It publishes `row + 1` while it runs a row and 0
    /// between batches: untrusted, so only a value within the batch names a
    /// row.
    fn running_row(&self, rows: &Range<u64>) -> Option<u64> {
        let at = self.progress();
        let len = rows.end - rows.start;
        (at > 0 && at <= len).then(|| rows.start + at - 1)
    }

    /// The executor's progress word, as it published it.
    fn progress(&self) -> u64 {
        self.region
            .user_word(layout::WORD_PROGRESS)
            .map_or(0, |w| w.load())
    }

    fn protocol(&mut self, rows: Range<u64>, error: ProtocolError) -> RunError {
        RunError::Protocol {
            worker: self.slot,
            rows,
            error,
        }
    }
}

/// The tag of a batch: rows or columns (`columnar`), under the error
/// policy `policy` ([`Tag::Batch`] or [`Tag::BatchPerRow`]).
fn batch_tag(policy: Tag, columnar: bool) -> Tag {
    match (columnar, policy) {
        (false, tag) => tag,
        (true, Tag::BatchPerRow) => Tag::ColumnsPerRow,
        (true, _) => Tag::Columns,
    }
}

/// Decodes an answer frame: its tag, then its payload, checked against the
/// batch it must answer.
fn decode<S: ByteSource + ?Sized>(
    raw: u16,
    src: &S,
    expect: Expect,
    refs: coil_proto::Refs<'_>,
) -> Result<Answer, ProtocolError> {
    let tag = Tag::try_from(raw)?;
    Ok(Answer::decode_from(tag, src, expect, refs)?)
}

/// What an executor's answer to a batch of rows `rows` means to the
/// scheduler: results (with the rows that failed alone, numbered across
/// the stream), or the error the batch fails with. `timeout` is the one a
/// row that was interrupted ran past. The host's decode time is left zero
/// (the caller measures it).
fn reply(answer: Answer, rows: Range<u64>, timeout: Option<Duration>) -> Reply {
    let at = |row: u32| rows.start + u64::from(row);
    let (results, times, failed) = match answer {
        Answer::Results {
            times,
            values,
            failed,
            ..
        } => (Results::Rows(values), times, failed),
        Answer::ColumnResults {
            times,
            column,
            failed,
            ..
        } => (Results::Column(column), times, failed),
        Answer::UdfError { row, error, .. } => {
            return Reply::Error(RunError::Udf {
                row: at(row),
                error,
            })
        }
        Answer::Incompatible {
            row, module, error, ..
        } => {
            return Reply::Error(RunError::SubInterpreterIncompatible {
                row: at(row),
                module,
                error,
            })
        }
        Answer::BadRow { row, message, .. } => {
            return Reply::Error(RunError::BadRow {
                row: row.map(at),
                message,
            })
        }
        Answer::TooLarge { bytes, limit, .. } => {
            return Reply::Error(RunError::TooLarge {
                direction: Direction::Results,
                rows,
                bytes,
                limit,
            })
        }
        Answer::Ready { .. } | Answer::LoadFailed { .. } => {
            unreachable!("Expect::Batch decodes only answers to batches")
        }
    };
    let failed = failed
        .into_iter()
        .map(|f| row_error(f, &rows, timeout))
        .collect();
    Reply::Values(results, times, Duration::ZERO, failed)
}

/// A row that failed alone, as its row (numbered across the stream) and
/// its error.
fn row_error(f: RowFailure, rows: &Range<u64>, timeout: Option<Duration>) -> (u64, RunError) {
    let row = rows.start + u64::from(f.row);
    let error = match f.fault {
        RowFault::Raised(error) => RunError::Udf { row, error },
        RowFault::TimedOut(_) => RunError::Timeout {
            row: Some(row),
            after: timeout.unwrap_or_default(),
            rows: row..row + 1,
        },
        RowFault::BadValue(message) => RunError::BadRow {
            row: Some(row),
            message,
        },
    };
    (row, error)
}

#[cfg(test)]
mod tests;
