//! Conformance on real captures: every capture in `../shared/corpus` replayed through
//! `apiscope replay --calls -`, its calls compared with the independent oracle (tshark)
//! as multisets of (method, target), and the statuses of matched calls checked.
//!
//! Where we decided the oracle is wrong, `conformance_expectations.tsv` says so per file,
//! with the reason: the number of calls we must produce instead. Skips cleanly when the
//! corpus is absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("APISCOPE_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    dir.join("manifest.tsv").is_file().then_some(dir)
}

/// file -> (expected number of calls, reason), from the expectations file.
fn overrides() -> HashMap<String, (usize, String)> {
    let text = include_str!("conformance_expectations.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let name = f.next().unwrap().to_owned();
            let n = f.next().unwrap().parse().unwrap();
            (name, (n, f.next().unwrap_or("").to_owned()))
        })
        .collect()
}

fn replay(path: &Path) -> (Vec<Value>, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_apiscope"))
        .args(["replay", "--threads", "1", "--calls", "-"])
        .arg(path)
        .output()
        .unwrap();
    let calls = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (calls, out.status.success())
}

#[test]
fn corpus_calls_match_the_oracle() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: ../shared/corpus not found (set APISCOPE_CORPUS)");
        return;
    };
    let overrides = overrides();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let (mut oracle_total, mut matched_total, mut status_ok, mut status_checked) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for line in manifest.lines().skip(1) {
        let name = line.split('\t').next().unwrap();
        let path = dir.join("data").join(name);
        let (calls, ok) = replay(&path);
        if !ok {
            problems.push(format!("{name}: replay failed"));
            continue;
        }
        let stem = name.trim_end_matches(".pcapng").trim_end_matches(".pcap");
        let oracle: Vec<Value> =
            std::fs::read_to_string(dir.join("data").join(format!("{stem}.tshark.jsonl")))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        if let Some((n, why)) = overrides.get(name) {
            // We decided the oracle is wrong here: hold ourselves to our own number.
            if calls.len() != *n {
                problems.push(format!(
                    "{name}: {} calls, expected {n} ({why})",
                    calls.len()
                ));
            }
            continue;
        }
        // Multiset of (method, target) on our side.
        let mut ours: HashMap<(String, String), Vec<Option<i64>>> = HashMap::new();
        for c in &calls {
            ours.entry((
                c["method"].as_str().unwrap().into(),
                c["target"].as_str().unwrap().into(),
            ))
            .or_default()
            .push(c["status"].as_i64());
        }
        let mut matched = 0;
        for o in &oracle {
            oracle_total += 1;
            let k = (
                o["method"].as_str().unwrap_or("").to_owned(),
                o["uri"].as_str().unwrap_or("").to_owned(),
            );
            if let Some(v) = ours.get_mut(&k) {
                if let Some(pos) = v
                    .iter()
                    .position(|s| s.is_some() && *s == o["status"].as_i64())
                    .or(if v.is_empty() { None } else { Some(0) })
                {
                    let s = v.remove(pos);
                    matched += 1;
                    if let Some(want) = o["status"].as_i64() {
                        status_checked += 1;
                        if s == Some(want) {
                            status_ok += 1;
                        } else {
                            // Measured by the status rate asserted below, and shown.
                            eprintln!("  {name}: {} {}: status {s:?}, oracle {want}", k.0, k.1);
                        }
                    }
                }
            }
        }
        matched_total += matched;
        if matched < oracle.len() {
            problems.push(format!(
                "{name}: matched {matched} of the oracle's {} requests",
                oracle.len()
            ));
        }
        let extra = calls.len() - matched;
        if extra > 0 {
            problems.push(format!("{name}: {extra} calls the oracle does not have (add an expectation with the reason if right)"));
        }
    }
    let recall = matched_total as f64 / oracle_total.max(1) as f64;
    let statuses = status_ok as f64 / status_checked.max(1) as f64;
    eprintln!("conformance: recall {recall:.4} ({matched_total}/{oracle_total}), statuses {statuses:.4} ({status_ok}/{status_checked})");
    for p in &problems {
        eprintln!("  {p}");
    }
    assert!(recall >= 0.99, "recall {recall:.4} below 0.99");
    assert!(statuses >= 0.99, "statuses {statuses:.4} below 0.99");
    assert!(
        problems.is_empty(),
        "{} problems (see above)",
        problems.len()
    );
}
