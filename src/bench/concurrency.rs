//! For an async UDF, `coil bench` also measures how many rows in flight
//! serve it best: the advised mode at a few values of
//! `python.fn-execution.async.max-concurrency` around the configured one,
//! the smallest within 5 % of the fastest advised (fewer connections to
//! whatever the UDF calls, the same speed).

use std::time::Instant;

use coil_host::{ExecutionMode, Runner};

use super::measure::{BenchInput, BenchPlan, Results};

/// Rows per second at each concurrency tried, and the one advised.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrencyAdvice {
    /// `(concurrency, rows/s)`, smallest concurrency first.
    pub tried: Vec<(u32, f64)>,
    /// The concurrency advised.
    pub best: u32,
}

/// A fastest run counts as no faster than one within this fraction of it.
const WITHIN: f64 = 0.05;

/// The smallest concurrency whose rate is within [`WITHIN`] of the best.
pub(crate) fn advise(tried: &[(u32, f64)]) -> Option<u32> {
    let top = tried.iter().map(|t| t.1).fold(0.0, f64::max);
    tried
        .iter()
        .filter(|t| t.1 >= top * (1.0 - WITHIN))
        .map(|t| t.0)
        .min()
}

/// The concurrencies to try around `c`: a quarter of it to four times it.
fn candidates(c: u32) -> Vec<u32> {
    let mut v: Vec<u32> = [c / 4, c / 2, c, c.saturating_mul(2), c.saturating_mul(4)]
        .into_iter()
        .filter(|&n| n >= 1)
        .collect();
    v.dedup();
    v
}

/// Measures `plan`'s UDF in `mode` at a few concurrencies, if it is async
/// (`None` for a sync UDF).
///
/// # Errors
///
/// A runner that does not start or run.
pub(crate) fn measure(
    plan: &BenchPlan,
    input: &BenchInput,
    mode: ExecutionMode,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Option<ConcurrencyAdvice>> {
    let configured = plan.config.call_policy().concurrency();
    let mut tried = Vec::new();
    for c in candidates(configured) {
        let mut config = plan.config.clone();
        config.set(coil_host::EXECUTION_MODE, mode.as_str())?;
        config.set(coil_host::ASYNC_MAX_CONCURRENCY, &c.to_string())?;
        // Batches of at least twice the rows in flight, as a runner sizes
        // them for an async UDF.
        let bundle = plan.config.bundle_size().max(2 * c as usize);
        config.set(coil_host::BUNDLE_SIZE, &bundle.to_string())?;
        let runner =
            match Runner::with_worker_command(&config, plan.spec.clone(), plan.worker.clone()) {
                Ok(r) => r,
                // A sync UDF is refused the key: nothing to advise.
                Err(e) if e.to_string().contains("is not async") => return Ok(None),
                Err(e) => return Err(e.into()),
            };
        Results::of(&runner, input)?;
        let mut best = f64::INFINITY;
        for _ in 0..plan.repeat.max(1) {
            let start = Instant::now();
            Results::of(&runner, input)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        tried.push((c, input.rows() as f64 / best));
        progress(&format!("concurrency {c}"));
    }
    Ok(advise(&tried).map(|best| ConcurrencyAdvice { tried, best }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_concurrency_within_five_percent_of_the_fastest_is_advised() {
        assert_eq!(candidates(64), [16, 32, 64, 128, 256]);
        assert_eq!(candidates(2), [1, 2, 4, 8]);
        let tried = [
            (16, 900.0),
            (32, 1800.0),
            (64, 3400.0),
            (128, 3500.0),
            (256, 3300.0),
        ];
        assert_eq!(advise(&tried), Some(64));
        let tried = [(16, 900.0), (32, 1800.0), (64, 3000.0), (128, 3500.0)];
        assert_eq!(advise(&tried), Some(128));
        assert_eq!(advise(&[]), None);
    }
}
