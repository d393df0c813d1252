//! Vectorized aggregates: a column batch whose rows are groups, each
//! argument a list of the group's values. Each list column's values go to
//! Python whole, once (a numpy array over a copy of a numeric buffer
//! without nulls, a pyarrow Array for parameters annotated for it, a list
//! otherwise); the UDF is then called once per group with slices of them
//! (numpy views, pyarrow slices), made the containers its annotations ask
//! for. A group that fails fails alone under a per-row policy.

use arrow_array::{Array, ListArray};
use coil_proto::Times;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::columns::ColumnBatch;
use super::Executor;
use crate::error::{bad_batch, bad_row, BatchError};
use crate::timing::Sampler;

impl Executor {
    /// Runs a vectorized aggregate over `run`, one call per row (group),
    /// and appends one value per group to `run.results`.
    pub(super) fn grouped_columns(
        &mut self,
        py: Python<'_>,
        run: &mut ColumnBatch<'_, '_>,
    ) -> Result<Times, BatchError> {
        let helper = self.helper.bind(py).clone();
        let numpy = self.adapter.as_ref().and_then(|_| py.import("numpy").ok());
        let wants_arrow = self.wants_arrow(py, run.arrays.len());
        // Each argument's list offsets (relative to its first value) and
        // its values, whole, as Python sees them.
        let mut offsets: Vec<Vec<usize>> = Vec::with_capacity(run.arrays.len());
        let mut bases = Vec::with_capacity(run.arrays.len());
        for (i, array) in run.arrays.iter().enumerate() {
            let list = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| {
                    bad_batch(format!(
                        "argument {i} of a vectorized aggregate is {}, not a list of each group's values",
                        array.data_type()
                    ))
                })?;
            let raw = list.value_offsets();
            let first = raw.first().copied().unwrap_or(0);
            let last = raw.last().copied().unwrap_or(0);
            let (Ok(first), Ok(last)) = (usize::try_from(first), usize::try_from(last)) else {
                return Err(bad_batch(format!("argument {i}: negative list offsets")));
            };
            offsets.push(
                raw.iter()
                    .map(|o| usize::try_from(*o).unwrap_or(0).saturating_sub(first))
                    .collect(),
            );
            let values = list.values().slice(first, last.saturating_sub(first));
            let base = if wants_arrow[i] {
                crate::arrow::export_capsules(&helper, values.as_ref())
                    .and_then(|c| helper.getattr("arrow_whole")?.call1((c,)))
                    .map_err(|e| bad_batch(format!("argument {i}: {e}")))?
            } else {
                match numpy.as_ref().and_then(|np| {
                    crate::convert::numpy_from_buffer(py, np, &helper, values.as_ref())
                }) {
                    Some(a) => a,
                    None => {
                        let column = crate::arrow::ArrowColumn::of(py, values.as_ref(), run.kit)
                            .map_err(|m| bad_batch(format!("argument {i}: {m}")))?;
                        let mut items = Vec::with_capacity(values.len());
                        for at in 0..values.len() {
                            items.push(
                                column
                                    .get(py, at)
                                    .map_err(|m| bad_batch(format!("argument {i}: {m}")))?,
                            );
                        }
                        PyList::new(py, items)
                            .map_err(|e| bad_batch(e.to_string()))?
                            .into_any()
                    }
                }
            };
            bases.push(base);
        }
        let bases = PyList::new(py, bases).map_err(|e| bad_batch(e.to_string()))?;
        let group_args = helper
            .getattr("group_args")
            .map_err(|e| bad_batch(e.to_string()))?;
        let plain = helper
            .getattr("plain")
            .map_err(|e| bad_batch(e.to_string()))?;
        let adapt = self.adapter.as_ref().map(|a| a.bind(py).clone());
        let mut sampler = Sampler::since(run.started);
        for row in 0..run.rows {
            let g = row as usize;
            sampler.start(row);
            let range = offsets
                .iter()
                .map(|o| match (o.get(g), o.get(g + 1)) {
                    (Some(&a), Some(&b)) if a <= b => Ok((a, b)),
                    _ => Err(bad_batch(format!("group {row}: list offsets out of order"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            // All arguments of one group hold the same number of values.
            let (start, end) = range.first().copied().unwrap_or((0, 0));
            let called = if range.iter().any(|r| r.1 - r.0 != end - start) {
                Err(bad_row(row, "the arguments' lists differ in length"))
            } else {
                group_args
                    .call1((adapt.as_ref(), &bases, start, end))
                    .and_then(|a| a.cast_into::<PyTuple>().map_err(Into::into))
                    .map_err(|e| self.raised(py, row, e))
            };
            sampler.mark();
            let called = called.and_then(|args| {
                self.mark(Some(row));
                self.func
                    .bind(py)
                    .call1(args)
                    .and_then(|r| plain.call1((r,)))
                    .map_err(|e| self.raised(py, row, e))
            });
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
}
