//! coil's records: the JSON a host writes of coil's values, of Arrow cells
//! and of rows that failed, so that every host (the `coil` CLI, an engine,
//! a program of its own) writes the same records.
//!
//! - [`json`]: coil's values as JSON and back (`coil run`'s JSON Lines):
//!   bytes as `{"$bytes": "<hex>"}`, NaN and infinities as `null`;
//! - [`arrow_json`]: an Arrow cell or row as JSON, temporal values in
//!   ISO 8601 and decimals as strings of digits;
//! - [`dead_letter`]: the record of a row that failed alone, as
//!   `python.fn-execution.on-error=dead-letter` writes it.

pub(crate) mod arrow_json;
pub(crate) mod dead_letter;
pub(crate) mod json;
