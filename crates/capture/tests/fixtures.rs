//! Every capture fixture in `fixtures/capture/` (made by `fixtures/gen_capture_fixtures.py`)
//! replayed with its configuration: exact reassembled bytes, gap positions and lengths,
//! endpoints, tunnel ids, close reasons and the counters each case names.

mod common;

use std::path::PathBuf;

use apiscope_capture::{EngineConfig, OverlapPolicy, SourceError};
use common::Piece;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/capture")
}

fn config(overrides: &Value) -> EngineConfig {
    let mut c = EngineConfig::default();
    let Some(map) = overrides.as_object() else {
        return c;
    };
    for (k, v) in map {
        let n = || {
            v.as_u64()
                .unwrap_or_else(|| panic!("{k}: expected a number"))
        };
        match k.as_str() {
            "capture.vxlan_ports" => {
                c.decode.vxlan_ports = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap() as u16)
                    .collect()
            }
            "capture.max_tunnel_depth" => c.decode.max_tunnel_depth = n() as u8,
            "capture.track_vlan" => c.decode.track_vlan = v.as_bool().unwrap(),
            "flow.max_flows" => c.flow.max_flows = n() as usize,
            "flow.idle_timeout_secs" => c.flow.idle_timeout_secs = n(),
            "flow.lifetime_timeout_secs" => c.flow.lifetime_timeout_secs = n(),
            "reassembly.overlap_policy" => {
                c.reassembly.overlap_policy = OverlapPolicy::parse(v.as_str().unwrap()).unwrap()
            }
            "reassembly.max_ooo_bytes_per_flow" => {
                c.reassembly.max_ooo_bytes_per_flow = n() as usize
            }
            "frag.timeout_secs" => c.frag.timeout_secs = n(),
            "frag.max_datagrams" => c.frag.max_datagrams = n() as usize,
            other => panic!("unknown config override {other}"),
        }
    }
    c
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Expected pieces, adjacent data merged as the recorder merges them.
fn expected(events: &Value) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for e in events.as_array().unwrap() {
        let piece = if let Some(t) = e.get("text") {
            Piece::Data(t.as_str().unwrap().as_bytes().to_vec())
        } else if let Some(h) = e.get("hex") {
            Piece::Data(hex(h.as_str().unwrap()))
        } else {
            Piece::Gap(e["gap"].as_u64().unwrap())
        };
        match (out.last_mut(), piece) {
            (Some(Piece::Data(d)), Piece::Data(more)) => d.extend_from_slice(&more),
            (_, p) => out.push(p),
        }
    }
    out.retain(|p| !matches!(p, Piece::Data(d) if d.is_empty()));
    out
}

fn show(p: &[Piece]) -> String {
    p.iter()
        .map(|p| match p {
            Piece::Data(d) => format!(
                "data({}) {:?}",
                d.len(),
                String::from_utf8_lossy(&d[..d.len().min(60)])
            ),
            Piece::Gap(n) => format!("gap({n})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(name: &str, spec: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let capture = spec["capture"].as_str().unwrap();
    let path = fixtures_dir().join(capture);
    let cfg = config(&spec["config"]);
    let want_error = spec["error"].as_str();
    let r = match common::replay(&path, cfg) {
        Ok(r) => r,
        Err(e) => {
            if want_error == Some("not_a_capture") && matches!(e, SourceError::NotACapture { .. }) {
                return errs;
            }
            return vec![format!("{name}: open failed: {e}")];
        }
    };
    match (want_error, &r.error) {
        (None, None) => {}
        (Some("truncated"), Some(SourceError::Truncated { .. })) => {}
        (w, got) => errs.push(format!("{name}: error expected {w:?}, got {got:?}")),
    }
    let conns = spec["connections"].as_array().cloned().unwrap_or_default();
    if conns.len() != r.conns.len() {
        errs.push(format!(
            "{name}: {} connections expected, got {}: {:?}",
            conns.len(),
            r.conns.len(),
            r.conns
                .iter()
                .map(|c| format!("{}->{} {}", c.client, c.server, c.tunnel))
                .collect::<Vec<_>>()
        ));
    }
    for (i, (want, got)) in conns.iter().zip(&r.conns).enumerate() {
        let field = |k: &str| want[k].as_str().unwrap_or("").to_owned();
        for (what, w, g) in [
            ("client", field("client"), got.client.clone()),
            ("server", field("server"), got.server.clone()),
            ("tunnel", field("tunnel"), got.tunnel.clone()),
            (
                "close",
                field("close"),
                got.close.map(|c| c.to_string()).unwrap_or_default(),
            ),
            (
                "orientation",
                field("orientation"),
                match got.orientation {
                    apiscope_capture::Orientation::Handshake => "handshake".into(),
                    apiscope_capture::Orientation::PortHeuristic => "port_heuristic".into(),
                },
            ),
        ] {
            if !w.is_empty() && w != g {
                errs.push(format!("{name}: conn {i} {what}: expected {w}, got {g}"));
            }
        }
        for (d, key) in [(0, "to_server"), (1, "to_client")] {
            let w = expected(&want[key]);
            if w != got.dirs[d] {
                errs.push(format!(
                    "{name}: conn {i} {key}:\n  expected {}\n  got      {}",
                    show(&w),
                    show(&got.dirs[d])
                ));
            }
        }
    }
    if let Some(counters) = spec["counters"].as_object() {
        for (k, v) in counters {
            let got = r.counters.get(k);
            if got != v.as_u64() {
                errs.push(format!("{name}: counter {k}: expected {v}, got {got:?}"));
            }
        }
    }
    errs
}

#[test]
fn every_capture_fixture_reassembles_exactly() {
    let dir = fixtures_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expect.json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 40,
        "only {} fixtures in {}",
        names.len(),
        dir.display()
    );
    let mut errs = Vec::new();
    for p in &names {
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let name = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".expect.json", "");
        errs.extend(check(&name, &spec));
    }
    assert!(
        errs.is_empty(),
        "{} of {} fixtures differ:\n{}",
        errs.len(),
        names.len(),
        errs.join("\n")
    );
}
