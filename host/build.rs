//! coil-host embeds libpython for the in-process modes: the same checks and
//! rpath as coil-worker's, for its own test binaries.
include!("../worker/build_python.rs");
