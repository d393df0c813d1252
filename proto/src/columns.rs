//! Column frames: Arrow arrays through the rings, whole buffers at a time.
//!
//! A frame holds a batch's columns, each as its Arrow buffers copied in one
//! piece (fixed-width values, validity bitmaps, offsets and string or
//! binary data), never value by value. Why coil's own frames and not Arrow
//! IPC: a column here is a type tag and its buffers' bytes with implied
//! lengths (only variable-size data carries its length), which costs
//! nothing to write and little to check, and needs no flatbuffers schema
//! message per batch; the receiving side rebuilds each array and arrow-rs
//! validates it in full (`ArrayDataBuilder::build`: offsets in bounds and
//! ascending, UTF-8, bitmaps and buffers long enough) before anything reads
//! it. The peer is untrusted: every length is checked against what is left
//! before it is used, and a malformed frame is a [`ProtoError`], never a
//! panic or an out-of-bounds read.
//!
//! Layout, little-endian:
//!
//! ```text
//! rows: u32, columns: u32, then per column:
//!   type (see `put_type`), flags: u8 (bit 0: a validity bitmap follows),
//!   [validity: ceil(rows / 8) bytes],
//!   fixed-width types: rows × width bytes (boolean: ceil(rows / 8) bytes),
//!   utf8 / binary: (rows + 1) × 4 bytes of offsets, data length: u64, data,
//!   large_utf8 / large_binary: (rows + 1) × 8 bytes of offsets, u64, data,
//!   null: nothing.
//! ```

use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer};
use arrow_data::ArrayDataBuilder;
use arrow_schema::{DataType, TimeUnit};
use coil_ipc::ByteSource;

use crate::ProtoError;

/// A column that cannot travel in a column frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// Its type has no column frame encoding (yet).
    #[error("column {column}: type {data_type} is not supported")]
    Unsupported {
        /// The column's index.
        column: usize,
        /// Its type.
        data_type: DataType,
    },
    /// A column not as long as the batch.
    #[error("column {column} has {len} rows, the batch {rows}")]
    Length {
        /// The column's index.
        column: usize,
        /// Its rows.
        len: usize,
        /// The batch's rows.
        rows: usize,
    },
    /// More rows or columns than a frame counts.
    #[error("{0} rows or columns are more than a column frame holds")]
    TooMany(usize),
}

/// Column frames: [`Columns::encode`] and [`Columns::decode`].
#[derive(Debug)]
pub struct Columns;

fn unit_code(u: &TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

/// Appends `t`'s tag and parameters; `None` for a type with no encoding.
fn put_type(t: &DataType, out: &mut Vec<u8>) -> Option<()> {
    let simple = match t {
        DataType::Null => 0,
        DataType::Boolean => 1,
        DataType::Int8 => 2,
        DataType::Int16 => 3,
        DataType::Int32 => 4,
        DataType::Int64 => 5,
        DataType::UInt8 => 6,
        DataType::UInt16 => 7,
        DataType::UInt32 => 8,
        DataType::UInt64 => 9,
        DataType::Float16 => 10,
        DataType::Float32 => 11,
        DataType::Float64 => 12,
        DataType::Utf8 => 13,
        DataType::LargeUtf8 => 14,
        DataType::Binary => 15,
        DataType::LargeBinary => 16,
        DataType::Date32 => 17,
        DataType::Date64 => 18,
        _ => 255,
    };
    if simple != 255 {
        out.push(simple);
        return Some(());
    }
    match t {
        DataType::Time32(u) => out.extend([19, unit_code(u)]),
        DataType::Time64(u) => out.extend([20, unit_code(u)]),
        DataType::Duration(u) => out.extend([21, unit_code(u)]),
        DataType::Timestamp(u, tz) => {
            out.extend([22, unit_code(u)]);
            match tz {
                None => out.push(0),
                Some(tz) => {
                    let len = u16::try_from(tz.len()).ok()?;
                    out.push(1);
                    out.extend(len.to_le_bytes());
                    out.extend(tz.as_bytes());
                }
            }
        }
        DataType::Decimal128(p, s) => out.extend([23, *p, *s as u8]),
        DataType::Decimal256(p, s) => out.extend([24, *p, *s as u8]),
        _ => return None,
    }
    Some(())
}

/// Bytes of a bitmap of `rows` bits.
fn bitmap_len(rows: usize) -> usize {
    rows.div_ceil(8)
}

/// Bytes per value of a fixed-width type (0 for boolean and null, whose
/// values are bits or nothing; `None` for variable-size types).
fn width(t: &DataType) -> Option<usize> {
    match t {
        DataType::Null | DataType::Boolean => Some(0),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => None,
        t => t.primitive_width(),
    }
}

/// The byte width of a variable-size type's offsets.
fn offset_width(t: &DataType) -> usize {
    match t {
        DataType::LargeUtf8 | DataType::LargeBinary => 8,
        _ => 4,
    }
}

impl Columns {
    /// Appends batch `seq`'s `columns`, each `rows` long, to `out` (a
    /// batch without columns still has rows: a UDF without arguments).
    ///
    /// # Errors
    ///
    /// [`ColumnError`]: a type without an encoding, a column of another
    /// length, more than `u32::MAX` rows or columns.
    pub fn encode(
        seq: u64,
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
    ) -> Result<(), ColumnError> {
        let count = |n: usize| u32::try_from(n).map_err(|_| ColumnError::TooMany(n));
        out.extend(seq.to_le_bytes());
        out.extend(count(rows)?.to_le_bytes());
        out.extend(count(columns.len())?.to_le_bytes());
        for (i, column) in columns.iter().enumerate() {
            if column.len() != rows {
                return Err(ColumnError::Length {
                    column: i,
                    len: column.len(),
                    rows,
                });
            }
            let data = column.to_data();
            let unsupported = || ColumnError::Unsupported {
                column: i,
                data_type: data.data_type().clone(),
            };
            put_type(data.data_type(), out).ok_or_else(unsupported)?;
            let (offset, len) = (data.offset(), data.len());
            match data.nulls().filter(|n| n.null_count() > 0) {
                Some(nulls) => {
                    out.push(1);
                    // `sliced` moves the bits to start at bit 0.
                    out.extend_from_slice(&nulls.inner().sliced()[..bitmap_len(len)]);
                }
                None => out.push(0),
            }
            match (data.data_type(), width(data.data_type())) {
                (DataType::Null, _) => {}
                (DataType::Boolean, _) => {
                    let bits = BooleanBuffer::new(data.buffers()[0].clone(), offset, len);
                    out.extend_from_slice(&bits.sliced()[..bitmap_len(len)]);
                }
                (_, Some(w)) => {
                    out.extend_from_slice(&data.buffers()[0][offset * w..(offset + len) * w]);
                }
                (t, None) => {
                    // Offsets rebased to start at 0, and only the data
                    // they span: a slice of a long column sends its own
                    // bytes, not the column's.
                    let ow = offset_width(t);
                    let raw = &data.buffers()[0][offset * ow..(offset + len + 1) * ow];
                    let at = |i: usize| -> usize {
                        let b = &raw[i * ow..(i + 1) * ow];
                        if ow == 4 {
                            u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
                        } else {
                            u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
                        }
                    };
                    let (start, end) = (at(0), at(len));
                    out.reserve(raw.len() + 8 + (end - start));
                    for i in 0..=len {
                        let o = at(i) - start;
                        if ow == 4 {
                            out.extend((o as u32).to_le_bytes());
                        } else {
                            out.extend((o as u64).to_le_bytes());
                        }
                    }
                    out.extend(((end - start) as u64).to_le_bytes());
                    out.extend_from_slice(&data.buffers()[1][start..end]);
                }
            }
        }
        Ok(())
    }

    /// Decodes a column frame from `src`: its sequence number, row count and
    /// columns, each rebuilt from copies of its buffers and validated in
    /// full.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Columns`] for anything an honest peer does not write.
    pub fn decode<S: ByteSource + ?Sized>(src: &S) -> Result<Decoded, ProtoError> {
        let mut r = Reader { src, at: 0 };
        let seq = r.u64()?;
        let rows = r.u32()? as usize;
        let n = r.u32()? as usize;
        // Every column takes at least two bytes: a count beyond that is a
        // lie, refused before anything is allocated for it.
        if n > r.left() / 2 {
            return Err(bad(format!("{n} columns in {} bytes", r.left())));
        }
        let mut columns = Vec::with_capacity(n);
        for i in 0..n {
            let column = r
                .column(rows)
                .map_err(|e| bad(format!("column {i}: {e}")))?;
            columns.push(column);
        }
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the last column", r.left())));
        }
        Ok(Decoded { seq, rows, columns })
    }
}

/// A decoded column frame.
#[derive(Debug)]
pub struct Decoded {
    /// The batch's sequence number.
    pub seq: u64,
    /// Its rows (also when it has no columns: a UDF without arguments).
    pub rows: usize,
    /// Its columns.
    pub columns: Vec<ArrayRef>,
}

fn bad(reason: String) -> ProtoError {
    ProtoError::Columns(reason)
}

/// Reads a frame front to back, checking every length against what is
/// left.
struct Reader<'a, S: ?Sized> {
    src: &'a S,
    at: usize,
}

impl<S: ByteSource + ?Sized> Reader<'_, S> {
    fn left(&self) -> usize {
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

    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.bytes()?))
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

    fn unit(&mut self) -> Result<TimeUnit, String> {
        Ok(match self.u8().map_err(|e| e.to_string())? {
            0 => TimeUnit::Second,
            1 => TimeUnit::Millisecond,
            2 => TimeUnit::Microsecond,
            3 => TimeUnit::Nanosecond,
            u => return Err(format!("time unit {u}")),
        })
    }

    fn data_type(&mut self) -> Result<DataType, String> {
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
                    1 => {
                        let len = u16::from_le_bytes(self.bytes().map_err(e)?) as usize;
                        let b = self.buffer(len)?;
                        let tz =
                            std::str::from_utf8(&b).map_err(|_| "a time zone that is not UTF-8")?;
                        Some(Arc::from(tz))
                    }
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
            t => return Err(format!("type tag {t}")),
        })
    }

    fn column(&mut self, rows: usize) -> Result<ArrayRef, String> {
        let t = self.data_type()?;
        let flags = self.u8().map_err(|e| e.to_string())?;
        if flags > 1 {
            return Err(format!("flags {flags}"));
        }
        let nulls = if flags == 1 {
            let bits = BooleanBuffer::new(self.buffer(bitmap_len(rows))?, 0, rows);
            Some(NullBuffer::new(bits))
        } else {
            None
        };
        let mut buffers = Vec::new();
        match (&t, width(&t)) {
            (DataType::Null, _) => {
                if nulls.is_some() {
                    return Err("a null column with a validity bitmap".into());
                }
            }
            (DataType::Boolean, _) => buffers.push(self.buffer(bitmap_len(rows))?),
            (_, Some(w)) => {
                let len = rows.checked_mul(w).ok_or("too many rows")?;
                buffers.push(self.buffer(len)?);
            }
            (t, None) => {
                let ow = offset_width(t);
                let len = rows
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(ow))
                    .ok_or("too many rows")?;
                buffers.push(self.buffer(len)?);
                let data_len = self.u64().map_err(|e| e.to_string())?;
                let data_len = usize::try_from(data_len).map_err(|_| "data too long")?;
                buffers.push(self.buffer(data_len)?);
            }
        }
        let data = ArrayDataBuilder::new(t)
            .len(rows)
            .nulls(nulls)
            .buffers(buffers)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(make_array(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int16Array,
        Int64Array, LargeStringArray, NullArray, StringArray, Time64NanosecondArray,
        TimestampMicrosecondArray, UInt64Array,
    };
    use proptest::prelude::*;

    fn round_trip(columns: &[ArrayRef]) -> Vec<ArrayRef> {
        let mut out = Vec::new();
        let rows = columns.first().map_or(0, |c| c.len());
        Columns::encode(9, rows, columns, &mut out).unwrap();
        let d = Columns::decode(&out[..]).unwrap();
        assert_eq!((d.seq, d.rows), (9, columns.first().map_or(0, |c| c.len())));
        d.columns
    }

    fn every_type() -> Vec<ArrayRef> {
        vec![
            Arc::new(NullArray::new(4)),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
            ])),
            Arc::new(Int16Array::from(vec![
                Some(-1),
                Some(2),
                None,
                Some(i16::MAX),
            ])),
            Arc::new(Int64Array::from(vec![i64::MIN, 0, 1, i64::MAX])),
            Arc::new(UInt64Array::from(vec![
                Some(u64::MAX),
                None,
                Some(0),
                Some(7),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                Some(f64::NAN),
                None,
                Some(-0.0),
            ])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("ünï"),
                Some(""),
            ])),
            Arc::new(LargeStringArray::from(vec!["x", "yy", "", "zzz"])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff"[..]),
                None,
                Some(&b""[..]),
                Some(&b"b"[..]),
            ])),
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(19000),
                None,
                Some(-1),
            ])),
            Arc::new(Time64NanosecondArray::from(vec![
                0,
                1,
                2,
                86_399_999_999_999,
            ])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1), None, Some(3), Some(4)])
                    .with_timezone("Europe/Paris"),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(100), None, Some(-5), Some(0)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ]
    }

    #[test]
    fn every_supported_type_round_trips_with_its_nulls_and_parameters() {
        let columns = every_type();
        let back = round_trip(&columns);
        assert_eq!(back.len(), columns.len());
        for (a, b) in columns.iter().zip(&back) {
            assert_eq!(a.to_data(), b.to_data(), "{}", a.data_type());
        }
    }

    #[test]
    fn sliced_arrays_travel_as_their_slice() {
        let columns = every_type();
        let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(1, 3)).collect();
        for (a, b) in sliced.iter().zip(round_trip(&sliced)) {
            assert_eq!(a.as_ref(), b.as_ref(), "{}", a.data_type());
        }
    }

    #[test]
    fn unsupported_types_and_ragged_columns_are_refused() {
        let list: ArrayRef = Arc::new(arrow_array::ListArray::from_iter_primitive::<
            arrow_array::types::Int32Type,
            _,
            _,
        >(vec![Some(vec![Some(1)])]));
        let mut out = Vec::new();
        assert!(matches!(
            Columns::encode(0, 1, &[list], &mut out),
            Err(ColumnError::Unsupported { column: 0, .. })
        ));
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(matches!(
            Columns::encode(0, 2, &[a, b], &mut out),
            Err(ColumnError::Length { column: 1, .. })
        ));
    }

    #[test]
    fn lies_about_lengths_offsets_and_text_are_protocol_errors() {
        let s: ArrayRef = Arc::new(StringArray::from(vec!["ab", "c"]));
        let mut out = Vec::new();
        Columns::encode(1, 2, &[s], &mut out).unwrap();
        // Layout: seq 8, rows 4, columns 4, type 1, flags 1, offsets 12,
        // data length 8, data 3.
        let offsets = 8 + 4 + 4 + 2;
        let mut bad_offset = out.clone();
        bad_offset[offsets + 4] = 9; // the second offset past the data
        assert!(Columns::decode(&bad_offset[..]).is_err());
        let mut bad_text = out.clone();
        let data = offsets + 12 + 8;
        bad_text[data] = 0xff; // not UTF-8
        assert!(Columns::decode(&bad_text[..]).is_err());
        let mut more_rows = out.clone();
        more_rows[8] = 200;
        assert!(Columns::decode(&more_rows[..]).is_err());
        let mut many_columns = out.clone();
        many_columns[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Columns::decode(&many_columns[..]).is_err());
        let mut trailing = out.clone();
        trailing.push(0);
        assert!(Columns::decode(&trailing[..]).is_err());
        assert!(Columns::decode(&out[..out.len() - 1]).is_err());
    }

    proptest! {
        /// Any bytes at all decode to columns or a `ProtoError`: never a
        /// panic, never an out-of-bounds read.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Columns::decode(&bytes[..]);
        }

        /// Any byte of a valid frame of every type, scribbled over, gives
        /// back columns or an error: never a panic.
        #[test]
        fn scribbled_frames_never_panic(at in 0usize..4096, byte in any::<u8>()) {
            let mut out = Vec::new();
            Columns::encode(3, 4, &every_type(), &mut out).unwrap();
            let at = at % out.len();
            out[at] = byte;
            let _ = Columns::decode(&out[..]);
        }

        /// Int64 and string columns of any values, nulls and slice round
        /// trip exactly.
        #[test]
        fn any_columns_round_trip(
            ints in proptest::collection::vec(proptest::option::of(any::<i64>()), 1..64),
            text in proptest::collection::vec(proptest::option::of(".{0,8}"), 1..64),
            cut in 0usize..8,
        ) {
            let n = ints.len().min(text.len());
            let a: ArrayRef = Arc::new(Int64Array::from(ints[..n].to_vec()));
            let b: ArrayRef = Arc::new(StringArray::from(text[..n].to_vec()));
            let cut = cut.min(n - 1);
            let columns = [a.slice(cut, n - cut), b.slice(cut, n - cut)];
            let back = round_trip(&columns);
            prop_assert_eq!(columns[0].as_ref(), back[0].as_ref());
            prop_assert_eq!(columns[1].as_ref(), back[1].as_ref());
        }
    }
}
