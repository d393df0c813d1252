//! The column path: a column batch (a decoded column frame) run row by row
//! through a scalar or table UDF, each row's arguments read from the Arrow
//! columns, each result checked into one Arrow column of the declared type.
//! A vectorized UDF's column batch is in `vectorized.rs`.

use std::time::Instant;

use arrow_array::ArrayRef;
use coil_proto::{Times, UdfKind};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::{Args, Executor};
use crate::arrow::{needs_kit, ArrowColumn, PyKit, ResultColumn};
use crate::error::{bad_batch, bad_row, BatchError};
use crate::timing::Sampler;

/// A column batch as it runs: its arguments and where its results go.
pub(super) struct ColumnBatch<'a, 'py> {
    /// The batch's columns, as Arrow arrays.
    pub(super) arrays: &'a [ArrayRef],
    /// The same columns, read as Python values.
    pub(super) columns: Vec<ArrowColumn<'a, 'py>>,
    /// The results so far, a value or a null per row.
    pub(super) results: ResultColumn,
    /// This interpreter's `datetime` and `decimal` types, when the batch
    /// needs them.
    pub(super) kit: Option<&'a PyKit>,
    /// How many rows the batch has.
    pub(super) rows: u32,
    /// Whether a row's failure is its own (a null and a failure) rather
    /// than the batch's.
    pub(super) per_row: bool,
    /// When the batch began.
    pub(super) started: Instant,
}

impl Executor {
    /// Runs a batch of Arrow columns (a decoded column frame) as
    /// [`Executor::run_batch`] runs rows: each row's arguments are the
    /// columns' values at that row, as Python objects; a vectorized UDF
    /// gets each column whole. The results are one Arrow column of the
    /// UDF's declared return type ([`UdfSpec::returns`](coil_proto::UdfSpec::returns)),
    /// written to `out` as a column frame's body; a result that does not
    /// fit that type is its row's error.
    ///
    /// # Errors
    ///
    /// [`BatchError`], as for [`Executor::run_batch`]; a column of a type
    /// the executor does not take, or a UDF without a declared return
    /// type, is the batch's `BadRow`.
    pub fn run_columns(
        &mut self,
        py: Python<'_>,
        batch: &coil_proto::Decoded,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        if self.is_async() {
            return self.run_to_end::<[u8]>(py, Some(batch), None, out, per_row);
        }
        self.failures.clear();
        let result = self.run_columns_inner(py, batch, out, per_row);
        self.mark(None);
        self.publish_counts(py);
        self.was_interrupted();
        result
    }

    fn run_columns_inner(
        &mut self,
        py: Python<'_>,
        batch: &coil_proto::Decoded,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        let started = Instant::now();
        let declared = self
            .returns
            .clone()
            .ok_or_else(|| bad_batch("a column batch for a UDF without a declared return type"))?;
        let rows = u32::try_from(batch.rows)
            .map_err(|_| bad_batch(format!("{} rows are more than a batch holds", batch.rows)))?;
        if self.kit.is_none()
            && (needs_kit(&declared) || batch.columns.iter().any(|c| needs_kit(c.data_type())))
        {
            let kit = PyKit::load(py, self.helper.bind(py))
                .map_err(|e| bad_batch(format!("importing datetime and decimal: {e}")))?;
            self.kit = Some(kit);
        }
        // Out of `self` while the batch runs (rows that fail are recorded
        // in `self`); put back below whatever happens.
        let kit = self.kit.take();
        let ran = (|| {
            let mut results = ResultColumn::new(&declared).map_err(bad_batch)?;
            results.reserve(rows as usize);
            let columns = batch
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ArrowColumn::of(py, c.as_ref(), kit.as_ref())
                        .map_err(|m| bad_batch(format!("argument {i}: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut run = ColumnBatch {
                arrays: &batch.columns,
                columns,
                results,
                kit: kit.as_ref(),
                rows,
                per_row,
                started,
            };
            let times = match self.kind {
                UdfKind::Scalar | UdfKind::Table | UdfKind::Aggregate => {
                    self.columns_row_by_row(py, &mut run, &declared)?
                }
                UdfKind::Vectorized => self.vectorized_columns(py, &mut run)?,
                UdfKind::VectorizedAggregate => self.grouped_columns(py, &mut run)?,
            };
            Ok((times, run.results))
        })();
        self.kit = kit;
        let (mut times, results) = ran?;
        let t2 = Instant::now();
        let array = results
            .finish()
            .map_err(|m| bad_batch(format!("results: {m}")))?;
        self.put_column(rows as usize, array, out)?;
        times.encode += t2.elapsed();
        self.times = times;
        Ok(())
    }

    /// Appends the result column `array` (`rows` long) to `out` as a
    /// column frame's body: shelved when this executor has a shelf (in
    /// process: the host takes the array itself), else its bytes, with
    /// fixed-width values placed in the arena when there is one and it
    /// has room.
    pub(super) fn put_column(
        &self,
        rows: usize,
        array: ArrayRef,
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        let put = match &self.shelf {
            Some(shelf) => coil_proto::Columns::shelve_body(rows, &[array], shelf, out).map(|_| ()),
            None => coil_proto::Columns::encode_body_placed(
                rows,
                &[array],
                out,
                self.arena.as_ref().map(|a| (a, coil_ipc::Half::Answers)),
            )
            .map(|_| ()),
        };
        put.map_err(|e| bad_batch(format!("results: {e}")))
    }

    /// Runs a scalar or table UDF on each row of `run`, every
    /// [`SAMPLE`](crate::timing::SAMPLE)-th row timed in three parts as the
    /// row path does. `declared` is the results' type.
    fn columns_row_by_row(
        &mut self,
        py: Python<'_>,
        run: &mut ColumnBatch<'_, '_>,
        declared: &arrow_schema::DataType,
    ) -> Result<Times, BatchError> {
        let mut sampler = Sampler::since(run.started);
        let table = self.kind == UdfKind::Table;
        // A table UDF's emitted row of a one-field struct may be the bare
        // value.
        let one_field = matches!(declared,
            arrow_schema::DataType::List(f)
                if matches!(f.data_type(), arrow_schema::DataType::Struct(fs) if fs.len() == 1));
        for row in 0..run.rows {
            let at = row as usize;
            sampler.start(row);
            // A plain loop, not a `collect` into a `Result`: this is the
            // per-row hot path.
            let mut args = Args::new();
            let mut bad = None;
            for c in &run.columns {
                match c.get(py, at) {
                    Ok(v) => args.push(v),
                    Err(m) => {
                        bad = Some(bad_row(row, format!("argument: {m}")));
                        break;
                    }
                }
            }
            sampler.mark();
            let called = match bad {
                Some(e) => Err(e),
                None => self.call_row(py, args, row),
            };
            let called = if table {
                called.and_then(|r| self.emitted_list(py, &r, row, one_field))
            } else {
                called
            };
            sampler.mark();
            let done = called.and_then(|result| {
                run.results
                    .push(run.kit, &result)
                    .map_err(|m| bad_row(row, format!("result: {m}")))
            });
            sampler.finish();
            if let Err(e) = done {
                self.fail_in_column(&mut run.results, row, e, run.per_row)?;
            }
        }
        Ok(sampler.times())
    }

    /// Calls the UDF on one row's arguments and returns its result.
    fn call_row<'py>(
        &self,
        py: Python<'py>,
        args: Args<'py>,
        row: u32,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        self.mark(Some(row));
        crate::interp::call_vectored(self.func.bind(py), &args).map_err(|e| self.raised(py, row, e))
    }

    /// The rows a table UDF's `result` (a generator or iterable) emits
    /// for input row `row`, as a list; with `one_field`, a bare value
    /// stands for a one-field row.
    fn emitted_list<'py>(
        &self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        row: u32,
        one_field: bool,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        let mut items = self.run_table(py, result, row)?;
        if one_field {
            for item in &mut items {
                if !(item.is_instance_of::<PyTuple>()
                    || item.is_instance_of::<PyList>()
                    || item.is_instance_of::<pyo3::types::PyDict>())
                {
                    *item = PyTuple::new(py, [item.clone()])
                        .map_err(|e| self.raised(py, row, e))?
                        .into_any();
                }
            }
        }
        Ok(PyList::new(py, items)
            .map_err(|e| self.raised(py, row, e))?
            .into_any())
    }
}
