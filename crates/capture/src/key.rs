//! Flow keys: the 5-tuple plus the tunnel that carried it, and the symmetric hash that
//! sends both directions of a connection to the same table slot and worker thread.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;

/// The kind of tunnel whose id separates overlapping tenant address spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum TunnelKind {
    #[default]
    None,
    Vxlan,
    Geneve,
    Gre,
    Erspan,
}

impl TunnelKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
        }
    }
}

/// Where a flow was seen: the innermost tunnel that carries an id (VXLAN/GENEVE VNI, GRE
/// key, ERSPAN session id) and, when VLAN tracking is on, the innermost VLAN id.
/// Part of the flow key, so tenants with overlapping addresses stay apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TunnelId {
    pub kind: TunnelKind,
    pub id: u32,
    /// 0 when there was no VLAN tag or VLAN tracking is off.
    pub vlan: u16,
}

impl TunnelId {
    pub const NONE: TunnelId = TunnelId {
        kind: TunnelKind::None,
        id: 0,
        vlan: 0,
    };

    pub fn is_none(&self) -> bool {
        *self == TunnelId::NONE
    }
}

impl fmt::Display for TunnelId {
    /// `none`, `vxlan:42`, `gre:7/vlan:100`, `none/vlan:100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TunnelKind::None => f.write_str("none")?,
            k => write!(f, "{}:{}", k.as_str(), self.id)?,
        }
        if self.vlan != 0 {
            write!(f, "/vlan:{}", self.vlan)?;
        }
        Ok(())
    }
}

/// An IP address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    /// `10.0.0.1:80`, `[2001:db8::1]:443`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A directed flow key: `src` sent the packet (or, in [`crate::ConnMeta`], is the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub tunnel: TunnelId,
}

impl FlowKey {
    /// The same key for both directions, in a compact integer form: endpoints in a fixed
    /// order (port first, which almost always decides with one comparison, then address).
    pub fn normalized(&self) -> NormKey {
        let (s, d) = (
            (ip_bits(self.src.ip), self.src.port),
            (ip_bits(self.dst.ip), self.dst.port),
        );
        let src_first = match s.1.cmp(&d.1) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => s.0 <= d.0,
        };
        let (lo, hi) = if src_first { (s, d) } else { (d, s) };
        NormKey {
            lo_ip: lo.0,
            hi_ip: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
            tunnel: self.tunnel,
        }
    }

    /// The key seen from the other side.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            tunnel: self.tunnel,
        }
    }

    /// Symmetric: `k.hash() == k.reversed().hash()`; stable across runs and platforms.
    pub fn symmetric_hash(&self) -> u64 {
        self.normalized().stable_hash()
    }
}

/// Flows are spread over this many buckets by their symmetric hash, and the buckets over
/// the workers ([`worker_of`]). Per-bucket state in a worker (the body sampler's counts)
/// then sees the same flows in the same order whatever the number of workers, which keeps
/// the output independent of it. It is also the most workers that can receive flows.
pub const FLOW_BUCKETS: u64 = 64;

/// The bucket of a flow with symmetric hash `hash`.
pub fn bucket_of(hash: u64) -> u64 {
    hash % FLOW_BUCKETS
}

/// The worker, of `workers`, that handles the flow with symmetric hash `hash`.
pub fn worker_of(hash: u64, workers: u64) -> u64 {
    bucket_of(hash) % workers.max(1)
}

/// A direction-free flow key, the flow table's key: addresses as integers (IPv4 in its
/// IPv4-mapped IPv6 form), so comparing and hashing it is a few integer operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NormKey {
    pub lo_ip: u128,
    pub hi_ip: u128,
    pub lo_port: u16,
    pub hi_port: u16,
    pub tunnel: TunnelId,
}

impl NormKey {
    /// A hash that does not depend on the process (unlike `RandomState`), so sharding and
    /// output order are the same on every run. Computed from a compact numeric form of the
    /// key (addresses as integers), which is much cheaper than hashing the enums field by
    /// field.
    pub fn stable_hash(&self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = mix(self.lo_ip ^ u128::from(self.lo_port) << 112, 0);
        h = mix(self.hi_ip ^ u128::from(self.hi_port) << 112, h);
        let t = self.tunnel;
        h = (h ^ (u64::from(t.id) | u64::from(t.vlan) << 32 | (t.kind as u64) << 48))
            .wrapping_mul(K);
        // Final avalanche so that low bits (used for shards and buckets) depend on all input.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// An address as an integer: IPv4 as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, the
/// same host by definition), IPv6 as is.
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mix(x: u128, h: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let a = (x as u64 ^ h).wrapping_mul(K);
    let b = ((x >> 64) as u64 ^ a.rotate_left(29)).wrapping_mul(K);
    a ^ b.rotate_left(31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: s.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn hash_is_symmetric_and_tunnel_sensitive() {
        let k = FlowKey {
            src: ep("10.0.0.1", 40000),
            dst: ep("10.0.0.2", 80),
            tunnel: TunnelId::NONE,
        };
        assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        assert_eq!(k.normalized(), k.reversed().normalized());
        let mut t = k;
        t.tunnel = TunnelId {
            kind: TunnelKind::Vxlan,
            id: 42,
            vlan: 0,
        };
        assert_ne!(k.normalized(), t.normalized());
    }

    #[test]
    fn displays() {
        assert_eq!(ep("2001:db8::1", 443).to_string(), "[2001:db8::1]:443");
        let t = TunnelId {
            kind: TunnelKind::Gre,
            id: 7,
            vlan: 100,
        };
        assert_eq!(t.to_string(), "gre:7/vlan:100");
        assert_eq!(TunnelId::NONE.to_string(), "none");
    }
}
