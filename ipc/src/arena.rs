//! Arenas: shared memory for column buffers, beside a region's rings.
//!
//! A ring frame is copied in and copied out; a column of 65,536 values
//! copied that way costs more than the UDF's own pass over it. An arena is
//! a second sealed memfd shared by the same two processes, in two halves:
//! [`Half::Requests`], where the host places a batch's buffers for the
//! worker, and [`Half::Answers`], where the worker places its results for
//! the host. Each half is cut into slots of [`Arena::SLOT`] bytes, with one
//! state word per slot (0: free). The side that writes a half allocates in
//! it ([`Arena::place`]: a run of free slots, the bytes copied in, the
//! offset returned to send in a frame); the side that reads it takes the
//! run ([`Arena::claim`], every offset and length checked against the half)
//! and frees it by dropping the [`Claim`], when the last array over the
//! bytes is gone. So a buffer is copied once on its way, and read in place.
//!
//! The arena is bounded: a half with no free run refuses the bytes
//! (`place` gives `None`) and the caller sends them in the frame as before,
//! so a peer that never lets go of its runs (a UDF keeping every input
//! array) slows down, and never deadlocks or grows memory.
//!
//! Trust: the state words and both halves are memory the peer can write at
//! any time. Nothing here reads a state word as more than "free or not",
//! `claim` checks every offset and length before it hands out a pointer,
//! and what a run holds is the caller's to validate: coil reads fixed-width
//! values in place (every bit pattern is a value) and copies anything whose
//! bytes say where other bytes are (offsets) out first.

use std::os::fd::{OwnedFd, RawFd};
use std::process::Command;
use std::sync::Arc;

use crate::region::shared::SharedMemory;
use crate::region::{Backing, RegionCreateError, RegionOpenError};
use crate::sync::{ArenaOrdering as Ordering, ArenaWord as AtomicU32};

/// The first eight bytes of an arena.
const ARENA_MAGIC: u64 = u64::from_le_bytes(*b"coilarna");
/// Bytes before the state words: magic, slot size, slots per half.
const HEADER: usize = 64;

/// One half of an [`Arena`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// Batches' buffers, host to worker: the host places, the worker claims.
    Requests,
    /// Results' buffers, worker to host: the worker places, the host claims.
    Answers,
}

impl Half {
    fn index(self) -> usize {
        match self {
            Half::Requests => 0,
            Half::Answers => 1,
        }
    }
}

/// Why a run could not be claimed: the peer's offset or length is not a
/// run of the half.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a buffer of {len} bytes at offset {offset} is not a run of an arena half of {half_len} bytes"
)]
pub struct ClaimError {
    /// The offset given.
    pub offset: u64,
    /// The length given.
    pub len: u64,
    /// The half's size.
    pub half_len: u64,
}

struct Inner {
    mem: SharedMemory,
    /// Slots per half.
    slots: usize,
}

/// Shared memory for column buffers, in two halves; see the module docs.
///
/// # Examples
///
/// ```
/// use coil_ipc::{Arena, Half};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let arena = Arena::create_shared(1 << 20)?;
/// let at = arena.place(Half::Requests, b"column bytes").expect("room");
/// let claim = arena.claim(Half::Requests, at, 12)?;
/// assert_eq!(arena.used(Half::Requests), 1);
/// drop(claim); // the run is free again
/// assert_eq!(arena.used(Half::Requests), 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Arena {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("half_len", &self.half_len())
            .finish()
    }
}

impl Arena {
    /// Bytes per slot: the unit runs are made of.
    pub const SLOT: usize = 16 << 10;

    /// Creates an arena of two halves of `half_len` bytes each (rounded
    /// down to whole slots, at least one), in a sealed memfd.
    ///
    /// # Errors
    ///
    /// As [`Region::create_shared`](crate::Region::create_shared).
    pub fn create_shared(half_len: usize) -> Result<Arena, RegionCreateError> {
        let slots = (half_len / Self::SLOT).max(1);
        let len = Self::data_offset(slots)
            .checked_add(2 * slots * Self::SLOT)
            .ok_or(RegionCreateError::Alloc { size: half_len })?;
        let mem = SharedMemory::create(len)?;
        let base = mem.base();
        // SAFETY: the mapping is at least HEADER bytes, page-aligned (so
        // aligned for u64 and u32), zero-filled, and no one else sees it yet.
        unsafe {
            base.cast::<u64>().write(ARENA_MAGIC);
            base.add(8).cast::<u32>().write(Self::SLOT as u32);
            base.add(12).cast::<u32>().write(slots as u32);
        }
        Ok(Arena::with(mem, slots))
    }

    /// Opens an arena another process created, from its memfd: the memfd
    /// must be sealed and its header must describe exactly its size.
    ///
    /// # Errors
    ///
    /// [`RegionOpenError`]: not sealed, too small, another magic, or a
    /// header that disagrees with the size.
    pub fn open_shared(fd: OwnedFd) -> Result<Arena, RegionOpenError> {
        let mem = SharedMemory::open(fd)?;
        if mem.len() < HEADER {
            return Err(RegionOpenError::TooSmall { size: mem.len() });
        }
        let base = mem.base();
        // SAFETY: the mapping holds at least HEADER bytes, page-aligned.
        let (magic, slot, slots) = unsafe {
            (
                base.cast::<u64>().read_volatile(),
                base.add(8).cast::<u32>().read_volatile() as usize,
                base.add(12).cast::<u32>().read_volatile() as usize,
            )
        };
        if magic != ARENA_MAGIC {
            return Err(RegionOpenError::BadMagic { found: magic });
        }
        let want = Self::data_offset(slots).checked_add(2 * slots * Self::SLOT);
        if slot != Self::SLOT || slots == 0 || want != Some(mem.len()) {
            return Err(RegionOpenError::SizeMismatch {
                header: want.unwrap_or(0) as u64,
                actual: mem.len(),
            });
        }
        Ok(Arena::with(mem, slots))
    }

    /// Opens the arena a parent passed down with [`Arena::inherit_into`],
    /// taking ownership of the descriptor.
    ///
    /// # Errors
    ///
    /// As [`Arena::open_shared`].
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor that nothing else in this process
    /// owns or will close.
    pub unsafe fn from_inherited_fd(fd: RawFd) -> Result<Arena, RegionOpenError> {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller promises `fd` is open and unowned.
        Self::open_shared(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Arranges for the child `cmd` spawns to inherit the arena's memfd;
    /// returns the descriptor number it will see.
    pub fn inherit_into(&self, cmd: &mut Command) -> Option<RawFd> {
        crate::region::inherit_fd(self.inner.mem.fd()?, cmd)
    }

    fn with(mem: SharedMemory, slots: usize) -> Arena {
        Arena {
            inner: Arc::new(Inner { mem, slots }),
        }
    }

    /// Where the data of an arena of `slots` slots per half starts: after
    /// the header and both halves' state words, on a page boundary.
    fn data_offset(slots: usize) -> usize {
        (HEADER + 2 * slots * 4).next_multiple_of(4096)
    }

    /// Bytes in each half.
    pub fn half_len(&self) -> usize {
        self.inner.slots * Self::SLOT
    }

    /// Slot `slot`'s state word in `half` (below `slots`).
    fn state(&self, half: Half, slot: usize) -> &AtomicU32 {
        debug_assert!(slot < self.inner.slots);
        let at = HEADER + (half.index() * self.inner.slots + slot) * 4;
        // SAFETY: `at + 4` is within the state words, inside the mapping
        // (`data_offset` leaves room for them), 4-byte aligned (HEADER is
        // 64 and the base page-aligned), and only ever accessed atomically
        // by both processes; the mapping lives as long as `self`.
        unsafe { AtomicU32::from_ptr(self.inner.mem.base().add(at).cast::<u32>()) }
    }

    /// The address of byte `offset` of `half` (at most the half's length).
    fn at(&self, half: Half, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.half_len());
        let start = Self::data_offset(self.inner.slots) + half.index() * self.half_len();
        // SAFETY: `start + offset` is at most the end of the half, within
        // (or one past) the mapping.
        unsafe { self.inner.mem.base().add(start + offset) }
    }

    /// Copies `bytes` into a run of free slots of `half` and returns its
    /// offset in the half, for the peer to [`claim`](Arena::claim).
    /// `None` (nothing copied) for empty bytes, or when no run is free:
    /// send them some other way.
    ///
    /// Only the side that writes `half` may place in it.
    pub fn place(&self, half: Half, bytes: &[u8]) -> Option<u64> {
        if bytes.is_empty() {
            return None;
        }
        let need = bytes.len().div_ceil(Self::SLOT);
        let slots = self.inner.slots;
        if need > slots {
            return None;
        }
        // First fit: the lowest free run, so the runs in use stay few and
        // their memory stays in the caches from batch to batch.
        let mut first = 0;
        while first + need <= slots {
            match (first..first + need).find(|&s| self.state(half, s).load(Ordering::Acquire) != 0)
            {
                Some(busy) => first = busy + 1,
                None => {
                    if self.take_run(half, first, need) {
                        let offset = first * Self::SLOT;
                        // SAFETY: the run [first, first + need) is ours now
                        // (each state word moved from 0 to 1 here, and the
                        // peer only ever stores 0 into a run it claimed); its
                        // `need * SLOT ≥ bytes.len()` bytes lie inside the
                        // half; `bytes` is our own memory, not the arena's.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                self.at(half, offset),
                                bytes.len(),
                            )
                        };
                        return Some(offset as u64);
                    }
                    first += 1;
                }
            }
        }
        None
    }

    /// Marks slots `[first, first + need)` used, all or none.
    fn take_run(&self, half: Half, first: usize, need: usize) -> bool {
        for s in first..first + need {
            // SYNC POINT: Acquire pairs with the claimant's Release store of
            // 0: its last reads of the run happen before our writes.
            if self
                .state(half, s)
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                for t in first..s {
                    self.state(half, t).store(0, Ordering::Release);
                }
                return false;
            }
        }
        true
    }

    /// Gives back a run this side placed (`offset` and `len` as `place`
    /// returned and was given) whose bytes never reached the peer.
    /// Offsets that are not a run of the half are ignored.
    pub fn unplace(&self, half: Half, offset: u64, len: usize) {
        drop(self.claim(half, offset, len));
    }

    /// Takes the run of `len` bytes the peer placed at `offset` in `half`.
    /// The claim frees the run when it drops.
    ///
    /// # Errors
    ///
    /// [`ClaimError`]: an offset that does not start a slot, an empty
    /// length, or a run past the end of the half.
    pub fn claim(&self, half: Half, offset: u64, len: usize) -> Result<Claim, ClaimError> {
        let half_len = self.half_len();
        let bad = || ClaimError {
            offset,
            len: len as u64,
            half_len: half_len as u64,
        };
        let start = usize::try_from(offset).map_err(|_| bad())?;
        if len == 0
            || start % Self::SLOT != 0
            || start.checked_add(len).is_none_or(|end| end > half_len)
        {
            return Err(bad());
        }
        Ok(Claim {
            arena: self.clone(),
            half,
            first: start / Self::SLOT,
            slots: len.div_ceil(Self::SLOT),
            ptr: self.at(half, start),
            len,
        })
    }

    /// Slots of `half` in use (placed and not yet freed).
    pub fn used(&self, half: Half) -> usize {
        (0..self.inner.slots)
            .filter(|&s| self.state(half, s).load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// A run of an arena half the peer placed bytes in, taken by this side:
/// its address and length, checked to lie in the half. Dropping it frees
/// the run for the peer to place in again.
pub struct Claim {
    arena: Arena,
    half: Half,
    first: usize,
    slots: usize,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a claim is an address in a mapping it keeps alive (through
// `arena`) and a range of atomic state words; nothing in it is tied to a
// thread, and it hands out only the raw address.
unsafe impl Send for Claim {}
// SAFETY: as for Send: `&Claim` gives only the address and the length.
unsafe impl Sync for Claim {}

impl std::panic::RefUnwindSafe for Claim {}

impl Claim {
    /// The first byte of the run (in memory the peer can write).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: `claim` refuses empty runs).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("half", &self.half)
            .field("first", &self.first)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        for s in self.first..self.first + self.slots {
            // SYNC POINT: Release: every read of the run through this
            // claim happens before the placer's Acquire sees it free.
            self.arena.state(self.half, s).store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &Claim) -> Vec<u8> {
        let mut v = vec![0u8; c.len()];
        // SAFETY: the claim's range is inside the mapping it keeps alive;
        // in this test nothing writes it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(c.as_ptr(), v.as_mut_ptr(), c.len()) };
        v
    }

    #[test]
    fn bytes_placed_are_read_back_in_place_and_their_run_comes_back_when_the_claim_drops() {
        let arena = Arena::create_shared(4 * Arena::SLOT).unwrap();
        let big = vec![7u8; Arena::SLOT + 1];
        let a = arena.place(Half::Requests, &big).unwrap();
        let b = arena.place(Half::Requests, b"xyz").unwrap();
        assert_eq!(arena.used(Half::Requests), 3);
        assert_eq!(arena.used(Half::Answers), 0, "the halves are apart");
        // One slot left: two do not fit.
        assert!(arena.place(Half::Requests, &big).is_none());
        let ca = arena.claim(Half::Requests, a, big.len()).unwrap();
        assert_eq!(read(&ca), big);
        assert_eq!(read(&arena.claim(Half::Requests, b, 3).unwrap()), b"xyz");
        assert_eq!(arena.used(Half::Requests), 2, "b's claim dropped");
        drop(ca);
        assert_eq!(arena.used(Half::Requests), 0);
        // Room again, for a run as long as the half.
        let whole = vec![1u8; 4 * Arena::SLOT];
        let w = arena.place(Half::Requests, &whole).unwrap();
        assert_eq!(
            read(&arena.claim(Half::Requests, w, whole.len()).unwrap()),
            whole
        );
        assert!(arena.place(Half::Requests, &[]).is_none());
        assert!(arena
            .place(Half::Requests, &vec![0; 5 * Arena::SLOT])
            .is_none());
    }

    #[test]
    fn a_peers_offsets_and_lengths_are_checked_before_any_pointer_is_made() {
        let arena = Arena::create_shared(2 * Arena::SLOT).unwrap();
        let slot = Arena::SLOT as u64;
        for (offset, len) in [
            (1, 8),                  // not a slot's start
            (0, 0),                  // empty
            (slot, Arena::SLOT + 1), // past the end
            (2 * slot, 1),           // past the end
            (u64::MAX - 7, 8),       // overflow
        ] {
            let e = arena.claim(Half::Answers, offset, len).unwrap_err();
            assert_eq!((e.offset, e.len), (offset, len as u64));
        }
        assert!(arena.claim(Half::Answers, slot, Arena::SLOT).is_ok());
    }

    #[test]
    fn another_process_view_of_the_memfd_opens_only_if_its_header_fits() {
        use std::os::fd::AsFd;
        let arena = Arena::create_shared(3 * Arena::SLOT).unwrap();
        let fd = arena
            .inner
            .mem
            .fd()
            .unwrap()
            .as_fd()
            .try_clone_to_owned()
            .unwrap();
        let other = Arena::open_shared(fd).unwrap();
        assert_eq!(other.half_len(), 3 * Arena::SLOT);
        let at = arena.place(Half::Answers, b"hello").unwrap();
        let c = other.claim(Half::Answers, at, 5).unwrap();
        assert_eq!(read(&c), b"hello");
        assert_eq!(arena.used(Half::Answers), 1);
        drop(c);
        assert_eq!(
            arena.used(Half::Answers),
            0,
            "freed through the other mapping"
        );
        // A sealed memfd that is not an arena (zeros: no magic) is refused.
        let other = crate::region::shared::SharedMemory::create(8192).unwrap();
        let fd = other.fd().unwrap().try_clone_to_owned().unwrap();
        let e = Arena::open_shared(fd).unwrap_err();
        assert!(matches!(e, RegionOpenError::BadMagic { found: 0 }), "{e:?}");
    }
}
