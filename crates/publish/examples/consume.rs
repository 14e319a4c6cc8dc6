//! A tiny consumer for `make demo-kafka`: prints every record of a topic, one per line,
//! from the beginning, and stops when nothing new came for `--idle-ms` (or at `--timeout-secs`).
//!
//! ```sh
//! cargo run --release -p apiscope-publish --example consume -- --brokers 127.0.0.1:9092 \
//!     --topic apiscope.findings [--idle-ms 2000] [--timeout-secs 30]
//! ```

use std::time::{Duration, Instant};

use apiscope_publish::rdkafka::consumer::{BaseConsumer, Consumer};
use apiscope_publish::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut brokers = String::from("127.0.0.1:9092");
    let mut topic = String::from("apiscope.findings");
    let mut idle = Duration::from_millis(2000);
    let mut timeout = Duration::from_secs(30);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--brokers" => brokers = value()?,
            "--topic" => topic = value()?,
            "--idle-ms" => idle = Duration::from_millis(value()?.parse()?),
            "--timeout-secs" => timeout = Duration::from_secs(value()?.parse()?),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "apiscope-demo-consume")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let deadline = Instant::now() + timeout;
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        eprintln!("consume: topic {topic} has no records");
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut last = Instant::now();
    let mut n = 0;
    while Instant::now() < deadline && last.elapsed() < idle {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            println!("{}", String::from_utf8_lossy(m.payload().unwrap_or(&[])));
            n += 1;
            last = Instant::now();
        }
    }
    eprintln!("consume: {n} records from {topic}");
    Ok(())
}
