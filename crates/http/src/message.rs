//! The owned values a connection produces: [`Call`], [`Request`], [`Response`], [`Body`].

use std::borrow::Cow;
use std::fmt;

use apiscope_capture::Timestamp;

use crate::anomaly::Anomalies;

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// A request line without version, and the head-less response to it.
    Http09,
    Http10,
    Http11,
}

impl Version {
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::Http09 => "HTTP/0.9",
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field of a [`Headers`]: name and value as sent (the value without
/// surrounding whitespace).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?}",
            self.name,
            String::from_utf8_lossy(self.value)
        )
    }
}

/// The header fields of a message, in order. A parsed head is copied once, whole, and its
/// fields are spans of that copy, kept inline for a usual head: one allocation per message
/// and one copy, not an allocation and a copy per name and per value. Fewer allocations on
/// the worker that parses heads, and fewer frees on the thread that drops the call.
#[derive(Clone, Default)]
pub struct Headers {
    /// The fields' text: a parsed head's header lines as sent, then any field pushed.
    text: Vec<u8>,
    fields: Spans,
}

/// Per field: where its name starts and ends, where its value starts and ends, in the text.
/// Inline while there are at most [`INLINE_FIELDS`] and the text is under 64 KiB.
#[derive(Clone)]
enum Spans {
    Inline(u8, [[u16; 4]; INLINE_FIELDS]),
    Heap(Vec<[u32; 4]>),
}

/// Fields kept without an allocation: more than most requests and responses have.
const INLINE_FIELDS: usize = 12;

impl Default for Spans {
    fn default() -> Self {
        Spans::Inline(0, [[0; 4]; INLINE_FIELDS])
    }
}

impl Spans {
    fn len(&self) -> usize {
        match self {
            Spans::Inline(n, _) => usize::from(*n),
            Spans::Heap(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<[usize; 4]> {
        match self {
            Spans::Inline(n, a) => (i < usize::from(*n)).then(|| a[i].map(usize::from)),
            Spans::Heap(v) => v.get(i).map(|s| s.map(|o| o as usize)),
        }
    }

    fn push(&mut self, span: [usize; 4]) {
        if let Spans::Inline(n, a) = self {
            let small = span.map(|o| u16::try_from(o).ok());
            if let (true, [Some(w), Some(x), Some(y), Some(z)]) =
                (usize::from(*n) < INLINE_FIELDS, small)
            {
                a[usize::from(*n)] = [w, x, y, z];
                *n += 1;
                return;
            }
            let spilled = a[..usize::from(*n)]
                .iter()
                .map(|s| s.map(u32::from))
                .collect();
            *self = Spans::Heap(spilled);
        }
        if let Spans::Heap(v) = self {
            v.push(span.map(offset));
        }
    }

    /// Moves the last field's value to `v..ve`.
    fn set_last_value(&mut self, v: usize, ve: usize) {
        let Some(i) = self.len().checked_sub(1) else {
            return;
        };
        let [n, ne, _, _] = self.get(i).expect("in range");
        // Re-pushed, so that offsets past 64 KiB move the spans to the heap.
        match self {
            Spans::Inline(len, _) => *len -= 1,
            Spans::Heap(s) => {
                s.pop();
            }
        }
        self.push([n, ne, v, ve]);
    }

    fn iter(&self) -> impl Iterator<Item = [usize; 4]> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("in range"))
    }

    fn heap_size(&self) -> usize {
        match self {
            Spans::Inline(..) => 0,
            Spans::Heap(v) => v.capacity() * std::mem::size_of::<[u32; 4]>(),
        }
    }
}

impl Headers {
    /// The fields httparse found in `head`, whose names and values are slices of `head`:
    /// the lines holding them are copied once.
    pub(crate) fn from_parsed(head: &[u8], parsed: &[httparse::Header<'_>]) -> Self {
        let base = head.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base);
        let in_head = |s: &[u8]| at(s) <= head.len() && at(s) + s.len() <= head.len();
        let (Some(first), Some(last)) = (parsed.first(), parsed.last()) else {
            return Headers::default();
        };
        if !parsed
            .iter()
            .all(|h| in_head(h.name.as_bytes()) && in_head(h.value))
        {
            // Not slices of `head` (never with httparse): copy field by field.
            return parsed.iter().map(|h| (h.name, h.value)).collect();
        }
        let start = at(first.name.as_bytes());
        let end = at(last.value) + last.value.len();
        let mut fields = Spans::default();
        for h in parsed {
            let (n, v) = (at(h.name.as_bytes()) - start, at(h.value) - start);
            fields.push([n, n + h.name.len(), v, v + h.value.len()]);
        }
        Headers {
            text: head[start..end.max(start)].to_vec(),
            fields,
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let n = self.text.len();
        self.text.extend_from_slice(name.as_bytes());
        let v = self.text.len();
        self.text.extend_from_slice(value);
        self.fields.push([n, v, v, self.text.len()]);
    }

    /// Appends `more` to the last field's value (obsolete line folding); nothing when there
    /// is no field.
    pub(crate) fn extend_last(&mut self, more: &[u8]) {
        let Some([_, _, v, e]) = self
            .fields
            .len()
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
        else {
            return;
        };
        if e != self.text.len() {
            // The value is not at the end of the text: move a copy there first.
            self.text.extend_from_within(v..e);
        }
        let start = self.text.len() - (e - v);
        self.text.extend_from_slice(more);
        self.fields.set_last_value(start, self.text.len());
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.len() == 0
    }

    /// The fields in order.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            next: 0,
        }
    }

    /// The fields in order, names as bytes (no UTF-8 check: for scans on the hot path).
    pub(crate) fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|[n, ne, v, ve]| (&self.text[n..ne], &self.text[v..ve]))
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        // Names as bytes (no UTF-8 check); the comparison looks at lengths first.
        self.iter_bytes()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.text.capacity() + self.fields.heap_size()
    }

    fn field(&self, [n, ne, v, ve]: [usize; 4]) -> Header<'_> {
        Header {
            // Names are tokens (httparse checks them) or came in as `&str`.
            name: std::str::from_utf8(&self.text[n..ne]).unwrap_or(""),
            value: &self.text[v..ve],
        }
    }
}

/// Equal when the fields are, whatever the text around them.
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

/// Heap bytes of a string that may be borrowed (a call's method or reason phrase).
#[allow(clippy::ptr_arg)] // whether it is borrowed is the question
pub fn owned_capacity(s: &Cow<'static, str>) -> usize {
    match s {
        Cow::Owned(s) => s.capacity(),
        Cow::Borrowed(_) => 0,
    }
}

fn offset(n: usize) -> u32 {
    // A head is bounded by `max_head_bytes`, far below 4 GiB.
    u32::try_from(n).expect("header fields stay under 4 GiB")
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(fields: I) -> Self {
        let mut h = Headers::default();
        for (n, v) in fields {
            h.push(n.as_ref(), v.as_ref());
        }
        h
    }
}

/// The fields of a [`Headers`], in order.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    headers: &'a Headers,
    next: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let f = self.headers.fields.get(self.next)?;
        self.next += 1;
        Some(self.headers.field(f))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.headers.fields.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

/// What is known about a message body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// Body bytes seen on the wire, after removing chunked framing and before content
    /// decoding. Bytes lost to gaps are not included (see `gap_bytes`).
    pub wire_bytes: u64,
    /// Bytes after content decoding; equal to `wire_bytes` when the body is not encoded or
    /// could not be decoded to its end (corrupt, a gap, cut short, the bomb limits: the
    /// decoded length is then unknown). For a body that was only measured
    /// ([`CallSink::keep_bodies`](crate::CallSink)) and is only gzip-encoded, the length
    /// its gzip trailer states.
    pub bytes: u64,
    /// The first `body_prefix_bytes` of the decoded body (of the wire body when decoding
    /// failed).
    pub prefix: Vec<u8>,
    /// Bytes of this body that were never captured. When a gap destroyed chunk framing the
    /// whole gap length is counted, since the body's share of it cannot be known.
    pub gap_bytes: u64,
    /// The body is incomplete: a gap, the decoding limit, invalid chunking, or the
    /// connection closing before the framing said it ends.
    pub truncated: bool,
    /// The codings applied to the body, lowercase, in the order they were applied: content
    /// codings, then transfer codings other than `chunked`. `identity` is left out.
    pub encoding: Vec<String>,
}

impl Body {
    pub(crate) fn heap_size(&self) -> usize {
        self.prefix.capacity() + self.encoding.iter().map(|e| e.capacity()).sum::<usize>()
    }
}

/// A request as sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Capture time of the packet holding the request's first byte.
    pub ts: Timestamp,
    /// Capture time of the packet holding its last byte.
    pub ts_end: Timestamp,
    /// The method exactly as sent (case preserved, any token); the usual ones are not copied.
    pub method: Cow<'static, str>,
    /// The request-target exactly as sent (a target that is not UTF-8 is converted lossily,
    /// and the call carries `NonConformingHead`).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
    pub body: Body,
}

/// A final response as sent by the server.
///
/// The response to an HTTP/0.9 request has no head: it is reported with `status` 0,
/// `version` [`Version::Http09`], an empty `reason` and no headers, and its body is the rest
/// of the server's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Capture time of the packet holding the final response's first byte.
    pub ts: Timestamp,
    pub ts_end: Timestamp,
    pub status: u16,
    /// The reason phrase as sent; the usual ones are not copied.
    pub reason: Cow<'static, str>,
    pub version: Version,
    pub headers: Headers,
    pub body: Body,
    /// Statuses of interim (1xx) responses received before this one, in order.
    pub interim: Vec<u16>,
}

/// A request paired with its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub request: Request,
    /// `None` when the connection ended (or the waiting queue overflowed) before a response
    /// arrived, or when the response's head was lost.
    pub response: Option<Response>,
    /// Everything odd about the request and the response.
    pub anomalies: Anomalies,
    /// Index of this call within its connection, from 0, in request order.
    pub seq: u64,
    /// The sink kept this call's bodies ([`CallSink::keep_bodies`](crate::CallSink)); when
    /// false their prefixes are empty and they were only measured.
    pub bodies_kept: bool,
}

impl Call {
    /// Heap bytes held by this call (header text, body prefixes), for bounds on queues of
    /// calls.
    pub fn heap_size(&self) -> usize {
        self.request.heap_size() + self.response.as_ref().map_or(0, Response::heap_size)
    }
}

/// `scheme://authority/...` → (authority without userinfo, rest starting at the path).
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    if target.starts_with('/') {
        // Origin form, by far the most common: no scheme.
        return None;
    }
    let colon = target.find("://")?;
    let scheme = &target[..colon];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let after = &target[colon + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    let host = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    Some((host, &after[end..]))
}

/// [`Request::host`] of a request with this method, target and headers.
pub(crate) fn host_of<'a>(method: &str, target: &'a str, headers: &'a Headers) -> Option<&'a str> {
    if let Some(v) = headers.get("host") {
        if let Ok(s) = std::str::from_utf8(v) {
            let s = s.trim_matches([' ', '\t']);
            if !s.is_empty() {
                return Some(s);
            }
        }
    }
    if let Some((host, _)) = split_absolute(target) {
        return (!host.is_empty()).then_some(host);
    }
    if method.eq_ignore_ascii_case("CONNECT") && !target.starts_with('/') {
        return Some(target);
    }
    None
}

/// [`Request::path`] of a request with this target.
pub(crate) fn path_of(target: &str) -> &str {
    let t = match split_absolute(target) {
        Some((_, rest)) => {
            if rest.is_empty() || rest.starts_with(['?', '#']) {
                return "/";
            }
            rest
        }
        None => target,
    };
    let end = t.find(['?', '#']).unwrap_or(t.len());
    &t[..end]
}

impl Request {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The host the request was meant for: the `Host` header when present, non-empty and
    /// UTF-8, else the authority of an absolute-form target (`http://host:port/...`, user
    /// info removed), else the target itself for `CONNECT host:port`.
    pub fn host(&self) -> Option<&str> {
        host_of(&self.method, &self.target, &self.headers)
    }

    /// The path of the target, still percent-encoded, without `?query` or `#fragment`. For
    /// an absolute-form target, its path part (`/` when empty). `*` and authority-form
    /// targets are returned whole.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// The query string after `?`, without the fragment, if there is one.
    pub fn query(&self) -> Option<&str> {
        let q = &self.target[self.target.find('?')? + 1..];
        Some(&q[..q.find('#').unwrap_or(q.len())])
    }

    pub(crate) fn heap_size(&self) -> usize {
        owned_capacity(&self.method)
            + self.target.capacity()
            + self.headers.heap_size()
            + self.body.heap_size()
    }
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    pub(crate) fn heap_size(&self) -> usize {
        owned_capacity(&self.reason)
            + self.headers.heap_size()
            + self.body.heap_size()
            + self.interim.capacity() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            ts: Timestamp::ZERO,
            ts_end: Timestamp::ZERO,
            method: "GET".into(),
            target: target.into(),
            version: Version::Http11,
            headers: headers.iter().copied().collect(),
            body: Body::default(),
        }
    }

    #[test]
    fn headers_keep_fields_in_order() {
        let mut h = Headers::default();
        assert!(h.is_empty() && h.get("a").is_none());
        h.extend_last(b"ignored");
        assert!(h.is_empty(), "nothing to fold onto");
        h.push("Host", b"a");
        h.push("X-Empty", b"");
        h.push("host", b"b");
        h.extend_last(b" c");
        assert_eq!(h.len(), 3);
        let fields: Vec<(&str, &[u8])> = h.iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(
            fields,
            [("Host", &b"a"[..]), ("X-Empty", b""), ("host", b"b c")]
        );
        assert_eq!(h.get("HOST"), Some(&b"a"[..]), "the first, any case");
        assert_eq!(h.get("x-empty"), Some(&b""[..]));
        assert_eq!(h.iter().len(), 3);
        assert_eq!(h, fields.iter().copied().collect::<Headers>());
        assert!(
            h.heap_size() >= "HostX-Emptyhost".len() + "ab c".len(),
            "the text"
        );
        assert_eq!(format!("{h:?}"), r#"[Host: "a", X-Empty: "", host: "b c"]"#);
    }

    #[test]
    fn parsed_headers_are_spans_of_one_copy_of_the_head() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nAccept:  */* \r\n\r\n";
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut slots);
        req.parse(head).unwrap();
        let mut h = Headers::from_parsed(head, req.headers);
        let want: Headers = [("Host", &b"a"[..]), ("X-Empty", b""), ("Accept", b"*/*")]
            .into_iter()
            .collect();
        assert_eq!(h, want);
        assert_eq!(h.get("accept"), Some(&b"*/*"[..]));
        // The header lines, once: from the first name to the last value.
        assert_eq!(h.text, b"Host: a\r\nX-Empty:\r\nAccept:  */*");
        h.extend_last(b" x");
        h.push("Via", b"1.1 p");
        assert_eq!(h.get("Accept"), Some(&b"*/* x"[..]));
        assert_eq!(h.get("via"), Some(&b"1.1 p"[..]));
        assert_eq!(Headers::from_parsed(head, &[]), Headers::default());
    }

    #[test]
    fn many_fields_and_long_heads_spill_their_spans_to_the_heap() {
        let names: Vec<String> = (0..INLINE_FIELDS + 3).map(|i| format!("X-{i}")).collect();
        let mut h = Headers::default();
        for (i, n) in names.iter().enumerate() {
            h.push(n, i.to_string().as_bytes());
            assert_eq!(h.len(), i + 1);
            assert_eq!(h.heap_size() > h.text.capacity(), i >= INLINE_FIELDS, "{i}");
        }
        for (i, f) in h.iter().enumerate() {
            assert_eq!(
                (f.name, f.value),
                (names[i].as_str(), i.to_string().as_bytes())
            );
        }
        // Offsets past 64 KiB, in a field and in a folded value.
        let mut h = Headers::default();
        h.push("A", &vec![b'a'; 70_000]);
        h.push("B", b"b");
        h.extend_last(b" c");
        assert_eq!(h.get("a").map(<[u8]>::len), Some(70_000));
        assert_eq!(h.get("b"), Some(&b"b c"[..]));
        assert!(h.heap_size() > h.text.capacity());
        let mut h = Headers::default();
        h.push("A", b"a");
        h.extend_last(&vec![b'x'; 70_000]);
        assert_eq!(h.get("A").map(<[u8]>::len), Some(70_001));
    }

    #[test]
    fn path_and_query() {
        assert_eq!(req("/a/b?x=1#f", &[]).path(), "/a/b");
        assert_eq!(req("/a/b?x=1#f", &[]).query(), Some("x=1"));
        assert_eq!(req("/a%20b", &[]).path(), "/a%20b");
        assert_eq!(req("http://h:8080/p/q?z", &[]).path(), "/p/q");
        assert_eq!(req("http://h:8080", &[]).path(), "/");
        assert_eq!(req("http://h?x", &[]).path(), "/");
        assert_eq!(req("*", &[]).path(), "*");
        assert_eq!(req("/nq", &[]).query(), None);
    }

    #[test]
    fn host_from_header_or_absolute_target() {
        assert_eq!(
            req("/", &[("HOST", "example.com")]).host(),
            Some("example.com")
        );
        assert_eq!(
            req("http://user:pw@api.example:81/x", &[]).host(),
            Some("api.example:81")
        );
        assert_eq!(req("/", &[("Host", "")]).host(), None);
        assert_eq!(req("/", &[]).host(), None);
        let mut c = req("db.example:443", &[]);
        c.method = "CONNECT".into();
        assert_eq!(c.host(), Some("db.example:443"));
        assert_eq!(c.path(), "db.example:443");
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = req("/", &[("Content-Type", "a/b"), ("content-type", "c/d")]);
        assert_eq!(r.header("CONTENT-TYPE"), Some(&b"a/b"[..]));
        assert_eq!(r.header("x"), None);
    }
}
