//! Aggregates: a host's groups and what Python made of them.
//!
//! Two kinds of Python aggregate run here, as a host that groups rows
//! (an engine's `GROUP BY`, a window frame) drives them:
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
//! group, each argument a list of the group's values. `accumulators.rs`
//! and `grouped.rs` hold one each; this file what they share.
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

mod accumulators;
mod grouped;

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};

use crate::{ArrowError, OnError, RowError, RunError, Runner};

pub use accumulators::Accumulators;
pub use grouped::GroupedValues;

/// The groups of one batch: which groups its rows touch, ascending, and
/// the permutation that lists each group's rows
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

/// Refuses `runner` unless it runs a UDF of `kind` (`what` says which, in
/// words).
fn expect_kind(runner: &Runner, kind: crate::UdfKind, what: &str) -> Result<(), RunError> {
    if runner.spec().kind == kind {
        return Ok(());
    }
    Err(ArrowError::Aggregate(format!(
        "{} is a {} UDF, not {what}",
        runner.spec().target,
        runner.spec().kind
    ))
    .into())
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

/// Rows an [`Accumulators`] keeps before it sends them (and a
/// [`GroupedValues`] before it groups them): each message then carries many
/// rows per group, so the per-group cost of a message (the state's round
/// trip through pickle) is paid once for many rows, and a group's rows lie
/// in long runs.
pub const PENDING_ROWS: usize = 65_536;

/// Rows kept until [`PENDING_ROWS`] of them are worth a message (or a
/// grouping): an engine's batches, each row's group beside it.
#[derive(Debug, Clone, Default)]
struct Pending {
    batches: Vec<Rows>,
    rows: usize,
}

/// Rows of an aggregate's arguments (a column each) and each row's group.
type Rows = (Vec<ArrayRef>, Vec<usize>);

impl Pending {
    /// Keeps `args` (rows of groups `groups`); whether [`PENDING_ROWS`]
    /// rows are kept now.
    fn push(&mut self, args: &[ArrayRef], groups: &[usize]) -> bool {
        self.batches.push((args.to_vec(), groups.to_vec()));
        self.rows += groups.len();
        self.rows >= PENDING_ROWS
    }

    /// About how many bytes the kept rows take.
    fn size(&self) -> usize {
        self.batches
            .iter()
            .flat_map(|(a, g)| {
                a.iter()
                    .map(|a| a.get_array_memory_size())
                    .chain([std::mem::size_of_val(g.as_slice())])
            })
            .sum()
    }

    /// Every row kept, as one batch of `columns` columns and each row's
    /// group, in the order they came; `None` when none is kept.
    fn take(&mut self, columns: usize) -> Result<Option<Rows>, RunError> {
        let batches = std::mem::take(&mut self.batches);
        self.rows = 0;
        if batches.len() <= 1 {
            return Ok(batches.into_iter().next());
        }
        let args = (0..columns)
            .map(|i| {
                let parts: Vec<&dyn Array> = batches.iter().map(|(a, _)| a[i].as_ref()).collect();
                arrow_select::concat::concat(&parts)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ArrowError::Build)?;
        let groups = batches
            .iter()
            .flat_map(|(_, g)| g.iter().copied())
            .collect();
        Ok(Some((args, groups)))
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
