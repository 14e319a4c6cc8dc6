//! [`Publisher`]: fans records out to its sinks, serialising each once per format.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    ocsf, CounterSnapshot, DeliveryReport, Format, KafkaSink, PublishConfig, PublishError, Sink,
    Topic,
};

/// The state of one sink, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// Its counters.
    pub counters: CounterSnapshot,
    /// Records accepted and not yet acknowledged.
    pub pending: u64,
}

/// Sends every record to the sinks that take its topic.
///
/// Synchronous: [`Publisher::publish`] never waits for a broker (a Kafka sink queues in
/// memory, then spools, then drops and counts); [`Publisher::flush`] and
/// [`Publisher::close`] wait until a deadline.
#[derive(Debug, Default)]
pub struct Publisher {
    sinks: Vec<Box<dyn Sink>>,
    native: Vec<u8>,
    ocsf: Vec<u8>,
}

impl Publisher {
    /// A publisher without sinks (records go nowhere until [`Publisher::add_sink`]).
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// A publisher with the Kafka sink of `cfg` when `cfg.brokers` is set, its spool in
    /// `<state_dir>/spool/kafka` when a state directory is given.
    ///
    /// Errors: see [`KafkaSink::new`].
    pub fn from_config(
        cfg: &PublishConfig,
        state_dir: Option<&Path>,
    ) -> Result<Publisher, PublishError> {
        let mut p = Publisher::new();
        if !cfg.broker_list().is_empty() {
            let spool = state_dir.map(|d| d.join("spool").join("kafka"));
            p.add_sink(KafkaSink::new(cfg, spool.as_deref())?);
        }
        Ok(p)
    }

    /// Adds a sink; records published from now on reach it.
    pub fn add_sink(&mut self, sink: impl Sink + 'static) {
        self.sinks.push(Box::new(sink));
    }

    /// Whether any sink takes records of `topic` (callers may skip building records nobody
    /// takes).
    pub fn wants(&self, topic: Topic) -> bool {
        self.sinks.iter().any(|s| s.accepts(topic))
    }

    /// Publishes one record, `value` a native JSON object of the contract; `key` keeps related
    /// records in one Kafka partition (the finding id, the endpoint id).
    ///
    /// Errors: the first sink error (the record still went to the other sinks).
    pub fn publish(&mut self, topic: Topic, key: &str, value: &Value) -> Result<(), PublishError> {
        if !self.wants(topic) {
            return Ok(());
        }
        self.native.clear();
        serde_json::to_writer(&mut self.native, value)?;
        self.fan_out(topic, key, Some(value))
    }

    /// Publishes one record already serialised as native JSON (one object, no newline);
    /// it is parsed only when a sink wants OCSF.
    ///
    /// Errors: the bytes are not JSON and a sink needs them mapped; else as
    /// [`Publisher::publish`].
    pub fn publish_json(
        &mut self,
        topic: Topic,
        key: &str,
        json: &[u8],
    ) -> Result<(), PublishError> {
        if !self.wants(topic) {
            return Ok(());
        }
        self.native.clear();
        self.native.extend_from_slice(json);
        self.fan_out(topic, key, None)
    }

    fn fan_out(
        &mut self,
        topic: Topic,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), PublishError> {
        let needs_ocsf = topic != Topic::Inventory
            && self
                .sinks
                .iter()
                .any(|s| s.accepts(topic) && s.format() == Format::Ocsf);
        if needs_ocsf {
            let mapped = match value {
                Some(v) => ocsf::map(topic, v),
                None => ocsf::map(topic, &serde_json::from_slice(&self.native)?),
            };
            self.ocsf.clear();
            serde_json::to_writer(&mut self.ocsf, &mapped)?;
        }
        let mut first_err = None;
        for sink in &mut self.sinks {
            if !sink.accepts(topic) {
                continue;
            }
            let bytes = if needs_ocsf && sink.format() == Format::Ocsf {
                &self.ocsf
            } else {
                &self.native
            };
            if let Err(e) = sink.send(topic, key, bytes) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Flushes every sink, waiting until `deadline` at most for acknowledgements; returns the
    /// records still waiting.
    ///
    /// Errors: the first sink error.
    pub fn flush(&mut self, deadline: Instant) -> Result<u64, PublishError> {
        let mut waiting = 0;
        let mut first_err = None;
        for s in &mut self.sinks {
            match s.flush(deadline) {
                Ok(n) => waiting += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(waiting), Err)
    }

    /// The state of every sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| SinkStats {
                name: s.name().to_owned(),
                counters: s.counters(),
                pending: s.pending(),
            })
            .collect()
    }

    /// Every non-zero counter, named `publish_<sink>_<counter>` (e.g.
    /// `publish_kafka_findings_delivered`).
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for s in &self.sinks {
            let sink: String = s
                .name()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            for (name, v) in s.counters().named() {
                out.push((format!("publish_{sink}_{name}"), v));
            }
        }
        out
    }

    /// Waits up to `wait` for every sink to deliver what it holds, then closes them: records
    /// not delivered by then stay in the spool (when there is one) for the next run. The
    /// report says what was not delivered ([`DeliveryReport::is_complete`]).
    pub fn close(self, wait: Duration) -> DeliveryReport {
        let deadline = Instant::now() + wait;
        DeliveryReport {
            sinks: self.sinks.into_iter().map(|s| s.close(deadline)).collect(),
        }
    }
}
