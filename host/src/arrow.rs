//! Arrow batches in, an Arrow array out: [`Runner::call_arrow`]. Columns
//! travel to the executors as column frames (whole buffers, see
//! `coil_proto::Columns`); results come back in the row codec and are
//! built into an array of the declared return type here, each checked to
//! fit.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, LargeBinaryBuilder,
    LargeStringBuilder, PrimitiveBuilder, StringBuilder,
};
use arrow_array::types::*;
use arrow_array::{ArrayRef, ArrowPrimitiveType, NullArray, RecordBatch};
use arrow_schema::DataType;
use coil_ipc::Value;

use crate::stream::Scheduler;
use crate::{RunError, Runner, UdfKind};

/// Whether results can be built into an array of `t`.
fn result_type_supported(t: &DataType) -> bool {
    coil_worker::arrow_type_supported(t)
}

/// A value's kind, and the value itself when it is short, for errors.
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "None".into(),
        Value::Bool(b) => return format!("bool {}", if *b { "True" } else { "False" }),
        Value::Int(i) => return format!("int {i}"),
        Value::Float(f) => return format!("float {f}"),
        Value::Str(s) if s.len() <= 40 => return format!("str {s:?}"),
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
    };
    kind.into()
}

fn misfit(row: u64, v: &Value, declared: &DataType) -> RunError {
    RunError::ResultType {
        row,
        value: describe(v),
        declared: declared.clone(),
    }
}

/// `values` (rows `first..`) as an array of `declared`.
pub(crate) fn build(
    values: &[Value],
    declared: &DataType,
    first: u64,
) -> Result<ArrayRef, RunError> {
    let row = |i: usize| first + i as u64;
    fn ints<T>(values: &[Value], declared: &DataType, first: u64) -> Result<ArrayRef, RunError>
    where
        T: ArrowPrimitiveType,
        T::Native: TryFrom<i64>,
    {
        let mut b = PrimitiveBuilder::<T>::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match v {
                Value::Null => b.append_null(),
                Value::Int(x) => b.append_value(
                    T::Native::try_from(*x).map_err(|_| misfit(first + i as u64, v, declared))?,
                ),
                v => return Err(misfit(first + i as u64, v, declared)),
            }
        }
        Ok(Arc::new(b.finish()))
    }
    Ok(match declared {
        DataType::Null => match values.iter().position(|v| *v != Value::Null) {
            Some(i) => return Err(misfit(row(i), &values[i], declared)),
            None => Arc::new(NullArray::new(values.len())),
        },
        DataType::Int8 => ints::<Int8Type>(values, declared, first)?,
        DataType::Int16 => ints::<Int16Type>(values, declared, first)?,
        DataType::Int32 => ints::<Int32Type>(values, declared, first)?,
        DataType::Int64 => ints::<Int64Type>(values, declared, first)?,
        DataType::UInt8 => ints::<UInt8Type>(values, declared, first)?,
        DataType::UInt16 => ints::<UInt16Type>(values, declared, first)?,
        DataType::UInt32 => ints::<UInt32Type>(values, declared, first)?,
        DataType::UInt64 => ints::<UInt64Type>(values, declared, first)?,
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                match v {
                    Value::Null => b.append_null(),
                    Value::Bool(x) => b.append_value(*x),
                    v => return Err(misfit(row(i), v, declared)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Float32 | DataType::Float64 => {
            let float = |i: usize, v: &Value| match v {
                Value::Float(f) => Ok(Some(*f)),
                // An int is exact in a float up to 2^53: beyond, refused
                // rather than rounded.
                Value::Int(x) if x.unsigned_abs() <= 1 << 53 => Ok(Some(*x as f64)),
                Value::Null => Ok(None),
                v => Err(misfit(row(i), v, declared)),
            };
            if *declared == DataType::Float64 {
                let mut b = Float64Builder::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    b.append_option(float(i, v)?);
                }
                Arc::new(b.finish())
            } else {
                let mut b = Float32Builder::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    b.append_option(float(i, v)?.map(|f| f as f32));
                }
                Arc::new(b.finish())
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 => {
            let text = |i: usize, v: &'_ Value| -> Result<Option<String>, RunError> {
                match v {
                    Value::Str(s) => Ok(Some(s.clone())),
                    Value::Null => Ok(None),
                    v => Err(misfit(row(i), v, declared)),
                }
            };
            if *declared == DataType::Utf8 {
                let mut b = StringBuilder::with_capacity(values.len(), 0);
                for (i, v) in values.iter().enumerate() {
                    b.append_option(text(i, v)?);
                }
                Arc::new(b.finish())
            } else {
                let mut b = LargeStringBuilder::with_capacity(values.len(), 0);
                for (i, v) in values.iter().enumerate() {
                    b.append_option(text(i, v)?);
                }
                Arc::new(b.finish())
            }
        }
        DataType::Binary | DataType::LargeBinary => {
            let bytes = |i: usize, v: &'_ Value| -> Result<Option<Vec<u8>>, RunError> {
                match v {
                    Value::Bytes(b) => Ok(Some(b.clone())),
                    Value::Null => Ok(None),
                    v => Err(misfit(row(i), v, declared)),
                }
            };
            if *declared == DataType::Binary {
                let mut b = BinaryBuilder::with_capacity(values.len(), 0);
                for (i, v) in values.iter().enumerate() {
                    b.append_option(bytes(i, v)?);
                }
                Arc::new(b.finish())
            } else {
                let mut b = LargeBinaryBuilder::with_capacity(values.len(), 0);
                for (i, v) in values.iter().enumerate() {
                    b.append_option(bytes(i, v)?);
                }
                Arc::new(b.finish())
            }
        }
        t => {
            return Err(RunError::Arrow(format!(
                "the return type {t} is not supported yet"
            )))
        }
    })
}

impl Runner {
    /// Runs a scalar or vectorized UDF over an Arrow batch (one column per
    /// argument) and returns its results as one array of the type declared
    /// with [`UdfSpec::returns`](crate::UdfSpec::returns), in row order.
    /// The columns travel to the executors as whole buffers; each row's
    /// arguments reach a scalar UDF as Python objects (`None` for a null),
    /// a vectorized UDF gets each column as its annotations ask.
    ///
    /// Types today, in and out: null, bool, int8–64, uint8–64, float32/64,
    /// utf8, large_utf8, binary, large_binary.
    ///
    /// # Errors
    ///
    /// [`RunError::UnsupportedColumn`] naming the column and its type;
    /// [`RunError::Arrow`] without a supported return type, or for a table
    /// UDF; [`RunError::ResultType`] naming the row, what the UDF returned
    /// and the declared type; and every error of [`Runner::call`].
    pub fn call_arrow(&self, batch: &RecordBatch) -> Result<ArrayRef, RunError> {
        let declared = self.spec().returns.clone().ok_or_else(|| {
            RunError::Arrow("declare the UDF's return type with UdfSpec::returns".into())
        })?;
        if !result_type_supported(&declared) {
            return Err(RunError::Arrow(format!(
                "the return type {declared} is not supported yet"
            )));
        }
        if self.spec().kind == UdfKind::Table {
            return Err(RunError::Arrow(
                "table UDFs run over rows for now (Runner::call)".into(),
            ));
        }
        for (column, c) in batch.columns().iter().enumerate() {
            if !coil_worker::arrow_type_supported(c.data_type()) {
                return Err(RunError::UnsupportedColumn {
                    column,
                    data_type: c.data_type().clone(),
                });
            }
        }
        let mut scheduler = Scheduler::new(self);
        let mut values = Vec::with_capacity(batch.num_rows());
        let mut at = 0;
        while at < batch.num_rows() {
            let n = scheduler.batch_size().min(batch.num_rows() - at);
            scheduler.send_columns(n, batch.slice(at, n).columns());
            at += n;
            while let Some(v) = scheduler.take_ready() {
                values.push(v?);
            }
        }
        while let Some(v) = scheduler.pull_next() {
            values.push(v?);
        }
        build(&values, &declared, 0)
    }
}
