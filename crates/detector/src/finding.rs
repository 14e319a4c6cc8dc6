//! Findings: what a detection reports, and the bounded set of them the detector keeps.
//!
//! A [`Finding`] is reported once and then updated: the same `id` (a hash of its kind,
//! endpoint, client and a detail such as a data type), a higher `count`, a later `last_seen`,
//! possibly a higher `severity` and fresher `evidence`. The detector keeps every open finding
//! in a bounded store and marks the ones that changed, for
//! [`Detector::drain_updates`](crate::Detector::drain_updates).

use std::collections::BTreeSet;
use std::net::IpAddr;

use apiscope_capture::Timestamp;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::util::hash_parts;

/// What a finding is about (the contract's `kind` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    ShadowApi,
    ZombieApi,
    OrphanApi,
    UnauthenticatedAccess,
    CleartextCredentials,
    SensitiveDataExposure,
    BolaEnumeration,
    CredentialStuffing,
    Scanning,
    RateAnomaly,
    RequestSmuggling,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [FindingKind; 11] = [
        FindingKind::ShadowApi,
        FindingKind::ZombieApi,
        FindingKind::OrphanApi,
        FindingKind::UnauthenticatedAccess,
        FindingKind::CleartextCredentials,
        FindingKind::SensitiveDataExposure,
        FindingKind::BolaEnumeration,
        FindingKind::CredentialStuffing,
        FindingKind::Scanning,
        FindingKind::RateAnomaly,
        FindingKind::RequestSmuggling,
    ];

    /// The `kind` as written in findings (`shadow_api`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingKind::ShadowApi => "shadow_api",
            FindingKind::ZombieApi => "zombie_api",
            FindingKind::OrphanApi => "orphan_api",
            FindingKind::UnauthenticatedAccess => "unauthenticated_access",
            FindingKind::CleartextCredentials => "cleartext_credentials",
            FindingKind::SensitiveDataExposure => "sensitive_data_exposure",
            FindingKind::BolaEnumeration => "bola_enumeration",
            FindingKind::CredentialStuffing => "credential_stuffing",
            FindingKind::Scanning => "scanning",
            FindingKind::RateAnomaly => "rate_anomaly",
            FindingKind::RequestSmuggling => "request_smuggling",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a finding is; ordered, so a finding's severity only rises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// OWASP API Security Top 10 (2023) categories used by the detections.
pub mod owasp {
    /// Broken Object Level Authorization.
    pub const API1: &str = "API1:2023";
    /// Broken Authentication.
    pub const API2: &str = "API2:2023";
    /// Broken Object Property Level Authorization (excessive data exposure).
    pub const API3: &str = "API3:2023";
    /// Unrestricted Resource Consumption.
    pub const API4: &str = "API4:2023";
    /// Security Misconfiguration.
    pub const API8: &str = "API8:2023";
    /// Improper Inventory Management.
    pub const API9: &str = "API9:2023";

    /// The static string for a category read back from saved state.
    pub(crate) fn intern(s: &str) -> Option<&'static str> {
        [API1, API2, API3, API4, API8, API9]
            .into_iter()
            .find(|c| *c == s)
    }
}

/// The endpoint of a finding: host, method and templated path, as in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointRef {
    pub host: String,
    pub method: String,
    pub path: String,
}

/// One finding (see the module overview). Serialises as the contract's finding object:
/// times as RFC 3339 UTC with microseconds, `client` as an IP string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// 16 hex digits, stable for the same kind, endpoint, client and detail.
    pub id: String,
    pub kind: FindingKind,
    pub severity: Severity,
    /// OWASP API Security Top 10 2023 category, e.g. `API9:2023`.
    pub owasp: Option<&'static str>,
    pub endpoint: Option<EndpointRef>,
    /// The client (IP) the finding is about, when it is about one.
    pub client: Option<IpAddr>,
    #[serde(serialize_with = "ser_ts")]
    pub first_seen: Timestamp,
    #[serde(serialize_with = "ser_ts")]
    pub last_seen: Timestamp,
    /// How many times it was observed (calls, failures, evaluations: see each kind).
    pub count: u64,
    /// One sentence a person can act on.
    pub summary: String,
    /// Redacted details: kinds, counts, templates, hashes; never raw credentials or values.
    pub evidence: Value,
}

fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

impl Finding {
    /// The finding as a JSON object (the `--findings` line).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// What identifies a finding: the parts of its id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draft<'a> {
    pub kind: FindingKind,
    /// (host, method, templated path).
    pub endpoint: Option<(&'a str, &'a str, &'a str)>,
    /// The client the finding is keyed on (also shown).
    pub client: Option<IpAddr>,
    /// Anything else that tells findings of one kind, endpoint and client apart.
    pub detail: &'a str,
}

impl Draft<'_> {
    pub fn key(&self) -> u64 {
        let (h, m, p) = self.endpoint.unwrap_or(("", "", ""));
        let client = self.client.map(|c| c.to_string()).unwrap_or_default();
        hash_parts(&[
            self.kind.as_str().as_bytes(),
            h.as_bytes(),
            m.as_bytes(),
            p.as_bytes(),
            client.as_bytes(),
            self.detail.as_bytes(),
        ])
    }
}

/// How one observation changes a finding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Update {
    pub ts: Timestamp,
    /// Added to `count`.
    pub add: u64,
    pub severity: Severity,
    pub owasp: Option<&'static str>,
    /// Shown as `client` when the draft has none (e.g. a principal's latest address).
    pub shown_client: Option<IpAddr>,
}

/// Counters of the finding store.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreStats {
    pub created: u64,
    pub updated: u64,
    pub evicted: u64,
    pub dropped: u64,
}

/// The open findings, bounded; see [`crate::DetectorConfig::max_findings`].
#[derive(Debug)]
pub(crate) struct FindingStore {
    map: FxHashMap<u64, Finding>,
    dirty: BTreeSet<u64>,
    max: usize,
    pub stats: StoreStats,
}

impl FindingStore {
    pub fn new(max: usize) -> Self {
        FindingStore {
            map: FxHashMap::default(),
            dirty: BTreeSet::new(),
            max: max.max(1),
            stats: StoreStats::default(),
        }
    }

    /// A new bound: findings beyond a lowered one are evicted as new ones come.
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Creates the finding of `d` or updates it. `summary` is called when it is created or
    /// its severity rises; `evidence` every time, on the evidence object (empty at first).
    pub fn upsert(
        &mut self,
        d: &Draft<'_>,
        u: Update,
        summary: impl FnOnce() -> String,
        evidence: impl FnOnce(&mut Map<String, Value>),
    ) {
        let key = d.key();
        if let Some(f) = self.map.get_mut(&key) {
            f.count = f.count.saturating_add(u.add);
            f.first_seen = f.first_seen.min(u.ts);
            f.last_seen = f.last_seen.max(u.ts);
            if u.severity > f.severity {
                f.severity = u.severity;
                f.summary = summary();
            }
            if f.owasp.is_none() {
                f.owasp = u.owasp;
            }
            if let Value::Object(m) = &mut f.evidence {
                evidence(m);
            }
            self.stats.updated += 1;
            self.dirty.insert(key);
            return;
        }
        if self.map.len() >= self.max && !self.evict() {
            self.stats.dropped += 1;
            return;
        }
        let mut ev = Map::new();
        evidence(&mut ev);
        let f = Finding {
            id: format!("{key:016x}"),
            kind: d.kind,
            severity: u.severity,
            owasp: u.owasp,
            endpoint: d.endpoint.map(|(h, m, p)| EndpointRef {
                host: h.to_owned(),
                method: m.to_owned(),
                path: p.to_owned(),
            }),
            client: d.client.or(u.shown_client),
            first_seen: u.ts,
            last_seen: u.ts,
            count: u.add,
            summary: summary(),
            evidence: Value::Object(ev),
        };
        self.map.insert(key, f);
        self.dirty.insert(key);
        self.stats.created += 1;
    }

    /// Forgets the least recently updated eighth of the findings already drained; false when
    /// every finding is still waiting to be drained.
    fn evict(&mut self) -> bool {
        let mut old: Vec<(Timestamp, u64)> = self
            .map
            .iter()
            .filter(|(k, _)| !self.dirty.contains(k))
            .map(|(k, f)| (f.last_seen, *k))
            .collect();
        if old.is_empty() {
            return false;
        }
        old.sort_unstable();
        let n = (self.max / 8).clamp(1, old.len());
        for (_, k) in &old[..n] {
            self.map.remove(k);
        }
        self.stats.evicted += n as u64;
        true
    }

    /// The findings changed since the last drain, sorted.
    pub fn drain(&mut self) -> Vec<Finding> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out: Vec<Finding> = dirty
            .into_iter()
            .filter_map(|k| self.map.get(&k).cloned())
            .collect();
        out.sort_by(order);
        out
    }

    /// Every finding, sorted by first seen, kind, id.
    pub fn all(&self) -> Vec<&Finding> {
        let mut v: Vec<&Finding> = self.map.values().collect();
        v.sort_by(|a, b| order(a, b));
        v
    }

    pub fn save(&self) -> Value {
        let mut v: Vec<&Finding> = self.all();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Value::Array(
            v.into_iter()
                .map(|f| {
                    serde_json::json!({
                        "id": f.id,
                        "kind": f.kind,
                        "severity": f.severity,
                        "owasp": f.owasp,
                        "endpoint": f.endpoint,
                        "client": f.client,
                        "first_seen_ns": f.first_seen.as_nanos(),
                        "last_seen_ns": f.last_seen.as_nanos(),
                        "count": f.count,
                        "summary": f.summary,
                        "evidence": f.evidence,
                    })
                })
                .collect(),
        )
    }

    /// Loads saved findings (not marked changed); returns how many could not be read.
    pub fn load(&mut self, v: &Value) -> usize {
        #[derive(Deserialize)]
        struct Saved {
            id: String,
            kind: FindingKind,
            severity: Severity,
            owasp: Option<String>,
            endpoint: Option<EndpointRef>,
            client: Option<IpAddr>,
            first_seen_ns: u64,
            last_seen_ns: u64,
            count: u64,
            summary: String,
            evidence: Value,
        }
        let Some(items) = v.as_array() else {
            return 1;
        };
        let mut skipped = 0;
        for item in items {
            let Ok(s) = serde_json::from_value::<Saved>(item.clone()) else {
                skipped += 1;
                continue;
            };
            let Ok(key) = u64::from_str_radix(&s.id, 16) else {
                skipped += 1;
                continue;
            };
            if self.map.len() >= self.max && !self.map.contains_key(&key) {
                skipped += 1;
                continue;
            }
            self.map.insert(
                key,
                Finding {
                    id: s.id,
                    kind: s.kind,
                    severity: s.severity,
                    owasp: s.owasp.as_deref().and_then(owasp::intern),
                    endpoint: s.endpoint,
                    client: s.client,
                    first_seen: Timestamp::from_nanos(s.first_seen_ns),
                    last_seen: Timestamp::from_nanos(s.last_seen_ns),
                    count: s.count,
                    summary: s.summary,
                    evidence: if s.evidence.is_object() {
                        s.evidence
                    } else {
                        Value::Object(Map::new())
                    },
                },
            );
        }
        skipped
    }
}

fn order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    (a.first_seen, a.kind, &a.id).cmp(&(b.first_seen, b.kind, &b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(t: u64, sev: Severity) -> Update {
        Update {
            ts: Timestamp::from_secs(t),
            add: 1,
            severity: sev,
            owasp: Some(owasp::API9),
            shown_client: None,
        }
    }

    #[test]
    fn a_finding_is_created_once_then_updated() {
        let mut s = FindingStore::new(10);
        let d = Draft {
            kind: FindingKind::ShadowApi,
            endpoint: Some(("a.example", "GET", "/x")),
            client: None,
            detail: "",
        };
        s.upsert(&d, upd(5, Severity::Low), || "first".into(), |_| {});
        s.upsert(
            &d,
            upd(9, Severity::Medium),
            || "second".into(),
            |m| {
                m.insert("n".into(), 2.into());
            },
        );
        let all = s.drain();
        assert_eq!(all.len(), 1);
        let f = &all[0];
        assert_eq!(f.count, 2);
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.summary, "second");
        assert_eq!(f.first_seen, Timestamp::from_secs(5));
        assert_eq!(f.last_seen, Timestamp::from_secs(9));
        assert_eq!(f.id.len(), 16);
        assert!(s.drain().is_empty(), "nothing changed since");
        let j = f.to_json();
        assert_eq!(j["first_seen"], "1970-01-01T00:00:05.000000Z");
        assert_eq!(j["kind"], "shadow_api");
        assert_eq!(j["severity"], "medium");
        assert_eq!(j["endpoint"]["path"], "/x");
        assert_eq!(j["client"], Value::Null);
    }

    #[test]
    fn the_store_is_bounded_and_evicts_published_findings_only() {
        let mut s = FindingStore::new(2);
        let d = |detail: &'static str| Draft {
            kind: FindingKind::Scanning,
            endpoint: None,
            client: None,
            detail,
        };
        s.upsert(&d("a"), upd(1, Severity::Low), String::new, |_| {});
        s.upsert(&d("b"), upd(2, Severity::Low), String::new, |_| {});
        s.upsert(&d("c"), upd(3, Severity::Low), String::new, |_| {});
        assert_eq!((s.len(), s.stats.dropped), (2, 1), "nothing published yet");
        s.drain();
        s.upsert(&d("c"), upd(3, Severity::Low), String::new, |_| {});
        assert_eq!((s.len(), s.stats.evicted), (2, 1));
        assert!(!s.contains(d("a").key()), "the oldest went");
    }

    #[test]
    fn saved_findings_load_back() {
        let mut s = FindingStore::new(10);
        let d = Draft {
            kind: FindingKind::RateAnomaly,
            endpoint: None,
            client: Some("192.0.2.1".parse().unwrap()),
            detail: "client",
        };
        s.upsert(&d, upd(1, Severity::Medium), || "x".into(), |_| {});
        let saved = s.save();
        let mut t = FindingStore::new(10);
        assert_eq!(t.load(&saved), 0);
        assert_eq!(t.all(), s.all());
        assert!(t.drain().is_empty());
    }
}
