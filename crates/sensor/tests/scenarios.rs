//! Detections end to end: every scenario capture in `fixtures/scenarios` replayed by the
//! binary with `--findings -`, the distinct findings per kind compared with `expected.tsv`
//! (positive and negative scenarios; `gen_scenarios.py` makes both).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_scenario_gives_exactly_its_findings() {
    let dir = repo().join("fixtures/scenarios");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut scenarios = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (capture, spec, want) = (cols[0], cols[1], cols[2]);
        let mut args = vec!["replay".to_owned(), "--threads".into(), "2".into()];
        args.extend(["--findings".into(), "-".into()]);
        if spec != "-" {
            args.extend(["--spec".into(), dir.join(spec).display().to_string()]);
        }
        args.push(dir.join(capture).display().to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_apiscope"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{capture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            let f: serde_json::Value = serde_json::from_str(l).unwrap();
            for key in [
                "id",
                "kind",
                "severity",
                "summary",
                "first_seen",
                "last_seen",
                "count",
            ] {
                assert!(!f[key].is_null(), "{capture}: finding without {key}: {f}");
            }
            got.entry(f["kind"].as_str().unwrap().to_owned())
                .or_default()
                .insert(f["id"].as_str().unwrap().to_owned());
        }
        let got: Vec<String> = got
            .iter()
            .map(|(k, ids)| format!("{k}={}", ids.len()))
            .collect();
        let got = if got.is_empty() {
            "none".to_owned()
        } else {
            got.join(",")
        };
        if got != want {
            failures.push(format!("{capture}: want {want}, got {got}"));
        }
        scenarios += 1;
    }
    assert!(scenarios >= 20, "only {scenarios} scenarios");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
