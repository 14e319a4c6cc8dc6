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
