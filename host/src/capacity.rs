//! `python.worker.max-processes`: how many worker processes this host
//! runs across all its runners. Each worker's link holds a [`Ticket`];
//! a new worker past the limit asks its caller to end an idle one first
//! (the pools know which: `pool::end_longest_idle`), or waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::StartError;

/// Worker processes alive (or starting) across every pool of this process.
static PROCESSES: AtomicUsize = AtomicUsize::new(0);

/// One worker process's place under `python.worker.max-processes`, held
/// by its link; given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket(());

impl Drop for Ticket {
    fn drop(&mut self) {
        PROCESSES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place for a new worker process under `cap` (0: no limit). When every
/// place is taken, `end_one_idle` is asked to end an idle worker (it says
/// whether there was one); when none is idle, waits for a place to be
/// given back, up to `patience`.
///
/// # Errors
///
/// [`StartError::Capacity`] after `patience`.
pub(crate) fn ticket(
    cap: usize,
    patience: Duration,
    mut end_one_idle: impl FnMut() -> bool,
) -> Result<Ticket, StartError> {
    let started = Instant::now();
    loop {
        let taken = PROCESSES
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (cap == 0 || n < cap).then_some(n + 1)
            })
            .is_ok();
        if taken {
            return Ok(Ticket(()));
        }
        if !end_one_idle() {
            if started.elapsed() >= patience {
                return Err(StartError::Capacity {
                    cap,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
