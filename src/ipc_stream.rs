//! Arrow IPC in and out of the `coil` CLI: the only place it reads or
//! writes Arrow's own formats (the core crates move arrays in their own
//! column frames).
//!
//! Arrow has two IPC formats. A *stream* (`.arrows`) is a schema and then
//! record batches, read front to back; a *file* (`.arrow`, Feather v2,
//! pyarrow's `ipc.new_file`) is the same framed by the magic `ARROW1` at
//! both ends with a footer that indexes the batches. [`BatchReader`] reads
//! both, telling them apart by the first bytes; [`BatchWriter`] writes the
//! file format to a name ending in `.arrow` or `.feather` (Arrow's own
//! convention) and a stream anywhere else (`.arrows`, a pipe).

use std::io::{BufReader, Cursor, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use std::collections::HashMap;

use arrow_ipc::writer::{FileWriter, StreamWriter};
use coil_host::arrow_array::ArrayRef;
use coil_host::arrow_array::RecordBatch;
use coil_host::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

/// The magic at both ends of an Arrow IPC file.
const FILE_MAGIC: &[u8] = b"ARROW1";

/// The continuation marker each message of an Arrow IPC stream begins
/// with (since Arrow 0.15).
const CONTINUATION: &[u8] = &[0xff, 0xff, 0xff, 0xff];

/// An input whose first bytes were read to look at: those bytes, then
/// the rest.
pub type Peeked<R> = std::io::Chain<Cursor<Vec<u8>>, R>;

/// What an input's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// An Arrow IPC file (Feather v2): it begins with `ARROW1`.
    ArrowFile,
    /// An Arrow IPC stream: it begins with a continuation marker.
    ArrowStream,
    /// JSON: its first byte after white space is `[` or `{`.
    Json,
    /// Something else, or nothing.
    Other,
}

impl Sniffed {
    /// What `head`, the first bytes of an input (8 are enough), is.
    pub fn of(head: &[u8]) -> Sniffed {
        if head.starts_with(FILE_MAGIC) {
            return Sniffed::ArrowFile;
        }
        if head.starts_with(CONTINUATION) {
            return Sniffed::ArrowStream;
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[' | b'{') => Sniffed::Json,
            _ => Sniffed::Other,
        }
    }

    /// What an input of this kind is called in an error, if it is one of
    /// the formats `coil run` reads.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Sniffed::ArrowFile => Some("an Arrow IPC file"),
            Sniffed::ArrowStream => Some("an Arrow IPC stream"),
            Sniffed::Json => Some("JSON Lines"),
            Sniffed::Other => None,
        }
    }
}

/// Reads the first bytes of `input` (up to 8, fewer at its end) and gives
/// them back with a reader of the whole input, those bytes included.
///
/// # Errors
///
/// The input cannot be read.
pub fn peek<R: Read>(mut input: R) -> std::io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = Vec::with_capacity(8);
    (&mut input).take(8).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(input)))
}

/// Reads what `input` has at hand (one read, up to 8 bytes: an idle input
/// is not waited for) and gives it back with a reader of the whole input,
/// those bytes included.
///
/// # Errors
///
/// The input cannot be read.
pub fn peek_some<R: Read>(mut input: R) -> std::io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = [0u8; 8];
    let n = loop {
        match input.read(&mut head) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => break read?,
        }
    };
    let head = head[..n].to_vec();
    Ok((head.clone(), Cursor::new(head).chain(input)))
}

/// Record batches read from an Arrow IPC stream or file, whatever its
/// bytes: each message is framed and checked here before arrow-rs's
/// decoder sees it, and a panic inside that decoder is an error.
///
/// An input is untrusted: one changed byte may make a header claim a body
/// of 50 GB, or a buffer beyond its body. So every message's header must
/// be a valid flatbuffer and no larger than `limit`
/// (`python.fn-execution.max-message-size`), its body no larger than
/// `limit` and no larger than what the input holds (it is read as it
/// comes, never allocated ahead), and every buffer of a record or
/// dictionary batch inside its body. A file is read as the stream it
/// holds between its magic and its footer.
pub struct BatchReader<'a> {
    messages: Messages<Box<dyn Read + 'a>>,
    schema: SchemaRef,
    dictionaries: HashMap<i64, ArrayRef>,
    done: bool,
}

impl<'a> BatchReader<'a> {
    /// Reads the stream or file `input` (`name` in errors), telling them
    /// apart by its first bytes, no message larger than `limit` bytes.
    ///
    /// # Errors
    ///
    /// It cannot be read, is neither (JSON is named as such: "use
    /// --format jsonl"), or does not begin with a schema.
    pub fn new(input: impl Read + 'a, name: &str, limit: usize) -> anyhow::Result<BatchReader<'a>> {
        let (head, input) = peek(input).with_context(|| format!("reading {name}"))?;
        let input: Box<dyn Read + 'a> = match Sniffed::of(&head) {
            Sniffed::ArrowFile => {
                let mut bytes = Vec::new();
                BufReader::new(input)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {name}"))?;
                let stream = file_stream(&bytes)
                    .with_context(|| format!("reading {name} as an Arrow IPC file"))?;
                Box::new(Cursor::new(bytes[stream].to_vec()))
            }
            Sniffed::Json => bail!(
                "reading {name} as an Arrow IPC stream: it is JSON Lines, not Arrow IPC \
                 (leave out --format arrow to read JSON Lines)"
            ),
            _ => Box::new(BufReader::new(input)),
        };
        let mut messages = Messages {
            input,
            limit,
            count: 0,
        };
        let context = || format!("reading {name} as an Arrow IPC stream");
        let (header, _) = messages
            .next()
            .map_err(|reason| anyhow::anyhow!("message 1: {reason}"))
            .with_context(context)?
            .with_context(|| format!("{}: it is empty", context()))?;
        let schema = contained(|| {
            let message = arrow_ipc::root_as_message(&header).ok()?;
            message
                .header_as_schema()
                .map(|s| Arc::new(arrow_ipc::convert::fb_to_schema(s)))
        })
        .map_err(|panic| anyhow::anyhow!("a schema arrow-rs cannot read ({panic})"))
        .with_context(context)?
        .with_context(|| format!("{}: it does not begin with a schema", context()))?;
        Ok(BatchReader {
            messages,
            schema,
            dictionaries: HashMap::new(),
            done: false,
        })
    }

    /// Decodes the next message: `Some` batch, or `None` for a
    /// dictionary or the end (then `done`).
    fn message(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let number = self.messages.count + 1;
        let fail = |reason: String| ArrowError::IpcError(format!("message {number}: {reason}"));
        let (header, body) = match self.messages.next() {
            Ok(Some(message)) => message,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(reason) => {
                self.done = true;
                return Err(fail(reason));
            }
        };
        let body = arrow_buffer::Buffer::from_vec(body);
        let (schema, dictionaries) = (&self.schema, &mut self.dictionaries);
        let decoded = contained(|| {
            // Checked already (Messages::next): a valid flatbuffer.
            let message = arrow_ipc::root_as_message(&header).map_err(|e| e.to_string())?;
            let version = message.version();
            match message.header_type() {
                arrow_ipc::MessageHeader::RecordBatch => {
                    let batch = message.header_as_record_batch().ok_or("no record batch")?;
                    arrow_ipc::reader::read_record_batch(
                        &body,
                        batch,
                        schema.clone(),
                        dictionaries,
                        None,
                        &version,
                    )
                    .map(Some)
                    .map_err(|e| e.to_string())
                }
                arrow_ipc::MessageHeader::DictionaryBatch => {
                    let batch = message
                        .header_as_dictionary_batch()
                        .ok_or("no dictionary batch")?;
                    arrow_ipc::reader::read_dictionary(&body, batch, schema, dictionaries, &version)
                        .map(|()| None)
                        .map_err(|e| e.to_string())
                }
                arrow_ipc::MessageHeader::NONE => Ok(None),
                arrow_ipc::MessageHeader::Schema => Err("a second schema".to_owned()),
                other => Err(format!("a {other:?} message, which coil does not read")),
            }
        });
        match decoded {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(reason)) => {
                self.done = true;
                Err(fail(reason))
            }
            Err(panic) => {
                self.done = true;
                Err(fail(format!(
                    "a message arrow-rs's reader cannot decode ({panic})"
                )))
            }
        }
    }
}

impl Iterator for BatchReader<'_> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.message() {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

/// Where the stream inside the Arrow IPC file `bytes` lies: after the
/// leading magic and its padding (to 8 bytes, or more: arrow-rs pads to
/// 64), before the footer that the last 10 bytes (the footer's length and
/// the magic) point at.
fn file_stream(bytes: &[u8]) -> anyhow::Result<std::ops::Range<usize>> {
    let n = bytes.len();
    if n < 18 || !bytes.ends_with(FILE_MAGIC) {
        bail!("it does not end with the magic ARROW1: cut short?");
    }
    let footer = i32::from_le_bytes(bytes[n - 10..n - 6].try_into().expect("4 bytes"));
    let end = usize::try_from(footer)
        .ok()
        .and_then(|f| (n - 10).checked_sub(f))
        .filter(|&end| end >= 8)
        .with_context(|| format!("a footer of {footer} bytes, in a file of {n}"))?;
    let mut start = 8;
    while start + 8 <= end && bytes[start..start + 8] == [0; 8] {
        start += 8;
    }
    Ok(start..end)
}

/// A message as read: its header (a flatbuffer) and its body.
type Message = (Vec<u8>, Vec<u8>);

/// Arrow IPC messages read one at a time, each checked (see
/// [`BatchReader`]).
struct Messages<R> {
    input: R,
    limit: usize,
    /// Messages read so far (the current one's number).
    count: usize,
}

impl<R: Read> Messages<R> {
    /// The next message: its header and its body; `None` at the end of
    /// the stream (its end marker, or the end of the input between
    /// messages).
    fn next(&mut self) -> Result<Option<Message>, String> {
        let mut word = [0u8; 4];
        match read_full(&mut self.input, &mut word)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err("the input ends inside a message's length".into()),
        }
        self.count += 1;
        if word == CONTINUATION && read_full(&mut self.input, &mut word)? != 4 {
            return Err("the input ends inside a message's length".into());
        }
        let length = u32::from_le_bytes(word) as usize;
        if length == 0 {
            return Ok(None);
        }
        if length > self.limit {
            return Err(format!(
                "a message header of {length} bytes, more than python.fn-execution.max-message-size ({})",
                self.limit
            ));
        }
        let mut header = Vec::new();
        (&mut self.input)
            .take(length as u64)
            .read_to_end(&mut header)
            .map_err(|e| format!("reading: {e}"))?;
        if header.len() != length {
            return Err("the input ends inside a message header".into());
        }
        let length = checked_body(&header, self.limit)?;
        // Read as it comes: a length the input does not hold allocates
        // only what the input does hold.
        let mut body = Vec::new();
        (&mut self.input)
            .take(length as u64)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading: {e}"))?;
        if body.len() != length {
            return Err(format!(
                "the input ends inside a message body ({} of {length} bytes)",
                body.len()
            ));
        }
        Ok(Some((header, body)))
    }
}

/// Reads into `buf` until it is full or the input ends; how many bytes.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
    Ok(n)
}

/// The body length the message header `header` states, checked: the
/// header a valid flatbuffer, the body within `limit`, and each buffer of
/// a record or dictionary batch within the body.
fn checked_body(header: &[u8], limit: usize) -> Result<usize, String> {
    let message = arrow_ipc::root_as_message(header)
        .map_err(|e| format!("a message header that is not Arrow IPC ({e})"))?;
    let body = message.bodyLength();
    let body = usize::try_from(body)
        .ok()
        .filter(|&b| b <= limit)
        .ok_or_else(|| {
            format!(
                "a message body of {body} bytes: beyond python.fn-execution.max-message-size ({limit})"
            )
        })?;
    let batch = match message.header_type() {
        arrow_ipc::MessageHeader::RecordBatch => message.header_as_record_batch(),
        arrow_ipc::MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => None,
    };
    if let Some(batch) = batch {
        if batch.length() < 0 {
            return Err(format!("a batch of {} rows", batch.length()));
        }
        for node in batch.nodes().iter().flatten() {
            if node.length() < 0 || node.null_count() < 0 || node.null_count() > node.length() {
                return Err(format!(
                    "a column of {} rows with {} nulls",
                    node.length(),
                    node.null_count()
                ));
            }
        }
        for buffer in batch.buffers().iter().flatten() {
            let (offset, length) = (buffer.offset(), buffer.length());
            let inside = offset >= 0
                && length >= 0
                && offset
                    .checked_add(length)
                    .is_some_and(|end| end as u64 <= body as u64);
            if !inside {
                return Err(format!(
                    "a buffer at bytes {offset}..+{length} of a {body}-byte body"
                ));
            }
        }
    }
    Ok(body)
}

thread_local! {
    /// Whether a panic on this thread is being contained (and so is not
    /// printed by the panic hook).
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a panic in it given back as its message: for arrow-rs's
/// reader, which may panic on bytes its checks let through.
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    CONTAINING.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

/// Reads every record batch of the Arrow IPC stream or file at `path`.
///
/// # Errors
///
/// The file cannot be read, is not Arrow IPC (naming the 1-based batch
/// that is broken), or holds no rows. No message may exceed `limit` bytes.
pub fn read_batches(path: &Path, limit: usize) -> anyhow::Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.display().to_string();
    let mut batches = Vec::new();
    for (i, batch) in BatchReader::new(file, &name, limit)?.enumerate() {
        batches.push(batch.with_context(|| format!("{name}: reading Arrow IPC batch {}", i + 1))?);
    }
    if batches.iter().all(|b| b.num_rows() == 0) {
        bail!("{name} holds no rows");
    }
    Ok(batches)
}

/// Whether results written to `path` go in the Arrow IPC file format: its
/// name ends in `.arrow` or `.feather`.
pub fn writes_a_file(path: Option<&Path>) -> bool {
    path.and_then(Path::extension)
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("arrow") || e.eq_ignore_ascii_case("feather"))
}

/// Record batches written as an Arrow IPC stream or file.
pub enum BatchWriter<W: Write> {
    /// A stream.
    Stream(StreamWriter<W>),
    /// A file.
    File(FileWriter<W>),
}

impl<W: Write> BatchWriter<W> {
    /// Writes batches of `schema` to `out`, as a file if `file`.
    ///
    /// # Errors
    ///
    /// The schema cannot be written.
    pub fn new(out: W, schema: &Schema, file: bool) -> Result<BatchWriter<W>, ArrowError> {
        Ok(if file {
            BatchWriter::File(FileWriter::try_new(out, schema)?)
        } else {
            BatchWriter::Stream(StreamWriter::try_new(out, schema)?)
        })
    }

    /// Writes `batch`.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            BatchWriter::Stream(w) => w.write(batch),
            BatchWriter::File(w) => w.write(batch),
        }
    }

    /// Flushes what was written to the output.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub fn flush(&mut self) -> Result<(), ArrowError> {
        match self {
            BatchWriter::Stream(w) => w.flush(),
            BatchWriter::File(w) => w.flush(),
        }
    }

    /// Ends the stream (or writes the file's footer), and flushes.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub fn finish(&mut self) -> Result<(), ArrowError> {
        match self {
            BatchWriter::Stream(w) => w.finish().and_then(|()| w.flush()),
            BatchWriter::File(w) => w.finish().and_then(|()| w.flush()),
        }
    }
}

/// The schema of `coil run --format arrow`'s output: one nullable column,
/// `result`, of the declared type.
pub fn result_schema(declared: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "result",
        declared.clone(),
        true,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coil_host::arrow_array::{ArrayRef, Int64Array};

    fn batch(values: Vec<i64>) -> RecordBatch {
        let column: ArrayRef = Arc::new(Int64Array::from(values));
        RecordBatch::try_from_iter([("x", column)]).unwrap()
    }

    fn written(file: bool) -> Vec<u8> {
        let b = batch(vec![1, 2]);
        let mut w = BatchWriter::new(Vec::new(), &b.schema(), file).unwrap();
        w.write(&b).unwrap();
        w.write(&batch(vec![3])).unwrap();
        w.finish().unwrap();
        match w {
            BatchWriter::Stream(w) => w.into_inner().unwrap(),
            BatchWriter::File(w) => w.into_inner().unwrap(),
        }
    }

    #[test]
    fn first_bytes_tell_a_file_from_a_stream_from_json() {
        assert_eq!(Sniffed::of(&written(true)), Sniffed::ArrowFile);
        assert_eq!(Sniffed::of(&written(false)), Sniffed::ArrowStream);
        assert_eq!(Sniffed::of(b"  [1, 2]\n"), Sniffed::Json);
        assert_eq!(Sniffed::of(b""), Sniffed::Other);
        assert_eq!(Sniffed::of(b"1,2"), Sniffed::Other);
    }

    #[test]
    fn both_formats_read_back_batch_by_batch() {
        for file in [false, true] {
            let bytes = written(file);
            let rows: Vec<usize> = BatchReader::new(Cursor::new(bytes), "input", 1 << 20)
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .collect();
            assert_eq!(rows, [2, 1], "file: {file}");
        }
    }

    /// A stream or file of three columns that carry offsets and validity
    /// (int64 with nulls, utf8, list of int64), in two batches.
    fn varied(file: bool) -> Vec<u8> {
        use coil_host::arrow_array::types::Int64Type;
        use coil_host::arrow_array::{ListArray, StringArray};
        let make = |base: i64| {
            let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(base), None, Some(base + 2)]));
            let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("bcd"), None]));
            let lists: ArrayRef =
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                    Some(vec![Some(base), None]),
                    None,
                    Some(vec![]),
                ]));
            RecordBatch::try_from_iter([("i", ints), ("s", text), ("l", lists)]).unwrap()
        };
        let first = make(1);
        let mut w = BatchWriter::new(Vec::new(), &first.schema(), file).unwrap();
        w.write(&first).unwrap();
        w.write(&make(10)).unwrap();
        w.finish().unwrap();
        match w {
            BatchWriter::Stream(w) => w.into_inner().unwrap(),
            BatchWriter::File(w) => w.into_inner().unwrap(),
        }
    }

    /// Reads `bytes` to the end: the rows read, or the first error.
    fn read_all(bytes: Vec<u8>) -> Result<usize, String> {
        let reader =
            BatchReader::new(Cursor::new(bytes), "input", 1 << 20).map_err(|e| format!("{e:#}"))?;
        let mut rows = 0;
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            rows += batch.num_rows();
        }
        Ok(rows)
    }

    #[test]
    fn every_byte_of_a_stream_or_file_changed_is_read_or_refused_never_a_crash() {
        for file in [false, true] {
            let good = varied(file);
            assert_eq!(read_all(good.clone()), Ok(6));
            let (mut read, mut refused) = (0, 0);
            let mut arrow_panics = 0;
            for at in 0..good.len() {
                let b = good[at];
                for value in [0x00, 0xff, b ^ 0x01, b ^ 0x80, b.wrapping_add(0x40)] {
                    if value == b {
                        continue;
                    }
                    let mut bad = good.clone();
                    bad[at] = value;
                    match read_all(bad) {
                        Ok(_) => read += 1,
                        Err(e) => {
                            refused += 1;
                            arrow_panics += usize::from(e.contains("cannot decode"));
                        }
                    }
                }
            }
            eprintln!(
                "{} bytes ({}): {read} changed inputs read, {refused} refused \
                 ({arrow_panics} by a contained panic of arrow-rs)",
                good.len(),
                if file { "file" } else { "stream" }
            );
            assert!(refused > 0);
        }
    }

    #[test]
    fn random_changes_of_a_few_bytes_and_cuts_are_read_or_refused() {
        // xorshift: the same cases every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // tools/fuzz asks for more with PROPTEST_CASES.
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(3_000, |n: u32| n.max(3_000));
        for file in [false, true] {
            let good = varied(file);
            for _ in 0..cases {
                let mut bad = good.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bad.len() as u64) as usize;
                    bad[at] = next() as u8;
                }
                if next() % 4 == 0 {
                    bad.truncate((next() % bad.len() as u64) as usize);
                }
                let _ = read_all(bad);
            }
        }
    }

    #[test]
    fn a_header_claiming_a_huge_body_is_refused_before_anything_is_allocated() {
        // A schema, then a record batch header whose body length claims
        // far more than the input holds or the limit allows.
        let good = varied(false);
        let mut reader = Messages {
            input: Cursor::new(good.clone()),
            limit: 1 << 20,
            count: 0,
        };
        let schema = 8 + reader.next().unwrap().unwrap().0.len();
        let (header, _) = reader.next().unwrap().unwrap();
        let header = &header[..];
        let message = arrow_ipc::root_as_message(header).unwrap();
        let body = message.bodyLength();
        // Find the body length's bytes in the header and make it 2^40.
        let needle = body.to_le_bytes();
        let at = header.windows(8).position(|w| w == needle).unwrap();
        let mut bad = good.clone();
        bad[schema + 8 + at..schema + 8 + at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        let e = read_all(bad).unwrap_err();
        assert!(e.contains("max-message-size"), "{e}");
    }

    #[test]
    fn a_file_cut_short_is_named_so() {
        let mut bytes = varied(true);
        bytes.truncate(bytes.len() - 3);
        let e = read_all(bytes).unwrap_err();
        assert!(e.contains("cut short"), "{e}");
    }

    #[test]
    fn json_lines_given_as_arrow_is_named() {
        let e = BatchReader::new(Cursor::new(b"[1]\n".to_vec()), "standard input", 1 << 20)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("it is JSON Lines, not Arrow IPC"), "{e}");
    }

    #[test]
    fn peek_gives_back_every_byte() {
        let (head, mut rest) = peek(Cursor::new(b"0123456789".to_vec())).unwrap();
        assert_eq!(head, b"01234567");
        let mut all = Vec::new();
        rest.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0123456789");
    }

    #[test]
    fn arrow_and_feather_names_get_the_file_format() {
        for (name, file) in [
            ("out.arrow", true),
            ("out.FEATHER", true),
            ("out.arrows", false),
            ("out", false),
        ] {
            assert_eq!(writes_a_file(Some(Path::new(name))), file, "{name}");
        }
        assert!(!writes_a_file(None));
    }
}
