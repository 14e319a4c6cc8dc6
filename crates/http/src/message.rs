//! The owned values a connection produces: [`Call`], [`Request`], [`Response`], [`Body`].

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

/// The header fields of a message, in order. Names and values are kept back to back in two
/// buffers, so a message's fields cost three allocations, not two each: fewer allocations
/// on the worker that parses them, and fewer frees on the thread that drops the call.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    names: String,
    values: Vec<u8>,
    /// Per field, where its name ends in `names` and its value ends in `values`; each
    /// starts where the field before it ended.
    ends: Vec<(u32, u32)>,
}

impl Headers {
    /// Room for `fields` fields with `bytes` bytes of names and values together.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            names: String::with_capacity(bytes / 4),
            values: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.ends
            .push((offset(self.names.len()), offset(self.values.len())));
    }

    /// Appends `more` to the last field's value (obsolete line folding); nothing when there
    /// is no field.
    pub(crate) fn extend_last(&mut self, more: &[u8]) {
        if let Some(last) = self.ends.last_mut() {
            self.values.extend_from_slice(more);
            last.1 = offset(self.values.len());
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The fields in order.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            next: 0,
            name_start: 0,
            value_start: 0,
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        // Called many times per message: most fields are passed over on their length alone.
        let (names, want) = (self.names.as_bytes(), name.as_bytes());
        let (mut name_start, mut value_start) = (0, 0);
        for &(name_end, value_end) in &self.ends {
            let (n, v) = (name_end as usize, value_end as usize);
            if n - name_start == want.len() && names[name_start..n].eq_ignore_ascii_case(want) {
                return Some(&self.values[value_start..v]);
            }
            (name_start, value_start) = (n, v);
        }
        None
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.names.capacity()
            + self.values.capacity()
            + self.ends.capacity() * std::mem::size_of::<(u32, u32)>()
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
    name_start: u32,
    value_start: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let &(name_end, value_end) = self.headers.ends.get(self.next)?;
        let h = Header {
            name: &self.headers.names[self.name_start as usize..name_end as usize],
            value: &self.headers.values[self.value_start as usize..value_end as usize],
        };
        self.next += 1;
        (self.name_start, self.value_start) = (name_end, value_end);
        Some(h)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.headers.ends.len() - self.next;
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
    /// The method exactly as sent (case preserved, any token).
    pub method: String,
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
    pub reason: String,
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
        self.method.capacity()
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
        self.reason.capacity()
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
    fn headers_keep_fields_in_order_in_two_buffers() {
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
        assert!(h.heap_size() >= "HostX-Emptyhost".len() + "ab c".len() + 3 * 8);
        assert_eq!(format!("{h:?}"), r#"[Host: "a", X-Empty: "", host: "b c"]"#);
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
