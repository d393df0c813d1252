//! `coil bench`: runs a UDF over the user's own input in each execution mode
//! and directly on the calling thread, checks that every mode gives the same
//! results, and measures what each mode costs, to advise which to use.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coil_host::{
    Config, ExecutionMode, Metrics, RunError, Runner, StartError, UdfKind, UdfSpec, WorkerCommand,
};
use coil_ipc::{decode_batch, encode_batch, Row, Value};
use coil_worker::Executor;
use serde_json::json;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// The UDF.
    pub spec: UdfSpec,
    /// The base configuration (the mode key is set per run).
    pub config: Config,
    /// The modes to compare.
    pub modes: Vec<ExecutionMode>,
    /// Timed runs per mode (the best is reported).
    pub repeat: usize,
    /// How to start worker processes.
    pub worker: WorkerCommand,
}

/// One mode's measurements.
#[derive(Debug, Clone)]
pub struct ModeResult {
    /// The mode asked for.
    pub requested: ExecutionMode,
    /// The mode the runner ran in (differs after a fallback).
    pub ran_as: ExecutionMode,
    /// Why it ran in another mode, if it did.
    pub fallback: Option<String>,
    /// Why the mode could not run the UDF, if it could not (then nothing
    /// was measured, and the mode is never advised).
    pub failed: Option<String>,
    /// Rows per second of the best run.
    pub rows_per_sec: f64,
    /// Batch latency, median and 99th percentile.
    pub batch_p50: Duration,
    /// 99th percentile.
    pub batch_p99: Duration,
    /// Timed runs.
    pub runs: usize,
    /// Counters of the timed runs.
    pub metrics: Metrics,
}

/// Everything `coil bench` measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Rows in the input.
    pub rows: usize,
    /// Rows per batch.
    pub bundle: usize,
    /// Rows per second calling the executor directly on this thread.
    pub direct_rows_per_sec: f64,
    /// Per mode, in the order asked.
    pub modes: Vec<ModeResult>,
    /// A module the UDF imports that cannot load in a sub-interpreter.
    pub subinterpreter_blocker: Option<String>,
    /// The recommendation and its reasons.
    pub advice: Advice,
}

/// Which mode to use, and why.
#[derive(Debug, Clone)]
pub struct Advice {
    /// The recommended mode.
    pub mode: ExecutionMode,
    /// The measured reasons, one sentence each.
    pub reasons: Vec<String>,
}

/// Reads JSON Lines of UDF arguments.
///
/// # Errors
///
/// The 1-based line that is not a JSON array of supported values.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        rows.push(
            crate::json::parse_args(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?,
        );
    }
    if rows.is_empty() {
        bail!("{} holds no rows", path.display());
    }
    Ok(rows)
}

/// Runs the UDF through its executor on this thread, batch by batch (the
/// floor: no ring, no other thread or process), returning the results and
/// rows per second.
fn direct(
    spec: &UdfSpec,
    config: &Config,
    rows: &[Row],
    repeat: usize,
) -> anyhow::Result<(Vec<Value>, f64)> {
    use pyo3::Python;
    Python::initialize();
    let mut spec = spec.clone();
    spec.paths.extend(config.files());
    Python::attach(|py| {
        let mut exec =
            Executor::load(py, &spec).map_err(|e| anyhow::anyhow!("{e}\n{}", e.error.traceback))?;
        let mut best = f64::INFINITY;
        let mut results = Vec::new();
        let (mut input, mut out) = (Vec::new(), Vec::new());
        let began = Instant::now();
        let mut runs = 0;
        while runs < repeat.max(1) || (began.elapsed() < MIN_TIME && runs < 10_000) {
            runs += 1;
            results.clear();
            let start = Instant::now();
            for chunk in rows.chunks(config.bundle_size()) {
                input.clear();
                out.clear();
                encode_batch(chunk, &mut input)?;
                exec.run_batch(py, &input[..], &mut out)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for mut row in decode_batch(&out[..])? {
                    results.push(row.pop().unwrap_or(Value::Null));
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let _ = exec.close(py);
        Ok((results, rows.len() as f64 / best))
    })
}

fn start(plan: &BenchPlan, mode: ExecutionMode, strict: bool) -> Result<Runner, StartError> {
    let mut config = plan.config.clone();
    config
        .set(coil_host::EXECUTION_MODE, mode.as_str())
        .expect("a valid mode");
    if strict {
        config
            .set(coil_host::EXECUTION_MODE_STRICT, "true")
            .expect("a valid flag");
    }
    Runner::with_worker_command(&config, plan.spec.clone(), plan.worker.clone())
}

/// Measures every mode of `plan` over `rows`; `progress` is called after
/// each timed run.
///
/// # Errors
///
/// A mode that fails to start or run, or results that differ between modes.
pub fn run(
    plan: &BenchPlan,
    rows: &[Row],
    mut progress: impl FnMut(&str),
) -> anyhow::Result<BenchReport> {
    let (want, direct_rate) = direct(&plan.spec, &plan.config, rows, plan.repeat)?;
    progress("direct");
    let mut blocker = None;
    let mut modes = Vec::new();
    for &mode in &plan.modes {
        // Strict first: it names the module that keeps the UDF out of
        // sub-interpreters, whether the UDF imports it when it loads or only
        // when it is called; then as a user would run it (with fallback).
        let mut runner = match start(plan, mode, mode == ExecutionMode::SubInterpreter) {
            Err(StartError::SubInterpreterIncompatible { module, .. }) => {
                blocker = Some(module);
                start(plan, mode, false)?
            }
            other => other?,
        };
        // Warm up, and check the results against the direct run.
        let mut got = runner.call(rows);
        if let Err(RunError::SubInterpreterIncompatible { module, .. }) = &got {
            blocker = Some(module.clone());
            runner = start(plan, mode, false)?;
            got = runner.call(rows);
        }
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                // This mode cannot run the UDF: a row of the report, and on
                // with the others.
                modes.push(ModeResult::failed(mode, format!("{e:#}")));
                progress(mode.as_str());
                continue;
            }
        };
        let ran_as = runner.mode();
        let fallback = (ran_as != mode).then(|| match (&blocker, plan.spec.kind) {
            (_, UdfKind::Vectorized) => "vectorized UDFs run in process mode".to_string(),
            (Some(m), _) => format!("imports {m}, which cannot load in a sub-interpreter"),
            (None, _) => "the mode cannot run this UDF".to_string(),
        });
        if got != want {
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            bail!(
                "{mode} mode gave a different result than the direct run for input row {}",
                at + 1
            );
        }
        let before = runner.metrics();
        let hist_before = runner.histograms().latency.len();
        let mut best = f64::INFINITY;
        let began = Instant::now();
        let mut runs = 0;
        // At least `repeat` runs, and enough of them to fill MIN_TIME.
        while runs < plan.repeat.max(1) || (began.elapsed() < MIN_TIME && runs < 10_000) {
            let t = Instant::now();
            runner
                .call(rows)
                .map_err(|e| anyhow::anyhow!("{mode} mode: {e}"))?;
            best = best.min(t.elapsed().as_secs_f64());
            if runs < plan.repeat.max(1) {
                progress(mode.as_str());
            }
            runs += 1;
        }
        let after = runner.metrics();
        let h = runner.histograms();
        debug_assert!(h.latency.len() >= hist_before);
        modes.push(ModeResult {
            requested: mode,
            ran_as,
            fallback,
            failed: None,
            rows_per_sec: rows.len() as f64 / best,
            batch_p50: Duration::from_nanos(h.latency.value_at_quantile(0.5)),
            batch_p99: Duration::from_nanos(h.latency.value_at_quantile(0.99)),
            runs,
            metrics: after.since(&before),
        });
    }
    if modes.iter().all(|r| r.failed.is_some()) {
        let why: Vec<String> = modes
            .iter()
            .map(|r| format!("{}: {}", r.requested, r.failed.as_deref().unwrap_or("")))
            .collect();
        bail!("no mode could run the UDF\n{}", why.join("\n"));
    }
    let advice = advise(plan, &modes, blocker.as_deref(), direct_rate);
    Ok(BenchReport {
        rows: rows.len(),
        bundle: plan.config.bundle_size(),
        direct_rows_per_sec: direct_rate,
        modes,
        subinterpreter_blocker: blocker,
        advice,
    })
}

impl ModeResult {
    /// A mode that could not run the UDF, and why.
    fn failed(mode: ExecutionMode, why: String) -> ModeResult {
        ModeResult {
            requested: mode,
            ran_as: mode,
            fallback: None,
            failed: Some(why),
            rows_per_sec: 0.0,
            batch_p50: Duration::ZERO,
            batch_p99: Duration::ZERO,
            runs: 0,
            metrics: Metrics::default(),
        }
    }

    /// Measured in the mode asked for (no fallback, no failure).
    fn ran_as_asked(&self) -> bool {
        self.requested == self.ran_as && self.failed.is_none()
    }
}

/// Each mode is timed for at least this long (small inputs run many times).
const MIN_TIME: Duration = Duration::from_millis(300);

/// The bundle size `coil bench` uses unless told otherwise: the default,
/// but small enough that every executor gets at least four batches.
pub fn bundle_for(rows: usize, workers: usize) -> usize {
    (rows / (4 * workers.max(1))).clamp(1, 1000)
}

/// A parallel mode must beat `multi-thread` by this much to count as a gain.
const PARALLEL_GAIN: f64 = 1.3;
/// An in-process mode must beat `process` by this much to be worth its risk.
const IN_PROCESS_GAIN: f64 = 1.15;

fn advise(plan: &BenchPlan, modes: &[ModeResult], blocker: Option<&str>, direct: f64) -> Advice {
    let rate = |m: ExecutionMode| {
        modes
            .iter()
            .find(|r| r.requested == m && r.ran_as_asked())
            .map(|r| r.rows_per_sec)
    };
    let mut reasons = Vec::new();
    if plan.spec.kind == UdfKind::Vectorized {
        reasons.push("vectorized UDFs run in process mode only".into());
        return Advice {
            mode: ExecutionMode::Process,
            reasons,
        };
    }
    if let Some(m) = blocker {
        reasons.push(format!(
            "the UDF imports {m}, which cannot load in a sub-interpreter: sub-interpreter mode would fall back to process"
        ));
    }
    let workers = plan.config.worker_count();
    let (process, thread, sub) = (
        rate(ExecutionMode::Process),
        rate(ExecutionMode::MultiThread),
        rate(ExecutionMode::SubInterpreter),
    );
    for r in modes.iter().filter(|r| r.failed.is_some()) {
        reasons.push(format!(
            "{} cannot run this UDF: {}",
            r.requested,
            r.failed.as_deref().unwrap_or("")
        ));
    }
    for r in modes.iter().filter(|r| r.ran_as_asked()) {
        let python = r.metrics.python.as_secs_f64();
        let total = (python + r.metrics.codec().as_secs_f64() + r.metrics.transport.as_secs_f64())
            .max(1e-12);
        reasons.push(format!(
            "{}: {:.0} rows/s ({:.0} % of the direct call), {:.0} % of the measured time in Python",
            r.requested,
            r.rows_per_sec,
            100.0 * r.rows_per_sec / direct,
            100.0 * python / total
        ));
    }
    let parallel = [sub, process]
        .into_iter()
        .flatten()
        .fold(None::<f64>, |a, b| Some(a.map_or(b, |a| a.max(b))));
    let gains = match (parallel, thread) {
        (Some(p), Some(t)) if workers > 1 => {
            let g = p / t;
            reasons.push(format!(
                "with {workers} executors, the best parallel mode runs {g:.2}x as fast as multi-thread (one GIL): {}",
                if g >= PARALLEL_GAIN { "the UDF gains from parallel interpreters" } else { "no real gain from parallelism" }
            ));
            g >= PARALLEL_GAIN
        }
        _ => false,
    };
    let mode = match (gains, sub, process) {
        // CPU-bound Python: a parallel mode. Isolation wins unless
        // sub-interpreters are clearly faster.
        (true, Some(s), Some(p)) if s > p * IN_PROCESS_GAIN => {
            reasons.push("sub-interpreters run it clearly faster than processes; a crash in the UDF would take the host down".into());
            ExecutionMode::SubInterpreter
        }
        (true, Some(_), None) => ExecutionMode::SubInterpreter,
        (true, _, _) => {
            reasons.push("processes run it in parallel as fast, and isolate the host from crashes in the UDF".into());
            ExecutionMode::Process
        }
        (false, _, p) => {
            let best_in = [
                (ExecutionMode::MultiThread, thread),
                (ExecutionMode::SubInterpreter, sub),
            ]
            .into_iter()
            .filter_map(|(m, r)| r.map(|r| (m, r)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
            match (best_in, p) {
                (Some((m, r)), Some(p)) if r > p * IN_PROCESS_GAIN => {
                    reasons.push(format!(
                        "{m} runs it {:.2}x as fast as process mode; the price is that a crash in the UDF takes the host down",
                        r / p
                    ));
                    m
                }
                (Some((m, _)), None) => m,
                _ => {
                    reasons.push("no in-process mode is clearly faster, so process mode's isolation costs nothing here".into());
                    ExecutionMode::Process
                }
            }
        }
    };
    Advice { mode, reasons }
}

impl BenchReport {
    /// The report as a table, with the advice at the end.
    pub fn table(&self) -> String {
        let mut s = format!(
            "coil bench: {} rows, batches of {}\n\n",
            self.rows, self.bundle
        );
        s += &format!(
            "{:<16} {:>12} {:>8} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
            "mode", "rows/s", "vs direct", "batch p50", "batch p99", "codec", "transport", "python"
        );
        s += &format!(
            "{:<16} {:>12.0} {:>8} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
            "direct", self.direct_rows_per_sec, "1.00", "-", "-", "-", "-", "-"
        );
        for r in &self.modes {
            if r.failed.is_some() {
                s += &format!(
                    "{:<16} {:>12} (failed, see below)\n",
                    format!("{}!", r.requested),
                    "-"
                );
                continue;
            }
            let per_row = |d: Duration| {
                format!(
                    "{:.0} ns",
                    d.as_nanos() as f64 / r.metrics.rows_out.max(1) as f64
                )
            };
            let name = if r.ran_as == r.requested {
                r.requested.to_string()
            } else {
                format!("{}*", r.requested)
            };
            s += &format!(
                "{:<16} {:>12.0} {:>8.2} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
                name,
                r.rows_per_sec,
                r.rows_per_sec / self.direct_rows_per_sec,
                format!("{:.1?}", r.batch_p50),
                format!("{:.1?}", r.batch_p99),
                per_row(r.metrics.codec()),
                per_row(r.metrics.transport),
                per_row(r.metrics.python),
            );
        }
        for r in self.modes.iter().filter(|r| r.fallback.is_some()) {
            s += &format!(
                "* {} ran as {}: {}\n",
                r.requested,
                r.ran_as,
                r.fallback.as_deref().unwrap_or("")
            );
        }
        for r in self.modes.iter().filter(|r| r.failed.is_some()) {
            s += &format!(
                "! {} cannot run this UDF: {}\n",
                r.requested,
                r.failed.as_deref().unwrap_or("")
            );
        }
        s += "\ncodec, transport and python are per row (encode and decode on both sides; rings and waiting; the UDF).\n";
        s += &format!("\nAdvice: use {}\n", self.advice.mode);
        for reason in &self.advice.reasons {
            s += &format!("  - {reason}\n");
        }
        s
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ns = |d: Duration| d.as_nanos() as u64;
        json!({
            "rows": self.rows,
            "bundle_size": self.bundle,
            "direct_rows_per_sec": self.direct_rows_per_sec,
            "subinterpreter_blocker": self.subinterpreter_blocker,
            "modes": self.modes.iter().map(|r| json!({
                "mode": r.requested.as_str(),
                "ran_as": r.ran_as.as_str(),
                "fallback": r.fallback,
                "failed": r.failed,
                "rows_per_sec": r.rows_per_sec,
                "vs_direct": r.rows_per_sec / self.direct_rows_per_sec,
                "batch_p50_ns": ns(r.batch_p50),
                "batch_p99_ns": ns(r.batch_p99),
                "timed_runs": r.runs,
                "rows_measured": r.metrics.rows_out,
                "batches_measured": r.metrics.batches,
                "time_ns": {
                    "host_encode": ns(r.metrics.encode),
                    "host_decode": ns(r.metrics.decode),
                    "executor_decode": ns(r.metrics.worker_decode),
                    "python": ns(r.metrics.python),
                    "executor_encode": ns(r.metrics.worker_encode),
                    "transport": ns(r.metrics.transport),
                },
            })).collect::<Vec<_>>(),
            "advice": { "mode": self.advice.mode.as_str(), "reasons": self.advice.reasons },
        })
    }

    /// Draws rows per second per mode as an SVG bar chart.
    ///
    /// # Errors
    ///
    /// The plotting backend's error.
    pub fn plot(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let mut bars = vec![("direct".to_string(), self.direct_rows_per_sec)];
        bars.extend(
            self.modes
                .iter()
                .filter(|r| r.failed.is_none())
                .map(|r| (r.requested.to_string(), r.rows_per_sec)),
        );
        let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
        let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("coil bench: rows/s over {} rows", self.rows),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..top)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("rows/s")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let color = if i == 0 {
                    BLACK.mix(0.5)
                } else {
                    Palette99::pick(i).mix(0.8)
                };
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    color.filled(),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: UdfKind, workers: &str) -> BenchPlan {
        let mut config = Config::default();
        config.set(coil_host::WORKER_COUNT, workers).unwrap();
        BenchPlan {
            spec: UdfSpec::new("x.py:f").kind(kind),
            config,
            modes: vec![
                ExecutionMode::Process,
                ExecutionMode::MultiThread,
                ExecutionMode::SubInterpreter,
            ],
            repeat: 1,
            worker: WorkerCommand::new("coil"),
        }
    }

    fn measured(mode: ExecutionMode, ran_as: ExecutionMode, rows_per_sec: f64) -> ModeResult {
        ModeResult {
            requested: mode,
            ran_as,
            fallback: None,
            failed: None,
            rows_per_sec,
            batch_p50: Duration::ZERO,
            batch_p99: Duration::ZERO,
            runs: 1,
            metrics: Metrics::default(),
        }
    }

    use ExecutionMode::{MultiThread as T, Process as P, SubInterpreter as S};

    #[test]
    fn cpu_bound_udfs_are_advised_into_a_parallel_mode() {
        let m = [
            measured(P, P, 180.0),
            measured(T, T, 90.0),
            measured(S, S, 182.0),
        ];
        assert_eq!(
            advise(&plan(UdfKind::Scalar, "2"), &m, None, 93.0).mode,
            P,
            "as fast: isolation wins"
        );
        let m = [
            measured(P, P, 120.0),
            measured(T, T, 90.0),
            measured(S, S, 182.0),
        ];
        assert_eq!(
            advise(&plan(UdfKind::Scalar, "2"), &m, None, 93.0).mode,
            S,
            "clearly faster"
        );
    }

    #[test]
    fn a_udf_that_cannot_load_in_a_sub_interpreter_is_not_advised_there() {
        let m = [
            measured(P, P, 120.0),
            measured(T, T, 90.0),
            measured(S, P, 119.0),
        ];
        let a = advise(&plan(UdfKind::Scalar, "2"), &m, Some("numpy"), 100.0);
        assert_ne!(a.mode, S);
        assert!(
            a.reasons.iter().any(|r| r.contains("numpy")),
            "{:?}",
            a.reasons
        );
    }

    #[test]
    fn cheap_udfs_stay_in_process_mode_unless_in_process_is_clearly_faster() {
        let m = [
            measured(P, P, 12.0e6),
            measured(T, T, 12.5e6),
            measured(S, S, 12.4e6),
        ];
        assert_eq!(
            advise(&plan(UdfKind::Scalar, "2"), &m, None, 17.0e6).mode,
            P
        );
        let m = [
            measured(P, P, 5.0e6),
            measured(T, T, 12.5e6),
            measured(S, S, 12.4e6),
        ];
        assert_eq!(
            advise(&plan(UdfKind::Scalar, "2"), &m, None, 17.0e6).mode,
            T
        );
        let a = advise(&plan(UdfKind::Vectorized, "2"), &m, None, 17.0e6);
        assert_eq!(a.mode, P, "vectorized UDFs run in process mode only");
    }

    #[test]
    fn a_mode_that_cannot_run_the_udf_is_reported_and_never_advised() {
        let m = [
            measured(P, P, 100.0),
            measured(T, T, 90.0),
            ModeResult::failed(S, "the UDF crashed the interpreter".into()),
        ];
        let report = BenchReport {
            rows: 10,
            bundle: 1,
            direct_rows_per_sec: 95.0,
            modes: m.to_vec(),
            subinterpreter_blocker: None,
            advice: advise(&plan(UdfKind::Scalar, "2"), &m, None, 95.0),
        };
        assert_ne!(report.advice.mode, S);
        assert!(
            report
                .advice
                .reasons
                .iter()
                .any(|r| r.contains("sub-interpreter cannot run this UDF")),
            "{:?}",
            report.advice.reasons
        );
        let table = report.table();
        assert!(table.contains("sub-interpreter!"), "{table}");
        assert!(
            table
                .contains("! sub-interpreter cannot run this UDF: the UDF crashed the interpreter"),
            "{table}"
        );
        assert_eq!(
            report.to_json()["modes"][2]["failed"],
            "the UDF crashed the interpreter"
        );
    }
}
