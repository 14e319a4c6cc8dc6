//! The scenario captures of `fixtures/scenarios/` (made by `gen_scenarios.py`), each replayed
//! through capture, HTTP parsing, the inventory and the detector as the sensor's sink does
//! it (one worker, calls in request-time order, a tick every second of capture time), and
//! the findings compared with `expected.tsv`: for each kind, the number of distinct findings.
//!
//! This checks the detections on real packets; the binary's own end-to-end test
//! (`apiscope replay --findings`) checks the wiring.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use apiscope_capture::{
    Endpoint, Engine, EngineConfig, FileSource, Orientation, StreamAnomaly, StreamEvent,
    StreamHandler, Timestamp,
};
use apiscope_detector::{Detector, DetectorConfig, Finding};
use apiscope_http::{Call, HttpConfig, HttpConn, HttpStats};
use apiscope_inventory::inventory::{BodySampler, CallFacts, Inventory, InventoryConfig};
use apiscope_inventory::keyed::KeyedHasher;
use apiscope_inventory::spec::{Spec, SpecSet};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scenarios")
}

/// Calls and stream anomalies of a capture.
#[derive(Default)]
struct Collect {
    http: HttpConfig,
    stats: HttpStats,
    calls: Vec<(Call, Endpoint, Endpoint)>,
    anomalies: Vec<(Timestamp, IpAddr, Endpoint)>,
}

impl StreamHandler for Collect {
    type Conn = HttpConn;

    fn open(&mut self, meta: &apiscope_capture::ConnMeta) -> HttpConn {
        HttpConn::new(&self.http, meta.orientation == Orientation::Handshake)
    }

    fn event(
        &mut self,
        conn: &mut HttpConn,
        meta: &apiscope_capture::ConnMeta,
        ev: StreamEvent<'_>,
    ) {
        let mut out = Vec::new();
        match ev {
            StreamEvent::Data { dir, ts, data } => {
                conn.on_data(&self.http, dir, ts, data, &mut out, &mut self.stats)
            }
            StreamEvent::Gap { dir, ts, len } => {
                conn.on_gap(&self.http, dir, ts, len, &mut out, &mut self.stats)
            }
            StreamEvent::Closed { ts, .. } => {
                conn.on_close(&self.http, ts, &mut out, &mut self.stats)
            }
            StreamEvent::Anomaly {
                ts,
                kind: StreamAnomaly::OverlapMismatch,
                ..
            } => self.anomalies.push((ts, meta.key.src.ip, meta.key.dst)),
            StreamEvent::Anomaly { .. } => {}
        }
        let (client, server) = if conn.roles_swapped() {
            (meta.key.dst, meta.key.src)
        } else {
            (meta.key.src, meta.key.dst)
        };
        for call in out {
            self.calls.push((call, client, server));
        }
    }
}

/// Replays `capture` (with `spec`, if any) and returns the findings.
fn replay(capture: &Path, spec: Option<&Path>) -> Vec<Finding> {
    let mut engine = Engine::new(EngineConfig::default(), Collect::default());
    let mut src = FileSource::open(capture).expect("a capture");
    while let Some(p) = src.next_packet().expect("a readable capture") {
        engine.process(p.ts, p.link, p.data, p.wire_len);
    }
    engine.finish();
    let Collect {
        mut calls,
        anomalies,
        ..
    } = engine.into_handler();
    calls.sort_by_key(|(c, client, server)| (c.request.ts, *client, *server, c.seq));

    let specs = spec.map(|path| {
        let mut set = SpecSet::new();
        set.add(Spec::load(path).expect("a spec"), &[]);
        set
    });
    let inv_cfg = InventoryConfig::default();
    let mut sampler = BodySampler::new(&inv_cfg);
    let mut inv = Inventory::new(inv_cfg, specs);
    let hasher = KeyedHasher::new(&[1; 32]);
    let mut det = Detector::new(DetectorConfig::default(), hasher.clone());
    let mut anomalies = anomalies.into_iter().peekable();
    let mut last_tick: Option<u64> = None;
    let mut tick_to = |det: &mut Detector, inv: &Inventory, ts: Timestamp| {
        let s = ts.as_secs();
        let mut t = last_tick.unwrap_or(s);
        while t < s {
            t += 1;
            det.tick(Timestamp::from_secs(t), inv);
        }
        last_tick = Some(t);
    };
    for (mut call, client, server) in calls {
        while let Some((ts, c, s)) = anomalies.next_if(|a| a.0 <= call.request.ts) {
            tick_to(&mut det, &inv, ts);
            det.stream_anomaly(c, s, ts, "overlap_mismatch");
        }
        tick_to(&mut det, &inv, call.request.ts);
        let req = &call.request;
        let sample = sampler.sample(req.host(), &req.method, req.path(), 0, call.seq);
        let mut f = CallFacts::extract(&mut call, client, server, sample, &hasher);
        inv.observe(&mut f);
        det.observe(&f, &inv);
    }
    for (ts, c, s) in anomalies {
        det.stream_anomaly(c, s, ts, "overlap_mismatch");
    }
    det.finish(&inv);
    det.findings().into_iter().cloned().collect()
}

#[test]
fn every_scenario_gives_the_expected_findings() {
    let dir = scenarios_dir();
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (capture, spec, expected) = (cols[0], cols[1], cols[2]);
        let spec = (spec != "-").then(|| dir.join(spec));
        let findings = replay(&dir.join(capture), spec.as_deref());
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &findings {
            *got.entry(f.kind.as_str()).or_default() += 1;
        }
        let got_text = if got.is_empty() {
            "none".to_owned()
        } else {
            got.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        if got_text != expected {
            let detail: Vec<String> = findings
                .iter()
                .map(|f| format!("    {} {:?}: {}", f.kind, f.severity, f.summary))
                .collect();
            failures.push(format!(
                "{capture}: expected {expected}, got {got_text}\n{}",
                detail.join("\n")
            ));
        }
        n += 1;
    }
    assert!(n >= 20, "only {n} scenarios");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
