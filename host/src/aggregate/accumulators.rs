//! [`Accumulators`]: an accumulator class's pickled states, held by the
//! host between messages.

use std::sync::Arc;

use arrow_array::builder::BinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BinaryArray, Int8Array};
use arrow_schema::DataType;
use coil_proto::{AggregateOp, UdfKind};

use super::{batch_of, empty_lists, run, GroupError, Pending, Touched};
use crate::{ArrowError, RunError, Runner};

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
    /// Rows not sent yet: an engine's batches are small next to what one
    /// message carries well.
    pending: Pending,
}
impl Accumulators {
    /// No groups yet, for an aggregate over arguments of types `args`.
    ///
    /// # Errors
    ///
    /// [`ArrowError::Aggregate`] when `runner` does not run an aggregate
    /// class.
    pub fn new(runner: &Runner, args: Vec<DataType>) -> Result<Accumulators, RunError> {
        super::expect_kind(
            runner,
            UdfKind::Aggregate,
            "an aggregate (an accumulator class)",
        )?;
        Ok(Accumulators {
            args,
            states: Vec::new(),
            failed: Vec::new(),
            bytes: 0,
            pending: Pending::default(),
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
        self.bytes
            + self.pending.size()
            + self.states.capacity() * std::mem::size_of::<Option<Vec<u8>>>()
    }

    /// Sends the rows kept so far into their groups' accumulators.
    ///
    /// # Errors
    ///
    /// As [`Accumulators::update`].
    pub fn flush(&mut self, runner: &Runner) -> Result<Vec<GroupError>, RunError> {
        match self.pending.take(self.args.len())? {
            Some((args, groups)) => self.rows(runner, AggregateOp::Accumulate, &groups, &args),
            None => Ok(Vec::new()),
        }
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
        if self.pending.push(args, group_indices) {
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
