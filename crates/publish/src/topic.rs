//! The three record streams and their default Kafka topic names.

use std::fmt;

/// Which stream a record belongs to. Each has a Kafka topic (names in
/// [`TopicNames`](crate::TopicNames)) and its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Findings (`apiscope.findings`), keyed by the finding id.
    Findings,
    /// HTTP calls (`apiscope.calls`), keyed by the endpoint; off on Kafka unless enabled.
    Calls,
    /// Inventory changes (`apiscope.inventory`): an endpoint added or changed, keyed by its id.
    Inventory,
}

impl Topic {
    /// Every topic, in the order of their indices.
    pub const ALL: [Topic; 3] = [Topic::Findings, Topic::Calls, Topic::Inventory];

    /// Short name used in counter names: `findings`, `calls`, `inventory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Findings => "findings",
            Topic::Calls => "calls",
            Topic::Inventory => "inventory",
        }
    }

    /// The default Kafka topic name (`apiscope.findings`, ...).
    pub fn default_name(self) -> &'static str {
        match self {
            Topic::Findings => "apiscope.findings",
            Topic::Calls => "apiscope.calls",
            Topic::Inventory => "apiscope.inventory",
        }
    }

    /// 0, 1, 2: the index into per-topic tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The topic of an index (spool frames store it as one byte); `None` past 2.
    pub fn from_index(i: u8) -> Option<Topic> {
        Topic::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
