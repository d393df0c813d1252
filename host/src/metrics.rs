//! What a runner counts and measures: counters shared by its pools and
//! streams, per-batch histograms, and the `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use coil_proto::Times;

use crate::ExecutionMode;

/// Counters shared by a pool's users.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub restarts: AtomicU64,
    pub batches: AtomicU64,
    pub next_seq: AtomicU64,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub encode_ns: AtomicU64,
    pub decode_ns: AtomicU64,
    pub worker_decode_ns: AtomicU64,
    pub python_ns: AtomicU64,
    pub worker_encode_ns: AtomicU64,
    pub transport_ns: AtomicU64,
    /// The executor's time per row, nanoseconds as `f64` bits, smoothed
    /// over the answered batches (0: nothing measured yet). Sizes batches.
    pub row_cost: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub histograms: Mutex<Histograms>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Per-batch time distributions of a runner, in nanoseconds per batch
/// (HDR histograms, two significant digits, up to an hour).
#[derive(Debug, Clone)]
pub struct Histograms {
    /// From sending a batch to having its results.
    pub latency: hdrhistogram::Histogram<u64>,
    /// Host: encoding the batch.
    pub encode: hdrhistogram::Histogram<u64>,
    /// Host: decoding its results.
    pub decode: hdrhistogram::Histogram<u64>,
    /// Executor: decoding rows into Python objects.
    pub executor_decode: hdrhistogram::Histogram<u64>,
    /// Executor: calling the UDF.
    pub python: hdrhistogram::Histogram<u64>,
    /// Executor: encoding results.
    pub executor_encode: hdrhistogram::Histogram<u64>,
    /// Rings, wake-ups and waiting.
    pub transport: hdrhistogram::Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        let h = || {
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid bounds")
        };
        Histograms {
            latency: h(),
            encode: h(),
            decode: h(),
            executor_decode: h(),
            python: h(),
            executor_encode: h(),
            transport: h(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().clamp(1, 3_600_000_000_000) as u64
}

/// One answered batch, as the runner's metrics record it.
pub(crate) struct BatchRecord {
    pub rows: u64,
    pub latency: Duration,
    pub decode: Duration,
    pub times: Times,
    pub transport: Duration,
}

impl Counters {
    /// Counts an answered batch: the counters, the histograms, and the
    /// `metrics` facade (a no-op unless the host installed a recorder).
    pub fn record_batch(&self, mode: ExecutionMode, b: &BatchRecord) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if b.rows > 0 {
            let executor = b.times.decode + b.times.python + b.times.encode;
            let cost = executor.as_nanos() as f64 / b.rows as f64;
            // Exponential smoothing: half the weight on the newest batch.
            // Racing updates from several streams may lose one sample; the
            // estimate stays a plausible cost either way.
            let old = f64::from_bits(self.row_cost.load(Ordering::Relaxed));
            let new = if old > 0.0 { (old + cost) / 2.0 } else { cost };
            self.row_cost
                .store(new.max(1.0).to_bits(), Ordering::Relaxed);
        }
        self.rows_out.fetch_add(b.rows, Ordering::Relaxed);
        Counters::add(&self.decode_ns, b.decode);
        Counters::add(&self.worker_decode_ns, b.times.decode);
        Counters::add(&self.python_ns, b.times.python);
        Counters::add(&self.worker_encode_ns, b.times.encode);
        Counters::add(&self.transport_ns, b.transport);
        {
            let mut h = self.histograms.lock().expect("histograms lock");
            let _ = h.latency.record(nanos(b.latency));
            let _ = h.decode.record(nanos(b.decode));
            let _ = h.executor_decode.record(nanos(b.times.decode));
            let _ = h.python.record(nanos(b.times.python));
            let _ = h.executor_encode.record(nanos(b.times.encode));
            let _ = h.transport.record(nanos(b.transport));
        }
        let m = mode.as_str();
        metrics::counter!("coil_rows_out_total", "mode" => m).increment(b.rows);
        metrics::counter!("coil_batches_total", "mode" => m).increment(1);
        for (part, d) in [
            ("latency", b.latency),
            ("decode", b.decode),
            ("executor_decode", b.times.decode),
            ("python", b.times.python),
            ("executor_encode", b.times.encode),
            ("transport", b.transport),
        ] {
            metrics::histogram!("coil_batch_seconds", "mode" => m, "part" => part)
                .record(d.as_secs_f64());
        }
    }

    /// The executor's measured time per row, if any batch was answered.
    pub fn row_cost(&self) -> Option<Duration> {
        let ns = f64::from_bits(self.row_cost.load(Ordering::Relaxed));
        (ns > 0.0).then(|| Duration::from_secs_f64(ns / 1e9))
    }

    /// Counts a batch sent: its rows and the time to encode it.
    pub fn record_sent(&self, mode: ExecutionMode, rows: u64, encode: Duration) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        Counters::add(&self.encode_ns, encode);
        let _ = self
            .histograms
            .lock()
            .expect("histograms lock")
            .encode
            .record(nanos(encode));
        let m = mode.as_str();
        metrics::counter!("coil_rows_in_total", "mode" => m).increment(rows);
        metrics::histogram!("coil_batch_seconds", "mode" => m, "part" => "encode")
            .record(encode.as_secs_f64());
    }

    /// Adds host encoding time spent when a batch is sent (a column
    /// batch's frame is written for the executor it goes to), to the
    /// encode total [`Counters::record_sent`] started.
    pub fn record_encode(&self, encode: Duration) {
        Counters::add(&self.encode_ns, encode);
    }

    /// Counts calls of the UDF (`attempts`), `retries` of them retries.
    pub fn record_attempts(&self, attempts: u64, retries: u64) {
        if attempts == 0 && retries == 0 {
            return;
        }
        self.attempts.fetch_add(attempts, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
        metrics::counter!("coil_udf_attempts_total").increment(attempts);
        metrics::counter!("coil_udf_retries_total").increment(retries);
    }

    /// Counts a failed batch.
    pub fn record_error(&self, mode: ExecutionMode, timeout: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("coil_errors_total", "mode" => mode.as_str()).increment(1);
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("coil_timeouts_total", "mode" => mode.as_str()).increment(1);
        }
    }
}

/// Counts and times of a runner since it started (see [`Runner::metrics`](crate::Runner::metrics)).
///
/// Times are summed over batches, measured in the code: on the host,
/// encoding batches and decoding answers; in the executor, decoding rows into
/// Python objects, calling the UDF, and encoding results; `transport` is
/// the rest of each batch's round trip, from the moment it started running
/// until its answer was read: the rings, wake-ups and waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Rows sent.
    pub rows_in: u64,
    /// Results received.
    pub rows_out: u64,
    /// Batches answered with results.
    pub batches: u64,
    /// Batches that failed (UDF errors, bad rows, dead or hung workers...).
    pub errors: u64,
    /// Batches that ran past the timeout.
    pub timeouts: u64,
    /// Workers replaced.
    pub worker_restarts: u64,
    /// Calls of the UDF, retries included, where the executors count them:
    /// with retries or a rate limit configured, and for async UDFs
    /// (otherwise 0: each row is one call).
    pub attempts: u64,
    /// Calls that were retries (`python.fn-execution.retry.*`).
    pub retries: u64,
    /// Host: encoding rows.
    pub encode: Duration,
    /// Host: decoding results.
    pub decode: Duration,
    /// Executor: decoding rows into Python objects.
    pub worker_decode: Duration,
    /// Executor: calling the UDF.
    pub python: Duration,
    /// Executor: encoding results.
    pub worker_encode: Duration,
    /// Rings, wake-ups and waiting.
    pub transport: Duration,
}

impl Metrics {
    /// What happened between `earlier` (a snapshot of the same runner) and
    /// this snapshot.
    pub fn since(&self, earlier: &Metrics) -> Metrics {
        Metrics {
            rows_in: self.rows_in.saturating_sub(earlier.rows_in),
            rows_out: self.rows_out.saturating_sub(earlier.rows_out),
            batches: self.batches.saturating_sub(earlier.batches),
            errors: self.errors.saturating_sub(earlier.errors),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            worker_restarts: self.worker_restarts.saturating_sub(earlier.worker_restarts),
            attempts: self.attempts.saturating_sub(earlier.attempts),
            retries: self.retries.saturating_sub(earlier.retries),
            encode: self.encode.saturating_sub(earlier.encode),
            decode: self.decode.saturating_sub(earlier.decode),
            worker_decode: self.worker_decode.saturating_sub(earlier.worker_decode),
            python: self.python.saturating_sub(earlier.python),
            worker_encode: self.worker_encode.saturating_sub(earlier.worker_encode),
            transport: self.transport.saturating_sub(earlier.transport),
        }
    }

    /// Encoding and decoding, on both sides.
    pub fn codec(&self) -> Duration {
        self.encode + self.decode + self.worker_decode + self.worker_encode
    }
}
