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
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::writer::{FileWriter, StreamWriter};
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

/// Record batches read from an Arrow IPC stream or file.
pub enum BatchReader<'a> {
    /// A stream, read as it comes.
    Stream(StreamReader<BufReader<Box<dyn Read + 'a>>>),
    /// A file, read whole first (its footer is at its end).
    File(FileReader<Cursor<Vec<u8>>>),
}

impl<'a> BatchReader<'a> {
    /// Reads the stream or file `input` (`name` in errors), telling them
    /// apart by its first bytes.
    ///
    /// # Errors
    ///
    /// It cannot be read, or is neither; JSON is named as such
    /// ("use --format jsonl").
    pub fn new(input: impl Read + 'a, name: &str) -> anyhow::Result<BatchReader<'a>> {
        let (head, input) = peek(input).with_context(|| format!("reading {name}"))?;
        let input: Box<dyn Read + 'a> = Box::new(input);
        match Sniffed::of(&head) {
            Sniffed::ArrowFile => {
                let mut bytes = Vec::new();
                BufReader::new(input)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {name}"))?;
                let reader = FileReader::try_new(Cursor::new(bytes), None)
                    .with_context(|| format!("reading {name} as an Arrow IPC file"))?;
                Ok(BatchReader::File(reader))
            }
            Sniffed::Json => bail!(
                "reading {name} as an Arrow IPC stream: it is JSON Lines, not Arrow IPC \
                 (leave out --format arrow to read JSON Lines)"
            ),
            _ => {
                let reader = StreamReader::try_new(BufReader::new(input), None)
                    .with_context(|| format!("reading {name} as an Arrow IPC stream"))?;
                Ok(BatchReader::Stream(reader))
            }
        }
    }
}

impl Iterator for BatchReader<'_> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            BatchReader::Stream(r) => r.next(),
            BatchReader::File(r) => r.next(),
        }
    }
}

/// Reads every record batch of the Arrow IPC stream or file at `path`.
///
/// # Errors
///
/// The file cannot be read, is not Arrow IPC (naming the 1-based batch
/// that is broken), or holds no rows.
pub fn read_batches(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.display().to_string();
    let mut batches = Vec::new();
    for (i, batch) in BatchReader::new(file, &name)?.enumerate() {
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
            let rows: Vec<usize> = BatchReader::new(Cursor::new(bytes), "input")
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .collect();
            assert_eq!(rows, [2, 1], "file: {file}");
        }
    }

    #[test]
    fn json_lines_given_as_arrow_is_named() {
        let e = BatchReader::new(Cursor::new(b"[1]\n".to_vec()), "standard input")
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
