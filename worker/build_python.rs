// Shared by the build scripts of coil-worker and the root package: refuse a
// Python older than 3.12, and link an rpath to libpython so binaries run
// without LD_LIBRARY_PATH.

fn main() {
    let cfg = pyo3_build_config::get();
    let v = cfg.version();
    if (v.major, v.minor) < (3, 12) {
        panic!(
            "coil needs CPython >= 3.12 (found {}.{} at {:?}); set PYO3_PYTHON to a newer interpreter",
            v.major,
            v.minor,
            cfg.executable()
        );
    }
    // coil embeds CPython: binaries link libpython and load it at run time.
    // A static-only build (no --enable-shared) would leave every program
    // of the workspace without the interpreter it needs.
    if !cfg.shared() {
        panic!(
            "coil embeds CPython through a shared libpython, but {} (CPython {}.{}{}) was built \
             without one (configure --enable-shared); set PYO3_PYTHON to an interpreter that has it \
             (tools/python for the GIL build, tools/python-ft for the free-threaded one)",
            cfg.executable().unwrap_or("the interpreter PYO3_PYTHON names"),
            v.major,
            v.minor,
            if cfg.is_free_threaded() { "t" } else { "" }
        );
    }
    // The interpreter built against: `python.requirements` makes its
    // virtual environments with it, and `python.executable` must match its
    // version.
    println!(
        "cargo:rustc-env=COIL_PYTHON_EXECUTABLE={}",
        cfg.executable().unwrap_or_default()
    );
    // "3.14t" for a free-threaded build: its compiled modules and the GIL
    // build's are not interchangeable, so a `python.executable` must match
    // this whole tag, not only the version.
    println!(
        "cargo:rustc-env=COIL_PYTHON_VERSION={}.{}{}",
        v.major,
        v.minor,
        if cfg.is_free_threaded() { "t" } else { "" }
    );
    pyo3_build_config::add_libpython_rpath_link_args();
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::print_expected_cfgs();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
