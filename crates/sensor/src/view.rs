//! What the query API serves: a snapshot of the live sensor, published by the sink thread.
//!
//! The sink thread owns the inventory and the detector and never shares them: once a second
//! of wall-clock time (and at shutdown) it renders a [`View`] — endpoints, hosts, findings and
//! every metric — and swaps it into the [`SharedView`]. The API threads clone the `Arc` of the
//! latest view and answer from it, so a slow or hostile API client can never stall the
//! workers or the sink, and every answer is consistent within itself.

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// How a metric behaves, for the Prometheus `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One metric sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// `apiscope_` prefixed, snake case (`apiscope_packets_total`).
    pub name: String,
    pub help: &'static str,
    pub kind: MetricKind,
    /// Label pairs, e.g. `[("interface", "eth0")]`.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A consistent snapshot of the sensor.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Inventory endpoints, as in `--inventory` (`docs/event-schema.md`), sorted by host, path,
    /// method; each has an `id`.
    pub endpoints: Vec<Value>,
    /// Inventory hosts.
    pub hosts: Vec<Value>,
    /// Findings, as in `--findings`.
    pub findings: Vec<Value>,
    pub metrics: Vec<Metric>,
    /// Capture time of the newest packet seen (RFC 3339), if any.
    pub capture_time: Option<String>,
}

/// The latest [`View`], swapped whole by its one writer and read by any number of readers.
#[derive(Debug, Clone, Default)]
pub struct SharedView(Arc<Mutex<Arc<View>>>);

impl SharedView {
    /// The latest view (a cheap `Arc` clone; the lock is held only for the clone).
    pub fn get(&self) -> Arc<View> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the view.
    pub fn set(&self, v: View) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_the_view_they_took() {
        let shared = SharedView::default();
        shared.set(View {
            capture_time: Some("a".into()),
            ..View::default()
        });
        let old = shared.get();
        shared.set(View {
            capture_time: Some("b".into()),
            ..View::default()
        });
        assert_eq!(old.capture_time.as_deref(), Some("a"));
        assert_eq!(shared.get().capture_time.as_deref(), Some("b"));
    }
}
