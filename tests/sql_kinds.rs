//! Every kind of Python function in DataFusion SQL (issue 22): aggregates
//! (accumulator classes and vectorized aggregates) in `GROUP BY`, without
//! it and over window frames; window functions; table functions. Each
//! answer is checked against what plain Rust computes from the same rows,
//! in every mode.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, PythonOptions};
use coil_host::arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::Config;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::util::{modes, worker};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config(pairs: &[&str]) -> Config {
    let mut c = Config::default();
    c.set_pair("python.worker-count=2").unwrap();
    for p in pairs {
        c.set_pair(p).unwrap();
    }
    c
}

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

/// The rows of table `t`: `i` (0..n), `k` (a group among `groups`), `v`
/// (a value, NULL every 13th row, never 13), `s` (text).
struct Rows {
    i: Vec<i64>,
    k: Vec<i64>,
    v: Vec<Option<i64>>,
}

fn rows(n: i64, groups: i64) -> Rows {
    let i: Vec<i64> = (0..n).collect();
    let k = i.iter().map(|i| (i * 7 + i / 3) % groups).collect();
    let v = i
        .iter()
        .map(|i| (i % 13 != 6).then_some((i * 7919) % 2000 - 600))
        .map(|v| v.map(|v| if v == 13 { 14 } else { v }))
        .collect();
    Rows { i, k, v }
}

/// A session over `config` with table `t` from `rows`, in `partitions`
/// partitions of batches of 1000 rows.
fn session(config: &Config, rows: &Rows, partitions: usize) -> SessionContext {
    let ctx = python_session_with(
        PythonOptions::new(config.clone()).with_worker(worker()),
        SessionConfig::new().with_target_partitions(partitions),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let mut parts = vec![Vec::new(); partitions];
    for (p, start) in (0..rows.i.len()).step_by(1000).enumerate() {
        let end = (start + 1000).min(rows.i.len());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(rows.i[start..end].to_vec())),
            Arc::new(Int64Array::from(rows.k[start..end].to_vec())),
            Arc::new(Int64Array::from(rows.v[start..end].to_vec())),
            Arc::new(StringArray::from_iter(
                rows.i[start..end]
                    .iter()
                    .map(|i| Some(format!("w{}", i % 5))),
            )),
        ];
        parts[p % partitions].push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    let table = MemTable::try_new(schema, parts).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
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

fn floats(batches: &[RecordBatch], i: usize) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(i).as_any().downcast_ref::<Float64Array>().unwrap();
            (0..c.len())
                .map(|r| c.is_valid(r).then(|| c.value(r)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Per group (ascending), the sum of its non-NULL values (None: none).
fn sums(rows: &Rows) -> BTreeMap<i64, Option<i64>> {
    let mut out: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    for (k, v) in rows.k.iter().zip(&rows.v) {
        let e = out.entry(*k).or_insert(None);
        if let Some(v) = v {
            *e = Some(e.unwrap_or(0) + v);
        }
    }
    out
}

fn create(file: &str, name: &str, sql_name: &str) -> String {
    format!(
        "CREATE FUNCTION {sql_name}() LANGUAGE PYTHON AS '{}:{name}'",
        root().join("tests/udfs").join(file).display()
    )
}

#[test]
fn an_accumulator_class_aggregates_each_group_exactly_in_every_mode() {
    let rt = runtime();
    let data = rows(30_000, 97);
    let want = sums(&data);
    let want_keys: Vec<Option<i64>> = want.keys().map(|k| Some(*k)).collect();
    let want_sums: Vec<Option<i64>> = want.values().copied().collect();
    let total: i64 = data.v.iter().flatten().sum();
    for mode in modes() {
        let c = config(&[&format!("python.execution-mode={mode}")]);
        // Three partitions: partial aggregates, merged in a final stage.
        let ctx = session(&c, &data, 3);
        rt.block_on(async {
            query(&ctx, &create("aggregates.py", "Sum", "py_sum")).await;
            let out = query(&ctx, "SELECT k, py_sum(v) FROM t GROUP BY k ORDER BY k").await;
            assert_eq!(ints(&out, 0), want_keys, "{mode}");
            assert_eq!(ints(&out, 1), want_sums, "{mode}");
            // Without GROUP BY: one group.
            let out = query(&ctx, "SELECT py_sum(v) FROM t").await;
            assert_eq!(ints(&out, 0), vec![Some(total)], "{mode}");
            // Filtered rows and FILTER clauses.
            let out = query(
                &ctx,
                "SELECT py_sum(v) FILTER (WHERE k < 10), py_sum(v) FROM t WHERE i < 5000",
            )
            .await;
            let want_filtered: i64 = (0..5000)
                .filter(|&r| data.k[r] < 10)
                .filter_map(|r| data.v[r])
                .sum();
            let want_head: i64 = data.v[..5000].iter().flatten().sum();
            assert_eq!(ints(&out, 0), vec![Some(want_filtered)], "{mode}");
            assert_eq!(ints(&out, 1), vec![Some(want_head)], "{mode}");
        });
    }
}

#[test]
fn a_pyflink_accumulator_class_inline_takes_two_arguments_and_keeps_row_order() {
    let rt = runtime();
    let data = rows(5000, 7);
    let ctx = session(&config(&[]), &data, 1);
    rt.block_on(async {
        query(
            &ctx,
            "CREATE FUNCTION weighted_avg(BIGINT, BIGINT) RETURNS DOUBLE LANGUAGE PYTHON AS $$
class weighted_avg:
    def create_accumulator(self):
        return [0, 0]
    def accumulate(self, acc, value, weight):
        if value is not None and weight is not None:
            acc[0] += value * weight
            acc[1] += weight
    def merge(self, acc, accs):
        for a in accs:
            acc[0] += a[0]
            acc[1] += a[1]
    def get_value(self, acc):
        return None if acc[1] == 0 else acc[0] / acc[1]
$$",
        )
        .await;
        let out = query(
            &ctx,
            "SELECT k, weighted_avg(v, i % 4) FROM t GROUP BY k ORDER BY k",
        )
        .await;
        let got = floats(&out, 1);
        for (g, got) in got.iter().enumerate() {
            let (mut num, mut den) = (0i64, 0i64);
            for r in 0..5000 {
                if data.k[r] == g as i64 {
                    if let Some(v) = data.v[r] {
                        num += v * (r as i64 % 4);
                        den += r as i64 % 4;
                    }
                }
            }
            let want = (den != 0).then(|| num as f64 / den as f64);
            assert_eq!(*got, want, "group {g}");
        }
        // Order within a group is input order (one partition).
        query(&ctx, &create("aggregates.py", "Concat", "concat_all")).await;
        let out = query(&ctx, "SELECT concat_all(s) FROM t WHERE k = 3").await;
        let want: Vec<String> = (0..5000)
            .filter(|&r| data.k[r] == 3)
            .map(|r| format!("w{}", r % 5))
            .collect();
        let got = out[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        assert_eq!(got, want.join("|"));
    });
}

#[test]
fn a_hundred_thousand_small_groups_and_one_huge_group() {
    let rt = runtime();
    let data = rows(300_000, 100_000);
    let want = sums(&data);
    let ctx = session(&config(&[]), &data, 2);
    rt.block_on(async {
        query(&ctx, &create("aggregates.py", "Sum", "py_sum")).await;
        query(
            &ctx,
            &create("aggregates.py", "spread", "py_spread")
                .replace("py_spread()", "py_spread(BIGINT) RETURNS BIGINT"),
        )
        .await;
        let out = query(&ctx, "SELECT k, py_sum(v) FROM t GROUP BY k ORDER BY k").await;
        assert_eq!(ints(&out, 1), want.values().copied().collect::<Vec<_>>());
        // spread has no annotations: `spread.coil_kind` says it is a
        // vectorized aggregate; one group of every row.
        let out = query(&ctx, "SELECT py_sum(v), py_spread(v) FROM t").await;
        let all: Vec<i64> = data.v.iter().flatten().copied().collect();
        assert_eq!(ints(&out, 0), vec![Some(all.iter().sum())]);
        assert_eq!(
            ints(&out, 1),
            vec![Some(all.iter().max().unwrap() - all.iter().min().unwrap())]
        );
    });
}

#[test]
fn a_pandas_aggregate_runs_once_per_group_with_the_groups_values() {
    let rt = runtime();
    let data = rows(20_000, 50);
    for mode in ["process", "multi-thread"] {
        let c = with_packages(config(&[&format!("python.execution-mode={mode}")]));
        let ctx = session(&c, &data, 2);
        rt.block_on(async {
            query(&ctx, &create("pandas_aggregates.py", "mean_sq", "mean_sq")).await;
            query(&ctx, &create("pandas_aggregates.py", "first_index", "first_index")).await;
            let out = query(
                &ctx,
                "SELECT k, mean_sq(v), first_index(v) FROM t WHERE v IS NOT NULL GROUP BY k ORDER BY k",
            )
            .await;
            let got = floats(&out, 1);
            for (g, got) in got.iter().enumerate() {
                let vs: Vec<f64> = (0..data.i.len())
                    .filter(|&r| data.k[r] == g as i64)
                    .filter_map(|r| data.v[r])
                    .map(|v| (v * v) as f64)
                    .collect();
                let want = vs.iter().sum::<f64>() / vs.len() as f64;
                let got = got.unwrap();
                assert!((got - want).abs() <= want * 1e-12, "{mode} group {g}: {got} {want}");
            }
            assert!(ints(&out, 2).iter().all(|i| *i == Some(0)), "{mode}");
        });
    }
}

#[test]
fn an_aggregate_over_a_window_frame_matches_plain_sums() {
    let rt = runtime();
    let data = rows(3000, 5);
    let ctx = session(&config(&[]), &data, 2);
    rt.block_on(async {
        query(&ctx, &create("aggregates.py", "Sum", "py_sum")).await;
        let out = query(
            &ctx,
            "SELECT i, py_sum(v) OVER (PARTITION BY k ORDER BY i ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), \
             py_sum(v) OVER (PARTITION BY k ORDER BY i) FROM t ORDER BY i",
        )
        .await;
        let mut by_group: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for r in 0..3000 {
            by_group.entry(data.k[r]).or_default().push(r);
        }
        let mut want_frame = vec![None; 3000];
        let mut want_running = vec![None; 3000];
        for rows in by_group.values() {
            for (at, &r) in rows.iter().enumerate() {
                let frame = &rows[at.saturating_sub(2)..=at];
                let vs: Vec<i64> = frame.iter().filter_map(|&x| data.v[x]).collect();
                want_frame[r] = (!vs.is_empty()).then(|| vs.iter().sum());
                let vs: Vec<i64> = rows[..=at].iter().filter_map(|&x| data.v[x]).collect();
                want_running[r] = (!vs.is_empty()).then(|| vs.iter().sum());
            }
        }
        assert_eq!(ints(&out, 1), want_frame);
        assert_eq!(ints(&out, 2), want_running);

        // A vectorized aggregate over a sliding frame: rows leave it.
        query(
            &ctx,
            &create("aggregates.py", "spread", "py_spread")
                .replace("py_spread()", "py_spread(BIGINT) RETURNS BIGINT"),
        )
        .await;
        let out = query(
            &ctx,
            "SELECT i, py_spread(v) OVER (PARTITION BY k ORDER BY i ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) \
             FROM t ORDER BY i",
        )
        .await;
        let mut want = vec![None; 3000];
        for rows in by_group.values() {
            for (at, &r) in rows.iter().enumerate() {
                let vs: Vec<i64> = rows[at.saturating_sub(2)..=at]
                    .iter()
                    .filter_map(|&x| data.v[x])
                    .collect();
                want[r] = (!vs.is_empty())
                    .then(|| vs.iter().max().unwrap() - vs.iter().min().unwrap());
            }
        }
        assert_eq!(ints(&out, 1), want);
    });
}

#[test]
fn aggregate_errors_name_the_function_the_group_and_the_traceback() {
    let rt = runtime();
    let mut data = rows(4000, 20);
    data.v[1234] = Some(13);
    let bad = data.k[1234];
    rt.block_on(async {
        let ctx = session(&config(&[]), &data, 2);
        query(&ctx, &create("aggregates.py", "FailsOn13", "unlucky")).await;
        let e = error(&ctx, "SELECT k, unlucky(v) FROM t GROUP BY k").await;
        assert!(e.contains("Python UDF unlucky failed on a group"), "{e}");
        assert!(e.contains("13 is unlucky"), "{e}");
        assert!(e.contains("Traceback"), "{e}");

        // Under skip: that group's result is NULL (the whole group), the
        // others exact.
        let ctx = session(&config(&["python.fn-execution.on-error=skip"]), &data, 2);
        query(&ctx, &create("aggregates.py", "FailsOn13", "unlucky")).await;
        let out = query(&ctx, "SELECT k, unlucky(v) FROM t GROUP BY k ORDER BY k").await;
        let mut want = sums(&data);
        want.insert(bad, None);
        assert_eq!(ints(&out, 1), want.values().copied().collect::<Vec<_>>());

        // merge is missing, and two partitions need it.
        let ctx = session(&config(&[]), &data, 2);
        query(&ctx, &create("aggregates.py", "NoMerge", "no_merge")).await;
        let e = error(&ctx, "SELECT k, no_merge(v) FROM t GROUP BY k").await;
        assert!(e.contains("no merge(acc, accs) method"), "{e}");
    });
}

#[test]
fn a_worker_killed_mid_aggregate_in_sql_gives_the_exact_sum() {
    let rt = runtime();
    let mut data = rows(40_000, 30);
    data.v[25_000] = Some(13);
    let marker = std::env::temp_dir().join(format!(
        "coil-sql-killed-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let c = config(&[
        "python.execution-mode=process",
        "python.fn-execution.retries=1",
    ]);
    let ctx = session(&c, &data, 2);
    rt.block_on(async {
        query(&ctx, &create("aggregates.py", "KilledOnce", "killed_once")).await;
        let sql = format!(
            "SELECT k, killed_once(v, '{}') FROM t GROUP BY k ORDER BY k",
            marker.display()
        );
        let out = query(&ctx, &sql).await;
        assert!(marker.exists(), "a worker was killed");
        assert_eq!(
            ints(&out, 1),
            sums(&data).values().copied().collect::<Vec<_>>()
        );
    });
    std::fs::remove_file(&marker).ok();
}

#[test]
fn window_functions_over_frames_and_over_whole_partitions() {
    let rt = runtime();
    let data = rows(4000, 6);
    let mut by_group: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for r in 0..4000 {
        by_group.entry(data.k[r]).or_default().push(r);
    }
    let frame = |before: usize| {
        let mut want = vec![None; 4000];
        for rows in by_group.values() {
            for (at, &r) in rows.iter().enumerate() {
                let vs: Vec<i64> = rows[at.saturating_sub(before)..=at]
                    .iter()
                    .filter_map(|&x| data.v[x])
                    .collect();
                want[r] = (!vs.is_empty()).then(|| vs.iter().sum());
            }
        }
        want
    };
    let growing = frame(usize::MAX / 2);
    for mode in modes() {
        let c = config(&[&format!("python.execution-mode={mode}")]);
        let ctx = session(&c, &data, 2);
        rt.block_on(async {
            query(
                &ctx,
                &create("aggregates.py", "frame_sum", "frame_sum")
                    .replace("frame_sum()", "frame_sum(BIGINT) RETURNS BIGINT"),
            )
            .await;
            let out = query(
                &ctx,
                "SELECT i, \
                 frame_sum(v) OVER (PARTITION BY k ORDER BY i ROWS BETWEEN 3 PRECEDING AND CURRENT ROW), \
                 frame_sum(v) OVER (PARTITION BY k ORDER BY i ROWS UNBOUNDED PRECEDING), \
                 frame_sum(v) OVER (PARTITION BY k ORDER BY i RANGE BETWEEN 50 PRECEDING AND CURRENT ROW) \
                 FROM t ORDER BY i",
            )
            .await;
            assert_eq!(ints(&out, 1), frame(3), "{mode}: ROWS 3 PRECEDING");
            assert_eq!(ints(&out, 2), growing, "{mode}: ROWS UNBOUNDED PRECEDING");
            let mut want_range = vec![None; 4000];
            for rows in by_group.values() {
                for &r in rows {
                    let vs: Vec<i64> = rows
                        .iter()
                        .filter(|&&x| x <= r && x + 50 >= r)
                        .filter_map(|&x| data.v[x])
                        .collect();
                    want_range[r] = (!vs.is_empty()).then(|| vs.iter().sum());
                }
            }
            assert_eq!(ints(&out, 3), want_range, "{mode}: RANGE 50 PRECEDING");
        });
    }
    // Over a whole partition, with pandas: one call per partition.
    let c = with_packages(config(&[]));
    let ctx = session(&c, &data, 2);
    rt.block_on(async {
        query(
            &ctx,
            &create("pandas_aggregates.py", "running_share", "running_share"),
        )
        .await;
        let out = query(
            &ctx,
            "SELECT i, running_share(i) OVER (PARTITION BY k ORDER BY i) FROM t ORDER BY i",
        )
        .await;
        let got = floats(&out, 1);
        for rows in by_group.values() {
            let total: i64 = rows.iter().map(|&r| r as i64).sum();
            let mut run = 0i64;
            for &r in rows {
                run += r as i64;
                let want = run as f64 / total as f64;
                let g = got[r].unwrap();
                assert!(
                    (g - want).abs() < 1e-12,
                    "row {r}: {g} vs {want}; {:?} {:?}",
                    &rows[..6],
                    rows[..6].iter().map(|&x| got[x]).collect::<Vec<_>>()
                );
            }
        }
    });
}

#[test]
fn a_generator_is_a_table_function_in_from_with_constant_arguments() {
    let rt = runtime();
    let data = rows(10, 2);
    for mode in modes() {
        let c = config(&[&format!("python.execution-mode={mode}")]);
        let ctx = session(&c, &data, 1);
        rt.block_on(async {
            query(&ctx, &create("tables.py", "words", "words")).await;
            let out = query(
                &ctx,
                "SELECT c0, c1 FROM words('the quick brown fox', 3) ORDER BY c1, c0",
            )
            .await;
            let words: Vec<String> = out
                .iter()
                .flat_map(|b| {
                    let c = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    (0..c.len())
                        .map(|r| c.value(r).to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(words, vec!["the", "brown", "quick"], "{mode}");
            assert_eq!(ints(&out, 1), vec![Some(3), Some(5), Some(5)], "{mode}");
            // Constant expressions are folded before the call.
            let out = query(&ctx, "SELECT c1 FROM words(concat('a', 'b'), 1 + 1)").await;
            assert_eq!(ints(&out, 0), vec![Some(2)], "{mode}");
        });
    }
}

#[test]
fn coil_sql_takes_returns_table_and_unnests_a_table_function_over_rows() {
    use crate::util::coil;
    let out = coil(
        &["sql"],
        "CREATE FUNCTION words() RETURNS TABLE (word VARCHAR, n BIGINT) LANGUAGE PYTHON AS $$\n\
         from typing import Iterator\n\
         def words(s: str) -> Iterator[tuple[str, int]]:\n\
         \x20   for w in s.split():\n\
         \x20       yield w, len(w)\n$$;\n\
         SELECT word, n FROM words('smart lamp two') ORDER BY word;\n\
         SELECT id, w['word'] AS word, w['n'] AS n FROM \
         (SELECT id, unnest(words(title)) AS w FROM 'examples/data/products.csv' WHERE id < 2) \
         ORDER BY id, word;",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("| word  | n |"), "{out}");
    assert!(out.contains("| smart | 5 |"), "{out}");
    assert!(out.contains("| two   | 3 |"), "{out}");
    // Each emitted row beside the input row it came from, as Python says.
    let csv = std::fs::read_to_string(root().join("examples/data/products.csv")).unwrap();
    for line in csv.lines().skip(1).take(2) {
        let mut parts = line.splitn(2, ',');
        let id = parts.next().unwrap();
        let title = parts.next().unwrap().rsplit_once(',').unwrap().0;
        for w in title.trim_matches('"').split_whitespace() {
            assert!(
                out.lines().any(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    cells.len() > 3
                        && cells[1] == id
                        && cells[2] == w
                        && cells[3] == w.chars().count().to_string()
                }),
                "{id} {w} missing:\n{out}"
            );
        }
    }
}
