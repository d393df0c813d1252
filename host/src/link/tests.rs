//! The answer → [`Reply`] translation, without an executor: every answer a
//! batch can get, and what the scheduler makes of it.

use std::sync::Arc;

use arrow_array::{Array, Int64Array};
use coil_proto::{PyErrorInfo, RowFailure};

use super::*;

fn error(message: &str) -> PyErrorInfo {
    PyErrorInfo {
        type_name: "ValueError".into(),
        message: message.into(),
        traceback: String::new(),
    }
}

/// Rows 100..104 of the stream.
const ROWS: Range<u64> = 100..104;

#[test]
fn results_answer_with_their_values_and_the_rows_that_failed_numbered_across_the_stream() {
    let answer = Answer::Results {
        seq: 7,
        times: Times::default(),
        values: vec![Value::Int(1), Value::Null, Value::Int(3), Value::Null],
        failed: vec![
            RowFailure {
                row: 1,
                fault: RowFault::Raised(error("bad")),
            },
            RowFailure {
                row: 3,
                fault: RowFault::BadValue("not a value".into()),
            },
        ],
    };
    let Reply::Values(Results::Rows(values), _, decode, failed) = reply(answer, ROWS, None) else {
        panic!("results")
    };
    assert_eq!(values.len(), 4);
    assert_eq!(decode, Duration::ZERO, "the caller measures decoding");
    assert_eq!(failed.len(), 2);
    assert!(
        matches!(&failed[0], (101, RunError::Udf { row: 101, error }) if error.message == "bad")
    );
    assert!(matches!(
        &failed[1],
        (103, RunError::BadRow { row: Some(103), message }) if message == "not a value"
    ));
}

#[test]
fn a_row_interrupted_fails_alone_with_the_timeout_it_ran_past() {
    let answer = Answer::ColumnResults {
        seq: 7,
        times: Times::default(),
        column: Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
        failed: vec![RowFailure {
            row: 1,
            fault: RowFault::TimedOut(error("TimeoutError")),
        }],
    };
    let Reply::Values(Results::Column(column), _, _, failed) =
        reply(answer, ROWS, Some(Duration::from_secs(2)))
    else {
        panic!("a column")
    };
    assert_eq!(column.len(), 4);
    match &failed[..] {
        [(101, RunError::Timeout { row, after, rows })] => {
            assert_eq!(*row, Some(101));
            assert_eq!(*after, Duration::from_secs(2));
            assert_eq!(*rows, 101..102);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_udf_error_names_its_row_across_the_stream_and_leaves_the_executor_fine() {
    let answer = Answer::UdfError {
        seq: 7,
        row: 2,
        error: error("boom"),
    };
    assert!(matches!(
        reply(answer, ROWS, None),
        Reply::Error(RunError::Udf { row: 102, .. })
    ));
    let answer = Answer::Incompatible {
        seq: 7,
        row: 0,
        module: "numpy".into(),
        error: error("no"),
    };
    assert!(matches!(
        reply(answer, ROWS, None),
        Reply::Error(RunError::SubInterpreterIncompatible { row: 100, module, .. }) if module == "numpy"
    ));
}

#[test]
fn a_bad_row_names_its_row_only_when_one_is_to_blame() {
    let bad = |row| Answer::BadRow {
        seq: 7,
        row,
        message: "cannot convert".into(),
    };
    assert!(matches!(
        reply(bad(Some(3)), ROWS, None),
        Reply::Error(RunError::BadRow { row: Some(103), .. })
    ));
    assert!(matches!(
        reply(bad(None), ROWS, None),
        Reply::Error(RunError::BadRow { row: None, .. })
    ));
}

#[test]
fn results_too_large_fail_the_whole_batch_naming_size_and_limit() {
    let answer = Answer::TooLarge {
        seq: 7,
        bytes: 9000,
        limit: 4096,
    };
    match reply(answer, ROWS, None) {
        Reply::Error(RunError::TooLarge {
            direction: Direction::Results,
            rows,
            bytes: 9000,
            limit: 4096,
        }) => assert_eq!(rows, ROWS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batches_are_tagged_by_kind_and_error_policy() {
    assert_eq!(batch_tag(Tag::Batch, false), Tag::Batch);
    assert_eq!(batch_tag(Tag::BatchPerRow, false), Tag::BatchPerRow);
    assert_eq!(batch_tag(Tag::Batch, true), Tag::Columns);
    assert_eq!(batch_tag(Tag::BatchPerRow, true), Tag::ColumnsPerRow);
}
