//! The end of the pipeline, on its own thread: calls arrive in request-time order from the
//! [`Merger`](crate::calls::Merger); each is counted in the inventory and seen by the
//! detector, written as a JSON line with the endpoint it was counted under, and published
//! (`apiscope.calls`, when enabled). Findings created or updated are published every second
//! of capture time; every `state.flush_interval_secs` of capture time and at the end, the
//! changed endpoints go to the state store and to `apiscope.inventory`.

use std::io::Write;

use anyhow::Context as _;
use apiscope_capture::{Duration, Timestamp};
use apiscope_detector::Detector;
use apiscope_inventory::inventory::{CallFacts, Inventory};
use apiscope_inventory::store::Store;
use apiscope_publish::{Publisher, Topic};

use crate::calls::{self, Released};

/// What the inventory needs of a call, extracted on the worker.
pub type Facts = CallFacts;

/// Where the detector's state lives in the state store's blobs.
pub const DETECTOR_NS: &str = "detector";
pub const DETECTOR_KEY: &str = "state";

/// A stream-level anomaly a worker saw, on its way to the detector.
#[derive(Debug, Clone, Copy)]
pub struct StreamNote {
    pub client: std::net::IpAddr,
    pub server: apiscope_capture::Endpoint,
    pub ts: Timestamp,
    pub what: &'static str,
}

/// See the module overview.
pub struct Sink {
    out: Option<Box<dyn Write + Send>>,
    buf: Vec<u8>,
    pub inventory: Option<Inventory>,
    pub detector: Option<Detector>,
    /// Next capture time at which the detector's time-driven checks run.
    next_tick: Option<Timestamp>,
    store: Option<Store>,
    pub publisher: Option<Publisher>,
    flush_every: Duration,
    next_flush: Option<Timestamp>,
    last_ts: Timestamp,
    pub flushes: u64,
    /// Records the publisher refused (its own counters say why); the first error is kept.
    pub publish_errors: u64,
    pub first_publish_error: Option<String>,
}

impl Sink {
    pub fn new(
        out: Option<Box<dyn Write + Send>>,
        inventory: Option<Inventory>,
        detector: Option<Detector>,
        store: Option<Store>,
        publisher: Option<Publisher>,
        flush_every: Duration,
    ) -> Self {
        Sink {
            out,
            buf: Vec::with_capacity(1 << 17),
            inventory,
            detector,
            next_tick: None,
            store,
            publisher,
            flush_every,
            next_flush: None,
            last_ts: Timestamp::ZERO,
            flushes: 0,
            publish_errors: 0,
            first_publish_error: None,
        }
    }

    fn publish_failed(&mut self, e: impl std::fmt::Display) {
        self.publish_errors += 1;
        self.first_publish_error
            .get_or_insert_with(|| e.to_string());
    }

    /// Publishes the findings created or updated since the last time, keyed by their id.
    fn publish_findings(&mut self) {
        let (Some(det), Some(p)) = (self.detector.as_mut(), self.publisher.as_mut()) else {
            return;
        };
        let mut failed = Vec::new();
        for f in det.drain_updates() {
            let v = serde_json::to_value(&f).unwrap_or_default();
            if let Err(e) = p.publish(Topic::Findings, &f.id, &v) {
                failed.push(e.to_string());
            }
        }
        for e in failed {
            self.publish_failed(e);
        }
    }

    pub fn call(&mut self, r: Released<'_, Facts>) -> anyhow::Result<()> {
        let ts = r.key.0;
        self.last_ts = self.last_ts.max(ts);
        let mut facts = r.facts;
        let label = match (self.inventory.as_mut(), facts.as_mut()) {
            (Some(inv), Some(f)) => inv.observe(f).map(str::to_owned),
            _ => None,
        };
        if let (Some(det), Some(inv), Some(f)) = (
            self.detector.as_mut(),
            self.inventory.as_ref(),
            facts.as_ref(),
        ) {
            det.observe(f, inv);
            let due = *self.next_tick.get_or_insert(ts);
            if ts >= due {
                det.tick(ts, inv);
                self.next_tick = Some(ts.saturating_add(Duration::from_secs(1)));
                self.publish_findings();
            }
        }
        let label = label.as_deref();
        let start = self.buf.len();
        let want_call = self
            .publisher
            .as_ref()
            .is_some_and(|p| p.wants(Topic::Calls));
        if self.out.is_some() || want_call {
            self.buf.extend_from_slice(r.head);
            calls::json_opt_str(&mut self.buf, label);
            self.buf.extend_from_slice(r.tail);
        }
        if want_call && !r.head.is_empty() {
            let line = &self.buf[start..self.buf.len().saturating_sub(1)];
            let key = label.unwrap_or("");
            if let Err(e) =
                self.publisher
                    .as_mut()
                    .expect("wanted")
                    .publish_json(Topic::Calls, key, line)
            {
                self.publish_failed(e);
            }
        }
        match self.out.as_mut() {
            Some(out) if self.buf.len() >= 1 << 16 => {
                out.write_all(&self.buf).context("writing calls")?;
                self.buf.clear();
            }
            None => self.buf.clear(),
            Some(_) => {}
        }
        if self.store.is_some() || self.publisher.is_some() {
            let due = *self
                .next_flush
                .get_or_insert_with(|| ts.saturating_add(self.flush_every));
            if ts >= due {
                self.flush()?;
                self.next_flush = Some(ts.saturating_add(self.flush_every));
            }
        }
        Ok(())
    }

    /// A stream-level evasion signal from a worker (overlapping segments with different
    /// bytes), for the detector.
    pub fn stream_anomaly(&mut self, a: &StreamNote) {
        if let Some(det) = self.detector.as_mut() {
            det.stream_anomaly(a.client, a.server, a.ts, a.what);
        }
    }

    /// Writes the endpoints changed since the last flush to the state store (one transaction
    /// stamped with the latest capture time seen) with the detector's state, and publishes
    /// them to `apiscope.inventory`, keyed by endpoint id.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let Some(inv) = self.inventory.as_mut() else {
            return Ok(());
        };
        if self.store.is_none() && self.publisher.is_none() {
            return Ok(());
        }
        let (records, removed) = inv.take_changed();
        if let Some(store) = self.store.as_mut() {
            store
                .flush(self.last_ts.as_nanos(), &records, &removed)
                .context("writing the state store")?;
            if let Some(det) = &self.detector {
                let state = serde_json::to_vec(&det.save()).context("saving the detector state")?;
                store
                    .put_blob(DETECTOR_NS, DETECTOR_KEY, &state)
                    .context("writing the detector state")?;
            }
            self.flushes += 1;
        }
        if let Some(p) = self.publisher.as_mut() {
            let mut failed = Vec::new();
            for r in &records {
                let v: serde_json::Value = serde_json::from_str(&r.json).unwrap_or_default();
                let view = v.get("view").cloned().unwrap_or_default();
                if let Err(e) = p.publish(Topic::Inventory, &r.id, &view) {
                    failed.push(e.to_string());
                }
            }
            for e in failed {
                self.publish_failed(e);
            }
        }
        Ok(())
    }

    /// Runs the detector's end-of-input checks, flushes the calls output and the state;
    /// returns the inventory and the detector.
    pub fn finish(
        mut self,
    ) -> anyhow::Result<(Option<Inventory>, Option<Detector>, Option<Publisher>)> {
        if let (Some(det), Some(inv)) = (self.detector.as_mut(), self.inventory.as_ref()) {
            det.tick(self.last_ts, inv);
            det.finish(inv);
        }
        self.publish_findings();
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf).context("writing calls")?;
            out.flush().context("writing calls")?;
        }
        self.flush()?;
        if let Some(store) = self.store.take() {
            store.close().context("closing the state store")?;
        }
        Ok((self.inventory, self.detector, self.publisher))
    }
}
