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

#[test]
fn workers_idle_past_the_idle_timeout_end_and_start_again_on_the_next_call() {
    for mode in crate::util::modes() {
        let r = start(
            "basic.py",
            "inc",
            UdfKind::Scalar,
            &[
                &format!("python.execution-mode={mode}"),
                "python.worker-count=2",
                "python.worker.idle-timeout=300ms",
            ],
        );
        assert_eq!(r.call(&ints(0..10)).unwrap(), ints(1..11).concat());
        let first = r.worker_pids();
        assert_eq!(r.idle_executors(), 2, "{mode}");
        // Polled, not slept: the workers end within the timeout and a tick.
        let started = std::time::Instant::now();
        while r.idle_executors() > 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{mode}: {} idle executors still running",
                r.idle_executors()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if mode == "process" {
            // Really gone (closed, then reaped): no child process of this
            // test is left of them.
            let left = || -> Vec<u32> {
                crate::util::children()
                    .into_iter()
                    .filter(|p| first.contains(p))
                    .collect()
            };
            while !left().is_empty() {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{:?}",
                    left()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        // The next call starts them again, and answers.
        assert_eq!(r.call(&ints(5..9)).unwrap(), ints(6..10).concat(), "{mode}");
        assert!(r.idle_executors() >= 1, "{mode}");
        assert_eq!(
            r.metrics().worker_restarts,
            0,
            "{mode}: not counted as failures"
        );
    }
}

#[test]
fn a_runner_that_cannot_get_its_workers_under_max_processes_says_so() {
    let config = crate::util::config(&[
        "python.worker-count=2",
        "python.worker.max-processes=1",
        "python.worker.start-timeout=1s",
    ]);
    let spec = coil_host::UdfSpec::new(format!(
        "{}:inc",
        crate::util::udfs().join("basic.py").display()
    ));
    let Err(e) = coil_host::Runner::with_worker_command(&config, spec, crate::util::worker())
    else {
        panic!("two workers cannot start under a limit of one");
    };
    let text = e.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("python.worker.max-processes (1) worker processes are all busy"),
        "{text}"
    );
}
