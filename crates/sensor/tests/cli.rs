//! The binary as other tools meet it: exit codes, and `--calls` output that does not depend
//! on the number of worker threads.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn apiscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apiscope"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

#[test]
fn calls_are_identical_for_any_thread_count() {
    let demo = "fixtures/demo/demo.pcap";
    let one = apiscope(&["replay", "--threads", "1", "--calls", "-", demo]);
    assert!(one.status.success());
    let lines = String::from_utf8(one.stdout.clone()).unwrap();
    assert_eq!(lines.lines().count(), 122, "the demo holds 122 calls");
    // Read by a reader thread (the smallest batches and queues) or by every worker.
    let dir = scratch("reader-modes");
    let configs: Vec<String> = ["thread", "workers"]
        .iter()
        .map(|mode| {
            let cfg = dir.join(format!("{mode}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[output]\nreader = \"{mode}\"\nread_batch_bytes = 65536\nread_queue_batches = 1\n"
                ),
            )
            .unwrap();
            cfg.to_str().unwrap().to_owned()
        })
        .collect();
    for n in ["1", "2", "3", "5"] {
        for cfg in &configs {
            let other = apiscope(&[
                "replay",
                "--config",
                cfg,
                "--threads",
                n,
                "--calls",
                "-",
                demo,
            ]);
            assert!(other.status.success());
            assert_eq!(
                one.stdout, other.stdout,
                "--threads {n} with {cfg} differs from --threads 1"
            );
        }
        let other = apiscope(&["replay", "--threads", n, "--calls", "-", demo]);
        assert!(other.status.success());
        assert_eq!(
            one.stdout, other.stdout,
            "--threads {n} differs from --threads 1"
        );
    }
    // In order of request time.
    let ts: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn inventory_and_body_samples_are_identical_for_any_thread_count() {
    // Bodies are sampled per flow bucket, so the same calls are sampled (and their bodies
    // kept) whatever the number of workers; a sampler with a small table overflows too.
    let dir = std::env::temp_dir().join(format!("apiscope-inv-n-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sampling.toml");
    std::fs::write(
        &cfg,
        "[inventory]\nbody_sample_first = 1\nbody_sample_every = 3\nbody_sampler_max_shapes = 70\n",
    )
    .unwrap();
    let inventory = |n: &str| {
        let out = dir.join(format!("inv{n}.json"));
        let o = apiscope(&[
            "replay",
            "--threads",
            n,
            "--config",
            cfg.to_str().unwrap(),
            "--inventory",
            out.to_str().unwrap(),
            "fixtures/demo/demo.pcap",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out).unwrap()
    };
    let one = inventory("1");
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    let (calls, samples) = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(c, s), e| {
            (
                c + e["calls"].as_u64().unwrap(),
                s + e["body_samples"].as_u64().unwrap(),
            )
        });
    assert!(
        0 < samples && samples < calls,
        "{samples} of {calls} sampled"
    );
    for n in ["2", "3", "5"] {
        // Not assert_eq: the whole inventory would be printed twice.
        assert!(
            one == inventory(n),
            "--threads {n} differs from --threads 1"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn exit_codes_follow_the_contract() {
    // Not a capture: failure, exit 1, with a message.
    let o = apiscope(&["replay", "README.md"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a pcap"));
    // A bad configuration: exit 2, every error named.
    let dir = std::env::temp_dir().join(format!("apiscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[flow]\nmax_flows = -1\nnope = 1\n").unwrap();
    let o = apiscope(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("max_flows") && err.contains("nope"), "{err}");
    // The shipped configuration is valid.
    let o = apiscope(&["check-config", "--config", "configs/apiscope.toml"]);
    assert_eq!(o.status.code(), Some(0));
    // Usage errors: exit 2.
    assert_eq!(apiscope(&["replay"]).status.code(), Some(2));
    for n in ["0", "65"] {
        let o = apiscope(&["replay", "--threads", n, "fixtures/demo/demo.pcap"]);
        assert_eq!(o.status.code(), Some(2), "--threads {n}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("between 1 and 64"));
    }
    // A truncated capture is processed up to the damage and is not a failure.
    let o = apiscope(&["replay", "fixtures/capture/file_truncated_record.pcap"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apiscope-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (method, path, calls, in_spec, deprecated) of each endpoint.
fn rows(inv: &serde_json::Value) -> Vec<(String, String, u64, Option<bool>, bool)> {
    inv["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
                e["calls"].as_u64().unwrap(),
                e["in_spec"].as_bool(),
                e["deprecated"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn demo_inventory_against_its_spec() {
    let demo = "fixtures/demo/demo.pcap";
    let spec = "fixtures/demo/demo_openapi.yaml";
    let inv = json(&apiscope(&[
        "replay",
        "--threads",
        "2",
        "--spec",
        spec,
        "--inventory",
        "-",
        demo,
    ]));
    let r = rows(&inv);
    let find = |m: &str, p: &str| r.iter().find(|e| e.0 == m && e.1 == p).cloned();
    assert_eq!(r.iter().map(|e| e.2).sum::<u64>(), 122, "{r:?}");
    // Spec templates win (their parameter names too).
    let user = find("GET", "/api/v1/users/{userId}").expect("templated from the spec");
    assert_eq!((user.3, user.4), (Some(true), false));
    // Documented but deprecated.
    assert!(find("GET", "/api/v1/products").unwrap().4, "deprecated");
    // Not in the spec: the method, or the whole path.
    assert_eq!(
        find("DELETE", "/api/v1/orders/{orderId}").unwrap().3,
        Some(false)
    );
    assert_eq!(find("GET", "/health").unwrap().3, Some(false));
    // Nothing sensitive is written raw: the demo's login sends a password.
    let text = inv.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn calls_name_the_endpoint_they_were_counted_under() {
    let demo = "fixtures/demo/demo.pcap";
    let out = apiscope(&["replay", "--threads", "1", "--calls", "-", demo]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut labels = std::collections::BTreeSet::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let ep = v["endpoint"]
            .as_str()
            .expect("every demo call is inventoried");
        let method = v["method"].as_str().unwrap();
        assert!(
            ep.starts_with(&format!("{method} api.demo.local /")),
            "{ep}"
        );
        labels.insert(ep.to_owned());
    }
    assert!(
        labels.contains("GET api.demo.local /api/v1/users/{id}"),
        "{labels:?}"
    );
}

#[test]
fn calls_alone_are_labelled_as_with_the_full_inventory() {
    // With `--calls` alone the inventory only labels calls, and no body is kept or analysed;
    // the lines must not change for that.
    let dir = scratch("labels-only");
    let inv = dir.join("inv.json");
    for capture in [
        "fixtures/demo/demo.pcap",
        "fixtures/scenarios/scanning.pcap",
        "fixtures/scenarios/sensitive_data_exposure.pcap",
        "fixtures/scenarios/shadow_api.pcap",
    ] {
        let alone = apiscope(&["replay", "--threads", "1", "--calls", "-", capture]);
        let full = apiscope(&[
            "replay",
            "--threads",
            "1",
            "--calls",
            "-",
            "--inventory",
            inv.to_str().unwrap(),
            capture,
        ]);
        assert!(alone.status.success() && full.status.success());
        assert!(!alone.stdout.is_empty(), "{capture}");
        assert_eq!(alone.stdout, full.stdout, "{capture}");
        let analysed = |out: &std::process::Output| {
            String::from_utf8_lossy(&out.stderr).contains("inventory_bodies_analysed")
        };
        let stats = |extra: &[&str]| {
            let mut args = vec![
                "replay",
                "--threads",
                "1",
                "--stats",
                "--calls",
                "/dev/null",
            ];
            args.extend_from_slice(extra);
            args.push(capture);
            apiscope(&args)
        };
        assert!(
            !analysed(&stats(&[])),
            "{capture}: bodies analysed for labels"
        );
        assert!(
            analysed(&stats(&["--inventory", inv.to_str().unwrap()])),
            "{capture}: no body analysed for the inventory"
        );
    }
}

#[test]
fn the_inventory_does_not_depend_on_the_thread_count() {
    let demo = "fixtures/demo/demo.pcap";
    let one = rows(&json(&apiscope(&[
        "replay",
        "--threads",
        "1",
        "--inventory",
        "-",
        demo,
    ])));
    let four = rows(&json(&apiscope(&[
        "replay",
        "--threads",
        "4",
        "--inventory",
        "-",
        demo,
    ])));
    assert_eq!(one, four);
}

#[test]
fn state_is_reloaded_and_printed_by_the_inventory_command() {
    let demo = "fixtures/demo/demo.pcap";
    let dir = scratch("state");
    let state = dir.join("state");
    let st = state.to_str().unwrap();
    let first = json(&apiscope(&[
        "replay",
        "--threads",
        "1",
        "--state",
        st,
        "--inventory",
        "-",
        demo,
    ]));
    // A second replay of the same capture goes on from the saved state.
    let second = json(&apiscope(&[
        "replay",
        "--threads",
        "1",
        "--state",
        st,
        "--inventory",
        "-",
        demo,
    ]));
    let (a, b) = (rows(&first), rows(&second));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.0, &x.1, x.2 * 2),
            (&y.0, &y.1, y.2),
            "calls add up across runs"
        );
    }
    let printed = json(&apiscope(&["inventory", "--state", st, "--format", "json"]));
    assert_eq!(rows(&printed), b);
    let table = apiscope(&["inventory", "--state", st]);
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.starts_with("HOST") && table.trim_end().ends_with("8 endpoints"),
        "{table}"
    );
    // Endpoints first seen since the end of time: none.
    let none = json(&apiscope(&[
        "inventory",
        "--state",
        st,
        "--format",
        "json",
        "--since",
        "2100-01-01T00:00:00Z",
    ]));
    assert_eq!(rows(&none).len(), 0);
    // OpenAPI 3.1, checked by a standard validator when the test setup provides it.
    let doc = json(&apiscope(&[
        "inventory",
        "--state",
        st,
        "--format",
        "openapi",
    ]));
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/api/v1/users/{id}"]["get"].is_object(),
        "{doc}"
    );
    let file = dir.join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    match std::env::var_os("APISCOPE_OPENAPI_VALIDATOR") {
        None => eprintln!("skipping OpenAPI validation: APISCOPE_OPENAPI_VALIDATOR is not set"),
        Some(py) => {
            let out = Command::new(py)
                .args([
                    "-c",
                    "import sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.readers import read_from_filename\nd, _ = read_from_filename(sys.argv[1])\nvalidate(d)",
                ])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn findings_can_be_written_as_ocsf_detection_findings() {
    let dir = scratch("ocsf");
    let cfg = dir.join("ocsf.toml");
    std::fs::write(&cfg, "[publish]\njsonl_format = \"ocsf\"\n").unwrap();
    let out = apiscope(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        "--spec",
        "fixtures/demo/demo_openapi.yaml",
        "--findings",
        "-",
        "fixtures/demo/demo.pcap",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() >= 5, "{text}");
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["class_uid"], 2004, "{v}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
