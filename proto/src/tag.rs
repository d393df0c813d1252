//! Frame tags: what a frame carries.

use crate::ProtoError;

/// What a frame carries. On the wire a `u16`; a value read from a ring is
/// converted with [`Tag::try_from`], which refuses unknown values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Tag {
    /// Host → executor: a batch of argument rows ([`Batch`](crate::Batch));
    /// the executor stops at the first row that fails and answers with that
    /// row's error.
    Batch = 1,
    /// Either way: a piece of a message larger than a frame; the last piece
    /// carries the message's own tag.
    Part = 2,
    /// Host → executor: a batch whose rows fail one by one: the executor
    /// runs every row and answers [`Tag::ResultsAndFailures`] when some
    /// failed (`python.fn-execution.on-error` = `skip` or `dead-letter`).
    BatchPerRow = 3,
    /// Host → executor: a batch as Arrow columns
    /// ([`Columns`](crate::Columns)); answered as [`Tag::Batch`] is.
    Columns = 4,
    /// Host → executor: a batch as Arrow columns whose rows fail one by
    /// one; answered as [`Tag::BatchPerRow`] is.
    ColumnsPerRow = 5,
    /// Executor → host: the UDF loaded; `[pid, python version, return
    /// type]`.
    Ready = 10,
    /// Executor → host: the UDF did not load; `[type, message, traceback,
    /// blocker or null]`.
    LoadFailed = 11,
    /// Executor → host: one result per input row, in order.
    Results = 12,
    /// Executor → host: the UDF raised on a row.
    UdfError = 13,
    /// Executor → host: a row could not be converted to or from Python.
    BadRow = 14,
    /// Executor → host: the UDF raised because a module it imports cannot
    /// load in a sub-interpreter.
    Incompatible = 15,
    /// Executor → host: the results are larger than the message limit.
    TooLarge = 16,
    /// Executor → host: one result per input row, a placeholder null for
    /// each row that failed, then the failures (answers a
    /// [`Tag::BatchPerRow`]).
    ResultsAndFailures = 17,
    /// Executor → host: the results of a column batch as one Arrow column
    /// of the UDF's declared type, in a column frame's body.
    ColumnResults = 18,
    /// Executor → host: as [`Tag::ColumnResults`] (a null for each failed
    /// row), then the failures as [`Tag::ResultsAndFailures`] has them.
    ColumnResultsAndFailures = 19,
}

impl Tag {
    /// The value on the wire.
    pub fn raw(self) -> u16 {
        self as u16
    }
}

impl TryFrom<u16> for Tag {
    type Error = ProtoError;

    fn try_from(raw: u16) -> Result<Tag, ProtoError> {
        Ok(match raw {
            1 => Tag::Batch,
            2 => Tag::Part,
            3 => Tag::BatchPerRow,
            4 => Tag::Columns,
            5 => Tag::ColumnsPerRow,
            10 => Tag::Ready,
            11 => Tag::LoadFailed,
            12 => Tag::Results,
            13 => Tag::UdfError,
            14 => Tag::BadRow,
            15 => Tag::Incompatible,
            16 => Tag::TooLarge,
            17 => Tag::ResultsAndFailures,
            18 => Tag::ColumnResults,
            19 => Tag::ColumnResultsAndFailures,
            _ => return Err(ProtoError::UnknownTag(raw)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_round_trips_and_unknown_values_are_refused() {
        for tag in [
            Tag::Batch,
            Tag::Part,
            Tag::BatchPerRow,
            Tag::Columns,
            Tag::ColumnsPerRow,
            Tag::Ready,
            Tag::LoadFailed,
            Tag::Results,
            Tag::UdfError,
            Tag::BadRow,
            Tag::Incompatible,
            Tag::TooLarge,
            Tag::ResultsAndFailures,
            Tag::ColumnResults,
            Tag::ColumnResultsAndFailures,
        ] {
            assert_eq!(Tag::try_from(tag.raw()), Ok(tag));
        }
        for raw in [0, 6, 9, 20, u16::MAX] {
            assert_eq!(Tag::try_from(raw), Err(ProtoError::UnknownTag(raw)));
        }
    }
}
