//! The end of the pipeline, on its own thread: calls arrive in request-time order from the
//! [`Merger`](crate::calls::Merger); each is counted in the inventory and seen by the
//! detector, written as a JSON line with the endpoint it was counted under, and published
//! (`apiscope.calls`, when enabled). Findings created or updated are published every second
//! of capture time; every `state.flush_interval_secs` of capture time and at the end, the
//! changed endpoints go to the state store and to `apiscope.inventory`.
//!
//! For `run`, the sink also writes each finding as it is created or updated (`--findings`),
//! moves on when no call comes ([`Sink::tick`], driven by the workers' watermarks), flushes
//! its outputs each second, and renders the [`View`] the query API serves ([`Sink::view`]):
//! endpoints, hosts, findings and every metric ([`LiveMetrics`] brings the pipeline's).

use std::io::Write;

use anyhow::Context as _;
use apiscope_capture::engine::MemoryUse;
use apiscope_capture::{Counters, Duration, Timestamp};
use apiscope_detector::Detector;
use apiscope_http::HttpStats;
use apiscope_inventory::inventory::Inventory;
use apiscope_inventory::keyed::KeyedHasher;
use apiscope_inventory::spec::SpecSet;
use apiscope_inventory::store::Store;
use apiscope_publish::{Publisher, Topic};
use serde_json::Value;

use crate::calls::{self, Released};
use crate::pipeline::{self, InventoryUse, Work};
use crate::view::{Metric, MetricKind, View};

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
    /// What the inventory is for: with [`InventoryUse::Labels`] it only labels calls.
    inventory_use: InventoryUse,
    /// Keys the principal hashes in the calls' facts (the state directory's secret, if any).
    hasher: KeyedHasher,
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
    /// `run --findings`: every finding as it is created or updated, and whether as OCSF.
    findings_out: Option<(Box<dyn Write + Send>, bool)>,
    /// Bumped when the inventory changes without a call (a reload), for the view's cache.
    generation: u64,
    /// The endpoints and hosts of the last view, and what they were rendered from.
    view_cache: Option<(ViewKey, Vec<Value>, Vec<Value>)>,
}

/// What the rendered endpoints depend on: calls observed, endpoints, reloads.
type ViewKey = (u64, u64, u64);

impl Sink {
    pub fn new(
        out: Option<Box<dyn Write + Send>>,
        inventory: Option<Inventory>,
        hasher: KeyedHasher,
        detector: Option<Detector>,
        store: Option<Store>,
        publisher: Option<Publisher>,
        flush_every: Duration,
    ) -> Self {
        Sink {
            out,
            buf: Vec::with_capacity(1 << 17),
            inventory_use: if inventory.is_some() {
                InventoryUse::Full
            } else {
                InventoryUse::Off
            },
            inventory,
            hasher,
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
            findings_out: None,
            generation: 0,
            view_cache: None,
        }
    }

    /// The inventory only labels the calls (see [`InventoryUse::Labels`]): nothing else
    /// reads it in this run.
    pub fn label_only(&mut self) {
        if self.inventory.is_some() {
            self.inventory_use = InventoryUse::Labels;
        }
    }

    /// Writes every finding to `out` as a JSON line (OCSF when `ocsf`) when it is created or
    /// updated (the same `id` again), each second of capture time.
    pub fn stream_findings(&mut self, out: Box<dyn Write + Send>, ocsf: bool) {
        self.findings_out = Some((out, ocsf));
    }

    fn publish_failed(&mut self, e: impl std::fmt::Display) {
        self.publish_errors += 1;
        self.first_publish_error
            .get_or_insert_with(|| e.to_string());
    }

    /// Publishes the findings created or updated since the last time, keyed by their id, and
    /// writes them to the findings stream.
    fn publish_findings(&mut self) -> anyhow::Result<()> {
        if self.publisher.is_none() && self.findings_out.is_none() {
            return Ok(());
        }
        let Some(det) = self.detector.as_mut() else {
            return Ok(());
        };
        let mut failed = Vec::new();
        for f in det.drain_updates() {
            let v = serde_json::to_value(&f).unwrap_or_default();
            if let Some(p) = self.publisher.as_mut() {
                if let Err(e) = p.publish(Topic::Findings, &f.id, &v) {
                    failed.push(e.to_string());
                }
            }
            if let Some((out, ocsf)) = self.findings_out.as_mut() {
                let r = if *ocsf {
                    serde_json::to_writer(&mut *out, &apiscope_publish::ocsf::finding(&v))
                } else {
                    serde_json::to_writer(&mut *out, &v)
                };
                r.map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .context("writing findings")?;
            }
        }
        for e in failed {
            self.publish_failed(e);
        }
        Ok(())
    }

    /// Whether calls are written as lines: to the calls file, or to the calls topic. Workers
    /// that prepare calls themselves ([`pipeline::prepare`]) write them when this says so.
    pub fn writes_lines(&self) -> bool {
        self.out.is_some() || self.publishes_calls()
    }

    fn publishes_calls(&self) -> bool {
        self.publisher
            .as_ref()
            .is_some_and(|p| p.wants(Topic::Calls))
    }

    pub fn call(&mut self, r: Released<'_, Work>) -> anyhow::Result<()> {
        let Released {
            key,
            head,
            tail,
            value,
        } = r;
        let ts = key.0;
        self.last_ts = self.last_ts.max(ts);
        let want_call = self.publishes_calls();
        let write = self.writes_lines();
        let start = self.buf.len();
        // A call as parsed is prepared here, as its worker would have (`pipeline::prepare`),
        // but straight into the output: its line's head, its facts, and after the label its
        // line's tail, which reads nothing the facts took.
        let (mut facts, call) = match value {
            Work::Parsed(mut call) => {
                if write {
                    calls::write_head(&mut self.buf, &call, &key);
                }
                let facts = pipeline::facts_of(&mut call, &key, &self.hasher, self.inventory_use);
                (facts, Some(call))
            }
            Work::Prepared(facts) => {
                debug_assert!(
                    !write || !head.is_empty(),
                    "a prepared call without its line"
                );
                self.buf.extend_from_slice(head);
                (facts, None)
            }
        };
        let label = match (self.inventory.as_mut(), facts.as_mut()) {
            (Some(inv), Some(f)) if self.inventory_use == InventoryUse::Labels => inv.label(f),
            (Some(inv), Some(f)) => inv.observe(f),
            _ => None,
        };
        if write {
            calls::json_opt_str(&mut self.buf, label);
            match &call {
                Some(call) => calls::write_tail(&mut self.buf, call, &key),
                None => self.buf.extend_from_slice(tail),
            }
        }
        if want_call {
            let line = &self.buf[start..self.buf.len() - 1];
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
                self.publish_findings()?;
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

    /// Capture time moved on to `ts` without a call (the lowest watermark of the workers):
    /// runs the detector's time-driven checks and the state flush when they are due, as a
    /// call at `ts` would.
    pub fn tick(&mut self, ts: Timestamp) -> anyhow::Result<()> {
        if ts <= self.last_ts {
            return Ok(());
        }
        self.last_ts = ts;
        if let (Some(det), Some(inv)) = (self.detector.as_mut(), self.inventory.as_ref()) {
            let due = *self.next_tick.get_or_insert(ts);
            if ts >= due {
                det.tick(ts, inv);
                self.next_tick = Some(ts.saturating_add(Duration::from_secs(1)));
                self.publish_findings()?;
            }
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

    /// Writes out the calls and findings buffered so far (the live sensor does this each
    /// second, so its files can be followed).
    pub fn flush_outputs(&mut self) -> anyhow::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf).context("writing calls")?;
            self.buf.clear();
            out.flush().context("writing calls")?;
        }
        if let Some((out, _)) = self.findings_out.as_mut() {
            out.flush().context("writing findings")?;
        }
        Ok(())
    }

    /// Replaces the specs the inventory compares traffic with (a reload); see
    /// [`Inventory::set_specs`].
    pub fn set_specs(&mut self, specs: Option<SpecSet>) {
        if let Some(inv) = self.inventory.as_mut() {
            inv.set_specs(specs);
            self.generation += 1;
        }
    }

    /// New detector settings (SIGHUP); see [`Detector::set_config`].
    pub fn set_detector_config(&mut self, cfg: apiscope_detector::DetectorConfig) {
        if let Some(det) = self.detector.as_mut() {
            det.set_config(cfg);
        }
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
        self.publish_findings()?;
        if let Some((out, _)) = self.findings_out.as_mut() {
            out.flush().context("writing findings")?;
        }
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

/// One capture source (an interface or a UDP mirror feed), for the view's metrics.
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    /// The interface name, or `udp:ADDR` for a `--vxlan-listen` socket.
    pub name: String,
    /// Frames read by the capture thread, and their captured bytes.
    pub frames: u64,
    pub bytes: u64,
    /// The kernel's counters: frames it passed to the capture, frames it dropped because the
    /// capture buffer (or the UDP socket's receive buffer) was full, and frames the
    /// interface or its driver dropped.
    pub kernel_received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
    /// Frames (and batches) the capture thread dropped because a worker's queue was full.
    pub queue_dropped_frames: u64,
    pub queue_dropped_batches: u64,
}

/// A bounded queue between two stages: what waits in it and what it can hold.
#[derive(Debug, Clone, Default)]
pub struct QueueMetrics {
    /// `worker-N` (frames from the capture threads, in batches) or `sink` (call batches).
    pub name: String,
    pub depth: u64,
    pub capacity: u64,
}

/// What the live pipeline around the sink reports, for the view's metrics: the workers'
/// counters (merged), the capture sources, the queues.
#[derive(Debug, Clone, Default)]
pub struct LiveMetrics {
    pub uptime_secs: f64,
    /// The newest packet's capture time, if any.
    pub capture_time: Option<Timestamp>,
    /// Capture-stage counters of every worker, added up.
    pub counters: Counters,
    pub http: HttpStats,
    /// Calls the workers' HTTP stage produced.
    pub calls: u64,
    /// Connections tracked now, and requests waiting for their responses.
    pub flows: u64,
    pub pending_requests: u64,
    /// Estimated memory of the workers' engines, by part, added up.
    pub memory: MemoryUse,
    pub sources: Vec<SourceMetrics>,
    pub queues: Vec<QueueMetrics>,
    /// Calls the merger passed on, and those it passed on out of request-time order.
    pub calls_released: u64,
    pub calls_out_of_order: u64,
    pub calls_forced_out: u64,
    pub calls_held: u64,
    pub calls_held_bytes: u64,
    /// Configuration reloads (SIGHUP) applied and refused.
    pub reloads: u64,
    pub reload_errors: u64,
}

/// Builds the metrics of a view.
struct Metrics(Vec<Metric>);

impl Metrics {
    fn add(
        &mut self,
        name: impl Into<String>,
        help: &'static str,
        kind: MetricKind,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.0.push(Metric {
            name: name.into(),
            help,
            kind,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value,
        });
    }

    fn counter(&mut self, name: impl Into<String>, help: &'static str, v: u64) {
        self.add(name, help, MetricKind::Counter, &[], v as f64);
    }

    fn gauge(&mut self, name: impl Into<String>, help: &'static str, v: f64) {
        self.add(name, help, MetricKind::Gauge, &[], v);
    }
}

const CAPTURE_HELP: &str =
    "Capture-stage counter (decoding, fragments, flows, TCP reassembly); see docs/operations.md.";
const HTTP_HELP: &str = "HTTP-stage counter; see docs/operations.md.";
const INVENTORY_HELP: &str = "Inventory counter; see docs/operations.md.";
const DETECTOR_HELP: &str = "Detector counter; see docs/operations.md.";
const PUBLISH_HELP: &str = "Publisher counter (per sink and topic); see docs/publish.md.";

impl Sink {
    /// A snapshot for the query API: the inventory's endpoints (with their template evidence)
    /// and hosts, the open findings, and every metric of the sink and of `live`.
    ///
    /// The endpoints are rendered again only when a call was counted or the inventory was
    /// reloaded since the last view.
    pub fn view(&mut self, live: &LiveMetrics) -> View {
        let (endpoints, hosts) = match self.inventory.as_ref() {
            Some(inv) => {
                let key = (
                    inv.stats.calls,
                    inv.stats.endpoints_created + inv.stats.endpoints_merged,
                    self.generation,
                );
                match &self.view_cache {
                    Some((k, e, h)) if *k == key => (e.clone(), h.clone()),
                    _ => {
                        let mut j = inv.to_json();
                        let take = |v: &mut Value, k: &str| match v.get_mut(k).map(Value::take) {
                            Some(Value::Array(a)) => a,
                            _ => Vec::new(),
                        };
                        let (e, h) = (take(&mut j, "endpoints"), take(&mut j, "hosts"));
                        self.view_cache = Some((key, e.clone(), h.clone()));
                        (e, h)
                    }
                }
            }
            None => (Vec::new(), Vec::new()),
        };
        let findings = self.detector.as_ref().map_or_else(Vec::new, |d| {
            d.findings()
                .into_iter()
                .map(|f| serde_json::to_value(f).unwrap_or_default())
                .collect()
        });
        let metrics = self.metrics(live, &findings);
        View {
            endpoints,
            hosts,
            findings,
            metrics,
            capture_time: live.capture_time.map(|t| t.to_string()),
        }
    }

    fn metrics(&self, live: &LiveMetrics, findings: &[Value]) -> Vec<Metric> {
        use MetricKind::{Counter, Gauge};
        let mut m = Metrics(Vec::with_capacity(256));
        m.add(
            "apiscope_build_info",
            "The sensor's version (always 1).",
            Gauge,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        m.gauge(
            "apiscope_uptime_seconds",
            "Seconds since the sensor started.",
            live.uptime_secs,
        );
        if let Some(t) = live.capture_time {
            m.gauge(
                "apiscope_capture_time_seconds",
                "Capture time of the newest packet (Unix seconds).",
                t.as_nanos() as f64 / 1e9,
            );
        }
        for s in &live.sources {
            let l = [("source", s.name.as_str())];
            let per_source: [(&str, &'static str, u64); 7] = [
                (
                    "apiscope_capture_packets_total",
                    "Frames read from a capture source.",
                    s.frames,
                ),
                (
                    "apiscope_capture_bytes_total",
                    "Captured bytes read from a capture source.",
                    s.bytes,
                ),
                (
                    "apiscope_capture_kernel_received_total",
                    "Frames the kernel passed to the capture (libpcap ps_recv).",
                    s.kernel_received,
                ),
                (
                    "apiscope_capture_kernel_drops_total",
                    "Frames the kernel dropped: capture buffer or UDP receive buffer full.",
                    s.kernel_dropped,
                ),
                (
                    "apiscope_capture_interface_drops_total",
                    "Frames the interface or its driver dropped (libpcap ps_ifdrop).",
                    s.interface_dropped,
                ),
                (
                    "apiscope_capture_queue_drops_total",
                    "Frames the sensor dropped because a worker's queue was full.",
                    s.queue_dropped_frames,
                ),
                (
                    "apiscope_capture_queue_dropped_batches_total",
                    "Batches of frames dropped because a worker's queue was full.",
                    s.queue_dropped_batches,
                ),
            ];
            for (name, help, v) in per_source {
                m.add(name, help, Counter, &l, v as f64);
            }
        }
        for q in &live.queues {
            let l = [("queue", q.name.as_str())];
            m.add(
                "apiscope_queue_depth",
                "Batches waiting in a queue between two stages.",
                Gauge,
                &l,
                q.depth as f64,
            );
            m.add(
                "apiscope_queue_capacity",
                "Batches a queue between two stages holds at most.",
                Gauge,
                &l,
                q.capacity as f64,
            );
        }
        for (name, v) in live.counters.iter().filter(|(n, _)| *n != "shard_skipped") {
            m.counter(format!("apiscope_{name}_total"), CAPTURE_HELP, v);
        }
        m.gauge(
            "apiscope_flows_active",
            "Connections tracked now (including closed ones lingering).",
            live.flows as f64,
        );
        m.gauge(
            "apiscope_pending_requests",
            "Requests waiting for their responses.",
            live.pending_requests as f64,
        );
        let mem = live.memory;
        for (table, v) in [
            ("flows", mem.flows),
            ("reassembly", mem.reassembly),
            ("fragments", mem.fragments),
            ("http", mem.consumer),
        ] {
            m.add(
                "apiscope_memory_bytes",
                "Estimated memory by table (flow.memcap_bytes bounds their sum).",
                Gauge,
                &[("table", table)],
                v as f64,
            );
        }
        for (name, v) in live.http.counters() {
            m.counter(format!("apiscope_http_{name}_total"), HTTP_HELP, v);
        }
        m.counter(
            "apiscope_calls_total",
            "Calls (request and response) the HTTP stage produced.",
            live.calls,
        );
        m.counter(
            "apiscope_calls_released_total",
            "Calls passed on in request-time order to the inventory and the outputs.",
            live.calls_released,
        );
        m.counter(
            "apiscope_calls_out_of_order_total",
            "Calls passed on after a later one (output.reorder_max_calls, run.reorder_max_wait_ms).",
            live.calls_out_of_order,
        );
        m.counter(
            "apiscope_calls_forced_out_total",
            "Calls released before the watermark passed them (output.reorder_max_calls, output.reorder_max_bytes).",
            live.calls_forced_out,
        );
        m.gauge(
            "apiscope_calls_held",
            "Calls held to pass them on in request-time order.",
            live.calls_held as f64,
        );
        m.gauge(
            "apiscope_calls_held_bytes",
            "Bytes of those calls as parsed, heads and body samples (bounded by output.reorder_max_bytes).",
            live.calls_held_bytes as f64,
        );
        if let Some(inv) = &self.inventory {
            for (name, v) in inv.counters() {
                if name == "inventory_endpoints" || name == "inventory_hosts" {
                    m.gauge(
                        format!("apiscope_{name}"),
                        "Endpoints or hosts in the inventory now.",
                        v as f64,
                    );
                } else {
                    m.counter(format!("apiscope_{name}_total"), INVENTORY_HELP, v);
                }
            }
        }
        if let Some(det) = &self.detector {
            for (name, v) in det.stats() {
                if name == "detector_findings_open" {
                    m.gauge(
                        "apiscope_detector_findings_open",
                        "Open findings.",
                        v as f64,
                    );
                } else {
                    m.counter(format!("apiscope_{name}_total"), DETECTOR_HELP, v);
                }
            }
            let mut by: std::collections::BTreeMap<(String, String), u64> = Default::default();
            for f in findings {
                let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                *by.entry((s("kind"), s("severity"))).or_default() += 1;
            }
            for ((kind, severity), n) in by {
                m.add(
                    "apiscope_findings",
                    "Open findings by kind and severity.",
                    Gauge,
                    &[("kind", &kind), ("severity", &severity)],
                    n as f64,
                );
            }
        }
        if let Some(p) = &self.publisher {
            for (name, v) in p.counters() {
                m.counter(format!("apiscope_{name}_total"), PUBLISH_HELP, v);
            }
            for s in p.stats() {
                m.add(
                    "apiscope_publish_pending",
                    "Records accepted by a sink and not yet acknowledged.",
                    Gauge,
                    &[("sink", &s.name)],
                    s.pending as f64,
                );
            }
        }
        m.counter(
            "apiscope_publish_errors_total",
            "Records the publisher refused (its counters say why).",
            self.publish_errors,
        );
        m.counter(
            "apiscope_state_flushes_total",
            "Writes of changed endpoints and detector state to the state directory.",
            self.flushes,
        );
        for (result, v) in [("ok", live.reloads), ("error", live.reload_errors)] {
            m.add(
                "apiscope_config_reloads_total",
                "Configuration reloads (SIGHUP), applied or refused.",
                Counter,
                &[("result", result)],
                v as f64,
            );
        }
        m.0
    }
}
