//! The serve loop of an async UDF: batches are started as they arrive,
//! while the rows of earlier ones are still in flight, and answered in
//! order as each finishes. Between turns of the event loop the request
//! ring is checked without waiting, so the executor never drains one batch
//! before starting the next.

use std::collections::VecDeque;
use std::time::Duration;

use coil_ipc::{Consumer, Producer, Region, RingRecvError};
use coil_proto::{layout, Tag};
use pyo3::prelude::*;

use super::{answer_batch, ANSWER, IDLE};
use crate::error::ServeError;
use crate::executor::{Executor, Started};

/// A turn of the event loop while one batch is in flight: the next batch
/// may arrive any moment, and is started within this.
const SHORT_TURN: Duration = Duration::from_millis(1);
/// A turn while more are in flight: the host keeps a few batches in each
/// executor's ring, so the next arrives only after an answer.
const LONG_TURN: Duration = Duration::from_millis(20);

/// Serves `exec`, an async UDF's executor, until the host closes the ring;
/// rows still in flight then are cancelled when the executor closes.
pub(super) fn serve(
    py: Python<'_>,
    region: &Region,
    rx: &mut Consumer,
    tx: &mut Producer,
    exec: &mut Executor,
    max_message: usize,
) -> Result<(), ServeError> {
    let pulse = region.user_word(layout::WORD_PULSE);
    let mut pending: VecDeque<Started> = VecDeque::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut big = Vec::new();
    loop {
        // While rows are in flight, take only what is already there. The
        // frame lives in this block: released before the rest of a batch
        // in pieces is read.
        let in_pieces = {
            let frame = if pending.is_empty() {
                match py.detach(|| rx.recv_timeout(IDLE)) {
                    Ok(f) => Some(f),
                    Err(RingRecvError::Closed) => break,
                    Err(RingRecvError::Timeout { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            } else {
                match rx.try_recv() {
                    Ok(f) => f,
                    Err(RingRecvError::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            };
            match frame {
                Some(frame) if frame.tag() == Tag::Part.raw() => {
                    // A batch larger than a frame: its first piece here.
                    big.clear();
                    frame.copy_into(&mut big);
                    true
                }
                Some(frame) => {
                    let tag = Tag::try_from(frame.tag())?;
                    pending.push_back(exec.start_batch(py, tag, &frame)?);
                    continue;
                }
                None => false,
            }
        };
        if in_pieces {
            let tag = py.detach(|| coil_proto::assemble_rest(rx, &mut big, max_message, IDLE))?;
            pending.push_back(exec.start_batch(py, tag, &big[..])?);
            continue;
        }
        let turn = if pending.len() > 1 {
            LONG_TURN
        } else {
            SHORT_TURN
        };
        let oldest = pending.front_mut().expect("rows in flight");
        let done = exec.turn(py, oldest, turn);
        // The host reads this to tell a waiting loop from a blocked one.
        if let Some(p) = &pulse {
            p.fetch_add(1);
        }
        if done {
            let started = pending.pop_front().expect("the oldest batch");
            let (seq, columnar) = (started.seq(), started.columnar());
            let tag = answer_batch(seq, columnar, &mut out, max_message, |out| {
                exec.finish_batch(py, started, out)
            });
            if tag == Tag::BadRow {
                exec.after_failure(py);
            }
            py.detach(|| coil_proto::send_message(tx, tag, &out, ANSWER))?;
            exec.check_gil(py);
        }
    }
    Ok(())
}
