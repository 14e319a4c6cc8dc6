//! A small blocking HTTP/1.1 client for the query API (`apiscope inventory --server`,
//! `apiscope findings --server`): plain `http://host[:port][/prefix]` URLs over
//! `std::net::TcpStream`, one request per connection, with connect, read and overall
//! timeouts and a bound on the response size. Bodies framed by `Content-Length`, chunked
//! transfer coding or the end of the connection are understood. There is no TLS: reach a
//! remote sensor through an SSH tunnel.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// Largest response body accepted (bytes).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Largest response head accepted (bytes).
const MAX_HEAD_BYTES: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No byte for this long: give up.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole exchange.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);

/// A response: status, headers (names lower-cased) and the decoded body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `http://host[:port][/prefix]`, split.
#[derive(Debug, PartialEq, Eq)]
struct BaseUrl {
    /// As written, IPv6 literals in brackets (for the `Host` header).
    host: String,
    port: u16,
    /// Path prefix without a trailing `/` (usually empty).
    prefix: String,
}

fn parse_base(url: &str) -> anyhow::Result<BaseUrl> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        bail!(
            "{url}: TLS (https) is not supported; reach the sensor on a loopback address \
             or through an SSH tunnel (ssh -L 9770:127.0.0.1:9770 SENSOR, then \
             --server http://127.0.0.1:9770)"
        );
    }
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if url.contains("://") {
        bail!("{url}: only http:// URLs are supported");
    } else {
        url
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        bail!("{url}: credentials in the URL are not supported; use --token");
    }
    if path.contains(['?', '#']) {
        bail!("{url}: a server URL takes no query or fragment");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| anyhow!("{url}: unterminated IPv6 address"))?;
        let port = &v6[end + 1..];
        let port = match port.strip_prefix(':') {
            Some(p) => Some(p),
            None if port.is_empty() => None,
            None => bail!("{url}: unexpected `{port}` after the IPv6 address"),
        };
        (format!("[{}]", &v6[..end]), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        bail!("{url}: no host");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]%".contains(&b))
    {
        bail!("{url}: `{host}` is not a host name or address");
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("{url}: `{p}` is not a port"))?,
    };
    Ok(BaseUrl {
        host,
        port,
        prefix: path.trim_end_matches('/').to_owned(),
    })
}

/// Reads from the stream with a deadline for the whole exchange.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Conn {
    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> anyhow::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no complete answer within {} s", TOTAL_TIMEOUT.as_secs());
        }
        self.stream
            .set_read_timeout(Some(left.min(IO_TIMEOUT)))
            .context("setting the read timeout")?;
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!("the server sent nothing for {} s", IO_TIMEOUT.as_secs())
                }
                Err(e) => return Err(anyhow::Error::from(e).context("reading the answer")),
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// A line ending in CRLF (or LF), without it.
    fn line(&mut self, max: usize) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.pending().iter().position(|&b| b == b'\n') {
                let mut l = self.pending()[..i].to_vec();
                self.pos += i + 1;
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            if self.pending().len() > max {
                bail!("malformed chunked answer: line over {max} bytes");
            }
            if self.fill()? == 0 {
                bail!("the answer ended in the middle of chunked framing");
            }
        }
    }

    /// Moves exactly `n` bytes into `out`.
    fn take(&mut self, mut n: usize, out: &mut Vec<u8>) -> anyhow::Result<()> {
        while n > 0 {
            if self.pending().is_empty() && self.fill()? == 0 {
                bail!("the answer ended {n} bytes early");
            }
            let k = n.min(self.pending().len());
            out.extend_from_slice(&self.pending()[..k]);
            self.pos += k;
            n -= k;
        }
        Ok(())
    }
}

fn too_large() -> anyhow::Error {
    anyhow!("the answer is over {} MiB", MAX_RESPONSE_BYTES >> 20)
}

/// Sends `GET <prefix><path_and_query>` and reads the whole answer, whatever its status.
///
/// Errors: a URL that is not `http://`, connection failures, timeouts, malformed or
/// oversized answers.
pub fn get(
    base_url: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    let base = parse_base(base_url)?;
    if !path_and_query.starts_with('/')
        || path_and_query
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ')
    {
        bail!("`{}` is not a request path", path_and_query.escape_debug());
    }
    if let Some(t) = token {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the token must be printable ASCII without spaces");
        }
    }
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let bare = base.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = (bare, base.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", base.host))?
        .collect();
    let mut last_err = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) => {
            return Err(anyhow::Error::from(e)
                .context(format!("connecting to {}:{}", base.host, base.port)))
        }
        (None, None) => bail!("{} resolves to no address", base.host),
    };
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .context("setting the write timeout")?;
    let host_header = if base.port == 80 {
        base.host.clone()
    } else {
        format!("{}:{}", base.host, base.port)
    };
    let mut req = format!(
        "GET {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: apiscope/{}\r\nAccept: application/json\r\n\
         Connection: close\r\n",
        base.prefix,
        path_and_query,
        host_header,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        req.push_str("Authorization: Bearer ");
        req.push_str(t);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
        deadline,
    };
    conn.stream
        .write_all(req.as_bytes())
        .context("sending the request")?;
    loop {
        let (status, reason, headers) = read_head(&mut conn)?;
        if (100..200).contains(&status) && status != 101 {
            continue; // interim answers precede the real one
        }
        let body = read_body(&mut conn, status, &headers)?;
        return Ok(HttpResponse {
            status,
            reason,
            headers,
            body,
        });
    }
}

type Head = (u16, String, Vec<(String, String)>);

fn read_head(conn: &mut Conn) -> anyhow::Result<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(conn.pending()) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let reason = resp.reason.unwrap_or("").to_owned();
                let hs = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_owned(),
                        )
                    })
                    .collect();
                conn.pos += n;
                return Ok((status, reason, hs));
            }
            Ok(httparse::Status::Partial) => {
                if conn.pending().len() > MAX_HEAD_BYTES {
                    bail!("the answer's head is over {} KiB", MAX_HEAD_BYTES >> 10);
                }
                if conn.fill()? == 0 {
                    bail!(if conn.pending().is_empty() {
                        "the server closed the connection without answering".to_owned()
                    } else {
                        "the answer ended inside its head".to_owned()
                    });
                }
            }
            Err(e) => bail!("malformed answer from the server ({e})"),
        }
    }
}

fn read_body(
    conn: &mut Conn,
    status: u16,
    headers: &[(String, String)],
) -> anyhow::Result<Vec<u8>> {
    if status == 204 || status == 304 {
        return Ok(Vec::new());
    }
    let header = |n: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding")
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let line = conn.line(4096)?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| anyhow!("malformed chunk size `{}`", size_text.escape_debug()))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !conn.line(8192)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            conn.take(size, &mut body)?;
            if !conn.line(2)?.is_empty() {
                bail!("malformed chunked answer: no line end after a chunk");
            }
        }
    }
    let lengths: Vec<&str> = header("content-length").collect();
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            bail!("the answer has conflicting Content-Length headers");
        }
        let n: usize = first
            .parse()
            .map_err(|_| anyhow!("malformed Content-Length `{}`", first.escape_debug()))?;
        if n > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        conn.take(n, &mut body)?;
        return Ok(body);
    }
    // Framed by the end of the connection.
    loop {
        body.extend_from_slice(conn.pending());
        conn.pos = conn.buf.len();
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        if conn.fill()? == 0 {
            return Ok(body);
        }
    }
}

/// `GET` expecting a 2xx JSON answer.
///
/// Errors: as [`get`]; a status other than 2xx (with the server's `error` message); a body
/// that is not JSON.
pub fn get_json(
    base_url: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let r = get(base_url, path_and_query, token)?;
    let url = format!("{}{}", base_url.trim_end_matches('/'), path_and_query);
    if !(200..300).contains(&r.status) {
        let msg = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                    .trim()
                    .to_owned()
            });
        let hint = match (r.status, r.header("retry-after")) {
            (401, _) if token.is_none() => " (give --token or set APISCOPE_TOKEN)".to_owned(),
            (401, _) => " (check --token or APISCOPE_TOKEN)".to_owned(),
            (429, Some(secs)) => format!(" (retry after {secs} s)"),
            _ => String::new(),
        };
        bail!("{url}: {} {}: {msg}{hint}", r.status, r.reason);
    }
    serde_json::from_slice(&r.body).with_context(|| format!("{url}: the answer is not JSON"))
}

/// The token for `--server`: the `--token` flag, else a non-empty `APISCOPE_TOKEN`.
pub fn token_from(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("APISCOPE_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// Checks a `--server` URL without connecting (for a usage error up front).
pub fn check_base_url(url: &str) -> anyhow::Result<()> {
    parse_base(url).map(|_| ())
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every item of a paged list route (`/api/v1/endpoints`, `/api/v1/findings`): follows
/// `next_offset` with pages of the largest size the server allows, collecting `key`.
///
/// Errors: as [`get_json`]; an answer without the `key` array.
pub fn fetch_all(
    base_url: &str,
    path: &str,
    key: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut query = String::new();
    for (k, v) in params {
        query.push('&');
        query.push_str(k);
        query.push('=');
        query.push_str(&query_escape(v));
    }
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let pq = format!("{path}?limit=1000&offset={offset}{query}");
        let page = get_json(base_url, &pq, token)?;
        let Some(items) = page.get(key).and_then(Value::as_array) else {
            bail!("{base_url}{path}: the answer has no `{key}` list");
        };
        out.extend(items.iter().cloned());
        match page["next_offset"].as_u64() {
            Some(next) if next > offset => offset = next,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server: reads the request head, answers `reply`, closes; returns the URL
    /// and a handle giving back the request it read.
    fn canned(reply: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            let _ = s.write_all(&reply);
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, h)
    }

    #[test]
    fn parses_base_urls() {
        let b = parse_base("http://127.0.0.1:9770").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.prefix.as_str()),
            ("127.0.0.1", 9770, "")
        );
        let b = parse_base("http://[::1]:9770/sensor/").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.prefix.as_str()),
            ("[::1]", 9770, "/sensor")
        );
        let b = parse_base("localhost").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("localhost", 80));
        let e = parse_base("https://sensor:9770").unwrap_err().to_string();
        assert!(e.contains("TLS") && e.contains("SSH tunnel"), "{e}");
        for bad in [
            "ftp://x",
            "http://",
            "http://h:99999",
            "http://h:0",
            "http://u:p@h:1",
            "http://h:1/?q",
            "http://[::1",
            "http://h h:1",
        ] {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_content_length_answers() {
        let (url, h) = canned(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": [1]}\nTRAILING"
                .to_vec(),
        );
        let v = get_json(&url, "/api/v1/endpoints?host=a", Some("tok")).unwrap();
        assert_eq!(v["a"][0], 1);
        let req = h.join().unwrap();
        assert!(
            req.starts_with("GET /api/v1/endpoints?host=a HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nAuthorization: Bearer tok\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    }

    #[test]
    fn reads_chunked_answers() {
        let (url, h) = canned(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              4;ext=1\r\n{\"k\"\r\n6\r\n: true\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n"
                .to_vec(),
        );
        let v = get_json(&url, "/x", None).unwrap();
        assert_eq!(v["k"], true);
        h.join().unwrap();
        let (url, h) =
            canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec());
        let e = get(&url, "/x", None).unwrap_err().to_string();
        assert!(e.contains("chunk size"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn reads_close_framed_answers_and_reports_errors() {
        let (url, h) = canned(b"HTTP/1.0 200 OK\r\n\r\n[1,2,3]".to_vec());
        assert_eq!(
            get_json(&url, "/x", None).unwrap(),
            serde_json::json!([1, 2, 3])
        );
        h.join().unwrap();
        let (url, h) = canned(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 21\r\n\r\n{\"error\":\"no token\"}\n"
                .to_vec(),
        );
        let e = format!("{:#}", get_json(&url, "/x", None).unwrap_err());
        assert!(
            e.contains("401") && e.contains("no token") && e.contains("APISCOPE_TOKEN"),
            "{e}"
        );
        h.join().unwrap();
        let (url, h) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec());
        let e = get(&url, "/x", None).unwrap_err().to_string();
        assert!(e.contains("early"), "{e}");
        h.join().unwrap();
        let (url, h) = canned(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_RESPONSE_BYTES + 1
            )
            .into_bytes(),
        );
        let e = get(&url, "/x", None).unwrap_err().to_string();
        assert!(e.contains("MiB"), "{e}");
        h.join().unwrap();
        let (url, h) = canned(b"not http at all\r\n\r\n".to_vec());
        assert!(get(&url, "/x", None).is_err());
        h.join().unwrap();
        assert!(get("http://127.0.0.1:1", "/x", None).is_err());
        assert!(get("http://127.0.0.1:1", "no-slash", None).is_err());
        assert!(get("http://127.0.0.1:1", "/x", Some("a\r\nb")).is_err());
    }

    #[test]
    fn escapes_query_values() {
        assert_eq!(query_escape("a.example"), "a.example");
        assert_eq!(
            query_escape("/users/{id} &x=é"),
            "%2Fusers%2F%7Bid%7D%20%26x%3D%C3%A9"
        );
    }
}
