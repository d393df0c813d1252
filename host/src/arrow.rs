//! Arrow batches in, an Arrow array out: [`Runner::call_arrow`]. Columns
//! travel to the executors as column frames (whole buffers, see
//! `coil_proto::Columns`); results come back in the row codec and are
//! built into an array of the declared return type here, each checked to
//! fit.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, LargeBinaryArray, LargeStringArray, NullArray, RecordBatch, StringArray,
    UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::DataType;
use coil_ipc::Value;

use crate::stream::Scheduler;
use crate::{RunError, Runner, UdfKind};

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

/// `values` (rows `first..`) as an array of `declared`.
pub(crate) fn build(
    values: &[Value],
    declared: &DataType,
    first: u64,
) -> Result<ArrayRef, RunError> {
    // Each value through `fit` (`None`: it does not fit), nulls as nulls.
    fn column<'v, T>(
        values: &'v [Value],
        declared: &DataType,
        first: u64,
        fit: impl Fn(&'v Value) -> Option<T>,
    ) -> Result<Vec<Option<T>>, RunError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Null => Ok(None),
                v => fit(v).map(Some).ok_or_else(|| RunError::ResultType {
                    row: first + i as u64,
                    value: describe(v),
                    declared: declared.clone(),
                }),
            })
            .collect()
    }
    fn int(v: &Value) -> Option<i64> {
        match v {
            Value::Int(x) => Some(*x),
            _ => None,
        }
    }
    // An int is exact in a float up to 2^53: beyond, refused rather than
    // rounded.
    fn float(v: &Value) -> Option<f64> {
        match v {
            Value::Float(f) => Some(*f),
            Value::Int(x) if x.unsigned_abs() <= 1 << 53 => Some(*x as f64),
            _ => None,
        }
    }
    fn boolean(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn text(v: &Value) -> Option<&str> {
        match v {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn bytes(v: &Value) -> Option<&[u8]> {
        match v {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    macro_rules! ints {
        ($array:ty) => {
            Arc::new(<$array>::from(column(values, declared, first, |v| {
                int(v)?.try_into().ok()
            })?))
        };
    }
    Ok(match declared {
        DataType::Null => {
            column(values, declared, first, |_| None::<()>)?;
            Arc::new(NullArray::new(values.len()))
        }
        DataType::Int8 => ints!(Int8Array),
        DataType::Int16 => ints!(Int16Array),
        DataType::Int32 => ints!(Int32Array),
        DataType::Int64 => ints!(Int64Array),
        DataType::UInt8 => ints!(UInt8Array),
        DataType::UInt16 => ints!(UInt16Array),
        DataType::UInt32 => ints!(UInt32Array),
        DataType::UInt64 => ints!(UInt64Array),
        DataType::Boolean => Arc::new(BooleanArray::from(column(
            values, declared, first, boolean,
        )?)),
        DataType::Float64 => Arc::new(Float64Array::from(column(values, declared, first, float)?)),
        DataType::Float32 => Arc::new(Float32Array::from_iter(
            column(values, declared, first, float)?
                .into_iter()
                .map(|f| f.map(|f| f as f32)),
        )),
        DataType::Utf8 => Arc::new(StringArray::from_iter(column(
            values, declared, first, text,
        )?)),
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(column(
            values, declared, first, text,
        )?)),
        DataType::Binary => Arc::new(BinaryArray::from_iter(column(
            values, declared, first, bytes,
        )?)),
        DataType::LargeBinary => Arc::new(LargeBinaryArray::from_iter(column(
            values, declared, first, bytes,
        )?)),
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
        if !coil_worker::arrow_type_supported(&declared) {
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
        let mut values = Vec::with_capacity(batch.num_rows());
        Scheduler::new(self).run_batches(
            batch.num_rows(),
            |s, rows| s.send_columns(rows.len(), batch.slice(rows.start, rows.len()).columns()),
            |v| {
                values.push(v?);
                Ok(())
            },
        )?;
        build(&values, &declared, 0)
    }
}
