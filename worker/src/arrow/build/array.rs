//! The finished array: a [`ResultColumn`]'s values as Arrow buffers.

use arrow_buffer::Buffer;
use arrow_data::ArrayDataBuilder;
use arrow_schema::DataType;

use super::{ResultColumn, Values};

impl ResultColumn {
    pub(super) fn into_data(self) -> Result<arrow_data::ArrayData, String> {
        let mut valid = self.valid;
        let len = valid.len();
        // A null array's values are all null without a bitmap.
        let nulls = match self.t {
            DataType::Null => None,
            _ => valid.finish(),
        };
        let mut buffers = Vec::new();
        let mut children = Vec::new();
        let offsets = |o: Vec<usize>, large: bool| -> Result<Buffer, String> {
            if large {
                Ok(Buffer::from_vec(
                    o.into_iter().map(|x| x as i64).collect::<Vec<_>>(),
                ))
            } else {
                let o = o
                    .into_iter()
                    .map(i32::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        "the results hold more than 2 GiB of values: declare a large_ type"
                            .to_string()
                    })?;
                Ok(Buffer::from_vec(o))
            }
        };
        let large = matches!(
            self.t,
            DataType::LargeUtf8 | DataType::LargeBinary | DataType::LargeList(_)
        );
        match self.values {
            Values::Null => {}
            Values::Bool(v) => buffers.push(arrow_buffer::BooleanBuffer::from(v).into_inner()),
            Values::I8(v) => buffers.push(Buffer::from_vec(v)),
            Values::I16(v) => buffers.push(Buffer::from_vec(v)),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => {
                buffers.push(Buffer::from_vec(v))
            }
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => buffers.push(Buffer::from_vec(v)),
            Values::U8(v) => buffers.push(Buffer::from_vec(v)),
            Values::U16(v) => buffers.push(Buffer::from_vec(v)),
            Values::U32(v) => buffers.push(Buffer::from_vec(v)),
            Values::U64(v) => buffers.push(Buffer::from_vec(v)),
            Values::F32(v) => buffers.push(Buffer::from_vec(v)),
            Values::F64(v) => buffers.push(Buffer::from_vec(v)),
            Values::Bytes {
                offsets: o, data, ..
            } => {
                buffers.push(offsets(o, large)?);
                buffers.push(Buffer::from_vec(data));
            }
            Values::Decimal128(_, _, v) => buffers.push(Buffer::from_vec(v)),
            Values::Decimal256(_, _, v) => buffers.push(Buffer::from_vec(v)),
            Values::List {
                offsets: o,
                fixed,
                child,
            } => {
                if fixed.is_none() {
                    buffers.push(offsets(o, large)?);
                }
                children.push(child.into_data()?);
            }
            Values::Struct(fields) => {
                for (_, c) in fields {
                    children.push(c.into_data()?);
                }
            }
            Values::Map {
                offsets: o,
                keys,
                values,
            } => {
                buffers.push(offsets(o, false)?);
                let DataType::Map(entries, _) = &self.t else {
                    unreachable!("a map's values are a map's")
                };
                let entries = ArrayDataBuilder::new(entries.data_type().clone())
                    .len(keys.len())
                    .child_data(vec![keys.into_data()?, values.into_data()?])
                    .build()
                    .map_err(|e| e.to_string())?;
                children.push(entries);
            }
        }
        ArrayDataBuilder::new(self.t)
            .len(len)
            .nulls(nulls)
            .buffers(buffers)
            .child_data(children)
            .build()
            .map_err(|e| e.to_string())
    }
}
