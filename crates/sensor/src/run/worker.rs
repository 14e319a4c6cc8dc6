//! A worker of `run`: frames from its queue through its own engine and pipeline, calls in
//! batches to the sink thread.
//!
//! Besides the frames, a wall-clock tick (`run.tick_ms`) drives the worker: at each tick it
//! hands the sink thread a batch (empty if need be) carrying its watermark, so the merger
//! keeps releasing calls while this worker sees no traffic, and publishes its counters. When
//! no frame came since the last tick, it first moves its engine's capture time on to the
//! capture clock (the newest packet's time plus the wall-clock time since, less a lag for the
//! frames still on their way), so idle connections time out and finished requests are
//! released on a quiet link too.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use apiscope_capture::{Duration, Engine, Timestamp};

use super::telemetry::{Telemetry, WorkerSnapshot};
use crate::calls::Batch;
use crate::pipeline::Frames;
use crate::pipeline::{Pipeline, Work, BATCH};

/// A worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTiming {
    /// The wall-clock tick.
    pub tick: StdDuration,
    /// `output.reorder_slack_ms`.
    pub slack: Duration,
    /// `run.reorder_max_wait_ms`.
    pub max_wait: Duration,
    /// How far behind the capture clock an idle worker keeps its engine: frames still in the
    /// kernel buffer or in a capture thread's pending batch are at most this old.
    pub lag: Duration,
}

/// Runs until every capture thread is gone, then closes its connections and hands over its
/// last calls.
pub fn worker(
    index: usize,
    mut engine: Engine<Pipeline>,
    rx: Receiver<Frames>,
    tx: SyncSender<Batch<Work>>,
    t: WorkerTiming,
    telemetry: Arc<Telemetry>,
) {
    let me = &telemetry.workers[index];
    let mut next_tick = Instant::now() + t.tick;
    let mut busy = false;
    let send = |engine: &mut Engine<Pipeline>, last: bool| {
        // Before its first frame the engine has no capture time: the clock stands in, so this
        // worker does not hold the others back.
        let now = match engine.now() {
            Timestamp::ZERO => behind(telemetry.clock.now(), t.lag),
            now => now,
        };
        let batch = engine
            .handler_mut()
            .take_batch(index, now, t.slack, Some(t.max_wait), last);
        telemetry.sink_depth.fetch_add(1, Relaxed);
        if tx.send(batch).is_err() {
            // The sink thread failed; it reports that itself.
            telemetry.sink_depth.fetch_sub(1, Relaxed);
        }
    };
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(frames) => {
                me.queue_depth.fetch_sub(1, Relaxed);
                for f in &frames.frames {
                    engine.process(f.ts, f.link, frames.bytes(f), f.wire_len);
                }
                busy = true;
                if engine.handler().batch.len() >= BATCH {
                    send(&mut engine, false);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + t.tick;
            if !busy && telemetry.clock.latest().is_some() {
                engine.advance_time(behind(telemetry.clock.now(), t.lag));
            }
            busy = false;
            send(&mut engine, false);
            publish(&engine, &telemetry, index);
        }
    }
    engine.finish();
    send(&mut engine, true);
    publish(&engine, &telemetry, index);
}

fn behind(t: Timestamp, lag: Duration) -> Timestamp {
    Timestamp::from_nanos(t.as_nanos().saturating_sub(lag.as_nanos()))
}

fn publish(engine: &Engine<Pipeline>, telemetry: &Telemetry, index: usize) {
    let h = engine.handler();
    let snap = WorkerSnapshot {
        counters: engine.counters().clone(),
        http: h.http_stats.clone(),
        calls: h.calls,
        flows: engine.flows() as u64,
        pending_requests: h.pending_requests() as u64,
        memory: engine.memory_use(),
    };
    *telemetry.workers[index]
        .snapshot
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = snap;
}
