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
use serde::Serialize;

/// Orders calls: (request time, client, server, tunnel, index in connection).
pub type Key = (Timestamp, Endpoint, Endpoint, TunnelId, u64);

/// Serialises a value through its `Display`, without an intermediate `String`.
struct Shown<T>(T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// One serialised call and the key that orders it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallLine {
    /// (request time, client, server, tunnel, index in connection): unique and the same for
    /// any number of workers.
    pub key: Key,
    pub json: Vec<u8>,
}

#[derive(Serialize)]
struct Record<'a> {
    ts: Shown<Timestamp>,
    src: Shown<Endpoint>,
    dst: Shown<Endpoint>,
    method: &'a str,
    host: Option<&'a str>,
    target: &'a str,
    path: &'a str,
    status: Option<u16>,
    req_body_bytes: u64,
    resp_body_bytes: Option<u64>,
    endpoint: Option<&'a str>,
    version: &'static str,
    resp_ts: Option<Shown<Timestamp>>,
    latency_us: Option<u64>,
    tunnel: Shown<TunnelId>,
    req_content_type: Option<&'a str>,
    resp_content_type: Option<&'a str>,
    interim: &'a [u16],
    anomalies: Vec<&'static str>,
}

fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|b| std::str::from_utf8(b).ok())
}

/// Serialises `call` of the connection `meta`; `swapped` when the HTTP stage found the
/// capture stage's client to be the server.
pub fn line(call: &Call, meta: &ConnMeta, swapped: bool) -> CallLine {
    let (client, server) = if swapped {
        (meta.key.dst, meta.key.src)
    } else {
        (meta.key.src, meta.key.dst)
    };
    let req = &call.request;
    let resp = call.response.as_ref();
    let rec = Record {
        ts: Shown(req.ts),
        src: Shown(client),
        dst: Shown(server),
        method: &req.method,
        host: req.host(),
        target: &req.target,
        path: req.path(),
        status: resp.map(|r| r.status),
        req_body_bytes: req.body.bytes,
        resp_body_bytes: resp.map(|r| r.body.bytes),
        endpoint: None,
        version: req.version.as_str(),
        resp_ts: resp.map(|r| Shown(r.ts)),
        latency_us: resp.map(|r| r.ts.saturating_since(req.ts).as_micros()),
        tunnel: Shown(meta.key.tunnel),
        req_content_type: text(req.header("content-type")),
        resp_content_type: resp.and_then(|r| text(r.header("content-type"))),
        interim: resp.map_or(&[], |r| r.interim.as_slice()),
        anomalies: call.anomalies.iter().map(|a| a.as_str()).collect(),
    };
    let mut json = serde_json::to_vec(&rec).expect("a call serialises");
    json.push(b'\n');
    CallLine {
        key: (req.ts, client, server, meta.key.tunnel, call.seq),
        json,
    }
}

/// A batch from one worker.
#[derive(Debug)]
pub struct Batch {
    pub worker: usize,
    pub lines: Vec<CallLine>,
    /// No later call of this worker has an earlier request time; `None` when it finished.
    pub watermark: Option<Timestamp>,
}

/// Orders the calls of all workers and writes them.
#[derive(Debug)]
pub struct Merger<W: Write> {
    out: W,
    heap: BinaryHeap<Reverse<CallLine>>,
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
            marks: vec![Some(Timestamp::ZERO); workers],
            max_held: max_held.max(1),
            last: None,
            written: 0,
            out_of_order: 0,
        }
    }

    pub fn push(&mut self, b: Batch) -> std::io::Result<()> {
        self.marks[b.worker] = b.watermark;
        self.heap.extend(b.lines.into_iter().map(Reverse));
        let low = self.marks.iter().flatten().min().copied();
        while let Some(Reverse(top)) = self.heap.peek() {
            let release = match low {
                None => true,
                Some(w) => top.key.0 < w || self.heap.len() > self.max_held,
            };
            if !release {
                break;
            }
            let Reverse(l) = self.heap.pop().expect("peeked");
            self.write(l)?;
        }
        Ok(())
    }

    fn write(&mut self, l: CallLine) -> std::io::Result<()> {
        if self.last.as_ref().is_some_and(|last| l.key < *last) {
            self.out_of_order += 1;
        }
        self.out.write_all(&l.json)?;
        self.written += 1;
        self.last = Some(l.key);
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

    fn l(t: u64, who: &str) -> CallLine {
        let ep = Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            port: u16::from(who.as_bytes()[0]),
        };
        CallLine {
            key: (Timestamp::from_secs(t), ep, ep, TunnelId::NONE, 0),
            json: format!("{t}{who}\n").into_bytes(),
        }
    }

    #[test]
    fn merges_in_key_order_behind_the_lowest_watermark() {
        let mut m = Merger::new(Vec::new(), 2, 1000);
        m.push(Batch {
            worker: 0,
            lines: vec![l(3, "a"), l(1, "a")],
            watermark: Some(Timestamp::from_secs(5)),
        })
        .unwrap();
        // Worker 1 has not spoken: nothing may go out yet.
        assert_eq!(m.written, 0);
        m.push(Batch {
            worker: 1,
            lines: vec![l(2, "b")],
            watermark: Some(Timestamp::from_secs(3)),
        })
        .unwrap();
        assert_eq!(m.written, 2); // 1a, 2b; 3a waits for worker 1 to pass 3
        m.push(Batch {
            worker: 1,
            lines: vec![l(3, "b")],
            watermark: None,
        })
        .unwrap();
        m.push(Batch {
            worker: 0,
            lines: vec![],
            watermark: None,
        })
        .unwrap();
        let (n, late) = m.finish().unwrap();
        assert_eq!((n, late), (4, 0));
    }
}
