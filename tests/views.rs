//! Columns without copies (issue 25): a vectorized UDF's numpy and
//! pyarrow arguments are read-only views that stay valid as long as the
//! UDF keeps them, never showing another batch's bytes; in the in-process
//! modes they are the caller's own buffers, and a pyarrow result comes
//! back as the very buffer the UDF returned.

use std::hint::black_box;
use std::sync::Arc;

use coil_host::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{RunError, Runner, UdfKind, UdfSpec};

use crate::util::{config, modes, numpy, udfs, with_numpy, worker};

fn runner(name: &str, mode: &str, np: &[String; 2]) -> Runner {
    let spec = UdfSpec::new(format!("{}:{name}", udfs().join("views.py").display()))
        .kind(UdfKind::Vectorized)
        .returns(DataType::Int64);
    let mode = format!("python.execution-mode={mode}");
    let pairs = with_numpy(&["python.worker-count=1", &mode], np);
    Runner::with_worker_command(&config(&pairs), spec, worker()).unwrap_or_else(|e| panic!("{e}"))
}

fn batch(column: ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("x", column.data_type().clone(), false)]);
    RecordBatch::try_new(Arc::new(schema), vec![column]).unwrap()
}

/// 40 batches, each dropped after its call and its memory churned by
/// fresh arrays of its size: a view that did not keep its buffer alive
/// would see other bytes by the next call, and the UDF checks every view
/// it kept on every call.
fn keeps_its_views(udf: &str, mode: &str, np: &[String; 2]) {
    let r = runner(udf, mode, np);
    for round in 0..40i64 {
        let xs = Int64Array::from_iter_values((0..4096).map(|i| i * 7 + round * 1_000_000));
        let want = Int64Array::from_iter_values(xs.values().iter().map(|x| x + 1));
        let input = batch(Arc::new(xs));
        let got = r
            .call_arrow(&input)
            .unwrap_or_else(|e| panic!("{udf} in {mode}, call {round}: {e}"));
        assert_eq!(got.as_ref(), &want as &dyn Array, "{udf} in {mode}");
        drop(input);
        for _ in 0..4 {
            black_box(Int64Array::from_iter_values((0..4096).map(|i| -i)));
        }
    }
}

#[test]
fn a_udf_that_keeps_its_numpy_and_pyarrow_arguments_sees_them_unchanged_in_every_mode() {
    let np = numpy();
    for mode in modes() {
        keeps_its_views("keep_numpy", mode, &np);
        keeps_its_views("keep_arrow", mode, &np);
    }
}

#[test]
fn writing_into_an_input_array_is_an_error_and_the_callers_data_stays_as_it_was() {
    let np = numpy();
    for mode in modes() {
        let r = runner("write_input", mode, &np);
        let xs: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let input = batch(Arc::clone(&xs));
        match r.call_arrow(&input) {
            Err(RunError::Udf { row: 0, error }) => {
                assert_eq!(error.type_name, "ValueError", "{mode}");
                assert!(
                    error.message.contains("read-only"),
                    "{mode}: {}",
                    error.message
                );
            }
            other => panic!("{mode}: {other:?}"),
        }
        assert_eq!(
            xs.as_ref(),
            &Int64Array::from(vec![1, 2, 3]) as &dyn Array,
            "{mode}"
        );
    }
}

/// What `udf` says the address of its argument's values is, and where
/// they are in this process.
fn addresses(udf: &str, mode: &str, np: &[String; 2]) -> (i64, i64) {
    let r = runner(udf, mode, np);
    let xs = Int64Array::from_iter_values(0..1000);
    let here = xs.values().as_ptr() as i64;
    let out = r.call_arrow(&batch(Arc::new(xs))).unwrap();
    let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
    (out.value(0), here)
}

#[test]
fn in_multi_thread_mode_the_udf_reads_the_callers_own_buffer() {
    let np = numpy();
    for udf in ["numpy_address", "arrow_address"] {
        let (seen, here) = addresses(udf, "multi-thread", &np);
        assert_eq!(seen, here, "{udf}: the caller's buffer, not a copy");
        // A worker process has its own copy (another address space).
        let (seen, here) = addresses(udf, "process", &np);
        assert_ne!(seen, here, "{udf} in process mode");
    }
}

#[test]
fn in_multi_thread_mode_a_pyarrow_result_comes_back_as_the_buffer_the_udf_returned() {
    let np = numpy();
    let r = runner("arrow_same", "multi-thread", &np);
    let xs = Int64Array::from_iter_values(0..1000);
    let here = xs.values().as_ptr();
    let out = r.call_arrow(&batch(Arc::new(xs.clone()))).unwrap();
    assert_eq!(out.as_ref(), &xs as &dyn Array);
    let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(
        out.values().as_ptr(),
        here,
        "the argument went to Python and back without a copy"
    );
}

#[test]
fn a_numpy_result_only_the_call_holds_becomes_the_results_buffer_without_a_copy() {
    let np = numpy();
    for mode in ["multi-thread", "process"] {
        let r = runner("own_address", mode, &np);
        let out = r
            .call_arrow(&batch(Arc::new(Int64Array::from_iter_values(0..1000))))
            .unwrap();
        let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
        let at = out.values().as_ptr() as i64;
        if mode == "multi-thread" {
            assert_eq!(out.value(0), at, "numpy's own memory, not a copy");
        } else {
            assert_ne!(out.value(0), at, "a worker process's memory is its own");
        }
    }
}

#[test]
fn a_numpy_output_array_the_udf_reuses_is_copied_so_earlier_results_never_change() {
    let np = numpy();
    for mode in modes() {
        let r = runner("reused_output", mode, &np);
        let first = r
            .call_arrow(&batch(Arc::new(Int64Array::from_iter_values(0..1000))))
            .unwrap();
        let second = r
            .call_arrow(&batch(Arc::new(Int64Array::from_iter_values(5000..6000))))
            .unwrap();
        assert_eq!(
            first.as_ref(),
            &Int64Array::from_iter_values(1..1001) as &dyn Array,
            "{mode}: the first call's results, after the second call"
        );
        assert_eq!(
            second.as_ref(),
            &Int64Array::from_iter_values(5001..6001) as &dyn Array,
            "{mode}"
        );
    }
}

/// `n` int64 values from `base`.
fn ints(base: i64, n: i64) -> Int64Array {
    Int64Array::from_iter_values(base..base + n)
}

#[test]
fn results_the_host_holds_stay_exact_while_later_batches_reuse_the_arena_around_them() {
    let np = numpy();
    // Four batches' results fill the answers half (4 × 2 slots); the
    // host holds up to six and drops them out of order.
    for (mode, arena) in [
        ("process", "256k"),
        ("process", "0"),
        ("multi-thread", "64m"),
    ] {
        let arena = format!("python.fn-execution.arena.size={arena}");
        let spec = UdfSpec::new(format!("{}:keep_numpy", udfs().join("views.py").display()))
            .kind(UdfKind::Vectorized)
            .returns(DataType::Int64);
        let mode_pair = format!("python.execution-mode={mode}");
        let pairs = with_numpy(&["python.worker-count=1", &mode_pair, &arena], &np);
        let r = Runner::with_worker_command(&config(&pairs), spec, worker()).unwrap();
        let mut held: Vec<(i64, ArrayRef)> = Vec::new();
        for i in 0..40i64 {
            let base = i * 100_000;
            held.push((
                base,
                r.call_arrow(&batch(Arc::new(ints(base, 4096)))).unwrap(),
            ));
            if held.len() > 6 {
                held.remove((i as usize * 7) % held.len());
            }
            for (base, got) in &held {
                assert_eq!(
                    got.as_ref(),
                    &ints(base + 1, 4096) as &dyn Array,
                    "{mode} {arena}: a held result changed"
                );
            }
        }
    }
}

#[test]
fn a_udf_that_keeps_every_input_fills_a_small_arena_and_batches_go_through_the_rings() {
    let np = numpy();
    let spec = UdfSpec::new(format!("{}:keep_numpy", udfs().join("views.py").display()))
        .kind(UdfKind::Vectorized)
        .returns(DataType::Int64);
    let pairs = with_numpy(
        &[
            "python.worker-count=1",
            "python.fn-execution.arena.size=64k",
        ],
        &np,
    );
    let r = Runner::with_worker_command(&config(&pairs), spec, worker()).unwrap();
    for i in 0..20 {
        let got = r
            .call_arrow(&batch(Arc::new(ints(i * 10_000, 4096))))
            .unwrap();
        assert_eq!(got.as_ref(), &ints(i * 10_000 + 1, 4096) as &dyn Array);
    }
}

#[test]
fn a_worker_that_scribbles_over_results_it_answered_changes_fixed_width_values_at_most() {
    let np = numpy();
    let spec = |name: &str, t: DataType| {
        UdfSpec::new(format!("{}:{name}", udfs().join("views.py").display()))
            .kind(UdfKind::Vectorized)
            .returns(t)
    };
    // One batch per call (no first small batches, no joining).
    let pairs = with_numpy(
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=4096",
        ],
        &np,
    );
    // Ints are read in place: a worker that writes over a result it
    // answered can change its values (as a wrong answer could), nothing
    // else: every value is the answer or the scribble.
    let r = Runner::with_worker_command(
        &config(&pairs),
        spec("scribble_inc", DataType::Int64),
        worker(),
    )
    .unwrap();
    let first = r.call_arrow(&batch(Arc::new(ints(0, 4096)))).unwrap();
    r.call_arrow(&batch(Arc::new(ints(0, 4096)))).unwrap();
    let first = first.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!((first.len(), first.null_count()), (4096, 0));
    let scribble = i64::from_le_bytes([0x5a; 8]);
    let scribbled = (0..4096)
        .filter(|&i| {
            let v = first.value(i);
            assert!(v == i as i64 + 1 || v == scribble, "row {i}: {v}");
            v == scribble
        })
        .count();
    assert_eq!(
        scribbled, 4096,
        "the result was read in place, in the arena"
    );
    // Strings (offsets and bytes) are copied out and validated before the
    // host uses them: the same scribble changes nothing.
    let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    let input: ArrayRef = Arc::new(coil_host::arrow_array::StringArray::from(words.clone()));
    let r = Runner::with_worker_command(
        &config(&pairs),
        spec("scribble_upper", DataType::Utf8),
        worker(),
    )
    .unwrap();
    let first = r.call_arrow(&batch(Arc::clone(&input))).unwrap();
    r.call_arrow(&batch(input)).unwrap();
    let want = coil_host::arrow_array::StringArray::from(
        words.iter().map(|w| w.to_uppercase()).collect::<Vec<_>>(),
    );
    assert_eq!(first.as_ref(), &want as &dyn Array);
}
