//! A host application embedding coil: it streams generated product titles
//! through a Python UDF (`examples/udfs/clean.py:clean`) in the execution
//! mode given on the command line, and prints a few results and what the
//! runner measured.
//!
//! ```text
//! cargo run --release --example embed -- process
//! cargo run --release --example embed -- sub-interpreter
//! ```
//!
//! The program is also its own worker: in `process` mode the runner spawns
//! it again with `worker ...` arguments, which it hands to coil. A host that
//! ships the `coil-worker` binary next to itself can use `Runner::new`
//! instead.

use std::process::ExitCode;

use anyhow::Context;
use coil_host::ipc::Value;
use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return coil_worker::worker_main(args.into_iter().skip(1));
    }
    match run(args.first().map_or("process", String::as_str)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: &str) -> anyhow::Result<()> {
    let config = Config::builder()
        .set("python.execution-mode", mode)?
        .set("python.worker-count", "2")?
        .set("python.fn-execution.bundle.size", "500")?
        .build();
    let udf = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/udfs/clean.py:clean");
    let spec = UdfSpec::new(udf).kind(UdfKind::Scalar);
    let me = WorkerCommand::new(std::env::current_exe()?).arg("worker");
    let runner = Runner::with_worker_command(&config, spec, me).context("starting the runner")?;

    let titles = [
        "  Ünïque   KETTLE ",
        "smart\u{3000}Lamp",
        "Ｆｕｌｌｗｉｄｔｈ  Chair",
        "  café\tBackpack",
    ];
    let mut stream = runner.stream();
    let mut results = Vec::new();
    for i in 0..100_000 {
        stream.push(vec![Value::Str(format!(
            "{} #{i}",
            titles[i % titles.len()]
        ))]);
        while let Some(r) = stream.try_pull() {
            results.push(r?);
        }
    }
    stream.flush();
    for r in stream.by_ref() {
        results.push(r?);
    }
    drop(stream);

    for (i, r) in results.iter().take(4).enumerate() {
        println!(
            "{:?} -> {r:?}",
            format!("{} #{i}", titles[i % titles.len()])
        );
    }
    let m = runner.metrics();
    let per_row = |d: std::time::Duration| d.as_nanos() as f64 / m.rows_out.max(1) as f64;
    println!(
        "{} rows in {} mode ({} batches, {} errors); per row: {:.0} ns Python, {:.0} ns codec, {:.0} ns transport",
        m.rows_out,
        runner.mode(),
        m.batches,
        m.errors,
        per_row(m.python),
        per_row(m.codec()),
        per_row(m.transport)
    );
    anyhow::ensure!(
        results.len() == 100_000,
        "{} results for 100000 rows",
        results.len()
    );
    anyhow::ensure!(
        results[0] == Value::Str("ünïque kettle #0".into()),
        "unexpected {:?}",
        results[0]
    );
    Ok(())
}
