//! The row path: a batch of rows in coil's row codec, each row's arguments
//! decoded straight into Python objects, the UDF called on them (a table
//! UDF's generator run to its end), and each result encoded straight into
//! the answer's bytes. A vectorized UDF's row batch is in `vectorized.rs`.

use coil_ipc::{BatchDecoder, BatchEncoder, ByteSource};
use coil_proto::UdfKind;
use pyo3::prelude::*;

use super::{Args, Executor};
use crate::error::{bad_row, decode_err, enc_err, BatchError};
use crate::timing::Sampler;

impl Executor {
    /// Runs the batch in `input` and appends the encoded results (one row
    /// `[result]` per input row) to `out`. With `per_row`, a row that
    /// raises (or whose result coil cannot hold) does not stop the batch:
    /// it gets a null, and [`Executor::take_failures`] says why; a
    /// vectorized UDF whose call fails is then called again one row at a
    /// time, to find the rows that fail.
    ///
    /// # Errors
    ///
    /// [`BatchError`]; `out` then holds unspecified bytes after its original
    /// length.
    pub fn run_batch<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        input: &S,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        if self.is_async() {
            return self.run_to_end(py, None, Some(input), out, per_row);
        }
        self.failures.clear();
        let result = self.run_batch_inner(py, input, out, per_row);
        self.mark(None);
        self.publish_counts(py);
        // An interrupt that landed in a batch that ended on its error (or
        // one too late to land at all) is spent.
        self.was_interrupted();
        result
    }

    fn run_batch_inner<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        input: &S,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        let mut dec = BatchDecoder::new(input).map_err(|e| decode_err(None, e))?;
        let rows = dec.rows_remaining();
        let mut enc = BatchEncoder::new(out, rows as usize).map_err(|e| enc_err(None, e))?;
        match self.kind {
            UdfKind::VectorizedAggregate => {
                return Err(crate::error::bad_batch(
                    "a vectorized aggregate runs over column batches (Arrow), not rows",
                ))
            }
            UdfKind::Scalar | UdfKind::Table | UdfKind::Aggregate => {
                self.run_rows(py, &mut dec, &mut enc, rows, per_row)?
            }
            UdfKind::Vectorized => self.run_vectorized(py, &mut dec, &mut enc, rows, per_row)?,
        }
        dec.finish().map_err(|e| decode_err(None, e))
    }

    /// Runs the rows of a scalar, table or aggregate UDF one by one, so
    /// each Python object is freed (and its memory reused, still in cache)
    /// before the next is made. One argument buffer serves every row and
    /// no row's arguments or result are moved about: this loop is what a
    /// row costs beyond the call itself. Every `SAMPLE`-th row is timed in
    /// three parts; the batch's measured total is split in their
    /// proportions.
    fn run_rows<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        dec: &mut BatchDecoder<'_, S>,
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        rows: u32,
        per_row: bool,
    ) -> Result<(), BatchError> {
        let func = self.func.bind(py).clone();
        let table = self.kind == UdfKind::Table;
        let mut args = Args::new();
        let mut sampler = Sampler::new();
        for row in 0..rows {
            sampler.start(row);
            self.read_args_into(py, dec, row, &mut args)?;
            sampler.mark();
            self.mark(Some(row));
            let called = crate::interp::call_vectored(&func, &args);
            args.clear();
            let mark = enc.written();
            // The large error type is only built on a failure: each arm
            // answers `Result<(), _>`, so nothing big is moved per row.
            let done = match called {
                Ok(result) if table => {
                    let emitted = self.run_table(py, &result, row);
                    sampler.mark();
                    emitted.and_then(|items| {
                        enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                        crate::convert::put_emitted(enc, &items, row)
                    })
                }
                Ok(result) => {
                    sampler.mark();
                    enc.begin_row(1)
                        .map_err(|e| enc_err(Some(row), e))
                        .and_then(|()| {
                            crate::convert::put_py(enc, &result, 0)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        })
                }
                Err(e) => {
                    sampler.mark();
                    Err(self.raised(py, row, e))
                }
            };
            match done {
                Ok(()) => {}
                Err(e) if per_row => self.fail_row(enc, mark, row, e)?,
                Err(e) => return Err(e),
            }
            sampler.finish();
        }
        self.times = sampler.times();
        Ok(())
    }

    pub(super) fn read_args<'py, S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'py>,
        dec: &mut BatchDecoder<'_, S>,
        row: u32,
    ) -> Result<Args<'py>, BatchError> {
        let mut args = Args::new();
        self.read_args_into(py, dec, row, &mut args)?;
        Ok(args)
    }

    /// Reads row `row`'s arguments into `args`, which must be empty.
    #[inline]
    fn read_args_into<'py, S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'py>,
        dec: &mut BatchDecoder<'_, S>,
        row: u32,
        args: &mut Args<'py>,
    ) -> Result<(), BatchError> {
        let n = dec.begin_row().map_err(|e| decode_err(Some(row), e))?;
        for _ in 0..n {
            args.push(
                crate::convert::read_py(py, dec, &mut self.scratch, 0)
                    .map_err(|e| decode_err(Some(row), e))?,
            );
        }
        Ok(())
    }

    /// Runs a table UDF's result (a generator or iterable) to the end.
    pub(super) fn run_table<'py>(
        &self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        row: u32,
    ) -> Result<Vec<Bound<'py, PyAny>>, BatchError> {
        let iter = result.try_iter().map_err(|_| {
            bad_row(
                row,
                format!(
                    "a table UDF must return an iterable, got {}",
                    crate::convert::type_name(result)
                ),
            )
        })?;
        let mut emitted = Vec::new();
        for item in iter {
            emitted.push(item.map_err(|e| self.raised(py, row, e))?);
        }
        Ok(emitted)
    }
}
