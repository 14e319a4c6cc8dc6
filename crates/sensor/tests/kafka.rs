//! `replay --kafka` against a real Kafka-protocol broker (tansu, started here; the test skips
//! when `APISCOPE_TANSU` is unset, and `make test` sets it): findings and inventory changes
//! arrive keyed as the contract says, and nothing is lost when the broker is away.

#[path = "../../publish/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn replay(extra: &[&str]) -> Output {
    let mut args = vec![
        "replay",
        "--threads",
        "2",
        "--spec",
        "fixtures/demo/demo_openapi.yaml",
    ];
    args.extend_from_slice(extra);
    args.push("fixtures/demo/demo.pcap");
    Command::new(env!("CARGO_BIN_EXE_apiscope"))
        .args(&args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// The latest value per key of a topic.
fn latest(bootstrap: &str, topic: &str, want: usize) -> BTreeMap<String, serde_json::Value> {
    common::consume(bootstrap, topic, want, Duration::from_secs(8))
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_slice(&v).unwrap()))
        .collect()
}

#[test]
fn findings_and_inventory_reach_kafka_keyed_by_id() {
    let tansu = need_tansu!();
    let broker = common::Broker::start(&tansu);
    let dir = common::TempDir::new("sensor-kafka");
    let findings = dir.path().join("findings.jsonl");
    let out = replay(&[
        "--kafka",
        &broker.bootstrap(),
        "--findings",
        findings.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: BTreeSet<String> = std::fs::read_to_string(&findings)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(want.len() >= 5, "{want:?}");
    // Updates share their finding's id; the last one per id is the final state.
    let got = latest(&broker.bootstrap(), "apiscope.findings", usize::MAX);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want);
    for (id, f) in &got {
        assert_eq!(f["id"].as_str(), Some(id.as_str()));
    }
    let inventory = latest(&broker.bootstrap(), "apiscope.inventory", usize::MAX);
    assert_eq!(inventory.len(), 8, "{:?}", inventory.keys());
    assert!(inventory
        .values()
        .any(|e| e["path"] == "/api/v1/users/{userId}"));
}

#[test]
fn calls_reach_kafka_without_a_calls_file() {
    // `publish.calls_enabled` alone publishes every call; it once needed `--calls` too.
    let tansu = need_tansu!();
    let broker = common::Broker::start(&tansu);
    let dir = common::TempDir::new("sensor-kafka-calls");
    let cfg = dir.path().join("calls.toml");
    std::fs::write(&cfg, "[publish]\ncalls_enabled = true\n").unwrap();
    let out = replay(&[
        "--kafka",
        &broker.bootstrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = replay(&["--calls", "-"]);
    assert!(lines.status.success());
    let want: BTreeSet<String> = String::from_utf8(lines.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(want.len(), 122, "the demo holds 122 calls");
    let got = common::consume(
        &broker.bootstrap(),
        "apiscope.calls",
        want.len(),
        Duration::from_secs(8),
    );
    assert_eq!(got.len(), want.len());
    for (key, value) in &got {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        assert_eq!(v["endpoint"].as_str(), Some(key.as_str()));
    }
    let got: BTreeSet<String> = got
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn records_wait_in_the_spool_while_the_broker_is_away() {
    let tansu = need_tansu!();
    let port = common::free_port();
    let dir = common::TempDir::new("sensor-spool");
    let state = dir.path().join("state");
    let cfg = dir.path().join("apiscope.toml");
    std::fs::write(
        &cfg,
        "[publish]\ndelivery_wait_secs = 2\nstall_restart_secs = 1\n[publish.kafka_properties]\n\"reconnect.backoff.max.ms\" = \"200\"\n",
    )
    .unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    let args = [
        "--kafka",
        &bootstrap,
        "--state",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ];
    // No broker: replay says what it could not deliver and fails.
    let out = replay(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not every record reached Kafka"), "{err}");
    // The broker comes back: the next run delivers what the first one spooled.
    let broker = common::Broker::start_on(&tansu, port);
    let out = replay(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inventory = latest(&broker.bootstrap(), "apiscope.inventory", usize::MAX);
    assert_eq!(inventory.len(), 8, "{:?}", inventory.keys());
    let findings = latest(&broker.bootstrap(), "apiscope.findings", usize::MAX);
    assert!(findings.len() >= 5, "{:?}", findings.keys());
}
