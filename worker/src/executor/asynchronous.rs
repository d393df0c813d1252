//! The async path: an async UDF's batch is started (its rows decoded and
//! handed to the executor's event loop, `coil._Loop`), the loop runs in
//! turns while the serve loop takes the next batches, and the batch is
//! finished (its results encoded in row order) once its last row is done.
//! Rows of several batches are in flight at once, up to the UDF's
//! concurrency; answers still go back in batch order.

use std::time::{Duration, Instant};

use coil_ipc::{BatchDecoder, BatchEncoder, ByteSource};
use coil_proto::{Batch, ProtoError, RowFailure, Tag, Times};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::Executor;
use crate::arrow::{needs_kit, ArrowColumn, PyKit, ResultColumn};
use crate::error::{bad_batch, bad_row, decode_err, enc_err, BatchError};

/// A batch whose rows are in the event loop.
pub struct Started {
    seq: u64,
    columnar: bool,
    per_row: bool,
    rows: u32,
    /// The batch's rows in the loop (`coil._Batch`), or why they could not
    /// start (answered in the batch's turn).
    batch: Result<Py<PyAny>, BatchError>,
    started: Instant,
    decode: Duration,
}

impl Started {
    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether it is a column batch.
    pub fn columnar(&self) -> bool {
        self.columnar
    }
}

/// The exception row `row` ended with, if it failed (`any`: whether any
/// row of the batch did).
fn failure<'py>(errors: &Bound<'py, PyDict>, any: bool, row: u32) -> Option<Bound<'py, PyAny>> {
    if !any {
        return None;
    }
    errors.get_item(row).ok().flatten()
}

/// Whether a frame tagged `tag` is a column batch, and whether its rows
/// fail alone; an error if it is not a batch.
pub(crate) fn batch_kind(tag: Tag) -> Result<(bool, bool), ProtoError> {
    match tag {
        Tag::Batch => Ok((false, false)),
        Tag::BatchPerRow => Ok((false, true)),
        Tag::Columns => Ok((true, false)),
        Tag::ColumnsPerRow => Ok((true, true)),
        tag => Err(ProtoError::Unexpected {
            tag,
            expected: "a batch",
        }),
    }
}

/// The lanes' fast path (`coil._Loop`'s `run_rows`), for this
/// interpreter: `run_rows(fn, rows, values, start)` calls `fn` on each row
/// of `rows` (argument tuples) from `start` and runs each coroutine one
/// step, storing in `values` the result of each that returns without
/// awaiting; it stops at the first row that awaits, raises or returns
/// something other than a coroutine, and says which:
/// `(row, 0, None, None)` at the end, `(row, 1, coroutine, awaited)`,
/// `(row, 2, exception, None)`, `(row, 3, value, None)`. Called from a
/// lane, so a row's first step runs inside the lane's task, on the running
/// loop, and the lane goes on with it where it stopped.
pub(crate) fn row_runner(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyCFunction>> {
    let coroutine: Py<pyo3::types::PyType> = py
        .import("types")?
        .getattr("CoroutineType")?
        .cast_into::<pyo3::types::PyType>()?
        .unbind();
    pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"run_rows"),
        None,
        move |args: &Bound<'_, PyTuple>,
              _: Option<&Bound<'_, PyDict>>|
              -> PyResult<(usize, u8, Py<PyAny>, Py<PyAny>)> { run_rows(args, &coroutine) },
    )
}

/// [`row_runner`]'s body.
fn run_rows(
    args: &Bound<'_, PyTuple>,
    coroutine: &Py<pyo3::types::PyType>,
) -> PyResult<(usize, u8, Py<PyAny>, Py<PyAny>)> {
    type Args<'py> = (
        Bound<'py, PyAny>,
        Bound<'py, PyList>,
        Bound<'py, PyList>,
        usize,
    );
    let py = args.py();
    let (func, rows, values, start): Args<'_> = args.extract()?;
    let coroutine = coroutine.bind(py);
    for at in start..rows.len() {
        let row = rows.get_item(at)?;
        let row = row.cast::<PyTuple>()?;
        let value = match func.call1(row) {
            Ok(v) => v,
            Err(e) => return Ok((at, 2, e.into_value(py).into_any(), py.None())),
        };
        if !value.get_type().is(coroutine) {
            return Ok((at, 3, value.unbind(), py.None()));
        }
        match crate::interp::send(&value) {
            crate::interp::Sent::Return(v) => values.set_item(at, v)?,
            crate::interp::Sent::Yield(awaited) => {
                return Ok((at, 1, value.unbind(), awaited.unbind()))
            }
            crate::interp::Sent::Error(e) => {
                return Ok((at, 2, e.into_value(py).into_any(), py.None()))
            }
        }
    }
    Ok((rows.len(), 0, py.None(), py.None()))
}

impl Executor {
    /// Whether the UDF is async: its batches go through
    /// [`Executor::start_batch`], [`Executor::turn`] and
    /// [`Executor::finish_batch`] rather than [`Executor::run_batch`].
    pub fn is_async(&self) -> bool {
        self.looper.is_some()
    }

    /// Decodes the batch in `src` (a frame tagged `tag`) and starts its rows
    /// in the event loop, as far as the concurrency allows.
    ///
    /// # Errors
    ///
    /// A frame that is not a batch, or whose sequence number cannot be read
    /// (nothing to answer); any other failure is kept for the batch's
    /// answer.
    pub fn start_batch<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        tag: Tag,
        src: &S,
    ) -> Result<Started, ProtoError> {
        let (columnar, per_row) = batch_kind(tag)?;
        let started = Instant::now();
        let (seq, args) = if columnar {
            let batch = coil_proto::Columns::decode_from(src, self.refs())?;
            (batch.seq, self.column_args(py, &batch))
        } else {
            (Batch::seq(src)?, self.row_args(py, &Batch::rows(src)))
        };
        Ok(self.submit(py, seq, columnar, per_row, args, started))
    }

    /// Hands a batch's decoded rows (`args`) to the event loop.
    fn submit(
        &mut self,
        py: Python<'_>,
        seq: u64,
        columnar: bool,
        per_row: bool,
        args: Result<(u32, Bound<'_, PyList>), BatchError>,
        started: Instant,
    ) -> Started {
        let decode = started.elapsed();
        let looper = self.looper.as_ref().expect("an async executor").bind(py);
        let (rows, batch) = match args {
            Ok((rows, list)) => (
                rows,
                looper
                    .call_method1("submit", (list,))
                    .map(Bound::unbind)
                    .map_err(|e| self.raised(py, 0, e)),
            ),
            Err(e) => (0, Err(e)),
        };
        Started {
            seq,
            columnar,
            per_row,
            rows,
            batch,
            started,
            decode,
        }
    }

    /// Runs one batch of an async UDF to its end, alone: how
    /// [`Executor::run_batch`] and [`Executor::run_columns`] run one (its
    /// rows still overlap each other, up to the concurrency).
    pub(super) fn run_to_end<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        columns: Option<&coil_proto::Decoded>,
        rows: Option<&S>,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        let began = Instant::now();
        let args = match (columns, rows) {
            (Some(batch), _) => self.column_args(py, batch),
            (None, Some(rows)) => self.row_args(py, rows),
            (None, None) => Err(bad_batch("a batch with neither rows nor columns")),
        };
        let mut started = self.submit(py, 0, columns.is_some(), per_row, args, began);
        while !self.turn(py, &mut started, Duration::from_millis(50)) {}
        let (times, failures) = self.finish_batch(py, started, out)?;
        self.times = times;
        self.failures = failures;
        Ok(())
    }

    /// Each row's arguments, as tuples, from a row batch.
    fn row_args<'py, S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'py>,
        src: &S,
    ) -> Result<(u32, Bound<'py, PyList>), BatchError> {
        let mut dec = BatchDecoder::new(src).map_err(|e| decode_err(None, e))?;
        let rows = dec.rows_remaining();
        let list = PyList::empty(py);
        for row in 0..rows {
            let args = self.read_args(py, &mut dec, row)?;
            let tuple = PyTuple::new(py, args).map_err(|e| self.raised(py, row, e))?;
            list.append(tuple).map_err(|e| self.raised(py, row, e))?;
        }
        dec.finish().map_err(|e| decode_err(None, e))?;
        Ok((rows, list))
    }

    /// Each row's arguments, as tuples, from a column batch.
    fn column_args<'py>(
        &mut self,
        py: Python<'py>,
        batch: &coil_proto::Decoded,
    ) -> Result<(u32, Bound<'py, PyList>), BatchError> {
        let rows = u32::try_from(batch.rows)
            .map_err(|_| bad_batch(format!("{} rows are more than a batch holds", batch.rows)))?;
        let declared = self
            .returns
            .clone()
            .ok_or_else(|| bad_batch("a column batch for a UDF without a declared return type"))?;
        if self.kit.is_none()
            && (needs_kit(&declared) || batch.columns.iter().any(|c| needs_kit(c.data_type())))
        {
            let kit = PyKit::load(py, self.helper.bind(py))
                .map_err(|e| bad_batch(format!("importing datetime and decimal: {e}")))?;
            self.kit = Some(kit);
        }
        let columns = batch
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                ArrowColumn::of(py, c.as_ref(), self.kit.as_ref())
                    .map_err(|m| bad_batch(format!("argument {i}: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let list = PyList::empty(py);
        for row in 0..rows {
            let args = columns
                .iter()
                .map(|c| c.get(py, row as usize))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| bad_row(row, format!("argument: {m}")))?;
            let tuple = PyTuple::new(py, args).map_err(|e| self.raised(py, row, e))?;
            list.append(tuple).map_err(|e| self.raised(py, row, e))?;
        }
        Ok((rows, list))
    }

    /// Runs the event loop until `oldest` is done or `slice` has passed;
    /// whether it is done. An exception the loop itself raised (an
    /// interrupt that landed outside any row) becomes `oldest`'s error,
    /// and it is done.
    pub fn turn(&mut self, py: Python<'_>, oldest: &mut Started, slice: Duration) -> bool {
        let Ok(batch) = &oldest.batch else {
            return true;
        };
        let looper = self.looper.as_ref().expect("an async executor").bind(py);
        match looper
            .call_method1("run", (batch.bind(py), slice.as_secs_f64()))
            .and_then(|d| d.extract::<bool>())
        {
            Ok(done) => done,
            Err(e) => {
                // An interrupt (an in-process timeout) that landed while
                // the loop waited: the oldest batch fails with it; its rows
                // still in flight are cancelled when the executor closes.
                let error = if self.was_interrupted() {
                    BatchError::TimedOut {
                        row: 0,
                        error: super::error_info(py, self.helper.bind(py), e),
                    }
                } else {
                    self.raised(py, 0, e)
                };
                oldest.batch = Err(error);
                true
            }
        }
    }

    /// Encodes the results of `started`, a batch [`Executor::turn`] said
    /// is done, into `out` (a row batch's rows or a column frame's body):
    /// returns the executor's times and the rows that failed alone.
    ///
    /// # Errors
    ///
    /// [`BatchError`]: the first failed row's when rows do not fail
    /// alone, or why the batch could not start.
    pub fn finish_batch(
        &mut self,
        py: Python<'_>,
        started: Started,
        out: &mut Vec<u8>,
    ) -> Result<(Times, Vec<RowFailure>), BatchError> {
        self.failures.clear();
        let result = self.finish_inner(py, started, out);
        self.publish_counts(py);
        let failures = self.take_failures();
        result.map(|times| (times, failures))
    }

    fn finish_inner(
        &mut self,
        py: Python<'_>,
        started: Started,
        out: &mut Vec<u8>,
    ) -> Result<Times, BatchError> {
        let python = started.started.elapsed().saturating_sub(started.decode);
        let batch = started.batch?;
        let batch = batch.bind(py);
        let list = |name: &str| batch.getattr(name).map_err(|e| self.raised(py, 0, e));
        let values = list("values")?
            .cast_into::<PyList>()
            .map_err(|_| bad_batch("the event loop's results are not a list"))?;
        let errors = list("errors")?
            .cast_into::<PyDict>()
            .map_err(|_| bad_batch("the event loop's errors are not a dict"))?;
        if values.len() != started.rows as usize {
            return Err(bad_batch(format!(
                "the event loop answered {} rows of {}",
                values.len(),
                started.rows
            )));
        }
        let any_failed = !errors.is_empty();
        let t = Instant::now();
        if started.columnar {
            let declared = self.returns.clone().ok_or_else(|| {
                bad_batch("a column batch for a UDF without a declared return type")
            })?;
            let mut column = ResultColumn::new(&declared).map_err(bad_batch)?;
            column.reserve(started.rows as usize);
            for (row, item) in (0u32..).zip(values.iter()) {
                let done = match failure(&errors, any_failed, row) {
                    Some(exc) => Err(self.row_error(py, row, exc)),
                    None => column
                        .push(self.kit.as_ref(), &item)
                        .map_err(|m| bad_row(row, format!("result: {m}"))),
                };
                if let Err(e) = done {
                    self.fail_in_column(&mut column, row, e, started.per_row)?;
                }
            }
            let array = column
                .finish()
                .map_err(|m| bad_batch(format!("results: {m}")))?;
            self.put_column(started.rows as usize, array, out)?;
        } else {
            let mut enc =
                BatchEncoder::new(out, started.rows as usize).map_err(|e| enc_err(None, e))?;
            for (row, item) in (0u32..).zip(values.iter()) {
                let mark = enc.written();
                let done = match failure(&errors, any_failed, row) {
                    Some(exc) => Err(self.row_error(py, row, exc)),
                    None => enc
                        .begin_row(1)
                        .map_err(|e| enc_err(Some(row), e))
                        .and_then(|()| {
                            crate::convert::put_py(&mut enc, &item, 0)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        }),
                };
                match done {
                    Ok(()) => {}
                    Err(e) if started.per_row => self.fail_row(&mut enc, mark, row, e)?,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Times {
            decode: started.decode,
            python,
            encode: t.elapsed(),
        })
    }

    /// Row `row`'s exception `exc`, as its error: a timeout when the event
    /// loop cancelled the call for taking too long.
    fn row_error(&self, py: Python<'_>, row: u32, exc: Bound<'_, PyAny>) -> BatchError {
        let timed_out = exc
            .getattr("_coil_timed_out")
            .and_then(|t| t.extract::<bool>())
            .unwrap_or(false);
        let err = PyErr::from_value(exc);
        if timed_out {
            BatchError::TimedOut {
                row,
                error: super::error_info(py, self.helper.bind(py), err),
            }
        } else {
            self.raised(py, row, err)
        }
    }
}
