//! How a side of a ring waits: spin briefly, then park on a futex.
//! (The model is documented in the crate docs, section "Wake-ups".)

pub(crate) mod futex;
pub(crate) mod spin;

use std::time::Duration;

/// How long a waiting side spins before it parks, and how often a parked
/// side wakes up on its own to check for a dead peer.
///
/// The spin adapts: each end of a ring remembers how long its recent waits
/// took, and when they were short (under [`spin_max`](Self::spin_max)) it
/// spins for up to twice their average before it parks, so that a peer
/// answering in a steady rhythm (a worker computing one batch per call, a
/// host coming back with the next) is caught without a wake-up. Waits
/// longer than `spin_max` (an idle peer) bring the spin back to
/// [`spin`](Self::spin).
///
/// # Examples
///
/// ```
/// use coil_ipc::WaitStrategy;
/// use std::time::Duration;
/// // A machine with more runnable threads than cores: never spin.
/// let w = WaitStrategy::park_immediately();
/// assert_eq!(w.spin, Duration::ZERO);
/// assert_eq!(w.spin_max, Duration::ZERO);
/// assert!(WaitStrategy::default().spin > Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Time to spin before parking when recent waits were long or unknown.
    /// About the cost of one futex round trip is a good value.
    pub spin: Duration,
    /// The longest a learned spin may grow to. A wake-up of a parked thread
    /// on a VM costs tens of µs of latency on each side (measured: see
    /// `docs/benchmarks.md`, "Wake-ups that learn"), so spinning through a
    /// short wait is cheaper than parking for it; past this bound a wait
    /// counts as the peer being idle.
    pub spin_max: Duration,
    /// Longest single sleep while parked. Bounds how late a peer's death,
    /// seen through its [`PeerWatch`](crate::PeerWatch), is noticed when no
    /// wake-up comes.
    pub park_slice: Duration,
}

impl WaitStrategy {
    /// Spin for 20 µs (up to 200 µs when recent waits were that short),
    /// then park in 10 ms slices.
    pub const DEFAULT: WaitStrategy = WaitStrategy {
        spin: Duration::from_micros(20),
        spin_max: Duration::from_micros(200),
        park_slice: Duration::from_millis(10),
    };

    /// Park at once: the right choice when the peer may be waiting for this
    /// very CPU (more busy threads than cores).
    pub const fn park_immediately() -> WaitStrategy {
        WaitStrategy {
            spin: Duration::ZERO,
            spin_max: Duration::ZERO,
            park_slice: WaitStrategy::DEFAULT.park_slice,
        }
    }
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::DEFAULT
    }
}
