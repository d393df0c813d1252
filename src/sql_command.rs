//! `coil sql` from its flags (the SQL itself is `crate::sql`'s, built with
//! feature `sql`). A coil built without it runs `coil-sql`, the same
//! command line built with it, found beside its own program.

#[cfg(feature = "sql")]
use std::io::Read;
use std::path::{Path, PathBuf};

#[cfg(not(feature = "sql"))]
use anyhow::bail;
use anyhow::Context;
#[cfg(feature = "sql")]
use coil_host::WorkerCommand;

use crate::cli::SqlArgs;

/// `coil sql` with DataFusion: the statements run, their rows printed or
/// written to `--output`.
///
/// # Errors
///
/// Flags refused, SQL that cannot be read or run.
#[cfg(feature = "sql")]
pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let config = args.common.config()?;
    let sql = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the SQL from standard input")?;
            s
        }
    };
    let job = crate::sql::SqlJob {
        sql,
        udfs: args
            .udf
            .iter()
            .map(|u| crate::sql::parse_udf(u))
            .collect::<anyhow::Result<_>>()?,
        config,
        output: args.output,
        worker: WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
            .arg("worker"),
        partitions: args.partitions,
        cluster: args
            .cluster
            .map(|url| crate::sql::Cluster { url, tls: args.tls }),
    };
    let mut out = std::io::BufWriter::new(crate::output::results());
    crate::sql::run(&job, &mut out)?;
    std::io::Write::flush(&mut out).context("writing the results")
}

/// The program that runs `coil sql` for a coil built without SQL: the
/// `coil-sql` beside `exe` (the same command line, built with feature
/// `sql`), so that the README's first build need not compile DataFusion
/// and docs/sql.md's build adds SQL without replacing it.
pub fn sql_program(exe: &Path) -> PathBuf {
    exe.with_file_name("coil-sql")
}

/// What `coil sql` says when this coil has no SQL and `program` (where
/// `coil-sql` would be) is missing.
pub fn no_sql_message(program: &Path) -> String {
    format!(
        "this coil was built without SQL (DataFusion takes 15-20 minutes to build) and \
         {} is missing, which runs `coil sql` for it; build it with: \
         cargo build --release --features sql --bin coil-sql",
        program.display()
    )
}

/// `coil sql` in a build without DataFusion: runs the `coil-sql` beside
/// this program with the same arguments (`args`, after the program's
/// name; `_parsed` is the same, read), in this process's place.
///
/// # Errors
///
/// `coil-sql` is missing ([`no_sql_message`]) or cannot be run.
#[cfg(not(feature = "sql"))]
pub fn sql(
    _parsed: SqlArgs,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the coil program")?;
    let program = sql_program(&exe);
    if !program.is_file() {
        bail!(no_sql_message(&program));
    }
    let error = std::process::Command::new(&program).args(args).exec();
    Err(error).with_context(|| format!("running {}", program.display()))
}

/// `coil sql` in a build with DataFusion: [`run`].
///
/// # Errors
///
/// As [`run`].
#[cfg(feature = "sql")]
pub fn sql(
    parsed: SqlArgs,
    _args: impl IntoIterator<Item = std::ffi::OsString>,
) -> anyhow::Result<()> {
    run(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_sql_coil_sql_is_looked_for_beside_coil_and_its_build_named() {
        let program = sql_program(Path::new("/opt/coil/bin/coil"));
        assert_eq!(program, Path::new("/opt/coil/bin/coil-sql"));
        let message = no_sql_message(&program);
        assert!(
            message.contains("/opt/coil/bin/coil-sql is missing"),
            "{message}"
        );
        assert!(
            message.ends_with("cargo build --release --features sql --bin coil-sql"),
            "{message}"
        );
    }
}
