//! The query API: the live sensor's inventory, findings, OpenAPI export, metrics and health
//! over HTTP/1.1 (`docs/api.md`).
//!
//! [`serve`] binds the socket on the caller's thread (so "address in use" is an error there),
//! then runs a small single-threaded tokio runtime on a thread of its own: one accept loop
//! and one task per connection, driven by hyper's HTTP/1 server. Answers are rendered from
//! the latest [`View`] (an `Arc` clone of the sink thread's snapshot) on a blocking pool of at
//! most two threads, so a large answer never holds up the accept loop or the timers, and the
//! API never touches the pipeline's own state.
//!
//! Every resource an API client can spend is bounded, and each refusal is counted in
//! [`ApiStats`]:
//!
//! | bound | answer |
//! |---|---|
//! | request head over `max_request_bytes` (or over 100 header fields) | 431 (hyper), connection closed |
//! | request body over `max_request_bytes` | 413, connection closed |
//! | more than `max_requests_per_sec` (a global token bucket, bursts of one second) | 429 with `Retry-After` |
//! | more than `max_connections` open connections | 503, connection closed at once |
//! | head not complete within [`ApiTimeouts::header_read`] (also an idle keep-alive) | connection closed |
//! | body not read within [`ApiTimeouts::body_read`] | 408, connection closed |
//! | connection older than [`ApiTimeouts::connection_lifetime`] | graceful close after the answer in progress |
//!
//! Authentication: when a token is configured, every route but `/healthz` needs
//! `Authorization: Bearer <token>` (compared in constant time); a non-loopback `listen` address
//! without a token is refused ([`requires_auth`]).
//!
//! ```ignore
//! // (a binary crate: not a doctest)
//! let view = SharedView::default();
//! let server = serve(ApiConfig::default(), view.clone())?;
//! println!("query API on http://{}", server.local_addr());
//! // ... the sink thread calls view.set(..) once a second ...
//! server.shutdown();
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::inventory_cmd::{openapi_docs, parse_time};
use crate::view::{Metric, MetricKind, SharedView, View};

/// Default page size of the list routes.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page the list routes return (a larger `limit` is lowered to this).
pub const MAX_LIMIT: usize = 1000;

/// hyper's smallest read buffer; `max_buf_size` below it panics.
const MIN_BUF_SIZE: usize = 8192;

/// What the query API listens on and how much it lets a client spend.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on (`127.0.0.1:9770`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Bearer token. Required when `listen` is not a loopback address; when set, enforced on
    /// every route but `/healthz` whatever the address.
    pub token: Option<String>,
    /// Largest request head (request line and headers) and largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Global request rate (a token bucket holding one second's worth); 0 = unlimited.
    pub max_requests_per_sec: u32,
    /// Open connections at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9770)),
            token: None,
            max_request_bytes: 16 * 1024,
            max_requests_per_sec: 200,
            max_connections: 64,
        }
    }
}

/// The query API's timeouts ([`serve`] uses the defaults).
#[derive(Debug, Clone, Copy)]
pub struct ApiTimeouts {
    /// A request head must arrive within this (slowloris); also how long an idle
    /// keep-alive connection stays open.
    pub header_read: Duration,
    /// A request body must arrive within this.
    pub body_read: Duration,
    /// A connection is closed (gracefully, after the answer in progress) at this age.
    pub connection_lifetime: Duration,
    /// How long [`ApiServer::shutdown`] lets answers in progress finish.
    pub shutdown_grace: Duration,
}

impl Default for ApiTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Counters of the query API since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Requests whose head was read (answered or refused).
    pub requests: u64,
    /// 401: missing or wrong bearer token.
    pub rejected_auth: u64,
    /// 429: over `max_requests_per_sec`.
    pub rejected_rate: u64,
    /// 413 and 431: request body or head over `max_request_bytes`.
    pub rejected_size: u64,
    /// 503: over `max_connections`.
    pub rejected_connections: u64,
    /// Connections closed for a slow request head or body, or that did not finish in time.
    pub timeouts: u64,
    /// Malformed requests, failed accepts, internal errors (500).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    rejected_auth: AtomicU64,
    rejected_rate: AtomicU64,
    rejected_size: AtomicU64,
    rejected_connections: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ApiStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ApiStats {
            requests: g(&self.requests),
            rejected_auth: g(&self.rejected_auth),
            rejected_rate: g(&self.rejected_rate),
            rejected_size: g(&self.rejected_size),
            rejected_connections: g(&self.rejected_connections),
            timeouts: g(&self.timeouts),
            errors: g(&self.errors),
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` held.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            state: Mutex::new((f64::from(rate), Instant::now())),
        }
    }

    /// Takes a token, or says in how many whole seconds one will be there.
    fn take(&self) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.rate);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - s.0) / self.rate).ceil() as u64).max(1))
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    view: SharedView,
    token: Option<String>,
    max_request_bytes: usize,
    max_connections: usize,
    timeouts: ApiTimeouts,
    bucket: Bucket,
    counters: Counters,
    active: AtomicUsize,
}

/// A running query API; [`ApiServer::shutdown`] (or dropping it) stops it.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// The address actually bound (the port, when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters since the start.
    pub fn stats(&self) -> ApiStats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, lets answers in progress finish for at most
    /// [`ApiTimeouts::shutdown_grace`], closes every connection and joins the API thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Whether an API on `listen` must require a bearer token: any address but a loopback one
/// (`127.0.0.0/8`, `::1`, and `::ffff:127.x.y.z`); the unspecified `0.0.0.0` and `::` listen
/// everywhere, so they require one too.
pub fn requires_auth(listen: &SocketAddr) -> bool {
    !listen.ip().to_canonical().is_loopback()
}

/// Starts the query API with the default [`ApiTimeouts`]; see [`serve_with`].
pub fn serve(cfg: ApiConfig, view: SharedView) -> anyhow::Result<ApiServer> {
    serve_with(cfg, ApiTimeouts::default(), view)
}

/// Starts the query API on `cfg.listen` and returns once the socket is bound.
///
/// Errors: a non-loopback address without a token, a token with characters a header cannot
/// carry, `max_connections` of 0, the address cannot be bound (in use, not local), the
/// runtime or its thread cannot be created.
pub fn serve_with(
    cfg: ApiConfig,
    timeouts: ApiTimeouts,
    view: SharedView,
) -> anyhow::Result<ApiServer> {
    let token = cfg.token.filter(|t| !t.is_empty());
    if requires_auth(&cfg.listen) && token.is_none() {
        bail!(
            "the query API would listen on {}, which is not a loopback address, without a token: \
             configure a token or listen on 127.0.0.1",
            cfg.listen
        );
    }
    if let Some(t) = &token {
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the query API token must be printable ASCII without spaces");
        }
    }
    if cfg.max_connections == 0 {
        bail!("the query API's max_connections must be at least 1");
    }
    let listener = StdTcpListener::bind(cfg.listen)
        .with_context(|| format!("binding the query API to {}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .context("setting the query API socket non-blocking")?;
    let local_addr = listener
        .local_addr()
        .context("reading the query API's address")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(2)
        .thread_name("apiscope-api")
        .build()
        .context("starting the query API runtime")?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener).context("registering the query API socket")?
    };
    let shared = Arc::new(Shared {
        view,
        token,
        max_request_bytes: cfg.max_request_bytes.max(1),
        max_connections: cfg.max_connections,
        timeouts,
        bucket: Bucket::new(cfg.max_requests_per_sec),
        counters: Counters::default(),
        active: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let loop_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("apiscope-api".into())
        .spawn(move || {
            rt.block_on(accept_loop(listener, loop_shared, stop_rx));
            rt.shutdown_timeout(Duration::from_millis(200));
        })
        .context("starting the query API thread")?;
    Ok(ApiServer {
        local_addr,
        shared,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Decrements the open-connection count when a connection task ends, however it ends.
struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.timeouts.header_read)
        .max_header_size(shared.max_request_bytes)
        .max_buf_size(shared.max_request_bytes.max(MIN_BUF_SIZE))
        .half_close(false);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, _peer)) => {
                    if shared.active.load(Ordering::Acquire) >= shared.max_connections {
                        Counters::bump(&shared.counters.rejected_connections);
                        // Best effort: the client learns why; the socket closes on drop.
                        let _ = stream.try_write(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                              connection: close\r\ncontent-length: 33\r\n\r\n\
                              {\"error\":\"too many connections\"}\n",
                        );
                        continue;
                    }
                    shared.active.fetch_add(1, Ordering::AcqRel);
                    let _ = stream.set_nodelay(true);
                    spawn_conn(&http, stream, ConnGuard(shared.clone()), stop.clone());
                }
                Err(_) => {
                    // Out of descriptors and the like: do not spin.
                    Counters::bump(&shared.counters.errors);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    // Bounded wait for the connections (each one closes itself on the stop signal).
    let deadline = Instant::now() + shared.timeouts.shutdown_grace + Duration::from_millis(100);
    while shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves one connection on its own task until it ends, grows too old, or the server stops
/// (then: a graceful close, bounded by [`ApiTimeouts::shutdown_grace`]).
fn spawn_conn(
    http: &hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    guard: ConnGuard,
    mut stop: watch::Receiver<bool>,
) {
    let shared = guard.0.clone();
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| handle(svc_shared.clone(), req));
    let conn = http.serve_connection(TokioIo::new(stream), svc);
    tokio::spawn(async move {
        let t = shared.timeouts;
        tokio::pin!(conn);
        let first = if *stop.borrow() {
            None
        } else {
            tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = tokio::time::sleep(t.connection_lifetime) => None,
                _ = stop.changed() => None,
            }
        };
        let result = match first {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(t.shutdown_grace, conn.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => {
                        Counters::bump(&shared.counters.timeouts);
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            let c = &shared.counters;
            if e.is_parse_too_large() {
                Counters::bump(&c.requests);
                Counters::bump(&c.rejected_size);
            } else if e.is_timeout() {
                Counters::bump(&c.timeouts);
            } else if e.is_parse() {
                Counters::bump(&c.requests);
                Counters::bump(&c.errors);
            } else if !(e.is_incomplete_message() || e.is_closed() || e.is_canceled()) {
                Counters::bump(&c.errors);
            }
        }
        drop(guard);
    });
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_bytes(status: StatusCode, mut body: Vec<u8>) -> Resp {
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    let body = serde_json::to_vec(&json!({ "error": msg.into() })).unwrap_or_default();
    json_bytes(status, body)
}

fn with_close(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let c = &shared.counters;
    Counters::bump(&c.requests);
    if let Err(retry_after) = shared.bucket.take() {
        Counters::bump(&c.rejected_rate);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests: slow down",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return Ok(r);
    }
    let (parts, body) = req.into_parts();
    let max = shared.max_request_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        Counters::bump(&c.rejected_size);
        return Ok(with_close(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes"),
        )));
    }
    if !body.is_end_stream() {
        // No route takes a body; one within bounds is read and dropped so the connection
        // can be reused.
        match tokio::time::timeout(shared.timeouts.body_read, Limited::new(body, max).collect())
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Counters::bump(&c.rejected_size);
                return Ok(with_close(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {max} bytes"),
                )));
            }
            Ok(Err(_)) => {
                Counters::bump(&c.errors);
                return Ok(with_close(error(
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                )));
            }
            Err(_) => {
                Counters::bump(&c.timeouts);
                return Ok(with_close(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                )));
            }
        }
    }
    let path = parts.uri.path().to_owned();
    if path != "/healthz" {
        if let Some(token) = &shared.token {
            if !authorized(&parts.headers, token) {
                Counters::bump(&c.rejected_auth);
                let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"apiscope\""),
                );
                return Ok(r);
            }
        }
    }
    let query = parts.uri.query().map(str::to_owned);
    let method = parts.method;
    let view = shared.view.get();
    let route_shared = shared.clone();
    let answer = tokio::task::spawn_blocking(move || {
        route(&route_shared, &view, &method, &path, query.as_deref())
    })
    .await;
    Ok(answer.unwrap_or_else(|_| {
        Counters::bump(&c.errors);
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }))
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let v = v.as_bytes();
    let Some(sp) = v.iter().position(|&b| b == b' ') else {
        return false;
    };
    if !v[..sp].eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let given = v[sp..].trim_ascii();
    ct_eq(given, token.as_bytes())
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// A refusal: status and message, rendered as `{"error": "..."}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl From<ApiError> for Resp {
    fn from(e: ApiError) -> Self {
        error(e.0, e.1)
    }
}

type ApiResult = Result<Resp, ApiError>;

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Routes a request that passed the limits and authentication.
fn route(shared: &Shared, view: &View, method: &Method, path: &str, query: Option<&str>) -> Resp {
    let id = path
        .strip_prefix("/api/v1/endpoints/")
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let known = matches!(
        path,
        "/healthz" | "/metrics" | "/api/v1/endpoints" | "/api/v1/findings" | "/api/v1/openapi.json"
    ) || id.is_some();
    if !known {
        return error(StatusCode::NOT_FOUND, format!("no route {path}"));
    }
    if *method != Method::GET && *method != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {path}: use GET"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let r = match (path, id) {
        ("/healthz", _) => Ok(healthz(view)),
        ("/metrics", _) => Ok(metrics(shared, view)),
        ("/api/v1/endpoints", _) => endpoints(view, query),
        ("/api/v1/findings", _) => findings(view, query),
        ("/api/v1/openapi.json", _) => openapi(view, query),
        (_, Some(id)) => endpoint(view, id, query),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no route {path}"))),
    };
    r.unwrap_or_else(Resp::from)
}

fn healthz(view: &View) -> Resp {
    let body = match &view.capture_time {
        Some(t) => format!("ok capture_time={t}\n"),
        None => "ok capture_time=none\n".to_owned(),
    };
    respond(StatusCode::OK, "text/plain; charset=utf-8", body)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); `None` when a `%` is
/// not followed by two hex digits or the result is not UTF-8.
fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Query parameters, each name among `allowed` (or `pretty`); a repeated name keeps the
/// last value.
fn parse_query(q: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (pct_decode(k), pct_decode(v)) else {
            return Err(bad_request("malformed query string"));
        };
        if k != "pretty" && !allowed.contains(&k.as_str()) {
            let mut msg = format!("unknown parameter `{}`", k.escape_debug());
            if allowed.is_empty() {
                msg.push_str(": this route takes none");
            } else {
                let _ = write!(msg, ": this route takes {}", allowed.join(", "));
            }
            return Err(bad_request(msg));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn pretty(q: &HashMap<String, String>) -> bool {
    q.get("pretty")
        .is_some_and(|v| matches!(v.as_str(), "" | "1" | "true" | "yes"))
}

fn since_param(q: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    q.get("since")
        .map(|s| {
            parse_time(s).map(|t| t.as_nanos()).ok_or_else(|| {
                bad_request(format!(
                    "since: `{}` is not an RFC 3339 time or Unix seconds",
                    s.escape_debug()
                ))
            })
        })
        .transpose()
}

fn usize_param(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            bad_request(format!(
                "{name}: `{}` is not a non-negative integer",
                v.escape_debug()
            ))
        }),
    }
}

/// A capture time field as nanoseconds (unparseable: 0, so `since` leaves it out).
fn time_ns(v: &Value) -> u64 {
    v.as_str().and_then(parse_time).map_or(0, |t| t.as_nanos())
}

fn to_json(v: &impl serde::Serialize, pretty: bool) -> Vec<u8> {
    let r = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    // Serialising JSON values into memory cannot fail.
    r.unwrap_or_default()
}

/// One page of a filtered list: `{"<key>": [...], "total", "offset", "limit",
/// "next_offset", "capture_time"}`.
fn page(key: &str, items: &[&Value], q: &HashMap<String, String>, view: &View) -> ApiResult {
    let limit = usize_param(q, "limit", DEFAULT_LIMIT)?.min(MAX_LIMIT);
    let offset = usize_param(q, "offset", 0)?;
    let total = items.len();
    let start = offset.min(total);
    let end = start.saturating_add(limit).min(total);
    let next = (end < total).then_some(end);
    #[derive(serde::Serialize)]
    struct Page<'a> {
        total: usize,
        offset: usize,
        limit: usize,
        next_offset: Option<usize>,
        capture_time: &'a Option<String>,
    }
    let mut map = serde_json::Map::new();
    map.insert(
        key.to_owned(),
        Value::Array(items[start..end].iter().map(|v| (*v).clone()).collect()),
    );
    let meta = Page {
        total,
        offset,
        limit,
        next_offset: next,
        capture_time: &view.capture_time,
    };
    if let Ok(Value::Object(m)) = serde_json::to_value(&meta) {
        map.extend(m);
    }
    Ok(json_bytes(StatusCode::OK, to_json(&map, pretty(q))))
}

fn endpoints(view: &View, query: Option<&str>) -> ApiResult {
    let q = parse_query(
        query,
        &["host", "method", "path_prefix", "since", "limit", "offset"],
    )?;
    let since = since_param(&q)?;
    let host = q.get("host");
    let method = q.get("method");
    let prefix = q.get("path_prefix");
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let items: Vec<&Value> = view
        .endpoints
        .iter()
        .filter(|e| host.is_none_or(|h| s(&e["host"]).eq_ignore_ascii_case(h)))
        .filter(|e| method.is_none_or(|m| s(&e["method"]).eq_ignore_ascii_case(m)))
        .filter(|e| prefix.is_none_or(|p| e["path"].as_str().unwrap_or("").starts_with(p.as_str())))
        .filter(|e| since.is_none_or(|t| time_ns(&e["first_seen"]) >= t))
        .collect();
    page("endpoints", &items, &q, view)
}

fn endpoint(view: &View, id: &str, query: Option<&str>) -> ApiResult {
    let q = parse_query(query, &[])?;
    let id = pct_decode(id).unwrap_or_default();
    match view
        .endpoints
        .iter()
        .find(|e| e["id"].as_str() == Some(id.as_str()))
    {
        Some(e) => Ok(json_bytes(StatusCode::OK, to_json(e, pretty(&q)))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no endpoint with id `{}`", id.escape_debug()),
        )),
    }
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

fn severity_rank(s: &str) -> Option<usize> {
    SEVERITIES.iter().position(|x| *x == s)
}

fn findings(view: &View, query: Option<&str>) -> ApiResult {
    let q = parse_query(
        query,
        &[
            "kind",
            "severity",
            "min_severity",
            "host",
            "since",
            "limit",
            "offset",
        ],
    )?;
    let since = since_param(&q)?;
    let sev = |name: &str| -> Result<Option<usize>, ApiError> {
        q.get(name)
            .map(|s| {
                severity_rank(s).ok_or_else(|| {
                    bad_request(format!(
                        "{name}: `{}` is not one of {}",
                        s.escape_debug(),
                        SEVERITIES.join(", ")
                    ))
                })
            })
            .transpose()
    };
    let severity = sev("severity")?;
    let min_severity = sev("min_severity")?;
    let kind = q.get("kind");
    let host = q.get("host");
    let rank = |f: &Value| f["severity"].as_str().and_then(severity_rank);
    let items: Vec<&Value> = view
        .findings
        .iter()
        .filter(|f| kind.is_none_or(|k| f["kind"].as_str() == Some(k.as_str())))
        .filter(|f| severity.is_none_or(|s| rank(f) == Some(s)))
        .filter(|f| min_severity.is_none_or(|s| rank(f).is_some_and(|r| r >= s)))
        .filter(|f| {
            host.is_none_or(|h| {
                f["endpoint"]["host"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(h))
            })
        })
        .filter(|f| since.is_none_or(|t| time_ns(&f["last_seen"]) >= t))
        .collect();
    page("findings", &items, &q, view)
}

fn openapi(view: &View, query: Option<&str>) -> ApiResult {
    let q = parse_query(query, &["host"])?;
    let pretty = pretty(&q);
    match q.get("host") {
        Some(h) => {
            let h = h.to_ascii_lowercase();
            let eps: Vec<Value> = view
                .endpoints
                .iter()
                .filter(|e| {
                    e["host"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(&h))
                })
                .cloned()
                .collect();
            match openapi_docs(&eps).into_values().next() {
                Some(doc) => Ok(json_bytes(StatusCode::OK, to_json(&doc, pretty))),
                None => Err(ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no endpoints for host `{}`", h.escape_debug()),
                )),
            }
        }
        None => {
            let mut docs = openapi_docs(&view.endpoints);
            let v = match docs.len() {
                1 => docs.pop_first().map(|(_, d)| d).unwrap_or_default(),
                _ => Value::Object(docs.into_iter().collect()),
            };
            Ok(json_bytes(StatusCode::OK, to_json(&v, pretty)))
        }
    }
}

fn metrics(shared: &Shared, view: &View) -> Resp {
    let s = shared.counters.snapshot();
    let api =
        |name: &str, help: &'static str, labels: Vec<(&'static str, String)>, v: u64| Metric {
            name: name.to_owned(),
            help,
            kind: MetricKind::Counter,
            labels,
            value: v as f64,
        };
    const REJECTED: &str = "Query API requests or connections refused, by reason.";
    let reason = |r: &str| vec![("reason", r.to_owned())];
    let mut own = vec![
        api(
            "apiscope_api_requests_total",
            "Query API requests read (answered or refused).",
            vec![],
            s.requests,
        ),
        api(
            "apiscope_api_rejected_total",
            REJECTED,
            reason("auth"),
            s.rejected_auth,
        ),
        api(
            "apiscope_api_rejected_total",
            REJECTED,
            reason("rate"),
            s.rejected_rate,
        ),
        api(
            "apiscope_api_rejected_total",
            REJECTED,
            reason("size"),
            s.rejected_size,
        ),
        api(
            "apiscope_api_rejected_total",
            REJECTED,
            reason("connections"),
            s.rejected_connections,
        ),
        api(
            "apiscope_api_timeouts_total",
            "Query API connections closed for slow requests.",
            vec![],
            s.timeouts,
        ),
        api(
            "apiscope_api_errors_total",
            "Query API malformed requests and internal errors.",
            vec![],
            s.errors,
        ),
    ];
    own.push(Metric {
        name: "apiscope_api_connections".into(),
        help: "Query API connections open.",
        kind: MetricKind::Gauge,
        labels: vec![],
        value: shared.active.load(Ordering::Relaxed) as f64,
    });
    let all: Vec<&Metric> = view
        .metrics
        .iter()
        .filter(|m| !m.name.starts_with("apiscope_api_"))
        .chain(own.iter())
        .collect();
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        render_metrics(&all),
    )
}

/// A metric or label name as Prometheus allows it (`[a-zA-Z_:][a-zA-Z0-9_:]*`, no colon in
/// label names): other characters become `_`.
fn prom_name(s: &str, colon_ok: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon_ok && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        String::from(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        format!("{v}")
    }
}

/// Prometheus text exposition format 0.0.4: samples grouped by name in order of first
/// appearance, each group opened by `# HELP` and `# TYPE`; label values escape `\`, `"` and
/// newlines, help texts `\` and newlines.
pub fn render_metrics(metrics: &[&Metric]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<&Metric>> = HashMap::new();
    for m in metrics {
        let name = prom_name(&m.name, true);
        groups
            .entry(name.clone())
            .or_insert_with(|| {
                order.push(name);
                Vec::new()
            })
            .push(m);
    }
    let mut out = String::new();
    for name in order {
        let Some(group) = groups.get(&name) else {
            continue;
        };
        let first = group[0];
        let help = first.help.replace('\\', "\\\\").replace('\n', "\\n");
        let kind = match first.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for m in group {
            out.push_str(&name);
            if !m.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in m.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&prom_name(k, false));
                    out.push_str("=\"");
                    for c in v.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '"' => out.push_str("\\\""),
                            '\n' => out.push_str("\\n"),
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&prom_value(m.value));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::client;

    fn endpoint_json(host: &str, method: &str, path: &str, first: &str, last: &str) -> Value {
        let id = format!("{:016x}", fnv(&format!("{host} {method} {path}")));
        json!({
            "id": id, "host": host, "method": method, "path": path, "calls": 3,
            "first_seen": first, "last_seen": last,
            "statuses": {"counts": {"200": 3}, "other": 0}, "auth": ["bearer_jwt"],
            "sensitive": [], "params": {"path": [], "query": [], "header": [], "form": {}},
            "in_spec": null, "deprecated": false,
        })
    }

    fn fnv(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn finding(kind: &str, sev: &str, host: &str, last: &str) -> Value {
        json!({
            "id": format!("{:016x}", fnv(&format!("{kind}{host}{last}"))), "kind": kind,
            "severity": sev, "owasp": "API2:2023",
            "endpoint": {"host": host, "method": "POST", "path": "/login"},
            "client": "10.0.0.9", "first_seen": "2024-01-05T10:00:00.000000Z",
            "last_seen": last, "count": 7, "summary": format!("{kind} on {host}"),
            "evidence": {},
        })
    }

    fn sample_view() -> View {
        let t = |m: u32| format!("2024-01-05T10:{m:02}:00.000000Z");
        View {
            endpoints: vec![
                endpoint_json("a.example", "GET", "/users", &t(1), &t(9)),
                endpoint_json("a.example", "GET", "/users/{id}", &t(2), &t(9)),
                endpoint_json("a.example", "POST", "/users", &t(3), &t(9)),
                endpoint_json("b.example", "GET", "/health", &t(4), &t(9)),
                endpoint_json("b.example", "DELETE", "/items/{id}", &t(5), &t(9)),
            ],
            hosts: vec![json!({"host": "a.example"}), json!({"host": "b.example"})],
            findings: vec![
                finding("credential_stuffing", "high", "a.example", &t(10)),
                finding("shadow_api", "medium", "b.example", &t(20)),
                finding("unauthenticated_access", "low", "b.example", &t(30)),
            ],
            metrics: vec![
                Metric {
                    name: "apiscope_packets_total".into(),
                    help: "Packets read.",
                    kind: MetricKind::Counter,
                    labels: vec![("interface", "eth0".into())],
                    value: 1234.0,
                },
                Metric {
                    name: "apiscope_flows".into(),
                    help: "Open flows.\nNow.",
                    kind: MetricKind::Gauge,
                    labels: vec![],
                    value: 7.5,
                },
                Metric {
                    name: "apiscope_packets_total".into(),
                    help: "Packets read.",
                    kind: MetricKind::Counter,
                    labels: vec![("interface", "we\"ird\\if\nname".into())],
                    value: 1.0,
                },
            ],
            capture_time: Some("2024-01-05T10:30:00.000000Z".into()),
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn start_with(cfg: ApiConfig, timeouts: ApiTimeouts) -> (ApiServer, String) {
        let view = SharedView::default();
        view.set(sample_view());
        let server = serve_with(cfg, timeouts, view).expect("server starts");
        let base = format!("http://{}", server.local_addr());
        (server, base)
    }

    fn start() -> (ApiServer, String) {
        start_with(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            ApiTimeouts::default(),
        )
    }

    fn get(base: &str, pq: &str) -> client::HttpResponse {
        client::get(base, pq, None).expect("request")
    }

    fn get_json(base: &str, pq: &str) -> Value {
        client::get_json(base, pq, None).expect("json")
    }

    /// Sends raw bytes, then reads the answer until the server closes or `wait` passes.
    fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn paths(v: &Value, key: &str) -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["method"].as_str().unwrap_or(""),
                    e["path"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn endpoints_filters_and_paging() {
        let (server, base) = start();
        let all = get_json(&base, "/api/v1/endpoints");
        assert_eq!(all["total"], 5);
        assert_eq!(all["endpoints"].as_array().unwrap().len(), 5);
        assert_eq!(all["next_offset"], Value::Null);
        assert_eq!(all["capture_time"], "2024-01-05T10:30:00.000000Z");

        let a = get_json(&base, "/api/v1/endpoints?host=A.example");
        assert_eq!(
            paths(&a, "endpoints"),
            ["GET /users", "GET /users/{id}", "POST /users"]
        );
        let m = get_json(&base, "/api/v1/endpoints?method=get&host=a.example");
        assert_eq!(m["total"], 2);
        let p = get_json(&base, "/api/v1/endpoints?path_prefix=%2Fusers%2F");
        assert_eq!(paths(&p, "endpoints"), ["GET /users/{id}"]);
        let s = get_json(&base, "/api/v1/endpoints?since=2024-01-05T10:03:00Z");
        assert_eq!(s["total"], 3);
        // Unix seconds for 2024-01-05T10:04:00Z.
        let s = get_json(&base, "/api/v1/endpoints?since=1704449040");
        assert_eq!(
            paths(&s, "endpoints"),
            ["GET /health", "DELETE /items/{id}"]
        );

        let p1 = get_json(&base, "/api/v1/endpoints?limit=2");
        assert_eq!(
            (p1["limit"].as_u64(), p1["next_offset"].as_u64()),
            (Some(2), Some(2))
        );
        let p2 = get_json(&base, "/api/v1/endpoints?limit=2&offset=2");
        let p3 = get_json(&base, "/api/v1/endpoints?limit=2&offset=4");
        assert_eq!(p3["next_offset"], Value::Null);
        let mut joined = paths(&p1, "endpoints");
        joined.extend(paths(&p2, "endpoints"));
        joined.extend(paths(&p3, "endpoints"));
        assert_eq!(joined, paths(&all, "endpoints"));
        let beyond = get_json(&base, "/api/v1/endpoints?offset=99");
        assert_eq!(
            (
                beyond["total"].as_u64(),
                beyond["endpoints"].as_array().map(Vec::len)
            ),
            (Some(5), Some(0))
        );
        let clamped = get_json(&base, "/api/v1/endpoints?limit=999999");
        assert_eq!(clamped["limit"], MAX_LIMIT);

        for bad in [
            "/api/v1/endpoints?since=yesterday",
            "/api/v1/endpoints?limit=-1",
            "/api/v1/endpoints?offset=x",
            "/api/v1/endpoints?colour=red",
            "/api/v1/endpoints?host=%zz",
            "/api/v1/endpoints?host=%ff",
        ] {
            let r = get(&base, bad);
            assert_eq!(r.status, 400, "{bad}");
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["error"].is_string(), "{bad}");
        }
        let pretty = get(&base, "/api/v1/endpoints?limit=1&pretty");
        assert!(String::from_utf8_lossy(&pretty.body).contains("\n  \"endpoints\""));
        server.shutdown();
    }

    #[test]
    fn endpoint_by_id_and_not_found() {
        let (server, base) = start();
        let all = get_json(&base, "/api/v1/endpoints");
        let id = all["endpoints"][1]["id"].as_str().unwrap().to_owned();
        let one = get_json(&base, &format!("/api/v1/endpoints/{id}"));
        assert_eq!(one["path"], "/users/{id}");
        for missing in [
            "/api/v1/endpoints/0000000000000000",
            "/api/v1/endpoints/a/b",
            "/api/v1/endpoints/",
            "/api/v2/endpoints",
            "/",
            "/api/v1/endpoints.json",
        ] {
            let r = get(&base, missing);
            assert_eq!(r.status, 404, "{missing}");
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["error"].is_string(), "{missing}");
        }
        let err = client::get_json(&base, "/api/v1/endpoints/nope", None).unwrap_err();
        assert!(format!("{err:#}").contains("404"), "{err:#}");
        server.shutdown();
    }

    #[test]
    fn findings_filters() {
        let (server, base) = start();
        let all = get_json(&base, "/api/v1/findings");
        assert_eq!(all["total"], 3);
        let k = get_json(&base, "/api/v1/findings?kind=shadow_api");
        assert_eq!(k["total"], 1);
        assert_eq!(k["findings"][0]["kind"], "shadow_api");
        let s = get_json(&base, "/api/v1/findings?severity=high");
        assert_eq!(s["findings"][0]["kind"], "credential_stuffing");
        let ms = get_json(&base, "/api/v1/findings?min_severity=medium");
        assert_eq!(ms["total"], 2);
        let t = get_json(&base, "/api/v1/findings?since=2024-01-05T10:20:00Z");
        assert_eq!(t["total"], 2);
        let h = get_json(&base, "/api/v1/findings?host=b.example&limit=1");
        assert_eq!(
            (h["total"].as_u64(), h["next_offset"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(get(&base, "/api/v1/findings?severity=urgent").status, 400);
        server.shutdown();
    }

    #[test]
    fn openapi_documents() {
        let (server, base) = start();
        let by_host = get_json(&base, "/api/v1/openapi.json");
        let obj = by_host.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["a.example", "b.example"]);
        assert!(obj["a.example"]["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.1"));
        let a = get_json(&base, "/api/v1/openapi.json?host=a.example");
        assert!(a["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(a["paths"]["/users/{id}"]["get"].is_object(), "{a}");
        assert_eq!(
            get(&base, "/api/v1/openapi.json?host=c.example").status,
            404
        );
        server.shutdown();

        // One host: the document itself.
        let view = SharedView::default();
        let mut v = sample_view();
        v.endpoints.truncate(3);
        view.set(v);
        let server = serve(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            view,
        )
        .unwrap();
        let doc = get_json(
            &format!("http://{}", server.local_addr()),
            "/api/v1/openapi.json",
        );
        assert!(
            doc["openapi"].is_string() && doc["paths"].is_object(),
            "{doc}"
        );
    }

    /// Name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Parses the exposition text back: every sample's family has `# HELP` and `# TYPE`
    /// before it, names and labels are well formed, escapes round-trip.
    fn parse_prometheus(text: &str) -> Vec<Sample> {
        let mut typed: HashMap<String, String> = HashMap::new();
        let mut helped = std::collections::HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helped.insert(name.to_owned()), "two HELP for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                assert!(
                    typed.insert(name.into(), kind.into()).is_none(),
                    "two TYPE for {name}"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{name}"
            );
            assert!(
                typed.contains_key(name) && helped.contains(name),
                "{name} untyped"
            );
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                let mut cur_name = String::new();
                loop {
                    let (i, c) = chars.next().expect("unterminated labels");
                    if c == '}' {
                        rest = &r[i + 1..];
                        break;
                    }
                    if c == ',' {
                        continue;
                    }
                    if c != '=' {
                        cur_name.push(c);
                        continue;
                    }
                    assert_eq!(chars.next().map(|x| x.1), Some('"'));
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next().expect("unterminated value");
                        match c {
                            '"' => break,
                            '\\' => match chars.next().unwrap().1 {
                                'n' => val.push('\n'),
                                '\\' => val.push('\\'),
                                '"' => val.push('"'),
                                x => panic!("bad escape \\{x}"),
                            },
                            '\n' => panic!("raw newline"),
                            c => val.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut cur_name), val));
                }
            }
            let value: f64 = rest.trim_start_matches(' ').parse().expect("value");
            samples.push((name.to_owned(), labels, value));
        }
        samples
    }

    #[test]
    fn metrics_text_format() {
        let (server, base) = start();
        let r = get(&base, "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            text.contains("# HELP apiscope_flows Open flows.\\nNow.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE apiscope_packets_total counter\n"),
            "{text}"
        );
        let samples = parse_prometheus(&text);
        let find = |n: &str, l: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| {
                    s.0 == n
                        && s.1.len() == l.len()
                        && s.1.iter().zip(l).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
                })
                .map(|s| s.2)
        };
        assert_eq!(
            find("apiscope_packets_total", &[("interface", "eth0")]),
            Some(1234.0)
        );
        assert_eq!(
            find(
                "apiscope_packets_total",
                &[("interface", "we\"ird\\if\nname")]
            ),
            Some(1.0)
        );
        assert_eq!(find("apiscope_flows", &[]), Some(7.5));
        assert!(find("apiscope_api_requests_total", &[]).unwrap() >= 1.0);
        assert_eq!(
            find("apiscope_api_rejected_total", &[("reason", "rate")]),
            Some(0.0)
        );
        server.shutdown();

        let odd = Metric {
            name: "9bad name".into(),
            help: "back\\slash",
            kind: MetricKind::Gauge,
            labels: vec![("a-b", "x".into())],
            value: f64::INFINITY,
        };
        let text = render_metrics(&[&odd]);
        assert_eq!(
            text,
            "# HELP _9bad_name back\\\\slash\n# TYPE _9bad_name gauge\n_9bad_name{a_b=\"x\"} +Inf\n"
        );
        parse_prometheus(&text);
    }

    #[test]
    fn healthz_methods_and_head() {
        let (server, base) = start();
        let r = get(&base, "/healthz");
        assert_eq!(r.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "ok capture_time=2024-01-05T10:30:00.000000Z\n"
        );
        let addr = server.local_addr();
        let post = raw(
            addr,
            b"POST /api/v1/endpoints HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            Duration::from_secs(5),
        );
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(
            post.to_ascii_lowercase().contains("allow: get, head"),
            "{post}"
        );
        let del = raw(
            addr,
            b"DELETE /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(del.starts_with("HTTP/1.1 404"), "{del}");
        let head = raw(
            addr,
            b"HEAD /api/v1/findings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "a HEAD answer has no body: {head}"
        );
        // Keep-alive: two requests on one connection.
        let two = raw(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert_eq!(two.matches("HTTP/1.1 200").count(), 2, "{two}");
        server.shutdown();
    }

    #[test]
    fn auth_rule_follows_the_address() {
        for (a, need) in [
            ("127.0.0.1:9770", false),
            ("127.8.9.10:1", false),
            ("[::1]:9770", false),
            ("[::ffff:127.0.0.1]:9770", false),
            ("0.0.0.0:9770", true),
            ("[::]:9770", true),
            ("10.1.2.3:9770", true),
            ("[fe80::1]:9770", true),
            ("192.168.1.5:80", true),
        ] {
            assert_eq!(requires_auth(&a.parse().unwrap()), need, "{a}");
        }
        // Refused before anything is bound.
        let err = serve(
            ApiConfig {
                listen: "0.0.0.0:0".parse().unwrap(),
                token: Some(String::new()),
                ..ApiConfig::default()
            },
            SharedView::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a loopback address"), "{err}");
        let err = serve(
            ApiConfig {
                listen: loopback(),
                token: Some("with space".into()),
                ..ApiConfig::default()
            },
            SharedView::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("printable"), "{err}");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"abcd") && !ct_eq(b"", b"a"));
    }

    #[test]
    fn address_in_use_is_an_error() {
        let (server, _) = start();
        let err = serve(
            ApiConfig {
                listen: server.local_addr(),
                ..ApiConfig::default()
            },
            SharedView::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("binding the query API"),
            "{err:#}"
        );
        server.shutdown();
    }

    #[test]
    fn token_is_enforced_except_on_healthz() {
        let (server, base) = start_with(
            ApiConfig {
                listen: loopback(),
                token: Some("s3cret-token".into()),
                ..ApiConfig::default()
            },
            ApiTimeouts::default(),
        );
        for pq in [
            "/api/v1/endpoints",
            "/metrics",
            "/api/v1/openapi.json",
            "/nowhere",
        ] {
            let r = get(&base, pq);
            assert_eq!(r.status, 401, "{pq}");
            assert!(r
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
            let wrong = client::get(&base, pq, Some("s3cret-tokeN")).unwrap();
            assert_eq!(wrong.status, 401, "{pq}");
        }
        assert_eq!(get(&base, "/healthz").status, 200);
        let ok = client::get_json(&base, "/api/v1/endpoints", Some("s3cret-token")).unwrap();
        assert_eq!(ok["total"], 5);
        let err = client::get_json(&base, "/api/v1/endpoints", None).unwrap_err();
        assert!(format!("{err:#}").contains("401"), "{err:#}");
        // The scheme is case-insensitive.
        let lower = raw(
            server.local_addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: bearer s3cret-token\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(lower.starts_with("HTTP/1.1 200"), "{lower}");
        let basic = raw(
            server.local_addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic s3cret-token\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(basic.starts_with("HTTP/1.1 401"), "{basic}");
        assert!(server.stats().rejected_auth >= 9);
        server.shutdown();
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after() {
        let (server, base) = start_with(
            ApiConfig {
                listen: loopback(),
                max_requests_per_sec: 5,
                ..ApiConfig::default()
            },
            ApiTimeouts::default(),
        );
        let mut limited = 0;
        let mut answered = 0;
        let t0 = Instant::now();
        for _ in 0..20 {
            let r = get(&base, "/healthz");
            if r.status == 429 {
                limited += 1;
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert_eq!(retry, 1);
            } else {
                assert_eq!(r.status, 200);
                answered += 1;
            }
        }
        // A burst of 5, then 5 a second (however slow this machine is).
        let allowed = 5 + (t0.elapsed().as_secs_f64() * 5.0).ceil() as u64;
        assert!(
            limited >= 1 && answered <= allowed,
            "{answered} > {allowed}"
        );
        assert_eq!(server.stats().rejected_rate, limited);
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(get(&base, "/healthz").status, 200, "the bucket refills");
        server.shutdown();
    }

    #[test]
    fn oversized_requests_are_refused() {
        let (server, _) = start_with(
            ApiConfig {
                listen: loopback(),
                max_request_bytes: 1024,
                ..ApiConfig::default()
            },
            ApiTimeouts::default(),
        );
        let addr = server.local_addr();
        let big_header = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(4000)
        );
        let r = raw(addr, big_header.as_bytes(), Duration::from_secs(5));
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        let long_uri = format!(
            "GET /api/v1/endpoints?host={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "h".repeat(20_000)
        );
        let r = raw(addr, long_uri.as_bytes(), Duration::from_secs(5));
        assert!(
            r.starts_with("HTTP/1.1 431") || r.starts_with("HTTP/1.1 414"),
            "{r}"
        );
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        let r = raw(
            addr,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        let r = raw(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        let chunk = format!("800\r\n{}\r\n", "b".repeat(0x800));
        let r = raw(
            addr,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        // A small body is read and ignored.
        let r = raw(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            Duration::from_secs(5),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let s = server.stats();
        assert!(s.rejected_size >= 5, "{s:?}");
        server.shutdown();
    }

    #[test]
    fn slow_and_idle_clients_are_cut_off() {
        let (server, base) = start_with(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            ApiTimeouts {
                header_read: Duration::from_millis(300),
                ..ApiTimeouts::default()
            },
        );
        let addr = server.local_addr();
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let elapsed = t0.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
        // Trickling bytes does not extend the deadline.
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for b in b"GET /healthz HTTP/1.1\r\nX: abc" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        match s.read(&mut buf) {
            Ok(n) => assert!(
                n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"),
                "still open"
            ),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "still open"
            ),
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(get(&base, "/healthz").status, 200, "still serving");
        assert!(server.stats().timeouts >= 1);
        server.shutdown();
    }

    #[test]
    fn connection_limit_answers_503() {
        let (server, base) = start_with(
            ApiConfig {
                listen: loopback(),
                max_connections: 2,
                ..ApiConfig::default()
            },
            ApiTimeouts::default(),
        );
        let addr = server.local_addr();
        let a = TcpStream::connect(addr).unwrap();
        let b = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let third = raw(addr, b"", Duration::from_secs(5));
        assert!(third.starts_with("HTTP/1.1 503"), "{third}");
        assert_eq!(server.stats().rejected_connections, 1);
        drop((a, b));
        let t0 = Instant::now();
        while client::get(&base, "/healthz", None).map_or(0, |r| r.status) != 200 {
            assert!(t0.elapsed() < Duration::from_secs(5), "slots never freed");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.shutdown();
    }

    #[test]
    fn garbage_never_takes_the_server_down() {
        let (server, base) = start();
        let addr = server.local_addr();
        let r = raw(
            addr,
            b"\x00\x01\x02 nonsense\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        let cases: Vec<Vec<u8>> = vec![
            b"GET /api/v1/endpoints/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET /api/v1/endpoints?%%%%=%% HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET http://evil/api/v1/endpoints HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(),
            b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"
                .to_vec(),
            b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ];
        for c in &cases {
            let _ = raw(addr, c, Duration::from_millis(500));
        }
        // Pseudo-random bytes, bounded in count.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            let len = (x % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&bytes);
            let _ = s.write_all(b"\r\n\r\n");
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(get(&base, "/healthz").status, 200);
        let id = get(&base, "/api/v1/endpoints/%ff%fe");
        assert_eq!(id.status, 404);
        server.shutdown();
    }

    #[test]
    fn shutdown_is_bounded_with_idle_connections_open() {
        let (server, _) = start_with(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            ApiTimeouts {
                shutdown_grace: Duration::from_millis(500),
                ..ApiTimeouts::default()
            },
        );
        let addr = server.local_addr();
        let _idle = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        server.shutdown();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(TcpStream::connect(addr).is_err(), "the socket is closed");
    }

    #[test]
    fn client_follows_every_page() {
        let view = SharedView::default();
        let mut v = sample_view();
        v.endpoints = (0..2500)
            .map(|i| {
                endpoint_json(
                    "p.example",
                    "GET",
                    &format!("/e/{i:04}"),
                    "2024-01-05T10:00:00Z",
                    "2024-01-05T10:00:00Z",
                )
            })
            .collect();
        view.set(v);
        let server = serve(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            view,
        )
        .unwrap();
        let base = format!("http://{}", server.local_addr());
        let all = client::fetch_all(&base, "/api/v1/endpoints", "endpoints", &[], None).unwrap();
        assert_eq!(all.len(), 2500);
        assert_eq!(all[2499]["path"], "/e/2499");
        let some = client::fetch_all(
            &base,
            "/api/v1/endpoints",
            "endpoints",
            &[("path_prefix", "/e/24"), ("host", "p.example")],
            None,
        )
        .unwrap();
        assert_eq!(some.len(), 100);
        let f = client::fetch_all(
            &base,
            "/api/v1/findings",
            "findings",
            &[("min_severity", "medium")],
            None,
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(server.stats().requests, 5);
    }

    #[test]
    fn view_updates_are_seen() {
        let view = SharedView::default();
        let server = serve(
            ApiConfig {
                listen: loopback(),
                ..ApiConfig::default()
            },
            view.clone(),
        )
        .unwrap();
        let base = format!("http://{}", server.local_addr());
        assert_eq!(get_json(&base, "/api/v1/endpoints")["total"], 0);
        assert_eq!(
            String::from_utf8_lossy(&get(&base, "/healthz").body),
            "ok capture_time=none\n"
        );
        assert_eq!(get_json(&base, "/api/v1/openapi.json"), json!({}));
        view.set(sample_view());
        assert_eq!(get_json(&base, "/api/v1/endpoints")["total"], 5);
    }
}
