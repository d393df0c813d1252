//! Checks the Python coil-worker embeds and links an rpath to libpython.
include!("build_python.rs");
