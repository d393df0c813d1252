//! The type names' tests: each form, each refusal, and the round trip
//! over every type coil takes.

use super::*;
use arrow_array::builder::{
    FixedSizeListBuilder, Int32Builder, Int64Builder, LargeListBuilder, ListBuilder, MapBuilder,
    StringBuilder,
};
use arrow_array::Array;
use arrow_schema::Fields;

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

/// Every type coil takes: each plain name, each unit, a zone of each
/// kind, the decimals at their limits, and each nested form over them.
fn every_type_coil_takes() -> Vec<DataType> {
    use TimeUnit::*;
    let mut flat: Vec<DataType> = TYPE_NAMES.iter().map(|(_, t)| t.clone()).collect();
    flat.extend([
        DataType::Decimal128(1, 0),
        DataType::Decimal128(38, -38),
        DataType::Decimal128(10, 2),
        DataType::Decimal256(76, 76),
        DataType::Decimal256(40, -5),
        DataType::Time32(Second),
        DataType::Time32(Millisecond),
        DataType::Time64(Microsecond),
        DataType::Time64(Nanosecond),
    ]);
    for unit in [Second, Millisecond, Microsecond, Nanosecond] {
        flat.push(DataType::Duration(unit));
        for zone in [None, Some("UTC"), Some("+05:30"), Some("Europe/Paris")] {
            flat.push(DataType::Timestamp(unit, zone.map(Into::into)));
        }
    }
    let mut every = flat.clone();
    for t in &flat {
        every.push(DataType::List(item(t.clone())));
        every.push(DataType::LargeList(item(t.clone())));
        every.push(DataType::FixedSizeList(item(t.clone()), 3));
        every.push(parse_type(&format!("map<utf8,{}>", TypeName(t.clone()))).unwrap());
    }
    every.push(DataType::Struct(Fields::from(
        flat.iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("field {i}"), t.clone(), true))
            .collect::<Vec<_>>(),
    )));
    every.push(
        parse_type("list<struct<a:map<int64,list<utf8>>, b:fixed_size_list<bool,0>>>").unwrap(),
    );
    every
}

#[test]
fn every_type_coil_takes_reads_back_from_its_name() {
    for t in every_type_coil_takes() {
        let name = TypeName::try_from(t.clone()).unwrap_or_else(|e| panic!("{e}"));
        let shown = name.to_string();
        assert_eq!(
            shown.parse::<TypeName>().map(DataType::from),
            Ok(t),
            "{shown}"
        );
    }
}

#[test]
fn every_type_of_the_shared_fixture_reads_back_from_its_name() {
    for t in coil_testkit::arrow::every_data_type() {
        let name = TypeName::try_from(t.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            name.to_string().parse::<TypeName>().map(DataType::from),
            Ok(t)
        );
    }
}

#[test]
fn a_name_is_written_in_lower_case_without_spaces() {
    for (given, shown) in [
        ("Decimal128( 38 , -3 )", "decimal128(38,-3)"),
        ("TIMESTAMP[NS, +05:30 ]", "timestamp[ns,+05:30]"),
        ("boolean", "bool"),
        (
            "struct<a:int64, Its b : list<utf8>>",
            "struct<a:int64,Its b:list<utf8>>",
        ),
        (
            "map<utf8, struct<x:float64>>",
            "map<utf8,struct<x:float64>>",
        ),
    ] {
        assert_eq!(given.parse::<TypeName>().unwrap().to_string(), shown);
    }
}

#[test]
fn a_type_outside_the_grammar_has_no_name() {
    let not_item = DataType::List(Arc::new(Field::new("element", DataType::Int64, true)));
    let required = DataType::List(Arc::new(Field::new_list_field(DataType::Int64, false)));
    let dictionary = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
    let odd_name = DataType::Struct(vec![Field::new("a:b", DataType::Int64, true)].into());
    for t in [
        DataType::Interval(arrow_schema::IntervalUnit::YearMonth),
        not_item,
        required,
        dictionary,
        odd_name,
    ] {
        assert_eq!(TypeName::try_from(t.clone()), Err(UnnamedType(t)));
    }
}
