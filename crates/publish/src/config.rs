//! [`PublishConfig`]: brokers, topics, formats, bounds; defaults in one place.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Topic;

/// The record format a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The JSON objects of the contract, as given.
    #[default]
    Native,
    /// OCSF 1.3.0: Detection Finding (2004) for findings, HTTP Activity (4002) for calls;
    /// inventory records stay native (OCSF has no class for an API endpoint).
    Ocsf,
}

/// Kafka topic names, one per [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Default `apiscope.findings`.
    pub findings: String,
    /// Default `apiscope.calls`.
    pub calls: String,
    /// Default `apiscope.inventory`.
    pub inventory: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            findings: Topic::Findings.default_name().to_owned(),
            calls: Topic::Calls.default_name().to_owned(),
            inventory: Topic::Inventory.default_name().to_owned(),
        }
    }
}

impl TopicNames {
    /// The name configured for `topic`.
    pub fn get(&self, topic: Topic) -> &str {
        match topic {
            Topic::Findings => &self.findings,
            Topic::Calls => &self.calls,
            Topic::Inventory => &self.inventory,
        }
    }
}

/// librdkafka properties this crate sets itself; configuring them through
/// `kafka_properties` is an error naming the key to use instead (or why it is fixed).
pub const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    ("enable.idempotence", "the producer is always idempotent"),
    ("acks", "always `all`"),
    ("request.required.acks", "always `all`"),
    ("queue.buffering.max.messages", "use `queue_max_records`"),
    ("queue.buffering.max.kbytes", "use `queue_max_bytes`"),
    (
        "message.timeout.ms",
        "records are kept until delivered (a timeout would lose order); use `delivery_wait_secs` for the exit",
    ),
    ("delivery.timeout.ms", "as `message.timeout.ms`"),
    ("transactional.id", "transactions are not used"),
];

/// Configuration of the publishing stage (TOML section `[publish]` of the sensor).
///
/// Units are in the key names; [`PublishConfig::validate`] reports every problem at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Kafka bootstrap brokers, `host:port,...`; empty: no Kafka sink.
    pub brokers: String,
    /// Topic names.
    pub topics: TopicNames,
    /// Publish every call to the calls topic (high volume; off by default).
    pub calls_enabled: bool,
    /// Format of the Kafka records.
    pub kafka_format: Format,
    /// Format of the JSON Lines outputs (`--findings`).
    pub jsonl_format: Format,
    /// Records held in memory while the broker is slow or away; beyond, they go to the
    /// spool (librdkafka `queue.buffering.max.messages`).
    pub queue_max_records: u64,
    /// Bytes held in memory likewise (librdkafka `queue.buffering.max.kbytes`, rounded up to
    /// whole KiB).
    pub queue_max_bytes: u64,
    /// Bytes of spool files on disk (under the state directory); when reached, new records are
    /// dropped and counted (`spool_full`, `dropped`). 0: no spool.
    pub spool_max_bytes: u64,
    /// Size at which a spool segment file is closed and a new one started; a segment is
    /// deleted once every record in it was acknowledged.
    pub spool_segment_bytes: u64,
    /// At exit, how long to wait for the broker to acknowledge what is still queued; what is
    /// left then stays in the spool for the next run and is reported as undelivered.
    pub delivery_wait_secs: u64,
    /// When the producer holds records, has had no delivery report for twice this long and
    /// the broker answered at the end of each period, the producer is replaced (its records are sent again through the new
    /// one, in order): librdkafka can get stuck, e.g. on a broker that lost its producer state.
    pub stall_restart_secs: u64,
    /// Any other librdkafka producer property (TLS, SASL, compression, linger, ...), e.g.
    /// `"security.protocol" = "SASL_SSL"`.
    pub kafka_properties: BTreeMap<String, String>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            brokers: String::new(),
            topics: TopicNames::default(),
            calls_enabled: false,
            kafka_format: Format::Native,
            jsonl_format: Format::Native,
            queue_max_records: 100_000,
            queue_max_bytes: 64 << 20,
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 16 << 20,
            delivery_wait_secs: 30,
            stall_restart_secs: 30,
            kafka_properties: BTreeMap::new(),
        }
    }
}

/// librdkafka's limits for the queue properties.
const MAX_QUEUE_RECORDS: u64 = 2_147_483_647;
const MAX_QUEUE_KBYTES: u64 = 2_147_483_647;

impl PublishConfig {
    /// The brokers as a list (trimmed, empty entries removed).
    pub fn broker_list(&self) -> Vec<&str> {
        self.brokers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Whether records of `topic` go to Kafka (calls only when enabled).
    pub fn kafka_topic_enabled(&self, topic: Topic) -> bool {
        topic != Topic::Calls || self.calls_enabled
    }

    /// Every problem of this configuration, each naming its key; empty when it is valid.
    ///
    /// Besides the bounds, this asks librdkafka to check `kafka_properties` (names and
    /// values) without connecting anywhere.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for b in self.broker_list() {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                errors.push(format!("brokers: `{b}` is not host:port"));
            }
        }
        if !self.brokers.trim().is_empty() && self.broker_list().is_empty() {
            errors.push("brokers: no broker in the list".to_owned());
        }
        let mut seen: Vec<&str> = Vec::new();
        for t in Topic::ALL {
            let name = self.topics.get(t);
            if let Some(why) = topic_name_problem(name) {
                errors.push(format!("topics.{}: `{name}` {why}", t.as_str()));
            }
            if seen.contains(&name) {
                errors.push(format!(
                    "topics.{}: `{name}` is also used by another topic",
                    t.as_str()
                ));
            }
            seen.push(name);
        }
        if !(1..=MAX_QUEUE_RECORDS).contains(&self.queue_max_records) {
            errors.push(format!(
                "queue_max_records: must be between 1 and {MAX_QUEUE_RECORDS}"
            ));
        }
        if !(1024..=MAX_QUEUE_KBYTES * 1024).contains(&self.queue_max_bytes) {
            errors.push(format!(
                "queue_max_bytes: must be between 1024 and {}",
                MAX_QUEUE_KBYTES * 1024
            ));
        }
        if self.spool_max_bytes != 0 {
            if self.spool_segment_bytes < 4096 {
                errors.push("spool_segment_bytes: must be at least 4096".to_owned());
            }
            if self.spool_segment_bytes > self.spool_max_bytes {
                errors.push("spool_segment_bytes: must not exceed spool_max_bytes".to_owned());
            }
        }
        if self.stall_restart_secs < 1 {
            errors.push("stall_restart_secs: must be at least 1".to_owned());
        }
        if self.delivery_wait_secs > 86_400 {
            errors.push("delivery_wait_secs: must be at most 86400".to_owned());
        }
        let mut props_ok = true;
        for key in self.kafka_properties.keys() {
            if let Some((_, why)) = RESERVED_KAFKA_PROPERTIES.iter().find(|(k, _)| k == key) {
                errors.push(format!(
                    "kafka_properties.\"{key}\": set by apiscope ({why})"
                ));
                props_ok = false;
            }
        }
        if props_ok && !self.kafka_properties.is_empty() {
            let mut cc = rdkafka::ClientConfig::new();
            for (k, v) in &self.kafka_properties {
                cc.set(k, v);
            }
            if let Err(e) = cc.create_native_config() {
                errors.push(format!("kafka_properties: {e}"));
            }
        }
        errors
    }
}

/// Why `name` is not a legal Kafka topic name, if it is not.
fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not allowed")
    } else if name.len() > 249 {
        Some("is longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some("may only contain ASCII letters, digits, `.`, `_` and `-`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PublishConfig::default().validate(), Vec::<String>::new());
    }

    #[test]
    fn every_error_is_reported() {
        let cfg: PublishConfig = serde_json::from_value(serde_json::json!({
            "brokers": "localhost,127.0.0.1:9092",
            "topics": {"findings": "bad topic", "calls": "apiscope.calls", "inventory": "apiscope.calls"},
            "queue_max_records": 0,
            "queue_max_bytes": 10,
            "spool_segment_bytes": 100,
            "kafka_properties": {"acks": "1", "linger.ms": "5"}
        }))
        .unwrap();
        let errors = cfg.validate();
        let joined = errors.join("\n");
        for key in [
            "brokers: `localhost`",
            "topics.findings",
            "topics.inventory",
            "queue_max_records",
            "queue_max_bytes",
            "spool_segment_bytes",
            "kafka_properties.\"acks\"",
        ] {
            assert!(joined.contains(key), "{key} missing from:\n{joined}");
        }
        assert_eq!(errors.len(), 7, "{joined}");
    }

    #[test]
    fn librdkafka_checks_unknown_properties() {
        let mut cfg = PublishConfig::default();
        cfg.kafka_properties
            .insert("no.such.property".to_owned(), "1".to_owned());
        let errors = cfg.validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("no.such.property"), "{errors:?}");
        let mut cfg = PublishConfig::default();
        cfg.kafka_properties
            .insert("security.protocol".to_owned(), "SASL_SSL".to_owned());
        cfg.kafka_properties
            .insert("sasl.mechanisms".to_owned(), "SCRAM-SHA-512".to_owned());
        assert_eq!(cfg.validate(), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<PublishConfig, _> =
            serde_json::from_value(serde_json::json!({"brokerz": "x:1"}));
        assert!(r.is_err());
        let r: Result<PublishConfig, _> =
            serde_json::from_value(serde_json::json!({"kafka_format": "xml"}));
        assert!(r.is_err());
        let c: PublishConfig =
            serde_json::from_value(serde_json::json!({"kafka_format": "ocsf"})).unwrap();
        assert_eq!(c.kafka_format, Format::Ocsf);
    }
}
