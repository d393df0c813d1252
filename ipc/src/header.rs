//! The memory layout of a region: its header, its ring table and each ring's
//! (The model is documented in the crate docs, section "The header".)

use crate::sync::{AtomicU32, AtomicU64};

/// `b"coil-rng"` read as a little-endian `u64`: the first bytes of every
/// region.
pub const REGION_MAGIC: u64 = u64::from_le_bytes(*b"coil-rng");

/// The layout version this build writes and accepts. Bump it whenever a byte
/// in the diagram above moves.
pub const LAYOUT_VERSION: u32 = 1;

/// How many rings one region can hold.
pub const MAX_RINGS: usize = 8;

/// The smallest ring capacity, in bytes.
pub const MIN_CAPACITY: usize = 64;

/// The largest ring capacity, in bytes: frame lengths are `u32`.
pub const MAX_CAPACITY: usize = 1 << 31;

/// The value of `ready` once the creator has finished initialising.
pub(crate) const READY: u32 = 0x5245_4459; // "REDY"

/// One entry of the ring table: where a ring's control block starts and how
/// many data bytes follow it. Plain integers, read once and validated.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RingEntry {
    /// Byte offset of the control block from the start of the region.
    pub offset: u64,
    /// Data capacity in bytes.
    pub capacity: u64,
}

/// Number of application words in the header (see
/// [`Region::user_word`](crate::Region::user_word)).
pub const USER_WORDS: usize = 4;

/// The region header. `ready` is the only field read or written atomically;
/// the others are written once before `ready` is published and read (with
/// volatile reads, once each) after it has been observed.
#[repr(C, align(64))]
pub(crate) struct Header {
    pub magic: u64,
    pub layout_version: u32,
    pub ring_count: u32,
    pub region_size: u64,
    pub ready: AtomicU32,
    pub creator_pid: u32,
    /// Words either side may write at any time, for the application's own
    /// signals (coil's worker publishes the row it is running). Untrusted.
    pub user: [AtomicU64; USER_WORDS],
    pub rings: [RingEntry; MAX_RINGS],
}

/// The cache line only the producer writes.
#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    /// Bytes ever committed and published. Range: `tail ..= tail + capacity`.
    /// SYNC POINT: Release store by the producer publishes the frames below
    /// it; Acquire load by the consumer before it reads them.
    pub head: AtomicU64,
    /// Bumped by the producer to wake a parked consumer (futex word).
    pub data_bell: AtomicU32,
    /// 1 while the producer is parked waiting for space, else 0.
    pub producer_waiting: AtomicU32,
    /// 1 once the producer has closed its end.
    pub producer_closed: AtomicU32,
}

/// The cache line only the consumer writes.
#[repr(C, align(64))]
pub(crate) struct ConsumerLine {
    /// Bytes ever released. Range: `head - capacity ..= head`.
    /// SYNC POINT: Release store by the consumer hands the space below it
    /// back; Acquire load by the producer before it overwrites that space.
    pub tail: AtomicU64,
    /// Bumped by the consumer to wake a parked producer (futex word).
    pub space_bell: AtomicU32,
    /// 1 while the consumer is parked waiting for data, else 0.
    pub consumer_waiting: AtomicU32,
    /// 1 once the consumer has closed its end.
    pub consumer_closed: AtomicU32,
}

/// A ring's control block: two cache lines, one per writer, so the two sides
/// never write to the same line.
#[repr(C)]
pub(crate) struct Control {
    pub p: ProducerLine,
    pub c: ConsumerLine,
}

impl Control {
    /// A control block for an empty, open ring.
    pub(crate) fn new() -> Self {
        Control {
            p: ProducerLine {
                head: AtomicU64::new(0),
                data_bell: AtomicU32::new(0),
                producer_waiting: AtomicU32::new(0),
                producer_closed: AtomicU32::new(0),
            },
            c: ConsumerLine {
                tail: AtomicU64::new(0),
                space_bell: AtomicU32::new(0),
                consumer_waiting: AtomicU32::new(0),
                consumer_closed: AtomicU32::new(0),
            },
        }
    }
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Bytes the header occupies (a whole number of cache lines).
pub const HEADER_SIZE: usize = round_up(std::mem::size_of::<Header>(), 64);

/// Bytes a ring's control block occupies (a whole number of cache lines).
pub const CONTROL_SIZE: usize = round_up(std::mem::size_of::<Control>(), 64);

/// Returns the region size needed for rings of the given capacities, or
/// `None` if a capacity is invalid (not a power of two within
/// [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]), there are more than
/// [`MAX_RINGS`] rings or none, or the total overflows.
///
/// # Examples
///
/// ```
/// use coil_ipc::required_size;
/// let size = required_size(&[4096, 4096]).unwrap();
/// assert!(size > 2 * 4096);
/// assert_eq!(required_size(&[1000]), None); // not a power of two
/// ```
pub const fn required_size(capacities: &[usize]) -> Option<usize> {
    if capacities.is_empty() || capacities.len() > MAX_RINGS {
        return None;
    }
    let mut total = HEADER_SIZE;
    let mut i = 0;
    while i < capacities.len() {
        let cap = capacities[i];
        if !valid_capacity(cap as u64) {
            return None;
        }
        total = match total.checked_add(CONTROL_SIZE + cap) {
            Some(t) => t,
            None => return None,
        };
        i += 1;
    }
    Some(total)
}

/// Whether `cap` is a capacity the ring accepts.
pub(crate) const fn valid_capacity(cap: u64) -> bool {
    cap.is_power_of_two() && cap >= MIN_CAPACITY as u64 && cap <= MAX_CAPACITY as u64
}

/// The ring table a creator writes for the given capacities: blocks laid out
/// one after the other behind the header.
pub(crate) fn plan(capacities: &[usize]) -> ([RingEntry; MAX_RINGS], usize) {
    let mut table = [RingEntry::default(); MAX_RINGS];
    let mut at = HEADER_SIZE;
    for (entry, &cap) in table.iter_mut().zip(capacities) {
        *entry = RingEntry {
            offset: at as u64,
            capacity: cap as u64,
        };
        at += CONTROL_SIZE + cap;
    }
    (table, at)
}

/// Checks a ring table read out of a region of `region_size` bytes: every
/// block lies inside the region, behind the header, aligned, with a valid
/// capacity, and no two blocks overlap. Returns the index of the first bad
/// entry.
pub(crate) fn check_table(entries: &[RingEntry], region_size: u64) -> Result<(), usize> {
    let mut prev_end = HEADER_SIZE as u64;
    for (i, e) in entries.iter().enumerate() {
        let ok = valid_capacity(e.capacity)
            && e.offset % 64 == 0
            && e.offset >= prev_end
            && e.offset
                .checked_add(CONTROL_SIZE as u64)
                .and_then(|x| x.checked_add(e.capacity))
                .is_some_and(|end| end <= region_size);
        if !ok {
            return Err(i);
        }
        prev_end = e.offset + CONTROL_SIZE as u64 + e.capacity;
    }
    Ok(())
}

// The diagram above, checked. Loom's atomics are larger than the real ones,
// so the byte offsets only hold in normal builds.
#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RingEntry>() == 16);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, layout_version) == 8);
    assert!(offset_of!(Header, ring_count) == 12);
    assert!(offset_of!(Header, region_size) == 16);
    assert!(offset_of!(Header, ready) == 24);
    assert!(offset_of!(Header, creator_pid) == 28);
    assert!(offset_of!(Header, rings) == 64);
    assert!(HEADER_SIZE == 192);
    assert!(align_of::<Header>() == 64);
    assert!(offset_of!(Control, p) == 0);
    assert!(offset_of!(Control, c) == 64);
    assert!(offset_of!(ProducerLine, head) == 0);
    assert!(offset_of!(ProducerLine, data_bell) == 8);
    assert!(offset_of!(ProducerLine, producer_waiting) == 12);
    assert!(offset_of!(ProducerLine, producer_closed) == 16);
    assert!(offset_of!(ConsumerLine, tail) == 0);
    assert!(offset_of!(ConsumerLine, space_bell) == 8);
    assert!(offset_of!(ConsumerLine, consumer_waiting) == 12);
    assert!(offset_of!(ConsumerLine, consumer_closed) == 16);
    assert!(CONTROL_SIZE == 128);
    assert!(size_of::<AtomicU64>() == 8 && size_of::<AtomicU32>() == 4);
};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn required_size_rejects_bad_capacities() {
        assert_eq!(required_size(&[]), None);
        assert_eq!(required_size(&[32]), None);
        assert_eq!(required_size(&[4095]), None);
        assert_eq!(required_size(&[64; MAX_RINGS + 1]), None);
        assert_eq!(required_size(&[64]), Some(192 + 128 + 64));
    }

    #[test]
    fn planned_table_passes_its_own_check() {
        let caps = [64, 4096, 1 << 20];
        let (table, size) = plan(&caps);
        assert_eq!(size, required_size(&caps).unwrap());
        assert_eq!(check_table(&table[..3], size as u64), Ok(()));
        assert_eq!(check_table(&table[..3], size as u64 - 1), Err(2));
    }

    #[test]
    fn check_table_rejects_overlap_misalignment_and_header_overlap() {
        let e = |offset, capacity| RingEntry { offset, capacity };
        assert_eq!(check_table(&[e(0, 64)], 1 << 20), Err(0));
        assert_eq!(check_table(&[e(256 + 8, 64)], 1 << 20), Err(0));
        assert_eq!(check_table(&[e(256, 64), e(256 + 64, 64)], 1 << 20), Err(1));
        assert_eq!(check_table(&[e(256, 100)], 1 << 20), Err(0));
        assert_eq!(check_table(&[e(u64::MAX - 63, 64)], u64::MAX), Err(0));
    }
}
