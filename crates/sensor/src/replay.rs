//! `apiscope replay`: capture files through the pipeline as fast as possible.
//!
//! ```text
//!  reader thread ──── frames, batched ────▶ worker × N ──── calls, batched ────▶ sink thread
//!  (libpcap, files     (the same batch to    (engine, HTTP;    bounded queue      (merger, lines,
//!   in order)          every worker, bounded  keeps its shard)                     inventory, ...)
//!                      queues: the reader waits)
//! ```
//!
//! One reader thread reads the files (libpcap's read is a quarter of a worker's time
//! otherwise) and copies the frames into batches of `output.read_batch_bytes` (unless
//! `output.reader` says the workers read the files themselves: see [`use_reader`]). With
//! `--threads N`, every worker gets every batch (shared, not copied) and keeps only the
//! connections whose symmetric flow hash falls in its shard, after IP reassembly, so one
//! connection never crosses threads; the results are merged in a fixed order, so the output
//! does not depend on N. A batch's buffer goes back to the reader when its last worker is
//! done with it: at most `output.read_queue_batches` + 2 buffers exist at once (those queued
//! for the slowest worker, its current one, and the one being filled), whatever N. When a
//! queue is full, the reader waits (counted in `read_queue_full`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use apiscope_capture::{Counters, Duration, FileSource, Packet, SourceError};
use apiscope_http::HttpStats;
use apiscope_inventory::keyed::KeyedHasher;
use clap::Args;

use crate::calls::{Batch, Merger};
use crate::config::{self, Config, ReaderMode};
use crate::pipeline::{
    self, finish_sink, open_output, sink_batch, trim_top, Frame, Frames, InventoryUse, SinkDepth,
    SinkResult, SpareReceiver, StageOptions, Stages, StreamReport, Work, BATCH, CLOSE_REASONS,
};
use crate::sink::Sink;
use crate::Failure;

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

/// What one worker returns.
struct WorkerResult {
    counters: Counters,
    report: StreamReport,
    http: HttpStats,
    calls: u64,
    /// What it read, when it read the files itself.
    read: ReadResult,
}

/// Where a worker's frames come from.
enum Input<'a> {
    /// The reader thread's batches, shared by every worker; a batch goes back to the reader
    /// (`spent`) once every worker is done with it.
    Reader {
        frames: Receiver<Arc<Frames>>,
        spent: Sender<Frames>,
    },
    /// The files, read by the worker itself.
    Files(&'a [PathBuf]),
}

struct WorkerCtx<'a> {
    cfg: &'a Config,
    shard: u64,
    shards: u64,
    input: Input<'a>,
    calls_tx: Option<SyncSender<Batch<Work>>>,
    write_calls: bool,
    inventory: InventoryUse,
    hasher: &'a KeyedHasher,
    /// Batches sent and not yet taken by the sink thread: while one waits, the worker
    /// prepares its calls itself.
    queued: &'a SinkDepth,
    /// Emptied batch vectors back from the sink thread.
    spare: Option<SpareReceiver>,
    stage: Stage,
    report: bool,
}

fn worker(w: WorkerCtx<'_>) -> Result<WorkerResult, SourceError> {
    let mut engine = pipeline::new_engine(
        w.cfg,
        w.write_calls,
        w.inventory,
        w.hasher,
        w.stage == Stage::Http,
        w.report,
    )
    .with_shard(w.shard, w.shards);
    engine
        .handler_mut()
        .connect_sink(Arc::clone(w.queued), w.spare);
    let slack = Duration::from_millis(w.cfg.output.reorder_slack_ms);
    let send = |engine: &mut apiscope_capture::Engine<pipeline::Pipeline>, last: bool| {
        let Some(tx) = &w.calls_tx else { return };
        let now = engine.now();
        let batch = engine
            .handler_mut()
            .take_batch(w.shard as usize, now, slack, None, last);
        w.queued.fetch_add(1, Relaxed);
        // A closed receiver means the writer failed; it reports that itself.
        let _ = tx.send(batch);
    };
    let mut frame = |ts, link, data: &[u8], wire_len| {
        engine.process(ts, link, data, wire_len);
        if engine.handler().batch.len() >= BATCH {
            send(&mut engine, false);
        }
    };
    let mut read = ReadResult::default();
    match w.input {
        Input::Reader { frames, spent } => {
            for batch in frames {
                for f in &batch.frames {
                    frame(f.ts, f.link, batch.bytes(f), f.wire_len);
                }
                // Exactly one worker, the last to let go, gets the buffer back.
                if let Some(b) = Arc::into_inner(batch) {
                    let _ = spent.send(b);
                }
            }
        }
        Input::Files(files) => {
            read.warnings = read_files(files, |p| {
                frame(p.ts, p.link, p.data, p.wire_len);
                true
            })?;
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
        read,
    })
}

/// What was read of the files.
#[derive(Debug, Default)]
struct ReadResult {
    /// Files that ended early (truncated or damaged), as warnings.
    warnings: Vec<String>,
    /// Times a worker's queue was full and the reader thread waited.
    queue_full: u64,
}

/// Reads `files` in order, one timeline, handing each packet to `each` (which returns false
/// to stop); a file that ends early (truncated or damaged) is a warning, and the next file
/// is read.
fn read_files(
    files: &[PathBuf],
    mut each: impl FnMut(Packet<'_>) -> bool,
) -> Result<Vec<String>, SourceError> {
    let mut warnings = Vec::new();
    for path in files {
        let mut src = FileSource::open(path)?;
        loop {
            match src.next_packet() {
                Ok(Some(p)) => {
                    if !each(p) {
                        return Ok(warnings);
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
    Ok(warnings)
}

/// The reader thread: reads `files`, handing every worker the same batches of frames (see
/// the module overview); stops early, without error, when every worker has gone.
fn reader(
    files: &[PathBuf],
    workers: &[SyncSender<Arc<Frames>>],
    spent: &Receiver<Frames>,
    batch_bytes: usize,
) -> Result<ReadResult, SourceError> {
    let mut queue_full = 0;
    let fresh = || {
        let mut b = spent.try_recv().unwrap_or_default();
        b.clear();
        // Allocated once at its full size: a batch never grows (but for a frame larger
        // than a batch, which goes alone).
        if b.data.capacity() < batch_bytes {
            b.data = Vec::with_capacity(batch_bytes);
        }
        b
    };
    let mut hand_over = |b: Frames| -> bool {
        let b = Arc::new(b);
        let mut delivered = false;
        for tx in workers {
            let sent = match tx.try_send(Arc::clone(&b)) {
                Ok(()) => true,
                Err(TrySendError::Full(b)) => {
                    queue_full += 1;
                    tx.send(b).is_ok()
                }
                Err(TrySendError::Disconnected(_)) => false,
            };
            delivered |= sent;
        }
        delivered
    };
    let mut batch = fresh();
    let record = std::mem::size_of::<Frame>();
    let warnings = read_files(files, |p| {
        if !batch.frames.is_empty() && batch.len_bytes() + p.data.len() + record > batch_bytes {
            if !hand_over(std::mem::take(&mut batch)) {
                return false;
            }
            batch = fresh();
        }
        batch.push(p.ts, p.link, p.data, p.wire_len);
        true
    })?;
    if !batch.frames.is_empty() {
        hand_over(batch);
    }
    Ok(ReadResult {
        warnings,
        queue_full,
    })
}

/// Whether a reader thread reads the files (see `output.reader`). Measured on two cores: with
/// the full inventory the sink thread is the busy one, and a third busy thread costs it
/// more than the read saves the worker.
fn use_reader(mode: ReaderMode, threads: usize, inventory: InventoryUse) -> bool {
    match mode {
        ReaderMode::Thread => true,
        ReaderMode::Workers => false,
        ReaderMode::Auto => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            threads + 2 <= cores || inventory != InventoryUse::Full
        }
    }
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let cfg = match &args.config {
        Some(p) => config::load(p).map_err(|e| Failure::Usage(e.join("\n")))?,
        None => Config::default(),
    };
    let threads = pipeline::worker_count(args.threads, cfg.output.threads)?;
    // Fail early, before any thread starts, on files that are not captures at all.
    for path in &args.captures {
        FileSource::open(path).map_err(anyhow::Error::from)?;
    }
    let calls_out = args.calls.as_deref().map(open_output).transpose()?;
    let write_calls = calls_out.is_some();
    // Written calls carry their endpoint, so they need the inventory; only these outputs
    // need what it learns from bodies.
    let full_inventory = args.inventory.is_some()
        || args.findings.is_some()
        || args.state.is_some()
        || args.report
        || args.kafka.is_some()
        || !cfg.publish.brokers.is_empty();
    let inventory_use = match (args.stage, full_inventory, write_calls) {
        (Stage::Capture, ..) | (Stage::Http, false, false) => InventoryUse::Off,
        (Stage::Http, false, true) => InventoryUse::Labels,
        (Stage::Http, true, _) => InventoryUse::Full,
    };
    let want_inventory = inventory_use != InventoryUse::Off;
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
            inventory: want_inventory,
            findings: args.findings.is_some() || args.report,
        },
    )?;
    let findings_out = args.findings.as_deref().map(open_output).transpose()?;
    let delivery_wait = std::time::Duration::from_secs(publish_cfg.delivery_wait_secs);
    let flush_every = Duration::from_secs(cfg.state.flush_interval_secs);
    let want_sink = write_calls || inventory.is_some();
    let mut sink = Sink::new(
        calls_out,
        inventory,
        hasher.clone(),
        detector,
        store,
        publisher,
        flush_every,
    );
    if inventory_use == InventoryUse::Labels {
        sink.label_only();
    }
    // Workers that prepare calls write their lines exactly when the sink would.
    let write_lines = sink.writes_lines();
    let queued = SinkDepth::default();
    let started = Instant::now();
    let (read, results, sunk) = std::thread::scope(|s| {
        let queued = &queued;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<Work>>(threads * 4);
        let (spare_tx, mut spare_rx): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| pipeline::spare_channel()).unzip();
        let sink_thread = want_sink.then(|| {
            let (max_held, max_held_bytes) =
                (cfg.output.reorder_max_calls, cfg.output.reorder_max_bytes);
            let mut sink = sink;
            s.spawn(move || -> anyhow::Result<SinkResult> {
                let mut m = Merger::new(threads, max_held, max_held_bytes);
                for b in rx {
                    queued.fetch_sub(1, Relaxed);
                    sink_batch(&mut sink, &mut m, b, &spare_tx)?;
                }
                finish_sink(sink, m, delivery_wait)
            })
        });
        let (spent_tx, spent_rx) = std::sync::mpsc::channel();
        let reading = use_reader(cfg.output.reader, threads, inventory_use);
        let (frames_tx, handles): (Vec<_>, Vec<_>) = (0..threads as u64)
            .zip(spare_rx.drain(..))
            .map(|(i, spare)| {
                let (frames_tx, frames) = sync_channel(cfg.output.read_queue_batches);
                let input = if reading {
                    Input::Reader {
                        frames,
                        spent: spent_tx.clone(),
                    }
                } else {
                    Input::Files(&args.captures)
                };
                let ctx = WorkerCtx {
                    cfg: &cfg,
                    shard: i,
                    shards: threads as u64,
                    input,
                    calls_tx: sink_thread.is_some().then(|| tx.clone()),
                    write_calls: write_lines,
                    inventory: inventory_use,
                    hasher: &hasher,
                    queued,
                    spare: sink_thread.is_some().then_some(spare),
                    stage: args.stage,
                    report: args.report,
                };
                (frames_tx, s.spawn(move || worker(ctx)))
            })
            .unzip();
        drop((tx, spent_tx));
        let captures = &args.captures;
        let batch_bytes = cfg.output.read_batch_bytes;
        let read = if reading {
            s.spawn(move || reader(captures, &frames_tx, &spent_rx, batch_bytes))
                .join()
                .expect("replay reader panicked")
        } else {
            drop(frames_tx);
            Ok(ReadResult::default())
        };
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("replay worker panicked"))
            .collect();
        let sunk = sink_thread.map(|w| w.join().expect("sink thread panicked"));
        (read, results, sunk)
    });
    let mut read = read.context("replay failed")?;
    let mut counters = Counters::default();
    let mut report = StreamReport::default();
    let mut http = HttpStats::default();
    let mut calls = 0;
    for r in results {
        let r = r.context("replay failed")?;
        counters.merge(&r.counters);
        report.merge(r.report);
        http.merge(&r.http);
        calls += r.calls;
        // Workers that read the files all saw the same ones.
        if read.warnings.is_empty() {
            read.warnings = r.read.warnings;
        }
    }
    let mut warnings = std::mem::take(&mut read.warnings);
    let mut inventory = None;
    let mut detector = None;
    let mut state_flushes = 0;
    let mut delivery = None;
    if let Some(r) = sunk {
        let r = r?;
        if r.forced > 0 {
            warnings.push(format!(
                "{} calls released before their turn by output.reorder_max_calls or reorder_max_bytes",
                r.forced
            ));
        }
        if r.out_of_order > 0 {
            warnings.push(format!(
                "{} calls written out of request-time order (raise output.reorder_max_calls or reorder_max_bytes)",
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
        if read.queue_full > 0 {
            eprintln!("  {:<28} {}", "read_queue_full", read.queue_full);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo/demo.pcap")
    }

    #[test]
    fn every_worker_gets_every_frame_in_order_in_bounded_batches() {
        // Tiny batches and one-batch queues: the reader waits on the workers, recycles the
        // buffers they give back, and no batch grows past its size.
        let batch_bytes = 4096;
        let (spent_tx, spent_rx) = std::sync::mpsc::channel();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| sync_channel(1)).unzip();
        let files = vec![demo(), demo()];
        let (read, seen) = std::thread::scope(|s| {
            let workers: Vec<_> = rxs
                .into_iter()
                .map(|rx: Receiver<Arc<Frames>>| {
                    let spent_tx = spent_tx.clone();
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        let mut biggest = 0;
                        for b in rx {
                            biggest = biggest.max(b.data.capacity());
                            seen.extend(b.frames.iter().map(|f| (f.ts, b.bytes(f).to_vec())));
                            if let Some(b) = Arc::into_inner(b) {
                                spent_tx.send(b).unwrap();
                            }
                        }
                        (seen, biggest)
                    })
                })
                .collect();
            let read = reader(&files, &txs, &spent_rx, batch_bytes).unwrap();
            drop(txs);
            let seen: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
            (read, seen)
        });
        let mut want = Vec::new();
        for f in &files {
            let mut src = FileSource::open(f).unwrap();
            while let Some(p) = src.next_packet().unwrap() {
                want.push((p.ts, p.data.to_vec()));
            }
        }
        assert!(want.len() > 200, "the demo has frames");
        for (frames, biggest) in &seen {
            assert_eq!(frames, &want, "every frame, in file order, to every worker");
            assert_eq!(
                *biggest, batch_bytes,
                "batches never grow (no frame is bigger)"
            );
        }
        assert!(read.queue_full > 0, "one-batch queues fill up");
        assert!(read.warnings.is_empty());
    }

    #[test]
    fn a_truncated_file_is_a_warning_and_the_frames_before_it_are_kept() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/capture");
        let (tx, rx) = sync_channel(1000);
        let (_spent_tx, spent_rx) = std::sync::mpsc::channel();
        let files = vec![dir.join("file_truncated_record.pcap"), demo()];
        let read = reader(&files, &[tx], &spent_rx, 1 << 16).unwrap();
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        let frames: usize = rx.try_iter().map(|b| b.frames.len()).sum();
        let mut demo_frames = 0;
        let mut src = FileSource::open(&demo()).unwrap();
        while src.next_packet().unwrap().is_some() {
            demo_frames += 1;
        }
        assert!(
            frames > demo_frames,
            "the next file is read after the truncated one"
        );
    }
}
