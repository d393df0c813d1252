//! What one UDF may take (issue 24): `python.worker.memory-limit` bounds
//! each worker process, so a UDF that allocates without bound fails its
//! rows with a `MemoryError` that names the limit, and the host (this test
//! process) never runs out.

use coil_host::{RunError, UdfKind};
use coil_ipc::Value;

use crate::util::{ints, start};

fn limited(name: &str) -> coil_host::Runner {
    start(
        "memory.py",
        name,
        UdfKind::Scalar,
        &[
            "python.execution-mode=process",
            "python.worker-count=1",
            "python.worker.memory-limit=512m",
            "python.fn-execution.on-error=skip",
        ],
    )
}

fn memory_error(e: &RunError) -> String {
    match e {
        RunError::Udf { error, .. } => {
            assert_eq!(error.type_name, "MemoryError", "{e:?}");
            error.message.clone()
        }
        other => panic!("expected a MemoryError, got {other:?}"),
    }
}

#[test]
fn a_udf_that_asks_for_4_gib_in_a_512_mib_worker_fails_its_row_alone() {
    let r = limited("big_on_three");
    let out = r.call_each(&ints(0..8)).unwrap();
    for (x, v) in out.iter().enumerate() {
        match v {
            Ok(v) => assert_eq!(*v, Value::Int(x as i64)),
            Err(e) => {
                assert_eq!(x, 3, "{e}");
                let message = memory_error(&e.error);
                assert!(
                    message.contains("python.worker.memory-limit, is 512 MiB"),
                    "{message}"
                );
            }
        }
    }
    assert!(out[3].is_err());
    assert_eq!(r.metrics().worker_restarts, 0, "the worker lived on");
}

#[test]
fn a_udf_that_leaks_across_rows_fails_once_at_its_limit_and_the_host_lives() {
    let r = limited("leaks");
    let out = r.call_each(&ints(0..30)).unwrap();
    // 40 MiB a row: a dozen fit under 512 MiB, then every row fails.
    let first_failed = out
        .iter()
        .position(Result::is_err)
        .expect("the limit was hit");
    assert!((5..13).contains(&first_failed), "{first_failed}");
    assert!(out[first_failed..].iter().all(Result::is_err));
    let message = memory_error(&out[first_failed].as_ref().unwrap_err().error);
    assert!(message.contains("512 MiB"), "{message}");
    // Bad values are refused with the key's name.
    let e = coil_host::Config::builder()
        .set("python.worker.memory-limit", "1m")
        .unwrap_err();
    assert!(e.to_string().contains("python.worker.memory-limit"), "{e}");
}
