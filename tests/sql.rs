//! Python UDFs in DataFusion SQL (coil-datafusion): registration three
//! ways, `SET`, errors, partitions, and workers released by `DROP
//! FUNCTION`, in every mode; and `coil sql`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, register_python_udf, PythonOptions};
use coil_host::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{Config, UdfSpec};
use datafusion::datasource::MemTable;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::util::worker;

const MODES: [&str; 3] = ["process", "multi-thread", "sub-interpreter"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn udf(file: &str, name: &str) -> UdfSpec {
    UdfSpec::new(format!("{}:{name}", root().join(file).display()))
}

fn config(pairs: &[&str]) -> Config {
    let mut c = Config::default();
    c.set_pair("python.worker-count=2").unwrap();
    for p in pairs {
        c.set_pair(p).unwrap();
    }
    c
}

/// The configuration that gives a UDF numpy, pandas and pyarrow: the
/// tests' requirements file, installed once under target/coil-envs.
fn with_packages(mut c: Config) -> Config {
    let root = root();
    c.set(
        "python.requirements",
        &root.join("tests/requirements.txt").display().to_string(),
    )
    .unwrap();
    c.set(
        "python.env.cache-dir",
        &root.join("target/coil-envs").display().to_string(),
    )
    .unwrap();
    c
}

/// A session over `config` with table `t` (`x` BIGINT 0..rows, `s` the
/// decimal text of `x`, every 7th row NULL in both), in `partitions`
/// partitions of batches of 100 rows.
fn session(config: &Config, rows: i64, partitions: usize) -> SessionContext {
    let ctx = python_session_with(
        PythonOptions::new(config.clone()).with_worker(worker()),
        SessionConfig::new().with_target_partitions(partitions),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let mut parts = vec![Vec::new(); partitions];
    let mut start = 0;
    let mut p = 0;
    while start < rows {
        let end = (start + 100).min(rows);
        let x: ArrayRef = Arc::new(Int64Array::from_iter(
            (start..end).map(|i| (i % 7 != 3).then_some(i)),
        ));
        let s: ArrayRef = Arc::new(StringArray::from_iter(
            (start..end).map(|i| (i % 7 != 3).then(|| i.to_string())),
        ));
        parts[p % partitions].push(RecordBatch::try_new(schema.clone(), vec![x, s]).unwrap());
        p += 1;
        start = end;
    }
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, parts).unwrap()))
        .unwrap();
    ctx
}

/// How many of rows 0..rows of `t` are not NULL.
fn dense(rows: i64) -> usize {
    (0..rows).filter(|i| i % 7 != 3).count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => match df.collect().await {
            Err(e) => e.to_string(),
            Ok(b) => panic!("{sql} succeeded: {b:?}"),
        },
    }
}

/// Column `i` of the query's answer, as i64s (NULL as None), in row order.
fn ints(batches: &[RecordBatch], i: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..c.len())
                .map(|r| c.is_valid(r).then(|| c.value(r)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], i: usize) -> Vec<Option<String>> {
    use datafusion::arrow::compute::cast;
    batches
        .iter()
        .flat_map(|b| {
            let c = cast(b.column(i), &DataType::Utf8).unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_udf_typed_by_its_annotations_runs_over_every_partition_in_every_mode() {
    let rt = runtime();
    for mode in MODES {
        let ctx = session(
            &config(&[&format!("python.execution-mode={mode}")]),
            2_000,
            4,
        );
        // def py_inc(x: int) -> int; def slug(title: str) -> str
        register_python_udf(
            &ctx,
            "py_inc",
            udf("examples/udfs/sql.py", "py_inc"),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        register_python_udf(
            &ctx,
            "slug",
            udf("examples/udfs/sql.py", "slug"),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let f = ctx.udf("py_inc").unwrap();
        assert_eq!(f.return_type(&[DataType::Int64]).unwrap(), DataType::Int64);
        let got = rt.block_on(query(
            &ctx,
            "SELECT x, py_inc(x) AS y, slug(concat('A ', s, ' b!')) AS z FROM t \
             WHERE x IS NOT NULL ORDER BY x",
        ));
        let xs = ints(&got, 0);
        assert_eq!(xs.len(), dense(2_000), "{mode}");
        assert_eq!(
            ints(&got, 1),
            xs.iter().map(|x| x.map(|x| x + 1)).collect::<Vec<_>>(),
            "{mode}"
        );
        assert_eq!(
            strings(&got, 2),
            xs.iter()
                .map(|x| x.map(|x| format!("a-{x}-b")))
                .collect::<Vec<_>>(),
            "{mode}"
        );
        // An aggregate over four partitions, each calling the one runner.
        let sum = rt.block_on(query(
            &ctx,
            "SELECT sum(py_inc(x)) FROM t WHERE x IS NOT NULL",
        ));
        let expected: i64 = (0..2_000i64).filter(|i| i % 7 != 3).map(|i| i + 1).sum();
        assert_eq!(ints(&sum, 0), vec![Some(expected)], "{mode}");
    }
}

#[test]
fn create_function_takes_a_file_or_inline_source_and_literal_or_no_arguments() {
    let rt = runtime();
    let ctx = session(&config(&[]), 500, 2);
    let demo = root().join("examples/udfs/sql.py");
    rt.block_on(async {
        query(
            &ctx,
            &format!(
                "CREATE FUNCTION stars(BIGINT) RETURNS VARCHAR LANGUAGE PYTHON AS '{}:stars'",
                demo.display()
            ),
        )
        .await;
        // Types from the annotations: no argument types, no RETURNS.
        query(
            &ctx,
            &format!("CREATE FUNCTION slug() LANGUAGE PYTHON AS '{}:slug'", demo.display()),
        )
        .await;
        query(
            &ctx,
            "CREATE FUNCTION py_add(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             def py_add(a, b):\n    return None if a is None else a + b\n$$",
        )
        .await;
        query(
            &ctx,
            "CREATE FUNCTION answer() RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             def answer():\n    return 42\n$$",
        )
        .await;
        let got = query(
            &ctx,
            "SELECT x, stars(coalesce(x, 0) % 4), slug('Hello, World'), py_add(x, 10), answer() FROM t \
             ORDER BY x NULLS LAST",
        )
        .await;
        let xs = ints(&got, 0);
        assert_eq!(xs.len(), 500);
        assert_eq!(
            strings(&got, 1),
            xs.iter()
                .map(|x| Some("★".repeat((x.unwrap_or(0) % 4) as usize)))
                .collect::<Vec<_>>()
        );
        assert!(strings(&got, 2).iter().all(|s| s.as_deref() == Some("hello-world")));
        assert_eq!(
            ints(&got, 3),
            xs.iter().map(|x| x.map(|x| x + 10)).collect::<Vec<_>>()
        );
        assert_eq!(ints(&got, 4), vec![Some(42); 500]);
    });
}

#[test]
fn set_changes_coil_keys_for_the_next_query_and_refuses_bad_ones() {
    let rt = runtime();
    let ctx = session(&config(&[]), 10, 1);
    let me = i64::from(std::process::id());
    rt.block_on(async {
        query(
            &ctx,
            "CREATE FUNCTION pid(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             import os\ndef pid(x):\n    return os.getpid()\n$$",
        )
        .await;
        let pids = |b: Vec<RecordBatch>| ints(&b, 0);
        let in_process = pids(query(&ctx, "SELECT pid(x) FROM t").await);
        assert!(in_process.iter().all(|p| *p != Some(me)), "{in_process:?}");
        query(&ctx, "SET python.execution_mode = 'multi-thread'").await;
        let threads = pids(query(&ctx, "SELECT pid(x) FROM t").await);
        assert_eq!(threads, vec![Some(me); 10]);
        query(&ctx, "SET \"python.execution-mode\" = 'process'").await;
        let again = pids(query(&ctx, "SELECT pid(x) FROM t").await);
        assert!(again.iter().all(|p| *p != Some(me)), "{again:?}");

        let unknown = error(&ctx, "SET python.worker_cnt = 2").await;
        assert!(
            unknown.contains("python.worker-cnt") && unknown.contains("python.worker-count"),
            "{unknown}"
        );
        let bad = error(&ctx, "SET python.worker_count = 'none'").await;
        assert!(bad.contains("bad value") && bad.contains("none"), "{bad}");
        // The options a query plans with carry the whole keys.
        let options = ctx.state().config().options().clone();
        let set: Vec<_> = options
            .entries()
            .into_iter()
            .filter(|e| e.key.starts_with("python.") && e.value.is_some())
            .map(|e| (e.key, e.value.unwrap()))
            .collect();
        assert!(
            set.contains(&("python.execution-mode".into(), "process".into())),
            "{set:?}"
        );
    });
}

#[test]
fn a_udf_error_names_the_udf_the_row_and_the_traceback() {
    let rt = runtime();
    for mode in MODES {
        let ctx = session(&config(&[&format!("python.execution-mode={mode}")]), 300, 2);
        rt.block_on(async {
            query(
                &ctx,
                "CREATE FUNCTION picky(n BIGINT, s VARCHAR) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
                 def picky(n, s):\n    if n == 250:\n        raise ValueError('no ' + s)\n    return n\n$$",
            )
            .await;
            let e = error(&ctx, "SELECT picky(x, s) FROM t WHERE x IS NOT NULL").await;
            assert!(e.contains("picky"), "{mode}: {e}");
            assert!(e.contains("n => 250") && e.contains("s => \"250\""), "{mode}: {e}");
            assert!(e.contains("ValueError: no 250"), "{mode}: {e}");
            assert!(e.contains("Traceback"), "{mode}: {e}");
        });
    }
}

#[test]
fn create_function_refuses_what_it_cannot_run() {
    let rt = runtime();
    let ctx = session(&config(&[]), 10, 1);
    rt.block_on(async {
        let e = error(
            &ctx,
            "CREATE FUNCTION f(BIGINT) RETURNS BIGINT LANGUAGE SQL AS 'x'",
        )
        .await;
        assert!(e.contains("LANGUAGE PYTHON") && e.contains("SQL"), "{e}");
        let e = error(
            &ctx,
            "CREATE FUNCTION f(BIGINT) LANGUAGE PYTHON AS $$\ndef f(x):\n    return x\n$$",
        )
        .await;
        assert!(e.contains("no return type"), "{e}");
        let e = error(
            &ctx,
            "CREATE FUNCTION f(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef f(x) return x\n$$",
        )
        .await;
        assert!(e.contains("SyntaxError"), "{e}");
        let e = error(
            &ctx,
            "CREATE FUNCTION f(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS 'no/such/file.py:f'",
        )
        .await;
        assert!(e.contains("no/such/file.py"), "{e}");
    });
}

#[test]
fn drop_function_stops_its_workers() {
    let rt = runtime();
    let ctx = session(&config(&["python.execution-mode=process"]), 200, 2);
    rt.block_on(async {
        query(
            &ctx,
            "CREATE FUNCTION pid(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             import os\ndef pid(x):\n    return os.getpid()\n$$",
        )
        .await;
        let mut pids: Vec<i64> = ints(&query(&ctx, "SELECT pid(x) FROM t").await, 0)
            .into_iter()
            .flatten()
            .collect();
        pids.sort();
        pids.dedup();
        assert!(!pids.is_empty());
        let alive = |p: &i64| Path::new(&format!("/proc/{p}")).exists();
        assert!(pids.iter().all(alive), "{pids:?}");
        query(&ctx, "DROP FUNCTION pid").await;
        // A liveness bound only: workers exit as soon as they are told.
        let deadline = Instant::now() + Duration::from_secs(60);
        while pids.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pids.iter().any(alive), "still running: {pids:?}");
        assert!(error(&ctx, "SELECT pid(x) FROM t").await.contains("pid"));
    });
}

#[test]
fn a_udf_annotated_for_columns_runs_vectorized() {
    let rt = runtime();
    for mode in ["process", "sub-interpreter"] {
        let ctx = session(
            &with_packages(config(&[&format!("python.execution-mode={mode}")])),
            1_000,
            2,
        );
        rt.block_on(async {
            query(
                &ctx,
                "CREATE FUNCTION twice() LANGUAGE PYTHON AS $$\n\
                 import pandas as pd\n\
                 def twice(x: 'pd.Series[int]') -> 'pd.Series[int]':\n    return x * 2\n$$",
            )
            .await;
            let got = query(
                &ctx,
                "SELECT x, twice(x) FROM t WHERE x IS NOT NULL ORDER BY x",
            )
            .await;
            let xs = ints(&got, 0);
            assert_eq!(xs.len(), dense(1_000), "{mode}");
            assert_eq!(
                ints(&got, 1),
                xs.iter().map(|x| x.map(|x| 2 * x)).collect::<Vec<_>>(),
                "{mode}"
            );
        });
    }
}

#[test]
fn an_immutable_udf_with_literal_arguments_is_folded_while_planning() {
    let rt = runtime();
    let ctx = session(&config(&[]), 10, 1);
    rt.block_on(async {
        query(
            &ctx,
            "CREATE FUNCTION imm(BIGINT) RETURNS BIGINT LANGUAGE PYTHON IMMUTABLE AS $$\n\
             def imm(x):\n    return x * 3\n$$",
        )
        .await;
        query(
            &ctx,
            "CREATE FUNCTION vol(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             def vol(x):\n    return x * 3\n$$",
        )
        .await;
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let b = query(&ctx, sql).await;
                datafusion::arrow::util::pretty::pretty_format_batches(&b)
                    .unwrap()
                    .to_string()
            }
        };
        let folded = plan("EXPLAIN SELECT imm(14) FROM t").await;
        assert!(
            !folded.contains("imm(Int64(14))") || folded.contains("42"),
            "{folded}"
        );
        assert!(folded.contains("42"), "{folded}");
        let called = plan("EXPLAIN SELECT vol(14) FROM t").await;
        assert!(called.contains("vol("), "{called}");
    });
}

/// Plain Python's answers: `slug` of examples/udfs/sql.py over the titles
/// of examples/data/products.csv, in id order.
fn python_slugs() -> Vec<String> {
    let out = std::process::Command::new("python3")
        .current_dir(root())
        .args([
            "-c",
            "import csv, sys\nsys.path.insert(0, 'examples/udfs')\nfrom sql import slug\n\
             for r in csv.DictReader(open('examples/data/products.csv', encoding='utf-8')):\n    print(slug(r['title']))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "coil sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn coil_sql_runs_a_python_udf_over_a_file_named_in_the_query() {
    use crate::util::coil;
    let slugs = python_slugs();
    assert_eq!(slugs.len(), 1_000);
    let out = ok(&coil(
        &[
            "sql",
            "--udf",
            "slug=examples/udfs/sql.py:slug",
            "SELECT id, slug(title) AS slug FROM 'examples/data/products.csv' ORDER BY id LIMIT 5",
        ],
        "",
    ));
    // A table: a header, then one line per row.
    assert!(out.contains("| id | slug"), "{out}");
    for (i, s) in slugs.iter().take(5).enumerate() {
        assert!(
            out.contains(&format!("| {i}  | {s}")),
            "{s} missing:\n{out}"
        );
    }
    assert!(!out.contains(&format!("| 5  | {}", slugs[5])), "{out}");

    // Statements from standard input: SET and CREATE FUNCTION first.
    let out = ok(&coil(
        &["sql"],
        "SET python.execution_mode = 'multi-thread';\n\
         CREATE FUNCTION twice(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         def twice(x):\n    return 2 * x\n$$;\n\
         SELECT sum(twice(stars)) AS s FROM 'examples/data/products.csv';",
    ));
    let expected: i64 = 2 * csv_stars().iter().sum::<i64>();
    assert!(out.contains(&format!("| {expected} |")), "{out}");
}

/// The stars column of examples/data/products.csv.
fn csv_stars() -> Vec<i64> {
    std::fs::read_to_string(root().join("examples/data/products.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().trim().parse().unwrap())
        .collect()
}

#[test]
fn coil_sql_writes_parquet_csv_json_lines_and_arrow() {
    use crate::util::coil;
    let slugs = python_slugs();
    let dir = std::env::temp_dir().join(format!("coil-sql-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let query_file = dir.join("q.sql");
    std::fs::write(
        &query_file,
        "SELECT id, slug(title) AS slug FROM 'examples/data/products.csv' ORDER BY id",
    )
    .unwrap();
    for ext in ["parquet", "csv", "jsonl", "arrow"] {
        let file = dir.join(format!("out.{ext}"));
        let _ = std::fs::remove_file(&file);
        ok(&coil(
            &[
                "sql",
                "--udf",
                "slug=examples/udfs/sql.py:slug",
                "--file",
                query_file.to_str().unwrap(),
                "--output",
                file.to_str().unwrap(),
            ],
            "",
        ));
        // Read back with DataFusion (JSON Lines: as text).
        let got: Vec<String> = if ext == "jsonl" {
            std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["slug"].as_str().unwrap().to_string()
                })
                .collect()
        } else {
            let ctx = SessionContext::new();
            let rt = runtime();
            let batches = rt.block_on(async {
                let df = match ext {
                    "parquet" => ctx
                        .read_parquet(file.to_str().unwrap(), Default::default())
                        .await
                        .unwrap(),
                    "csv" => ctx
                        .read_csv(file.to_str().unwrap(), Default::default())
                        .await
                        .unwrap(),
                    _ => {
                        // `.arrow` is the IPC file format (what
                        // `pyarrow.ipc.open_file` reads), not a stream.
                        let reader = datafusion::arrow::ipc::reader::FileReader::try_new(
                            std::fs::File::open(&file).unwrap(),
                            None,
                        )
                        .unwrap();
                        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
                        ctx.read_batches(batches).unwrap()
                    }
                };
                df.sort(vec![datafusion::prelude::col("id").sort(true, true)])
                    .unwrap()
                    .collect()
                    .await
                    .unwrap()
            });
            strings(&batches, 1)
                .into_iter()
                .map(Option::unwrap)
                .collect()
        };
        assert_eq!(got, slugs, "{ext}");
    }
    let bad = coil(
        &[
            "sql",
            "--output",
            dir.join("out.xlsx").to_str().unwrap(),
            "SELECT 1",
        ],
        "",
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(".parquet, .csv, .jsonl") && err.contains(".arrow") && err.contains(".arrows"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn coil_sql_names_the_udf_the_row_and_the_traceback_of_an_error() {
    use crate::util::coil;
    let out = coil(
        &["sql"],
        "CREATE FUNCTION picky(title VARCHAR, stars BIGINT) RETURNS VARCHAR LANGUAGE PYTHON AS $$\n\
         def picky(title, stars):\n    if stars == 5 and 'lamp' in title:\n        raise ValueError('no lamps')\n    return title\n$$;\n\
         SELECT picky(title, stars) FROM 'examples/data/products.csv' WHERE id = 1;",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Python UDF picky failed"), "{err}");
    assert!(
        err.contains("stars => 5") && err.contains("lamp -- model 47!"),
        "{err}"
    );
    assert!(
        err.contains("ValueError: no lamps") && err.contains("Traceback"),
        "{err}"
    );
    // A bad statement, a bad key: clear errors.
    let out = coil(&["sql", "SELEC 1"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsing the SQL"));
    let out = coil(&["sql", "SET python.worker_cnt = 2"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("python.worker-count"));
}

#[test]
fn coil_sql_reads_back_every_format_it_writes() {
    use crate::util::coil;
    let dir = std::env::temp_dir().join(format!("coil-sql-back-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected: i64 = csv_stars().iter().sum();
    for ext in [
        "parquet", "csv", "jsonl", "ndjson", "json", "arrow", "feather", "arrows", "ipc",
    ] {
        let file = dir.join(format!("out.{ext}"));
        let _ = std::fs::remove_file(&file);
        ok(&coil(
            &[
                "sql",
                "--output",
                file.to_str().unwrap(),
                "SELECT id, title, stars FROM 'examples/data/products.csv'",
            ],
            "",
        ));
        let out = coil(
            &[
                "sql",
                &format!(
                    "SELECT count(*) AS n, sum(stars) AS s FROM '{}'",
                    file.display()
                ),
            ],
            "",
        );
        assert!(
            out.status.success(),
            "{ext}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.contains(&format!("| 1000 | {expected} |")),
            "{ext}: {out}"
        );
    }
    // Arrow's convention: `.arrow` and `.feather` are IPC files, `.arrows`
    // a stream.
    for ext in ["arrow", "feather"] {
        let file = std::fs::File::open(dir.join(format!("out.{ext}"))).unwrap();
        let reader = datafusion::arrow::ipc::reader::FileReader::try_new(file, None)
            .unwrap_or_else(|e| panic!("{ext} is not an IPC file: {e}"));
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1000, "{ext}");
    }
    let file = std::fs::File::open(dir.join("out.arrows")).unwrap();
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(file, None).unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 1000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn coil_sql_says_how_to_set_a_key_spelled_with_a_dash() {
    use crate::util::coil;
    let out = coil(&["sql", "SET python.execution-mode = 'process'"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SET python.execution_mode = ...")
            && err.contains("SET \"python.execution-mode\" = ..."),
        "{err}"
    );
    // Both spellings it suggests work.
    ok(&coil(
        &[
            "sql",
            "SET python.execution_mode = 'multi-thread'; \
             SET \"python.execution-mode\" = 'process'; SELECT 1 AS one",
        ],
        "",
    ));
}

#[test]
fn coil_sql_udf_states_argument_and_return_types_for_an_untyped_numpy_udf() {
    use crate::util::coil;
    let [requirements, cache] = crate::util::numpy();
    let sql = "SELECT abs(sum(z)) < 1e-9 AS centered, round(sum(z * z)) AS n \
               FROM (SELECT zscore(stars) AS z FROM 'examples/data/products.csv')";
    for udf in [
        "zscore=examples/udfs/vector.py:zscore(float64) -> float64",
        "zscore = examples/udfs/vector.py:zscore -> float64",
    ] {
        let out = ok(&coil(
            &[
                "sql",
                "--conf",
                &requirements,
                "--conf",
                &cache,
                "--conf",
                "python.fn-execution.bundle.size=1000",
                "--udf",
                udf,
                sql,
            ],
            "",
        ));
        assert!(out.contains("| true     | 1000.0 |"), "{udf}: {out}");
    }
    // Annotated `-> np.ndarray` only: the return type must be stated.
    let out = coil(
        &[
            "sql",
            "--conf",
            &requirements,
            "--conf",
            &cache,
            "--udf",
            "zscore=examples/udfs/vector.py:zscore",
            sql,
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no return type"), "{err}");
    // A type that is not one is named.
    let out = coil(
        &[
            "sql",
            "--udf",
            "zscore=examples/udfs/vector.py:zscore(floaty) -> float64",
            "SELECT 1",
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("floaty"), "{err}");
}

#[test]
fn an_async_udf_with_retries_runs_in_sql_over_every_partition() {
    let rt = runtime();
    // 4 partitions feeding 2 executors, each keeping 32 rows in flight.
    let ctx = session(
        &config(&[
            "python.fn-execution.async.max-concurrency=32",
            "python.fn-execution.retry.max-attempts=3",
            "python.fn-execution.retry.on=ConnectionError",
            "python.fn-execution.retry.initial-delay=10ms",
        ]),
        2000,
        4,
    );
    rt.block_on(async {
        query(
            &ctx,
            "CREATE FUNCTION later(x BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             import asyncio\n\
             seen = set()\n\
             async def later(x):\n\
             \x20   await asyncio.sleep(0.01)\n\
             \x20   if x is not None and x % 10 == 0 and x not in seen:\n\
             \x20       seen.add(x)\n\
             \x20       raise ConnectionError(f'try {x} again')\n\
             \x20   return None if x is None else x * 3\n\
             $$",
        )
        .await;
        let started = std::time::Instant::now();
        let got = query(&ctx, "SELECT x, later(x) FROM t ORDER BY x NULLS LAST").await;
        let xs = ints(&got, 0);
        assert_eq!(xs.len(), 2000);
        assert_eq!(
            ints(&got, 1),
            xs.iter().map(|x| x.map(|x| 3 * x)).collect::<Vec<_>>()
        );
        // 2,000 rows of 10 ms, one at a time, would take 20 s; 64 in
        // flight, well under one.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    });
}

/// `coil sql` reading `sql` from standard input, with `TMPDIR` set to
/// `tmp` and no `XDG_RUNTIME_DIR`.
fn coil_sql_in(tmp: &std::path::Path, sql: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coil"))
        .arg("sql")
        .current_dir(root())
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn inline_sources_never_pass_through_a_directory_another_user_can_write() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let scratch = std::env::temp_dir().join(format!("coil-inline-trust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let body = "def twice(x):\n    return 2 * x\n";
    // What another user plants where coil used to write inline sources
    // (`$TMPDIR/coil-udfs/coil_udf_<sha256>.py`, world-writable): a
    // module that leaves a mark and answers wrong.
    let mark = scratch.join("planted-code-ran");
    let hex = crate::util::plant_old_inline_source(&scratch, body, "twice", &mark);
    let expected: i64 = 2 * csv_stars().iter().sum::<i64>();
    for mode in crate::util::modes() {
        let out = coil_sql_in(
            &scratch,
            &format!(
                "SET python.execution_mode = '{mode}';\n\
                 CREATE FUNCTION twice(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $${body}$$;\n\
                 SELECT sum(twice(stars)) AS s FROM 'examples/data/products.csv';"
            ),
        );
        let text = ok(&out);
        assert!(text.contains(&format!("| {expected} |")), "{mode}: {text}");
        assert!(!mark.exists(), "{mode}: the planted module ran");
    }
    // Where it went instead: this user's own directory, mode 0700.
    let mine = scratch.join(format!("coil-udfs-{}", nix::unistd::geteuid()));
    let meta = std::fs::metadata(&mine).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", mine.display());
    assert!(mine.join(format!("coil_udf_{hex}.py")).is_file());
    // That directory made by someone else first: refused, saying why.
    if nix::unistd::geteuid().is_root() {
        let other = scratch.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let theirs = other.join(format!("coil-udfs-{}", nix::unistd::geteuid()));
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&theirs)
            .unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(54321), Some(54321)).unwrap();
        let out = coil_sql_in(
            &other,
            &format!("CREATE FUNCTION twice(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $${body}$$;"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("which coil will not use: it belongs to user 54321"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
