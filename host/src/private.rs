//! Where coil keeps files it later imports or runs (inline UDF sources,
//! Python environments): only in directories no other user can write, so
//! another user on the machine cannot swap in code that coil would run as
//! the user running it (docs/architecture.md, "Files coil runs").

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Why a directory cannot hold files coil imports or runs.
fn unsafe_because(dir: &Path, private: bool) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot inspect it: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Some("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Some("it is not a directory".into());
    }
    if meta.uid() != me {
        return Some(format!(
            "it belongs to user {} (this process runs as {me}): another user could change what coil imports from it",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    let others = if private { 0o077 } else { 0o022 };
    if mode & others != 0 {
        return Some(format!(
            "its mode is {mode:03o}: {} could change what coil imports from it (chmod {} it)",
            if private {
                "other users"
            } else {
                "other users or the group"
            },
            if private { "700" } else { "go-w" }
        ));
    }
    None
}

/// Makes `dir` (mode 0700) if it does not exist, its parents as usual,
/// and checks that it is this user's alone: owned by the effective user,
/// not a symbolic link, with no permission for group or others.
///
/// # Errors
///
/// Why it cannot hold code coil runs, in words.
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    unsafe_because(dir, true).map_or(Ok(()), Err)
}

/// Makes `dir` and its parents if needed and checks that no other user
/// can write it: owned by the effective user, not a symbolic link, not
/// writable by group or others (others may read it: an environment cache
/// shared read-only is fine).
///
/// # Errors
///
/// Why it cannot hold code coil runs, in words.
pub(crate) fn owned_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    unsafe_because(dir, false).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_directory_of_this_user_that_no_one_else_writes_is_accepted() {
        let base = std::env::temp_dir().join(format!("coil-private-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mine = base.join("mine");
        private_dir(&mine).unwrap();
        assert_eq!(std::fs::metadata(&mine).unwrap().mode() & 0o777, 0o700);
        // Opened up to others: refused, saying how to fix it.
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&mine).unwrap_err();
        assert!(
            e.contains("its mode is 777") && e.contains("chmod 700"),
            "{e}"
        );
        let e = owned_dir(&mine).unwrap_err();
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).unwrap();
        owned_dir(&mine).unwrap();
        assert!(
            private_dir(&mine).is_err(),
            "readable by others is not private"
        );
        // A symbolic link to our own directory: refused all the same.
        let link = base.join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        assert!(private_dir(&link).unwrap_err().contains("symbolic link"));
        // Another user's directory (as root, the tests can make one).
        if nix::unistd::geteuid().is_root() {
            let theirs = base.join("theirs");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&theirs)
                .unwrap();
            std::os::unix::fs::chown(&theirs, Some(54321), Some(54321)).unwrap();
            let e = private_dir(&theirs).unwrap_err();
            assert!(e.contains("belongs to user 54321"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
