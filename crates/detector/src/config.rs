//! `[detector]` configuration: one table per detection, with its thresholds, windows (in
//! seconds of capture time) and `enabled` flag, plus the bounds of the state each one keeps.
//!
//! Every key has a default ([`DetectorConfig::default`]); [`DetectorConfig::validate`] lists
//! every unusable value at once. `docs/detections.md` explains each key.

use serde::Deserialize;

/// `[detector]`: see the module overview.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Run the detections at all.
    pub enabled: bool,
    /// Findings kept at once. When a new one would exceed it, the least recently updated
    /// eighth of the already published findings is forgotten (`findings_evicted`); when none
    /// has been published yet, the new finding is dropped (`findings_dropped`).
    pub max_findings: usize,
    /// Tell clients apart by the first `X-Forwarded-For` / `Forwarded: for=` address when a
    /// request carries one (clients behind a load balancer or proxy). Off: the TCP peer.
    pub trust_forwarded_for: bool,
    pub shadow_api: ShadowApiConfig,
    pub zombie_api: ZombieApiConfig,
    pub orphan_api: OrphanApiConfig,
    pub unauthenticated_access: UnauthenticatedConfig,
    pub cleartext_credentials: CleartextConfig,
    pub sensitive_data_exposure: SensitiveExposureConfig,
    pub bola_enumeration: BolaConfig,
    pub credential_stuffing: StuffingConfig,
    pub scanning: ScanningConfig,
    pub rate_anomaly: RateConfig,
    pub request_smuggling: SmugglingConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            enabled: true,
            max_findings: 10_000,
            trust_forwarded_for: true,
            shadow_api: ShadowApiConfig::default(),
            zombie_api: ZombieApiConfig::default(),
            orphan_api: OrphanApiConfig::default(),
            unauthenticated_access: UnauthenticatedConfig::default(),
            cleartext_credentials: CleartextConfig::default(),
            sensitive_data_exposure: SensitiveExposureConfig::default(),
            bola_enumeration: BolaConfig::default(),
            credential_stuffing: StuffingConfig::default(),
            scanning: ScanningConfig::default(),
            rate_anomaly: RateConfig::default(),
            request_smuggling: SmugglingConfig::default(),
        }
    }
}

/// What to do with hosts that no spec covers when specs were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncoveredHosts {
    /// Their endpoints are of unknown status: no finding.
    Ignore,
    /// One `shadow_api` finding per such host (no endpoint), on its first 2xx answer.
    Report,
}

/// `[detector.shadow_api]`: endpoints that no given spec describes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowApiConfig {
    pub enabled: bool,
    /// `ignore` or `report` hosts no spec covers.
    pub uncovered_hosts: UncoveredHosts,
}

impl Default for ShadowApiConfig {
    fn default() -> Self {
        ShadowApiConfig {
            enabled: true,
            uncovered_hosts: UncoveredHosts::Ignore,
        }
    }
}

/// `[detector.zombie_api]`: deprecated operations and superseded versions still in use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZombieApiConfig {
    pub enabled: bool,
    /// Report traffic to operations the spec marks `deprecated`.
    pub deprecated: bool,
    /// Report traffic to an older version (`/v1/...`) of a path the spec serves under a
    /// newer one (`/v2/...`).
    pub older_versions: bool,
}

impl Default for ZombieApiConfig {
    fn default() -> Self {
        ZombieApiConfig {
            enabled: true,
            deprecated: true,
            older_versions: true,
        }
    }
}

/// `[detector.orphan_api]`: spec operations without traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrphanApiConfig {
    pub enabled: bool,
    /// An operation is an orphan when it had no call for this long while its host had
    /// traffic; the sensor must also have been watching at least this long.
    pub window_secs: u64,
    /// How often (capture time) the check runs; it runs once more at the end of input.
    pub check_every_secs: u64,
    /// Calls the host must have had within the window for its operations to be judged.
    pub min_host_calls: u64,
    /// Also report deprecated operations without traffic (by default their silence is
    /// what a deprecation wants).
    pub include_deprecated: bool,
}

impl Default for OrphanApiConfig {
    fn default() -> Self {
        OrphanApiConfig {
            enabled: true,
            window_secs: 3600,
            check_every_secs: 600,
            min_host_calls: 10,
            include_deprecated: false,
        }
    }
}

/// `[detector.unauthenticated_access]`: 2xx without credentials where most calls carry them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnauthenticatedConfig {
    pub enabled: bool,
    /// Earlier calls the endpoint must have had before it is judged.
    pub min_calls: u64,
    /// Share (0..=1) of those earlier calls that carried credentials.
    pub min_authenticated_share: f64,
}

impl Default for UnauthenticatedConfig {
    fn default() -> Self {
        UnauthenticatedConfig {
            enabled: true,
            min_calls: 20,
            min_authenticated_share: 0.9,
        }
    }
}

/// `[detector.cleartext_credentials]`: credentials sent over plaintext HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleartextConfig {
    pub enabled: bool,
    /// HTTP Basic credentials.
    pub basic: bool,
    /// Passwords in query strings and request bodies (form or JSON).
    pub passwords: bool,
    /// API keys and tokens in query strings.
    pub api_keys_in_query: bool,
}

impl Default for CleartextConfig {
    fn default() -> Self {
        CleartextConfig {
            enabled: true,
            basic: true,
            passwords: true,
            api_keys_in_query: true,
        }
    }
}

/// `[detector.sensitive_data_exposure]`: sensitive data in responses, query strings, paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveExposureConfig {
    pub enabled: bool,
    /// Look at response bodies.
    pub responses: bool,
    /// Look at query strings.
    pub query: bool,
    /// Look at paths.
    pub path: bool,
    /// Data types never reported (`email`, `phone`, ...).
    pub ignore_kinds: Vec<String>,
}

impl Default for SensitiveExposureConfig {
    fn default() -> Self {
        SensitiveExposureConfig {
            enabled: true,
            responses: true,
            query: true,
            path: true,
            ignore_kinds: Vec::new(),
        }
    }
}

/// `[detector.bola_enumeration]`: one actor walking many object ids on one endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BolaConfig {
    pub enabled: bool,
    /// Window per (actor, endpoint), from the actor's first call on it.
    pub window_secs: u64,
    /// Distinct object ids in a window that are an enumeration on their own.
    pub min_distinct_ids: usize,
    /// Distinct object ids that are an enumeration when denials come with them ...
    pub min_distinct_ids_with_denials: usize,
    /// ... at least this many 401/403/404 answers ...
    pub min_denied: u64,
    /// ... making at least this share (0..=1) of the actor's calls there.
    pub min_denied_share: f64,
    /// Detect objects first answered 2xx to one principal and later to another.
    pub cross_principal: bool,
    /// Distinct such foreign objects in a window that make a finding ...
    pub min_foreign_objects: usize,
    /// ... on an endpoint where owners came back to their own objects at least this often
    /// (evidence that its objects belong to one principal) ...
    pub min_owner_revisits: u64,
    /// ... and where other actors' foreign accesses are at most this share (0..=1) of the
    /// revisits (a shared catalog is not private data).
    pub max_shared_share: f64,
    /// (actor, endpoint) windows tracked (`bola_actors_dropped`).
    pub max_actors: usize,
    /// Distinct ids remembered per window (`bola_ids_saturated`); at least
    /// `min_distinct_ids` and `min_foreign_objects`.
    pub max_ids_per_actor: usize,
    /// Objects whose first principal is remembered (`bola_objects_evicted`).
    pub max_objects: usize,
    /// Endpoints whose owner-revisit statistics are kept (`bola_endpoints_dropped`).
    pub max_endpoints: usize,
}

impl Default for BolaConfig {
    fn default() -> Self {
        BolaConfig {
            enabled: true,
            window_secs: 600,
            min_distinct_ids: 50,
            min_distinct_ids_with_denials: 10,
            min_denied: 5,
            min_denied_share: 0.25,
            cross_principal: true,
            min_foreign_objects: 5,
            min_owner_revisits: 10,
            max_shared_share: 0.1,
            max_actors: 10_000,
            max_ids_per_actor: 128,
            max_objects: 100_000,
            max_endpoints: 20_000,
        }
    }
}

/// `[detector.credential_stuffing]`: many failed logins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StuffingConfig {
    pub enabled: bool,
    /// Window per source (from its first failure) and per login endpoint (aligned).
    pub window_secs: u64,
    /// Statuses that are a failed login on a login endpoint (HTTP Basic alone: 401 only).
    pub failure_statuses: Vec<u16>,
    /// Path segments that make a login endpoint (compared lower-case, `-`/`_` ignored).
    pub login_path_words: Vec<String>,
    /// Failures from one source in a window that make a finding.
    pub min_failures_per_source: u64,
    /// Failures on one login endpoint in a window, from all sources, ...
    pub distributed_min_failures: u64,
    /// ... from at least this many distinct sources ...
    pub distributed_min_sources: usize,
    /// ... and at least this many times the endpoint's usual failures per window (EWMA),
    /// once it has `distributed_min_history_windows` windows of history.
    pub distributed_factor: f64,
    pub distributed_min_history_windows: u32,
    /// Sources tracked (`stuffing_sources_dropped`).
    pub max_sources: usize,
    /// Login endpoints tracked (`stuffing_endpoints_dropped`).
    pub max_endpoints: usize,
    /// Distinct sources remembered per login endpoint and window (`stuffing_sources_saturated`).
    pub max_sources_per_endpoint: usize,
}

impl Default for StuffingConfig {
    fn default() -> Self {
        StuffingConfig {
            enabled: true,
            window_secs: 300,
            failure_statuses: vec![401, 403],
            login_path_words: [
                "login",
                "signin",
                "logon",
                "authenticate",
                "auth",
                "token",
                "session",
                "sessions",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            min_failures_per_source: 10,
            distributed_min_failures: 50,
            distributed_min_sources: 10,
            distributed_factor: 5.0,
            distributed_min_history_windows: 3,
            max_sources: 20_000,
            max_endpoints: 1_000,
            max_sources_per_endpoint: 4_096,
        }
    }
}

/// `[detector.scanning]`: one client asking for many paths that do not exist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanningConfig {
    pub enabled: bool,
    /// Window per client, from its first 404.
    pub window_secs: u64,
    /// Distinct not-found paths in a window that make a finding ...
    pub min_distinct_paths: usize,
    /// ... when 404s are at least this share (0..=1) of the client's calls in the window.
    pub min_not_found_share: f64,
    /// Clients tracked (`scanning_clients_dropped`).
    pub max_clients: usize,
    /// Distinct paths remembered per client (`scanning_paths_saturated`); at least
    /// `min_distinct_paths`.
    pub max_paths_per_client: usize,
}

impl Default for ScanningConfig {
    fn default() -> Self {
        ScanningConfig {
            enabled: true,
            window_secs: 300,
            min_distinct_paths: 20,
            min_not_found_share: 0.5,
            max_clients: 20_000,
            max_paths_per_client: 128,
        }
    }
}

/// `[detector.rate_anomaly]`: calls per bucket far above the learned baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    pub enabled: bool,
    /// Baselines per endpoint.
    pub endpoints: bool,
    /// Baselines per client.
    pub clients: bool,
    /// Length of a bucket; its call count is compared with the baseline when it closes.
    pub bucket_secs: u64,
    /// Weight (0..1] of a new bucket in the moving average and variance.
    pub alpha: f64,
    /// Buckets of history before a baseline is trusted.
    pub min_history_buckets: u32,
    /// A bucket is anomalous with at least this many calls ...
    pub min_bucket_calls: u64,
    /// ... at least `factor` times the average ...
    pub factor: f64,
    /// ... at least `sigmas` standard deviations above it ...
    pub sigmas: f64,
    /// ... and at least `peak_factor` times the highest recent bucket (which decays with a
    /// half-life of `peak_half_life_buckets`), unless the bucket before was anomalous too.
    pub peak_factor: f64,
    pub peak_half_life_buckets: u32,
    /// Endpoints with a baseline (`rate_endpoints_dropped`).
    pub max_endpoints: usize,
    /// Clients with a baseline (`rate_clients_dropped`).
    pub max_clients: usize,
    /// A client without calls for this many buckets is forgotten.
    pub client_idle_evict_buckets: u64,
    /// An endpoint without calls for this many buckets is forgotten.
    pub endpoint_idle_evict_buckets: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            enabled: true,
            endpoints: true,
            clients: true,
            bucket_secs: 60,
            alpha: 0.1,
            min_history_buckets: 10,
            min_bucket_calls: 30,
            factor: 5.0,
            sigmas: 4.0,
            peak_factor: 1.5,
            peak_half_life_buckets: 1440,
            max_endpoints: 20_000,
            max_clients: 20_000,
            client_idle_evict_buckets: 60,
            endpoint_idle_evict_buckets: 10_080,
        }
    }
}

/// `[detector.request_smuggling]`: ambiguous message framing and stream evasion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmugglingConfig {
    pub enabled: bool,
    /// Also report a `Content-Length` that is not a plain number.
    pub invalid_content_length: bool,
    /// Report what [`crate::Detector::stream_anomaly`] is told (overlapping TCP segments with
    /// different bytes).
    pub stream_anomalies: bool,
}

impl Default for SmugglingConfig {
    fn default() -> Self {
        SmugglingConfig {
            enabled: true,
            invalid_content_length: true,
            stream_anomalies: true,
        }
    }
}

impl DetectorConfig {
    /// Every problem with these values, each as `key: message` (keys relative to
    /// `[detector]`, e.g. `scanning.window_secs`); empty when usable.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                e.push(msg.to_owned());
            }
        };
        let share = |x: f64| (0.0..=1.0).contains(&x);
        check(self.max_findings >= 1, "max_findings: must be at least 1");

        let o = &self.orphan_api;
        check(
            o.window_secs >= 1,
            "orphan_api.window_secs: must be at least 1",
        );
        check(
            o.check_every_secs >= 1,
            "orphan_api.check_every_secs: must be at least 1",
        );

        let u = &self.unauthenticated_access;
        check(
            u.min_calls >= 1,
            "unauthenticated_access.min_calls: must be at least 1",
        );
        check(
            share(u.min_authenticated_share),
            "unauthenticated_access.min_authenticated_share: must be within 0..=1",
        );

        let b = &self.bola_enumeration;
        check(
            b.window_secs >= 1,
            "bola_enumeration.window_secs: must be at least 1",
        );
        check(
            b.min_distinct_ids >= 2,
            "bola_enumeration.min_distinct_ids: must be at least 2",
        );
        check(
            b.min_distinct_ids_with_denials >= 2,
            "bola_enumeration.min_distinct_ids_with_denials: must be at least 2",
        );
        check(
            share(b.min_denied_share),
            "bola_enumeration.min_denied_share: must be within 0..=1",
        );
        check(
            b.min_foreign_objects >= 1,
            "bola_enumeration.min_foreign_objects: must be at least 1",
        );
        check(
            share(b.max_shared_share),
            "bola_enumeration.max_shared_share: must be within 0..=1",
        );
        check(
            b.max_ids_per_actor >= b.min_distinct_ids
                && b.max_ids_per_actor >= b.min_distinct_ids_with_denials
                && b.max_ids_per_actor >= b.min_foreign_objects,
            "bola_enumeration.max_ids_per_actor: must be at least min_distinct_ids, \
             min_distinct_ids_with_denials and min_foreign_objects",
        );
        check(
            b.max_actors >= 1,
            "bola_enumeration.max_actors: must be at least 1",
        );

        let s = &self.credential_stuffing;
        check(
            s.window_secs >= 1,
            "credential_stuffing.window_secs: must be at least 1",
        );
        check(
            !s.failure_statuses.is_empty()
                && s.failure_statuses.iter().all(|c| (400..=599).contains(c)),
            "credential_stuffing.failure_statuses: must be a non-empty list of 4xx/5xx statuses",
        );
        check(
            s.min_failures_per_source >= 2,
            "credential_stuffing.min_failures_per_source: must be at least 2",
        );
        check(
            s.distributed_min_failures >= 2,
            "credential_stuffing.distributed_min_failures: must be at least 2",
        );
        check(
            s.distributed_min_sources >= 2,
            "credential_stuffing.distributed_min_sources: must be at least 2",
        );
        check(
            s.distributed_factor >= 1.0,
            "credential_stuffing.distributed_factor: must be at least 1",
        );
        check(
            s.max_sources_per_endpoint >= s.distributed_min_sources,
            "credential_stuffing.max_sources_per_endpoint: must be at least distributed_min_sources",
        );

        let c = &self.scanning;
        check(
            c.window_secs >= 1,
            "scanning.window_secs: must be at least 1",
        );
        check(
            c.min_distinct_paths >= 2,
            "scanning.min_distinct_paths: must be at least 2",
        );
        check(
            share(c.min_not_found_share),
            "scanning.min_not_found_share: must be within 0..=1",
        );
        check(
            c.max_paths_per_client >= c.min_distinct_paths,
            "scanning.max_paths_per_client: must be at least min_distinct_paths",
        );

        let r = &self.rate_anomaly;
        check(
            r.bucket_secs >= 1,
            "rate_anomaly.bucket_secs: must be at least 1",
        );
        check(
            r.alpha > 0.0 && r.alpha <= 1.0,
            "rate_anomaly.alpha: must be within (0, 1]",
        );
        check(
            r.min_history_buckets >= 1,
            "rate_anomaly.min_history_buckets: must be at least 1",
        );
        check(r.factor >= 1.0, "rate_anomaly.factor: must be at least 1");
        check(r.sigmas >= 0.0, "rate_anomaly.sigmas: must not be negative");
        check(
            r.peak_factor >= 0.0,
            "rate_anomaly.peak_factor: must not be negative",
        );
        check(
            r.peak_half_life_buckets >= 1,
            "rate_anomaly.peak_half_life_buckets: must be at least 1",
        );
        check(
            r.client_idle_evict_buckets >= 1 && r.endpoint_idle_evict_buckets >= 1,
            "rate_anomaly.*_idle_evict_buckets: must be at least 1",
        );
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_error_is_reported() {
        assert!(DetectorConfig::default().validate().is_empty());
        let cfg: DetectorConfig = serde_json::from_value(serde_json::json!({
            "scanning": {"window_secs": 0, "min_not_found_share": 2.0},
            "rate_anomaly": {"alpha": 0.0},
        }))
        .unwrap();
        let errors = cfg.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("scanning.window_secs"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<DetectorConfig, _> =
            serde_json::from_value(serde_json::json!({"scanning": {"window": 5}}));
        assert!(r.is_err());
    }
}
