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
/// `{"$bytes": "<hex>"}`, NaN and infinities as `null`), and for the other
/// types:
///
/// - a decimal as a string of its digits at the column's scale,
///   `"123.40"`;
/// - a date as `"YYYY-MM-DD"`, a time as `"HH:MM:SS"` with as many digits
///   of fraction (3, 6 or 9) as its value needs;
/// - a timestamp as ISO 8601: `"2024-05-01T12:30:00"` without a time zone;
///   with a fixed offset (`+02:00`) the local time and that offset,
///   `"2024-05-01T14:30:00+02:00"`; with a named zone (`UTC`,
///   `Europe/Paris`, whose rules coil's Arrow build does not carry) the
///   UTC instant, `"2024-05-01T12:30:00Z"`;
/// - a duration as an ISO 8601 duration in seconds, `"PT90.5S"`,
///   `"-PT0.000001S"`;
/// - a list as an array, a struct as an object of its fields, a map as an
///   array of `[key, value]` pairs in its order;
/// - a view and a dictionary's cell as its value.
///
/// `None` for a type coil does not take, and for a value with no such form
/// (a date beyond chrono's years, a time of day past midnight).
pub fn json_at(array: &dyn Array, row: usize) -> Option<Json> {
    use arrow_array::cast::AsArray;
    use arrow_array::temporal_conversions as tc;
    use arrow_array::types::*;
    if array.is_null(row) {
        return Some(Json::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Value::Int(i64::from(array.as_primitive::<$t>().value(row)))
        };
    }
    macro_rules! at {
        ($t:ty) => {
            array.as_primitive::<$t>().value(row)
        };
    }
    let text = |s: Option<String>| s.map(Json::String);
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
        DataType::UInt64 => return Some(Json::from(at!(UInt64Type))),
        DataType::Float32 => Value::Float(f64::from(at!(Float32Type))),
        DataType::Float64 => Value::Float(at!(Float64Type)),
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).into()),
        DataType::Utf8View => Value::Str(array.as_string_view().value(row).into()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).into()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).into()),
        DataType::BinaryView => Value::Bytes(array.as_binary_view().value(row).into()),
        DataType::Decimal128(_, scale) => {
            return text(Some(decimal(&at!(Decimal128Type).to_string(), *scale)))
        }
        DataType::Decimal256(_, scale) => {
            return text(Some(decimal(&at!(Decimal256Type).to_string(), *scale)))
        }
        DataType::Date32 => {
            return text(tc::date32_to_datetime(at!(Date32Type)).map(|d| d.date().to_string()))
        }
        DataType::Date64 => {
            return text(tc::date64_to_datetime(at!(Date64Type)).map(|d| d.date().to_string()))
        }
        DataType::Time32(TimeUnit::Second) => {
            return text(tc::time32s_to_time(at!(Time32SecondType)).map(|t| t.to_string()))
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            return text(tc::time32ms_to_time(at!(Time32MillisecondType)).map(|t| t.to_string()))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            return text(tc::time64us_to_time(at!(Time64MicrosecondType)).map(|t| t.to_string()))
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            return text(tc::time64ns_to_time(at!(Time64NanosecondType)).map(|t| t.to_string()))
        }
        DataType::Timestamp(unit, zone) => {
            let zone = zone.as_deref();
            return text(match unit {
                TimeUnit::Second => {
                    timestamp::<TimestampSecondType>(at!(TimestampSecondType), zone)
                }
                TimeUnit::Millisecond => {
                    timestamp::<TimestampMillisecondType>(at!(TimestampMillisecondType), zone)
                }
                TimeUnit::Microsecond => {
                    timestamp::<TimestampMicrosecondType>(at!(TimestampMicrosecondType), zone)
                }
                TimeUnit::Nanosecond => {
                    timestamp::<TimestampNanosecondType>(at!(TimestampNanosecondType), zone)
                }
            });
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => at!(DurationSecondType),
                TimeUnit::Millisecond => at!(DurationMillisecondType),
                TimeUnit::Microsecond => at!(DurationMicrosecondType),
                TimeUnit::Nanosecond => at!(DurationNanosecondType),
            };
            return text(Some(duration(v, *unit)));
        }
        DataType::List(_) => return cells(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => return cells(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(..) => {
            return cells(array.as_fixed_size_list().value(row).as_ref())
        }
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            return fields
                .iter()
                .zip(columns)
                .map(|(f, c)| Some((f.name().clone(), json_at(c.as_ref(), row)?)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Json::Object);
        }
        DataType::Map(..) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            return (0..entries.len())
                .map(|i| {
                    let pair = vec![json_at(keys.as_ref(), i)?, json_at(values.as_ref(), i)?];
                    Some(Json::Array(pair))
                })
                .collect::<Option<Vec<_>>>()
                .map(Json::Array);
        }
        DataType::Dictionary(keys, _) => {
            macro_rules! entry {
                ($k:ty) => {{
                    let d = array.as_dictionary::<$k>();
                    (d.values(), d.key(row)?)
                }};
            }
            let (values, key) = match keys.as_ref() {
                DataType::Int8 => entry!(Int8Type),
                DataType::Int16 => entry!(Int16Type),
                DataType::Int32 => entry!(Int32Type),
                DataType::Int64 => entry!(Int64Type),
                DataType::UInt8 => entry!(UInt8Type),
                DataType::UInt16 => entry!(UInt16Type),
                DataType::UInt32 => entry!(UInt32Type),
                DataType::UInt64 => entry!(UInt64Type),
                _ => return None,
            };
            return (key < values.len())
                .then(|| json_at(values.as_ref(), key))
                .flatten();
        }
        _ => return None,
    };
    Some(to_json(&value))
}

/// Every cell of `values` as a JSON array; `None` if one has no JSON.
fn cells(values: &dyn Array) -> Option<Json> {
    (0..values.len())
        .map(|i| json_at(values, i))
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}

/// The decimal whose unscaled value has the decimal `digits` (perhaps
/// after a minus), at `scale`: `("12340", 2)` is `"123.40"`, `("-5", 3)`
/// is `"-0.005"`, `("12", -2)` is `"1200"`.
fn decimal(digits: &str, scale: i8) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", digits),
    };
    match usize::try_from(scale) {
        Ok(0) => format!("{sign}{digits}"),
        Ok(scale) => {
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (whole, fraction) = padded.split_at(padded.len() - scale);
            format!("{sign}{whole}.{fraction}")
        }
        Err(_) if digits == "0" => "0".into(),
        Err(_) => format!("{sign}{digits}{}", "0".repeat(scale.unsigned_abs().into())),
    }
}

/// The timestamp `ticks` (of `T`'s unit since the epoch) in ISO 8601: the
/// local time and offset for a fixed offset `zone`, the UTC instant with
/// `Z` for a named zone, a naive date and time without one.
fn timestamp<T: arrow_array::ArrowPrimitiveType>(ticks: i64, zone: Option<&str>) -> Option<String> {
    use arrow_array::temporal_conversions::{as_datetime, as_datetime_with_timezone};
    use arrow_array::timezone::Tz;
    // chrono's types are arrow-array's to name: a date and time as ISO 8601.
    macro_rules! iso {
        ($t:expr) => {{
            let t = $t;
            format!("{}T{}", t.date(), t.time())
        }};
    }
    let Some(zone) = zone else {
        return as_datetime::<T>(ticks).map(|t| iso!(t));
    };
    // Only fixed offsets: whether arrow parses named zones depends on its
    // chrono-tz feature, which another crate in the build (DataFusion) may
    // turn on; the output must not change with it.
    let fixed = zone.starts_with(['+', '-']);
    match zone.parse::<Tz>() {
        Ok(tz) if fixed => as_datetime_with_timezone::<T>(ticks, tz)
            .map(|t| format!("{}{}", iso!(t.naive_local()), t.offset())),
        _ => as_datetime::<T>(ticks).map(|t| format!("{}Z", iso!(t))),
    }
}

/// `ticks` of `unit` as an ISO 8601 duration in seconds: `"PT90S"`,
/// `"PT0.25S"`, `"-PT1.000001S"` (the fraction without trailing zeros).
fn duration(ticks: i64, unit: TimeUnit) -> String {
    let digits = match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    let sign = if ticks < 0 { "-" } else { "" };
    let per_second = 10u64.pow(digits);
    let magnitude = ticks.unsigned_abs();
    let (seconds, fraction) = (magnitude / per_second, magnitude % per_second);
    if fraction == 0 {
        return format!("{sign}PT{seconds}S");
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{sign}PT{seconds}.{}S", fraction.trim_end_matches('0'))
}

/// Row `row` of `batch` (every column's value) as a JSON array, each as
/// [`json_at`] has it; `None` if a column's value has no JSON.
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
    use arrow_array::types::Int8Type;
    use arrow_array::{
        ArrayRef, BinaryArray, BinaryViewArray, Date32Array, Date64Array, Decimal128Array,
        Decimal256Array, DictionaryArray, DurationMicrosecondArray, DurationMillisecondArray,
        DurationNanosecondArray, DurationSecondArray, Float32Array, Int32Array, Int64Array,
        LargeStringArray, NullArray, StringArray, StringViewArray, StructArray,
        Time32MillisecondArray, Time32SecondArray, Time64MicrosecondArray, Time64NanosecondArray,
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt64Array,
    };
    use coil_host::arrow_schema::Fields;
    use serde_json::json;

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

    /// Every cell of `array` as [`json_at`] has it.
    fn column(array: &dyn Array) -> Vec<Option<Json>> {
        (0..array.len()).map(|i| json_at(array, i)).collect()
    }

    /// `values` as JSON cells.
    fn cells_of(values: Vec<Json>) -> Vec<Option<Json>> {
        values.into_iter().map(Some).collect()
    }

    #[test]
    fn flat_cells_are_json_as_coil_run_writes_values() {
        let ints = Int64Array::from(vec![Some(-3), None]);
        assert_eq!(column(&ints), cells_of(vec![json!(-3), Json::Null]));
        let big = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(json_at(&big, 0), Some(Json::from(u64::MAX)));
        let floats = Float32Array::from(vec![1.5, f32::NAN]);
        assert_eq!(column(&floats), cells_of(vec![json!(1.5), Json::Null]));
        let text = LargeStringArray::from(vec!["é"]);
        assert_eq!(json_at(&text, 0), Some(json!("é")));
        let view = StringViewArray::from(vec![Some("a string longer than twelve bytes"), None]);
        assert_eq!(
            column(&view),
            cells_of(vec![json!("a string longer than twelve bytes"), Json::Null])
        );
        let bytes = BinaryArray::from(vec![&[0u8, 255][..]]);
        assert_eq!(json_at(&bytes, 0), Some(json!({"$bytes": "00ff"})));
        let bytes = BinaryViewArray::from(vec![&[1u8][..]]);
        assert_eq!(json_at(&bytes, 0), Some(json!({"$bytes": "01"})));
        assert_eq!(json_at(&NullArray::new(1), 0), Some(Json::Null));
    }

    #[test]
    fn decimals_are_strings_at_their_scale() {
        let d = Decimal128Array::from(vec![12345, -5, 0, 100, i128::MAX])
            .with_precision_and_scale(38, 2)
            .unwrap();
        assert_eq!(
            column(&d),
            cells_of(vec![
                json!("123.45"),
                json!("-0.05"),
                json!("0.00"),
                json!("1.00"),
                json!("1701411834604692317316873037158841057.27"),
            ])
        );
        let whole = Decimal128Array::from(vec![7, -7])
            .with_precision_and_scale(5, 0)
            .unwrap();
        assert_eq!(column(&whole), cells_of(vec![json!("7"), json!("-7")]));
        let tens = Decimal128Array::from(vec![12, 0, -3])
            .with_precision_and_scale(5, -2)
            .unwrap();
        assert_eq!(
            column(&tens),
            cells_of(vec![json!("1200"), json!("0"), json!("-300")])
        );
        // i256, which arrow-array does not export by name.
        type Wide = <arrow_array::types::Decimal256Type as arrow_array::ArrowPrimitiveType>::Native;
        let wide = Decimal256Array::from(vec![
            Wide::from_string("-123456789012345678901234567890123456789012345678"),
            None,
        ])
        .with_precision_and_scale(76, 45)
        .unwrap();
        assert_eq!(
            column(&wide),
            cells_of(vec![
                json!("-123.456789012345678901234567890123456789012345678"),
                Json::Null
            ])
        );
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        let days = Date32Array::from(vec![0, 19_844, -719_162]);
        assert_eq!(
            column(&days),
            cells_of(vec![
                json!("1970-01-01"),
                json!("2024-05-01"),
                json!("0001-01-01")
            ])
        );
        let millis = Date64Array::from(vec![86_400_000]);
        assert_eq!(json_at(&millis, 0), Some(json!("1970-01-02")));
        let out_of_range = Date32Array::from(vec![i32::MAX]);
        assert_eq!(json_at(&out_of_range, 0), None);

        let s = Time32SecondArray::from(vec![45_296, 0]);
        assert_eq!(
            column(&s),
            cells_of(vec![json!("12:34:56"), json!("00:00:00")])
        );
        let ms = Time32MillisecondArray::from(vec![45_296_500]);
        assert_eq!(json_at(&ms, 0), Some(json!("12:34:56.500")));
        let us = Time64MicrosecondArray::from(vec![45_296_000_001, 1_000]);
        assert_eq!(
            column(&us),
            cells_of(vec![json!("12:34:56.000001"), json!("00:00:00.001")])
        );
        let ns = Time64NanosecondArray::from(vec![1]);
        assert_eq!(json_at(&ns, 0), Some(json!("00:00:00.000000001")));
        let past_midnight = Time32SecondArray::from(vec![86_400]);
        assert_eq!(json_at(&past_midnight, 0), None);
    }

    #[test]
    fn timestamps_are_iso_8601_with_their_zone_offset() {
        // 2024-05-01T12:30:00Z.
        let second = 1_714_566_600;
        let naive = TimestampSecondArray::from(vec![second, -1]);
        assert_eq!(
            column(&naive),
            cells_of(vec![
                json!("2024-05-01T12:30:00"),
                json!("1969-12-31T23:59:59")
            ])
        );
        let ms = TimestampMillisecondArray::from(vec![second * 1_000 + 250]);
        assert_eq!(json_at(&ms, 0), Some(json!("2024-05-01T12:30:00.250")));
        let us =
            TimestampMicrosecondArray::from(vec![second * 1_000_000 + 1]).with_timezone("+02:00");
        assert_eq!(
            json_at(&us, 0),
            Some(json!("2024-05-01T14:30:00.000001+02:00"))
        );
        let ns =
            TimestampNanosecondArray::from(vec![second * 1_000_000_000]).with_timezone("-0930");
        assert_eq!(json_at(&ns, 0), Some(json!("2024-05-01T03:00:00-09:30")));
        for named in ["UTC", "Europe/Paris"] {
            let t = TimestampSecondArray::from(vec![second]).with_timezone(named);
            assert_eq!(
                json_at(&t, 0),
                Some(json!("2024-05-01T12:30:00Z")),
                "{named}"
            );
        }
    }

    #[test]
    fn durations_are_iso_8601_seconds() {
        let s = DurationSecondArray::from(vec![90, 0, -5, i64::MIN]);
        assert_eq!(
            column(&s),
            cells_of(vec![
                json!("PT90S"),
                json!("PT0S"),
                json!("-PT5S"),
                json!("-PT9223372036854775808S")
            ])
        );
        let ms = DurationMillisecondArray::from(vec![90_500, -250]);
        assert_eq!(
            column(&ms),
            cells_of(vec![json!("PT90.5S"), json!("-PT0.25S")])
        );
        let us = DurationMicrosecondArray::from(vec![1_000_001]);
        assert_eq!(json_at(&us, 0), Some(json!("PT1.000001S")));
        let ns = DurationNanosecondArray::from(vec![-1, 3_000_000_000]);
        assert_eq!(
            column(&ns),
            cells_of(vec![json!("-PT0.000000001S"), json!("PT3S")])
        );
    }

    #[test]
    fn nested_cells_are_arrays_objects_and_pairs() {
        let mut list = ListBuilder::new(Int64Builder::new());
        list.values().append_value(1);
        list.values().append_null();
        list.append(true);
        list.append(false);
        list.append(true);
        let list = list.finish();
        assert_eq!(
            column(&list),
            cells_of(vec![json!([1, null]), Json::Null, json!([])])
        );
        let mut large = LargeListBuilder::new(StringBuilder::new());
        large.values().append_value("x");
        large.append(true);
        assert_eq!(json_at(&large.finish(), 0), Some(json!(["x"])));
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 2);
        fixed.values().append_slice(&[3, 4]);
        fixed.append(true);
        assert_eq!(json_at(&fixed.finish(), 0), Some(json!([3, 4])));

        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(0), None]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let structs = StructArray::from(vec![
            (Arc::new(Field::new("when", DataType::Date32, true)), dates),
            (Arc::new(Field::new("name", DataType::Utf8, true)), names),
        ]);
        assert_eq!(
            column(&structs),
            cells_of(vec![
                json!({"when": "1970-01-01", "name": "a"}),
                json!({"when": null, "name": "b"})
            ])
        );

        let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        map.keys().append_value("b");
        map.values().append_value(2);
        map.keys().append_value("a");
        map.values().append_null();
        map.append(true).unwrap();
        map.append(false).unwrap();
        map.append(true).unwrap();
        assert_eq!(
            column(&map.finish()),
            cells_of(vec![json!([["b", 2], ["a", null]]), Json::Null, json!([])])
        );
    }

    #[test]
    fn a_dictionary_cell_is_its_value() {
        let dictionary: DictionaryArray<Int8Type> =
            vec![Some("red"), None, Some("blue"), Some("red")]
                .into_iter()
                .collect();
        assert_eq!(
            column(&dictionary),
            cells_of(vec![json!("red"), Json::Null, json!("blue"), json!("red")])
        );
        let decimals = Arc::new(
            Decimal128Array::from(vec![Some(150), None])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        );
        let keys = arrow_array::UInt32Array::from(vec![Some(1), Some(0), None]);
        let over_decimals = DictionaryArray::try_new(keys, decimals).unwrap();
        assert_eq!(
            column(&over_decimals),
            cells_of(vec![Json::Null, json!("1.50"), Json::Null])
        );
    }

    #[test]
    fn a_row_is_every_column_s_cell_or_none() {
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(Int32Array::from(vec![7])) as ArrayRef),
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![5])
                        .with_precision_and_scale(3, 1)
                        .unwrap(),
                ) as ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(row_json(&batch, 0), Some(json!([7, "0.5"])));
        let months = RecordBatch::try_from_iter([(
            "months",
            Arc::new(arrow_array::IntervalYearMonthArray::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(row_json(&months, 0), None);
    }
}
