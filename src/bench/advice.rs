//! Advice: which mode to use, and why, from the measured numbers alone.
//!
//! Every rule here is a pure function of what `measure` found (rows per
//! second per mode, which modes fell back or failed, the module that keeps
//! the UDF out of sub-interpreters), so the rules are tested with tables of
//! made-up measurements rather than with timed runs.
//!
//! The rules, in order (the same for every kind of UDF):
//!
//! 1. A mode that fell back or failed has no numbers of its own and is never
//!    advised; with a blocker module, sub-interpreter mode never is.
//! 2. With more than one executor, a CPU-bound UDF gains from parallelism
//!    when the best parallel mode (process or sub-interpreter) runs it at
//!    least [`PARALLEL_GAIN`] times as fast as multi-thread (one GIL). Then
//!    process mode, unless sub-interpreters are more than
//!    [`IN_PROCESS_GAIN`] times as fast.
//! 3. Otherwise process mode, unless an in-process mode is more than
//!    [`IN_PROCESS_GAIN`] times as fast: its isolation costs nothing.

use coil_host::ExecutionMode;

use super::ModeResult;

/// A parallel mode must beat `multi-thread` by this much to count as a gain.
const PARALLEL_GAIN: f64 = 1.3;
/// An in-process mode must beat `process` by this much to be worth its risk.
const IN_PROCESS_GAIN: f64 = 1.15;

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
    /// Rows per second calling the executor directly on the calling thread.
    pub(crate) direct_rows_per_sec: f64,
    /// Per mode, in the order asked.
    pub(crate) modes: &'a [ModeResult],
    /// A module the UDF imports that cannot load in a sub-interpreter.
    pub(crate) blocker: Option<&'a str>,
}

/// Rows per second of each mode that was measured as asked; `None` for a
/// mode not asked for, fallen back or failed.
#[derive(Debug, Clone, Copy)]
struct Rates {
    process: Option<f64>,
    thread: Option<f64>,
    sub: Option<f64>,
}

impl Rates {
    fn of(facts: &Facts<'_>) -> Rates {
        let rate = |m: ExecutionMode| {
            facts
                .modes
                .iter()
                .find(|r| r.requested == m && r.ran_as_asked())
                .map(|r| r.rows_per_sec)
        };
        Rates {
            process: rate(ExecutionMode::Process),
            thread: rate(ExecutionMode::MultiThread),
            // A blocker means sub-interpreter mode cannot run the UDF as
            // itself, whatever numbers it has.
            sub: rate(ExecutionMode::SubInterpreter).filter(|_| facts.blocker.is_none()),
        }
    }

    /// How many times as fast as multi-thread the best parallel mode runs,
    /// when there is more than one executor to run in parallel.
    fn parallel_gain(&self, workers: usize) -> Option<f64> {
        let parallel = [self.sub, self.process]
            .into_iter()
            .flatten()
            .fold(None::<f64>, |a, b| Some(a.map_or(b, |a| a.max(b))));
        match (parallel, self.thread) {
            (Some(p), Some(t)) if workers > 1 => Some(p / t),
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
        reasons.push(measured(r, facts.direct_rows_per_sec));
    }
    let rates = Rates::of(facts);
    let gains = match rates.parallel_gain(facts.workers) {
        Some(g) => {
            reasons.push(format!(
                "with {} executors, the best parallel mode runs {g:.2}x as fast as multi-thread (one GIL): {}",
                facts.workers,
                if g >= PARALLEL_GAIN { "the UDF gains from parallel interpreters" } else { "no real gain from parallelism" }
            ));
            g >= PARALLEL_GAIN
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

/// One mode's numbers as a sentence: rows/s, against the direct call, and
/// the share of the time spent in Python.
fn measured(r: &ModeResult, direct: f64) -> String {
    let python = r.metrics.python.as_secs_f64();
    let total =
        (python + r.metrics.codec().as_secs_f64() + r.metrics.transport.as_secs_f64()).max(1e-12);
    format!(
        "{}: {:.0} rows/s ({:.0} % of the direct call), {:.0} % of the measured time in Python",
        r.requested,
        r.rows_per_sec,
        100.0 * r.rows_per_sec / direct,
        100.0 * python / total
    )
}

/// CPU-bound Python, gaining from parallelism: a parallel mode. Isolation
/// wins unless sub-interpreters are clearly faster.
fn parallel_mode(rates: &Rates) -> (ExecutionMode, Option<String>) {
    match (rates.sub, rates.process) {
        (Some(s), Some(p)) if s > p * IN_PROCESS_GAIN => (
            ExecutionMode::SubInterpreter,
            Some("sub-interpreters run it clearly faster than processes; a crash in the UDF would take the host down".into()),
        ),
        (Some(_), None) => (ExecutionMode::SubInterpreter, None),
        _ => (
            ExecutionMode::Process,
            Some("processes run it in parallel as fast, and isolate the host from crashes in the UDF".into()),
        ),
    }
}

/// No gain from parallelism: process mode, unless an in-process mode is
/// clearly faster (or process mode has no numbers).
fn cheapest_safe_mode(rates: &Rates) -> (ExecutionMode, Option<String>) {
    let best_in = [
        (ExecutionMode::MultiThread, rates.thread),
        (ExecutionMode::SubInterpreter, rates.sub),
    ]
    .into_iter()
    .filter_map(|(m, r)| r.map(|r| (m, r)))
    .max_by(|a, b| a.1.total_cmp(&b.1));
    match (best_in, rates.process) {
        (Some((m, r)), Some(p)) if r > p * IN_PROCESS_GAIN => (
            m,
            Some(format!(
                "{m} runs it {:.2}x as fast as process mode; the price is that a crash in the UDF takes the host down",
                r / p
            )),
        ),
        (Some((m, _)), None) => (m, None),
        _ => (
            ExecutionMode::Process,
            Some("no in-process mode is clearly faster, so process mode's isolation costs nothing here".into()),
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
        /// Measured as asked, at this many rows/s.
        Rate(f64),
        /// Fell back to another mode, measured there at this many rows/s.
        RanAs(ExecutionMode, f64),
        /// Could not run the UDF.
        Failed,
    }
    use Outcome::{Failed, RanAs, Rate};

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

    const DIRECT: f64 = 1000.0;

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
            not_reasons: &["sub-interpreters run it clearly faster"],
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
                "processes run it in parallel as fast",
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
            reasons: &["sub-interpreters run it clearly faster than processes"],
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
                "no in-process mode is clearly faster",
                "process: 12000000 rows/s (1200000 % of the direct call), 0 % of the measured time in Python",
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
    ];

    fn results(modes: &[(ExecutionMode, Outcome)]) -> Vec<ModeResult> {
        modes
            .iter()
            .map(|&(mode, outcome)| match outcome {
                Rate(r) => ModeResult::measured(mode, mode, r),
                RanAs(ran_as, r) => ModeResult::measured(mode, ran_as, r),
                Failed => ModeResult::failed(mode, "it failed".into()),
            })
            .collect()
    }

    #[test]
    fn advice_follows_the_rules_for_every_case() {
        for case in CASES {
            let modes = results(case.modes);
            let advice = advise(&Facts {
                workers: case.workers,
                direct_rows_per_sec: DIRECT,
                modes: &modes,
                blocker: case.blocker,
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
                        direct_rows_per_sec: DIRECT,
                        modes: &modes,
                        blocker: None,
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
