//! Inventory against the specs: `shadow_api`, `zombie_api`, `orphan_api` (OWASP API9).

use std::collections::{BTreeMap, VecDeque};

use apiscope_capture::Timestamp;
use apiscope_inventory::inventory::{EndpointEntry, Inventory};
use apiscope_inventory::spec::{SpecMatch, SpecSet};
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::config::UncoveredHosts;
use crate::detector::Ctx;
use crate::finding::{owasp, Draft, FindingKind, Severity, Update};
use crate::util::{bump, is_2xx, push_unique, round3, NS_PER_SEC};
use crate::Detector;

/// Endpoint verdicts cached; beyond, the cache starts over (`spec_status_cache_resets`).
const MAX_STATUS_CACHE: usize = 100_000;
/// Hosts whose traffic is counted for the orphan check (`orphan_hosts_dropped`).
const MAX_HOSTS: usize = 4_096;
/// Buckets per orphan window in the per-host call counts.
const HOST_BUCKETS: u64 = 60;

/// What the specs say of one endpoint.
#[derive(Debug, Clone)]
pub(crate) enum SpecStatus {
    /// Specs were given but none covers the endpoint's host.
    Uncovered,
    Documented,
    Deprecated,
    /// Not in the spec, which serves the same path under a newer version (`newer`).
    OlderVersion {
        newer: String,
    },
    /// Not in the spec; `method_only`: the spec has the path with other methods.
    Shadow {
        method_only: bool,
    },
}

/// Calls to one host per bucket, over the orphan window.
#[derive(Debug, Default)]
struct HostWindow {
    covered: bool,
    buckets: VecDeque<(u64, u64)>,
}

impl HostWindow {
    fn add(&mut self, bucket: u64, keep_from: u64) {
        match self.buckets.back_mut() {
            Some((b, n)) if *b == bucket => *n += 1,
            _ => self.buckets.push_back((bucket, 1)),
        }
        while self.buckets.front().is_some_and(|(b, _)| *b < keep_from) {
            self.buckets.pop_front();
        }
    }

    fn calls_since(&self, from: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(b, _)| *b >= from)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The newest version of each versioned path of a host's specs.
#[derive(Debug, Default)]
struct VersionIndex {
    newest: FxHashMap<String, ((u32, u32), String)>,
}

impl VersionIndex {
    fn build(specs: &SpecSet, host: &str) -> Self {
        let mut idx = VersionIndex::default();
        for m in specs.operations_for_host(host) {
            if m.deprecated {
                continue;
            }
            if let Some((key, v)) = version_key(m.template) {
                let slot = idx
                    .newest
                    .entry(key)
                    .or_insert_with(|| (v, m.template.to_owned()));
                if v > slot.0 {
                    *slot = (v, m.template.to_owned());
                }
            }
        }
        idx
    }
}

/// State of the spec detections.
#[derive(Debug, Default)]
pub(crate) struct SpecState {
    status: FxHashMap<u64, SpecStatus>,
    versions: FxHashMap<String, VersionIndex>,
    hosts: FxHashMap<String, HostWindow>,
    next_orphan_check_ns: u64,
    /// Capture time of the last orphan check (a check at the same time is not repeated).
    last_orphan_check_ns: u64,
}

/// `v2`, `V1`, `v1.1`, `v2beta1` → (major, minor).
pub(crate) fn parse_version(seg: &str) -> Option<(u32, u32)> {
    let s = seg.strip_prefix(['v', 'V'])?;
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 || end > 6 {
        return None;
    }
    let major = s[..end].parse().ok()?;
    let rest = &s[end..];
    let (minor, tail) = match rest.strip_prefix('.') {
        Some(r) => {
            let e = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if e == 0 || e > 6 {
                return None;
            }
            (r[..e].parse().ok()?, &r[e..])
        }
        None => (0, rest),
    };
    let tail_ok = tail.is_empty()
        || (tail.len() <= 8
            && tail.starts_with(|c: char| c.is_ascii_lowercase())
            && tail.chars().all(|c| c.is_ascii_alphanumeric()));
    tail_ok.then_some((major, minor))
}

/// A path's first version segment, and the path around it with parameters blanked
/// (`/api/v1/users/{id}` → (`/api\0/users/{}`, (1, 0))).
pub(crate) fn version_key(path: &str) -> Option<(String, (u32, u32))> {
    let segs: Vec<&str> = path.split('/').collect();
    let i = segs.iter().position(|s| parse_version(s).is_some())?;
    let v = parse_version(segs[i])?;
    fn norm<'a>(s: &&'a str) -> &'a str {
        if s.starts_with('{') {
            "{}"
        } else {
            s
        }
    }
    let before: Vec<&str> = segs[..i].iter().map(norm).collect();
    let after: Vec<&str> = segs[i + 1..].iter().map(norm).collect();
    Some((format!("{}\u{0}{}", before.join("/"), after.join("/")), v))
}

fn status_of(
    e: &EndpointEntry,
    specs: &SpecSet,
    versions: &mut FxHashMap<String, VersionIndex>,
) -> SpecStatus {
    match e.in_spec {
        None => SpecStatus::Uncovered,
        Some(true) if e.deprecated => SpecStatus::Deprecated,
        Some(true) => SpecStatus::Documented,
        Some(false) => {
            if let Some((key, v)) = version_key(&e.path) {
                if versions.len() >= MAX_HOSTS && !versions.contains_key(&e.host) {
                    versions.clear();
                }
                let idx = versions
                    .entry(e.host.clone())
                    .or_insert_with(|| VersionIndex::build(specs, &e.host));
                if let Some((nv, t)) = idx.newest.get(&key) {
                    if *nv > v {
                        return SpecStatus::OlderVersion { newer: t.clone() };
                    }
                }
            }
            let method_only = matches!(
                specs.find(&e.host, &e.method, &e.path),
                Some(SpecMatch::PathOnly(_))
            );
            SpecStatus::Shadow { method_only }
        }
    }
}

/// The endpoint facts shadow and zombie evidence carries.
fn endpoint_evidence(m: &mut serde_json::Map<String, Value>, e: &EndpointEntry) {
    m.insert("endpoint_calls".into(), e.calls.into());
    m.insert(
        "statuses".into(),
        serde_json::to_value(&e.statuses.counts).unwrap_or(Value::Null),
    );
    m.insert("clients".into(), e.clients.count().into());
    let share = if e.calls == 0 {
        0.0
    } else {
        e.authenticated_calls as f64 / e.calls as f64
    };
    m.insert("authenticated_share".into(), round3(share).into());
}

impl Detector {
    pub(crate) fn check_spec_status(&mut self, c: &Ctx<'_>, inv: &Inventory) {
        let Some(specs) = inv.specs() else { return };
        self.count_host(c, specs);
        let Some(e) = c.ep else { return };
        let (shadow, zombie) = (&self.cfg.shadow_api, &self.cfg.zombie_api);
        if !shadow.enabled && !zombie.enabled {
            return;
        }
        if self.spec.status.len() >= MAX_STATUS_CACHE && !self.spec.status.contains_key(&c.ep_key) {
            self.spec.status.clear();
            self.stats.spec_status_cache_resets += 1;
        }
        let SpecState {
            status, versions, ..
        } = &mut self.spec;
        let st = status
            .entry(c.ep_key)
            .or_insert_with(|| status_of(e, specs, versions));
        let ok = is_2xx(c.f.status);
        let up = |severity| Update {
            ts: c.f.ts,
            add: 1,
            severity,
            owasp: Some(owasp::API9),
            shown_client: None,
        };
        let store = &mut self.store;
        match st {
            SpecStatus::Documented => {}
            SpecStatus::Uncovered => {
                if !shadow.enabled || shadow.uncovered_hosts != UncoveredHosts::Report {
                    return;
                }
                let d = Draft {
                    kind: FindingKind::ShadowApi,
                    endpoint: None,
                    client: None,
                    detail: &e.host,
                };
                if ok || store.contains(d.key()) {
                    store.upsert(
                        &d,
                        up(Severity::Low),
                        || {
                            format!(
                                "Host {} serves API traffic but none of the given specs covers \
                                 it: add a spec for it or list it under a spec's hosts.",
                                e.host
                            )
                        },
                        |m| {
                            m.insert("reason".into(), "host_not_covered".into());
                            m.insert("host".into(), e.host.clone().into());
                            bump(m, "calls", 1);
                            push_unique(m, "endpoints", e.label().into(), 20);
                        },
                    );
                }
            }
            SpecStatus::Shadow { method_only } => {
                if !shadow.enabled {
                    return;
                }
                let method_only = *method_only;
                let d = Draft {
                    kind: FindingKind::ShadowApi,
                    endpoint: c.endpoint(),
                    client: None,
                    detail: "",
                };
                if ok || store.contains(d.key()) {
                    store.upsert(
                        &d,
                        up(Severity::Medium),
                        || {
                            format!(
                                "{} is answered but no spec given for {} describes it{}: \
                                 document it in the spec or retire it.",
                                e.label(),
                                e.host,
                                if method_only {
                                    " (the spec has the path, not this method)"
                                } else {
                                    ""
                                }
                            )
                        },
                        |m| {
                            let reason = if method_only {
                                "method_not_in_spec"
                            } else {
                                "path_not_in_spec"
                            };
                            m.insert("reason".into(), reason.into());
                            endpoint_evidence(m, e);
                        },
                    );
                }
            }
            SpecStatus::Deprecated => {
                if !zombie.enabled || !zombie.deprecated || c.f.status.is_none() {
                    return;
                }
                let d = Draft {
                    kind: FindingKind::ZombieApi,
                    endpoint: c.endpoint(),
                    client: None,
                    detail: "deprecated",
                };
                store.upsert(
                    &d,
                    up(Severity::Low),
                    || {
                        format!(
                            "{} is deprecated in the spec but still called: move its clients \
                             to the replacement, then retire it.",
                            e.label()
                        )
                    },
                    |m| {
                        m.insert("reason".into(), "deprecated".into());
                        m.insert(
                            "operation_id".into(),
                            e.spec_operation.clone().map_or(Value::Null, Value::from),
                        );
                        endpoint_evidence(m, e);
                    },
                );
            }
            SpecStatus::OlderVersion { newer } => {
                if !zombie.enabled || !zombie.older_versions {
                    return;
                }
                let d = Draft {
                    kind: FindingKind::ZombieApi,
                    endpoint: c.endpoint(),
                    client: None,
                    detail: "older_version",
                };
                if ok || store.contains(d.key()) {
                    let newer = newer.as_str();
                    store.upsert(
                        &d,
                        up(Severity::Medium),
                        || {
                            format!(
                                "{} still answers although the spec serves this resource as \
                                 {newer}: retire the old version (it may lack later fixes).",
                                e.label()
                            )
                        },
                        |m| {
                            m.insert("reason".into(), "older_version".into());
                            m.insert("newer_template".into(), newer.into());
                            endpoint_evidence(m, e);
                        },
                    );
                }
            }
        }
    }

    fn orphan_bucket_ns(&self) -> u64 {
        (self.cfg.orphan_api.window_secs * NS_PER_SEC / HOST_BUCKETS).max(NS_PER_SEC)
    }

    /// Counts the call for its host's traffic in the orphan window.
    fn count_host(&mut self, c: &Ctx<'_>, specs: &SpecSet) {
        if !self.cfg.orphan_api.enabled {
            return;
        }
        let bucket_ns = self.orphan_bucket_ns();
        let window_ns = self.cfg.orphan_api.window_secs * NS_PER_SEC;
        let bucket = c.f.ts.as_nanos() / bucket_ns;
        let keep_from = c.f.ts.as_nanos().saturating_sub(window_ns) / bucket_ns;
        let host = c.f.host.as_str();
        if let Some(h) = self.spec.hosts.get_mut(host) {
            if h.covered {
                h.add(bucket, keep_from);
            }
            return;
        }
        if self.spec.hosts.len() >= MAX_HOSTS {
            self.stats.orphan_hosts_dropped += 1;
            return;
        }
        let mut h = HostWindow {
            covered: specs.covers_host(host),
            ..HostWindow::default()
        };
        if h.covered {
            h.add(bucket, keep_from);
        }
        self.spec.hosts.insert(host.to_owned(), h);
    }

    pub(crate) fn orphan_due(&mut self, now: Timestamp) -> bool {
        if !self.cfg.orphan_api.enabled {
            return false;
        }
        let now = now.as_nanos();
        if self.spec.next_orphan_check_ns == 0 {
            let start = self.run_start.map_or(now, Timestamp::as_nanos);
            self.spec.next_orphan_check_ns = start
                .saturating_add(self.cfg.orphan_api.window_secs * NS_PER_SEC)
                .max(1);
        }
        if now < self.spec.next_orphan_check_ns {
            return false;
        }
        self.spec.next_orphan_check_ns =
            now.saturating_add(self.cfg.orphan_api.check_every_secs * NS_PER_SEC);
        true
    }

    /// Reports spec operations without calls in the window ending at `now`, for hosts that
    /// had at least `min_host_calls` calls in it; only when this run has watched the whole
    /// window.
    pub(crate) fn check_orphans(&mut self, inv: &Inventory, now: Timestamp) {
        let cfg = &self.cfg.orphan_api;
        if !cfg.enabled {
            return;
        }
        let Some(specs) = inv.specs() else { return };
        let Some(start) = self.run_start else { return };
        let window_ns = cfg.window_secs * NS_PER_SEC;
        if now.as_nanos() < start.as_nanos().saturating_add(window_ns)
            || now.as_nanos() == self.spec.last_orphan_check_ns
        {
            return;
        }
        self.spec.last_orphan_check_ns = now.as_nanos();
        self.stats.orphan_checks += 1;
        let cutoff = Timestamp::from_nanos(now.as_nanos() - window_ns);
        let from_bucket = cutoff.as_nanos() / self.orphan_bucket_ns();
        let mut active: Vec<(&str, u64)> = self
            .spec
            .hosts
            .iter()
            .filter(|(_, w)| w.covered)
            .map(|(h, w)| (h.as_str(), w.calls_since(from_bucket)))
            .filter(|(_, n)| *n >= cfg.min_host_calls)
            .collect();
        if active.is_empty() {
            return;
        }
        active.sort_unstable();
        // The latest call of each spec operation, over every endpoint that matches it.
        let mut last: FxHashMap<(usize, &str, &str), Timestamp> = FxHashMap::default();
        for e in inv.endpoints() {
            if e.in_spec != Some(true) {
                continue;
            }
            if let Some(SpecMatch::Operation(m)) = specs.find(&e.host, &e.method, &e.path) {
                let t = last
                    .entry((m.spec, m.template, m.operation.method.as_str()))
                    .or_insert(e.last_seen);
                *t = (*t).max(e.last_seen);
            }
        }
        struct Orphan<'s> {
            file: &'s str,
            operation_id: Option<&'s str>,
            deprecated: bool,
            last: Option<Timestamp>,
            hosts: Vec<(&'s str, u64)>,
        }
        let mut orphans: BTreeMap<(usize, &str, &str), Orphan<'_>> = BTreeMap::new();
        for &(host, calls) in &active {
            for m in specs.operations_for_host(host) {
                if m.deprecated && !cfg.include_deprecated {
                    continue;
                }
                let k = (m.spec, m.template, m.operation.method.as_str());
                let seen = last.get(&k).copied();
                if seen.is_some_and(|t| t >= cutoff) {
                    continue;
                }
                orphans
                    .entry(k)
                    .or_insert_with(|| Orphan {
                        file: &specs.specs()[m.spec].file,
                        operation_id: m.operation_id,
                        deprecated: m.deprecated,
                        last: seen,
                        hosts: Vec::new(),
                    })
                    .hosts
                    .push((host, calls));
            }
        }
        let window_secs = cfg.window_secs;
        for ((_, template, method), o) in orphans {
            let (host, host_calls) = o.hosts[0];
            let d = Draft {
                kind: FindingKind::OrphanApi,
                endpoint: Some((host, method, template)),
                client: None,
                detail: o.file,
            };
            self.store.upsert(
                &d,
                Update {
                    ts: now,
                    add: 1,
                    severity: Severity::Low,
                    owasp: Some(owasp::API9),
                    shown_client: None,
                },
                || {
                    format!(
                        "{method} {host} {template} is in the spec but had no call in the last \
                         {window_secs} s while the host had {host_calls}: check whether it is \
                         still needed, and remove it from the spec and the service if not."
                    )
                },
                |m| {
                    m.insert("spec".into(), o.file.into());
                    m.insert(
                        "operation_id".into(),
                        o.operation_id.map_or(Value::Null, Value::from),
                    );
                    m.insert("deprecated".into(), o.deprecated.into());
                    m.insert("window_secs".into(), window_secs.into());
                    m.insert(
                        "last_call".into(),
                        o.last.map_or(Value::Null, |t| t.to_string().into()),
                    );
                    let hosts: Vec<Value> = o
                        .hosts
                        .iter()
                        .take(8)
                        .map(|(h, n)| json!({"host": h, "calls_in_window": n}))
                        .collect();
                    m.insert("hosts".into(), hosts.into());
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_recognised() {
        assert_eq!(parse_version("v1"), Some((1, 0)));
        assert_eq!(parse_version("V2"), Some((2, 0)));
        assert_eq!(parse_version("v1.1"), Some((1, 1)));
        assert_eq!(parse_version("v2beta1"), Some((2, 0)));
        assert_eq!(parse_version("v"), None);
        assert_eq!(parse_version("video"), None);
        assert_eq!(parse_version("v1.x"), None);
        assert_eq!(parse_version("v1-old"), None);
        let (k1, v1) = version_key("/api/v1/users/{id}").unwrap();
        let (k2, v2) = version_key("/api/v2/users/{userId}").unwrap();
        assert_eq!(k1, k2);
        assert!(v2 > v1);
        assert_ne!(k1, version_key("/api/v2/orders/{id}").unwrap().0);
        assert_eq!(version_key("/users/{id}"), None);
    }
}
