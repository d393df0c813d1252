//! How an executor ends: noticed dead or hung (and an executor thread
//! interrupted), reaped, killed, or shut down; no child outlives its link.
//! Every wait here is one [`wait_until`].

use std::ops::Range;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coil_proto::Tag;

use super::{Executor, Link, Reply};
use crate::error::{RunError, WorkerExit};

/// How long an interrupted executor thread has to come back.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// How long a dead worker has to be reaped, and a closed one to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Calls `poll` every `every` until it gives a value or `grace` has passed
/// (then once more); its last answer.
pub(super) fn wait_until<T>(
    grace: Duration,
    every: Duration,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(v) = poll() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

impl Link {
    /// An executor thread ran past the timeout: raise `TimeoutError` in it
    /// and wait briefly for it to come back. A thread stuck in C code does
    /// not come back; it is then abandoned (closed, left to finish).
    pub(super) fn interrupt(&mut self, rows: Range<u64>, timeout: Option<Duration>) -> Reply {
        let running = self.progress();
        if running == 0 && !self.waited_idle {
            // No row running: the executor has just finished the batch (its
            // answer is on its way) or not yet begun it. Interrupting would
            // land in some later row; wait once more instead.
            self.waited_idle = true;
            return Reply::Interrupted;
        }
        let error = self.timed_out(rows, timeout);
        if let Executor::Thread {
            interrupt: Some(target),
            ..
        } = &self.executor
        {
            // Whether it was marked shows in whether the executor comes
            // back below.
            let _ = target.interrupt();
        }
        if self.batch_tag == Tag::BatchPerRow {
            // The row fails alone and the executor goes on with the next:
            // it came back once it runs another row (or none).
            let moved = wait_until(INTERRUPT_GRACE, Duration::from_millis(1), || {
                (self.progress() != running).then_some(())
            });
            return match moved {
                Some(()) => Reply::Interrupted,
                None => Reply::Broken(error),
            };
        }
        let back = match self.rx.recv_timeout(INTERRUPT_GRACE) {
            Ok(frame) => frame.tag() != Tag::Part.raw(),
            Err(_) => false,
        };
        if back {
            self.rx.flush();
            Reply::Error(error)
        } else {
            Reply::Broken(error)
        }
    }

    pub(super) fn died(&mut self, rows: Range<u64>) -> RunError {
        let exit = self.reap();
        let mut stderr = self.stderr_tail();
        if let (Some(limit), WorkerExit::Signal { .. }) = (self.memory_limit, &exit) {
            // A worker over its limit dies by a signal when the allocation
            // that failed was not Python's (C code that aborts).
            stderr.push_str(&format!(
                "\ncoil: this worker's memory limit (python.worker.memory-limit) is {} MiB; an allocation past it that is not Python's ends the worker",
                limit >> 20
            ));
        }
        RunError::WorkerDied {
            worker: self.slot,
            exit,
            row: self.running_row(&rows),
            rows,
            stderr,
        }
    }

    pub(super) fn timed_out(&mut self, rows: Range<u64>, after: Option<Duration>) -> RunError {
        let row = self.running_row(&rows);
        RunError::Timeout {
            row,
            after: after.unwrap_or_default(),
            rows,
        }
    }

    /// Waits (briefly) for the exited child and says how it ended.
    pub(super) fn reap(&mut self) -> WorkerExit {
        let Executor::Process { child, .. } = &mut self.executor else {
            return WorkerExit::ThreadStopped;
        };
        wait_until(EXIT_GRACE, Duration::from_millis(2), || {
            if !exited(child) {
                return None;
            }
            // What its UDF forked dies with it.
            end_group(child);
            match child.try_wait() {
                Ok(Some(status)) => Some(WorkerExit::from_status(status)),
                Ok(None) => None,
                Err(_) => Some(WorkerExit::Unknown),
            }
        })
        .unwrap_or(WorkerExit::Killed)
    }

    /// The last lines the worker wrote to stderr (none for a thread).
    pub(super) fn stderr_tail(&mut self) -> String {
        let Executor::Process { logs, stderr, .. } = &mut self.executor else {
            return String::new();
        };
        // Let the log threads drain what the worker wrote before it died.
        finish_relaying(logs, Duration::from_secs(1));
        stderr.text()
    }

    /// Kills the executor at once: a process is killed and reaped; a thread
    /// cannot be killed, so its input is closed and it stops as soon as it
    /// is free (until then it is left to run on, detached).
    pub(crate) fn kill(mut self) {
        self.tx.close();
        match &mut self.executor {
            Executor::Process { child, .. } => {
                end_group(child);
                let _ = child.wait();
            }
            Executor::Thread { handle, .. } => drop(handle.take()),
        }
    }

    /// Closes the executor's input, so it runs the UDF's `close()` and
    /// stops; kills a process that has not exited within a few seconds.
    pub(crate) fn shutdown(mut self) {
        self.tx.close();
        let every = Duration::from_millis(2);
        match &mut self.executor {
            Executor::Thread { handle, .. } => {
                if let Some(thread) = handle.take() {
                    let done = wait_until(EXIT_GRACE, every, || thread.is_finished().then_some(()));
                    if done.is_some() {
                        let _ = thread.join();
                    } else {
                        tracing::warn!(
                            worker = self.slot,
                            "executor thread still busy after close; leaving it"
                        );
                    }
                }
            }
            Executor::Process { child, logs, .. } => {
                let exited = wait_until(EXIT_GRACE, every, || exited(child).then_some(()));
                if exited.is_none() {
                    tracing::warn!(
                        worker = self.slot,
                        "worker did not exit after close; killing it"
                    );
                }
                // What the UDF forked goes with it (the group outlives
                // its leader until then; the leader is reaped after).
                end_group(child);
                let _ = child.wait();
                finish_relaying(logs, Duration::from_millis(200));
            }
        }
    }
}

/// Whether worker `child` has exited, without reaping it: while it is a
/// zombie its pid, and so its process group's id, cannot be reused, so
/// [`end_group`] after this hits only its own group.
fn exited(child: &std::process::Child) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
}

/// Kills worker `child`'s process group (it leads one: see
/// `Link::start_process`), so what its UDF forked ends with it. Call it
/// before reaping the worker.
fn end_group(child: &std::process::Child) {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
}

/// Waits up to `grace` for the threads relaying an exited worker's output
/// to drain what it wrote, then leaves them: a process the UDF started
/// (`subprocess.Popen`) may hold the pipes open for as long as it lives,
/// and must not keep the host waiting. A relay left behind ends with its
/// pipe, or with the host.
fn finish_relaying(logs: &mut Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = Instant::now() + grace;
    for h in logs.drain(..) {
        let left = deadline.saturating_duration_since(Instant::now());
        if wait_until(left, Duration::from_millis(2), || {
            h.is_finished().then_some(())
        })
        .is_some()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Whatever path dropped us: no child outlives its link.
        if let Executor::Process { child, .. } = &mut self.executor {
            if let Ok(None) = child.try_wait() {
                end_group(child);
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn wait_until_returns_the_first_answer_and_stops_polling() {
        let polls = Cell::new(0);
        let got = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            polls.set(polls.get() + 1);
            (polls.get() == 3).then_some("ready")
        });
        assert_eq!(got, Some("ready"));
        assert_eq!(polls.get(), 3);
    }

    #[test]
    fn wait_until_gives_up_after_its_grace_having_polled_at_the_end() {
        let polls = Cell::new(0);
        let started = Instant::now();
        let got: Option<()> =
            wait_until(Duration::from_millis(20), Duration::from_millis(5), || {
                polls.set(polls.get() + 1);
                None
            });
        assert_eq!(got, None);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(polls.get() >= 2);
    }

    #[test]
    fn wait_until_with_no_grace_polls_once() {
        let polls = Cell::new(0);
        let got: Option<()> = wait_until(Duration::ZERO, Duration::from_secs(60), || {
            polls.set(polls.get() + 1);
            None
        });
        assert_eq!((got, polls.get()), (None, 1));
    }
}
