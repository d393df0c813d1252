//! `coil bench` from its flags: the input read, the plan made, the report
//! printed (the measuring is [`crate::bench`]'s).

use std::io::IsTerminal;

use anyhow::Context;
use coil_host::{UdfKind, WorkerCommand};
use coil_proto::TypeName;

use crate::cli::{config_of, BenchArgs, Format};
use crate::run::udf_spec;

/// `spec` with what the UDF's annotations say where the flags are silent,
/// read as `coil run` reads them ([`crate::run::start`]): the kind
/// (vectorized when the annotations name columns) and, under `--format
/// arrow`, the result type. Every mode is then measured on the same spec.
///
/// # Errors
///
/// The UDF does not load, or `--format arrow` has no result type from
/// either `--returns` or an annotation.
fn resolved(
    config: &coil_host::Config,
    spec: coil_host::UdfSpec,
    asked: Option<UdfKind>,
    args: &BenchArgs,
    worker: WorkerCommand,
) -> anyhow::Result<coil_host::UdfSpec> {
    let needs_type = args.format == Format::Arrow && spec.returns.is_none();
    if asked.is_some() && !needs_type {
        return Ok(spec);
    }
    // One executor is enough to read the annotations.
    let mut probe = config.clone();
    probe.set(coil_host::WORKER_COUNT, "1")?;
    let runner = crate::run::start(&probe, spec.clone(), asked, worker)?;
    let read = runner.spec();
    // The kind as the annotations say; the result type only where it is
    // needed (JSON Lines results are not declared, as in `coil run`).
    let spec = match args.format {
        Format::Arrow => coil_host::UdfSpec {
            returns: spec.returns.clone().or_else(|| read.returns.clone()),
            ..spec.kind(read.kind)
        },
        Format::Jsonl => spec.kind(read.kind),
    };
    if args.format == Format::Arrow && spec.returns.is_none() {
        return Err(crate::run::UsageError(format!(
            "--format arrow needs --returns <TYPE>, the type of the result column, \
             as {} has no return annotation coil reads: one of {}",
            args.udf,
            TypeName::forms()
        ))
        .into());
    }
    Ok(spec)
}

/// `coil bench`: reads the input, measures the UDF in each mode and
/// directly, prints the report (and writes its JSON and chart if asked).
///
/// # Errors
///
/// Flags refused, an input that cannot be read, a UDF that does not start,
/// modes that disagree, a report that cannot be written.
pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let mut config = config_of(&args.conf)?;
    if let Some(n) = &args.workers {
        config.set(coil_host::WORKER_COUNT, n)?;
    }
    let modes = args
        .modes
        .iter()
        .map(|m| {
            m.parse::<coil_host::ExecutionMode>()
                .map_err(|valid| anyhow::anyhow!("unknown mode {m:?}: expected {valid}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let asked: Option<UdfKind> = args.kind.as_deref().map(str::parse).transpose()?;
    let spec = udf_spec(
        &args.udf,
        asked.unwrap_or(UdfKind::Scalar),
        args.format,
        args.returns.as_ref().map(TypeName::data_type),
    )?;
    let worker = WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
        .arg("worker");
    let spec = resolved(&config, spec, asked, args, worker.clone())?;
    let input = match args.format {
        Format::Jsonl => crate::bench::BenchInput::Rows(crate::bench::read_rows(&args.input)?),
        Format::Arrow => crate::bench::BenchInput::Arrow(crate::ipc_stream::read_batches(
            &args.input,
            config.max_message_size(),
        )?),
    };
    if config.get(coil_host::BUNDLE_SIZE).is_none() {
        let bundle = crate::bench::bundle_for(input.rows(), config.worker_count());
        config.set(coil_host::BUNDLE_SIZE, &bundle.to_string())?;
    }
    let mut spec = spec;
    // The direct run imports from the same environment as the runners.
    if let Some(env) = coil_host::resolve_environment(&config)? {
        spec.sys_path = env.sys_path;
        spec.site_dirs = env.site_dirs;
    }
    let plan_config = config.clone();
    let plan = crate::bench::BenchPlan {
        spec,
        config,
        modes: modes.clone(),
        repeat: args.repeat,
        worker,
    };
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new((1 + modes.len() * args.repeat.max(1)) as u64).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs {msg}")
                .expect("a valid template"),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = crate::bench::run(&plan, &input, |what| {
        progress.set_message(what.to_string());
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    print!("{}", report.table());
    println!("\nMemory limit: {}", crate::env::memory_limit(&plan_config));
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report.to_json())? + "\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        report
            .plot(path)
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(())
}
