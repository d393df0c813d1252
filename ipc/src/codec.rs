//! The row codec: batches of rows in a flat little-endian layout, written
//! (The model is documented in the crate docs, section "The row codec".)

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL / Python `None`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list of values, possibly nested.
    List(Vec<Value>),
}

/// A row: the values of one UDF call's arguments, or of one result row.
pub type Row = Vec<Value>;

/// How deep lists may nest.
pub const MAX_DEPTH: usize = 64;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STR: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_LIST: u8 = 7;

/// Where encoded bytes are written: a `Vec<u8>`, or a reserved ring frame
/// ([`FrameWriter`](crate::FrameWriter)).
pub trait ByteSink {
    /// Appends `bytes`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::Full`] when the sink has no room for them.
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError>;
}

impl ByteSink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Where encoded bytes are read from: a byte slice, or a committed ring
/// frame ([`Frame`](crate::Frame)).
pub trait ByteSource {
    /// Number of readable bytes.
    fn len(&self) -> usize;

    /// Whether there is nothing to read.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// A `Truncated` [`DecodeError`] if the range is out of bounds.
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), DecodeError>;

    /// Appends the `len` bytes starting at `offset` to `out`. The default
    /// zero-fills and then copies; sources override it to copy only once.
    ///
    /// # Errors
    ///
    /// A `Truncated` [`DecodeError`] if the range is out of bounds; `out` is
    /// then unchanged.
    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let start = out.len();
        out.resize(start + len, 0);
        self.read_at(offset, &mut out[start..])
            .inspect_err(|_| out.truncate(start))
    }
}

impl ByteSource for [u8] {
    #[inline]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline]
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), DecodeError> {
        let src = offset
            .checked_add(dst.len())
            .and_then(|end| self.get(offset..end))
            .ok_or_else(|| {
                DecodeError::truncated(offset, dst.len(), <[u8]>::len(self).saturating_sub(offset))
            })?;
        dst.copy_from_slice(src);
        Ok(())
    }

    #[inline]
    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let src = offset
            .checked_add(len)
            .and_then(|end| self.get(offset..end))
            .ok_or_else(|| {
                DecodeError::truncated(offset, len, <[u8]>::len(self).saturating_sub(offset))
            })?;
        out.extend_from_slice(src);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline]
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), DecodeError> {
        self.as_slice().read_at(offset, dst)
    }

    #[inline]
    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.as_slice().append_to(offset, len, out)
    }
}

/// Why a batch could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The sink (a ring frame) has no room left.
    #[error("encoding needs {needed} more bytes but the sink has {available}")]
    Full {
        /// Bytes the write needed.
        needed: usize,
        /// Bytes the sink had left.
        available: usize,
    },
    /// A string, byte string, list, row or batch is longer than a `u32`
    /// count allows.
    #[error("{what} of length {len} is longer than the codec's limit of 4294967295")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Why a batch could not be decoded: what went wrong, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    /// Byte offset in the batch where the problem starts.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// A read of `needed` bytes at `offset` with only `available` left.
    pub fn truncated(offset: usize, needed: usize, available: usize) -> DecodeError {
        DecodeError {
            offset,
            kind: DecodeErrorKind::Truncated {
                needed: needed.min(u32::MAX as usize) as u32,
                available: available.min(u32::MAX as usize) as u32,
            },
        }
    }
}

/// The kinds of [`DecodeError`]. Counts are `u32` (the codec's limit) to
/// keep the error small on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends inside a value.
    #[error("input ends early: {needed} bytes needed, {available} remain")]
    Truncated {
        /// Bytes needed.
        needed: u32,
        /// Bytes left.
        available: u32,
    },
    /// A value tag no encoder writes.
    #[error("unknown value tag {0}")]
    UnknownTag(u8),
    /// String bytes that are not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// Lists nested deeper than [`MAX_DEPTH`].
    #[error("lists nest deeper than {max}")]
    TooDeep {
        /// The limit.
        max: u32,
    },
    /// A count or length larger than the bytes left could hold.
    #[error("count {count} cannot fit in the {remaining} bytes that remain")]
    CountTooLarge {
        /// The count claimed.
        count: u32,
        /// Bytes left.
        remaining: u32,
    },
    /// A row was requested past the batch's row count.
    #[error("the batch has no more rows")]
    NoMoreRows,
    /// Bytes after the last row.
    #[error("{extra} bytes follow the last row")]
    TrailingBytes {
        /// How many.
        extra: u32,
    },
}

fn count(what: &'static str, len: usize) -> Result<[u8; 4], EncodeError> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| EncodeError::TooLong { what, len })
}

/// Exact number of bytes [`encode_batch`] writes for `rows`, so a caller can
/// reserve a ring frame first.
pub fn encoded_len(rows: &[Row]) -> usize {
    fn value_len(v: &Value) -> usize {
        match v {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 9,
            Value::Str(s) => 5 + s.len(),
            Value::Bytes(b) => 5 + b.len(),
            Value::List(l) => 5 + l.iter().map(value_len).sum::<usize>(),
        }
    }
    4 + rows
        .iter()
        .map(|r| 4 + r.iter().map(value_len).sum::<usize>())
        .sum::<usize>()
}

/// Encodes `rows` into `sink`; returns the bytes written.
///
/// # Errors
///
/// [`EncodeError::Full`] if the sink runs out of room;
/// [`EncodeError::TooLong`] for more than `u32::MAX` rows, values, list
/// elements or bytes in one string.
pub fn encode_batch<S: ByteSink + ?Sized>(
    rows: &[Row],
    sink: &mut S,
) -> Result<usize, EncodeError> {
    let mut enc = BatchEncoder::new(sink, rows.len())?;
    for row in rows {
        enc.begin_row(row.len())?;
        for v in row {
            enc.put_value(v)?;
        }
    }
    Ok(enc.written())
}

/// Writes a batch value by value, for callers that convert from their own
/// objects (such as Python objects) without building [`Value`]s first.
///
/// The caller keeps the counts it declares (rows, values per row, list
/// elements); the decoder rejects a batch that does not.
///
/// # Examples
///
/// ```
/// use coil_ipc::{decode_batch, BatchEncoder, Value};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut buf = Vec::new();
/// let mut enc = BatchEncoder::new(&mut buf, 1)?;
/// enc.begin_row(2)?;
/// enc.put_int(7)?;
/// enc.put_str("seven")?;
/// assert_eq!(decode_batch(&buf[..])?, vec![vec![Value::Int(7), Value::Str("seven".into())]]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BatchEncoder<'a, S: ByteSink + ?Sized> {
    sink: &'a mut S,
    written: usize,
}

impl BatchEncoder<'_, Vec<u8>> {
    /// Takes back everything written since `mark` (an earlier
    /// [`BatchEncoder::written`]): a row whose values could not all be
    /// written, to be written again differently.
    ///
    /// # Panics
    ///
    /// If `mark` is beyond what was written.
    pub fn rewind(&mut self, mark: usize) {
        let extra = self
            .written
            .checked_sub(mark)
            .expect("rewinding to a mark that was written");
        let len = self.sink.len() - extra;
        self.sink.truncate(len);
        self.written = mark;
    }
}

impl<'a, S: ByteSink + ?Sized> BatchEncoder<'a, S> {
    /// Starts a batch of `rows` rows.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    pub fn new(sink: &'a mut S, rows: usize) -> Result<Self, EncodeError> {
        let mut enc = BatchEncoder { sink, written: 0 };
        enc.put(&count("batch", rows)?)?;
        Ok(enc)
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.sink.put(bytes)?;
        self.written += bytes.len();
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Starts a row of `values` values.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    pub fn begin_row(&mut self, values: usize) -> Result<(), EncodeError> {
        self.put(&count("row", values)?)
    }

    /// Writes a null.
    ///
    /// # Errors
    ///
    /// [`EncodeError::Full`].
    pub fn put_null(&mut self) -> Result<(), EncodeError> {
        self.put(&[TAG_NULL])
    }

    /// Writes a boolean.
    ///
    /// # Errors
    ///
    /// [`EncodeError::Full`].
    pub fn put_bool(&mut self, b: bool) -> Result<(), EncodeError> {
        self.put(&[if b { TAG_TRUE } else { TAG_FALSE }])
    }

    /// Writes an integer.
    ///
    /// # Errors
    ///
    /// [`EncodeError::Full`].
    #[inline]
    pub fn put_int(&mut self, i: i64) -> Result<(), EncodeError> {
        let mut b = [TAG_INT; 9];
        b[1..].copy_from_slice(&i.to_le_bytes());
        self.put(&b)
    }

    /// Writes a float.
    ///
    /// # Errors
    ///
    /// [`EncodeError::Full`].
    #[inline]
    pub fn put_float(&mut self, f: f64) -> Result<(), EncodeError> {
        let mut b = [TAG_FLOAT; 9];
        b[1..].copy_from_slice(&f.to_bits().to_le_bytes());
        self.put(&b)
    }

    #[inline]
    fn put_len_prefixed(
        &mut self,
        tag: u8,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<(), EncodeError> {
        let mut h = [tag; 5];
        h[1..].copy_from_slice(&count(what, bytes.len())?);
        self.put(&h)?;
        self.put(bytes)
    }

    /// Writes a string.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    #[inline]
    pub fn put_str(&mut self, s: &str) -> Result<(), EncodeError> {
        self.put_len_prefixed(TAG_STR, "string", s.as_bytes())
    }

    /// Writes a byte string.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    pub fn put_bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        self.put_len_prefixed(TAG_BYTES, "byte string", b)
    }

    /// Starts a list of `len` values; write them next.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    pub fn begin_list(&mut self, len: usize) -> Result<(), EncodeError> {
        let mut h = [TAG_LIST; 5];
        h[1..].copy_from_slice(&count("list", len)?);
        self.put(&h)
    }

    /// Writes a [`Value`], recursively.
    ///
    /// # Errors
    ///
    /// As [`encode_batch`].
    pub fn put_value(&mut self, v: &Value) -> Result<(), EncodeError> {
        match v {
            Value::Null => self.put_null(),
            Value::Bool(b) => self.put_bool(*b),
            Value::Int(i) => self.put_int(*i),
            Value::Float(f) => self.put_float(*f),
            Value::Str(s) => self.put_str(s),
            Value::Bytes(b) => self.put_bytes(b),
            Value::List(l) => {
                self.begin_list(l.len())?;
                l.iter().try_for_each(|v| self.put_value(v))
            }
        }
    }
}

/// What the next value is, as read by [`BatchDecoder::next_value`]. A
/// `Str` or `Bytes` header is followed by its payload (read it with
/// [`BatchDecoder::read_str`], [`BatchDecoder::read_bytes`] or
/// [`BatchDecoder::read_into`]); a `List` header by its elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueHeader {
    /// A null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string of `len` bytes follows.
    Str {
        /// Bytes of UTF-8.
        len: u32,
    },
    /// A byte string of `len` bytes follows.
    Bytes {
        /// Bytes.
        len: u32,
    },
    /// `len` values follow.
    List {
        /// Elements.
        len: u32,
    },
}

/// Reads a batch value by value, so a caller can build its own objects
/// (such as Python objects) straight from a ring frame.
///
/// The decoder checks every count against the bytes that remain; nesting
/// depth is the caller's to track when it walks lists itself
/// ([`decode_batch`] does).
///
/// # Examples
///
/// ```
/// use coil_ipc::{encode_batch, BatchDecoder, Value, ValueHeader};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut buf = Vec::new();
/// encode_batch(&[vec![Value::Str("hi".into())]], &mut buf)?;
/// let mut dec = BatchDecoder::new(&buf[..])?;
/// assert_eq!(dec.begin_row()?, 1);
/// let ValueHeader::Str { len } = dec.next_value()? else { panic!() };
/// assert_eq!(dec.read_str(len)?, "hi");
/// dec.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BatchDecoder<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    pos: usize,
    rows_left: u32,
}

impl<'a, S: ByteSource + ?Sized> BatchDecoder<'a, S> {
    /// Reads the row count.
    ///
    /// # Errors
    ///
    /// `Truncated`, or `CountTooLarge` if the rows could not fit.
    pub fn new(src: &'a S) -> Result<Self, DecodeError> {
        let mut dec = BatchDecoder {
            src,
            pos: 0,
            rows_left: 0,
        };
        let rows = dec.u32()?;
        dec.check_count(rows, 4, 4)?;
        dec.rows_left = rows;
        Ok(dec)
    }

    /// Rows not yet begun.
    pub fn rows_remaining(&self) -> u32 {
        self.rows_left
    }

    /// Byte offset of the next read.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.src.len() - self.pos
    }

    #[inline]
    fn read<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut b = [0u8; N];
        self.src.read_at(self.pos, &mut b)?;
        self.pos += N;
        Ok(b)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.read::<4>().map(u32::from_le_bytes)
    }

    /// Fails unless `count` items of at least `min_size` bytes each fit in
    /// what remains; `at` is how far back the count started.
    fn check_count(&self, count: u32, min_size: usize, back: usize) -> Result<(), DecodeError> {
        let remaining = self.remaining();
        if (count as usize).saturating_mul(min_size) > remaining {
            return Err(DecodeError {
                offset: self.pos - back,
                kind: DecodeErrorKind::CountTooLarge {
                    count,
                    remaining: remaining.min(u32::MAX as usize) as u32,
                },
            });
        }
        Ok(())
    }

    /// Begins the next row; returns its number of values.
    ///
    /// # Errors
    ///
    /// `NoMoreRows`, `Truncated` or `CountTooLarge`.
    pub fn begin_row(&mut self) -> Result<u32, DecodeError> {
        if self.rows_left == 0 {
            return Err(DecodeError {
                offset: self.pos,
                kind: DecodeErrorKind::NoMoreRows,
            });
        }
        self.rows_left -= 1;
        let n = self.u32()?;
        self.check_count(n, 1, 4)?;
        Ok(n)
    }

    /// Reads the next value's header (and its payload, for scalars).
    ///
    /// # Errors
    ///
    /// `Truncated`, `UnknownTag` or `CountTooLarge`.
    #[inline]
    pub fn next_value(&mut self) -> Result<ValueHeader, DecodeError> {
        let [tag] = self.read::<1>()?;
        Ok(match tag {
            TAG_NULL => ValueHeader::Null,
            TAG_FALSE => ValueHeader::Bool(false),
            TAG_TRUE => ValueHeader::Bool(true),
            TAG_INT => ValueHeader::Int(i64::from_le_bytes(self.read::<8>()?)),
            TAG_FLOAT => ValueHeader::Float(f64::from_bits(u64::from_le_bytes(self.read::<8>()?))),
            TAG_STR | TAG_BYTES | TAG_LIST => {
                let len = self.u32()?;
                self.check_count(len, 1, 5)?;
                match tag {
                    TAG_STR => ValueHeader::Str { len },
                    TAG_BYTES => ValueHeader::Bytes { len },
                    _ => ValueHeader::List { len },
                }
            }
            other => {
                return Err(DecodeError {
                    offset: self.pos - 1,
                    kind: DecodeErrorKind::UnknownTag(other),
                })
            }
        })
    }

    /// Copies the next `dst.len()` payload bytes into `dst`.
    ///
    /// # Errors
    ///
    /// `Truncated`.
    pub fn read_into(&mut self, dst: &mut [u8]) -> Result<(), DecodeError> {
        self.src.read_at(self.pos, dst)?;
        self.pos += dst.len();
        Ok(())
    }

    /// Reads a byte string of `len` bytes (after a `Bytes` header).
    ///
    /// # Errors
    ///
    /// `Truncated`.
    pub fn read_bytes(&mut self, len: u32) -> Result<Vec<u8>, DecodeError> {
        if len as usize > self.remaining() {
            return Err(DecodeError::truncated(
                self.pos,
                len as usize,
                self.remaining(),
            ));
        }
        let mut v = Vec::with_capacity(len as usize);
        self.append_bytes(len, &mut v)?;
        Ok(v)
    }

    /// Appends the next `len` payload bytes to `out` (no zero-fill).
    ///
    /// # Errors
    ///
    /// `Truncated`, checked before anything is reserved.
    pub fn append_bytes(&mut self, len: u32, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if len as usize > self.remaining() {
            return Err(DecodeError::truncated(
                self.pos,
                len as usize,
                self.remaining(),
            ));
        }
        self.src.append_to(self.pos, len as usize, out)?;
        self.pos += len as usize;
        Ok(())
    }

    /// Reads a string of `len` bytes (after a `Str` header). The bytes are
    /// copied out first and checked as UTF-8 afterwards.
    ///
    /// # Errors
    ///
    /// `Truncated` or `InvalidUtf8`.
    pub fn read_str(&mut self, len: u32) -> Result<String, DecodeError> {
        let at = self.pos;
        String::from_utf8(self.read_bytes(len)?).map_err(|_| DecodeError {
            offset: at,
            kind: DecodeErrorKind::InvalidUtf8,
        })
    }

    /// Replaces the contents of `out` with a string of `len` bytes (after a
    /// `Str` header), reusing its allocation. The bytes are copied out first
    /// and checked as UTF-8 afterwards; on error `out` is left empty.
    ///
    /// # Errors
    ///
    /// `Truncated` or `InvalidUtf8`.
    pub fn read_str_into(&mut self, len: u32, out: &mut String) -> Result<(), DecodeError> {
        let at = self.pos;
        let mut bytes = std::mem::take(out).into_bytes();
        bytes.clear();
        self.append_bytes(len, &mut bytes)?;
        match String::from_utf8(bytes) {
            Ok(s) => {
                *out = s;
                Ok(())
            }
            Err(_) => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidUtf8,
            }),
        }
    }

    /// Reads a whole value into a [`Value`]; `depth` is the nesting depth of
    /// the list it sits in (0 at the top of a row).
    ///
    /// # Errors
    ///
    /// Any decode error, or `TooDeep`.
    pub fn read_value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let mut v = Value::Null;
        self.read_value_into(&mut v, depth)?;
        Ok(v)
    }

    /// Reads a whole value into `slot`, reusing the string, byte or list
    /// allocation already there when the kinds match; `depth` as for
    /// [`read_value`](Self::read_value).
    ///
    /// # Errors
    ///
    /// Any decode error, or `TooDeep`; `slot` then holds some valid value.
    pub fn read_value_into(&mut self, slot: &mut Value, depth: usize) -> Result<(), DecodeError> {
        let at = self.pos;
        match self.next_value()? {
            ValueHeader::Null => *slot = Value::Null,
            ValueHeader::Bool(b) => *slot = Value::Bool(b),
            ValueHeader::Int(i) => *slot = Value::Int(i),
            ValueHeader::Float(f) => *slot = Value::Float(f),
            ValueHeader::Str { len } => {
                if let Value::Str(s) = slot {
                    self.read_str_into(len, s)?;
                } else {
                    *slot = Value::Str(self.read_str(len)?);
                }
            }
            ValueHeader::Bytes { len } => {
                if let Value::Bytes(b) = slot {
                    b.clear();
                    self.append_bytes(len, b)?;
                } else {
                    *slot = Value::Bytes(self.read_bytes(len)?);
                }
            }
            ValueHeader::List { len } => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError {
                        offset: at,
                        kind: DecodeErrorKind::TooDeep {
                            max: MAX_DEPTH as u32,
                        },
                    });
                }
                if !matches!(slot, Value::List(_)) {
                    *slot = Value::List(Vec::with_capacity(len as usize));
                }
                let Value::List(items) = slot else {
                    unreachable!("set just above")
                };
                self.read_values_into(len, items, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Reads `n` values into `items`, reusing the values already there and
    /// truncating or extending it to exactly `n`.
    fn read_values_into(
        &mut self,
        n: u32,
        items: &mut Vec<Value>,
        depth: usize,
    ) -> Result<(), DecodeError> {
        let n = n as usize;
        items.truncate(n);
        for i in 0..n {
            if i == items.len() {
                items.push(Value::Null);
            }
            self.read_value_into(&mut items[i], depth)?;
        }
        Ok(())
    }

    ///
    /// # Errors
    ///
    /// `TrailingBytes`, or `CountTooLarge` if rows are left unread.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rows_left != 0 {
            return Err(DecodeError {
                offset: self.pos,
                kind: DecodeErrorKind::CountTooLarge {
                    count: self.rows_left,
                    remaining: self.remaining().min(u32::MAX as usize) as u32,
                },
            });
        }
        if self.remaining() != 0 {
            return Err(DecodeError {
                offset: self.pos,
                kind: DecodeErrorKind::TrailingBytes {
                    extra: self.remaining().min(u32::MAX as usize) as u32,
                },
            });
        }
        Ok(())
    }
}

/// Decodes a whole batch.
///
/// # Errors
///
/// Any [`DecodeError`]; see [the row codec](crate#the-row-codec) for what is checked.
pub fn decode_batch<S: ByteSource + ?Sized>(src: &S) -> Result<Vec<Row>, DecodeError> {
    let mut dec = BatchDecoder::new(src)?;
    let mut rows = Vec::with_capacity(dec.rows_remaining() as usize);
    while dec.rows_remaining() > 0 {
        let n = dec.begin_row()?;
        let mut row = Vec::with_capacity(n as usize);
        for _ in 0..n {
            row.push(dec.read_value(0)?);
        }
        rows.push(row);
    }
    dec.finish()?;
    Ok(rows)
}

/// Decodes a whole batch into `rows`, reusing the rows, strings, byte
/// strings and lists already there: once `rows` has held a batch of the same
/// shape, decoding the next allocates nothing. `rows` ends with exactly the
/// batch's rows.
///
/// # Errors
///
/// Any [`DecodeError`], as for [`decode_batch`]; `rows` then holds valid but
/// unspecified rows.
///
/// # Examples
///
/// ```
/// use coil_ipc::{decode_batch_into, encode_batch, Value};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut scratch = Vec::new();
/// for i in 0..3 {
///     let batch = vec![vec![Value::Int(i), Value::Str(format!("row {i}"))]];
///     let mut buf = Vec::new();
///     encode_batch(&batch, &mut buf)?;
///     decode_batch_into(&buf[..], &mut scratch)?;
///     assert_eq!(scratch, batch);
/// }
/// # Ok(()) }
/// ```
pub fn decode_batch_into<S: ByteSource + ?Sized>(
    src: &S,
    rows: &mut Vec<Row>,
) -> Result<(), DecodeError> {
    let mut dec = BatchDecoder::new(src)?;
    let n = dec.rows_remaining() as usize;
    rows.truncate(n);
    for i in 0..n {
        if i == rows.len() {
            rows.push(Vec::new());
        }
        let values = dec.begin_row()?;
        dec.read_values_into(values, &mut rows[i], 0)?;
    }
    dec.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_half_written_row_is_taken_back_and_written_again() {
        let mut buf = b"header".to_vec();
        let mut enc = BatchEncoder::new(&mut buf, 2).unwrap();
        enc.begin_row(1).unwrap();
        enc.put_int(1).unwrap();
        let mark = enc.written();
        enc.begin_row(1).unwrap();
        enc.begin_list(3).unwrap();
        enc.put_str("half a list").unwrap();
        enc.rewind(mark);
        assert_eq!(enc.written(), mark);
        enc.begin_row(1).unwrap();
        enc.put_null().unwrap();
        assert_eq!(
            decode_batch(&buf[6..]).unwrap(),
            vec![vec![Value::Int(1)], vec![Value::Null]]
        );
    }

    fn round_trip(rows: &[Row]) -> Vec<Row> {
        let mut buf = Vec::new();
        let n = encode_batch(rows, &mut buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(n, encoded_len(rows));
        decode_batch(&buf[..]).unwrap()
    }

    fn sample() -> Vec<Row> {
        vec![
            vec![Value::Null, Value::Bool(false), Value::Bool(true)],
            vec![
                Value::Int(i64::MIN),
                Value::Int(i64::MAX),
                Value::Int(0),
                Value::Float(-0.0),
                Value::Float(f64::INFINITY),
            ],
            vec![
                Value::Str(String::new()),
                Value::Str("naïve — 日本語 🐍".into()),
                Value::Bytes(vec![]),
                Value::Bytes(vec![0, 255, 10]),
            ],
            vec![],
            vec![
                Value::List(vec![]),
                Value::List(vec![
                    Value::List(vec![Value::Int(1), Value::Null]),
                    Value::Str("x".into()),
                ]),
            ],
        ]
    }

    #[test]
    fn every_variant_round_trips() {
        assert_eq!(round_trip(&sample()), sample());
        assert_eq!(round_trip(&[]), Vec::<Row>::new());
    }

    #[test]
    fn nan_round_trips_bit_for_bit() {
        let nan = f64::from_bits(0x7ff8_0000_dead_beef);
        let out = round_trip(&[vec![Value::Float(nan)]]);
        let Value::Float(f) = out[0][0] else { panic!() };
        assert_eq!(f.to_bits(), nan.to_bits());
    }

    #[test]
    fn every_truncation_of_a_valid_batch_is_an_error() {
        let mut buf = Vec::new();
        encode_batch(&sample(), &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(
                decode_batch(&buf[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn forged_huge_counts_fail_without_allocating() {
        // 4 billion rows in a 4-byte batch.
        let err = decode_batch(&u32::MAX.to_le_bytes()[..]).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::CountTooLarge {
                count: u32::MAX,
                remaining: 0
            }
        );
        // A string claiming 4 GiB.
        let mut buf = vec![1, 0, 0, 0, 1, 0, 0, 0, TAG_STR];
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_batch(&buf[..]).unwrap_err();
        assert_eq!(err.offset, 8);
        assert!(matches!(err.kind, DecodeErrorKind::CountTooLarge { .. }));
        assert_eq!(
            err.to_string(),
            "count 4294967295 cannot fit in the 0 bytes that remain (at byte 8)"
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_rejected() {
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Value::List(vec![v]);
        }
        assert_eq!(round_trip(&[vec![v.clone()]]).len(), 1);
        let deeper = vec![vec![Value::List(vec![v])]];
        let mut buf = Vec::new();
        encode_batch(&deeper, &mut buf).unwrap();
        assert!(matches!(
            decode_batch(&buf[..]).unwrap_err().kind,
            DecodeErrorKind::TooDeep { max: 64 }
        ));
    }

    #[test]
    fn unknown_tag_invalid_utf8_and_trailing_bytes_are_rejected() {
        let e = decode_batch(&[1, 0, 0, 0, 1, 0, 0, 0, 99][..]).unwrap_err();
        assert_eq!((e.offset, e.kind), (8, DecodeErrorKind::UnknownTag(99)));
        let e = decode_batch(&[1, 0, 0, 0, 1, 0, 0, 0, TAG_STR, 2, 0, 0, 0, 0xff, 0xfe][..])
            .unwrap_err();
        assert_eq!((e.offset, e.kind), (13, DecodeErrorKind::InvalidUtf8));
        let e = decode_batch(&[0, 0, 0, 0, 7][..]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes { extra: 1 });
    }

    #[test]
    fn decoder_refuses_rows_past_the_count() {
        let mut buf = Vec::new();
        encode_batch(&[vec![]], &mut buf).unwrap();
        let mut dec = BatchDecoder::new(&buf[..]).unwrap();
        assert_eq!(dec.begin_row().unwrap(), 0);
        assert_eq!(
            dec.begin_row().unwrap_err().kind,
            DecodeErrorKind::NoMoreRows
        );
    }

    struct Small(Vec<u8>, usize);
    impl ByteSink for Small {
        fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
            let available = self.1 - self.0.len();
            if bytes.len() > available {
                return Err(EncodeError::Full {
                    needed: bytes.len(),
                    available,
                });
            }
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn a_full_sink_is_an_error() {
        let mut sink = Small(Vec::new(), 10);
        let err = encode_batch(&sample(), &mut sink).unwrap_err();
        assert!(matches!(err, EncodeError::Full { .. }), "{err}");
    }

    #[test]
    fn decode_error_stays_small() {
        assert!(
            std::mem::size_of::<DecodeError>() <= 24,
            "{}",
            std::mem::size_of::<DecodeError>()
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
            ".{0,20}".prop_map(Value::Str),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop::collection::vec(inner, 0..6).prop_map(Value::List)
        })
    }

    /// Compares floats by bits, so NaN payloads count.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            (Value::List(x), Value::List(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn arbitrary_rows_round_trip(rows in prop::collection::vec(prop::collection::vec(value(), 0..5), 0..8)) {
            let out = round_trip(&rows);
            prop_assert_eq!(out.len(), rows.len());
            for (a, b) in rows.iter().zip(&out) {
                prop_assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)));
            }
        }

        #[test]
        fn decoding_into_used_rows_equals_decoding_fresh(
            first in prop::collection::vec(prop::collection::vec(value(), 0..5), 0..8),
            second in prop::collection::vec(prop::collection::vec(value(), 0..5), 0..8),
        ) {
            let mut scratch = Vec::new();
            for rows in [&first, &second] {
                let mut buf = Vec::new();
                encode_batch(rows, &mut buf).unwrap();
                decode_batch_into(&buf[..], &mut scratch).unwrap();
                let fresh = decode_batch(&buf[..]).unwrap();
                prop_assert_eq!(scratch.len(), fresh.len());
                for (a, b) in scratch.iter().zip(&fresh) {
                    prop_assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch_into(&bytes[..], &mut sample());
            let _ = decode_batch(&bytes[..]);
        }

        #[test]
        fn corrupting_any_byte_of_a_batch_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut buf = Vec::new();
            encode_batch(&sample(), &mut buf).unwrap();
            let i = at.index(buf.len());
            buf[i] = byte;
            let _ = decode_batch(&buf[..]);
        }
    }
}
