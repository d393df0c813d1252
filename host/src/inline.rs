//! UDFs given by their Python source rather than a file: what a SQL
//! `CREATE FUNCTION ... AS $$ def f(x): ... $$` carries, or a definition
//! shipped to a machine that does not share the client's file system.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::UdfSpec;

/// Why a UDF's source could not be made loadable.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    /// The name is not a Python identifier (dotted names allowed:
    /// `Class.method`).
    #[error("{0:?} is not a Python name (a UDF's name is an identifier, or Class.method)")]
    BadName(String),
    /// The directory the source would go to is not this user's alone.
    #[error("UDF sources are kept in {}, which coil will not use: {why}", dir.display())]
    Unsafe {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The source could not be written where the executors load it from.
    #[error("writing the UDF's source to {}", path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A scalar UDF named `name` defined by Python `source` (a module's text:
/// `def slug(title): ...`, with its imports). The source is written once,
/// under the name of its SHA-256, to [`inline_dir`] (a directory private to
/// this user: mode 0700, owned by it, checked every time), and the spec
/// loads it from there like any `file.py:name`; the same source always
/// gives the same file, so every runner and executor of this user on a
/// machine shares it, and no other user can change it. Set the kind, paths and
/// types on the returned spec as usual. A syntax error in the source is the
/// runner's [`StartError::Load`](crate::StartError::Load), with its
/// traceback.
///
/// # Errors
///
/// [`InlineError`]: `name` is not a Python name, or the file could not be
/// written.
///
/// # Examples
///
/// ```
/// let spec = coil_host::udf_from_source("def slug(t):\n    return t.lower()\n", "slug")?;
/// assert!(spec.target.ends_with(".py:slug"));
/// # Ok::<(), coil_host::InlineError>(())
/// ```
pub fn udf_from_source(source: &str, name: &str) -> Result<UdfSpec, InlineError> {
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    if !name.split('.').all(identifier) {
        return Err(InlineError::BadName(name.to_string()));
    }
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dir = inline_dir();
    crate::private::private_dir(&dir).map_err(|why| InlineError::Unsafe {
        dir: dir.clone(),
        why,
    })?;
    let path = dir.join(format!("coil_udf_{hex}.py"));
    let write_err = |source| InlineError::Write {
        path: path.clone(),
        source,
    };
    let same = std::fs::read(&path).is_ok_and(|b| b == source.as_bytes());
    if !same {
        // Written whole under a name of its own, then renamed into place:
        // a reader never sees half a file, and writers of the same source
        // write the same bytes.
        let mut tmp = tempfile_in(&dir).map_err(write_err)?;
        tmp.1.write_all(source.as_bytes()).map_err(write_err)?;
        tmp.1.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp.0, &path).map_err(write_err)?;
    }
    Ok(UdfSpec::new(format!("{}:{name}", path.display())))
}

/// Where inline UDF sources are kept: `coil-udfs-<uid>` in
/// `$XDG_RUNTIME_DIR` (a directory of this user's own, where the system
/// provides one), else in the system's temporary directory (`TMPDIR`).
/// [`udf_from_source`] makes it with mode 0700 and refuses it unless this
/// user owns it and no one else may use it.
pub fn inline_dir() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("coil-udfs-{}", nix::unistd::geteuid()))
}

/// A new file in `dir` only this call writes (mode 0600).
fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".writing-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}
