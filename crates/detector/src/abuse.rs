//! Behaviour over windows of calls: `bola_enumeration` (API1), `credential_stuffing`
//! (API2), `scanning` (API8).
//!
//! Each keeps small per-actor windows that start at the actor's first relevant call and end
//! `window_secs` later (a later call starts a new one), bounded in number; remembered values
//! (object ids, paths, user names) are keyed hashes.

use std::net::IpAddr;

use apiscope_inventory::auth::AuthScheme;
use apiscope_inventory::principal::Principal;
use apiscope_inventory::stats::mix64;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{BolaConfig, StuffingConfig};
use crate::detector::Ctx;
use crate::finding::{owasp, Draft, FindingKind, Severity, Update};
use crate::util::{
    hash_parts, ip_key, is_2xx, push_unique, sweep_full, IdSet, SweepGate, NS_PER_SEC,
};
use crate::Detector;

/// Weight of a closed window in a login endpoint's usual failures per window.
const STUFFING_ALPHA: f64 = 0.2;

fn principal_key(p: &Principal) -> u64 {
    mix64(p.hash ^ (p.kind as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// How an actor is named in summaries.
fn actor_text(p: Option<&Principal>, ip: IpAddr) -> String {
    match p {
        Some(p) => format!(
            "Principal {}:{:08x} (from {ip})",
            p.kind.as_str(),
            principal_key(p) >> 32
        ),
        None => format!("Client {ip}"),
    }
}

// ---------------------------------------------------------------------------------------------
// BOLA

/// One actor's window on one endpoint.
#[derive(Debug)]
struct BolaActor {
    start: u64,
    ids: IdSet,
    calls: u64,
    ok: u64,
    denied: u64,
    foreign: IdSet,
    foreign_calls: u64,
    hot: bool,
}

impl BolaActor {
    fn new(now: u64) -> Self {
        BolaActor {
            start: now,
            ids: IdSet::default(),
            calls: 0,
            ok: 0,
            denied: 0,
            foreign: IdSet::default(),
            foreign_calls: 0,
            hot: false,
        }
    }
}

/// The principal that first got an object answered 2xx.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Owner {
    principal: u64,
    seen_secs: u64,
}

/// Per endpoint: 2xx calls of owners back to their own objects, and of other principals to
/// objects someone else got first.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Revisits {
    same: u64,
    other: u64,
}

/// Forgets the older half of `owners` (by last 2xx); returns how many went.
fn evict_owners(owners: &mut FxHashMap<u64, Owner>) -> u64 {
    let mut seen: Vec<u64> = owners.values().map(|o| o.seen_secs).collect();
    if seen.is_empty() {
        return 0;
    }
    let mid = seen.len() / 2;
    let (_, median, _) = seen.select_nth_unstable(mid);
    let median = *median;
    let before = owners.len();
    owners.retain(|_, o| o.seen_secs > median);
    (before - owners.len()) as u64
}

#[derive(Debug, Default)]
pub(crate) struct BolaState {
    actors: FxHashMap<(u64, u64), BolaActor>,
    owners: FxHashMap<u64, Owner>,
    endpoints: FxHashMap<u64, Revisits>,
    gate: SweepGate,
}

impl BolaState {
    pub fn sweep(&mut self, now: u64, window: u64) {
        self.actors
            .retain(|_, a| now.saturating_sub(a.start) <= window);
    }

    pub fn save(&self) -> Value {
        let mut owners: Vec<(u64, u64, u64)> = self
            .owners
            .iter()
            .map(|(k, o)| (*k, o.principal, o.seen_secs))
            .collect();
        owners.sort_unstable();
        let mut eps: Vec<(u64, u64, u64)> = self
            .endpoints
            .iter()
            .map(|(k, r)| (*k, r.same, r.other))
            .collect();
        eps.sort_unstable();
        json!({"owners": owners, "endpoints": eps})
    }

    pub fn load(&mut self, v: &Value, cfg: &BolaConfig) -> usize {
        if v.is_null() {
            return 0;
        }
        let mut skipped = 0;
        let owners: Option<Vec<(u64, u64, u64)>> = v
            .get("owners")
            .and_then(|o| serde_json::from_value(o.clone()).ok());
        match owners {
            Some(list) => {
                for (k, principal, seen_secs) in list.into_iter().take(cfg.max_objects) {
                    self.owners.insert(
                        k,
                        Owner {
                            principal,
                            seen_secs,
                        },
                    );
                }
            }
            None => skipped += 1,
        }
        let eps: Option<Vec<(u64, u64, u64)>> = v
            .get("endpoints")
            .and_then(|o| serde_json::from_value(o.clone()).ok());
        match eps {
            Some(list) => {
                for (k, same, other) in list.into_iter().take(cfg.max_endpoints) {
                    self.endpoints.insert(k, Revisits { same, other });
                }
            }
            None => skipped += 1,
        }
        skipped
    }
}

/// What a BOLA finding reports, taken from the actor's window.
struct BolaHit {
    distinct: usize,
    saturated: bool,
    calls: u64,
    ok: u64,
    denied: u64,
    foreign: usize,
    volume: bool,
    denials: bool,
    cross: bool,
    add: u64,
}

// ---------------------------------------------------------------------------------------------
// Credential stuffing

#[derive(Debug)]
struct Source {
    start: u64,
    failures: u64,
    successes: u64,
    users: IdSet,
    hot: bool,
}

/// Failed logins on one login endpoint: the aligned window in progress and the one before,
/// for a sliding estimate over the last `window_secs`.
#[derive(Debug)]
struct LoginEndpoint {
    window: u64,
    failures: u64,
    sources: IdSet,
    prev_failures: u64,
    prev_sources: IdSet,
    /// Usual failures per window (moving average over closed windows).
    mean: f64,
    windows: u32,
    hot: bool,
}

#[derive(Debug, Default)]
pub(crate) struct StuffingState {
    sources: FxHashMap<IpAddr, Source>,
    endpoints: FxHashMap<u64, LoginEndpoint>,
    gate: SweepGate,
}

impl StuffingState {
    pub fn sweep(&mut self, now: u64, window: u64) {
        self.sources
            .retain(|_, s| now.saturating_sub(s.start) <= window);
    }

    pub fn save(&self) -> Value {
        let mut eps: Vec<(u64, u64, f64, u32)> = self
            .endpoints
            .iter()
            .map(|(k, e)| (*k, e.window, e.mean, e.windows))
            .collect();
        eps.sort_unstable_by_key(|e| e.0);
        json!({"endpoints": eps})
    }

    pub fn load(&mut self, v: &Value, cfg: &StuffingConfig) -> usize {
        if v.is_null() {
            return 0;
        }
        let eps: Option<Vec<(u64, u64, f64, u32)>> = v
            .get("endpoints")
            .and_then(|o| serde_json::from_value(o.clone()).ok());
        let Some(eps) = eps else { return 1 };
        for (k, window, mean, windows) in eps.into_iter().take(cfg.max_endpoints) {
            self.endpoints.insert(
                k,
                LoginEndpoint {
                    window,
                    failures: 0,
                    sources: IdSet::default(),
                    prev_failures: 0,
                    prev_sources: IdSet::default(),
                    mean,
                    windows,
                    hot: false,
                },
            );
        }
        0
    }
}

/// Whether `path` has a segment that is one of `words` (lower case, `-` and `_` ignored).
fn is_login_path(path: &str, words: &[String]) -> bool {
    let mut buf = String::new();
    path.split('/').any(|seg| {
        if seg.is_empty() || seg.len() > 32 {
            return false;
        }
        buf.clear();
        buf.extend(
            seg.chars()
                .filter(|c| *c != '-' && *c != '_')
                .map(|c| c.to_ascii_lowercase()),
        );
        words.iter().any(|w| {
            w.len() == buf.len()
                && w.chars()
                    .filter(|c| *c != '-' && *c != '_')
                    .map(|c| c.to_ascii_lowercase())
                    .eq(buf.chars())
        })
    })
}

/// A login attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failure,
    Success,
    Other,
}

fn login_outcome(c: &Ctx<'_>, cfg: &StuffingConfig) -> Option<Outcome> {
    let password = c.ep.is_some_and(|e| {
        e.last_call_sensitive.iter().any(|(k, l)| {
            *k == "password" && (l.starts_with("request_body") || l.starts_with("query:"))
        })
    });
    let login = password || is_login_path(c.f.path(), &cfg.login_path_words);
    let basic =
        c.f.auth
            .schemes()
            .iter()
            .any(|s| matches!(s, AuthScheme::Basic { .. }));
    let status = c.f.status?;
    let failure = if login {
        cfg.failure_statuses.contains(&status)
    } else if basic {
        status == 401
    } else {
        return None;
    };
    Some(if failure {
        Outcome::Failure
    } else if (200..400).contains(&status) {
        Outcome::Success
    } else {
        Outcome::Other
    })
}

// ---------------------------------------------------------------------------------------------
// Scanning

#[derive(Debug)]
struct ScanClient {
    start: u64,
    calls: u64,
    not_found: u64,
    unmatched: u64,
    paths: IdSet,
    hosts: IdSet,
    hot: bool,
}

impl ScanClient {
    fn new(now: u64) -> Self {
        ScanClient {
            start: now,
            calls: 0,
            not_found: 0,
            unmatched: 0,
            paths: IdSet::default(),
            hosts: IdSet::default(),
            hot: false,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ScanState {
    clients: FxHashMap<IpAddr, ScanClient>,
    gate: SweepGate,
}

impl ScanState {
    pub fn sweep(&mut self, now: u64, window: u64) {
        self.clients
            .retain(|_, s| now.saturating_sub(s.start) <= window);
    }
}

// ---------------------------------------------------------------------------------------------

impl Detector {
    pub(crate) fn check_bola(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.bola_enumeration;
        let Some(e) = c.ep else { return };
        if !cfg.enabled || c.notes.path_params.is_empty() {
            return;
        }
        let now = c.f.ts.as_nanos();
        let window = cfg.window_secs * NS_PER_SEC;
        let mut buf = Vec::with_capacity(64);
        for (_, v) in &c.notes.path_params {
            buf.extend_from_slice(v.as_bytes());
            buf.push(0);
        }
        let obj = self.hasher.hash(&buf);
        let principal = c.f.principal;
        let actor = match &principal {
            Some(p) => principal_key(p),
            None => ip_key(c.ip) ^ 0x5bd1_e995,
        };
        let key = (actor, c.ep_key);
        let BolaState {
            actors,
            owners,
            endpoints,
            gate,
        } = &mut self.bola;
        if !actors.contains_key(&key) && actors.len() >= cfg.max_actors {
            sweep_full(actors, gate, now, window, |a| a.start);
            if actors.len() >= cfg.max_actors {
                self.stats.bola_actors_dropped += 1;
                return;
            }
        }
        let a = actors.entry(key).or_insert_with(|| BolaActor::new(now));
        if now.saturating_sub(a.start) > window {
            *a = BolaActor::new(now);
        }
        a.calls += 1;
        match c.f.status {
            Some(200..=299) => a.ok += 1,
            Some(401 | 403 | 404) => a.denied += 1,
            _ => {}
        }
        if !a.ids.insert(obj, cfg.max_ids_per_actor) && a.ids.saturated && !a.ids.contains(obj) {
            self.stats.bola_ids_saturated += 1;
        }
        // Objects first answered to another principal.
        let mut revisits = None;
        if let (true, true, Some(p)) = (cfg.cross_principal, is_2xx(c.f.status), &principal) {
            let me = principal_key(p);
            let okey = mix64(c.ep_key ^ obj.rotate_left(17));
            let secs = now / NS_PER_SEC;
            if !endpoints.contains_key(&c.ep_key) && endpoints.len() >= cfg.max_endpoints {
                self.stats.bola_endpoints_dropped += 1;
            } else {
                let r = endpoints.entry(c.ep_key).or_default();
                match owners.get_mut(&okey) {
                    Some(o) if o.principal == me => {
                        o.seen_secs = secs;
                        r.same += 1;
                    }
                    Some(_) => {
                        r.other += 1;
                        a.foreign.insert(obj, cfg.max_ids_per_actor);
                        a.foreign_calls += 1;
                    }
                    None => {
                        if owners.len() >= cfg.max_objects {
                            self.stats.bola_objects_evicted += evict_owners(owners);
                        }
                        owners.insert(
                            okey,
                            Owner {
                                principal: me,
                                seen_secs: secs,
                            },
                        );
                    }
                }
                revisits = Some(*r);
            }
        }
        let distinct = a.ids.len();
        let volume = distinct >= cfg.min_distinct_ids;
        let denials = distinct >= cfg.min_distinct_ids_with_denials
            && a.denied >= cfg.min_denied
            && a.denied as f64 >= cfg.min_denied_share * a.calls as f64;
        let cross = a.foreign.len() >= cfg.min_foreign_objects
            && revisits.is_some_and(|r| {
                let others = r.other.saturating_sub(a.foreign_calls);
                r.same >= cfg.min_owner_revisits
                    && others as f64 <= cfg.max_shared_share * (r.same + others) as f64
            });
        if !(a.hot || volume || denials || cross) {
            return;
        }
        let hit = BolaHit {
            distinct,
            saturated: a.ids.saturated,
            calls: a.calls,
            ok: a.ok,
            denied: a.denied,
            foreign: a.foreign.len(),
            volume,
            denials,
            cross,
            add: if a.hot { 1 } else { a.calls },
        };
        a.hot = true;
        let window_secs = cfg.window_secs;
        let detail = principal.as_ref().map(|p| {
            format!(
                "principal\u{0}{}\u{0}{:016x}",
                p.kind.as_str(),
                principal_key(p)
            )
        });
        let d = Draft {
            kind: FindingKind::BolaEnumeration,
            endpoint: c.endpoint(),
            client: if principal.is_some() {
                None
            } else {
                Some(c.ip)
            },
            detail: detail.as_deref().unwrap_or(""),
        };
        let severity = if hit.cross || (hit.denials && hit.ok > 0) {
            Severity::High
        } else {
            Severity::Medium
        };
        let who = actor_text(principal.as_ref(), c.ip);
        self.store.upsert(
            &d,
            Update {
                ts: c.f.ts,
                add: hit.add,
                severity,
                owasp: Some(owasp::API1),
                shown_client: Some(c.ip),
            },
            || {
                if hit.cross {
                    format!(
                        "{who} got 2xx answers for {} objects of {} first returned to other \
                         principals: check object-level authorization on this endpoint.",
                        hit.foreign,
                        e.label()
                    )
                } else if hit.denials {
                    format!(
                        "{who} requested {} distinct objects of {} within {window_secs} s, {} \
                         of them denied: likely object id enumeration (BOLA); check object-level \
                         authorization and block the client.",
                        hit.distinct,
                        e.label(),
                        hit.denied
                    )
                } else {
                    format!(
                        "{who} requested {} distinct objects of {} within {window_secs} s: \
                         check that it may see them all (object id enumeration, BOLA).",
                        hit.distinct,
                        e.label()
                    )
                }
            },
            |m| {
                match &principal {
                    Some(p) => {
                        m.insert("actor".into(), "principal".into());
                        m.insert("principal_kind".into(), p.kind.as_str().into());
                        m.insert(
                            "principal_hash".into(),
                            format!("{:016x}", principal_key(p)).into(),
                        );
                        push_unique(m, "clients", c.ip.to_string().into(), 8);
                    }
                    None => {
                        m.insert("actor".into(), "client".into());
                    }
                }
                m.insert("window_secs".into(), window_secs.into());
                let prev = m.get("distinct_ids").and_then(Value::as_u64).unwrap_or(0);
                m.insert("distinct_ids".into(), prev.max(hit.distinct as u64).into());
                m.insert("ids_saturated".into(), hit.saturated.into());
                m.insert("window_calls".into(), hit.calls.into());
                m.insert("window_2xx".into(), hit.ok.into());
                m.insert("window_denied".into(), hit.denied.into());
                m.insert("foreign_objects".into(), hit.foreign.into());
                let params: Vec<&str> = c
                    .notes
                    .path_params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect();
                m.insert("id_parameters".into(), params.into());
                for (on, rule) in [
                    (hit.volume, "distinct_ids"),
                    (hit.denials, "ids_with_denials"),
                    (hit.cross, "cross_principal"),
                ] {
                    if on {
                        push_unique(m, "rules", rule.into(), 3);
                    }
                }
            },
        );
    }

    pub(crate) fn check_stuffing(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.credential_stuffing;
        if !cfg.enabled {
            return;
        }
        let Some(outcome) = login_outcome(c, cfg) else {
            return;
        };
        let now = c.f.ts.as_nanos();
        let window = cfg.window_secs * NS_PER_SEC;
        let failure = outcome == Outcome::Failure;
        let user =
            c.f.principal
                .filter(|p| p.kind == apiscope_inventory::principal::PrincipalKind::BasicUser)
                .map(|p| principal_key(&p));

        // One source.
        let st = &mut self.stuffing;
        let known = st.sources.contains_key(&c.ip);
        let mut source_hit = None;
        if known || failure {
            if !known && st.sources.len() >= cfg.max_sources {
                sweep_full(&mut st.sources, &mut st.gate, now, window, |s| s.start);
            }
            if !known && st.sources.len() >= cfg.max_sources {
                self.stats.stuffing_sources_dropped += 1;
            } else {
                let s = st.sources.entry(c.ip).or_insert_with(|| Source {
                    start: now,
                    failures: 0,
                    successes: 0,
                    users: IdSet::default(),
                    hot: false,
                });
                if now.saturating_sub(s.start) > window {
                    *s = Source {
                        start: now,
                        failures: 0,
                        successes: 0,
                        users: IdSet::default(),
                        hot: false,
                    };
                }
                match outcome {
                    Outcome::Failure => {
                        s.failures += 1;
                        if let Some(u) = user {
                            s.users.insert(u, 64);
                        }
                    }
                    Outcome::Success if s.failures > 0 => s.successes += 1,
                    _ => {}
                }
                let over = s.failures >= cfg.min_failures_per_source;
                if over && (failure || (s.hot && outcome == Outcome::Success)) {
                    let add = if s.hot {
                        u64::from(failure)
                    } else {
                        s.failures
                    };
                    s.hot = true;
                    source_hit = Some((add, s.failures, s.successes, s.users.len()));
                }
            }
        }

        // Many sources, one login endpoint: failures over the last window, estimated from
        // the aligned window in progress and the one before (weighted by how much of it is
        // still inside the last `window_secs`).
        let mut endpoint_hit = None;
        if let (Some(_), true) = (c.ep, failure || st.endpoints.contains_key(&c.ep_key)) {
            let widx = now / window;
            if !st.endpoints.contains_key(&c.ep_key) && st.endpoints.len() >= cfg.max_endpoints {
                self.stats.stuffing_endpoints_dropped += 1;
            } else {
                let le = st
                    .endpoints
                    .entry(c.ep_key)
                    .or_insert_with(|| LoginEndpoint {
                        window: widx,
                        failures: 0,
                        sources: IdSet::default(),
                        prev_failures: 0,
                        prev_sources: IdSet::default(),
                        mean: 0.0,
                        windows: 0,
                        hot: false,
                    });
                if le.window < widx {
                    // Close the window (and any empty ones after it) into the average.
                    let x = le.failures as f64;
                    le.mean = if le.windows == 0 {
                        x
                    } else {
                        le.mean + STUFFING_ALPHA * (x - le.mean)
                    };
                    let gap = widx.saturating_sub(le.window + 1).min(1_000);
                    le.mean *= (1.0 - STUFFING_ALPHA).powi(gap as i32);
                    le.windows = le.windows.saturating_add(1 + gap as u32);
                    if gap == 0 {
                        le.prev_failures = le.failures;
                        le.prev_sources = std::mem::take(&mut le.sources);
                    } else {
                        le.prev_failures = 0;
                        le.prev_sources.clear();
                        le.hot = false;
                    }
                    le.window = widx;
                    le.failures = 0;
                    le.sources.clear();
                }
                if failure {
                    le.failures += 1;
                    if !le
                        .sources
                        .insert(ip_key(c.ip), cfg.max_sources_per_endpoint)
                        && le.sources.saturated
                        && !le.sources.contains(ip_key(c.ip))
                    {
                        self.stats.stuffing_sources_saturated += 1;
                    }
                    let into = now.saturating_sub(widx * window) as f64 / window as f64;
                    let failures =
                        le.failures + (le.prev_failures as f64 * (1.0 - into)).round() as u64;
                    let sources = le.sources.union_len(&le.prev_sources);
                    let unusual = le.windows < cfg.distributed_min_history_windows
                        || failures as f64 >= cfg.distributed_factor * le.mean.max(1.0);
                    let over = failures >= cfg.distributed_min_failures
                        && sources >= cfg.distributed_min_sources
                        && unusual;
                    if le.hot || over {
                        let add = if le.hot { 1 } else { failures };
                        le.hot = true;
                        endpoint_hit = Some((add, failures, sources, le.mean));
                    }
                }
            }
        }

        let window_secs = cfg.window_secs;
        let path =
            c.ep.map_or_else(|| c.f.path().to_owned(), |e| e.label().to_owned());
        if let Some((add, failures, successes, users)) = source_hit {
            let d = Draft {
                kind: FindingKind::CredentialStuffing,
                endpoint: None,
                client: Some(c.ip),
                detail: "source",
            };
            let severity = if successes > 0 {
                Severity::Critical
            } else {
                Severity::High
            };
            self.store.upsert(
                &d,
                Update {
                    ts: c.f.ts,
                    add,
                    severity,
                    owasp: Some(owasp::API2),
                    shown_client: None,
                },
                || {
                    if successes > 0 {
                        format!(
                            "Client {} failed {failures} logins within {window_secs} s and then \
                             logged in: treat the account it reached as compromised, block the \
                             client and enforce login rate limits.",
                            c.ip
                        )
                    } else {
                        format!(
                            "Client {} failed {failures} logins within {window_secs} s \
                             (credential stuffing or brute force): block it and enforce login \
                             rate limits.",
                            c.ip
                        )
                    }
                },
                |m| {
                    m.insert("scope".into(), "source".into());
                    m.insert("window_secs".into(), window_secs.into());
                    m.insert("window_failures".into(), failures.into());
                    m.insert("successes_after_failures".into(), successes.into());
                    if users > 0 {
                        m.insert("distinct_basic_users".into(), users.into());
                    }
                    push_unique(m, "endpoints", path.as_str().into(), 8);
                },
            );
        }
        if let (Some((add, failures, sources, mean)), Some(e)) = (endpoint_hit, c.ep) {
            let d = Draft {
                kind: FindingKind::CredentialStuffing,
                endpoint: c.endpoint(),
                client: None,
                detail: "distributed",
            };
            self.store.upsert(
                &d,
                Update {
                    ts: c.f.ts,
                    add,
                    severity: Severity::High,
                    owasp: Some(owasp::API2),
                    shown_client: None,
                },
                || {
                    format!(
                        "{} had {failures} failed logins from {sources} sources within \
                         {window_secs} s (distributed credential stuffing): add bot protection \
                         and rate limits per account.",
                        e.label()
                    )
                },
                |m| {
                    m.insert("scope".into(), "distributed".into());
                    m.insert("window_secs".into(), window_secs.into());
                    let prev = m
                        .get("window_failures")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    m.insert("window_failures".into(), prev.max(failures).into());
                    let prev = m.get("sources").and_then(Value::as_u64).unwrap_or(0);
                    m.insert("sources".into(), prev.max(sources as u64).into());
                    m.insert(
                        "usual_failures_per_window".into(),
                        crate::util::round3(mean).into(),
                    );
                },
            );
        }
    }

    pub(crate) fn check_scanning(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.scanning;
        if !cfg.enabled {
            return;
        }
        let now = c.f.ts.as_nanos();
        let window = cfg.window_secs * NS_PER_SEC;
        let nf = c.f.status == Some(404);
        let clients = &mut self.scanning.clients;
        match clients.get_mut(&c.ip) {
            Some(s) if now.saturating_sub(s.start) > window => {
                if nf {
                    *s = ScanClient::new(now);
                } else {
                    clients.remove(&c.ip);
                    return;
                }
            }
            Some(_) => {}
            None if !nf => return,
            None => {
                if clients.len() >= cfg.max_clients {
                    sweep_full(clients, &mut self.scanning.gate, now, window, |s| s.start);
                }
                if clients.len() >= cfg.max_clients {
                    self.stats.scanning_clients_dropped += 1;
                    return;
                }
                clients.insert(c.ip, ScanClient::new(now));
            }
        }
        let s = clients.get_mut(&c.ip).expect("inserted above");
        s.calls += 1;
        if !nf {
            return;
        }
        s.not_found += 1;
        s.unmatched += u64::from(c.notes.unmatched_404);
        // A 404 on a route with parameters is one path however many ids it tried (walking
        // ids is the BOLA detection's business).
        let path_hash = match c.ep {
            Some(e) if !c.notes.path_params.is_empty() => self
                .hasher
                .hash(format!("{}\u{0}{}", e.host, e.label()).as_bytes()),
            _ => self
                .hasher
                .hash(format!("{}\u{0}{}", c.f.host, c.f.path()).as_bytes()),
        };
        if !s.paths.insert(path_hash, cfg.max_paths_per_client)
            && s.paths.saturated
            && !s.paths.contains(path_hash)
        {
            self.stats.scanning_paths_saturated += 1;
        }
        s.hosts.insert(hash_parts(&[c.f.host.as_bytes()]), 16);
        let over = s.paths.len() >= cfg.min_distinct_paths
            && s.not_found as f64 >= cfg.min_not_found_share * s.calls as f64;
        if !(s.hot || over) {
            return;
        }
        let add = if s.hot { 1 } else { s.not_found };
        s.hot = true;
        let (paths, saturated, not_found, unmatched, calls, hosts) = (
            s.paths.len(),
            s.paths.saturated,
            s.not_found,
            s.unmatched,
            s.calls,
            s.hosts.len(),
        );
        let window_secs = cfg.window_secs;
        let d = Draft {
            kind: FindingKind::Scanning,
            endpoint: None,
            client: Some(c.ip),
            detail: "",
        };
        self.store.upsert(
            &d,
            Update {
                ts: c.f.ts,
                add,
                severity: Severity::Medium,
                owasp: Some(owasp::API8),
                shown_client: None,
            },
            || {
                format!(
                    "Client {} requested {paths} distinct paths that do not exist within \
                     {window_secs} s (scanning for unlisted endpoints): block it and check \
                     that nothing it probed answered.",
                    c.ip
                )
            },
            |m| {
                m.insert("window_secs".into(), window_secs.into());
                let prev = m.get("distinct_paths").and_then(Value::as_u64).unwrap_or(0);
                m.insert("distinct_paths".into(), prev.max(paths as u64).into());
                m.insert("paths_saturated".into(), saturated.into());
                m.insert("window_not_found".into(), not_found.into());
                m.insert("window_unmatched_404".into(), unmatched.into());
                m.insert("window_calls".into(), calls.into());
                m.insert("hosts".into(), hosts.into());
                push_unique(m, "host_names", c.f.host.as_str().into(), 8);
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_paths() {
        let w = StuffingConfig::default().login_path_words;
        assert!(is_login_path("/api/v2/login", &w));
        assert!(is_login_path("/users/sign_in", &w));
        assert!(is_login_path("/oauth/token", &w));
        assert!(is_login_path("/Auth/SignIn", &w));
        assert!(!is_login_path("/api/v2/orders/17", &w));
        assert!(!is_login_path("/loginhistory", &w));
    }
}
