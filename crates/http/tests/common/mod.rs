//! Test harness: a connection's events as byte arrays, replayed whole, one byte at a time
//! and in pseudo-random pieces; every way must give the same calls and counters.
#![allow(dead_code)] // each test file uses a different part of the harness

use apiscope_capture::{Direction, Timestamp};
use apiscope_http::{
    Anomalies, Anomaly, Call, CallSink, CallStart, HttpConfig, HttpConn, HttpStats,
};

#[derive(Debug, Clone)]
pub enum Ev {
    Data(Direction, Vec<u8>),
    Gap(Direction, u64),
    /// A gap the capture layer dates at event `at` (by the acknowledgment of its end).
    DatedGap(Direction, u64, usize),
    Close,
}

/// Client → server bytes.
pub fn c(b: impl AsRef<[u8]>) -> Ev {
    Ev::Data(Direction::ToServer, b.as_ref().to_vec())
}

/// Server → client bytes.
pub fn s(b: impl AsRef<[u8]>) -> Ev {
    Ev::Data(Direction::ToClient, b.as_ref().to_vec())
}

pub fn gap_c(len: u64) -> Ev {
    Ev::Gap(Direction::ToServer, len)
}

pub fn gap_s(len: u64) -> Ev {
    Ev::Gap(Direction::ToClient, len)
}

pub fn close() -> Ev {
    Ev::Close
}

/// Capture time of event `i` (events are one second apart, starting at 1 s).
pub fn ts(i: usize) -> Timestamp {
    Timestamp::from_secs(i as u64 + 1)
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        (self.next() % max as u64) as usize + 1
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Split {
    Whole,
    Bytes,
    Random(u64),
}

pub struct Outcome {
    pub calls: Vec<Call>,
    pub stats: HttpStats,
    pub conn: HttpConn,
}

pub fn run_split(cfg: &HttpConfig, certain: bool, events: &[Ev], split: Split) -> Outcome {
    let mut calls = Vec::new();
    let (stats, conn) = run_into(cfg, certain, events, split, &mut calls);
    Outcome { calls, stats, conn }
}

/// A sink that keeps the bodies of the calls whose path `keep` accepts, and records what
/// it was asked.
pub struct Choosy {
    pub calls: Vec<Call>,
    pub asked: Vec<(Option<String>, String, String, u64)>,
    keep: fn(&str) -> bool,
}

impl CallSink for Choosy {
    fn push(&mut self, call: Call) {
        self.calls.push(call);
    }

    fn keep_bodies(&mut self, call: CallStart<'_>) -> bool {
        self.asked.push((
            call.host().map(str::to_owned),
            call.method().to_owned(),
            call.path().to_owned(),
            call.seq(),
        ));
        (self.keep)(call.path())
    }
}

/// `run_cfg` through a [`Choosy`] sink: whole, byte by byte and in random pieces.
pub fn run_choosy(cfg: &HttpConfig, events: &[Ev], keep: fn(&str) -> bool) -> (Outcome, Choosy) {
    let mut results = Vec::new();
    let mut splits = vec![Split::Whole, Split::Bytes];
    splits.extend((1..=6).map(Split::Random));
    for split in splits {
        let mut sink = Choosy {
            calls: Vec::new(),
            asked: Vec::new(),
            keep,
        };
        let (stats, conn) = run_into(cfg, true, events, split, &mut sink);
        results.push((stats, conn, sink));
    }
    let (stats, conn, sink) = results.remove(0);
    for (other_stats, _, other) in &results {
        assert_eq!(other.calls, sink.calls);
        assert_eq!(other.asked, sink.asked);
        assert_eq!(*other_stats, stats);
    }
    let outcome = Outcome {
        calls: sink.calls.clone(),
        stats,
        conn,
    };
    (outcome, sink)
}

fn run_into(
    cfg: &HttpConfig,
    certain: bool,
    events: &[Ev],
    split: Split,
    calls: &mut dyn CallSink,
) -> (HttpStats, HttpConn) {
    let mut conn = HttpConn::new(cfg, certain);
    let mut stats = HttpStats::default();
    let mut rng = match split {
        Split::Random(seed) => Rng::new(seed),
        _ => Rng::new(1),
    };
    for (i, ev) in events.iter().enumerate() {
        match ev {
            Ev::Data(dir, data) => {
                let pieces: Vec<&[u8]> = match split {
                    Split::Whole => vec![data.as_slice()],
                    Split::Bytes => data.chunks(1).collect(),
                    Split::Random(_) => {
                        let mut v = Vec::new();
                        let mut rest = data.as_slice();
                        while !rest.is_empty() {
                            let n = rng.size(rest.len().min(64));
                            v.push(&rest[..n]);
                            rest = &rest[n..];
                        }
                        v
                    }
                };
                for p in pieces {
                    conn.on_data(cfg, *dir, ts(i), p, calls, &mut stats);
                }
            }
            Ev::Gap(dir, len) => conn.on_gap(cfg, *dir, ts(i), *len, calls, &mut stats),
            Ev::DatedGap(dir, len, at) => conn.on_gap(cfg, *dir, ts(*at), *len, calls, &mut stats),
            Ev::Close => conn.on_close(cfg, ts(i), calls, &mut stats),
        }
    }
    (stats, conn)
}

/// Replays `events` whole, byte by byte and in random pieces (several seeds); asserts that
/// all give the same calls and counters, and returns the whole-slice outcome.
pub fn run_cfg(cfg: &HttpConfig, certain: bool, events: &[Ev]) -> Outcome {
    let whole = run_split(cfg, certain, events, Split::Whole);
    let mut splits = vec![Split::Bytes];
    splits.extend((1..=6).map(Split::Random));
    for split in splits {
        let other = run_split(cfg, certain, events, split);
        assert_eq!(other.calls, whole.calls, "calls differ with {split:?}");
        assert_eq!(other.stats, whole.stats, "stats differ with {split:?}");
        assert_eq!(other.conn.is_http(), whole.conn.is_http());
        assert_eq!(other.conn.roles_swapped(), whole.conn.roles_swapped());
    }
    whole
}

/// `run_cfg` with the default configuration and a handshake-certain orientation.
pub fn run(events: &[Ev]) -> Outcome {
    run_cfg(&HttpConfig::default(), true, events)
}

/// (method, target, status) of each call, for compact assertions.
pub fn summary(calls: &[Call]) -> Vec<(String, String, Option<u16>)> {
    calls
        .iter()
        .map(|c| {
            (
                c.request.method.to_string(),
                c.request.target.clone(),
                c.response.as_ref().map(|r| r.status),
            )
        })
        .collect()
}

pub fn sum(list: &[(&str, &str, Option<u16>)]) -> Vec<(String, String, Option<u16>)> {
    list.iter()
        .map(|(m, t, s)| (m.to_string(), t.to_string(), *s))
        .collect()
}

pub fn anomalies(list: &[Anomaly]) -> Anomalies {
    list.iter().copied().collect()
}

/// Builds a request head. `req("GET", "/x", &["Host: a"])`.
pub fn req(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
    let mut v = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for h in headers {
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// Builds a response with a Content-Length body.
pub fn resp(status: u16, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Concatenates byte strings.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
