//! Calls as JSON Lines, in order of request time whatever the number of workers.
//!
//! Workers turn each [`Call`] into a [`CallLine`] (its sort key and its JSON, serialised on
//! the worker's core) and send batches with a *watermark*: no call of that worker that is
//! still to come can have an earlier request time (the oldest unfinished request, or the
//! worker's capture time minus `output.reorder_slack_ms` for requests not yet begun, since
//! capture timestamps are not strictly ordered). The [`Merger`] releases calls below the
//! lowest watermark in key order. Holding is bounded by `output.reorder_max_calls` and
//! `output.reorder_max_bytes` (the lines and the facts held); a call forced out early by a
//! bound is counted in `calls_forced_out`, and one overtaken later in `calls_out_of_order`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::fmt::Display;

use apiscope_capture::{ConnMeta, Endpoint, Timestamp, TunnelId};
use apiscope_http::Call;

/// Orders calls: (request time, client, server, tunnel, index in connection).
pub type Key = (Timestamp, Endpoint, Endpoint, TunnelId, u64);

/// Appends `s` as a JSON string, escaped exactly as `serde_json` does (`"`, `\\`, and
/// control characters; everything else, including non-ASCII, as is).
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

pub fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends the decimal digits of `n`.
fn json_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn json_opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => json_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a value's `Display` form as a JSON string; for values whose text needs no
/// escaping (timestamps, endpoints, tunnel ids).
fn json_shown(out: &mut Vec<u8>, v: impl Display) {
    use std::io::Write as _;
    out.push(b'"');
    write!(out, "{v}").expect("writing to a Vec cannot fail");
    out.push(b'"');
}

fn json_ts(out: &mut Vec<u8>, ts: Timestamp) {
    out.push(b'"');
    ts.write_rfc3339(out);
    out.push(b'"');
}

fn json_endpoint(out: &mut Vec<u8>, e: Endpoint) {
    match e.ip {
        std::net::IpAddr::V4(a) => {
            out.push(b'"');
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                json_u64(out, u64::from(o));
            }
            out.push(b':');
            json_u64(out, u64::from(e.port));
            out.push(b'"');
        }
        std::net::IpAddr::V6(_) => json_shown(out, e),
    }
}

fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|b| std::str::from_utf8(b).ok())
}

/// The key that orders `call` of the connection `meta`; `swapped` when the HTTP stage found
/// the capture stage's client to be the server.
pub fn key_of(call: &Call, meta: &ConnMeta, swapped: bool) -> Key {
    let (client, server) = if swapped {
        (meta.key.dst, meta.key.src)
    } else {
        (meta.key.src, meta.key.dst)
    };
    (call.request.ts, client, server, meta.key.tunnel, call.seq)
}

/// Appends `call` of the connection `meta` as one JSON line to `out` and returns its key and
/// where the `endpoint` value goes: the line is written up to `"endpoint":` and continues
/// after it, and the merger splices the value in once the inventory has counted the call.
///
/// Written by hand rather than through `serde`: this runs once per call on the hot path and
/// the derive spent most of its time in `fmt` machinery. The field order and escaping are
/// those `serde_json` produced (a test compares them).
pub fn write_line(out: &mut Vec<u8>, call: &Call, meta: &ConnMeta, swapped: bool) -> (Key, usize) {
    let key = key_of(call, meta, swapped);
    let (_, client, server, _, _) = key;
    let req = &call.request;
    let resp = call.response.as_ref();
    out.extend_from_slice(b"{\"ts\":");
    json_ts(out, req.ts);
    out.extend_from_slice(b",\"src\":");
    json_endpoint(out, client);
    out.extend_from_slice(b",\"dst\":");
    json_endpoint(out, server);
    out.extend_from_slice(b",\"method\":");
    json_str(out, &req.method);
    out.extend_from_slice(b",\"host\":");
    json_opt_str(out, req.host());
    out.extend_from_slice(b",\"target\":");
    json_str(out, &req.target);
    out.extend_from_slice(b",\"path\":");
    json_str(out, req.path());
    out.extend_from_slice(b",\"status\":");
    json_opt_u64(out, resp.map(|r| u64::from(r.status)));
    out.extend_from_slice(b",\"req_body_bytes\":");
    json_u64(out, req.body.bytes);
    out.extend_from_slice(b",\"resp_body_bytes\":");
    json_opt_u64(out, resp.map(|r| r.body.bytes));
    out.extend_from_slice(b",\"endpoint\":");
    let endpoint_at = out.len();
    out.extend_from_slice(b",\"version\":");
    json_str(out, req.version.as_str());
    out.extend_from_slice(b",\"resp_ts\":");
    match resp {
        Some(r) => json_ts(out, r.ts),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"latency_us\":");
    json_opt_u64(out, resp.map(|r| r.ts.saturating_since(req.ts).as_micros()));
    out.extend_from_slice(b",\"tunnel\":");
    if meta.key.tunnel == TunnelId::NONE {
        out.extend_from_slice(b"\"none\"");
    } else {
        json_shown(out, meta.key.tunnel);
    }
    out.extend_from_slice(b",\"req_content_type\":");
    json_opt_str(out, text(req.header("content-type")));
    out.extend_from_slice(b",\"resp_content_type\":");
    json_opt_str(out, resp.and_then(|r| text(r.header("content-type"))));
    out.extend_from_slice(b",\"interim\":[");
    for (i, s) in resp
        .map_or(&[][..], |r| r.interim.as_slice())
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        json_u64(out, u64::from(*s));
    }
    out.extend_from_slice(b"],\"anomalies\":[");
    for (i, a) in call.anomalies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, a.as_str());
    }
    out.extend_from_slice(b"]}\n");
    (key, endpoint_at)
}

/// What the merger keeps of one call: its key, where its line is in the batch buffer (start,
/// endpoint offset, end; all equal when lines are not written), and what the inventory
/// needs.
#[derive(Debug)]
pub struct Item<F> {
    pub key: Key,
    pub line: (u32, u32, u32),
    pub facts: Option<F>,
}

/// A batch from one worker: its lines back to back in one buffer (one allocation per batch,
/// not per call), and each call's key, line offsets and facts.
#[derive(Debug)]
pub struct Batch<F> {
    pub worker: usize,
    pub items: Vec<Item<F>>,
    pub bytes: Vec<u8>,
    /// Stream-level anomalies (overlaps with different bytes) seen since the last batch.
    pub stream_notes: Vec<crate::sink::StreamNote>,
    /// No later call of this worker has an earlier request time; `None` when it finished.
    pub watermark: Option<Timestamp>,
}

impl<F> Default for Batch<F> {
    fn default() -> Self {
        Batch {
            worker: 0,
            items: Vec::new(),
            bytes: Vec::new(),
            stream_notes: Vec::new(),
            watermark: None,
        }
    }
}

impl<F> Batch<F> {
    /// An empty batch with room for `items` calls and `bytes` of lines, so that filling it
    /// does not grow (and copy) its vectors step by step.
    pub fn with_capacity(items: usize, bytes: usize) -> Self {
        Batch {
            items: Vec::with_capacity(items),
            bytes: Vec::with_capacity(bytes),
            ..Batch::default()
        }
    }

    /// Adds one call: its line when `write` (see [`write_line`]); its facts can be attached
    /// afterwards with [`Batch::set_facts`] (so they may take what the line no longer needs).
    pub fn push(&mut self, call: &Call, meta: &ConnMeta, swapped: bool, write: bool) {
        let start = self.bytes.len();
        let (key, at) = if write {
            write_line(&mut self.bytes, call, meta, swapped)
        } else {
            (key_of(call, meta, swapped), start)
        };
        let off = |n: usize| u32::try_from(n).expect("a batch stays under 4 GiB");
        self.items.push(Item {
            key,
            line: (off(start), off(at), off(self.bytes.len())),
            facts: None,
        });
    }

    /// Attaches facts to the call pushed last.
    pub fn set_facts(&mut self, facts: F) {
        if let Some(it) = self.items.last_mut() {
            it.facts = Some(facts);
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// A call released by the merger: its key, its line in two parts around the endpoint value
/// (both empty when lines are not written), and its facts.
#[derive(Debug)]
pub struct Released<'a, F> {
    pub key: Key,
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub facts: Option<F>,
}

/// What a held call's facts keep, in bytes, besides its line.
pub trait Weigh {
    fn weigh(&self) -> usize;
}

impl Weigh for () {
    fn weigh(&self) -> usize {
        0
    }
}

/// A held call: its key, then where it is (batch slot, index in the batch).
type Held = Reverse<(Key, u32, u32)>;

/// A held call in its batch: where its line is in the batch's bytes, its facts, its weight.
type SlotItem<F> = ((u32, u32, u32), Option<F>, usize);

/// One batch whose calls are not all released.
#[derive(Debug)]
struct Slot<F> {
    bytes: Vec<u8>,
    items: Vec<SlotItem<F>>,
    left: usize,
}

/// Orders the calls of all workers and hands them, in key order, to a sink.
#[derive(Debug)]
pub struct Merger<F> {
    heap: BinaryHeap<Held>,
    slots: Vec<Slot<F>>,
    free: Vec<u32>,
    marks: Vec<Option<Timestamp>>,
    max_held: usize,
    max_held_bytes: usize,
    last: Option<Key>,
    /// Bytes of the calls held (lines and facts).
    pub held_bytes: usize,
    pub released: u64,
    /// Released before the watermark passed them, because a bound was reached.
    pub forced: u64,
    pub out_of_order: u64,
}

impl<F: Weigh> Merger<F> {
    /// Holds at most `max_held` calls and `max_held_bytes` bytes of them.
    pub fn new(workers: usize, max_held: usize, max_held_bytes: usize) -> Self {
        Merger {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            marks: vec![Some(Timestamp::ZERO); workers],
            max_held: max_held.max(1),
            max_held_bytes,
            last: None,
            held_bytes: 0,
            released: 0,
            forced: 0,
            out_of_order: 0,
        }
    }

    /// Calls held now.
    pub fn held(&self) -> usize {
        self.heap.len()
    }

    /// Takes a batch and releases, in key order, every call no worker can still precede.
    pub fn push<E>(
        &mut self,
        b: Batch<F>,
        sink: &mut impl FnMut(Released<'_, F>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.marks[b.worker] = b.watermark;
        if !b.items.is_empty() {
            let slot = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.slots.push(Slot {
                        bytes: Vec::new(),
                        items: Vec::new(),
                        left: 0,
                    });
                    (self.slots.len() - 1) as u32
                }
            };
            let n = b.items.len();
            let mut items = Vec::with_capacity(n);
            for (i, it) in b.items.into_iter().enumerate() {
                self.heap.push(Reverse((it.key, slot, i as u32)));
                let weight = (it.line.2 - it.line.0) as usize
                    + std::mem::size_of::<Held>()
                    + it.facts.as_ref().map_or(0, |f| f.weigh());
                self.held_bytes += weight;
                items.push((it.line, it.facts, weight));
            }
            self.slots[slot as usize] = Slot {
                bytes: b.bytes,
                items,
                left: n,
            };
        }
        let low = self.marks.iter().flatten().min().copied();
        while let Some(Reverse(top)) = self.heap.peek() {
            let release = match low {
                None => true,
                Some(w) if top.0 .0 < w => true,
                Some(_) => {
                    let over =
                        self.heap.len() > self.max_held || self.held_bytes > self.max_held_bytes;
                    self.forced += u64::from(over);
                    over
                }
            };
            if !release {
                break;
            }
            let Reverse(l) = self.heap.pop().expect("peeked");
            self.release(l, sink)?;
        }
        Ok(())
    }

    fn release<E>(
        &mut self,
        (key, slot, idx): (Key, u32, u32),
        sink: &mut impl FnMut(Released<'_, F>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.last.as_ref().is_some_and(|last| key < *last) {
            self.out_of_order += 1;
        }
        self.released += 1;
        self.last = Some(key);
        let s = &mut self.slots[slot as usize];
        let it = &mut s.items[idx as usize];
        let ((start, at, end), facts) = (it.0, it.1.take());
        self.held_bytes -= it.2;
        let r = sink(Released {
            key,
            head: &s.bytes[start as usize..at as usize],
            tail: &s.bytes[at as usize..end as usize],
            facts,
        });
        s.left -= 1;
        if s.left == 0 {
            s.bytes = Vec::new();
            s.items = Vec::new();
            self.free.push(slot);
        }
        r
    }

    /// Releases whatever is left; call after every worker sent its final batch.
    pub fn finish<E>(
        &mut self,
        sink: &mut impl FnMut(Released<'_, F>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(Reverse(l)) = self.heap.pop() {
            self.release(l, sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_str_escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n cr\r tab\t",
            "\u{0}\u{1f}\u{8}\u{c}\u{7f}",
            "é✓\u{10ffff}",
            "</script>",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
        let mut out = Vec::new();
        json_u64(&mut out, 0);
        json_u64(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }

    /// A batch of lines `{t}{who}`, endpoint, `\n`, keyed by time `t`, with `t` as facts.
    fn batch(worker: usize, lines: &[(u64, &str)], watermark: Option<u64>) -> Batch<u64> {
        let mut b = Batch {
            worker,
            watermark: watermark.map(Timestamp::from_secs),
            ..Batch::default()
        };
        for &(t, who) in lines {
            let ep = Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: u16::from(who.as_bytes()[0]),
            };
            let start = b.bytes.len() as u32;
            b.bytes.extend_from_slice(format!("{t}{who}").as_bytes());
            let at = b.bytes.len() as u32;
            b.bytes.push(b'\n');
            b.items.push(Item {
                key: (Timestamp::from_secs(t), ep, ep, TunnelId::NONE, 0),
                line: (start, at, b.bytes.len() as u32),
                facts: Some(t),
            });
        }
        b
    }

    #[test]
    fn merges_in_key_order_behind_the_lowest_watermark() {
        let mut out = Vec::new();
        let mut sink = |r: Released<'_, u64>| -> Result<(), ()> {
            out.extend_from_slice(r.head);
            out.push(b'=');
            out.extend_from_slice(r.facts.unwrap().to_string().as_bytes());
            out.extend_from_slice(r.tail);
            Ok(())
        };
        let mut m = Merger::new(2, 1000, usize::MAX);
        m.push(batch(0, &[(3, "a"), (1, "a")], Some(5)), &mut sink)
            .unwrap();
        // Worker 1 has not spoken: nothing may go out yet.
        assert_eq!(m.released, 0);
        m.push(batch(1, &[(2, "b")], Some(3)), &mut sink).unwrap();
        assert_eq!(m.released, 2); // 1a, 2b; 3a waits for worker 1 to pass 3
        assert_eq!(
            m.slots.iter().filter(|s| s.left > 0).count(),
            1,
            "batch 0 holds 3a"
        );
        m.push(batch(1, &[(3, "b")], None), &mut sink).unwrap();
        m.push(batch(0, &[], None), &mut sink).unwrap();
        m.finish(&mut sink).unwrap();
        assert!(m.slots.iter().all(|s| s.left == 0), "every slot released");
        assert_eq!(m.free.len(), m.slots.len());
        assert_eq!((m.released, m.out_of_order), (4, 0));
        assert_eq!(out, b"1a=1\n2b=2\n3a=3\n3b=3\n");
    }

    /// Test facts weigh their own value.
    impl Weigh for u64 {
        fn weigh(&self) -> usize {
            *self as usize
        }
    }

    #[test]
    fn held_bytes_are_bounded_and_forced_out() {
        let mut out = Vec::new();
        let mut sink = |r: Released<'_, u64>| -> Result<(), ()> {
            out.extend_from_slice(r.head);
            out.push(b' ');
            Ok(())
        };
        // Each call weighs its line, a heap entry and its facts (its key here: 1 000 000 ×).
        let one = |k: u64| batch(0, &[(k, "a")], Some(0));
        let mut m = Merger::new(2, 1000, 2_500_000);
        m.push(batch(1, &[], Some(0)), &mut sink).unwrap();
        m.push(one(1_000_000), &mut sink).unwrap();
        m.push(one(1_000_001), &mut sink).unwrap();
        assert_eq!((m.released, m.forced), (0, 0), "about 2 000 000 bytes held");
        m.push(one(1_000_002), &mut sink).unwrap();
        assert_eq!((m.released, m.forced), (1, 1), "the oldest went out early");
        assert!(m.held_bytes <= 2_500_000);
        m.push(batch(0, &[], None), &mut sink).unwrap();
        m.push(batch(1, &[], None), &mut sink).unwrap();
        m.finish(&mut sink).unwrap();
        assert_eq!((m.released, m.held_bytes), (3, 0));
    }

    #[test]
    fn held_calls_are_bounded_and_forced_out() {
        let mut out = Vec::new();
        let mut sink = |r: Released<'_, u64>| -> Result<(), ()> {
            out.extend_from_slice(r.head);
            out.push(b' ');
            Ok(())
        };
        // Worker 1 never moves on its own: only the bound lets calls out.
        let mut m = Merger::new(2, 2, usize::MAX);
        m.push(batch(1, &[], Some(0)), &mut sink).unwrap();
        m.push(
            batch(0, &[(5, "a"), (4, "a"), (6, "a")], Some(9)),
            &mut sink,
        )
        .unwrap();
        assert_eq!(m.released, 1);
        m.push(batch(1, &[(1, "b")], Some(2)), &mut sink).unwrap();
        m.finish(&mut sink).unwrap();
        assert_eq!(out, b"4a 1b 5a 6a ");
        assert_eq!(m.out_of_order, 1, "1b came after 4a");
    }
}
