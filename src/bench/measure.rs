//! Measuring: the UDF run directly on this thread through its executor,
//! then in each mode, each mode's results checked against the direct run's
//! before it is timed.
//!
//! The direct run gives two rates. The floor is the UDF alone: rows over
//! the time the executor spent calling it (its own clock, [`coil_worker::Times::python`],
//! without making the arguments and taking the results apart), as
//! docs/modes.md defines it and the `process` criterion bench measures it
//! with a pyo3 loop. The serial rate is the same executor with its codec,
//! one batch after another on one thread: a reference, not a floor, since
//! every mode overlaps the host's encoding and decoding with the executor's
//! work on another core.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coil_host::arrow_array::{ArrayRef, RecordBatch};
use coil_host::{
    Config, ExecutionMode, Metrics, RunError, Runner, StartError, UdfSpec, WorkerCommand,
};
use coil_ipc::{decode_batch, encode_batch, Row, Value};
use coil_worker::proto::Columns;
use coil_worker::Executor;

/// What `coil bench` runs the UDF over.
#[derive(Debug, Clone)]
pub enum BenchInput {
    /// Rows of arguments (JSON Lines), run with `Runner::call`.
    Rows(Vec<Row>),
    /// Arrow record batches (an Arrow IPC stream), one column per argument,
    /// run batch by batch with `Runner::call_arrow`: the plan's UDF
    /// declares its return type (`UdfSpec::returns`).
    Arrow(Vec<RecordBatch>),
}

impl BenchInput {
    /// Rows in the input.
    pub fn rows(&self) -> usize {
        match self {
            BenchInput::Rows(rows) => rows.len(),
            BenchInput::Arrow(batches) => batches.iter().map(RecordBatch::num_rows).sum(),
        }
    }
}

/// One run's results, in input order: values from `Runner::call`, or one
/// array per batch from `Runner::call_arrow`.
pub(crate) enum Results {
    Values(Vec<Value>),
    Arrays(Vec<ArrayRef>),
}

impl Results {
    /// Runs `input` through `runner`.
    pub(crate) fn of(runner: &Runner, input: &BenchInput) -> Result<Results, RunError> {
        Ok(match input {
            BenchInput::Rows(rows) => Results::Values(runner.call(rows)?),
            BenchInput::Arrow(batches) => Results::Arrays(
                batches
                    .iter()
                    .map(|b| runner.call_arrow(b))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The 0-based input row at which these results first differ from
    /// `want` (the direct run's), if they do.
    fn first_difference(&self, want: &Results) -> Option<usize> {
        if let (Results::Arrays(got), Results::Arrays(want)) = (self, want) {
            // Cell by cell, whatever the type (both are arrays of the
            // declared type).
            let cells = |arrays: &[ArrayRef]| -> Vec<ArrayRef> {
                arrays
                    .iter()
                    .flat_map(|a| (0..a.len()).map(move |i| a.slice(i, 1)))
                    .collect()
            };
            let (got, want) = (cells(got), cells(want));
            return got
                .iter()
                .zip(&want)
                .position(|(a, b)| a.to_data() != b.to_data())
                .or_else(|| (got.len() != want.len()).then(|| got.len().min(want.len())));
        }
        let (got, want) = (self.json(), want.json());
        got.iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .or_else(|| (got.len() != want.len()).then(|| got.len().min(want.len())))
    }

    /// Each row's result as JSON (`None` for an array cell JSON does not
    /// hold).
    fn json(&self) -> Vec<Option<serde_json::Value>> {
        match self {
            Results::Values(v) => v
                .iter()
                .map(|v| Some(coil_host::value_to_json(v)))
                .collect(),
            Results::Arrays(arrays) => arrays
                .iter()
                .flat_map(|a| (0..a.len()).map(|i| coil_host::cell_to_json(a.as_ref(), i)))
                .collect(),
        }
    }
}

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
    /// Run-to-run noise: how far below the best run's rate the median run's
    /// is, as a fraction of the best (0.04: 4 %); `None` under
    /// [`MIN_RUNS_FOR_SPREAD`] timed runs.
    pub spread: Option<f64>,
    /// Batch latency, median and 99th percentile.
    pub batch_p50: Duration,
    /// 99th percentile.
    pub batch_p99: Duration,
    /// Timed runs.
    pub runs: usize,
    /// Counters of the timed runs.
    pub metrics: Metrics,
}

impl ModeResult {
    /// A mode that could not run the UDF, and why.
    pub(crate) fn failed(mode: ExecutionMode, why: String) -> ModeResult {
        ModeResult {
            requested: mode,
            ran_as: mode,
            fallback: None,
            failed: Some(why),
            rows_per_sec: 0.0,
            spread: None,
            batch_p50: Duration::ZERO,
            batch_p99: Duration::ZERO,
            runs: 0,
            metrics: Metrics::default(),
        }
    }

    /// Measured in the mode asked for (no fallback, no failure).
    pub(crate) fn ran_as_asked(&self) -> bool {
        self.requested == self.ran_as && self.failed.is_none()
    }
}

#[cfg(test)]
impl ModeResult {
    /// Asked for `requested`, measured at `rows_per_sec` in `ran_as`, with
    /// empty counters: made-up numbers for the advice and report tests.
    pub(crate) fn measured(
        requested: ExecutionMode,
        ran_as: ExecutionMode,
        rows_per_sec: f64,
    ) -> ModeResult {
        ModeResult {
            requested,
            ran_as,
            fallback: None,
            failed: None,
            rows_per_sec,
            spread: None,
            batch_p50: Duration::ZERO,
            batch_p99: Duration::ZERO,
            runs: 1,
            metrics: Metrics::default(),
        }
    }
}

/// What the direct run on this thread measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Direct {
    /// The floor: rows per second of the UDF alone, over the time the
    /// executor spent calling it (no ring, no codec, no other thread).
    pub udf_rows_per_sec: f64,
    /// A reference, not a floor: rows per second of the executor with its
    /// codec (decode, call, encode), one batch after another on this
    /// thread.
    pub serial_rows_per_sec: f64,
}

/// What [`measure`] found, before any advice.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// The direct run's rates.
    pub(crate) direct: Direct,
    /// Per mode, in the order asked.
    pub(crate) modes: Vec<ModeResult>,
    /// A module the UDF imports that cannot load in a sub-interpreter.
    pub(crate) blocker: Option<String>,
    /// On a free-threaded CPython whose GIL came back on while the UDF
    /// loaded or ran: the module whose import turned it on ("" if unknown).
    pub(crate) gil: Option<String>,
}

/// Each mode is timed for at least this long (small inputs run many times).
const MIN_TIME: Duration = Duration::from_millis(300);

/// Fewer timed runs than this give no spread (a median needs three).
pub const MIN_RUNS_FOR_SPREAD: usize = 3;

/// How far below the best of `secs` (one timed run each) the median run's
/// rate is, as a fraction of the best rate; `None` under
/// [`MIN_RUNS_FOR_SPREAD`] runs.
pub(crate) fn spread(secs: &[f64]) -> Option<f64> {
    if secs.len() < MIN_RUNS_FOR_SPREAD {
        return None;
    }
    let mut sorted = secs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (best, median) = (sorted[0], sorted[sorted.len() / 2]);
    // Rates are rows / secs: 1 - (rows / median) / (rows / best).
    Some((1.0 - best / median).max(0.0))
}

/// The bundle size `coil bench` uses unless told otherwise: the default,
/// but small enough that every executor gets at least four batches.
pub fn bundle_for(rows: usize, workers: usize) -> usize {
    (rows / (4 * workers.max(1))).clamp(1, 1000)
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
            coil_host::args_from_json(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?,
        );
    }
    if rows.is_empty() {
        bail!("{} holds no rows", path.display());
    }
    Ok(rows)
}

/// Runs the UDF through its executor on this thread, batch by batch (no
/// ring, no other thread or process), returning the results and the two
/// rates of [`Direct`], each from its best run. Arrow batches are cut into
/// slices of the batch size, each encoded as a column frame and decoded
/// again, as they travel to an executor.
fn direct(
    spec: &UdfSpec,
    config: &Config,
    input: &BenchInput,
    repeat: usize,
) -> anyhow::Result<(Results, Direct)> {
    use pyo3::Python;
    Python::initialize();
    let mut spec = spec.clone();
    spec.paths.extend(config.files());
    Python::attach(|py| {
        let mut exec =
            Executor::load(py, &spec).map_err(|e| anyhow::anyhow!("{e}\n{}", e.error.traceback))?;
        // Best whole run (codec and call) and best time in the UDF alone.
        let (mut best, mut best_udf) = (f64::INFINITY, f64::INFINITY);
        let mut results = Vec::new();
        let mut kept = Results::Values(Vec::new());
        let (mut frame, mut out) = (Vec::new(), Vec::new());
        let bundle = config.bundle_size().max(1);
        let began = Instant::now();
        let mut runs = 0;
        while runs < repeat.max(1) || (began.elapsed() < MIN_TIME && runs < 10_000) {
            runs += 1;
            results.clear();
            let start = Instant::now();
            let mut udf = Duration::ZERO;
            let mut arrays = Vec::new();
            match input {
                BenchInput::Rows(rows) => {
                    for chunk in rows.chunks(bundle) {
                        frame.clear();
                        out.clear();
                        encode_batch(chunk, &mut frame)?;
                        exec.run_batch(py, &frame[..], &mut out, false)
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        udf += exec.last_times().python;
                        for mut row in decode_batch(&out[..])? {
                            results.push(row.pop().unwrap_or(Value::Null));
                        }
                    }
                }
                BenchInput::Arrow(batches) => {
                    for batch in batches {
                        for at in (0..batch.num_rows()).step_by(bundle) {
                            let n = bundle.min(batch.num_rows() - at);
                            frame.clear();
                            out.clear();
                            Columns::encode(0, n, batch.slice(at, n).columns(), &mut frame)?;
                            let columns = Columns::decode(&frame[..])?;
                            exec.run_columns(py, &columns, &mut out, false)
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            udf += exec.last_times().python;
                            let (_, mut column, _) = Columns::decode_body(&out[..])?;
                            arrays.extend(column.pop());
                        }
                    }
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
            best_udf = best_udf.min(udf.as_secs_f64());
            kept = match input {
                BenchInput::Rows(_) => Results::Values(std::mem::take(&mut results)),
                BenchInput::Arrow(_) => Results::Arrays(arrays),
            };
        }
        let _ = exec.close(py);
        let rows = input.rows() as f64;
        // Never below the serial rate, whatever the sampling says; the
        // serial rate when nothing was sampled.
        let udf = if best_udf > 0.0 {
            best_udf.min(best)
        } else {
            best
        };
        Ok((
            kept,
            Direct {
                udf_rows_per_sec: rows / udf,
                serial_rows_per_sec: rows / best,
            },
        ))
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

/// Measures the direct call and every mode of `plan` over `input`;
/// `progress` is called after each timed run.
///
/// # Errors
///
/// A mode that fails to start or run, results that differ between modes,
/// or no mode that could run the UDF at all.
pub(crate) fn measure(
    plan: &BenchPlan,
    input: &BenchInput,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Measured> {
    let (want, direct) = direct(&plan.spec, &plan.config, input, plan.repeat)?;
    progress("direct");
    let mut blocker = None;
    let mut gil: Option<String> = None;
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
        let mut got = Results::of(&runner, input);
        if let Err(RunError::SubInterpreterIncompatible { module, .. }) = &got {
            blocker = Some(module.clone());
            runner = start(plan, mode, false)?;
            got = Results::of(&runner, input);
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
        let fallback = (ran_as != mode).then(|| match &blocker {
            Some(m) => format!("imports {m}, which cannot load in a sub-interpreter"),
            None => "the mode cannot run this UDF".to_string(),
        });
        if let Some(at) = got.first_difference(&want) {
            bail!(
                "{mode} mode gave a different result than the direct run for input row {}",
                at + 1
            );
        }
        let before = runner.metrics();
        let hist_before = runner.histograms().latency.len();
        let mut secs = Vec::new();
        let began = Instant::now();
        let mut runs = 0;
        // At least `repeat` runs, and enough of them to fill MIN_TIME.
        while runs < plan.repeat.max(1) || (began.elapsed() < MIN_TIME && runs < 10_000) {
            let t = Instant::now();
            Results::of(&runner, input).map_err(|e| anyhow::anyhow!("{mode} mode: {e}"))?;
            secs.push(t.elapsed().as_secs_f64());
            if runs < plan.repeat.max(1) {
                progress(mode.as_str());
            }
            runs += 1;
        }
        // Free-threaded CPython: did loading (any mode's executors say) or
        // running the UDF (the main interpreter, multi-thread's, says) turn
        // the GIL back on?
        if gil.is_none() {
            gil = runner.gil_enabled_by().map(str::to_string).or_else(|| {
                (ran_as == ExecutionMode::MultiThread)
                    .then(coil_worker::main_gil_enabled_by)
                    .flatten()
            });
        }
        let after = runner.metrics();
        let h = runner.histograms();
        debug_assert!(h.latency.len() >= hist_before);
        modes.push(ModeResult {
            requested: mode,
            ran_as,
            fallback,
            failed: None,
            rows_per_sec: input.rows() as f64 / secs.iter().copied().fold(f64::INFINITY, f64::min),
            spread: spread(&secs),
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
    Ok(Measured {
        direct,
        modes,
        blocker,
        gil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_batches_give_every_executor_at_least_four_within_the_default() {
        assert_eq!(bundle_for(400, 2), 50);
        assert_eq!(bundle_for(3, 2), 1);
        assert_eq!(bundle_for(1_000_000, 2), 1000);
        assert_eq!(bundle_for(40, 0), 10, "no executors counts as one");
    }

    #[test]
    fn the_spread_is_how_far_the_median_run_falls_below_the_best() {
        // Rates 100, 80 and 50 rows/s over 1 row: the median is 20 % below.
        let s = spread(&[0.01, 0.0125, 0.02]).unwrap();
        assert!((s - 0.2).abs() < 1e-9, "{s}");
        // In any order; equal runs have none.
        assert_eq!(spread(&[0.02, 0.01, 0.0125]), Some(s));
        assert_eq!(spread(&[0.5; 4]), Some(0.0));
        // Under three runs there is no median to speak of.
        assert_eq!(spread(&[0.01, 0.02]), None);
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn only_a_mode_measured_as_asked_counts_as_its_own() {
        use ExecutionMode::{Process as P, SubInterpreter as S};
        assert!(ModeResult::measured(S, S, 1.0).ran_as_asked());
        assert!(!ModeResult::measured(S, P, 1.0).ran_as_asked());
        assert!(!ModeResult::failed(S, "crashed".into()).ran_as_asked());
    }
}
