//! Calls as JSON Lines, in order of request time whatever the number of workers.
//!
//! Workers turn each [`Call`] into a [`CallLine`] (its sort key and its JSON, serialised on
//! the worker's core) and send batches with a *watermark*: no call of that worker that is
//! still to come can have an earlier request time (the oldest unfinished request, or the
//! worker's capture time minus `output.reorder_slack_ms` for requests not yet begun, since
//! capture timestamps are not strictly ordered). The [`Merger`] releases calls below the
//! lowest watermark in key order. Holding is bounded by `output.reorder_max_calls`; a call
//! forced out early and overtaken later is counted in `calls_out_of_order`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

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

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
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

/// Appends `call` of the connection `meta` as one JSON line to `out` and returns its key;
/// `swapped` when the HTTP stage found the capture stage's client to be the server.
///
/// Written by hand rather than through `serde`: this runs once per call on the hot path and
/// the derive spent most of its time in `fmt` machinery. The field order and escaping are
/// those `serde_json` produced (a test compares them).
pub fn write_line(out: &mut Vec<u8>, call: &Call, meta: &ConnMeta, swapped: bool) -> Key {
    let (client, server) = if swapped {
        (meta.key.dst, meta.key.src)
    } else {
        (meta.key.src, meta.key.dst)
    };
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
    out.extend_from_slice(b",\"endpoint\":null,\"version\":");
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
    (req.ts, client, server, meta.key.tunnel, call.seq)
}

/// A batch from one worker: its lines back to back in one buffer (one allocation per batch,
/// not per call), each with its key and end offset.
#[derive(Debug, Default)]
pub struct Batch {
    pub worker: usize,
    pub keys: Vec<(Key, u32)>,
    pub bytes: Vec<u8>,
    /// No later call of this worker has an earlier request time; `None` when it finished.
    pub watermark: Option<Timestamp>,
}

impl Batch {
    /// Appends one call (see [`write_line`]).
    pub fn push(&mut self, call: &Call, meta: &ConnMeta, swapped: bool) {
        let key = write_line(&mut self.bytes, call, meta, swapped);
        let end = u32::try_from(self.bytes.len()).expect("a batch stays under 4 GiB");
        self.keys.push((key, end));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A line waiting in the merger: its key, then where its bytes are.
type Held = Reverse<(Key, u32, u32, u32)>;

/// Orders the calls of all workers and writes them.
#[derive(Debug)]
pub struct Merger<W: Write> {
    out: W,
    heap: BinaryHeap<Held>,
    /// Buffers of batches with lines still held, and how many each still holds.
    buffers: Vec<(Vec<u8>, usize)>,
    free: Vec<u32>,
    marks: Vec<Option<Timestamp>>,
    max_held: usize,
    last: Option<Key>,
    pub written: u64,
    pub out_of_order: u64,
}

impl<W: Write> Merger<W> {
    pub fn new(out: W, workers: usize, max_held: usize) -> Self {
        Merger {
            out,
            heap: BinaryHeap::new(),
            buffers: Vec::new(),
            free: Vec::new(),
            marks: vec![Some(Timestamp::ZERO); workers],
            max_held: max_held.max(1),
            last: None,
            written: 0,
            out_of_order: 0,
        }
    }

    pub fn push(&mut self, b: Batch) -> std::io::Result<()> {
        self.marks[b.worker] = b.watermark;
        if !b.keys.is_empty() {
            let slot = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.buffers.push((Vec::new(), 0));
                    (self.buffers.len() - 1) as u32
                }
            };
            self.buffers[slot as usize] = (b.bytes, b.keys.len());
            let mut start = 0;
            self.heap.extend(b.keys.into_iter().map(|(key, end)| {
                let held = Reverse((key, slot, start, end));
                start = end;
                held
            }));
        }
        let low = self.marks.iter().flatten().min().copied();
        while let Some(Reverse(top)) = self.heap.peek() {
            let release = match low {
                None => true,
                Some(w) => top.0 .0 < w || self.heap.len() > self.max_held,
            };
            if !release {
                break;
            }
            let Reverse(l) = self.heap.pop().expect("peeked");
            self.write(l)?;
        }
        Ok(())
    }

    fn write(&mut self, (key, slot, start, end): (Key, u32, u32, u32)) -> std::io::Result<()> {
        if self.last.as_ref().is_some_and(|last| key < *last) {
            self.out_of_order += 1;
        }
        let (bytes, left) = &mut self.buffers[slot as usize];
        self.out.write_all(&bytes[start as usize..end as usize])?;
        *left -= 1;
        if *left == 0 {
            *bytes = Vec::new();
            self.free.push(slot);
        }
        self.written += 1;
        self.last = Some(key);
        Ok(())
    }

    /// Writes whatever is left; call after every worker sent its final batch.
    pub fn finish(mut self) -> std::io::Result<(u64, u64)> {
        while let Some(Reverse(l)) = self.heap.pop() {
            self.write(l)?;
        }
        self.out.flush()?;
        Ok((self.written, self.out_of_order))
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

    /// A batch of lines `"{t}{who}\n"` keyed by time `t`.
    fn batch(worker: usize, lines: &[(u64, &str)], watermark: Option<u64>) -> Batch {
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
            b.bytes.extend_from_slice(format!("{t}{who}\n").as_bytes());
            b.keys.push((
                (Timestamp::from_secs(t), ep, ep, TunnelId::NONE, 0),
                b.bytes.len() as u32,
            ));
        }
        b
    }

    #[test]
    fn merges_in_key_order_behind_the_lowest_watermark() {
        let mut m = Merger::new(Vec::new(), 2, 1000);
        m.push(batch(0, &[(3, "a"), (1, "a")], Some(5))).unwrap();
        // Worker 1 has not spoken: nothing may go out yet.
        assert_eq!(m.written, 0);
        m.push(batch(1, &[(2, "b")], Some(3))).unwrap();
        assert_eq!(m.written, 2); // 1a, 2b; 3a waits for worker 1 to pass 3
        assert_eq!(
            m.buffers.iter().filter(|b| b.1 > 0).count(),
            1,
            "batch 0 holds 3a"
        );
        m.push(batch(1, &[(3, "b")], None)).unwrap();
        m.push(batch(0, &[], None)).unwrap();
        assert!(m.buffers.iter().all(|b| b.1 == 0), "every buffer released");
        assert_eq!(m.free.len(), m.buffers.len());
        assert_eq!(m.out, b"1a\n2b\n3a\n3b\n");
        let (n, late) = m.finish().unwrap();
        assert_eq!((n, late), (4, 0));
    }
}
