//! IPv4 and IPv6 fragment reassembly, bounded in datagrams held, bytes held and time.
//!
//! Fragments are keyed by (tunnel, source, destination, protocol, id). Overlapping
//! fragments keep the bytes that arrived first (and are counted). A datagram completes
//! when the last fragment fixed its length and every byte up to it is present; it is
//! dropped after `frag.timeout_secs` of capture time otherwise.

use std::collections::VecDeque;
use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::counters::Counters;
use crate::decode::{Ctx, IpPacket};
use crate::key::TunnelId;
use crate::time::{Duration, Timestamp};

/// Bounds of the fragment table (`[frag]` in the configuration).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragConfig {
    /// Incomplete datagrams are dropped after this many seconds (`frag.timeout_secs`).
    pub timeout_secs: u64,
    /// Datagrams held at once (`frag.max_datagrams`).
    pub max_datagrams: usize,
    /// Bytes held across all datagrams (`frag.memcap_bytes`).
    pub memcap_bytes: usize,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            timeout_secs: 30,
            max_datagrams: 4096,
            memcap_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    tunnel: TunnelId,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Debug)]
struct Datagram {
    ctx: Ctx,
    first_seen: Timestamp,
    buf: Vec<u8>,
    /// Covered byte ranges, sorted and merged.
    have: Vec<(u32, u32)>,
    /// Payload length, known once the last fragment arrived.
    total: Option<u32>,
}

/// A datagram put back together; `payload` is the transport payload.
#[derive(Debug)]
pub struct Reassembled {
    pub ctx: Ctx,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Vec<u8>,
}

/// The fragment table.
#[derive(Debug, Default)]
pub struct FragTable {
    cfg: FragConfig,
    map: FxHashMap<FragKey, Datagram>,
    /// Creation order, for timeouts.
    order: VecDeque<(Timestamp, FragKey)>,
    bytes: usize,
}

const MAX_DATAGRAM: u32 = 65_535;

impl FragTable {
    pub fn new(cfg: FragConfig) -> Self {
        FragTable {
            cfg,
            ..FragTable::default()
        }
    }

    /// Bytes currently held.
    pub fn memory(&self) -> usize {
        self.bytes
    }

    /// Datagrams currently held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds one fragment (`ip.frag` must be set); returns the datagram when complete.
    pub fn insert(
        &mut self,
        now: Timestamp,
        ip: &IpPacket<'_>,
        c: &mut Counters,
    ) -> Option<Reassembled> {
        let frag = ip.frag?;
        c.frag_fragments += 1;
        let key = FragKey {
            tunnel: ip.ctx.tunnel,
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            id: frag.id,
        };
        let start = frag.offset;
        let end = start.saturating_add(ip.payload.len() as u32);
        if end > MAX_DATAGRAM || ip.missing != 0 || (frag.more && ip.payload.len() % 8 != 0) {
            c.frag_malformed += 1;
            return None;
        }
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cfg.max_datagrams {
                c.frag_dropped_limit += 1;
                return None;
            }
            self.map.insert(
                key,
                Datagram {
                    ctx: ip.ctx,
                    first_seen: now,
                    buf: Vec::new(),
                    have: Vec::new(),
                    total: None,
                },
            );
            self.order.push_back((now, key));
        }
        let grow = (end as usize).saturating_sub(self.map[&key].buf.len());
        if self.bytes + grow > self.cfg.memcap_bytes {
            c.frag_dropped_limit += 1;
            return None;
        }
        let d = self.map.get_mut(&key)?;
        if !frag.more {
            match d.total {
                Some(t) if t != end => {
                    c.frag_malformed += 1;
                    return None;
                }
                _ => d.total = Some(end),
            }
        }
        if d.buf.len() < end as usize {
            d.buf.resize(end as usize, 0);
            self.bytes += grow;
        }
        // Copy only the parts not yet covered: the first copy of a byte wins.
        let mut cursor = start;
        let mut overlapped = false;
        for &(a, b) in &d.have {
            if b <= cursor || a >= end {
                continue;
            }
            overlapped = true;
            if a > cursor {
                copy(&mut d.buf, ip.payload, start, cursor, a);
            }
            cursor = cursor.max(b);
        }
        if cursor < end {
            copy(&mut d.buf, ip.payload, start, cursor, end);
        }
        if overlapped {
            c.frag_overlaps += 1;
        }
        add_range(&mut d.have, start, end);
        let complete = matches!(d.total, Some(t) if d.have.as_slice() == [(0, t)]);
        if !complete {
            return None;
        }
        let d = self.map.remove(&key)?;
        self.bytes -= d.buf.len();
        c.frag_reassembled += 1;
        let mut payload = d.buf;
        payload.truncate(d.total.unwrap_or(0) as usize);
        Some(Reassembled {
            ctx: d.ctx,
            src: key.src,
            dst: key.dst,
            proto: key.proto,
            payload,
        })
    }

    /// Drops datagrams older than the timeout.
    pub fn expire(&mut self, now: Timestamp, c: &mut Counters) {
        while let Some(&(t, key)) = self.order.front() {
            if now.saturating_since(t) < Duration::from_secs(self.cfg.timeout_secs) {
                break;
            }
            self.order.pop_front();
            // The key may have completed (and even been reused) since.
            if let Some(d) = self.map.get(&key) {
                if d.first_seen == t {
                    self.bytes -= d.buf.len();
                    self.map.remove(&key);
                    c.frag_timeouts += 1;
                }
            }
        }
    }
}

fn copy(buf: &mut [u8], payload: &[u8], start: u32, from: u32, to: u32) {
    let (a, b) = ((from - start) as usize, (to - start) as usize);
    buf[from as usize..to as usize].copy_from_slice(&payload[a..b]);
}

fn add_range(have: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    have.push((start, end));
    have.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(have.len());
    for &(a, b) in have.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *have = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Frag;

    fn frag<'a>(id: u32, offset: u32, more: bool, payload: &'a [u8]) -> IpPacket<'a> {
        IpPacket {
            ctx: Ctx::default(),
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            payload,
            missing: 0,
            frag: Some(Frag { id, offset, more }),
        }
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut t = FragTable::default();
        let mut c = Counters::default();
        let now = Timestamp::from_secs(1);
        assert!(t
            .insert(now, &frag(1, 16, false, b"cccc"), &mut c)
            .is_none());
        assert!(t
            .insert(now, &frag(1, 0, true, b"aaaaaaaa"), &mut c)
            .is_none());
        let d = t
            .insert(now, &frag(1, 8, true, b"bbbbbbbb"), &mut c)
            .unwrap();
        assert_eq!(d.payload, b"aaaaaaaabbbbbbbbcccc");
        assert_eq!(c.frag_reassembled, 1);
        assert_eq!(t.memory(), 0);
    }

    #[test]
    fn overlap_keeps_first_copy() {
        let mut t = FragTable::default();
        let mut c = Counters::default();
        let now = Timestamp::from_secs(1);
        t.insert(now, &frag(2, 0, true, b"AAAAAAAA"), &mut c);
        t.insert(now, &frag(2, 0, true, b"XXXXXXXXYYYYYYYY"), &mut c);
        let d = t.insert(now, &frag(2, 16, false, b"Z"), &mut c).unwrap();
        assert_eq!(d.payload, b"AAAAAAAAYYYYYYYYZ");
        assert_eq!(c.frag_overlaps, 1);
    }

    #[test]
    fn incomplete_datagrams_time_out() {
        let mut t = FragTable::new(FragConfig {
            timeout_secs: 5,
            ..FragConfig::default()
        });
        let mut c = Counters::default();
        t.insert(
            Timestamp::from_secs(1),
            &frag(3, 0, true, b"aaaaaaaa"),
            &mut c,
        );
        t.expire(Timestamp::from_secs(5), &mut c);
        assert_eq!(t.len(), 1);
        t.expire(Timestamp::from_secs(6), &mut c);
        assert_eq!((t.len(), t.memory(), c.frag_timeouts), (0, 0, 1));
    }

    #[test]
    fn datagram_bound_is_counted() {
        let mut t = FragTable::new(FragConfig {
            max_datagrams: 1,
            ..FragConfig::default()
        });
        let mut c = Counters::default();
        let now = Timestamp::from_secs(1);
        t.insert(now, &frag(1, 0, true, b"aaaaaaaa"), &mut c);
        t.insert(now, &frag(2, 0, true, b"aaaaaaaa"), &mut c);
        assert_eq!(c.frag_dropped_limit, 1);
    }

    #[test]
    fn oversized_datagram_is_malformed() {
        let mut t = FragTable::default();
        let mut c = Counters::default();
        t.insert(
            Timestamp::ZERO,
            &frag(1, 65_528, false, b"0123456789"),
            &mut c,
        );
        assert_eq!(c.frag_malformed, 1);
    }
}
