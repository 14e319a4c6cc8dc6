//! Calls as JSON Lines, in order of request time whatever the number of workers.
//!
//! Workers key each [`Call`] (request time, client, server, tunnel, index in its connection)
//! and send batches of them, moved, with a *watermark*: no call of that worker that is still
//! to come can have an earlier request time (the oldest unfinished request, or the worker's
//! capture time minus `output.reorder_slack_ms` for requests not yet begun, since capture
//! timestamps are not strictly ordered). The [`Merger`] releases calls below the lowest
//! watermark in key order to the sink thread, which writes each line ([`write_head`],
//! the endpoint, [`write_tail`]) straight into its output buffer. Holding is bounded by
//! `output.reorder_max_calls` and `output.reorder_max_bytes` (the calls as parsed: heads and
//! body samples); a call forced out early by a bound is counted in `calls_forced_out`, and
//! one overtaken later in `calls_out_of_order`.

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
    // Most strings need no escape: find the next byte that does with a table.
    while let Some(off) = b[start..]
        .iter()
        .position(|&c| NEEDS_ESCAPE[usize::from(c)])
    {
        let i = start + off;
        out.extend_from_slice(&b[start..i]);
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
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

/// Bytes a JSON string must escape: the quote, the backslash and the control characters.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

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

/// Appends the first part of `call`'s JSON line, up to `"endpoint":`: the sink writes the
/// endpoint once the inventory has counted the call, then [`write_tail`]. `key` is the
/// call's [`key_of`]. Reads the method and target, so call it before they are moved out of
/// the call (`CallFacts::extract`).
///
/// Written by hand rather than through `serde`: this runs once per call on the hot path and
/// the derive spent most of its time in `fmt` machinery. The field order and escaping are
/// those `serde_json` produced (a test compares them).
pub fn write_head(out: &mut Vec<u8>, call: &Call, key: &Key) {
    let (_, client, server, _, _) = *key;
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
}

/// Appends the rest of `call`'s JSON line, after the endpoint, and its line end. Needs no
/// part of the call that `CallFacts::extract` moves out.
pub fn write_tail(out: &mut Vec<u8>, call: &Call, key: &Key) {
    let tunnel = key.3;
    let req = &call.request;
    let resp = call.response.as_ref();
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
    if tunnel == TunnelId::NONE {
        out.extend_from_slice(b"\"none\"");
    } else {
        json_shown(out, tunnel);
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
}

/// One call in a batch: its key, and the call (moved, not copied), as parsed or as prepared
/// on the worker (see `pipeline::Work`).
#[derive(Debug)]
pub struct Item<T> {
    pub key: Key,
    /// Taken when the merger releases it.
    pub value: Option<T>,
    /// Where its line is in the batch's bytes (start, endpoint value, end), when the worker
    /// wrote it; all equal otherwise.
    pub line: (u32, u32, u32),
    /// Its [`Weigh::weigh`] and its line's length, taken on the worker, where the call is
    /// still in cache.
    pub weight: usize,
}

/// A batch of calls from one worker, with their keys; the lines the worker wrote are back
/// to back in one buffer (one allocation per batch, not per call).
#[derive(Debug)]
pub struct Batch<T> {
    pub worker: usize,
    pub items: Vec<Item<T>>,
    pub bytes: Vec<u8>,
    /// Stream-level anomalies (overlaps with different bytes) seen since the last batch.
    pub stream_notes: Vec<crate::sink::StreamNote>,
    /// No later call of this worker has an earlier request time; `None` when it finished.
    pub watermark: Option<Timestamp>,
}

impl<T> Default for Batch<T> {
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

impl<T: Weigh> Batch<T> {
    /// An empty batch with room for `items` calls, so that filling it does not grow (and
    /// copy) its vector step by step.
    pub fn with_capacity(items: usize) -> Self {
        Batch {
            items: Vec::with_capacity(items),
            ..Batch::default()
        }
    }

    pub fn push(&mut self, key: Key, value: T) {
        let weight = value.weigh();
        let end = self.end();
        self.items.push(Item {
            key,
            value: Some(value),
            line: (end, end, end),
            weight,
        });
    }

    /// Adds a call that `f` prepares: `f` may append the call's line to the batch's bytes,
    /// returning where the endpoint value goes in it, and returns the call as prepared.
    pub fn push_prepared(
        &mut self,
        key: Key,
        f: impl FnOnce(&mut Vec<u8>, &Key) -> (Option<usize>, T),
    ) {
        let start = self.end();
        let (at, value) = f(&mut self.bytes, &key);
        let end = self.end();
        let at = at.map_or(start, |at| {
            u32::try_from(at).expect("a batch stays under 4 GiB")
        });
        let weight = value.weigh() + (end - start) as usize;
        self.items.push(Item {
            key,
            value: Some(value),
            line: (start, at, end),
            weight,
        });
    }

    fn end(&self) -> u32 {
        u32::try_from(self.bytes.len()).expect("a batch stays under 4 GiB")
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// A call released by the merger: its key, its line in two parts around the endpoint value
/// (both empty when the worker did not write it), and the call.
#[derive(Debug)]
pub struct Released<'a, T> {
    pub key: Key,
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub value: T,
}

/// The bytes a held call keeps (its own size and what it holds on the heap).
pub trait Weigh {
    fn weigh(&self) -> usize;
}

/// One batch whose calls are not all released: its calls (each taken when released) and
/// their order by key, released from `next` on.
#[derive(Debug)]
struct Slot<T> {
    worker: usize,
    bytes: Vec<u8>,
    items: Vec<Item<T>>,
    order: Vec<u32>,
    next: usize,
}

impl<T> Slot<T> {
    fn empty() -> Self {
        Slot {
            worker: 0,
            bytes: Vec::new(),
            items: Vec::new(),
            order: Vec::new(),
            next: 0,
        }
    }

    fn next_key(&self) -> Option<Key> {
        let &i = self.order.get(self.next)?;
        Some(self.items[i as usize].key)
    }
}

/// Orders the calls of all workers and hands them, in key order, to a sink.
///
/// Each batch is sorted by key when it comes (a worker's calls finish nearly in request
/// order, so this is cheap), and the batches are merged through a heap holding one entry
/// per batch, its next call: a few entries, not one per call held.
#[derive(Debug)]
pub struct Merger<T> {
    heap: BinaryHeap<Reverse<(Key, u32)>>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    marks: Vec<Option<Timestamp>>,
    max_held: usize,
    max_held_bytes: usize,
    last: Option<Key>,
    held: usize,
    /// Emptied batch vectors, by worker, for [`Merger::take_spent`].
    spent: Vec<(usize, Vec<Item<T>>)>,
    /// Bytes of the calls held (with their lines).
    pub held_bytes: usize,
    pub released: u64,
    /// Released before the watermark passed them, because a bound was reached.
    pub forced: u64,
    pub out_of_order: u64,
}

/// Emptied batch vectors kept for [`Merger::take_spent`] at most (more are dropped).
const MAX_SPENT: usize = 64;

/// What the merger counts per held call besides the call and its line: its key and its
/// place in its batch's order.
const HELD_OVERHEAD: usize = std::mem::size_of::<Key>() + std::mem::size_of::<u32>();

impl<T: Weigh> Merger<T> {
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
            held: 0,
            spent: Vec::new(),
            held_bytes: 0,
            released: 0,
            forced: 0,
            out_of_order: 0,
        }
    }

    /// Calls held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The vectors of the batches fully released since the last call, emptied, each with
    /// the worker that sent it: handed back, a worker fills them again instead of
    /// allocating (and faulting in) a fresh one per batch.
    pub fn take_spent(&mut self) -> std::vec::Drain<'_, (usize, Vec<Item<T>>)> {
        self.spent.drain(..)
    }

    /// Takes a batch and releases, in key order, every call no worker can still precede.
    pub fn push<E>(
        &mut self,
        b: Batch<T>,
        sink: &mut impl FnMut(Released<'_, T>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.marks[b.worker] = b.watermark;
        if !b.items.is_empty() {
            let n = b.items.len();
            self.held_bytes +=
                b.items.iter().map(|it| it.weight).sum::<usize>() + n * HELD_OVERHEAD;
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_unstable_by_key(|&i| b.items[i as usize].key);
            let slot = Slot {
                worker: b.worker,
                bytes: b.bytes,
                items: b.items,
                order,
                next: 0,
            };
            let first = slot.next_key().expect("not empty");
            let at = match self.free.pop() {
                Some(i) => {
                    self.slots[i as usize] = slot;
                    i
                }
                None => {
                    self.slots.push(slot);
                    (self.slots.len() - 1) as u32
                }
            };
            self.heap.push(Reverse((first, at)));
            self.held += n;
        }
        let low = self.marks.iter().flatten().min().copied();
        while let Some(Reverse((key, _))) = self.heap.peek() {
            let release = match low {
                None => true,
                Some(w) if key.0 < w => true,
                Some(_) => {
                    let over = self.held > self.max_held || self.held_bytes > self.max_held_bytes;
                    self.forced += u64::from(over);
                    over
                }
            };
            if !release {
                break;
            }
            self.release_next(sink)?;
        }
        Ok(())
    }

    /// Releases the call with the lowest key.
    fn release_next<E>(
        &mut self,
        sink: &mut impl FnMut(Released<'_, T>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(Reverse((key, slot))) = self.heap.pop() else {
            return Ok(());
        };
        if self.last.as_ref().is_some_and(|last| key < *last) {
            self.out_of_order += 1;
        }
        self.released += 1;
        self.last = Some(key);
        self.held -= 1;
        let s = &mut self.slots[slot as usize];
        let it = &mut s.items[s.order[s.next] as usize];
        s.next += 1;
        let value = it.value.take().expect("a held call is released once");
        let (start, at, end) = it.line;
        self.held_bytes -= it.weight + HELD_OVERHEAD;
        let r = sink(Released {
            key,
            head: &s.bytes[start as usize..at as usize],
            tail: &s.bytes[at as usize..end as usize],
            value,
        });
        match s.next_key() {
            Some(k) => self.heap.push(Reverse((k, slot))),
            None => {
                let Slot {
                    worker, mut items, ..
                } = std::mem::replace(s, Slot::empty());
                self.free.push(slot);
                if self.spent.len() < MAX_SPENT {
                    items.clear();
                    self.spent.push((worker, items));
                }
            }
        }
        r
    }

    /// Releases whatever is left; call after every worker sent its final batch.
    pub fn finish<E>(
        &mut self,
        sink: &mut impl FnMut(Released<'_, T>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !self.heap.is_empty() {
            self.release_next(sink)?;
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

    /// A batch of calls named `{t}{who}`, keyed by time `t`.
    fn batch(worker: usize, calls: &[(u64, &str)], watermark: Option<u64>) -> Batch<Named> {
        let mut b = Batch {
            worker,
            watermark: watermark.map(Timestamp::from_secs),
            ..Batch::default()
        };
        for &(t, who) in calls {
            let ep = Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: u16::from(who.as_bytes()[0]),
            };
            b.push(
                (Timestamp::from_secs(t), ep, ep, TunnelId::NONE, 0),
                Named(format!("{t}{who}"), t),
            );
        }
        b
    }

    /// A test call: its name and its weight.
    #[derive(Debug)]
    struct Named(String, u64);

    impl Weigh for Named {
        fn weigh(&self) -> usize {
            self.1 as usize
        }
    }

    #[test]
    fn merges_in_key_order_behind_the_lowest_watermark() {
        let mut out = Vec::new();
        // A call the worker prepared has its line around the endpoint, `{name}=` and `\n`,
        // and is renamed; the others are as pushed.
        let mut sink = |r: Released<'_, Named>| -> Result<(), ()> {
            if r.head.is_empty() {
                out.extend_from_slice(format!("{}={}\n", r.value.0, r.key.0.as_secs()).as_bytes());
            } else {
                out.extend_from_slice(r.head);
                out.extend_from_slice(r.value.0.as_bytes());
                out.extend_from_slice(r.tail);
            }
            Ok(())
        };
        let mut m = Merger::new(2, 1000, usize::MAX);
        let mut first = batch(0, &[(3, "a")], Some(5));
        let ep = first.items[0].key.1;
        first.push_prepared(
            (Timestamp::from_secs(1), ep, ep, TunnelId::NONE, 0),
            |bytes, key| {
                bytes.extend_from_slice(b"1a=");
                let at = bytes.len();
                bytes.push(b'\n');
                (Some(at), Named(key.0.as_secs().to_string(), 10))
            },
        );
        assert_eq!(first.items[1].weight, 10 + 4, "the call and its line");
        m.push(first, &mut sink).unwrap();
        // Worker 1 has not spoken: nothing may go out yet.
        assert_eq!(m.released, 0);
        m.push(batch(1, &[(2, "b")], Some(3)), &mut sink).unwrap();
        assert_eq!(m.released, 2); // 1a, 2b; 3a waits for worker 1 to pass 3
        assert_eq!(m.held(), 1, "batch 0 holds 3a");
        m.push(batch(1, &[(3, "b")], None), &mut sink).unwrap();
        m.push(batch(0, &[], None), &mut sink).unwrap();
        m.finish(&mut sink).unwrap();
        assert!(
            m.slots.iter().all(|s| s.items.is_empty()),
            "every slot released"
        );
        assert_eq!(m.free.len(), m.slots.len());
        assert_eq!((m.released, m.out_of_order), (4, 0));
        assert_eq!(out, b"1a=1\n2b=2\n3a=3\n3b=3\n");
        assert_eq!(m.held_bytes, 0);
    }

    #[test]
    fn held_bytes_are_bounded_and_forced_out() {
        let mut out = Vec::new();
        let mut sink = |r: Released<'_, Named>| -> Result<(), ()> {
            out.extend_from_slice(r.value.0.as_bytes());
            out.push(b' ');
            Ok(())
        };
        // Each call weighs itself (its key here: 1 000 000 ×) and a heap entry.
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
        let mut sink = |r: Released<'_, Named>| -> Result<(), ()> {
            out.extend_from_slice(r.value.0.as_bytes());
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

    #[test]
    fn releases_every_call_in_key_order_across_shuffled_batches() {
        // Three workers, each finishing its calls out of order within a window, in batches
        // of random sizes; a worker's watermark is the lowest time it may still send.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut out = Vec::new();
        let mut sink = |r: Released<'_, Named>| -> Result<(), ()> {
            out.push((r.key.0.as_secs(), r.value.0));
            Ok(())
        };
        let mut m = Merger::new(3, usize::MAX, usize::MAX);
        let mut pending: Vec<Vec<u64>> = (0..3)
            .map(|w| (0..400).map(|i| i * 3 + w).collect())
            .collect();
        let mut total = 0;
        while pending.iter().any(|p| !p.is_empty()) {
            let w = next(3) as usize;
            let p = &mut pending[w];
            let take = (next(20) as usize).min(p.len());
            let window = (next(8) as usize + 1).min(p.len());
            let mut calls = Vec::new();
            for _ in 0..take {
                let i = next(window.min(p.len()) as u64) as usize;
                calls.push(p.remove(i));
            }
            total += calls.len();
            let named: Vec<(u64, String)> = calls.iter().map(|t| (*t, format!("w{w}"))).collect();
            let list: Vec<(u64, &str)> = named.iter().map(|(t, n)| (*t, n.as_str())).collect();
            let mark = if p.is_empty() {
                None
            } else {
                p.iter().min().copied()
            };
            m.push(batch(w, &list, mark), &mut sink).unwrap();
        }
        m.finish(&mut sink).unwrap();
        assert_eq!(out.len(), total);
        assert_eq!(total, 1200);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        assert_eq!(
            (m.out_of_order, m.forced, m.held(), m.held_bytes),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn emptied_batch_vectors_go_back_to_their_worker() {
        let mut out = 0;
        let mut sink = |_: Released<'_, Named>| -> Result<(), ()> {
            out += 1;
            Ok(())
        };
        let mut m = Merger::new(2, 1000, usize::MAX);
        m.push(batch(1, &[(1, "b"), (2, "b")], Some(10)), &mut sink)
            .unwrap();
        assert_eq!(m.take_spent().count(), 0, "worker 0 holds everything back");
        m.push(batch(0, &[(3, "a")], Some(10)), &mut sink).unwrap();
        let spent: Vec<(usize, usize, usize)> = m
            .take_spent()
            .map(|(w, v)| (w, v.len(), v.capacity()))
            .collect();
        assert_eq!(out, 3);
        let mut workers: Vec<usize> = spent.iter().map(|s| s.0).collect();
        workers.sort_unstable();
        assert_eq!(workers, [0, 1], "each batch's vector, to its worker");
        assert!(
            spent.iter().all(|&(_, len, cap)| len == 0 && cap >= 1),
            "emptied, kept"
        );
        assert_eq!(m.take_spent().count(), 0, "taken once");
    }
}
