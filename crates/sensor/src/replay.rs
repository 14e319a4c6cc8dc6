//! `apiscope replay`: capture files through the pipeline as fast as possible.
//!
//! With `--threads N`, each worker reads the files itself and keeps only the connections
//! whose symmetric flow hash falls in its shard, so one connection never crosses threads and
//! nothing is copied between them; the results are merged in a fixed order, so the output
//! does not depend on N.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use anyhow::Context as _;
use apiscope_capture::{
    CloseReason, ConnMeta, Counters, Duration, Engine, FileSource, SourceError, StreamEvent,
    StreamHandler, Timestamp,
};
use apiscope_http::{Call, HttpConfig, HttpConn, HttpStats};
use apiscope_inventory::inventory::{BodySampler, CallFacts, Inventory};
use apiscope_inventory::keyed::KeyedHasher;
use apiscope_inventory::spec::{Spec, SpecSet};
use apiscope_inventory::store::Store;
use clap::Args;

use crate::calls::{self, Batch, Merger, Released};
use crate::config::{self, Config};
use crate::sink::{Facts, Sink, StreamNote, DETECTOR_KEY, DETECTOR_NS};
use crate::Failure;
use apiscope_capture::StreamAnomaly;
use apiscope_detector::Detector;
use apiscope_publish::{DeliveryReport, Publisher};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng), processed in order as one timeline.
    #[arg(required = true)]
    captures: Vec<PathBuf>,
    /// TOML configuration (see configs/apiscope.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads (default: the configuration's output.threads, else the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write every HTTP call as JSON Lines to this file (`-` = stdout).
    #[arg(long)]
    calls: Option<PathBuf>,
    /// Write every finding as JSON Lines to this file at exit (`-` = stdout).
    #[arg(long)]
    findings: Option<PathBuf>,
    /// Write the inventory as JSON to this file at exit (`-` = stdout).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// An OpenAPI 3.x document (YAML or JSON) describing known APIs; repeatable. Matched to
    /// hosts by its `servers` (or by `[[spec]]` entries in the configuration).
    #[arg(long = "spec")]
    specs: Vec<PathBuf>,
    /// Persistent state: the inventory is reloaded from it at start and saved to it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Publish findings, inventory changes (and calls, when `publish.calls_enabled`) to these
    /// Kafka brokers (`host:port,...`); overrides `publish.brokers`.
    #[arg(long)]
    kafka: Option<String>,
    /// Run the pipeline up to this stage: `capture` (decapsulation and reassembly only, for
    /// benchmarking) or `http` (everything built so far).
    #[arg(long, value_enum, default_value_t = Stage::Http)]
    stage: Stage,
    /// Print every non-zero counter to stderr after the summary.
    #[arg(long)]
    stats: bool,
    /// Print a readable report of the connections and streams seen to stdout.
    #[arg(long)]
    report: bool,
}

/// How far `replay` runs the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Capture,
    Http,
}

/// Per-connection statistics kept by the stream-statistics handler.
#[derive(Debug, Default, Clone)]
struct ConnStats {
    bytes: [u64; 2],
    gaps: u64,
    gap_bytes: u64,
    anomalies: u64,
}

/// Distinct (method, path) pairs kept for the report; more are counted in `other`.
const MAX_REPORT_PATHS: usize = 10_000;

/// Calls per (method, path): count and status classes (none, 1xx..5xx).
#[derive(Debug, Default)]
struct CallSummary {
    by_path: std::collections::HashMap<(String, String), (u64, [u64; 6])>,
    other: u64,
}

impl CallSummary {
    fn add(&mut self, call: &Call) {
        let class = call
            .response
            .as_ref()
            .map_or(0, |r| usize::from(r.status / 100).min(5));
        let key = (call.request.method.clone(), call.request.path().to_owned());
        if self.by_path.len() >= MAX_REPORT_PATHS && !self.by_path.contains_key(&key) {
            self.other += 1;
            return;
        }
        let e = self.by_path.entry(key).or_default();
        e.0 += 1;
        e.1[class] += 1;
    }

    fn merge(&mut self, o: CallSummary) {
        self.other += o.other;
        for (k, (n, classes)) in o.by_path {
            let e = self.by_path.entry(k).or_default();
            e.0 += n;
            for (sum, n) in e.1.iter_mut().zip(classes) {
                *sum += n;
            }
        }
    }
}

/// What one worker learned about the streams.
#[derive(Debug, Default)]
struct StreamReport {
    connections: u64,
    handshake: u64,
    midstream: u64,
    bytes: [u64; 2],
    gaps: u64,
    gap_bytes: u64,
    anomalies: u64,
    closes: [u64; 7],
    /// Largest connections: (client->server, bytes to server, bytes to client, gap bytes).
    top: Vec<(String, u64, u64, u64)>,
    /// Filled only with `--report`.
    calls: CallSummary,
}

const TOP: usize = 10;

impl StreamHandler for StreamReport {
    type Conn = ConnStats;

    fn open(&mut self, meta: &ConnMeta) -> ConnStats {
        self.connections += 1;
        match meta.orientation {
            apiscope_capture::Orientation::Handshake => self.handshake += 1,
            apiscope_capture::Orientation::PortHeuristic => self.midstream += 1,
        }
        ConnStats::default()
    }

    fn event(&mut self, conn: &mut ConnStats, meta: &ConnMeta, ev: StreamEvent<'_>) {
        match ev {
            StreamEvent::Data { dir, data, .. } => conn.bytes[dir.index()] += data.len() as u64,
            StreamEvent::Gap { len, .. } => {
                conn.gaps += 1;
                conn.gap_bytes += len;
            }
            StreamEvent::Anomaly { .. } => conn.anomalies += 1,
            StreamEvent::Closed { reason, .. } => {
                self.bytes[0] += conn.bytes[0];
                self.bytes[1] += conn.bytes[1];
                self.gaps += conn.gaps;
                self.gap_bytes += conn.gap_bytes;
                self.anomalies += conn.anomalies;
                self.closes[close_index(reason)] += 1;
                let name = format!("{} -> {} ({})", meta.key.src, meta.key.dst, meta.key.tunnel);
                self.top
                    .push((name, conn.bytes[0], conn.bytes[1], conn.gap_bytes));
                if self.top.len() > TOP * 4 {
                    trim_top(&mut self.top);
                }
            }
        }
    }
}

fn trim_top(top: &mut Vec<(String, u64, u64, u64)>) {
    top.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP);
}

const CLOSE_REASONS: [CloseReason; 7] = [
    CloseReason::Fin,
    CloseReason::Rst,
    CloseReason::IdleTimeout,
    CloseReason::LifetimeTimeout,
    CloseReason::Reused,
    CloseReason::Evicted,
    CloseReason::EndOfCapture,
];

fn close_index(r: CloseReason) -> usize {
    CLOSE_REASONS.iter().position(|c| *c == r).unwrap_or(0)
}

impl StreamReport {
    fn merge(&mut self, o: StreamReport) {
        self.connections += o.connections;
        self.handshake += o.handshake;
        self.midstream += o.midstream;
        for i in 0..2 {
            self.bytes[i] += o.bytes[i];
        }
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.anomalies += o.anomalies;
        for i in 0..self.closes.len() {
            self.closes[i] += o.closes[i];
        }
        self.top.extend(o.top);
        trim_top(&mut self.top);
        self.calls.merge(o.calls);
    }
}

/// Per-connection state of the replay pipeline: stream statistics and the HTTP parser.
struct PipeConn {
    stats: ConnStats,
    /// Boxed, so flow-table entries stay small (the parser state is ~0.5 KB); absent with
    /// `--stage capture`.
    http: Option<Box<HttpConn>>,
    /// This connection's entry in `Pipeline::pending`.
    pending: Option<Timestamp>,
}

/// The worker's stream handler: stream statistics, then HTTP, then serialised calls.
struct Pipeline {
    report: StreamReport,
    http_cfg: HttpConfig,
    http_stats: HttpStats,
    scratch: Vec<Call>,
    /// Calls serialised since the last batch went to the writer.
    lines: Batch<Facts>,
    write_calls: bool,
    /// Body sampler, when the inventory runs (its facts go with each call).
    sampler: Option<BodySampler>,
    /// Keys the principal hashes in the facts (the state directory's secret, if any).
    hasher: KeyedHasher,
    /// False with `--stage capture`: streams are counted, not parsed.
    parse_http: bool,
    /// Keep the per-path summary for `--report`.
    summarize: bool,
    calls: u64,
    /// Oldest unfinished request per connection: (time, connection id).
    pending: BTreeSet<(Timestamp, u64)>,
}

impl Pipeline {
    fn new(
        http_cfg: HttpConfig,
        write_calls: bool,
        sampler: Option<BodySampler>,
        hasher: KeyedHasher,
        parse_http: bool,
        summarize: bool,
    ) -> Self {
        Pipeline {
            report: StreamReport::default(),
            http_cfg,
            http_stats: HttpStats::default(),
            scratch: Vec::new(),
            lines: Batch::default(),
            write_calls,
            sampler,
            hasher,
            parse_http,
            summarize,
            calls: 0,
            pending: BTreeSet::new(),
        }
    }

    /// No call still to come from this worker starts before this.
    fn watermark(&self, now: Timestamp, slack: Duration) -> Timestamp {
        let floor = Timestamp::from_nanos(now.as_nanos().saturating_sub(slack.as_nanos()));
        match self.pending.first() {
            Some(&(t, _)) => t.min(floor),
            None => floor,
        }
    }
}

impl StreamHandler for Pipeline {
    type Conn = PipeConn;

    fn open(&mut self, meta: &ConnMeta) -> PipeConn {
        let certain = meta.orientation == apiscope_capture::Orientation::Handshake;
        PipeConn {
            stats: self.report.open(meta),
            http: self
                .parse_http
                .then(|| Box::new(HttpConn::new(&self.http_cfg, certain))),
            pending: None,
        }
    }

    fn event(&mut self, conn: &mut PipeConn, meta: &ConnMeta, ev: StreamEvent<'_>) {
        self.report.event(&mut conn.stats, meta, ev);
        let Some(http) = conn.http.as_mut() else {
            return;
        };
        let (cfg, stats, out) = (&self.http_cfg, &mut self.http_stats, &mut self.scratch);
        match ev {
            StreamEvent::Data { dir, ts, data } => http.on_data(cfg, dir, ts, data, out, stats),
            StreamEvent::Gap { dir, ts, len } => http.on_gap(cfg, dir, ts, len, out, stats),
            StreamEvent::Closed { ts, .. } => http.on_close(cfg, ts, out, stats),
            StreamEvent::Anomaly { ts, kind, .. } => {
                if self.sampler.is_some() && kind == StreamAnomaly::OverlapMismatch {
                    let (client, server) = if http.roles_swapped() {
                        (meta.key.dst, meta.key.src)
                    } else {
                        (meta.key.src, meta.key.dst)
                    };
                    self.lines.stream_notes.push(StreamNote {
                        client: client.ip,
                        server,
                        ts,
                        what: "overlap_mismatch",
                    });
                }
            }
        }
        let swapped = http.roles_swapped();
        for mut call in self.scratch.drain(..) {
            self.calls += 1;
            if self.summarize {
                self.report.calls.add(&call);
            }
            if !self.write_calls && self.sampler.is_none() {
                continue;
            }
            self.lines.push(&call, meta, swapped, self.write_calls);
            if let Some(s) = self.sampler.as_mut() {
                let (_, client, server, _, _) = calls::key_of(&call, meta, swapped);
                let req = &call.request;
                let sample = s.sample(req.host(), &req.method, req.path());
                let facts = CallFacts::extract(&mut call, client, server, sample, &self.hasher);
                self.lines.set_facts(facts);
            }
        }
        let earliest = match ev {
            StreamEvent::Closed { .. } => None,
            _ => http.earliest_pending(),
        };
        if earliest != conn.pending {
            if let Some(t) = conn.pending {
                self.pending.remove(&(t, meta.id));
            }
            if let Some(t) = earliest {
                self.pending.insert((t, meta.id));
            }
            conn.pending = earliest;
        }
    }

    fn conn_memory(&self, conn: &PipeConn) -> usize {
        conn.http.as_ref().map_or(0, |h| h.memory())
    }
}

/// What one worker returns.
struct WorkerResult {
    counters: Counters,
    report: StreamReport,
    http: HttpStats,
    calls: u64,
    /// Files that ended early (truncated or damaged), as warnings.
    warnings: Vec<String>,
}

/// Calls sent to the merger per batch.
const BATCH: usize = 1024;

struct WorkerCtx<'a> {
    files: &'a [PathBuf],
    cfg: &'a Config,
    shard: u64,
    shards: u64,
    calls_tx: Option<SyncSender<Batch<Facts>>>,
    write_calls: bool,
    inventory: bool,
    hasher: &'a KeyedHasher,
    stage: Stage,
    report: bool,
}

fn worker(w: WorkerCtx<'_>) -> Result<WorkerResult, SourceError> {
    let handler = Pipeline::new(
        w.cfg.http_config(),
        w.write_calls,
        w.inventory.then(|| BodySampler::new(&w.cfg.inventory)),
        w.hasher.clone(),
        w.stage == Stage::Http,
        w.report,
    );
    let mut engine = Engine::new(w.cfg.engine(), handler).with_shard(w.shard, w.shards);
    let slack = Duration::from_millis(w.cfg.output.reorder_slack_ms);
    let mut warnings = Vec::new();
    let send = |engine: &mut Engine<Pipeline>, last: bool| {
        let Some(tx) = &w.calls_tx else { return };
        let now = engine.now();
        let h = engine.handler_mut();
        let watermark = (!last).then(|| h.watermark(now, slack));
        let mut batch = std::mem::take(&mut h.lines);
        batch.worker = w.shard as usize;
        batch.watermark = watermark;
        // A closed receiver means the writer failed; it reports that itself.
        let _ = tx.send(batch);
    };
    for path in w.files {
        let mut src = FileSource::open(path)?;
        loop {
            match src.next_packet() {
                Ok(Some(p)) => {
                    engine.process(p.ts, p.link, p.data, p.wire_len);
                    if engine.handler().lines.len() >= BATCH {
                        send(&mut engine, false);
                    }
                }
                Ok(None) => break,
                Err(e @ SourceError::Truncated { .. }) => {
                    warnings.push(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    engine.finish();
    send(&mut engine, true);
    let counters = engine.counters().clone();
    let p = engine.into_handler();
    let mut report = p.report;
    trim_top(&mut report.top);
    Ok(WorkerResult {
        counters,
        report,
        http: p.http_stats,
        calls: p.calls,
        warnings,
    })
}

/// What the sink thread hands back.
struct SinkResult {
    out_of_order: u64,
    inventory: Option<Inventory>,
    detector: Option<Detector>,
    /// What the publisher delivered, and its counters, when it ran.
    delivery: Option<(DeliveryReport, Vec<(String, u64)>)>,
    publish_errors: (u64, Option<String>),
    flushes: u64,
}

/// The specs of `--spec` (any host their `servers` name) and of `[[spec]]` entries.
pub fn load_specs(files: &[PathBuf], cfg: &Config) -> Result<Option<SpecSet>, Failure> {
    let mut set = SpecSet::new();
    let entries = files
        .iter()
        .map(|f| (f.clone(), Vec::new()))
        .chain(cfg.specs.iter().map(|e| (e.file.clone(), e.hosts.clone())));
    for (file, hosts) in entries {
        let spec = Spec::load(&file).map_err(|e| Failure::Usage(format!("--spec: {e}")))?;
        for w in &spec.warnings {
            eprintln!(
                "apiscope: warning: {}: {}: {}",
                file.display(),
                w.pointer,
                w.message
            );
        }
        set.add(spec, &hosts);
    }
    Ok((!set.is_empty()).then_some(set))
}

/// The detector, with its findings and baselines from the state store when there is one.
fn open_detector(
    cfg: &Config,
    hasher: &KeyedHasher,
    store: Option<&Store>,
) -> Result<Detector, Failure> {
    let mut det = Detector::new(cfg.detector.clone(), hasher.clone());
    let saved = match store {
        Some(s) => s
            .get_blob(DETECTOR_NS, DETECTOR_KEY)
            .context("reading the detector state")?,
        None => None,
    };
    if let Some(bytes) = saved {
        let loaded = serde_json::from_slice(&bytes)
            .map_err(anyhow::Error::from)
            .and_then(|v| det.load(&v).map_err(anyhow::Error::from));
        match loaded {
            Ok(0) => {}
            Ok(n) => eprintln!("apiscope: warning: {n} parts of the saved detector state were skipped"),
            Err(e) => eprintln!("apiscope: warning: the saved detector state could not be read ({e:#}); detections start afresh"),
        }
    }
    Ok(det)
}

/// A new inventory, or the one saved in the state directory `state`, and the open store.
pub fn open_inventory(
    cfg: &Config,
    specs: Option<SpecSet>,
    state: Option<&std::path::Path>,
) -> Result<(Option<Inventory>, Option<Store>), Failure> {
    let mut inv = Inventory::new(cfg.inventory.clone(), specs);
    let Some(dir) = state else {
        return Ok((Some(inv), None));
    };
    let store = Store::open(dir, &cfg.state.store)
        .with_context(|| format!("opening the state directory {}", dir.display()))?;
    let records = store
        .load_current()
        .with_context(|| format!("reading the state in {}", dir.display()))?;
    let skipped = inv.restore(&records);
    if skipped > 0 {
        eprintln!(
            "apiscope: warning: {skipped} saved endpoints could not be read back from {} and start afresh",
            dir.display()
        );
    }
    Ok((Some(inv), Some(store)))
}

fn open_output(path: &std::path::Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        )));
    }
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::with_capacity(1 << 16, f)))
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let cfg = match &args.config {
        Some(p) => config::load(p).map_err(|e| Failure::Usage(e.join("\n")))?,
        None => Config::default(),
    };
    let threads = args
        .threads
        .or((cfg.output.threads > 0).then_some(cfg.output.threads))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(Failure::Usage("--threads must be at least 1".into()));
    }
    // Fail early, before any thread starts, on files that are not captures at all.
    for path in &args.captures {
        FileSource::open(path).map_err(anyhow::Error::from)?;
    }
    let calls_out = args.calls.as_deref().map(open_output).transpose()?;
    let write_calls = calls_out.is_some();
    let want_inventory = args.stage == Stage::Http
        && (write_calls
            || args.inventory.is_some()
            || args.findings.is_some()
            || args.state.is_some()
            || args.report
            || args.kafka.is_some()
            || !cfg.publish.brokers.is_empty());
    let (inventory, store) = if want_inventory {
        let specs = load_specs(&args.specs, &cfg)?;
        open_inventory(&cfg, specs, args.state.as_deref())?
    } else {
        (None, None)
    };
    let hasher = store
        .as_ref()
        .map_or_else(KeyedHasher::random, |s| KeyedHasher::new(&s.secret_key()));
    let mut publish_cfg = cfg.publish.clone();
    if let Some(b) = &args.kafka {
        publish_cfg.brokers = b.clone();
    }
    let kafka = !publish_cfg.brokers.is_empty();
    let want_findings = args.findings.is_some() || args.state.is_some() || args.report || kafka;
    let detector = (inventory.is_some() && want_findings && cfg.detector.enabled)
        .then(|| open_detector(&cfg, &hasher, store.as_ref()))
        .transpose()?;
    let findings_out = args.findings.as_deref().map(open_output).transpose()?;
    let publisher = if kafka && inventory.is_some() {
        let errors = publish_cfg.validate();
        if !errors.is_empty() {
            return Err(Failure::Usage(format!(
                "[publish] {}",
                errors.join("\n[publish] ")
            )));
        }
        let p = Publisher::from_config(&publish_cfg, args.state.as_deref())
            .context("starting the Kafka publisher")?;
        Some(p)
    } else {
        None
    };
    let delivery_wait = std::time::Duration::from_secs(publish_cfg.delivery_wait_secs);
    let flush_every = Duration::from_secs(cfg.state.flush_interval_secs);
    let started = Instant::now();
    let (results, sunk) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<Facts>>(threads * 4);
        let sink_thread = (write_calls || inventory.is_some()).then(|| {
            let max_held = cfg.output.reorder_max_calls;
            s.spawn(move || -> anyhow::Result<SinkResult> {
                let mut m = Merger::new(threads, max_held);
                let mut sink = Sink::new(
                    calls_out,
                    inventory,
                    detector,
                    store,
                    publisher,
                    flush_every,
                );
                for mut b in rx {
                    for n in b.stream_notes.drain(..) {
                        sink.stream_anomaly(&n);
                    }
                    m.push(b, &mut |r: Released<'_, Facts>| sink.call(r))?;
                }
                m.finish(&mut |r: Released<'_, Facts>| sink.call(r))?;
                let flushes = sink.flushes;
                let publish_errors = (sink.publish_errors, sink.first_publish_error.take());
                let (inventory, detector, publisher) = sink.finish()?;
                let delivery = publisher.map(|p| {
                    let counters = p.counters();
                    (p.close(delivery_wait), counters)
                });
                Ok(SinkResult {
                    out_of_order: m.out_of_order,
                    inventory,
                    detector,
                    flushes,
                    delivery,
                    publish_errors,
                })
            })
        });
        let handles: Vec<_> = (0..threads as u64)
            .map(|i| {
                let ctx = WorkerCtx {
                    files: &args.captures,
                    cfg: &cfg,
                    shard: i,
                    shards: threads as u64,
                    calls_tx: sink_thread.is_some().then(|| tx.clone()),
                    write_calls,
                    inventory: want_inventory,
                    hasher: &hasher,
                    stage: args.stage,
                    report: args.report,
                };
                s.spawn(move || worker(ctx))
            })
            .collect();
        drop(tx);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("replay worker panicked"))
            .collect();
        let sunk = sink_thread.map(|w| w.join().expect("sink thread panicked"));
        (results, sunk)
    });
    let mut counters = Counters::default();
    let mut report = StreamReport::default();
    let mut http = HttpStats::default();
    let mut calls = 0;
    let mut warnings = Vec::new();
    for r in results {
        let r = r.context("replay failed")?;
        counters.merge(&r.counters);
        report.merge(r.report);
        http.merge(&r.http);
        calls += r.calls;
        if warnings.is_empty() {
            warnings = r.warnings;
        }
    }
    let mut inventory = None;
    let mut detector = None;
    let mut state_flushes = 0;
    let mut delivery = None;
    if let Some(r) = sunk {
        let r = r?;
        if r.out_of_order > 0 {
            warnings.push(format!(
                "{} calls written out of request-time order (raise output.reorder_max_calls)",
                r.out_of_order
            ));
        }
        inventory = r.inventory;
        detector = r.detector;
        state_flushes = r.flushes;
        delivery = r.delivery;
        if let (n, Some(first)) = r.publish_errors {
            warnings.push(format!(
                "{n} records could not be published (first: {first})"
            ));
        }
    }
    if let (Some(mut out), Some(det)) = (findings_out, detector.as_ref()) {
        let path = args
            .findings
            .as_deref()
            .unwrap_or(std::path::Path::new("-"));
        let ocsf = cfg.publish.jsonl_format == apiscope_publish::Format::Ocsf;
        let r: std::io::Result<()> = det.findings().iter().try_for_each(|f| {
            if ocsf {
                let v = serde_json::to_value(f).unwrap_or_default();
                serde_json::to_writer(&mut out, &apiscope_publish::ocsf::finding(&v))?;
            } else {
                serde_json::to_writer(&mut out, f)?;
            }
            out.write_all(b"\n")
        });
        r.and_then(|()| out.flush())
            .with_context(|| format!("writing findings to {}", path.display()))?;
    }
    if let (Some(path), Some(inv)) = (args.inventory.as_deref(), inventory.as_ref()) {
        let mut out = open_output(path)?;
        serde_json::to_writer_pretty(&mut out, &inv.to_json())
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(writeln!(out)?))
            .and_then(|()| Ok(out.flush()?))
            .with_context(|| format!("writing the inventory to {}", path.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for w in &warnings {
        eprintln!("apiscope: warning: {w}");
    }
    if args.report {
        let mut out = std::io::stdout().lock();
        let r = print_report(&mut out, &report, &counters, &http, calls).and_then(|()| {
            let Some(inv) = &inventory else { return Ok(()) };
            let j = inv.to_json();
            let eps = j["endpoints"].as_array().map_or(&[][..], Vec::as_slice);
            writeln!(out, "\nInventory:")?;
            crate::inventory_cmd::print_table(&mut out, eps)?;
            if let Some(det) = &detector {
                let fs = det.findings();
                writeln!(out, "\nFindings: {}", fs.len())?;
                for f in fs {
                    let v = serde_json::to_value(f).unwrap_or_default();
                    writeln!(
                        out,
                        "  {:<8} {:<24} {:<10} {}",
                        v["severity"].as_str().unwrap_or(""),
                        v["kind"].as_str().unwrap_or(""),
                        v["owasp"].as_str().unwrap_or("-"),
                        v["summary"].as_str().unwrap_or("")
                    )?;
                }
            }
            let unmatched: u64 = inv.hosts().iter().map(|h| h.unmatched_404).sum();
            if unmatched > 0 {
                writeln!(
                    out,
                    "{unmatched} calls got a 404 on paths matching no endpoint (not inventoried)"
                )?;
            }
            Ok(())
        });
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(anyhow::Error::from(e).context("writing the report").into())
            }
            _ => {}
        }
    }
    eprintln!("{}", summary_line(&counters, &report, calls, elapsed));
    if args.stats {
        for (name, v) in counters
            .iter()
            .chain(http.counters())
            .filter(|(name, v)| shown(name, *v))
        {
            eprintln!("  {name:<28} {v}");
        }
        if let Some(inv) = &inventory {
            for (name, v) in inv.counters().into_iter().filter(|(_, v)| *v > 0) {
                eprintln!("  {name:<28} {v}");
            }
        }
        if let Some(det) = &detector {
            for (name, v) in det.stats().into_iter().filter(|(_, v)| *v > 0) {
                eprintln!("  {name:<28} {v}");
            }
        }
        if let Some((_, counters)) = &delivery {
            for (name, v) in counters.iter().filter(|(_, v)| *v > 0) {
                eprintln!("  {name:<28} {v}");
            }
        }
        if state_flushes > 0 {
            eprintln!("  {:<28} {state_flushes}", "state_flushes");
        }
    }
    if let Some((report, _)) = &delivery {
        if !report.is_complete() {
            return Err(anyhow::anyhow!(
                "not every record reached Kafka within publish.delivery_wait_secs:\n{report}"
            )
            .into());
        }
    }
    Ok(())
}

/// Counters worth showing a person: non-zero, and not the sharding bookkeeping (each worker
/// skips the others' packets, which is not a loss).
fn shown(name: &str, v: u64) -> bool {
    v > 0 && name != "shard_skipped"
}

/// Everything the capture stage had to give up on, in one number.
fn drops(c: &Counters) -> u64 {
    c.link_unsupported
        + c.link_malformed
        + c.ip_malformed
        + c.tcp_malformed
        + c.tunnel_malformed
        + c.tunnel_unsupported
        + c.tunnel_depth_exceeded
        + c.frag_dropped_limit
        + c.frag_timeouts
        + c.frag_malformed
        + c.flows_evicted_capacity
        + c.flows_evicted_memcap
}

fn summary_line(c: &Counters, r: &StreamReport, calls: u64, elapsed: f64) -> String {
    let mb = c.bytes as f64 / 1e6;
    format!(
        "apiscope: {} packets, {:.1} MB, {} flows, {} calls, {} gaps ({} bytes), {} drops, {:.2} s, {:.1} MB/s",
        c.packets,
        mb,
        r.connections,
        calls,
        c.tcp_gaps,
        c.tcp_gap_bytes,
        drops(c),
        elapsed,
        if elapsed > 0.0 { mb / elapsed } else { 0.0 }
    )
}

fn print_report(
    out: &mut impl Write,
    r: &StreamReport,
    c: &Counters,
    http: &HttpStats,
    calls: u64,
) -> std::io::Result<()> {
    writeln!(out, "HTTP calls: {calls}")?;
    let mut rows: Vec<_> = r.calls.by_path.iter().collect();
    rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
    if !rows.is_empty() {
        let mut classes = [0u64; 6];
        for (_, (_, c)) in &rows {
            for (sum, n) in classes.iter_mut().zip(c) {
                *sum += n;
            }
        }
        writeln!(
            out,
            "Responses: {} 2xx, {} 3xx, {} 4xx, {} 5xx, {} 1xx only, {} without response",
            classes[2], classes[3], classes[4], classes[5], classes[1], classes[0]
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:>7}  {:<8} {:<58} {:>5} {:>5} {:>5} {:>5}",
            "calls", "method", "path (top 15)", "2xx", "3xx", "4xx", "5xx"
        )?;
        for ((method, path), (n, c)) in rows.iter().take(15) {
            let path: String = path.chars().take(58).collect();
            writeln!(
                out,
                "{n:>7}  {method:<8} {path:<58} {:>5} {:>5} {:>5} {:>5}",
                c[2], c[3], c[4], c[5]
            )?;
        }
        if rows.len() > 15 || r.calls.other > 0 {
            writeln!(
                out,
                "         ... {} more paths",
                rows.len().saturating_sub(15) as u64 + r.calls.other
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Connections: {} ({} with handshake, {} picked up mid-stream)",
        r.connections, r.handshake, r.midstream
    )?;
    writeln!(out,
        "Stream bytes: {} client->server, {} server->client; {} gaps covering {} bytes; {} overlap/evasion anomalies",
        r.bytes[0], r.bytes[1], r.gaps, r.gap_bytes, r.anomalies
    )?;
    let closes: Vec<String> = CLOSE_REASONS
        .iter()
        .zip(r.closes)
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    writeln!(out, "Closed: {}", closes.join(", "))?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<60} {:>12} {:>12} {:>10}",
        "largest connections", "to server", "to client", "gap bytes"
    )?;
    for (name, a, b, g) in &r.top {
        writeln!(out, "{name:<60} {a:>12} {b:>12} {g:>10}")?;
    }
    writeln!(out)?;
    writeln!(out, "Counters:")?;
    for (name, v) in c
        .iter()
        .chain(http.counters())
        .filter(|(name, v)| shown(name, *v))
    {
        writeln!(out, "  {name:<24} {v}")?;
    }
    Ok(())
}
