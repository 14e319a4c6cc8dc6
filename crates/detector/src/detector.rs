//! The [`Detector`]: the calls in, findings out.

use std::net::IpAddr;

use apiscope_capture::Timestamp;
use apiscope_inventory::inventory::{CallFacts, CallNotes, EndpointEntry, Inventory};
use apiscope_inventory::keyed::KeyedHasher;
use serde_json::{json, Value};

use crate::abuse::{BolaState, ScanState, StuffingState};
use crate::config::DetectorConfig;
use crate::finding::{Finding, FindingStore};
use crate::rate::Rates;
use crate::spec_status::SpecState;
use crate::util::{hash_parts, NS_PER_SEC};

/// Version of the saved state ([`Detector::save`]).
const SAVE_VERSION: u64 = 1;

/// Capture time between sweeps of expired windows.
const SWEEP_EVERY_NS: u64 = 60 * NS_PER_SEC;

/// Why [`Detector::load`] could not use a saved state at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("saved detector state is not a JSON object")]
    NotAnObject,
    #[error("saved detector state has version {0}, this sensor reads version {SAVE_VERSION}")]
    Version(u64),
}

/// Counters of the detector (see [`Detector::stats`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub calls: u64,
    pub stream_anomalies: u64,
    pub spec_status_cache_resets: u64,
    pub orphan_hosts_dropped: u64,
    pub orphan_checks: u64,
    pub bola_actors_dropped: u64,
    pub bola_ids_saturated: u64,
    pub bola_objects_evicted: u64,
    pub bola_endpoints_dropped: u64,
    pub stuffing_sources_dropped: u64,
    pub stuffing_endpoints_dropped: u64,
    pub stuffing_sources_saturated: u64,
    pub scanning_clients_dropped: u64,
    pub scanning_paths_saturated: u64,
    pub rate_endpoints_dropped: u64,
    pub rate_clients_dropped: u64,
    pub rate_evicted: u64,
    pub load_skipped: u64,
}

/// What the detections see of one call.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub f: &'a CallFacts,
    pub ep: Option<&'a EndpointEntry>,
    pub notes: &'a CallNotes,
    /// The client: the forwarded-for address when trusted and present, else the TCP peer.
    pub ip: IpAddr,
    /// Hash of the endpoint's label (0 without an endpoint).
    pub ep_key: u64,
}

impl Ctx<'_> {
    /// (host, method, templated path) of the call's endpoint.
    pub fn endpoint(&self) -> Option<(&str, &str, &str)> {
        self.ep
            .map(|e| (e.host.as_str(), e.method.as_str(), e.path.as_str()))
    }
}

/// The detections over calls and the inventory (see the crate overview).
#[derive(Debug)]
pub struct Detector {
    pub(crate) cfg: DetectorConfig,
    pub(crate) hasher: KeyedHasher,
    pub(crate) store: FindingStore,
    /// Latest capture time seen (calls and ticks).
    pub(crate) now: Timestamp,
    /// Capture time of the first call or tick of this run (not saved: coverage is per run).
    pub(crate) run_start: Option<Timestamp>,
    pub(crate) stats: Stats,
    pub(crate) spec: SpecState,
    pub(crate) bola: BolaState,
    pub(crate) stuffing: StuffingState,
    pub(crate) scanning: ScanState,
    pub(crate) rates: Rates,
    next_sweep_ns: u64,
}

impl Detector {
    /// A detector with `cfg` (not validated here: see [`DetectorConfig::validate`]; unusable
    /// values are clamped) hashing remembered values (object ids, paths) with `hasher`.
    pub fn new(cfg: DetectorConfig, hasher: KeyedHasher) -> Self {
        Detector {
            store: FindingStore::new(cfg.max_findings),
            cfg,
            hasher,
            now: Timestamp::ZERO,
            run_start: None,
            stats: Stats::default(),
            spec: SpecState::default(),
            bola: BolaState::default(),
            stuffing: StuffingState::default(),
            scanning: ScanState::default(),
            rates: Rates::default(),
            next_sweep_ns: 0,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Applies a new configuration to a running detector (SIGHUP): switches, thresholds and
    /// bounds hold from the next call; tables above a lowered bound shrink as their entries
    /// expire or are evicted. A new `rate_anomaly.bucket_secs` restarts the rate baselines,
    /// which are counted in buckets of the old size. Findings and their ids are kept.
    pub fn set_config(&mut self, cfg: DetectorConfig) {
        if cfg.rate_anomaly.bucket_secs != self.cfg.rate_anomaly.bucket_secs {
            self.rates = Rates::default();
        }
        self.store.set_max(cfg.max_findings);
        self.cfg = cfg;
    }

    fn advance(&mut self, ts: Timestamp) {
        if self.run_start.is_none() {
            self.run_start = Some(ts);
        }
        self.now = self.now.max(ts);
    }

    /// The client of a call as the detections count it.
    fn client_of(&self, f: &CallFacts) -> IpAddr {
        match f.forwarded_for {
            Some(ip) if self.cfg.trust_forwarded_for => ip,
            _ => f.client,
        }
    }

    /// Runs the per-call detections on `facts`, right after `inv.observe(facts)` counted it
    /// (the inventory's [`Inventory::notes`] must still be those of this call). Calls must
    /// come in request-time order.
    pub fn observe(&mut self, facts: &CallFacts, inv: &Inventory) {
        if !self.cfg.enabled {
            return;
        }
        self.stats.calls += 1;
        self.advance(facts.ts);
        let notes = inv.notes();
        let ep = notes.endpoint.and_then(|i| inv.endpoint_at(i));
        let c = Ctx {
            f: facts,
            ep,
            notes,
            ip: self.client_of(facts),
            ep_key: ep.map_or(0, |e| hash_parts(&[e.label().as_bytes()])),
        };
        self.check_smuggling(&c);
        self.check_spec_status(&c, inv);
        self.check_unauthenticated(&c);
        self.check_cleartext(&c);
        self.check_sensitive(&c);
        self.check_bola(&c);
        self.check_stuffing(&c);
        self.check_scanning(&c);
        self.count_rates(&c);
    }

    /// Time-driven work at capture time `now`: closes rate buckets, runs the orphan check
    /// when due, forgets expired windows. Call it as capture time advances (at least once per
    /// second of capture time), with the time of the calls handed to [`Detector::observe`]
    /// so far.
    pub fn tick(&mut self, now: Timestamp, inv: &Inventory) {
        if !self.cfg.enabled {
            return;
        }
        self.advance(now);
        self.roll_rates(self.now);
        if self.orphan_due(self.now) {
            self.check_orphans(inv, self.now);
        }
        if self.now.as_nanos() >= self.next_sweep_ns {
            self.sweep(self.now);
            self.next_sweep_ns = self.now.as_nanos().saturating_add(SWEEP_EVERY_NS);
        }
    }

    /// End of input: evaluates the open rate buckets and, when this run watched at least
    /// `orphan_api.window_secs` of capture time, runs the orphan check once more.
    pub fn finish(&mut self, inv: &Inventory) {
        if !self.cfg.enabled {
            return;
        }
        self.peek_rates();
        self.check_orphans(inv, self.now);
    }

    /// The findings created or changed since the last call (the same `id` again with a
    /// higher `count`, a later `last_seen`), sorted by first seen, kind and id.
    pub fn drain_updates(&mut self) -> Vec<Finding> {
        self.store.drain()
    }

    /// Every open finding, sorted by first seen, kind and id.
    pub fn findings(&self) -> Vec<&Finding> {
        self.store.all()
    }

    /// Every counter, by name: calls, findings created/updated/evicted/dropped, and each
    /// bound hit.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let f = &self.store.stats;
        vec![
            ("detector_calls", s.calls),
            ("detector_findings_open", self.store.len() as u64),
            ("detector_findings_created", f.created),
            ("detector_findings_updated", f.updated),
            ("detector_findings_evicted", f.evicted),
            ("detector_findings_dropped", f.dropped),
            ("detector_stream_anomalies", s.stream_anomalies),
            (
                "detector_spec_status_cache_resets",
                s.spec_status_cache_resets,
            ),
            ("detector_orphan_checks", s.orphan_checks),
            ("detector_orphan_hosts_dropped", s.orphan_hosts_dropped),
            ("detector_bola_actors_dropped", s.bola_actors_dropped),
            ("detector_bola_ids_saturated", s.bola_ids_saturated),
            ("detector_bola_objects_evicted", s.bola_objects_evicted),
            ("detector_bola_endpoints_dropped", s.bola_endpoints_dropped),
            (
                "detector_stuffing_sources_dropped",
                s.stuffing_sources_dropped,
            ),
            (
                "detector_stuffing_endpoints_dropped",
                s.stuffing_endpoints_dropped,
            ),
            (
                "detector_stuffing_sources_saturated",
                s.stuffing_sources_saturated,
            ),
            (
                "detector_scanning_clients_dropped",
                s.scanning_clients_dropped,
            ),
            (
                "detector_scanning_paths_saturated",
                s.scanning_paths_saturated,
            ),
            ("detector_rate_endpoints_dropped", s.rate_endpoints_dropped),
            ("detector_rate_clients_dropped", s.rate_clients_dropped),
            ("detector_rate_evicted", s.rate_evicted),
            ("detector_load_skipped", s.load_skipped),
        ]
    }

    /// Forgets windows that expired by `now` (BOLA actors, scanning clients, stuffing
    /// sources).
    fn sweep(&mut self, now: Timestamp) {
        let now = now.as_nanos();
        let c = &self.cfg;
        self.bola
            .sweep(now, c.bola_enumeration.window_secs * NS_PER_SEC);
        self.scanning
            .sweep(now, c.scanning.window_secs * NS_PER_SEC);
        self.stuffing
            .sweep(now, c.credential_stuffing.window_secs * NS_PER_SEC);
    }

    /// What a restart needs to go on: the open findings and the learnt baselines (rate
    /// averages, login failure averages, object owners and owner-revisit statistics, all as
    /// hashes and counts). Short windows (enumerations, scans in progress) are not saved.
    pub fn save(&self) -> Value {
        json!({
            "version": SAVE_VERSION,
            "findings": self.store.save(),
            "rates": self.rates.save(),
            "stuffing": self.stuffing.save(),
            "bola": self.bola.save(),
        })
    }

    /// Loads what [`Detector::save`] wrote (into a detector that has seen nothing yet).
    /// Parts that cannot be read are skipped and counted (the returned number, also in
    /// `detector_load_skipped`); a state that is not an object or of another version is
    /// an error and nothing is loaded.
    pub fn load(&mut self, state: &Value) -> Result<usize, LoadError> {
        let Some(obj) = state.as_object() else {
            return Err(LoadError::NotAnObject);
        };
        let version = obj.get("version").and_then(Value::as_u64).unwrap_or(0);
        if version != SAVE_VERSION {
            return Err(LoadError::Version(version));
        }
        let null = Value::Null;
        let part = |k: &str| obj.get(k).unwrap_or(&null);
        let mut skipped = self.store.load(part("findings"));
        skipped += self.rates.load(part("rates"), &self.cfg.rate_anomaly);
        skipped += self
            .stuffing
            .load(part("stuffing"), &self.cfg.credential_stuffing);
        skipped += self.bola.load(part("bola"), &self.cfg.bola_enumeration);
        self.stats.load_skipped += skipped as u64;
        Ok(skipped)
    }
}
