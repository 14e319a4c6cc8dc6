//! TCP reassembly for one direction of a connection.
//!
//! Sequence numbers are mapped to 64-bit stream offsets relative to the next expected byte,
//! so 32-bit wraparound is transparent. A segment that starts at (or before) the next
//! expected byte and does not touch buffered data is handed to the consumer straight from
//! the packet buffer; only segments that arrive ahead of a hole are copied, into a sorted
//! list of non-overlapping pieces bounded per flow and globally.
//!
//! Overlaps among bytes not yet delivered follow the [`OverlapPolicy`]; bytes already
//! delivered are never replaced. Holes become explicit gap events when the peer has
//! acknowledged past them, when a buffer bound is reached, and when the connection closes.

use crate::counters::Counters;
use crate::stream::{Direction, StreamAnomaly, StreamEvent};
use crate::time::Timestamp;

/// Which bytes win when buffered segments overlap with different content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// Bytes that arrived first win (BSD-like).
    First,
    /// Bytes that arrived last win.
    Last,
    /// What a Linux receiver keeps: the segment with the lower starting sequence number
    /// wins; on an equal start the later segment wins only if it is longer (the kernel drops a
    /// new segment that an earlier one wholly covers).
    #[default]
    Linux,
}

impl OverlapPolicy {
    pub fn parse(s: &str) -> Option<OverlapPolicy> {
        match s {
            "first" => Some(OverlapPolicy::First),
            "last" => Some(OverlapPolicy::Last),
            "linux" => Some(OverlapPolicy::Linux),
            _ => None,
        }
    }

    /// Does a new segment `[new_off, +new_len)` win over a buffered one?
    fn new_wins(self, new_off: u64, new_len: u64, old_off: u64, old_len: u64) -> bool {
        match self {
            OverlapPolicy::First => false,
            OverlapPolicy::Last => true,
            OverlapPolicy::Linux => new_off < old_off || (new_off == old_off && new_len > old_len),
        }
    }
}

/// Reassembly bounds and policy (`[reassembly]` in the configuration).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasmConfig {
    pub overlap_policy: OverlapPolicy,
    /// Out-of-order bytes buffered per direction (`reassembly.max_ooo_bytes_per_flow`).
    pub max_ooo_bytes_per_flow: usize,
    /// Out-of-order pieces buffered per direction (`reassembly.max_ooo_segments_per_flow`).
    pub max_ooo_segments_per_flow: usize,
    /// Out-of-order bytes buffered across all flows (`reassembly.memcap_bytes`).
    pub memcap_bytes: usize,
}

impl Default for ReasmConfig {
    fn default() -> Self {
        ReasmConfig {
            overlap_policy: OverlapPolicy::Linux,
            max_ooo_bytes_per_flow: 256 << 10,
            max_ooo_segments_per_flow: 1024,
            memcap_bytes: 256 << 20,
        }
    }
}

/// What all half-streams of one engine share: bounds, counters, global buffer use.
#[derive(Debug)]
pub struct Shared<'c> {
    pub cfg: &'c ReasmConfig,
    pub counters: &'c mut Counters,
    pub ooo_bytes: &'c mut usize,
}

/// One segment as the reassembler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Sequence number of the first payload byte.
    pub seq: u32,
    pub payload: &'a [u8],
    pub fin: bool,
    /// Payload bytes cut off by the capture's snap length (they follow `payload`).
    pub missing: u32,
}

/// Bookkeeping overhead charged per buffered piece.
const SEG_OVERHEAD: usize = 48;

#[derive(Debug)]
struct Seg {
    off: u64,
    data: Vec<u8>,
}

impl Seg {
    fn end(&self) -> u64 {
        self.off + self.data.len() as u64
    }
}

/// One direction of a TCP connection.
#[derive(Debug)]
pub struct HalfStream {
    dir: Direction,
    started: bool,
    /// Sequence number of the next expected byte, and its stream offset.
    next_seq: u32,
    next_off: u64,
    isn: Option<u32>,
    /// Stream offset of the FIN, once seen.
    fin_off: Option<u64>,
    finished: bool,
    ooo: Vec<Seg>,
    ooo_bytes: usize,
    /// Highest acknowledgment the peer sent for this direction.
    peer_ack: Option<u32>,
    /// The most recent range given up as a gap.
    last_gap: Option<(u64, u64)>,
    /// When `peer_ack` last advanced.
    peer_ack_ts: Timestamp,
}

impl HalfStream {
    pub fn new(dir: Direction) -> Self {
        HalfStream {
            dir,
            started: false,
            next_seq: 0,
            next_off: 0,
            isn: None,
            fin_off: None,
            finished: false,
            ooo: Vec::new(),
            ooo_bytes: 0,
            peer_ack: None,
            last_gap: None,
            peer_ack_ts: Timestamp::ZERO,
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn isn(&self) -> Option<u32> {
        self.isn
    }

    /// A FIN was seen and every byte before it was delivered (or given up as a gap).
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn fin_seen(&self) -> bool {
        self.fin_off.is_some()
    }

    /// Bytes delivered or skipped as gaps so far.
    pub fn offset(&self) -> u64 {
        self.next_off
    }

    /// Buffered bytes (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    fn off_of(&self, seq: u32) -> i64 {
        self.next_off as i64 + i64::from(seq.wrapping_sub(self.next_seq) as i32)
    }

    /// A SYN from this side: its ISN fixes the stream start (the SYN uses one number).
    pub fn on_syn(&mut self, seq: u32) {
        if self.isn.is_none() {
            self.isn = Some(seq);
        }
        if !self.started {
            self.started = true;
            self.next_seq = seq.wrapping_add(1);
            self.next_off = 0;
        }
    }

    /// Processes one segment's payload and FIN flag.
    pub fn segment<F>(&mut self, ts: Timestamp, seg: Segment<'_>, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        let Segment {
            seq,
            payload,
            fin,
            missing,
        } = seg;
        if !self.started {
            // Mid-stream pickup: the first segment defines the start.
            self.started = true;
            self.next_seq = seq;
            self.next_off = 0;
        }
        let off = self.off_of(seq);
        let end = off + payload.len() as i64 + i64::from(missing);
        if fin && self.fin_off.is_none() && end >= 0 {
            self.fin_off = Some(end as u64);
        }
        if !payload.is_empty() {
            self.data(ts, off, payload, sh, sink);
        }
        self.check_ack_gap(ts, sh, sink);
        self.check_fin();
    }

    fn data<F>(
        &mut self,
        ts: Timestamp,
        off: i64,
        payload: &[u8],
        sh: &mut Shared<'_>,
        sink: &mut F,
    ) where
        F: FnMut(StreamEvent<'_>),
    {
        let next = self.next_off as i64;
        let end = off + payload.len() as i64;
        if end <= next {
            sh.counters.tcp_retransmissions += 1;
            self.note_after_gap(ts, off, end, sh, sink);
            return;
        }
        if off <= next {
            // In order, possibly re-covering delivered bytes at the front.
            if off < next {
                sh.counters.tcp_overlaps += 1;
                self.note_after_gap(ts, off, next, sh, sink);
            }
            let fresh = &payload[(next - off) as usize..];
            let fresh_end = self.next_off + fresh.len() as u64;
            match self.ooo.first() {
                Some(first) if first.off < fresh_end => {
                    // Touches buffered bytes: let the policy decide, then drain.
                    self.insert(ts, self.next_off, fresh, sh, sink);
                }
                _ => self.deliver(ts, fresh, sink),
            }
            self.drain(ts, sh, sink);
            return;
        }
        // Ahead of a hole: buffer, within bounds.
        let off = off as u64;
        let mut flushed = false;
        loop {
            let fits_flow = self.ooo_bytes + payload.len() + SEG_OVERHEAD
                <= sh.cfg.max_ooo_bytes_per_flow
                && self.ooo.len() < sh.cfg.max_ooo_segments_per_flow;
            let fits_global = *sh.ooo_bytes + payload.len() + SEG_OVERHEAD <= sh.cfg.memcap_bytes;
            if fits_flow && fits_global {
                break;
            }
            if !flushed {
                if fits_flow {
                    sh.counters.tcp_ooo_memcap += 1;
                } else {
                    sh.counters.tcp_ooo_flow_limit += 1;
                }
                flushed = true;
            }
            if !self.ooo.is_empty() {
                self.gap_to_first_and_drain(ts, sh, sink);
            } else {
                // Nothing left to give up but the hole before this segment.
                let len = off - self.next_off;
                self.gap(ts, len, sh, sink);
                break;
            }
            if off <= self.next_off {
                break;
            }
        }
        if off <= self.next_off {
            // The forced gaps caught up with this segment.
            return self.data(ts, off as i64, payload, sh, sink);
        }
        sh.counters.tcp_out_of_order += 1;
        self.insert(ts, off, payload, sh, sink);
    }

    /// Inserts `data` at `off` into the buffered pieces, resolving overlaps by policy.
    fn insert<F>(&mut self, ts: Timestamp, off: u64, data: &[u8], sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        let end = off + data.len() as u64;
        let policy = sh.cfg.overlap_policy;
        // Parts of the new data still to insert, as [a, b) stream ranges.
        let mut pieces: Vec<(u64, u64)> = vec![(off, end)];
        let mut kept: Vec<Seg> = Vec::new();
        let mut mismatch = false;
        let mut overlapped = false;
        let mut new_won = false;
        // Take the overlapped pieces out; survivors are moved (or split in place) back.
        let first = self.ooo.partition_point(|s| s.end() <= off);
        let last = first + self.ooo[first..].partition_point(|s| s.off < end);
        let overlapped_segs: Vec<Seg> = self.ooo.drain(first..last).collect();
        for mut s in overlapped_segs {
            self.release(s.data.len(), sh);
            overlapped = true;
            let (a, b) = (off.max(s.off), end.min(s.end()));
            let new_bytes = &data[(a - off) as usize..(b - off) as usize];
            let old_bytes = &s.data[(a - s.off) as usize..(b - s.off) as usize];
            mismatch |= new_bytes != old_bytes;
            if policy.new_wins(off, data.len() as u64, s.off, s.data.len() as u64) {
                new_won = true;
                let old_end = s.end();
                if old_end > end {
                    let right = s.data.split_off((end - s.off) as usize);
                    kept.push(Seg {
                        off: end,
                        data: right,
                    });
                }
                if s.off < off {
                    s.data.truncate((off - s.off) as usize);
                    kept.push(s);
                }
            } else {
                pieces = subtract(&pieces, s.off, s.end());
                kept.push(s);
            }
        }
        if overlapped {
            // Every new byte already held, and none replaced: a plain retransmission.
            if pieces.is_empty() && !new_won {
                sh.counters.tcp_retransmissions += 1;
            } else {
                sh.counters.tcp_overlaps += 1;
            }
            if mismatch {
                sh.counters.tcp_overlap_mismatches += 1;
                sink(StreamEvent::Anomaly {
                    dir: self.dir,
                    ts,
                    kind: StreamAnomaly::OverlapMismatch,
                });
            }
        }
        for (a, b) in pieces {
            kept.push(Seg {
                off: a,
                data: data[(a - off) as usize..(b - off) as usize].to_vec(),
            });
        }
        kept.sort_unstable_by_key(|s| s.off);
        for s in &kept {
            self.ooo_bytes += s.data.len() + SEG_OVERHEAD;
            *sh.ooo_bytes += s.data.len() + SEG_OVERHEAD;
        }
        self.ooo.splice(first..first, kept);
    }

    fn release(&mut self, len: usize, sh: &mut Shared<'_>) {
        self.ooo_bytes -= len + SEG_OVERHEAD;
        *sh.ooo_bytes -= len + SEG_OVERHEAD;
    }

    fn deliver<F>(&mut self, ts: Timestamp, data: &[u8], sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        if data.is_empty() {
            return;
        }
        sink(StreamEvent::Data {
            dir: self.dir,
            ts,
            data,
        });
        self.advance(data.len() as u64);
    }

    fn advance(&mut self, len: u64) {
        self.next_off += len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
    }

    fn gap<F>(&mut self, ts: Timestamp, len: u64, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        if len == 0 {
            return;
        }
        sh.counters.tcp_gaps += 1;
        sh.counters.tcp_gap_bytes += len;
        // When the peer acknowledged exactly up to the gap's end, it had the lost bytes by
        // then: date the gap at that acknowledgment.
        let end = self.next_off + len;
        let ts = match self.peer_ack {
            Some(a) if self.off_of(a) == end as i64 => self.peer_ack_ts.min(ts),
            _ => ts,
        };
        sink(StreamEvent::Gap {
            dir: self.dir,
            ts,
            len,
        });
        self.last_gap = Some((self.next_off, self.next_off + len));
        self.advance(len);
    }

    fn note_after_gap<F>(
        &self,
        ts: Timestamp,
        off: i64,
        end: i64,
        sh: &mut Shared<'_>,
        sink: &mut F,
    ) where
        F: FnMut(StreamEvent<'_>),
    {
        if let Some((a, b)) = self.last_gap {
            if off < b as i64 && end > a as i64 {
                sh.counters.tcp_data_after_gap += 1;
                sink(StreamEvent::Anomaly {
                    dir: self.dir,
                    ts,
                    kind: StreamAnomaly::DataAfterGap,
                });
            }
        }
    }

    /// Delivers buffered pieces that are now contiguous.
    fn drain<F>(&mut self, ts: Timestamp, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        while self.ooo.first().is_some_and(|s| s.off <= self.next_off) {
            let s = self.ooo.remove(0);
            self.release(s.data.len(), sh);
            if s.end() > self.next_off {
                let from = (self.next_off - s.off) as usize;
                self.deliver(ts, &s.data[from..], sink);
            }
        }
    }

    fn gap_to_first_and_drain<F>(&mut self, ts: Timestamp, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        if let Some(first) = self.ooo.first() {
            let len = first.off.saturating_sub(self.next_off);
            self.gap(ts, len, sh, sink);
            self.drain(ts, sh, sink);
        }
    }

    /// The peer acknowledged `ack` of this direction's sequence space.
    pub fn on_peer_ack<F>(&mut self, ts: Timestamp, ack: u32, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        if !self.started {
            return;
        }
        match self.peer_ack {
            Some(cur) if (ack.wrapping_sub(cur) as i32) <= 0 => return,
            _ => self.peer_ack = Some(ack),
        }
        self.peer_ack_ts = ts;
        self.check_ack_gap(ts, sh, sink);
        self.check_fin();
    }

    /// Holes the peer has acknowledged past can never be filled from the capture.
    fn check_ack_gap<F>(&mut self, ts: Timestamp, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        let Some(ack) = self.peer_ack else { return };
        loop {
            let ack_off = self.off_of(ack);
            match self.ooo.first() {
                Some(first) if ack_off >= first.off as i64 => {
                    self.gap_to_first_and_drain(ts, sh, sink);
                }
                Some(_) => return,
                None => {
                    // The FIN itself was acknowledged: what is before it is lost.
                    if let Some(fin) = self.fin_off {
                        if ack_off > fin as i64 && fin > self.next_off {
                            self.gap(ts, fin - self.next_off, sh, sink);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn check_fin(&mut self) {
        if !self.finished && self.fin_off == Some(self.next_off) {
            self.finished = true;
            // The FIN occupies one sequence number.
            self.next_seq = self.next_seq.wrapping_add(1);
        }
    }

    /// At close: delivers everything buffered, with gaps for the holes, and a trailing gap
    /// for bytes the peer acknowledged that the capture never showed.
    pub fn flush<F>(&mut self, ts: Timestamp, sh: &mut Shared<'_>, sink: &mut F)
    where
        F: FnMut(StreamEvent<'_>),
    {
        while !self.ooo.is_empty() {
            self.gap_to_first_and_drain(ts, sh, sink);
        }
        if self.finished || !self.started {
            return;
        }
        if let Some(ack) = self.peer_ack {
            let ack_off = self.off_of(ack);
            let limit = match self.fin_off {
                Some(fin) => ack_off.min(fin as i64),
                None => ack_off,
            };
            if limit > self.next_off as i64 {
                self.gap(ts, limit as u64 - self.next_off, sh, sink);
            }
        }
        self.check_fin();
    }

    /// Releases buffered memory without delivering it (connection discarded).
    pub fn discard(&mut self, sh: &mut Shared<'_>) {
        for s in std::mem::take(&mut self.ooo) {
            self.release(s.data.len(), sh);
        }
    }
}

/// `ranges` minus `[a, b)`.
fn subtract(ranges: &[(u64, u64)], a: u64, b: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(x, y) in ranges {
        if y <= a || x >= b {
            out.push((x, y));
            continue;
        }
        if x < a {
            out.push((x, a));
        }
        if y > b {
            out.push((b, y));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collected events of one direction: data merged, gaps as markers.
    #[derive(Debug, Default, PartialEq)]
    struct Out {
        events: Vec<Ev>,
        anomalies: usize,
    }

    #[derive(Debug, PartialEq)]
    enum Ev {
        Data(Vec<u8>),
        Gap(u64),
    }

    impl Out {
        fn push(&mut self, ev: StreamEvent<'_>) {
            match ev {
                StreamEvent::Data { data, .. } => match self.events.last_mut() {
                    Some(Ev::Data(d)) => d.extend_from_slice(data),
                    _ => self.events.push(Ev::Data(data.to_vec())),
                },
                StreamEvent::Gap { len, .. } => self.events.push(Ev::Gap(len)),
                StreamEvent::Anomaly { .. } => self.anomalies += 1,
                StreamEvent::Closed { .. } => {}
            }
        }
    }

    struct Harness {
        cfg: ReasmConfig,
        counters: Counters,
        ooo: usize,
        hs: HalfStream,
        out: Out,
    }

    impl Harness {
        fn new(policy: OverlapPolicy, isn: u32) -> Self {
            let mut hs = HalfStream::new(Direction::ToServer);
            hs.on_syn(isn);
            Harness {
                cfg: ReasmConfig {
                    overlap_policy: policy,
                    ..ReasmConfig::default()
                },
                counters: Counters::default(),
                ooo: 0,
                hs,
                out: Out::default(),
            }
        }

        fn seg(&mut self, seq: u32, data: &[u8]) {
            self.seg_fin(seq, data, false);
        }

        fn seg_fin(&mut self, seq: u32, data: &[u8], fin: bool) {
            let mut sh = Shared {
                cfg: &self.cfg,
                counters: &mut self.counters,
                ooo_bytes: &mut self.ooo,
            };
            let out = &mut self.out;
            self.hs.segment(
                Timestamp::ZERO,
                Segment {
                    seq,
                    payload: data,
                    fin,
                    missing: 0,
                },
                &mut sh,
                &mut |e| out.push(e),
            );
        }

        fn ack(&mut self, ack: u32) {
            let mut sh = Shared {
                cfg: &self.cfg,
                counters: &mut self.counters,
                ooo_bytes: &mut self.ooo,
            };
            let out = &mut self.out;
            self.hs
                .on_peer_ack(Timestamp::ZERO, ack, &mut sh, &mut |e| out.push(e));
        }

        fn flush(&mut self) {
            let mut sh = Shared {
                cfg: &self.cfg,
                counters: &mut self.counters,
                ooo_bytes: &mut self.ooo,
            };
            let out = &mut self.out;
            self.hs
                .flush(Timestamp::ZERO, &mut sh, &mut |e| out.push(e));
        }

        fn data(&self) -> Vec<u8> {
            match self.out.events.as_slice() {
                [Ev::Data(d)] => d.clone(),
                other => panic!("expected one data run, got {other:?}"),
            }
        }
    }

    #[test]
    fn in_order_and_out_of_order() {
        let mut h = Harness::new(OverlapPolicy::Linux, 1000);
        h.seg(1001, b"abc");
        h.seg(1007, b"ghi");
        h.seg(1004, b"def");
        assert_eq!(h.data(), b"abcdefghi");
        assert_eq!(h.counters.tcp_out_of_order, 1);
        assert_eq!(h.ooo, 0);
        assert_eq!(h.hs.buffered(), 0);
    }

    #[test]
    fn retransmission_is_not_delivered_twice() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(1, b"abc");
        h.seg(1, b"abc");
        h.seg(2, b"bcde");
        assert_eq!(h.data(), b"abcde");
        assert_eq!(h.counters.tcp_retransmissions, 1);
        assert_eq!(h.counters.tcp_overlaps, 1);
    }

    #[test]
    fn sequence_wraparound() {
        let isn = u32::MAX - 4;
        let mut h = Harness::new(OverlapPolicy::Linux, isn);
        h.seg(isn.wrapping_add(1), b"0123");
        h.seg(isn.wrapping_add(9), b"89");
        h.seg(isn.wrapping_add(5), b"4567");
        assert_eq!(h.data(), b"0123456789");
    }

    /// Hole at 0..2, then A = [2,6) "AAAA", then B = [4,8) "BBBB", then the hole filled.
    fn overlap(policy: OverlapPolicy) -> Vec<u8> {
        let mut h = Harness::new(policy, 0);
        h.seg(3, b"AAAA");
        h.seg(5, b"BBBB");
        h.seg(1, b"xx");
        assert_eq!(h.counters.tcp_overlap_mismatches, 1);
        assert_eq!(h.out.anomalies, 1);
        h.data()
    }

    #[test]
    fn overlap_policies() {
        assert_eq!(overlap(OverlapPolicy::First), b"xxAAAABB");
        assert_eq!(overlap(OverlapPolicy::Last), b"xxAABBBB");
        // B starts later than A, so A's bytes win under Linux.
        assert_eq!(overlap(OverlapPolicy::Linux), b"xxAAAABB");
    }

    #[test]
    fn linux_prefers_the_earlier_start() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(5, b"BBBB"); // [4,8)
        h.seg(3, b"AAAA"); // [2,6): starts earlier, wins [4,6)
        h.seg(1, b"xx");
        assert_eq!(h.data(), b"xxAAAABB");
        let mut h = Harness::new(OverlapPolicy::First, 0);
        h.seg(5, b"BBBB");
        h.seg(3, b"AAAA");
        h.seg(1, b"xx");
        assert_eq!(h.data(), b"xxAABBBB");
    }

    #[test]
    fn in_order_data_overlapping_buffered_follows_policy() {
        // Buffered [2,4) "BB"; then in-order [0,4) "aaaa".
        let run = |p| {
            let mut h = Harness::new(p, 0);
            h.seg(3, b"BB");
            h.seg(1, b"aaaa");
            h.data()
        };
        assert_eq!(run(OverlapPolicy::First), b"aaBB");
        assert_eq!(run(OverlapPolicy::Last), b"aaaa");
        assert_eq!(run(OverlapPolicy::Linux), b"aaaa");
    }

    #[test]
    fn ack_past_hole_declares_gap() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(1, b"abc");
        h.seg(11, b"klm"); // hole [3,10)
        assert_eq!(h.out.events.len(), 1);
        h.ack(14);
        assert_eq!(
            h.out.events,
            vec![
                Ev::Data(b"abc".to_vec()),
                Ev::Gap(7),
                Ev::Data(b"klm".to_vec())
            ]
        );
        // The lost segment turning up late is noted, not delivered.
        h.seg(4, b"defghij");
        assert_eq!(h.counters.tcp_data_after_gap, 1);
        assert_eq!(h.out.events.len(), 3);
    }

    #[test]
    fn ack_short_of_buffered_data_waits() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(1, b"abc");
        h.seg(11, b"klm");
        h.ack(8);
        assert_eq!(h.out.events.len(), 1);
        h.seg(4, b"defghij");
        assert_eq!(h.data(), b"abcdefghijklm");
    }

    #[test]
    fn flow_limit_forces_gap() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.cfg.max_ooo_bytes_per_flow = 100;
        h.seg(11, &[b'x'; 40]); // [10,50)
        h.seg(61, &[b'y'; 40]); // [60,100): would exceed
        assert_eq!(h.counters.tcp_ooo_flow_limit, 1);
        assert_eq!(h.out.events, vec![Ev::Gap(10), Ev::Data(vec![b'x'; 40])]);
        h.flush();
        assert_eq!(
            h.out.events,
            vec![
                Ev::Gap(10),
                Ev::Data(vec![b'x'; 40]),
                Ev::Gap(10),
                Ev::Data(vec![b'y'; 40])
            ]
        );
        assert_eq!(h.ooo, 0);
    }

    #[test]
    fn trailing_loss_acked_becomes_gap_at_flush() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(1, b"abc");
        h.ack(11);
        h.flush();
        assert_eq!(h.out.events, vec![Ev::Data(b"abc".to_vec()), Ev::Gap(7)]);
    }

    #[test]
    fn fin_after_data_finishes_once_hole_filled() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg_fin(4, b"def", true);
        assert!(!h.hs.finished());
        h.seg(1, b"abc");
        assert!(h.hs.finished());
        assert_eq!(h.data(), b"abcdef");
    }

    #[test]
    fn acked_fin_turns_missing_tail_into_gap() {
        let mut h = Harness::new(OverlapPolicy::Linux, 0);
        h.seg(1, b"abc");
        h.seg_fin(11, b"", true); // FIN at offset 10, bytes 3..10 never seen
        h.ack(12);
        assert!(h.hs.finished());
        assert_eq!(h.out.events, vec![Ev::Data(b"abc".to_vec()), Ev::Gap(7)]);
    }

    /// Random segmentations, reorderings and duplicates of a stream reassemble exactly.
    #[test]
    fn random_against_model() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..300 {
            let len = 1 + (next() % 3000) as usize;
            let stream: Vec<u8> = (0..len).map(|i| (i * 7 + round) as u8).collect();
            let isn = next() as u32;
            let mut segs = Vec::new();
            let mut pos = 0;
            while pos < len {
                let n = 1 + (next() % 200) as usize;
                let n = n.min(len - pos);
                segs.push((pos, n));
                if next() % 5 == 0 {
                    segs.push((pos, n)); // duplicate
                }
                pos += n;
            }
            // Shuffle lightly: swap random neighbours.
            for _ in 0..segs.len() {
                let i = (next() % segs.len() as u64) as usize;
                let j = (i + 1).min(segs.len() - 1);
                segs.swap(i, j);
            }
            let mut h = Harness::new(OverlapPolicy::Linux, isn);
            for (p, n) in segs {
                h.seg(isn.wrapping_add(1 + p as u32), &stream[p..p + n]);
            }
            h.flush();
            assert_eq!(h.data(), stream, "round {round}");
            assert_eq!(h.ooo, 0);
        }
    }
}
