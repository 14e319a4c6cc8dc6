//! Small helpers shared by the detections.

use std::net::IpAddr;

use apiscope_inventory::stats::mix64;

pub(crate) const NS_PER_SEC: u64 = 1_000_000_000;

/// A stable (unkeyed) 64-bit hash of `parts`, each followed by a separator: finding ids and
/// map keys of things that are not secret (endpoint labels, kinds).
pub(crate) fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    mix64(h)
}

/// A map key for an IP address.
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    apiscope_inventory::stats::ip_hash(ip)
}

/// A sorted set of 64-bit hashes with a capacity: beyond it, new members are not kept and
/// `saturated` is set (the set's size is then a lower bound).
#[derive(Debug, Clone, Default)]
pub(crate) struct IdSet {
    ids: Vec<u64>,
    pub saturated: bool,
}

impl IdSet {
    /// Adds `h`; true when it was new and kept.
    pub fn insert(&mut self, h: u64, cap: usize) -> bool {
        match self.ids.binary_search(&h) {
            Ok(_) => false,
            Err(at) => {
                if self.ids.len() < cap {
                    self.ids.insert(at, h);
                    true
                } else {
                    self.saturated = true;
                    false
                }
            }
        }
    }

    pub fn contains(&self, h: u64) -> bool {
        self.ids.binary_search(&h).is_ok()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Members of `self` or `other`.
    pub fn union_len(&self, other: &IdSet) -> usize {
        let (mut i, mut j, mut n) = (0, 0, 0);
        let (a, b) = (&self.ids, &other.ids);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
            n += 1;
        }
        n + (a.len() - i) + (b.len() - j)
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.saturated = false;
    }
}

/// `x` rounded to 3 decimals, for evidence.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn is_2xx(s: Option<u16>) -> bool {
    matches!(s, Some(200..=299))
}

/// Pushes `v` onto the JSON array `key` of `m` unless it is there or the array has `max`.
pub(crate) fn push_unique(
    m: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    v: serde_json::Value,
    max: usize,
) {
    let arr = m
        .entry(key.to_owned())
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(a) = arr {
        if a.len() < max && !a.contains(&v) {
            a.push(v);
        }
    }
}

/// Adds `n` to the integer `key` of `m`.
pub(crate) fn bump(m: &mut serde_json::Map<String, serde_json::Value>, key: &str, n: u64) {
    let cur = m.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    m.insert(key.to_owned(), (cur + n).into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets_are_bounded() {
        let mut s = IdSet::default();
        assert!(s.insert(3, 2));
        assert!(!s.insert(3, 2));
        assert!(s.insert(1, 2));
        assert!(!s.insert(2, 2));
        assert!(s.saturated && s.len() == 2 && s.contains(1) && !s.contains(2));
        let mut t = IdSet::default();
        t.insert(3, 8);
        t.insert(5, 8);
        assert_eq!(s.union_len(&t), 3);
    }

    #[test]
    fn hashes_are_stable_and_separated() {
        assert_eq!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"ab", b"c"]));
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }
}

/// When a windowed table at its cap may sweep out expired entries before refusing a new one.
///
/// Sweeping is a scan of the whole table, so sweeping before every refused insert makes a
/// table full of live entries cost O(cap) per call (a busy link with more actors than the cap
/// slowed the whole sink down by half). A sweep is due only once the oldest entry the last
/// sweep kept may have expired, and at most 16 times per window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SweepGate {
    next: u64,
}

impl SweepGate {
    /// True when a sweep at `now` may find something expired.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next
    }

    /// Records a sweep at `now` that kept entries started at `oldest` and later (`None`: the
    /// table is empty); entries expire `window` after their start.
    pub fn swept(&mut self, now: u64, oldest: Option<u64>, window: u64) {
        let expiry = oldest.map_or(now, |s| s.saturating_add(window).saturating_add(1));
        self.next = expiry.max(now.saturating_add(window / 16));
    }
}

/// Before refusing a new entry to a full `map`: removes the entries expired at `now` (started
/// more than `window` before it), when `gate` says a sweep is due.
pub(crate) fn sweep_full<K, V, S>(
    map: &mut std::collections::HashMap<K, V, S>,
    gate: &mut SweepGate,
    now: u64,
    window: u64,
    start: impl Fn(&V) -> u64,
) {
    if !gate.due(now) {
        return;
    }
    let mut oldest: Option<u64> = None;
    map.retain(|_, v| {
        let s = start(v);
        let keep = now.saturating_sub(s) <= window;
        if keep {
            oldest = Some(oldest.map_or(s, |o| o.min(s)));
        }
        keep
    });
    gate.swept(now, oldest, window);
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn sweep_gate_waits_for_the_oldest_entry_and_a_sixteenth_of_the_window() {
        let mut g = SweepGate::default();
        assert!(g.due(0));
        // Kept entries start at 100 and later; window 1000: nothing can expire before 1101.
        g.swept(500, Some(100), 1000);
        assert!(!g.due(501));
        assert!(!g.due(1100));
        assert!(g.due(1101));
        // The oldest already near expiry: still no more than 16 sweeps per window.
        g.swept(2000, Some(1000), 1000);
        assert!(!g.due(2001));
        assert!(!g.due(2000 + 1000 / 16 - 1));
        assert!(g.due(2000 + 1000 / 16));
        // Empty after the sweep: the next insert will not hit the cap soon, but may sweep.
        g.swept(3000, None, 1000);
        assert!(g.due(3000 + 1000 / 16));
    }

    #[test]
    fn sweep_full_removes_only_expired_entries_and_skips_when_not_due() {
        let mut m: std::collections::HashMap<u32, u64> =
            (0..10).map(|i| (i, u64::from(i) * 10)).collect();
        let mut g = SweepGate::default();
        sweep_full(&mut m, &mut g, 1045, 1000, |s| *s);
        // Started at 0, 10, 20, 30, 40 expired (1045 - s > 1000).
        assert_eq!(m.len(), 5);
        m.insert(99, 0); // an old entry slipped in: not swept until the gate opens
        sweep_full(&mut m, &mut g, 1046, 1000, |s| *s);
        assert_eq!(m.len(), 6);
        // The oldest kept (50) expires at 1051, but sweeps are 1000 / 16 apart: due at 1107.
        sweep_full(&mut m, &mut g, 1106, 1000, |s| *s);
        assert_eq!(m.len(), 6);
        m.insert(98, 200);
        sweep_full(&mut m, &mut g, 1107, 1000, |s| *s);
        assert_eq!(m.len(), 1);
    }
}
