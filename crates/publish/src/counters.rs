//! The counters of a sink: one table names them all ([`TopicCounter`], [`SinkCounter`]).
//!
//! Counters are atomics, bumped by the thread that sees the event (the caller of
//! `publish`, or a Kafka sink's delivery thread) and read with [`Counters::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::Topic;

/// Per-topic counters of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCounter {
    /// Records handed straight to the in-memory queue (Kafka) or written (JSON Lines).
    Queued,
    /// Records written to the on-disk spool (the memory queue was full, or older records
    /// were already waiting there, or they were still in memory at exit).
    Spooled,
    /// Records the destination acknowledged (Kafka: `acks=all`; JSON Lines: written).
    Delivered,
    /// Records rejected for good (too large, topic missing, not authorised, I/O error on a
    /// file): counted, never retried.
    Failed,
    /// Records given up because every bound was reached (memory queue full without a spool,
    /// or the spool full): the newest record is the one dropped.
    Dropped,
}

impl TopicCounter {
    /// Every per-topic counter.
    pub const ALL: [TopicCounter; 5] = [
        TopicCounter::Queued,
        TopicCounter::Spooled,
        TopicCounter::Delivered,
        TopicCounter::Failed,
        TopicCounter::Dropped,
    ];

    /// The counter's name: `queued`, `spooled`, `delivered`, `failed`, `dropped`.
    pub fn name(self) -> &'static str {
        match self {
            TopicCounter::Queued => "queued",
            TopicCounter::Spooled => "spooled",
            TopicCounter::Delivered => "delivered",
            TopicCounter::Failed => "failed",
            TopicCounter::Dropped => "dropped",
        }
    }
}

/// Counters of a sink as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkCounter {
    /// Times a record was dropped because the memory queue was full and there is no spool.
    QueueFull,
    /// Times a record was dropped because the spool reached `spool_max_bytes`.
    SpoolFull,
    /// Spool frames found damaged (bad length or checksum) when opening or reading the
    /// spool; what follows a damaged frame in its segment is discarded.
    SpoolCorruptFrames,
    /// Bytes discarded with those frames.
    SpoolCorruptBytes,
    /// Records found in the spool at start-up (left by an earlier run, to be re-sent).
    SpoolRecovered,
    /// Spool reads or writes that failed (disk full, permissions); the record is dropped
    /// and counted there too.
    SpoolIoErrors,
    /// Kafka producer fatal errors (idempotence broken); the producer was recreated and
    /// every record not yet acknowledged was sent again.
    ProducerRestarts,
}

impl SinkCounter {
    /// Every sink counter.
    pub const ALL: [SinkCounter; 7] = [
        SinkCounter::QueueFull,
        SinkCounter::SpoolFull,
        SinkCounter::SpoolCorruptFrames,
        SinkCounter::SpoolCorruptBytes,
        SinkCounter::SpoolRecovered,
        SinkCounter::SpoolIoErrors,
        SinkCounter::ProducerRestarts,
    ];

    /// The counter's name, e.g. `spool_full`.
    pub fn name(self) -> &'static str {
        match self {
            SinkCounter::QueueFull => "queue_full",
            SinkCounter::SpoolFull => "spool_full",
            SinkCounter::SpoolCorruptFrames => "spool_corrupt_frames",
            SinkCounter::SpoolCorruptBytes => "spool_corrupt_bytes",
            SinkCounter::SpoolRecovered => "spool_recovered",
            SinkCounter::SpoolIoErrors => "spool_io_errors",
            SinkCounter::ProducerRestarts => "producer_restarts",
        }
    }
}

/// The live counters of one sink.
#[derive(Debug, Default)]
pub struct Counters {
    topic: [[AtomicU64; 5]; 3],
    sink: [AtomicU64; 7],
}

impl Counters {
    /// Adds `n` to a per-topic counter.
    pub fn add(&self, topic: Topic, c: TopicCounter, n: u64) {
        self.topic[topic.index()][c as usize].fetch_add(n, Relaxed);
    }

    /// Adds one to a per-topic counter.
    pub fn bump(&self, topic: Topic, c: TopicCounter) {
        self.add(topic, c, 1);
    }

    /// Adds `n` to a sink counter.
    pub fn add_sink(&self, c: SinkCounter, n: u64) {
        self.sink[c as usize].fetch_add(n, Relaxed);
    }

    /// A consistent-enough copy (each value read once; they may be from slightly different
    /// moments while records are moving).
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut s = CounterSnapshot::default();
        for t in Topic::ALL {
            for c in TopicCounter::ALL {
                s.topic[t.index()][c as usize] = self.topic[t.index()][c as usize].load(Relaxed);
            }
        }
        for c in SinkCounter::ALL {
            s.sink[c as usize] = self.sink[c as usize].load(Relaxed);
        }
        s
    }
}

/// The counters of one sink at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    topic: [[u64; 5]; 3],
    sink: [u64; 7],
}

impl CounterSnapshot {
    /// One per-topic counter.
    pub fn get(&self, topic: Topic, c: TopicCounter) -> u64 {
        self.topic[topic.index()][c as usize]
    }

    /// One per-topic counter summed over the topics.
    pub fn total(&self, c: TopicCounter) -> u64 {
        Topic::ALL.iter().map(|&t| self.get(t, c)).sum()
    }

    /// One sink counter.
    pub fn sink(&self, c: SinkCounter) -> u64 {
        self.sink[c as usize]
    }

    /// Every non-zero counter as `(name, value)`, names `<topic>_<counter>` (e.g.
    /// `findings_delivered`) and `<counter>` for the sink counters.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for t in Topic::ALL {
            for c in TopicCounter::ALL {
                let v = self.get(t, c);
                if v != 0 {
                    out.push((format!("{}_{}", t.as_str(), c.name()), v));
                }
            }
        }
        for c in SinkCounter::ALL {
            let v = self.sink(c);
            if v != 0 {
                out.push((c.name().to_owned(), v));
            }
        }
        out
    }
}
