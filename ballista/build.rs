//! coil-scheduler and coil-executor embed libpython (they serve as their
//! own worker processes): the same checks and rpath as coil-worker's.
include!("../worker/build_python.rs");
