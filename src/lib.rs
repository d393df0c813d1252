//! The library behind the `coil` command line. The binary
//! (`src/bin/coil.rs`) parses the arguments ([`cli`]), calls one function
//! here per subcommand, and maps its error to a message and an exit code:
//!
//! - `coil run` ([`run`]): JSON Lines in and out, a failed row named by its
//!   line; with `--format arrow`, Arrow IPC ([`run_arrow`], over
//!   [`ipc_stream`]: streams and files in, a stream or a file out); rows
//!   that fail alone are recorded by [`failures`];
//! - `coil env` ([`env`](mod@env)): the embedded CPython, the environment, the
//!   modes, whether a UDF loads;
//! - `coil bench` ([`bench_command`] over [`bench`](mod@bench)): a UDF
//!   measured in every mode, and advice;
//! - `coil sql` ([`sql_command`]; with feature `sql`, `sql`: DataFusion
//!   with Python UDFs).
//!
//! The formats a host writes (coil's JSON of values, Arrow cells as JSON,
//! the dead-letter record) are `coil-host`'s, and the type names
//! `--returns` takes are `coil-proto`'s [`TypeName`](coil_proto::TypeName),
//! so that any host reads and writes the same. Test support for rings
//! across processes is in `coil-testkit`.
//!
//! # Examples
//!
//! ```
//! use coil::cli::Cli;
//! use clap::Parser;
//!
//! let cli = Cli::try_parse_from(["coil", "run", "--udf", "f.py:f", "--mode", "process"])?;
//! let coil::cli::Cmd::Run(run) = cli.command else { unreachable!() };
//! assert_eq!(run.common.config()?.execution_mode().to_string(), "process");
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod bench;
pub mod bench_command;
pub mod cli;
pub mod env;
pub mod failures;
pub mod ipc_stream;
pub mod output;
pub mod run;
pub mod run_arrow;
#[cfg(feature = "sql")]
pub mod sql;
pub mod sql_command;
