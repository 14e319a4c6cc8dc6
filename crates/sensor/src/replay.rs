//! `apiscope replay`: capture files through the pipeline as fast as possible.
//!
//! With `--threads N`, each worker reads the files itself and keeps only the connections
//! whose symmetric flow hash falls in its shard, so one connection never crosses threads and
//! nothing is copied between them; the results are merged in a fixed order, so the output
//! does not depend on N.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use apiscope_capture::{
    CloseReason, ConnMeta, Counters, Engine, EngineConfig, FileSource, SourceError, StreamEvent,
    StreamHandler,
};
use clap::Args;

use crate::config::{self, Config};
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
    /// Print every non-zero counter to stderr after the summary.
    #[arg(long)]
    stats: bool,
    /// Print a readable report of the connections and streams seen to stdout.
    #[arg(long)]
    report: bool,
}

/// Per-connection statistics kept by the stream-statistics handler.
#[derive(Debug, Default, Clone)]
struct ConnStats {
    bytes: [u64; 2],
    gaps: u64,
    gap_bytes: u64,
    anomalies: u64,
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
    }
}

/// What one worker returns.
struct WorkerResult {
    counters: Counters,
    report: StreamReport,
    /// Files that ended early (truncated or damaged), as warnings.
    warnings: Vec<String>,
}

fn worker(
    files: &[PathBuf],
    cfg: EngineConfig,
    shard: u64,
    shards: u64,
) -> Result<WorkerResult, SourceError> {
    let mut engine = Engine::new(cfg, StreamReport::default()).with_shard(shard, shards);
    let mut warnings = Vec::new();
    for path in files {
        let mut src = FileSource::open(path)?;
        loop {
            match src.next_packet() {
                Ok(Some(p)) => engine.process(p.ts, p.link, p.data, p.wire_len),
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
    let counters = engine.counters().clone();
    let mut report = engine.into_handler();
    trim_top(&mut report.top);
    Ok(WorkerResult {
        counters,
        report,
        warnings,
    })
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
    let started = Instant::now();
    let engine_cfg = cfg.engine();
    let results: Vec<Result<WorkerResult, SourceError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|i| {
                let files = &args.captures;
                let c = engine_cfg.clone();
                s.spawn(move || worker(files, c, i, threads as u64))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay worker panicked"))
            .collect()
    });
    let mut counters = Counters::default();
    let mut report = StreamReport::default();
    let mut warnings = Vec::new();
    for r in results {
        let r = r.context("replay failed")?;
        counters.merge(&r.counters);
        report.merge(r.report);
        if warnings.is_empty() {
            warnings = r.warnings;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for w in &warnings {
        eprintln!("apiscope: warning: {w}");
    }
    if args.report {
        print_report(&report, &counters);
    }
    eprintln!("{}", summary_line(&counters, &report, 0, elapsed));
    if args.stats {
        for (name, v) in counters.iter().filter(|(_, v)| *v > 0) {
            eprintln!("  {name:<24} {v}");
        }
    }
    Ok(())
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

fn print_report(r: &StreamReport, c: &Counters) {
    println!(
        "Connections: {} ({} with handshake, {} picked up mid-stream)",
        r.connections, r.handshake, r.midstream
    );
    println!(
        "Stream bytes: {} client->server, {} server->client; {} gaps covering {} bytes; {} overlap/evasion anomalies",
        r.bytes[0], r.bytes[1], r.gaps, r.gap_bytes, r.anomalies
    );
    let closes: Vec<String> = CLOSE_REASONS
        .iter()
        .zip(r.closes)
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!("Closed: {}", closes.join(", "));
    println!();
    println!(
        "{:<60} {:>12} {:>12} {:>10}",
        "largest connections", "to server", "to client", "gap bytes"
    );
    for (name, a, b, g) in &r.top {
        println!("{name:<60} {a:>12} {b:>12} {g:>10}");
    }
    println!();
    println!("Counters:");
    for (name, v) in c.iter().filter(|(_, v)| *v > 0) {
        println!("  {name:<24} {v}");
    }
}
