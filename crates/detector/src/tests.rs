//! The detections driven end to end through the inventory with synthetic calls: for every
//! kind, traffic that must raise it and look-alike traffic that must not.

use std::collections::BTreeMap;

use apiscope_capture::{Endpoint as SocketAddr, Timestamp};
use apiscope_http::{Anomalies, Anomaly, Body, Call, Headers, Request, Response, Version};
use apiscope_inventory::inventory::{CallFacts, Inventory, InventoryConfig};
use apiscope_inventory::keyed::KeyedHasher;
use apiscope_inventory::spec::{Spec, SpecSet};

use crate::{Detector, DetectorConfig, Finding, FindingKind, Severity, UncoveredHosts};

const SHOP_SPEC: &str = include_str!("../../../fixtures/scenarios/shop-openapi.yaml");
/// 2023-11-14T22:13:20Z, in ms.
const T0: u64 = 1_700_000_000_000;
const SECRET: [u8; 32] = [9; 32];

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

/// One synthetic exchange.
#[derive(Clone)]
struct Ex<'a> {
    /// "METHOD target".
    req: &'a str,
    headers: Vec<(&'a str, String)>,
    req_body: &'a [u8],
    status: u16,
    resp_type: Option<&'a str>,
    resp_body: &'a [u8],
    anomalies: Anomalies,
}

fn ex(req: &str, status: u16) -> Ex<'_> {
    Ex {
        req,
        headers: Vec::new(),
        req_body: b"",
        status,
        resp_type: None,
        resp_body: b"",
        anomalies: Anomalies::new(),
    }
}

impl<'a> Ex<'a> {
    fn h(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.h("Authorization", format!("Bearer {token}"))
    }

    fn json(mut self, body: &'a [u8]) -> Self {
        self.resp_type = Some("application/json");
        self.resp_body = body;
        self
    }

    fn form(mut self, body: &'a [u8]) -> Self {
        self.req_body = body;
        self.h("Content-Type", "application/x-www-form-urlencoded")
    }
}

fn to_call(t_ms: u64, x: &Ex<'_>) -> Call {
    let (method, target) = x.req.split_once(' ').unwrap();
    let ts = Timestamp::from_nanos(t_ms * 1_000_000);
    let has_host = x
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"));
    let headers: Headers = (!has_host)
        .then_some(("Host", "api.shop.test"))
        .into_iter()
        .chain(x.headers.iter().map(|(n, v)| (*n, v.as_str())))
        .collect();
    Call {
        request: Request {
            ts,
            ts_end: ts,
            method: method.to_owned().into(),
            target: target.into(),
            version: Version::Http11,
            headers,
            body: body(x.req_body),
        },
        response: Some(Response {
            ts: Timestamp::from_nanos(ts.as_nanos() + 2_000_000),
            ts_end: ts,
            status: x.status,
            reason: "".into(),
            version: Version::Http11,
            headers: x
                .resp_type
                .map(|t| ("Content-Type", t))
                .into_iter()
                .collect(),
            body: body(x.resp_body),
            interim: Vec::new(),
        }),
        anomalies: x.anomalies,
        seq: 0,
        bodies_kept: true,
    }
}

/// An inventory and a detector fed like the sink thread feeds them.
struct Rig {
    inv: Inventory,
    det: Detector,
    hasher: KeyedHasher,
    last_tick_s: u64,
}

impl Rig {
    fn new(cfg: DetectorConfig) -> Rig {
        Rig::build(cfg, None)
    }

    fn with_spec(cfg: DetectorConfig) -> Rig {
        let mut set = SpecSet::new();
        set.add(Spec::parse(SHOP_SPEC, "shop-openapi.yaml").unwrap(), &[]);
        Rig::build(cfg, Some(set))
    }

    fn build(cfg: DetectorConfig, specs: Option<SpecSet>) -> Rig {
        assert!(cfg.validate().is_empty());
        Rig {
            inv: Inventory::new(InventoryConfig::default(), specs),
            det: Detector::new(cfg, KeyedHasher::new(&SECRET)),
            hasher: KeyedHasher::new(&SECRET),
            last_tick_s: 0,
        }
    }

    /// Ticks every second of capture time up to `t_ms` (relative to T0).
    fn tick_to(&mut self, t_ms: u64) {
        let s = (T0 + t_ms) / 1000;
        if self.last_tick_s == 0 {
            self.last_tick_s = s;
        }
        while self.last_tick_s < s {
            self.last_tick_s += 1;
            self.det
                .tick(Timestamp::from_secs(self.last_tick_s), &self.inv);
        }
    }

    /// One call at `t_ms` after T0 from `client` (`ip:port`).
    fn send(&mut self, t_ms: u64, client: &str, x: &Ex<'_>) {
        self.tick_to(t_ms);
        let mut call = to_call(T0 + t_ms, x);
        let mut f =
            CallFacts::extract(&mut call, ep(client), ep("10.0.0.1:80"), true, &self.hasher);
        self.inv.observe(&mut f);
        self.det.observe(&f, &self.inv);
    }

    fn finish(&mut self) {
        self.det.finish(&self.inv);
    }

    fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for f in self.det.findings() {
            *m.entry(f.kind.as_str()).or_insert(0) += 1;
        }
        m
    }

    fn of(&self, kind: FindingKind) -> Vec<&Finding> {
        self.det
            .findings()
            .into_iter()
            .filter(|f| f.kind == kind)
            .collect()
    }

    fn assert_none(&self) {
        let all: Vec<String> = self
            .det
            .findings()
            .iter()
            .map(|f| format!("{} {}", f.kind, f.summary))
            .collect();
        assert!(all.is_empty(), "expected no finding: {all:#?}");
    }
}

fn kinds(list: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    list.iter().copied().collect()
}

/// An opaque bearer token for user `n`.
fn token(n: u32) -> String {
    format!("tok{n:04}abcdefghijklmnopqrstuv")
}

// ------------------------------------------------------------------------------- spec status

#[test]
fn undocumented_endpoints_are_shadow_and_documented_ones_are_not() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    for i in 0..5u64 {
        r.send(
            i * 1000,
            "192.0.2.1:1000",
            &ex(&format!("GET /api/v2/products/{}", 10 + i), 200),
        );
        r.send(
            i * 1000 + 1,
            "192.0.2.1:1000",
            &ex("GET /api/v2/products", 200),
        );
    }
    r.assert_none();
    // An undocumented endpoint answering 403 only is not reported (not shown to be served).
    r.send(6000, "192.0.2.1:1000", &ex("GET /internal/metrics", 403));
    r.assert_none();
    for i in 0..3 {
        r.send(
            7000 + i,
            "192.0.2.1:1000",
            &ex("GET /internal/debug/vars", 200),
        );
    }
    // A method the spec does not have on a documented path.
    r.send(
        8000,
        "192.0.2.1:1000",
        &ex("DELETE /api/v2/products/3", 204),
    );
    assert_eq!(r.kinds(), kinds(&[("shadow_api", 2)]));
    let s = r.of(FindingKind::ShadowApi);
    let debug = s
        .iter()
        .find(|f| f.endpoint.as_ref().unwrap().path == "/internal/debug/vars")
        .unwrap();
    assert_eq!(debug.count, 3);
    assert_eq!(debug.owasp, Some("API9:2023"));
    assert_eq!(debug.evidence["reason"], "path_not_in_spec");
    let del = s
        .iter()
        .find(|f| f.endpoint.as_ref().unwrap().method == "DELETE")
        .unwrap();
    assert_eq!(del.evidence["reason"], "method_not_in_spec");
}

#[test]
fn hosts_no_spec_covers_are_ignored_unless_configured() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    let other = || ex("GET /status", 200).h("Host", "billing.internal");
    r.send(0, "192.0.2.1:1000", &other());
    r.assert_none();
    let mut cfg = DetectorConfig::default();
    cfg.shadow_api.uncovered_hosts = UncoveredHosts::Report;
    let mut r = Rig::with_spec(cfg);
    r.send(0, "192.0.2.1:1000", &other());
    r.send(1, "192.0.2.1:1000", &other());
    let s = r.of(FindingKind::ShadowApi);
    assert_eq!(s.len(), 1);
    assert!(s[0].endpoint.is_none());
    assert_eq!(s[0].evidence["host"], "billing.internal");
    assert_eq!(s[0].count, 2);
}

#[test]
fn without_specs_nothing_is_shadow() {
    let mut r = Rig::new(DetectorConfig::default());
    r.send(0, "192.0.2.1:1000", &ex("GET /internal/debug/vars", 200));
    r.assert_none();
}

#[test]
fn deprecated_operations_and_older_versions_are_zombies() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    r.send(0, "192.0.2.1:1000", &ex("GET /api/v2/orders/17", 200));
    r.assert_none();
    r.send(1000, "192.0.2.1:1000", &ex("GET /api/v1/orders/17", 200));
    r.send(2000, "192.0.2.2:1000", &ex("GET /api/v1/orders/18", 200));
    // Not in the spec, which serves products under v2 only.
    r.send(3000, "192.0.2.1:1000", &ex("GET /api/v1/products/5", 200));
    assert_eq!(
        r.kinds(),
        kinds(&[("zombie_api", 2)]),
        "no shadow for the old version"
    );
    let z = r.of(FindingKind::ZombieApi);
    let dep = z
        .iter()
        .find(|f| f.evidence["reason"] == "deprecated")
        .unwrap();
    assert_eq!(dep.count, 2);
    assert_eq!(dep.evidence["operation_id"], "getOrderV1");
    assert_eq!(dep.severity, Severity::Low);
    let old = z
        .iter()
        .find(|f| f.evidence["reason"] == "older_version")
        .unwrap();
    assert_eq!(
        old.evidence["newer_template"],
        "/api/v2/products/{productId}"
    );
    assert_eq!(old.endpoint.as_ref().unwrap().path, "/api/v1/products/{id}");
}

/// Calls to every documented operation but login, and to deprecated v1 never, every
/// `step_s` seconds for `minutes`.
fn orphan_traffic(r: &mut Rig, minutes: u64, step_s: u64) {
    let mut t = 0;
    while t <= minutes * 60 {
        let ms = t * 1000;
        r.send(ms, "192.0.2.1:1000", &ex("GET /api/v2/products", 200));
        r.send(ms + 1, "192.0.2.1:1000", &ex("GET /api/v2/products/7", 200));
        r.send(ms + 2, "192.0.2.1:1000", &ex("GET /api/v2/orders", 200));
        r.send(ms + 3, "192.0.2.1:1000", &ex("GET /api/v2/orders/3", 200));
        r.send(ms + 4, "192.0.2.1:1000", &ex("GET /api/v2/users/3", 200));
        t += step_s;
    }
}

#[test]
fn spec_operations_without_traffic_over_a_covered_window_are_orphans() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    orphan_traffic(&mut r, 65, 300);
    r.finish();
    assert_eq!(r.kinds(), kinds(&[("orphan_api", 1)]));
    let o = &r.of(FindingKind::OrphanApi)[0];
    let e = o.endpoint.as_ref().unwrap();
    assert_eq!(
        (e.method.as_str(), e.path.as_str()),
        ("POST", "/api/v2/login")
    );
    assert_eq!(o.evidence["operation_id"], "login");
    assert_eq!(o.evidence["last_call"], serde_json::Value::Null);
}

#[test]
fn a_capture_shorter_than_the_window_reports_no_orphan() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    orphan_traffic(&mut r, 10, 60);
    r.finish();
    r.assert_none();
}

#[test]
fn a_host_with_little_traffic_in_the_window_reports_no_orphan() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    // Other hosts are busy; the spec's host gets one call now and then (fewer than
    // min_host_calls in any hour).
    for m in 0..70u64 {
        r.send(
            m * 60_000,
            "192.0.2.1:1000",
            &ex("GET /status", 200).h("Host", "www.shop.test"),
        );
        if m % 10 == 0 {
            r.send(
                m * 60_000 + 1,
                "192.0.2.1:1000",
                &ex("GET /api/v2/products", 200),
            );
        }
    }
    r.finish();
    r.assert_none();
}

// ------------------------------------------------------------------------------- posture

#[test]
fn a_2xx_without_credentials_where_most_calls_carry_them_is_reported() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..25u32 {
        let u = i % 5;
        r.send(
            u64::from(i) * 1000,
            "192.0.2.1:1000",
            &ex(&format!("GET /api/v2/users/{u}"), 200).bearer(&token(u)),
        );
    }
    // Refused without credentials: fine.
    r.send(30_000, "203.0.113.5:1000", &ex("GET /api/v2/users/1", 401));
    r.assert_none();
    r.send(31_000, "203.0.113.5:1000", &ex("GET /api/v2/users/2", 200));
    r.send(32_000, "203.0.113.6:1000", &ex("GET /api/v2/users/3", 200));
    assert_eq!(r.kinds(), kinds(&[("unauthenticated_access", 1)]));
    let f = &r.of(FindingKind::UnauthenticatedAccess)[0];
    assert_eq!(f.count, 2);
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence["clients"].as_array().unwrap().len(), 2);
}

#[test]
fn public_endpoints_and_young_endpoints_are_not_unauthenticated_access() {
    let mut r = Rig::new(DetectorConfig::default());
    // Public: most calls without credentials.
    for i in 0..30u64 {
        let x = ex("GET /api/v2/products", 200);
        let x = if i % 3 == 0 { x.bearer(&token(1)) } else { x };
        r.send(i * 1000, "192.0.2.1:1000", &x);
    }
    // Too few calls to judge.
    for i in 0..5u64 {
        r.send(
            40_000 + i,
            "192.0.2.1:1000",
            &ex("GET /api/v2/orders", 200).bearer(&token(1)),
        );
    }
    r.send(50_000, "192.0.2.9:1000", &ex("GET /api/v2/orders", 200));
    r.assert_none();
}

#[test]
fn credentials_in_cleartext_are_reported_per_endpoint_and_place() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..3 {
        r.send(
            i,
            "192.0.2.1:1000",
            &ex("GET /api/reports", 200).h("Authorization", "Basic YWxpY2U6czNjcmV0"),
        );
    }
    r.send(
        10,
        "192.0.2.1:1000",
        &ex("GET /api/search?user=bob&password=hunter2", 200),
    );
    r.send(
        20,
        "192.0.2.1:1000",
        &ex("POST /account/login", 302).form(b"username=bob&password=hunter2"),
    );
    r.send(
        30,
        "192.0.2.1:1000",
        &ex("GET /api/export?api_key=AbCdEf0123456789XyZw", 200),
    );
    assert_eq!(r.kinds(), kinds(&[("cleartext_credentials", 4)]));
    let c = r.of(FindingKind::CleartextCredentials);
    let by = |what: &str| c.iter().find(|f| f.evidence["credential"] == what).unwrap();
    assert_eq!(by("basic_auth").count, 3);
    assert_eq!(by("basic_auth").owasp, Some("API8:2023"));
    assert_eq!(by("password_in_query").owasp, Some("API2:2023"));
    assert_eq!(
        by("password_in_query").evidence["location"],
        "query:password"
    );
    assert_eq!(
        by("password_in_body").evidence["location"],
        "request_body:password"
    );
    assert_eq!(by("api_key_in_query").severity, Severity::Medium);
    let text = serde_json::to_string(&r.det.findings()).unwrap();
    for secret in [
        "hunter2",
        "YWxpY2U6czNjcmV0",
        "s3cret",
        "AbCdEf0123456789XyZw",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn bearer_tokens_and_password_lookalikes_are_not_cleartext_credentials() {
    let mut r = Rig::new(DetectorConfig::default());
    r.send(
        0,
        "192.0.2.1:1000",
        &ex("GET /api/v2/orders", 200).bearer(&token(1)),
    );
    r.send(
        1,
        "192.0.2.1:1000",
        &ex("POST /account/settings", 200)
            .form(b"password_hint=pet&password_changed=true&otp=123456"),
    );
    r.send(
        2,
        "192.0.2.1:1000",
        &ex("GET /api/search?password_policy=strict&q=shoes", 200),
    );
    r.assert_none();
}

#[test]
fn sensitive_data_is_reported_per_endpoint_type_and_place_and_lookalikes_are_not() {
    let mut r = Rig::new(DetectorConfig::default());
    // Order references and tracking numbers fail Luhn or issuer checks: not cards.
    let lookalike = br#"{"id": 7, "order_ref": "4111111111111112", "tracking": "1234567890123456", "total": 1999}"#;
    r.send(
        0,
        "192.0.2.1:1000",
        &ex("GET /api/v2/orders/7", 200).json(lookalike),
    );
    r.assert_none();
    let user = br#"{"id": 7, "email": "alice@example.com", "card": "4111 1111 1111 1111"}"#;
    r.send(
        1,
        "192.0.2.1:1000",
        &ex("GET /api/v2/users/7", 200).json(user),
    );
    r.send(
        2,
        "192.0.2.1:1000",
        &ex("GET /api/v2/users/8", 200).json(user),
    );
    r.send(
        3,
        "192.0.2.1:1000",
        &ex("GET /api/lookup?ssn=123-45-6789", 200),
    );
    assert_eq!(r.kinds(), kinds(&[("sensitive_data_exposure", 3)]));
    let s = r.of(FindingKind::SensitiveDataExposure);
    let by = |t: &str| s.iter().find(|f| f.evidence["data_type"] == t).unwrap();
    assert_eq!(by("card_number").count, 2);
    assert_eq!(by("card_number").severity, Severity::Medium);
    assert_eq!(by("card_number").evidence["location"], "response_body:card");
    assert_eq!(by("email").severity, Severity::Info);
    assert_eq!(by("us_ssn").severity, Severity::High);
    assert_eq!(by("us_ssn").evidence["location"], "query:ssn");
    let text = serde_json::to_string(&r.det.findings()).unwrap();
    for v in ["alice@example.com", "4111", "123-45-6789"] {
        assert!(!text.contains(v), "{v} leaked: {text}");
    }
    // Ignored kinds are ignored.
    let mut cfg = DetectorConfig::default();
    cfg.sensitive_data_exposure.ignore_kinds = vec!["email".into(), "card_number".into()];
    let mut r = Rig::new(cfg);
    r.send(
        1,
        "192.0.2.1:1000",
        &ex("GET /api/v2/users/7", 200).json(user),
    );
    r.assert_none();
}

#[test]
fn ambiguous_framing_is_request_smuggling() {
    let mut r = Rig::new(DetectorConfig::default());
    r.send(0, "192.0.2.1:1000", &ex("POST /api/v2/orders", 201));
    r.assert_none();
    let mut x = ex("POST /api/v2/orders", 201);
    x.anomalies.insert(Anomaly::AmbiguousFraming);
    x.anomalies.insert(Anomaly::BodyGap);
    r.send(
        1,
        "10.9.9.9:1000",
        &x.clone().h("X-Forwarded-For", "198.51.100.23"),
    );
    r.send(2, "10.9.9.9:1000", &x.h("X-Forwarded-For", "198.51.100.23"));
    // Other anomalies are not smuggling.
    let mut y = ex("GET /api/v2/orders", 200);
    y.anomalies.insert(Anomaly::DecompressionBomb);
    r.send(3, "192.0.2.1:1000", &y);
    r.det.stream_anomaly(
        "192.0.2.66".parse().unwrap(),
        ep("10.0.0.1:80"),
        Timestamp::from_secs(T0 / 1000 + 5),
        "overlap_mismatch",
    );
    assert_eq!(r.kinds(), kinds(&[("request_smuggling", 2)]));
    let s = r.of(FindingKind::RequestSmuggling);
    let framing = s
        .iter()
        .find(|f| f.evidence["anomaly"] == "ambiguous_framing")
        .unwrap();
    assert_eq!(framing.count, 2);
    assert_eq!(framing.client, Some("198.51.100.23".parse().unwrap()));
    assert_eq!(framing.evidence["peer"], "10.9.9.9");
    assert_eq!(framing.severity, Severity::High);
    let stream = s.iter().find(|f| f.evidence["source"] == "stream").unwrap();
    assert_eq!(stream.evidence["server"], "10.0.0.1:80");
}

// ------------------------------------------------------------------------------- BOLA

#[test]
fn a_client_walking_ids_with_denials_is_bola() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..30u64 {
        let status = match i % 3 {
            0 => 200,
            1 => 403,
            _ => 404,
        };
        r.send(
            i * 2000,
            "203.0.113.50:4000",
            &ex(&format!("GET /api/v2/orders/{}", 1000 + i), status).bearer(&token(66)),
        );
    }
    assert_eq!(r.kinds(), kinds(&[("bola_enumeration", 1)]));
    let f = &r.of(FindingKind::BolaEnumeration)[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence["actor"], "principal");
    assert_eq!(f.evidence["rules"][0], "ids_with_denials");
    assert_eq!(f.client, Some("203.0.113.50".parse().unwrap()));
    // Created when the rule first held (10 distinct ids, 6 denied), then one per call.
    assert_eq!(f.count, 30);
    assert_eq!(f.evidence["distinct_ids"], 30);
}

#[test]
fn many_distinct_ids_alone_are_bola_of_medium_severity() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..60u64 {
        r.send(
            i * 1000,
            "203.0.113.51:4000",
            &ex(&format!("GET /api/v2/users/{}", 500 + i), 200),
        );
    }
    let b = r.of(FindingKind::BolaEnumeration);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].severity, Severity::Medium);
    assert_eq!(b[0].evidence["actor"], "client");
    assert_eq!(b[0].count, 60, "every call of the window");
}

#[test]
fn a_user_paging_through_their_own_twenty_orders_is_not_bola() {
    let mut r = Rig::new(DetectorConfig::default());
    let t = token(7);
    r.send(
        0,
        "192.0.2.7:4000",
        &ex("GET /api/v2/orders?page=1", 200).bearer(&t),
    );
    for i in 0..20u64 {
        r.send(
            1000 + i * 500,
            "192.0.2.7:4000",
            &ex(&format!("GET /api/v2/orders/{}", 8800 + i), 200).bearer(&t),
        );
    }
    // One of them was deleted meanwhile.
    r.send(
        20_000,
        "192.0.2.7:4000",
        &ex("GET /api/v2/orders/8821", 404).bearer(&t),
    );
    r.assert_none();
}

#[test]
fn many_clients_behind_one_load_balancer_are_not_one_enumerator() {
    let lb_traffic = |r: &mut Rig| {
        for c in 0..30u64 {
            for k in 0..3u64 {
                let id = 100 + c * 3 + k;
                let xff = format!("198.51.100.{}", c + 1);
                let status = if k == 2 { 404 } else { 200 };
                r.send(
                    c * 1000 + k * 100,
                    "10.0.0.5:40000",
                    &ex(&format!("GET /api/v2/products/{id}"), status).h("X-Forwarded-For", xff),
                );
            }
        }
    };
    let mut r = Rig::new(DetectorConfig::default());
    lb_traffic(&mut r);
    r.assert_none();
    // The same traffic judged by the TCP peer alone looks like one client enumerating.
    let cfg = DetectorConfig {
        trust_forwarded_for: false,
        ..DetectorConfig::default()
    };
    let mut r = Rig::new(cfg);
    lb_traffic(&mut r);
    assert_eq!(r.kinds(), kinds(&[("bola_enumeration", 1)]));
}

/// Five users each visiting their own four orders three times.
fn owners(r: &mut Rig) {
    let mut t = 0;
    for round in 0..3 {
        for u in 1..=5u32 {
            for k in 0..4u32 {
                let id = u * 100 + k;
                r.send(
                    t,
                    &format!("192.0.2.{u}:5000"),
                    &ex(&format!("GET /api/v2/orders/{id}"), 200).bearer(&token(u)),
                );
                t += 200;
            }
        }
        let _ = round;
    }
}

#[test]
fn objects_first_returned_to_others_then_served_to_an_intruder_are_bola() {
    let mut r = Rig::new(DetectorConfig::default());
    owners(&mut r);
    r.assert_none();
    // User 9 reads six orders of users 1..3.
    for (i, id) in [100u32, 101, 200, 201, 300, 301].iter().enumerate() {
        r.send(
            60_000 + i as u64 * 1000,
            "192.0.2.9:5000",
            &ex(&format!("GET /api/v2/orders/{id}"), 200).bearer(&token(9)),
        );
    }
    assert_eq!(r.kinds(), kinds(&[("bola_enumeration", 1)]));
    let f = &r.of(FindingKind::BolaEnumeration)[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence["rules"][0], "cross_principal");
    assert_eq!(f.evidence["foreign_objects"], 6);
}

#[test]
fn a_shared_catalog_browsed_by_many_users_is_not_bola() {
    let mut r = Rig::new(DetectorConfig::default());
    let mut t = 0;
    for round in 0..3u32 {
        for u in 1..=10u32 {
            for k in 0..6u32 {
                let id = (u * 3 + k * 2 + round) % 15;
                r.send(
                    t,
                    &format!("192.0.2.{u}:5000"),
                    &ex(&format!("GET /api/v2/products/{id}"), 200).bearer(&token(u)),
                );
                t += 100;
            }
        }
    }
    r.assert_none();
}

// ------------------------------------------------------------------------------- stuffing

#[test]
fn many_failed_logins_from_one_source_are_credential_stuffing() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..12u64 {
        r.send(
            i * 3000,
            "203.0.113.77:6000",
            &ex("POST /api/v2/login", 401),
        );
    }
    let s = r.of(FindingKind::CredentialStuffing);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].severity, Severity::High);
    assert_eq!(s[0].count, 12, "every failure of the window");
    // Then one works: the account it reached is at risk.
    r.send(40_000, "203.0.113.77:6000", &ex("POST /api/v2/login", 200));
    let s = r.of(FindingKind::CredentialStuffing);
    assert_eq!(s[0].severity, Severity::Critical);
    assert_eq!(s[0].evidence["successes_after_failures"], 1);
    assert_eq!(r.kinds(), kinds(&[("credential_stuffing", 1)]));
}

#[test]
fn a_mistyped_password_is_not_credential_stuffing() {
    let mut r = Rig::new(DetectorConfig::default());
    for u in 1..=20u32 {
        let c = format!("192.0.2.{u}:6000");
        let t = u64::from(u) * 10_000;
        if u % 4 == 0 {
            r.send(t, &c, &ex("POST /api/v2/login", 401));
        }
        r.send(t + 2000, &c, &ex("POST /api/v2/login", 200));
    }
    // A 403 on an ordinary endpoint is not a login failure.
    for i in 0..15u64 {
        r.send(
            300_000 + i,
            "192.0.2.1:6000",
            &ex("GET /api/v2/admin", 403).bearer(&token(1)),
        );
    }
    r.assert_none();
}

#[test]
fn failed_logins_spread_over_many_sources_are_distributed_stuffing() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..60u64 {
        let c = format!("198.51.{}.{}:6000", 100 + i / 50, 1 + i % 50);
        r.send(i * 2000, &c, &ex("POST /api/v2/login", 401));
    }
    assert_eq!(r.kinds(), kinds(&[("credential_stuffing", 1)]));
    let f = &r.of(FindingKind::CredentialStuffing)[0];
    assert_eq!(f.evidence["scope"], "distributed");
    assert!(f.client.is_none());
    assert_eq!(f.endpoint.as_ref().unwrap().path, "/api/v2/login");
}

#[test]
fn basic_auth_401s_count_as_failed_logins() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..10u32 {
        // user{i}:pw, base64
        let cred = [
            "dXNlcjA6cHc=",
            "dXNlcjE6cHc=",
            "dXNlcjI6cHc=",
            "dXNlcjM6cHc=",
            "dXNlcjQ6cHc=",
        ][i as usize % 5];
        r.send(
            u64::from(i) * 1000,
            "203.0.113.8:6000",
            &ex("GET /api/reports", 401).h("Authorization", format!("Basic {cred}")),
        );
    }
    let s = r.of(FindingKind::CredentialStuffing);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].evidence["distinct_basic_users"], 5);
}

// ------------------------------------------------------------------------------- scanning

#[test]
fn many_distinct_missing_paths_from_one_client_are_scanning() {
    let mut r = Rig::new(DetectorConfig::default());
    r.send(0, "192.0.2.1:1000", &ex("GET /api/v2/products", 200));
    let probes = [
        "/.env",
        "/.git/config",
        "/wp-login.php",
        "/admin",
        "/phpmyadmin/",
        "/server-status",
        "/actuator/env",
        "/api/v1/debug",
        "/console",
        "/.aws/credentials",
        "/backup.zip",
        "/config.json",
        "/api/swagger.json",
        "/v2/api-docs",
        "/graphql",
        "/cgi-bin/test.cgi",
        "/.DS_Store",
        "/debug/pprof",
        "/metrics",
        "/api/internal",
        "/old",
        "/test",
    ];
    for (i, p) in probes.iter().enumerate() {
        r.send(
            1000 + i as u64 * 500,
            "203.0.113.99:7000",
            &ex(&format!("GET {p}"), 404),
        );
    }
    assert_eq!(r.kinds(), kinds(&[("scanning", 1)]));
    let f = &r.of(FindingKind::Scanning)[0];
    assert_eq!(f.count, 22, "the 404s of the window");
    assert_eq!(f.client, Some("203.0.113.99".parse().unwrap()));
    assert_eq!(f.evidence["window_unmatched_404"], 22);
}

#[test]
fn a_threshold_changed_live_applies_to_the_next_calls() {
    // Ten distinct 404s are under the default threshold (20); after set_config lowers it to
    // 5 (SIGHUP), the same client's next probes make a finding.
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..10u64 {
        r.send(
            i * 100,
            "203.0.113.99:7000",
            &ex(&format!("GET /probe{i}"), 404),
        );
    }
    assert!(r.of(FindingKind::Scanning).is_empty());
    let mut cfg = DetectorConfig::default();
    cfg.scanning.min_distinct_paths = 5;
    r.det.set_config(cfg);
    r.send(2000, "203.0.113.99:7000", &ex("GET /probe-late", 404));
    assert_eq!(r.of(FindingKind::Scanning).len(), 1);
    assert_eq!(r.det.config().scanning.min_distinct_paths, 5);
}

#[test]
fn a_normal_client_with_a_few_404s_is_not_scanning() {
    let mut r = Rig::new(DetectorConfig::default());
    for i in 0..60u64 {
        let p = match i % 20 {
            0 => "/favicon.ico".to_owned(),
            7 => format!("/api/v2/products/{}", 9000 + i),
            _ => "/api/v2/products".to_owned(),
        };
        let status = if i % 20 == 0 || i % 20 == 7 { 404 } else { 200 };
        r.send(i * 1000, "192.0.2.1:1000", &ex(&format!("GET {p}"), status));
    }
    // Walking ids that do not exist on a known route is one path, not many (BOLA's
    // business).
    r.send(99_000, "192.0.2.3:1000", &ex("GET /api/v2/users/1", 200));
    for i in 0..25u64 {
        r.send(
            100_000 + i * 1000,
            "192.0.2.2:1000",
            &ex(&format!("GET /api/v2/users/{}", 70 + i), 404),
        );
    }
    assert!(r.of(FindingKind::Scanning).is_empty());
}

// ------------------------------------------------------------------------------- rates

/// `per_min` calls a minute to the product list from three clients, for `minutes`.
fn steady(r: &mut Rig, from_min: u64, minutes: u64, per_min: u64) {
    for m in from_min..from_min + minutes {
        for k in 0..per_min {
            let c = format!("192.0.2.{}:1000", 1 + k % 3);
            r.send(
                m * 60_000 + k * (60_000 / per_min) + 7,
                &c,
                &ex("GET /api/v2/products", 200),
            );
        }
    }
}

#[test]
fn a_steady_busy_endpoint_has_no_rate_anomaly() {
    let mut r = Rig::new(DetectorConfig::default());
    for m in 0..40u64 {
        // 100 to 140 calls a minute.
        let n = 100 + (m * 7) % 41;
        for k in 0..n {
            let c = format!("192.0.2.{}:1000", 1 + k % 4);
            r.send(
                m * 60_000 + k * (60_000 / n),
                &c,
                &ex("GET /api/v2/products", 200),
            );
        }
    }
    r.finish();
    r.assert_none();
}

#[test]
fn a_burst_far_above_the_baseline_is_a_rate_anomaly() {
    let mut r = Rig::new(DetectorConfig::default());
    steady(&mut r, 0, 12, 9);
    for k in 0..80u64 {
        r.send(
            12 * 60_000 + k * 700,
            "192.0.2.1:1000",
            &ex("GET /api/v2/products", 200),
        );
    }
    steady(&mut r, 13, 2, 9);
    r.finish();
    assert_eq!(r.kinds(), kinds(&[("rate_anomaly", 2)]));
    let a = r.of(FindingKind::RateAnomaly);
    let ep = a.iter().find(|f| f.endpoint.is_some()).unwrap();
    assert!(
        ep.evidence["max_bucket_calls"].as_u64().unwrap() >= 50,
        "{}",
        ep.evidence
    );
    assert_eq!(ep.count, 1);
    let cl = a.iter().find(|f| f.client.is_some()).unwrap();
    assert_eq!(cl.client, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(ep.owasp, Some("API4:2023"));
}

#[test]
fn a_burst_without_history_is_not_a_rate_anomaly() {
    let mut r = Rig::new(DetectorConfig::default());
    steady(&mut r, 0, 3, 9);
    for k in 0..80u64 {
        r.send(
            3 * 60_000 + k * 700,
            "192.0.2.1:1000",
            &ex("GET /api/v2/products", 200),
        );
    }
    steady(&mut r, 4, 2, 9);
    r.finish();
    r.assert_none();
}

#[test]
fn baselines_survive_a_restart() {
    let mut r = Rig::new(DetectorConfig::default());
    steady(&mut r, 0, 12, 9);
    let saved = r.det.save();
    let text = saved.to_string();
    assert!(!text.contains("tok0"), "no credentials in the state");
    // A new process: the inventory starts afresh here, the detector from its state.
    let mut r2 = Rig::new(DetectorConfig::default());
    assert_eq!(r2.det.load(&saved).unwrap(), 0);
    for k in 0..80u64 {
        r2.send(
            12 * 60_000 + k * 700,
            "192.0.2.1:1000",
            &ex("GET /api/v2/products", 200),
        );
    }
    steady(&mut r2, 13, 2, 9);
    assert_eq!(r2.kinds(), kinds(&[("rate_anomaly", 2)]));
    assert!(r2.det.load(&serde_json::json!({"version": 99})).is_err());
    assert!(r2.det.load(&serde_json::json!([])).is_err());
}

// ------------------------------------------------------------------------------- plumbing

#[test]
fn updates_carry_the_same_id_with_a_higher_count() {
    let mut r = Rig::with_spec(DetectorConfig::default());
    r.send(0, "192.0.2.1:1000", &ex("GET /internal/debug/vars", 200));
    let first = r.det.drain_updates();
    assert_eq!(first.len(), 1);
    assert!(r.det.drain_updates().is_empty());
    r.send(5000, "192.0.2.1:1000", &ex("GET /internal/debug/vars", 200));
    let second = r.det.drain_updates();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!((first[0].count, second[0].count), (1, 2));
    assert!(second[0].last_seen > first[0].last_seen);
    assert_eq!(second[0].first_seen, first[0].first_seen);
    let j = second[0].to_json();
    for k in [
        "id",
        "kind",
        "severity",
        "owasp",
        "endpoint",
        "client",
        "first_seen",
        "last_seen",
        "count",
        "summary",
        "evidence",
    ] {
        assert!(j.get(k).is_some(), "{k} missing in {j}");
    }
}

#[test]
fn disabled_detector_does_nothing_and_stats_name_every_bound() {
    let cfg = DetectorConfig {
        enabled: false,
        ..DetectorConfig::default()
    };
    let mut r = Rig::with_spec(cfg);
    r.send(0, "192.0.2.1:1000", &ex("GET /internal/debug/vars", 200));
    r.assert_none();
    let names: Vec<&str> = r.det.stats().iter().map(|(n, _)| *n).collect();
    for n in [
        "detector_findings_dropped",
        "detector_bola_actors_dropped",
        "detector_scanning_clients_dropped",
        "detector_rate_clients_dropped",
        "detector_stuffing_sources_dropped",
    ] {
        assert!(names.contains(&n), "{n}");
    }
}

#[test]
fn bounds_are_counted() {
    let mut cfg = DetectorConfig::default();
    cfg.scanning.max_clients = 2;
    cfg.bola_enumeration.max_actors = 1;
    cfg.rate_anomaly.max_clients = 3;
    let mut r = Rig::new(cfg);
    for i in 0..5u64 {
        r.send(
            i,
            &format!("192.0.2.{}:1000", i + 1),
            &ex(&format!("GET /nothing/{i}x"), 404),
        );
        r.send(
            10 + i,
            &format!("192.0.2.{}:1000", i + 1),
            &ex(&format!("GET /api/v2/users/{i}"), 200),
        );
    }
    let stats: BTreeMap<&str, u64> = r.det.stats().into_iter().collect();
    assert_eq!(stats["detector_scanning_clients_dropped"], 3);
    assert_eq!(stats["detector_bola_actors_dropped"], 4);
    assert_eq!(stats["detector_rate_clients_dropped"], 4);
    assert_eq!(stats["detector_calls"], 10);
}

#[test]
fn full_tables_refuse_live_entries_and_admit_after_expiry() {
    let mut cfg = DetectorConfig::default();
    cfg.scanning.max_clients = 2;
    cfg.bola_enumeration.max_actors = 2;
    let mut r = Rig::new(cfg);
    // Two clients fill both tables; the next ones are refused while those are live.
    for (t, i) in [(0u64, 1u8), (10, 2), (20, 3), (30, 4), (40, 5)] {
        let client = format!("192.0.2.{i}:1000");
        r.send(t, &client, &ex(&format!("GET /nothing/{i}x"), 404));
        r.send(t + 1, &client, &ex(&format!("GET /api/v2/users/{i}"), 200));
    }
    let stats: BTreeMap<&str, u64> = r.det.stats().into_iter().collect();
    assert_eq!(stats["detector_scanning_clients_dropped"], 3);
    assert_eq!(stats["detector_bola_actors_dropped"], 3);
    // Past both windows (300 s and 600 s) the first two have expired: a new client gets in.
    let late = 601_000;
    r.send(late, "192.0.2.6:1000", &ex("GET /nothing/6x", 404));
    r.send(late + 1, "192.0.2.6:1000", &ex("GET /api/v2/users/6", 200));
    let stats: BTreeMap<&str, u64> = r.det.stats().into_iter().collect();
    assert_eq!(stats["detector_scanning_clients_dropped"], 3);
    assert_eq!(stats["detector_bola_actors_dropped"], 3);
}

#[test]
fn object_owners_survive_a_restart() {
    let mut r = Rig::new(DetectorConfig::default());
    owners(&mut r);
    let saved = r.det.save();
    let mut r2 = Rig::new(DetectorConfig::default());
    assert_eq!(r2.det.load(&saved).unwrap(), 0);
    for (i, id) in [100u32, 101, 200, 201, 300, 301].iter().enumerate() {
        r2.send(
            60_000 + i as u64 * 1000,
            "192.0.2.9:5000",
            &ex(&format!("GET /api/v2/orders/{id}"), 200).bearer(&token(9)),
        );
    }
    assert_eq!(r2.kinds(), kinds(&[("bola_enumeration", 1)]));
}

#[test]
fn the_detector_can_move_to_the_sink_thread() {
    fn send<T: Send>() {}
    send::<Detector>();
    send::<Finding>();
}
