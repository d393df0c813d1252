//! A Python window function as a DataFusion window function (UDWF).
//!
//! Two shapes, as the function's return annotation says:
//!
//! - over a partition (`-> pd.Series`, `-> list[float]`: a vectorized
//!   UDF): called once per partition with the partition's columns, in the
//!   window's `ORDER BY` order, returning one value per row;
//! - over frames (`-> float`: a vectorized aggregate): called once per row
//!   with the values of its `ROWS`/`RANGE` frame. DataFusion asks for one
//!   frame at a time; the evaluator answers from frames it asked Python for
//!   ahead, many per message: it guesses the next frames by how the last
//!   two moved (exact for `ROWS` frames and for growing frames), and a
//!   wrong guess only costs another message, never a wrong value (answers
//!   are looked up by the frame's exact bounds).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{Field, FieldRef, Schema};
use coil_host::{OnError, RunError, Runner, UdfKind};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, WindowUDF, WindowUDFImpl};

use crate::udf::{PythonFunction, SharedRunner};
use crate::{Error, PythonOptions};

/// The most frames asked for in one message.
const FRAMES_AHEAD: usize = 1024;

/// The most values the frames of one message hold together.
const VALUES_AHEAD: usize = 1 << 20;

/// A Python window function as a DataFusion [`WindowUDFImpl`].
pub struct PythonUdwf {
    function: PythonFunction,
    signature: Signature,
    runner: SharedRunner,
    options: PythonOptions,
}

crate::by_function!(PythonUdwf);

impl PythonUdwf {
    /// The window function for `function` (of kind
    /// [`UdfKind::Vectorized`]: over a partition, or
    /// [`UdfKind::VectorizedAggregate`]: over frames) under `options`, with
    /// `runner` if one is started for it.
    pub fn new(function: PythonFunction, runner: Option<Runner>, options: PythonOptions) -> Self {
        PythonUdwf::sharing(function, SharedRunner::with(runner), options)
    }

    /// The window function for `function`, keeping its runner in `runner`.
    pub fn sharing(function: PythonFunction, runner: SharedRunner, options: PythonOptions) -> Self {
        PythonUdwf {
            signature: function.signature(),
            function,
            runner,
            options,
        }
    }

    /// What it is.
    pub fn function(&self) -> &PythonFunction {
        &self.function
    }

    /// The `python.*` options it runs with.
    pub fn options(&self) -> &PythonOptions {
        &self.options
    }

    /// The Python window function `udwf` is, if it is one.
    pub fn of(udwf: &WindowUDF) -> Option<&PythonUdwf> {
        let inner: &dyn std::any::Any = udwf.inner().as_ref();
        inner.downcast_ref::<PythonUdwf>()
    }

    /// As a DataFusion [`WindowUDF`].
    pub fn into_window_udf(self) -> WindowUDF {
        WindowUDF::new_from_impl(self)
    }
}

impl WindowUDFImpl for PythonUdwf {
    fn name(&self) -> &str {
        &self.function.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let over_frames = match self.function.spec.kind {
            UdfKind::Vectorized => false,
            UdfKind::VectorizedAggregate => true,
            k => {
                return Err(DataFusionError::Plan(format!(
                    "Python function {} is a {k} function, not a window function",
                    self.function.name
                )))
            }
        };
        // A partition goes whole, in one call: batches are not cut.
        let runner = if over_frames {
            self.runner.get(&self.function, &self.options)?
        } else {
            let mut config = self.options.config().clone();
            config
                .set(coil_host::BUNDLE_SIZE, &u32::MAX.to_string())
                .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
            self.runner
                .get(&self.function, &self.options.with_config(config))?
        };
        Ok(Box::new(Evaluator {
            name: self.function.name.clone(),
            runner,
            over_frames,
            arguments: args.input_fields().len(),
            values: None,
            answers: HashMap::new(),
            last: Vec::new(),
        }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            args.name(),
            self.function.returns.clone(),
            true,
        )))
    }
}

/// One partition's evaluation.
#[derive(Debug)]
struct Evaluator {
    name: String,
    runner: Arc<Runner>,
    over_frames: bool,
    /// How many of the columns DataFusion passes are the function's
    /// arguments (the window's ORDER BY columns may follow).
    arguments: usize,
    /// The partition the answers are for: its first column, held (so its
    /// address cannot be another array's while the answers are kept).
    values: Option<ArrayRef>,
    /// Each frame's value, by its bounds.
    answers: HashMap<(usize, usize), ScalarValue>,
    /// The last two frames asked for.
    last: Vec<Range<usize>>,
}

impl Evaluator {
    fn failed(&self, e: RunError, row: Option<usize>) -> DataFusionError {
        Error::Udf {
            name: self.name.clone(),
            row: row.map(|r| format!("the frame of row {r} of its partition")),
            error: Box::new(e),
        }
        .into()
    }

    /// The frames to ask for with `range`: it, and the ones after it as
    /// the last frames moved.
    fn ahead(&self, range: &Range<usize>, rows: usize) -> Vec<Range<usize>> {
        let (ds, de) = match self.last.as_slice() {
            [.., a, b] => (
                b.start as isize - a.start as isize,
                b.end as isize - a.end as isize,
            ),
            _ => (1, 1),
        };
        let mut out = vec![range.clone()];
        let mut values = range.len();
        let (mut s, mut e) = (range.start as isize, range.end as isize);
        while out.len() < FRAMES_AHEAD && values < VALUES_AHEAD && (ds, de) != (0, 0) {
            s += ds;
            e += de;
            if s < 0 || e < s || e as usize > rows {
                break;
            }
            let r = s as usize..e as usize;
            if self.answers.contains_key(&(r.start, r.end)) {
                break;
            }
            values += r.len();
            out.push(r);
        }
        out
    }

    /// Asks Python for the values of `frames` of `values`, and keeps them.
    fn ask(&mut self, values: &[ArrayRef], frames: &[Range<usize>]) -> Result<()> {
        let mut offsets = Vec::with_capacity(frames.len() + 1);
        let mut rows: Vec<u32> = Vec::new();
        offsets.push(0i32);
        for f in frames {
            rows.extend(f.start as u32..f.end as u32);
            offsets.push(rows.len() as i32);
        }
        let take = UInt32Array::from(rows);
        let mut lists: Vec<ArrayRef> = Vec::with_capacity(values.len());
        for v in values {
            let taken = datafusion::arrow::compute::take(v.as_ref(), &take, None)?;
            let field = Arc::new(Field::new("item", taken.data_type().clone(), true));
            lists.push(Arc::new(datafusion::arrow::array::ListArray::try_new(
                field,
                OffsetBuffer::new(offsets.clone().into()),
                taken,
                None,
            )?));
        }
        let (answers, failures) = coil_host::evaluate_lists(&self.runner, lists, frames.len())
            .map_err(|e| self.failed(e, None))?;
        for f in &failures {
            crate::log_failure(&self.name, || {
                format!(
                    "Python window function {} failed on a frame (its value is NULL): {}",
                    self.name, f.error
                )
            });
        }
        for (i, f) in frames.iter().enumerate() {
            self.answers
                .insert((f.start, f.end), ScalarValue::try_from_array(&answers, i)?);
        }
        Ok(())
    }
}

impl PartitionEvaluator for Evaluator {
    fn uses_window_frame(&self) -> bool {
        self.over_frames
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let values = &values[..self.arguments.min(values.len())];
        let rows = values.first().map_or(0, |v| v.len());
        // The partition's arrays, by identity: DataFusion passes the same
        // ones for every row of a partition.
        let same = match (&self.values, values.first()) {
            (Some(kept), Some(v)) => Arc::ptr_eq(kept, v),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.values = values.first().cloned();
            self.answers.clear();
            self.last.clear();
        }
        let key = (range.start, range.end);
        if !self.answers.contains_key(&key) {
            let frames = self.ahead(range, rows);
            self.ask(values, &frames)?;
        }
        self.last.push(range.clone());
        if self.last.len() > 2 {
            self.last.remove(0);
        }
        self.answers
            .get(&key)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("no answer for frame {range:?}")))
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let values = &values[..self.arguments.min(values.len())];
        let fields: Vec<Field> = values
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("arg{i}"), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            values.to_vec(),
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(num_rows)),
        )?;
        let result = if self.runner.config().on_error() == OnError::Fail {
            self.runner.call_arrow(&batch)
        } else {
            self.runner.call_arrow_each(&batch).map(|(a, failures)| {
                for f in &failures {
                    crate::log_failure(&self.name, || {
                        format!(
                            "Python window function {} failed on row {} of a partition (its value is NULL): {}",
                            self.name, f.row, f.error
                        )
                    });
                }
                a
            })
        };
        let out = result.map_err(|e| {
            let row = e.row().map(|r| r as usize);
            self.failed(e, row)
        })?;
        if out.len() != num_rows {
            return Err(DataFusionError::Execution(format!(
                "Python window function {} answered {} values for a partition of {num_rows} rows",
                self.name,
                out.len()
            )));
        }
        Ok(out)
    }
}
