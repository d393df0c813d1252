//! Output files that appear whole or not at all.
//!
//! A run that fails part way must not leave a complete-looking file with
//! some of its rows, nor destroy the good file that was there: a pipeline
//! that checks the file and not the exit code would load partial data.
//! So `coil run --output` and `coil sql --output` write beside the target,
//! under a hidden temporary name in the same directory, and rename it
//! into place only when the run has written everything; a run that stops
//! removes it, and the old file stays as it was.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Standard output as [`claim_stdout`] left it: the results' own
/// descriptor.
static RESULTS: std::sync::OnceLock<File> = std::sync::OnceLock::new();

/// Keeps standard output for the results alone: moves it to a new
/// descriptor that is closed on exec, and points descriptor 1 at standard
/// error. A program a UDF starts (or a fork of it) then inherits stderr
/// where stdout was, so it can neither write into the results nor hold
/// them open after coil ends (`coil run ... | wc -l` returns when coil
/// does), and a C extension that prints to descriptor 1 writes to the log.
/// Call it once, early, before threads or workers start; [`results`]
/// writes to the descriptor kept.
///
/// # Errors
///
/// The descriptors cannot be duplicated.
pub fn claim_stdout() -> std::io::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    if RESULTS.get().is_some() {
        return Ok(());
    }
    let kept = std::io::stdout().as_fd().try_clone_to_owned()?;
    // try_clone_to_owned duplicates with FD_CLOEXEC set.
    let stderr = std::io::stderr();
    nix::unistd::dup2_stdout(stderr.as_fd()).or_else(|_| {
        let null = File::open("/dev/null")?;
        nix::unistd::dup2_stdout(null.as_fd()).map_err(std::io::Error::from)
    })?;
    debug_assert!(kept.as_raw_fd() > 2);
    let _ = RESULTS.set(File::from(kept));
    Ok(())
}

/// Where results printed to standard output go: the descriptor
/// [`claim_stdout`] kept, or standard output itself.
pub fn results() -> Box<dyn std::io::Write + Send> {
    match RESULTS.get().and_then(|f| f.try_clone().ok()) {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stdout()),
    }
}

/// Whether the results go to a regular file (and so may be written in
/// large pieces).
pub fn results_are_a_file() -> bool {
    use std::os::fd::AsFd;
    let fd = match RESULTS.get() {
        Some(f) => f.as_fd().try_clone_to_owned(),
        None => std::io::stdout().as_fd().try_clone_to_owned(),
    };
    fd.ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|m| m.is_file())
}

/// An output being written: a temporary file beside its target, removed
/// when dropped unless [`Pending::commit`] renamed it into place.
#[derive(Debug)]
pub struct Pending {
    temp: tempfile::TempPath,
    target: PathBuf,
}

impl Pending {
    /// Starts the output `target`: an empty temporary file beside it
    /// (`.NAME.coil-XXXXXX`, with the permissions a new file would get),
    /// and that file open for writing.
    ///
    /// # Errors
    ///
    /// The directory cannot take a new file.
    pub fn new(target: &Path) -> anyhow::Result<(Pending, File)> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .with_context(|| format!("{}: not a file name", target.display()))?
            .to_string_lossy();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}.coil-"))
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "creating {} (beside it, until it is whole)",
                    target.display()
                )
            })?;
        let (file, temp) = file.into_parts();
        Ok((
            Pending {
                temp,
                target: target.to_owned(),
            },
            file,
        ))
    }

    /// Where the output is written until it is whole.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Renames the finished output into place, replacing what was there.
    ///
    /// # Errors
    ///
    /// The rename failed (the temporary file is then removed).
    pub fn commit(self) -> anyhow::Result<()> {
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| e.error)
            .with_context(|| {
                format!(
                    "moving the finished output into place at {}",
                    target.display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_output_appears_on_commit_and_the_old_file_stays_otherwise() {
        let dir = std::env::temp_dir().join(format!("coil-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.jsonl");
        std::fs::write(&target, "old\n").unwrap();

        // A run that stops: the old file stays, nothing else is left.
        let (pending, mut file) = Pending::new(&target).unwrap();
        file.write_all(b"half").unwrap();
        assert!(pending.path().starts_with(&dir));
        drop(pending);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // A run that ends: the new file, whole, with a new file's mode.
        let (pending, mut file) = Pending::new(&target).unwrap();
        file.write_all(b"new\n").unwrap();
        pending.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
