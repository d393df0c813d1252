//! `coil-sql`: the `coil` command line built with feature `sql`
//! (DataFusion), as `cargo build --release --features sql --bin coil-sql`
//! builds it. A `coil` built without the feature runs this program for
//! `coil sql`, so the README's first build never compiles DataFusion and
//! docs/sql.md's build never replaces that `coil`.

#[path = "coil.rs"]
mod coil_main;

fn main() -> std::process::ExitCode {
    coil_main::main()
}
