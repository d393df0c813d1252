//! Every command in the README and `docs/` runs as written: the ones cheap
//! enough to run here are run; the rest are checked against the project
//! (a benchmark named must exist) or are CI's own steps.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The command lines of every ```sh block (continuations joined, trailing
/// `# comments` dropped), with the file they are in.
fn commands() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md"), root().join("benches/README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut inside = false;
        let mut pending = String::new();
        for line in text.lines() {
            if line.starts_with("```") {
                inside = line.trim() == "```sh";
                continue;
            }
            if !inside || line.trim().is_empty() {
                continue;
            }
            let line = line.split("  #").next().unwrap().trim_end();
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(line);
            let name = f.strip_prefix(root()).unwrap().display().to_string();
            out.push((name, std::mem::take(&mut pending).trim().to_string()));
        }
    }
    out
}

#[test]
fn every_command_in_the_docs_runs_or_names_something_that_exists() {
    let coil = env!("CARGO_BIN_EXE_coil");
    let cargo_toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let cmds = commands();
    assert!(cmds.len() >= 10, "found only {} commands", cmds.len());
    for (file, cmd) in cmds {
        if let Some(bench) = cmd.strip_prefix("cargo bench --bench ") {
            let bench = bench.split_whitespace().next().unwrap();
            assert!(
                root().join(format!("benches/{bench}.rs")).is_file(),
                "{file}: no bench {bench}"
            );
            assert!(
                cargo_toml.contains(&format!("name = \"{bench}\"")),
                "{file}: bench {bench} not in Cargo.toml"
            );
            continue;
        }
        if let Some(example) = cmd.strip_prefix("cargo run --release --example ") {
            let example = example.split_whitespace().next().unwrap();
            // Built by `cargo test`; run by .ci/run.
            assert!(
                root().join(format!("examples/{example}.rs")).is_file(),
                "{file}: no example {example}"
            );
            continue;
        }
        if ["cargo nextest run --workspace", "cargo build --release"]
            .iter()
            .any(|c| cmd.ends_with(c))
        {
            continue; // CI's own steps (the 3.12 build runs there too)
        }
        // Run it, with the `coil` this test was built with.
        let runnable = cmd
            .replace("cargo run -q --release --bin coil --", coil)
            .replace("cargo run --release --bin coil --", coil);
        assert!(
            !runnable.contains("cargo ") || runnable.starts_with("python3"),
            "{file}: add a rule for {cmd:?} to this test"
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&runnable)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: `{cmd}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
