//! `Runner::call_arrow` (issue 14, first columnar path): Arrow columns go
//! to the executors as column frames, in every mode; results come back as
//! an array of the declared type; errors name the column, the row, what the
//! UDF returned and the declared type.

use std::sync::Arc;

use coil_host::arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Int64Array, Int8Array,
    LargeBinaryArray, LargeStringArray, NullArray, RecordBatch, RecordBatchOptions, StringArray,
    UInt64Array,
};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{RunError, Runner, UdfKind, UdfSpec};

use coil_testkit::arrow::every_type;

use crate::util::{config, modes, numpy, udfs, with_numpy, worker};

fn runner(file: &str, name: &str, kind: UdfKind, returns: DataType, pairs: &[&str]) -> Runner {
    let spec = UdfSpec::new(format!("{}:{name}", udfs().join(file).display()))
        .kind(kind)
        .returns(returns);
    Runner::with_worker_command(&config(pairs), spec, worker()).unwrap_or_else(|e| panic!("{e}"))
}

fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[test]
fn arrow_columns_in_and_an_array_of_the_declared_type_out_in_every_mode() {
    let n = 2500i64;
    let ints: ArrayRef = Arc::new(Int64Array::from_iter(
        (0..n).map(|i| (i % 7 != 3).then_some(i)),
    ));
    let want = Int64Array::from_iter((0..n).map(|i| (i % 7 != 3).then_some(i + 1)));
    let words: ArrayRef = Arc::new(StringArray::from_iter(
        (0..n).map(|i| (i % 5 != 0).then(|| format!("wörd{i}"))),
    ));
    let shout = StringArray::from_iter((0..n).map(|i| (i % 5 != 0).then(|| format!("WÖRD{i}"))));
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = ["python.worker-count=2", conf.as_str()];
        let r = runner(
            "arrow_udfs.py",
            "inc_or_none",
            UdfKind::Scalar,
            DataType::Int64,
            &pairs,
        );
        let out = r.call_arrow(&batch(vec![ints.clone()])).unwrap();
        assert_eq!(out.as_ref(), &want as &dyn Array, "{mode}");
        let r = runner(
            "arrow_udfs.py",
            "upper",
            UdfKind::Scalar,
            DataType::Utf8,
            &pairs,
        );
        let out = r.call_arrow(&batch(vec![words.clone()])).unwrap();
        assert_eq!(out.as_ref(), &shout as &dyn Array, "{mode}");
        let r = runner(
            "arrow_udfs.py",
            "vec_inc",
            UdfKind::Vectorized,
            DataType::Int64,
            &pairs,
        );
        let out = r.call_arrow(&batch(vec![ints.clone()])).unwrap();
        assert_eq!(out.as_ref(), &want as &dyn Array, "{mode}");
        // A slice of a batch travels as its slice.
        let sliced = batch(vec![ints.clone()]).slice(10, 20);
        let r = runner(
            "arrow_udfs.py",
            "inc_or_none",
            UdfKind::Scalar,
            DataType::Int64,
            &pairs,
        );
        assert_eq!(
            r.call_arrow(&sliced).unwrap().as_ref(),
            &want.slice(10, 20) as &dyn Array
        );
    }
}

#[test]
fn every_supported_type_reaches_python_as_the_value_plain_python_would_have() {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![Some(true), None])),
        Arc::new(Int8Array::from(vec![-128, 5])),
        Arc::new(UInt64Array::from(vec![u64::MAX, 0])),
        Arc::new(Float32Array::from(vec![0.5, -2.0])),
        Arc::new(StringArray::from(vec![Some("é"), None])),
        Arc::new(LargeStringArray::from(vec!["a", "b"])),
        Arc::new(BinaryArray::from(vec![&b"\x00\xff"[..], b""])),
        Arc::new(LargeBinaryArray::from(vec![&b"x"[..], b"y"])),
        Arc::new(NullArray::new(2)),
    ];
    let r = runner(
        "arrow_udfs.py",
        "describe",
        UdfKind::Scalar,
        DataType::Utf8,
        &["python.worker-count=1"],
    );
    let out = r.call_arrow(&batch(columns)).unwrap();
    let out = out.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        out.value(0),
        "[('bool', True), ('int', -128), ('int', 18446744073709551615), ('float', 0.5), ('str', 'é'), ('str', 'a'), ('bytes', b'\\x00\\xff'), ('bytes', b'x'), ('NoneType', None)]"
    );
    assert_eq!(
        out.value(1),
        "[('NoneType', None), ('int', 5), ('int', 0), ('float', -2.0), ('NoneType', None), ('str', 'b'), ('bytes', b''), ('bytes', b'y'), ('NoneType', None)]"
    );
}

#[test]
fn numpy_annotated_vectorized_udfs_and_udfs_without_arguments_run_over_columns() {
    let np = numpy();
    let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let b: ArrayRef = Arc::new(Int64Array::from(vec![5, 6, 7]));
    let r = runner(
        "hints.py",
        "numpy_mix",
        UdfKind::Vectorized,
        DataType::Int64,
        &with_numpy(&["python.worker-count=1"], &np),
    );
    let out = r.call_arrow(&batch(vec![a.clone(), b.clone()])).unwrap();
    assert_eq!(
        out.as_ref(),
        &Int64Array::from(vec![15, 26, 37]) as &dyn Array
    );
    // Numeric columns without nulls arrive as read-only numpy arrays
    // over their buffers (tests/views.rs: writing into one is an error);
    // a parameter annotated `list` still gets a list, pandas a Series, and
    // `*rest` numpy arrays.
    let r = runner(
        "hints.py",
        "mixed",
        UdfKind::Vectorized,
        DataType::Int64,
        &with_numpy(&["python.worker-count=1"], &np),
    );
    let c: ArrayRef = Arc::new(Int64Array::from(vec![100, 100, 100]));
    assert_eq!(
        r.call_arrow(&batch(vec![a.clone(), b.clone(), c]))
            .unwrap()
            .as_ref(),
        &Int64Array::from(vec![106, 108, 110]) as &dyn Array
    );
    // With a null, the column goes as values (None where null).
    let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
    let r = runner(
        "arrow_udfs.py",
        "vec_inc",
        UdfKind::Vectorized,
        DataType::Int64,
        &["python.worker-count=1"],
    );
    assert_eq!(
        r.call_arrow(&batch(vec![with_null])).unwrap().as_ref(),
        &Int64Array::from(vec![Some(2), None, Some(4)]) as &dyn Array
    );
    // No argument columns, three rows.
    let none = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(3)),
    )
    .unwrap();
    let r = runner(
        "arrow_udfs.py",
        "seven",
        UdfKind::Scalar,
        DataType::Int8,
        &["python.worker-count=1"],
    );
    assert_eq!(
        r.call_arrow(&none).unwrap().as_ref(),
        &Int8Array::from(vec![7, 7, 7]) as &dyn Array
    );
}

#[test]
fn columns_larger_than_a_ring_travel_in_pieces() {
    let words: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..3000).map(|i| format!("{i:0>40}")),
    ));
    let r = runner(
        "arrow_udfs.py",
        "upper",
        UdfKind::Scalar,
        DataType::LargeUtf8,
        &[
            "python.worker-count=1",
            "python.fn-execution.ring.size=4k",
            "python.fn-execution.bundle.size=1000",
        ],
    );
    let out = r.call_arrow(&batch(vec![words])).unwrap();
    let out = out.as_any().downcast_ref::<LargeStringArray>().unwrap();
    assert_eq!(out.len(), 3000);
    assert_eq!(out.value(2999), format!("{:0>40}", 2999));
}

#[test]
fn errors_name_the_column_the_row_the_value_and_the_declared_type() {
    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 127]));
    let pairs = ["python.worker-count=1"];
    let r = runner(
        "arrow_udfs.py",
        "wrong",
        UdfKind::Scalar,
        DataType::Int64,
        &pairs,
    );
    let e = r.call_arrow(&batch(vec![ints.clone()])).unwrap_err();
    assert!(matches!(&e, RunError::BadRow { row: Some(0), .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "row 0: result: a str ('nope') does not fit the declared type Int64"
    );
    // 127 + 1 does not fit an int8: refused, not wrapped.
    let r = runner(
        "arrow_udfs.py",
        "inc_or_none",
        UdfKind::Scalar,
        DataType::Int8,
        &pairs,
    );
    let e = r
        .call_arrow(&batch(vec![ints.clone()]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "row 1: result: a int (128) does not fit the declared type Int8: out of range"
    );
    // A decimal with more places than the column's scale: refused, not
    // rounded.
    let r = runner(
        "arrow_udfs.py",
        "loses_precision",
        UdfKind::Scalar,
        DataType::Decimal128(10, 2),
        &pairs,
    );
    let e = r
        .call_arrow(&batch(vec![ints.clone()]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more decimal places than the scale 2"), "{e}");
    // A column of a type coil does not take, before anything runs.
    let months: ArrayRef = Arc::new(coil_host::arrow_array::IntervalYearMonthArray::from(vec![
        1,
    ]));
    let e = r.call_arrow(&batch(vec![months])).unwrap_err();
    assert!(
        matches!(e, RunError::UnsupportedColumn { column: 0, .. }),
        "{e:?}"
    );
    let spec = UdfSpec::new(format!(
        "{}:inc_or_none",
        udfs().join("arrow_udfs.py").display()
    ));
    let r = Runner::with_worker_command(&config(&pairs), spec.clone(), worker()).unwrap();
    let e = r.call_arrow(&batch(vec![ints])).unwrap_err().to_string();
    assert!(e.contains("UdfSpec::returns"), "{e}");
    // A return type coil cannot build: refused when the runner starts.
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let e = match Runner::with_worker_command(&config(&pairs), spec.returns(dict), worker()) {
        Ok(_) => panic!("a dictionary return type was taken"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("Dictionary(Int32, Utf8)"), "{e}");
}

/// The struct of every type, one field `f<i>` per column.
fn packed(columns: &[ArrayRef]) -> DataType {
    DataType::Struct(
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("f{i}"), c.data_type().clone(), true))
            .collect(),
    )
}

#[test]
fn every_type_of_the_table_round_trips_through_python_in_every_mode() {
    let columns = every_type();
    let row_type = packed(&columns);
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = ["python.worker-count=1", conf.as_str()];
        // Scalar: each column's values to Python objects and back, as one
        // struct's fields; then the vectorized form over lists.
        for (name, kind) in [("pack", UdfKind::Scalar), ("vec_pack", UdfKind::Vectorized)] {
            let r = runner("arrow_udfs.py", name, kind, row_type.clone(), &pairs);
            let out = r.call_arrow(&batch(columns.clone())).unwrap();
            let out = out
                .as_any()
                .downcast_ref::<coil_host::arrow_array::StructArray>()
                .unwrap();
            assert_eq!(out.null_count(), 0, "{mode} {name}");
            for (i, c) in columns.iter().enumerate() {
                assert_eq!(
                    out.column(i).as_ref(),
                    c.as_ref(),
                    "{mode} {name}: column {i} ({})",
                    c.data_type()
                );
            }
        }
        // Each type alone, as the declared type of the results.
        let r = runner(
            "arrow_udfs.py",
            "same",
            UdfKind::Scalar,
            DataType::Decimal128(10, 2),
            &pairs,
        );
        let out = r.call_arrow(&batch(vec![columns[16].clone()])).unwrap();
        assert_eq!(out.as_ref(), columns[16].as_ref(), "{mode}");
    }
}

#[test]
fn views_and_dictionaries_reach_python_as_their_values() {
    use coil_host::arrow_array::types::Int32Type;
    use coil_host::arrow_array::{BinaryViewArray, DictionaryArray, StringViewArray};
    let pairs = ["python.worker-count=1"];
    let words: ArrayRef = Arc::new(StringViewArray::from(vec![
        Some("a longer string than twelve bytes"),
        None,
        Some("ab"),
    ]));
    let r = runner(
        "arrow_udfs.py",
        "upper",
        UdfKind::Scalar,
        DataType::Utf8View,
        &pairs,
    );
    let out = r.call_arrow(&batch(vec![words])).unwrap();
    assert_eq!(
        out.as_ref(),
        &StringViewArray::from(vec![
            Some("A LONGER STRING THAN TWELVE BYTES"),
            None,
            Some("AB")
        ]) as &dyn Array
    );
    let blobs: ArrayRef = Arc::new(BinaryViewArray::from(vec![Some(&b"\x00"[..]), None]));
    let r = runner(
        "arrow_udfs.py",
        "same",
        UdfKind::Scalar,
        DataType::BinaryView,
        &pairs,
    );
    assert_eq!(
        r.call_arrow(&batch(vec![blobs.clone()])).unwrap().as_ref(),
        blobs.as_ref()
    );
    let dict: ArrayRef = Arc::new(
        vec![Some("x"), None, Some("y"), Some("x")]
            .into_iter()
            .collect::<DictionaryArray<Int32Type>>(),
    );
    let r = runner(
        "arrow_udfs.py",
        "upper",
        UdfKind::Scalar,
        DataType::Utf8,
        &pairs,
    );
    assert_eq!(
        r.call_arrow(&batch(vec![dict])).unwrap().as_ref(),
        &StringArray::from(vec![Some("X"), None, Some("Y"), Some("X")]) as &dyn Array
    );
}

#[test]
fn temporal_and_decimal_columns_are_the_python_values_pyarrow_gives() {
    let columns = every_type();
    let r = runner(
        "arrow_udfs.py",
        "describe",
        UdfKind::Scalar,
        DataType::Utf8,
        &["python.worker-count=1"],
    );
    let picked: Vec<ArrayRef> = [
        16, 17, 18, 19, 20, 22, 24, 26, 28, 29, 30, 31, 34, 35, 36, 37, 38, 39,
    ]
    .iter()
    .map(|&i| columns[i].clone())
    .collect();
    let out = r.call_arrow(&batch(picked)).unwrap();
    let out = out.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        out.value(0),
        "[('Decimal', Decimal('123.45')), ('Decimal', Decimal('10000000000000000000000000.00000')), \
         ('date', datetime.date(1970, 1, 1)), ('date', datetime.date(1970, 1, 1)), \
         ('time', datetime.time(0, 0)), ('time', datetime.time(0, 0, 0, 1)), \
         ('datetime', datetime.datetime(1970, 1, 1, 0, 0)), \
         ('datetime', datetime.datetime(1970, 1, 1, 0, 0, 0, 1)), \
         ('datetime', datetime.datetime(2023, 11, 14, 23, 13, 20, tzinfo=zoneinfo.ZoneInfo(key='Europe/Paris'))), \
         ('datetime', datetime.datetime(2023, 11, 15, 3, 43, 20, tzinfo=datetime.timezone(datetime.timedelta(seconds=19800)))), \
         ('datetime', datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc)), \
         ('timedelta', datetime.timedelta(days=-1, seconds=86399)), \
         ('timedelta', datetime.timedelta(microseconds=1)), \
         ('list', [1, None]), ('list', [1]), ('list', [1, 2]), \
         ('dict', {'a': 1, 'b': 'w'}), ('dict', {'x': 1, 'y': None})]"
    );
    assert_eq!(
        out.value(3),
        "[('Decimal', Decimal('0.00')), ('Decimal', Decimal('0.00000')), \
         ('date', datetime.date(1, 1, 1)), ('date', datetime.date(1969, 12, 31)), \
         ('time', datetime.time(23, 59, 59)), ('time', datetime.time(0, 0)), \
         ('datetime', datetime.datetime(9999, 12, 31, 23, 59, 59)), \
         ('datetime', datetime.datetime(1970, 1, 1, 0, 0, 0, 7)), \
         ('datetime', datetime.datetime(1970, 1, 1, 0, 59, 59, 999999, tzinfo=zoneinfo.ZoneInfo(key='Europe/Paris'))), \
         ('datetime', datetime.datetime(1970, 1, 1, 5, 30, 1, tzinfo=datetime.timezone(datetime.timedelta(seconds=19800)))), \
         ('datetime', datetime.datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=datetime.timezone.utc)), \
         ('timedelta', datetime.timedelta(0)), ('timedelta', datetime.timedelta(0)), \
         ('list', [4]), ('list', []), ('list', [4, 5]), \
         ('dict', {'a': 4, 'b': None}), ('dict', {'z': -3})]"
    );
}

#[test]
fn nanoseconds_python_cannot_hold_are_an_error_not_a_rounded_value() {
    use coil_host::arrow_array::TimestampNanosecondArray;
    let ns: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_000, 1_001]));
    let r = runner(
        "arrow_udfs.py",
        "same",
        UdfKind::Scalar,
        DataType::Timestamp(coil_host::arrow_schema::TimeUnit::Nanosecond, None),
        &["python.worker-count=1"],
    );
    let e = r.call_arrow(&batch(vec![ns])).unwrap_err().to_string();
    assert!(
        e.starts_with("row 1: argument: 1001 ns is not a whole number of microseconds"),
        "{e}"
    );
}

#[test]
fn under_skip_rows_that_fail_are_nulls_and_their_errors_come_back_in_order() {
    let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..300));
    let want = Int64Array::from_iter((0..300).map(|i| (i % 2 == 0).then_some(i * 10)));
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=64",
            "python.fn-execution.on-error=skip",
            conf.as_str(),
        ];
        for (name, kind) in [
            ("odd_fails", UdfKind::Scalar),
            ("vec_odd_fails", UdfKind::Vectorized),
        ] {
            let r = runner("arrow_udfs.py", name, kind, DataType::Int64, &pairs);
            let (out, failed) = r.call_arrow_each(&batch(vec![ints.clone()])).unwrap();
            assert_eq!(out.as_ref(), &want as &dyn Array, "{mode} {name}");
            let rows: Vec<u64> = failed.iter().map(|f| f.row).collect();
            assert_eq!(
                rows,
                (1..300).step_by(2).collect::<Vec<_>>(),
                "{mode} {name}"
            );
            match &failed[1].error {
                RunError::Udf { row: 3, error } => {
                    assert_eq!(error.type_name, "ValueError");
                    assert_eq!(error.message, "odd 3");
                }
                e => panic!("{mode} {name}: {e:?}"),
            }
            // call_arrow stops at the first.
            let e = r.call_arrow(&batch(vec![ints.clone()])).unwrap_err();
            assert!(matches!(&e, RunError::Row(r) if r.row == 1), "{e:?}");
        }
    }
}

#[test]
fn the_columnar_path_splits_its_time_as_the_row_path_does() {
    let np = numpy();
    let n = 4000i64;
    let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
    for (file, name, kind) in [
        ("arrow_udfs.py", "inc_or_none", UdfKind::Scalar),
        ("hints.py", "pandas_inc", UdfKind::Vectorized),
    ] {
        let r = runner(
            file,
            name,
            kind,
            DataType::Int64,
            &with_numpy(
                &[
                    "python.worker-count=1",
                    "python.fn-execution.bundle.size=1000",
                ],
                &np,
            ),
        );
        let started = std::time::Instant::now();
        let out = r.call_arrow(&batch(vec![ints.clone()])).unwrap();
        let wall = started.elapsed();
        assert_eq!(out.len(), n as usize);
        let m = r.metrics();
        assert_eq!(
            (m.rows_in, m.rows_out, m.batches),
            (4000, 4000, 4),
            "{name}"
        );
        // Every part measured, and (one executor) all of the executor's
        // within the call.
        for (part, d) in [
            ("host encode", m.encode),
            ("host decode", m.decode),
            ("executor decode", m.worker_decode),
            ("python", m.python),
            ("executor encode", m.worker_encode),
        ] {
            assert!(d > std::time::Duration::ZERO, "{name}: {part}: {m:?}");
        }
        assert!(
            m.worker_decode + m.python + m.worker_encode <= wall,
            "{name}: {m:?} in {wall:?}"
        );
    }
}

#[test]
fn pyarrow_udfs_get_and_give_whole_arrays_of_every_type_through_the_c_data_interface() {
    let np = numpy();
    // Views and dictionaries travel as their plain arrays, so the table's
    // other types: every one both ways, through pyarrow.
    let columns = every_type();
    let row_type = packed(&columns);
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = with_numpy(&["python.worker-count=1", conf.as_str()], &np);
        let r = runner(
            "hints.py",
            "arrow_pack",
            UdfKind::Vectorized,
            row_type.clone(),
            &pairs,
        );
        let out = r.call_arrow(&batch(columns.clone())).unwrap();
        let out = out
            .as_any()
            .downcast_ref::<coil_host::arrow_array::StructArray>()
            .unwrap();
        for (i, c) in columns.iter().enumerate() {
            assert_eq!(
                out.column(i).as_ref(),
                c.as_ref(),
                "{mode}: column {i} ({})",
                c.data_type()
            );
        }
        // A pyarrow result of another type than declared: each value
        // checked into the declared type.
        let words: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("bé")]));
        let r = runner(
            "hints.py",
            "arrow_len_type",
            UdfKind::Vectorized,
            DataType::Utf8,
            &pairs,
        );
        assert_eq!(
            r.call_arrow(&batch(vec![words])).unwrap().as_ref(),
            &StringArray::from(vec![Some("A"), None, Some("BÉ")]) as &dyn Array,
            "{mode}"
        );
    }
}

#[test]
fn table_udfs_over_columns_give_every_emitted_row_with_its_input_row() {
    use coil_host::arrow_array::{Int64Array as I64, UInt64Array};
    use coil_host::arrow_schema::Fields;
    let text: ArrayRef = Arc::new(StringArray::from(vec![
        Some("a b c"),
        None,
        Some("x"),
        Some("p q"),
    ]));
    let n: ArrayRef = Arc::new(I64::from(vec![2, 5, 3, 0]));
    let row_type = DataType::Struct(Fields::from(vec![
        Field::new("pos", DataType::Int64, true),
        Field::new("word", DataType::Utf8, true),
    ]));
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=2",
            conf.as_str(),
        ];
        let r = runner(
            "arrow_udfs.py",
            "words",
            UdfKind::Table,
            row_type.clone(),
            &pairs,
        );
        let out = r
            .call_arrow_table(&batch(vec![text.clone(), n.clone()]))
            .unwrap();
        assert_eq!(out.schema().field(0).name(), "row", "{mode}");
        assert_eq!(out.schema().field(2).name(), "word", "{mode}");
        assert_eq!(
            out.column(0).as_ref(),
            &UInt64Array::from(vec![0, 0, 2]) as &dyn Array,
            "{mode}"
        );
        assert_eq!(
            out.column(1).as_ref(),
            &I64::from(vec![0, 1, 0]) as &dyn Array,
            "{mode}"
        );
        assert_eq!(
            out.column(2).as_ref(),
            &StringArray::from(vec!["a", "b", "x"]) as &dyn Array,
            "{mode}"
        );
        // Bare values for a one-field row; under skip, a row that raises
        // emits nothing and its error comes back.
        let skip = [
            "python.worker-count=1",
            "python.fn-execution.on-error=skip",
            conf.as_str(),
        ];
        let one = DataType::Struct(Fields::from(vec![Field::new("n", DataType::Int64, true)]));
        let r = runner("arrow_udfs.py", "countdown", UdfKind::Table, one, &skip);
        let xs: ArrayRef = Arc::new(I64::from(vec![2, 13, 1]));
        let (out, failed) = r.call_arrow_table_each(&batch(vec![xs.clone()])).unwrap();
        assert_eq!(
            out.column(0).as_ref(),
            &UInt64Array::from(vec![0, 0, 2]) as &dyn Array,
            "{mode}"
        );
        assert_eq!(
            out.column(1).as_ref(),
            &I64::from(vec![2, 1, 1]) as &dyn Array,
            "{mode}"
        );
        assert_eq!(failed.len(), 1, "{mode}");
        assert_eq!(failed[0].row, 1, "{mode}");
        // Not a struct: one column `value`.
        let r = runner(
            "arrow_udfs.py",
            "countdown",
            UdfKind::Table,
            DataType::Int64,
            &skip,
        );
        let (out, _) = r.call_arrow_table_each(&batch(vec![xs.clone()])).unwrap();
        assert_eq!(out.schema().field(1).name(), "value");
        assert_eq!(
            out.column(1).as_ref(),
            &I64::from(vec![2, 1, 1]) as &dyn Array,
            "{mode}"
        );
        // The scalar entry point refuses a table UDF, and the reverse.
        assert!(r.call_arrow(&batch(vec![xs.clone()])).is_err());
    }
}

#[test]
fn a_return_annotation_declares_the_arrow_type_when_the_spec_does_not() {
    use coil_host::arrow_array::{Float32Array, Float64Array, ListArray};
    use coil_host::arrow_schema::{Fields, TimeUnit};
    let np = numpy();
    let item = |t: DataType| Arc::new(Field::new("item", t, true));
    let start = |file: &str, name: &str, kind: UdfKind, pairs: &[&str]| {
        let spec = UdfSpec::new(format!("{}:{name}", udfs().join(file).display())).kind(kind);
        Runner::with_worker_command(&config(pairs), spec, worker())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = ["python.worker-count=1", conf.as_str()];
        for (name, want) in [
            ("inc", Some(DataType::Int64)),
            ("maybe_half", Some(DataType::Float64)),
            ("pair", Some(DataType::List(item(DataType::Int64)))),
            (
                "when",
                Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
            ),
            ("money", Some(DataType::Decimal128(38, 18))),
            ("text", Some(DataType::Utf8)),
            ("unknown", None),
            ("none", None),
        ] {
            let r = start("annotated.py", name, UdfKind::Scalar, &pairs);
            assert_eq!(r.spec().returns, want, "{mode} {name}");
        }
        let r = start("annotated.py", "named", UdfKind::Scalar, &pairs);
        assert!(
            matches!(&r.spec().returns, Some(DataType::Map(..))),
            "{mode}: {:?}",
            r.spec().returns
        );
        let r = start("annotated.py", "words", UdfKind::Table, &pairs);
        assert_eq!(
            r.spec().returns,
            Some(DataType::Struct(Fields::from(vec![
                Field::new("c0", DataType::Int64, true),
                Field::new("c1", DataType::Utf8, true),
            ]))),
            "{mode}"
        );
        // And they run: no UdfSpec::returns anywhere.
        let xs: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
        let r = start("annotated.py", "maybe_half", UdfKind::Scalar, &pairs);
        assert_eq!(
            r.call_arrow(&batch(vec![xs.clone()])).unwrap().as_ref(),
            &Float64Array::from(vec![Some(0.5), None, Some(1.5)]) as &dyn Array
        );
        let r = start("annotated.py", "pair", UdfKind::Scalar, &pairs);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![4, 5]));
        let out = r.call_arrow(&batch(vec![ints.clone()])).unwrap();
        let want =
            ListArray::from_iter_primitive::<coil_host::arrow_array::types::Int64Type, _, _>(vec![
                Some(vec![Some(4), Some(4)]),
                Some(vec![Some(5), Some(5)]),
            ]);
        assert_eq!(out.as_ref(), &want as &dyn Array, "{mode}");
        // Vectorized: the element type of the container.
        let vpairs = with_numpy(&pairs, &np);
        let r = start("hints.py", "series_of_ints", UdfKind::Vectorized, &vpairs);
        assert_eq!(r.spec().returns, Some(DataType::Int64), "{mode}");
        assert_eq!(
            r.call_arrow(&batch(vec![ints.clone()])).unwrap().as_ref(),
            &Int64Array::from(vec![8, 10]) as &dyn Array
        );
        let r = start("hints.py", "floats32", UdfKind::Vectorized, &vpairs);
        assert_eq!(
            r.call_arrow(&batch(vec![ints.clone()])).unwrap().as_ref(),
            &Float32Array::from(vec![2.0, 2.5]) as &dyn Array
        );
        // A container without its element type says nothing: declare it.
        let r = start("hints.py", "bare_series", UdfKind::Vectorized, &vpairs);
        assert_eq!(r.spec().returns, None, "{mode}");
        let e = r
            .call_arrow(&batch(vec![ints.clone()]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("UdfSpec::returns") && e.contains("annotate"),
            "{e}"
        );
    }
}

/// A batch of one int64 column: `values`, a null in place of each `None`.
fn ints_batch(values: impl IntoIterator<Item = Option<i64>>) -> RecordBatch {
    batch(vec![Arc::new(Int64Array::from_iter(values))])
}

/// The batches an Arrow stream test pushes, of different sizes (one empty):
/// batch `b`'s row `i` holds `1000 * b + i`, every seventh a null.
fn stream_batches() -> Vec<RecordBatch> {
    [5usize, 1, 40, 0, 7, 23, 64, 3, 18, 30]
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            ints_batch((0..n as i64).map(|i| (i % 7 != 3).then_some(1000 * b as i64 + i)))
        })
        .collect()
}

/// What `inc_or_none` gives for `b`: each value plus one, nulls kept.
fn incremented(b: &RecordBatch) -> Int64Array {
    let xs = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    xs.iter().map(|x| x.map(|x| x + 1)).collect()
}

#[test]
fn an_arrow_stream_gives_each_batch_its_own_array_in_push_order_in_every_mode() {
    let batches = stream_batches();
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        // Slices of at most 4 rows: the batches are cut into 50 slices,
        // many more than two workers hold, so pushes wait for answers.
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=4",
            conf.as_str(),
        ];
        for (name, kind) in [
            ("inc_or_none", UdfKind::Scalar),
            ("vec_inc", UdfKind::Vectorized),
        ] {
            let r = runner("arrow_udfs.py", name, kind, DataType::Int64, &pairs);
            let mut stream = r.stream_arrow();
            for b in &batches {
                stream.push(b).unwrap();
            }
            assert_eq!(stream.rows_pushed(), 191);
            for (i, b) in batches.iter().enumerate() {
                let out = stream.pull().unwrap().unwrap();
                assert_eq!(
                    out.as_ref(),
                    &incremented(b) as &dyn Array,
                    "{mode} {name}: batch {i}"
                );
            }
            assert!(stream.pull().is_none(), "{mode} {name}");
            assert!(stream.try_pull().is_none(), "{mode} {name}");
            assert_eq!(r.metrics().rows_out, 191, "{mode} {name}");
        }
        // A view type declared: each batch's array is views, joined from
        // its slices' plain strings.
        let r = runner(
            "arrow_udfs.py",
            "upper",
            UdfKind::Scalar,
            DataType::Utf8View,
            &pairs,
        );
        let words = |n: usize, tag: &str| {
            batch(vec![Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 3 != 1).then(|| format!("{tag}é{i}"))),
            ))])
        };
        let shout = |n: usize, tag: &str| {
            coil_host::arrow_array::StringViewArray::from_iter(
                (0..n).map(|i| (i % 3 != 1).then(|| format!("{tag}é{i}").to_uppercase())),
            )
        };
        let mut stream = r.stream_arrow();
        for (n, tag) in [(9, "a"), (2, "b"), (17, "c")] {
            stream.push(&words(n, tag)).unwrap();
        }
        for (n, tag) in [(9, "a"), (2, "b"), (17, "c")] {
            let out = stream.pull().unwrap().unwrap();
            assert_eq!(out.as_ref(), &shout(n, tag) as &dyn Array, "{mode} {tag}");
        }
        assert!(stream.pull().is_none());
    }
}

#[test]
fn an_arrow_stream_takes_pushes_and_pulls_interleaved() {
    let batches = stream_batches();
    let pairs = ["python.worker-count=2", "python.fn-execution.bundle.size=5"];
    let r = runner(
        "arrow_udfs.py",
        "inc_or_none",
        UdfKind::Scalar,
        DataType::Int64,
        &pairs,
    );
    let mut stream = r.stream_arrow();
    assert!(stream.pull().is_none(), "nothing pushed yet");
    assert!(stream.try_pull().is_none());
    // Push two, pull one, push one, ...: always the oldest comes back.
    let mut next = 0;
    for (i, b) in batches.iter().enumerate() {
        stream.push(b).unwrap();
        if i % 2 == 1 {
            let out = stream.pull().unwrap().unwrap();
            assert_eq!(out.as_ref(), &incremented(&batches[next]) as &dyn Array);
            next += 1;
        }
    }
    // try_pull gives the oldest once every slice of it is back, without
    // waiting: ask until it is.
    let started = std::time::Instant::now();
    let out = loop {
        match stream.try_pull() {
            Some(out) => break out.unwrap(),
            None => {
                // A liveness bound only, far beyond any run's time.
                assert!(started.elapsed().as_secs() < 300, "never came back");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    };
    assert_eq!(out.as_ref(), &incremented(&batches[next]) as &dyn Array);
    next += 1;
    // The rest through the iterator, in order.
    let rest: Vec<ArrayRef> = stream.by_ref().map(Result::unwrap).collect();
    assert_eq!(rest.len(), batches.len() - next);
    for (out, b) in rest.iter().zip(&batches[next..]) {
        assert_eq!(out.as_ref(), &incremented(b) as &dyn Array);
    }
    assert!(stream.pull().is_none());
    // The stream goes on after it ran dry.
    stream.push(&batches[2]).unwrap();
    assert_eq!(
        stream.pull().unwrap().unwrap().as_ref(),
        &incremented(&batches[2]) as &dyn Array
    );
}

#[test]
fn a_failed_batch_of_an_arrow_stream_yields_its_error_in_its_place_and_the_stream_goes_on() {
    // odd_fails raises on odd values: batches 0 and 2 are even; batch 1
    // holds 11 at its row 5 and 13 at its row 9, in different slices.
    let evens = |from: i64, n: i64| ints_batch((0..n).map(|i| Some(from + 2 * i)));
    let times_ten =
        |from: i64, n: i64| Int64Array::from_iter_values((0..n).map(|i| 10 * (from + 2 * i)));
    let failing =
        ints_batch((0..12).map(|i| Some(if i == 5 || i == 9 { 2 * i + 1 } else { 2 * i })));
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=4",
            conf.as_str(),
        ];
        let r = runner(
            "arrow_udfs.py",
            "odd_fails",
            UdfKind::Scalar,
            DataType::Int64,
            &pairs,
        );
        let mut stream = r.stream_arrow();
        stream.push(&evens(0, 20)).unwrap();
        stream.push(&failing).unwrap();
        stream.push(&evens(100, 30)).unwrap();
        stream.push(&failing).unwrap();
        assert_eq!(
            stream.pull().unwrap().unwrap().as_ref(),
            &times_ten(0, 20) as &dyn Array,
            "{mode}"
        );
        // One error for the batch, its first: rows are counted across the
        // stream, so row 5 of the second batch is row 25.
        match stream.pull().unwrap() {
            Err(RunError::Udf { row: 25, error }) => {
                assert_eq!(error.type_name, "ValueError", "{mode}");
                assert_eq!(error.message, "odd 11", "{mode}");
            }
            other => panic!("{mode}: {other:?}"),
        }
        assert_eq!(
            stream.pull().unwrap().unwrap().as_ref(),
            &times_ten(100, 30) as &dyn Array,
            "{mode}"
        );
        let e = stream.pull().unwrap().unwrap_err();
        assert!(matches!(e, RunError::Udf { row: 67, .. }), "{mode}: {e:?}");
        assert!(stream.pull().is_none(), "{mode}");
        // Under fail, pull_each gives the same error.
        stream.push(&failing).unwrap();
        let e = stream.pull_each().unwrap().unwrap_err();
        assert!(matches!(e, RunError::Udf { row: 79, .. }), "{mode}: {e:?}");
    }
}

#[test]
fn under_skip_an_arrow_stream_gives_each_batch_its_nulls_and_its_failed_rows() {
    let odd_fails = |from: i64, n: i64| {
        Int64Array::from_iter((from..from + n).map(|x| (x % 2 == 0).then_some(x * 10)))
    };
    let sizes = [(0i64, 9i64), (9, 1), (10, 2), (12, 30), (42, 0), (42, 17)];
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=4",
            "python.fn-execution.on-error=skip",
            conf.as_str(),
        ];
        for (name, kind) in [
            ("odd_fails", UdfKind::Scalar),
            ("vec_odd_fails", UdfKind::Vectorized),
        ] {
            let r = runner("arrow_udfs.py", name, kind, DataType::Int64, &pairs);
            let mut stream = r.stream_arrow();
            // Row x of the stream holds x.
            for &(from, n) in &sizes {
                stream
                    .push(&ints_batch((from..from + n).map(Some)))
                    .unwrap();
            }
            for &(from, n) in &sizes {
                let (out, failed) = stream.pull_each().unwrap().unwrap();
                assert_eq!(
                    out.as_ref(),
                    &odd_fails(from, n) as &dyn Array,
                    "{mode} {name}: rows {from}.."
                );
                let rows: Vec<u64> = failed.iter().map(|f| f.row).collect();
                let odd: Vec<u64> = (from..from + n)
                    .filter(|x| x % 2 == 1)
                    .map(|x| x as u64)
                    .collect();
                assert_eq!(rows, odd, "{mode} {name}");
                for f in &failed {
                    match &f.error {
                        RunError::Udf { row, error } => {
                            assert_eq!(*row, f.row, "{mode} {name}");
                            assert_eq!(error.message, format!("odd {}", f.row));
                        }
                        e => panic!("{mode} {name}: {e:?}"),
                    }
                }
            }
            assert!(stream.pull_each().is_none(), "{mode} {name}");
            // pull gives a batch with a failed row as that row's error,
            // as call_arrow does, and a batch without one as its array.
            let first = stream.rows_pushed();
            stream.push(&ints_batch([Some(2), Some(4)])).unwrap();
            stream.push(&ints_batch([Some(6), Some(7)])).unwrap();
            assert_eq!(
                stream.pull().unwrap().unwrap().as_ref(),
                &Int64Array::from(vec![20, 40]) as &dyn Array,
                "{mode} {name}"
            );
            let e = stream.pull().unwrap().unwrap_err();
            assert!(
                matches!(&e, RunError::Row(r) if r.row == first + 3),
                "{mode} {name}: {e:?}"
            );
        }
    }
}

#[test]
fn an_arrow_stream_refuses_a_column_it_cannot_send_before_sending_anything() {
    let r = runner(
        "arrow_udfs.py",
        "inc_or_none",
        UdfKind::Scalar,
        DataType::Int64,
        &["python.worker-count=1", "python.fn-execution.bundle.size=4"],
    );
    let mut stream = r.stream_arrow();
    stream.push(&ints_batch((0..10).map(Some))).unwrap();
    let months: ArrayRef = Arc::new(coil_host::arrow_array::IntervalYearMonthArray::from(vec![
        1, 2,
    ]));
    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let e = stream.push(&batch(vec![ints, months])).unwrap_err();
    assert!(
        matches!(
            &e,
            RunError::UnsupportedColumn {
                column: 1,
                data_type: DataType::Interval(_)
            }
        ),
        "{e:?}"
    );
    assert_eq!(stream.rows_pushed(), 10, "nothing of it was pushed");
    // The refused batch has no place among the results.
    assert_eq!(
        stream.pull().unwrap().unwrap().as_ref(),
        &Int64Array::from_iter_values(1..11) as &dyn Array
    );
    assert!(stream.pull().is_none());
    assert_eq!(r.metrics().rows_in, 10);
    // Without a declared return type, nothing can be pushed.
    let spec = UdfSpec::new(format!(
        "{}:inc_or_none",
        udfs().join("arrow_udfs.py").display()
    ));
    let r =
        Runner::with_worker_command(&config(&["python.worker-count=1"]), spec, worker()).unwrap();
    let e = r
        .stream_arrow()
        .push(&ints_batch([Some(1)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("UdfSpec::returns"), "{e}");
}

#[test]
fn under_skip_a_row_that_kills_or_hangs_its_worker_fails_alone_in_a_column_batch() {
    let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..40));
    let want = Int64Array::from_iter((0..40).map(|i| (i != 13).then_some(i + 1)));
    for (udf, extra) in [
        ("sigkill", "python.fn-execution.timeout=30000"),
        ("hangs", "python.fn-execution.timeout=500"),
    ] {
        let pairs = [
            "python.worker-count=1",
            "python.fn-execution.bundle.size=10",
            "python.fn-execution.on-error=skip",
            extra,
        ];
        let r = runner("faults.py", udf, UdfKind::Scalar, DataType::Int64, &pairs);
        let (out, failed) = r.call_arrow_each(&batch(vec![ints.clone()])).unwrap();
        assert_eq!(out.as_ref(), &want as &dyn Array, "{udf}");
        let rows: Vec<u64> = failed.iter().map(|f| f.row).collect();
        assert_eq!(rows, vec![13], "{udf}: {failed:?}");
        // The stream's batches keep their rows too.
        let mut stream = r.stream_arrow();
        stream.push(&batch(vec![ints.clone()])).unwrap();
        stream.push(&batch(vec![ints.slice(0, 5)])).unwrap();
        let (first, failed) = stream.pull_each().unwrap().unwrap();
        assert_eq!(first.as_ref(), &want as &dyn Array, "{udf}");
        assert_eq!(failed.len(), 1, "{udf}");
        let (second, _) = stream.pull_each().unwrap().unwrap();
        assert_eq!(second.len(), 5, "{udf}");
        assert!(stream.pull_each().is_none());
    }
}

#[test]
fn declared_argument_types_are_checked_when_the_runner_starts_and_on_every_batch() {
    let spec = |args: Vec<DataType>| {
        UdfSpec::new(format!(
            "{}:inc_or_none",
            udfs().join("arrow_udfs.py").display()
        ))
        .returns(DataType::Int64)
        .args(args)
    };
    let pairs = ["python.worker-count=1"];
    let months = DataType::Interval(coil_host::arrow_schema::IntervalUnit::YearMonth);
    let e = match Runner::with_worker_command(&config(&pairs), spec(vec![months]), worker()) {
        Ok(_) => panic!("an interval argument was taken"),
        Err(e) => e,
    };
    assert!(
        matches!(
            &e,
            coil_host::StartError::UnsupportedArgument { column: 0, .. }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("argument 0 is declared Interval(YearMonth)"),
        "{e}"
    );
    let r = Runner::with_worker_command(&config(&pairs), spec(vec![DataType::Int64]), worker())
        .unwrap();
    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    assert_eq!(
        r.call_arrow(&batch(vec![ints])).unwrap().as_ref(),
        &Int64Array::from(vec![2, 3]) as &dyn Array
    );
    let words: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
    let e = r.call_arrow(&batch(vec![words])).unwrap_err().to_string();
    assert!(e.contains("declared [Int64]"), "{e}");
}

#[test]
fn views_and_dictionaries_inside_lists_and_structs_travel_both_ways() {
    use coil_host::arrow_array::builder::{ListBuilder, StringViewBuilder};
    use coil_host::arrow_array::{StringViewArray, StructArray};
    use coil_host::arrow_schema::Fields;
    let mut lb = ListBuilder::new(StringViewBuilder::new());
    lb.values().append_value("a rather long string in a view");
    lb.values().append_null();
    lb.append(true);
    lb.append(false);
    lb.values().append_value("z");
    lb.append(true);
    let lists: ArrayRef = Arc::new(lb.finish());
    let fields = Fields::from(vec![Field::new("v", DataType::Utf8View, true)]);
    let structs: ArrayRef = Arc::new(StructArray::new(
        fields,
        vec![Arc::new(StringViewArray::from(vec![
            Some("p"),
            None,
            Some("q"),
        ]))],
        None,
    ));
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = ["python.worker-count=1", conf.as_str()];
        for column in [&lists, &structs] {
            let r = runner(
                "arrow_udfs.py",
                "same",
                UdfKind::Scalar,
                column.data_type().clone(),
                &pairs,
            );
            let out = r.call_arrow(&batch(vec![column.clone()])).unwrap();
            assert_eq!(
                out.as_ref(),
                column.as_ref(),
                "{mode}: {}",
                column.data_type()
            );
        }
    }
}
