//! Publishing: findings, calls and inventory changes delivered to JSON Lines files and Kafka,
//! with nothing lost while a broker is away.
//!
//! The parts:
//!
//! - [`Publisher`]: what the sensor calls. [`Publisher::publish`] takes a record (a native
//!   JSON object of the contract, or [`Publisher::publish_json`] for bytes already
//!   serialised), its [`Topic`] and a key, serialises it once per [`Format`] and hands it to
//!   every [`Sink`] that takes the topic. It never waits for a broker; [`Publisher::flush`]
//!   and [`Publisher::close`] wait until a deadline, and `close` returns a
//!   [`DeliveryReport`] saying what could not be delivered.
//! - [`JsonLinesSink`]: one object per line to a file or stdout.
//! - [`KafkaSink`]: an idempotent `rdkafka` producer (`acks=all`) whose queue is the memory
//!   bound; beyond it records go to a [`spool::Spool`] (append-only, CRC-framed segment files
//!   in the state directory) and are moved back in order as the broker acknowledges;
//!   permanent refusals (too large, unknown topic) are counted as failed and never block the
//!   rest.
//! - [`ocsf`]: the OCSF 1.3.0 mapping (Detection Finding 2004, HTTP Activity 4002).
//! - [`PublishConfig`]: brokers, topic names, formats, bounds, librdkafka properties;
//!   [`PublishConfig::validate`] reports every problem at once.
//! - [`Counters`]: per sink and topic `queued`, `spooled`, `delivered`, `failed`, `dropped`,
//!   and per sink the bound and spool counters ([`SinkCounter`]).
//!
//! `docs/publish.md` describes the formats, delivery guarantees and the spool format.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use apiscope_publish::{Format, JsonLinesSink, Publisher, Topic, TopicCounter};
//!
//! let dir = std::env::temp_dir().join(format!("apiscope-publish-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("findings.jsonl");
//!
//! let mut publisher = Publisher::new();
//! publisher.add_sink(JsonLinesSink::create(&path, Format::Ocsf, &[Topic::Findings])?);
//! let finding = serde_json::json!({
//!     "id": "f-1", "kind": "shadow_api", "severity": "medium", "owasp": "API9:2023",
//!     "endpoint": {"host": "api.example.com", "method": "GET", "path": "/internal/users"},
//!     "client": "10.0.0.7", "first_seen": "2024-05-01T12:00:00.000000Z",
//!     "last_seen": "2024-05-01T12:00:00.000000Z", "count": 1,
//!     "summary": "GET api.example.com /internal/users is not in any spec.", "evidence": {}
//! });
//! publisher.publish(Topic::Findings, "f-1", &finding)?;
//! let report = publisher.close(Duration::from_secs(1));
//! assert!(report.is_complete());
//! assert_eq!(report.sinks[0].counters.get(Topic::Findings, TopicCounter::Delivered), 1);
//!
//! let line = std::fs::read_to_string(&path)?;
//! let ocsf: serde_json::Value = serde_json::from_str(line.trim_end())?;
//! assert_eq!(ocsf["class_uid"], 2004);
//! assert_eq!(ocsf["severity_id"], 3);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod counters;
mod error;
mod jsonl;
mod kafka;
pub mod ocsf;
mod publisher;
mod sink;
pub mod spool;
mod topic;

pub use config::{Format, PublishConfig, TopicNames, RESERVED_KAFKA_PROPERTIES};
pub use counters::{CounterSnapshot, Counters, SinkCounter, TopicCounter};
pub use error::PublishError;
pub use jsonl::JsonLinesSink;
pub use kafka::{client_config, is_permanent, KafkaSink};
pub use publisher::{Publisher, SinkStats};
pub use sink::{DeliveryReport, Sink, SinkReport};
pub use topic::Topic;

/// `rdkafka`, re-exported so users can name its types (e.g. in tests) at the same version.
pub use rdkafka;
