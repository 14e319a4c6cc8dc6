//! The detections of the sensor: API calls and the inventory in, security findings out.
//!
//! The sink thread counts each call in the [`Inventory`](apiscope_inventory::inventory::Inventory)
//! and then hands the same [`CallFacts`](apiscope_inventory::inventory::CallFacts) and the
//! inventory to a [`Detector`]:
//!
//! - [`Detector::observe`] runs the per-call detections (calls in request-time order);
//! - [`Detector::tick`] runs the time-driven ones (rate buckets closing, the orphan check,
//!   forgetting expired windows) as capture time advances, [`Detector::finish`] at the end;
//! - [`Detector::stream_anomaly`] takes stream-level evasion signals from the capture stage;
//! - [`Detector::drain_updates`] hands out the [`Finding`]s created or changed since it was
//!   last called (for publishing), [`Detector::findings`] all of them;
//! - [`Detector::save`] / [`Detector::load`] carry findings and baselines across restarts.
//!
//! The detections, each configured by a table of [`DetectorConfig`] (`docs/detections.md`
//! has the rules, defaults and known false positives):
//!
//! | kind | OWASP 2023 | module |
//! |---|---|---|
//! | `shadow_api`, `zombie_api`, `orphan_api` | API9 | `spec_status` |
//! | `unauthenticated_access`, `cleartext_credentials` | API2 (API8 for plaintext transport) | `posture` |
//! | `sensitive_data_exposure` | API3 | `posture` |
//! | `request_smuggling` | API8 | `posture` |
//! | `bola_enumeration` | API1 | `abuse` |
//! | `credential_stuffing` | API2 | `abuse` |
//! | `scanning` | API8 | `abuse` |
//! | `rate_anomaly` | API4 | `rate` |
//!
//! A finding is reported once and then updated: its `id` is a hash of its kind, endpoint,
//! client and detail, so the same finding keeps its id (and across restarts). Windows, rates
//! and timeouts run on capture time, never the wall clock. Everything kept is bounded (each
//! bound has a configuration key and a counter in [`Detector::stats`]); values that must be
//! remembered (object ids, paths, user names) are kept as keyed hashes
//! ([`KeyedHasher`](apiscope_inventory::keyed::KeyedHasher)), and evidence holds kinds,
//! counts, templates and hashes, never credentials or sensitive values.
//!
//! ```
//! use apiscope_capture::{Endpoint, Timestamp};
//! use apiscope_detector::{Detector, DetectorConfig, FindingKind, Severity};
//! use apiscope_inventory::inventory::{Inventory, InventoryConfig};
//! use apiscope_inventory::keyed::KeyedHasher;
//!
//! // Configuration comes from the `[detector]` table of the sensor's TOML file.
//! let cfg: DetectorConfig =
//!     serde_json::from_value(serde_json::json!({"scanning": {"min_distinct_paths": 10}}))
//!         .unwrap();
//! assert!(cfg.validate().is_empty());
//! let mut det = Detector::new(cfg, KeyedHasher::new(&[7; 32]));
//! let inv = Inventory::new(InventoryConfig::default(), None);
//!
//! // The capture stage saw overlapping TCP segments with different bytes, twice.
//! let client = "198.51.100.7".parse().unwrap();
//! let server = Endpoint { ip: "10.0.0.1".parse().unwrap(), port: 80 };
//! for t in [100, 101] {
//!     det.stream_anomaly(client, server, Timestamp::from_secs(t), "overlap_mismatch");
//! }
//! det.finish(&inv);
//!
//! let updates = det.drain_updates();
//! assert_eq!(updates.len(), 1, "one finding, updated");
//! let f = &updates[0];
//! assert_eq!((f.kind, f.severity, f.count), (FindingKind::RequestSmuggling, Severity::Medium, 2));
//! assert_eq!(f.to_json()["last_seen"], "1970-01-01T00:01:41.000000Z");
//! assert!(det.drain_updates().is_empty());
//!
//! // A restart goes on from the saved state.
//! let mut again = Detector::new(DetectorConfig::default(), KeyedHasher::new(&[7; 32]));
//! again.load(&det.save()).unwrap();
//! assert_eq!(again.findings().len(), 1);
//! ```

mod abuse;
pub mod config;
mod detector;
pub mod finding;
mod posture;
mod rate;
mod spec_status;
mod util;

#[cfg(test)]
mod tests;

pub use config::{
    BolaConfig, CleartextConfig, DetectorConfig, OrphanApiConfig, RateConfig, ScanningConfig,
    SensitiveExposureConfig, ShadowApiConfig, SmugglingConfig, StuffingConfig,
    UnauthenticatedConfig, UncoveredHosts, ZombieApiConfig,
};
pub use detector::{Detector, LoadError};
pub use finding::{owasp, EndpointRef, Finding, FindingKind, Severity};
