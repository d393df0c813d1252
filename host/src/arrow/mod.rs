//! Arrow batches in, an Arrow array out: [`Runner::call_arrow`]. Columns
//! travel to the executors as column frames (whole buffers, see
//! `coil_proto::Columns`); each executor builds its batch's results into
//! an array of the declared return type, checking every value, and sends
//! it back the same way; this side puts the arrays together.
//!
//! Views and dictionary-encoded columns travel as the plain arrays they
//! stand for (a UDF sees the same Python values either way): this module
//! turns them into those before sending, and a declared view type back
//! into views after.

mod join;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::sched::Scheduler;
use crate::{ArrowError, RowError, RunError, Runner, UdfKind};

use coil_proto::wire_type;
pub use stream::ArrowStream;
use wire::{from_wire, to_wire};

impl Runner {
    /// Runs a scalar or vectorized UDF over an Arrow batch (one column per
    /// argument) and returns its results as one array of the type declared
    /// with [`UdfSpec::returns`](crate::UdfSpec::returns), in row order.
    /// The columns travel to the executors as whole buffers; each row's
    /// arguments reach a scalar UDF as Python objects (`None` for a null),
    /// a vectorized UDF gets each column as its annotations ask. Each
    /// executor builds its results into an array of the declared type,
    /// checking that every value fits it (never converting it into another
    /// value).
    ///
    /// The types, in and out, and the Python values they map to are in
    /// docs/python.md: null, bool, ints, uints, float32/64, strings and
    /// binary (also large and view), decimals, dates, times, timestamps
    /// (with or without a time zone), durations, lists, structs and maps;
    /// dictionary-encoded columns in.
    ///
    /// # Errors
    ///
    /// [`RunError::UnsupportedColumn`] naming the column and its type,
    /// before any row runs; [`RunError::Arrow`] without a supported return
    /// type, or for a table UDF; [`RunError::BadRow`] naming the row whose
    /// result does not fit the declared type (the message says the value,
    /// its Python type and the type); and every error of [`Runner::call`].
    pub fn call_arrow(&self, batch: &RecordBatch) -> Result<ArrayRef, RunError> {
        self.run_arrow(batch, false, Err)
    }

    /// Runs a table UDF over an Arrow batch (one column per argument): a
    /// batch of every row it emitted, in input order, its first column
    /// `row` (UInt64, the input row's index in `batch`) and then the
    /// emitted row's columns: the fields of the declared
    /// [`UdfSpec::returns`](crate::UdfSpec::returns) struct, each row a
    /// tuple or list (positional), a dict (by field name) or, for a
    /// one-field struct, the bare value; or one column `value` when the
    /// declared type is not a struct.
    ///
    /// # Errors
    ///
    /// As [`Runner::call_arrow`]; [`RunError::Arrow`] for a UDF that is
    /// not a table UDF.
    pub fn call_arrow_table(&self, batch: &RecordBatch) -> Result<RecordBatch, RunError> {
        let lists = self.run_arrow(batch, true, Err)?;
        flatten(&lists)
    }

    /// [`Runner::call_arrow_table`] under `python.fn-execution.on-error`
    /// = `skip` or `dead-letter`: a row that fails emits nothing, and its
    /// error is in the list, in row order.
    ///
    /// # Errors
    ///
    /// As [`Runner::call_arrow_table`], except rows that fail alone.
    pub fn call_arrow_table_each(
        &self,
        batch: &RecordBatch,
    ) -> Result<(RecordBatch, Vec<RowError>), RunError> {
        let mut failed = Vec::new();
        let lists = self.run_arrow(batch, true, |e| match e {
            RunError::Row(r) => {
                failed.push(*r);
                Ok(())
            }
            e => Err(e),
        })?;
        Ok((flatten(&lists)?, failed))
    }

    /// Runs the UDF over an Arrow batch as [`Runner::call_arrow`] does, and
    /// under `python.fn-execution.on-error` = `skip` or `dead-letter`
    /// returns, with the results, each row that failed alone: a null holds
    /// its place in the array, and its error ([`RowError`], without its
    /// input values, which are the batch's row `row`) is in the list, in
    /// row order. Under `fail`, the first row that fails ends the call, as
    /// in `call_arrow`.
    ///
    /// # Errors
    ///
    /// As [`Runner::call_arrow`], except rows that fail alone.
    pub fn call_arrow_each(
        &self,
        batch: &RecordBatch,
    ) -> Result<(ArrayRef, Vec<RowError>), RunError> {
        let mut failed = Vec::new();
        let array = self.run_arrow(batch, false, |e| match e {
            RunError::Row(r) => {
                failed.push(*r);
                Ok(())
            }
            e => Err(e),
        })?;
        Ok((array, failed))
    }

    /// Runs `batch`, handing every error to `error` in row order (which
    /// ends the call by returning it, or keeps a row's own error). A table
    /// UDF (`table`) answers, per input row, the list of rows it emitted.
    fn run_arrow(
        &self,
        batch: &RecordBatch,
        table: bool,
        mut error: impl FnMut(RunError) -> Result<(), RunError>,
    ) -> Result<ArrayRef, RunError> {
        let returns = Returns::of(self, table)?;
        let columns = WireColumns::of(self, batch)?;
        let mut scheduler = Scheduler::new(self);
        // Each batch's results are appended as they come back, while the
        // executors run the next batches.
        let mut joiner = join::Joiner::new(&returns.wire, columns.rows);
        scheduler.run_batches(
            columns.rows,
            true,
            |s, rows| {
                columns.send(s, rows, &returns.wire);
                for a in s.take_arrays() {
                    joiner.push(a);
                }
            },
            |v| match v {
                Err(e) => error(e),
                Ok(_) => Err(RunError::Arrow(ArrowError::Internal(
                    "a row result for a column batch",
                ))),
            },
        )?;
        for a in scheduler.take_arrays() {
            joiner.push(a);
        }
        let arrays = joiner.finish().map_err(ArrowError::Join)?;
        returns.join(arrays, columns.rows)
    }
}

/// The type a runner's UDF declared for its results, and the type they
/// travel as; checked for the columnar path.
pub(super) struct Returns {
    declared: DataType,
    pub(super) wire: DataType,
    /// A table UDF's: per input row, the list of rows it emitted.
    table: bool,
}

impl Returns {
    /// The runner's return types, if its UDF can run over columns: a
    /// scalar or vectorized UDF (or, with `table`, a table UDF) with a
    /// supported declared return type.
    pub(super) fn of(runner: &Runner, table: bool) -> Result<Returns, RunError> {
        let declared = (runner.spec().returns.clone()).ok_or(ArrowError::NoReturnType)?;
        let wire = coil_proto::result_wire_type(&declared);
        if !coil_proto::arrow_type_supported(&wire) {
            return Err(ArrowError::UnsupportedReturnType(declared).into());
        }
        match (runner.spec().kind == UdfKind::Table, table) {
            (true, false) => return Err(ArrowError::TableUdf.into()),
            (false, true) => return Err(ArrowError::NotTableUdf(runner.spec().kind).into()),
            _ => {}
        }
        let (declared, wire) = if table {
            let list = DataType::List(Arc::new(arrow_schema::Field::new("item", wire, true)));
            (declared, list)
        } else if runner.spec().kind == UdfKind::Aggregate {
            // An accumulator's answer: its state and its value.
            (
                coil_proto::aggregate_result_type(&declared),
                coil_proto::aggregate_result_type(&wire),
            )
        } else {
            (declared, wire)
        };
        Ok(Returns {
            declared,
            wire,
            table,
        })
    }

    /// The results of one batch's slices, in order, as one array of the
    /// declared type, which must hold `rows` rows.
    pub(super) fn join(&self, arrays: Vec<ArrayRef>, rows: usize) -> Result<ArrayRef, RunError> {
        if let Some(a) = arrays.iter().find(|a| a.data_type() != &self.wire) {
            return Err(ArrowError::ResultType {
                got: a.data_type().clone(),
                declared: self.declared.clone(),
            }
            .into());
        }
        let joined = crate::sched::concat(arrays, &self.wire).map_err(ArrowError::Join)?;
        let joined = if self.table {
            joined
        } else {
            from_wire(joined, &self.declared)?
        };
        if joined.len() != rows {
            return Err(ArrowError::ResultCount {
                results: joined.len(),
                rows,
            }
            .into());
        }
        Ok(joined)
    }
}

/// A batch's columns as they travel (see [`wire_type`]), each checked.
pub(super) struct WireColumns {
    columns: Vec<ArrayRef>,
    pub(super) rows: usize,
}

impl WireColumns {
    /// `batch`'s columns, or which one cannot travel (or, when the UDF
    /// declares its arguments' types, is not of its declared type).
    pub(super) fn of(runner: &Runner, batch: &RecordBatch) -> Result<WireColumns, RunError> {
        if let Some(args) = &runner.spec().args {
            let got: Vec<DataType> = batch
                .columns()
                .iter()
                .map(|c| c.data_type().clone())
                .collect();
            if &got != args {
                return Err(ArrowError::ArgumentTypes {
                    got,
                    declared: args.clone(),
                }
                .into());
            }
        }
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (column, c) in batch.columns().iter().enumerate() {
            if wire_type(c.data_type()).is_none() {
                return Err(RunError::UnsupportedColumn {
                    column,
                    data_type: c.data_type().clone(),
                });
            }
            columns.push(to_wire(c)?);
        }
        Ok(WireColumns {
            columns,
            rows: batch.num_rows(),
        })
    }

    /// Sends rows `rows` as one column batch (slices, not copies).
    pub(super) fn send(
        &self,
        scheduler: &mut Scheduler<&Runner>,
        rows: Range<usize>,
        result: &DataType,
    ) {
        let slice: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| c.slice(rows.start, rows.len()))
            .collect();
        scheduler.send_columns(rows.len(), &slice, result)
    }
}

/// A table UDF's results (per input row, the list of rows it emitted)
/// as one batch with the input row's index first.
fn flatten(lists: &ArrayRef) -> Result<RecordBatch, RunError> {
    use arrow_array::UInt64Array;
    use arrow_schema::{Field, Schema};
    let lists = (lists.as_list_opt::<i32>())
        .ok_or_else(|| ArrowError::TableResults(lists.data_type().clone()))?;
    let offsets = lists.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
    let values = lists.values().slice(first, last - first);
    let rows = UInt64Array::from_iter_values(
        offsets
            .windows(2)
            .enumerate()
            .flat_map(|(i, w)| std::iter::repeat_n(i as u64, (w[1] - w[0]) as usize)),
    );
    let mut fields = vec![Field::new("row", DataType::UInt64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(rows)];
    match values.data_type() {
        DataType::Struct(fs) => {
            let s = values.as_struct();
            fields.extend(fs.iter().map(|f| f.as_ref().clone()));
            columns.extend(s.columns().iter().cloned());
        }
        t => {
            fields.push(Field::new("value", t.clone(), true));
            columns.push(values.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(ArrowError::Build)?)
}
