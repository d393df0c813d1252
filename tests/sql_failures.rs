//! `coil sql` when things go wrong: a failing query's `--output` leaves
//! the old file byte for byte, in every format; a plain `CREATE FUNCTION`
//! over an existing name is refused; many `CREATE FUNCTION`s start no
//! worker until a query calls them; a query where every row fails under
//! `skip` logs a few lines, not one per row.

use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, PythonOptions};
use coil_host::Config;
use datafusion::prelude::SessionConfig;

use crate::util::{coil, scratch, text};

#[test]
fn a_failing_query_leaves_the_old_output_byte_for_byte_in_every_format() {
    let dir = scratch("sql-atomic");
    let sql = "CREATE FUNCTION picky(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
               def picky(x):\n    if x == 900:\n        raise ValueError('no 900')\n    return x\n$$;\n\
               SELECT id, picky(id) AS p FROM 'examples/data/products.csv'";
    for ext in ["parquet", "csv", "jsonl", "arrow", "arrows"] {
        let out_file = dir.join(format!("out.{ext}"));
        let old = format!("yesterday's good {ext} file").into_bytes();
        std::fs::write(&out_file, &old).unwrap();
        let out = coil(
            &[
                "sql",
                "--partitions",
                "4",
                "--output",
                out_file.to_str().unwrap(),
            ],
            sql,
        );
        let err = text(&out.stderr);
        eprintln!(
            "{ext}: exit {:?}: {}",
            out.status.code(),
            err.lines().next().unwrap_or("")
        );
        assert_eq!(out.status.code(), Some(1), "{ext}: {err}");
        assert!(err.contains("no 900"), "{ext}: {err}");
        assert_eq!(
            std::fs::read(&out_file).unwrap(),
            old,
            "{ext}: the old file changed"
        );
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{ext}: left beside it: {names:?}");

        // The same query without the failure replaces it whole.
        let good = coil(
            &[
                "sql",
                "--partitions",
                "4",
                "--output",
                out_file.to_str().unwrap(),
            ],
            &sql.replace("x == 900", "x == -1"),
        );
        assert!(good.status.success(), "{ext}: {}", text(&good.stderr));
        let back = coil(
            &[
                "sql",
                &format!("SELECT count(*) AS n FROM '{}'", out_file.display()),
            ],
            "",
        );
        assert!(
            text(&back.stdout).contains("| 1000 |"),
            "{ext}: {}",
            text(&back.stdout)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plain_create_function_over_an_existing_name_is_refused() {
    let create = |or_replace: &str, body: &str| {
        format!(
            "CREATE {or_replace}FUNCTION f(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             def f(x):\n    return {body}\n$$;\n"
        )
    };
    let out = coil(
        &["sql"],
        &format!(
            "{}{}SELECT f(1) AS y",
            create("", "x + 1"),
            create("", "x + 2")
        ),
    );
    let err = text(&out.stderr);
    eprintln!("twice: {}", err.lines().next().unwrap_or(""));
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("a function named f exists already"), "{err}");
    assert!(err.contains("CREATE OR REPLACE FUNCTION f"), "{err}");
    // A builtin's name too.
    let out = coil(
        &["sql"],
        &create("", "x").replace("FUNCTION f(", "FUNCTION abs("),
    );
    assert!(
        text(&out.stderr).contains("a function named abs exists"),
        "{}",
        text(&out.stderr)
    );

    let out = coil(
        &["sql"],
        &format!(
            "{}{}SELECT f(1) AS y",
            create("", "x + 1"),
            create("OR REPLACE ", "x + 2")
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("| 3 |"), "{}", text(&out.stdout));
}

/// A session of one partition over coil keys `pairs`, and a runtime to
/// drive it.
fn one_partition_session(
    pairs: &[&str],
) -> (datafusion::prelude::SessionContext, tokio::runtime::Runtime) {
    let mut config = Config::default();
    for p in pairs {
        config.set_pair(p).unwrap();
    }
    let options = PythonOptions::new(config).with_worker(crate::util::worker());
    let ctx = python_session_with(options, SessionConfig::new().with_target_partitions(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (ctx, rt)
}

#[test]
fn many_create_functions_start_no_worker_until_a_query_calls_them() {
    let (ctx, rt) = one_partition_session(&["python.worker-count=2"]);
    let functions = 200;
    let most = rt.block_on(async {
        let mut most = 0;
        for i in 0..functions {
            ctx.sql(&format!(
                "CREATE FUNCTION f{i}(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
                 def f{i}(x):\n    return x + {i}\n$$"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
            most = most.max(crate::util::children().len());
        }
        most
    });
    // Reading each definition starts one worker, which ends with it.
    let idle = crate::util::children().len();
    eprintln!("{functions} functions created: {idle} workers now, at most {most} at once");
    assert_eq!(idle, 0, "workers of functions no query called");
    assert!(most <= 1, "{most} workers at once while creating");

    let sum: String = (0..10)
        .map(|i| format!("f{i}(x)"))
        .collect::<Vec<_>>()
        .join(" + ");
    let batches = rt
        .block_on(async {
            ctx.sql(&format!("SELECT {sum} AS y FROM (VALUES (1), (2)) AS t(x)"))
                .await?
                .collect()
                .await
        })
        .unwrap();
    let y = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(y.contains("| 55 |") && y.contains("| 65 |"), "{y}");
    let called = crate::util::children().len();
    eprintln!("after a query calling 10 of them: {called} workers");
    assert!(
        called <= 10 * 2,
        "{called} workers for 10 functions of 2 each"
    );
    assert!(called >= 10, "{called}");
}

#[test]
fn a_query_where_every_row_fails_under_skip_logs_a_few_lines() {
    let out = coil(
        &["sql"],
        "SET python.fn_execution.on_error = 'skip';\n\
         CREATE FUNCTION bad(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         def bad(x):\n    raise ValueError(f'no {x}')\n$$;\n\
         SELECT count(bad(id)) AS n FROM 'examples/data/products.csv'",
    );
    let err = text(&out.stderr);
    let lines = err.lines().count();
    eprintln!("1,000 failed rows: {lines} lines on stderr:\n{err}");
    assert!(out.status.success(), "{err}");
    assert!(text(&out.stdout).contains("| 0 |"), "{}", text(&out.stdout));
    // The first five rows, each with its traceback; then counts.
    let rows = err
        .lines()
        .filter(|l| l.contains("Python UDF bad failed on"))
        .count();
    assert_eq!(rows, 5, "{err}");
    assert!(err.contains("further failures are counted"), "{err}");
    assert!(err.contains("1000 failures so far"), "{err}");
    assert!(lines <= 50, "{lines} lines");
}

#[test]
fn python_worker_max_processes_caps_the_workers_of_every_function_together() {
    let (ctx, rt) =
        one_partition_session(&["python.worker-count=2", "python.worker.max-processes=3"]);
    let functions = 6;
    // Count this process's workers all along, from another thread.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(crate::util::children().len());
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            most
        })
    };
    let batches = rt
        .block_on(async {
            for i in 0..functions {
                ctx.sql(&format!(
                    "CREATE FUNCTION g{i}(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
                     def g{i}(x):\n    return x * {}\n$$",
                    i + 1
                ))
                .await?
                .collect()
                .await?;
            }
            let sum: Vec<String> = (0..functions).map(|i| format!("g{i}(x)")).collect();
            ctx.sql(&format!(
                "SELECT {} AS y FROM (VALUES (1), (2), (3)) AS t(x)",
                sum.join(" + ")
            ))
            .await?
            .collect()
            .await
        })
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watch.join().unwrap();
    let y = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    eprintln!("{functions} functions of 2 workers each, at most 3 processes: {most} at once\n{y}");
    // 1 + 2 + ... + 6 = 21 times x.
    assert!(
        y.contains("| 21 |") && y.contains("| 42 |") && y.contains("| 63 |"),
        "{y}"
    );
    assert!(most <= 3, "{most} worker processes at once");
}
