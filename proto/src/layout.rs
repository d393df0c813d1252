//! Which ring and which header word of a host↔executor region carries what.
//!
//! A region has two rings and a few application words in its header
//! (`coil_ipc::Region::user_word`). The executor writes the words; the host
//! only reads them, and never trusts them beyond what it checks.

/// The ring of requests: host → executor ([`Tag::Batch`](crate::Tag)).
pub const REQUESTS: usize = 0;
/// The ring of answers: executor → host.
pub const ANSWERS: usize = 1;
/// Rings per region.
pub const RINGS: usize = 2;

/// Header word: `row + 1` while the UDF runs row `row` of the current batch,
/// 0 between batches. A host that gives up on a hung executor reads it to
/// name the row (and bounds-checks it against the batch).
pub const WORD_PROGRESS: usize = 0;

/// Header word: turns of an async executor's event loop, counted up. A
/// host whose batch timeout passes while this still moves leaves the
/// executor running (its rows time out one by one); a loop blocked by
/// synchronous code stops it, and the executor is stopped as a hung one.
pub const WORD_PULSE: usize = 1;

/// Header word: calls of the UDF so far (attempts, counting retries).
pub const WORD_ATTEMPTS: usize = 2;

/// Header word: calls of the UDF that were retries.
pub const WORD_RETRIES: usize = 3;
