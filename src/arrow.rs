//! Arrow IPC streams for the `coil` CLI (`--format arrow`): the types
//! `--returns` names for a result column, reading a stream of record
//! batches, and cell values as JSON for the errors file and for comparing
//! results.
//!
//! The core crates move Arrow arrays in their own column frames; Arrow IPC
//! is only how the command line reads and writes them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use coil_host::arrow_array::{self, Array, RecordBatch};
use coil_host::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use coil_ipc::Value;
use serde_json::Value as Json;

use crate::json::to_json;

/// The types `--returns` names by a word alone, and the Arrow type each
/// names.
const TYPE_NAMES: &[(&str, DataType)] = &[
    ("null", DataType::Null),
    ("bool", DataType::Boolean),
    ("int8", DataType::Int8),
    ("int16", DataType::Int16),
    ("int32", DataType::Int32),
    ("int64", DataType::Int64),
    ("uint8", DataType::UInt8),
    ("uint16", DataType::UInt16),
    ("uint32", DataType::UInt32),
    ("uint64", DataType::UInt64),
    ("float32", DataType::Float32),
    ("float64", DataType::Float64),
    ("utf8", DataType::Utf8),
    ("large_utf8", DataType::LargeUtf8),
    ("utf8_view", DataType::Utf8View),
    ("binary", DataType::Binary),
    ("large_binary", DataType::LargeBinary),
    ("binary_view", DataType::BinaryView),
    ("date32", DataType::Date32),
    ("date64", DataType::Date64),
];

/// The forms with parameters [`parse_type`] takes, as [`type_forms`] lists
/// them.
const PARAMETRIC_FORMS: &[&str] = &[
    "decimal128(P,S)",
    "decimal256(P,S)",
    "time32[s|ms]",
    "time64[us|ns]",
    "timestamp[s|ms|us|ns]",
    "timestamp[UNIT,ZONE]",
    "duration[s|ms|us|ns]",
    "list<T>",
    "large_list<T>",
    "fixed_size_list<T,N>",
    "struct<NAME:T,...>",
    "map<K,V>",
];

/// Why [`parse_type`] refused a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeProblem {
    /// A word that names no type.
    Unknown(String),
    /// Something other than what the grammar has next.
    Expected {
        /// What would have been taken there.
        expected: &'static str,
        /// What was there: a quoted word or character, or "the end".
        found: String,
    },
    /// A unit the type does not take.
    Unit {
        /// The type: `time32`, `time64`, `timestamp` or `duration`.
        of: &'static str,
        /// The unit given.
        unit: String,
    },
    /// A decimal's precision out of its range.
    Precision {
        /// `decimal128` or `decimal256`.
        of: &'static str,
        /// The precision given.
        precision: String,
    },
    /// A decimal's scale out of its range.
    Scale {
        /// `decimal128` or `decimal256`.
        of: &'static str,
        /// The precision, which the scale may not exceed.
        precision: u8,
        /// The scale given.
        scale: String,
    },
    /// A fixed-size list's size out of `0..=i32::MAX`.
    Size(String),
    /// `struct<>`: a struct without fields.
    NoFields,
    /// A struct field name given twice.
    DuplicateField(String),
    /// A struct field's name or a time zone left empty.
    Empty(&'static str),
}

/// The largest precision of `of`, `decimal128` or `decimal256`.
fn decimal_limit(of: &str) -> u8 {
    if of == "decimal128" {
        38
    } else {
        76
    }
}

impl fmt::Display for TypeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeProblem::Unknown(name) => write!(f, "unknown type {name:?}"),
            TypeProblem::Expected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            TypeProblem::Unit { of, unit } => {
                let takes = match *of {
                    "time32" => "s or ms",
                    "time64" => "us or ns",
                    _ => "s, ms, us or ns",
                };
                write!(f, "{of} takes the unit {takes}, not {unit:?}")
            }
            TypeProblem::Precision { of, precision } => write!(
                f,
                "{of}'s precision is 1 to {}, not {precision}",
                decimal_limit(of)
            ),
            TypeProblem::Scale {
                of,
                precision,
                scale,
            } => write!(
                f,
                "{of}({precision},S)'s scale S is -{} to {precision}, not {scale}",
                decimal_limit(of)
            ),
            TypeProblem::Size(size) => write!(
                f,
                "a fixed_size_list's size is 0 to {}, not {size}",
                i32::MAX
            ),
            TypeProblem::NoFields => write!(f, "a struct needs at least one field"),
            TypeProblem::DuplicateField(name) => {
                write!(f, "the struct field {name:?} is named twice")
            }
            TypeProblem::Empty(what) => write!(f, "{what} is empty"),
        }
    }
}

/// A `--returns` type [`parse_type`] refused: what was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadType {
    /// The type as given.
    pub given: String,
    /// Where in it the problem is: the character, from 1.
    pub at: usize,
    /// What was wrong.
    pub problem: TypeProblem,
}

impl fmt::Display for BadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at character {} of {:?}; the types taken: {}",
            self.problem,
            self.at,
            self.given,
            type_forms()
        )
    }
}

impl std::error::Error for BadType {}

/// The type forms [`parse_type`] takes, comma-separated: the plain names,
/// then the forms with parameters (`T`, `K` and `V` being types
/// themselves).
pub fn type_forms() -> String {
    TYPE_NAMES
        .iter()
        .map(|(name, _)| *name)
        .chain(PARAMETRIC_FORMS.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Arrow type a `--returns` type names. The grammar, `T` standing for
/// any type:
///
/// - a plain name: `null`, `bool` (or `boolean`), `int8`…`int64`,
///   `uint8`…`uint64`, `float32`, `float64`, `utf8`, `large_utf8`,
///   `utf8_view`, `binary`, `large_binary`, `binary_view`, `date32`,
///   `date64`;
/// - `decimal128(P,S)` (precision 1 to 38) and `decimal256(P,S)` (1 to
///   76), the scale `S` at most `P`, and negative for that many zeros
///   before the point;
/// - `time32[s|ms]`, `time64[us|ns]`, `duration[s|ms|us|ns]`;
/// - `timestamp[UNIT]` (no time zone) or `timestamp[UNIT,ZONE]`, the zone
///   as Arrow spells it: `+02:00`, `UTC`, `Europe/Paris`;
/// - `list<T>`, `large_list<T>`, `fixed_size_list<T,N>` (`N` from 0),
///   their item field nullable and named `item`;
/// - `struct<NAME:T,...>`, each field nullable and named as given;
/// - `map<K,V>`, as arrow-rs's `MapBuilder` makes maps: the field
///   `entries` of non-nullable `keys` and nullable `values`, unsorted.
///
/// Words and units may be in any case; field names and zones are kept as
/// given. Spaces between the parts are allowed. Whether
/// `Runner::call_arrow` returns the type is its own to say when it runs
/// (a zone's name, for one, is looked up there).
///
/// # Errors
///
/// [`BadType`]: what was wrong and where, its message listing the forms
/// taken.
///
/// # Examples
///
/// ```
/// use coil_host::arrow_schema::{DataType, Field, TimeUnit};
///
/// assert_eq!(coil::arrow::parse_type("Int64").unwrap(), DataType::Int64);
/// assert_eq!(
///     coil::arrow::parse_type("timestamp[us, Europe/Paris]").unwrap(),
///     DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into()))
/// );
/// assert_eq!(
///     coil::arrow::parse_type("list<decimal128(10,2)>").unwrap(),
///     DataType::List(Field::new_list_field(DataType::Decimal128(10, 2), true).into())
/// );
/// let e = coil::arrow::parse_type("list<decimal>").unwrap_err();
/// assert!(e.to_string().starts_with("unknown type \"decimal\" at character 6"));
/// ```
pub fn parse_type(given: &str) -> Result<DataType, BadType> {
    let mut c = Cursor { text: given, at: 0 };
    let parsed = c.ty().and_then(|t| {
        c.space();
        if c.at == given.len() {
            Ok(t)
        } else {
            Err(c.expected("the end of the type"))
        }
    });
    parsed.map_err(|(at, problem)| BadType {
        given: given.into(),
        at: given[..at].chars().count() + 1,
        problem,
    })
}

/// A problem, at a byte offset into the type.
type Refusal = (usize, TypeProblem);

/// [`parse_type`]'s place in the text it reads.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The text not read yet.
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    /// Past any spaces.
    fn space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    /// The run of characters from here (after spaces) that `keep` takes.
    fn run(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        self.space();
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// The word (letters, digits, `_`) from here; empty if none.
    fn word(&mut self) -> &'a str {
        self.run(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// Whether `c` comes next (after spaces); taken if so.
    fn eat(&mut self, c: char) -> bool {
        self.space();
        let taken = self.rest().starts_with(c);
        if taken {
            self.at += c.len_utf8();
        }
        taken
    }

    /// Takes `c`, which must come next: else what does is not `expected`.
    fn expect(&mut self, c: char, expected: &'static str) -> Result<(), Refusal> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.expected(expected))
        }
    }

    /// What comes next is not `expected`.
    fn expected(&mut self, expected: &'static str) -> Refusal {
        self.space();
        let rest = self.rest();
        let found = match rest.chars().next() {
            None => "the end".to_string(),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                let len = rest[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(rest.len(), |l| l + 1);
                format!("{:?}", &rest[..len])
            }
            Some(c) => format!("{:?}", c.to_string()),
        };
        (self.at, TypeProblem::Expected { expected, found })
    }

    /// A type, and its parameters if it takes any.
    fn ty(&mut self) -> Result<DataType, Refusal> {
        self.space();
        let start = self.at;
        let word = self.word();
        if word.is_empty() {
            return Err(self.expected("a type"));
        }
        // The words that take parameters, and what reads them.
        let forms: [(&'static str, Form<'a>); 11] = [
            ("decimal128", Cursor::decimal),
            ("decimal256", Cursor::decimal),
            ("time32", Cursor::timed),
            ("time64", Cursor::timed),
            ("timestamp", Cursor::timed),
            ("duration", Cursor::timed),
            ("list", Cursor::list),
            ("large_list", Cursor::list),
            ("fixed_size_list", Cursor::list),
            ("struct", Cursor::fields),
            ("map", Cursor::map),
        ];
        let lower = word.to_ascii_lowercase();
        if let Some((of, form)) = forms.iter().find(|(of, _)| *of == lower) {
            return form(self, of, start);
        }
        let lower = if lower == "boolean" { "bool" } else { &lower };
        TYPE_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| (start, TypeProblem::Unknown(word.into())))
    }

    /// A number (digits, perhaps after a minus) and where it starts; empty
    /// if there is none.
    fn number(&mut self) -> (usize, &'a str) {
        self.space();
        let at = self.at;
        (at, self.run(|c| c.is_ascii_digit() || c == '-'))
    }

    /// `(P,S)` after `decimal128` or `decimal256`.
    fn decimal(&mut self, of: &'static str, _: usize) -> Result<DataType, Refusal> {
        self.expect('(', "\"(\" and the precision after the type's name")?;
        let (p_at, p) = self.number();
        if p.is_empty() {
            return Err(self.expected("a precision"));
        }
        let precision = p
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=decimal_limit(of)).contains(p))
            .ok_or_else(|| {
                let precision = p.into();
                (p_at, TypeProblem::Precision { of, precision })
            })?;
        self.expect(',', "\",\" and the scale after the precision")?;
        let (s_at, s) = self.number();
        if s.is_empty() {
            return Err(self.expected("a scale"));
        }
        let limit = i16::from(decimal_limit(of));
        let scale = s
            .parse::<i16>()
            .ok()
            .filter(|s| (-limit..=i16::from(precision)).contains(s))
            .and_then(|s| i8::try_from(s).ok())
            .ok_or_else(|| {
                let scale = s.into();
                let problem = TypeProblem::Scale {
                    of,
                    precision,
                    scale,
                };
                (s_at, problem)
            })?;
        self.expect(')', "\")\" after the scale")?;
        Ok(if of == "decimal128" {
            DataType::Decimal128(precision, scale)
        } else {
            DataType::Decimal256(precision, scale)
        })
    }

    /// `[UNIT]` after `time32`, `time64`, `timestamp` or `duration`, or
    /// `[UNIT,ZONE]` after `timestamp`.
    fn timed(&mut self, of: &'static str, _: usize) -> Result<DataType, Refusal> {
        use TimeUnit::*;
        self.expect('[', "\"[\" and a unit after the type's name")?;
        self.space();
        let u_at = self.at;
        let given = self.word();
        let unit = match given.to_ascii_lowercase().as_str() {
            "" => return Err(self.expected("a unit (s, ms, us or ns)")),
            "s" => Some(Second),
            "ms" => Some(Millisecond),
            "us" => Some(Microsecond),
            "ns" => Some(Nanosecond),
            _ => None,
        };
        let t = match (of, unit) {
            ("time32", Some(u @ (Second | Millisecond))) => DataType::Time32(u),
            ("time64", Some(u @ (Microsecond | Nanosecond))) => DataType::Time64(u),
            ("duration", Some(u)) => DataType::Duration(u),
            ("timestamp", Some(u)) => {
                let zone = if self.eat(',') {
                    self.space();
                    let z_at = self.at;
                    let zone = self.run(|c| c != ']').trim_end();
                    if zone.is_empty() {
                        return Err((z_at, TypeProblem::Empty("the time zone")));
                    }
                    Some(zone.into())
                } else {
                    None
                };
                DataType::Timestamp(u, zone)
            }
            _ => {
                let unit = given.into();
                return Err((u_at, TypeProblem::Unit { of, unit }));
            }
        };
        self.expect(
            ']',
            if of == "timestamp" {
                "\"]\", or \",\" and a time zone, after the unit"
            } else {
                "\"]\" after the unit"
            },
        )?;
        Ok(t)
    }

    /// `<T>` after `list` or `large_list`, `<T,N>` after
    /// `fixed_size_list`.
    fn list(&mut self, of: &'static str, _: usize) -> Result<DataType, Refusal> {
        self.expect('<', "\"<\" and the item type after the list's name")?;
        let item = Arc::new(Field::new_list_field(self.ty()?, true));
        if of != "fixed_size_list" {
            self.expect('>', "\">\" after the item type")?;
            return Ok(if of == "list" {
                DataType::List(item)
            } else {
                DataType::LargeList(item)
            });
        }
        self.expect(',', "\",\" and the size after the item type")?;
        let (n_at, n) = self.number();
        if n.is_empty() {
            return Err(self.expected("the size"));
        }
        let size = n
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| (n_at, TypeProblem::Size(n.into())))?;
        self.expect('>', "\">\" after the size")?;
        Ok(DataType::FixedSizeList(item, size))
    }

    /// `<NAME:T,...>` after `struct` (which starts at `start`).
    fn fields(&mut self, _: &'static str, start: usize) -> Result<DataType, Refusal> {
        self.expect('<', "\"<\" and the fields after struct")?;
        if self.eat('>') {
            return Err((start, TypeProblem::NoFields));
        }
        let mut fields: Vec<Field> = Vec::new();
        loop {
            self.space();
            let n_at = self.at;
            let name = self.run(|c| !":,<>()[]".contains(c)).trim_end();
            if name.is_empty() {
                return Err(if self.rest().starts_with(':') {
                    (n_at, TypeProblem::Empty("a struct field's name"))
                } else {
                    self.expected("a field, NAME:TYPE")
                });
            }
            if fields.iter().any(|f| f.name() == name) {
                return Err((n_at, TypeProblem::DuplicateField(name.into())));
            }
            self.expect(':', "\":\" and the field's type after its name")?;
            fields.push(Field::new(name, self.ty()?, true));
            if !self.eat(',') {
                break;
            }
        }
        self.expect('>', "\",\" and a field, or \">\", after a field")?;
        Ok(DataType::Struct(fields.into()))
    }

    /// `<K,V>` after `map`: entries as arrow-rs's `MapBuilder` makes them.
    fn map(&mut self, _: &'static str, _: usize) -> Result<DataType, Refusal> {
        self.expect('<', "\"<\" and the key type after map")?;
        let keys = self.ty()?;
        self.expect(',', "\",\" and the value type after the key type")?;
        let values = self.ty()?;
        self.expect('>', "\">\" after the value type")?;
        let entries = DataType::Struct(
            vec![
                Field::new("keys", keys, false),
                Field::new("values", values, true),
            ]
            .into(),
        );
        Ok(DataType::Map(
            Arc::new(Field::new("entries", entries, false)),
            false,
        ))
    }
}

/// Reads the parameters of the type named by a word, given the word and
/// where it starts.
type Form<'a> = fn(&mut Cursor<'a>, &'static str, usize) -> Result<DataType, Refusal>;

/// The schema of `coil run --format arrow`'s output: one nullable column,
/// `result`, of the declared type.
pub fn result_schema(declared: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "result",
        declared.clone(),
        true,
    )]))
}

/// Reads every record batch of the Arrow IPC stream in `path`.
///
/// # Errors
///
/// The file cannot be read, is not an Arrow IPC stream (naming the 1-based
/// batch that is broken), or holds no rows.
pub fn read_stream(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = arrow_ipc::reader::StreamReader::try_new_buffered(file, None)
        .with_context(|| format!("{} is not an Arrow IPC stream", path.display()))?;
    let mut batches = Vec::new();
    for (i, batch) in reader.enumerate() {
        batches.push(
            batch.with_context(|| {
                format!("{}: reading Arrow IPC batch {}", path.display(), i + 1)
            })?,
        );
    }
    if batches.iter().all(|b| b.num_rows() == 0) {
        bail!("{} holds no rows", path.display());
    }
    Ok(batches)
}

/// Row `row` of `array` as JSON, as `coil run` writes values (bytes as
/// `{"$bytes": "<hex>"}`, NaN and infinities as `null`); `None` for a type
/// coil does not take.
pub fn json_at(array: &dyn Array, row: usize) -> Option<Json> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(row) {
        return Some(Json::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Value::Int(i64::from(array.as_primitive::<$t>().value(row)))
        };
    }
    let value = match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        // Beyond i64, which coil's values do not hold, but JSON does.
        DataType::UInt64 => return Some(Json::from(array.as_primitive::<UInt64Type>().value(row))),
        DataType::Float32 => {
            Value::Float(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).into()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).into()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).into()),
        _ => return None,
    };
    Some(to_json(&value))
}

/// Row `row` of `batch` (every column's value) as a JSON array; `None` if
/// a column is of a type coil does not take.
pub fn row_json(batch: &RecordBatch, row: usize) -> Option<Json> {
    batch
        .columns()
        .iter()
        .map(|c| json_at(c.as_ref(), row))
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{
        FixedSizeListBuilder, Int32Builder, Int64Builder, LargeListBuilder, ListBuilder,
        MapBuilder, StringBuilder,
    };
    use arrow_array::{
        BinaryArray, Float32Array, Int64Array, LargeStringArray, NullArray, UInt64Array,
    };
    use coil_host::arrow_schema::Fields;

    fn item(t: DataType) -> Arc<Field> {
        Arc::new(Field::new_list_field(t, true))
    }

    #[test]
    fn every_plain_name_parses_to_its_type_whatever_its_case() {
        for (name, t) in TYPE_NAMES {
            assert_eq!(parse_type(name).as_ref(), Ok(t), "{name}");
            let upper = name.to_ascii_uppercase();
            assert_eq!(parse_type(&upper).as_ref(), Ok(t), "{name}");
        }
        assert_eq!(parse_type(" boolean "), Ok(DataType::Boolean));
        assert_eq!(parse_type("utf8_view"), Ok(DataType::Utf8View));
        assert_eq!(parse_type("binary_view"), Ok(DataType::BinaryView));
    }

    #[test]
    fn every_form_with_parameters_parses_to_its_type() {
        use TimeUnit::*;
        let zoned = |u, z: &str| DataType::Timestamp(u, Some(z.into()));
        let cases = [
            ("decimal128(10,2)", DataType::Decimal128(10, 2)),
            ("Decimal128( 38 , -3 )", DataType::Decimal128(38, -3)),
            ("decimal128(1,0)", DataType::Decimal128(1, 0)),
            ("decimal256(40,5)", DataType::Decimal256(40, 5)),
            ("decimal256(76,76)", DataType::Decimal256(76, 76)),
            ("time32[s]", DataType::Time32(Second)),
            ("time32[MS]", DataType::Time32(Millisecond)),
            ("time64[us]", DataType::Time64(Microsecond)),
            ("time64[ns]", DataType::Time64(Nanosecond)),
            ("timestamp[s]", DataType::Timestamp(Second, None)),
            ("timestamp[ms]", DataType::Timestamp(Millisecond, None)),
            ("timestamp[us]", DataType::Timestamp(Microsecond, None)),
            ("timestamp[ns]", DataType::Timestamp(Nanosecond, None)),
            (
                "timestamp[us,Europe/Paris]",
                zoned(Microsecond, "Europe/Paris"),
            ),
            ("TIMESTAMP[NS, +05:30 ]", zoned(Nanosecond, "+05:30")),
            ("timestamp[s,UTC]", zoned(Second, "UTC")),
            ("duration[s]", DataType::Duration(Second)),
            ("duration[ms]", DataType::Duration(Millisecond)),
            ("duration[us]", DataType::Duration(Microsecond)),
            ("duration[ns]", DataType::Duration(Nanosecond)),
            ("list<int64>", DataType::List(item(DataType::Int64))),
            (
                "large_list<utf8>",
                DataType::LargeList(item(DataType::Utf8)),
            ),
            (
                "fixed_size_list<int32,2>",
                DataType::FixedSizeList(item(DataType::Int32), 2),
            ),
            (
                "fixed_size_list<bool, 0>",
                DataType::FixedSizeList(item(DataType::Boolean), 0),
            ),
            (
                "list<list<timestamp[ms,UTC]>>",
                DataType::List(item(DataType::List(item(zoned(Millisecond, "UTC"))))),
            ),
            (
                "struct<a:int64, Its b : list<utf8>>",
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("Its b", DataType::List(item(DataType::Utf8)), true),
                ])),
            ),
        ];
        for (given, t) in cases {
            assert_eq!(parse_type(given), Ok(t), "{given}");
        }
        let map = parse_type("map<utf8, struct<x:float64>>").unwrap();
        let DataType::Map(entries, sorted) = &map else {
            panic!("{map}")
        };
        assert!(!sorted && !entries.is_nullable() && entries.name() == "entries");
        assert_eq!(
            entries.data_type(),
            &DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new(
                    "values",
                    DataType::Struct(vec![Field::new("x", DataType::Float64, true)].into()),
                    true
                ),
            ]))
        );
    }

    #[test]
    fn nested_types_are_the_types_arrow_rs_builders_make() {
        let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        assert_eq!(
            parse_type("map<utf8,int64>").as_ref(),
            Ok(map.finish().data_type())
        );
        let mut list = ListBuilder::new(Int64Builder::new());
        assert_eq!(
            parse_type("list<int64>").as_ref(),
            Ok(list.finish().data_type())
        );
        let mut large = LargeListBuilder::new(StringBuilder::new());
        assert_eq!(
            parse_type("large_list<utf8>").as_ref(),
            Ok(large.finish().data_type())
        );
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 2);
        assert_eq!(
            parse_type("fixed_size_list<int32,2>").as_ref(),
            Ok(fixed.finish().data_type())
        );
    }

    #[test]
    fn a_type_refused_names_what_was_wrong_and_where() {
        let expected = |expected, found: &str| TypeProblem::Expected {
            expected,
            found: found.into(),
        };
        let unit = |of, unit: &str| TypeProblem::Unit {
            of,
            unit: unit.into(),
        };
        let cases = [
            ("decimal", 1, TypeProblem::Unknown("decimal".into())),
            ("list<Int65>", 6, TypeProblem::Unknown("Int65".into())),
            ("", 1, expected("a type", "the end")),
            ("  ", 3, expected("a type", "the end")),
            (
                "int64 int32",
                7,
                expected("the end of the type", "\"int32\""),
            ),
            ("int64>", 6, expected("the end of the type", "\">\"")),
            (
                "decimal128",
                11,
                expected("\"(\" and the precision after the type's name", "the end"),
            ),
            ("decimal128()", 12, expected("a precision", "\")\"")),
            (
                "decimal128(0,0)",
                12,
                TypeProblem::Precision {
                    of: "decimal128",
                    precision: "0".into(),
                },
            ),
            (
                "decimal128(39,0)",
                12,
                TypeProblem::Precision {
                    of: "decimal128",
                    precision: "39".into(),
                },
            ),
            (
                "decimal256(77,0)",
                12,
                TypeProblem::Precision {
                    of: "decimal256",
                    precision: "77".into(),
                },
            ),
            (
                "decimal128(10)",
                14,
                expected("\",\" and the scale after the precision", "\")\""),
            ),
            (
                "decimal128(10,11)",
                15,
                TypeProblem::Scale {
                    of: "decimal128",
                    precision: 10,
                    scale: "11".into(),
                },
            ),
            (
                "decimal128(10,-39)",
                15,
                TypeProblem::Scale {
                    of: "decimal128",
                    precision: 10,
                    scale: "-39".into(),
                },
            ),
            (
                "decimal128(10,2",
                16,
                expected("\")\" after the scale", "the end"),
            ),
            (
                "timestamp",
                10,
                expected("\"[\" and a unit after the type's name", "the end"),
            ),
            (
                "timestamp[]",
                11,
                expected("a unit (s, ms, us or ns)", "\"]\""),
            ),
            ("timestamp[sec]", 11, unit("timestamp", "sec")),
            ("time32[us]", 8, unit("time32", "us")),
            ("time64[MS]", 8, unit("time64", "MS")),
            ("duration[d]", 10, unit("duration", "d")),
            ("timestamp[us,]", 14, TypeProblem::Empty("the time zone")),
            (
                "timestamp[us,UTC",
                17,
                expected("\"]\", or \",\" and a time zone, after the unit", "the end"),
            ),
            (
                "time32[s,UTC]",
                9,
                expected("\"]\" after the unit", "\",\""),
            ),
            (
                "list(int64)",
                5,
                expected("\"<\" and the item type after the list's name", "\"(\""),
            ),
            ("list<>", 6, expected("a type", "\">\"")),
            (
                "list<int64",
                11,
                expected("\">\" after the item type", "the end"),
            ),
            (
                "fixed_size_list<int32>",
                22,
                expected("\",\" and the size after the item type", "\">\""),
            ),
            (
                "fixed_size_list<int32,-1>",
                23,
                TypeProblem::Size("-1".into()),
            ),
            (
                "fixed_size_list<int32,2147483648>",
                23,
                TypeProblem::Size("2147483648".into()),
            ),
            ("struct<>", 1, TypeProblem::NoFields),
            (
                "struct<a>",
                9,
                expected("\":\" and the field's type after its name", "\">\""),
            ),
            (
                "struct<:int64>",
                8,
                TypeProblem::Empty("a struct field's name"),
            ),
            (
                "struct<a:int64,>",
                16,
                expected("a field, NAME:TYPE", "\">\""),
            ),
            (
                "struct<a:int64,a:utf8>",
                16,
                TypeProblem::DuplicateField("a".into()),
            ),
            (
                "struct<a:int64 b:utf8>",
                16,
                expected("\",\" and a field, or \">\", after a field", "\"b\""),
            ),
            (
                "map<utf8>",
                9,
                expected("\",\" and the value type after the key type", "\">\""),
            ),
            ("map<utf8,é>", 10, expected("a type", "\"é\"")),
        ];
        for (given, at, problem) in cases {
            assert_eq!(
                parse_type(given),
                Err(BadType {
                    given: given.into(),
                    at,
                    problem
                }),
                "{given}"
            );
        }
    }

    #[test]
    fn a_refusal_message_says_where_and_lists_the_forms_taken() {
        let message = parse_type("struct<a:decimal128(10,11)>")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "decimal128(10,S)'s scale S is -38 to 10, not 11 at character 24 of \
                 \"struct<a:decimal128(10,11)>\"; the types taken: null, bool, int8,"
            ),
            "{message}"
        );
        for form in [
            "uint64",
            "utf8_view",
            "binary_view",
            "date64",
            "decimal256(P,S)",
            "time32[s|ms]",
            "time64[us|ns]",
            "timestamp[s|ms|us|ns]",
            "timestamp[UNIT,ZONE]",
            "duration[s|ms|us|ns]",
            "fixed_size_list<T,N>",
            "struct<NAME:T,...>",
            "map<K,V>",
        ] {
            assert!(message.contains(form), "{form} not in {message}");
        }
        let message = parse_type("time32[ns]").unwrap_err().to_string();
        assert!(
            message.starts_with("time32 takes the unit s or ms, not \"ns\" at character 8"),
            "{message}"
        );
    }

    #[test]
    fn cells_are_json_as_coil_run_writes_values() {
        let ints = Int64Array::from(vec![Some(-3), None]);
        assert_eq!(json_at(&ints, 0), Some(Json::from(-3)));
        assert_eq!(json_at(&ints, 1), Some(Json::Null));
        let big = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(json_at(&big, 0), Some(Json::from(u64::MAX)));
        let floats = Float32Array::from(vec![1.5, f32::NAN]);
        assert_eq!(json_at(&floats, 0), Some(Json::from(1.5)));
        assert_eq!(json_at(&floats, 1), Some(Json::Null));
        let text = LargeStringArray::from(vec!["é"]);
        assert_eq!(json_at(&text, 0), Some(Json::from("é")));
        let bytes = BinaryArray::from(vec![&[0u8, 255][..]]);
        assert_eq!(
            json_at(&bytes, 0),
            Some(serde_json::json!({"$bytes": "00ff"}))
        );
        assert_eq!(json_at(&NullArray::new(1), 0), Some(Json::Null));
        let dates = arrow_array::Date32Array::from(vec![1]);
        assert_eq!(json_at(&dates, 0), None);
    }
}
