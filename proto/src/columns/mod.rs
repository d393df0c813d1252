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
//!
//! Writing is here; reading, which checks every length against what is
//! left before it is used, is `read.rs`.

use arrow_array::{Array, ArrayRef};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, TimeUnit};
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
    /// As [`Columns::encode`] (nothing is placed then).
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
        Columns::put_body(rows, columns, out, &mut placer)?;
        Ok(placer.map(|p| p.placed).unwrap_or_default())
    }

    /// Writes a body after [`Columns::check`]: once the columns pass, no
    /// write fails, so nothing is placed for a frame that is refused.
    fn put_body(
        rows: usize,
        columns: &[ArrayRef],
        out: &mut Vec<u8>,
        arena: Place<'_, '_>,
    ) -> Result<(), ColumnError> {
        Columns::check(rows, columns)?;
        out.extend(count(rows)?.to_le_bytes());
        out.extend(count(columns.len())?.to_le_bytes());
        for column in columns {
            put_type(column.data_type(), out, 0).expect("checked: a type with an encoding");
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

mod read;
#[cfg(test)]
mod tests;

use read::Reader;
