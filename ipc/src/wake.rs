//! How a side of a ring waits: spin briefly, then park on a futex.
//! (The model is documented in the crate docs, section "Wake-ups".)

pub(crate) mod futex;
pub(crate) mod spin;

use std::time::Duration;

/// How long a waiting side spins before it parks, and how often a parked
/// side wakes up on its own to check for a dead peer.
///
/// # Examples
///
/// ```
/// use coil_ipc::WaitStrategy;
/// use std::time::Duration;
/// // A machine with more runnable threads than cores: never spin.
/// let w = WaitStrategy::park_immediately();
/// assert_eq!(w.spin, Duration::ZERO);
/// assert!(WaitStrategy::default().spin > Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Time to spin before parking. About the cost of one futex round trip
    /// is a good value: waiting longer than a wake-up costs is wasted CPU.
    pub spin: Duration,
    /// Longest single sleep while parked. Bounds how late a peer's death,
    /// seen through its [`PeerWatch`](crate::PeerWatch), is noticed when no
    /// wake-up comes.
    pub park_slice: Duration,
}

impl WaitStrategy {
    /// Spin for 20 µs, then park in 10 ms slices.
    pub const DEFAULT: WaitStrategy = WaitStrategy {
        spin: Duration::from_micros(20),
        park_slice: Duration::from_millis(10),
    };

    /// Park at once: the right choice when the peer may be waiting for this
    /// very CPU (more busy threads than cores).
    pub const fn park_immediately() -> WaitStrategy {
        WaitStrategy {
            spin: Duration::ZERO,
            park_slice: WaitStrategy::DEFAULT.park_slice,
        }
    }
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::DEFAULT
    }
}
