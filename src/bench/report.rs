//! The report: what was measured and the advice, as a table for the
//! terminal, as JSON, and as an SVG bar chart of rows per second.
//!
//! Every ratio in it is a mode's rows/s over the direct call's: the UDF
//! alone on one thread, without ring or codec (the floor). A mode with N
//! executors can reach N times the floor when the UDF is what costs; one
//! GIL (multi-thread) keeps it at most 1. The serial run (the executor with
//! its codec on one thread) is shown as a labelled reference, never used as
//! a denominator.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{Advice, Direct, ModeResult};

/// Everything `coil bench` measured, and its advice.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Rows in the input.
    pub rows: usize,
    /// Rows per batch.
    pub bundle: usize,
    /// Executors per mode.
    pub workers: usize,
    /// The direct run: the floor, and the serial reference.
    pub direct: Direct,
    /// Per mode, in the order asked.
    pub modes: Vec<ModeResult>,
    /// A module the UDF imports that cannot load in a sub-interpreter.
    pub subinterpreter_blocker: Option<String>,
    /// Whether the embedded CPython is free-threaded.
    pub free_threaded: bool,
    /// On a free-threaded CPython: the module whose import turned the GIL
    /// back on ("" if unknown), `None` while it stayed off.
    pub gil_enabled_by: Option<String>,
    /// The recommendation and its reasons.
    pub advice: Advice,
    /// For an async UDF: rows/s by concurrency, and the one advised.
    pub concurrency: Option<super::ConcurrencyAdvice>,
}

impl BenchReport {
    /// The report as a table, with the advice at the end.
    pub fn table(&self) -> String {
        let floor = self.direct.udf_rows_per_sec;
        let mut s = format!(
            "coil bench: {} rows, batches of {}, {} executor{} per mode\n\n",
            self.rows,
            self.bundle,
            self.workers,
            if self.workers == 1 { "" } else { "s" }
        );
        if self.free_threaded {
            s += &match &self.gil_enabled_by {
                None => "free-threaded CPython: the GIL stayed off, multi-thread executors ran in parallel\n\n".to_string(),
                Some(m) => format!("free-threaded CPython, but {}\n\n", coil_worker::gil_message(m, "")),
            };
        }
        s += &format!(
            "{:<16} {:>12} {:>8} {:>6} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
            "mode",
            "rows/s",
            "x direct",
            "spread",
            "batch p50",
            "batch p99",
            "codec",
            "transport",
            "python"
        );
        s += &format!(
            "{:<16} {:>12.0} {:>8} {:>6} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
            "direct", floor, "1.00", "-", "-", "-", "-", "-", "-"
        );
        s += &format!(
            "{:<16} {:>12.0} {:>8.2} {:>6} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
            "(serial+codec)",
            self.direct.serial_rows_per_sec,
            self.direct.serial_rows_per_sec / floor,
            "-",
            "-",
            "-",
            "-",
            "-",
            "-"
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
            let spread = r
                .spread
                .map_or("-".to_string(), |x| format!("{:.0} %", 100.0 * x));
            s += &format!(
                "{:<16} {:>12.0} {:>8.2} {:>6} {:>11} {:>11} {:>10} {:>10} {:>10}\n",
                name,
                r.rows_per_sec,
                r.rows_per_sec / floor,
                spread,
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
        s += &format!(
            "\n\
             direct: the UDF alone, called on this thread (the executor's own clock, without making its\n\
             arguments and taking its results apart): the floor. x direct: rows/s over the direct call's;\n\
             with {n} executor{p} a mode can reach {n}.00 when the UDF is what costs ({thread}).\n\
             (serial+codec): the same executor with its codec, one batch after another on this thread: a\n\
             reference, not a floor (every mode overlaps the host's codec with the executor's work).\n\
             spread: how far below the best timed run the median one was (- under {min} runs).\n\
             codec, transport and python are per row (encode and decode on both sides; rings and waiting; the UDF).\n",
            n = self.workers,
            p = if self.workers == 1 { "" } else { "s" },
            min = super::MIN_RUNS_FOR_SPREAD,
            thread = if self.free_threaded && self.gil_enabled_by.is_none() {
                "multi-thread too: its threads share no GIL"
            } else {
                "multi-thread, one GIL: 1.00"
            },
        );
        s += &format!("\nAdvice: use {}\n", self.advice.mode);
        for reason in &self.advice.reasons {
            s += &format!("  - {reason}\n");
        }
        if let Some(c) = &self.concurrency {
            let tried: Vec<String> = c
                .tried
                .iter()
                .map(|(n, rate)| format!("{n}: {rate:.0}"))
                .collect();
            s += &format!(
                "\nAsync: rows/s in {} mode by python.fn-execution.async.max-concurrency: {}\n\
                 Advice: set python.fn-execution.async.max-concurrency={} (the smallest within 5 % of the fastest)\n",
                self.advice.mode,
                tried.join(", "),
                c.best
            );
        }
        s
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ns = |d: Duration| d.as_nanos() as u64;
        json!({
            "rows": self.rows,
            "bundle_size": self.bundle,
            "workers": self.workers,
            "direct_rows_per_sec": self.direct.udf_rows_per_sec,
            "serial_rows_per_sec": self.direct.serial_rows_per_sec,
            "subinterpreter_blocker": self.subinterpreter_blocker,
            "free_threaded": self.free_threaded,
            "gil_enabled_by": self.gil_enabled_by,
            "concurrency": self.concurrency.as_ref().map(|c| json!({
                "tried": c.tried.iter().map(|(n, r)| json!({"max_concurrency": n, "rows_per_sec": r})).collect::<Vec<_>>(),
                "advised": c.best,
            })),
            "modes": self.modes.iter().map(|r| json!({
                "mode": r.requested.as_str(),
                "ran_as": r.ran_as.as_str(),
                "fallback": r.fallback,
                "failed": r.failed,
                "rows_per_sec": r.rows_per_sec,
                "vs_direct": r.rows_per_sec / self.direct.udf_rows_per_sec,
                "spread": r.spread,
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
        let mut bars = vec![("direct".to_string(), self.direct.udf_rows_per_sec)];
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
    use coil_host::ExecutionMode;

    use super::*;
    use crate::bench::advice::{advise, Facts};
    use ExecutionMode::{MultiThread as T, Process as P, SubInterpreter as S};

    const DIRECT: Direct = Direct {
        udf_rows_per_sec: 95.0,
        serial_rows_per_sec: 57.0,
    };

    fn report(modes: Vec<ModeResult>, blocker: Option<&str>) -> BenchReport {
        let advice = advise(&Facts {
            workers: 2,
            direct: DIRECT,
            modes: &modes,
            blocker,
            free_threaded: false,
            gil: None,
        });
        BenchReport {
            rows: 10,
            bundle: 1,
            workers: 2,
            direct: DIRECT,
            modes,
            subinterpreter_blocker: blocker.map(String::from),
            free_threaded: false,
            gil_enabled_by: None,
            advice,
            concurrency: None,
        }
    }

    #[test]
    fn a_mode_that_cannot_run_the_udf_is_reported_and_never_advised() {
        let report = report(
            vec![
                ModeResult::measured(P, P, 100.0),
                ModeResult::measured(T, T, 90.0),
                ModeResult::failed(S, "the UDF crashed the interpreter".into()),
            ],
            None,
        );
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

    #[test]
    fn a_fallback_is_marked_in_the_table_and_named_in_the_json() {
        let mut fell_back = ModeResult::measured(S, P, 99.0);
        fell_back.fallback = Some("imports numpy, which cannot load in a sub-interpreter".into());
        let report = report(
            vec![
                ModeResult::measured(P, P, 100.0),
                ModeResult::measured(T, T, 90.0),
                fell_back,
            ],
            Some("numpy"),
        );
        let table = report.table();
        assert!(table.contains("sub-interpreter*"), "{table}");
        assert!(
            table.contains(
                "* sub-interpreter ran as process: imports numpy, which cannot load in a sub-interpreter"
            ),
            "{table}"
        );
        assert!(table.contains("\nAdvice: use process\n"), "{table}");
        let json = report.to_json();
        assert_eq!(json["subinterpreter_blocker"], "numpy");
        assert_eq!(json["modes"][2]["ran_as"], "process");
        assert_eq!(json["advice"]["mode"], "process");
    }

    /// The table's line for `name`, split on whitespace.
    fn line<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{table}"))
            .split_whitespace()
            .collect()
    }

    #[test]
    fn every_ratio_is_over_the_udf_alone_and_the_serial_run_is_only_a_reference() {
        // Two executors: process 2.00x the UDF alone (both busy with it),
        // multi-thread 0.95x (one GIL), the serial codec + executor 0.60x.
        let mut process = ModeResult::measured(P, P, 190.0);
        process.spread = Some(0.04);
        let report = report(vec![process, ModeResult::measured(T, T, 90.25)], None);
        let table = report.table();
        assert!(
            table.starts_with("coil bench: 10 rows, batches of 1, 2 executors per mode\n"),
            "{table}"
        );
        assert_eq!(line(&table, "direct")[1..3], ["95", "1.00"], "{table}");
        assert_eq!(
            line(&table, "(serial+codec)")[1..3],
            ["57", "0.60"],
            "{table}"
        );
        assert_eq!(line(&table, "process")[1..5], ["190", "2.00", "4", "%"]);
        assert_eq!(line(&table, "multi-thread")[1..4], ["90", "0.95", "-"]);
        for says in [
            "direct: the UDF alone, called on this thread",
            "with 2 executors a mode can reach 2.00 when the UDF is what costs",
            "a\nreference, not a floor",
        ] {
            assert!(table.contains(says), "{says:?} missing:\n{table}");
        }
        assert!(
            report.advice.reasons.iter().any(|r| r
                == "process: 190 rows/s, 2.00x the UDF called alone on one thread (2 executors: 1.00x each), 0 % of the measured time in Python"),
            "{:?}",
            report.advice.reasons
        );
        let json = report.to_json();
        assert_eq!(json["direct_rows_per_sec"], 95.0);
        assert_eq!(json["serial_rows_per_sec"], 57.0);
        assert_eq!(json["workers"], 2);
        assert_eq!(json["modes"][0]["vs_direct"], 2.0);
        assert_eq!(json["modes"][0]["spread"], 0.04);
        assert!(json["modes"][1]["spread"].is_null());
    }
}
