//! A batch on its way: where it is ([`State`]), what it carries
//! ([`Payload`]: rows or a column frame, the only type here that knows the
//! two apart), and how many rows it holds ([`batch_rows`]).

use std::ops::Range;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use coil_ipc::Row;
use coil_proto::{Batch, Times};

use crate::link::Results;
use crate::RunError;

use super::HandOff;

/// Batches in flight per worker: one running, one waiting in its ring, so
/// the worker never waits for the host between batches.
pub(super) const DEPTH: usize = 2;

/// Rows per batch until a batch has been answered and the time per row is
/// known (unless `python.fn-execution.bundle.size` is set): small, so that
/// a slow UDF's first batches do not give one worker all the work.
pub(super) const FIRST_BATCH: usize = 4;

/// Where a batch is.
pub(super) enum State {
    /// In no executor's ring: new, or to be sent again (its executor broke,
    /// or its pool was retired).
    Unsent,
    /// In its executor's ring behind another batch of ours.
    Queued,
    /// The oldest of ours on its executor, so running: since when, and when
    /// it times out.
    Running {
        since: Instant,
        deadline: Option<Instant>,
    },
    /// Answered before the older batches were (while the stream moved off
    /// a retired pool): the results, the executor's times, the host's
    /// decode time, the rows that failed alone; delivered in its turn.
    Done(Box<Answered>),
    /// Failed; the error is delivered in its rows' place.
    Failed(Box<RunError>),
}

/// A batch's answer, kept until its turn: results, the executor's times,
/// the host's decode time, the rows that failed alone.
pub(super) type Answered = (Results, Times, Duration, Vec<(u64, RunError)>);

/// A batch of the stream, from being cut until its results are delivered.
pub(super) struct InFlight {
    /// Index of its executor in the stream's leases; `None` until it is
    /// given one (a batch that failed before it was sent never is).
    pub(super) lease: Option<usize>,
    pub(super) seq: u64,
    pub(super) rows: Range<u64>,
    /// Kept so the batch can be sent again to a replacement executor.
    pub(super) payload: Payload,
    /// When it was queued to be sent.
    pub(super) queued: Instant,
    /// Times it was sent again after its executor died while running it.
    pub(super) attempts: u32,
    /// Times it was sent again after its executor died before running it.
    pub(super) free_resends: u32,
    pub(super) state: State,
}

impl InFlight {
    /// In its executor's ring, not answered yet.
    pub(super) fn pending(&self) -> bool {
        matches!(self.state, State::Queued | State::Running { .. })
    }

    /// Whether it is pending on executor `lease`.
    pub(super) fn pending_on(&self, lease: usize) -> bool {
        self.lease == Some(lease) && self.pending()
    }

    /// To be sent (again), to an executor of the active pool.
    pub(super) fn unsent(&mut self) {
        self.state = State::Unsent;
    }

    pub(super) fn fail(&mut self, e: RunError) {
        self.state = State::Failed(Box::new(e));
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running { deadline, .. } => deadline,
            _ => None,
        }
    }
}

/// What a batch carries to its executor: rows of the row codec, or a
/// column frame. The one place in the scheduler that knows the two kinds
/// apart: the scheduler sends it, asks it for its rows' input, cuts it
/// into parts and joins the parts' answers through its methods.
#[derive(Debug)]
pub(super) enum Payload {
    /// A row batch (`coil_proto::Batch`).
    Rows(Vec<u8>),
    /// A column batch: its columns, sent shelved to an executor thread
    /// (no bytes copied) and as a column frame (`coil_proto::Columns`)
    /// to a worker process.
    Columns {
        /// The batch's columns (slices of the caller's arrays, which they
        /// keep alive while the batch may be sent again).
        columns: Vec<ArrayRef>,
        /// Its rows.
        rows: usize,
        /// Its column frame as last written for an executor (see
        /// [`Payload::wire`]).
        frame: Vec<u8>,
        /// Whether `frame` holds the batch inline (no shelf, no arena), to
        /// be sent again as it is.
        inline: bool,
        /// The type its results travel as: a part that fails alone answers
        /// with nulls of it, and the parts' arrays join as it.
        result: DataType,
        /// A part of a column batch split after its executor broke: its
        /// answer is joined with the next entry's into the batch's one
        /// answer.
        joins_next: bool,
    },
}

impl Payload {
    /// An empty row batch with room for `capacity` bytes.
    pub(super) fn rows(capacity: usize) -> Payload {
        Payload::Rows(Vec::with_capacity(capacity))
    }

    /// A column batch of `columns`, `rows` long, answered by an array of
    /// `result`; its frame is written when it is sent ([`Payload::wire`]).
    pub(super) fn columns(columns: Vec<ArrayRef>, rows: usize, result: DataType) -> Payload {
        Payload::Columns {
            columns,
            rows,
            frame: Vec::new(),
            inline: false,
            result,
            joins_next: false,
        }
    }

    /// The bytes encoded so far (a column batch has none until it is
    /// sent: see [`Payload::wire`]).
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Payload::Rows(b) | Payload::Columns { frame: b, .. } => b,
        }
    }

    /// The bytes that go into the ring of an executor reached through
    /// `via`, as batch `seq`: a column batch goes shelved to an executor
    /// thread, with its fixed-width values placed in a worker process's
    /// arena (as far as it has room), else inline. Also says what to give
    /// back if the bytes never reach the executor ([`Sent::undo`]).
    ///
    /// # Errors
    ///
    /// The columns do not fit a column frame (message).
    pub(super) fn wire(&mut self, seq: u64, via: &HandOff) -> Result<(&[u8], Sent), String> {
        match self {
            Payload::Rows(b) => Ok((b, Sent::Nothing)),
            Payload::Columns {
                columns,
                rows,
                frame,
                inline,
                ..
            } => {
                if *inline && via.shelf.is_none() && via.arena.is_none() {
                    return Ok((frame, Sent::Nothing));
                }
                frame.clear();
                *inline = false;
                let sent = if let Some(shelf) = &via.shelf {
                    let key = coil_proto::Columns::shelve(seq, *rows, columns, shelf, frame);
                    Sent::Shelved(
                        std::sync::Arc::clone(shelf),
                        key.map_err(|e| e.to_string())?,
                    )
                } else {
                    let arena = via.arena.as_ref().map(|a| (a, coil_ipc::Half::Requests));
                    let placed =
                        coil_proto::Columns::encode_placed(seq, *rows, columns, frame, arena)
                            .map_err(|e| e.to_string())?;
                    match &via.arena {
                        Some(arena) if !placed.is_empty() => Sent::Placed(arena.clone(), placed),
                        _ => {
                            *inline = true;
                            Sent::Nothing
                        }
                    }
                };
                Ok((frame, sent))
            }
        }
    }

    /// The bytes, to encode into (a column batch's frame is rewritten
    /// when it is sent).
    pub(super) fn buffer(&mut self) -> &mut Vec<u8> {
        match self {
            Payload::Rows(b) | Payload::Columns { frame: b, .. } => b,
        }
    }

    /// A column frame, not rows (its answer must be a column).
    pub(super) fn is_columnar(&self) -> bool {
        matches!(self, Payload::Columns { .. })
    }

    /// A part of a split column batch whose answer joins the next one's.
    pub(super) fn joins_next(&self) -> bool {
        matches!(
            self,
            Payload::Columns {
                joins_next: true,
                ..
            }
        )
    }

    /// Its rows' input values, decoded again (empty for a column frame: a
    /// failed row's input stays in the caller's arrays).
    pub(super) fn args(&self) -> Vec<Row> {
        match self {
            Payload::Rows(b) => coil_ipc::decode_batch(&Batch::rows(&b[..])).unwrap_or_default(),
            Payload::Columns { .. } => Vec::new(),
        }
    }

    /// The answer of `rows` rows that failed alone: nulls of the result
    /// type for a column frame (a row batch's failed rows answer nothing).
    pub(super) fn nulls(&self, rows: usize) -> Option<ArrayRef> {
        match self {
            Payload::Rows(_) => None,
            Payload::Columns { result, .. } => Some(arrow_array::new_null_array(result, rows)),
        }
    }

    /// The answers (arrays) of a split column batch's parts, in order, as
    /// the batch's one answer (`None` if they do not join).
    pub(super) fn join(&self, arrays: Vec<ArrayRef>) -> Option<ArrayRef> {
        match self {
            Payload::Rows(_) => None,
            Payload::Columns { result, .. } => concat(arrays, result).ok(),
        }
    }

    /// Its `rows` rows decoded again, to be cut into parts; `None` if they
    /// do not decode to `rows` rows (this host wrote them, so they do).
    pub(super) fn parts(&self, rows: usize) -> Option<Parts> {
        match self {
            Payload::Rows(_) => {
                let args = self.args();
                (args.len() == rows).then_some(Parts::Rows(args))
            }
            Payload::Columns {
                columns,
                rows: have,
                result,
                ..
            } => (*have == rows).then(|| Parts::Columns {
                columns: columns.clone(),
                result: result.clone(),
            }),
        }
    }
}

/// What a column frame written by [`Payload::wire`] left outside its
/// bytes, for the executor to take.
#[derive(Debug)]
pub(super) enum Sent {
    /// Nothing: the frame holds the whole batch.
    Nothing,
    /// Its columns, on an executor thread's shelf under this key.
    Shelved(std::sync::Arc<coil_proto::Shelf>, u64),
    /// Fixed-width values placed in a worker's arena: these runs.
    Placed(coil_ipc::Arena, Vec<(u64, usize)>),
}

impl Sent {
    /// The frame did not reach the executor: takes back what it left.
    pub(super) fn undo(self) {
        match self {
            Sent::Nothing => {}
            Sent::Shelved(shelf, key) => drop(shelf.take(key)),
            Sent::Placed(arena, runs) => {
                for (at, len) in runs {
                    arena.unplace(coil_ipc::Half::Requests, at, len);
                }
            }
        }
    }
}

/// A batch's rows, decoded again to be cut into parts: its rows, or its
/// columns (a part is then a slice of each).
pub(super) enum Parts {
    /// The input rows.
    Rows(Vec<Row>),
    /// The input columns, and the type the results travel as.
    Columns {
        columns: Vec<ArrayRef>,
        result: DataType,
    },
}

impl Parts {
    /// The input values of row `at` (empty for columns: a failed row's
    /// input stays in the caller's arrays).
    pub(super) fn arg(&self, at: usize) -> Row {
        match self {
            Parts::Rows(rows) => rows.get(at).cloned().unwrap_or_default(),
            Parts::Columns { .. } => Row::new(),
        }
    }

    /// Rows `range` as a batch of their own, numbered `seq`; for columns,
    /// answered jointly with the next part if `joins_next`.
    pub(super) fn cut(&self, seq: u64, range: Range<usize>, joins_next: bool) -> Payload {
        match self {
            Parts::Rows(rows) => {
                let mut out = Vec::new();
                Batch::encode(seq, &rows[range], &mut out).expect("these rows encoded before");
                Payload::Rows(out)
            }
            Parts::Columns { columns, result } => {
                let slices: Vec<ArrayRef> = columns
                    .iter()
                    .map(|c| c.slice(range.start, range.len()))
                    .collect();
                // Written when it is sent (`wire`).
                let mut part = Payload::columns(slices, range.len(), result.clone());
                if let Payload::Columns { joins_next: j, .. } = &mut part {
                    *j = joins_next;
                }
                part
            }
        }
    }
}

/// Rows per batch: `bound` when `fixed` (the user set
/// `python.fn-execution.bundle.size`); otherwise the rows the executor runs
/// in `target` at `cost` per row, from 1 to `bound`, and [`FIRST_BATCH`]
/// while nothing has been measured.
pub(crate) fn batch_rows(
    bound: usize,
    fixed: bool,
    target: Duration,
    cost: Option<Duration>,
) -> usize {
    if fixed {
        return bound;
    }
    match cost {
        Some(cost) if !cost.is_zero() => {
            let rows = target.as_secs_f64() / cost.as_secs_f64();
            // `as` saturates: a huge quotient is usize::MAX, then clamped.
            (rows.round() as usize).clamp(1, bound)
        }
        _ => FIRST_BATCH.min(bound),
    }
}

/// Arrays of type `t`, one after another, as one (an empty array of `t`
/// for none). The one place coil-host puts arrays together: the parts of a
/// split column batch here, a batch's slices in `arrow`.
///
/// # Errors
///
/// Arrow's, when the arrays are not all of one type or their offsets
/// overflow.
pub(crate) fn concat(
    arrays: Vec<ArrayRef>,
    t: &DataType,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    if arrays.len() == 1 {
        return Ok(arrays.into_iter().next().expect("one array"));
    }
    if arrays.is_empty() {
        return Ok(arrow_array::new_empty_array(t));
    }
    if let Some(a) = arrays.iter().find(|a| a.data_type() != t) {
        return Err(arrow_schema::ArrowError::InvalidArgumentError(format!(
            "an array of {} among arrays of {t}",
            a.data_type()
        )));
    }
    let data: Vec<_> = arrays.iter().map(|a| a.to_data()).collect();
    let total = data.iter().map(|d| d.len()).sum();
    let mut out = arrow_data::transform::MutableArrayData::new(data.iter().collect(), false, total);
    for (i, d) in data.iter().enumerate() {
        out.try_extend(i, 0, d.len())?;
    }
    Ok(arrow_array::make_array(out.freeze()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use coil_ipc::Value;

    use super::*;

    fn row_payload(seq: u64, rows: &[Row]) -> Payload {
        let mut p = Payload::rows(64);
        Batch::encode(seq, rows, p.buffer()).unwrap();
        p
    }

    fn column_payload(columns: &[ArrayRef]) -> Payload {
        let rows = columns[0].len();
        Payload::columns(columns.to_vec(), rows, DataType::Int64)
    }

    #[test]
    fn a_row_payload_gives_back_its_rows_and_cuts_into_batches_of_their_own() {
        let rows: Vec<Row> = (0..5).map(|x| vec![Value::Int(x)]).collect();
        let p = row_payload(7, &rows);
        assert!(!p.is_columnar() && !p.joins_next());
        assert_eq!(p.args(), rows);
        assert!(
            p.nulls(3).is_none(),
            "failed rows of a row batch answer nothing"
        );
        assert!(p.parts(4).is_none(), "five rows are not four");
        let parts = p.parts(5).unwrap();
        assert_eq!(parts.arg(2), vec![Value::Int(2)]);
        let cut = parts.cut(9, 1..3, true);
        assert_eq!(Batch::seq(cut.bytes()).unwrap(), 9);
        assert_eq!(cut.args(), rows[1..3].to_vec());
        assert!(!cut.joins_next(), "row batches never join");
    }

    #[test]
    fn a_column_payload_cuts_into_slices_that_join_back_into_the_whole() {
        let xs: ArrayRef = Arc::new(Int64Array::from_iter_values(0..6));
        let p = column_payload(std::slice::from_ref(&xs));
        assert!(p.is_columnar() && !p.joins_next());
        assert!(
            p.args().is_empty(),
            "a column batch's inputs stay in the caller's arrays"
        );
        let nulls = p.nulls(2).unwrap();
        assert_eq!((nulls.len(), nulls.null_count()), (2, 2));
        assert_eq!(nulls.data_type(), &DataType::Int64);
        let parts = p.parts(6).unwrap();
        assert!(parts.arg(0).is_empty());
        let (a, b) = (parts.cut(4, 0..2, true), parts.cut(5, 2..6, false));
        assert!(a.joins_next() && !b.joins_next());
        let back: Vec<ArrayRef> = [(4, a), (5, b)]
            .into_iter()
            .map(|(seq, mut c)| {
                let (bytes, sent) = c.wire(seq, &HandOff::default()).unwrap();
                assert!(matches!(sent, Sent::Nothing));
                let d = coil_proto::Columns::decode(bytes).unwrap();
                assert_eq!(d.seq, seq);
                d.columns[0].clone()
            })
            .collect();
        assert_eq!(back[0].len(), 2);
        let joined = p.join(back).unwrap();
        assert_eq!(joined.as_ref(), xs.as_ref());
    }

    #[test]
    fn concat_joins_arrays_of_one_type_and_refuses_mixed_ones() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![3]));
        let joined = concat(vec![a.clone(), b], &DataType::Int64).unwrap();
        assert_eq!(
            joined.as_ref(),
            &Int64Array::from(vec![Some(1), None, Some(3)]) as &dyn Array
        );
        assert_eq!(concat(vec![], &DataType::Utf8).unwrap().len(), 0);
        assert_eq!(
            concat(vec![], &DataType::Utf8).unwrap().data_type(),
            &DataType::Utf8
        );
        let s: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert!(concat(vec![a, s], &DataType::Int64).is_err());
    }
}
