//! Where an executor's time goes, measured cheaply: every [`SAMPLE`]-th row
//! is timed in three parts (decode, Python, encode) with the time-stamp
//! counter, and the batch's measured total is split in their proportions
//! (timing every row with `Instant` cost 8 % on `x + 1`). A [`Sampler`]
//! does this for one batch; the row path and the column path both use it.

use std::time::{Duration, Instant};

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

/// Times one batch of rows: every [`SAMPLE`]-th row in three parts, the
/// batch as a whole, and splits the whole in the parts' proportions.
///
/// Per row: [`Sampler::start`] before its arguments are read,
/// [`Sampler::mark`] when they are read and again when the UDF is done,
/// [`Sampler::finish`] when its result is written. A row that ends early
/// (its error returned before a mark) is left out of the proportions.
pub(crate) struct Sampler {
    /// When the batch began.
    started: Instant,
    /// Ticks spent in decode, Python and encode, over the sampled rows.
    parts: [u64; 3],
    /// The sampled row's marks so far: start, decoded, called.
    marks: [u64; 3],
    /// How many of `marks` the current row has; 0 when it is not sampled.
    taken: usize,
}

impl Sampler {
    /// Starts timing a batch now.
    pub(crate) fn new() -> Sampler {
        Sampler::since(Instant::now())
    }

    /// Times a batch that began at `started`.
    pub(crate) fn since(started: Instant) -> Sampler {
        Sampler {
            started,
            parts: [0; 3],
            marks: [0; 3],
            taken: 0,
        }
    }

    /// Begins row `row` (sampled when it is a multiple of [`SAMPLE`]).
    #[inline]
    pub(crate) fn start(&mut self, row: u32) {
        self.taken = 0;
        if row % SAMPLE == 0 {
            self.start_at(ticks());
        }
    }

    /// Ends the current part of a sampled row (decode, then Python).
    #[inline]
    pub(crate) fn mark(&mut self) {
        if matches!(self.taken, 1 | 2) {
            self.mark_at(ticks());
        }
    }

    /// Ends a sampled row: adds its three parts, if it got that far.
    #[inline]
    pub(crate) fn finish(&mut self) {
        if self.taken == 3 {
            self.finish_at(ticks());
        }
        self.taken = 0;
    }

    /// Where the batch's time went, from its start until now.
    pub(crate) fn times(&self) -> Times {
        split_times(self.started.elapsed(), self.parts)
    }

    fn start_at(&mut self, t: u64) {
        self.marks[0] = t;
        self.taken = 1;
    }

    fn mark_at(&mut self, t: u64) {
        if let Some(m) = self.marks.get_mut(self.taken) {
            *m = t;
            self.taken += 1;
        }
    }

    fn finish_at(&mut self, t: u64) {
        if self.taken == 3 {
            let [t0, t1, t2] = self.marks;
            self.parts[0] += t1.wrapping_sub(t0);
            self.parts[1] += t2.wrapping_sub(t1);
            self.parts[2] += t.wrapping_sub(t2);
        }
        self.taken = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_row_adds_its_three_parts() {
        let mut s = Sampler::new();
        s.start_at(10);
        s.mark_at(13);
        s.mark_at(20);
        s.finish_at(21);
        assert_eq!(s.parts, [3, 7, 1]);
        s.start_at(100);
        s.mark_at(101);
        s.mark_at(102);
        s.finish_at(110);
        assert_eq!(s.parts, [4, 8, 9]);
    }

    #[test]
    fn a_row_that_ends_before_its_marks_adds_nothing() {
        let mut s = Sampler::new();
        s.start_at(10);
        s.mark_at(13);
        s.finish_at(50);
        assert_eq!(s.parts, [0, 0, 0]);
        // Nor does a row that was not sampled.
        s.start(1);
        s.mark();
        s.mark();
        s.finish();
        assert_eq!(s.parts, [0, 0, 0]);
    }

    #[test]
    fn every_sample_th_row_is_timed_and_the_total_is_split() {
        let mut s = Sampler::new();
        for row in 0..(2 * SAMPLE + 1) {
            s.start(row);
            assert_eq!(s.taken, usize::from(row % SAMPLE == 0), "row {row}");
            s.mark();
            s.mark();
            s.finish();
        }
        let times = s.times();
        assert!(times.total() <= s.started.elapsed());
    }

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
