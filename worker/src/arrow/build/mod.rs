//! Python → Arrow: the UDF's results built into one array of the declared
//! type, each value checked to fit, never converted into a different
//! value. This file holds the column and its bookkeeping (marks, nulls,
//! whole arrays); `push.rs` the rules for each type's values; `array.rs`
//! the finished array.

mod array;
mod push;

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{i256, NullBufferBuilder};
use arrow_schema::{DataType, TimeUnit};
use pyo3::prelude::*;

use super::{py_err, PyKit};

/// The UDF's results, built into one array of the declared type; each
/// value is checked to fit, never converted into a different value.
pub(crate) struct ResultColumn {
    /// The whole column at once (a vectorized UDF's Arrow result of the
    /// declared type), instead of values pushed.
    whole: Option<ArrayRef>,
    t: DataType,
    /// Which values are valid: no bitmap at all until a null is pushed
    /// (a whole buffer taken at once costs nothing per row).
    valid: NullBufferBuilder,
    nullable: bool,
    values: Values,
}

enum Values {
    Null,
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Strings (`text`) or binary; offsets from 0, one per value plus one.
    Bytes {
        text: bool,
        offsets: Vec<usize>,
        data: Vec<u8>,
    },
    Date32(Vec<i32>),
    Date64(Vec<i64>),
    Time32(TimeUnit, Vec<i32>),
    Time64(TimeUnit, Vec<i64>),
    Timestamp {
        unit: TimeUnit,
        aware: bool,
        ticks: Vec<i64>,
    },
    Duration(TimeUnit, Vec<i64>),
    Decimal128(u8, i8, Vec<i128>),
    Decimal256(u8, i8, Vec<i256>),
    List {
        offsets: Vec<usize>,
        /// The size of a fixed-size list.
        fixed: Option<usize>,
        child: Box<ResultColumn>,
    },
    Struct(Vec<(String, ResultColumn)>),
    Map {
        offsets: Vec<usize>,
        keys: Box<ResultColumn>,
        values: Box<ResultColumn>,
    },
}

/// Where a [`ResultColumn`] stood: to go back to when a value fails half
/// way into a nested one.
#[derive(Clone, Copy)]
pub(crate) struct Mark(usize);

impl ResultColumn {
    /// An empty column of type `t`, or why results cannot be built as it.
    pub(crate) fn new(t: &DataType) -> Result<ResultColumn, String> {
        ResultColumn::with(t, true)
    }

    fn with(t: &DataType, nullable: bool) -> Result<ResultColumn, String> {
        use DataType as T;
        let child = |f: &arrow_schema::FieldRef| -> Result<Box<ResultColumn>, String> {
            Ok(Box::new(ResultColumn::with(
                f.data_type(),
                f.is_nullable(),
            )?))
        };
        let values = match t {
            T::Null => Values::Null,
            T::Boolean => Values::Bool(Vec::new()),
            T::Int8 => Values::I8(Vec::new()),
            T::Int16 => Values::I16(Vec::new()),
            T::Int32 => Values::I32(Vec::new()),
            T::Int64 => Values::I64(Vec::new()),
            T::UInt8 => Values::U8(Vec::new()),
            T::UInt16 => Values::U16(Vec::new()),
            T::UInt32 => Values::U32(Vec::new()),
            T::UInt64 => Values::U64(Vec::new()),
            T::Float32 => Values::F32(Vec::new()),
            T::Float64 => Values::F64(Vec::new()),
            T::Utf8 | T::LargeUtf8 | T::Binary | T::LargeBinary => Values::Bytes {
                text: matches!(t, T::Utf8 | T::LargeUtf8),
                offsets: vec![0],
                data: Vec::new(),
            },
            T::Date32 => Values::Date32(Vec::new()),
            T::Date64 => Values::Date64(Vec::new()),
            T::Time32(u) => Values::Time32(*u, Vec::new()),
            T::Time64(u) => Values::Time64(*u, Vec::new()),
            T::Timestamp(u, tz) => Values::Timestamp {
                unit: *u,
                aware: tz.is_some(),
                ticks: Vec::new(),
            },
            T::Duration(u) => Values::Duration(*u, Vec::new()),
            T::Decimal128(p, s) => Values::Decimal128(*p, *s, Vec::new()),
            T::Decimal256(p, s) => Values::Decimal256(*p, *s, Vec::new()),
            T::List(f) | T::LargeList(f) => Values::List {
                offsets: vec![0],
                fixed: None,
                child: child(f)?,
            },
            T::FixedSizeList(f, size) => Values::List {
                offsets: vec![0],
                fixed: Some((*size).max(0) as usize),
                child: child(f)?,
            },
            T::Struct(fields) => Values::Struct(
                fields
                    .iter()
                    .map(|f| Ok((f.name().clone(), *child(f)?)))
                    .collect::<Result<_, String>>()?,
            ),
            T::Map(f, _) => match f.data_type() {
                T::Struct(kv) if kv.len() == 2 => Values::Map {
                    offsets: vec![0],
                    keys: child(&kv[0])?,
                    values: child(&kv[1])?,
                },
                other => return Err(format!("a map whose entries are {other}")),
            },
            t => return Err(format!("results of type {t} are not supported")),
        };
        Ok(ResultColumn {
            whole: None,
            t: t.clone(),
            valid: NullBufferBuilder::new(0),
            nullable,
            values,
        })
    }

    /// Makes room for `n` more values (of a flat type: nested types grow
    /// as they go).
    pub(crate) fn reserve(&mut self, n: usize) {
        match &mut self.values {
            Values::I64(v) => v.reserve(n),
            Values::F64(v) => v.reserve(n),
            Values::I32(v) => v.reserve(n),
            Values::Bytes { offsets, .. } => offsets.reserve(n),
            _ => {}
        }
    }

    /// The declared type the results are built as.
    pub(crate) fn data_type(&self) -> &DataType {
        &self.t
    }

    /// Values pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.valid.len()
    }

    /// Where the column stands now.
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.len())
    }

    /// Drops every value pushed since `mark`.
    pub(crate) fn rewind(&mut self, mark: Mark) {
        // Also when this column itself has no more than `n` values: a
        // nested value that failed half way may have left its children
        // longer (each truncation is a no-op when already short enough).
        let n = mark.0;
        self.valid.truncate(n);
        match &mut self.values {
            Values::Null => {}
            Values::Bool(v) => v.truncate(n),
            Values::I8(v) => v.truncate(n),
            Values::I16(v) => v.truncate(n),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => v.truncate(n),
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => v.truncate(n),
            Values::U8(v) => v.truncate(n),
            Values::U16(v) => v.truncate(n),
            Values::U32(v) => v.truncate(n),
            Values::U64(v) => v.truncate(n),
            Values::F32(v) => v.truncate(n),
            Values::F64(v) => v.truncate(n),
            Values::Bytes { offsets, data, .. } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    data.truncate(end);
                }
            }
            Values::Decimal128(_, _, v) => v.truncate(n),
            Values::Decimal256(_, _, v) => v.truncate(n),
            Values::List { offsets, child, .. } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    child.rewind(Mark(end));
                }
            }
            Values::Struct(children) => {
                for (_, c) in children {
                    c.rewind(Mark(n));
                }
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    keys.rewind(Mark(end));
                    values.rewind(Mark(end));
                }
            }
        }
    }

    /// Appends a null (a failed row's place).
    pub(crate) fn push_null(&mut self) {
        self.valid.append_null();
        match &mut self.values {
            Values::Null => {}
            Values::Bool(v) => v.push(false),
            Values::I8(v) => v.push(0),
            Values::I16(v) => v.push(0),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => v.push(0),
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => v.push(0),
            Values::U8(v) => v.push(0),
            Values::U16(v) => v.push(0),
            Values::U32(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Bytes { offsets, data, .. } => offsets.push(data.len()),
            Values::Decimal128(_, _, v) => v.push(0),
            Values::Decimal256(_, _, v) => v.push(i256::ZERO),
            Values::List {
                offsets,
                fixed,
                child,
            } => {
                // A fixed-size list's null still spans `size` child values.
                if let Some(size) = fixed {
                    for _ in 0..*size {
                        child.push_null();
                    }
                }
                offsets.push(child.len());
            }
            Values::Struct(children) => {
                for (_, c) in children {
                    c.push_null();
                }
            }
            Values::Map { offsets, keys, .. } => offsets.push(keys.len()),
        }
    }

    /// Appends `obj`, or says why it does not fit (the column is then as
    /// it was).
    pub(crate) fn push(
        &mut self,
        kit: Option<&PyKit>,
        obj: &Bound<'_, PyAny>,
    ) -> Result<(), String> {
        let mark = self.mark();
        let pushed = self.push_inner(kit, obj);
        if pushed.is_err() {
            self.rewind(mark);
        }
        pushed
    }

    fn push_inner(&mut self, kit: Option<&PyKit>, obj: &Bound<'_, PyAny>) -> Result<(), String> {
        match self.push_value(kit, obj) {
            // numpy scalars as the Python values they hold (looked at only
            // when the value does not fit as it is: the common types go
            // first).
            Err(_) if crate::convert::is_numpy_scalar(obj) => {
                let item = obj.call_method0("item").map_err(py_err)?;
                self.push_value(kit, &item)
            }
            pushed => pushed,
        }
    }

    /// Appends every value of a numpy array whose dtype is this column's
    /// (a whole buffer copied at once); `false`, and nothing appended, for
    /// any other object.
    pub(crate) fn extend_from_buffer(&mut self, obj: &Bound<'_, PyAny>) -> bool {
        use pyo3::buffer::PyBuffer;
        fn copy<T: pyo3::buffer::Element + Copy>(
            obj: &Bound<'_, PyAny>,
            v: &mut Vec<T>,
        ) -> Option<usize> {
            let buf = PyBuffer::<T>::get(obj).ok()?;
            if buf.dimensions() != 1 || !buf.is_c_contiguous() {
                return None;
            }
            let got = buf.to_vec(obj.py()).ok()?;
            let n = got.len();
            // One copy out of Python: the vector itself when nothing was
            // pushed before (the common case: a whole batch's result).
            if v.is_empty() {
                *v = got;
            } else {
                v.extend_from_slice(&got);
            }
            Some(n)
        }
        let n = match &mut self.values {
            Values::I8(v) => copy(obj, v),
            Values::I16(v) => copy(obj, v),
            Values::I32(v) => copy(obj, v),
            Values::I64(v) => copy(obj, v),
            Values::U8(v) => copy(obj, v),
            Values::U16(v) => copy(obj, v),
            Values::U32(v) => copy(obj, v),
            Values::U64(v) => copy(obj, v),
            Values::F32(v) => copy(obj, v),
            Values::F64(v) => copy(obj, v),
            _ => None,
        };
        match n {
            Some(n) => {
                self.valid.append_n_non_nulls(n);
                true
            }
            None => false,
        }
    }

    /// Takes `a` as the whole column, if nothing was pushed yet and it is
    /// of the declared type; `false` (and nothing taken) otherwise.
    /// Names of nested fields do not count (pyarrow names a map's fields
    /// `key` and `value`, arrow-rs `keys` and `values`): the array takes
    /// the declared type's.
    pub(crate) fn take_whole(&mut self, a: ArrayRef) -> bool {
        if self.len() != 0 || self.whole.is_some() || !a.data_type().equals_datatype(&self.t) {
            return false;
        }
        let a = if a.data_type() == &self.t {
            a
        } else {
            match retyped(a.to_data(), &self.t) {
                Ok(data) => make_array(data),
                Err(_) => return false,
            }
        };
        self.valid.append_n_non_nulls(a.len());
        self.whole = Some(a);
        true
    }

    /// The array, validated.
    ///
    /// # Errors
    ///
    /// A value too large for the declared type's offsets, or an array
    /// that does not validate.
    pub(crate) fn finish(mut self) -> Result<ArrayRef, String> {
        if let Some(a) = self.whole.take() {
            return Ok(a);
        }
        Ok(make_array(self.into_data()?))
    }
}

/// `data` as `t`, a type equal to its own but for nested fields' names
/// (and metadata): the same buffers, children retyped to `t`'s fields.
fn retyped(
    data: arrow_data::ArrayData,
    t: &DataType,
) -> Result<arrow_data::ArrayData, arrow_schema::ArrowError> {
    let fields = coil_proto::child_types(t);
    let children = data
        .child_data()
        .iter()
        .zip(fields.iter().chain(std::iter::repeat(&DataType::Null)))
        .map(|(c, ft)| {
            if fields.is_empty() {
                Ok(c.clone())
            } else {
                retyped(c.clone(), ft)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    data.into_builder()
        .data_type(t.clone())
        .child_data(children)
        .build()
}

#[cfg(test)]
mod tests;
