//! The report: what was measured and the advice, as a table for the
//! terminal, as JSON, and as an SVG bar chart of rows per second.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{Advice, ModeResult};

/// Everything `coil bench` measured, and its advice.
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
    use coil_host::ExecutionMode;

    use super::*;
    use crate::bench::advice::{advise, Facts};
    use ExecutionMode::{MultiThread as T, Process as P, SubInterpreter as S};

    fn report(modes: Vec<ModeResult>, blocker: Option<&str>) -> BenchReport {
        let advice = advise(&Facts {
            workers: 2,
            direct_rows_per_sec: 95.0,
            modes: &modes,
            blocker,
        });
        BenchReport {
            rows: 10,
            bundle: 1,
            direct_rows_per_sec: 95.0,
            modes,
            subinterpreter_blocker: blocker.map(String::from),
            advice,
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
}
