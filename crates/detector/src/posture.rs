//! Per-call posture findings: `unauthenticated_access`, `cleartext_credentials`,
//! `sensitive_data_exposure`, `request_smuggling`.

use std::net::IpAddr;

use apiscope_capture::{Endpoint as SocketAddr, Timestamp};
use apiscope_http::Anomaly;
use apiscope_inventory::auth::AuthScheme;
use apiscope_inventory::sensitive::SensitiveKind;
use serde_json::Value;

use crate::detector::Ctx;
use crate::finding::{owasp, Draft, FindingKind, Severity, Update};
use crate::util::{bump, is_2xx, push_unique, round3};
use crate::Detector;

/// The framing anomalies that are request smuggling patterns, with their severity.
fn smuggling_anomaly(a: Anomaly, invalid_cl: bool) -> Option<Severity> {
    match a {
        Anomaly::AmbiguousFraming
        | Anomaly::ConflictingContentLength
        | Anomaly::ObfuscatedTransferEncoding => Some(Severity::High),
        Anomaly::InvalidContentLength if invalid_cl => Some(Severity::Medium),
        _ => None,
    }
}

fn sensitive_kind(s: &str) -> Option<SensitiveKind> {
    SensitiveKind::ALL.into_iter().find(|k| k.as_str() == s)
}

/// Where sensitive data was seen, for the exposure rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Response,
    Query,
    Path,
}

impl Place {
    fn of(location: &str) -> Option<Place> {
        if location.starts_with("response_body") {
            Some(Place::Response)
        } else if location.starts_with("query:") {
            Some(Place::Query)
        } else if location == "path" {
            Some(Place::Path)
        } else {
            None
        }
    }
}

/// Severity of `kind` exposed at `place`: secrets are high anywhere (a JWT in a response,
/// usually a login handing out a token, is low); card numbers, SSNs and IBANs are medium in
/// responses and high in URLs (logged everywhere); emails and phone numbers are info in
/// responses and low in URLs.
fn exposure_severity(kind: SensitiveKind, place: Place) -> Severity {
    use SensitiveKind as K;
    match (kind, place) {
        (K::Jwt, Place::Response) => Severity::Low,
        (K::Email | K::Phone, Place::Response) => Severity::Info,
        (K::Email | K::Phone, _) => Severity::Low,
        (K::CardNumber | K::UsSsn | K::Iban, Place::Response) => Severity::Medium,
        (K::CardNumber | K::UsSsn | K::Iban, _) => Severity::High,
        _ => Severity::High,
    }
}

impl Detector {
    pub(crate) fn check_smuggling(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.request_smuggling;
        if !cfg.enabled || c.f.anomalies.is_empty() {
            return;
        }
        for a in c.f.anomalies.iter() {
            let Some(severity) = smuggling_anomaly(a, cfg.invalid_content_length) else {
                continue;
            };
            let detail = format!("{}\u{0}{}", c.f.host, a.as_str());
            let d = Draft {
                kind: FindingKind::RequestSmuggling,
                endpoint: None,
                client: Some(c.ip),
                detail: &detail,
            };
            let peer = c.f.client;
            self.store.upsert(
                &d,
                Update {
                    ts: c.f.ts,
                    add: 1,
                    severity,
                    owasp: Some(owasp::API8),
                    shown_client: None,
                },
                || {
                    format!(
                        "{} sent requests to {} with {} framing, a request smuggling pattern: \
                         make every proxy and server in front of {} reject such requests.",
                        c.ip,
                        c.f.host,
                        a.as_str().replace('_', " "),
                        c.f.host
                    )
                },
                |m| {
                    m.insert("anomaly".into(), a.as_str().into());
                    m.insert("host".into(), c.f.host.clone().into());
                    if peer != c.ip {
                        m.insert("peer".into(), peer.to_string().into());
                    }
                    if let Some(e) = c.ep {
                        push_unique(m, "endpoints", e.label().into(), 8);
                    }
                    let other: Vec<Value> =
                        c.f.anomalies
                            .iter()
                            .map(|x| Value::from(x.as_str()))
                            .collect();
                    m.insert("call_anomalies".into(), other.into());
                },
            );
        }
    }

    /// Reports a stream-level evasion signal from the capture stage on the connection of
    /// `client` to `server` at `ts`, such as `overlap_mismatch` (overlapping TCP segments
    /// with different bytes: what the sensor reassembled may not be what the server read).
    /// One `request_smuggling` finding per client, server and `what`.
    pub fn stream_anomaly(
        &mut self,
        client: IpAddr,
        server: SocketAddr,
        ts: Timestamp,
        what: &str,
    ) {
        if !self.cfg.enabled || !self.cfg.request_smuggling.stream_anomalies {
            return;
        }
        self.stats.stream_anomalies += 1;
        self.now = self.now.max(ts);
        let what: String = what
            .chars()
            .take(32)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let server = server.to_string();
        let detail = format!("stream\u{0}{server}\u{0}{what}");
        let d = Draft {
            kind: FindingKind::RequestSmuggling,
            endpoint: None,
            client: Some(client),
            detail: &detail,
        };
        self.store.upsert(
            &d,
            Update {
                ts,
                add: 1,
                severity: Severity::Medium,
                owasp: Some(owasp::API8),
                shown_client: None,
            },
            || {
                format!(
                    "The TCP stream from {client} to {server} showed {}, a sign of IDS/WAF \
                     evasion: check the requests of this client and normalise traffic at the edge.",
                    what.replace('_', " ")
                )
            },
            |m| {
                m.insert("anomaly".into(), what.as_str().into());
                m.insert("server".into(), server.as_str().into());
                m.insert("source".into(), "stream".into());
            },
        );
    }

    pub(crate) fn check_unauthenticated(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.unauthenticated_access;
        let Some(e) = c.ep else { return };
        if !cfg.enabled || !is_2xx(c.f.status) || c.f.auth.is_authenticated() {
            return;
        }
        // The inventory has counted this call already: judge the calls before it.
        let before = e.calls.saturating_sub(1);
        if before < cfg.min_calls || before == 0 {
            return;
        }
        let share = e.authenticated_calls as f64 / before as f64;
        if share < cfg.min_authenticated_share {
            return;
        }
        let d = Draft {
            kind: FindingKind::UnauthenticatedAccess,
            endpoint: c.endpoint(),
            client: None,
            detail: "",
        };
        let ip = c.ip;
        self.store.upsert(
            &d,
            Update {
                ts: c.f.ts,
                add: 1,
                severity: Severity::High,
                owasp: Some(owasp::API2),
                shown_client: None,
            },
            || {
                format!(
                    "{} answered 2xx to a call without credentials although {:.0} % of its \
                     calls carry them: check that it enforces authentication.",
                    e.label(),
                    share * 100.0
                )
            },
            |m| {
                m.insert("authenticated_share".into(), round3(share).into());
                m.insert("endpoint_calls".into(), e.calls.into());
                bump(m, "unauthenticated_2xx", 1);
                push_unique(m, "clients", ip.to_string().into(), 8);
                let schemes: Vec<&str> = e.auth.counts.keys().map(String::as_str).collect();
                m.insert("auth_schemes_seen".into(), schemes.into());
            },
        );
    }

    pub(crate) fn check_cleartext(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.cleartext_credentials;
        let Some(e) = c.ep else { return };
        if !cfg.enabled {
            return;
        }
        // (detail, what, OWASP, severity)
        let mut hits: Vec<(String, &'static str, &'static str, Severity)> = Vec::new();
        for s in c.f.auth.schemes() {
            match s {
                AuthScheme::Basic {
                    well_formed: true, ..
                } if cfg.basic => {
                    hits.push(("basic".into(), "basic_auth", owasp::API8, Severity::High));
                }
                AuthScheme::ApiKeyQuery { name, .. }
                    if cfg.api_keys_in_query && s.carries_credential() =>
                {
                    hits.push((
                        format!("query:{}", name.as_str()),
                        "api_key_in_query",
                        owasp::API2,
                        Severity::Medium,
                    ));
                }
                _ => {}
            }
        }
        if cfg.passwords {
            for (kind, loc) in &e.last_call_sensitive {
                if *kind != SensitiveKind::Password.as_str() {
                    continue;
                }
                if loc.starts_with("query:") {
                    hits.push((
                        loc.clone(),
                        "password_in_query",
                        owasp::API2,
                        Severity::High,
                    ));
                } else if loc.starts_with("request_body") {
                    hits.push((loc.clone(), "password_in_body", owasp::API8, Severity::High));
                }
            }
        }
        for (detail, what, category, severity) in hits {
            let d = Draft {
                kind: FindingKind::CleartextCredentials,
                endpoint: c.endpoint(),
                client: None,
                detail: &detail,
            };
            let ip = c.ip;
            self.store.upsert(
                &d,
                Update {
                    ts: c.f.ts,
                    add: 1,
                    severity,
                    owasp: Some(category),
                    shown_client: None,
                },
                || {
                    let how = match what {
                        "basic_auth" => "HTTP Basic credentials".to_owned(),
                        "api_key_in_query" => format!("an API key in the URL ({detail})"),
                        "password_in_query" => format!("a password in the URL ({detail})"),
                        _ => format!("a password in the request body ({detail})"),
                    };
                    format!(
                        "{} receives {how} over plaintext HTTP: serve it over TLS only{}.",
                        e.label(),
                        if what.ends_with("query") {
                            " and move the secret out of the URL"
                        } else {
                            ""
                        }
                    )
                },
                |m| {
                    m.insert("credential".into(), what.into());
                    m.insert("location".into(), detail.as_str().into());
                    m.insert("transport".into(), "plaintext_http".into());
                    push_unique(m, "clients", ip.to_string().into(), 8);
                },
            );
        }
    }

    pub(crate) fn check_sensitive(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.sensitive_data_exposure;
        let Some(e) = c.ep else { return };
        if !cfg.enabled || e.last_call_sensitive.is_empty() {
            return;
        }
        for (kind_name, loc) in &e.last_call_sensitive {
            let Some(kind) = sensitive_kind(kind_name) else {
                continue;
            };
            let Some(place) = Place::of(loc) else {
                continue;
            };
            let wanted = match place {
                Place::Response => cfg.responses,
                Place::Query => cfg.query,
                Place::Path => cfg.path,
            };
            // A password in a query string is a cleartext credential, reported there.
            if !wanted
                || (kind == SensitiveKind::Password && place != Place::Response)
                || cfg.ignore_kinds.iter().any(|k| k == kind_name)
            {
                continue;
            }
            let detail = format!("{kind_name}\u{0}{loc}");
            let d = Draft {
                kind: FindingKind::SensitiveDataExposure,
                endpoint: c.endpoint(),
                client: None,
                detail: &detail,
            };
            let severity = exposure_severity(kind, place);
            let ip = c.ip;
            self.store.upsert(
                &d,
                Update {
                    ts: c.f.ts,
                    add: 1,
                    severity,
                    owasp: Some(owasp::API3),
                    shown_client: None,
                },
                || {
                    let (where_, fix) = match place {
                        Place::Response => (
                            "returns",
                            "check that every client needs it and mask or drop it otherwise",
                        ),
                        Place::Query => (
                            "receives in its query string",
                            "move it to the request body so URLs and logs do not carry it",
                        ),
                        Place::Path => (
                            "receives in its path",
                            "use an opaque id in the path instead",
                        ),
                    };
                    format!(
                        "{} {where_} {} ({}{}): {fix}.",
                        e.label(),
                        kind_name.replace('_', " "),
                        loc,
                        if kind.is_secret() { ", a secret" } else { "" }
                    )
                },
                |m| {
                    m.insert("data_type".into(), (*kind_name).into());
                    m.insert("location".into(), loc.as_str().into());
                    m.insert("secret".into(), kind.is_secret().into());
                    push_unique(m, "clients", ip.to_string().into(), 8);
                },
            );
        }
    }
}
