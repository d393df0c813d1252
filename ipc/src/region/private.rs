//! Private memory: a zeroed, cache-line aligned heap allocation, for rings
//! between threads of one process.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use super::{Backing, RegionCreateError};

/// A zeroed heap block, freed on drop.
pub(crate) struct PrivateMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the block is plain bytes owned by this value; every access goes
// through raw pointers and atomics whose synchronisation is the ring's job,
// exactly as for memory shared with another process.
unsafe impl Send for PrivateMemory {}
// SAFETY: as above; `&PrivateMemory` only hands out the base pointer.
unsafe impl Sync for PrivateMemory {}

impl PrivateMemory {
    /// Allocates `len` zeroed bytes aligned to a page.
    pub(crate) fn new(len: usize) -> Result<Self, RegionCreateError> {
        let layout = Layout::from_size_align(len, 4096)
            .map_err(|_| RegionCreateError::Alloc { size: len })?;
        if layout.size() == 0 {
            return Err(RegionCreateError::Alloc { size: len });
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(RegionCreateError::Alloc { size: len })?;
        Ok(PrivateMemory { ptr, layout })
    }
}

impl Drop for PrivateMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this exact layout and is
        // freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Backing for PrivateMemory {
    fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}
