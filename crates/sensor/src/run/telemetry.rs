//! What the threads of `run` share besides their queues: the capture clock, and the counters
//! each thread publishes for the sink thread's metrics.
//!
//! Every counter has one writer. Capture threads keep their counts locally and store them
//! here when they hand batches over; workers store a snapshot of their engine's counters each
//! tick. The sink thread reads them all once per view ([`Telemetry::live`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use apiscope_capture::engine::MemoryUse;
use apiscope_capture::{Counters, Timestamp};
use apiscope_http::HttpStats;

use crate::sink::{LiveMetrics, QueueMetrics, SourceMetrics};

/// The wall clock as a capture timestamp.
pub fn wall_now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Capture time as the capture threads see it: the newest packet timestamp, moved on by the
/// wall-clock time since it was read. Workers use it to move their engines on while no
/// packet comes (so idle flows time out and calls are released), whatever the offset between
/// the packets' clock and this host's.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    /// Newest capture timestamp seen (ns), 0 before the first packet.
    latest_ns: AtomicU64,
    /// When it was published (ns since `start`).
    latest_at: AtomicU64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
            latest_ns: AtomicU64::new(0),
            latest_at: AtomicU64::new(0),
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A capture thread read packets up to `ts`.
    pub fn observe(&self, ts: Timestamp) {
        let ns = ts.as_nanos();
        if ns > self.latest_ns.fetch_max(ns, Relaxed) {
            self.latest_at.store(self.elapsed_ns(), Relaxed);
        }
    }

    /// The newest packet's capture time, if any.
    pub fn latest(&self) -> Option<Timestamp> {
        match self.latest_ns.load(Relaxed) {
            0 => None,
            ns => Some(Timestamp::from_nanos(ns)),
        }
    }

    /// Capture time now (the wall clock before the first packet).
    pub fn now(&self) -> Timestamp {
        match self.latest_ns.load(Relaxed) {
            0 => wall_now(),
            ns => {
                let since = self
                    .elapsed_ns()
                    .saturating_sub(self.latest_at.load(Relaxed));
                Timestamp::from_nanos(ns.saturating_add(since))
            }
        }
    }
}

/// One capture source's counters (written by its capture thread only).
#[derive(Debug, Default)]
pub struct SourceStats {
    pub name: String,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub kernel_received: AtomicU64,
    pub kernel_dropped: AtomicU64,
    pub interface_dropped: AtomicU64,
    pub queue_dropped_frames: AtomicU64,
    pub queue_dropped_batches: AtomicU64,
}

impl SourceStats {
    pub fn new(name: String) -> Self {
        SourceStats {
            name,
            ..SourceStats::default()
        }
    }

    fn snapshot(&self) -> SourceMetrics {
        SourceMetrics {
            name: self.name.clone(),
            frames: self.frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            kernel_received: self.kernel_received.load(Relaxed),
            kernel_dropped: self.kernel_dropped.load(Relaxed),
            interface_dropped: self.interface_dropped.load(Relaxed),
            queue_dropped_frames: self.queue_dropped_frames.load(Relaxed),
            queue_dropped_batches: self.queue_dropped_batches.load(Relaxed),
        }
    }
}

/// What a worker publishes each tick.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    pub counters: Counters,
    pub http: HttpStats,
    pub calls: u64,
    pub flows: u64,
    pub pending_requests: u64,
    pub memory: MemoryUse,
}

/// One worker: its queue's depth (producers add, the worker subtracts) and its snapshot.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub queue_depth: AtomicI64,
    pub snapshot: Mutex<WorkerSnapshot>,
}

/// Everything the sink thread reads for the metrics.
#[derive(Debug)]
pub struct Telemetry {
    pub started: Instant,
    pub clock: Clock,
    pub sources: Vec<SourceStats>,
    pub workers: Vec<WorkerStats>,
    /// Batches a worker's queue holds.
    pub queue_capacity: u64,
    /// Call batches waiting for the sink thread (shared with the workers' pipelines, which
    /// prepare calls themselves while one waits), and how many its queue holds.
    pub sink_depth: crate::pipeline::SinkDepth,
    pub sink_capacity: u64,
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
}

impl Telemetry {
    pub fn new(
        sources: Vec<String>,
        workers: usize,
        queue_capacity: usize,
        sink_capacity: usize,
    ) -> Self {
        Telemetry {
            started: Instant::now(),
            clock: Clock::new(),
            sources: sources.into_iter().map(SourceStats::new).collect(),
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            queue_capacity: queue_capacity as u64,
            sink_depth: std::sync::Arc::new(AtomicI64::new(0)),
            sink_capacity: sink_capacity as u64,
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
        }
    }

    /// The pipeline's metrics now; `merger` is the sink thread's (none before it starts).
    pub fn live<F: crate::calls::Weigh>(
        &self,
        merger: Option<&crate::calls::Merger<F>>,
    ) -> LiveMetrics {
        let mut m = LiveMetrics {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            capture_time: self.clock.latest(),
            calls_released: merger.map_or(0, |m| m.released),
            calls_out_of_order: merger.map_or(0, |m| m.out_of_order),
            calls_forced_out: merger.map_or(0, |m| m.forced),
            calls_held: merger.map_or(0, |m| m.held() as u64),
            calls_held_bytes: merger.map_or(0, |m| m.held_bytes as u64),
            reloads: self.reloads.load(Relaxed),
            reload_errors: self.reload_errors.load(Relaxed),
            sources: self.sources.iter().map(SourceStats::snapshot).collect(),
            ..LiveMetrics::default()
        };
        let depth = |d: &AtomicI64| u64::try_from(d.load(Relaxed)).unwrap_or(0);
        for (i, w) in self.workers.iter().enumerate() {
            let s = w.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            m.counters.merge(&s.counters);
            m.http.merge(&s.http);
            m.calls += s.calls;
            m.flows += s.flows;
            m.pending_requests += s.pending_requests;
            m.memory.flows += s.memory.flows;
            m.memory.reassembly += s.memory.reassembly;
            m.memory.fragments += s.memory.fragments;
            m.memory.consumer += s.memory.consumer;
            drop(s);
            m.queues.push(QueueMetrics {
                name: format!("worker-{i}"),
                depth: depth(&w.queue_depth),
                capacity: self.queue_capacity,
            });
        }
        m.queues.push(QueueMetrics {
            name: "sink".to_owned(),
            depth: depth(&self.sink_depth),
            capacity: self.sink_capacity,
        });
        m
    }
}
