//! Noticing a dead peer without waiting out a long timeout.
//! (The model is documented in the crate docs, section "Dead peers".)

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Tells a waiting ring endpoint whether its peer is still alive.
///
/// Any `FnMut() -> bool + Send` closure is a `PeerWatch`.
pub trait PeerWatch: Send {
    /// Returns false once the peer is known to be gone for good.
    fn is_alive(&mut self) -> bool;
}

impl<F: FnMut() -> bool + Send> PeerWatch for F {
    fn is_alive(&mut self) -> bool {
        self()
    }
}

/// Watches a process through a pidfd: it reports death as soon as the
/// process exits, before it is reaped, and is not fooled by pid reuse.
///
/// # Examples
///
/// ```
/// use coil_ipc::{PeerWatch, PidWatch};
/// # fn main() -> std::io::Result<()> {
/// let mut child = std::process::Command::new("true").spawn()?;
/// let mut watch = PidWatch::new(child.id())?;
/// child.wait()?;
/// assert!(!watch.is_alive());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PidWatch {
    fd: OwnedFd,
}

impl PidWatch {
    /// Opens a pidfd for `pid`.
    ///
    /// # Errors
    ///
    /// The OS error from `pidfd_open(2)`, e.g. `ESRCH` when no such process
    /// exists (it may already have been reaped).
    pub fn new(pid: u32) -> std::io::Result<PidWatch> {
        Ok(PidWatch {
            fd: crate::sync::pidfd_open(pid)?,
        })
    }
}

impl PeerWatch for PidWatch {
    fn is_alive(&mut self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => true,
            Ok(_) => false,
            Err(nix::errno::Errno::EINTR) => true,
            Err(_) => false,
        }
    }
}

/// Watches the parent process: once it dies the child is re-parented and
/// `getppid()` changes.
#[derive(Debug, Clone, Copy)]
pub struct ParentWatch {
    parent: nix::unistd::Pid,
}

impl ParentWatch {
    /// Remembers the current parent.
    pub fn new() -> ParentWatch {
        ParentWatch {
            parent: nix::unistd::getppid(),
        }
    }
}

impl Default for ParentWatch {
    fn default() -> Self {
        ParentWatch::new()
    }
}

impl PeerWatch for ParentWatch {
    fn is_alive(&mut self) -> bool {
        nix::unistd::getppid() == self.parent
    }
}
