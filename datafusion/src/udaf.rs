//! A Python aggregate as a DataFusion aggregate function: an accumulator
//! class ([`UdfKind::Aggregate`]) or a vectorized aggregate
//! ([`UdfKind::VectorizedAggregate`]), backed by coil-host's
//! [`Accumulators`] and [`GroupedValues`].
//!
//! Grouped aggregation goes through a [`GroupsAccumulator`]: one message
//! per batch carries every group the batch touches. The partial state that
//! travels between DataFusion's partial and final stages (and between
//! Ballista's executors) is, for an accumulator class, its pickled
//! accumulator (a binary column), and for a vectorized aggregate the
//! group's values so far (a list column per argument): see docs/sql.md.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef, Schema};
use coil_host::{Accumulators, GroupError, GroupedValues, RunError, Runner, UdfKind};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
};

use crate::udf::{PythonFunction, SharedRunner};
use crate::{Error, PythonOptions};

/// A Python aggregate as a DataFusion [`AggregateUDFImpl`]. One runner
/// serves every partition of every query of the session, as for
/// [`PythonUdf`](crate::PythonUdf).
pub struct PythonUdaf {
    function: PythonFunction,
    signature: Signature,
    runner: SharedRunner,
    /// The `python.*` options it runs with: the session's when it was
    /// registered (DataFusion gives an aggregate no query options).
    options: PythonOptions,
}

crate::by_function!(PythonUdaf);

impl PythonUdaf {
    /// The aggregate for `function` (of kind [`UdfKind::Aggregate`] or
    /// [`UdfKind::VectorizedAggregate`]) under `options`, with `runner` if
    /// one is started for it.
    pub fn new(function: PythonFunction, runner: Option<Runner>, options: PythonOptions) -> Self {
        PythonUdaf::sharing(function, SharedRunner::with(runner), options)
    }

    /// The aggregate for `function` under `options`, keeping its runner in
    /// `runner`.
    pub fn sharing(function: PythonFunction, runner: SharedRunner, options: PythonOptions) -> Self {
        PythonUdaf {
            signature: function.signature(),
            function,
            runner,
            options,
        }
    }

    /// The `python.*` options it runs with.
    pub fn options(&self) -> &PythonOptions {
        &self.options
    }

    /// The runner it calls now, if it has started one.
    pub fn runner(&self) -> Option<Arc<Runner>> {
        self.runner.current()
    }

    /// What it is.
    pub fn function(&self) -> &PythonFunction {
        &self.function
    }

    /// The Python aggregate `udaf` is, if it is one.
    pub fn of(udaf: &AggregateUDF) -> Option<&PythonUdaf> {
        let inner: &dyn std::any::Any = udaf.inner().as_ref();
        inner.downcast_ref::<PythonUdaf>()
    }

    /// As a DataFusion [`AggregateUDF`].
    pub fn into_aggregate_udf(self) -> AggregateUDF {
        AggregateUDF::new_from_impl(self)
    }

    fn groups(&self, args: &AccumulatorArgs) -> Result<Groups> {
        let runner = self.runner.get(&self.function, &self.options)?;
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let failed = |error: RunError| Error::Udf {
            name: self.function.name.clone(),
            row: None,
            error: Box::new(error),
        };
        let state = match self.function.spec.kind {
            UdfKind::Aggregate => {
                State::Accumulators(Accumulators::new(&runner, types).map_err(failed)?)
            }
            UdfKind::VectorizedAggregate => {
                State::Values(GroupedValues::new(&runner, types).map_err(failed)?)
            }
            k => {
                return Err(DataFusionError::Plan(format!(
                    "Python function {} is a {k} function, not an aggregate",
                    self.function.name
                )))
            }
        };
        Ok(Groups {
            name: self.function.name.clone(),
            arg_names: self.function.arg_names.clone(),
            runner,
            state,
        })
    }
}

impl AggregateUDFImpl for PythonUdaf {
    fn name(&self) -> &str {
        &self.function.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.function.returns.clone())
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let name = args.name;
        Ok(match self.function.spec.kind {
            // The pickled accumulator.
            UdfKind::Aggregate => {
                vec![Arc::new(Field::new(
                    format!("{name}[state]"),
                    DataType::Binary,
                    true,
                ))]
            }
            // The group's values so far, per argument.
            _ => args
                .input_fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    Arc::new(Field::new(
                        format!("{name}[values{i}]"),
                        DataType::List(Arc::new(Field::new("item", f.data_type().clone(), true))),
                        true,
                    ))
                })
                .collect(),
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut groups = self.groups(&args)?;
        groups.state.reserve(1);
        Ok(Box::new(OneGroup { groups }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }
}

/// What a Python aggregate keeps per group.
enum State {
    /// An accumulator class's pickled accumulators.
    Accumulators(Accumulators),
    /// A vectorized aggregate's rows.
    Values(GroupedValues),
}

impl State {
    fn reserve(&mut self, groups: usize) {
        match self {
            State::Accumulators(a) => a.reserve_groups(groups),
            State::Values(v) => v.reserve_groups(groups),
        }
    }
}

/// The groups of one aggregate in one partition.
struct Groups {
    name: String,
    arg_names: Vec<String>,
    runner: Arc<Runner>,
    state: State,
}

impl Groups {
    /// `e`, naming the function and, where the error names a group, the
    /// group by its first row in `values` (rows grouped by
    /// `group_indices`).
    fn failed(&self, e: RunError, values: &[ArrayRef], group_indices: &[usize]) -> DataFusionError {
        let group = match &e {
            RunError::Arrow(coil_host::ArrowError::InGroup { group, .. }) => Some(*group),
            _ => None,
        };
        let row = group.map(|g| self.describe_group(g, values, group_indices));
        Error::Udf {
            name: self.name.clone(),
            row,
            error: Box::new(e),
        }
        .into()
    }

    fn describe_group(&self, group: usize, values: &[ArrayRef], group_indices: &[usize]) -> String {
        let first = group_indices.iter().position(|g| *g == group);
        match (first, batch_of(values)) {
            (Some(row), Some(batch)) => format!(
                "a group (its rows include {})",
                crate::describe_row(&batch, &self.arg_names, row)
            ),
            _ => format!("a group (number {group} in its partition)"),
        }
    }

    /// Logs the groups that failed under a skip or dead-letter policy.
    fn log(&self, failures: &[GroupError], values: &[ArrayRef], group_indices: &[usize]) {
        for f in failures {
            crate::log_failure(&self.name, || {
                format!(
                    "Python aggregate {} failed on {} (the group's result is NULL): {}",
                    self.name,
                    self.describe_group(f.group, values, group_indices),
                    f.error
                )
            });
        }
    }

    fn update(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.state.reserve(total_num_groups);
        let (values, indices) = filtered(values, group_indices, opt_filter)?;
        let result = match &mut self.state {
            State::Accumulators(a) => a.update(&self.runner, &indices, &values),
            State::Values(v) => v.update(&indices, &values).map(|()| Vec::new()),
        };
        match result {
            Ok(failures) => {
                self.log(&failures, &values, &indices);
                Ok(())
            }
            Err(e) => Err(self.failed(e, &values, &indices)),
        }
    }

    fn merge(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.state.reserve(total_num_groups);
        let result = match &mut self.state {
            State::Accumulators(a) => match values {
                [states] => a.merge(&self.runner, group_indices, states),
                _ => {
                    return Err(DataFusionError::Internal(format!(
                        "Python aggregate {}: {} state columns, not 1",
                        self.name,
                        values.len()
                    )))
                }
            },
            State::Values(v) => v.merge(group_indices, values).map(|()| Vec::new()),
        };
        match result {
            Ok(failures) => {
                self.log(&failures, &[], group_indices);
                Ok(())
            }
            Err(e) => Err(self.failed(e, &[], group_indices)),
        }
    }

    fn evaluate(&mut self, n: Option<usize>) -> Result<ArrayRef> {
        let result = match &mut self.state {
            State::Accumulators(a) => a.evaluate_each(&self.runner, n),
            State::Values(v) => v.evaluate_each(&self.runner, n),
        };
        match result {
            Ok((values, failures)) => {
                self.log(&failures, &[], &[]);
                Ok(values)
            }
            Err(e) => Err(self.failed(e, &[], &[])),
        }
    }

    fn state(&mut self, n: Option<usize>) -> Result<Vec<ArrayRef>> {
        let result = match &mut self.state {
            State::Accumulators(a) => a.take_states(&self.runner, n).map(|s| vec![s]),
            State::Values(v) => v.take_lists(n),
        };
        result.map_err(|e| self.failed(e, &[], &[]))
    }

    fn size(&self) -> usize {
        match &self.state {
            State::Accumulators(a) => a.size(),
            State::Values(v) => v.size(),
        }
    }
}

/// `values` as a batch (to name a row by its values), if they make one.
fn batch_of(values: &[ArrayRef]) -> Option<RecordBatch> {
    if values.is_empty() {
        return None;
    }
    let fields: Vec<Field> = values
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("arg{i}"), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), values.to_vec()).ok()
}

/// The rows `opt_filter` keeps (true; not false or null), and their groups.
fn filtered(
    values: &[ArrayRef],
    group_indices: &[usize],
    opt_filter: Option<&BooleanArray>,
) -> Result<(Vec<ArrayRef>, Vec<usize>)> {
    let Some(filter) = opt_filter else {
        return Ok((values.to_vec(), group_indices.to_vec()));
    };
    let keep = datafusion::arrow::compute::prep_null_mask_filter(filter);
    let values = values
        .iter()
        .map(|v| datafusion::arrow::compute::filter(v.as_ref(), &keep))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let indices = group_indices
        .iter()
        .zip(keep.values().iter())
        .filter(|(_, k)| *k)
        .map(|(g, _)| *g)
        .collect();
    Ok((values, indices))
}

fn emit(emit_to: EmitTo) -> Option<usize> {
    match emit_to {
        EmitTo::All => None,
        EmitTo::First(n) => Some(n),
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.update(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Groups::evaluate(self, emit(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Groups::state(self, emit(emit_to))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.merge(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        _values: &[ArrayRef],
        _opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        Err(DataFusionError::NotImplemented(format!(
            "Python aggregate {}: converting rows to partial states",
            self.name
        )))
    }

    fn size(&self) -> usize {
        Groups::size(self)
    }
}

/// One group: an aggregate without `GROUP BY`, or over a window frame.
struct OneGroup {
    groups: Groups,
}

impl std::fmt::Debug for OneGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneGroup")
            .field("name", &self.groups.name)
            .finish()
    }
}

impl OneGroup {
    fn zeros(n: usize) -> Vec<usize> {
        vec![0; n]
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        self.groups.update(values, &Self::zeros(n), None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let g = &mut self.groups;
        let result = match &mut g.state {
            State::Accumulators(a) => a.values(&g.runner, 1),
            State::Values(v) => {
                // The rows so far, kept: a window frame asks again.
                let mut copy = v.clone();
                copy.evaluate_each(&g.runner, Some(1))
            }
        };
        let (values, failures) = result.map_err(|e| g.failed(e, &[], &[]))?;
        g.log(&failures, &[], &[]);
        if values.is_empty() {
            return ScalarValue::try_from(values.data_type());
        }
        ScalarValue::try_from_array(&values, 0)
    }

    fn size(&self) -> usize {
        self.groups.size() + std::mem::size_of::<Self>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let g = &mut self.groups;
        // Kept: a window frame may ask for its value after this.
        let arrays = match &mut g.state {
            State::Accumulators(a) => a
                .flush(&g.runner)
                .and_then(|_| a.clone().take_states(&g.runner, Some(1)))
                .map(|s| vec![s]),
            State::Values(v) => v.clone().take_lists(Some(1)),
        };
        let arrays = arrays.map_err(|e| self.groups.failed(e, &[], &[]))?;
        arrays
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states.first().map_or(0, |s| s.len());
        self.groups.merge(states, &Self::zeros(n), 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        let g = &mut self.groups;
        let result = match &mut g.state {
            State::Accumulators(a) => a.retract(&g.runner, &Self::zeros(n), values),
            State::Values(v) => v.drop_first(n).map(|()| Vec::new()),
        };
        match result {
            Ok(failures) => {
                g.log(&failures, values, &Self::zeros(n));
                Ok(())
            }
            Err(e) => Err(g.failed(e, values, &Self::zeros(n))),
        }
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }
}
