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

/// One header line, name and value as sent (the value without surrounding whitespace).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

impl Header {
    pub(crate) fn heap_size(&self) -> usize {
        self.name.capacity() + self.value.capacity()
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?}",
            self.name,
            String::from_utf8_lossy(&self.value)
        )
    }
}

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
    pub headers: Vec<Header>,
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
    pub headers: Vec<Header>,
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

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

fn headers_heap(headers: &[Header]) -> usize {
    std::mem::size_of_val(headers) + headers.iter().map(Header::heap_size).sum::<usize>()
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
pub(crate) fn host_of<'a>(method: &str, target: &'a str, headers: &'a [Header]) -> Option<&'a str> {
    if let Some(v) = find_header(headers, "host") {
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
        find_header(&self.headers, name)
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
            + headers_heap(&self.headers)
            + self.body.heap_size()
    }
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    pub(crate) fn heap_size(&self) -> usize {
        self.reason.capacity()
            + headers_heap(&self.headers)
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
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            body: Body::default(),
        }
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
