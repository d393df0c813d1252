//! `coil sql` from its flags (the SQL itself is `crate::sql`'s, built with
//! feature `sql`).

#[cfg(feature = "sql")]
use std::io::Read;

#[cfg(not(feature = "sql"))]
use anyhow::bail;
#[cfg(feature = "sql")]
use anyhow::Context;
#[cfg(feature = "sql")]
use coil_host::WorkerCommand;

use crate::cli::SqlArgs;

/// `coil sql`: the statements run on DataFusion, their rows printed or
/// written to `--output`.
///
/// # Errors
///
/// Flags refused, SQL that cannot be read or run.
#[cfg(feature = "sql")]
pub fn sql(args: SqlArgs) -> anyhow::Result<()> {
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
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    crate::sql::run(&job, &mut out)
}

/// `coil sql` in a build without DataFusion.
///
/// # Errors
///
/// Always: this build has no SQL.
#[cfg(not(feature = "sql"))]
pub fn sql(_args: SqlArgs) -> anyhow::Result<()> {
    bail!(
        "this coil was built without SQL (DataFusion takes 15-20 minutes to build); \
         build it with: cargo build --release --features sql --bin coil"
    )
}
