//! The catalog itself: calls in, endpoints out.
//!
//! The work is split in two so the expensive part runs on the capture workers:
//!
//! 1. [`CallFacts::extract`] (worker thread, once per call) keeps what the inventory needs of a
//!    [`Call`] — host, method, target, status, sizes, latency, client, the credentials seen
//!    (never their values) — and, for a *sample* of calls chosen by [`BodySampler`], moves the
//!    body prefixes out of the call without copying them.
//! 2. [`Inventory::observe`] (one thread, calls in request-time order, so results do not
//!    depend on the number of workers) templates the path, finds or creates the endpoint, and
//!    updates its statistics, parameters, schemas, auth and sensitive-data findings. It answers
//!    the endpoint's label (`GET api.example.com /users/{id}`), which the calls output carries.
//!
//! Everything is bounded: hosts (`max_hosts`), endpoints per host and in all
//! (`max_endpoints_per_host`, `max_endpoints`), the values tracked inside an endpoint (see each
//! part's configuration). A request that matched no known route and got a 404 is counted in
//! its host's `unmatched_404` bucket and creates nothing, so a scanner spraying random paths
//! cannot grow the catalog.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use apiscope_capture::{Endpoint as SocketAddr, Timestamp};
use apiscope_http::{Anomalies, Call};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{self, AuthScheme, RequestAuth};
use crate::graphql::{self, GraphqlConfig, GraphqlStats};
use crate::keyed::KeyedHasher;
use crate::params::{ContentType, ParamConfig, ParamSet, ParamStats};
use crate::principal::{principal_with, Principal};
use crate::schema::{self, Schema, SchemaConfig, SchemaStats};
use crate::sensitive::{Scanner, SensitiveConfig};
use crate::spec::{SpecMatch, SpecSet};
use crate::stats::{ip_hash, mix64, Distinct, Latency, Sizes, Tally};
use crate::template::{RouteChange, RouteId, TemplateConfig, Templater};

/// `[inventory]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Hosts tracked; calls to further hosts are counted (`hosts_dropped_calls`) only.
    pub max_hosts: usize,
    /// Endpoints per host; calls to further endpoints are counted in the host's
    /// `overflow_calls` (and `endpoints_dropped_calls`).
    pub max_endpoints_per_host: usize,
    /// Endpoints in all.
    pub max_endpoints: usize,
    /// Bodies of the first this-many calls of each path shape in each of the 64 flow buckets
    /// are kept and analysed (so on a busy link up to 64 times this many per shape) ...
    pub body_sample_first: u32,
    /// ... and then one call in this many. The bodies of other calls are only measured.
    pub body_sample_every: u32,
    /// (Path shape, flow bucket) pairs the body sampler remembers, this many / 64 per bucket;
    /// beyond, it samples one call in `body_sample_every` at random (counter
    /// `http_body_sampler_full`).
    pub body_sampler_max_shapes: usize,
    /// Significant digits of the latency histograms (1..=3).
    pub latency_sigfig: u8,
    /// Precision of the distinct-client sketches (2^p one-byte registers, 4..=16).
    pub distinct_precision: u8,
    /// Distinct keys kept in each small tally (statuses, content types, auth schemes,
    /// GraphQL operations, sensitive-data places); the rest are counted as `other`.
    pub max_tally_keys: usize,
    /// Distinct (media type, status class) schemas kept per endpoint.
    pub max_schemas_per_endpoint: usize,
    pub templates: TemplateConfig,
    pub params: ParamConfig,
    pub schema: SchemaConfig,
    pub sensitive: SensitiveConfig,
    pub graphql: GraphqlConfig,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_hosts: 1_000,
            max_endpoints_per_host: 2_000,
            max_endpoints: 20_000,
            body_sample_first: 4,
            body_sample_every: 16,
            body_sampler_max_shapes: 100_000,
            latency_sigfig: 2,
            distinct_precision: 10,
            max_tally_keys: 32,
            max_schemas_per_endpoint: 8,
            templates: TemplateConfig::default(),
            params: ParamConfig::default(),
            schema: SchemaConfig::default(),
            sensitive: SensitiveConfig::default(),
            graphql: GraphqlConfig::default(),
        }
    }
}

/// The host an API call was for: the `Host` header (or the authority of an absolute-form
/// target) lower-cased, without a trailing dot and without the default port `:80`; the
/// server's `ip:port` when there is none or it is not a plausible host name.
pub fn normalize_host(host: Option<&str>, server: SocketAddr) -> String {
    if let Some(h) = host {
        let h = h.trim();
        let h = h.strip_suffix(":80").unwrap_or(h);
        let h = h.strip_suffix('.').unwrap_or(h);
        let plausible = !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if plausible {
            return h.to_ascii_lowercase();
        }
    }
    server.to_string()
}

/// The first address of an `X-Forwarded-For` list (an IPv4 or IPv6 address, optionally with a
/// port or in brackets).
fn first_forwarded(v: &[u8]) -> Option<IpAddr> {
    let first = std::str::from_utf8(v).ok()?.split(',').next()?.trim();
    parse_addr(first)
}

/// The first `for=` of a `Forwarded` header (RFC 7239).
fn forwarded_for(v: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(v).ok()?;
    s.split([',', ';']).find_map(|part| {
        let (k, val) = part.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_addr(val.trim().trim_matches('"')))?
    })
}

fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

/// Common media types, shared rather than allocated for every call.
const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "text/html",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/xml",
    "text/xml",
    "application/javascript",
    "text/css",
    "application/octet-stream",
    "application/graphql",
    "application/problem+json",
    "application/grpc-web",
    "image/png",
    "image/jpeg",
];

fn media_type(m: &str) -> Cow<'static, str> {
    match MEDIA_TYPES.iter().find(|t| **t == m) {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(m.to_owned()),
    }
}

/// What the inventory needs of one call's bodies; only for sampled calls.
#[derive(Debug, Default)]
pub struct BodyFacts {
    /// Request body prefix (decoded), and whether it is the whole body.
    pub request: Vec<u8>,
    pub request_complete: bool,
    /// Response body prefix (decoded), and whether it is the whole body.
    pub response: Vec<u8>,
    pub response_complete: bool,
}

/// What the inventory needs of one call (see the module overview).
#[derive(Debug)]
pub struct CallFacts {
    pub ts: Timestamp,
    pub latency_us: Option<u64>,
    pub client: IpAddr,
    pub host: String,
    pub method: Cow<'static, str>,
    /// The request-target as sent (path and query).
    pub target: String,
    /// Length of the path part of `target` (up to `?`), after `path_start`.
    pub path_start: u32,
    pub path_end: u32,
    pub status: Option<u16>,
    pub req_bytes: u64,
    pub resp_bytes: Option<u64>,
    pub auth: RequestAuth,
    /// Media types (lower-case, without parameters) and the request's `boundary`.
    pub req_type: Option<Cow<'static, str>>,
    pub resp_type: Option<Cow<'static, str>>,
    pub boundary: Option<String>,
    /// Everything odd the HTTP stage saw in the call (ambiguous framing, ...).
    pub anomalies: Anomalies,
    /// The first address of `X-Forwarded-For` (or `Forwarded: for=`): the client behind a
    /// proxy or load balancer, when the request says so.
    pub forwarded_for: Option<IpAddr>,
    /// Who made the call, as a keyed hash of its credentials (see [`crate::principal`]).
    pub principal: Option<Principal>,
    pub body: Option<Box<BodyFacts>>,
}

impl CallFacts {
    /// Heap bytes held (the strings and the body prefixes), for bounds on calls in flight.
    pub fn heap_size(&self) -> usize {
        self.host.capacity()
            + apiscope_http::owned_capacity(&self.method)
            + self.target.capacity()
            + self.boundary.as_ref().map_or(0, String::capacity)
            + self.body.as_ref().map_or(0, |b| {
                std::mem::size_of::<BodyFacts>() + b.request.capacity() + b.response.capacity()
            })
    }

    /// Keeps what the inventory needs of `call` (made by `client` to `server`), moving its
    /// method and target out of it (and with `sample_bodies`, its body prefixes): call this
    /// after anything else that reads them.
    pub fn extract(
        call: &mut Call,
        client: SocketAddr,
        server: SocketAddr,
        sample_bodies: bool,
        hasher: &KeyedHasher,
    ) -> CallFacts {
        let req = &call.request;
        let resp = call.response.as_ref();
        let req_ct = req.header("content-type").and_then(ContentType::from_bytes);
        let boundary = req_ct
            .as_ref()
            .filter(|c| c.is_multipart_form())
            .and_then(|c| c.boundary())
            .map(|b| b.into_owned());
        let req_type = req_ct.map(|c| media_type(c.media_type()));
        let resp_type = resp
            .and_then(|r| r.header("content-type"))
            .and_then(ContentType::from_bytes)
            .map(|c| media_type(c.media_type()));
        let headers = req.headers.iter().map(|h| (h.name, h.value));
        let auth = auth::classify_request(headers.clone(), req.query());
        let principal = if auth.is_empty() {
            None
        } else {
            principal_with(&auth, headers, req.query(), hasher)
        };
        let forwarded_for = req
            .header("x-forwarded-for")
            .and_then(first_forwarded)
            .or_else(|| req.header("forwarded").and_then(forwarded_for));
        let mut facts = CallFacts {
            auth,
            req_type,
            resp_type,
            boundary,
            forwarded_for,
            principal,
            ..CallFacts::route(call, client, server)
        };
        if sample_bodies {
            let complete =
                |b: &apiscope_http::Body| !b.truncated && b.prefix.len() as u64 == b.bytes;
            let req = &mut call.request.body;
            let mut b = BodyFacts {
                request_complete: complete(req),
                request: std::mem::take(&mut req.prefix),
                ..BodyFacts::default()
            };
            if let Some(r) = call.response.as_mut() {
                b.response_complete = complete(&r.body);
                b.response = std::mem::take(&mut r.body.prefix);
            }
            facts.body = Some(Box::new(b));
        }
        facts
    }

    /// Only what gives `call` its endpoint ([`Inventory::label`]): its time, client, host,
    /// method, target, status, sizes and anomalies, moving its method and target out of it;
    /// no credentials, media types or bodies. Call this after anything else that reads them.
    pub fn route(call: &mut Call, client: SocketAddr, server: SocketAddr) -> CallFacts {
        let req = &call.request;
        let resp = call.response.as_ref();
        let host = normalize_host(req.host(), server);
        let path = req.path();
        // `path()` is a sub-slice of the target (for an absolute-form target, its path part),
        // or a static "/" when an absolute-form target has none.
        let base = req.target.as_ptr() as usize;
        let (path_start, path_end) = match (path.as_ptr() as usize).checked_sub(base) {
            Some(off) if off + path.len() <= req.target.len() => (off, off + path.len()),
            _ => (0, 0),
        };
        CallFacts {
            ts: req.ts,
            latency_us: resp.map(|r| r.ts.saturating_since(req.ts).as_micros()),
            client: client.ip,
            host,
            // The call's line is written before this: its method and target can move, not
            // copy.
            method: std::mem::take(&mut call.request.method),
            target: std::mem::take(&mut call.request.target),
            path_start: path_start as u32,
            path_end: path_end as u32,
            status: resp.map(|r| r.status),
            req_bytes: call.request.body.bytes,
            resp_bytes: call.response.as_ref().map(|r| r.body.bytes),
            auth: RequestAuth::default(),
            req_type: None,
            resp_type: None,
            boundary: None,
            anomalies: call.anomalies,
            forwarded_for: None,
            principal: None,
            body: None,
        }
    }

    /// The path, still percent-encoded (`/` for an absolute-form target without one).
    pub fn path(&self) -> &str {
        if self.path_end == 0 {
            return "/";
        }
        &self.target[self.path_start as usize..self.path_end as usize]
    }

    /// The query string, when there is one.
    pub fn query(&self) -> Option<&str> {
        let q = &self.target[self.target.find('?')? + 1..];
        Some(&q[..q.find('#').unwrap_or(q.len())])
    }
}

/// Chooses which calls' bodies are analysed: the first `first` calls of each *path shape*
/// (host, method and path with identifier-like segments blanked), then one in `every`. One
/// per worker, so with several workers the choice (not the counting) depends on sharding.
#[derive(Debug)]
pub struct BodySampler {
    seen: FxHashMap<u64, u32>,
    /// Entries of `seen` per flow bucket, each bucket bounded by `max_shapes` / buckets
    /// (so that a full table, too, is the same whatever the number of workers).
    per_bucket: Vec<u32>,
    /// Calls of each shape sampled first in each flow bucket.
    first: u32,
    every: u32,
    max_shapes: usize,
    /// Calls whose shape could not be remembered because the table was full.
    pub full: u64,
}

impl BodySampler {
    pub fn new(cfg: &InventoryConfig) -> Self {
        BodySampler {
            seen: FxHashMap::default(),
            per_bucket: vec![0; apiscope_capture::FLOW_BUCKETS as usize],
            first: cfg.body_sample_first,
            every: cfg.body_sample_every.max(1),
            max_shapes: cfg
                .body_sampler_max_shapes
                .div_ceil(apiscope_capture::FLOW_BUCKETS as usize),
            full: 0,
        }
    }

    /// Whether to keep and analyse the bodies of a call to `host` with `method` and `path`,
    /// the `seq`-th call of a connection whose symmetric flow hash is `flow_hash`. Asked when
    /// the request head is parsed, so that bodies not sampled are never decoded.
    ///
    /// Calls are counted per path shape and flow bucket ([`apiscope_capture::bucket_of`]):
    /// a bucket's flows are all on one worker and come in capture order whatever the number
    /// of workers, so the same calls are sampled with any `--threads`.
    pub fn sample(
        &mut self,
        host: Option<&str>,
        method: &str,
        path: &str,
        flow_hash: u64,
        seq: u64,
    ) -> bool {
        let shape = shape_hash(host.unwrap_or(""), method, path);
        let bucket = apiscope_capture::bucket_of(flow_hash);
        let key = mix64(shape ^ bucket);
        let in_bucket = &mut self.per_bucket[bucket as usize];
        let n = if let Some(n) = self.seen.get_mut(&key) {
            *n = n.saturating_add(1);
            *n
        } else if (*in_bucket as usize) < self.max_shapes {
            *in_bucket += 1;
            self.seen.insert(key, 1);
            1
        } else {
            self.full += 1;
            return mix64(key ^ flow_hash ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                % u64::from(self.every)
                == 0;
        };
        n <= self.first || n % self.every == 0
    }
}

/// FNV-style hash of host, method and path with identifier-like segments blanked. "Like" is
/// cheap here (any digit, or longer than 24 bytes): this runs on every call, and a shape only
/// steers sampling.
fn shape_hash(host: &str, method: &str, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    };
    eat(host.as_bytes());
    eat(method.as_bytes());
    for seg in path.as_bytes().split(|&b| b == b'/') {
        if seg.len() > 24 || seg.iter().any(u8::is_ascii_digit) {
            eat(b"{}");
        } else {
            eat(seg);
        }
    }
    h
}

/// A stable identifier of an endpoint: 16 hex digits of a hash of host, method and templated
/// path (the same endpoint has the same id in every run).
pub fn endpoint_id(host: &str, method: &str, path: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [host, method, path] {
        for &b in part.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    format!("{:016x}", mix64(h))
}

/// Distinct request methods told apart (see `Inventory::method_id`).
pub const MAX_METHODS: usize = 256;

/// Counters of the inventory, all monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InventoryStats {
    pub calls: u64,
    pub calls_counted: u64,
    pub endpoints_created: u64,
    /// Endpoints folded into another when templating learnt a parameter.
    pub endpoints_merged: u64,
    pub hosts_dropped_calls: u64,
    pub endpoints_dropped_calls: u64,
    pub unmatched_404: u64,
    pub bodies_analysed: u64,
    pub bodies_not_json: u64,
    pub graphql_operations: u64,
    pub sensitive_hits: u64,
    pub sensitive_scan_truncated: u64,
    pub sensitive_json_too_deep: u64,
    pub sensitive_json_too_many_values: u64,
    pub sensitive_too_many_findings: u64,
    pub methods_overflow: u64,
}

/// Sensitive data seen at one place of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SensitivePlace {
    /// The data type (`email`, `card_number`, ...).
    pub kind: String,
    /// Where: `path`, `query:<name>`, `request_body:<field path>`,
    /// `response_body:<field path>`, `request_body`, `response_body`.
    pub location: String,
}

/// One endpoint: what was learnt of it.
#[derive(Debug, Clone)]
pub struct EndpointEntry {
    pub id: String,
    pub host: String,
    pub method: String,
    pub path: String,
    route: RouteId,
    pub calls: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub statuses: Tally,
    pub latency: Latency,
    pub req_sizes: Sizes,
    pub resp_sizes: Sizes,
    pub clients: Distinct,
    pub auth: Tally,
    pub authenticated_calls: u64,
    pub jwt_algs: Tally,
    pub jwt_issuers: Tally,
    pub jwt_without_exp: u64,
    pub query: ParamSet,
    pub form: ParamSet,
    pub req_types: Tally,
    pub resp_types: Tally,
    /// Request body schemas by media type; response body schemas by (status class, media
    /// type), e.g. `2xx application/json`.
    pub req_schemas: BTreeMap<String, Schema>,
    pub resp_schemas: BTreeMap<String, Schema>,
    pub graphql: Tally,
    pub sensitive: BTreeMap<SensitivePlace, u64>,
    /// The (kind, location) places found in the last call counted here (for the detectors;
    /// kinds and places only).
    pub last_call_sensitive: Vec<(&'static str, String)>,
    pub body_samples: u64,
    pub in_spec: Option<bool>,
    pub deprecated: bool,
    pub spec_operation: Option<String>,
    /// Set when this endpoint changed since [`Inventory::take_changed`] last ran.
    changed: bool,
    label: String,
}

impl EndpointEntry {
    fn new(host: &str, method: &str, path: &str, route: RouteId, cfg: &InventoryConfig) -> Self {
        EndpointEntry {
            id: endpoint_id(host, method, path),
            host: host.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            route,
            calls: 0,
            first_seen: Timestamp::from_nanos(u64::MAX),
            last_seen: Timestamp::ZERO,
            statuses: Tally::default(),
            latency: Latency::new(cfg.latency_sigfig),
            req_sizes: Sizes::default(),
            resp_sizes: Sizes::default(),
            clients: Distinct::default(),
            auth: Tally::default(),
            authenticated_calls: 0,
            jwt_algs: Tally::default(),
            jwt_issuers: Tally::default(),
            jwt_without_exp: 0,
            query: ParamSet::new(),
            form: ParamSet::new(),
            req_types: Tally::default(),
            resp_types: Tally::default(),
            req_schemas: BTreeMap::new(),
            resp_schemas: BTreeMap::new(),
            graphql: Tally::default(),
            sensitive: BTreeMap::new(),
            last_call_sensitive: Vec::new(),
            body_samples: 0,
            in_spec: None,
            deprecated: false,
            spec_operation: None,
            changed: true,
            label: format!("{method} {host} {path}"),
        }
    }

    /// `GET api.example.com /users/{id}`.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn set_path(&mut self, path: &str) {
        self.path = path.to_owned();
        self.id = endpoint_id(&self.host, &self.method, path);
        self.label = format!("{} {} {}", self.method, self.host, path);
        self.changed = true;
    }

    /// Folds `o` (another endpoint that templating found to be the same) into `self`.
    fn merge(&mut self, o: &EndpointEntry, inv: &mut Parts) {
        let cfg = &inv.cfg;
        self.calls += o.calls;
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.statuses.merge(&o.statuses, cfg.max_tally_keys);
        self.latency.merge(&o.latency);
        self.req_sizes.merge(&o.req_sizes);
        self.resp_sizes.merge(&o.resp_sizes);
        self.clients.merge(&o.clients, cfg.distinct_precision);
        self.auth.merge(&o.auth, cfg.max_tally_keys);
        self.authenticated_calls += o.authenticated_calls;
        self.jwt_algs.merge(&o.jwt_algs, cfg.max_tally_keys);
        self.jwt_issuers.merge(&o.jwt_issuers, cfg.max_tally_keys);
        self.jwt_without_exp += o.jwt_without_exp;
        self.query
            .merge(&o.query, &cfg.params, &mut inv.param_stats);
        self.form.merge(&o.form, &cfg.params, &mut inv.param_stats);
        self.req_types.merge(&o.req_types, cfg.max_tally_keys);
        self.resp_types.merge(&o.resp_types, cfg.max_tally_keys);
        for (k, s) in &o.req_schemas {
            merge_schema(&mut self.req_schemas, k, s, cfg, &mut inv.schema_stats);
        }
        for (k, s) in &o.resp_schemas {
            merge_schema(&mut self.resp_schemas, k, s, cfg, &mut inv.schema_stats);
        }
        self.graphql.merge(&o.graphql, cfg.max_tally_keys);
        for (p, n) in &o.sensitive {
            if let Some(c) = self.sensitive.get_mut(p) {
                *c += n;
            } else if self.sensitive.len() < cfg.max_tally_keys {
                self.sensitive.insert(p.clone(), *n);
            }
        }
        self.body_samples += o.body_samples;
        self.changed = true;
    }

    /// The endpoint as written in the inventory (`--inventory`, `apiscope inventory`).
    pub fn to_json(&self) -> Value {
        let auth: Vec<&str> = self.auth.counts.keys().map(String::as_str).collect();
        let mut sensitive: Vec<&str> = self.sensitive.keys().map(|p| p.kind.as_str()).collect();
        sensitive.dedup();
        sensitive.sort_unstable();
        sensitive.dedup();
        let places: Vec<Value> = self
            .sensitive
            .iter()
            .map(|(p, n)| json!({"kind": p.kind, "location": p.location, "count": n}))
            .collect();
        let path_params: Vec<Value> = path_param_names(&self.path)
            .map(|n| json!({"name": n, "in": "path", "required": true}))
            .collect();
        // Credential headers by name (their values are never kept), present in some calls.
        let header_params: Vec<Value> = self
            .auth
            .counts
            .iter()
            .filter_map(|(k, n)| Some((k.strip_prefix("api_key_header:")?, n)))
            .map(|(name, n)| {
                json!({"name": name, "in": "header", "required": *n == self.calls,
                       "schema": {"type": "string"}})
            })
            .collect();
        let schemas = |m: &BTreeMap<String, Schema>| -> Value {
            m.iter()
                .map(|(k, s)| (k.clone(), s.to_json_schema()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "id": self.id,
            "host": self.host,
            "method": self.method,
            "path": self.path,
            "calls": self.calls,
            "first_seen": self.first_seen.to_string(),
            "last_seen": self.last_seen.to_string(),
            "statuses": self.statuses,
            "latency": self.latency.summary(),
            "request_bytes": self.req_sizes,
            "response_bytes": self.resp_sizes,
            "clients": self.clients.count(),
            "auth": auth,
            "auth_counts": self.auth,
            "authenticated_share": share(self.authenticated_calls, self.calls),
            "jwt": {
                "algs": self.jwt_algs,
                "issuers": self.jwt_issuers,
                "without_exp": self.jwt_without_exp,
            },
            "params": {
                "path": path_params,
                "header": header_params,
                "query": self.query.to_openapi_parameters("query"),
                "form": self.form.to_body_schema(),
            },
            "request_content_types": self.req_types,
            "response_content_types": self.resp_types,
            "request_schemas": schemas(&self.req_schemas),
            "response_schemas": schemas(&self.resp_schemas),
            "graphql_operations": self.graphql,
            "sensitive": sensitive,
            "sensitive_places": places,
            "body_samples": self.body_samples,
            "in_spec": self.in_spec,
            "deprecated": self.deprecated,
            "spec_operation": self.spec_operation,
        })
    }
}

/// The saved form of an endpoint: everything needed to go on counting after a restart.
/// Schemas and parameter sets are saved through their own lossless state forms.
#[derive(Debug, Serialize, Deserialize)]
struct SavedEndpoint {
    host: String,
    method: String,
    path: String,
    calls: u64,
    first_seen_ns: u64,
    last_seen_ns: u64,
    statuses: Tally,
    latency: Vec<(u64, u64)>,
    req_sizes: Sizes,
    resp_sizes: Sizes,
    clients: Distinct,
    auth: Tally,
    authenticated_calls: u64,
    jwt_algs: Tally,
    jwt_issuers: Tally,
    jwt_without_exp: u64,
    query: Value,
    form: Value,
    req_types: Tally,
    resp_types: Tally,
    req_schemas: BTreeMap<String, Value>,
    resp_schemas: BTreeMap<String, Value>,
    graphql: Tally,
    sensitive: Vec<(SensitivePlace, u64)>,
    body_samples: u64,
}

impl EndpointEntry {
    /// The record saved in the state store: the endpoint's display JSON (`view`, what
    /// `apiscope inventory` prints) and its full state (`state`, what a restart reloads).
    pub fn record(&self, view: Value) -> crate::store::EndpointRecord {
        let saved = SavedEndpoint {
            host: self.host.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            calls: self.calls,
            first_seen_ns: self.first_seen.as_nanos(),
            last_seen_ns: self.last_seen.as_nanos(),
            statuses: self.statuses.clone(),
            latency: self.latency.to_pairs(),
            req_sizes: self.req_sizes.clone(),
            resp_sizes: self.resp_sizes.clone(),
            clients: self.clients.clone(),
            auth: self.auth.clone(),
            authenticated_calls: self.authenticated_calls,
            jwt_algs: self.jwt_algs.clone(),
            jwt_issuers: self.jwt_issuers.clone(),
            jwt_without_exp: self.jwt_without_exp,
            query: self.query.save(),
            form: self.form.save(),
            req_types: self.req_types.clone(),
            resp_types: self.resp_types.clone(),
            req_schemas: self
                .req_schemas
                .iter()
                .map(|(k, s)| (k.clone(), s.save()))
                .collect(),
            resp_schemas: self
                .resp_schemas
                .iter()
                .map(|(k, s)| (k.clone(), s.save()))
                .collect(),
            graphql: self.graphql.clone(),
            sensitive: self
                .sensitive
                .iter()
                .map(|(p, n)| (p.clone(), *n))
                .collect(),
            body_samples: self.body_samples,
        };
        let json = json!({"view": view, "state": saved});
        crate::store::EndpointRecord {
            id: self.id.clone(),
            host: self.host.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            first_seen_ns: self.first_seen.as_nanos(),
            last_seen_ns: self.last_seen.as_nanos(),
            json: json.to_string(),
        }
    }

    /// An endpoint back from its saved `state` (see [`EndpointEntry::record`]); `None` when
    /// the state cannot be read (the caller counts it).
    fn load(state: &Value, route: RouteId, parts: &mut Parts) -> Option<EndpointEntry> {
        let cfg = &parts.cfg;
        let s: SavedEndpoint = serde_json::from_value(state.clone()).ok()?;
        let mut e = EndpointEntry::new(&s.host, &s.method, &s.path, route, cfg);
        e.calls = s.calls;
        e.first_seen = Timestamp::from_nanos(s.first_seen_ns);
        e.last_seen = Timestamp::from_nanos(s.last_seen_ns);
        e.statuses = s.statuses;
        e.latency = Latency::from_pairs(cfg.latency_sigfig, &s.latency);
        e.req_sizes = s.req_sizes;
        e.resp_sizes = s.resp_sizes;
        e.clients = s.clients;
        e.auth = s.auth;
        e.authenticated_calls = s.authenticated_calls;
        e.jwt_algs = s.jwt_algs;
        e.jwt_issuers = s.jwt_issuers;
        e.jwt_without_exp = s.jwt_without_exp;
        e.query = ParamSet::load(&s.query, &cfg.params, &mut parts.param_stats).ok()?;
        e.form = ParamSet::load(&s.form, &cfg.params, &mut parts.param_stats).ok()?;
        e.req_types = s.req_types;
        e.resp_types = s.resp_types;
        for (k, v) in s.req_schemas {
            e.req_schemas.insert(
                k,
                Schema::load(&v, &cfg.schema, &mut parts.schema_stats).ok()?,
            );
        }
        for (k, v) in s.resp_schemas {
            e.resp_schemas.insert(
                k,
                Schema::load(&v, &cfg.schema, &mut parts.schema_stats).ok()?,
            );
        }
        e.graphql = s.graphql;
        e.sensitive = s.sensitive.into_iter().collect();
        e.body_samples = s.body_samples;
        e.changed = false;
        Some(e)
    }
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 / of as f64 * 1000.0).round() / 1000.0
    }
}

/// `{name}` parameters of a templated path, in order.
pub fn path_param_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn merge_schema(
    m: &mut BTreeMap<String, Schema>,
    key: &str,
    s: &Schema,
    cfg: &InventoryConfig,
    stats: &mut SchemaStats,
) {
    if let Some(mine) = m.get_mut(key) {
        mine.merge(s, &cfg.schema, stats);
    } else if m.len() < cfg.max_schemas_per_endpoint {
        m.insert(key.to_owned(), s.clone());
    }
}

/// What [`Inventory::observe`] learnt of one call beyond the endpoint's statistics: the
/// detectors' view of it. Values here (path parameters) live for one call and are never
/// stored.
#[derive(Debug, Default)]
pub struct CallNotes {
    /// The endpoint the call was counted under (see [`Inventory::endpoint_at`]).
    pub endpoint: Option<u32>,
    /// The call got a 404 on a path that matches no known route.
    pub unmatched_404: bool,
    /// (parameter name, value as sent) for each parameter of the endpoint's template.
    pub path_params: Vec<(String, String)>,
}

impl CallNotes {
    fn clear(&mut self) {
        self.endpoint = None;
        self.unmatched_404 = false;
        self.path_params.clear();
    }
}

/// Pairs the `{name}` segments of `template` with the segments of `path`.
fn path_params(template: &str, path: &str, out: &mut Vec<(String, String)>) {
    out.clear();
    let mut segs = path.split('/');
    for t in template.split('/') {
        let Some(p) = segs.next() else { break };
        if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            if let Some(rest) = name.strip_prefix('*') {
                // A catch-all takes the rest of the path.
                let mut v = p.to_owned();
                for more in segs.by_ref() {
                    v.push('/');
                    v.push_str(more);
                }
                out.push((rest.to_owned(), v));
                break;
            }
            out.push((name.to_owned(), p.to_owned()));
        }
    }
}

/// One host.
#[derive(Debug, Clone)]
pub struct HostEntry {
    pub name: String,
    pub calls: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub clients: Distinct,
    pub endpoints: usize,
    /// Calls that got a 404 for a path matching no known route (not made into endpoints).
    pub unmatched_404: u64,
    /// Calls to endpoints beyond `max_endpoints_per_host` / `max_endpoints`.
    pub overflow_calls: u64,
    specs_seeded: bool,
}

/// The parts of the inventory an endpoint update needs besides the endpoint itself.
#[derive(Debug)]
struct Parts {
    cfg: InventoryConfig,
    scanner: Scanner,
    param_stats: ParamStats,
    schema_stats: SchemaStats,
    graphql_stats: GraphqlStats,
}

/// The endpoint catalog (see the module overview).
#[derive(Debug)]
pub struct Inventory {
    parts: Parts,
    templater: Templater,
    specs: Option<SpecSet>,
    hosts: Vec<HostEntry>,
    host_index: FxHashMap<String, u32>,
    endpoints: Vec<Option<EndpointEntry>>,
    index: FxHashMap<(u32, u16, RouteId), u32>,
    /// Methods seen, as sent; the index keys them by position (a handful in practice).
    methods: Vec<String>,
    by_route: FxHashMap<RouteId, Vec<u32>>,
    live_endpoints: usize,
    /// Ids of endpoints folded into others since [`Inventory::take_changed`] last ran.
    removed: Vec<String>,
    notes: CallNotes,
    pub stats: InventoryStats,
}

impl Inventory {
    pub fn new(cfg: InventoryConfig, specs: Option<SpecSet>) -> Self {
        Inventory {
            templater: Templater::new(cfg.templates.clone()),
            parts: Parts {
                scanner: Scanner::new(cfg.sensitive.clone()),
                cfg,
                param_stats: ParamStats::default(),
                schema_stats: SchemaStats::default(),
                graphql_stats: GraphqlStats::default(),
            },
            specs,
            hosts: Vec::new(),
            host_index: FxHashMap::default(),
            endpoints: Vec::new(),
            index: FxHashMap::default(),
            methods: Vec::new(),
            by_route: FxHashMap::default(),
            live_endpoints: 0,
            removed: Vec::new(),
            notes: CallNotes::default(),
            stats: InventoryStats::default(),
        }
    }

    pub fn config(&self) -> &InventoryConfig {
        &self.parts.cfg
    }

    /// Counts one call; returns the label of the endpoint it was counted under, or `None`
    /// when it was not (an unmatched 404, or a bound).
    pub fn observe(&mut self, f: &mut CallFacts) -> Option<&str> {
        let ep = self.route(f)?;
        let Inventory {
            parts,
            endpoints,
            stats,
            notes,
            ..
        } = self;
        let e = endpoints[ep as usize].as_mut().expect("live endpoint");
        path_params(&e.path, f.path(), &mut notes.path_params);
        e.last_call_sensitive.clear();
        update(e, f, parts, stats);
        Some(e.label.as_str())
    }

    /// Gives one call its endpoint, as [`Inventory::observe`] would (the same hosts, routes
    /// and endpoints are created, and the same bounds apply), without counting anything in
    /// the endpoint itself: for runs that only label calls, with facts from
    /// [`CallFacts::route`].
    pub fn label(&mut self, f: &CallFacts) -> Option<&str> {
        let ep = self.route(f)?;
        let e = self.endpoints[ep as usize].as_ref().expect("live endpoint");
        Some(e.label.as_str())
    }

    /// The endpoint `f` counts under (created if new), with the host's counts and the
    /// templater's learning; `None` for an unmatched 404 or past a bound.
    fn route(&mut self, f: &CallFacts) -> Option<u32> {
        self.notes.clear();
        self.stats.calls += 1;
        let host = self.host(&f.host)?;
        {
            let h = &mut self.hosts[host as usize];
            h.calls += 1;
            h.first_seen = h.first_seen.min(f.ts);
            h.last_seen = h.last_seen.max(f.ts);
            h.clients.insert(ip_hash(f.client), 14);
        }
        let host_name = &self.hosts[host as usize].name;
        let route = if f.status == Some(404) {
            match self.templater.lookup(host_name, f.path()) {
                Some(r) => r,
                None => {
                    self.hosts[host as usize].unmatched_404 += 1;
                    self.stats.unmatched_404 += 1;
                    self.notes.unmatched_404 = true;
                    return None;
                }
            }
        } else {
            self.templater.observe(host_name, f.path())
        };
        for change in self.templater.drain_changes() {
            self.apply(change);
        }
        let ep = self.endpoint(host, &f.method, route)?;
        self.stats.calls_counted += 1;
        self.notes.endpoint = Some(ep);
        Some(ep)
    }

    /// What the last [`Inventory::observe`] learnt of its call, for the detectors.
    pub fn notes(&self) -> &CallNotes {
        &self.notes
    }

    /// The endpoint at `index` (as in [`CallNotes::endpoint`]), if it is still live.
    pub fn endpoint_at(&self, index: u32) -> Option<&EndpointEntry> {
        self.endpoints.get(index as usize)?.as_ref()
    }

    /// The specs the inventory compares traffic with.
    pub fn specs(&self) -> Option<&SpecSet> {
        self.specs.as_ref()
    }

    /// Replaces the specs (a configuration reload): the new specs' templates are given to the
    /// templater for every host seen so far, and every endpoint is matched again (`in_spec`,
    /// `deprecated`, `spec_operation`); endpoints whose match changed are marked changed, so
    /// the next flush stores and publishes them. Templates of a spec no longer given stay
    /// known routes until a restart.
    pub fn set_specs(&mut self, specs: Option<SpecSet>) {
        self.specs = specs;
        for h in 0..self.hosts.len() {
            self.hosts[h].specs_seeded = false;
            self.seed_specs(h as u32);
        }
        for change in self.templater.drain_changes() {
            self.apply(change);
        }
        let mut endpoints = std::mem::take(&mut self.endpoints);
        for e in endpoints.iter_mut().flatten() {
            let before = (e.in_spec, e.deprecated, e.spec_operation.clone());
            if self.specs.is_some() {
                self.match_spec(e);
            } else {
                e.in_spec = None;
                e.deprecated = false;
                e.spec_operation = None;
            }
            if (e.in_spec, e.deprecated, &e.spec_operation) != (before.0, before.1, &before.2) {
                e.changed = true;
            }
        }
        self.endpoints = endpoints;
    }

    fn host(&mut self, name: &str) -> Option<u32> {
        if let Some(&h) = self.host_index.get(name) {
            return Some(h);
        }
        if self.hosts.len() >= self.parts.cfg.max_hosts {
            self.stats.hosts_dropped_calls += 1;
            return None;
        }
        let id = self.hosts.len() as u32;
        self.hosts.push(HostEntry {
            name: name.to_owned(),
            calls: 0,
            first_seen: Timestamp::from_nanos(u64::MAX),
            last_seen: Timestamp::ZERO,
            clients: Distinct::default(),
            endpoints: 0,
            unmatched_404: 0,
            overflow_calls: 0,
            specs_seeded: false,
        });
        self.host_index.insert(name.to_owned(), id);
        self.seed_specs(id);
        Some(id)
    }

    /// Gives the templater the spec's templates for a new host: they win over learning.
    fn seed_specs(&mut self, host: u32) {
        let h = &mut self.hosts[host as usize];
        if h.specs_seeded {
            return;
        }
        h.specs_seeded = true;
        let Some(specs) = &self.specs else { return };
        for t in specs.templates_for_host(&h.name) {
            self.templater.add_spec_template(&h.name, t);
        }
    }

    /// The position of `method` in the methods seen (added if new). Methods are kept as
    /// sent, so a hostile client can send many: past [`MAX_METHODS`] distinct ones, the rest
    /// share the last position (counted in `methods_overflow`) and are counted under the
    /// endpoint of the first of them.
    fn method_id(&mut self, method: &str) -> u16 {
        if let Some(i) = self.methods.iter().position(|m| m == method) {
            return i as u16;
        }
        if self.methods.len() >= MAX_METHODS {
            self.stats.methods_overflow += 1;
            return (MAX_METHODS - 1) as u16;
        }
        self.methods.push(method.to_owned());
        (self.methods.len() - 1) as u16
    }

    fn endpoint(&mut self, host: u32, method: &str, route: RouteId) -> Option<u32> {
        let m = self.method_id(method);
        if let Some(&e) = self.index.get(&(host, m, route)) {
            return Some(e);
        }
        let cfg = &self.parts.cfg;
        let h = &mut self.hosts[host as usize];
        if h.endpoints >= cfg.max_endpoints_per_host || self.live_endpoints >= cfg.max_endpoints {
            h.overflow_calls += 1;
            self.stats.endpoints_dropped_calls += 1;
            return None;
        }
        h.endpoints += 1;
        self.live_endpoints += 1;
        self.stats.endpoints_created += 1;
        let path = self.templater.template(route).to_owned();
        let mut e = EndpointEntry::new(&h.name, method, &path, route, cfg);
        self.match_spec(&mut e);
        let id = self.endpoints.len() as u32;
        self.endpoints.push(Some(e));
        self.index.insert((host, m, route), id);
        self.by_route.entry(route).or_default().push(id);
        Some(id)
    }

    /// Marks `e` against the specs: `in_spec` is `None` when no spec covers its host.
    fn match_spec(&self, e: &mut EndpointEntry) {
        let Some(specs) = &self.specs else { return };
        if !specs.covers_host(&e.host) {
            e.in_spec = None;
            return;
        }
        match specs.find(&e.host, &e.method, &e.path) {
            Some(SpecMatch::Operation(m)) => {
                e.in_spec = Some(true);
                e.deprecated = m.deprecated;
                e.spec_operation = m.operation_id.map(str::to_owned);
            }
            Some(SpecMatch::PathOnly(_)) | None => {
                e.in_spec = Some(false);
                e.deprecated = false;
                e.spec_operation = None;
            }
        }
    }

    /// Applies a templating change: endpoints of routes that became one are merged.
    fn apply(&mut self, change: RouteChange) {
        let RouteChange::Merged { into, from } = change else {
            // A split leaves the parameter's endpoint with its history; new calls go to the
            // literal routes.
            return;
        };
        let template = self.templater.template(into).to_owned();
        for r in from {
            let Some(ids) = self.by_route.remove(&r) else {
                continue;
            };
            for id in ids {
                let Some(mut e) = self.endpoints[id as usize].take() else {
                    continue;
                };
                let host = self.host_index[&e.host];
                let m = self.method_id(&e.method);
                self.index.remove(&(host, m, r));
                let key = (host, m, into);
                match self.index.get(&key) {
                    Some(&target) => {
                        self.removed.push(e.id.clone());
                        let t = self.endpoints[target as usize]
                            .as_mut()
                            .expect("indexed endpoint");
                        t.merge(&e, &mut self.parts);
                        self.hosts[host as usize].endpoints -= 1;
                        self.live_endpoints -= 1;
                        self.stats.endpoints_merged += 1;
                    }
                    None => {
                        self.removed.push(e.id.clone());
                        e.route = into;
                        e.set_path(&template);
                        self.match_spec(&mut e);
                        self.endpoints[id as usize] = Some(e);
                        self.index.insert(key, id);
                        self.by_route.entry(into).or_default().push(id);
                    }
                }
            }
        }
    }

    /// Loads endpoints saved by a previous run (see [`EndpointEntry::record`]): their
    /// templates are given to the templater as known routes, their statistics go on from
    /// where they were. Returns how many records could not be read (they start afresh).
    pub fn restore(&mut self, records: &[crate::store::EndpointRecord]) -> usize {
        let mut skipped = 0;
        for r in records {
            let state = serde_json::from_str::<Value>(&r.json)
                .ok()
                .and_then(|v| v.get("state").cloned());
            let Some(state) = state else {
                skipped += 1;
                continue;
            };
            let Some(host) = self.host(&r.host) else {
                skipped += 1;
                continue;
            };
            let route = self.templater.restore_template(&r.host, &r.path);
            let key = (host, self.method_id(&r.method), route);
            if self.index.contains_key(&key) {
                skipped += 1;
                continue;
            }
            let Some(mut e) = EndpointEntry::load(&state, route, &mut self.parts) else {
                skipped += 1;
                continue;
            };
            self.match_spec(&mut e);
            let h = &mut self.hosts[host as usize];
            h.endpoints += 1;
            h.calls += e.calls;
            h.first_seen = h.first_seen.min(e.first_seen);
            h.last_seen = h.last_seen.max(e.last_seen);
            self.live_endpoints += 1;
            let id = self.endpoints.len() as u32;
            self.endpoints.push(Some(e));
            self.index.insert(key, id);
            self.by_route.entry(route).or_default().push(id);
        }
        for change in self.templater.drain_changes() {
            self.apply(change);
        }
        skipped
    }

    /// Live endpoints, sorted by host, path, method.
    pub fn endpoints(&self) -> Vec<&EndpointEntry> {
        let mut v: Vec<&EndpointEntry> = self.endpoints.iter().flatten().collect();
        v.sort_by(|a, b| {
            (a.host.as_str(), a.path.as_str(), a.method.as_str()).cmp(&(
                b.host.as_str(),
                b.path.as_str(),
                b.method.as_str(),
            ))
        });
        v
    }

    pub fn hosts(&self) -> &[HostEntry] {
        &self.hosts
    }

    /// Store records of the endpoints changed since the last call, and the ids of endpoints
    /// that went away (folded into another); clears the marks. For the state store and
    /// change events.
    pub fn take_changed(&mut self) -> (Vec<crate::store::EndpointRecord>, Vec<String>) {
        let removed = std::mem::take(&mut self.removed);
        let mut out = Vec::new();
        for e in self.endpoints.iter().flatten().filter(|e| e.changed) {
            out.push(e.record(self.endpoint_json(e)));
        }
        for e in self.endpoints.iter_mut().flatten() {
            e.changed = false;
        }
        (out, removed)
    }

    /// An endpoint as written in the inventory: [`EndpointEntry::to_json`] with the evidence
    /// of its template (why each path parameter is one: rule, redacted samples, counts).
    pub fn endpoint_json(&self, e: &EndpointEntry) -> Value {
        let mut v = e.to_json();
        v["evidence"] = self.evidence(e);
        v
    }

    /// Every counter, for `--stats` and metrics.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let s = &self.stats;
        let mut v = vec![
            ("inventory_calls".to_owned(), s.calls),
            ("inventory_calls_counted".to_owned(), s.calls_counted),
            ("inventory_endpoints".to_owned(), self.live_endpoints as u64),
            (
                "inventory_endpoints_created".to_owned(),
                s.endpoints_created,
            ),
            ("inventory_endpoints_merged".to_owned(), s.endpoints_merged),
            ("inventory_hosts".to_owned(), self.hosts.len() as u64),
            (
                "inventory_hosts_dropped_calls".to_owned(),
                s.hosts_dropped_calls,
            ),
            (
                "inventory_endpoints_dropped_calls".to_owned(),
                s.endpoints_dropped_calls,
            ),
            ("inventory_unmatched_404".to_owned(), s.unmatched_404),
            ("inventory_bodies_analysed".to_owned(), s.bodies_analysed),
            ("inventory_bodies_not_json".to_owned(), s.bodies_not_json),
            (
                "inventory_graphql_operations".to_owned(),
                s.graphql_operations,
            ),
            ("inventory_sensitive_hits".to_owned(), s.sensitive_hits),
            ("inventory_methods_overflow".to_owned(), s.methods_overflow),
            (
                "sensitive_scan_truncated".to_owned(),
                s.sensitive_scan_truncated,
            ),
            (
                "sensitive_json_too_deep".to_owned(),
                s.sensitive_json_too_deep,
            ),
            (
                "sensitive_json_too_many_values".to_owned(),
                s.sensitive_json_too_many_values,
            ),
            (
                "sensitive_too_many_findings".to_owned(),
                s.sensitive_too_many_findings,
            ),
        ];
        let groups = [
            ("params_", self.parts.param_stats.counters()),
            ("schema_", self.parts.schema_stats.counters()),
            ("graphql_", self.parts.graphql_stats.counters()),
            ("templates_", self.templater.stats().counters()),
        ];
        for (prefix, counters) in groups {
            v.extend(
                counters
                    .into_iter()
                    .map(|(n, x)| (format!("{prefix}{n}"), x)),
            );
        }
        v
    }

    /// The whole inventory as JSON: `{"endpoints": [...], "hosts": [...]}`.
    pub fn to_json(&self) -> Value {
        let endpoints: Vec<Value> = self
            .endpoints()
            .iter()
            .map(|e| self.endpoint_json(e))
            .collect();
        let mut hosts: Vec<&HostEntry> = self.hosts.iter().collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        let hosts: Vec<Value> = hosts
            .iter()
            .map(|h| {
                json!({
                    "host": h.name,
                    "calls": h.calls,
                    "endpoints": h.endpoints,
                    "first_seen": h.first_seen.to_string(),
                    "last_seen": h.last_seen.to_string(),
                    "clients": h.clients.count(),
                    "unmatched_404": h.unmatched_404,
                    "overflow_calls": h.overflow_calls,
                })
            })
            .collect();
        json!({ "endpoints": endpoints, "hosts": hosts })
    }

    /// Evidence of the templated path of an endpoint: why each parameter is one.
    pub fn evidence(&self, e: &EndpointEntry) -> Value {
        serde_json::to_value(self.templater.evidence(e.route)).unwrap_or(Value::Null)
    }
}

/// The name under which a credential scheme is counted: `basic`, `bearer_jwt`,
/// `bearer_opaque`, `digest`, `api_key_header:x-api-key`, `api_key_query:api_key`,
/// `session_cookie:sessionid`, `other:negotiate`.
pub fn auth_label(s: &AuthScheme) -> String {
    let kind = match s {
        AuthScheme::Basic { .. } => "basic",
        AuthScheme::Bearer {
            token: auth::TokenKind::Jwt,
        } => "bearer_jwt",
        AuthScheme::Bearer { .. } => "bearer_opaque",
        AuthScheme::Digest => "digest",
        AuthScheme::Other { .. } => "other",
        AuthScheme::ApiKeyHeader { .. } => "api_key_header",
        AuthScheme::ApiKeyQuery { .. } => "api_key_query",
        AuthScheme::SessionCookie { .. } => "session_cookie",
    };
    match s.name() {
        Some(n) => format!("{kind}:{}", n.as_str().to_ascii_lowercase()),
        None => kind.to_owned(),
    }
}

/// Updates endpoint `e` with the call `f`.
fn update(e: &mut EndpointEntry, f: &mut CallFacts, parts: &mut Parts, stats: &mut InventoryStats) {
    let cfg = &parts.cfg;
    e.calls += 1;
    e.changed = true;
    e.first_seen = e.first_seen.min(f.ts);
    e.last_seen = e.last_seen.max(f.ts);
    let mut status = [0u8; 5];
    let status = match f.status {
        Some(s) => {
            let n = status_text(s, &mut status);
            std::str::from_utf8(&status[..n]).unwrap_or("none")
        }
        None => "none",
    };
    e.statuses.add(status, cfg.max_tally_keys);
    if let Some(us) = f.latency_us {
        e.latency.record(us);
    }
    e.req_sizes.record(f.req_bytes);
    if let Some(n) = f.resp_bytes {
        e.resp_sizes.record(n);
    }
    e.clients.insert(ip_hash(f.client), cfg.distinct_precision);
    for s in f.auth.schemes() {
        e.auth.add(&auth_label(s), cfg.max_tally_keys);
    }
    if f.auth.is_authenticated() {
        e.authenticated_calls += 1;
    }
    if let Some(j) = f.auth.jwt() {
        e.jwt_algs.add(j.alg.as_str(), cfg.max_tally_keys);
        if let Some(iss) = &j.iss {
            e.jwt_issuers.add(iss.as_str(), cfg.max_tally_keys);
        }
        if !j.has_exp() {
            e.jwt_without_exp += 1;
        }
    }
    // Every call, with or without a query, so `required` means "in every call".
    let q = f.query().unwrap_or("");
    e.query
        .observe_query(q, &cfg.params, &mut parts.param_stats);
    if !q.is_empty() {
        let limits = parts
            .scanner
            .scan_urlencoded(q.as_bytes(), &mut |kind, name| {
                add_sensitive(e, kind.as_str(), &format!("query:{name}"), cfg, stats);
            });
        note_limits(stats, limits);
    }
    let limits = parts.scanner.scan_path(f.path(), &mut |kind| {
        add_sensitive(e, kind.as_str(), "path", cfg, stats);
    });
    note_limits(stats, limits);
    if let Some(t) = &f.req_type {
        e.req_types.add(t, cfg.max_tally_keys);
    }
    if let Some(t) = &f.resp_type {
        e.resp_types.add(t, cfg.max_tally_keys);
    }
    if let Some(b) = f.body.take() {
        e.body_samples += 1;
        stats.bodies_analysed += 1;
        analyse_bodies(e, f, &b, parts, stats);
    }
}

/// Counts the bounds a sensitive-data scan hit.
fn note_limits(stats: &mut InventoryStats, l: crate::sensitive::ScanLimits) {
    stats.sensitive_scan_truncated += u64::from(l.bytes);
    stats.sensitive_json_too_deep += u64::from(l.depth);
    stats.sensitive_json_too_many_values += u64::from(l.values);
    stats.sensitive_too_many_findings += u64::from(l.findings);
}

/// Writes the decimal status into `buf`, returning its length.
fn status_text(s: u16, buf: &mut [u8; 5]) -> usize {
    let mut n = s;
    let mut tmp = [0u8; 5];
    let mut i = 0;
    loop {
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        i += 1;
        if n == 0 || i == 5 {
            break;
        }
    }
    for j in 0..i {
        buf[j] = tmp[i - 1 - j];
    }
    i
}

fn add_sensitive(
    e: &mut EndpointEntry,
    kind: &'static str,
    location: &str,
    cfg: &InventoryConfig,
    stats: &mut InventoryStats,
) {
    stats.sensitive_hits += 1;
    if e.last_call_sensitive.len() < cfg.max_tally_keys {
        e.last_call_sensitive.push((kind, location.to_owned()));
    }
    let place = SensitivePlace {
        kind: kind.to_owned(),
        location: location.to_owned(),
    };
    if let Some(n) = e.sensitive.get_mut(&place) {
        *n += 1;
    } else if e.sensitive.len() < cfg.max_tally_keys * 4 {
        e.sensitive.insert(place, 1);
    }
}

/// Schemas, form fields, GraphQL operations and sensitive data of a sampled call's bodies.
fn analyse_bodies(
    e: &mut EndpointEntry,
    f: &CallFacts,
    b: &BodyFacts,
    parts: &mut Parts,
    stats: &mut InventoryStats,
) {
    let Parts {
        cfg,
        scanner,
        param_stats,
        schema_stats,
        graphql_stats,
    } = parts;
    if !b.request.is_empty() {
        let rt = f.req_type.as_deref().unwrap_or("");
        let is_json = rt == "application/json" || rt.ends_with("+json");
        if is_json || (rt.is_empty() && b.request.first() == Some(&b'{')) {
            match schema::parse_json(&b.request, !b.request_complete) {
                Ok(body) => {
                    if is_graphql_body(body.value()) {
                        if let Ok(ops) = graphql::parse_json_request(
                            &b.request,
                            !b.request_complete,
                            &cfg.graphql,
                            graphql_stats,
                        ) {
                            add_graphql(e, &ops, cfg, stats);
                        }
                    }
                    let limits = scanner.scan_json(body.value(), &mut |kind, path| {
                        add_sensitive(
                            e,
                            kind.as_str(),
                            &format!("request_body:{path}"),
                            cfg,
                            stats,
                        );
                    });
                    note_limits(stats, limits);
                    let key = if rt.is_empty() {
                        "application/json"
                    } else {
                        rt
                    };
                    if let Some(s) = schema_slot(&mut e.req_schemas, key, cfg) {
                        s.observe_body(&body, &cfg.schema, schema_stats);
                    }
                }
                Err(_) => stats.bodies_not_json += 1,
            }
        } else if rt == "application/x-www-form-urlencoded" {
            e.form
                .observe_form(&b.request, !b.request_complete, &cfg.params, param_stats);
            let limits = scanner.scan_urlencoded(&b.request, &mut |kind, name| {
                add_sensitive(
                    e,
                    kind.as_str(),
                    &format!("request_body:{name}"),
                    cfg,
                    stats,
                );
            });
            note_limits(stats, limits);
        } else if rt == "multipart/form-data" {
            if let Some(bd) = f.boundary.as_deref() {
                e.form
                    .observe_multipart(&b.request, bd, &cfg.params, param_stats);
            }
        } else if rt == "application/graphql" {
            let name = f.query().and_then(|q| {
                crate::params::form_pairs(q.as_bytes())
                    .find(|p| p.name == "operationName")
                    .and_then(|p| p.value.map(|v| v.into_owned()))
            });
            if let Ok(op) = graphql::parse_document_request(
                &b.request,
                name.as_deref(),
                &cfg.graphql,
                graphql_stats,
            ) {
                add_graphql(e, std::slice::from_ref(&op), cfg, stats);
            }
        } else {
            let limits = scanner.scan_text(&b.request, &mut |kind| {
                add_sensitive(e, kind.as_str(), "request_body", cfg, stats);
            });
            note_limits(stats, limits);
        }
    }
    if !b.response.is_empty() {
        let rt = f.resp_type.as_deref().unwrap_or("");
        let is_json = rt == "application/json" || rt.ends_with("+json");
        if is_json {
            match schema::parse_json(&b.response, !b.response_complete) {
                Ok(body) => {
                    let limits = scanner.scan_json(body.value(), &mut |kind, path| {
                        add_sensitive(
                            e,
                            kind.as_str(),
                            &format!("response_body:{path}"),
                            cfg,
                            stats,
                        );
                    });
                    note_limits(stats, limits);
                    let class = f
                        .status
                        .map_or('x', |s| char::from(b'0' + (s / 100 % 10) as u8));
                    let key = format!("{class}xx {rt}");
                    if let Some(s) = schema_slot(&mut e.resp_schemas, &key, cfg) {
                        s.observe_body(&body, &cfg.schema, schema_stats);
                    }
                }
                Err(_) => stats.bodies_not_json += 1,
            }
        } else if rt.starts_with("text/") || rt.is_empty() || rt.ends_with("xml") {
            let limits = scanner.scan_text(&b.response, &mut |kind| {
                add_sensitive(e, kind.as_str(), "response_body", cfg, stats);
            });
            note_limits(stats, limits);
        }
    }
}

fn schema_slot<'a>(
    m: &'a mut BTreeMap<String, Schema>,
    key: &str,
    cfg: &InventoryConfig,
) -> Option<&'a mut Schema> {
    if !m.contains_key(key) {
        if m.len() >= cfg.max_schemas_per_endpoint {
            return None;
        }
        m.insert(key.to_owned(), Schema::new());
    }
    m.get_mut(key)
}

fn is_graphql_body(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.get("query").is_some_and(Value::is_string),
        Value::Array(a) => a.first().is_some_and(is_graphql_body),
        _ => false,
    }
}

/// Counts GraphQL operations under their endpoint as `query GetUser`, `mutation (anonymous)`.
fn add_graphql(
    e: &mut EndpointEntry,
    ops: &[graphql::Operation],
    cfg: &InventoryConfig,
    stats: &mut InventoryStats,
) {
    for op in ops {
        stats.graphql_operations += 1;
        let ty = op.kind.map_or("persisted", |k| k.as_str());
        let label = format!("{ty} {}", op.name.as_deref().unwrap_or("(anonymous)"));
        e.graphql.add(&label, cfg.max_tally_keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiscope_http::{Anomalies, Body, Request, Response, Version};

    fn ep(s: &str) -> SocketAddr {
        let (ip, port) = s.rsplit_once(':').unwrap();
        SocketAddr {
            ip: ip.parse().unwrap(),
            port: port.parse().unwrap(),
        }
    }

    fn body(bytes: &[u8]) -> Body {
        Body {
            wire_bytes: bytes.len() as u64,
            bytes: bytes.len() as u64,
            prefix: bytes.to_vec(),
            ..Body::default()
        }
    }

    /// A call at second `t`: `req` is "METHOD target", headers as (name, value).
    fn call(
        t: u64,
        req: &str,
        headers: &[(&str, &str)],
        status: u16,
        resp_type: Option<&str>,
        resp_body: &[u8],
    ) -> Call {
        let (method, target) = req.split_once(' ').unwrap();
        let ts = Timestamp::from_secs(t);
        Call {
            request: Request {
                ts,
                ts_end: ts,
                method: method.to_owned().into(),
                target: target.into(),
                version: Version::Http11,
                headers: headers.iter().copied().collect(),
                body: Body::default(),
            },
            response: Some(Response {
                ts: Timestamp::from_nanos(ts.as_nanos() + 2_000_000),
                ts_end: ts,
                status,
                reason: "".into(),
                version: Version::Http11,
                headers: resp_type.map(|t| ("Content-Type", t)).into_iter().collect(),
                body: body(resp_body),
                interim: Vec::new(),
            }),
            anomalies: Anomalies::new(),
            seq: 0,
            bodies_kept: true,
        }
    }

    fn feed(inv: &mut Inventory, mut c: Call, client: &str) -> Option<String> {
        let f = CallFacts::extract(
            &mut c,
            ep(client),
            ep("10.0.0.1:80"),
            true,
            &KeyedHasher::new(&[0; 32]),
        );
        let mut f = f;
        inv.observe(&mut f).map(str::to_owned)
    }

    fn host(h: &str) -> Vec<(&str, &str)> {
        vec![("Host", h)]
    }

    #[test]
    fn endpoints_are_keyed_by_host_method_and_template() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let hh = host("API.Example.com:80");
        for i in 0..5 {
            let label = feed(
                &mut inv,
                call(i, &format!("GET /users/{}", 100 + i), &hh, 200, None, b""),
                &format!("192.0.2.{i}:1000"),
            );
            assert_eq!(label.as_deref(), Some("GET api.example.com /users/{id}"));
        }
        feed(
            &mut inv,
            call(9, "DELETE /users/7", &hh, 204, None, b""),
            "192.0.2.1:9",
        );
        let eps = inv.endpoints();
        assert_eq!(eps.len(), 2);
        let get = eps.iter().find(|e| e.method == "GET").unwrap();
        assert_eq!(get.calls, 5);
        assert_eq!(get.clients.count(), 5);
        assert_eq!(get.statuses.counts["200"], 5);
        assert_eq!(get.first_seen, Timestamp::from_secs(0));
        assert_eq!(get.last_seen, Timestamp::from_secs(4));
        let p50 = get.latency.summary().p50_us.unwrap();
        assert!(
            (1990..=2010).contains(&p50),
            "2 ms within the histogram's 1 %: {p50}"
        );
        let j = inv.to_json();
        assert_eq!(j["endpoints"][0]["path"], "/users/{id}");
        assert_eq!(j["hosts"][0]["host"], "api.example.com");
    }

    #[test]
    fn host_falls_back_to_the_server_address() {
        assert_eq!(normalize_host(None, ep("10.1.2.3:8080")), "10.1.2.3:8080");
        assert_eq!(
            normalize_host(Some("bad host\u{1}"), ep("10.1.2.3:80")),
            "10.1.2.3:80"
        );
        assert_eq!(
            normalize_host(Some("Shop.Example.:80"), ep("10.1.2.3:80")),
            "shop.example"
        );
        assert_eq!(
            normalize_host(Some("shop.example:8443"), ep("10.1.2.3:80")),
            "shop.example:8443"
        );
    }

    #[test]
    fn unmatched_404s_create_no_endpoints() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let hh = host("api.example.com");
        feed(
            &mut inv,
            call(0, "GET /users/1", &hh, 200, None, b""),
            "192.0.2.1:1",
        );
        for i in 0..500 {
            let label = feed(
                &mut inv,
                call(1, &format!("GET /wp-admin/x{i}.php"), &hh, 404, None, b""),
                "198.51.100.7:5",
            );
            assert_eq!(label, None);
        }
        // A 404 on a known route still counts there.
        let label = feed(
            &mut inv,
            call(2, "GET /users/99", &hh, 404, None, b""),
            "192.0.2.1:1",
        );
        assert_eq!(label.as_deref(), Some("GET api.example.com /users/{id}"));
        assert_eq!(inv.endpoints().len(), 1);
        assert_eq!(inv.hosts()[0].unmatched_404, 500);
        assert_eq!(inv.stats.unmatched_404, 500);
    }

    #[test]
    fn endpoint_bounds_are_counted() {
        let cfg = InventoryConfig {
            max_endpoints_per_host: 2,
            ..InventoryConfig::default()
        };
        let mut inv = Inventory::new(cfg, None);
        let hh = host("api.example.com");
        for (i, p) in ["/a", "/b", "/c", "/d"].iter().enumerate() {
            feed(
                &mut inv,
                call(i as u64, &format!("GET {p}"), &hh, 200, None, b""),
                "192.0.2.1:1",
            );
        }
        assert_eq!(inv.endpoints().len(), 2);
        assert_eq!(inv.hosts()[0].overflow_calls, 2);
        assert_eq!(inv.stats.endpoints_dropped_calls, 2);
    }

    #[test]
    fn auth_schemes_and_share_are_counted_without_values() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiMTIzIn0.c2lnbmF0dXJlc2lnbmF0dXJlc2ln";
        let bearer = format!("Bearer {jwt}");
        feed(
            &mut inv,
            call(
                0,
                "GET /me",
                &[("Host", "a.example"), ("Authorization", &bearer)],
                200,
                None,
                b"",
            ),
            "192.0.2.1:1",
        );
        feed(
            &mut inv,
            call(
                1,
                "GET /me",
                &[
                    ("Host", "a.example"),
                    ("X-API-Key", "k3y-0123456789abcdef0123"),
                ],
                200,
                None,
                b"",
            ),
            "192.0.2.1:1",
        );
        feed(
            &mut inv,
            call(2, "GET /me", &host("a.example"), 200, None, b""),
            "192.0.2.1:1",
        );
        let e = inv.endpoints()[0].clone();
        assert_eq!(e.auth.counts.get("bearer_jwt"), Some(&1));
        assert_eq!(e.auth.counts.get("api_key_header:x-api-key"), Some(&1));
        assert_eq!(e.authenticated_calls, 2);
        assert_eq!(e.jwt_algs.counts.get("HS256"), Some(&1));
        assert_eq!(e.jwt_without_exp, 1);
        let text = inv.to_json().to_string();
        assert!(!text.contains("k3y-0123456789abcdef0123"), "{text}");
        assert!(!text.contains(jwt), "{text}");
        assert_eq!(inv.to_json()["endpoints"][0]["authenticated_share"], 0.667);
    }

    #[test]
    fn bodies_give_schemas_and_sensitive_places_never_values() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let hh = host("a.example");
        let body = br#"{"id": 7, "email": "alice@example.com", "card": "4111 1111 1111 1111", "created": "2024-01-05T10:20:30Z"}"#;
        feed(
            &mut inv,
            call(
                0,
                "GET /users/7",
                &hh,
                200,
                Some("application/json; charset=utf-8"),
                body,
            ),
            "192.0.2.1:1",
        );
        let j = inv.to_json();
        let e = &j["endpoints"][0];
        let schema = &e["response_schemas"]["2xx application/json"];
        assert_eq!(schema["properties"]["id"]["type"], "integer", "{schema}");
        assert_eq!(
            schema["properties"]["created"]["format"], "date-time",
            "{schema}"
        );
        let kinds: Vec<&str> = e["sensitive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"email") && kinds.contains(&"card_number"),
            "{kinds:?}"
        );
        let text = j.to_string();
        assert!(
            !text.contains("alice@example.com") && !text.contains("4111"),
            "{text}"
        );
    }

    #[test]
    fn learned_parameters_merge_endpoint_statistics() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let hh = host("shop.example");
        let names = [
            "red-shoe",
            "blue-hat",
            "green-scarf",
            "black-boot",
            "white-sock",
            "grey-coat",
            "pink-belt",
            "brown-bag",
            "gold-ring",
            "navy-tie",
            "teal-cap",
            "plum-vest",
            "lime-glove",
            "rose-dress",
            "sand-skirt",
            "jade-watch",
        ];
        let mut n = 0;
        for round in 0..3 {
            for name in names {
                n += 1;
                feed(
                    &mut inv,
                    call(
                        n,
                        &format!("GET /products/{name}/reviews"),
                        &hh,
                        200,
                        None,
                        b"",
                    ),
                    "192.0.2.1:1",
                );
            }
            let _ = round;
        }
        let eps = inv.endpoints();
        let total: u64 = eps.iter().map(|e| e.calls).sum();
        assert_eq!(total, 48, "no call is lost when endpoints merge");
        assert!(
            eps.len() < names.len(),
            "names were learnt as a parameter: {:?}",
            eps.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
    }

    #[test]
    fn saved_state_reloads_and_counting_goes_on_identically() {
        let hh = host("a.example");
        let body = br#"{"id": 7, "email": "alice@example.com", "tags": ["x"], "score": 2.5}"#;
        let calls = |from: u64| {
            (from..from + 20).map(move |i| {
                let mut c = call(
                    i,
                    &format!("GET /users/{}?page={i}&sort=asc", i % 7),
                    &[
                        ("Host", "a.example"),
                        ("Authorization", "Bearer abcdefghijklmnop0123456789"),
                    ],
                    if i % 5 == 0 { 404 } else { 200 },
                    Some("application/json"),
                    body,
                );
                c.request.method = if i % 3 == 0 {
                    "POST".into()
                } else {
                    "GET".into()
                };
                c
            })
        };
        let mut a = Inventory::new(InventoryConfig::default(), None);
        for c in calls(0) {
            feed(&mut a, c, "192.0.2.1:1");
        }
        feed(
            &mut a,
            call(30, "GET /health", &hh, 200, None, b""),
            "192.0.2.9:1",
        );
        let (records, _) = a.take_changed();
        let mut b = Inventory::new(InventoryConfig::default(), None);
        assert_eq!(b.restore(&records), 0, "every record reads back");
        let strip = |mut j: Value| {
            // Host-level figures are rebuilt from the endpoints, and templating evidence
            // starts afresh (rule `restored`): neither is saved.
            j["hosts"] = Value::Null;
            for e in j["endpoints"].as_array_mut().unwrap() {
                e["evidence"] = Value::Null;
            }
            j
        };
        assert_eq!(strip(a.to_json()), strip(b.to_json()));
        for c in calls(100) {
            feed(&mut a, c, "192.0.2.2:1");
        }
        for c in calls(100) {
            feed(&mut b, c, "192.0.2.2:1");
        }
        assert_eq!(strip(a.to_json()), strip(b.to_json()));
        // A damaged record is skipped, not fatal.
        let mut bad = records[0].clone();
        bad.json = "{\"state\": {\"calls\": \"many\"}}".into();
        let mut c = Inventory::new(InventoryConfig::default(), None);
        assert_eq!(c.restore(&[bad]), 1);
    }

    #[test]
    fn notes_tell_detectors_what_the_call_carried() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let mut c = call(
            0,
            "GET /users/42/orders/7?email=bob%40example.com",
            &[
                ("Host", "a.example"),
                ("X-Forwarded-For", "203.0.113.9, 10.0.0.2"),
                ("Authorization", "Basic YWxpY2U6czNjcmV0"),
            ],
            200,
            None,
            b"",
        );
        let h = KeyedHasher::new(&[0; 32]);
        let mut f = CallFacts::extract(&mut c, ep("10.0.0.2:5000"), ep("10.0.0.1:80"), false, &h);
        assert_eq!(f.forwarded_for, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(
            f.principal.map(|p| p.kind),
            Some(crate::principal::PrincipalKind::BasicUser)
        );
        let label = inv.observe(&mut f).map(str::to_owned);
        assert_eq!(
            label.as_deref(),
            Some("GET a.example /users/{user_id}/orders/{id}")
        );
        let n = inv.notes();
        assert_eq!(
            n.path_params,
            [
                ("user_id".to_owned(), "42".to_owned()),
                ("id".to_owned(), "7".to_owned())
            ]
        );
        let e = inv.endpoint_at(n.endpoint.unwrap()).unwrap();
        assert_eq!(e.last_call_sensitive, [("email", "query:email".to_owned())]);
        // A scanner's 404 on an unknown path: noted, not counted.
        let mut c = call(1, "GET /.git/config", &host("a.example"), 404, None, b"");
        let mut f = CallFacts::extract(&mut c, ep("10.0.0.3:5000"), ep("10.0.0.1:80"), false, &h);
        assert_eq!(inv.observe(&mut f), None);
        assert!(inv.notes().unmatched_404 && inv.notes().endpoint.is_none());
    }

    #[test]
    fn sampler_takes_the_first_calls_of_a_shape_in_each_bucket_then_one_in_n() {
        let cfg = InventoryConfig {
            body_sample_first: 2,
            body_sample_every: 4,
            ..InventoryConfig::default()
        };
        let mut s = BodySampler::new(&cfg);
        let picks: Vec<bool> = (0..8)
            .map(|i| s.sample(Some("h"), "GET", &format!("/users/{i}"), 7, i))
            .collect();
        assert_eq!(picks, [true, true, false, true, false, false, false, true]);
        assert!(
            s.sample(Some("h"), "GET", "/orders/1", 7, 8),
            "a new shape is sampled"
        );
        assert!(
            s.sample(Some("h"), "GET", "/users/9", 8, 0),
            "so is a known shape in another bucket"
        );
        assert!(!s.sample(
            Some("h"),
            "GET",
            "/users/9",
            7 + apiscope_capture::FLOW_BUCKETS,
            0
        ));
    }

    #[test]
    fn set_specs_rematches_the_endpoints_seen() {
        let mut inv = Inventory::new(InventoryConfig::default(), None);
        let hh = host("api.example.com");
        for i in 0..3 {
            feed(
                &mut inv,
                call(i, "GET /pets/mine", &hh, 200, None, b""),
                "192.0.2.1:1000",
            );
        }
        let _ = inv.take_changed();
        let label = |inv: &Inventory| {
            let e = inv.endpoints()[0];
            (e.in_spec, e.deprecated)
        };
        assert_eq!(label(&inv), (None, false));
        let yaml = r#"
openapi: 3.0.3
info: {title: Pets, version: "1"}
servers: [{url: "https://api.example.com"}]
paths:
  /pets/mine:
    get: {operationId: myPets, deprecated: true, responses: {"200": {description: ok}}}
"#;
        let mut specs = SpecSet::new();
        specs.add(crate::spec::Spec::parse(yaml, "pets.yaml").unwrap(), &[]);
        inv.set_specs(Some(specs));
        assert_eq!(label(&inv), (Some(true), true));
        let (changed, _) = inv.take_changed();
        assert_eq!(changed.len(), 1, "the re-matched endpoint is stored again");
        inv.set_specs(None);
        assert_eq!(label(&inv), (None, false));
    }

    #[test]
    fn label_gives_every_call_the_endpoint_observe_gives() {
        // Routes learnt and merged over time, 404s on known and unknown paths, several hosts,
        // an absolute-form target, and the endpoint bound reached part way.
        let cfg = InventoryConfig {
            max_endpoints: 6,
            ..InventoryConfig::default()
        };
        let mut full = Inventory::new(cfg.clone(), None);
        let mut labels = Inventory::new(cfg, None);
        let hasher = KeyedHasher::new(&[0; 32]);
        let mut targets = Vec::new();
        for i in 0..40u64 {
            targets.push((format!("GET /users/{}", 1000 + i * 7), "a.test", 200));
            targets.push((format!("PUT /orders/{i}/items/{}", i % 3), "b.test", 201));
            if i % 5 == 0 {
                targets.push(("GET /nowhere".to_owned(), "a.test", 404));
                targets.push((format!("GET /users/{}", 5000 + i), "a.test", 404));
            }
            if i % 9 == 0 {
                targets.push((format!("POST /x{i}/login"), "c.test", 200));
                targets.push(("GET http://d.test/health".to_owned(), "", 200));
            }
        }
        let mut seen = 0;
        for (t, (req, h, status)) in targets.iter().enumerate() {
            let hh = host(h);
            let headers: &[(&str, &str)] = if h.is_empty() { &[] } else { &hh };
            let (client, server) = (ep("192.0.2.9:4000"), ep("10.0.0.1:80"));
            let mut c = call(t as u64, req, headers, *status, None, b"");
            let mut f = CallFacts::extract(&mut c, client, server, true, &hasher);
            let want = full.observe(&mut f).map(str::to_owned);
            let mut c = call(t as u64, req, headers, *status, None, b"");
            let got = labels.label(&CallFacts::route(&mut c, client, server));
            assert_eq!(got, want.as_deref(), "call {t}: {req}");
            seen += usize::from(want.is_some());
        }
        assert!(
            seen > 90,
            "most calls are labelled: {seen} of {}",
            targets.len()
        );
        assert!(
            full.stats.endpoints_dropped_calls > 0,
            "the bound was reached"
        );
        assert_eq!(
            labels.stats.endpoints_dropped_calls,
            full.stats.endpoints_dropped_calls
        );
        assert_eq!(labels.stats.unmatched_404, full.stats.unmatched_404);
    }
}
