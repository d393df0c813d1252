//! Aggregates: a host's groups and what Python made of them.
//!
//! Two kinds of Python aggregate run here, as a host that groups rows
//! (an engine's `GROUP BY`, a window frame, `coil run --group-by`) drives
//! them:
//!
//! - [`Accumulators`] for [`UdfKind::Aggregate`], an accumulator class with
//!   PyFlink's methods. The host holds each group's state between batches,
//!   pickled; each batch sends the touched groups' states with their new
//!   rows and gets the states back updated. A worker that dies mid-batch
//!   loses nothing: the batch is sent again with the same states, so every
//!   row is counted once. The states are also what a partial aggregate
//!   hands to its final stage.
//! - [`GroupedValues`] for [`UdfKind::VectorizedAggregate`], a function of
//!   whole columns (PySpark's grouped-aggregate pandas UDF). The host keeps
//!   each group's rows and calls the function once per group when the
//!   groups are done; many groups travel in one message.
//!
//! In both, one message carries every group a batch touches: a row per
//! group, each argument a list of the group's values.
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use coil_host::arrow_array::{ArrayRef, Int64Array};
//! use coil_host::arrow_schema::DataType;
//! use coil_host::{Accumulators, Config, Runner, UdfKind, UdfSpec};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // class Sum: create_accumulator / accumulate / merge / get_value
//! let spec = UdfSpec::new("udfs/agg.py:Sum").kind(UdfKind::Aggregate).returns(DataType::Int64);
//! let runner = Runner::new(&Config::default(), spec)?;
//! let mut sums = Accumulators::new(&runner, vec![DataType::Int64])?;
//! let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
//! sums.update(&runner, &[0, 1, 0, 1], &[values])?; // groups 0 and 1
//! let totals = sums.evaluate(&runner, None)?; // [4, 6]
//! # Ok(()) }
//! ```

use std::sync::Arc;

use arrow_array::builder::BinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, Int8Array, ListArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use coil_proto::{AggregateOp, UdfKind};

use crate::{ArrowError, OnError, RowError, RunError, Runner};

/// The groups of one batch: which groups its rows touch, in order of
/// first appearance, and the permutation that lists each group's rows
/// together (stable: a group's rows keep their input order).
struct Touched {
    /// The touched groups, ascending.
    groups: Vec<usize>,
    /// Per touched group, where its rows start in `order` (one more entry
    /// at the end).
    offsets: Vec<i32>,
    /// The batch's rows, grouped.
    order: UInt32Array,
}

/// The rows of a batch in order of their group, each group's rows in
/// their input order: a counting sort when the groups present span a range
/// not much wider than the batch (the usual case), else a sort.
fn grouped_order(group_indices: &[usize]) -> Vec<u32> {
    let n = group_indices.len();
    let (Some(&lo), Some(&hi)) = (group_indices.iter().min(), group_indices.iter().max()) else {
        return Vec::new();
    };
    if hi - lo <= 4 * n + 1024 {
        let mut starts = vec![0u32; hi - lo + 2];
        for &g in group_indices {
            starts[g - lo + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut order = vec![0u32; n];
        for (row, &g) in group_indices.iter().enumerate() {
            let at = &mut starts[g - lo];
            order[*at as usize] = row as u32;
            *at += 1;
        }
        order
    } else {
        // Group in the high bits, row in the low: sorting the pairs keeps
        // each group's rows in order.
        let mut keyed: Vec<(usize, u32)> = group_indices
            .iter()
            .enumerate()
            .map(|(row, &g)| (g, row as u32))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, row)| row).collect()
    }
}

impl Touched {
    fn of(group_indices: &[usize]) -> Result<Touched, RunError> {
        if u32::try_from(group_indices.len()).is_err() {
            return Err(ArrowError::Aggregate(format!(
                "{} rows are more than one batch of an aggregate holds",
                group_indices.len()
            ))
            .into());
        }
        let order = grouped_order(group_indices);
        let mut groups = Vec::new();
        let mut offsets = Vec::new();
        for (at, &i) in order.iter().enumerate() {
            let g = group_indices[i as usize];
            if groups.last() != Some(&g) {
                groups.push(g);
                offsets.push(at as i32);
            }
        }
        offsets.push(order.len() as i32);
        Ok(Touched {
            groups,
            offsets,
            order: UInt32Array::from(order),
        })
    }

    /// Each of `args` as a list per touched group.
    fn lists(&self, args: &[ArrayRef]) -> Result<Vec<ArrayRef>, RunError> {
        args.iter()
            .map(|a| {
                let values = arrow_select::take::take(a.as_ref(), &self.order, None)
                    .map_err(ArrowError::Build)?;
                list_of(values, self.offsets.clone())
            })
            .collect()
    }
}

/// A list array over `values` cut at `offsets`.
fn list_of(values: ArrayRef, offsets: Vec<i32>) -> Result<ArrayRef, RunError> {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let list = ListArray::try_new(field, OffsetBuffer::new(offsets.into()), values, None)
        .map_err(ArrowError::Build)?;
    Ok(Arc::new(list))
}

/// `n` empty lists of `t`.
fn empty_lists(t: &DataType, n: usize) -> Result<ArrayRef, RunError> {
    list_of(arrow_array::new_empty_array(t), vec![0; n + 1])
}

/// A batch of `columns`, `rows` long, named `c0`, `c1`...
fn batch_of(columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, RunError> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(ArrowError::Build)?)
}

/// Runs `batch` (a row per group, row `i` group `groups[i]`) under the
/// runner's error policy: under `fail` a failed group fails the call
/// ([`ArrowError::InGroup`]); otherwise its result is null and it is
/// returned among the failures, with its row (its index in `batch`).
fn run(
    runner: &Runner,
    batch: &RecordBatch,
    groups: &[usize],
) -> Result<(ArrayRef, Vec<RowError>), RunError> {
    if runner.config().on_error() == OnError::Fail {
        match runner.call_arrow(batch) {
            Ok(a) => Ok((a, Vec::new())),
            Err(e) => match e.row().and_then(|r| groups.get(r as usize)) {
                Some(&group) => Err(ArrowError::InGroup {
                    group,
                    error: Box::new(e),
                }
                .into()),
                None => Err(e),
            },
        }
    } else {
        runner.call_arrow_each(batch)
    }
}

/// A group that failed: its index, and why (the row in the error is the
/// group's index, not an input row).
#[derive(Debug)]
pub struct GroupError {
    /// The group.
    pub group: usize,
    /// What failed.
    pub error: RowError,
}

/// Accumulator states for the groups of an [`UdfKind::Aggregate`], held
/// by the host between batches (pickled), so that a batch whose worker died
/// is sent again with the same states: nothing lost, nothing counted twice.
#[derive(Debug, Clone)]
pub struct Accumulators {
    /// The arguments' types.
    args: Vec<DataType>,
    /// Each group's pickled accumulator; `None`: not created yet.
    states: Vec<Option<Vec<u8>>>,
    /// Groups that failed under a skip or dead-letter policy: their value
    /// is null, and their later rows are not sent.
    failed: Vec<bool>,
    /// Bytes the states hold.
    bytes: usize,
    /// Rows not sent yet (their columns, and each row's group): an
    /// engine's batches are small next to what one message carries well.
    pending: Vec<(Vec<ArrayRef>, Vec<usize>)>,
    /// How many rows `pending` holds.
    pending_rows: usize,
}

/// Rows an [`Accumulators`] keeps before it sends them: each message then
/// carries many rows per group, so the per-group cost of a message (the
/// state's round trip through pickle) is paid once for many rows.
pub const PENDING_ROWS: usize = 65_536;

impl Accumulators {
    /// No groups yet, for an aggregate over arguments of types `args`.
    ///
    /// # Errors
    ///
    /// [`ArrowError::Aggregate`] when `runner` does not run an aggregate
    /// class.
    pub fn new(runner: &Runner, args: Vec<DataType>) -> Result<Accumulators, RunError> {
        if runner.spec().kind != UdfKind::Aggregate {
            return Err(ArrowError::Aggregate(format!(
                "{} is a {} UDF, not an aggregate (an accumulator class)",
                runner.spec().target,
                runner.spec().kind
            ))
            .into());
        }
        Ok(Accumulators {
            args,
            states: Vec::new(),
            failed: Vec::new(),
            bytes: 0,
            pending: Vec::new(),
            pending_rows: 0,
        })
    }

    /// How many groups there are.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// About how many bytes the states (and the rows not sent yet) take.
    pub fn size(&self) -> usize {
        let pending: usize = self
            .pending
            .iter()
            .flat_map(|(a, g)| {
                a.iter()
                    .map(|a| a.get_array_memory_size())
                    .chain([g.len() * std::mem::size_of::<usize>()])
            })
            .sum();
        self.bytes + pending + self.states.capacity() * std::mem::size_of::<Option<Vec<u8>>>()
    }

    /// Sends the rows kept so far into their groups' accumulators.
    ///
    /// # Errors
    ///
    /// As [`Accumulators::update`].
    pub fn flush(&mut self, runner: &Runner) -> Result<Vec<GroupError>, RunError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let (args, groups) = if pending.len() == 1 {
            pending.into_iter().next().expect("one part")
        } else {
            let columns = (0..self.args.len())
                .map(|i| {
                    let parts: Vec<&dyn Array> =
                        pending.iter().map(|(a, _)| a[i].as_ref()).collect();
                    arrow_select::concat::concat(&parts)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(ArrowError::Build)?;
            let groups = pending
                .iter()
                .flat_map(|(_, g)| g.iter().copied())
                .collect();
            (columns, groups)
        };
        self.rows(runner, AggregateOp::Accumulate, &groups, &args)
    }

    fn grow(&mut self, groups: usize) {
        if self.states.len() < groups {
            self.states.resize(groups, None);
            self.failed.resize(groups, false);
        }
    }

    fn set(&mut self, group: usize, state: Option<Vec<u8>>) {
        let old = std::mem::replace(&mut self.states[group], state);
        self.bytes -= old.map_or(0, |s| s.len());
        self.bytes += self.states[group].as_ref().map_or(0, Vec::len);
    }

    /// The states of `groups`, as a binary column (null: not created).
    fn states_of(&self, groups: &[usize]) -> BinaryArray {
        let mut b = BinaryBuilder::with_capacity(groups.len(), 0);
        for &g in groups {
            b.append_option(self.states[g].as_deref());
        }
        b.finish()
    }

    /// Sends `op` for `touched` with `args` (lists per touched group) and
    /// stores the states that come back; returns the groups that failed.
    fn step(
        &mut self,
        runner: &Runner,
        op: AggregateOp,
        touched: &[usize],
        args: Vec<ArrayRef>,
    ) -> Result<Vec<GroupError>, RunError> {
        let n = touched.len();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(vec![op.code(); n])),
            Arc::new(self.states_of(touched)),
        ];
        columns.extend(args);
        let batch = batch_of(columns, n)?;
        let (results, errors) = run(runner, &batch, touched)?;
        let states = results
            .as_struct_opt()
            .and_then(|s| s.column_by_name("state"))
            .and_then(|c| c.as_binary_opt::<i32>())
            .ok_or_else(|| {
                ArrowError::Aggregate(format!(
                    "an aggregate answered {} where states were expected",
                    results.data_type()
                ))
            })?;
        let mut failures = Vec::new();
        for e in errors {
            let g = touched[e.row as usize];
            self.failed[g] = true;
            failures.push(GroupError { group: g, error: e });
        }
        for (i, &g) in touched.iter().enumerate() {
            if self.failed[g] {
                self.set(g, None);
            } else if states.is_null(i) {
                return Err(ArrowError::Aggregate(format!(
                    "an aggregate answered no state for group {g}"
                ))
                .into());
            } else {
                self.set(g, Some(states.value(i).to_vec()));
            }
        }
        Ok(failures)
    }

    /// Rows `args` (one array per argument) accumulated into their groups,
    /// `group_indices[i]` the group of row `i` (groups not seen before are
    /// created). Returns the groups that failed (under a `fail` policy, the
    /// first failure is the error instead).
    ///
    /// # Errors
    ///
    /// A group's failure under `fail`; the run's errors otherwise.
    pub fn update(
        &mut self,
        runner: &Runner,
        group_indices: &[usize],
        args: &[ArrayRef],
    ) -> Result<Vec<GroupError>, RunError> {
        if group_indices.is_empty() {
            return Ok(Vec::new());
        }
        if args.len() != self.args.len() || args.iter().any(|a| a.len() != group_indices.len()) {
            return Err(ArrowError::Aggregate(format!(
                "an aggregate over {} arguments was given {} columns for {} rows",
                self.args.len(),
                args.len(),
                group_indices.len()
            ))
            .into());
        }
        self.grow(group_indices.iter().max().map_or(0, |m| m + 1));
        self.pending.push((args.to_vec(), group_indices.to_vec()));
        self.pending_rows += group_indices.len();
        if self.pending_rows >= PENDING_ROWS {
            self.flush(runner)
        } else {
            Ok(Vec::new())
        }
    }

    /// Rows `args` retracted from their groups (the accumulator's
    /// `retract`), as [`Accumulators::update`] adds them.
    ///
    /// # Errors
    ///
    /// As [`Accumulators::update`].
    pub fn retract(
        &mut self,
        runner: &Runner,
        group_indices: &[usize],
        args: &[ArrayRef],
    ) -> Result<Vec<GroupError>, RunError> {
        let mut failures = self.flush(runner)?;
        failures.extend(self.rows(runner, AggregateOp::Retract, group_indices, args)?);
        Ok(failures)
    }

    fn rows(
        &mut self,
        runner: &Runner,
        op: AggregateOp,
        group_indices: &[usize],
        args: &[ArrayRef],
    ) -> Result<Vec<GroupError>, RunError> {
        if group_indices.is_empty() {
            return Ok(Vec::new());
        }
        self.grow(group_indices.iter().max().map_or(0, |m| m + 1));
        // Rows of failed groups are not sent again.
        let keep: Vec<bool> = group_indices.iter().map(|&g| !self.failed[g]).collect();
        let (indices, args): (Vec<usize>, Vec<ArrayRef>) = if keep.iter().all(|k| *k) {
            (group_indices.to_vec(), args.to_vec())
        } else {
            let mask = arrow_array::BooleanArray::from(keep);
            let args = args
                .iter()
                .map(|a| arrow_select::filter::filter(a.as_ref(), &mask))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ArrowError::Build)?;
            let indices = group_indices
                .iter()
                .zip(mask.values().iter())
                .filter(|(_, k)| *k)
                .map(|(g, _)| *g)
                .collect();
            (indices, args)
        };
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        let touched = Touched::of(&indices)?;
        let lists = touched.lists(&args)?;
        self.step(runner, op, &touched.groups, lists)
    }

    /// Other accumulators' states (`states`, a binary column from
    /// [`Accumulators::take_states`] of another host, or of a partial
    /// aggregate) merged into groups `group_indices` (the accumulator's
    /// `merge`).
    ///
    /// # Errors
    ///
    /// As [`Accumulators::update`]; a column that is not binary.
    pub fn merge(
        &mut self,
        runner: &Runner,
        group_indices: &[usize],
        states: &ArrayRef,
    ) -> Result<Vec<GroupError>, RunError> {
        let Some(binary) = states.as_binary_opt::<i32>() else {
            return Err(ArrowError::Aggregate(format!(
                "an aggregate's partial states are binary, not {}",
                states.data_type()
            ))
            .into());
        };
        if binary.len() != group_indices.len() {
            return Err(ArrowError::Aggregate(format!(
                "{} partial states for {} groups",
                binary.len(),
                group_indices.len()
            ))
            .into());
        }
        let mut failures = self.flush(runner)?;
        // A group that failed in a partial aggregate fails here too.
        self.grow(group_indices.iter().max().map_or(0, |m| m + 1));
        for (i, &g) in group_indices.iter().enumerate() {
            if binary.is_valid(i) && binary.value(i).is_empty() {
                self.failed[g] = true;
                self.set(g, None);
            }
        }
        failures.extend(self.rows(
            runner,
            AggregateOp::Merge,
            group_indices,
            std::slice::from_ref(states),
        )?);
        Ok(failures)
    }

    /// The states of the first `n` groups (all with `None`), pickled, one
    /// per group: null for a group that never saw a row, empty for one that
    /// failed (under a skip or dead-letter policy: merged into another
    /// host's group, it fails that group too). They are taken out, and the
    /// groups after them move down.
    ///
    /// # Errors
    ///
    /// Sending the rows kept so far, as [`Accumulators::flush`]; the groups
    /// that failed then are among the empty states.
    pub fn take_states(&mut self, runner: &Runner, n: Option<usize>) -> Result<ArrayRef, RunError> {
        self.flush(runner)?;
        let n = n.unwrap_or(self.states.len()).min(self.states.len());
        let mut b = BinaryBuilder::with_capacity(n, 0);
        for g in 0..n {
            if self.failed[g] {
                b.append_value(b"");
            } else {
                b.append_option(self.states[g].as_deref());
            }
        }
        self.drain(n);
        Ok(Arc::new(b.finish()))
    }

    fn drain(&mut self, n: usize) {
        for s in self.states.drain(..n).flatten() {
            self.bytes -= s.len();
        }
        self.failed.drain(..n);
    }

    /// Each of the first `n` groups' value (all with `None`): the
    /// accumulator's `get_value`, null for a group that failed. They are
    /// taken out, and the groups after them move down.
    ///
    /// # Errors
    ///
    /// A group's failure under `fail`; the run's errors otherwise.
    pub fn evaluate(&mut self, runner: &Runner, n: Option<usize>) -> Result<ArrayRef, RunError> {
        self.evaluate_each(runner, n).map(|(values, _)| values)
    }

    /// As [`Accumulators::evaluate`], with the groups that failed now.
    ///
    /// # Errors
    ///
    /// As [`Accumulators::evaluate`].
    pub fn evaluate_each(
        &mut self,
        runner: &Runner,
        n: Option<usize>,
    ) -> Result<(ArrayRef, Vec<GroupError>), RunError> {
        let (values, mut failures) = self.values(runner, n.unwrap_or(usize::MAX))?;
        let n = values.len();
        self.drain(n);
        failures.sort_by_key(|f| f.group);
        Ok((values, failures))
    }

    /// The first `n` groups' values, as [`Accumulators::evaluate_each`]
    /// gives them, leaving the groups as they are (a window frame asks
    /// again after more rows).
    ///
    /// # Errors
    ///
    /// As [`Accumulators::evaluate`].
    pub fn values(
        &mut self,
        runner: &Runner,
        n: usize,
    ) -> Result<(ArrayRef, Vec<GroupError>), RunError> {
        let flushed = self.flush(runner)?;
        let n = n.min(self.states.len());
        let groups: Vec<usize> = (0..n).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(vec![AggregateOp::Value.code(); n])),
            Arc::new(self.states_of(&groups)),
        ];
        for t in &self.args {
            columns.push(empty_lists(t, n)?);
        }
        let batch = batch_of(columns, n)?;
        let (results, errors) = run(runner, &batch, &groups)?;
        let values = results
            .as_struct_opt()
            .and_then(|s| s.column_by_name("value"))
            .cloned()
            .ok_or_else(|| {
                ArrowError::Aggregate(format!(
                    "an aggregate answered {} where values were expected",
                    results.data_type()
                ))
            })?;
        let mut failures: Vec<GroupError> = errors
            .into_iter()
            .map(|e| GroupError {
                group: e.row as usize,
                error: e,
            })
            .collect();
        failures.retain(|f| !self.failed[f.group]);
        failures.extend(flushed);
        // Groups that failed before: null.
        let values = if self.failed[..n].iter().any(|f| *f) {
            let failed = arrow_array::BooleanArray::from(self.failed[..n].to_vec());
            arrow_select::nullif::nullif(values.as_ref(), &failed).map_err(ArrowError::Build)?
        } else {
            values
        };
        Ok((values, failures))
    }

    /// Creates groups up to `groups` (a group without rows has the value
    /// of a fresh accumulator).
    pub fn reserve_groups(&mut self, groups: usize) {
        self.grow(groups);
    }
}

/// The rows of each group of an [`UdfKind::VectorizedAggregate`], held by
/// the host until the groups are done, then sent many groups to a message.
///
/// Each batch is grouped as it comes (a sort of one small batch, in cache),
/// so that putting a group's rows together at the end copies runs of rows,
/// not one row at a time from all over memory.
#[derive(Debug, Clone)]
pub struct GroupedValues {
    /// The arguments' types.
    args: Vec<DataType>,
    /// Batches of rows, each grouped: its columns, and the runs of rows of
    /// each group in it (`(group, start, end)`).
    parts: Vec<Part>,
    /// How many groups there are.
    groups: usize,
    /// Bytes the parts hold.
    bytes: usize,
    /// Batches not grouped yet (their columns, and each row's group):
    /// grouped together once they hold [`PENDING_ROWS`], so that each
    /// group's runs are long.
    pending: Vec<(Vec<ArrayRef>, Vec<usize>)>,
    /// How many rows `pending` holds.
    pending_rows: usize,
}

/// A batch of rows, grouped: a run of rows per group.
#[derive(Debug, Clone)]
struct Part {
    columns: Vec<ArrayRef>,
    runs: Vec<(usize, usize, usize)>,
}

impl GroupedValues {
    /// No groups yet, for a vectorized aggregate over arguments of types
    /// `args`.
    ///
    /// # Errors
    ///
    /// [`ArrowError::Aggregate`] when `runner` does not run a vectorized
    /// aggregate.
    pub fn new(runner: &Runner, args: Vec<DataType>) -> Result<GroupedValues, RunError> {
        if runner.spec().kind != UdfKind::VectorizedAggregate {
            return Err(ArrowError::Aggregate(format!(
                "{} is a {} UDF, not a vectorized aggregate",
                runner.spec().target,
                runner.spec().kind
            ))
            .into());
        }
        Ok(GroupedValues {
            args,
            parts: Vec::new(),
            groups: 0,
            bytes: 0,
            pending: Vec::new(),
            pending_rows: 0,
        })
    }

    /// How many groups there are.
    pub fn len(&self) -> usize {
        self.groups
    }

    /// Creates groups up to `groups` (a group without rows is called with
    /// empty columns).
    pub fn reserve_groups(&mut self, groups: usize) {
        self.groups = self.groups.max(groups);
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// About how many bytes the kept rows take.
    pub fn size(&self) -> usize {
        self.bytes
    }

    fn check(&self, args: &[ArrayRef], rows: usize) -> Result<(), RunError> {
        let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
        if types != self.args || args.iter().any(|a| a.len() != rows) {
            return Err(ArrowError::Aggregate(format!(
                "a vectorized aggregate over {:?} was given {} rows of {types:?}",
                self.args, rows
            ))
            .into());
        }
        Ok(())
    }

    fn push(&mut self, part: Part) {
        if let Some(most) = part.runs.iter().map(|r| r.0 + 1).max() {
            self.groups = self.groups.max(most);
        }
        self.bytes += part
            .columns
            .iter()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>();
        self.parts.push(part);
    }

    /// Keeps rows `args` (one array per argument) for their groups,
    /// `group_indices[i]` the group of row `i` (groups not seen before are
    /// created). No Python runs until [`GroupedValues::evaluate`].
    ///
    /// # Errors
    ///
    /// [`ArrowError::Aggregate`] for arrays not of the arguments' types or
    /// lengths.
    pub fn update(&mut self, group_indices: &[usize], args: &[ArrayRef]) -> Result<(), RunError> {
        self.check(args, group_indices.len())?;
        if group_indices.is_empty() {
            return Ok(());
        }
        let most = group_indices.iter().max().map_or(0, |m| m + 1);
        self.groups = self.groups.max(most);
        self.bytes += args
            .iter()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>();
        self.pending.push((args.to_vec(), group_indices.to_vec()));
        self.pending_rows += group_indices.len();
        if self.pending_rows >= PENDING_ROWS {
            self.settle()?;
        }
        Ok(())
    }

    /// Groups the batches kept so far into one part.
    fn settle(&mut self) -> Result<(), RunError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let (args, group_indices) = if pending.len() == 1 {
            pending.into_iter().next().expect("one batch")
        } else {
            let columns = (0..self.args.len())
                .map(|i| {
                    let parts: Vec<&dyn Array> =
                        pending.iter().map(|(a, _)| a[i].as_ref()).collect();
                    arrow_select::concat::concat(&parts)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(ArrowError::Build)?;
            let groups = pending
                .iter()
                .flat_map(|(_, g)| g.iter().copied())
                .collect();
            (columns, groups)
        };
        self.bytes -= args
            .iter()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            .min(self.bytes);
        let group_indices: Vec<usize> = group_indices;
        let args: Vec<ArrayRef> = args;
        let touched = Touched::of(&group_indices)?;
        let columns = args
            .iter()
            .map(|a| arrow_select::take::take(a.as_ref(), &touched.order, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ArrowError::Build)?;
        let runs = touched
            .groups
            .iter()
            .zip(touched.offsets.windows(2))
            .map(|(&g, w)| (g, w[0] as usize, w[1] as usize))
            .collect();
        self.push(Part { columns, runs });
        Ok(())
    }

    /// Another host's (or a partial aggregate's) rows, as
    /// [`GroupedValues::take_lists`] gives them (one list column per
    /// argument, a row per group), added to groups `group_indices`.
    ///
    /// # Errors
    ///
    /// [`ArrowError::Aggregate`] for columns that are not lists of the
    /// arguments' types.
    pub fn merge(&mut self, group_indices: &[usize], lists: &[ArrayRef]) -> Result<(), RunError> {
        self.settle()?;
        let mut columns = Vec::with_capacity(lists.len());
        let mut runs: Option<Vec<(usize, usize, usize)>> = None;
        for (i, l) in lists.iter().enumerate() {
            let list = l.as_list_opt::<i32>().ok_or_else(|| {
                ArrowError::Aggregate(format!(
                    "partial state {i} of a vectorized aggregate is {}, not a list",
                    l.data_type()
                ))
            })?;
            if list.len() != group_indices.len() || list.values().data_type() != &self.args[i] {
                return Err(ArrowError::Aggregate(format!(
                    "partial state {i}: {} lists of {} for {} groups of {}",
                    list.len(),
                    list.values().data_type(),
                    group_indices.len(),
                    self.args[i]
                ))
                .into());
            }
            columns.push(list.values().clone());
            let these: Vec<(usize, usize, usize)> = list
                .value_offsets()
                .windows(2)
                .zip(group_indices)
                .map(|(w, &g)| (g, w[0].max(0) as usize, w[1].max(w[0]).max(0) as usize))
                .collect();
            match &runs {
                Some(r) if r != &these => {
                    return Err(ArrowError::Aggregate(
                        "a vectorized aggregate's partial states differ in length".into(),
                    )
                    .into())
                }
                _ => runs = Some(these),
            }
        }
        if columns.len() != self.args.len() {
            return Err(ArrowError::Aggregate(format!(
                "{} partial states for {} arguments",
                columns.len(),
                self.args.len()
            ))
            .into());
        }
        let runs = runs.unwrap_or_default();
        // Groups a partial aggregate saw without rows still exist.
        self.groups = self
            .groups
            .max(group_indices.iter().max().map_or(0, |m| m + 1));
        self.push(Part { columns, runs });
        Ok(())
    }

    /// Drops the first `n` rows kept, in the order they came (a window
    /// frame's rows that left it: one group, so a part's rows are in the
    /// order they came).
    ///
    /// # Errors
    ///
    /// Arrow's, grouping the rows kept.
    pub fn drop_first(&mut self, n: usize) -> Result<(), RunError> {
        self.settle()?;
        let mut left = n;
        while left > 0 && !self.parts.is_empty() {
            let rows: usize = self.parts[0].runs.iter().map(|r| r.2 - r.1).sum();
            if rows <= left {
                left -= rows;
                self.parts.remove(0);
            } else {
                let part = &mut self.parts[0];
                let mut runs = Vec::new();
                for &(g, a, b) in &part.runs {
                    let cut = left.min(b - a);
                    left -= cut;
                    if a + cut < b {
                        runs.push((g, a + cut, b));
                    }
                }
                part.runs = runs;
                left = 0;
            }
        }
        self.bytes = self
            .parts
            .iter()
            .flat_map(|p| p.columns.iter())
            .map(|a| a.get_array_memory_size())
            .sum();
        Ok(())
    }

    /// The rows of the first `n` groups (all with `None`), one list column
    /// per argument with a row per group, each group's rows in the order
    /// they came. They are taken out, and the groups after them move
    /// down.
    ///
    /// # Errors
    ///
    /// Arrow's, putting the rows together.
    pub fn take_lists(&mut self, n: Option<usize>) -> Result<Vec<ArrayRef>, RunError> {
        self.settle()?;
        let n = n.unwrap_or(self.groups).min(self.groups);
        let parts = std::mem::take(&mut self.parts);
        // Each group's runs, in the order they came.
        let mut by_group: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); self.groups];
        for (p, part) in parts.iter().enumerate() {
            for &(g, a, b) in &part.runs {
                if let Some(runs) = by_group.get_mut(g) {
                    runs.push((p, a, b));
                }
            }
        }
        let gather =
            |i: usize, groups: std::ops::Range<usize>| -> Result<(ArrayRef, Vec<i32>), RunError> {
                let datas: Vec<arrow_data::ArrayData> =
                    parts.iter().map(|p| p.columns[i].to_data()).collect();
                let refs: Vec<&arrow_data::ArrayData> = datas.iter().collect();
                let rows: usize = by_group[groups.clone()]
                    .iter()
                    .flatten()
                    .map(|r| r.2 - r.1)
                    .sum();
                let mut out = arrow_data::transform::MutableArrayData::new(refs, true, rows);
                let mut offsets = Vec::with_capacity(groups.len() + 1);
                let mut at = 0i32;
                offsets.push(at);
                for runs in &by_group[groups] {
                    for &(p, a, b) in runs {
                        out.try_extend(p, a, b).map_err(ArrowError::Build)?;
                        at = i32::try_from(b - a)
                            .ok()
                            .and_then(|len| at.checked_add(len))
                            .ok_or_else(|| {
                                ArrowError::Aggregate(
                                "a vectorized aggregate's groups hold more than 2^31 rows together"
                                    .into(),
                            )
                            })?;
                    }
                    offsets.push(at);
                }
                Ok((arrow_array::make_array(out.freeze()), offsets))
            };
        let mut lists = Vec::with_capacity(self.args.len());
        let mut rest_columns = Vec::new();
        let mut rest_runs = Vec::new();
        for i in 0..self.args.len() {
            let (values, offsets) = if parts.is_empty() {
                (arrow_array::new_empty_array(&self.args[i]), vec![0; n + 1])
            } else {
                gather(i, 0..n)?
            };
            lists.push(list_of(values, offsets)?);
            if n < self.groups && !parts.is_empty() {
                let (values, offsets) = gather(i, n..self.groups)?;
                if i == 0 {
                    rest_runs = offsets
                        .windows(2)
                        .enumerate()
                        .map(|(g, w)| (g, w[0] as usize, w[1] as usize))
                        .filter(|r| r.1 < r.2)
                        .collect();
                }
                rest_columns.push(values);
            }
        }
        self.groups -= n;
        self.bytes = 0;
        if !rest_columns.is_empty() {
            self.push(Part {
                columns: rest_columns,
                runs: rest_runs,
            });
        }
        Ok(lists)
    }

    /// Each of the first `n` groups' value (all with `None`): one call of
    /// the function per group, with the group's rows; many groups travel in
    /// one message. They are taken out, and the groups after them move
    /// down.
    ///
    /// # Errors
    ///
    /// A group's failure under `fail`; the run's errors otherwise.
    pub fn evaluate(&mut self, runner: &Runner, n: Option<usize>) -> Result<ArrayRef, RunError> {
        self.evaluate_each(runner, n).map(|(values, _)| values)
    }

    /// As [`GroupedValues::evaluate`], with the groups that failed (their
    /// value null) under a skip or dead-letter policy.
    ///
    /// # Errors
    ///
    /// As [`GroupedValues::evaluate`].
    pub fn evaluate_each(
        &mut self,
        runner: &Runner,
        n: Option<usize>,
    ) -> Result<(ArrayRef, Vec<GroupError>), RunError> {
        let rows = n.unwrap_or(self.groups).min(self.groups);
        let lists = self.take_lists(n)?;
        evaluate_lists(runner, lists, rows)
    }
}

/// A vectorized aggregate's value for each row of `lists` (one list column
/// per argument, `rows` long): the function called once per row with the
/// row's lists, as a window frame or a group gives them.
///
/// # Errors
///
/// A row's failure under `fail`; the run's errors otherwise.
pub fn evaluate_lists(
    runner: &Runner,
    lists: Vec<ArrayRef>,
    rows: usize,
) -> Result<(ArrayRef, Vec<GroupError>), RunError> {
    let batch = batch_of(lists, rows)?;
    let groups: Vec<usize> = (0..rows).collect();
    let (values, errors) = run(runner, &batch, &groups)?;
    let failures = errors
        .into_iter()
        .map(|e| GroupError {
            group: e.row as usize,
            error: e,
        })
        .collect();
    Ok((values, failures))
}
