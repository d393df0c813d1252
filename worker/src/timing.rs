//! Where an executor's time goes, measured cheaply: every [`SAMPLE`]-th row
//! is timed in three parts (decode, Python, encode) with the time-stamp
//! counter, and the batch's measured total is split in their proportions
//! (timing every row with `Instant` cost 8 % on `x + 1`).

use std::time::Duration;

use coil_proto::Times;

/// Every how many rows the executor times the parts of a row.
pub(crate) const SAMPLE: u32 = 64;

/// A cheap timestamp for proportions: the CPU's time-stamp counter (a few
/// ns, where `Instant::now` costs tens on these VMs); a monotonic clock
/// elsewhere. Only ratios of differences are used.
#[inline]
pub(crate) fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the
        // time-stamp counter.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Splits a measured `total` in the proportions of sampled `parts`
/// (decode, Python, encode; in any unit).
pub(crate) fn split_times(total: Duration, parts: [u64; 3]) -> Times {
    let sum = u128::from(parts.iter().sum::<u64>()).max(1);
    let share = |p: u64| Duration::from_nanos((total.as_nanos() * u128::from(p) / sum) as u64);
    Times {
        decode: share(parts[0]),
        python: share(parts[1]),
        encode: share(parts[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_total_is_split_in_the_sampled_proportions() {
        let t = split_times(Duration::from_micros(100), [1, 3, 1]);
        assert_eq!(t.decode, Duration::from_micros(20));
        assert_eq!(t.python, Duration::from_micros(60));
        assert_eq!(t.encode, Duration::from_micros(20));
        // Nothing sampled: nothing attributed, and no division by zero.
        assert_eq!(
            split_times(Duration::from_micros(5), [0, 0, 0]),
            Times::default()
        );
        // The parts never add up to more than the total.
        let t = split_times(Duration::from_nanos(1000), [1, 1, 1]);
        assert!(t.total() <= Duration::from_nanos(1000));
        assert!(t.total() >= Duration::from_nanos(997));
    }
}
