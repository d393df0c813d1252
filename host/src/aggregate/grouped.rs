//! [`GroupedValues`]: a vectorized aggregate's rows, kept per group until
//! the groups are done.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use coil_proto::UdfKind;

use super::{evaluate_lists, list_of, GroupError, Pending, Touched};
use crate::{ArrowError, RunError, Runner};

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
    /// Batches not grouped yet: grouped together once they hold
    /// [`PENDING_ROWS`](super::PENDING_ROWS) rows, so that each group's runs
    /// are long.
    pending: Pending,
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
        super::expect_kind(
            runner,
            UdfKind::VectorizedAggregate,
            "a vectorized aggregate",
        )?;
        Ok(GroupedValues {
            args,
            parts: Vec::new(),
            groups: 0,
            bytes: 0,
            pending: Pending::default(),
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
        self.bytes + self.pending.size()
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
        if self.pending.push(args, group_indices) {
            self.settle()?;
        }
        Ok(())
    }

    /// Groups the batches kept so far into one part.
    fn settle(&mut self) -> Result<(), RunError> {
        let Some((args, group_indices)) = self.pending.take(self.args.len())? else {
            return Ok(());
        };
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
