//! coil's integration tests: one binary, one module per area.
//!
//! - `ipc_process`: rings between this process and a `coil-ring-peer` child
//!   (a million checksummed frames each way, killed and closed peers, a
//!   descriptor that is not a region).
//! - `process`: process-mode runners against plain Python, under faults
//!   (exit, SIGKILL, segfault, hang, garbage in the ring), from many threads,
//!   and at shutdown.
//! - `cli`: the `coil` command line.

mod cli;
mod ipc_process;
mod modes;
mod process;
