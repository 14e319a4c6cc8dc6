//! The pipeline shared by `replay` and `run`: the worker's stream handler ([`Pipeline`]:
//! stream statistics, HTTP, finished calls keyed for the merger), the batch a worker hands
//! to the sink thread, the stages behind the sink (inventory, state store,
//! detector, publisher) and the sink thread's steps (merge, finish).
//!
//! `replay` and `run` differ only in where frames come from and when time moves: `replay`'s
//! reader hands every worker every frame ([`Frames`]) and each keeps its shard; `run`'s
//! capture threads hand each worker its own frames and add a wall-clock tick (see `run.rs`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context as _;
use apiscope_capture::{
    CloseReason, ConnMeta, Duration, Engine, LinkType, StreamAnomaly, StreamEvent, StreamHandler,
    Timestamp,
};
use apiscope_detector::Detector;
use apiscope_http::{Call, CallSink, CallStart, HttpConfig, HttpConn, HttpStats};
use apiscope_inventory::inventory::{BodySampler, CallFacts, Inventory};
use apiscope_inventory::keyed::KeyedHasher;
use apiscope_inventory::spec::{Spec, SpecSet};
use apiscope_inventory::store::Store;
use apiscope_publish::{DeliveryReport, PublishConfig, Publisher};

use crate::calls::{self, Batch, Item, Merger, Released, Weigh};
use crate::config::Config;
use crate::sink::{Sink, StreamNote, DETECTOR_KEY, DETECTOR_NS};
use crate::Failure;

/// Per-connection statistics kept by the stream-statistics handler.
#[derive(Debug, Default, Clone)]
pub struct ConnStats {
    pub bytes: [u64; 2],
    pub gaps: u64,
    pub gap_bytes: u64,
    pub anomalies: u64,
}

/// Distinct (method, path) pairs kept for the report; more are counted in `other`.
const MAX_REPORT_PATHS: usize = 10_000;

/// Calls per (method, path): count and status classes (none, 1xx..5xx).
#[derive(Debug, Default)]
pub struct CallSummary {
    pub by_path: std::collections::HashMap<(String, String), (u64, [u64; 6])>,
    pub other: u64,
}

impl CallSummary {
    fn add(&mut self, call: &Call) {
        let class = call
            .response
            .as_ref()
            .map_or(0, |r| usize::from(r.status / 100).min(5));
        let key = (
            call.request.method.to_string(),
            call.request.path().to_owned(),
        );
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
pub struct StreamReport {
    pub connections: u64,
    pub handshake: u64,
    pub midstream: u64,
    pub bytes: [u64; 2],
    pub gaps: u64,
    pub gap_bytes: u64,
    pub anomalies: u64,
    pub closes: [u64; 7],
    /// Largest connections: (client->server, bytes to server, bytes to client, gap bytes).
    pub top: Vec<(String, u64, u64, u64)>,
    /// Filled only with `--report`.
    pub calls: CallSummary,
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

pub fn trim_top(top: &mut Vec<(String, u64, u64, u64)>) {
    top.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP);
}

pub const CLOSE_REASONS: [CloseReason; 7] = [
    CloseReason::Fin,
    CloseReason::Rst,
    CloseReason::IdleTimeout,
    CloseReason::LifetimeTimeout,
    CloseReason::Reused,
    CloseReason::Evicted,
    CloseReason::EndOfCapture,
];

pub fn close_index(r: CloseReason) -> usize {
    CLOSE_REASONS.iter().position(|c| *c == r).unwrap_or(0)
}

impl StreamReport {
    pub fn merge(&mut self, o: StreamReport) {
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

/// Per-connection state of the pipeline: stream statistics and the HTTP parser.
pub struct PipeConn {
    stats: ConnStats,
    /// Boxed, so flow-table entries stay small (the parser state is ~0.5 KB); absent with
    /// `--stage capture`.
    http: Option<Box<HttpConn>>,
    /// This connection's entry in `Pipeline::pending`.
    pending: Option<Timestamp>,
}

/// The worker's stream handler: stream statistics, then HTTP, then a batch of calls.
pub struct Pipeline {
    pub report: StreamReport,
    http_cfg: HttpConfig,
    pub http_stats: HttpStats,
    finished: Finished,
    /// What calls' facts are extracted for.
    inventory: InventoryUse,
    /// Calls finished since the last batch went to the sink thread.
    pub batch: Batch<Work>,
    write_calls: bool,
    /// Keys the principal hashes in the facts (the state directory's secret, if any).
    hasher: KeyedHasher,
    /// Batches waiting for the sink thread (see [`Pipeline::connect_sink`]).
    sink_depth: Option<SinkDepth>,
    /// Emptied batch vectors back from the sink thread.
    spare: Option<SpareReceiver>,
    /// False with `--stage capture`: streams are counted, not parsed.
    parse_http: bool,
    /// Keep the per-path summary for `--report`.
    summarize: bool,
    pub calls: u64,
    /// Oldest unfinished request per connection: (time, connection id).
    pending: BTreeSet<(Timestamp, u64)>,
}

impl Pipeline {
    pub fn new(
        http_cfg: HttpConfig,
        write_calls: bool,
        inventory: InventoryUse,
        sampler: Option<BodySampler>,
        hasher: KeyedHasher,
        parse_http: bool,
        summarize: bool,
    ) -> Self {
        Pipeline {
            report: StreamReport::default(),
            http_cfg,
            http_stats: HttpStats::default(),
            finished: Finished {
                calls: Vec::new(),
                sampler,
                flow_hash: 0,
            },
            inventory,
            batch: Batch::default(),
            write_calls,
            hasher,
            sink_depth: None,
            spare: None,
            parse_http,
            summarize,
            calls: 0,
            pending: BTreeSet::new(),
        }
    }

    /// No call still to come from this worker starts before this: the oldest request still
    /// waiting for its response, or `now - slack` for requests not yet begun. With
    /// `max_wait`, a request waiting longer than that no longer holds the others back (the
    /// live sensor must not hold every call while one server takes minutes to answer); its
    /// call, when it comes, is counted as out of order.
    pub fn watermark(
        &self,
        now: Timestamp,
        slack: Duration,
        max_wait: Option<Duration>,
    ) -> Timestamp {
        let floor = Timestamp::from_nanos(now.as_nanos().saturating_sub(slack.as_nanos()));
        match self.pending.first() {
            Some(&(t, _)) => {
                let held = t.min(floor);
                match max_wait {
                    Some(w) => held
                        .max(Timestamp::from_nanos(
                            now.as_nanos().saturating_sub(w.as_nanos()),
                        ))
                        .min(floor),
                    None => held,
                }
            }
            None => floor,
        }
    }

    /// Takes the calls finished since the last batch, stamped for the merger: `worker`, and
    /// the watermark at capture time `now` (`None` when `last`: this worker is done).
    pub fn take_batch(
        &mut self,
        worker: usize,
        now: Timestamp,
        slack: Duration,
        max_wait: Option<Duration>,
        last: bool,
    ) -> Batch<Work> {
        let watermark = (!last).then(|| self.watermark(now, slack, max_wait));
        // The next batch fills a vector the sink thread handed back when there is one (its
        // pages are already mapped), else one sized like this batch: most are full.
        let next = match self.spare.as_ref().and_then(|r| r.try_recv().ok()) {
            Some(items) => Batch {
                items,
                ..Batch::default()
            },
            None => Batch::with_capacity(self.batch.items.len().next_power_of_two().min(BATCH)),
        };
        let mut batch = std::mem::replace(&mut self.batch, next);
        batch.worker = worker;
        batch.watermark = watermark;
        batch
    }

    /// Connects this worker to the sink thread. `depth` (batches sent and not yet taken) is
    /// shared with it: while a batch waits, this worker prepares its calls itself
    /// ([`prepare`]), as they finish, so that the two threads share the work. On `spare`
    /// come back the emptied batch vectors to fill again (see [`sink_batch`]).
    pub fn connect_sink(&mut self, depth: SinkDepth, spare: Option<SpareReceiver>) {
        self.sink_depth = Some(depth);
        self.spare = spare;
    }

    /// Requests waiting for their responses, over all connections.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
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
        self.finished.flow_hash = meta.hash;
        let (cfg, stats, out) = (&self.http_cfg, &mut self.http_stats, &mut self.finished);
        match ev {
            StreamEvent::Data { dir, ts, data } => http.on_data(cfg, dir, ts, data, out, stats),
            StreamEvent::Gap { dir, ts, len } => http.on_gap(cfg, dir, ts, len, out, stats),
            StreamEvent::Closed { ts, .. } => http.on_close(cfg, ts, out, stats),
            StreamEvent::Anomaly { ts, kind, .. } => {
                if self.inventory == InventoryUse::Full && kind == StreamAnomaly::OverlapMismatch {
                    let (client, server) = if http.roles_swapped() {
                        (meta.key.dst, meta.key.src)
                    } else {
                        (meta.key.src, meta.key.dst)
                    };
                    self.batch.stream_notes.push(StreamNote {
                        client: client.ip,
                        server,
                        ts,
                        what: "overlap_mismatch",
                    });
                }
            }
        }
        let swapped = http.roles_swapped();
        if let Some(s) = &self.finished.sampler {
            self.http_stats.body_sampler_full = s.full;
        }
        let sink_busy = self
            .sink_depth
            .as_ref()
            .is_some_and(|d| d.load(Ordering::Relaxed) > 0);
        let (write, inventory) = (self.write_calls, self.inventory);
        for mut call in self.finished.calls.drain(..) {
            self.calls += 1;
            if self.summarize {
                self.report.calls.add(&call);
            }
            if !write && inventory == InventoryUse::Off {
                continue;
            }
            let key = calls::key_of(&call, meta, swapped);
            if sink_busy {
                let hasher = &self.hasher;
                self.batch.push_prepared(key, |bytes, key| {
                    let (at, facts) = prepare(bytes, key, &mut call, write, inventory, hasher);
                    (at, Work::Prepared(facts))
                });
            } else {
                self.batch.push(key, Work::Parsed(call));
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
        // The parser's box, in the allocator's size class, and what it holds (the rest of
        // `PipeConn` is in the flow's slot).
        conn.http.as_ref().map_or(0, |h| {
            size_class(std::mem::size_of::<HttpConn>()) + h.memory()
        })
    }
}

/// `n` rounded up as a size-segregated allocator (mimalloc) does: to the next eighth of
/// its power of two.
fn size_class(n: usize) -> usize {
    if n <= 64 {
        return n.next_multiple_of(8);
    }
    let step = n.next_power_of_two() / 8;
    n.next_multiple_of(step)
}

/// One frame of a [`Frames`] batch.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub ts: Timestamp,
    pub link: Option<LinkType>,
    /// Where its bytes are in [`Frames::data`].
    pub start: u32,
    pub len: u32,
    pub wire_len: u32,
}

/// Frames copied out of a capture's buffer, back to back, on their way to a worker (from a
/// capture thread of `run`, or `replay`'s reader).
#[derive(Debug, Default)]
pub struct Frames {
    pub data: Vec<u8>,
    pub frames: Vec<Frame>,
}

impl Frames {
    /// The bytes of `f`.
    pub fn bytes(&self, f: &Frame) -> &[u8] {
        &self.data[f.start as usize..(f.start + f.len) as usize]
    }

    /// Copies one frame in (growing only if `data` lacks room: callers reserve).
    pub fn push(&mut self, ts: Timestamp, link: Option<LinkType>, data: &[u8], wire_len: u32) {
        let start = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        self.data.extend_from_slice(data);
        self.frames.push(Frame {
            ts,
            link,
            start,
            len: data.len() as u32,
            wire_len,
        });
    }

    /// Bytes held: the frames' bytes and their records.
    pub fn len_bytes(&self) -> usize {
        self.data.len() + self.frames.len() * std::mem::size_of::<Frame>()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }
}

/// Batches sent to the sink thread and not yet taken by it.
pub type SinkDepth = std::sync::Arc<AtomicI64>;

/// A call on its way to the sink thread: as parsed, or prepared by its worker (its line, if
/// calls are written, in the batch's bytes; its facts, if the inventory runs).
#[derive(Debug)]
pub enum Work {
    Parsed(Call),
    Prepared(Option<CallFacts>),
}

impl Weigh for Work {
    fn weigh(&self) -> usize {
        std::mem::size_of::<Work>()
            + match self {
                Work::Parsed(call) => call.heap_size(),
                Work::Prepared(facts) => facts.as_ref().map_or(0, CallFacts::heap_size),
            }
    }
}

/// What becomes of a call before the inventory counts it, on whichever thread does it: its
/// line without the endpoint value appended to `out` when `write` (returning where that
/// value goes), and its facts taken as `inventory` needs them. `key` is the call's sort key.
pub fn prepare(
    out: &mut Vec<u8>,
    key: &calls::Key,
    call: &mut Call,
    write: bool,
    inventory: InventoryUse,
    hasher: &KeyedHasher,
) -> (Option<usize>, Option<CallFacts>) {
    // The line reads the method and target, which the facts then take.
    let at = write.then(|| {
        calls::write_head(out, call, key);
        let at = out.len();
        calls::write_tail(out, call, key);
        at
    });
    let facts = facts_of(call, key, hasher, inventory);
    (at, facts)
}

/// What the inventory needs of `call` (whose sort key is `key`) for `inventory`, taking its
/// method, target and sampled bodies: after its line's head is written. Only the route for
/// [`InventoryUse::Labels`] ([`Inventory::label`]), nothing without an inventory.
pub fn facts_of(
    call: &mut Call,
    key: &calls::Key,
    hasher: &KeyedHasher,
    inventory: InventoryUse,
) -> Option<CallFacts> {
    match inventory {
        InventoryUse::Off => None,
        InventoryUse::Labels => Some(CallFacts::route(call, key.1, key.2)),
        InventoryUse::Full => {
            let sample = call.bodies_kept;
            Some(CallFacts::extract(call, key.1, key.2, sample, hasher))
        }
    }
}

/// Where a worker's connections put their finished calls; it also decides, as each request
/// head is parsed, whether the call's bodies are kept: only for the calls the inventory's
/// body sampler picks. The others are only measured, which spares copying their prefixes
/// and inflating gzip bodies (most of a worker's time otherwise).
struct Finished {
    calls: Vec<Call>,
    /// The body sampler, when the inventory runs; without it no body is kept.
    sampler: Option<BodySampler>,
    /// Symmetric hash of the connection being fed.
    flow_hash: u64,
}

impl CallSink for Finished {
    fn push(&mut self, call: Call) {
        self.calls.push(call);
    }

    fn keep_bodies(&mut self, call: CallStart<'_>) -> bool {
        // Without a sampler, not even the host is looked for.
        self.sampler.as_mut().is_some_and(|s| {
            s.sample(
                call.host(),
                call.method(),
                call.path(),
                self.flow_hash,
                call.seq(),
            )
        })
    }
}

/// The number of workers: `--threads` (`flag`), else the configuration's (`configured`, 0
/// for none), else the cores, at most [`FLOW_BUCKETS`](apiscope_capture::FLOW_BUCKETS)
/// (flows are spread over that many buckets, and the buckets over the workers).
pub fn worker_count(flag: Option<usize>, configured: usize) -> Result<usize, Failure> {
    let most = apiscope_capture::FLOW_BUCKETS as usize;
    let threads = flag
        .or((configured > 0).then_some(configured))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(most)
        });
    if threads == 0 || threads > most {
        return Err(Failure::Usage(format!(
            "--threads must be between 1 and {most} (flows are spread over that many buckets)"
        )));
    }
    Ok(threads)
}

/// What the inventory is for in a run, which decides what the workers extract for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InventoryUse {
    /// No inventory: calls are only written (or only counted).
    #[default]
    Off,
    /// Only to give each written call its `endpoint`: nothing reads the endpoints' counts,
    /// schemas, parameters or sensitive data, so only the route of each call is taken
    /// ([`CallFacts::route`]) and the inventory only labels it ([`Inventory::label`]).
    Labels,
    /// Everything: the inventory itself, findings, state or publishing is wanted.
    Full,
}

/// Calls sent to the merger per batch.
pub const BATCH: usize = 1024;

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
pub fn open_detector(
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

pub fn open_output(path: &std::path::Path) -> anyhow::Result<Box<dyn Write + Send>> {
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

/// The stages behind the sink thread, opened as the options ask.
pub struct Stages {
    pub inventory: Option<Inventory>,
    pub store: Option<Store>,
    /// Keys the principal hashes (the state directory's secret, else a random key).
    pub hasher: KeyedHasher,
    pub detector: Option<Detector>,
    pub publisher: Option<Publisher>,
    /// `[publish]` with `--kafka` applied.
    pub publish_cfg: PublishConfig,
}

/// What the command asks of the stages.
#[derive(Debug, Clone, Copy)]
pub struct StageOptions<'a> {
    /// `--spec` files (with the configuration's `[[spec]]` entries).
    pub specs: &'a [PathBuf],
    /// `--state DIR`.
    pub state: Option<&'a Path>,
    /// `--kafka BROKERS` (overrides `publish.brokers`).
    pub kafka: Option<&'a str>,
    /// Whether the inventory runs at all.
    pub inventory: bool,
    /// Whether findings are wanted besides Kafka and the state (`--findings`, a report, a
    /// query API).
    pub findings: bool,
}

/// Opens the inventory (reloaded from the state directory), the detector (with its saved
/// state) and the publisher, as `o` asks.
pub fn open_stages(cfg: &Config, o: StageOptions<'_>) -> Result<Stages, Failure> {
    let (inventory, store) = if o.inventory {
        let specs = load_specs(o.specs, cfg)?;
        open_inventory(cfg, specs, o.state)?
    } else {
        (None, None)
    };
    let hasher = store
        .as_ref()
        .map_or_else(KeyedHasher::random, |s| KeyedHasher::new(&s.secret_key()));
    let mut publish_cfg = cfg.publish.clone();
    if let Some(b) = o.kafka {
        publish_cfg.brokers = b.to_owned();
    }
    let kafka = !publish_cfg.brokers.is_empty();
    let want_findings = o.findings || o.state.is_some() || kafka;
    let detector = (inventory.is_some() && want_findings && cfg.detector.enabled)
        .then(|| open_detector(cfg, &hasher, store.as_ref()))
        .transpose()?;
    let publisher = if kafka && inventory.is_some() {
        let errors = publish_cfg.validate();
        if !errors.is_empty() {
            return Err(Failure::Usage(format!(
                "[publish] {}",
                errors.join("\n[publish] ")
            )));
        }
        let p = Publisher::from_config(&publish_cfg, o.state)
            .context("starting the Kafka publisher")?;
        Some(p)
    } else {
        None
    };
    Ok(Stages {
        inventory,
        store,
        hasher,
        detector,
        publisher,
        publish_cfg,
    })
}

/// Hands one worker batch to the sink: its stream notes to the detector, its calls to the
/// merger, which passes on, in request-time order, those no worker can still precede; then
/// hands each batch vector emptied on the way back to its worker (`spare[worker]`).
pub fn sink_batch(
    sink: &mut Sink,
    merger: &mut Merger<Work>,
    mut b: Batch<Work>,
    spare: &[SpareSender],
) -> anyhow::Result<()> {
    for n in b.stream_notes.drain(..) {
        sink.stream_anomaly(&n);
    }
    merger.push(b, &mut |r: Released<'_, Work>| sink.call(r))?;
    for (worker, items) in merger.take_spent() {
        if let Some(tx) = spare.get(worker) {
            // A worker that finished no longer listens: the vector is just dropped.
            let _ = tx.send(items);
        }
    }
    Ok(())
}

/// Where the sink thread hands a worker's emptied batch vectors back.
pub type SpareSender = std::sync::mpsc::Sender<Vec<Item<Work>>>;

/// Where a worker takes them (see [`Pipeline::connect_sink`]).
pub type SpareReceiver = std::sync::mpsc::Receiver<Vec<Item<Work>>>;

/// A channel for one worker's emptied batch vectors. Unbounded, but never holds more than
/// the batches that worker has in flight.
pub fn spare_channel() -> (SpareSender, SpareReceiver) {
    std::sync::mpsc::channel()
}

/// What the sink thread hands back at the end.
pub struct SinkResult {
    pub out_of_order: u64,
    /// Calls released early by `output.reorder_max_calls` or `reorder_max_bytes`.
    pub forced: u64,
    pub inventory: Option<Inventory>,
    pub detector: Option<Detector>,
    /// What the publisher delivered, and its counters, when it ran.
    pub delivery: Option<(DeliveryReport, Vec<(String, u64)>)>,
    pub publish_errors: (u64, Option<String>),
    pub flushes: u64,
}

/// After every worker's last batch: releases the calls still held, runs the detector's
/// end-of-input checks, flushes the calls and the state, and closes the publisher, waiting up
/// to `delivery_wait` for delivery.
pub fn finish_sink(
    mut sink: Sink,
    mut merger: Merger<Work>,
    delivery_wait: std::time::Duration,
) -> anyhow::Result<SinkResult> {
    merger.finish(&mut |r: Released<'_, Work>| sink.call(r))?;
    let flushes = sink.flushes;
    let publish_errors = (sink.publish_errors, sink.first_publish_error.take());
    let (inventory, detector, publisher) = sink.finish()?;
    let delivery = publisher.map(|p| {
        let counters = p.counters();
        (p.close(delivery_wait), counters)
    });
    Ok(SinkResult {
        out_of_order: merger.out_of_order,
        forced: merger.forced,
        inventory,
        detector,
        flushes,
        delivery,
        publish_errors,
    })
}

/// A new worker engine running the pipeline: the HTTP stage when `parse_http`; its calls go
/// to the sink thread when `write_calls` or when the inventory runs, with their bodies
/// sampled when it runs in full.
pub fn new_engine(
    cfg: &Config,
    write_calls: bool,
    inventory: InventoryUse,
    hasher: &KeyedHasher,
    parse_http: bool,
    summarize: bool,
) -> Engine<Pipeline> {
    let handler = Pipeline::new(
        cfg.http_config(),
        write_calls,
        inventory,
        (inventory == InventoryUse::Full).then(|| BodySampler::new(&cfg.inventory)),
        hasher.clone(),
        parse_http,
        summarize,
    );
    Engine::new(cfg.engine(), handler)
}
