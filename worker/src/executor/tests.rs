//! The executor's paths, each run in this process's embedded interpreter:
//! rows, columns and vectorized, failing as a batch or row by row.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array};
use coil_ipc::{decode_batch, encode_batch, Row, Value};
use coil_proto::{RowFault, UdfKind, UdfSpec};
use pyo3::Python;

use super::Executor;
use crate::error::BatchError;

const RECIPROCAL: &str = "def recip(x):\n    return 12 // x\n";

/// Writes `source` to a file of its own and names `name` in it.
pub(crate) fn udf(name: &str, source: &str) -> UdfSpec {
    let dir = std::env::temp_dir().join(format!("coil-worker-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let file = dir.join(format!("{name}.py"));
    std::fs::write(&file, source).expect("writing the UDF");
    UdfSpec::new(format!("{}:{name}", file.display()))
}

/// The rows of a batch that failed, with why.
type Failed = Vec<(u32, RowFault)>;

fn rows(values: &[i64]) -> Vec<u8> {
    let rows: Vec<Row> = values.iter().map(|v| vec![Value::Int(*v)]).collect();
    let mut out = Vec::new();
    encode_batch(&rows, &mut out).expect("encoding a batch");
    out
}

/// Runs `values` as a row batch through `spec`: the results (one value a
/// row), or the batch's error, and the rows that failed.
fn run_rows(
    spec: &UdfSpec,
    values: &[i64],
    per_row: bool,
) -> (Result<Vec<Value>, BatchError>, Failed) {
    let input = rows(values);
    Python::initialize();
    Python::attach(|py| {
        let mut exec = Executor::load(py, spec).expect("the UDF loads");
        let mut out = Vec::new();
        let ran = exec.run_batch(py, &input[..], &mut out, per_row).map(|()| {
            decode_batch(&out[..])
                .expect("a well-formed answer")
                .into_iter()
                .map(|mut r| r.remove(0))
                .collect()
        });
        let failed = exec
            .take_failures()
            .into_iter()
            .map(|f| (f.row, f.fault))
            .collect();
        (ran, failed)
    })
}

/// Runs `values` as a one-column batch through `spec` (declared to return
/// int64): the result column, or the batch's error, and the failed rows.
fn run_columns(
    spec: &UdfSpec,
    values: &[i64],
    per_row: bool,
) -> (Result<ArrayRef, BatchError>, Failed) {
    let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
    let batch = coil_proto::Decoded {
        seq: 0,
        rows: values.len(),
        columns: vec![column],
    };
    Python::initialize();
    Python::attach(|py| {
        let mut exec = Executor::load(py, spec).expect("the UDF loads");
        let mut out = Vec::new();
        let ran = exec.run_columns(py, &batch, &mut out, per_row).map(|()| {
            let (n, mut columns, _) =
                coil_proto::Columns::decode_body(&out[..]).expect("a well-formed answer");
            assert_eq!(n, values.len());
            columns.remove(0)
        });
        let failed = exec
            .take_failures()
            .into_iter()
            .map(|f| (f.row, f.fault))
            .collect();
        (ran, failed)
    })
}

fn raised(fault: &RowFault) -> &str {
    match fault {
        RowFault::Raised(e) => &e.type_name,
        other => panic!("expected a raised exception, got {other:?}"),
    }
}

#[test]
fn a_row_that_raises_fails_the_batch_unless_rows_fail_alone() {
    let spec = udf("recip", RECIPROCAL);
    let (ran, failed) = run_rows(&spec, &[1, 0, 4], false);
    assert!(
        matches!(ran, Err(BatchError::Udf { row: 1, .. })),
        "{ran:?}"
    );
    assert!(failed.is_empty());

    let (ran, failed) = run_rows(&spec, &[1, 0, 4], true);
    assert_eq!(ran.unwrap(), [Value::Int(12), Value::Null, Value::Int(3)]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 1);
    assert_eq!(raised(&failed[0].1), "ZeroDivisionError");
}

#[test]
fn a_result_outside_the_row_model_is_its_rows_bad_value() {
    let spec = udf("setty", "def setty(x):\n    return {x} if x else x\n");
    let (ran, failed) = run_rows(&spec, &[0, 5], true);
    assert_eq!(ran.unwrap(), [Value::Int(0), Value::Null]);
    match &failed[..] {
        [(1, RowFault::BadValue(m))] => assert!(m.contains("type set is not supported"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_table_udf_answers_the_list_of_rows_each_input_row_emitted() {
    let mut spec = udf(
        "upto",
        "def upto(n):\n    for i in range(n):\n        yield (i, i * i)\n",
    );
    spec.kind = UdfKind::Table;
    let (ran, _) = run_rows(&spec, &[0, 2], false);
    let pair = |a, b| Value::List(vec![Value::Int(a), Value::Int(b)]);
    assert_eq!(
        ran.unwrap(),
        [
            Value::List(vec![]),
            Value::List(vec![pair(0, 0), pair(1, 1)])
        ]
    );
}

#[test]
fn a_vectorized_call_that_fails_is_made_again_row_by_row_to_find_the_rows() {
    let mut spec = udf(
        "recips",
        "def recips(xs):\n    return [12 // x for x in xs]\n",
    );
    spec.kind = UdfKind::Vectorized;
    let (ran, _) = run_rows(&spec, &[1, 0, 4], false);
    assert!(
        matches!(ran, Err(BatchError::Udf { row: 0, .. })),
        "{ran:?}"
    );

    let (ran, failed) = run_rows(&spec, &[1, 0, 4], true);
    assert_eq!(ran.unwrap(), [Value::Int(12), Value::Null, Value::Int(3)]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 1);
    assert_eq!(raised(&failed[0].1), "ZeroDivisionError");
}

#[test]
fn a_vectorized_udf_must_answer_a_value_per_row() {
    let mut spec = udf("short", "def short(xs):\n    return list(xs)[1:]\n");
    spec.kind = UdfKind::Vectorized;
    let (ran, _) = run_rows(&spec, &[1, 2, 3], false);
    match ran {
        Err(BatchError::BadRow { row: None, message }) => {
            assert_eq!(message, "the vectorized UDF returned 2 values for 3 rows")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_column_batch_runs_row_by_row_with_nulls_for_the_rows_that_fail() {
    let mut spec = udf("recip", RECIPROCAL);
    spec.returns = Some(arrow_schema::DataType::Int64);
    let (ran, failed) = run_columns(&spec, &[1, 0, 4], true);
    let column = ran.unwrap();
    let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(column.iter().collect::<Vec<_>>(), [Some(12), None, Some(3)]);
    assert_eq!(failed.len(), 1);
    assert_eq!(raised(&failed[0].1), "ZeroDivisionError");
}

#[test]
fn a_vectorized_column_batch_gets_its_column_whole() {
    let mut spec = udf(
        "double",
        "def double(xs):\n    return [2 * x for x in xs]\n",
    );
    spec.kind = UdfKind::Vectorized;
    spec.returns = Some(arrow_schema::DataType::Int64);
    let (ran, failed) = run_columns(&spec, &[1, 2, 3], false);
    let column = ran.unwrap();
    let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(column.values().as_ref(), [2, 4, 6]);
    assert!(failed.is_empty());
}

#[test]
fn a_column_batch_needs_a_declared_return_type() {
    let spec = udf("recip", RECIPROCAL);
    let (ran, _) = run_columns(&spec, &[1], false);
    match ran {
        Err(BatchError::BadRow { row: None, message }) => {
            assert!(
                message.contains("without a declared return type"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_datetime_for_a_declared_date_is_refused_in_a_whole_sentence() {
    let mut spec = udf(
        "stamp",
        "import datetime\ndef stamp(x):\n    return datetime.datetime(2024, 1, 2, 3, 4)\n",
    );
    spec.returns = Some(arrow_schema::DataType::Date32);
    let (ran, _) = run_columns(&spec, &[1], false);
    match ran {
        Err(BatchError::BadRow {
            row: Some(0),
            message,
        }) => assert_eq!(
            message,
            "result: a datetime (datetime.datetime(2024, 1, 2, 3, 4)) does not fit the declared \
             type Date32: a datetime.datetime is refused where a datetime.date is declared, as \
             its time of day would be lost (call .date() on it)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_str_for_a_declared_date_names_what_is_expected() {
    let mut spec = udf("text", "def text(x):\n    return 'soon'\n");
    spec.returns = Some(arrow_schema::DataType::Date32);
    let (ran, _) = run_columns(&spec, &[1], false);
    match ran {
        Err(BatchError::BadRow { message, .. }) => assert_eq!(
            message,
            "result: a str ('soon') does not fit the declared type Date32: a datetime.date is expected"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_load_that_fails_for_a_sub_interpreter_names_its_blocker() {
    let spec = udf(
        "blocked",
        "raise ImportError('module fastlib._core does not support loading in subinterpreters')\ndef blocked(x):\n    return x\n",
    );
    let plain = udf(
        "broken",
        "import no_such_module_anywhere\ndef broken(x):\n    return x\n",
    );
    Python::initialize();
    Python::attach(|py| {
        let e = Executor::load(py, &spec).err().expect("loading fails");
        assert_eq!(e.blocker.as_deref(), Some("fastlib"));
        assert_eq!(e.error.type_name, "ImportError");
        let e = Executor::load(py, &plain).err().expect("loading fails");
        assert_eq!(e.blocker, None);
    });
}
