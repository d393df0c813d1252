//! coil's integration tests: one binary, one module per area.
//!
//! - `util`: what the others share: runners over the `coil` binary's
//!   worker mode, plain Python's answers to compare with, and `/proc` scans
//!   for child processes and ring descriptors.
//! - `process`: process-mode runners against plain Python, under faults
//!   (exit, SIGKILL, segfault, hang, garbage in the ring), from many threads,
//!   and at shutdown.
//! - `on_error`: `python.fn-execution.on-error`: rows that fail alone, in
//!   every mode, on the host API and in `coil run`.
//! - `recovery`: replacements that die while starting are retried, then a
//!   clear error.
//! - `soak`: long streams while workers are killed, segfault and hang,
//!   over and over (small counts here, the full ones `#[ignore]`d).
//! - `env`: Python environments (`python.requirements`,
//!   `python.executable`), their errors, `coil env`.
//! - `free_threaded`: a coil built against a free-threaded CPython: the
//!   GIL off in multi-thread mode, extensions that turn it back on, the
//!   stdlib stress and faults on 2 and 4 executor threads.
//! - `limits`: `python.worker.memory-limit`: a UDF that takes too much
//!   memory fails its rows, and the host lives.
//! - `modes`: the in-process modes against process mode and plain Python;
//!   fallbacks, interruption, metrics.
//! - `subinterp`: sub-interpreter mode under load: the standard library in
//!   concurrent sub-interpreters, start/stop cycles, call-time fallback.
//! - `aggregate`: aggregates through the runner API (accumulator classes,
//!   vectorized aggregates), in every mode, with failures and a killed
//!   worker.
//! - `asynchronous`: async UDFs (concurrency across batches, per-call
//!   timeouts), retries with back-off and `coil.RetryAfter`, the shared
//!   rate limit, against a real HTTP server on 127.0.0.1.
//! - `arrow`: `Runner::call_arrow`, Arrow columns in and out, in every
//!   mode.
//! - `cli`: the `coil` command line (`run`, `bench`) and the example UDFs.
//! - `options`: configuration keys as users write them (units, `cores`,
//!   paths that must exist, keys spelled the SQL way).
//! - `sql` (feature `sql`): Python UDFs in DataFusion SQL (coil-datafusion)
//!   and `coil sql`.
//! - `sql_kinds` (feature `sql`): aggregates, window and table functions
//!   in SQL, against plain Rust's answers.
//! - `views`: columns without copies: the views a vectorized UDF gets
//!   (read-only, alive as long as the UDF keeps them), the in-process
//!   hand-off, results read in place.
//! - `docs`: every command in the README and `docs/` runs as written.
//!
//! Rings between this process and a peer process (no Python) are tested in
//! `testkit/tests/ipc_process.rs`, beside the `coil-ring-peer` program they
//! spawn.

mod aggregate;
mod arrow;
mod asynchronous;
mod cli;
mod docs;
mod env;
mod free_threaded;
mod leftovers;
mod limits;
mod modes;
mod on_error;
mod options;
mod process;
mod recovery;
mod soak;
#[cfg(feature = "sql")]
mod sql;
#[cfg(feature = "sql")]
mod sql_cluster;
#[cfg(feature = "sql")]
mod sql_failures;
#[cfg(feature = "sql")]
mod sql_kinds;
mod subinterp;
mod util;
mod views;
