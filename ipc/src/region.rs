//! Memory regions: a validated header followed by one or more rings, over
//! (The model is documented in the crate docs, section "Regions".)

mod private;
pub(crate) mod shared;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::header::{
    check_table, plan, required_size, Control, Header, RingEntry, HEADER_SIZE, LAYOUT_VERSION,
    MAX_RINGS, READY, REGION_MAGIC, USER_WORDS,
};
use crate::ring::{Consumer, Producer, RingPtrs};
use crate::sync::Ordering;

/// What a region's memory is: something with a base address and a length
/// that stays mapped for as long as the value lives.
pub(crate) trait Backing: Send + Sync + 'static {
    /// The first byte of the memory, aligned to at least 64 bytes.
    fn base(&self) -> *mut u8;
    /// Bytes of memory at `base`.
    fn len(&self) -> usize;
    /// The descriptor behind the memory, if another process can map it.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

/// Why a region could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionCreateError {
    /// The capacities are not 1 to 8 powers of two between 64 bytes and 2 GiB.
    #[error("invalid ring capacities {capacities:?}: need 1 to {max} powers of two between 64 and 2147483648 bytes", max = MAX_RINGS)]
    InvalidCapacities {
        /// The capacities asked for.
        capacities: Vec<usize>,
    },
    /// The memory could not be allocated.
    #[error("could not allocate a region of {size} bytes")]
    Alloc {
        /// Bytes asked for.
        size: usize,
    },
    /// A system call failed.
    #[error("{op} failed while creating a shared region")]
    Os {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a region could not be opened. The checks run in the order of the
/// variants: a region must be big enough to hold a header, carry the magic,
/// the layout version and its own size, be marked ready, and have a sane
/// ring table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionOpenError {
    /// A system call failed.
    #[error("{op} failed while opening a shared region")]
    Os {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The memfd is not sealed against resizing, so the peer could truncate
    /// it under our mapping.
    #[error("shared region is not sealed against resizing (seals {seals:#x})")]
    NotSealed {
        /// The seals found.
        seals: u32,
    },
    /// The memory is smaller than a header.
    #[error("region of {size} bytes is too small for a {HEADER_SIZE}-byte header")]
    TooSmall {
        /// Bytes found.
        size: usize,
    },
    /// The first eight bytes are not [`REGION_MAGIC`].
    #[error("region magic is {found:#018x}, expected {REGION_MAGIC:#018x}")]
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// The region was written by a build with another layout.
    #[error("region layout version is {found}, this build reads version {LAYOUT_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The header's size field disagrees with the memory actually mapped.
    #[error("region header says {header} bytes but {actual} bytes are mapped")]
    SizeMismatch {
        /// Size written in the header.
        header: u64,
        /// Size of the mapping.
        actual: usize,
    },
    /// The creator has not (or not correctly) finished initialising.
    #[error("region is not ready (ready word {found:#x})")]
    NotReady {
        /// The ready word found.
        found: u32,
    },
    /// The ring count is 0 or above [`MAX_RINGS`].
    #[error("region claims {count} rings, expected 1 to {MAX_RINGS}")]
    BadRingCount {
        /// The count found.
        count: u32,
    },
    /// A ring table entry is out of bounds, misaligned, overlapping or has an
    /// invalid capacity.
    #[error("ring table entry {index} is invalid (offset {offset}, capacity {capacity}, region {region_size} bytes)")]
    BadRingTable {
        /// Index of the bad entry.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its capacity.
        capacity: u64,
        /// The region's size.
        region_size: u64,
    },
}

/// Why an endpoint of a ring could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// There is no ring with that index.
    #[error("ring {index} does not exist; the region has {count} rings")]
    NoSuchRing {
        /// Index asked for.
        index: usize,
        /// Rings in the region.
        count: usize,
    },
    /// This process already took that end of that ring: a ring has exactly
    /// one producer and one consumer.
    #[error("the {role} of ring {index} was already taken in this process")]
    AlreadyTaken {
        /// Index of the ring.
        index: usize,
        /// `"producer"` or `"consumer"`.
        role: &'static str,
    },
}

struct Inner {
    backing: Box<dyn Backing>,
    rings: Vec<RingEntry>,
    /// Bit `i` is set once the producer of ring `i` was taken here, bit
    /// `MAX_RINGS + i` once its consumer was. Never cleared: a dropped
    /// endpoint has closed its end for good.
    taken: Mutex<u32>,
}

/// A block of memory holding a header and up to [`MAX_RINGS`] rings.
///
/// A region is cheap to clone (an `Arc`) and stays mapped as long as a clone
/// or an endpoint taken from it lives. Each ring has one [`Producer`] and one
/// [`Consumer`]; in one process each can be taken once. Across processes
/// the two processes agree on who takes which end (for example: ring 0 is
/// host to worker, ring 1 worker to host).
///
/// # Examples
///
/// ```
/// use coil_ipc::Region;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let region = Region::create_private(&[4096])?;
/// let mut tx = region.producer(0)?;
/// let mut rx = region.consumer(0)?;
/// tx.try_push(7, b"hello")?;
/// let frame = rx.try_recv()?.expect("a frame");
/// assert_eq!((frame.tag(), frame.to_vec()), (7, b"hello".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("size", &self.size())
            .field("shared", &self.is_shared())
            .field("rings", &self.inner.rings)
            .finish()
    }
}

impl Region {
    /// Creates a region in private memory, for rings between threads.
    ///
    /// # Errors
    ///
    /// [`RegionCreateError::InvalidCapacities`] unless there are 1 to
    /// [`MAX_RINGS`] capacities, each a power of two between
    /// [`MIN_CAPACITY`](crate::MIN_CAPACITY) and
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY); `Alloc` if the memory cannot be
    /// had.
    pub fn create_private(capacities: &[usize]) -> Result<Region, RegionCreateError> {
        let size = Self::size_for(capacities)?;
        Self::init(Box::new(private::PrivateMemory::new(size)?), capacities)
    }

    /// Creates a region in a sealed, anonymous memfd, for rings between
    /// processes. Hand it to a child with [`Region::inherit_into`].
    ///
    /// # Errors
    ///
    /// As [`Region::create_private`], plus `Os` when `memfd_create`,
    /// `ftruncate`, sealing or `mmap` fail.
    pub fn create_shared(capacities: &[usize]) -> Result<Region, RegionCreateError> {
        let size = Self::size_for(capacities)?;
        Self::init(Box::new(shared::SharedMemory::create(size)?), capacities)
    }

    fn size_for(capacities: &[usize]) -> Result<usize, RegionCreateError> {
        required_size(capacities).ok_or_else(|| RegionCreateError::InvalidCapacities {
            capacities: capacities.to_vec(),
        })
    }

    fn init(backing: Box<dyn Backing>, capacities: &[usize]) -> Result<Region, RegionCreateError> {
        let (table, size) = plan(capacities);
        let base = backing.base();
        debug_assert!(backing.len() >= size && (base as usize) % 64 == 0);
        let header = Header {
            magic: REGION_MAGIC,
            layout_version: LAYOUT_VERSION,
            ring_count: capacities.len() as u32,
            region_size: backing.len() as u64,
            ready: crate::sync::AtomicU32::new(0),
            creator_pid: std::process::id(),
            user: std::array::from_fn(|_| crate::sync::AtomicU64::new(0)),
            rings: table,
        };
        // SAFETY: the backing is at least `size` ≥ HEADER_SIZE bytes, 64-byte
        // aligned (debug-asserted above; both backings allocate page-aligned),
        // and nobody else can see it yet: we are its creator.
        unsafe { base.cast::<Header>().write(header) };
        for entry in &table[..capacities.len()] {
            // SAFETY: `plan` put each control block inside the `size` bytes,
            // 64-byte aligned, not overlapping the header or another block.
            unsafe {
                base.add(entry.offset as usize)
                    .cast::<Control>()
                    .write(Control::new())
            };
        }
        // SAFETY: the header was written just above; `ready` is an atomic.
        let ready = unsafe { &(*base.cast::<Header>()).ready };
        // SYNC POINT: Release publishes the header and control blocks written
        // above; an opener Acquire-loads `ready` before reading them.
        ready.store(READY, Ordering::Release);
        Ok(Region::from_parts(
            backing,
            table[..capacities.len()].to_vec(),
        ))
    }

    fn from_parts(backing: Box<dyn Backing>, rings: Vec<RingEntry>) -> Region {
        Region {
            inner: Arc::new(Inner {
                backing,
                rings,
                taken: Mutex::new(0),
            }),
        }
    }

    /// Opens a shared region created by another process from its memfd,
    /// validating everything in the header before any ring is touched.
    ///
    /// # Errors
    ///
    /// A [`RegionOpenError`] naming the first check that failed.
    pub fn open_shared(fd: OwnedFd) -> Result<Region, RegionOpenError> {
        let backing = shared::SharedMemory::open(fd)?;
        let rings = validate(&backing)?;
        Ok(Region::from_parts(Box::new(backing), rings))
    }

    /// Opens the shared region a parent process passed down with
    /// [`Region::inherit_into`], taking ownership of the descriptor.
    ///
    /// # Errors
    ///
    /// As [`Region::open_shared`]; a descriptor that is not a sealed memfd is
    /// refused with `Os` or `NotSealed`.
    ///
    /// # Safety
    ///
    /// - `fd` must be an open descriptor that nothing else in this process
    ///   owns or will close: ownership passes to the region.
    pub unsafe fn from_inherited_fd(fd: RawFd) -> Result<Region, RegionOpenError> {
        // SAFETY: the caller promises `fd` is open and unowned.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::open_shared(fd)
    }

    /// Arranges for the child that `cmd` spawns to inherit this region's
    /// memfd, and returns the descriptor number the child will see (pass it
    /// on, e.g. as an argument, to [`Region::from_inherited_fd`]). The
    /// descriptor stays close-on-exec for every other child.
    ///
    /// Returns `None` for a private region, which cannot be shared.
    pub fn inherit_into(&self, cmd: &mut Command) -> Option<RawFd> {
        inherit_fd(self.inner.backing.fd()?, cmd)
    }

    /// Whether the region lives in shared memory.
    pub fn is_shared(&self) -> bool {
        self.inner.backing.fd().is_some()
    }

    /// Bytes of memory the region occupies.
    pub fn size(&self) -> usize {
        self.inner.backing.len()
    }

    /// Application word `index` (below [`USER_WORDS`]) of the header: a
    /// `u64` that either side may read or write at any time, for signals
    /// beside the rings (coil's worker stores the row it is running, so the
    /// host can name it when the worker hangs). Memory the peer can write:
    /// treat what you load as untrusted.
    pub fn user_word(&self, index: usize) -> Option<UserWord> {
        if index >= USER_WORDS {
            return None;
        }
        let h = self.inner.backing.base().cast::<Header>().cast_const();
        // SAFETY: the region's mapping starts with a header (validated when
        // it was created or opened) and `index < USER_WORDS` (checked
        // above), so the address is in bounds; nothing is read here.
        let word = unsafe { std::ptr::addr_of!((*h).user[index]) };
        Some(UserWord {
            _region: self.clone(),
            word,
        })
    }

    /// Number of rings in the region.
    pub fn ring_count(&self) -> usize {
        self.inner.rings.len()
    }

    /// Data capacity of ring `index` in bytes, if it exists.
    pub fn capacity(&self, index: usize) -> Option<usize> {
        self.inner.rings.get(index).map(|e| e.capacity as usize)
    }

    /// Takes the producing end of ring `index`.
    ///
    /// # Errors
    ///
    /// [`EndpointError::NoSuchRing`] or [`EndpointError::AlreadyTaken`].
    pub fn producer(&self, index: usize) -> Result<Producer, EndpointError> {
        let ptrs = self.take(index, 0, "producer")?;
        Ok(Producer::new(self.clone(), ptrs))
    }

    /// Takes the consuming end of ring `index`.
    ///
    /// # Errors
    ///
    /// [`EndpointError::NoSuchRing`] or [`EndpointError::AlreadyTaken`].
    pub fn consumer(&self, index: usize) -> Result<Consumer, EndpointError> {
        let ptrs = self.take(index, MAX_RINGS, "consumer")?;
        Ok(Consumer::new(self.clone(), ptrs))
    }

    fn take(
        &self,
        index: usize,
        shift: usize,
        role: &'static str,
    ) -> Result<RingPtrs, EndpointError> {
        let entry = *self
            .inner
            .rings
            .get(index)
            .ok_or(EndpointError::NoSuchRing {
                index,
                count: self.inner.rings.len(),
            })?;
        let mut taken = self.inner.taken.lock().unwrap_or_else(|e| e.into_inner());
        let bit = 1u32 << (shift + index);
        if *taken & bit != 0 {
            return Err(EndpointError::AlreadyTaken { index, role });
        }
        *taken |= bit;
        let base = self.inner.backing.base();
        // SAFETY: `entry` passed `check_table` (or was planned by us), so the
        // control block and the `capacity` data bytes after it lie inside
        // the mapping; `add` stays in bounds.
        let control = unsafe { base.add(entry.offset as usize) }.cast::<Control>();
        // SAFETY: as above: offset + CONTROL_SIZE + capacity ≤ region size.
        let data = unsafe { base.add(entry.offset as usize + crate::header::CONTROL_SIZE) };
        Ok(RingPtrs {
            control,
            data,
            capacity: entry.capacity,
        })
    }
}

/// Reads and checks the header of a mapped region, each field once.
fn validate(backing: &dyn Backing) -> Result<Vec<RingEntry>, RegionOpenError> {
    use std::ptr::{addr_of, read_volatile};
    let size = backing.len();
    if size < HEADER_SIZE {
        return Err(RegionOpenError::TooSmall { size });
    }
    let h = backing.base().cast::<Header>().cast_const();
    // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above) and
    // page aligned; `ready` is an atomic, read atomically.
    let ready = unsafe { (*h).ready.load(Ordering::Acquire) };
    // SAFETY: each field lies inside the first HEADER_SIZE bytes; the values are plain integers, read once with
    // volatile reads into locals and never re-read.
    let (magic, version, count, region_size) = unsafe {
        (
            read_volatile(addr_of!((*h).magic)),
            read_volatile(addr_of!((*h).layout_version)),
            read_volatile(addr_of!((*h).ring_count)),
            read_volatile(addr_of!((*h).region_size)),
        )
    };
    if magic != REGION_MAGIC {
        return Err(RegionOpenError::BadMagic { found: magic });
    }
    if version != LAYOUT_VERSION {
        return Err(RegionOpenError::UnsupportedVersion { found: version });
    }
    if region_size != size as u64 {
        return Err(RegionOpenError::SizeMismatch {
            header: region_size,
            actual: size,
        });
    }
    if ready != READY {
        return Err(RegionOpenError::NotReady { found: ready });
    }
    if count == 0 || count as usize > MAX_RINGS {
        return Err(RegionOpenError::BadRingCount { count });
    }
    let mut rings = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        // SAFETY: i < MAX_RINGS, so the entry lies inside the header.
        rings.push(unsafe { read_volatile(addr_of!((*h).rings[i])) });
    }
    check_table(&rings, size as u64).map_err(|index| RegionOpenError::BadRingTable {
        index,
        offset: rings[index].offset,
        capacity: rings[index].capacity,
        region_size: size as u64,
    })?;
    Ok(rings)
}

/// One application word of a region's header; see [`Region::user_word`].
#[derive(Debug, Clone)]
pub struct UserWord {
    /// Keeps the mapping `word` points into alive.
    _region: Region,
    /// The word, found once (the executor stores to it on every row).
    word: *const crate::sync::AtomicU64,
}

// SAFETY: `word` points at an atomic in a mapping that `_region` (itself
// `Send` and `Sync`) keeps alive; the pointer is only ever turned into a
// shared reference to that atomic, which any thread may use.
unsafe impl Send for UserWord {}
// SAFETY: as for `Send`.
unsafe impl Sync for UserWord {}

impl UserWord {
    #[inline]
    fn atomic(&self) -> &crate::sync::AtomicU64 {
        // SAFETY: `word` is a header word of the mapping that `self._region`
        // keeps alive (see `Region::user_word`); the field is an atomic, so
        // a shared reference to it is sound even while another process
        // writes it.
        unsafe { &*self.word }
    }

    /// Loads the word.
    #[inline]
    pub fn load(&self) -> u64 {
        self.atomic().load(Ordering::Relaxed)
    }

    /// Stores `value`.
    #[inline]
    pub fn store(&self, value: u64) {
        self.atomic().store(value, Ordering::Relaxed)
    }

    /// Adds `n` (wrapping) and returns the previous value.
    #[inline]
    pub fn fetch_add(&self, n: u64) -> u64 {
        self.atomic().fetch_add(n, Ordering::AcqRel)
    }

    /// Stores `new` if the word holds `current`: `Ok(current)`, or
    /// `Err(actual)` with what it held instead. Processes that share the
    /// region see one order of these updates: a lock-free counter or clock
    /// they all advance (coil's shared rate limit is one).
    #[inline]
    pub fn compare_exchange(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.atomic()
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn reopen(region: &Region) -> Result<Region, RegionOpenError> {
        let fd = region
            .inner
            .backing
            .fd()
            .unwrap()
            .try_clone_to_owned()
            .unwrap();
        Region::open_shared(fd)
    }

    fn poke(region: &Region, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= region.size());
        // SAFETY: test-only write inside the mapping, with no endpoint alive.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                region.inner.backing.base().add(offset),
                bytes.len(),
            )
        }
    }

    #[test]
    fn open_accepts_a_fresh_region() {
        let region = Region::create_shared(&[4096, 1 << 16]).unwrap();
        let other = reopen(&region).unwrap();
        assert_eq!(other.ring_count(), 2);
        assert_eq!(other.capacity(1), Some(1 << 16));
    }

    #[test]
    fn user_words_are_shared_between_mappings_and_bounded() {
        let region = Region::create_shared(&[4096]).unwrap();
        let other = reopen(&region).unwrap();
        for i in 0..USER_WORDS {
            region.user_word(i).unwrap().store(1000 + i as u64);
        }
        for i in 0..USER_WORDS {
            assert_eq!(other.user_word(i).unwrap().load(), 1000 + i as u64);
        }
        assert!(region.user_word(USER_WORDS).is_none());
        // The rings are untouched by the words next to them.
        let (mut tx, mut rx) = (region.producer(0).unwrap(), other.consumer(0).unwrap());
        tx.try_push(3, b"ok").unwrap();
        tx.flush();
        assert_eq!(rx.try_recv().unwrap().unwrap().to_vec(), b"ok");
    }

    #[test]
    fn open_rejects_wrong_magic() {
        let region = Region::create_shared(&[4096]).unwrap();
        poke(&region, 0, b"garbage!");
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::BadMagic { .. })
        ));
    }

    #[test]
    fn open_rejects_wrong_version() {
        let region = Region::create_shared(&[4096]).unwrap();
        poke(&region, 8, &99u32.to_le_bytes());
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::UnsupportedVersion { found: 99 })
        ));
    }

    #[test]
    fn open_rejects_wrong_size() {
        let region = Region::create_shared(&[4096]).unwrap();
        poke(&region, 16, &1u64.to_le_bytes());
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::SizeMismatch { header: 1, .. })
        ));
    }

    #[test]
    fn open_rejects_unready_region() {
        let region = Region::create_shared(&[4096]).unwrap();
        poke(&region, 24, &0u32.to_le_bytes());
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::NotReady { found: 0 })
        ));
    }

    #[test]
    fn open_rejects_bad_ring_count_and_table() {
        let region = Region::create_shared(&[4096]).unwrap();
        poke(&region, 12, &9u32.to_le_bytes());
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::BadRingCount { count: 9 })
        ));
        poke(&region, 12, &1u32.to_le_bytes());
        poke(&region, 64, &(1u64 << 40).to_le_bytes());
        assert!(matches!(
            reopen(&region),
            Err(RegionOpenError::BadRingTable { index: 0, .. })
        ));
    }

    #[test]
    fn open_rejects_unsealed_memfd() {
        let fd =
            nix::sys::memfd::memfd_create(c"x", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(fd.as_fd(), 4096).unwrap();
        assert!(matches!(
            Region::open_shared(fd),
            Err(RegionOpenError::NotSealed { .. })
        ));
    }

    #[test]
    fn open_rejects_a_region_smaller_than_a_header() {
        let fd = nix::sys::memfd::memfd_create(
            c"x",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
        )
        .unwrap();
        nix::unistd::ftruncate(fd.as_fd(), 100).unwrap();
        nix::fcntl::fcntl(
            fd.as_fd(),
            nix::fcntl::FcntlArg::F_ADD_SEALS(shared::REQUIRED_SEALS),
        )
        .unwrap();
        assert!(matches!(
            Region::open_shared(fd),
            Err(RegionOpenError::TooSmall { size: 100 })
        ));
    }

    proptest::proptest! {
        // 256 cases unless PROPTEST_CASES asks for more (tools/fuzz).
        #![proptest_config(proptest::prelude::ProptestConfig { cases: crate::fuzz_cases(256), ..Default::default() })]

        /// Arbitrary bytes as the header never make opening panic; a header
        /// that passes is one whose rings can be used safely.
        #[test]
        fn arbitrary_header_bytes_open_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=HEADER_SIZE),
            keep_magic in proptest::prelude::any::<bool>(),
        ) {
            let region = Region::create_shared(&[256, 512]).unwrap();
            poke(&region, 0, &bytes);
            if keep_magic {
                // Get past the first checks more often.
                poke(&region, 0, &REGION_MAGIC.to_le_bytes());
                poke(&region, 8, &LAYOUT_VERSION.to_le_bytes());
                poke(&region, 16, &(region.size() as u64).to_le_bytes());
                poke(&region, 24, &READY.to_le_bytes());
            }
            if let Ok(other) = reopen(&region) {
                for i in 0..other.ring_count() {
                    let cap = other.capacity(i).unwrap();
                    proptest::prop_assert!(cap.is_power_of_two() && cap <= other.size());
                    let (mut tx, mut rx) = (other.producer(i).unwrap(), other.consumer(i).unwrap());
                    let _ = tx.try_push(1, &[1, 2, 3]);
                    let len = rx.try_recv().ok().flatten().map(|f| f.len());
                    proptest::prop_assert!(len.unwrap_or(0) < cap);
                }
            }
        }
    }

    #[test]
    fn create_rejects_invalid_capacities() {
        assert!(matches!(
            Region::create_private(&[100]),
            Err(RegionCreateError::InvalidCapacities { .. })
        ));
    }

    #[test]
    fn each_end_can_be_taken_once() {
        let region = Region::create_private(&[4096]).unwrap();
        let _p = region.producer(0).unwrap();
        assert_eq!(
            region.producer(0).unwrap_err(),
            EndpointError::AlreadyTaken {
                index: 0,
                role: "producer"
            }
        );
        assert!(region.consumer(0).is_ok());
        assert_eq!(
            region.consumer(1).unwrap_err(),
            EndpointError::NoSuchRing { index: 1, count: 1 }
        );
    }
}

/// Arranges for the child `cmd` spawns to inherit `fd` (a region's or an
/// arena's memfd, which the caller keeps open until the child is spawned)
/// and returns its number; it stays close-on-exec for every other child.
pub(crate) fn inherit_fd(fd: BorrowedFd<'_>, cmd: &mut Command) -> Option<RawFd> {
    use std::os::unix::process::CommandExt;
    let fd = fd.as_raw_fd();
    let hook = move || {
        // SAFETY: runs in the forked child before exec, where only
        // async-signal-safe calls are allowed; fcntl is one. The fd is
        // open: the child inherited the parent's table, in which the
        // caller (borrowing the memfd while spawning) holds it open.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only clears FD_CLOEXEC on one descriptor with one
    // async-signal-safe call, does not allocate and touches no locks.
    unsafe { cmd.pre_exec(hook) };
    Some(fd)
}
