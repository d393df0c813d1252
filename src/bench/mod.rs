//! `coil bench`: runs a UDF over the user's own input in each execution mode
//! and directly on the calling thread, checks that every mode gives the same
//! results, and measures what each mode costs, to advise which to use.
//!
//! The direct run is the floor: the UDF alone on one thread, without ring or
//! codec. Every mode's rate is reported as a multiple of it, which a mode
//! with N executors can take up to N (see `report` for the wording).
//!
//! Three jobs, one file each:
//!
//! - `measure`: runs the UDF (directly, then in each mode), checks the
//!   results against the direct run and times it, keeping each timed run so
//!   that the run-to-run spread is known;
//! - `advice`: pure functions from the measured numbers to a recommended
//!   mode and its reasons (no timing, no I/O, unit-tested with tables);
//! - `report`: the report as a table, as JSON and as an SVG chart;
//! - `concurrency`: for an async UDF, the advised mode at a few
//!   concurrencies, and the one to use.

mod advice;
mod concurrency;
mod measure;
mod report;

pub use advice::Advice;
pub use concurrency::ConcurrencyAdvice;
pub use measure::{
    bundle_for, read_rows, BenchInput, BenchPlan, Direct, ModeResult, MIN_RUNS_FOR_SPREAD,
};
pub use report::BenchReport;

/// Measures every mode of `plan` over `input` and advises one; `progress`
/// is called after each timed run.
///
/// # Errors
///
/// A mode that fails to start or run, results that differ between modes,
/// or no mode that could run the UDF at all.
pub fn run(
    plan: &BenchPlan,
    input: &BenchInput,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<BenchReport> {
    let measured = measure::measure(plan, input, &mut progress)?;
    let advice = advice::advise(&advice::Facts {
        workers: plan.config.worker_count(),
        direct: measured.direct,
        modes: &measured.modes,
        blocker: measured.blocker.as_deref(),
        free_threaded: coil_worker::FREE_THREADED,
        gil: measured.gil.as_deref(),
    });
    let concurrency = if measured.modes.iter().any(|m| m.failed.is_none()) {
        concurrency::measure(plan, input, advice.mode, &mut progress)?
    } else {
        None
    };
    Ok(BenchReport {
        concurrency,
        rows: input.rows(),
        bundle: plan.config.bundle_size(),
        workers: plan.config.worker_count(),
        direct: measured.direct,
        modes: measured.modes,
        subinterpreter_blocker: measured.blocker,
        free_threaded: coil_worker::FREE_THREADED,
        gil_enabled_by: measured.gil,
        advice,
    })
}
