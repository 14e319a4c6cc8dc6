//! apiscope-http: HTTP/1.x API calls from the two reassembled byte streams of a TCP
//! connection.
//!
//! # Main types
//!
//! - [`HttpConn`]: the parser state of one connection. The capture layer's stream events
//!   go in ([`HttpConn::on_data`], [`HttpConn::on_gap`], [`HttpConn::on_close`]); finished
//!   [`Call`]s come out, appended to a `Vec` the caller owns and drains.
//! - [`HttpConfig`]: the bounds (head size, header count, body prefix, decoded size and
//!   ratio, pending requests, ...), shared by all connections of a worker.
//! - [`HttpStats`]: a worker's counters; every bound and every [`Anomaly`] kind has one.
//! - [`Call`]: a [`Request`] paired with its [`Response`] (if any), the [`Anomalies`] seen
//!   in either, and its index on the connection. A message's [`Headers`] are one copy of its
//!   header lines with each field a span of it, so a call costs few allocations (calls are
//!   usually freed on another thread than the one that built them).
//!
//! # How they cooperate
//!
//! Each direction of a connection is a push parser: it is handed whatever bytes arrived,
//! parses heads with `httparse` straight from that slice when they are complete, and copies
//! into its own buffer only an incomplete head (bounded by `max_head_bytes`). Body bytes are
//! never buffered: they are counted, decoded as they stream by (gzip, deflate, stacked
//! codings, limited against decompression bombs) and only the first `body_prefix_bytes` of
//! the decoded body are kept. Finished calls go to a [`CallSink`] (a `Vec<Call>` keeps
//! everything), which is asked at each request head whether the call's bodies are worth
//! keeping; those it declines are only measured: no prefix, and a body that is only gzip
//! encoded is not inflated, its length being read from the gzip trailer.
//!
//! Requests are paired with responses first-in first-out, which covers pipelining; a
//! response that arrives before its request (a hole in the request direction, or the two
//! directions captured out of order) waits for it: a complete one is held, and one that
//! may have a body is not framed until its request says how (a HEAD's response has none),
//! while at most `max_response_wait_bytes` follow its head and unless no request can come
//! (a response from before a mid-stream capture, one to a request lost in a gap, a gap, the
//! end); then it is framed on its own (`responses_framed_alone`). When one
//! direction's message changes the other's state (a held response released, a refused
//! CONNECT), that direction goes on first, so the outcome never depends on how the bytes
//! were split into packets.
//! Gaps are normal input: a gap inside a Content-Length body is accounted for and parsing
//! goes on at the message boundary; elsewhere the message ends truncated and the parser
//! scans for the next plausible message start, at any byte (what is left of a message a gap
//! cut often has no line end before the next message). When a gap cost the response side a
//! message boundary, requests still waiting that were sent before the gap, while a later one
//! was sent after it (the capture layer dates a gap by the client's acknowledgment of its
//! end), had their responses in the gap: they are emitted without one
//! (`responses_lost_to_gap`), so the pairs after the gap stay aligned. When a gap cost the
//! request side a message boundary, a response that came at or after the server's
//! acknowledgment of the missing bytes with no request waiting answers a request lost in it:
//! it is dropped (`responses_to_lost_requests`) rather than paired with the next request.
//! Connections whose first bytes cannot start an HTTP message are given up
//! ([`HttpConn::is_http`] becomes `Some(false)`), whatever the port.
//!
//! # Decisions on ambiguous input
//!
//! - **HTTP/0.9**: a request line with a known method, an origin or absolute target and no
//!   version is a request with [`Version::Http09`] and anomaly [`Anomaly::Http09`] (header
//!   lines sent right after it are read). If the server's answer does not start with
//!   `HTTP/`, it is the head-less 0.9 response: status 0, version 0.9, no headers, and the
//!   rest of the server stream as body.
//! - **Transfer-Encoding**: framing follows what a lenient server does: chunked when any
//!   element, trimmed of all whitespace (VT and FF too) and lowercased, is `chunked`
//!   (`chunked, identity`, `\x0bchunked`, `Chunked`); an unrecognisable value (an RFC 2047
//!   word) is ignored for framing and Content-Length applies. Anything but an exact list of
//!   known codings (names are case-insensitive, so `Chunked` is fine) with `chunked` once
//!   and last is flagged [`Anomaly::ObfuscatedTransferEncoding`].
//! - **Content-Length**: with differing values the first is used
//!   ([`Anomaly::ConflictingContentLength`]); with Transfer-Encoding too, chunked wins
//!   ([`Anomaly::AmbiguousFraming`]).
//! - **A refused `Expect: 100-continue`**: when the server gives a final response before any
//!   byte of the announced body and the client's next bytes are a request line, the client
//!   went on without the body (RFC 9110 §10.1.1): the request ends with an empty body
//!   ([`Anomaly::BodyNotSent`]) and the line starts the next request. Without the
//!   expectation, or once it is accepted or a body byte came, the announced body is the
//!   body, whatever it looks like.
//! - **Orphan responses**: a response without a request is held (at most `max_pending`) and
//!   paired with the next request parsed; those left at close are counted
//!   (`orphan_responses`) and dropped, since a response alone is not a call. On a connection
//!   picked up mid-stream, a response before any request byte answers a request from before
//!   the capture: it is an orphan at once.
//! - **SOCKS**: a SOCKS 4/4a/5 handshake at the start of a connection (with a handshake
//!   seen by the capture layer) is skipped, and what follows is judged as a stream start:
//!   HTTP inside the tunnel is parsed, anything else gives the connection up.
//! - **PROXY protocol**: a v1 line or v2 header that a load balancer (HAProxy, AWS NLB,
//!   Envoy) sends before the client's first bytes is skipped and counted (`proxy_headers`)
//!   at the start of a connection with a handshake seen.
//! - **Lenient heads**: heads httparse rejects are re-read by a lenient parser and flagged
//!   [`Anomaly::NonConformingHead`]: control bytes in header values, non-UTF-8 or
//!   space-containing request targets, tabs or several spaces between the parts of a start
//!   line, whitespace after the version, a version in lower case or other than 1.0/1.1
//!   (`HTTP/1.2`, `HTTP/2.0` in a text request line, which servers answer with 505; not the
//!   HTTP/2 preface), obsolete line folding, whitespace before a header's colon; header
//!   lines that cannot be headers (no colon, a name that is no token) are skipped. Exploit
//!   traffic is often exactly that, so it is reported rather than dropped.
//! - **Chunked trailers**: a complete start line where a trailer field would be ends the
//!   message (its sender left out the empty line after the last chunk), flagged
//!   [`Anomaly::InvalidChunk`], and starts the next one.
//! - **Dropped heads** (oversized, too many headers, unparseable, lost in a gap): no call, but
//!   a dropped request still absorbs one response so later pairs stay aligned, and a dropped
//!   response leaves its request answered by `None`.
//!
//! # Example
//!
//! ```
//! use apiscope_capture::{Direction, Timestamp};
//! use apiscope_http::{HttpConfig, HttpConn, HttpStats};
//!
//! let cfg = HttpConfig::default();
//! let mut stats = HttpStats::default();
//! let mut calls = Vec::new();
//! let mut conn = HttpConn::new(&cfg, true);
//!
//! let t0 = Timestamp::from_secs(1);
//! let t1 = Timestamp::from_secs(2);
//! conn.on_data(&cfg, Direction::ToServer, t0,
//!     b"GET /users/7?full=1 HTTP/1.1\r\nHost: api.example\r\n\r\n", &mut calls, &mut stats);
//! assert_eq!(conn.earliest_pending(), Some(t0));
//! conn.on_data(&cfg, Direction::ToClient, t1,
//!     b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"id\":7}\n", &mut calls, &mut stats);
//!
//! let call = calls.pop().expect("one call");
//! assert_eq!(call.request.method, "GET");
//! assert_eq!(call.request.host(), Some("api.example"));
//! assert_eq!(call.request.path(), "/users/7");
//! let response = call.response.expect("answered");
//! assert_eq!(response.status, 200);
//! assert_eq!(response.body.prefix, b"{\"id\":7}\n");
//! assert!(call.anomalies.is_empty());
//! assert_eq!(stats.calls, 1);
//! assert_eq!(conn.is_http(), Some(true));
//! ```

mod anomaly;
mod body;
mod config;
mod conn;
mod decode;
mod head;
mod message;
mod proxy;
mod socks;
mod stats;

pub use anomaly::{Anomalies, Anomaly};
pub use config::HttpConfig;
pub use conn::{CallSink, CallStart, HttpConn};
pub use message::{
    owned_capacity, Body, Call, Header, HeaderIter, Headers, Request, Response, Version,
};
pub use stats::HttpStats;
