//! Async UDFs, retries and the shared rate limit (issue 23): `async def`
//! UDFs keep many rows in flight across batches, in every mode, with
//! answers in order; a call past its timeout is cancelled and its row
//! fails alone; failed calls are retried with back-off or after a
//! `coil.RetryAfter`; one rate limit holds for all of a UDF's workers. The
//! HTTP tests call a real server on 127.0.0.1 (`tests/udfs/http_server.py`)
//! with aiohttp, installed through `python.requirements`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coil_host::arrow_array::{Array, Int64Array, RecordBatch};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{RunError, Runner, UdfKind};
use coil_ipc::Value;

use crate::util::{ints, modes, start};

const FILE: &str = "async_udfs.py";

fn pairs(mode: &str, extra: &[&str]) -> Vec<String> {
    let mut p = vec![
        format!("python.execution-mode={mode}"),
        "python.worker-count=1".into(),
    ];
    p.extend(extra.iter().map(|s| s.to_string()));
    p
}

fn runner(name: &str, pairs: &[String]) -> Runner {
    let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    start(FILE, name, UdfKind::Scalar, &pairs)
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

#[test]
fn an_executor_keeps_its_concurrency_full_across_batches_and_answers_in_order() {
    for mode in modes() {
        // Batches of 8 rows, two in each executor's ring at a time: only
        // an executor that starts the next batch before the last one is
        // done reaches 16 rows in flight.
        let r = runner(
            "in_flight",
            &pairs(
                mode,
                &[
                    "python.fn-execution.async.max-concurrency=16",
                    "python.fn-execution.bundle.size=8",
                ],
            ),
        );
        assert!(r.signature().asynchronous, "{mode}");
        let out = r.call(&ints(0..160)).unwrap();
        let rows: Vec<i64> = out.iter().map(|v| int(v) / 1000).collect();
        assert_eq!(rows, (0..160).collect::<Vec<_>>(), "{mode}: in order");
        let peak = out.iter().map(|v| int(v) % 1000).max().unwrap();
        assert_eq!(peak, 16, "{mode}: at most, and at last, 16 rows in flight");
    }
}

#[test]
fn async_answers_are_plain_pythons_in_every_mode_over_rows_and_arrow() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let column = Int64Array::from_iter_values(0..500);
    let batch = RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap();
    for mode in modes() {
        let r = runner("double", &pairs(mode, &["python.worker-count=2"]));
        let out = r.call(&ints(0..500)).unwrap();
        assert_eq!(
            out,
            (0..500).map(|x| Value::Int(2 * x)).collect::<Vec<_>>(),
            "{mode}"
        );
        // Over Arrow columns, typed by the return annotation.
        let r = runner("plus_one", &pairs(mode, &[]));
        let got = r.call_arrow(&batch).unwrap();
        let got = got.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(got.null_count(), 0, "{mode}");
        assert_eq!(
            got.values().to_vec(),
            (1..=500).collect::<Vec<i64>>(),
            "{mode}"
        );
        let r = runner("Session", &pairs(mode, &[]));
        let out = r.call(&ints(0..50)).unwrap();
        assert_eq!(out[49], Value::Str("row-49".into()), "{mode}");
        let m = r.metrics();
        assert_eq!((m.attempts, m.retries), (50, 0), "{mode}: counted");
    }
}

#[test]
fn a_call_past_its_timeout_is_cancelled_and_fails_alone_while_its_worker_goes_on() {
    for mode in modes() {
        let r = runner(
            "stuck_on_three",
            &pairs(
                mode,
                &[
                    "python.fn-execution.timeout=300ms",
                    "python.fn-execution.on-error=skip",
                ],
            ),
        );
        let pids = r.worker_pids();
        let started = Instant::now();
        let out = r.call_each(&ints(0..40)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode}: not the 10 s sleep"
        );
        for (x, v) in out.iter().enumerate() {
            match v {
                Ok(v) => assert_eq!(int(v), x as i64, "{mode}"),
                Err(e) => {
                    assert_eq!(x, 3, "{mode}: {e}");
                    assert!(matches!(e.error, RunError::Timeout { .. }), "{mode}: {e:?}");
                }
            }
        }
        assert!(out[3].is_err(), "{mode}");
        assert_eq!(r.worker_pids(), pids, "{mode}: no worker replaced");
        assert_eq!(r.metrics().worker_restarts, 0, "{mode}");
    }
}

#[test]
fn an_event_loop_blocked_by_synchronous_code_is_stopped_as_a_hung_worker() {
    let r = runner(
        "blocks_the_loop",
        &pairs("process", &["python.fn-execution.timeout=500ms"]),
    );
    let started = Instant::now();
    let e = r.call(&ints(0..5)).unwrap_err();
    assert!(matches!(e, RunError::Timeout { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.metrics().worker_restarts, 1);
    // The replacement answers.
    assert_eq!(r.call(&ints(3..4)).unwrap(), vec![Value::Int(3)]);
}

fn retrying(mode: &str, attempts: &str, extra: &[&str]) -> Vec<String> {
    let mut p = pairs(
        mode,
        &[
            "python.fn-execution.retry.on=ConnectionError",
            "python.fn-execution.retry.initial-delay=40ms",
        ],
    );
    p.push(format!("python.fn-execution.retry.max-attempts={attempts}"));
    p.extend(extra.iter().map(|s| s.to_string()));
    p
}

#[test]
fn failed_calls_are_retried_with_back_off_then_give_up_with_the_attempt_count() {
    for mode in modes() {
        for name in ["flaky", "flaky_async"] {
            // Two failures each, then the answer: 40 ms then 80 ms (+-25%)
            // of back-off before it.
            let r = runner(name, &retrying(mode, "3", &[]));
            let started = Instant::now();
            let out = r.call(&ints(0..20)).unwrap();
            assert!(
                started.elapsed() >= Duration::from_millis(90),
                "{mode} {name}"
            );
            assert_eq!(
                out,
                (0..20).map(|x| Value::Int(10 * x)).collect::<Vec<_>>(),
                "{mode} {name}"
            );
            let m = r.metrics();
            assert_eq!((m.attempts, m.retries), (60, 40), "{mode} {name}");
            // Two attempts are not enough: the last error, with the count.
            let r = runner(name, &retrying(mode, "2", &[]));
            let e = r.call(&ints(5..6)).unwrap_err();
            match &e {
                RunError::Udf { error, .. } => {
                    assert_eq!(error.type_name, "ConnectionError", "{mode} {name}");
                    assert!(
                        error
                            .message
                            .contains("row 5's server refused (gave up after 2 attempts)"),
                        "{mode} {name}: {}",
                        error.message
                    );
                }
                other => panic!("{mode} {name}: {other:?}"),
            }
        }
        // An exception not named is not retried.
        let r = runner("wrong", &retrying(mode, "5", &[]));
        r.call(&ints(0..3)).unwrap_err();
        assert_eq!(r.metrics().retries, 0, "{mode}");
    }
}

#[test]
fn retry_after_is_honoured_and_the_retried_row_keeps_its_place() {
    for mode in modes() {
        let r = runner(
            "asks_to_wait",
            &pairs(mode, &["python.fn-execution.retry.max-attempts=2"]),
        );
        let started = Instant::now();
        let out = r.call(&ints(0..30)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "{mode}");
        assert_eq!(
            out,
            ints(0..30).into_iter().flatten().collect::<Vec<_>>(),
            "{mode}"
        );
        // Longer than retry.max-delay: the row fails now, saying why.
        let r = runner(
            "asks_too_much",
            &pairs(mode, &["python.fn-execution.retry.max-attempts=5"]),
        );
        let e = r.call(&ints(0..1)).unwrap_err();
        let RunError::Udf { error, .. } = &e else {
            panic!("{mode}: {e:?}")
        };
        assert!(
            error
                .traceback
                .contains("python.fn-execution.retry.max-delay"),
            "{mode}: {e}"
        );
    }
}

#[test]
fn bad_async_and_retry_settings_are_refused_at_start_naming_the_key_or_function() {
    let refused = |name: &str, extra: &[&str]| -> String {
        let pairs: Vec<String> = pairs("process", extra);
        let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let spec = coil_host::UdfSpec::new(format!(
            "{}:{name}",
            crate::util::udfs().join(FILE).display()
        ));
        match Runner::with_worker_command(&crate::util::config(&pairs), spec, crate::util::worker())
        {
            Ok(_) => panic!("{name} {extra:?} started"),
            Err(e) => e.to_string(),
        }
    };
    let e = refused("flaky", &["python.fn-execution.async.max-concurrency=8"]);
    assert!(
        e.contains("python.fn-execution.async.max-concurrency is set, but flaky is not async"),
        "{e}"
    );
    let e = refused(
        "flaky",
        &["python.fn-execution.retry.on=ConnectionError,NoSuchError"],
    );
    assert!(
        e.contains("python.fn-execution.retry.on: 'NoSuchError' names no exception class"),
        "{e}"
    );
    let e = refused(
        "flaky",
        &[
            "python.fn-execution.retry.initial-delay=2s",
            "python.fn-execution.retry.max-delay=1s",
        ],
    );
    assert!(
        e.contains("python.fn-execution.retry.initial-delay (2 s) is more than"),
        "{e}"
    );
    for (key, value) in [
        ("python.fn-execution.async.max-concurrency", "0"),
        ("python.fn-execution.retry.max-attempts", "0"),
        ("python.fn-execution.retry.initial-delay", "-1s"),
        ("python.fn-execution.rate-limit", "-3"),
        ("python.fn-execution.retry.on", "Connection Error"),
    ] {
        let e = coil_host::Config::builder().set(key, value).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
    // An async UDF is a scalar function.
    let spec = coil_host::UdfSpec::new(format!(
        "{}:double",
        crate::util::udfs().join(FILE).display()
    ))
    .kind(UdfKind::Vectorized);
    let e = Runner::with_worker_command(&crate::util::config(&[]), spec, crate::util::worker())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("double is async: an async UDF runs as a scalar function"),
        "{e}"
    );
    let e = refused("words", &[]);
    assert!(e.contains("words is an async generator"), "{e}");
    // Declared async, but what it returns cannot be awaited: the row's error.
    let r = runner("not_awaitable", &pairs("process", &[]));
    let e = r.call(&ints(0..1)).unwrap_err().to_string();
    assert!(
        e.contains("not_awaitable is an async UDF but returned int, not an awaitable"),
        "{e}"
    );
}

#[test]
fn a_worker_killed_with_rows_in_flight_has_every_row_run_again_and_answered_once() {
    let marker = std::env::temp_dir()
        .join(format!("coil-async-died-{}", std::process::id()))
        .display()
        .to_string();
    let _ = std::fs::remove_file(&marker);
    let r = runner(
        "dies_once",
        &pairs(
            "process",
            &[
                "python.worker-count=2",
                "python.fn-execution.retries=1",
                "python.fn-execution.bundle.size=64",
            ],
        ),
    );
    let rows: Vec<Vec<Value>> = (0..400)
        .map(|x| vec![Value::Str(marker.clone()), Value::Int(x)])
        .collect();
    let out = r.call(&rows).unwrap();
    assert_eq!(out, (1..=400).map(Value::Int).collect::<Vec<_>>());
    assert!(Path::new(&marker).exists(), "the worker was killed");
    assert_eq!(r.metrics().worker_restarts, 1);
    let _ = std::fs::remove_file(&marker);
}

/// The test HTTP server (`tests/udfs/http_server.py`), stopped on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(root.join("tools/python"))
            .arg(root.join("tests/udfs/http_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Every request so far: path, seconds since the server started, the
    /// executor that sent it, the status it got.
    fn log(&self) -> Vec<(String, f64, String, u16)> {
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /log HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    fn rows(&self, kind: &str, n: std::ops::Range<i64>) -> Vec<Vec<Value>> {
        n.map(|x| {
            vec![
                Value::Str(self.base.clone()),
                Value::Str(kind.into()),
                Value::Int(x),
            ]
        })
        .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A runner for `name` in `http_udfs.py`, with aiohttp from
/// `tests/requirements-http.txt`.
fn http_runner(name: &str, pairs: &[String]) -> Runner {
    let env = crate::util::http_client();
    let mut all: Vec<&str> = pairs.iter().map(String::as_str).collect();
    all.extend(env.iter().map(String::as_str));
    start("http_udfs.py", name, UdfKind::Scalar, &all)
}

#[test]
fn an_http_udf_with_retries_gives_exact_answers_in_order_within_its_request_budget() {
    let server = Server::start(&["--latency-ms", "5", "--unavailable-every", "3"]);
    let p = pairs(
        "process",
        &[
            "python.worker-count=2",
            "python.fn-execution.retry.max-attempts=3",
            "python.fn-execution.retry.on=aiohttp.ClientResponseError",
            "python.fn-execution.retry.initial-delay=20ms",
        ],
    );
    let r = http_runner("Double", &p);
    let out = r.call(&server.rows("flaky", 0..300)).unwrap();
    assert_eq!(out, (0..300).map(|x| Value::Int(2 * x)).collect::<Vec<_>>());
    let log = server.log();
    // Every third row got a 503 once, then its answer: 400 requests, no
    // more (rows x attempts bounds them).
    assert_eq!(log.len(), 400);
    assert_eq!(log.iter().filter(|l| l.3 == 503).count(), 100);
    assert_eq!(r.metrics().retries, 100);
}

#[test]
fn a_servers_retry_after_is_respected_no_request_comes_before_it() {
    let server = Server::start(&["--latency-ms", "2"]);
    let p = pairs(
        "multi-thread",
        &[
            "python.worker-count=2",
            "python.fn-execution.retry.max-attempts=2",
        ],
    );
    let r = http_runner("Double", &p);
    let out = r.call(&server.rows("limited", 0..100)).unwrap();
    assert_eq!(out, (0..100).map(|x| Value::Int(2 * x)).collect::<Vec<_>>());
    let log = server.log();
    assert_eq!(log.len(), 200, "one 429 and one answer per row");
    for x in 0..100 {
        let path = format!("/limited/{x}");
        let times: Vec<(f64, u16)> = log
            .iter()
            .filter(|l| l.0 == path)
            .map(|l| (l.1, l.3))
            .collect();
        assert_eq!(times.len(), 2, "{path}");
        assert_eq!((times[0].1, times[1].1), (429, 200), "{path}");
        assert!(
            times[1].0 - times[0].0 >= 0.2,
            "{path}: retried after {:?}",
            times[1].0 - times[0].0
        );
    }
}

#[test]
fn a_rate_limit_holds_for_all_workers_together_and_shares_the_calls_fairly() {
    const RATE: f64 = 20.0;
    const BURST: usize = 2;
    for workers in [2, 4] {
        let server = Server::start(&[]);
        let p = pairs(
            "process",
            &[
                &format!("python.worker-count={workers}"),
                &format!("python.fn-execution.rate-limit={RATE}"),
                &format!("python.fn-execution.rate-limit.burst={BURST}"),
                "python.fn-execution.bundle.size=4",
            ],
        );
        let r = http_runner("Stamped", &p);
        let rows = 64;
        let out = r.call(&server.rows("double", 0..rows)).unwrap();
        let mut starts = Vec::new();
        let mut per: std::collections::HashMap<String, usize> = Default::default();
        for (x, v) in out.iter().enumerate() {
            let Value::Str(s) = v else { panic!("{v:?}") };
            let parts: Vec<&str> = s.split(' ').collect();
            assert_eq!(parts[0], (2 * x).to_string(), "{workers}: in order");
            starts.push(parts[1].parse::<f64>().unwrap());
            *per.entry(parts[2].to_string()).or_default() += 1;
        }
        starts.sort_by(f64::total_cmp);
        // In any one-second window, at most the rate's calls start, plus
        // the burst's head start: the limiter's promise, kept across
        // processes that share only a word of memory.
        for (i, t) in starts.iter().enumerate() {
            let within = starts[i..].iter().take_while(|&&u| u < t + 1.0).count();
            assert!(
                within < RATE as usize + BURST,
                "{workers} workers: {within} calls started in the second from {t}"
            );
        }
        // And no slower than it allows: 64 calls after a burst of 2 at
        // 20/s take 3.1 s.
        let span = starts[starts.len() - 1] - starts[0];
        assert!((3.05..3.6).contains(&span), "{workers} workers: {span} s");
        // The server saw each call once.
        assert_eq!(server.log().len(), rows as usize);
        // Fair: every worker called, none took more than twice its share.
        assert_eq!(per.len(), workers, "{per:?}");
        let share = rows as usize / workers;
        assert!(
            per.values().all(|&n| n <= 2 * share && n >= share / 2),
            "{per:?}"
        );
    }
}

#[test]
fn an_async_http_udf_outruns_the_same_udf_written_synchronously() {
    let server = Server::start(&["--latency-ms", "20"]);
    let time = |name: &str| {
        let r = http_runner(name, &pairs("process", &["python.worker-count=2"]));
        let rows = server.rows("double", 0..400);
        let started = Instant::now();
        let out = r.call(&rows).unwrap();
        assert_eq!(out, (0..400).map(|x| Value::Int(2 * x)).collect::<Vec<_>>());
        started.elapsed()
    };
    let (sync, asynchronous) = (time("DoubleSync"), time("Double"));
    // 400 rows of 20 ms on 2 workers: 4 s one at a time, about 0.1 s with
    // 64 in flight each. Not a benchmark (benches/asynchronous.rs is): a
    // check that rows really overlap.
    assert!(
        asynchronous * 4 < sync,
        "async {asynchronous:?}, sync {sync:?}"
    );
}

#[test]
fn a_wait_for_the_rate_limit_is_not_part_of_a_calls_timeout() {
    for mode in modes() {
        // 40 rows at 40 calls/s: the last waits about a second for its
        // turn, five times the timeout, and still answers.
        let r = runner(
            "double",
            &pairs(
                mode,
                &[
                    "python.fn-execution.rate-limit=40",
                    "python.fn-execution.timeout=200ms",
                ],
            ),
        );
        let started = Instant::now();
        let out = r.call(&ints(0..40)).unwrap();
        assert_eq!(
            out,
            (0..40).map(|x| Value::Int(2 * x)).collect::<Vec<_>>(),
            "{mode}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{mode}: limited"
        );
    }
}

#[test]
fn coil_bench_measures_an_async_udf_and_advises_a_concurrency() {
    let dir = std::env::temp_dir().join(format!("coil-async-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.jsonl");
    std::fs::write(
        &input,
        (0..400).map(|i| format!("[{i}]\n")).collect::<String>(),
    )
    .unwrap();
    let json = dir.join("report.json");
    let udf = crate::util::udfs().join("async_udfs.py:double");
    let out = crate::util::coil(
        &[
            "bench",
            "--udf",
            udf.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--modes",
            "process",
            "--workers",
            "1",
            "--repeat",
            "1",
            "--conf",
            "python.fn-execution.async.max-concurrency=8",
            "--json",
            json.to_str().unwrap(),
        ],
        "",
    );
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("Advice: set python.fn-execution.async.max-concurrency="),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tried: Vec<u64> = report["concurrency"]["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["max_concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(tried, [2, 4, 8, 16, 32]);
    // Rows that wait 1 to 7 ms each: more in flight is faster up to the
    // largest tried, so a small concurrency is never the advice.
    let advised = report["concurrency"]["advised"].as_u64().unwrap();
    assert!(advised >= 8, "{advised}: {table}");
    let _ = std::fs::remove_dir_all(&dir);
}
