//! coil's names of Arrow types: `int64`, `list<utf8>`,
//! `timestamp[us,UTC]`, `struct<a:int64,b:list<utf8>>`. One grammar, read
//! by [`TypeName`]'s [`FromStr`] and written by its [`Display`], so that a
//! type a host prints (in a plan, a message, a configuration) reads back as
//! the same Arrow type. The CLI's `--returns` takes these names.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

/// The types named by a word alone, and the Arrow type each
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

/// The forms with parameters [`TypeName`] takes, as [`TypeName::forms`]
/// lists them.
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

/// Why a type name was refused.
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

/// A type name refused: what was wrong, and where.
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

/// The type forms [`TypeName`] takes, comma-separated: the plain names,
/// then the forms with parameters (`T`, `K` and `V` being types
/// themselves).
fn type_forms() -> String {
    TYPE_NAMES
        .iter()
        .map(|(name, _)| *name)
        .chain(PARAMETRIC_FORMS.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Arrow type `given` names, or what is wrong with it and where.
fn parse_type(given: &str) -> Result<DataType, BadType> {
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

/// An Arrow type with a name in coil's grammar: [`FromStr`] reads a name,
/// [`Display`](fmt::Display) writes one that reads back as the same type.
/// The grammar, `T` standing for any type:
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
/// given. Spaces between the parts are allowed. [`Display`](fmt::Display)
/// writes the lower-case words without spaces. Whether an executor returns
/// the type is its own to say when it runs (a zone's name, for one, is
/// looked up there).
///
/// Reading fails with [`BadType`]: what was wrong and where, its message
/// listing the forms taken. A type outside the grammar (an interval, a
/// dictionary, a list whose item is not a nullable `item`) has no name:
/// [`TypeName::try_from`] refuses it with [`UnnamedType`].
///
/// # Examples
///
/// ```
/// use arrow_schema::{DataType, Field, TimeUnit};
/// use coil_proto::TypeName;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let t: TypeName = "Int64".parse()?;
/// assert_eq!(t.data_type(), &DataType::Int64);
/// let zoned: TypeName = "timestamp[us, Europe/Paris]".parse()?;
/// assert_eq!(
///     zoned.data_type(),
///     &DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into()))
/// );
/// assert_eq!(zoned.to_string(), "timestamp[us,Europe/Paris]");
/// let list = DataType::List(Field::new_list_field(DataType::Decimal128(10, 2), true).into());
/// assert_eq!(TypeName::try_from(list)?.to_string(), "list<decimal128(10,2)>");
/// let e = "list<decimal>".parse::<TypeName>().unwrap_err();
/// assert!(e.to_string().starts_with("unknown type \"decimal\" at character 6"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeName(DataType);

impl TypeName {
    /// The Arrow type.
    pub fn data_type(&self) -> &DataType {
        &self.0
    }

    /// The Arrow type, taken out.
    pub fn into_data_type(self) -> DataType {
        self.0
    }

    /// The forms a name may take, comma-separated: the plain names, then
    /// the forms with parameters (`T`, `K` and `V` being types themselves),
    /// as an error message or a `--help` lists them.
    pub fn forms() -> String {
        type_forms()
    }
}

impl FromStr for TypeName {
    type Err = BadType;

    fn from_str(given: &str) -> Result<TypeName, BadType> {
        parse_type(given).map(TypeName)
    }
}

impl From<TypeName> for DataType {
    fn from(name: TypeName) -> DataType {
        name.0
    }
}

/// An Arrow type without a name in coil's grammar (see [`TypeName`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnnamedType(pub DataType);

impl fmt::Display for UnnamedType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the Arrow type {} has no name in coil's type grammar",
            self.0
        )
    }
}

impl std::error::Error for UnnamedType {}

impl TryFrom<DataType> for TypeName {
    type Error = UnnamedType;

    /// The name of `t`, if the grammar has one that reads back as `t`
    /// exactly (field names, nullability and time zone included).
    fn try_from(t: DataType) -> Result<TypeName, UnnamedType> {
        let mut name = String::new();
        match write_type(&mut name, &t) {
            Ok(()) if parse_type(&name).as_ref() == Ok(&t) => Ok(TypeName(t)),
            _ => Err(UnnamedType(t)),
        }
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_type(f, &self.0)
    }
}

/// The unit's name in the grammar.
fn unit_name(unit: &TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// Writes the name of `t`; an error for a type the grammar has no name
/// for (the item or fields of a nested type are not checked beyond their
/// types: [`TypeName::try_from`] reads the name back for that).
fn write_type(f: &mut impl fmt::Write, t: &DataType) -> fmt::Result {
    if let Some((name, _)) = TYPE_NAMES.iter().find(|(_, named)| named == t) {
        return f.write_str(name);
    }
    match t {
        DataType::Decimal128(p, s) => write!(f, "decimal128({p},{s})"),
        DataType::Decimal256(p, s) => write!(f, "decimal256({p},{s})"),
        DataType::Time32(u) => write!(f, "time32[{}]", unit_name(u)),
        DataType::Time64(u) => write!(f, "time64[{}]", unit_name(u)),
        DataType::Duration(u) => write!(f, "duration[{}]", unit_name(u)),
        DataType::Timestamp(u, None) => write!(f, "timestamp[{}]", unit_name(u)),
        DataType::Timestamp(u, Some(zone)) => write!(f, "timestamp[{},{zone}]", unit_name(u)),
        DataType::List(item) => {
            f.write_str("list<")?;
            write_type(f, item.data_type())?;
            f.write_str(">")
        }
        DataType::LargeList(item) => {
            f.write_str("large_list<")?;
            write_type(f, item.data_type())?;
            f.write_str(">")
        }
        DataType::FixedSizeList(item, n) => {
            f.write_str("fixed_size_list<")?;
            write_type(f, item.data_type())?;
            write!(f, ",{n}>")
        }
        DataType::Struct(fields) => {
            f.write_str("struct<")?;
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{}:", field.name())?;
                write_type(f, field.data_type())?;
            }
            f.write_str(">")
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                f.write_str("map<")?;
                write_type(f, kv[0].data_type())?;
                f.write_str(",")?;
                write_type(f, kv[1].data_type())?;
                f.write_str(">")
            }
            _ => Err(fmt::Error),
        },
        _ => Err(fmt::Error),
    }
}

#[cfg(test)]
mod tests;
