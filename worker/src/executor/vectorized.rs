//! Vectorized UDFs: called once per batch on whole columns (lists, numpy
//! arrays, pandas Series or pyarrow Arrays, as the UDF's annotations ask),
//! over a row batch ([`Executor::run_vectorized`]) or a column batch
//! ([`Executor::vectorized_columns`]). Under a per-row failure policy, a
//! call that fails for the batch is made again one row at a time, so that
//! only the rows that fail are reported.

use std::time::{Duration, Instant};

use coil_ipc::{BatchDecoder, BatchEncoder, ByteSource};
use coil_proto::Times;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::columns::ColumnBatch;
use super::Executor;
use crate::arrow::{PyKit, ResultColumn};
use crate::error::{bad_batch, bad_row, decode_err, enc_err, BatchError};

impl Executor {
    /// Runs a vectorized UDF on the columns of `run` (numeric columns
    /// without nulls as read-only numpy arrays over their buffer, columns
    /// a parameter annotated for pyarrow whole, the others as lists) and
    /// appends its results to `run.results`.
    pub(super) fn vectorized_columns(
        &mut self,
        py: Python<'_>,
        run: &mut ColumnBatch<'_, '_>,
    ) -> Result<Times, BatchError> {
        // A numeric column without nulls reaches a UDF that asked for
        // containers as a read-only numpy array over its own buffer, not
        // as one Python object per value. A column a parameter
        // annotated for pyarrow takes goes whole, through the Arrow C Data
        // Interface.
        let numpy = self.adapter.as_ref().and_then(|_| py.import("numpy").ok());
        let wants_arrow = self.wants_arrow(py, run.arrays.len());
        let mut lists = Vec::with_capacity(run.columns.len());
        for (i, (array, c)) in run.arrays.iter().zip(&run.columns).enumerate() {
            let direct = if wants_arrow[i] {
                let helper = self.helper.bind(py);
                Some(
                    crate::arrow::export_capsules(helper, array.as_ref())
                        .map_err(|e| bad_batch(format!("argument {i}: {e}")))?,
                )
            } else {
                let helper = self.helper.bind(py);
                numpy.as_ref().and_then(|np| {
                    crate::convert::numpy_from_buffer(py, np, helper, array.as_ref())
                })
            };
            let column = match direct {
                Some(a) => a,
                None => {
                    let mut items = Vec::with_capacity(run.rows as usize);
                    for row in 0..run.rows {
                        items.push(
                            c.get(py, row as usize)
                                .map_err(|m| bad_row(row, format!("argument: {m}")))?,
                        );
                    }
                    PyList::new(py, items)
                        .map_err(|e| bad_batch(e.to_string()))?
                        .into_any()
                }
            };
            lists.push(column);
        }
        let t1 = Instant::now();
        let python =
            self.vectorized_into(py, &lists, &mut run.results, run.kit, run.rows, run.per_row)?;
        Ok(Times {
            decode: t1 - run.started,
            python,
            encode: t1.elapsed().saturating_sub(python),
        })
    }

    pub(super) fn run_vectorized<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        dec: &mut BatchDecoder<'_, S>,
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        rows: u32,
        per_row: bool,
    ) -> Result<(), BatchError> {
        let t0 = Instant::now();
        let mut columns: Vec<Bound<'_, PyList>> = Vec::new();
        for row in 0..rows {
            let n = dec.begin_row().map_err(|e| decode_err(Some(row), e))? as usize;
            if row == 0 {
                columns = (0..n).map(|_| PyList::empty(py)).collect();
            } else if n != columns.len() {
                return Err(bad_row(
                    row,
                    format!("has {n} values, row 0 has {}", columns.len()),
                ));
            }
            for col in &columns {
                let v = crate::convert::read_py(py, dec, &mut self.scratch, 0)
                    .map_err(|e| decode_err(Some(row), e))?;
                col.append(v).expect("appending to a new list");
            }
        }
        let columns: Vec<Bound<'_, PyAny>> = columns.into_iter().map(Bound::into_any).collect();
        self.vectorized_on(py, &columns, enc, rows, per_row, t0)
    }

    /// Runs a vectorized UDF on `columns` (lists, or numpy arrays; decoded
    /// since `t0`) and encodes its results.
    fn vectorized_on<'py>(
        &mut self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        rows: u32,
        per_row: bool,
        t0: Instant,
    ) -> Result<(), BatchError> {
        let t1 = Instant::now();
        let called = self.call_vectorized(py, columns, rows, 0, "vector_result");
        let t2 = Instant::now();
        match called {
            Ok(result) => {
                let items = result.try_iter().map_err(|e| self.raised(py, 0, e))?;
                for (row, item) in items.enumerate() {
                    let row = row as u32;
                    let mark = enc.written();
                    let put = item.map_err(|e| self.raised(py, row, e)).and_then(|item| {
                        enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                        crate::convert::put_py(enc, &item, 0)
                            .map_err(|m| bad_row(row, format!("result: {m}")))
                    });
                    match put {
                        Ok(()) => {}
                        Err(e) if per_row => self.fail_row(enc, mark, row, e)?,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e @ BatchError::Incompatible { .. }) => return Err(e),
            Err(e) if !per_row => return Err(e),
            // The call failed for the batch: call again one row at a time,
            // so that only the rows that fail are reported.
            Err(_) => {
                for row in 0..rows {
                    let one = one_row(py, columns, row);
                    let mark = enc.written();
                    let put = self
                        .call_vectorized(py, &one, 1, row, "vector_result")
                        .and_then(|result| {
                            let item = result.get_item(0).map_err(|e| self.raised(py, row, e))?;
                            enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                            crate::convert::put_py(enc, &item, 0)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        });
                    if let Err(e) = put {
                        let e = as_rows_own(row, e);
                        self.fail_row(enc, mark, row, e)?;
                    }
                }
            }
        }
        self.times = Times {
            decode: t1 - t0,
            python: t2 - t1,
            encode: t2.elapsed(),
        };
        Ok(())
    }

    /// Calls a vectorized UDF on `columns` (as the containers its
    /// annotations ask for) and returns its result shaped by the loader's
    /// `shaper` (unless it is a list already): `"vector_result"`, a list
    /// of `rows` items (a scalar result broadcast), or `"vector_out"`, the
    /// same but a numeric numpy array (or pandas Series over one) as that
    /// array, for an Arrow column to copy whole. Publishes `first`, the
    /// batch row the columns start at, as the row running.
    fn call_vectorized<'py>(
        &self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        rows: u32,
        first: u32,
        shaper: &str,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        let args = match &self.adapter {
            Some(adapt) => adapt
                .bind(py)
                .call1((PyList::new(py, columns).map_err(|e| self.raised(py, 0, e))?,))
                .and_then(|a| a.cast_into::<PyTuple>().map_err(Into::into))
                .map_err(|e| self.raised(py, 0, e))?,
            None => PyTuple::new(py, columns).map_err(|e| self.raised(py, 0, e))?,
        };
        self.mark(Some(first));
        let mut result = self
            .func
            .bind(py)
            .call1(args)
            .map_err(|e| self.raised(py, 0, e))?;
        if !result.is_exact_instance_of::<PyList>() {
            result = self
                .helper
                .bind(py)
                .getattr(shaper)
                .and_then(|v| v.call1((&result, rows)))
                .map_err(|e| self.raised(py, 0, e))?;
        }
        let got = result.len().map_err(|_| {
            bad_row(
                0,
                format!(
                    "a vectorized UDF must return a sequence, got {}",
                    crate::convert::type_name(&result)
                ),
            )
        })?;
        if got != rows as usize {
            return Err(BatchError::BadRow {
                row: None,
                message: format!("the vectorized UDF returned {got} values for {rows} rows"),
            });
        }
        Ok(result)
    }

    /// Runs a vectorized UDF on `columns` and appends its results to
    /// `results`; under `per_row`, a batch whose call fails is called again
    /// row by row so that only the rows that fail are reported. Returns the
    /// time spent in the UDF's calls.
    fn vectorized_into<'py>(
        &mut self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        results: &mut ResultColumn,
        kit: Option<&PyKit>,
        rows: u32,
        per_row: bool,
    ) -> Result<Duration, BatchError> {
        let start = Instant::now();
        let called = self.call_vectorized(py, columns, rows, 0, "vector_out");
        let python = start.elapsed();
        match called {
            Ok(result) => {
                // An Arrow array of the declared type is taken whole; one
                // of another type goes value by value, each checked.
                if result.hasattr("__arrow_c_array__").unwrap_or(false) {
                    let array = crate::arrow::import_capsules(&result)
                        .map_err(|m| bad_batch(format!("the UDF's Arrow result: {m}")))?;
                    if array.len() != rows as usize {
                        return Err(bad_batch(format!(
                            "the vectorized UDF returned {} values for {rows} rows",
                            array.len()
                        )));
                    }
                    if results.take_whole(array) {
                        return Ok(python);
                    }
                    let list = result
                        .call_method0("to_pylist")
                        .map_err(|e| self.raised(py, 0, e))?;
                    return self.push_items(py, &list, results, kit, per_row, python);
                }
                // A numpy result of the declared type that only this call
                // holds becomes the results' buffer itself.
                if self.results_in_place {
                    if let Some(a) = crate::arrow::numpy_in_place(&result, results.data_type()) {
                        if a.len() == rows as usize && results.take_whole(a) {
                            return Ok(python);
                        }
                    }
                }
                if results.extend_from_buffer(&result) {
                    if results.len() != rows as usize {
                        return Err(bad_batch(format!(
                            "the vectorized UDF returned {} values for {rows} rows",
                            results.len()
                        )));
                    }
                    return Ok(python);
                }
                self.push_items(py, &result, results, kit, per_row, python)
            }
            Err(e @ BatchError::Incompatible { .. }) => Err(e),
            Err(e) if !per_row => Err(e),
            Err(_) => {
                for row in 0..rows {
                    let one = one_row(py, columns, row);
                    let put = self
                        .call_vectorized(py, &one, 1, row, "vector_result")
                        .and_then(|result| {
                            let item = result.get_item(0).map_err(|e| self.raised(py, row, e))?;
                            results
                                .push(kit, &item)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        });
                    if let Err(e) = put {
                        let e = as_rows_own(row, e);
                        self.fail_in_column(results, row, e, true)?;
                    }
                }
                // Called again row by row: all of it counts as Python.
                Ok(start.elapsed())
            }
        }
    }

    /// Appends each item of a vectorized UDF's result to `results`, each
    /// checked to fit; under `per_row` an item that does not is its row's
    /// failure. Returns `python`.
    fn push_items<'py>(
        &mut self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        results: &mut ResultColumn,
        kit: Option<&PyKit>,
        per_row: bool,
        python: Duration,
    ) -> Result<Duration, BatchError> {
        let items = result.try_iter().map_err(|e| self.raised(py, 0, e))?;
        for (row, item) in items.enumerate() {
            let row = row as u32;
            let put = item.map_err(|e| self.raised(py, row, e)).and_then(|item| {
                results
                    .push(kit, &item)
                    .map_err(|m| bad_row(row, format!("result: {m}")))
            });
            if let Err(e) = put {
                self.fail_in_column(results, row, e, per_row)?;
            }
        }
        Ok(python)
    }

    /// Which of `n` columns the vectorized UDF's parameters ask to get as
    /// pyarrow arrays (the loader's adapter says, from the annotations).
    pub(super) fn wants_arrow(&self, py: Python<'_>, n: usize) -> Vec<bool> {
        let Some(adapt) = &self.adapter else {
            return vec![false; n];
        };
        let adapt = adapt.bind(py);
        let kinds: Vec<Option<String>> = adapt
            .getattr("kinds")
            .and_then(|k| k.extract())
            .unwrap_or_default();
        let rest: Option<String> = adapt
            .getattr("rest")
            .and_then(|r| r.extract())
            .unwrap_or_default();
        (0..n)
            .map(|i| {
                kinds
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| rest.clone())
                    .as_deref()
                    == Some("arrow")
            })
            .collect()
    }
}

/// Row `row` of a vectorized batch's `columns`, as one-item columns.
fn one_row<'py>(
    py: Python<'py>,
    columns: &[Bound<'py, PyAny>],
    row: u32,
) -> Vec<Bound<'py, PyAny>> {
    columns
        .iter()
        .map(|c| {
            let item = c.get_item(row as usize).expect("a row of the batch");
            PyList::new(py, [item]).expect("a one-item list").into_any()
        })
        .collect()
}

/// `e`, raised by a vectorized UDF called on row `row` alone, as that row's
/// error: the call numbered its one row 0.
fn as_rows_own(row: u32, e: BatchError) -> BatchError {
    match e {
        BatchError::Udf { error, .. } => BatchError::Udf { row, error },
        BatchError::BadRow { message, .. } => bad_row(row, message),
        e => e,
    }
}
