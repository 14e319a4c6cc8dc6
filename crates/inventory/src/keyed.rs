//! Keyed hashes of values that must be remembered but never stored: object ids a client
//! touched (for enumeration detection), credentials seen from an address (for stuffing).
//!
//! [`KeyedHasher`] is SipHash-1-3 under a 128-bit key taken from the state directory's secret
//! (`store::Store::secret_key`, generated at first start): the same value gives the same hash
//! across restarts of one sensor, but a hash cannot be reversed by guessing small values
//! (ids, PINs) without the key, and two sensors' hashes cannot be joined.
//!
//! ```
//! use apiscope_inventory::keyed::KeyedHasher;
//! let h = KeyedHasher::new(&[7u8; 32]);
//! assert_eq!(h.hash(b"user-42"), h.hash(b"user-42"));
//! assert_ne!(h.hash(b"user-42"), KeyedHasher::new(&[8u8; 32]).hash(b"user-42"));
//! ```

use std::hash::Hasher as _;

use siphasher::sip::SipHasher13;

/// See the module overview.
#[derive(Debug, Clone)]
pub struct KeyedHasher {
    k0: u64,
    k1: u64,
}

impl KeyedHasher {
    /// A hasher keyed by the first 16 bytes of `secret` (the state directory's 32-byte key).
    pub fn new(secret: &[u8; 32]) -> Self {
        let k0 = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(secret[8..16].try_into().expect("8 bytes"));
        KeyedHasher { k0, k1 }
    }

    /// A hasher under a key made up for this process (from the standard library's random
    /// hash keys): for runs without a state directory, whose hashes need not outlive them.
    pub fn random() -> Self {
        use std::hash::BuildHasher as _;
        let s = std::collections::hash_map::RandomState::new();
        KeyedHasher {
            k0: s.hash_one(0x6b30_u64),
            k1: s.hash_one(0x6b31_u64),
        }
    }

    /// The keyed hash of `value`.
    pub fn hash(&self, value: &[u8]) -> u64 {
        self.hash_parts(&[value])
    }

    /// The keyed hash of `parts` written one after the other (no copy into one buffer).
    pub fn hash_parts(&self, parts: &[&[u8]]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        for p in parts {
            h.write(p);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_collide_only_under_the_same_key() {
        let a = KeyedHasher::new(&[1; 32]);
        let b = KeyedHasher::new(&[2; 32]);
        assert_eq!(a.hash(b"42"), a.hash(b"42"));
        assert_ne!(a.hash(b"42"), a.hash(b"43"));
        assert_ne!(a.hash(b"42"), b.hash(b"42"));
        // Only the first 16 bytes of the secret key the hash.
        let mut s = [1u8; 32];
        s[31] = 9;
        assert_eq!(KeyedHasher::new(&s).hash(b"42"), a.hash(b"42"));
    }
}
