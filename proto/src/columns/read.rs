//! Reading a column frame: [`Reader`], which checks every length against
//! what is left before it is used.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{make_array, ArrayRef};
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer};
use arrow_data::{ArrayData, ArrayDataBuilder};
use arrow_schema::{DataType, Field, FieldRef, Fields, TimeUnit};
use coil_ipc::ByteSource;

use super::{bad, bitmap_len, shape, Refs, Shape, MAX_NESTING, PLACED, SHELVED};
use crate::ProtoError;

/// Reads a frame front to back, checking every length against what is
/// left.
pub(super) struct Reader<'a, S: ?Sized> {
    src: &'a S,
    pub(super) at: usize,
    /// What the frame may refer to besides its bytes.
    refs: Refs<'a>,
}

impl<'a, S: ?Sized> Reader<'a, S> {
    pub(super) fn new(src: &'a S, refs: Refs<'a>) -> Self {
        Reader { src, at: 0, refs }
    }
}

impl<S: ByteSource + ?Sized> Reader<'_, S> {
    pub(super) fn left(&self) -> usize {
        self.src.len().saturating_sub(self.at)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut b = [0u8; N];
        self.src
            .read_at(self.at, &mut b)
            .map_err(|e| bad(format!("truncated: {e}")))?;
        self.at += N;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes().map_err(|e| e.to_string())?))
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    pub(super) fn body(&mut self) -> Result<(usize, Vec<ArrayRef>), ProtoError> {
        let rows = self.u32()? as usize;
        let n = self.u32()?;
        if n == SHELVED {
            return self.shelved(rows);
        }
        let n = n as usize;
        // Every column takes at least two bytes: a count beyond that is a
        // lie, refused before anything is allocated for it.
        if n > self.left() / 2 {
            return Err(bad(format!("{n} columns in {} bytes", self.left())));
        }
        let mut columns = Vec::with_capacity(n);
        for i in 0..n {
            let column = self
                .column(rows)
                .map_err(|e| bad(format!("column {i}: {e}")))?;
            columns.push(column);
        }
        Ok((rows, columns))
    }

    /// `len` bytes of values placed in the arena: the run the frame's
    /// offset names, claimed and read in place.
    fn placed(&mut self, len: usize) -> Result<Buffer, String> {
        let at = self.u64().map_err(|e| e.to_string())?;
        let (arena, half) = self
            .refs
            .arena
            .ok_or("values placed in an arena this frame's reader does not have")?;
        let claim = arena.claim(half, at, len).map_err(|e| e.to_string())?;
        Ok(crate::placed::buffer(claim))
    }

    /// A shelved body's columns, `rows` long each, off the shelf.
    fn shelved(&mut self, rows: usize) -> Result<(usize, Vec<ArrayRef>), ProtoError> {
        let key = self.u64()?;
        let shelf = self.refs.shelf.ok_or_else(|| {
            bad(
                "a shelved frame (columns left in this process) from a peer that cannot shelve"
                    .into(),
            )
        })?;
        let columns = shelf
            .take(key)
            .ok_or_else(|| bad(format!("no columns on the shelf under key {key}")))?;
        if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != rows) {
            return Err(bad(format!(
                "column {i}: {} rows, the batch {rows}",
                c.len()
            )));
        }
        Ok((rows, columns))
    }

    /// `len` bytes copied into a fresh, aligned buffer.
    fn buffer(&mut self, len: usize) -> Result<Buffer, String> {
        if len > self.left() {
            return Err(format!("a buffer of {len} bytes, {} left", self.left()));
        }
        let mut b = MutableBuffer::from_len_zeroed(len);
        self.src
            .read_at(self.at, b.as_slice_mut())
            .map_err(|e| e.to_string())?;
        self.at += len;
        Ok(b.into())
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        let b = self.buffer(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a name that is not UTF-8".into())
    }

    fn unit(&mut self) -> Result<TimeUnit, String> {
        Ok(match self.u8().map_err(|e| e.to_string())? {
            0 => TimeUnit::Second,
            1 => TimeUnit::Millisecond,
            2 => TimeUnit::Microsecond,
            3 => TimeUnit::Nanosecond,
            u => return Err(format!("time unit {u}")),
        })
    }

    fn field(&mut self, depth: usize) -> Result<FieldRef, String> {
        let name = self.string()?;
        let nullable = match self.u8().map_err(|e| e.to_string())? {
            0 => false,
            1 => true,
            n => return Err(format!("nullability {n}")),
        };
        let pairs = self.u16()? as usize;
        let mut metadata = HashMap::with_capacity(pairs.min(self.left() / 4));
        for _ in 0..pairs {
            let k = self.string()?;
            metadata.insert(k, self.string()?);
        }
        let t = self.data_type(depth + 1)?;
        Ok(Arc::new(
            Field::new(name, t, nullable).with_metadata(metadata),
        ))
    }

    pub(super) fn data_type(&mut self, depth: usize) -> Result<DataType, String> {
        if depth > MAX_NESTING {
            return Err(format!("types nested deeper than {MAX_NESTING}"));
        }
        let e = |e: ProtoError| e.to_string();
        Ok(match self.u8().map_err(e)? {
            0 => DataType::Null,
            1 => DataType::Boolean,
            2 => DataType::Int8,
            3 => DataType::Int16,
            4 => DataType::Int32,
            5 => DataType::Int64,
            6 => DataType::UInt8,
            7 => DataType::UInt16,
            8 => DataType::UInt32,
            9 => DataType::UInt64,
            10 => DataType::Float16,
            11 => DataType::Float32,
            12 => DataType::Float64,
            13 => DataType::Utf8,
            14 => DataType::LargeUtf8,
            15 => DataType::Binary,
            16 => DataType::LargeBinary,
            17 => DataType::Date32,
            18 => DataType::Date64,
            19 => match self.unit()? {
                u @ (TimeUnit::Second | TimeUnit::Millisecond) => DataType::Time32(u),
                u => return Err(format!("time32 in {u:?}")),
            },
            20 => match self.unit()? {
                u @ (TimeUnit::Microsecond | TimeUnit::Nanosecond) => DataType::Time64(u),
                u => return Err(format!("time64 in {u:?}")),
            },
            21 => DataType::Duration(self.unit()?),
            22 => {
                let unit = self.unit()?;
                let tz = match self.u8().map_err(e)? {
                    0 => None,
                    1 => Some(Arc::from(self.string()?)),
                    f => return Err(format!("time zone flag {f}")),
                };
                DataType::Timestamp(unit, tz)
            }
            code @ (23 | 24) => {
                let (p, s) = (self.u8().map_err(e)?, self.u8().map_err(e)? as i8);
                let max = if code == 23 { 38 } else { 76 };
                if p == 0 || p > max || s > p as i8 {
                    return Err(format!("decimal precision {p} scale {s}"));
                }
                if code == 23 {
                    DataType::Decimal128(p, s)
                } else {
                    DataType::Decimal256(p, s)
                }
            }
            25 => DataType::List(self.field(depth)?),
            26 => DataType::LargeList(self.field(depth)?),
            27 => {
                let size = i32::from_le_bytes(self.bytes().map_err(e)?);
                if size < 0 {
                    return Err(format!("a fixed-size list of {size}"));
                }
                DataType::FixedSizeList(self.field(depth)?, size)
            }
            28 => {
                let n = self.u16()? as usize;
                let fields = (0..n)
                    .map(|_| self.field(depth))
                    .collect::<Result<Vec<_>, _>>()?;
                DataType::Struct(Fields::from(fields))
            }
            29 => {
                let sorted = match self.u8().map_err(e)? {
                    0 => false,
                    1 => true,
                    f => return Err(format!("map sortedness {f}")),
                };
                DataType::Map(self.field(depth)?, sorted)
            }
            t => return Err(format!("type tag {t}")),
        })
    }

    fn column(&mut self, rows: usize) -> Result<ArrayRef, String> {
        let t = self.data_type(0)?;
        Ok(make_array(self.data(t, rows, 0)?))
    }

    /// A column of type `t` (read already), `rows` long, validated in full.
    fn data(&mut self, t: DataType, rows: usize, depth: usize) -> Result<ArrayData, String> {
        if depth > MAX_NESTING {
            return Err(format!("data nested deeper than {MAX_NESTING}"));
        }
        let flags = self.u8().map_err(|e| e.to_string())?;
        if flags & !(1 | PLACED) != 0 {
            return Err(format!("flags {flags}"));
        }
        let placed = flags & PLACED != 0;
        if placed && !matches!(shape(&t), Shape::Fixed(_)) {
            return Err(format!(
                "placed values of type {t}, which has no fixed width"
            ));
        }
        let nulls = if flags & 1 != 0 {
            let bits = BooleanBuffer::new(self.buffer(bitmap_len(rows))?, 0, rows);
            Some(NullBuffer::new(bits))
        } else {
            None
        };
        let mut buffers = Vec::new();
        let mut children = Vec::new();
        let offsets = |r: &mut Self, ow: usize| -> Result<Buffer, String> {
            let len = rows
                .checked_add(1)
                .and_then(|n| n.checked_mul(ow))
                .ok_or("too many rows")?;
            r.buffer(len)
        };
        let length = |r: &mut Self| -> Result<usize, String> {
            let n = r.u64().map_err(|e| e.to_string())?;
            usize::try_from(n).map_err(|_| "a length beyond memory".into())
        };
        let child_field = |t: &DataType| match t {
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::FixedSizeList(f, _)
            | DataType::Map(f, _) => Some(f.data_type().clone()),
            _ => None,
        };
        match shape(&t) {
            Shape::Nothing => {
                if nulls.is_some() {
                    return Err("a null column with a validity bitmap".into());
                }
            }
            Shape::Bits => buffers.push(self.buffer(bitmap_len(rows))?),
            Shape::Fixed(w) => {
                let len = rows.checked_mul(w).ok_or("too many rows")?;
                buffers.push(if placed {
                    self.placed(len)?
                } else {
                    self.buffer(len)?
                });
            }
            Shape::Bytes(ow) => {
                buffers.push(offsets(self, ow)?);
                let data_len = length(self)?;
                buffers.push(self.buffer(data_len)?);
            }
            Shape::Offsets(ow) => {
                buffers.push(offsets(self, ow)?);
                let child_rows = length(self)?;
                if child_rows > u32::MAX as usize {
                    return Err(format!("{child_rows} rows in a list's values"));
                }
                let ct = child_field(&t).expect("a list or map");
                children.push(self.data(ct, child_rows, depth + 1)?);
            }
            Shape::Repeat(size) => {
                let child_rows = rows.checked_mul(size).ok_or("too many rows")?;
                if child_rows > u32::MAX as usize {
                    return Err(format!("{child_rows} rows in a list's values"));
                }
                let ct = child_field(&t).expect("a fixed-size list");
                children.push(self.data(ct, child_rows, depth + 1)?);
            }
            Shape::Children => {
                let DataType::Struct(fields) = &t else {
                    unreachable!("only structs have children of their own length")
                };
                for f in fields.iter() {
                    children.push(self.data(f.data_type().clone(), rows, depth + 1)?);
                }
            }
        }
        ArrayDataBuilder::new(t)
            .len(rows)
            .nulls(nulls)
            .buffers(buffers)
            .child_data(children)
            .build()
            .map_err(|e| e.to_string())
    }
}
