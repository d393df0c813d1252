//! The pool: a runner's executors (worker processes or executor threads),
//! leased to streams one at a time and given back when they are done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::{RunError, StartError};
use crate::link::{Link, Spawn};
use crate::metrics::Counters;
use crate::ExecutionMode;

/// One worker slot: a running worker, or a vacancy (after a failed
/// restart, or after its worker sat idle past `python.worker.idle-timeout`):
/// a vacant slot starts a worker when it is next leased.
pub(crate) struct Slot {
    id: usize,
    worker: Option<Link>,
    /// Since when it is idle.
    since: Instant,
}

/// The idle slots, shared with the thread that ends idle workers.
struct Shared {
    idle: Mutex<Vec<Slot>>,
    returned: Condvar,
}

/// Every pool's idle slots, for ending the longest-idle worker of any UDF
/// when `python.worker.max-processes` is reached.
static POOLS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Ends the worker process idle the longest across every pool; whether
/// there was one.
fn end_longest_idle() -> bool {
    let pools: Vec<Arc<Shared>> = {
        let mut all = POOLS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|p| p.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let is_process = |s: &Slot| s.worker.as_ref().is_some_and(|w| w.pid().is_some());
    let mut oldest: Option<(usize, Instant)> = None;
    for (i, pool) in pools.iter().enumerate() {
        let idle = pool.idle.lock().expect("pool lock");
        for slot in idle.iter().filter(|s| is_process(s)) {
            if oldest.is_none_or(|(_, since)| slot.since < since) {
                oldest = Some((i, slot.since));
            }
        }
    }
    let Some((i, since)) = oldest else {
        return false;
    };
    let worker = {
        let mut idle = pools[i].idle.lock().expect("pool lock");
        idle.iter_mut()
            .find(|s| s.since == since && is_process(s))
            .and_then(|s| s.worker.take())
    };
    if let Some(w) = worker {
        tracing::debug!("ending the longest-idle worker: python.worker.max-processes reached");
        w.shutdown();
    }
    // Taken meanwhile or ended: either way, look again.
    true
}

/// Starts executor `slot`, a worker process holding a ticket
/// ([`crate::capacity::ticket`]) under `python.worker.max-processes`, or a
/// thread.
fn start_one(slot: usize, spawn: &Spawn) -> Result<Link, StartError> {
    let ticket = match spawn.mode {
        ExecutionMode::Process => Some(crate::capacity::ticket(
            spawn.tuning.max_processes,
            spawn.tuning.start_timeout,
            end_longest_idle,
        )?),
        _ => None,
    };
    let mut link = Link::start(slot, spawn)?;
    link.ticket = ticket;
    Ok(link)
}

/// The thread that ends workers idle past the idle timeout; stopped when
/// the pool drops.
struct Reaper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: std::thread::JoinHandle<()>,
}

impl Reaper {
    fn start(shared: Arc<Shared>, timeout: Duration) -> std::io::Result<Reaper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = Arc::clone(&stop);
        let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let handle = std::thread::Builder::new()
            .name("coil-idle-reaper".into())
            .spawn(move || loop {
                let (lock, cv) = &*stopped;
                let guard = lock.lock().expect("reaper lock");
                // The flag is checked under the lock before waiting: a stop
                // that came before the wait (a pool dropped at once) must
                // not wait out the period.
                let (guard, _) = cv
                    .wait_timeout_while(guard, period, |stop| !*stop)
                    .expect("reaper lock");
                if *guard {
                    return;
                }
                drop(guard);
                let mut ending: Vec<Link> = Vec::new();
                {
                    let mut idle = shared.idle.lock().expect("pool lock");
                    for slot in idle.iter_mut() {
                        if slot.worker.is_some() && slot.since.elapsed() >= timeout {
                            ending.extend(slot.worker.take());
                        }
                    }
                }
                if !ending.is_empty() {
                    tracing::debug!(
                        workers = ending.len(),
                        "ending workers idle for {timeout:?} (python.worker.idle-timeout)"
                    );
                }
                for w in &mut ending {
                    w.close_input();
                }
                for w in ending {
                    w.shutdown();
                }
            })?;
        Ok(Reaper { stop, handle })
    }

    fn stop(self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().expect("reaper lock") = true;
        cv.notify_all();
        let _ = self.handle.join();
    }
}

/// The worker processes. Callers lease a worker, drive it from their own
/// thread (no hand-off to another thread on the way to Python and back),
/// and give it back; dropping the pool shuts every worker down.
pub(crate) struct Pool {
    spawn: Spawn,
    /// The Arrow type of the UDF's results, as its executors said when
    /// they were ready.
    pub returns: Option<arrow_schema::DataType>,
    /// What the UDF's signature says, as its executors read it.
    pub signature: coil_proto::UdfSignature,
    /// The module that turned a free-threaded CPython's GIL back on when
    /// the UDF loaded ("" if none did); `None` while it is off.
    pub gil: Option<String>,
    shared: Arc<Shared>,
    /// Ends workers idle past `python.worker.idle-timeout`, if set.
    reaper: Option<Reaper>,
    /// No new work: workers given back are shut down (the runner fell back
    /// to another mode).
    retired: AtomicBool,
    pub counters: Arc<Counters>,
    /// The largest batch (`python.fn-execution.max-message-size`).
    pub max_payload: usize,
}

impl Pool {
    pub fn start(spawn: Spawn) -> Result<Pool, StartError> {
        let n = spawn.tuning.workers;
        // Start every worker at once: each loads Python on its own core.
        let started: Vec<Result<Link, StartError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|id| {
                    let spawn = &spawn;
                    s.spawn(move || start_first(id, spawn))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a starting thread does not panic"))
                .collect()
        });
        let mut slots = Vec::with_capacity(n);
        let mut first_error = None;
        for (id, w) in started.into_iter().enumerate() {
            match w {
                Ok(w) => slots.push(Slot {
                    id,
                    worker: Some(w),
                    since: Instant::now(),
                }),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            // Nothing half-started: stop the workers that did start.
            for w in slots.into_iter().filter_map(|s| s.worker) {
                w.shutdown();
            }
            return Err(e);
        }
        let max_payload = spawn.tuning.max_message;
        let counters = Arc::clone(&spawn.counters);
        let returns = slots
            .iter()
            .find_map(|s| s.worker.as_ref().and_then(|w| w.returns().cloned()));
        let signature = slots
            .iter()
            .find_map(|s| s.worker.as_ref().map(|w| w.signature().clone()))
            .unwrap_or_default();
        let gil = slots.iter().find_map(|s| {
            s.worker
                .as_ref()
                .and_then(|w| w.gil_enabled_by().map(str::to_string))
        });
        let shared = Arc::new(Shared {
            idle: Mutex::new(slots),
            returned: Condvar::new(),
        });
        {
            let mut pools = POOLS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(&shared));
        }
        let reaper =
            match spawn.tuning.idle_timeout {
                Some(t) => Some(Reaper::start(Arc::clone(&shared), t).map_err(|source| {
                    StartError::Spawn {
                        program: "the idle-worker reaper thread".into(),
                        source,
                    }
                })?),
                None => None,
            };
        Ok(Pool {
            returns,
            signature,
            gil,
            spawn,
            shared,
            reaper,
            retired: AtomicBool::new(false),
            counters,
            max_payload,
        })
    }

    /// The mode the workers run in.
    pub fn mode(&self) -> ExecutionMode {
        self.spawn.mode
    }

    /// Process ids of the idle workers.
    pub fn idle_pids(&self) -> Vec<u32> {
        let idle = self.shared.idle.lock().expect("pool lock");
        idle.iter()
            .filter_map(|s| s.worker.as_ref().and_then(Link::pid))
            .collect()
    }

    /// How many idle slots hold a running worker (process or thread).
    pub fn idle_running(&self) -> usize {
        let idle = self.shared.idle.lock().expect("pool lock");
        idle.iter().filter(|s| s.worker.is_some()).count()
    }

    /// Leases an idle worker; waits for one if `wait` and none is idle.
    pub fn lease(&self, wait: bool) -> Option<Lease<'_>> {
        let mut idle = self.shared.idle.lock().expect("pool lock");
        loop {
            if let Some(slot) = idle.pop() {
                return Some(Lease {
                    pool: self,
                    slot: Some(slot),
                });
            }
            if !wait {
                return None;
            }
            idle = self.shared.returned.wait(idle).expect("pool lock");
        }
    }

    fn give_back(&self, slot: Slot) {
        if self.retired.load(Ordering::Acquire) {
            if let Some(w) = slot.worker {
                w.shutdown();
            }
            return;
        }
        let mut slot = slot;
        slot.since = Instant::now();
        self.shared.idle.lock().expect("pool lock").push(slot);
        self.shared.returned.notify_one();
    }

    /// Takes no more work: shuts down the idle workers now, and every
    /// leased one when it comes back.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.shut_down_idle();
    }

    /// Shuts down the idle workers: closes every one's input first, so
    /// they run the UDF's `close()` in parallel, then waits for each.
    fn shut_down_idle(&self) {
        let slots = std::mem::take(&mut *self.shared.idle.lock().expect("pool lock"));
        let mut closing: Vec<Link> = slots.into_iter().filter_map(|s| s.worker).collect();
        for w in &mut closing {
            w.close_input();
        }
        for w in closing {
            w.shutdown();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.take() {
            r.stop();
        }
        self.shut_down_idle();
    }
}

/// A worker leased from the pool; goes back when dropped.
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    slot: Option<Slot>,
}

impl Lease<'_> {
    /// Whether this lease is of `pool`.
    pub fn is_of(&self, pool: &Pool) -> bool {
        std::ptr::eq(self.pool, pool)
    }

    /// The slot's id.
    pub fn id(&self) -> usize {
        self.slot.as_ref().expect("a live lease").id
    }

    /// The leased worker, restarting it first if the slot is vacant.
    ///
    /// # Errors
    ///
    /// [`RunError::Restart`] if no replacement starts within
    /// [`START_ATTEMPTS`] attempts.
    pub fn worker(&mut self) -> Result<&mut Link, RunError> {
        let slot = self.slot.as_mut().expect("a live lease");
        if slot.worker.is_none() {
            let w = start_with_retries(slot.id, &self.pool.spawn)?;
            slot.worker = Some(w);
        }
        Ok(slot.worker.as_mut().expect("just started"))
    }

    /// Kills the worker (it broke) and leaves the slot vacant: for a pool
    /// that takes no more work ([`Pool::retire`]).
    pub fn discard(&mut self, why: &RunError) {
        let slot = self.slot.as_mut().expect("a live lease");
        if let Some(w) = slot.worker.take() {
            w.kill();
        }
        tracing::warn!(worker = slot.id, "stopping a retired worker: {why}");
    }

    /// Kills the worker (it broke) and starts its replacement.
    pub fn replace(&mut self, why: &RunError) {
        let slot = self.slot.as_mut().expect("a live lease");
        if let Some(w) = slot.worker.take() {
            w.kill();
        }
        self.pool.counters.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("coil_worker_restarts_total", "mode" => self.pool.spawn.mode.as_str())
            .increment(1);
        tracing::warn!(worker = slot.id, "replacing worker: {why}");
        // A replacement that fails every attempt leaves the slot vacant:
        // the next batch for it tries again, and fails with the reason.
        if let Ok(w) = start_with_retries(slot.id, &self.pool.spawn) {
            slot.worker = Some(w);
        }
    }
}

/// Consecutive attempts to start a replacement executor before giving up.
pub(crate) const START_ATTEMPTS: u32 = 5;

/// How long to wait before start attempt `attempt` (0-based) of a
/// replacement: nothing before the first, then 50 ms doubling to at most
/// 800 ms (1.5 s over all five attempts), so a worker killed while it
/// starts is retried at once and a persistent failure does not spin.
pub(crate) fn start_backoff(attempt: u32) -> std::time::Duration {
    match attempt {
        0 => std::time::Duration::ZERO,
        n => std::time::Duration::from_millis(50 << (n - 1).min(4)),
    }
}

/// Starts executor `slot` of a new pool. A worker that dies while it
/// starts (killed, out of memory) is started again as a replacement is,
/// up to [`START_ATTEMPTS`] times with [`start_backoff`]; a UDF that does
/// not load, a mode that is not available, a start that times out are not
/// retried (they would fail the same way).
fn start_first(slot: usize, spawn: &Spawn) -> Result<Link, StartError> {
    let mut attempt = 0;
    loop {
        std::thread::sleep(start_backoff(attempt));
        attempt += 1;
        match start_one(slot, spawn) {
            Err(e @ StartError::Exited { .. }) if attempt < START_ATTEMPTS => {
                tracing::warn!(worker = slot, attempt, "a worker did not start: {e}");
            }
            Err(e @ StartError::Exited { .. }) => {
                return Err(StartError::Attempts {
                    attempts: attempt,
                    last: Box::new(e),
                })
            }
            other => return other,
        }
    }
}

/// Starts a replacement executor for `slot`, retrying a failed start up to
/// [`START_ATTEMPTS`] times with [`start_backoff`] between attempts: a
/// replacement that dies while it starts (killed, out of memory) does not
/// end the run.
fn start_with_retries(slot: usize, spawn: &Spawn) -> Result<Link, RunError> {
    let mut attempt = 0;
    loop {
        std::thread::sleep(start_backoff(attempt));
        attempt += 1;
        match start_one(slot, spawn) {
            Ok(link) => return Ok(link),
            // Waiting longer would not help: every place is busy.
            Err(e @ StartError::Capacity { .. }) => {
                return Err(RunError::Restart {
                    rows: 0..0,
                    attempts: attempt,
                    source: Box::new(e),
                })
            }
            Err(e) if attempt < START_ATTEMPTS => {
                tracing::warn!(
                    worker = slot,
                    attempt,
                    "a replacement worker did not start: {e}"
                );
            }
            Err(e) => {
                tracing::error!(
                    worker = slot,
                    attempts = attempt,
                    "no replacement worker started: {e}"
                );
                // The scheduler fills in the rows it could not run.
                return Err(RunError::Restart {
                    rows: 0..0,
                    attempts: attempt,
                    source: Box::new(e),
                });
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.pool.give_back(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn restarts_back_off_boundedly() {
        let waits: Vec<Duration> = (0..START_ATTEMPTS).map(start_backoff).collect();
        assert_eq!(waits[0], Duration::ZERO, "the first attempt is immediate");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        let total: Duration = waits.iter().sum();
        assert!(total <= Duration::from_secs(2), "{total:?}");
        assert_eq!(start_backoff(30), Duration::from_millis(800), "capped");
    }
}
