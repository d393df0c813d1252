//! How an executor calls its UDF: retries with back-off, how many rows an
//! async UDF keeps in flight, the per-call timeout of an async UDF, and
//! the rate limit all of a UDF's executors share. The host builds it from
//! its configuration; it travels to a worker process on the command line
//! ([`CallPolicy::to_arg`], [`CallPolicy::from_arg`]).

use std::time::Duration;

/// Rows an async UDF's executor keeps in flight unless
/// `python.fn-execution.async.max-concurrency` says otherwise.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;

/// A shared rate limit: `burst` calls at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Time between calls: one over the rate.
    pub interval: Duration,
    /// Calls that may start at once after a pause (at least 1).
    pub burst: u32,
}

/// How an executor calls its UDF.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use coil_proto::CallPolicy;
/// let mut p = CallPolicy::default();
/// assert_eq!(p.max_attempts, 1);
/// p.max_attempts = 3;
/// p.retry_on = vec!["ConnectionError".into()];
/// p.initial_delay = Duration::from_millis(50);
/// assert_eq!(CallPolicy::from_arg(&p.to_arg()), Some(p));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallPolicy {
    /// Calls of one row at most (1: no retry).
    pub max_attempts: u32,
    /// The exception classes a failed call is retried on (names as
    /// `python.fn-execution.retry.on` gives them); `coil.RetryAfter` is
    /// retried whatever this says.
    pub retry_on: Vec<String>,
    /// The delay before the first retry; each next one doubles, up to
    /// `max_delay`, with jitter.
    pub initial_delay: Duration,
    /// The longest delay between two attempts; a `coil.RetryAfter` asking
    /// for more fails the row.
    pub max_delay: Duration,
    /// Rows an async UDF keeps in flight; `None`: the key was not set
    /// ([`DEFAULT_MAX_CONCURRENCY`]), and a sync UDF is not refused for it.
    pub max_concurrency: Option<u32>,
    /// How long one call of an async UDF may take before it is cancelled
    /// (the row fails with a timeout; the worker goes on):
    /// `python.fn-execution.timeout`, which for a sync UDF bounds a batch.
    pub timeout: Option<Duration>,
    /// The rate limit shared by the UDF's executors.
    pub rate: Option<RateLimit>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            max_attempts: 1,
            retry_on: Vec::new(),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
            max_concurrency: None,
            timeout: None,
            rate: None,
        }
    }
}

impl CallPolicy {
    /// Rows an async UDF keeps in flight.
    pub fn concurrency(&self) -> u32 {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }

    /// One command-line word: `key=value` pairs separated by `;`
    /// (durations in microseconds).
    pub fn to_arg(&self) -> String {
        let micros = |d: Duration| d.as_micros().to_string();
        let mut parts = vec![
            format!("attempts={}", self.max_attempts),
            format!("on={}", self.retry_on.join(",")),
            format!("initial={}", micros(self.initial_delay)),
            format!("max={}", micros(self.max_delay)),
        ];
        if let Some(c) = self.max_concurrency {
            parts.push(format!("concurrency={c}"));
        }
        if let Some(t) = self.timeout {
            parts.push(format!("timeout={}", micros(t)));
        }
        if let Some(r) = self.rate {
            parts.push(format!("interval={}", r.interval.as_nanos()));
            parts.push(format!("burst={}", r.burst));
        }
        parts.join(";")
    }

    /// Reads [`CallPolicy::to_arg`]'s word; `None` when it is not one.
    pub fn from_arg(arg: &str) -> Option<CallPolicy> {
        let mut p = CallPolicy::default();
        let mut interval = None;
        let mut burst = 1;
        let micros = |v: &str| v.parse::<u64>().ok().map(Duration::from_micros);
        for part in arg.split(';') {
            let (k, v) = part.split_once('=')?;
            match k {
                "attempts" => p.max_attempts = v.parse().ok().filter(|&n| n >= 1)?,
                "on" => {
                    p.retry_on = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "initial" => p.initial_delay = micros(v)?,
                "max" => p.max_delay = micros(v)?,
                "concurrency" => p.max_concurrency = Some(v.parse().ok().filter(|&n| n >= 1)?),
                "timeout" => p.timeout = Some(micros(v)?),
                "interval" => interval = Some(Duration::from_nanos(v.parse().ok()?)),
                "burst" => burst = v.parse().ok().filter(|&n| n >= 1)?,
                _ => return None,
            }
        }
        p.rate = interval.map(|interval| RateLimit { interval, burst });
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_survives_the_command_line() {
        let p = CallPolicy {
            max_attempts: 5,
            retry_on: vec!["ConnectionError".into(), "httpx.HTTPStatusError".into()],
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
            max_concurrency: Some(16),
            timeout: Some(Duration::from_millis(1500)),
            rate: Some(RateLimit {
                interval: Duration::from_nanos(3_333_333),
                burst: 4,
            }),
        };
        assert_eq!(CallPolicy::from_arg(&p.to_arg()), Some(p));
        let d = CallPolicy::default();
        assert_eq!(CallPolicy::from_arg(&d.to_arg()), Some(d));
        for bad in [
            "attempts=0",
            "concurrency=0",
            "nope=1",
            "initial=-1",
            "burst=0;interval=5",
        ] {
            assert_eq!(CallPolicy::from_arg(bad), None, "{bad}");
        }
    }
}
