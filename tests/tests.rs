//! coil's integration tests: one binary, one module per area.
//!
//! - `ipc_process`: rings between this process and a `coil-ring-peer` child
//!   (a million checksummed frames each way, killed and closed peers, a
//!   descriptor that is not a region).
//! - `process`: process-mode runners against plain Python, under faults
//!   (exit, SIGKILL, segfault, hang, garbage in the ring), from many threads,
//!   and at shutdown.
//! - `recovery`: replacements that die while starting are retried, then a
//!   clear error.
//! - `modes`: the in-process modes against process mode and plain Python;
//!   fallbacks, interruption, metrics.
//! - `subinterp`: sub-interpreter mode under load: the standard library in
//!   concurrent sub-interpreters, start/stop cycles, call-time fallback.
//! - `cli`: the `coil` command line (`run`, `bench`) and the example UDFs.
//! - `docs`: every command in the README and `docs/` runs as written.

mod cli;
mod docs;
mod ipc_process;
mod modes;
mod process;
mod recovery;
mod subinterp;
