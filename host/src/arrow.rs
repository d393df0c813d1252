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

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_data::transform::MutableArrayData;
use arrow_schema::DataType;

use crate::sched::Scheduler;
use crate::{RowError, RunError, Runner, UdfKind};

/// The type a column of type `t` travels as: views as their plain types,
/// dictionaries as their values' type, at any depth; `None` if it cannot
/// travel.
pub(crate) fn wire_type(t: &DataType) -> Option<DataType> {
    let plain = coil_worker::plain_type(t, true);
    coil_worker::arrow_type_supported(&plain).then_some(plain)
}

/// `a` as the plain array its type travels as (see [`wire_type`]).
fn to_wire(a: &ArrayRef) -> Result<ArrayRef, RunError> {
    let plain = coil_worker::plain_type(a.data_type(), true);
    if &plain == a.data_type() {
        return Ok(a.clone());
    }
    let overflow = |e: arrow_schema::ArrowError| RunError::Arrow(e.to_string());
    Ok(match a.data_type() {
        DataType::Utf8View => Arc::new(StringArray::from_iter(a.as_string_view().iter())),
        DataType::BinaryView => Arc::new(BinaryArray::from_iter(a.as_binary_view().iter())),
        DataType::Dictionary(..) => {
            let d = a.as_any_dictionary();
            let values = to_wire(d.values())?;
            let keys = d.normalized_keys();
            let data = values.to_data();
            let mut out = MutableArrayData::new(vec![&data], true, a.len());
            for (row, &k) in keys.iter().enumerate() {
                // Keys were validated against the values when the array was
                // built; a null row's key may be anything.
                if d.keys().is_valid(row) && k < values.len() {
                    out.try_extend(0, k, k + 1).map_err(overflow)?;
                } else {
                    out.try_extend_nulls(1).map_err(overflow)?;
                }
            }
            arrow_array::make_array(out.freeze())
        }
        // A nested type holding views or dictionaries: its children
        // converted, its own buffers kept.
        _ => {
            let data = a.to_data();
            let children = data
                .child_data()
                .iter()
                .map(|c| to_wire(&arrow_array::make_array(c.clone())).map(|c| c.to_data()))
                .collect::<Result<Vec<_>, _>>()?;
            let data = data
                .into_builder()
                .data_type(plain)
                .child_data(children)
                .build()
                .map_err(overflow)?;
            arrow_array::make_array(data)
        }
    })
}

/// The array `a` (of the wire type of `declared`) as `declared`: views,
/// at any depth, built from their plain arrays.
fn from_wire(a: ArrayRef, declared: &DataType) -> Result<ArrayRef, RunError> {
    if a.data_type() == declared {
        return Ok(a);
    }
    Ok(match declared {
        DataType::Utf8View => Arc::new(StringViewArray::from_iter(a.as_string::<i32>().iter())),
        DataType::BinaryView => Arc::new(BinaryViewArray::from_iter(a.as_binary::<i32>().iter())),
        t => {
            let fields = coil_worker::child_types(t);
            if fields.is_empty() {
                return Ok(a);
            }
            let data = a.to_data();
            let children = data
                .child_data()
                .iter()
                .zip(&fields)
                .map(|(c, t)| from_wire(arrow_array::make_array(c.clone()), t).map(|c| c.to_data()))
                .collect::<Result<Vec<_>, _>>()?;
            let data = data
                .into_builder()
                .data_type(t.clone())
                .child_data(children)
                .build()
                .map_err(|e| RunError::Arrow(e.to_string()))?;
            arrow_array::make_array(data)
        }
    })
}

/// The arrays one after another, as one.
fn concat(arrays: Vec<ArrayRef>, t: &DataType) -> Result<ArrayRef, RunError> {
    if arrays.len() == 1 {
        return Ok(arrays.into_iter().next().expect("one array"));
    }
    if arrays.is_empty() {
        return Ok(arrow_array::new_empty_array(t));
    }
    let data: Vec<_> = arrays.iter().map(|a| a.to_data()).collect();
    let total = data.iter().map(|d| d.len()).sum();
    let mut out = MutableArrayData::new(data.iter().collect(), false, total);
    for (i, d) in data.iter().enumerate() {
        out.try_extend(i, 0, d.len())
            .map_err(|e| RunError::Arrow(format!("putting the results together: {e}")))?;
    }
    Ok(arrow_array::make_array(out.freeze()))
}

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
        self.flatten(&lists)
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
        Ok((self.flatten(&lists)?, failed))
    }

    /// A table UDF's results (per input row, the list of rows it emitted)
    /// as one batch with the input row's index first.
    fn flatten(&self, lists: &ArrayRef) -> Result<RecordBatch, RunError> {
        use arrow_array::UInt64Array;
        use arrow_schema::{Field, Schema};
        let internal = |e: arrow_schema::ArrowError| RunError::Arrow(e.to_string());
        let lists = lists.as_list_opt::<i32>().ok_or_else(|| {
            RunError::Arrow(format!(
                "internal error: table results of type {}",
                lists.data_type()
            ))
        })?;
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
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(internal)
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

    /// A stream of Arrow batches: push batches, pull each one's results,
    /// as one array, in order; see [`ArrowStream`].
    pub fn stream_arrow(&self) -> ArrowStream<'_> {
        ArrowStream {
            runner: self,
            scheduler: Scheduler::new(self),
            pushed: VecDeque::new(),
            rows: 0,
        }
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
        scheduler.run_batches(
            columns.rows,
            |s, rows| columns.send(s, rows, &returns.wire),
            |v| match v {
                Err(e) => error(e),
                Ok(_) => Err(RunError::Arrow(
                    "internal error: a row result for a column batch".into(),
                )),
            },
        )?;
        returns.join(scheduler.take_arrays(), columns.rows)
    }
}

/// The type a runner's UDF declared for its results, and the type they
/// travel as; checked for the columnar path.
struct Returns {
    declared: DataType,
    wire: DataType,
    /// A table UDF's: per input row, the list of rows it emitted.
    table: bool,
}

impl Returns {
    /// The runner's return types, if its UDF can run over columns: a
    /// scalar or vectorized UDF (or, with `table`, a table UDF) with a
    /// supported declared return type.
    fn of(runner: &Runner, table: bool) -> Result<Returns, RunError> {
        let declared = runner.spec().returns.clone().ok_or_else(|| {
            RunError::Arrow(
                "the UDF's Arrow return type is unknown: declare it with UdfSpec::returns (--returns), or annotate the UDF's return (`-> int`, `-> list[str]`, `-> \"pd.Series[float]\"`: docs/python.md)".into(),
            )
        })?;
        let wire = coil_worker::result_wire_type(&declared);
        if !coil_worker::arrow_type_supported(&wire) {
            return Err(RunError::Arrow(format!(
                "the return type {declared} is not supported"
            )));
        }
        match (runner.spec().kind == UdfKind::Table, table) {
            (true, false) => {
                return Err(RunError::Arrow(
                    "a table UDF runs with call_arrow_table".into(),
                ))
            }
            (false, true) => {
                return Err(RunError::Arrow(format!(
                    "call_arrow_table runs table UDFs, not {} ones",
                    runner.spec().kind
                )))
            }
            _ => {}
        }
        let wire = if table {
            DataType::List(Arc::new(arrow_schema::Field::new("item", wire, true)))
        } else {
            wire
        };
        Ok(Returns {
            declared,
            wire,
            table,
        })
    }

    /// The results of one batch's slices, in order, as one array of the
    /// declared type, which must hold `rows` rows.
    fn join(&self, arrays: Vec<ArrayRef>, rows: usize) -> Result<ArrayRef, RunError> {
        if let Some(a) = arrays.iter().find(|a| a.data_type() != &self.wire) {
            return Err(RunError::Arrow(format!(
                "an executor answered with {} for the declared type {}",
                a.data_type(),
                self.declared
            )));
        }
        let joined = concat(arrays, &self.wire)?;
        let joined = if self.table {
            joined
        } else {
            from_wire(joined, &self.declared)?
        };
        if joined.len() != rows {
            return Err(RunError::Arrow(format!(
                "internal error: {} results for a batch of {rows} rows",
                joined.len()
            )));
        }
        Ok(joined)
    }
}

/// A batch's columns as they travel (see [`wire_type`]), each checked.
struct WireColumns {
    columns: Vec<ArrayRef>,
    rows: usize,
}

impl WireColumns {
    /// `batch`'s columns, or which one cannot travel (or, when the UDF
    /// declares its arguments' types, is not of its declared type).
    fn of(runner: &Runner, batch: &RecordBatch) -> Result<WireColumns, RunError> {
        if let Some(args) = &runner.spec().args {
            let got: Vec<&DataType> = batch.columns().iter().map(|c| c.data_type()).collect();
            if got.len() != args.len() || got.iter().zip(args).any(|(g, a)| *g != a) {
                return Err(RunError::Arrow(format!(
                    "the batch's columns are {got:?}, the UDF's arguments are declared {args:?} (UdfSpec::args)"
                )));
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
    fn send(&self, scheduler: &mut Scheduler<&Runner>, rows: Range<usize>, result: &DataType) {
        let slice: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| c.slice(rows.start, rows.len()))
            .collect();
        scheduler.send_columns(rows.len(), &slice, result)
    }
}

/// Arrow batches in, one array per batch out, in order: the streaming form
/// of [`Runner::call_arrow`], from [`Runner::stream_arrow`].
///
/// [`push`](ArrowStream::push) checks a batch's columns as `call_arrow`
/// does, cuts it into slices of the current batch size
/// ([`RowStream::batch_size`](crate::RowStream::batch_size)) and sends
/// them; like [`RowStream::push`](crate::RowStream::push) it blocks while
/// every leased worker has two batches in flight, until the oldest is
/// answered. [`pull`](ArrowStream::pull) gives the results of the oldest
/// batch not pulled yet, put together from its slices into one array of
/// the declared type with exactly that batch's rows. A batch that failed
/// yields its error once, in its place, and the stream goes on with the
/// next batch.
///
/// Rows are numbered across the stream, as in every [`RunError`]: the
/// rows of a batch start at [`ArrowStream::rows_pushed`] as it was before
/// the batch was pushed.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use coil_host::arrow_array::{ArrayRef, Int64Array, RecordBatch};
/// # use coil_host::arrow_schema::DataType;
/// # use coil_host::{Config, Runner, UdfSpec};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = UdfSpec::new("udfs/inc.py:inc").returns(DataType::Int64);
/// let runner = Runner::new(&Config::default(), spec)?;
/// let mut stream = runner.stream_arrow();
/// for n in [10, 1000, 3] {
///     let xs: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
///     stream.push(&RecordBatch::try_from_iter([("x", xs)])?)?;
/// }
/// for results in stream {
///     println!("{} results", results?.len());
/// }
/// # Ok(()) }
/// ```
pub struct ArrowStream<'r> {
    runner: &'r Runner,
    scheduler: Scheduler<&'r Runner>,
    /// The batches pushed and not pulled yet, oldest first.
    pushed: VecDeque<Pushed>,
    /// Rows pushed so far.
    rows: u64,
}

/// A batch pushed to an [`ArrowStream`]: how its results are put together.
struct Pushed {
    returns: Returns,
    rows: usize,
    /// The column batches it was cut into.
    slices: usize,
}

impl ArrowStream<'_> {
    /// Sends `batch` (one column per argument), cut into slices of the
    /// current batch size; blocks while every leased worker has two
    /// batches in flight, until the oldest is answered. Its results, or
    /// its error, come from [`ArrowStream::pull`] in its turn.
    ///
    /// # Errors
    ///
    /// As [`Runner::call_arrow`] before any row runs, and with nothing
    /// sent: [`RunError::UnsupportedColumn`] naming the column and its
    /// type; [`RunError::Arrow`] without a supported return type, or for a
    /// table UDF. The stream goes on without the batch.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), RunError> {
        let returns = Returns::of(self.runner, false)?;
        let columns = WireColumns::of(self.runner, batch)?;
        let mut slices = 0;
        let mut at = 0;
        while at < columns.rows {
            let n = self.runner.batch_size().min(columns.rows - at);
            columns.send(&mut self.scheduler, at..at + n, &returns.wire);
            at += n;
            slices += 1;
        }
        self.rows += columns.rows as u64;
        self.pushed.push_back(Pushed {
            returns,
            rows: columns.rows,
            slices,
        });
        Ok(())
    }

    /// The results of the oldest batch not pulled yet, as one array of the
    /// declared type holding that batch's rows in order, waiting for them;
    /// `None` once every pushed batch has been pulled.
    ///
    /// # Errors
    ///
    /// The batch's first error, as [`Runner::call_arrow`] gives it (under
    /// `on-error` = `skip` or `dead-letter`, a row that failed alone is a
    /// [`RunError::Row`]: [`ArrowStream::pull_each`] takes those as
    /// nulls). The stream goes on with the next batch.
    pub fn pull(&mut self) -> Option<Result<ArrayRef, RunError>> {
        self.next_batch(true).map(Answer::whole)
    }

    /// As [`ArrowStream::pull`] if the oldest batch's results are all back,
    /// without waiting; else `None`.
    pub fn try_pull(&mut self) -> Option<Result<ArrayRef, RunError>> {
        self.next_batch(false).map(Answer::whole)
    }

    /// The results of the oldest batch not pulled yet, as
    /// [`ArrowStream::pull`] gives them, except that under
    /// `python.fn-execution.on-error` = `skip` or `dead-letter` each row
    /// that failed alone holds a null in the array and its error
    /// ([`RowError`], without its input values) is in the list, in row
    /// order, as [`Runner::call_arrow_each`] gives them. Waits for them;
    /// `None` once every pushed batch has been pulled.
    ///
    /// # Errors
    ///
    /// As [`ArrowStream::pull`], except rows that failed alone.
    pub fn pull_each(&mut self) -> Option<Result<(ArrayRef, Vec<RowError>), RunError>> {
        self.next_batch(true).map(Answer::each)
    }

    /// As [`ArrowStream::pull_each`] if the oldest batch's results are all
    /// back, without waiting; else `None`.
    pub fn try_pull_each(&mut self) -> Option<Result<(ArrayRef, Vec<RowError>), RunError>> {
        self.next_batch(false).map(Answer::each)
    }

    /// Rows pushed so far: the first row of the next batch pushed, as
    /// errors number it.
    pub fn rows_pushed(&self) -> u64 {
        self.rows
    }

    /// The oldest pushed batch's slices' answers, once all are back
    /// (waiting for them if `wait`).
    fn next_batch(&mut self, wait: bool) -> Option<Answer> {
        let front = self.pushed.front()?;
        if !self.scheduler.collect_columns(front.slices, wait) && !wait {
            return None;
        }
        let batch = self.pushed.pop_front().expect("the oldest batch");
        let mut arrays = Vec::with_capacity(batch.slices);
        let mut errors = Vec::new();
        for _ in 0..batch.slices {
            match self.scheduler.next_column() {
                Some((array, e)) => {
                    arrays.push(array);
                    errors.extend(e);
                }
                None => {
                    arrays.push(None);
                    errors.push(RunError::Arrow(
                        "internal error: a column batch never came back".into(),
                    ));
                }
            }
        }
        Some(Answer {
            batch,
            arrays,
            errors,
        })
    }
}

impl Iterator for ArrowStream<'_> {
    type Item = Result<ArrayRef, RunError>;

    /// [`ArrowStream::pull`].
    fn next(&mut self) -> Option<Self::Item> {
        self.pull()
    }
}

/// A pushed batch's answers, every slice's.
struct Answer {
    batch: Pushed,
    /// Each slice's results, none for a slice that failed as a whole.
    arrays: Vec<Option<ArrayRef>>,
    /// The slices' errors, in row order.
    errors: Vec<RunError>,
}

impl Answer {
    /// The batch's results, or its first error.
    fn whole(self) -> Result<ArrayRef, RunError> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => join_slices(&self.batch, self.arrays),
        }
    }

    /// The batch's results with its rows that failed alone, or its first
    /// other error.
    fn each(self) -> Result<(ArrayRef, Vec<RowError>), RunError> {
        let mut failed = Vec::new();
        let mut other = None;
        for e in self.errors {
            match e {
                RunError::Row(r) => failed.push(*r),
                e => {
                    other.get_or_insert(e);
                }
            }
        }
        match other {
            Some(e) => Err(e),
            None => Ok((join_slices(&self.batch, self.arrays)?, failed)),
        }
    }
}

/// The arrays of `batch`'s slices as one (none missing: a slice that
/// failed as a whole left an error, which comes first).
fn join_slices(batch: &Pushed, arrays: Vec<Option<ArrayRef>>) -> Result<ArrayRef, RunError> {
    let arrays = arrays.into_iter().collect::<Option<Vec<_>>>();
    let arrays = arrays.ok_or_else(|| {
        RunError::Arrow("internal error: a failed column batch without its error".into())
    })?;
    batch.returns.join(arrays, batch.rows)
}
