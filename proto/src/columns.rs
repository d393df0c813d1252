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
//! frame:  seq: u64, then a body
//! body:   rows: u32, columns: u32, then per column its type and its data
//! type:   a tag byte and the type's parameters (see `put_type`); nested
//!         types carry their children's fields: name, nullability,
//!         metadata and type
//! data:   flags: u8 (bit 0: a validity bitmap follows),
//!         [validity: ceil(rows / 8) bytes],
//!         (bit 1: the values are placed in the arena, see below),
//!         fixed-width types: rows × width bytes (boolean: ceil(rows / 8)),
//!         utf8 / binary: (rows + 1) × 4 bytes of offsets, data length: u64,
//!         data; large_utf8 / large_binary: the same with 8-byte offsets,
//!         list / map: (rows + 1) offsets (8 bytes for large_list, else 4),
//!         the child's rows: u64, the child's data,
//!         fixed_size_list: the child's data (rows × size rows),
//!         struct: each child's data (rows rows),
//!         null: nothing.
//! ```
//!
//! Views (`utf8_view`, `binary_view`) and dictionary-encoded columns do not
//! travel as such: the host sends them as the plain arrays they stand for
//! (see `coil-host`'s Arrow module).
//!
//! Between a host and a worker process, a fixed-width column's values may
//! be *placed* in the link's arena (`coil_ipc::Arena`) instead: flag bit 1
//! is set and a `u64` offset into the writer's half takes the place of the
//! bytes. The reader claims the run and reads it in place (the run is
//! freed when the last array over it drops); a frame that places values
//! is refused by a reader without the arena. Only fixed-width values are
//! placed: every bit pattern is a value, so a peer that writes them later
//! can change values but break nothing; offsets and variable-size data,
//! whose bytes say where other bytes are, always travel in the frame, and
//! are validated once copied.
//!
//! In-process executors share the host's address space, and there a
//! frame's body may be *shelved*: the column count is `u32::MAX` and a
//! `u64` key follows, under which the columns themselves wait on the
//! link's [`Shelf`] (see its module). No bytes are copied either way.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer};
use arrow_data::{ArrayData, ArrayDataBuilder};
use arrow_schema::{DataType, Field, FieldRef, Fields, TimeUnit};
use coil_ipc::{Arena, ByteSource, Half};

use crate::{ProtoError, Shelf};

/// How deep nested types may nest in a frame (a peer's frame that nests
/// deeper is refused before it can exhaust the stack).
pub const MAX_NESTING: usize = 32;

/// A column that cannot travel in a column frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// Its type has no column frame encoding.
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

/// Flag bit of a column's data: its fixed-width values were placed in the
/// arena, and a `u64` offset there follows instead of them.
const PLACED: u8 = 2;

/// Where a fixed-width column's values may be placed instead of written
/// (the arena and the half this side writes), and the runs placed so far.
struct Placer<'a> {
    arena: &'a Arena,
    half: Half,
    placed: Vec<(u64, usize)>,
}

type Place<'p, 'a> = &'p mut Option<Placer<'a>>;

/// What a frame may refer to besides its own bytes: the shelf of an
/// in-process executor's link, the arena half of a worker process's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refs<'a> {
    /// Where shelved columns wait (in-process executors only).
    pub shelf: Option<&'a Shelf>,
    /// The arena and the half the frame's placed values are in.
    pub arena: Option<(&'a Arena, Half)>,
}

/// The column count that marks a shelved body: its columns are on a
/// [`Shelf`], and a `u64` key follows instead of their data.
const SHELVED: u32 = u32::MAX;

/// `n` as a frame's `u32` count.
fn count(n: usize) -> Result<u32, ColumnError> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n != SHELVED)
        .ok_or(ColumnError::TooMany(n))
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

fn put_str(s: &str, out: &mut Vec<u8>) -> Option<()> {
    out.extend(u16::try_from(s.len()).ok()?.to_le_bytes());
    out.extend(s.as_bytes());
    Some(())
}

fn put_field(f: &Field, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    put_str(f.name(), out)?;
    out.push(u8::from(f.is_nullable()));
    let mut meta: Vec<_> = f.metadata().iter().collect();
    meta.sort();
    out.extend(u16::try_from(meta.len()).ok()?.to_le_bytes());
    for (k, v) in meta {
        put_str(k, out)?;
        put_str(v, out)?;
    }
    put_type(f.data_type(), out, depth + 1)
}

/// Appends `t`'s tag and parameters; `None` for a type with no encoding.
fn put_type(t: &DataType, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > MAX_NESTING {
        return None;
    }
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
                    out.push(1);
                    put_str(tz, out)?;
                }
            }
        }
        DataType::Decimal128(p, s) => out.extend([23, *p, *s as u8]),
        DataType::Decimal256(p, s) => out.extend([24, *p, *s as u8]),
        DataType::List(f) => {
            out.push(25);
            put_field(f, out, depth)?;
        }
        DataType::LargeList(f) => {
            out.push(26);
            put_field(f, out, depth)?;
        }
        DataType::FixedSizeList(f, size) => {
            out.push(27);
            out.extend(size.to_le_bytes());
            put_field(f, out, depth)?;
        }
        DataType::Struct(fields) => {
            out.push(28);
            out.extend(u16::try_from(fields.len()).ok()?.to_le_bytes());
            for f in fields {
                put_field(f, out, depth)?;
            }
        }
        DataType::Map(f, sorted) => {
            out.push(29);
            out.push(u8::from(*sorted));
            put_field(f, out, depth)?;
        }
        _ => return None,
    }
    Some(())
}

/// Bytes of a bitmap of `rows` bits.
fn bitmap_len(rows: usize) -> usize {
    rows.div_ceil(8)
}

/// How a type's values are laid out in a frame.
enum Shape {
    /// Nothing (null).
    Nothing,
    /// A bitmap (boolean).
    Bits,
    /// `rows` × this many bytes.
    Fixed(usize),
    /// Offsets of this width and a data buffer (strings, binary).
    Bytes(usize),
    /// Offsets of this width and one child (lists, maps).
    Offsets(usize),
    /// One child of `rows` × this many rows.
    Repeat(usize),
    /// Children of `rows` rows each.
    Children,
}

fn shape(t: &DataType) -> Shape {
    match t {
        DataType::Null => Shape::Nothing,
        DataType::Boolean => Shape::Bits,
        DataType::Utf8 | DataType::Binary => Shape::Bytes(4),
        DataType::LargeUtf8 | DataType::LargeBinary => Shape::Bytes(8),
        DataType::List(_) | DataType::Map(..) => Shape::Offsets(4),
        DataType::LargeList(_) => Shape::Offsets(8),
        DataType::FixedSizeList(_, size) => Shape::Repeat((*size).max(0) as usize),
        DataType::Struct(_) => Shape::Children,
        t => Shape::Fixed(t.primitive_width().unwrap_or(0)),
    }
}

/// Reads offset `i` of width `ow` (4 or 8 bytes) from `raw`.
fn offset_at(raw: &[u8], ow: usize, i: usize) -> usize {
    let b = &raw[i * ow..(i + 1) * ow];
    if ow == 4 {
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
    } else {
        u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
    }
}

/// Appends `raw`'s `len + 1` offsets rebased to start at 0; returns the
/// range of the data (or child rows) they span.
fn put_offsets(raw: &[u8], ow: usize, len: usize, out: &mut Vec<u8>) -> (usize, usize) {
    let (start, end) = (offset_at(raw, ow, 0), offset_at(raw, ow, len));
    out.reserve(raw.len());
    for i in 0..=len {
        let o = offset_at(raw, ow, i) - start;
        if ow == 4 {
            out.extend((o as u32).to_le_bytes());
        } else {
            out.extend((o as u64).to_le_bytes());
        }
    }
    (start, end)
}

/// Appends a column's data (its own slice of it), with its validity; its
/// type was checked by `put_type`.
fn put_data(a: &dyn Array, out: &mut Vec<u8>, arena: Place<'_, '_>) {
    use arrow_array::cast::AsArray;
    let len = a.len();
    // A fixed-width column's values go into the arena when it has room
    // (flag bit 1: an offset follows instead of the bytes).
    let placed = match (shape(a.data_type()), arena.as_mut()) {
        (Shape::Fixed(w), Some(p)) => {
            let data = a.to_data();
            let from = data.offset() * w;
            let at = p
                .arena
                .place(p.half, &data.buffers()[0][from..from + len * w]);
            if let Some(at) = at {
                p.placed.push((at, len * w));
            }
            at
        }
        _ => None,
    };
    let placed_flag = if placed.is_some() { PLACED } else { 0 };
    match a.nulls().filter(|n| n.null_count() > 0) {
        Some(nulls) => {
            out.push(1 | placed_flag);
            // `sliced` moves the bits to start at bit 0.
            out.extend_from_slice(&nulls.inner().sliced()[..bitmap_len(len)]);
        }
        None => out.push(placed_flag),
    }
    // Offsets rebased to start at 0, then the values they span: a slice of
    // a long column sends its own values, not the column's.
    fn listed(
        offsets: &[u8],
        ow: usize,
        len: usize,
        values: &dyn Array,
        out: &mut Vec<u8>,
        arena: Place<'_, '_>,
    ) {
        let (start, end) = put_offsets(offsets, ow, len, out);
        out.extend(((end - start) as u64).to_le_bytes());
        put_data(values.slice(start, end - start).as_ref(), out, arena);
    }
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let raw = l.offsets().inner().inner();
            listed(raw, 4, len, l.values().as_ref(), out, arena);
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let raw = l.offsets().inner().inner();
            listed(raw, 8, len, l.values().as_ref(), out, arena);
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let raw = m.offsets().inner().inner();
            listed(raw, 4, len, m.entries(), out, arena);
        }
        DataType::FixedSizeList(..) => {
            // Its values are sliced with it: rows × size of them.
            put_data(a.as_fixed_size_list().values().as_ref(), out, arena);
        }
        DataType::Struct(_) => {
            // Its fields are sliced with it.
            for child in a.as_struct().columns() {
                put_data(child.as_ref(), out, arena);
            }
        }
        _ => {
            let data = a.to_data();
            let offset = data.offset();
            match shape(data.data_type()) {
                Shape::Nothing => {}
                Shape::Bits => {
                    let bits = BooleanBuffer::new(data.buffers()[0].clone(), offset, len);
                    out.extend_from_slice(&bits.sliced()[..bitmap_len(len)]);
                }
                Shape::Fixed(w) => match placed {
                    Some(at) => out.extend(at.to_le_bytes()),
                    None => {
                        out.extend_from_slice(&data.buffers()[0][offset * w..(offset + len) * w])
                    }
                },
                Shape::Bytes(ow) => {
                    let raw = &data.buffers()[0][offset * ow..(offset + len + 1) * ow];
                    let (start, end) = put_offsets(raw, ow, len, out);
                    out.extend(((end - start) as u64).to_le_bytes());
                    out.extend_from_slice(&data.buffers()[1][start..end]);
                }
                Shape::Offsets(_) | Shape::Repeat(_) | Shape::Children => {
                    unreachable!("nested types are matched above")
                }
            }
        }
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
        out.extend(seq.to_le_bytes());
        Columns::encode_body(rows, columns, out)
    }

    /// Appends `columns`, each `rows` long, as a frame's body (a frame
    /// without its sequence number: what an executor's column results
    /// hold).
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`].
    pub fn encode_body(
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
    ) -> Result<(), ColumnError> {
        Columns::put_body(rows, columns, out, &mut None)
    }

    /// Appends batch `seq`'s `columns` as [`Columns::encode`] does, but
    /// each fixed-width column's values placed in `arena`'s half when it
    /// has room (the frame then carries their offset; the reader claims
    /// them with [`Columns::decode_from`]).
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`].
    pub fn encode_placed(
        seq: u64,
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
        arena: Option<(&Arena, Half)>,
    ) -> Result<Vec<(u64, usize)>, ColumnError> {
        out.extend(seq.to_le_bytes());
        Columns::encode_body_placed(rows, columns, out, arena)
    }

    /// [`Columns::encode_body`], placing fixed-width values in `arena` as
    /// [`Columns::encode_placed`] does. Returns the runs placed (offset
    /// and length): if the frame never reaches the peer, give them back
    /// with [`Arena::unplace`].
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`] (nothing stays placed then).
    pub fn encode_body_placed(
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
        arena: Option<(&Arena, Half)>,
    ) -> Result<Vec<(u64, usize)>, ColumnError> {
        let mut placer = arena.map(|(arena, half)| Placer {
            arena,
            half,
            placed: Vec::new(),
        });
        let written = Columns::put_body(rows, columns, out, &mut placer);
        let placed = placer.map(|p| p.placed).unwrap_or_default();
        match written {
            Ok(()) => Ok(placed),
            Err(e) => {
                if let Some((arena, half)) = arena {
                    for (at, len) in placed {
                        arena.unplace(half, at, len);
                    }
                }
                Err(e)
            }
        }
    }

    fn put_body(
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
        arena: Place<'_, '_>,
    ) -> Result<(), ColumnError> {
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
            put_type(column.data_type(), out, 0).ok_or_else(|| ColumnError::Unsupported {
                column: i,
                data_type: column.data_type().clone(),
            })?;
            put_data(column.as_ref(), out, arena);
        }
        Ok(())
    }

    /// Checks that `columns` could be written as a frame of `rows` rows
    /// (what [`Columns::encode`] refuses, without writing anything).
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`].
    pub fn check(rows: usize, columns: &[ArrayRef]) -> Result<(), ColumnError> {
        count(rows)?;
        count(columns.len())?;
        for (i, column) in columns.iter().enumerate() {
            if column.len() != rows {
                return Err(ColumnError::Length {
                    column: i,
                    len: column.len(),
                    rows,
                });
            }
            if !Columns::supports(column.data_type()) {
                return Err(ColumnError::Unsupported {
                    column: i,
                    data_type: column.data_type().clone(),
                });
            }
        }
        Ok(())
    }

    /// Appends batch `seq`'s `columns` as a shelved frame: the columns
    /// stay on `shelf` (in-process executors only; see [`Shelf`]) and the
    /// frame carries the key that takes them off, not their bytes.
    /// Returns the key.
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`] (nothing is shelved then).
    pub fn shelve(
        seq: u64,
        rows: usize,
        columns: &[ArrayRef],
        shelf: &Shelf,
        out: &mut Vec<u8>,
    ) -> Result<u64, ColumnError> {
        out.extend(seq.to_le_bytes());
        Columns::shelve_body(rows, columns, shelf, out)
    }

    /// Appends `columns`, each `rows` long, as a shelved frame body (see
    /// [`Columns::shelve`]). Returns the shelf key.
    ///
    /// # Errors
    ///
    /// As [`Columns::encode`] (nothing is shelved then).
    pub fn shelve_body(
        rows: usize,
        columns: &[ArrayRef],
        shelf: &Shelf,
        out: &mut Vec<u8>,
    ) -> Result<u64, ColumnError> {
        Columns::check(rows, columns)?;
        let key = shelf.put(columns.to_vec());
        out.extend(count(rows)?.to_le_bytes());
        out.extend(SHELVED.to_le_bytes());
        out.extend(key.to_le_bytes());
        Ok(key)
    }

    /// Whether columns of type `t` can be written in column frames: the
    /// codec's reach, a little wider than what executors convert
    /// ([`arrow_type_supported`](crate::arrow_type_supported), the answer
    /// to ask before sending a column).
    pub fn supports(t: &DataType) -> bool {
        put_type(t, &mut Vec::new(), 0).is_some()
    }

    /// `t` as bytes (as a frame writes it), to name a type outside a frame,
    /// e.g. on a command line; `None` for a type without an encoding.
    pub fn type_to_bytes(t: &DataType) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        put_type(t, &mut out, 0)?;
        Some(out)
    }

    /// The type [`Columns::type_to_bytes`] wrote.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Columns`] for bytes that are not exactly one type.
    pub fn type_from_bytes(bytes: &[u8]) -> Result<DataType, ProtoError> {
        let mut r = Reader::new(bytes, Refs::default());
        let t = r.data_type(0).map_err(bad)?;
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the type", r.left())));
        }
        Ok(t)
    }

    /// Decodes a column frame from `src`: its sequence number, row count and
    /// columns, each rebuilt from copies of its buffers and validated in
    /// full.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Columns`] for anything an honest peer does not write.
    pub fn decode<S: ByteSource + ?Sized>(src: &S) -> Result<Decoded, ProtoError> {
        Columns::decode_from(src, Refs::default())
    }

    /// Decodes a column frame from `src` as [`Columns::decode`] does, with
    /// what it may refer to besides its own bytes (`refs`): a shelved
    /// frame's columns are taken off the shelf (only in-process executors
    /// shelve), and placed values are claimed from the arena's half (read
    /// in place; the run is freed when the last array over it drops).
    ///
    /// # Errors
    ///
    /// As [`Columns::decode`]; also a shelved frame without a shelf or
    /// whose key has no columns on it, and placed values without an arena
    /// or outside its half.
    pub fn decode_from<S: ByteSource + ?Sized>(
        src: &S,
        refs: Refs<'_>,
    ) -> Result<Decoded, ProtoError> {
        let mut r = Reader::new(src, refs);
        let seq = r.u64()?;
        let (rows, columns) = r.body()?;
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the last column", r.left())));
        }
        Ok(Decoded { seq, rows, columns })
    }

    /// Decodes a frame's body (see [`Columns::encode_body`]) at the start
    /// of `src`: its rows, its columns, and the bytes it took (more may
    /// follow).
    ///
    /// # Errors
    ///
    /// As [`Columns::decode`].
    pub fn decode_body<S: ByteSource + ?Sized>(
        src: &S,
    ) -> Result<(usize, Vec<ArrayRef>, usize), ProtoError> {
        Columns::decode_body_from(src, Refs::default())
    }

    /// [`Columns::decode_body`], with what the body may refer to (see
    /// [`Columns::decode_from`]).
    ///
    /// # Errors
    ///
    /// As [`Columns::decode_from`].
    pub fn decode_body_from<S: ByteSource + ?Sized>(
        src: &S,
        refs: Refs<'_>,
    ) -> Result<(usize, Vec<ArrayRef>, usize), ProtoError> {
        let mut r = Reader::new(src, refs);
        let (rows, columns) = r.body()?;
        Ok((rows, columns, r.at))
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
    /// What the frame may refer to besides its bytes.
    refs: Refs<'a>,
}

impl<'a, S: ?Sized> Reader<'a, S> {
    fn new(src: &'a S, refs: Refs<'a>) -> Self {
        Reader { src, at: 0, refs }
    }
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

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes().map_err(|e| e.to_string())?))
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn body(&mut self) -> Result<(usize, Vec<ArrayRef>), ProtoError> {
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

    fn data_type(&mut self, depth: usize) -> Result<DataType, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use proptest::prelude::*;

    #[test]
    fn a_shelved_frame_hands_over_the_very_arrays_and_only_with_its_shelf() {
        let shelf = Shelf::new();
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let mut out = Vec::new();
        Columns::shelve(7, 3, std::slice::from_ref(&a), &shelf, &mut out).unwrap();
        assert!(
            out.len() <= 8 + 4 + 4 + 8,
            "the frame carries a key, not the bytes"
        );
        // Without the shelf (a worker process's frame) it is refused, and
        // the arrays stay put.
        let e = Columns::decode(&out[..]).unwrap_err().to_string();
        assert!(e.contains("shelved"), "{e}");
        assert_eq!(shelf.len(), 1);
        let d = Columns::decode_from(
            &out[..],
            Refs {
                shelf: Some(&shelf),
                ..Refs::default()
            },
        )
        .unwrap();
        assert_eq!((d.seq, d.rows), (7, 3));
        assert!(Arc::ptr_eq(&d.columns[0], &a));
        assert!(shelf.is_empty());
        // Taken once: the same frame again names nothing.
        let e = Columns::decode_from(
            &out[..],
            Refs {
                shelf: Some(&shelf),
                ..Refs::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("no columns on the shelf"), "{e}");
        // What encode refuses, shelve refuses, shelving nothing.
        let short: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let e = Columns::shelve(8, 3, &[short], &shelf, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ColumnError::Length { .. }), "{e}");
        assert!(shelf.is_empty());
    }

    fn round_trip(columns: &[ArrayRef]) -> Vec<ArrayRef> {
        let mut out = Vec::new();
        let rows = columns.first().map_or(0, |c| c.len());
        Columns::encode(9, rows, columns, &mut out).unwrap();
        let d = Columns::decode(&out[..]).unwrap();
        assert_eq!((d.seq, d.rows), (9, columns.first().map_or(0, |c| c.len())));
        d.columns
    }

    /// One column of every type a column frame carries, with nulls, edge
    /// values and parameters: the test kit's one copy.
    fn every_type() -> Vec<ArrayRef> {
        coil_testkit::arrow::every_type()
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
        let view: ArrayRef = Arc::new(arrow_array::StringViewArray::from(vec!["a"]));
        let mut out = Vec::new();
        assert!(matches!(
            Columns::encode(0, 1, &[view], &mut out),
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
    fn types_travel_by_themselves_and_deep_nesting_is_refused() {
        for c in every_type() {
            let bytes = Columns::type_to_bytes(c.data_type()).unwrap();
            assert_eq!(&Columns::type_from_bytes(&bytes).unwrap(), c.data_type());
        }
        let mut t = DataType::Int8;
        for _ in 0..40 {
            t = DataType::List(Arc::new(Field::new("item", t, true)));
        }
        assert!(!Columns::supports(&t));
        // A peer's list of lists nesting past the limit: refused, not a
        // stack overflow.
        let mut bytes = vec![25u8; 0];
        for _ in 0..10_000 {
            bytes.extend([25, 4, 0, b'i', b't', 1, 0, 0]);
        }
        bytes.push(5);
        assert!(Columns::type_from_bytes(&bytes).is_err());
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
