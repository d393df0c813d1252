//! `coil` and the test binaries embed libpython too: the same checks and
//! rpath as coil-worker's.
include!("worker/build_python.rs");
