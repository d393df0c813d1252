//! Arrow for `coil bench`, under the names it has used: cells as JSON are
//! `coil-host`'s ([`coil_host::cell_to_json`]), reading is
//! [`ipc_stream`](crate::ipc_stream)'s.

pub use crate::ipc_stream::{read_batches as read_stream, result_schema};
pub use coil_host::{cell_to_json as json_at, row_to_json as row_json};
