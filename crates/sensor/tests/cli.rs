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
    for n in ["2", "3", "5"] {
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
    assert_eq!(
        apiscope(&["replay", "--threads", "0", "fixtures/demo/demo.pcap"])
            .status
            .code(),
        Some(2)
    );
    // A truncated capture is processed up to the damage and is not a failure.
    let o = apiscope(&["replay", "fixtures/capture/file_truncated_record.pcap"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
}
