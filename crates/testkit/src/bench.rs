//! Small pieces shared by the benchmarks (`benches/`, the ignored `*_bench` tests).

use std::time::Duration;

/// Deterministic generator (a 64-bit LCG): the same "random" subsets in every run, so runs
/// compare.
pub struct Lcg(pub u64);

impl Lcg {
    /// An index below `n` (`n` > 0).
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }

    /// `k` distinct indices below `n` (`k` ≤ `n`).
    pub fn distinct(&mut self, k: usize, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = Vec::with_capacity(k);
        while v.len() < k {
            let i = self.next(n);
            if !v.contains(&i) {
                v.push(i);
            }
        }
        v
    }
}

/// Median of non-empty samples.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `12.34 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_subsets_and_distinct_means_distinct() {
        let (mut a, mut b) = (Lcg(42), Lcg(42));
        assert_eq!(a.distinct(10, 100), b.distinct(10, 100));
        let mut d = Lcg(7).distinct(20, 20);
        d.sort_unstable();
        assert_eq!(d, (0..20).collect::<Vec<_>>());
        assert_eq!(
            median(vec![
                Duration::from_millis(3),
                Duration::from_millis(1),
                Duration::from_millis(2)
            ]),
            Duration::from_millis(2)
        );
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
    }
}
