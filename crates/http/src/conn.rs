//! The per-connection state machine: two directions, each a push parser, and the queue
//! that pairs requests with responses.
//!
//! Each direction ([`Side`]) is fed slices as they arrive. A step looks at the bytes and
//! either makes progress (consumes some, or changes state) or needs more. Bytes a step needs
//! more of (a head, chunk-size line, trailer line or resync candidate split across packets)
//! are copied into the direction's buffer, bounded by `max_head_bytes`; everything else is
//! parsed straight from the caller's slice.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem;

use apiscope_capture::{Direction, Timestamp};

use crate::anomaly::{Anomalies, Anomaly};
use crate::body::BodyAcc;
use crate::config::HttpConfig;
use crate::head::{
    analyse_framing, classify_start, find_head_end, find_lf, parse_chunk_size, parse_header_block,
    parse_request_head, parse_response_head, resync_candidate, scan_request_line, scan_status_line,
    Framing, ReqHead, ReqLine, RespHead, Scan, Start,
};
use crate::message::{host_of, path_of, Call, Headers, Request, Response, Version};
use crate::stats::HttpStats;
use crate::{proxy, socks};

/// Where a connection's finished calls go, and which bodies are worth keeping.
///
/// `Vec<Call>` is the plain sink: calls are appended and every body is kept.
pub trait CallSink {
    fn push(&mut self, call: Call);

    /// Asked once per request head, before any byte of its body: whether to keep the bodies
    /// of the call it starts (the request's and its response's). When not, they are only
    /// measured: no prefix is kept, and a body that is only gzip-encoded is not inflated:
    /// its decoded length is read from the gzip trailer (see
    /// [`Body::bytes`](crate::Body::bytes)).
    fn keep_bodies(&mut self, call: CallStart<'_>) -> bool {
        let _ = call;
        true
    }
}

/// The call a [`CallSink::keep_bodies`] question is about, as its request head says; its
/// host and path are only looked for when asked.
#[derive(Debug, Clone, Copy)]
pub struct CallStart<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a Headers,
    seq: u64,
}

impl<'a> CallStart<'a> {
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// As [`Request::host`].
    pub fn host(&self) -> Option<&'a str> {
        host_of(self.method, self.target, self.headers)
    }

    /// As [`Request::path`].
    pub fn path(&self) -> &'a str {
        path_of(self.target)
    }

    /// The index the call will have on its connection.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl CallSink for Vec<Call> {
    fn push(&mut self, call: Call) {
        Vec::push(self, call);
    }
}

/// A direction's buffer keeps its capacity between uses up to this size.
const KEEP_BUF_CAPACITY: usize = 4096;

/// Steps in a row that consume nothing before the parser forces a byte of progress (a
/// safety net; every state change is meant to lead to consumption).
const MAX_STALLS: u32 = 16;

/// Rounds of re-processing kicked sides after one input (a safety net, as `MAX_STALLS`).
const MAX_KICK_ROUNDS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Inside the trailer section, this many bytes seen.
    Trailers(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Length(u64),
    Chunked(Chunk),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: the first bytes decide whether this is HTTP, and the roles.
    Start,
    /// Expecting a message head.
    Head,
    /// Scanning for a plausible message start, at any byte (see `step_resync`).
    Resync,
    Body(BodyState),
    /// After a CONNECT request: bytes are held (bounded) until the response says whether a
    /// tunnel opened.
    ConnectWait,
    /// Upgraded or tunnelled: nothing more is HTTP.
    Tunnel,
    /// Inside a SOCKS handshake at the start of the connection, expecting this message.
    Socks(socks::Stage),
}

/// Whether a response waits for its request (see `HttpConn::wait_for_request`).
enum Wait {
    Yes,
    /// It need not: its framing does not depend on a request, or none will come.
    Needless,
    /// It waited long enough, or cannot wait longer.
    GaveUp,
}

enum Step {
    /// Consumed this many bytes (possibly 0 when the state changed).
    Progress(usize),
    /// All the given bytes are an incomplete unit; keep them.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    Responses,
    Unknown,
}

/// Segments of a direction's buffer remembered with their capture time.
const TS_SEGMENTS: usize = 8;

/// Capture times of the bytes in a direction's buffer: the offset where each run of bytes
/// that arrived together starts, and its time. Beyond `TS_SEGMENTS` runs the middle ones
/// merge (only a unit split into that many packets loses timestamp precision).
#[derive(Clone, Copy, Debug)]
struct TsMap {
    offsets: [u32; TS_SEGMENTS],
    times: [Timestamp; TS_SEGMENTS],
    len: u8,
}

impl TsMap {
    fn new(ts: Timestamp) -> Self {
        TsMap {
            offsets: [0; TS_SEGMENTS],
            times: [ts; TS_SEGMENTS],
            len: 1,
        }
    }

    fn at(&self, off: usize) -> Timestamp {
        let n = usize::from(self.len).max(1);
        (0..n)
            .rev()
            .find(|i| self.offsets[*i] as usize <= off)
            .map_or(self.times[0], |i| self.times[i])
    }

    /// Bytes from `off` on arrived at `ts`.
    fn push(&mut self, off: usize, ts: Timestamp) {
        let n = usize::from(self.len);
        if self.times[n - 1] == ts {
            return;
        }
        let n = if n == TS_SEGMENTS {
            self.offsets.copy_within(2..TS_SEGMENTS, 1);
            self.times.copy_within(2..TS_SEGMENTS, 1);
            n - 1
        } else {
            n
        };
        // Buffers are bounded by `max_head_bytes`; an offset beyond u32 cannot occur, and
        // would only blur a timestamp.
        self.offsets[n] = u32::try_from(off).unwrap_or(u32::MAX);
        self.times[n] = ts;
        self.len = (n + 1) as u8;
    }

    /// The first `n` bytes left the buffer.
    fn drain(&mut self, n: usize) {
        let mut out = TsMap::new(self.at(n));
        for i in 0..usize::from(self.len) {
            let o = self.offsets[i] as usize;
            if o > n {
                out.push(o - n, self.times[i]);
            }
        }
        *self = out;
    }
}

/// Where the bytes handed to a step came from, for timestamps: the first `old_len` were
/// buffered earlier (times in `old`), the rest arrived at `ts_now`.
#[derive(Clone, Copy)]
struct Ctx {
    old: TsMap,
    old_len: usize,
    ts_now: Timestamp,
}

impl Ctx {
    fn fresh(ts: Timestamp) -> Self {
        Ctx {
            old: TsMap::new(ts),
            old_len: 0,
            ts_now: ts,
        }
    }

    fn ts_at(&self, off: usize) -> Timestamp {
        if off < self.old_len {
            self.old.at(off)
        } else {
            self.ts_now
        }
    }
}

/// What the response parser needs to know about the request it answers.
#[derive(Debug, Clone, Copy, Default)]
struct ReqInfo {
    head: bool,
    connect: bool,
    http09: bool,
    /// The sink did not want this call's bodies kept ([`CallSink::keep_bodies`]).
    measure_only: bool,
}

enum MsgHead {
    Req(ReqHead),
    Resp { head: RespHead, interim: Vec<u16> },
}

/// A message whose head is parsed and whose body is in progress.
struct Msg {
    head: MsgHead,
    ts: Timestamp,
    ts_end: Timestamp,
    body: BodyAcc,
    anomalies: Anomalies,
    /// Request: its transaction.
    txn: u64,
    /// Request: CONNECT. Response: answers a CONNECT.
    connect: bool,
    /// Response: the connection stops being HTTP after it.
    tunnel_after: bool,
    head_bytes: usize,
    /// Request: sent `Expect: 100-continue` with a body announced, and no body byte yet.
    expects_continue: bool,
    /// Request, while `expects_continue`: a final response came first (the expectation was
    /// refused), so the client may go on with its next request instead of the body.
    refused: bool,
}

struct Side {
    state: State,
    buf: Vec<u8>,
    /// Capture times of the bytes in `buf`.
    buf_ts: TsMap,
    /// Where the search for the end of a head resumes in `buf`.
    scan_from: usize,
    /// `buf` holds a complete HTTP/0.9 request line; whether headers follow is unknown
    /// until more bytes come, or the server answers.
    await_09: bool,
    /// Process `buf` again without new input (the state changed from outside).
    kick: bool,
    cur: Option<Box<Msg>>,
    /// Interim statuses seen before the next final response.
    interim: Vec<u16>,
    /// Anomalies of dropped messages, for the next message of this direction.
    carry: Anomalies,
    /// Response side: the transaction the response in progress answers.
    claim: Option<u64>,
    /// This direction's SOCKS handshake is over (or was never there).
    socks_done: bool,
    /// This direction's start was checked for a PROXY protocol header.
    proxy_done: bool,
    /// Response side: a complete response head is held in `buf` until the request it
    /// answers is parsed (see `wait_for_request`).
    await_request: bool,
}

impl Side {
    fn new() -> Self {
        Side {
            state: State::Start,
            buf: Vec::new(),
            buf_ts: TsMap::new(Timestamp::ZERO),
            scan_from: 0,
            await_09: false,
            kick: false,
            cur: None,
            interim: Vec::new(),
            carry: Anomalies::new(),
            claim: None,
            socks_done: false,
            proxy_done: false,
            await_request: false,
        }
    }

    fn buf_has_content(&self) -> bool {
        self.buf.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }
}

// Inline, like the request next to it in `Txn`: boxing the response would cost an
// allocation per call to save a few hundred bytes per request in flight.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Waiting,
    /// A response head for it was parsed; its body is in progress.
    Claimed,
    /// `None`: the response was lost (dropped head, gap).
    Answered(Option<Response>),
}

/// A request in flight and what answered it.
struct Txn {
    id: u64,
    /// `None` for a placeholder: a request whose head was dropped. It absorbs one response
    /// so that pairing stays aligned, and never becomes a call.
    seq: Option<u64>,
    ts: Timestamp,
    req: Option<Request>,
    info: ReqInfo,
    slot: Slot,
    anomalies: Anomalies,
    /// Heap bytes of `req` and the response, counted in `HttpConn::queued_bytes`.
    bytes: usize,
}

/// HTTP/1.x parser state of one TCP connection.
///
/// Feed it the connection's stream events with [`on_data`](HttpConn::on_data),
/// [`on_gap`](HttpConn::on_gap) and [`on_close`](HttpConn::on_close); completed calls are
/// appended to `out` in request order. The same [`HttpConfig`] and a per-worker
/// [`HttpStats`] are passed to every call. No method panics, whatever the bytes.
pub struct HttpConn {
    sides: [Side; 2],
    /// The capture direction that carries requests, once known.
    req_dir: Option<Direction>,
    /// Picked up mid-stream: the first bytes need not start a message.
    mid_stream: bool,
    /// The client started with a SOCKS handshake of this version.
    socks: Option<socks::Version>,
    is_http: Option<bool>,
    closed: bool,
    pending: VecDeque<Txn>,
    /// Complete responses that arrived before any request they could answer.
    held: VecDeque<(Response, Anomalies, usize)>,
    queued_bytes: usize,
    /// When a gap last cost the response side a message boundary (see `skip_lost_responses`).
    resp_lost_at: Option<Timestamp>,
    /// When a gap last cost the request side a message boundary, until the next request:
    /// responses with no request to answer after it answer requests lost in it.
    req_lost_at: Option<Timestamp>,
    next_id: u64,
    next_seq: u64,
    undecided_skipped: u64,
    /// Nothing waits for more input: `on_close` is running, or a gap is about to be taken.
    no_wait: bool,
}

impl std::fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConn")
            .field("is_http", &self.is_http)
            .field("req_dir", &self.req_dir)
            .field("states", &[self.sides[0].state, self.sides[1].state])
            .field("pending", &self.pending.len())
            .field("held", &self.held.len())
            .field("closed", &self.closed)
            .finish()
    }
}

fn dir_of(d: usize) -> Direction {
    if d == 0 {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

fn flag(anomalies: &mut Anomalies, a: Anomaly, stats: &mut HttpStats) {
    if !anomalies.contains(a) {
        anomalies.insert(a);
        stats.anomaly(a);
    }
}

impl HttpConn {
    /// State for a new connection. `orientation_certain`: the capture layer saw the
    /// handshake, so `ToServer` carries requests and the first bytes are the stream's
    /// start. Otherwise the connection was picked up mid-stream: roles are decided by
    /// content and the first bytes may be inside a message.
    pub fn new(_cfg: &HttpConfig, orientation_certain: bool) -> Self {
        HttpConn {
            sides: [Side::new(), Side::new()],
            req_dir: orientation_certain.then_some(Direction::ToServer),
            mid_stream: !orientation_certain,
            socks: None,
            is_http: None,
            closed: false,
            pending: VecDeque::new(),
            held: VecDeque::new(),
            queued_bytes: 0,
            resp_lost_at: None,
            req_lost_at: None,
            next_id: 0,
            next_seq: 0,
            undecided_skipped: 0,
            no_wait: false,
        }
    }

    /// The next in-order bytes of `dir`, captured at `ts`. `data` is only borrowed.
    pub fn on_data(
        &mut self,
        cfg: &HttpConfig,
        dir: Direction,
        ts: Timestamp,
        data: &[u8],
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        if !self.live() || data.is_empty() {
            return;
        }
        let d = dir.index();
        if self.kind(d) == Kind::Responses {
            // The server answers: a bare HTTP/0.9 request line is complete.
            self.flush_09(cfg, 1 - d, out, stats);
        }
        // A step that changes the other side's state stops the feed there, so the other side
        // goes on first, at the same point of this stream however its bytes were split.
        let mut rest = data;
        loop {
            let left = self.feed(cfg, d, ts, rest, false, out, stats);
            self.run_kicks(cfg, ts, out, stats);
            if left == 0 || !self.live() {
                break;
            }
            rest = &rest[rest.len() - left..];
        }
    }

    /// Processes again the buffers of sides whose state changed from outside.
    fn run_kicks(
        &mut self,
        cfg: &HttpConfig,
        ts: Timestamp,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        // Each kick is a one-way state change (a held response released, a refused CONNECT);
        // a side can kick the other back only after consuming bytes, so few rounds end it.
        for _ in 0..MAX_KICK_ROUNDS {
            let mut kicked = false;
            for o in 0..2 {
                if mem::take(&mut self.sides[o].kick) {
                    kicked = true;
                    self.feed(cfg, o, ts, &[], true, out, stats);
                }
            }
            if !kicked {
                break;
            }
        }
    }

    /// `len` bytes of `dir` were never captured.
    pub fn on_gap(
        &mut self,
        cfg: &HttpConfig,
        dir: Direction,
        ts: Timestamp,
        len: u64,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        if !self.live() || len == 0 {
            return;
        }
        let d = dir.index();
        stats.gaps += 1;
        stats.gap_bytes = stats.gap_bytes.saturating_add(len);
        self.flush_09(cfg, d, out, stats);
        self.flush_waiting(cfg, d, ts, out, stats);
        let kind = self.kind(d);
        let side = &mut self.sides[d];
        let buffered = side.buf.len();
        let had_content = side.buf_has_content();
        side.buf.clear();
        side.scan_from = 0;
        side.await_09 = false;
        match side.state {
            State::Start | State::Resync | State::Socks(_) => {
                side.state = State::Resync;
                self.skip_count(cfg, buffered, stats);
            }
            State::Head => {
                side.state = State::Resync;
                if had_content {
                    stats.heads_lost_to_gap += 1;
                    match kind {
                        Kind::Requests => {
                            self.push_txn(cfg, ts, ReqInfo::default(), false, out, stats);
                        }
                        _ => self.lose_response(None, out, stats),
                    }
                }
            }
            State::Body(BodyState::Length(rem)) => {
                let g = len.min(rem);
                self.body_gap(d, g, ts, stats);
                if g == rem {
                    self.finish(cfg, d, None, true, out, stats);
                    if len > g {
                        self.resync_after_message(d);
                    }
                } else {
                    self.sides[d].state = State::Body(BodyState::Length(rem - g));
                }
            }
            State::Body(BodyState::Chunked(Chunk::Data(rem))) if len <= rem => {
                // The gap stays inside the current chunk: its end is still known.
                self.body_gap(d, len, ts, stats);
                let next = if len == rem {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem - len)
                };
                self.sides[d].state = State::Body(BodyState::Chunked(next));
            }
            State::Body(BodyState::Chunked(_)) => {
                self.body_gap(d, len, ts, stats);
                self.finish(cfg, d, None, true, out, stats);
                self.resync_after_message(d);
            }
            State::Body(BodyState::Close) => self.body_gap(d, len, ts, stats),
            State::ConnectWait | State::Tunnel => {}
        }
        if matches!(self.sides[d].state, State::Resync) {
            match kind {
                Kind::Responses => self.resp_lost_at = Some(ts),
                Kind::Requests => self.lose_requests(ts, stats),
                Kind::Unknown => {}
            }
        }
        // A response held for its request goes on as soon as the gap decided for it, not
        // whenever the next bytes come (which would depend on how they are split).
        self.run_kicks(cfg, ts, out, stats);
    }

    /// A gap dated `gap_at` (by the server's acknowledgment of its end) cost the request side
    /// a message boundary: whole requests may have been lost in it. A response that came at
    /// or after that acknowledgment with no request waiting answers one of them, not the next
    /// request to be parsed: those held are dropped, and so are those that come before the
    /// next request (`responses_to_lost_requests`).
    fn lose_requests(&mut self, gap_at: Timestamp, stats: &mut HttpStats) {
        let before = self.held.len();
        let mut freed = 0;
        self.held.retain(|(r, _, size)| {
            let keep = r.ts < gap_at;
            if !keep {
                freed += size;
            }
            keep
        });
        self.queued_bytes = self.queued_bytes.saturating_sub(freed);
        stats.responses_to_lost_requests += (before - self.held.len()) as u64;
        self.req_lost_at = Some(gap_at);
        self.release_waiting_response();
    }

    /// The connection ended. Close-delimited bodies end here; bodies still expecting bytes
    /// end truncated; every request still waiting is emitted (with `response: None` when
    /// unanswered); responses that never found a request are counted and dropped.
    pub fn on_close(
        &mut self,
        cfg: &HttpConfig,
        ts: Timestamp,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        if self.closed {
            return;
        }
        if self.is_http == Some(false) {
            self.closed = true;
            return;
        }
        for d in 0..2 {
            self.flush_09(cfg, d, out, stats);
        }
        // Responses held for their requests go on: none will come now.
        for d in 0..2 {
            self.flush_waiting(cfg, d, ts, out, stats);
        }
        self.no_wait = true;
        let order = match self.req_dir {
            Some(r) => [r.index(), 1 - r.index()],
            None => [0, 1],
        };
        for d in order {
            let side = &mut self.sides[d];
            match side.state {
                State::Body(BodyState::Close) => self.finish(cfg, d, None, false, out, stats),
                State::Body(_) => {
                    stats.bodies_truncated_by_close += 1;
                    self.finish(cfg, d, None, true, out, stats);
                }
                State::Head if side.buf_has_content() => stats.heads_lost_to_close += 1,
                State::Start | State::Resync => {
                    stats.resync_skipped_bytes += side.buf.len() as u64;
                }
                _ => {}
            }
        }
        while let Some(t) = self.pending.pop_front() {
            self.emit(t, out, stats);
        }
        stats.orphan_responses += self.held.len() as u64;
        self.held.clear();
        self.queued_bytes = 0;
        for s in &mut self.sides {
            s.buf = Vec::new();
            s.interim = Vec::new();
            s.cur = None;
        }
        self.closed = true;
    }

    /// True when content showed that the capture layer's client is the server (possible
    /// only when the orientation was not certain).
    pub fn roles_swapped(&self) -> bool {
        self.req_dir == Some(Direction::ToClient)
    }

    /// Capture time of the oldest request (complete or still partial) not yet emitted as
    /// a call; `None` when there is none.
    pub fn earliest_pending(&self) -> Option<Timestamp> {
        if let Some(t) = self.pending.iter().find(|t| t.seq.is_some()) {
            return Some(t.ts);
        }
        (0..2)
            .filter(|d| self.kind(*d) != Kind::Responses)
            .map(|d| &self.sides[d])
            .filter(|s| matches!(s.state, State::Start | State::Head) && s.buf_has_content())
            .map(|s| s.buf_ts.at(0))
            .min()
    }

    /// Approximate heap bytes held: buffers, messages in progress and waiting, decoders.
    pub fn memory(&self) -> usize {
        let sides: usize = self
            .sides
            .iter()
            .map(|s| {
                s.buf.capacity()
                    + s.interim.capacity() * 2
                    + s.cur.as_ref().map_or(0, |m| {
                        mem::size_of::<Msg>() + m.head_bytes + m.body.heap_size()
                    })
            })
            .sum();
        sides
            + self.queued_bytes
            + self.pending.capacity() * mem::size_of::<Txn>()
            + self.held.capacity() * mem::size_of::<(Response, Anomalies, usize)>()
    }

    /// `None` while undecided; `Some(true)` once a message parsed; `Some(false)` when the
    /// connection was given up as not HTTP (it then never produces calls).
    pub fn is_http(&self) -> Option<bool> {
        self.is_http
    }

    fn live(&self) -> bool {
        !self.closed && self.is_http != Some(false)
    }

    fn kind(&self, d: usize) -> Kind {
        match self.req_dir {
            None => Kind::Unknown,
            Some(r) if r.index() == d => Kind::Requests,
            Some(_) => Kind::Responses,
        }
    }

    fn set_roles(&mut self, req_dir: Direction, stats: &mut HttpStats) {
        if self.req_dir.is_none() {
            self.req_dir = Some(req_dir);
            if req_dir == Direction::ToClient {
                stats.roles_swapped += 1;
            }
        }
    }

    fn give_up(&mut self, stats: &mut HttpStats) {
        self.is_http = Some(false);
        stats.non_http_connections += 1;
        for s in &mut self.sides {
            *s = Side::new();
        }
        self.pending.clear();
        self.held.clear();
        self.queued_bytes = 0;
    }

    /// Feeds bytes to one direction (with `kick`, re-processes its buffer without input).
    /// Returns how many bytes of `data` it left unread because a step kicked the other side
    /// (see `on_data`).
    #[allow(clippy::too_many_arguments)] // the public entry points' arguments plus the side
    fn feed(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        ts: Timestamp,
        data: &[u8],
        mut kick: bool,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> usize {
        let cap = cfg.head_cap();
        let mut input = data;
        let mut stalls = 0u32;
        while self.live() {
            if self.sides[d].buf.is_empty() {
                if input.is_empty() {
                    break;
                }
                match self.step(cfg, d, input, Ctx::fresh(ts), out, stats) {
                    Step::Progress(n) => {
                        self.sides[d].scan_from = 0;
                        let n = if n == 0 && self.stalled(&mut stalls) {
                            self.force_skip(cfg, d, 1, stats)
                        } else {
                            n
                        };
                        input = input.get(n..).unwrap_or_default();
                        if self.sides[1 - d].kick {
                            return self.yield_to_other(d, input);
                        }
                    }
                    Step::NeedMore => {
                        if input.len() >= cap {
                            self.force_skip(cfg, d, input.len(), stats);
                        } else if self.live() {
                            let s = &mut self.sides[d];
                            s.buf.extend_from_slice(input);
                            s.buf_ts = TsMap::new(ts);
                        }
                        break;
                    }
                }
            } else {
                if input.is_empty() && !kick {
                    break;
                }
                let mut buf = mem::take(&mut self.sides[d].buf);
                let old = buf.len();
                let take = input.len().min(cap.saturating_sub(old));
                buf.extend_from_slice(&input[..take]);
                let ctx = Ctx {
                    old: self.sides[d].buf_ts,
                    old_len: old,
                    ts_now: ts,
                };
                match self.step(cfg, d, &buf, ctx, out, stats) {
                    Step::Progress(n) => {
                        self.sides[d].scan_from = 0;
                        let n = if n == 0 && self.stalled(&mut stalls) {
                            self.force_skip(cfg, d, 1, stats)
                        } else {
                            n
                        };
                        if n >= old {
                            input = input.get(n - old..).unwrap_or_default();
                            buf.clear();
                        } else {
                            buf.truncate(old);
                            buf.drain(..n);
                            self.sides[d].buf_ts.drain(n);
                        }
                        self.restore_buf(d, buf);
                        if self.sides[1 - d].kick {
                            return self.yield_to_other(d, input);
                        }
                    }
                    Step::NeedMore => {
                        input = input.get(take..).unwrap_or_default();
                        kick = false;
                        if take > 0 {
                            self.sides[d].buf_ts.push(old, ts);
                        }
                        if buf.len() >= cap {
                            let n = buf.len();
                            buf.clear();
                            self.force_skip(cfg, d, n, stats);
                        }
                        self.restore_buf(d, buf);
                        if input.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        0
    }

    /// A step of side `d` kicked the other side: `d` stops here, leaving `input` unread
    /// (its caller feeds it again) and its buffer to be processed again.
    fn yield_to_other(&mut self, d: usize, input: &[u8]) -> usize {
        if input.is_empty() && !self.sides[d].buf.is_empty() {
            self.sides[d].kick = true;
        }
        input.len()
    }

    fn stalled(&self, stalls: &mut u32) -> bool {
        *stalls += 1;
        *stalls > MAX_STALLS
    }

    fn restore_buf(&mut self, d: usize, mut buf: Vec<u8>) {
        if !self.live() {
            return;
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUF_CAPACITY {
            buf = Vec::new();
        }
        self.sides[d].buf = buf;
    }

    /// Drops `n` bytes a step could not handle within the buffer bound, and resynchronises.
    fn force_skip(&mut self, cfg: &HttpConfig, d: usize, n: usize, stats: &mut HttpStats) -> usize {
        match self.sides[d].state {
            State::Tunnel | State::ConnectWait => stats.tunnel_bytes += n as u64,
            _ => {
                self.sides[d].state = State::Resync;
                self.skip_count(cfg, n, stats);
            }
        }
        n
    }

    /// Counts bytes skipped while resynchronising; gives the connection up when it never
    /// showed HTTP and the scan budget is spent (counting only up to that point, so the
    /// counter does not depend on how the bytes were split into packets).
    fn skip_count(&mut self, cfg: &HttpConfig, n: usize, stats: &mut HttpStats) {
        let n = n as u64;
        if self.is_http.is_none() {
            let room = cfg
                .undecided_scan_bytes
                .saturating_sub(self.undecided_skipped);
            if n > room {
                stats.resync_skipped_bytes += room + 1;
                self.give_up(stats);
                return;
            }
            self.undecided_skipped += n;
        }
        stats.resync_skipped_bytes += n;
    }

    fn step(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        ctx: Ctx,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        self.sides[d].await_09 = false;
        match self.sides[d].state {
            State::Start => self.step_start(cfg, d, input, stats),
            State::Head => match self.kind(d) {
                Kind::Requests => self.step_request_head(cfg, d, input, ctx, out, stats),
                Kind::Responses => self.step_response_head(cfg, d, input, ctx, out, stats),
                Kind::Unknown => {
                    self.sides[d].state = State::Resync;
                    Step::Progress(0)
                }
            },
            State::Resync => self.step_resync(cfg, d, input, stats),
            State::Body(b) => self.step_body(cfg, d, b, input, ctx, out, stats),
            State::ConnectWait => {
                if input.len() < cfg.head_cap() {
                    Step::NeedMore
                } else {
                    stats.tunnel_bytes += input.len() as u64;
                    Step::Progress(input.len())
                }
            }
            State::Tunnel => {
                stats.tunnel_bytes += input.len() as u64;
                Step::Progress(input.len())
            }
            State::Socks(stage) => {
                let side = &mut self.sides[d];
                match socks::message(stage, input) {
                    Scan::Yes((n, next)) => {
                        side.state = match next {
                            Some(s) => State::Socks(s),
                            None => {
                                side.socks_done = true;
                                State::Start
                            }
                        };
                        Step::Progress(n)
                    }
                    Scan::NeedMore if input.len() < cfg.head_cap() => Step::NeedMore,
                    // Not the expected message: judge what follows as a stream start.
                    _ => {
                        side.socks_done = true;
                        side.state = State::Start;
                        Step::Progress(0)
                    }
                }
            }
        }
    }

    fn step_start(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        stats: &mut HttpStats,
    ) -> Step {
        let cap = cfg.head_cap();
        // A PROXY protocol header from a load balancer, before anything else the client
        // sends (only where the stream start is known).
        if !self.mid_stream && !self.sides[d].proxy_done && self.kind(d) == Kind::Requests {
            match proxy::header_len(input) {
                Scan::NeedMore if input.len() < cap => return Step::NeedMore,
                Scan::Yes(n) => {
                    self.sides[d].proxy_done = true;
                    stats.proxy_headers += 1;
                    return Step::Progress(n);
                }
                _ => self.sides[d].proxy_done = true,
            }
        }
        // A SOCKS handshake in front of HTTP (only where the stream start is known).
        if !self.mid_stream && !self.sides[d].socks_done {
            match (self.socks, self.kind(d)) {
                (None, Kind::Requests) => match socks::client_start(input) {
                    Scan::NeedMore if input.len() < cap => return Step::NeedMore,
                    Scan::Yes(v) => {
                        self.socks = Some(v);
                        stats.socks_handshakes += 1;
                        self.sides[d].state = State::Socks(socks::Stage::client_first(v));
                        return Step::Progress(0);
                    }
                    _ => {}
                },
                (Some(v), Kind::Responses) => {
                    self.sides[d].state = State::Socks(socks::Stage::server_first(v));
                    return Step::Progress(0);
                }
                _ => {}
            }
        }
        // Empty lines before the first message (RFC 9112, section 2.2: a server ignores at
        // least one); within the undecided scan budget.
        let blank = input
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 && self.is_http.is_none() {
            self.undecided_skipped += blank as u64;
            if self.undecided_skipped > cfg.undecided_scan_bytes {
                self.give_up(stats);
                return Step::Progress(input.len());
            }
            return Step::Progress(blank);
        }
        let class = match classify_start(input) {
            Scan::NeedMore if input.len() >= cap => Scan::No,
            // Same rule as resynchronisation: a request line must fit the buffer bound.
            Scan::Yes(Start::Request) if find_lf(input, 0).map_or(input.len(), |i| i) >= cap => {
                Scan::No
            }
            c => c,
        };
        match class {
            Scan::NeedMore => Step::NeedMore,
            Scan::No => {
                if self.is_http.is_none() && !self.mid_stream {
                    // The stream's first bytes cannot start an HTTP message.
                    self.give_up(stats);
                    return Step::Progress(input.len());
                }
                self.sides[d].state = if self.is_http == Some(true) {
                    State::Head
                } else {
                    State::Resync
                };
                Step::Progress(0)
            }
            Scan::Yes(start) => {
                let this = dir_of(d);
                let req_dir = match start {
                    Start::Request => this,
                    Start::Response => this.reverse(),
                };
                self.set_roles(req_dir, stats);
                self.sides[d].state = if self.req_dir == Some(req_dir) {
                    State::Head
                } else {
                    State::Resync
                };
                Step::Progress(0)
            }
        }
    }

    /// Looks for the next message start after the parser lost track (a gap, a line that is
    /// no start line, a dropped head, a malformed body). A start line is looked for at every
    /// byte, not only after a line end: what is left of a message a gap cut (often a body
    /// without a line end) may run straight into the next message. Each byte position is
    /// judged once, with the bytes that decide (waited for if need be), so the outcome does
    /// not depend on how the bytes arrive.
    fn step_resync(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        stats: &mut HttpStats,
    ) -> Step {
        let want = match self.kind(d) {
            Kind::Requests => Some(Start::Request),
            Kind::Responses => Some(Start::Response),
            Kind::Unknown => None,
        };
        let cap = cfg.head_cap();
        // Start lines begin with a known (upper-case) method, or `HTTP/` in any case.
        let may_start = |b: u8| match want {
            Some(Start::Response) => b == b'H' || b == b'h',
            Some(Start::Request) => b.is_ascii_uppercase(),
            None => b == b'h' || b.is_ascii_uppercase(),
        };
        for p in 0..input.len() {
            if !may_start(input[p]) {
                continue;
            }
            let candidate = match resync_candidate(&input[p..], want) {
                // A start line as long as the buffer bound is not trusted (it could not have
                // been recognised had it arrived in pieces).
                Scan::Yes(Start::Request)
                    if find_lf(input, p).map_or(input.len(), |i| i) - p >= cap =>
                {
                    Scan::No
                }
                c => c,
            };
            match candidate {
                Scan::Yes(start) => {
                    self.skip_count(cfg, p, stats);
                    if !self.live() {
                        return Step::Progress(input.len());
                    }
                    let this = dir_of(d);
                    self.set_roles(
                        match start {
                            Start::Request => this,
                            Start::Response => this.reverse(),
                        },
                        stats,
                    );
                    stats.resyncs += 1;
                    self.sides[d].state = State::Head;
                    return Step::Progress(p);
                }
                Scan::NeedMore if input.len() - p < cap => {
                    if p == 0 {
                        return Step::NeedMore;
                    }
                    return self.skip(cfg, d, p, stats);
                }
                _ => {}
            }
        }
        self.skip(cfg, d, input.len(), stats)
    }

    fn skip(&mut self, cfg: &HttpConfig, d: usize, n: usize, stats: &mut HttpStats) -> Step {
        self.skip_count(cfg, n, stats);
        if self.live() {
            self.sides[d].state = State::Resync;
        }
        Step::Progress(n)
    }

    /// After a message ended abnormally: look for the next start instead of assuming one.
    fn resync_after_message(&mut self, d: usize) {
        if self.sides[d].state == State::Head {
            self.sides[d].state = State::Resync;
        }
    }

    /// A line that cannot start a message where one was expected: flagged, its first byte
    /// skipped, and the bytes after it searched for a start line (`step_resync`).
    fn bad_start_line(&mut self, cfg: &HttpConfig, d: usize, stats: &mut HttpStats) -> Step {
        stats.anomaly(Anomaly::Unparseable);
        self.sides[d].carry.insert(Anomaly::Unparseable);
        self.skip(cfg, d, 1, stats)
    }

    /// A head that started like a message but cannot become one: consume `n` bytes, record
    /// the anomaly, keep the request/response pairing aligned, resynchronise.
    #[allow(clippy::too_many_arguments)] // the drop's facts, plus the usual outputs
    fn drop_head(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        n: usize,
        a: Anomaly,
        ts: Timestamp,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        stats.anomaly(a);
        match self.kind(d) {
            Kind::Requests => {
                self.sides[d].carry.insert(a);
                self.push_txn(cfg, ts, ReqInfo::default(), false, out, stats);
            }
            _ => self.lose_response(Some(a), out, stats),
        }
        self.sides[d].state = State::Resync;
        Step::Progress(n)
    }

    /// The oldest request still waiting for a response: its id and what its response's
    /// framing depends on.
    fn expected_request(&self) -> Option<(u64, ReqInfo)> {
        self.pending
            .iter()
            .find(|t| matches!(t.slot, Slot::Waiting))
            .map(|t| (t.id, t.info))
    }

    /// A complete response head (`head_len` bytes of the `len` buffered) with no request
    /// waiting for it, at `ts`: whether to hold it until the request it answers is parsed.
    /// The capture layer hands each direction over as its packets come, so a response can
    /// come first when the two directions were captured out of order; and its framing
    /// depends on the request (a HEAD's response has no body, whatever its Content-Length
    /// says). It waits only when it may have a body, while at most `max_response_wait_bytes`
    /// follow its head (and within `max_head_bytes`), and not when no request will come: a
    /// response from before a mid-stream capture began, one to a request lost in a gap, or
    /// when a gap or the end came (`no_wait`).
    fn wait_for_request(
        &self,
        cfg: &HttpConfig,
        head: &RespHead,
        head_len: usize,
        len: usize,
        ts: Timestamp,
    ) -> Wait {
        let bodiless = matches!(head.status, 204 | 304)
            || head
                .headers
                .get("content-length")
                .is_some_and(|v| v.trim_ascii() == b"0")
                && head.headers.get("transfer-encoding").is_none();
        if bodiless || self.answers_before_capture() || self.answers_lost_request(ts) {
            Wait::Needless
        } else if self.no_wait
            || len - head_len > cfg.max_response_wait_bytes
            || len >= cfg.head_cap()
        {
            Wait::GaveUp
        } else {
            Wait::Yes
        }
    }

    /// A response of side `d` held for its request goes on now, without it (the connection
    /// ends, or a gap would cut the bytes held).
    fn flush_waiting(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        ts: Timestamp,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        if mem::take(&mut self.sides[d].await_request) {
            self.no_wait = true;
            self.feed(cfg, d, ts, &[], true, out, stats);
            self.no_wait = false;
        }
    }

    /// A request (or a placeholder for one) was added: a response held for it goes on.
    fn release_waiting_response(&mut self) {
        for side in &mut self.sides {
            if side.await_request {
                side.await_request = false;
                side.kick = true;
            }
        }
    }

    /// Asks the sink whether to keep the bodies of the call `head` starts (counted in
    /// `calls_bodies_measured` when not).
    fn keep_bodies(&self, head: &ReqHead, out: &mut dyn CallSink, stats: &mut HttpStats) -> bool {
        let keep = out.keep_bodies(CallStart {
            method: &head.method,
            target: &head.target,
            headers: &head.headers,
            seq: self.next_seq,
        });
        if !keep {
            stats.calls_bodies_measured += 1;
        }
        keep
    }

    /// The response to the oldest waiting request was lost.
    fn lose_response(&mut self, a: Option<Anomaly>, out: &mut dyn CallSink, stats: &mut HttpStats) {
        if let Some(t) = self
            .pending
            .iter_mut()
            .find(|t| matches!(t.slot, Slot::Waiting))
        {
            t.slot = Slot::Answered(None);
            if let Some(a) = a {
                t.anomalies.insert(a);
            }
        }
        self.try_emit(out, stats);
    }

    /// Finds the end of the head at the start of `input`, or says what to do instead.
    fn head_end(&mut self, cfg: &HttpConfig, d: usize, input: &[u8]) -> Result<usize, HeadEnd> {
        let cap = cfg.head_cap();
        // An oversized head is cut at `cap` whether it arrived whole or in pieces, so the
        // outcome does not depend on packet boundaries.
        let oversized = || HeadEnd::Oversized(cap);
        match find_head_end(input, self.sides[d].scan_from) {
            Ok(end) if end > cap => Err(oversized()),
            Ok(end) => Ok(end),
            Err(_) if input.len() >= cap => Err(oversized()),
            Err(resume) => {
                self.sides[d].scan_from = resume;
                Err(HeadEnd::NeedMore)
            }
        }
    }

    fn step_request_head(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        ctx: Ctx,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        let lead = input
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if lead > 0 {
            return Step::Progress(lead);
        }
        let ts = ctx.ts_at(0);
        let line = match scan_request_line(input, false) {
            Scan::NeedMore if input.len() < cfg.head_cap() => return Step::NeedMore,
            Scan::NeedMore => {
                let cap = cfg.head_cap();
                return self.drop_head(cfg, d, cap, Anomaly::OversizedHead, ts, out, stats);
            }
            Scan::No => return self.bad_start_line(cfg, d, stats),
            Scan::Yes(l) => l,
        };
        if let ReqLine::Http09 {
            len,
            method_end,
            target_end,
        } = line
        {
            return self
                .step_request_09(cfg, d, input, ctx, len, method_end, target_end, out, stats);
        }
        let end = match self.head_end(cfg, d, input) {
            Ok(end) => end,
            Err(HeadEnd::NeedMore) => return Step::NeedMore,
            Err(HeadEnd::Oversized(n)) => {
                return self.drop_head(cfg, d, n, Anomaly::OversizedHead, ts, out, stats)
            }
        };
        let (head, lenient) = match parse_request_head(&input[..end], cfg.max_headers) {
            Ok(h) => h,
            Err(e) => return self.drop_head(cfg, d, end, e.anomaly(), ts, out, stats),
        };
        self.is_http = Some(true);
        let mut anomalies = mem::take(&mut self.sides[d].carry);
        if lenient {
            flag(&mut anomalies, Anomaly::NonConformingHead, stats);
        }
        let framing = analyse_framing(&head.headers, &mut anomalies, stats);
        let keep = self.keep_bodies(&head, out, stats);
        let info = ReqInfo {
            head: head.method == "HEAD",
            connect: head.method == "CONNECT",
            http09: false,
            measure_only: !keep,
        };
        let id = self.push_txn(cfg, ts, info, true, out, stats);
        let fr = framing.request();
        let body = match fr {
            Framing::None | Framing::Close => BodyAcc::empty(),
            Framing::Length(n) => BodyAcc::new(cfg, framing.encoding, n, !info.measure_only),
            Framing::Chunked => BodyAcc::new(cfg, framing.encoding, 0, !info.measure_only),
        };
        let ts_end = ctx.ts_at(end - 1);
        let head_bytes = head.heap_size();
        let expects_continue = matches!(fr, Framing::Length(1..) | Framing::Chunked)
            && head
                .headers
                .get("expect")
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        self.sides[d].cur = Some(Box::new(Msg {
            head: MsgHead::Req(head),
            ts,
            ts_end,
            body,
            anomalies,
            txn: id,
            connect: info.connect,
            tunnel_after: false,
            head_bytes,
            expects_continue,
            refused: false,
        }));
        match fr {
            Framing::None | Framing::Close => self.finish(cfg, d, Some(ts_end), false, out, stats),
            Framing::Length(n) => self.sides[d].state = State::Body(BodyState::Length(n)),
            Framing::Chunked => self.sides[d].state = State::Body(BodyState::Chunked(Chunk::Size)),
        }
        Step::Progress(end)
    }

    /// An HTTP/0.9 request line (`GET /path` with no version). Header lines may follow (some
    /// clients send them); they are read when they arrive with the line.
    #[allow(clippy::too_many_arguments)] // the line's offsets, plus the usual context
    fn step_request_09(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        ctx: Ctx,
        len: usize,
        method_end: usize,
        target_end: usize,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        let rest = &input[len..];
        let cap = cfg.head_cap();
        let line_only = (len, Headers::default(), false);
        let (consumed, headers, lenient) = if rest.is_empty() {
            // Nothing after the line yet: wait for the client's next bytes, or commit when
            // the server answers or the connection ends.
            self.sides[d].await_09 = true;
            return Step::NeedMore;
        } else {
            match crate::head::eol_len(rest) {
                Scan::Yes(e) => (len + e, Headers::default(), false),
                Scan::NeedMore => return Step::NeedMore,
                Scan::No => {
                    let name = rest
                        .iter()
                        .take_while(|b| crate::head::is_tchar(**b))
                        .count();
                    if name == rest.len() {
                        if input.len() >= cap {
                            line_only
                        } else {
                            return Step::NeedMore;
                        }
                    } else if name > 0 && rest[name] == b':' {
                        match find_head_end(input, len - 1) {
                            Ok(end) if end <= cap => {
                                match parse_header_block(&input[len..end], cfg.max_headers) {
                                    Ok((h, lenient)) => (end, h, lenient),
                                    Err(_) => line_only,
                                }
                            }
                            Ok(_) => line_only,
                            Err(_) if input.len() >= cap => line_only,
                            Err(_) => return Step::NeedMore,
                        }
                    } else {
                        line_only
                    }
                }
            }
        };
        self.commit_09(
            cfg, d, input, ctx, consumed, method_end, target_end, headers, lenient, out, stats,
        );
        Step::Progress(consumed)
    }

    #[allow(clippy::too_many_arguments)] // the request's parts, plus the usual context
    fn commit_09(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        ctx: Ctx,
        consumed: usize,
        method_end: usize,
        target_end: usize,
        headers: Headers,
        lenient: bool,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        self.is_http = Some(true);
        let mut anomalies = mem::take(&mut self.sides[d].carry);
        flag(&mut anomalies, Anomaly::Http09, stats);
        if lenient {
            flag(&mut anomalies, Anomaly::NonConformingHead, stats);
        }
        let head = ReqHead {
            method: Cow::Owned(String::from_utf8_lossy(&input[..method_end]).into_owned()),
            target: String::from_utf8_lossy(&input[method_end + 1..target_end]).into_owned(),
            version: Version::Http09,
            headers,
        };
        let ts = ctx.ts_at(0);
        let keep = self.keep_bodies(&head, out, stats);
        let info = ReqInfo {
            head: head.method == "HEAD",
            connect: false,
            http09: true,
            measure_only: !keep,
        };
        let id = self.push_txn(cfg, ts, info, true, out, stats);
        let ts_end = ctx.ts_at(consumed.saturating_sub(1));
        let head_bytes = head.heap_size();
        self.sides[d].cur = Some(Box::new(Msg {
            head: MsgHead::Req(head),
            ts,
            ts_end,
            body: BodyAcc::empty(),
            anomalies,
            txn: id,
            connect: false,
            tunnel_after: false,
            head_bytes,
            expects_continue: false,
            refused: false,
        }));
        self.finish(cfg, d, Some(ts_end), false, out, stats);
    }

    /// Commits a buffered HTTP/0.9 request line that was waiting to see whether headers
    /// follow.
    fn flush_09(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        if !self.sides[d].await_09 || self.sides[d].state != State::Head {
            return;
        }
        self.sides[d].await_09 = false;
        let mut buf = mem::take(&mut self.sides[d].buf);
        let map = self.sides[d].buf_ts;
        let ctx = Ctx {
            old: map,
            old_len: buf.len(),
            ts_now: map.at(buf.len()),
        };
        if let Scan::Yes(ReqLine::Http09 {
            len,
            method_end,
            target_end,
        }) = scan_request_line(&buf, false)
        {
            self.commit_09(
                cfg,
                d,
                &buf,
                ctx,
                len,
                method_end,
                target_end,
                Headers::default(),
                false,
                out,
                stats,
            );
            let n = len.min(buf.len());
            buf.drain(..n);
            self.sides[d].buf_ts.drain(n);
        }
        self.restore_buf(d, buf);
    }

    fn step_response_head(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        ctx: Ctx,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        let expected = self.expected_request();
        let ts = ctx.ts_at(0);
        if let Some((id, info)) = expected {
            if info.http09 {
                match crate::head::lit_prefix(input, b"HTTP/") {
                    Scan::NeedMore => return Step::NeedMore,
                    Scan::No => {
                        self.start_09_response(cfg, d, id, ts);
                        return Step::Progress(0);
                    }
                    Scan::Yes(()) => {}
                }
            }
        }
        let lead = input
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if lead > 0 {
            return Step::Progress(lead);
        }
        match scan_status_line(input) {
            Scan::NeedMore => return Step::NeedMore,
            Scan::No => return self.bad_start_line(cfg, d, stats),
            Scan::Yes(()) => {}
        }
        let end = match self.head_end(cfg, d, input) {
            Ok(end) => end,
            Err(HeadEnd::NeedMore) => return Step::NeedMore,
            Err(HeadEnd::Oversized(n)) => {
                return self.drop_head(cfg, d, n, Anomaly::OversizedHead, ts, out, stats)
            }
        };
        let (head, lenient) = match parse_response_head(&input[..end], cfg.max_headers) {
            Ok(h) => h,
            Err(e) => return self.drop_head(cfg, d, end, e.anomaly(), ts, out, stats),
        };
        self.is_http = Some(true);
        let ts_end = ctx.ts_at(end - 1);
        let status = head.status;
        if (100..200).contains(&status) && status != 101 {
            stats.interim_responses += 1;
            let side = &mut self.sides[d];
            if side.interim.len() < cfg.max_interim_responses {
                side.interim.push(status);
            } else {
                stats.interim_dropped += 1;
            }
            if lenient {
                flag(&mut side.carry, Anomaly::NonConformingHead, stats);
            }
            return Step::Progress(end);
        }
        // A final response after a gap that cost this side a message boundary: answer the
        // requests whose responses were in the gap first, then pair.
        if let Some(g) = self.resp_lost_at.take() {
            self.skip_lost_responses(g, stats);
        }
        let expected = self.expected_request();
        if expected.is_none() {
            match self.wait_for_request(cfg, &head, end, input.len(), ts) {
                Wait::Yes => {
                    self.sides[d].await_request = true;
                    return Step::NeedMore;
                }
                Wait::GaveUp => stats.responses_framed_alone += 1,
                Wait::Needless => {}
            }
        }
        let mut anomalies = mem::take(&mut self.sides[d].carry);
        if lenient {
            flag(&mut anomalies, Anomaly::NonConformingHead, stats);
        }
        let framing = analyse_framing(&head.headers, &mut anomalies, stats);
        let info = match expected {
            Some((id, info)) => {
                self.claim(id);
                self.sides[d].claim = Some(id);
                // A final answer before the body an `Expect: 100-continue` held back.
                if let Some(m) = self.sides[1 - d].cur.as_deref_mut() {
                    if m.txn == id && m.expects_continue && status >= 200 {
                        m.refused = true;
                    }
                }
                info
            }
            None => ReqInfo::default(),
        };
        let tunnel_after = status == 101 || (info.connect && (200..300).contains(&status));
        let no_body = info.head || status == 204 || status == 304 || tunnel_after;
        let fr = if no_body {
            Framing::None
        } else {
            framing.response()
        };
        let body = match fr {
            Framing::None => BodyAcc::empty(),
            Framing::Length(n) => BodyAcc::new(cfg, framing.encoding, n, !info.measure_only),
            Framing::Chunked | Framing::Close => {
                BodyAcc::new(cfg, framing.encoding, 0, !info.measure_only)
            }
        };
        let interim = mem::take(&mut self.sides[d].interim);
        let head_bytes = head.headers.heap_size() + crate::message::owned_capacity(&head.reason);
        self.sides[d].cur = Some(Box::new(Msg {
            head: MsgHead::Resp { head, interim },
            ts,
            ts_end,
            body,
            anomalies,
            txn: expected.map_or(0, |e| e.0),
            connect: info.connect,
            tunnel_after,
            head_bytes,
            expects_continue: false,
            refused: false,
        }));
        match fr {
            Framing::None => self.finish(cfg, d, Some(ts_end), false, out, stats),
            Framing::Length(n) => self.sides[d].state = State::Body(BodyState::Length(n)),
            Framing::Chunked => self.sides[d].state = State::Body(BodyState::Chunked(Chunk::Size)),
            Framing::Close => self.sides[d].state = State::Body(BodyState::Close),
        }
        Step::Progress(end)
    }

    /// The answer to an HTTP/0.9 request: no head, the rest of the stream is the body.
    fn start_09_response(&mut self, cfg: &HttpConfig, d: usize, id: u64, ts: Timestamp) {
        self.claim(id);
        let side = &mut self.sides[d];
        side.claim = Some(id);
        let interim = mem::take(&mut side.interim);
        let mut anomalies = mem::take(&mut side.carry);
        anomalies.insert(Anomaly::Http09);
        side.cur = Some(Box::new(Msg {
            head: MsgHead::Resp {
                head: RespHead {
                    status: 0,
                    reason: "".into(),
                    version: Version::Http09,
                    headers: Headers::default(),
                },
                interim,
            },
            ts,
            ts_end: ts,
            body: BodyAcc::new(cfg, Vec::new(), 0, true),
            anomalies,
            txn: id,
            connect: false,
            tunnel_after: false,
            head_bytes: 0,
            expects_continue: false,
            refused: false,
        }));
        side.state = State::Body(BodyState::Close);
    }

    fn claim(&mut self, id: u64) {
        if let Some(t) = self.pending.iter_mut().find(|t| t.id == id) {
            t.slot = Slot::Claimed;
        }
    }

    /// Before the first byte of a request body announced with `Expect: 100-continue`: when
    /// the expectation was refused and `input` starts a request line, the body was never
    /// sent, and the request ends here (the step to return). Else the body is on its way.
    fn unsent_body(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        input: &[u8],
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Option<Step> {
        let m = self.sides[d].cur.as_deref_mut()?;
        if !m.expects_continue || input.is_empty() {
            return None;
        }
        if m.refused {
            match scan_request_line(input, false) {
                Scan::Yes(ReqLine::Http1 { .. }) => {
                    flag(&mut m.anomalies, Anomaly::BodyNotSent, stats);
                    self.finish(cfg, d, None, false, out, stats);
                    return Some(Step::Progress(0));
                }
                Scan::NeedMore if input.len() < cfg.head_cap() => return Some(Step::NeedMore),
                _ => {}
            }
        }
        m.expects_continue = false;
        None
    }

    #[allow(clippy::too_many_arguments)] // the body's state, plus the usual context
    fn step_body(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        b: BodyState,
        input: &[u8],
        ctx: Ctx,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        if let Some(step) = self.unsent_body(cfg, d, input, out, stats) {
            return step;
        }
        match b {
            BodyState::Length(rem) => {
                let n = rem.min(input.len() as u64) as usize;
                self.body_data(cfg, d, &input[..n], ctx.ts_at(n.saturating_sub(1)), stats);
                let rem = rem - n as u64;
                if rem == 0 {
                    self.finish(cfg, d, None, false, out, stats);
                } else {
                    self.sides[d].state = State::Body(BodyState::Length(rem));
                }
                Step::Progress(n)
            }
            BodyState::Close => {
                self.body_data(
                    cfg,
                    d,
                    input,
                    ctx.ts_at(input.len().saturating_sub(1)),
                    stats,
                );
                Step::Progress(input.len())
            }
            BodyState::Chunked(c) => self.step_chunk(cfg, d, c, input, ctx, out, stats),
        }
    }

    #[allow(clippy::too_many_arguments)] // the chunk state, plus the usual context
    fn step_chunk(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        c: Chunk,
        input: &[u8],
        ctx: Ctx,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        let cap = cfg.head_cap();
        let set = |s: &mut Self, c: Chunk| s.sides[d].state = State::Body(BodyState::Chunked(c));
        match c {
            Chunk::Size => match find_lf(input, 0) {
                None if input.len() < cap => Step::NeedMore,
                None => self.invalid_chunk(cfg, d, out, stats),
                Some(i) if i >= cap => self.invalid_chunk(cfg, d, out, stats),
                Some(i) => match parse_chunk_size(&input[..i]) {
                    Some(0) => {
                        set(self, Chunk::Trailers(0));
                        self.touch(d, ctx.ts_at(i));
                        Step::Progress(i + 1)
                    }
                    Some(n) => {
                        set(self, Chunk::Data(n));
                        Step::Progress(i + 1)
                    }
                    None => self.invalid_chunk(cfg, d, out, stats),
                },
            },
            Chunk::Data(rem) => {
                let n = rem.min(input.len() as u64) as usize;
                self.body_data(cfg, d, &input[..n], ctx.ts_at(n.saturating_sub(1)), stats);
                let rem = rem - n as u64;
                set(
                    self,
                    if rem == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rem)
                    },
                );
                Step::Progress(n)
            }
            Chunk::DataEnd => match crate::head::eol_len(input) {
                Scan::Yes(n) => {
                    set(self, Chunk::Size);
                    Step::Progress(n)
                }
                Scan::NeedMore => Step::NeedMore,
                Scan::No => self.invalid_chunk(cfg, d, out, stats),
            },
            Chunk::Trailers(seen) => match crate::head::eol_len(input) {
                Scan::Yes(n) => {
                    self.finish(cfg, d, Some(ctx.ts_at(n - 1)), false, out, stats);
                    Step::Progress(n)
                }
                Scan::NeedMore => Step::NeedMore,
                Scan::No => match find_lf(input, 0) {
                    Some(_) if self.starts_message(d, input) => {
                        // The sender left out the empty line that ends the trailers: what
                        // follows is the next message, not a trailer field.
                        if let Some(m) = self.sides[d].cur.as_mut() {
                            flag(&mut m.anomalies, Anomaly::InvalidChunk, stats);
                        }
                        self.finish(cfg, d, Some(ctx.ts_at(0)), false, out, stats);
                        Step::Progress(0)
                    }
                    Some(i) if seen + i < cap => {
                        set(self, Chunk::Trailers(seen + i + 1));
                        Step::Progress(i + 1)
                    }
                    None if seen + input.len() < cap => Step::NeedMore,
                    _ => self.invalid_chunk(cfg, d, out, stats),
                },
            },
        }
    }

    /// `line` (complete) is a start line of the messages direction `d` carries.
    fn starts_message(&self, d: usize, line: &[u8]) -> bool {
        match self.kind(d) {
            Kind::Responses => crate::head::scan_status_line(line) == Scan::Yes(()),
            Kind::Requests => matches!(
                scan_request_line(line, true),
                Scan::Yes(crate::head::ReqLine::Http1 { .. })
            ),
            Kind::Unknown => false,
        }
    }

    /// Malformed chunk framing: the message ends here, truncated, and the parser looks for
    /// the next message start from this line on (where a smuggled request would be).
    fn invalid_chunk(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> Step {
        if let Some(m) = self.sides[d].cur.as_mut() {
            flag(&mut m.anomalies, Anomaly::InvalidChunk, stats);
        }
        self.finish(cfg, d, None, true, out, stats);
        self.resync_after_message(d);
        Step::Progress(0)
    }

    fn touch(&mut self, d: usize, ts: Timestamp) {
        if let Some(m) = self.sides[d].cur.as_mut() {
            m.ts_end = ts;
        }
    }

    fn body_data(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        data: &[u8],
        ts_last: Timestamp,
        stats: &mut HttpStats,
    ) {
        if let Some(m) = self.sides[d].cur.as_mut() {
            m.body.data(cfg, data, &mut m.anomalies, stats);
            m.ts_end = ts_last;
        }
    }

    fn body_gap(&mut self, d: usize, len: u64, ts: Timestamp, stats: &mut HttpStats) {
        if let Some(m) = self.sides[d].cur.as_mut() {
            m.body.gap(len, &mut m.anomalies, stats);
            m.ts_end = ts;
        }
    }

    /// Completes the message in progress on `d` and moves the direction on.
    fn finish(
        &mut self,
        cfg: &HttpConfig,
        d: usize,
        ts_end: Option<Timestamp>,
        truncated: bool,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) {
        let Some(msg) = self.sides[d].cur.take() else {
            return;
        };
        let mut msg = *msg;
        let ts_end = ts_end.unwrap_or(msg.ts_end);
        let body = msg.body.finish(cfg, truncated, &mut msg.anomalies, stats);
        let normal = matches!(self.sides[d].state, State::Body(_) | State::Head);
        match msg.head {
            MsgHead::Req(h) => {
                stats.requests += 1;
                if normal {
                    self.sides[d].state = if msg.connect {
                        State::ConnectWait
                    } else {
                        State::Head
                    };
                }
                let req = Request {
                    ts: msg.ts,
                    ts_end,
                    method: h.method,
                    target: h.target,
                    version: h.version,
                    headers: h.headers,
                    body,
                };
                let size = req.heap_size();
                if let Some(t) = self.pending.iter_mut().find(|t| t.id == msg.txn) {
                    t.req = Some(req);
                    t.anomalies.extend(msg.anomalies);
                    t.bytes += size;
                    self.queued_bytes += size;
                }
            }
            MsgHead::Resp { head, interim } => {
                stats.responses += 1;
                if normal {
                    self.sides[d].state = State::Head;
                }
                let resp = Response {
                    ts: msg.ts,
                    ts_end,
                    status: head.status,
                    reason: head.reason,
                    version: head.version,
                    headers: head.headers,
                    body,
                    interim,
                };
                let claim = self.sides[d].claim.take();
                self.attach_response(cfg, claim, resp, msg.anomalies, stats);
                if msg.tunnel_after {
                    self.start_tunnel(cfg, out, stats);
                } else if msg.connect {
                    // The proxy refused the tunnel: the client's held bytes are HTTP again.
                    let c = 1 - d;
                    if self.sides[c].state == State::ConnectWait {
                        self.sides[c].state = State::Head;
                        self.sides[c].kick = true;
                    }
                }
            }
        }
        self.try_emit(out, stats);
    }

    fn attach_response(
        &mut self,
        cfg: &HttpConfig,
        claim: Option<u64>,
        resp: Response,
        anomalies: Anomalies,
        stats: &mut HttpStats,
    ) {
        let size = resp.heap_size();
        let before_capture = self.answers_before_capture();
        let to_lost_request = self.answers_lost_request(resp.ts);
        let target = match claim {
            Some(id) => self.pending.iter_mut().find(|t| t.id == id),
            None if self.held.is_empty() => self
                .pending
                .iter_mut()
                .find(|t| matches!(t.slot, Slot::Waiting)),
            None => None,
        };
        match target {
            Some(t) => {
                t.slot = Slot::Answered(Some(resp));
                t.anomalies.extend(anomalies);
                t.bytes += size;
                self.queued_bytes += size;
            }
            None if claim.is_some() => {
                // Its request was already emitted (evicted from the waiting queue).
                stats.orphan_responses += 1;
            }
            None if before_capture => {
                // Picked up mid-stream, and the client has sent nothing yet: this answers a
                // request from before the capture began, which can never be paired.
                stats.orphan_responses += 1;
            }
            None if to_lost_request => {
                // It answers a request lost in a gap (see `lose_requests`).
                stats.responses_to_lost_requests += 1;
            }
            None => {
                // A response before its request: hold it for the next request parsed.
                if self.held.len() >= cfg.pending_cap() {
                    if let Some((_, _, s)) = self.held.pop_front() {
                        self.queued_bytes = self.queued_bytes.saturating_sub(s);
                    }
                    stats.orphan_responses += 1;
                }
                self.held.push_back((resp, anomalies, size));
                self.queued_bytes += size;
            }
        }
    }

    /// A gap at `gap_at` cost the response side a message boundary, and a response follows
    /// it. A request still waiting that was sent before the gap, when a later one was sent
    /// after it, had its response in the gap: the later request was sent once the client had
    /// acknowledged the missing bytes (the capture layer dates the gap by that ACK), and a
    /// client that is not pipelining waits for the whole response first. Such requests are
    /// answered with nothing (`responses_lost_to_gap`), so the response after the gap pairs
    /// with the request it answers instead of shifting every later pair by one. Pipelined
    /// requests sent together before the gap are left alone.
    fn skip_lost_responses(&mut self, gap_at: Timestamp, stats: &mut HttpStats) {
        let waiting = |t: &Txn| matches!(t.slot, Slot::Waiting);
        while let Some(i) = self.pending.iter().position(waiting) {
            if self.pending[i].ts >= gap_at {
                return;
            }
            let later = self.pending.iter().skip(i + 1);
            if !later.filter(|t| waiting(t)).any(|t| t.ts >= gap_at) {
                return;
            }
            self.pending[i].slot = Slot::Answered(None);
            stats.responses_lost_to_gap += 1;
        }
    }

    /// No request byte has been seen on the request side (or the roles are not known yet).
    /// A response with no request to answer, now: picked up mid-stream and the client has
    /// sent nothing yet, so it answers a request from before the capture began.
    fn answers_before_capture(&self) -> bool {
        self.mid_stream && self.next_seq == 0 && self.request_side_idle()
    }

    /// A response at `ts` with no request to answer came after a gap cost the request side
    /// a message boundary: it answers a request lost in it (see `lose_requests`).
    fn answers_lost_request(&self, ts: Timestamp) -> bool {
        self.req_lost_at.is_some_and(|g| ts >= g)
    }

    fn request_side_idle(&self) -> bool {
        self.req_dir.is_none_or(|d| {
            let side = &self.sides[d.index()];
            side.cur.is_none() && side.buf.is_empty()
        })
    }

    /// 101 or a 2xx to CONNECT: nothing more on this connection is HTTP.
    fn start_tunnel(&mut self, cfg: &HttpConfig, out: &mut dyn CallSink, stats: &mut HttpStats) {
        stats.upgraded_connections += 1;
        for d in 0..2 {
            if self.sides[d].cur.is_some() {
                self.finish(cfg, d, None, true, out, stats);
            }
            let s = &mut self.sides[d];
            stats.tunnel_bytes += s.buf.len() as u64;
            s.buf = Vec::new();
            s.await_09 = false;
            s.kick = false;
            s.state = State::Tunnel;
        }
    }

    /// Registers a request (or a placeholder for a dropped one) in the waiting queue,
    /// pairing it with a response that arrived first.
    fn push_txn(
        &mut self,
        cfg: &HttpConfig,
        ts: Timestamp,
        info: ReqInfo,
        real: bool,
        out: &mut dyn CallSink,
        stats: &mut HttpStats,
    ) -> u64 {
        while self.pending.len() >= cfg.pending_cap() {
            let Some(mut t) = self.pending.pop_front() else {
                break;
            };
            if t.seq.is_some() && t.req.is_some() {
                flag(&mut t.anomalies, Anomaly::PendingOverflow, stats);
            }
            self.emit(t, out, stats);
        }
        let id = self.next_id;
        self.next_id += 1;
        let seq = real.then(|| {
            self.next_seq += 1;
            self.next_seq - 1
        });
        if real {
            self.req_lost_at = None;
        }
        self.release_waiting_response();
        let mut t = Txn {
            id,
            seq,
            ts,
            req: None,
            info,
            slot: Slot::Waiting,
            anomalies: Anomalies::new(),
            bytes: 0,
        };
        if let Some((resp, anomalies, size)) = self.held.pop_front() {
            t.slot = Slot::Answered(Some(resp));
            t.anomalies.extend(anomalies);
            t.bytes = size;
        } else if let Some(r) = self.req_dir.map(|r| r.reverse().index()) {
            let s = &mut self.sides[r];
            if s.claim.is_none()
                && s.cur
                    .as_ref()
                    .is_some_and(|m| matches!(m.head, MsgHead::Resp { .. }))
            {
                s.claim = Some(id);
                t.slot = Slot::Claimed;
            }
        }
        self.pending.push_back(t);
        self.try_emit(out, stats);
        id
    }

    /// Emits calls from the front of the queue while they are complete.
    fn try_emit(&mut self, out: &mut dyn CallSink, stats: &mut HttpStats) {
        while let Some(f) = self.pending.front() {
            let req_ready = f.seq.is_none() || f.req.is_some();
            if !(req_ready && matches!(f.slot, Slot::Answered(_))) {
                break;
            }
            let Some(t) = self.pending.pop_front() else {
                break;
            };
            self.emit(t, out, stats);
        }
        // An idle keep-alive connection holds no queue: a million of them would otherwise
        // keep a few hundred bytes each.
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
    }

    fn emit(&mut self, t: Txn, out: &mut dyn CallSink, stats: &mut HttpStats) {
        self.queued_bytes = self.queued_bytes.saturating_sub(t.bytes);
        let response = match t.slot {
            Slot::Answered(r) => r,
            Slot::Waiting | Slot::Claimed => None,
        };
        match (t.seq, t.req) {
            (Some(seq), Some(request)) => {
                stats.calls += 1;
                if response.is_none() {
                    stats.calls_without_response += 1;
                }
                out.push(Call {
                    request,
                    response,
                    anomalies: t.anomalies,
                    seq,
                    bodies_kept: !t.info.measure_only,
                });
            }
            _ => {
                if response.is_some() {
                    stats.responses_to_dropped_requests += 1;
                }
            }
        }
    }
}

enum HeadEnd {
    NeedMore,
    /// Consume this many bytes.
    Oversized(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `HttpConn` lives in every flow-table entry: keep it small (messages in progress
    /// and buffers are on the heap).
    #[test]
    fn connection_state_stays_small() {
        assert!(
            mem::size_of::<HttpConn>() <= 640,
            "{}",
            mem::size_of::<HttpConn>()
        );
    }

    #[test]
    fn timestamp_map_tracks_runs_and_merges_beyond_its_bound() {
        let t = Timestamp::from_secs;
        let mut m = TsMap::new(t(1));
        m.push(10, t(2));
        m.push(10, t(2));
        m.push(20, t(3));
        assert_eq!(
            (m.at(0), m.at(9), m.at(10), m.at(25)),
            (t(1), t(1), t(2), t(3))
        );
        m.drain(15);
        assert_eq!((m.at(0), m.at(4), m.at(5)), (t(2), t(2), t(3)));
        let mut m = TsMap::new(t(0));
        for i in 1..40 {
            m.push(i * 10, t(i as u64));
        }
        assert_eq!(m.at(0), t(0));
        assert_eq!(m.at(395), t(39));
    }
}
