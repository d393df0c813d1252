//! coil's integration tests: one binary, one module per area.
//!
//! - `ipc_process`: rings between this process and a `coil-ring-peer` child
//!   (a million checksummed frames each way, killed and closed peers, a
//!   descriptor that is not a region).

mod ipc_process;
