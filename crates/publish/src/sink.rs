//! The [`Sink`] trait and what a sink reports at exit.

use std::fmt;
use std::time::Instant;

use crate::{CounterSnapshot, Format, PublishError, Topic, TopicCounter};

/// A destination for records. [`Publisher`](crate::Publisher) serialises each record once
/// per [`Format`] and hands the bytes to every sink that [`accepts`](Sink::accepts) its topic.
pub trait Sink: Send + fmt::Debug {
    /// A short name for counters and reports (`kafka`, `findings-file`, ...).
    fn name(&self) -> &str;

    /// The format of the bytes this sink wants.
    fn format(&self) -> Format;

    /// Whether records of `topic` go to this sink.
    fn accepts(&self, topic: Topic) -> bool;

    /// Takes one record (a JSON object, without newline). A record the destination refuses
    /// for good is counted as failed, not returned as an error.
    ///
    /// Errors: the sink itself is broken (a JSON Lines file cannot be written).
    fn send(&mut self, topic: Topic, key: &str, value: &[u8]) -> Result<(), PublishError>;

    /// Pushes buffered records out and waits, until `deadline` at most, for the destination to
    /// acknowledge them. Returns the number still waiting (0: everything was acknowledged or
    /// given up and counted).
    ///
    /// Errors: as [`Sink::send`].
    fn flush(&mut self, deadline: Instant) -> Result<u64, PublishError>;

    /// The counters so far.
    fn counters(&self) -> CounterSnapshot;

    /// Records accepted and not yet acknowledged (in memory and in the spool).
    fn pending(&self) -> u64;

    /// Flushes until `deadline`, then stops: what is still in memory goes to the spool (where
    /// there is one) for the next run, and the report says what was not delivered.
    fn close(self: Box<Self>, deadline: Instant) -> SinkReport;
}

/// What one sink delivered and what it could not, at exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// The sink's name.
    pub name: String,
    /// Its final counters.
    pub counters: CounterSnapshot,
    /// Records not acknowledged by the deadline, kept in the spool for the next run.
    pub left_in_spool: u64,
    /// Records not acknowledged by the deadline and not kept (no spool, or it was full).
    pub lost: u64,
    /// The last delivery or sink error seen, for the message the sensor prints.
    pub last_error: Option<String>,
}

impl SinkReport {
    /// Records not delivered: failed for good, dropped at a bound, left in the spool or lost.
    pub fn undelivered(&self) -> u64 {
        self.counters.total(TopicCounter::Failed)
            + self.counters.total(TopicCounter::Dropped)
            + self.left_in_spool
            + self.lost
    }
}

/// The reports of every sink of a [`Publisher`](crate::Publisher).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// One per sink, in the order they were added.
    pub sinks: Vec<SinkReport>,
}

impl DeliveryReport {
    /// Records not delivered over all sinks; the sensor exits non-zero when this is not 0.
    pub fn undelivered(&self) -> u64 {
        self.sinks.iter().map(SinkReport::undelivered).sum()
    }

    /// Whether every record was delivered.
    pub fn is_complete(&self) -> bool {
        self.undelivered() == 0
    }
}

impl fmt::Display for DeliveryReport {
    /// One line per sink: `kafka: 1200 delivered, 3 failed, 0 dropped, 17 left in spool, 0 lost
    /// (last error: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.sinks.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: {} delivered, {} failed, {} dropped, {} left in spool, {} lost",
                s.name,
                s.counters.total(TopicCounter::Delivered),
                s.counters.total(TopicCounter::Failed),
                s.counters.total(TopicCounter::Dropped),
                s.left_in_spool,
                s.lost
            )?;
            if let Some(e) = &s.last_error {
                write!(f, " (last error: {e})")?;
            }
        }
        Ok(())
    }
}
