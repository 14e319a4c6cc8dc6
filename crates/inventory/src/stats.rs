//! Small statistics kept per endpoint and per host: distinct counts, latency percentiles,
//! size summaries. Each is bounded in memory whatever the traffic, can be merged (when
//! templating folds two endpoints into one), and round-trips through JSON so the state store
//! can reload it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Mixes a 64-bit value into a well-spread hash (splitmix64's finaliser).
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash of an IP address for distinct counting (not a secret: the address is not stored).
pub fn ip_hash(ip: std::net::IpAddr) -> u64 {
    let v = match ip {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    };
    mix64((v as u64) ^ mix64((v >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15))
}

/// How many distinct items (by 64-bit hash) were seen: exact up to [`Distinct::EXACT_MAX`]
/// items, then a HyperLogLog sketch with 2^`p` one-byte registers (relative error about
/// 1.04/√(2^p): 6.5 % at p = 8, 1.6 % at p = 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distinct {
    Exact(Vec<u64>),
    Sketch { p: u8, registers: Vec<u8> },
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

impl Distinct {
    /// Items kept exactly before switching to the sketch.
    pub const EXACT_MAX: usize = 32;

    /// Adds an item; `p` (4..=16) is the sketch precision used if it must switch.
    pub fn insert(&mut self, hash: u64, p: u8) {
        match self {
            Distinct::Exact(v) => {
                if let Err(at) = v.binary_search(&hash) {
                    if v.len() < Self::EXACT_MAX {
                        v.insert(at, hash);
                    } else {
                        let mut s = Distinct::sketch(p);
                        for &h in v.iter() {
                            s.insert(h, p);
                        }
                        s.insert(hash, p);
                        *self = s;
                    }
                }
            }
            Distinct::Sketch { p, registers } => {
                let p = u32::from(*p);
                let idx = (hash >> (64 - p)) as usize;
                let rank = ((hash << p) | (1 << (p - 1))).leading_zeros() as u8 + 1;
                if registers[idx] < rank {
                    registers[idx] = rank;
                }
            }
        }
    }

    fn sketch(p: u8) -> Distinct {
        let p = p.clamp(4, 16);
        Distinct::Sketch {
            p,
            registers: vec![0; 1 << p],
        }
    }

    /// The (estimated) number of distinct items.
    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(v) => v.len() as u64,
            Distinct::Sketch { registers, .. } => {
                let m = registers.len() as f64;
                let alpha = match registers.len() {
                    16 => 0.673,
                    32 => 0.697,
                    64 => 0.709,
                    _ => 0.7213 / (1.0 + 1.079 / m),
                };
                let sum: f64 = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let raw = alpha * m * m / sum;
                let zeros = registers.iter().filter(|&&r| r == 0).count();
                let est = if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                };
                est.round() as u64
            }
        }
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &Distinct, p: u8) {
        match other {
            Distinct::Exact(v) => {
                for &h in v {
                    self.insert(h, p);
                }
            }
            Distinct::Sketch {
                p: op,
                registers: or,
            } => {
                if let Distinct::Exact(v) = self {
                    let mine = std::mem::take(v);
                    *self = Distinct::sketch(*op);
                    for h in mine {
                        self.insert(h, *op);
                    }
                }
                if let Distinct::Sketch { p: sp, registers } = self {
                    if sp == op {
                        for (a, b) in registers.iter_mut().zip(or) {
                            *a = (*a).max(*b);
                        }
                    } else if other.count() > self.count() {
                        // Different precisions only happen when the configuration changed
                        // between runs: keep the larger estimate rather than mix sketches.
                        *self = other.clone();
                    }
                }
            }
        }
    }

    pub fn heap_size(&self) -> usize {
        match self {
            Distinct::Exact(v) => v.capacity() * 8,
            Distinct::Sketch { registers, .. } => registers.capacity(),
        }
    }
}

/// Latency percentiles from an HDR histogram (`hdrhistogram`), in microseconds, from 1 µs to
/// [`Latency::MAX_US`] (longer values are recorded as the maximum).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u32>,
}

impl Latency {
    /// One hour.
    pub const MAX_US: u64 = 3_600_000_000;

    /// A histogram keeping `sigfig` (1..=3) significant digits.
    pub fn new(sigfig: u8) -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, Self::MAX_US, sigfig.clamp(1, 3))
                .expect("valid histogram bounds"),
        }
    }

    pub fn record(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, Self::MAX_US));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds by construction; a count overflowing u32 saturates.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                let _ = self
                    .hist
                    .record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` (0..=1), or `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q))
    }

    /// The summary written in outputs.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50_us: self.quantile(0.5),
            p90_us: self.quantile(0.9),
            p99_us: self.quantile(0.99),
            max_us: (!self.hist.is_empty()).then(|| self.hist.max()),
        }
    }

    /// The recorded values as (value, count) pairs, for the state store.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        self.hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
            .collect()
    }

    pub fn from_pairs(sigfig: u8, pairs: &[(u64, u64)]) -> Latency {
        let mut l = Latency::new(sigfig);
        for &(v, n) in pairs {
            let _ = l.hist.record_n(
                v.clamp(1, Self::MAX_US),
                u32::try_from(n).unwrap_or(u32::MAX),
            );
        }
        l
    }

    pub fn heap_size(&self) -> usize {
        self.hist.distinct_values() * 4
    }
}

/// Percentiles of a latency histogram, as written in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
}

/// Count, sum, minimum and maximum of a size in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub count: u64,
    pub total: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Sizes {
    pub fn record(&mut self, n: u64) {
        self.count += 1;
        self.total = self.total.saturating_add(n);
        self.min = Some(self.min.map_or(n, |m| m.min(n)));
        self.max = Some(self.max.map_or(n, |m| m.max(n)));
    }

    pub fn merge(&mut self, o: &Sizes) {
        self.count += o.count;
        self.total = self.total.saturating_add(o.total);
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = self.max.max(o.max);
    }

    pub fn mean(&self) -> Option<u64> {
        (self.count > 0).then(|| self.total / self.count)
    }
}

/// Counts per key, bounded: keys beyond `max` are counted under `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Tally {
    /// Counts `key` once; returns false when the bound put it under `other`.
    pub fn add(&mut self, key: &str, max: usize) -> bool {
        self.add_n(key, 1, max)
    }

    pub fn add_n(&mut self, key: &str, n: u64, max: usize) -> bool {
        if let Some(c) = self.counts.get_mut(key) {
            *c += n;
            true
        } else if self.counts.len() < max {
            self.counts.insert(key.to_owned(), n);
            true
        } else {
            self.other += n;
            false
        }
    }

    pub fn merge(&mut self, o: &Tally, max: usize) {
        for (k, &n) in &o.counts {
            self.add_n(k, n, max);
        }
        self.other += o.other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_is_exact_when_small_and_close_when_large() {
        let mut d = Distinct::default();
        for i in 0..20u64 {
            d.insert(mix64(i), 10);
            d.insert(mix64(i), 10);
        }
        assert_eq!(d.count(), 20);
        for i in 0..100_000u64 {
            d.insert(mix64(i), 10);
        }
        let c = d.count() as f64;
        assert!((c - 100_000.0).abs() / 100_000.0 < 0.08, "{c}");
        let mut small = Distinct::default();
        for i in 0..1000u64 {
            small.insert(mix64(i), 10);
        }
        let c = small.count() as f64;
        assert!((c - 1000.0).abs() / 1000.0 < 0.1, "{c}");
    }

    #[test]
    fn distinct_merge_of_overlapping_sets() {
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        for i in 0..5000u64 {
            a.insert(mix64(i), 12);
        }
        for i in 2500..7500u64 {
            b.insert(mix64(i), 12);
        }
        a.merge(&b, 12);
        let c = a.count() as f64;
        assert!((c - 7500.0).abs() / 7500.0 < 0.15, "{c}");
        let mut e = Distinct::default();
        e.merge(&Distinct::Exact(vec![1, 2, 3]), 8);
        assert_eq!(e.count(), 3);
        // Sketches of different precisions (a configuration change between runs): the
        // larger estimate is kept rather than mixing registers.
        let mut coarse = Distinct::default();
        for i in 0..100u64 {
            coarse.insert(mix64(i), 8);
        }
        let before = a.count();
        a.merge(&coarse, 12);
        assert_eq!(a.count(), before);
    }

    #[test]
    fn latency_percentiles_and_round_trip() {
        let mut l = Latency::new(2);
        assert_eq!(l.quantile(0.5), None);
        for us in 1..=1000 {
            l.record(us);
        }
        l.record(u64::MAX);
        let s = l.summary();
        assert_eq!(s.count, 1001);
        let p50 = s.p50_us.unwrap();
        assert!((495..=505).contains(&p50), "{p50}");
        let back = Latency::from_pairs(2, &l.to_pairs());
        assert_eq!(back.summary(), s);
        let mut m = Latency::new(2);
        m.merge(&l);
        m.merge(&back);
        assert_eq!(m.count(), 2002);
    }

    #[test]
    fn tally_bound_counts_the_rest_as_other() {
        let mut t = Tally::default();
        assert!(t.add("a", 2));
        assert!(t.add("b", 2));
        assert!(!t.add("c", 2));
        assert!(t.add("a", 2));
        assert_eq!((t.counts["a"], t.other), (2, 1));
    }

    #[test]
    fn sizes_merge() {
        let (mut a, mut b) = (Sizes::default(), Sizes::default());
        a.record(10);
        b.record(2);
        b.record(30);
        a.merge(&b);
        assert_eq!((a.count, a.total, a.min, a.max), (3, 42, Some(2), Some(30)));
    }
}
