//! Advice: which mode to use, and why, from the measured numbers alone.
//!
//! Every rule here is a pure function of what `measure` found (rows per
//! second per mode and its run-to-run spread, which modes fell back or
//! failed, the module that keeps the UDF out of sub-interpreters), so the
//! rules are tested with tables of made-up measurements rather than with
//! timed runs.
//!
//! Two rates are compared three ways: within the run-to-run spread of the
//! noisier of the two (the measured [`ModeResult::spread`], or
//! [`ASSUMED_SPREAD`] for a mode timed fewer than
//! [`MIN_RUNS_FOR_SPREAD`](super::MIN_RUNS_FOR_SPREAD) times), then
//! nothing was measured between them and the advice says so; clearly
//! faster, by at least the rule's gain and by more than the spread; or
//! neither. Modes within the spread of each other always get the same
//! advice (the safer mode), so the advice does not flip from run to run
//! with the noise.
//!
//! The rules, in order (the same for every kind of UDF):
//!
//! 1. A mode that fell back or failed has no numbers of its own and is never
//!    advised; with a blocker module, sub-interpreter mode never is.
//! 2. With more than one executor, a CPU-bound UDF gains from parallelism
//!    when the best parallel mode (process or sub-interpreter) runs it
//!    clearly faster than multi-thread (one GIL), by at least
//!    [`PARALLEL_GAIN`]. Then process mode, unless sub-interpreters are
//!    clearly faster, by at least [`IN_PROCESS_GAIN`]. On a free-threaded
//!    CPython whose GIL stayed off, multi-thread is a parallel mode itself
//!    and this rule does not apply; with the GIL back on it does, so
//!    multi-thread is never advised for parallelism it cannot have.
//! 3. Otherwise process mode, unless an in-process mode is clearly faster,
//!    by at least [`IN_PROCESS_GAIN`]: its isolation costs nothing. Of two
//!    in-process modes within the spread of each other, multi-thread (every
//!    extension module loads in it).

use coil_host::ExecutionMode;

use super::{Direct, ModeResult};

/// A parallel mode must beat `multi-thread` by this much to count as a gain.
const PARALLEL_GAIN: f64 = 1.3;
/// An in-process mode must beat `process` by this much to be worth its risk.
const IN_PROCESS_GAIN: f64 = 1.15;
/// The run-to-run spread assumed for a mode with too few timed runs to
/// measure one (`--repeat 1` over an input that fills the minimum time in
/// one or two runs): 10 %, what this project's shared 2-vCPU VM shows
/// between runs of the same command (docs/benchmarks.md).
pub(crate) const ASSUMED_SPREAD: f64 = 0.10;

/// Which mode to use, and why.
#[derive(Debug, Clone)]
pub struct Advice {
    /// The recommended mode.
    pub mode: ExecutionMode,
    /// The measured reasons, one sentence each.
    pub reasons: Vec<String>,
}

/// What the advice is drawn from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// Executors per mode.
    pub(crate) workers: usize,
    /// The direct run: the floor every mode is measured against.
    pub(crate) direct: Direct,
    /// Per mode, in the order asked.
    pub(crate) modes: &'a [ModeResult],
    /// A module the UDF imports that cannot load in a sub-interpreter.
    pub(crate) blocker: Option<&'a str>,
    /// Whether the embedded CPython is free-threaded.
    pub(crate) free_threaded: bool,
    /// On a free-threaded CPython: the module whose import turned the GIL
    /// back on ("" if unknown); `None` while it stayed off.
    pub(crate) gil: Option<&'a str>,
}

/// One mode's best rate and its run-to-run spread (measured or assumed).
#[derive(Debug, Clone, Copy)]
struct Rate {
    rows_per_sec: f64,
    spread: f64,
}

/// How one rate compares with another.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Compared {
    /// No further apart than the noisier one's spread (this fraction).
    WithinSpread(f64),
    /// At least the gain asked for, and more than the spread: this many
    /// times as fast.
    Clearly(f64),
    /// Neither: this many times as fast (below 1: slower).
    NotClearly(f64),
}

impl Rate {
    /// How `self` compares with `other` against `gain`.
    fn against(self, other: Rate, gain: f64) -> Compared {
        let ratio = self.rows_per_sec / other.rows_per_sec;
        let spread = self.spread.max(other.spread);
        if ratio.max(1.0 / ratio) - 1.0 <= spread {
            Compared::WithinSpread(spread)
        } else if ratio >= gain {
            Compared::Clearly(ratio)
        } else {
            Compared::NotClearly(ratio)
        }
    }
}

/// A spread as a sentence's percentage.
fn pct(spread: f64) -> String {
    format!("{:.0} %", 100.0 * spread)
}

/// Each mode that was measured as asked; `None` for a mode not asked for,
/// fallen back or failed.
#[derive(Debug, Clone, Copy)]
struct Rates {
    process: Option<Rate>,
    thread: Option<Rate>,
    sub: Option<Rate>,
}

impl Rates {
    fn of(facts: &Facts<'_>) -> Rates {
        let rate = |m: ExecutionMode| {
            facts
                .modes
                .iter()
                .find(|r| r.requested == m && r.ran_as_asked())
                .map(|r| Rate {
                    rows_per_sec: r.rows_per_sec,
                    spread: r.spread.unwrap_or(ASSUMED_SPREAD),
                })
        };
        Rates {
            process: rate(ExecutionMode::Process),
            thread: rate(ExecutionMode::MultiThread),
            // A blocker means sub-interpreter mode cannot run the UDF as
            // itself, whatever numbers it has.
            sub: rate(ExecutionMode::SubInterpreter).filter(|_| facts.blocker.is_none()),
        }
    }

    /// The best parallel mode against multi-thread, when there is more than
    /// one executor to run in parallel.
    fn parallel_gain(&self, workers: usize) -> Option<Compared> {
        let parallel = [self.sub, self.process]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.rows_per_sec.total_cmp(&b.rows_per_sec));
        match (parallel, self.thread) {
            (Some(p), Some(t)) if workers > 1 => Some(p.against(t, PARALLEL_GAIN)),
            _ => None,
        }
    }
}

/// Recommends a mode for the UDF, with the measured reasons.
pub(crate) fn advise(facts: &Facts<'_>) -> Advice {
    let mut reasons = Vec::new();
    if let Some(m) = facts.blocker {
        reasons.push(format!(
            "the UDF imports {m}, which cannot load in a sub-interpreter: sub-interpreter mode would fall back to process"
        ));
    }
    for r in facts.modes.iter().filter(|r| r.failed.is_some()) {
        reasons.push(format!(
            "{} cannot run this UDF: {}",
            r.requested,
            r.failed.as_deref().unwrap_or("")
        ));
    }
    for r in facts.modes.iter().filter(|r| r.ran_as_asked()) {
        reasons.push(measured(r, facts.direct.udf_rows_per_sec, facts.workers));
    }
    let rates = Rates::of(facts);
    let n = facts.workers;
    // On a free-threaded CPython with the GIL off, multi-thread executors
    // run in parallel themselves: no mode is "the one GIL" to gain on, and
    // rule 3 weighs multi-thread's speed against process mode's isolation.
    let threads_parallel = facts.free_threaded && facts.gil.is_none();
    if facts.free_threaded {
        reasons.push(match facts.gil {
            None => "the embedded CPython is free-threaded and the GIL stayed off: multi-thread executors run Python in parallel".to_string(),
            Some(m) => format!("the embedded CPython is free-threaded, but {}", coil_worker::gil_message(m, "")),
        });
    }
    let parallel = if threads_parallel {
        None
    } else {
        rates.parallel_gain(n)
    };
    let gains = match parallel {
        Some(Compared::Clearly(g)) => {
            reasons.push(format!(
                "with {n} executors, the best parallel mode runs {g:.2}x as fast as multi-thread (one GIL): the UDF gains from parallel interpreters"
            ));
            true
        }
        Some(Compared::NotClearly(g)) => {
            reasons.push(format!(
                "with {n} executors, the best parallel mode runs {g:.2}x as fast as multi-thread (one GIL): no real gain from parallelism"
            ));
            false
        }
        Some(Compared::WithinSpread(s)) => {
            reasons.push(format!(
                "with {n} executors, the best parallel mode and multi-thread (one GIL) are within the run-to-run spread ({}) of each other: no measured gain from parallelism",
                pct(s)
            ));
            false
        }
        None => false,
    };
    let (mode, why) = if gains {
        parallel_mode(&rates)
    } else {
        cheapest_safe_mode(&rates)
    };
    reasons.extend(why);
    Advice { mode, reasons }
}

/// One mode's numbers as a sentence: rows/s, as a multiple of the direct
/// call (the UDF alone on one thread) and per executor, and the share of
/// the time spent in Python.
fn measured(r: &ModeResult, direct: f64, workers: usize) -> String {
    let python = r.metrics.python.as_secs_f64();
    let total =
        (python + r.metrics.codec().as_secs_f64() + r.metrics.transport.as_secs_f64()).max(1e-12);
    let times = r.rows_per_sec / direct;
    let per_executor = if workers > 1 {
        format!(
            " ({workers} executors: {:.2}x each)",
            times / workers as f64
        )
    } else {
        String::new()
    };
    format!(
        "{}: {:.0} rows/s, {times:.2}x the UDF called alone on one thread{per_executor}, {:.0} % of the measured time in Python",
        r.requested,
        r.rows_per_sec,
        100.0 * python / total
    )
}

/// CPU-bound Python, gaining from parallelism: a parallel mode. Isolation
/// wins unless sub-interpreters are clearly faster.
fn parallel_mode(rates: &Rates) -> (ExecutionMode, Option<String>) {
    match (rates.sub, rates.process) {
        (Some(s), Some(p)) => match s.against(p, IN_PROCESS_GAIN) {
            Compared::Clearly(x) => (
                ExecutionMode::SubInterpreter,
                Some(format!("sub-interpreters run it {x:.2}x as fast as processes, clearly faster; a crash in the UDF would take the host down")),
            ),
            Compared::WithinSpread(spread) => (
                ExecutionMode::Process,
                Some(format!("sub-interpreter and process are within the run-to-run spread ({}) of each other: process, which isolates the host from crashes in the UDF", pct(spread))),
            ),
            Compared::NotClearly(_) => (
                ExecutionMode::Process,
                Some("processes run it in parallel as fast, and isolate the host from crashes in the UDF".into()),
            ),
        },
        (Some(_), None) => (ExecutionMode::SubInterpreter, None),
        _ => (
            ExecutionMode::Process,
            Some("processes run it in parallel, and isolate the host from crashes in the UDF".into()),
        ),
    }
}

/// The faster in-process mode; of two within the spread of each other,
/// multi-thread (every extension module loads in it).
fn best_in_process(rates: &Rates) -> Option<(ExecutionMode, Rate)> {
    match (rates.thread, rates.sub) {
        (Some(t), Some(s)) => match s.against(t, 1.0) {
            Compared::Clearly(_) => Some((ExecutionMode::SubInterpreter, s)),
            _ => Some((ExecutionMode::MultiThread, t)),
        },
        (Some(t), None) => Some((ExecutionMode::MultiThread, t)),
        (None, Some(s)) => Some((ExecutionMode::SubInterpreter, s)),
        (None, None) => None,
    }
}

/// No gain from parallelism: process mode, unless an in-process mode is
/// clearly faster (or process mode has no numbers).
fn cheapest_safe_mode(rates: &Rates) -> (ExecutionMode, Option<String>) {
    match (best_in_process(rates), rates.process) {
        (Some((m, r)), Some(p)) => match r.against(p, IN_PROCESS_GAIN) {
            Compared::Clearly(x) => (
                m,
                Some(format!(
                    "{m} runs it {x:.2}x as fast as process mode; the price is that a crash in the UDF takes the host down"
                )),
            ),
            Compared::WithinSpread(spread) => (
                ExecutionMode::Process,
                Some(format!(
                    "{m} and process are within the run-to-run spread ({}) of each other, so process mode's isolation costs nothing measurable here",
                    pct(spread)
                )),
            ),
            Compared::NotClearly(_) => (
                ExecutionMode::Process,
                Some("no in-process mode is clearly faster, so process mode's isolation costs nothing here".into()),
            ),
        },
        (Some((m, _)), None) => (m, None),
        _ => (
            ExecutionMode::Process,
            Some("no in-process mode was measured, so process mode".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionMode::{MultiThread as T, Process as P, SubInterpreter as S};

    /// How one mode came out.
    #[derive(Debug, Clone, Copy)]
    enum Outcome {
        /// Measured as asked, at this many rows/s (too few runs for a
        /// spread: the assumed one).
        Rate(f64),
        /// Measured as asked, at this many rows/s, the median run this
        /// fraction below the best.
        Noisy(f64, f64),
        /// Fell back to another mode, measured there at this many rows/s.
        RanAs(ExecutionMode, f64),
        /// Could not run the UDF.
        Failed,
    }
    use Outcome::{Failed, Noisy, RanAs, Rate};

    struct Case {
        name: &'static str,
        workers: usize,
        modes: &'static [(ExecutionMode, Outcome)],
        blocker: Option<&'static str>,
        advised: ExecutionMode,
        /// Each must be part of some reason.
        reasons: &'static [&'static str],
        /// None may be part of any reason.
        not_reasons: &'static [&'static str],
    }

    const DIRECT: Direct = Direct {
        udf_rows_per_sec: 1000.0,
        serial_rows_per_sec: 600.0,
    };

    const CASES: &[Case] = &[
        // Rule 1: blockers, fallbacks and failures.
        Case {
            name: "a blocker module: sub-interpreter fell back and is not advised",
            workers: 2,
            modes: &[(P, Rate(120.0)), (T, Rate(90.0)), (S, RanAs(P, 119.0))],
            blocker: Some("numpy"),
            advised: P,
            reasons: &["the UDF imports numpy, which cannot load in a sub-interpreter"],
            not_reasons: &["sub-interpreter: 119 rows/s"],
        },
        Case {
            name: "a blocker module: never sub-interpreter, even were its numbers the best",
            workers: 2,
            modes: &[(P, Rate(100.0)), (T, Rate(90.0)), (S, Rate(500.0))],
            blocker: Some("numpy"),
            advised: P,
            reasons: &["numpy"],
            not_reasons: &["sub-interpreters run it"],
        },
        Case {
            name: "a blocker module does not keep a cheap UDF out of multi-thread",
            workers: 2,
            modes: &[(P, Rate(5.0e6)), (T, Rate(12.5e6)), (S, RanAs(P, 5.0e6))],
            blocker: Some("numpy"),
            advised: T,
            reasons: &["numpy", "multi-thread runs it 2.50x as fast as process mode"],
            not_reasons: &[],
        },
        Case {
            name: "a failed mode is reported and never advised",
            workers: 2,
            modes: &[(P, Rate(100.0)), (T, Rate(90.0)), (S, Failed)],
            blocker: None,
            advised: P,
            reasons: &["sub-interpreter cannot run this UDF: it failed"],
            not_reasons: &["sub-interpreter: 0 rows/s"],
        },
        Case {
            name: "a failed process mode is never advised, isolation or not",
            workers: 2,
            modes: &[(P, Failed), (T, Rate(90.0)), (S, Rate(100.0))],
            blocker: None,
            advised: S,
            reasons: &["process cannot run this UDF: it failed"],
            not_reasons: &[],
        },
        Case {
            name: "a failed process mode leaves the fastest in-process mode",
            workers: 2,
            modes: &[(P, Failed), (T, Rate(100.0)), (S, Rate(90.0))],
            blocker: None,
            advised: T,
            reasons: &["process cannot run this UDF"],
            not_reasons: &[],
        },
        // Rule 2: CPU-bound UDFs that gain from parallelism.
        Case {
            name: "parallel gain, sub-interpreter as fast as process: process",
            workers: 2,
            modes: &[(P, Rate(180.0)), (T, Rate(90.0)), (S, Rate(182.0))],
            blocker: None,
            advised: P,
            reasons: &[
                "with 2 executors, the best parallel mode runs 2.02x as fast as multi-thread (one GIL): the UDF gains from parallel interpreters",
                "sub-interpreter and process are within the run-to-run spread (10 %) of each other: process",
            ],
            not_reasons: &[],
        },
        Case {
            name: "parallel gain, sub-interpreter 1.10x as fast as process: process",
            workers: 2,
            modes: &[(P, Rate(160.0)), (T, Rate(90.0)), (S, Rate(176.0))],
            blocker: None,
            advised: P,
            reasons: &["gains from parallel interpreters"],
            not_reasons: &[],
        },
        Case {
            name: "parallel gain, sub-interpreter clearly faster: sub-interpreter",
            workers: 2,
            modes: &[(P, Rate(120.0)), (T, Rate(90.0)), (S, Rate(182.0))],
            blocker: None,
            advised: S,
            reasons: &["sub-interpreters run it 1.52x as fast as processes, clearly faster"],
            not_reasons: &[],
        },
        Case {
            name: "parallel gain without process mode measured: sub-interpreter",
            workers: 2,
            modes: &[(T, Rate(90.0)), (S, Rate(180.0))],
            blocker: None,
            advised: S,
            reasons: &["gains from parallel interpreters"],
            not_reasons: &[],
        },
        Case {
            name: "a parallel mode 1.28x as fast as multi-thread is no gain",
            workers: 2,
            modes: &[(P, Rate(110.0)), (T, Rate(90.0)), (S, Rate(115.0))],
            blocker: None,
            advised: P,
            reasons: &["1.28x as fast as multi-thread (one GIL): no real gain from parallelism"],
            not_reasons: &["gains from parallel interpreters"],
        },
        // Rule 3: cheap UDFs.
        Case {
            name: "a cheap UDF stays in process mode when no in-process mode is clearly faster",
            workers: 2,
            modes: &[(P, Rate(12.0e6)), (T, Rate(12.5e6)), (S, Rate(12.4e6))],
            blocker: None,
            advised: P,
            reasons: &[
                "multi-thread and process are within the run-to-run spread (10 %) of each other, so process mode's isolation costs nothing measurable here",
                "process: 12000000 rows/s, 12000.00x the UDF called alone on one thread (2 executors: 6000.00x each), 0 % of the measured time in Python",
            ],
            not_reasons: &[],
        },
        Case {
            name: "a cheap UDF: an in-process mode 1.14x as fast is not enough",
            workers: 2,
            modes: &[(P, Rate(10.0e6)), (T, Rate(11.4e6)), (S, Rate(11.0e6))],
            blocker: None,
            advised: P,
            reasons: &["no in-process mode is clearly faster"],
            not_reasons: &[],
        },
        Case {
            name: "a cheap UDF goes to multi-thread when it is 1.20x as fast",
            workers: 2,
            modes: &[(P, Rate(10.0e6)), (T, Rate(12.0e6)), (S, Rate(11.0e6))],
            blocker: None,
            advised: T,
            reasons: &["multi-thread runs it 1.20x as fast as process mode; the price is that a crash in the UDF takes the host down"],
            not_reasons: &[],
        },
        Case {
            name: "a cheap UDF goes to the fastest in-process mode",
            workers: 2,
            modes: &[(P, Rate(10.0e6)), (T, Rate(11.0e6)), (S, Rate(12.5e6))],
            blocker: None,
            advised: S,
            reasons: &["sub-interpreter runs it 1.25x as fast as process mode"],
            not_reasons: &[],
        },
        Case {
            name: "without process mode measured, the fastest in-process mode",
            workers: 2,
            modes: &[(T, Rate(90.0)), (S, Rate(80.0))],
            blocker: None,
            advised: T,
            reasons: &["no real gain from parallelism"],
            not_reasons: &[],
        },
        // One executor: nothing runs in parallel, so rule 3 never applies.
        Case {
            name: "a single worker never claims a parallel gain",
            workers: 1,
            modes: &[(P, Rate(100.0)), (T, Rate(77.0)), (S, Rate(110.0))],
            blocker: None,
            advised: P,
            reasons: &["no in-process mode is clearly faster"],
            not_reasons: &["executors", "parallel"],
        },
        Case {
            name: "a single worker: multi-thread when it is clearly faster",
            workers: 1,
            modes: &[(P, Rate(100.0)), (T, Rate(130.0)), (S, Rate(60.0))],
            blocker: None,
            advised: T,
            reasons: &["multi-thread runs it 1.30x as fast as process mode"],
            not_reasons: &["executors"],
        },
        Case {
            name: "a single worker: sub-interpreter when it is clearly faster",
            workers: 1,
            modes: &[(P, Rate(100.0)), (T, Rate(60.0)), (S, Rate(130.0))],
            blocker: None,
            advised: S,
            reasons: &["sub-interpreter runs it 1.30x as fast as process mode"],
            not_reasons: &["executors"],
        },
        // The run-to-run spread: modes within it of each other get the safer
        // mode, and the advice says why.
        Case {
            name: "sub-interpreter 1.18x as fast as process, within a 20 % spread: process",
            workers: 2,
            modes: &[
                (P, Noisy(150.0, 0.02)),
                (T, Noisy(90.0, 0.02)),
                (S, Noisy(177.0, 0.2)),
            ],
            blocker: None,
            advised: P,
            reasons: &["sub-interpreter and process are within the run-to-run spread (20 %) of each other: process, which isolates the host from crashes in the UDF"],
            not_reasons: &["clearly faster"],
        },
        Case {
            name: "sub-interpreter 1.18x as fast as process, both quiet (2 %): sub-interpreter",
            workers: 2,
            modes: &[
                (P, Noisy(150.0, 0.02)),
                (T, Noisy(90.0, 0.02)),
                (S, Noisy(177.0, 0.02)),
            ],
            blocker: None,
            advised: S,
            reasons: &["sub-interpreters run it 1.18x as fast as processes, clearly faster"],
            not_reasons: &["spread"],
        },
        Case {
            name: "without a measured spread, 8 % apart is within the assumed 10 %",
            workers: 1,
            modes: &[(P, Rate(100.0)), (T, Rate(80.0)), (S, Rate(108.0))],
            blocker: None,
            advised: P,
            reasons: &["sub-interpreter and process are within the run-to-run spread (10 %) of each other"],
            not_reasons: &[],
        },
        Case {
            name: "a parallel mode within the spread of multi-thread is no measured gain",
            workers: 2,
            modes: &[
                (P, Noisy(100.0, 0.15)),
                (T, Noisy(112.0, 0.15)),
                (S, Noisy(101.0, 0.15)),
            ],
            blocker: None,
            advised: P,
            reasons: &[
                "with 2 executors, the best parallel mode and multi-thread (one GIL) are within the run-to-run spread (15 %) of each other: no measured gain from parallelism",
                "multi-thread and process are within the run-to-run spread (15 %)",
            ],
            not_reasons: &["gains from parallel interpreters"],
        },
        Case {
            name: "a cheap UDF 1.20x as fast in multi-thread, within a 25 % spread: process",
            workers: 2,
            modes: &[
                (P, Noisy(10.0e6, 0.25)),
                (T, Noisy(12.0e6, 0.05)),
                (S, Noisy(11.0e6, 0.05)),
            ],
            blocker: None,
            advised: P,
            reasons: &["multi-thread and process are within the run-to-run spread (25 %) of each other"],
            not_reasons: &["as fast as process mode"],
        },
        Case {
            name: "two in-process modes within the spread of each other: multi-thread",
            workers: 1,
            modes: &[
                (P, Noisy(100.0, 0.05)),
                (T, Noisy(140.0, 0.05)),
                (S, Noisy(145.0, 0.05)),
            ],
            blocker: None,
            advised: T,
            reasons: &["multi-thread runs it 1.40x as fast as process mode"],
            not_reasons: &[],
        },
        Case {
            name: "quiet modes 5 % apart are not within the spread, and not clearly apart",
            workers: 1,
            modes: &[
                (P, Noisy(100.0, 0.01)),
                (T, Noisy(80.0, 0.01)),
                (S, Noisy(105.0, 0.01)),
            ],
            blocker: None,
            advised: P,
            reasons: &["no in-process mode is clearly faster"],
            not_reasons: &["spread"],
        },
    ];

    fn results(modes: &[(ExecutionMode, Outcome)]) -> Vec<ModeResult> {
        modes
            .iter()
            .map(|&(mode, outcome)| match outcome {
                Rate(r) => ModeResult::measured(mode, mode, r),
                Noisy(r, spread) => ModeResult {
                    spread: Some(spread),
                    ..ModeResult::measured(mode, mode, r)
                },
                RanAs(ran_as, r) => ModeResult::measured(mode, ran_as, r),
                Failed => ModeResult::failed(mode, "it failed".into()),
            })
            .collect()
    }

    #[test]
    fn on_a_free_threaded_cpython_the_advice_knows_whether_threads_run_in_parallel() {
        let advise_ft = |modes: &[(ExecutionMode, Outcome)], gil: Option<&str>| {
            advise(&Facts {
                workers: 2,
                direct: DIRECT,
                modes: &results(modes),
                blocker: None,
                free_threaded: true,
                gil,
            })
        };
        let said = |a: &Advice, text: &str| a.reasons.iter().any(|r| r.contains(text));
        // The GIL stayed off: two threads at 1.9x process mode's rate are
        // parallel Python, advised for their speed, with no "one GIL".
        let a = advise_ft(
            &[(P, Rate(100.0)), (T, Rate(190.0)), (S, Rate(120.0))],
            None,
        );
        assert_eq!(a.mode, T, "{:?}", a.reasons);
        assert!(said(&a, "the GIL stayed off"), "{:?}", a.reasons);
        assert!(
            said(&a, "multi-thread runs it 1.90x as fast as process mode"),
            "{:?}",
            a.reasons
        );
        assert!(!said(&a, "one GIL"), "{:?}", a.reasons);
        // Threads and processes alike: process mode's isolation is free.
        let a = advise_ft(
            &[(P, Rate(190.0)), (T, Rate(195.0)), (S, Rate(150.0))],
            None,
        );
        assert_eq!(a.mode, P, "{:?}", a.reasons);
        // An extension turned the GIL back on: multi-thread is one GIL
        // again, the parallel modes gain on it, and the module is named.
        let a = advise_ft(
            &[(P, Rate(190.0)), (T, Rate(100.0)), (S, Rate(185.0))],
            Some("legacy_ext"),
        );
        assert_eq!(a.mode, P, "{:?}", a.reasons);
        assert!(
            said(&a, "importing legacy_ext turned the GIL back on"),
            "{:?}",
            a.reasons
        );
        assert!(
            said(&a, "gains from parallel interpreters"),
            "{:?}",
            a.reasons
        );
        // ... and never multi-thread for parallelism while the GIL is on.
        let a = advise_ft(&[(P, Rate(150.0)), (T, Rate(100.0))], Some(""));
        assert_ne!(a.mode, T, "{:?}", a.reasons);
    }

    #[test]
    fn advice_follows_the_rules_for_every_case() {
        for case in CASES {
            let modes = results(case.modes);
            let advice = advise(&Facts {
                workers: case.workers,
                direct: DIRECT,
                modes: &modes,
                blocker: case.blocker,
                free_threaded: false,
                gil: None,
            });
            let name = case.name;
            assert_eq!(advice.mode, case.advised, "{name}: {:?}", advice.reasons);
            for want in case.reasons {
                assert!(
                    advice.reasons.iter().any(|r| r.contains(want)),
                    "{name}: no reason says {want:?}: {:?}",
                    advice.reasons
                );
            }
            for unwanted in case.not_reasons {
                assert!(
                    !advice.reasons.iter().any(|r| r.contains(unwanted)),
                    "{name}: a reason says {unwanted:?}: {:?}",
                    advice.reasons
                );
            }
        }
    }

    #[test]
    fn three_runs_within_the_spread_give_the_same_advice() {
        // The three runs of one command advised sub-interpreter,
        // sub-interpreter, process: the two modes 1.12-1.17x apart, the
        // runs 20 % apart.
        for sub in [176.0, 174.0, 168.0] {
            let modes = results(&[
                (P, Noisy(150.0, 0.2)),
                (T, Noisy(90.0, 0.2)),
                (S, Noisy(sub, 0.2)),
            ]);
            let advice = advise(&Facts {
                workers: 2,
                direct: DIRECT,
                modes: &modes,
                blocker: None,
                free_threaded: false,
                gil: None,
            });
            assert_eq!(
                advice.mode, P,
                "sub-interpreter at {sub}: {:?}",
                advice.reasons
            );
            assert!(
                advice
                    .reasons
                    .iter()
                    .any(|r| r.contains("within the run-to-run spread (20 %)")),
                "{:?}",
                advice.reasons
            );
        }
    }

    #[test]
    fn each_mode_is_stated_against_the_udf_alone_and_per_executor() {
        let mut process = ModeResult::measured(P, P, 1900.0);
        process.metrics.python = std::time::Duration::from_millis(90);
        process.metrics.transport = std::time::Duration::from_millis(10);
        let one = measured(&process, 1000.0, 1);
        assert_eq!(
            one,
            "process: 1900 rows/s, 1.90x the UDF called alone on one thread, 90 % of the measured time in Python"
        );
        let two = measured(&process, 1000.0, 2);
        assert_eq!(
            two,
            "process: 1900 rows/s, 1.90x the UDF called alone on one thread (2 executors: 0.95x each), 90 % of the measured time in Python"
        );
    }

    #[test]
    fn a_mode_that_fell_back_or_failed_is_never_advised() {
        // However fast its numbers say it is, with one and two workers.
        for workers in [1, 2] {
            for broken in [T, S] {
                for outcome in [RanAs(P, 1.0e9), Failed] {
                    let modes: Vec<_> = [P, T, S]
                        .into_iter()
                        .map(|m| {
                            if m == broken {
                                (m, outcome)
                            } else {
                                (m, Rate(100.0))
                            }
                        })
                        .collect();
                    let modes = results(&modes);
                    let advice = advise(&Facts {
                        workers,
                        direct: DIRECT,
                        modes: &modes,
                        blocker: None,
                        free_threaded: false,
                        gil: None,
                    });
                    assert_ne!(
                        advice.mode, broken,
                        "{broken} {outcome:?}, {workers} workers"
                    );
                }
            }
        }
    }
}
