//! [`KafkaSink`]: an idempotent librdkafka producer (`acks=all`) in front of a bounded
//! memory queue and an on-disk [`Spool`].
//!
//! Record path:
//!
//! 1. [`Sink::send`] hands the record to librdkafka, whose queue is the memory bound
//!    (`queue_max_records`, `queue_max_bytes`), unless records are already waiting in the
//!    spool (then it is appended there, to keep the order).
//! 2. When the queue is full, the record is appended to the spool; when the spool is full
//!    (or there is none), it is dropped and counted: the newest record is the one lost.
//! 3. A delivery thread polls librdkafka (delivery reports), moves spooled records into the
//!    queue in order as room appears, and saves the spool's ack cursor.
//! 4. A delivery report either acknowledges the record (`delivered`; a spooled record is
//!    removed from the spool), or fails it for good (`failed`: too large, unknown topic, not
//!    authorised, ...: never retried), or fails it for a reason that may pass (a producer
//!    fatal error, a purge): the record goes back to the end of the spool.
//!
//! librdkafka keeps records until delivered (`message.timeout.ms=0`) and retries on its
//! own while the broker is away, so an unreachable broker only fills the queue, then the
//! spool. A fatal producer error (idempotence broken, e.g. the broker lost its producer
//! state) makes the delivery thread create a new producer; what the old one held goes back to
//! the spool and is sent again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;

use crate::spool::{Append, Spool};
use crate::{
    CounterSnapshot, Counters, Format, PublishConfig, PublishError, Sink, SinkCounter, SinkReport,
    Topic, TopicCounter,
};

/// How long the delivery thread waits for librdkafka events per round.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often the spool's ack cursor is saved while records are moving.
const SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// How long close waits for librdkafka to hand back purged records.
const PURGE_WAIT: Duration = Duration::from_secs(5);

/// The librdkafka configuration of the producer: `cfg.kafka_properties`, then the settings
/// the delivery guarantee rests on (brokers, idempotence, `acks=all`, no message timeout,
/// the queue bounds).
pub fn client_config(cfg: &PublishConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    // Troubleshooting: APISCOPE_KAFKA_DEBUG=broker,eos,msg,topic prints librdkafka's debug
    // log of those contexts to stderr.
    if let Ok(contexts) = std::env::var("APISCOPE_KAFKA_DEBUG") {
        cc.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        cc.set("debug", contexts);
    }
    cc.set("client.id", "apiscope");
    for (k, v) in &cfg.kafka_properties {
        cc.set(k, v);
    }
    cc.set("bootstrap.servers", cfg.broker_list().join(","))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set(
            "queue.buffering.max.messages",
            cfg.queue_max_records.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            cfg.queue_max_bytes.div_ceil(1024).to_string(),
        );
    cc
}

/// Whether a delivery error is final for the record (retrying cannot help).
pub fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::MessageProduction(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidTopic
            | C::InvalidRecord
            | C::InvalidMessage
            | C::BadMessage
            | C::InvalidTimestamp
            | C::PolicyViolation
            | C::UnsupportedForMessageFormat
            | C::InvalidRequiredAcks
    )
}

fn is_purge(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
        )
    )
}

/// Delivery opaque: topic in bits 0-1, "from the spool" in bit 2, spool sequence above.
fn opaque(topic: Topic, spool_seq: Option<u64>) -> usize {
    match spool_seq {
        None => topic.index(),
        Some(seq) => ((seq as usize) << 3) | 4 | topic.index(),
    }
}

fn decode_opaque(o: usize) -> (Topic, Option<u64>) {
    let topic = Topic::from_index((o & 3) as u8).unwrap_or(Topic::Findings);
    let seq = (o & 4 != 0).then_some((o >> 3) as u64);
    (topic, seq)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A record handed back by a producer being replaced.
#[derive(Debug)]
struct Requeued {
    opaque: usize,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// State shared by the sink, its delivery thread and librdkafka's delivery reports.
#[derive(Debug)]
struct Inner {
    spool: Mutex<Option<Spool>>,
    progress: Condvar,
    counters: Counters,
    /// Set while closing: purged spool records stay where they are (in the spool files).
    closing: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Records dropped at close because there was nowhere to keep them.
    lost: AtomicU64,
    /// Records handed straight to librdkafka and not yet reported on.
    direct: AtomicU64,
    /// Set while a producer is being replaced: purged records are collected in `requeue`
    /// (in the order librdkafka hands them back) to go first into the new producer, and
    /// `send` diverts new records to the spool.
    restarting: AtomicBool,
    requeue: Mutex<Vec<Requeued>>,
    /// One stall period passed with the broker answering and no delivery report since.
    stall_suspect: AtomicBool,
    /// Milliseconds since `started` of the last delivery report.
    last_progress_ms: AtomicU64,
    started: Instant,
}

impl Inner {
    fn note_error(&self, e: impl ToString) {
        *lock(&self.last_error) = Some(e.to_string());
    }

    /// Keeps a record that must be retried: appended to the spool (counted `spooled`), or
    /// dropped and counted when there is no room. Returns whether it was kept.
    fn keep(&self, spool: &mut Option<Spool>, topic: Topic, key: &[u8], value: &[u8]) -> bool {
        let Some(s) = spool.as_mut() else {
            self.counters.add_sink(SinkCounter::QueueFull, 1);
            self.counters.bump(topic, TopicCounter::Dropped);
            return false;
        };
        match s.append(topic, key, value) {
            Ok(Append::Written) => {
                self.counters.bump(topic, TopicCounter::Spooled);
                true
            }
            Ok(Append::Full) => {
                self.counters.add_sink(SinkCounter::SpoolFull, 1);
                self.counters.bump(topic, TopicCounter::Dropped);
                false
            }
            Err(e) => {
                self.note_error(format!("spool write: {e}"));
                self.counters.add_sink(SinkCounter::SpoolIoErrors, 1);
                self.counters.bump(topic, TopicCounter::Dropped);
                false
            }
        }
    }

    fn ack(&self, spool: &mut Option<Spool>, seq: u64) {
        if let Some(s) = spool.as_mut() {
            if let Err(e) = s.ack(seq) {
                self.note_error(format!("spool: {e}"));
                self.counters.add_sink(SinkCounter::SpoolIoErrors, 1);
            }
        }
    }
}

/// The producer context: delivery reports land here (on the delivery thread).
#[derive(Debug)]
struct Ctx {
    inner: Arc<Inner>,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Only reached when APISCOPE_KAFKA_DEBUG raised the log level (see `client_config`).
        if std::env::var_os("APISCOPE_KAFKA_DEBUG").is_some() {
            eprintln!("librdkafka [{level:?}] {fac}: {log_message}");
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.note_error(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, o: usize) {
        let inner = &self.inner;
        let (topic, seq) = decode_opaque(o);
        inner.last_progress_ms.store(
            inner.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        inner.stall_suspect.store(false, Ordering::Relaxed);
        if let Err((e, msg)) = result {
            if inner.restarting.load(Ordering::Acquire) && !is_permanent(e) {
                // Goes into the new producer as it is (same opaque), before anything newer.
                lock(&inner.requeue).push(Requeued {
                    opaque: o,
                    key: msg.key().unwrap_or(&[]).to_vec(),
                    value: msg.payload().unwrap_or(&[]).to_vec(),
                });
                return;
            }
        }
        if seq.is_none() {
            inner.direct.fetch_sub(1, Ordering::AcqRel);
        }
        match result {
            Ok(_) => {
                inner.counters.bump(topic, TopicCounter::Delivered);
                if let Some(seq) = seq {
                    inner.ack(&mut lock(&inner.spool), seq);
                }
            }
            Err((e, msg)) if is_permanent(e) => {
                inner.counters.bump(topic, TopicCounter::Failed);
                inner.note_error(format!("record to {} refused: {e}", msg.topic()));
                if let Some(seq) = seq {
                    inner.ack(&mut lock(&inner.spool), seq);
                }
            }
            Err((e, msg)) => {
                let closing = inner.closing.load(Ordering::Acquire);
                let mut spool = lock(&inner.spool);
                match seq {
                    // Still in the spool files: the next run sends it.
                    Some(_) if closing && is_purge(e) => {}
                    Some(seq) => {
                        inner.keep(
                            &mut spool,
                            topic,
                            msg.key().unwrap_or(&[]),
                            msg.payload().unwrap_or(&[]),
                        );
                        inner.ack(&mut spool, seq);
                    }
                    // At exit without a spool there is nowhere to keep it: lost.
                    None if closing && spool.is_none() => {
                        inner.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        inner.keep(
                            &mut spool,
                            topic,
                            msg.key().unwrap_or(&[]),
                            msg.payload().unwrap_or(&[]),
                        );
                    }
                }
                if !is_purge(e) {
                    inner.note_error(e);
                }
            }
        }
        inner.progress.notify_all();
    }
}

type Prod = BaseProducer<Ctx>;

/// What the sink and its delivery thread share.
struct Shared {
    inner: Arc<Inner>,
    producer: RwLock<Arc<Prod>>,
    config: ClientConfig,
    topics: [String; 3],
    stop: AtomicBool,
    stall: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("inner", &self.inner)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn producer(&self) -> Arc<Prod> {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves spooled records into librdkafka's queue, in order, while it has room.
    fn pump(&self, producer: &Prod) {
        let inner = &self.inner;
        let mut guard = lock(&inner.spool);
        let Some(spool) = guard.as_mut() else { return };
        loop {
            let seq = spool.next_seq();
            let rec = match spool.peek() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    inner.note_error(format!("spool read: {e}"));
                    inner.counters.add_sink(SinkCounter::SpoolIoErrors, 1);
                    break;
                }
            };
            let topic = rec.topic;
            let record =
                BaseRecord::with_opaque_to(&self.topics[topic.index()], opaque(topic, Some(seq)))
                    .key(&rec.key[..])
                    .payload(&rec.value[..]);
            let result = producer.send(record).map_err(|(e, _)| e);
            match result {
                Ok(()) => {
                    spool.take();
                }
                Err(e) if is_permanent(&e) => {
                    inner.counters.bump(topic, TopicCounter::Failed);
                    inner.note_error(format!("record refused: {e}"));
                    spool.take();
                    if let Err(e) = spool.ack(seq) {
                        inner.note_error(format!("spool: {e}"));
                    }
                }
                // Queue full, or the producer is failing: try again next round.
                Err(_) => break,
            }
        }
    }

    fn sync_spool(&self) {
        if let Some(s) = lock(&self.inner.spool).as_mut() {
            if let Err(e) = s.sync() {
                self.inner.note_error(format!("spool: {e}"));
                self.inner.counters.add_sink(SinkCounter::SpoolIoErrors, 1);
            }
        }
    }

    /// Replaces a producer that hit a fatal error or stalled. What it held is handed back
    /// (purged) and sent through the new producer in the same order, before anything newer;
    /// meanwhile `send` puts new records in the spool.
    fn restart_producer(&self, old: Arc<Prod>) {
        let inner = &self.inner;
        let new = match self.config.create_with_context::<Ctx, Prod>(Ctx {
            inner: inner.clone(),
        }) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                inner.note_error(format!("recreating the producer: {e}"));
                return;
            }
        };
        inner.restarting.store(true, Ordering::Release);
        *self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new.clone();
        inner.counters.add_sink(SinkCounter::ProducerRestarts, 1);
        old.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + PURGE_WAIT;
        while old.in_flight_count() > 0 && Instant::now() < deadline {
            old.poll(POLL_INTERVAL);
        }
        old.poll(Duration::ZERO);
        let requeue = std::mem::take(&mut *lock(&inner.requeue));
        for r in requeue {
            let (topic, _) = decode_opaque(r.opaque);
            let record = BaseRecord::with_opaque_to(&self.topics[topic.index()], r.opaque)
                .key(&r.key[..])
                .payload(&r.value[..]);
            if new.send(record).is_err() {
                // No room after all: keep it in the spool instead.
                let (_, seq) = decode_opaque(r.opaque);
                let mut spool = lock(&inner.spool);
                inner.keep(&mut spool, topic, &r.key, &r.value);
                match seq {
                    Some(seq) => inner.ack(&mut spool, seq),
                    None => {
                        inner.direct.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
        }
        inner.restarting.store(false, Ordering::Release);
        inner.stall_suspect.store(false, Ordering::Relaxed);
        drop(old);
    }

    /// Whether the producer holds records, has had no delivery report for `stall`, and the
    /// broker answers: librdkafka is stuck (e.g. a broker that lost its producer state
    /// answers every batch with UNKNOWN_PRODUCER_ID).
    fn stalled(&self, producer: &Prod) -> bool {
        let inner = &self.inner;
        let now = inner.started.elapsed().as_millis() as u64;
        if producer.in_flight_count() == 0 {
            // Idle is not stalled: the clock starts when records are held again.
            inner.last_progress_ms.store(now, Ordering::Relaxed);
            inner.stall_suspect.store(false, Ordering::Relaxed);
            return false;
        }
        let last = inner.last_progress_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.stall.as_millis() as u64 {
            return false;
        }
        // Check again only after another stall period.
        inner.last_progress_ms.store(now, Ordering::Relaxed);
        let answers = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|md| !md.brokers().is_empty());
        // Two stall periods in a row with the broker answering: a broker that just came back
        // gets one period to start acknowledging before the producer is replaced.
        answers && inner.stall_suspect.swap(true, Ordering::AcqRel)
    }

    /// The delivery thread.
    fn run(&self) {
        let mut last_sync = Instant::now();
        loop {
            let producer = self.producer();
            producer.poll(POLL_INTERVAL);
            if let Some((code, reason)) = producer.client().fatal_error() {
                self.inner
                    .note_error(format!("producer fatal error {code:?}: {reason}"));
                self.restart_producer(producer);
                continue;
            }
            if self.stalled(&producer) {
                self.inner.note_error(format!(
                    "no delivery report for {} s while the broker answers: producer restarted",
                    self.stall.as_secs()
                ));
                self.restart_producer(producer);
                continue;
            }
            self.pump(&producer);
            if last_sync.elapsed() >= SYNC_INTERVAL {
                self.sync_spool();
                last_sync = Instant::now();
            }
            if self.stop.load(Ordering::Acquire) {
                self.sync_spool();
                break;
            }
        }
    }
}

/// A Kafka sink (see the module documentation).
#[derive(Debug)]
pub struct KafkaSink {
    shared: Arc<Shared>,
    format: Format,
    enabled: [bool; 3],
    thread: Option<JoinHandle<()>>,
    closed: bool,
}

impl KafkaSink {
    /// Creates the producer (no connection is made yet; librdkafka connects in the
    /// background) and opens the spool in `spool_dir`, when given and `spool_max_bytes` is not
    /// 0. Records found in the spool are sent first.
    ///
    /// Errors: an invalid configuration ([`PublishError::Config`]), a spool directory that
    /// cannot be used, or librdkafka refusing the configuration.
    pub fn new(
        cfg: &PublishConfig,
        spool_dir: Option<&std::path::Path>,
    ) -> Result<Self, PublishError> {
        let errors = cfg.validate();
        if !errors.is_empty() {
            return Err(PublishError::Config(errors));
        }
        if cfg.broker_list().is_empty() {
            return Err(PublishError::Config(vec![
                "brokers: no broker given".to_owned()
            ]));
        }
        let spool = match spool_dir {
            Some(dir) if cfg.spool_max_bytes > 0 => Some(
                Spool::open(dir, cfg.spool_max_bytes, cfg.spool_segment_bytes).map_err(
                    |source| PublishError::Spool {
                        path: dir.to_owned(),
                        source,
                    },
                )?,
            ),
            _ => None,
        };
        let counters = Counters::default();
        if let Some(s) = &spool {
            let st = s.stats();
            counters.add_sink(SinkCounter::SpoolCorruptFrames, st.corrupt_frames);
            counters.add_sink(SinkCounter::SpoolCorruptBytes, st.corrupt_bytes);
            counters.add_sink(SinkCounter::SpoolRecovered, st.recovered);
        }
        let inner = Arc::new(Inner {
            spool: Mutex::new(spool),
            progress: Condvar::new(),
            counters,
            closing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            lost: AtomicU64::new(0),
            direct: AtomicU64::new(0),
            restarting: AtomicBool::new(false),
            requeue: Mutex::new(Vec::new()),
            stall_suspect: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        let config = client_config(cfg);
        let producer: Prod = config.create_with_context(Ctx {
            inner: inner.clone(),
        })?;
        let shared = Arc::new(Shared {
            inner,
            producer: RwLock::new(Arc::new(producer)),
            config,
            topics: Topic::ALL.map(|t| cfg.topics.get(t).to_owned()),
            stop: AtomicBool::new(false),
            stall: Duration::from_secs(cfg.stall_restart_secs),
        });
        let s2 = shared.clone();
        let thread = thread::Builder::new()
            .name("apiscope-kafka".to_owned())
            .spawn(move || s2.run())
            .map_err(|source| PublishError::Spool {
                path: "<delivery thread>".into(),
                source,
            })?;
        Ok(KafkaSink {
            shared,
            format: cfg.kafka_format,
            enabled: Topic::ALL.map(|t| cfg.kafka_topic_enabled(t)),
            thread: Some(thread),
            closed: false,
        })
    }

    /// Records in librdkafka's queue (waiting or in flight).
    pub fn in_memory(&self) -> u64 {
        self.shared.producer().in_flight_count().max(0) as u64
    }

    /// Records in the spool not yet acknowledged, and the spool's size in bytes.
    pub fn spooled(&self) -> (u64, u64) {
        lock(&self.shared.inner.spool)
            .as_ref()
            .map_or((0, 0), |s| (s.pending(), s.file_bytes()))
    }

    fn wait(&self, deadline: Instant) -> u64 {
        let inner = &self.shared.inner;
        loop {
            let pending = self.pending();
            let now = Instant::now();
            if pending == 0 || now >= deadline {
                return pending;
            }
            let guard = lock(&inner.spool);
            let step = (deadline - now).min(Duration::from_millis(50));
            drop(
                inner
                    .progress
                    .wait_timeout(guard, step)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    fn format(&self) -> Format {
        self.format
    }

    fn accepts(&self, topic: Topic) -> bool {
        self.enabled[topic.index()]
    }

    fn send(&mut self, topic: Topic, key: &str, value: &[u8]) -> Result<(), PublishError> {
        let inner = &self.shared.inner;
        let mut spool = lock(&inner.spool);
        let waiting = spool.as_ref().is_some_and(|s| s.unsent() > 0)
            || inner.restarting.load(Ordering::Acquire);
        if !waiting {
            let producer = self.shared.producer();
            // Counted before the send: its delivery report may come before `send` returns.
            inner.direct.fetch_add(1, Ordering::AcqRel);
            let record =
                BaseRecord::with_opaque_to(&self.shared.topics[topic.index()], opaque(topic, None))
                    .key(key)
                    .payload(value);
            let result = producer.send(record).map_err(|(e, _)| e);
            if result.is_err() {
                inner.direct.fetch_sub(1, Ordering::AcqRel);
            }
            match result {
                Ok(()) => {
                    inner.counters.bump(topic, TopicCounter::Queued);
                    return Ok(());
                }
                Err(e) if is_permanent(&e) => {
                    inner.counters.bump(topic, TopicCounter::Failed);
                    inner.note_error(format!("record refused: {e}"));
                    return Ok(());
                }
                // Queue full (or the producer is being replaced): on to the spool.
                Err(_) => {}
            }
        }
        inner.keep(&mut spool, topic, key.as_bytes(), value);
        Ok(())
    }

    fn flush(&mut self, deadline: Instant) -> Result<u64, PublishError> {
        Ok(self.wait(deadline))
    }

    fn counters(&self) -> CounterSnapshot {
        self.shared.inner.counters.snapshot()
    }

    fn pending(&self) -> u64 {
        let inner = &self.shared.inner;
        let spool = lock(&inner.spool).as_ref().map_or(0, |s| s.pending());
        inner.direct.load(Ordering::Acquire) + spool
    }

    fn close(mut self: Box<Self>, deadline: Instant) -> SinkReport {
        self.wait(deadline);
        self.shutdown()
    }
}

impl KafkaSink {
    /// Stops the delivery thread, purges librdkafka's queue (records from the spool stay
    /// there; the others are appended to it, or lost without a spool) and saves the spool.
    fn shutdown(&mut self) -> SinkReport {
        let shared = self.shared.clone();
        let inner = &shared.inner;
        inner.closing.store(true, Ordering::Release);
        shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let producer = shared.producer();
        producer.purge(PurgeConfig::default().queue().inflight());
        let purge_deadline = Instant::now() + PURGE_WAIT;
        while producer.in_flight_count() > 0 && Instant::now() < purge_deadline {
            producer.poll(POLL_INTERVAL);
        }
        producer.poll(Duration::ZERO);
        shared.sync_spool();
        self.closed = true;
        let left_in_spool = lock(&inner.spool).as_ref().map_or(0, |s| s.pending());
        let lost = inner.lost.load(Ordering::Relaxed) + producer.in_flight_count().max(0) as u64;
        let last_error = lock(&inner.last_error).clone();
        SinkReport {
            name: "kafka".to_owned(),
            counters: inner.counters.snapshot(),
            left_in_spool,
            lost,
            last_error,
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if !self.closed {
            self.shutdown();
        }
    }
}
