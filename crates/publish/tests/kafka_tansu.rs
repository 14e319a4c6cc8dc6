//! Delivery to a real Kafka-protocol broker (tansu, started here; `APISCOPE_TANSU` names the
//! binary, else these tests say they skip).

mod common;

use std::time::{Duration, Instant};

use apiscope_publish::{KafkaSink, PublishConfig, Publisher, Topic, TopicCounter};
use common::{consume, Broker, TempDir};
use serde_json::json;

fn config(bootstrap: &str) -> PublishConfig {
    let mut cfg = PublishConfig {
        brokers: bootstrap.to_owned(),
        calls_enabled: true,
        ..PublishConfig::default()
    };
    cfg.kafka_properties
        .insert("reconnect.backoff.max.ms".into(), "200".into());
    cfg
}

fn finding(i: usize) -> serde_json::Value {
    json!({
        "id": format!("f-{i}"), "kind": "shadow_api", "severity": "high", "owasp": "API9:2023",
        "endpoint": {"host": "api.example.com", "method": "GET", "path": "/v1/items/{id}"},
        "client": "10.0.0.1", "first_seen": "2024-05-01T12:00:00.000000Z",
        "last_seen": "2024-05-01T12:00:01.000000Z", "count": i + 1,
        "summary": format!("finding {i}"), "evidence": {"n": i},
    })
}

#[test]
fn everything_is_delivered() {
    let bin = need_tansu!();
    let broker = Broker::start(&bin);
    let dir = TempDir::new("all");
    let cfg = config(&broker.bootstrap());
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    let n = 2000;
    let t0 = Instant::now();
    for i in 0..n {
        p.publish(Topic::Findings, &format!("f-{i}"), &finding(i))
            .unwrap();
    }
    let waiting = p.flush(Instant::now() + Duration::from_secs(30)).unwrap();
    eprintln!("{n} findings acknowledged in {:?}", t0.elapsed());
    assert_eq!(waiting, 0);
    let report = p.close(Duration::from_secs(5));
    assert!(report.is_complete(), "{report}");
    let c = report.sinks[0].counters;
    assert_eq!(c.get(Topic::Findings, TopicCounter::Delivered), n as u64);
    let got = consume(
        &broker.bootstrap(),
        "apiscope.findings",
        n,
        Duration::from_secs(30),
    );
    assert_eq!(got.len(), n);
}

fn value_of(i: usize) -> serde_json::Value {
    json!({"n": i, "pad": "x".repeat(100)})
}

fn numbers(records: &[(String, Vec<u8>)]) -> Vec<usize> {
    records
        .iter()
        .map(|(_, v)| {
            let v: serde_json::Value = serde_json::from_slice(v).unwrap();
            v["n"].as_u64().unwrap() as usize
        })
        .collect()
}

#[test]
fn a_broker_started_late_gets_everything_in_order() {
    let bin = need_tansu!();
    let port = common::free_port();
    let dir = TempDir::new("late");
    let mut cfg = config(&format!("127.0.0.1:{port}"));
    cfg.queue_max_records = 50;
    cfg.kafka_properties
        .insert("message.max.bytes".into(), "20000".into());
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    let n = 1000;
    for i in 0..n {
        // One key: one partition, so the order can be checked.
        p.publish(Topic::Inventory, "ep-1", &value_of(i)).unwrap();
        if i == 500 {
            // Too large for message.max.bytes: it waits in the spool, then fails for good.
            let big = json!({"n": 99_999, "pad": "y".repeat(30_000)});
            p.publish(Topic::Inventory, "ep-1", &big).unwrap();
        }
    }
    let c = p.stats()[0].counters;
    assert_eq!(c.get(Topic::Inventory, TopicCounter::Queued), 50);
    assert_eq!(
        c.get(Topic::Inventory, TopicCounter::Spooled),
        n as u64 + 1 - 50
    );
    assert_eq!(c.get(Topic::Inventory, TopicCounter::Delivered), 0);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 0,
        "segment files exist"
    );

    let broker = Broker::start_on(&bin, port);
    let waiting = p.flush(Instant::now() + Duration::from_secs(60)).unwrap();
    assert_eq!(waiting, 0);
    let report = p.close(Duration::from_secs(5));
    let c = report.sinks[0].counters;
    assert_eq!(c.get(Topic::Inventory, TopicCounter::Delivered), n as u64);
    assert_eq!(c.get(Topic::Inventory, TopicCounter::Failed), 1);
    assert_eq!(report.undelivered(), 1, "{report}");
    assert!(
        report.sinks[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("too large"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the spool is empty again"
    );
    let got = consume(
        &broker.bootstrap(),
        "apiscope.inventory",
        n,
        Duration::from_secs(30),
    );
    assert_eq!(
        numbers(&got),
        (0..n).collect::<Vec<_>>(),
        "every record, in order"
    );
    assert!(got.iter().all(|(k, _)| k == "ep-1"));
}

#[test]
fn an_oversized_record_fails_alone() {
    let bin = need_tansu!();
    let broker = Broker::start(&bin);
    let mut cfg = config(&broker.bootstrap());
    cfg.kafka_properties
        .insert("message.max.bytes".into(), "20000".into());
    let dir = TempDir::new("big");
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    for i in 0..20 {
        p.publish(Topic::Findings, &format!("f-{i}"), &value_of(i))
            .unwrap();
        if i == 10 {
            let big = json!({"n": 99_999, "pad": "y".repeat(30_000)});
            p.publish(Topic::Findings, "big", &big).unwrap();
        }
    }
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(30)).unwrap(),
        0
    );
    let report = p.close(Duration::from_secs(5));
    let c = report.sinks[0].counters;
    assert_eq!(c.get(Topic::Findings, TopicCounter::Delivered), 20);
    assert_eq!(c.get(Topic::Findings, TopicCounter::Failed), 1);
    assert!(!report.is_complete());
    let got = consume(
        &broker.bootstrap(),
        "apiscope.findings",
        20,
        Duration::from_secs(30),
    );
    let mut ns = numbers(&got);
    ns.sort_unstable();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing_unacknowledged() {
    let bin = need_tansu!();
    let mut broker = Broker::start(&bin);
    let dir = TempDir::new("restart");
    let mut cfg = config(&broker.bootstrap());
    cfg.queue_max_records = 200;
    // The memory-only broker forgets producer ids on restart: librdkafka then retries
    // forever (UNKNOWN_PRODUCER_ID) until the stall watchdog replaces the producer.
    cfg.stall_restart_secs = 2;
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    let delivered = |p: &Publisher| {
        p.stats()[0]
            .counters
            .get(Topic::Calls, TopicCounter::Delivered)
    };

    // A: acknowledged before the broker goes away.
    for i in 0..300 {
        p.publish(Topic::Calls, "ep-1", &value_of(i)).unwrap();
    }
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(30)).unwrap(),
        0
    );
    assert_eq!(delivered(&p), 300);

    // B: published, then the broker is killed while they may still be in flight.
    for i in 300..600 {
        p.publish(Topic::Calls, "ep-1", &value_of(i)).unwrap();
    }
    broker.kill();
    let acked_before_kill = delivered(&p);
    // C: published while the broker is down (memory, then spool).
    for i in 600..1500 {
        p.publish(Topic::Calls, "ep-1", &value_of(i)).unwrap();
    }
    assert!(
        p.stats()[0]
            .counters
            .get(Topic::Calls, TopicCounter::Spooled)
            > 0
    );
    broker.restart();
    let waiting = p.flush(Instant::now() + Duration::from_secs(60)).unwrap();
    let report = p.close(Duration::from_secs(5));
    assert_eq!(
        waiting,
        0,
        "{report} {:?}",
        report.sinks[0].counters.named()
    );
    assert!(report.is_complete(), "{report}");
    let c = report.sinks[0].counters;
    assert!(c.get(Topic::Calls, TopicCounter::Delivered) >= 1500);
    // The restarted broker lost its memory: it holds what was sent again (B not acknowledged
    // before the kill) and everything since (C).
    let got = consume(
        &broker.bootstrap(),
        "apiscope.calls",
        2000,
        Duration::from_secs(10),
    );
    let got = numbers(&got);
    let unacked_b = (acked_before_kill as usize).max(300)..600;
    for i in unacked_b.chain(600..1500) {
        assert!(
            got.contains(&i),
            "record {i} missing after the restart ({} acknowledged before the kill)",
            acked_before_kill
        );
    }
    // C arrived in order.
    let c_order: Vec<usize> = got.iter().copied().filter(|&i| i >= 600).collect();
    let mut dedup = c_order.clone();
    dedup.dedup();
    assert!(dedup.windows(2).all(|w| w[0] < w[1]), "in order");
    eprintln!(
        "restart: {} acknowledged before the kill, {} records on the new broker, {} producer restarts",
        acked_before_kill,
        got.len(),
        c.sink(apiscope_publish::SinkCounter::ProducerRestarts)
    );
}

#[test]
fn what_is_left_at_exit_is_delivered_by_the_next_run() {
    let bin = need_tansu!();
    let port = common::free_port();
    let dir = TempDir::new("next-run");
    let mut cfg = config(&format!("127.0.0.1:{port}"));
    cfg.queue_max_records = 100;
    {
        let mut p = Publisher::new();
        p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
        for i in 0..500 {
            p.publish(Topic::Findings, "f", &value_of(i)).unwrap();
        }
        let t0 = Instant::now();
        let report = p.close(Duration::from_millis(300));
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "close keeps to its deadline"
        );
        assert_eq!(report.sinks[0].left_in_spool, 500, "{report}");
        assert_eq!(report.sinks[0].lost, 0);
        assert_eq!(report.undelivered(), 500);
    }
    let broker = Broker::start_on(&bin, port);
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    assert_eq!(
        p.stats()[0]
            .counters
            .sink(apiscope_publish::SinkCounter::SpoolRecovered),
        500
    );
    p.publish(Topic::Findings, "f", &value_of(500)).unwrap();
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(60)).unwrap(),
        0
    );
    let report = p.close(Duration::from_secs(5));
    assert!(report.is_complete(), "{report}");
    let got = consume(
        &broker.bootstrap(),
        "apiscope.findings",
        501,
        Duration::from_secs(30),
    );
    let ns = numbers(&got);
    // The records that were in memory at exit went to the spool after those already there;
    // each exactly once.
    let mut sorted = ns.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..501).collect::<Vec<_>>());
    assert_eq!(
        ns.last(),
        Some(&500),
        "the new record comes after the recovered ones"
    );
}

/// Throughput to the local broker, printed (`cargo test --release -- --nocapture throughput`).
#[test]
fn throughput() {
    let bin = need_tansu!();
    let broker = Broker::start(&bin);
    let dir = TempDir::new("tput");
    let mut cfg = config(&broker.bootstrap());
    cfg.calls_enabled = true;
    let mut p = Publisher::new();
    p.add_sink(KafkaSink::new(&cfg, Some(dir.path())).unwrap());
    let call = json!({
        "ts": "2024-05-01T12:00:00.123456Z", "src": "10.0.0.7:51000", "dst": "10.0.0.1:80",
        "method": "GET", "host": "api.example.com", "target": "/users/42", "path": "/users/42",
        "status": 200, "req_body_bytes": 0, "resp_body_bytes": 120,
        "endpoint": "GET api.example.com /users/{id}",
    });
    let bytes = serde_json::to_vec(&call).unwrap();
    let n = 50_000;
    let t0 = Instant::now();
    for i in 0..n {
        p.publish_json(Topic::Calls, if i % 2 == 0 { "a" } else { "b" }, &bytes)
            .unwrap();
    }
    let queued = t0.elapsed();
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(120)).unwrap(),
        0
    );
    let total = t0.elapsed();
    let report = p.close(Duration::from_secs(5));
    assert!(report.is_complete(), "{report}");
    eprintln!(
        "throughput: {n} calls of {} B: publish {:.0}/s, acknowledged {:.0}/s ({} spooled)",
        bytes.len(),
        n as f64 / queued.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        report.sinks[0]
            .counters
            .get(Topic::Calls, TopicCounter::Spooled)
    );
}
