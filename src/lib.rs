//! The library behind the `coil` command line: JSON Lines to rows and back
//! ([`json`]), Arrow IPC streams' type names and values ([`arrow`]), and
//! `coil bench`, which measures a UDF in every execution mode and advises
//! one ([`bench`](mod@bench)), and, with feature `sql`, `coil sql`
//! (`sql`: DataFusion with Python UDFs). The `coil` binary only parses
//! arguments, calls these, and maps errors to exit codes.
//!
//! The product's API is `coil-host` (with `coil-ipc` and `coil-worker`
//! beneath it); this library serves the CLI alone. Test support for rings
//! across processes is in `coil-testkit`.
//!
//! # Examples
//!
//! ```
//! use coil::json;
//! use coil_ipc::Value;
//!
//! let row = json::parse_args(r#"[41, "é", null]"#).map_err(anyhow::Error::msg)?;
//! assert_eq!(row, vec![Value::Int(41), Value::Str("é".into()), Value::Null]);
//! assert_eq!(json::to_json(&Value::Bytes(vec![0, 255])).to_string(), r#"{"$bytes":"00ff"}"#);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod arrow;
pub mod bench;
pub mod json;
#[cfg(feature = "sql")]
pub mod sql;
