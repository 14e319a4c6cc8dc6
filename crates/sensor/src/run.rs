//! `apiscope run`: the live sensor daemon.
//!
//! The same pipeline as `replay`, fed by live sources and kept moving by the wall clock:
//!
//! ```text
//!  capture thread per interface ─┐  frames, batched per worker, bounded queues
//!  capture thread per UDP feed ──┼──► worker 0..N-1 (engine + pipeline) ──► sink thread
//!                                ┘  full queue: batch dropped and counted   (merger, inventory,
//!                                                                             detector, state,
//!                                                  API threads ◄── View ◄──── publisher)
//! ```
//!
//! - **Capture threads** ([`capture`]) read an interface (libpcap) or a `--vxlan-listen` UDP
//!   socket, shard each frame by the symmetric hash of its innermost addresses and ports, and
//!   hand batches of owned frames to the workers; a full queue drops the batch and counts it
//!   (the capture never waits on a worker, the edge of choice for drops).
//! - **Workers** ([`worker`]) run an engine and the HTTP pipeline each; at every wall-clock
//!   tick they send their watermark (with an empty batch if need be) and their counters, and
//!   an idle worker moves its engine's capture time on. A worker waits when the sink thread's
//!   queue is full (backpressure reaches the capture queues, where it becomes counted drops).
//! - **The sink thread** merges calls in request-time order into the inventory, the detector,
//!   `--calls`, `--findings` and Kafka, flushes the state every `state.flush_interval_secs` (of
//!   capture time, and of wall-clock time when idle), rewrites `--inventory`, and renders the
//!   [`View`](crate::view::View) the query API serves once a second (`run.view_interval_ms`).
//! - **The main thread** opens the sources, drops privileges, starts the API and the threads,
//!   then waits for signals: SIGTERM/SIGINT stop the capture, drain the queues, flush the state
//!   and the publisher and stop the API (exit 0; a second signal exits at once with 1); SIGHUP
//!   reloads what can change live (the specs and `[detector]`) and says what needs a
//!   restart.

mod capture;
mod privileges;
mod telemetry;
mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use anyhow::{anyhow, Context as _};
use apiscope_capture::{Duration, LiveSource};
use apiscope_inventory::inventory::Inventory;
use apiscope_inventory::spec::SpecSet;
use clap::Args;

use crate::api::{self, ApiConfig};
use crate::calls::{Batch, Merger};
use crate::config::{self, Config};
use crate::pipeline::{self, open_output, sink_batch, SinkResult, StageOptions, Stages, Work};
use crate::sink::Sink;
use crate::view::SharedView;
use crate::Failure;
use capture::{BatchLimits, Router, UdpFeed};
use telemetry::Telemetry;
use worker::WorkerTiming;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Capture on this interface (repeatable; needs root or CAP_NET_RAW).
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    interfaces: Vec<String>,
    /// Receive VXLAN or GENEVE mirror traffic on this UDP address (repeatable), e.g.
    /// 0.0.0.0:4789; a port in capture.geneve_ports is read as GENEVE.
    #[arg(long = "vxlan-listen", value_name = "ADDR")]
    vxlan_listen: Vec<SocketAddr>,
    /// TOML configuration (see configs/apiscope.toml); reloaded on SIGHUP.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads (default: run.threads, else the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write every HTTP call as JSON Lines to this file (`-` = stdout).
    #[arg(long)]
    calls: Option<PathBuf>,
    /// Write every finding as JSON Lines to this file when it is created or updated (`-` =
    /// stdout).
    #[arg(long)]
    findings: Option<PathBuf>,
    /// Rewrite the inventory as JSON to this file every run.inventory_interval_secs and at
    /// exit (atomically: a temporary file renamed over it).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// An OpenAPI 3.x document describing known APIs; repeatable; reloaded on SIGHUP.
    #[arg(long = "spec")]
    specs: Vec<PathBuf>,
    /// Persistent state: the inventory and the detector's state are reloaded from it at start
    /// and saved to it every state.flush_interval_secs and at exit.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Publish findings, inventory changes (and calls, when publish.calls_enabled) to these
    /// Kafka brokers (`host:port,...`); overrides publish.brokers.
    #[arg(long)]
    kafka: Option<String>,
    /// Where the query API and /metrics listen (default: run.listen, 127.0.0.1:9770).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// An opened capture source.
enum Source {
    Interface(LiveSource),
    Udp(UdpFeed),
}

/// What the main thread hands the sink thread on SIGHUP: the new specs.
type ReloadSlot = Mutex<Option<Reload>>;

/// What SIGHUP applies to the running pipeline, handed to the sink thread.
struct Reload {
    specs: Option<SpecSet>,
    detector: apiscope_detector::DetectorConfig,
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let cfg = match &args.config {
        Some(p) => config::load(p).map_err(|e| Failure::Usage(e.join("\n")))?,
        None => Config::default(),
    };
    let rc = &cfg.run;
    let interfaces = if args.interfaces.is_empty() {
        rc.interfaces.clone()
    } else {
        args.interfaces.clone()
    };
    let udp = if args.vxlan_listen.is_empty() {
        rc.vxlan_listen.clone()
    } else {
        args.vxlan_listen.clone()
    };
    if interfaces.is_empty() && udp.is_empty() {
        return Err(Failure::Usage(
            "run needs a source: --interface IF or --vxlan-listen ADDR (or [run] interfaces, vxlan_listen)".into(),
        ));
    }
    let threads = pipeline::worker_count(args.threads, rc.threads)?;
    let listen = args.listen.unwrap_or(rc.listen);
    // Read while still privileged: the token file may be readable by root only.
    let token = api_token(&cfg)?;
    if api::requires_auth(&listen) && token.is_none() {
        return Err(Failure::Usage(format!(
            "--listen {listen} is not a loopback address: set [run] api_token or api_token_file"
        )));
    }
    if args.inventory.as_deref() == Some(Path::new("-")) {
        return Err(Failure::Usage(
            "run --inventory needs a file (it is rewritten periodically)".into(),
        ));
    }

    // The sources, opened while privileged.
    let mut sources = Vec::new();
    for i in &interfaces {
        let s = LiveSource::open(i, &cfg.live).map_err(anyhow::Error::from)?;
        sources.push((i.clone(), Source::Interface(s)));
    }
    for a in &udp {
        let feed = UdpFeed::bind(*a, rc.udp_buffer_bytes, &cfg.capture)?;
        let name = format!("udp:{}", feed.sock.local_addr().map_or(*a, |l| l));
        sources.push((name, Source::Udp(feed)));
    }
    if !rc.user.is_empty() {
        privileges::drop_to(&rc.user)?;
    }

    // Everything else, unprivileged.
    let calls_out = args.calls.as_deref().map(open_output).transpose()?;
    let Stages {
        inventory,
        store,
        hasher,
        detector,
        publisher,
        publish_cfg,
    } = pipeline::open_stages(
        &cfg,
        StageOptions {
            specs: &args.specs,
            state: args.state.as_deref(),
            kafka: args.kafka.as_deref(),
            inventory: true,
            findings: true,
        },
    )?;
    let mut sink = Sink::new(
        calls_out,
        inventory,
        hasher.clone(),
        detector,
        store,
        publisher,
        Duration::from_secs(cfg.state.flush_interval_secs),
    );
    // Workers that prepare calls write their lines exactly when the sink would.
    let write_calls = sink.writes_lines();
    if let Some(p) = args.findings.as_deref() {
        let ocsf = cfg.publish.jsonl_format == apiscope_publish::Format::Ocsf;
        sink.stream_findings(open_output(p)?, ocsf);
    }

    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGTERM, SIGINT] {
        // A second signal while draining exits at once (status 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&term)))
            .context("installing the signal handlers")?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&hup))
        .context("installing the signal handlers")?;

    let sink_capacity = threads * 4;
    let telemetry = Arc::new(Telemetry::new(
        sources.iter().map(|(n, _)| n.clone()).collect(),
        threads,
        rc.queue_max_batches,
        sink_capacity,
    ));
    // The first view (the inventory reloaded from the state) is there before the API answers.
    let view = SharedView::default();
    view.set(sink.view(&telemetry.live::<Work>(None)));
    let server = api::serve(
        ApiConfig {
            listen,
            token,
            max_request_bytes: rc.api_max_request_bytes,
            max_requests_per_sec: rc.api_max_requests_per_sec,
            max_connections: rc.api_max_connections,
        },
        view.clone(),
    )?;
    let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!(
        "apiscope: capturing on {}; {threads} workers; query API on http://{}",
        names.join(", "),
        server.local_addr()
    );

    let stop = AtomicBool::new(false);
    let fatal: Mutex<Option<String>> = Mutex::new(None);
    let reload: ReloadSlot = Mutex::new(None);
    let fail = |what: String| {
        let mut f = fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(what);
        }
    };
    let timing = WorkerTiming {
        tick: StdDuration::from_millis(rc.tick_ms),
        slack: Duration::from_millis(cfg.output.reorder_slack_ms),
        max_wait: Duration::from_millis(rc.reorder_max_wait_ms),
        lag: Duration::from_millis(
            u64::try_from(cfg.live.timeout_ms.max(0)).unwrap_or(0) + rc.batch_max_delay_ms,
        ),
    };
    let limits = BatchLimits {
        max_frames: rc.batch_max_frames,
        max_bytes: rc.batch_max_bytes,
        max_delay: StdDuration::from_millis(rc.batch_max_delay_ms),
    };
    let delivery_wait = StdDuration::from_secs(publish_cfg.delivery_wait_secs);
    let sunk = std::thread::scope(|s| {
        let (calls_tx, calls_rx) = sync_channel::<Batch<Work>>(sink_capacity);
        let (spare_tx, mut spare_rx): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| pipeline::spare_channel()).unzip();
        let sink_loop = SinkLoop {
            rx: calls_rx,
            spare: spare_tx,
            sink,
            merger: Merger::new(
                threads,
                cfg.output.reorder_max_calls,
                cfg.output.reorder_max_bytes,
            ),
            telemetry: &telemetry,
            view: view.clone(),
            reload: &reload,
            inventory_path: args.inventory.clone(),
            inventory_every: StdDuration::from_secs(rc.inventory_interval_secs),
            view_every: StdDuration::from_millis(rc.view_interval_ms),
            flush_every: StdDuration::from_secs(cfg.state.flush_interval_secs),
            delivery_wait,
        };
        let sink_h = std::thread::Builder::new()
            .name("sink".into())
            .spawn_scoped(s, || {
                let r = sink_loop.run();
                if let Err(e) = &r {
                    fail(format!("{e:#}"));
                }
                r
            })
            .context("starting the sink thread")?;
        let mut worker_txs = Vec::new();
        let mut workers = Vec::new();
        for (i, spare) in (0..threads).zip(spare_rx.drain(..)) {
            let (tx, rx) = sync_channel(rc.queue_max_batches);
            worker_txs.push(tx);
            let mut engine = pipeline::new_engine(
                &cfg,
                write_calls,
                pipeline::InventoryUse::Full,
                &hasher,
                true,
                false,
            );
            engine
                .handler_mut()
                .connect_sink(Arc::clone(&telemetry.sink_depth), Some(spare));
            let (calls_tx, telemetry) = (calls_tx.clone(), Arc::clone(&telemetry));
            let h = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(s, move || {
                    worker::worker(i, engine, rx, calls_tx, timing, telemetry);
                })
                .context("starting a worker thread")?;
            workers.push(h);
        }
        drop(calls_tx);
        let mut captures = Vec::new();
        for (i, (name, src)) in sources.into_iter().enumerate() {
            let router = Router::new(
                cfg.capture.clone(),
                worker_txs.clone(),
                limits,
                Arc::clone(&telemetry),
                i,
            );
            let (stop, fail) = (&stop, &fail);
            let h = std::thread::Builder::new()
                .name(format!("capture-{i}"))
                .spawn_scoped(s, move || {
                    let r = match src {
                        Source::Interface(l) => capture::interface_thread(l, router, stop),
                        Source::Udp(u) => capture::udp_thread(u, router, stop),
                    };
                    if let Err(e) = r {
                        fail(format!("capture on {name} failed: {e}"));
                    }
                })
                .context("starting a capture thread")?;
            captures.push(h);
        }
        drop(worker_txs);

        // Wait for a signal or a failure.
        loop {
            if term.load(Ordering::SeqCst) {
                eprintln!("apiscope: stopping: draining the queues and flushing the state");
                break;
            }
            if fatal.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                break;
            }
            if workers.iter().any(|h| h.is_finished()) || sink_h.is_finished() {
                fail("a pipeline thread stopped unexpectedly".into());
                break;
            }
            if hup.swap(false, Ordering::SeqCst) {
                match reload_config(&args, &cfg) {
                    Ok((r, msg)) => {
                        *reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                        telemetry.reloads.fetch_add(1, Ordering::Relaxed);
                        eprintln!("apiscope: SIGHUP: {msg}");
                    }
                    Err(e) => {
                        telemetry.reload_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("apiscope: SIGHUP: configuration not reloaded, the running one stays:\n{e}");
                    }
                }
            }
            std::thread::sleep(StdDuration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        for h in captures {
            if h.join().is_err() {
                fail("a capture thread panicked".into());
            }
        }
        for h in workers {
            if h.join().is_err() {
                fail("a worker thread panicked".into());
            }
        }
        match sink_h.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow!("the sink thread panicked")),
        }
    });
    let api_requests = server.stats().requests;
    let hosts = view.get().hosts.len();
    server.shutdown();
    let fatal = fatal.into_inner().unwrap_or_else(|e| e.into_inner());
    let sunk = match (sunk, fatal) {
        (Ok(r), None) => r,
        (_, Some(e)) => return Err(anyhow!(e).into()),
        (Err(e), None) => return Err(e.into()),
    };
    finish(&args, &telemetry, sunk, (hosts, api_requests))
}

/// After the threads: the last `--inventory`, warnings, the summary line, the exit status.
fn finish(
    args: &RunArgs,
    telemetry: &Telemetry,
    r: SinkResult,
    (hosts, api_requests): (usize, u64),
) -> Result<(), Failure> {
    if let (Some(path), Some(inv)) = (args.inventory.as_deref(), r.inventory.as_ref()) {
        write_inventory(path, inv)?;
    }
    if r.out_of_order > 0 || r.forced > 0 {
        eprintln!(
            "apiscope: warning: {} calls passed on out of request-time order, {} released early by output.reorder_max_calls or reorder_max_bytes",
            r.out_of_order, r.forced
        );
    }
    if let (n, Some(first)) = &r.publish_errors {
        eprintln!("apiscope: warning: {n} records could not be published (first: {first})");
    }
    let live = telemetry.live::<Work>(None);
    let kernel: u64 = live.sources.iter().map(|s| s.kernel_dropped).sum();
    let own: u64 = live.sources.iter().map(|s| s.queue_dropped_frames).sum();
    let endpoints = r.inventory.as_ref().map_or(0, |i| i.endpoints().len());
    eprintln!(
        "apiscope: stopped after {:.0} s: {} packets, {} calls, {} endpoints on {} hosts, {} kernel drops, {} queue drops, {} API requests",
        live.uptime_secs, live.counters.packets, live.calls, endpoints, hosts, kernel, own, api_requests
    );
    if let Some((report, _)) = &r.delivery {
        if !report.is_complete() {
            let lost: u64 = report.sinks.iter().map(|s| s.lost).sum();
            eprintln!("apiscope: warning: not every record reached Kafka within publish.delivery_wait_secs:\n{report}");
            if lost > 0 {
                return Err(anyhow!("{lost} records could not be delivered nor spooled").into());
            }
        }
    }
    Ok(())
}

/// The API token of `[run]`: `api_token`, or the first line of `api_token_file`.
fn api_token(cfg: &Config) -> Result<Option<String>, Failure> {
    let r = &cfg.run;
    if !r.api_token.is_empty() {
        return Ok(Some(r.api_token.clone()));
    }
    if r.api_token_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&r.api_token_file).map_err(|e| {
        Failure::Usage(format!(
            "[run] api_token_file: {}: {e}",
            r.api_token_file.display()
        ))
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(Failure::Usage(format!(
            "[run] api_token_file: {} is empty",
            r.api_token_file.display()
        )));
    }
    Ok(Some(token))
}

/// Reads the configuration again (SIGHUP): returns the new specs (`--spec` files and
/// `[[spec]]` entries) and a line saying what was reloaded and which changed sections need a
/// restart. An invalid file or spec changes nothing.
fn reload_config(args: &RunArgs, running: &Config) -> Result<(Reload, String), String> {
    let cfg = match &args.config {
        Some(p) => config::load(p).map_err(|e| e.join("\n"))?,
        None => Config::default(),
    };
    let specs = pipeline::load_specs(&args.specs, &cfg).map_err(|e| match e {
        Failure::Usage(m) => m,
        Failure::Other(e) => format!("{e:#}"),
    })?;
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let sections: [(&str, bool); 11] = [
        ("[capture]", d(&cfg.capture) != d(&running.capture)),
        ("[capture.live]", d(&cfg.live) != d(&running.live)),
        ("[flow]", d(&cfg.flow) != d(&running.flow)),
        ("[reassembly]", d(&cfg.reassembly) != d(&running.reassembly)),
        ("[frag]", d(&cfg.frag) != d(&running.frag)),
        ("[http]", d(&cfg.http) != d(&running.http)),
        ("[output]", d(&cfg.output) != d(&running.output)),
        ("[inventory]", d(&cfg.inventory) != d(&running.inventory)),
        ("[publish]", d(&cfg.publish) != d(&running.publish)),
        ("[state]", d(&cfg.state) != d(&running.state)),
        ("[run]", d(&cfg.run) != d(&running.run)),
    ];
    let restart: Vec<&str> = sections
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(n, _)| *n)
        .collect();
    let files = args.specs.len() + cfg.specs.len();
    let mut msg =
        format!("reloaded the specs ({files} documents; endpoints matched again) and [detector]");
    if restart.is_empty() {
        msg.push_str("; nothing else changed");
    } else {
        msg.push_str(&format!(
            "; changed, and applied only after a restart: {}",
            restart.join(", ")
        ));
    }
    Ok((
        Reload {
            specs,
            detector: cfg.detector,
        },
        msg,
    ))
}

/// Writes the inventory to `path` through a temporary file in the same directory, renamed
/// over it, so a reader never sees half a file.
fn write_inventory(path: &Path, inv: &Inventory) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("--inventory {}: not a file name", path.display()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut out, &inv.to_json())?;
        writeln!(out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing the inventory to {}", path.display()))
}

/// The sink thread of `run`.
struct SinkLoop<'a> {
    rx: Receiver<Batch<Work>>,
    /// Where each worker's emptied batch vectors go back.
    spare: Vec<pipeline::SpareSender>,
    sink: Sink,
    merger: Merger<Work>,
    telemetry: &'a Telemetry,
    view: SharedView,
    reload: &'a ReloadSlot,
    inventory_path: Option<PathBuf>,
    inventory_every: StdDuration,
    view_every: StdDuration,
    /// `state.flush_interval_secs`, as wall-clock time.
    flush_every: StdDuration,
    delivery_wait: StdDuration,
}

impl SinkLoop<'_> {
    fn run(mut self) -> anyhow::Result<SinkResult> {
        let workers = self.telemetry.workers.len();
        let mut marks = vec![Some(apiscope_capture::Timestamp::ZERO); workers];
        let start = Instant::now();
        let mut next_view = start + self.view_every;
        let mut next_inventory = start + self.inventory_every;
        let (mut last_flush, mut flushes) = (start, self.sink.flushes);
        loop {
            let wait = next_view.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(b) => {
                    self.telemetry.sink_depth.fetch_sub(1, Ordering::Relaxed);
                    marks[b.worker] = b.watermark;
                    sink_batch(&mut self.sink, &mut self.merger, b, &self.spare)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now < next_view {
                continue;
            }
            next_view = now + self.view_every;
            let reloaded = self.reload.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(r) = reloaded {
                self.sink.set_specs(r.specs);
                self.sink.set_detector_config(r.detector);
            }
            // Capture time moved on even without calls: every worker is past the lowest mark.
            if let Some(low) = marks.iter().flatten().min() {
                self.sink.tick(*low)?;
            }
            if self.sink.flushes != flushes {
                (last_flush, flushes) = (now, self.sink.flushes);
            } else if now.duration_since(last_flush) >= self.flush_every {
                self.sink.flush()?;
                (last_flush, flushes) = (now, self.sink.flushes);
            }
            self.sink.flush_outputs()?;
            self.render();
            if now >= next_inventory {
                next_inventory = now + self.inventory_every;
                if let (Some(path), Some(inv)) =
                    (self.inventory_path.as_deref(), self.sink.inventory.as_ref())
                {
                    write_inventory(path, inv)?;
                }
            }
        }
        self.render();
        pipeline::finish_sink(self.sink, self.merger, self.delivery_wait)
    }

    fn render(&mut self) {
        let live = self.telemetry.live(Some(&self.merger));
        self.view.set(self.sink.view(&live));
    }
}
