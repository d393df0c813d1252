//! Every command in the README and `docs/` runs as written: the ones cheap
//! enough to run here are run; the rest are checked against the project
//! (a benchmark named must exist) or are CI's own steps.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `PREFIX [--features F] [-p PACKAGE] FLAG TARGET ...` as `(PACKAGE, TARGET)`, e.g.
/// `cargo bench -p coil-testkit --bench ring` with prefix `cargo bench` and
/// flag `--bench`.
fn target_of<'a>(cmd: &'a str, prefix: &str, flag: &str) -> Option<(Option<&'a str>, &'a str)> {
    let mut words = cmd.strip_prefix(prefix)?.split_whitespace();
    let mut word = words.next()?;
    let mut package = None;
    if word == "--features" {
        words.next()?;
        word = words.next()?;
    }
    if word == "-p" {
        package = Some(words.next()?);
        word = words.next()?;
    }
    (word == flag).then_some(())?;
    Some((package, words.next()?))
}

/// The directory of the workspace package `-p` names (the root's when none
/// is named).
fn package_dir(package: Option<&str>) -> PathBuf {
    let Some(name) = package else {
        return root().to_path_buf();
    };
    let mut dirs = vec![root().to_path_buf()];
    dirs.extend(
        std::fs::read_dir(root())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|d| d.join("Cargo.toml").is_file()),
    );
    dirs.into_iter()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .unwrap()
                .contains(&format!("name = \"{name}\""))
        })
        .unwrap_or_else(|| panic!("no workspace package {name}"))
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

/// The names of the integration tests' functions.
fn test_names() -> Vec<String> {
    std::fs::read_dir(root().join("tests"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("fn "))
                .filter_map(|l| l.split('(').next())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `name` matches a nextest filter regex of literal parts joined
/// by `.*` (the only kind the docs use).
fn matches_filter(name: &str, filter: &str) -> bool {
    let mut rest = name;
    for part in filter.split(".*") {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn every_command_in_the_docs_runs_or_names_something_that_exists() {
    let coil = env!("CARGO_BIN_EXE_coil");
    let cmds = commands();
    assert!(cmds.len() >= 10, "found only {} commands", cmds.len());
    for (file, cmd) in cmds {
        if let Some((package, bench)) = target_of(&cmd, "cargo bench", "--bench") {
            let dir = package_dir(package);
            assert!(
                dir.join(format!("benches/{bench}.rs")).is_file(),
                "{file}: no bench {bench} in {}",
                dir.display()
            );
            let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert!(
                cargo_toml.contains(&format!("name = \"{bench}\"")),
                "{file}: bench {bench} not in {}/Cargo.toml",
                dir.display()
            );
            continue;
        }
        if let Some((package, example)) = target_of(&cmd, "cargo run --release", "--example") {
            let dir = package_dir(package);
            // Built by `cargo test`; run by .ci/run.
            assert!(
                dir.join(format!("examples/{example}.rs")).is_file(),
                "{file}: no example {example} in {}",
                dir.display()
            );
            continue;
        }
        if let Some(filter) = cmd
            .strip_prefix("cargo nextest run")
            .and_then(|rest| rest.split("-E 'test(/").nth(1))
            .and_then(|rest| rest.split("/)'").next())
        {
            // Tests too long for every run: the filter must name some.
            assert!(
                test_names().iter().any(|n| matches_filter(n, filter)),
                "{file}: no test matches {filter:?}"
            );
            continue;
        }
        if [
            "cargo nextest run --workspace",
            "cargo build --release",
            "tools/test",
        ]
        .iter()
        .any(|c| cmd.ends_with(c))
        {
            continue; // CI's own steps (the 3.12 build and the tests run there)
        }
        if cmd.contains("--features sql") && !cfg!(feature = "sql") {
            continue; // `coil sql`: run when the tests are built with it
        }
        // Run it, with the `coil` this test was built with; charts go to a
        // scratch directory, not over the ones the docs show.
        let scratch = std::env::temp_dir().join(format!("coil-docs-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let runnable = cmd
            .replace("cargo run -q --release --bin coil --", coil)
            .replace("cargo run --release --bin coil --", coil)
            .replace("cargo run -q --release --features sql --bin coil --", coil)
            .replace("cargo run --release --features sql --bin coil --", coil)
            .replace(
                "cargo run -q --release --features sql --bin coil-sql --",
                coil,
            )
            .replace("cargo run --release --features sql --bin coil-sql --", coil)
            .replace("--plot /tmp/", &format!("--plot {}/", scratch.display()));
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
