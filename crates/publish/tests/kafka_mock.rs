//! Fault injection with librdkafka's mock cluster (in-process, on loopback ports): a missing
//! topic, a broker that goes down and comes back.

mod common;

use std::time::{Duration, Instant};

use apiscope_publish::rdkafka::mocking::MockCluster;
use apiscope_publish::rdkafka::types::RDKafkaRespErr;
use apiscope_publish::{KafkaSink, PublishConfig, Publisher, Topic, TopicCounter};
use common::{consume, wait_until, TempDir};
use serde_json::json;

fn config(bootstrap: String) -> PublishConfig {
    let mut cfg = PublishConfig {
        brokers: bootstrap,
        ..PublishConfig::default()
    };
    for (k, v) in [
        ("reconnect.backoff.max.ms", "200"),
        // How long librdkafka waits for a topic it was told does not exist to appear.
        ("topic.metadata.propagation.max.ms", "200"),
        ("topic.metadata.refresh.interval.ms", "200"),
    ] {
        cfg.kafka_properties.insert(k.into(), v.into());
    }
    cfg
}

#[test]
fn a_missing_topic_fails_its_records_and_blocks_nothing() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apiscope.findings", 1, 1).unwrap();
    mock.topic_error(
        "apiscope.inventory",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    let dir = TempDir::new("missing");
    let cfg = config(mock.bootstrap_servers());
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    for i in 0..50 {
        p.publish(Topic::Inventory, "ep", &json!({"n": i})).unwrap();
        p.publish(Topic::Findings, "f", &json!({"n": i})).unwrap();
    }
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(30)).unwrap(),
        0
    );
    let report = p.close(Duration::from_secs(5));
    let c = report.sinks[0].counters;
    assert_eq!(
        c.get(Topic::Findings, TopicCounter::Delivered),
        50,
        "{report}"
    );
    assert_eq!(
        c.get(Topic::Inventory, TopicCounter::Failed),
        50,
        "{report}"
    );
    assert_eq!(report.undelivered(), 50);
    assert!(
        report.sinks[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("apiscope.inventory"),
        "{report}"
    );
    assert_eq!(
        consume(
            &mock.bootstrap_servers(),
            "apiscope.findings",
            50,
            Duration::from_secs(10)
        )
        .len(),
        50
    );
}

#[test]
fn a_broker_down_then_up_gets_everything() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apiscope.findings", 2, 1).unwrap();
    let dir = TempDir::new("down-up");
    let mut cfg = config(mock.bootstrap_servers());
    cfg.queue_max_records = 20;
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    p.publish(Topic::Findings, "f-0", &json!({"n": 0})).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        p.stats()[0]
            .counters
            .get(Topic::Findings, TopicCounter::Delivered)
            == 1
    }));
    mock.broker_down(1).unwrap();
    for i in 1..200 {
        p.publish(Topic::Findings, &format!("f-{}", i % 7), &json!({"n": i}))
            .unwrap();
    }
    let c = p.stats()[0].counters;
    assert!(
        c.get(Topic::Findings, TopicCounter::Spooled) >= 179,
        "{c:?}"
    );
    assert_eq!(
        p.flush(Instant::now() + Duration::from_millis(300))
            .unwrap(),
        199
    );
    mock.broker_up(1).unwrap();
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(30)).unwrap(),
        0
    );
    let report = p.close(Duration::from_secs(5));
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        report.sinks[0]
            .counters
            .get(Topic::Findings, TopicCounter::Delivered),
        200
    );
    let got = consume(
        &mock.bootstrap_servers(),
        "apiscope.findings",
        200,
        Duration::from_secs(10),
    );
    assert_eq!(got.len(), 200);
    // Per key (one partition each), the order is kept.
    for key in 0..7 {
        let key = format!("f-{key}");
        let ns: Vec<u64> = got
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| {
                serde_json::from_slice::<serde_json::Value>(v).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key}: {ns:?}");
    }
}

#[test]
fn without_a_spool_a_full_queue_drops_and_counts() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apiscope.findings", 1, 1).unwrap();
    mock.broker_down(1).unwrap();
    let mut cfg = config(mock.bootstrap_servers());
    cfg.queue_max_records = 10;
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, None).unwrap());
    for i in 0..30 {
        p.publish(Topic::Findings, "f", &json!({"n": i})).unwrap();
    }
    let c = p.stats()[0].counters;
    assert_eq!(c.get(Topic::Findings, TopicCounter::Queued), 10);
    assert_eq!(c.get(Topic::Findings, TopicCounter::Dropped), 20);
    assert_eq!(c.sink(apiscope_publish::SinkCounter::QueueFull), 20);
    let report = p.close(Duration::from_millis(100));
    assert_eq!(report.sinks[0].lost, 10, "{report}");
    assert_eq!(report.undelivered(), 30);
}
