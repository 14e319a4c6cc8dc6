//! Every real capture in `../shared/corpus` decodes without error, and every connection the
//! independent oracle (tshark) found an HTTP request on is reassembled with request bytes.
//! Skips cleanly when the corpus is absent.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;

use apiscope_capture::EngineConfig;

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("APISCOPE_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    dir.join("manifest.tsv").is_file().then_some(dir)
}

#[test]
fn corpus_decodes_and_reassembles_every_oracle_connection() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: ../shared/corpus not found (set APISCOPE_CORPUS)");
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut files = 0;
    for line in manifest.lines().skip(1) {
        let name = line.split('\t').next().unwrap();
        let path = dir.join("data").join(name);
        files += 1;
        let r = match common::replay(&path, EngineConfig::default()) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if let Some(e) = &r.error {
            // Only the capture documented as cut short may end in an error.
            if !line.contains("cut short") {
                failures.push(format!("{name}: {e}"));
            }
        }
        let c = &r.counters;
        for (what, n) in [
            ("link_unsupported", c.link_unsupported),
            ("link_malformed", c.link_malformed),
            ("tunnel_malformed", c.tunnel_malformed),
        ] {
            if n > 0 {
                failures.push(format!("{name}: {what} = {n}"));
            }
        }
        // Each connection the oracle saw a request on must be here, with request bytes.
        let oracle = std::fs::read_to_string(
            dir.join("data").join(
                name.replace(".pcapng", ".tshark.jsonl")
                    .replace(".pcap", ".tshark.jsonl"),
            ),
        )
        .unwrap_or_default();
        let mut wanted = HashSet::new();
        for l in oracle.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            wanted.insert((
                v["src"].as_str().unwrap().to_owned(),
                v["dst"].as_str().unwrap().to_owned(),
            ));
        }
        for (src, dst) in wanted {
            let found = r.conns.iter().any(|k| {
                let same =
                    (k.client == src && k.server == dst) || (k.client == dst && k.server == src);
                same && (k.bytes(0) > 0 || k.bytes(1) > 0)
            });
            if !found {
                failures.push(format!("{name}: no reassembled connection {src} -> {dst}"));
            }
        }
    }
    assert!(files > 100, "corpus manifest lists {files} files");
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
