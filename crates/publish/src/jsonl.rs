//! [`JsonLinesSink`]: one JSON object per line to a file or stdout.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::{
    CounterSnapshot, Counters, Format, PublishError, Sink, SinkReport, Topic, TopicCounter,
};

/// Writes records as JSON Lines (buffered; flushed by [`Sink::flush`] and at close).
///
/// A write error is returned by [`Sink::send`] and counts the record as failed; the sensor
/// treats it as fatal for that output.
pub struct JsonLinesSink {
    name: String,
    path: PathBuf,
    out: BufWriter<Box<dyn Write + Send>>,
    format: Format,
    topics: [bool; 3],
    counters: Arc<Counters>,
    last_error: Option<String>,
}

impl fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("format", &self.format)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// A sink writing the records of `topics` to `path` (created or truncated); `-` is
    /// stdout.
    ///
    /// Errors: [`PublishError::Output`] when the file cannot be created.
    pub fn create(path: &Path, format: Format, topics: &[Topic]) -> Result<Self, PublishError> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(path).map_err(|source| PublishError::Output {
                path: path.to_owned(),
                source,
            })?)
        };
        let name = format!("jsonl:{}", path.display());
        Ok(Self::from_writer(&name, path, out, format, topics))
    }

    /// A sink writing to any writer (tests, pipes); `path` only names it in errors.
    pub fn from_writer(
        name: &str,
        path: &Path,
        out: Box<dyn Write + Send>,
        format: Format,
        topics: &[Topic],
    ) -> Self {
        let mut accepted = [false; 3];
        for t in topics {
            accepted[t.index()] = true;
        }
        JsonLinesSink {
            name: name.to_owned(),
            path: path.to_owned(),
            out: BufWriter::with_capacity(64 << 10, out),
            format,
            topics: accepted,
            counters: Arc::new(Counters::default()),
            last_error: None,
        }
    }

    fn io_error(&mut self, source: io::Error) -> PublishError {
        self.last_error = Some(source.to_string());
        PublishError::Output {
            path: self.path.clone(),
            source,
        }
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn format(&self) -> Format {
        self.format
    }

    fn accepts(&self, topic: Topic) -> bool {
        self.topics[topic.index()]
    }

    fn send(&mut self, topic: Topic, _key: &str, value: &[u8]) -> Result<(), PublishError> {
        let r = self
            .out
            .write_all(value)
            .and_then(|()| self.out.write_all(b"\n"));
        match r {
            Ok(()) => {
                self.counters.bump(topic, TopicCounter::Queued);
                self.counters.bump(topic, TopicCounter::Delivered);
                Ok(())
            }
            Err(e) => {
                self.counters.bump(topic, TopicCounter::Failed);
                Err(self.io_error(e))
            }
        }
    }

    fn flush(&mut self, _deadline: Instant) -> Result<u64, PublishError> {
        match self.out.flush() {
            Ok(()) => Ok(0),
            Err(e) => Err(self.io_error(e)),
        }
    }

    fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    fn pending(&self) -> u64 {
        0
    }

    fn close(mut self: Box<Self>, deadline: Instant) -> SinkReport {
        let _ = self.flush(deadline);
        SinkReport {
            name: self.name.clone(),
            counters: self.counters.snapshot(),
            left_in_spool: 0,
            lost: 0,
            last_error: self.last_error.take(),
        }
    }
}
