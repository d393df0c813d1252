//! Shared memory: an anonymous `memfd`, sealed against resizing, mapped with
//! `memmap2` and handed to a child process as an inherited descriptor.
//!
//! A memfd has no name, so nothing appears in `/dev/shm` and nothing can leak
//! when a process is killed: the memory is freed when the last descriptor and
//! mapping are gone. The seals (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`)
//! mean the peer cannot truncate the file under our mapping, which would turn
//! every later access into a `SIGBUS`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use super::{Backing, RegionCreateError, RegionOpenError};

/// The seals a region's memfd must carry.
pub(crate) const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// A sealed memfd and its shared mapping.
pub(crate) struct SharedMemory {
    // Field order: the mapping is dropped (unmapped) before the fd is closed.
    map: MmapRaw,
    fd: OwnedFd,
}

impl SharedMemory {
    /// Creates a zero-filled memfd of `len` bytes, seals it and maps it.
    pub(crate) fn create(len: usize) -> Result<Self, RegionCreateError> {
        let fd = memfd_create(
            c"coil-ring",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| RegionCreateError::Os {
            op: "memfd_create",
            source: e.into(),
        })?;
        let size = i64::try_from(len).map_err(|_| RegionCreateError::Alloc { size: len })?;
        nix::unistd::ftruncate(&fd, size).map_err(|e| RegionCreateError::Os {
            op: "ftruncate",
            source: e.into(),
        })?;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)).map_err(|e| RegionCreateError::Os {
            op: "seal",
            source: e.into(),
        })?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&fd)
            .map_err(|e| RegionCreateError::Os {
                op: "mmap",
                source: e,
            })?;
        Ok(SharedMemory { map, fd })
    }

    /// Maps a memfd made by [`SharedMemory::create`] in another process,
    /// refusing one that is not sealed against resizing.
    pub(crate) fn open(fd: OwnedFd) -> Result<Self, RegionOpenError> {
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|e| RegionOpenError::Os {
            op: "get seals",
            source: e.into(),
        })?;
        let seals = SealFlag::from_bits_truncate(seals);
        if !seals.contains(REQUIRED_SEALS) {
            return Err(RegionOpenError::NotSealed {
                seals: seals.bits() as u32,
            });
        }
        let stat = nix::sys::stat::fstat(&fd).map_err(|e| RegionOpenError::Os {
            op: "fstat",
            source: e.into(),
        })?;
        let len =
            usize::try_from(stat.st_size).map_err(|_| RegionOpenError::TooSmall { size: 0 })?;
        if len == 0 {
            return Err(RegionOpenError::TooSmall { size: 0 });
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&fd)
            .map_err(|e| RegionOpenError::Os {
                op: "mmap",
                source: e,
            })?;
        Ok(SharedMemory { map, fd })
    }
}

impl Backing for SharedMemory {
    fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}
