//! Errors of this crate.

use std::io;
use std::path::PathBuf;

/// Why a publisher or one of its sinks could not be built or could not take a record.
///
/// Delivery failures of single records are not errors: they are counted
/// ([`TopicCounter::Failed`](crate::TopicCounter::Failed)) and reported at exit.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The configuration has problems; each string names its key.
    #[error("invalid publish configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// A JSON Lines output could not be opened or written.
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The spool directory could not be created or its files not opened.
    #[error("spool {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// librdkafka refused the producer configuration (an unknown property or a bad value).
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A pre-serialised record is not JSON, and a sink needs it parsed (OCSF).
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}
