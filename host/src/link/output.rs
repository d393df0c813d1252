//! A worker process's output: each line of its stdout and stderr relayed
//! to `tracing` (target `coil::worker`), and the last lines of its stderr
//! kept for error messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Lines of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 30;

/// The last [`STDERR_TAIL`] lines a worker wrote to stderr, shared with
/// the thread relaying them.
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Keeps `line`, dropping the oldest past [`STDERR_TAIL`].
    fn push(&self, line: String) {
        let mut t = self.0.lock().expect("stderr tail lock");
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }

    /// The lines kept, one per line.
    pub(super) fn text(&self) -> String {
        let tail = self.0.lock().expect("stderr tail lock");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Forwards a worker's output, line by line, to `tracing`; keeps the last
/// stderr lines in `tail`.
pub(super) fn log_lines(
    pipe: impl std::io::Read + Send + 'static,
    slot: usize,
    pid: u32,
    is_stderr: bool,
    tail: Option<StderrTail>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("coil-log-{slot}"))
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if is_stderr {
                    tracing::warn!(target: "coil::worker", worker = slot, pid, stream = "stderr", "{line}");
                } else {
                    tracing::info!(target: "coil::worker", worker = slot, pid, stream = "stdout", "{line}");
                }
                if let Some(t) = &tail {
                    t.push(line);
                }
            }
        })
        .expect("spawning a log thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_keeps_the_last_lines_in_order() {
        let tail = StderrTail::default();
        for i in 0..STDERR_TAIL + 5 {
            tail.push(format!("line {i}"));
        }
        let text = tail.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), STDERR_TAIL);
        assert_eq!(lines[0], "line 5");
        assert_eq!(lines[STDERR_TAIL - 1], format!("line {}", STDERR_TAIL + 4));
    }

    #[test]
    fn a_relay_keeps_the_lines_of_a_pipe_that_closed() {
        let tail = StderrTail::default();
        let pipe = std::io::Cursor::new(b"one\ntwo\n".to_vec());
        log_lines(pipe, 0, 1, true, Some(tail.clone()))
            .join()
            .unwrap();
        assert_eq!(tail.text(), "one\ntwo");
    }
}
