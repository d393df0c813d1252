//! `Runner::call_arrow` (issue 14, first columnar path): Arrow columns go
//! to the executors as column frames, in every mode; results come back as
//! an array of the declared type; errors name the column, the row, what the
//! UDF returned and the declared type.

use std::sync::Arc;

use coil_host::arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Int64Array, Int8Array,
    LargeBinaryArray, LargeStringArray, NullArray, RecordBatch, RecordBatchOptions, StringArray,
    UInt64Array,
};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{RunError, Runner, UdfKind, UdfSpec};

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
    // Numeric columns without nulls arrive as writable numpy arrays made
    // from their buffers; a parameter annotated `list` still gets a list,
    // pandas a Series, and `*rest` numpy arrays.
    let r = runner(
        "hints.py",
        "numpy_inplace",
        UdfKind::Vectorized,
        DataType::Int64,
        &with_numpy(&["python.worker-count=1"], &np),
    );
    assert_eq!(
        r.call_arrow(&batch(vec![a.clone()])).unwrap().as_ref(),
        &Int64Array::from(vec![2, 3, 4]) as &dyn Array
    );
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
    assert!(matches!(&e, RunError::ResultType { row: 0, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "row 0: the UDF returned str \"nope\", which does not fit the declared return type Int64"
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
    assert!(e.starts_with("row 1: the UDF returned int 128"), "{e}");
    let dates: ArrayRef = Arc::new(Date32Array::from(vec![1]));
    let e = r.call_arrow(&batch(vec![dates])).unwrap_err();
    assert!(
        matches!(e, RunError::UnsupportedColumn { column: 0, .. }),
        "{e:?}"
    );
    let spec = UdfSpec::new(format!(
        "{}:inc_or_none",
        udfs().join("arrow_udfs.py").display()
    ));
    let r = Runner::with_worker_command(&config(&pairs), spec, worker()).unwrap();
    let e = r.call_arrow(&batch(vec![ints])).unwrap_err().to_string();
    assert!(e.contains("UdfSpec::returns"), "{e}");
}
