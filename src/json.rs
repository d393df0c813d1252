//! `coil run`'s JSON Lines: coil's values as JSON and back. The mapping is
//! `coil-host`'s ([`coil_host::value_to_json`] and friends), so that any
//! host writes the same JSON; these are its names in the CLI.

pub use coil_host::{
    args_from_json as parse_args, value_from_json as to_value, value_to_json as to_json,
};
