//! `apiscope run` on live traffic.
//!
//! - On a real interface: two network namespaces joined by a veth pair (names unique to this
//!   run, deleted on drop even when a test fails), a small JSON API served by Python in one and
//!   driven by a Python client in the other, the sensor capturing the server's veth end inside
//!   the server's namespace. Checks the calls written, the query API, the metrics, SIGTERM
//!   (exit 0, state flushed) and a restart on the same state (the endpoints are there before
//!   any new traffic). Needs root and `ip netns`; skipped with a message otherwise.
//! - On a VXLAN and a GENEVE mirror feed received over UDP on 127.0.0.1: frames built here
//!   (Ethernet/IPv4/TCP with HTTP inside), SIGHUP reloading a spec; and the bundled demo
//!   capture sent over VXLAN gives the calls `replay` finds in the file. Needs nothing special.
//! - Publishing to Kafka while running (against a real tansu broker; skipped when
//!   `APISCOPE_TANSU` is unset, `make test` sets it).
//! - Dropping privileges to `nobody` (root only) and the usage errors of `run`.
//!
//! Traffic goes only to loopback and to the addresses of the namespaces made here. Waits
//! poll with deadlines.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../publish/tests/common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_apiscope");

/// A unique suffix for names made by this test process.
fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!("apiscope-live-{what}-{}", unique()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` at the deadline.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(
        works("kill", &[&format!("-{sig}"), &pid.to_string()]),
        "kill -{sig} {pid}"
    );
}

/// A running `apiscope run`, its stderr collected; killed on drop if still running.
struct Sensor {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Sensor {
    /// Starts `prefix... apiscope run args...` (`prefix` runs it in a namespace).
    fn start(prefix: &[&str], args: &[&str]) -> Sensor {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting apiscope run");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("  [sensor] {line}");
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Sensor { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The text after `marker` on the first stderr line holding it, once it is there.
    fn wait_line(&mut self, marker: &str, secs: u64) -> String {
        wait_for(&format!("`{marker}` on the sensor's stderr"), secs, || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the sensor exited early ({st}):\n{}", self.stderr());
            }
            let s = self.stderr();
            let line = s.lines().find(|l| l.contains(marker))?;
            Some(line[line.find(marker)? + marker.len()..].to_owned())
        })
    }

    /// Sends SIGTERM and returns the exit code.
    fn stop(&mut self, secs: u64) -> Option<i32> {
        signal(self.child.id(), "TERM");
        let st = wait_for("the sensor to exit after SIGTERM", secs, || {
            self.child.try_wait().unwrap()
        });
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        st.code()
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on `addr` (HTTP/1.1, one request per connection): status and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of a metric sample (`name` or `name{labels}` exactly as printed).
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The endpoint `method path` of an inventory or API answer.
fn endpoint<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    doc["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["method"] == method && e["path"] == path)
}

// ---------------------------------------------------------------------------------------
// On a real interface, in two network namespaces.

/// Two namespaces joined by a veth pair: `10.213.7.1/30` (server side) and `10.213.7.2/30`.
/// Everything made is deleted on drop, and the processes started in it are killed.
struct Lab {
    server_ns: String,
    client_ns: String,
    veth: String,
    children: Vec<Child>,
}

const SERVER_IP: &str = "10.213.7.1";
const CLIENT_IP: &str = "10.213.7.2";

/// A small JSON API: GET /api/users/{id}, POST /api/orders, 404 otherwise.
const SERVER_PY: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        if self.path.startswith("/api/users/"):
            self.reply(200, {"id": int(self.path.rsplit("/", 1)[1]), "name": "user"})
        else:
            self.reply(404, {"error": "not found"})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        self.reply(201, {"created": True})
HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// Waits for the server, then GET /api/users/100.. (`n` of them) and one POST /api/orders.
const CLIENT_PY: &str = r#"
import json, sys, time, socket, urllib.request
base, host, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 15
while True:
    try:
        socket.create_connection((host, 8080), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
for i in range(n):
    urllib.request.urlopen(f"{base}/api/users/{100 + i}", timeout=5).read()
req = urllib.request.Request(f"{base}/api/orders", method="POST",
    data=json.dumps({"item": "book", "qty": 2}).encode(),
    headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=5).read()
print("done")
"#;

/// GET a URL from inside a namespace: prints the status, then the body.
const FETCH_PY: &str = r#"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"#;

impl Lab {
    /// Sets the namespaces up, or says why it cannot.
    fn new() -> Result<Lab, String> {
        if !is_root() {
            return Err("not root".into());
        }
        if !works("ip", &["netns", "list"]) {
            return Err("`ip netns` is not available".into());
        }
        if !works("python3", &["-c", "import http.server, urllib.request"]) {
            return Err("python3 is not available".into());
        }
        let id = unique();
        let lab = Lab {
            server_ns: format!("apiscope-s{id}"),
            client_ns: format!("apiscope-c{id}"),
            veth: format!("asv{id}"),
            children: Vec::new(),
        };
        let (s, c) = (lab.server_ns.as_str(), lab.client_ns.as_str());
        let (va, vb) = (lab.server_if(), format!("{}b", lab.veth));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", s],
            vec!["netns", "add", c],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", s],
            vec!["link", "set", &vb, "netns", c],
            vec!["-n", s, "addr", "add", "10.213.7.1/30", "dev", &va],
            vec!["-n", c, "addr", "add", "10.213.7.2/30", "dev", &vb],
            vec!["-n", s, "link", "set", &va, "up"],
            vec!["-n", c, "link", "set", &vb, "up"],
            vec!["-n", s, "link", "set", "lo", "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                // `lab` is dropped here: what was made is deleted.
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(lab)
    }

    fn server_if(&self) -> String {
        format!("{}a", self.veth)
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn run_in(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap()
    }

    /// GET `path` of the query API listening on 127.0.0.1:9770 in the server namespace.
    fn api(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:9770{path}");
        let out = self.run_in(&self.server_ns, &["python3", "-c", FETCH_PY, &url]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (status, body) = text.split_once('\n')?;
        Some((status.trim().parse().ok()?, body.to_owned()))
    }

    fn api_json(&self, path: &str) -> Option<Value> {
        match self.api(path)? {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes the veth end in it; an end still in the root namespace
        // (a failed move) is deleted with its peer.
        let _ = Command::new("ip")
            .args(["link", "del", &self.server_if()])
            .stderr(Stdio::null())
            .status();
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn live_interface_calls_api_state_and_restart() {
    let mut lab = match Lab::new() {
        Ok(l) => l,
        Err(why) => {
            eprintln!("skipping live_interface_calls_api_state_and_restart: {why}");
            return;
        }
    };
    let dir = TempDir::new("iface");
    let (state, calls, inventory, cfg) = (
        dir.path().join("state"),
        dir.path().join("calls.jsonl"),
        dir.path().join("inventory.json"),
        dir.path().join("apiscope.toml"),
    );
    // Short intervals, so the periodic work shows within the test.
    std::fs::write(
        &cfg,
        "[state]\nflush_interval_secs = 1\n[run]\ninventory_interval_secs = 1\n",
    )
    .unwrap();
    let server_ns = lab.server_ns.clone();
    let client_ns = lab.client_ns.clone();
    lab.spawn_in(&server_ns, &["python3", "-c", SERVER_PY, SERVER_IP, "8080"]);
    let iface = lab.server_if();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let args = [
        "--interface".to_owned(),
        iface.clone(),
        "--listen".to_owned(),
        "127.0.0.1:9770".to_owned(),
        "--threads".to_owned(),
        "2".to_owned(),
        "--config".to_owned(),
        p(&cfg),
        "--state".to_owned(),
        p(&state),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let prefix = ["ip", "netns", "exec", &server_ns];
    let (calls_s, inv_s) = (p(&calls), p(&inventory));
    let mut first: Vec<&str> = args.clone();
    first.extend(["--calls", &calls_s, "--inventory", &inv_s]);
    let mut sensor = Sensor::start(&prefix, &first);
    sensor.wait_line("query API on", 20);
    wait_for("/healthz", 20, || {
        lab.api("/healthz").filter(|(s, _)| *s == 200)
    });

    // Traffic: 12 GETs and one POST, one connection each.
    let n = 12;
    let base = format!("http://{SERVER_IP}:8080");
    let out = lab.run_in(
        &client_ns,
        &["python3", "-c", CLIENT_PY, &base, SERVER_IP, &n.to_string()],
    );
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The calls, in request-time order.
    let lines = wait_for("13 calls in --calls", 30, || {
        let l = read_lines(&calls);
        (l.len() > n).then_some(l)
    });
    assert_eq!(lines.len(), n + 1, "{lines:#?}");
    let gets: Vec<&Value> = lines.iter().filter(|c| c["method"] == "GET").collect();
    assert_eq!(gets.len(), n);
    for (i, c) in gets.iter().enumerate() {
        assert_eq!(c["path"], format!("/api/users/{}", 100 + i));
        assert_eq!(c["status"], 200);
        assert_eq!(c["dst"], format!("{SERVER_IP}:8080"));
        assert!(c["src"].as_str().unwrap().starts_with(CLIENT_IP));
        assert_eq!(c["tunnel"], "none");
    }
    let post = lines.iter().find(|c| c["method"] == "POST").unwrap();
    assert_eq!(post["path"], "/api/orders");
    assert_eq!(post["status"], 201);
    assert_eq!(post["req_body_bytes"], 26);
    let ts: Vec<&str> = lines.iter().map(|c| c["ts"].as_str().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "request-time order");

    // The query API.
    let eps = wait_for("the endpoints in the API", 15, || {
        let v = lab.api_json("/api/v1/endpoints")?;
        endpoint(&v, "POST", "/api/orders")?;
        Some(v)
    });
    let users = endpoint(&eps, "GET", "/api/users/{id}").expect("templated GET endpoint");
    assert_eq!(users["calls"], n);
    assert_eq!(users["host"], format!("{SERVER_IP}:8080"));
    let (status, metrics) = lab.api("/metrics").unwrap();
    assert_eq!(status, 200);
    let packets = metric(&metrics, "apiscope_packets_total").unwrap();
    assert!(packets > 0.0, "{metrics}");
    let src = |m: &str| format!("{m}{{source=\"{iface}\"}}");
    assert!(metric(&metrics, &src("apiscope_capture_packets_total")).unwrap() > 0.0);
    assert_eq!(
        metric(&metrics, &src("apiscope_capture_kernel_drops_total")),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, &src("apiscope_capture_queue_drops_total")),
        Some(0.0)
    );
    assert!(metric(&metrics, "apiscope_calls_released_total").unwrap() >= 13.0);
    assert_eq!(metric(&metrics, "apiscope_inventory_endpoints"), Some(2.0));
    assert!(metrics.contains("apiscope_queue_depth{queue=\"worker-1\"}"));

    // --inventory is rewritten periodically.
    wait_for("--inventory to hold the endpoints", 15, || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&inventory).ok()?).ok()?;
        endpoint(&v, "POST", "/api/orders").map(|_| ())
    });

    // SIGTERM: exit 0, the state flushed.
    assert_eq!(sensor.stop(30), Some(0), "{}", sensor.stderr());
    drop(sensor);
    let out = Command::new(BIN)
        .args(["inventory", "--state", &p(&state), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        endpoint(&saved, "GET", "/api/users/{id}").unwrap()["calls"],
        n
    );

    // A restart on the same state: the endpoints are there before any new traffic.
    let mut again = Sensor::start(&prefix, &args);
    again.wait_line("query API on", 20);
    let v = wait_for("the API of the restarted sensor", 20, || {
        lab.api_json("/api/v1/endpoints")
    });
    assert_eq!(
        endpoint(&v, "GET", "/api/users/{id}").expect("restored")["calls"],
        n,
        "{v:#}"
    );
    assert!(endpoint(&v, "POST", "/api/orders").is_some());
    assert_eq!(again.stop(30), Some(0), "{}", again.stderr());
}

// ---------------------------------------------------------------------------------------
// A VXLAN and a GENEVE feed over UDP on loopback.

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

/// An Ethernet frame carrying IPv4/TCP.
fn tcp_frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 20 + data.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(data);
    f
}

/// The frames of one HTTP exchange on a new connection, closed with FINs.
fn exchange(
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    req: &[u8],
    resp: &[u8],
) -> Vec<Vec<u8>> {
    let (c, s) = (1000u32, 5000u32);
    let (rl, pl) = (req.len() as u32, resp.len() as u32);
    vec![
        tcp_frame(client, server, c, 0, SYN, b""),
        tcp_frame(server, client, s, c + 1, SYN | ACK, b""),
        tcp_frame(client, server, c + 1, s + 1, ACK, b""),
        tcp_frame(client, server, c + 1, s + 1, ACK | PSH, req),
        tcp_frame(server, client, s + 1, c + 1 + rl, ACK | PSH, resp),
        tcp_frame(client, server, c + 1 + rl, s + 1 + pl, ACK | FIN, b""),
        tcp_frame(server, client, s + 1 + pl, c + 2 + rl, ACK | FIN, b""),
        tcp_frame(client, server, c + 2 + rl, s + 2 + pl, ACK, b""),
    ]
}

fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(frame);
    d
}

fn geneve(vni: u32, frame: &[u8]) -> Vec<u8> {
    // Version 0, no options, protocol 0x6558 (Ethernet).
    let mut d = vec![0, 0, 0x65, 0x58];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(frame);
    d
}

fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `count` GET /api/items/{i} exchanges (and a POST /api/carts) through `wrap`.
fn send_feed(to: SocketAddr, wrap: impl Fn(&[u8]) -> Vec<u8>, client_ip: [u8; 4], count: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = ([10, 9, 0, 1], 80);
    let send = |frames: Vec<Vec<u8>>| {
        for f in frames {
            sock.send_to(&wrap(&f), to).unwrap();
        }
    };
    for i in 0..count {
        let req = format!(
            "GET /api/items/{} HTTP/1.1\r\nHost: shop.example\r\n\r\n",
            500 + i
        );
        let body = format!("{{\"id\":{}}}", 500 + i);
        send(exchange(
            (client_ip, 40_000 + i),
            server,
            req.as_bytes(),
            &json_response("200 OK", &body),
        ));
    }
    let body = "{\"sku\":\"b-1\"}";
    let req = format!(
        "POST /api/carts HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    send(exchange(
        (client_ip, 41_000),
        server,
        req.as_bytes(),
        &json_response("201 Created", "{}"),
    ));
}

const SPEC_OTHER: &str = r#"openapi: 3.0.3
info: {title: Shop, version: "1"}
servers: [{url: "http://shop.example"}]
paths:
  /api/other:
    get: {responses: {"200": {description: ok}}}
"#;

const SPEC_ITEMS: &str = r#"openapi: 3.0.3
info: {title: Shop, version: "1"}
servers: [{url: "http://shop.example"}]
paths:
  /api/items/{itemId}:
    get: {operationId: getItem, responses: {"200": {description: ok}}}
"#;

#[test]
fn vxlan_and_geneve_feeds_on_loopback_with_reload() {
    let dir = TempDir::new("vxlan");
    let (calls, findings, cfg, spec) = (
        dir.path().join("calls.jsonl"),
        dir.path().join("findings.jsonl"),
        dir.path().join("apiscope.toml"),
        dir.path().join("shop.yaml"),
    );
    // A free port for the GENEVE feed (the VXLAN one takes port 0 and reports it).
    let geneve_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &cfg,
        format!("[capture]\ngeneve_ports = [6081, {geneve_port}]\n[run]\ntick_ms = 200\n"),
    )
    .unwrap();
    std::fs::write(&spec, SPEC_OTHER).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let geneve_listen = format!("127.0.0.1:{geneve_port}");
    let args = [
        "--vxlan-listen",
        "127.0.0.1:0",
        "--vxlan-listen",
        &geneve_listen,
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "3",
        "--config",
        &p(&cfg),
        "--spec",
        &p(&spec),
        "--calls",
        &p(&calls),
        "--findings",
        &p(&findings),
    ];
    let mut sensor = Sensor::start(&[], &args);
    let api: SocketAddr = sensor
        .wait_line("query API on http://", 20)
        .trim()
        .parse()
        .unwrap();
    let line = sensor.wait_line("capturing on ", 5);
    let vxlan_addr: SocketAddr = line
        .split(';')
        .next()
        .unwrap()
        .split(", ")
        .find_map(|s| s.strip_prefix("udp:").filter(|a| *a != geneve_listen))
        .unwrap()
        .parse()
        .unwrap();
    wait_for("/healthz", 10, || {
        http_get(api, "/healthz").filter(|(s, _)| *s == 200)
    });

    send_feed(vxlan_addr, |f| vxlan(42, f), [10, 9, 0, 2], 6);
    send_feed(geneve_addr(geneve_port), |f| geneve(7, f), [10, 9, 0, 3], 6);

    let lines = wait_for("14 calls", 20, || {
        let l = read_lines(&calls);
        (l.len() >= 14).then_some(l)
    });
    assert_eq!(lines.len(), 14);
    for (tunnel, client) in [("vxlan:42", "10.9.0.2"), ("geneve:7", "10.9.0.3")] {
        let mine: Vec<&Value> = lines.iter().filter(|c| c["tunnel"] == tunnel).collect();
        assert_eq!(mine.len(), 7, "{tunnel}: {lines:#?}");
        assert!(mine
            .iter()
            .all(|c| c["src"].as_str().unwrap().starts_with(client)));
        assert_eq!(mine.iter().filter(|c| c["method"] == "POST").count(), 1);
        assert!(mine
            .iter()
            .any(|c| c["path"] == "/api/items/505" && c["status"] == 200));
        assert!(mine.iter().all(|c| c["endpoint"]
            .as_str()
            .is_some_and(|e| e.contains("shop.example"))));
    }

    // The API: both endpoints, outside the spec for now.
    let eps = wait_for("the endpoints", 10, || {
        let (s, body) = http_get(api, "/api/v1/endpoints?host=shop.example")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (s == 200 && endpoint(&v, "POST", "/api/carts").is_some()).then_some(v)
    });
    let items = endpoint(&eps, "GET", "/api/items/{id}").expect("templated");
    assert_eq!(items["calls"], 12);
    assert_eq!(items["in_spec"], false);
    let (_, metrics) = http_get(api, "/metrics").unwrap();
    for a in [vxlan_addr.to_string(), geneve_listen.clone()] {
        let m = format!("apiscope_capture_packets_total{{source=\"udp:{a}\"}}");
        assert_eq!(metric(&metrics, &m), Some(7.0 * 8.0), "{m}\n{metrics}");
        let d = format!("apiscope_capture_queue_drops_total{{source=\"udp:{a}\"}}");
        assert_eq!(metric(&metrics, &d), Some(0.0));
    }
    assert_eq!(metric(&metrics, "apiscope_packets_total"), Some(112.0));

    // SIGHUP with a spec that now describes the items: the endpoint is matched again (and
    // takes the spec's name for its parameter: spec templates win).
    std::fs::write(&spec, SPEC_ITEMS).unwrap();
    signal(sensor.child.id(), "HUP");
    wait_for("the reload to apply", 10, || {
        let (_, body) = http_get(api, "/api/v1/endpoints?host=shop.example")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let e = endpoint(&v, "GET", "/api/items/{itemId}")?;
        (e["in_spec"] == true && e["calls"] == 12).then_some(())
    });
    assert!(sensor.stderr().contains("SIGHUP: reloaded the specs"));
    assert!(
        sensor.stderr().contains("and [detector]"),
        "{}",
        sensor.stderr()
    );
    let (_, metrics) = http_get(api, "/metrics").unwrap();
    assert_eq!(
        metric(&metrics, "apiscope_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );

    assert_eq!(sensor.stop(30), Some(0), "{}", sensor.stderr());
    assert!(sensor.stderr().contains("stopped after"));
    // The findings file holds JSON lines (shadow APIs: shop.example calls outside its spec).
    for f in read_lines(&findings) {
        assert!(f["id"].is_string() && f["kind"].is_string(), "{f}");
    }
}

/// The frames of a little-endian, microsecond pcap file with Ethernet frames.
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let u32le = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(u32le(0), 0xa1b2_c3d4, "a little-endian microsecond pcap");
    assert_eq!(u32le(20), 1, "Ethernet");
    let (mut off, mut out) = (24, Vec::new());
    while off + 16 <= data.len() {
        let len = u32le(off + 8);
        out.push(data[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    out
}

/// The bundled demo capture mirrored over VXLAN gives the calls `replay` finds in the file.
#[test]
fn demo_capture_over_vxlan_gives_the_replay_calls() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = repo.join("fixtures/demo/demo.pcap");
    let key = |c: &Value| {
        (
            c["method"].as_str().unwrap().to_owned(),
            c["target"].as_str().unwrap().to_owned(),
            c["status"].as_u64(),
            c["resp_body_bytes"].as_u64(),
        )
    };
    let out = Command::new(BIN)
        .args(["replay", "--calls", "-"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut want: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| key(&serde_json::from_str(l).unwrap()))
        .collect();
    want.sort();
    assert_eq!(want.len(), 122);

    let dir = TempDir::new("demo");
    let calls = dir.path().join("calls.jsonl");
    let mut sensor = Sensor::start(
        &[],
        &[
            "--vxlan-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--calls",
            calls.to_str().unwrap(),
        ],
    );
    let api: SocketAddr = sensor
        .wait_line("query API on http://", 20)
        .trim()
        .parse()
        .unwrap();
    let line = sensor.wait_line("capturing on udp:", 5);
    let feed: SocketAddr = line.split(';').next().unwrap().parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frames = pcap_frames(&demo);
    for (i, f) in frames.iter().enumerate() {
        sock.send_to(&vxlan(9, f), feed).unwrap();
        if i % 100 == 99 {
            // Stay well within the socket's receive buffer.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let got = wait_for("the demo's calls", 20, || {
        let l = read_lines(&calls);
        (l.len() >= want.len()).then_some(l)
    });
    let mut got: Vec<_> = got.iter().map(key).collect();
    got.sort();
    assert_eq!(got, want);
    let (_, m) = http_get(api, "/metrics").unwrap();
    assert_eq!(
        metric(&m, "apiscope_packets_total"),
        Some(frames.len() as f64)
    );
    assert_eq!(metric(&m, "apiscope_tcp_gaps_total"), Some(0.0));
    assert_eq!(sensor.stop(30), Some(0), "{}", sensor.stderr());
}

fn geneve_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------------------
// Kafka.

#[test]
fn run_publishes_findings_and_inventory_to_kafka() {
    let tansu = need_tansu!();
    let broker = common::Broker::start(&tansu);
    let bootstrap = broker.bootstrap();
    let dir = TempDir::new("kafka");
    let (cfg, spec, state) = (
        dir.path().join("apiscope.toml"),
        dir.path().join("shop.yaml"),
        dir.path().join("state"),
    );
    std::fs::write(&cfg, "[state]\nflush_interval_secs = 1\n").unwrap();
    // The spec covers shop.example but not its items: the items are a shadow API.
    std::fs::write(&spec, SPEC_OTHER).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let mut sensor = Sensor::start(
        &[],
        &[
            "--vxlan-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--kafka",
            &bootstrap,
            "--config",
            &p(&cfg),
            "--spec",
            &p(&spec),
            "--state",
            &p(&state),
        ],
    );
    let api: SocketAddr = sensor
        .wait_line("query API on http://", 20)
        .trim()
        .parse()
        .unwrap();
    let line = sensor.wait_line("capturing on udp:", 5);
    let feed: SocketAddr = line.split(';').next().unwrap().parse().unwrap();
    send_feed(feed, |f| vxlan(42, f), [10, 9, 0, 2], 6);
    // Delivered while running: the inventory changes at the next flush, the findings within
    // a second of capture time.
    wait_for("the inventory and findings delivered", 30, || {
        let (_, m) = http_get(api, "/metrics")?;
        let inv = metric(&m, "apiscope_publish_kafka_inventory_delivered_total")?;
        let fin = metric(&m, "apiscope_publish_kafka_findings_delivered_total")?;
        (inv >= 2.0 && fin >= 1.0).then_some(())
    });
    assert_eq!(sensor.stop(60), Some(0), "{}", sensor.stderr());
    let inventory: Vec<Value> = common::consume(
        &bootstrap,
        "apiscope.inventory",
        usize::MAX,
        Duration::from_secs(8),
    )
    .into_iter()
    .map(|(_, v)| serde_json::from_slice(&v).unwrap())
    .collect();
    assert!(inventory
        .iter()
        .any(|e| e["method"] == "GET" && e["path"] == "/api/items/{id}"));
    let findings: Vec<Value> = common::consume(
        &bootstrap,
        "apiscope.findings",
        usize::MAX,
        Duration::from_secs(8),
    )
    .into_iter()
    .map(|(_, v)| serde_json::from_slice(&v).unwrap())
    .collect();
    assert!(
        findings.iter().any(|f| f["kind"] == "shadow_api"),
        "{findings:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Privileges and usage errors.

#[test]
fn privileges_are_dropped_to_the_configured_user() {
    if !is_root() {
        eprintln!("skipping privileges_are_dropped_to_the_configured_user: not root");
        return;
    }
    let Some((uid, gid)) = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        let l = p.lines().find(|l| l.starts_with("nobody:"))?;
        let f: Vec<&str> = l.split(':').collect();
        Some((f[2].to_owned(), f[3].to_owned()))
    }) else {
        eprintln!("skipping privileges_are_dropped_to_the_configured_user: no user nobody");
        return;
    };
    let dir = TempDir::new("privs");
    // The unprivileged sensor writes its calls here.
    assert!(works("chmod", &["0777", dir.path().to_str().unwrap()]));
    let cfg = dir.path().join("apiscope.toml");
    std::fs::write(&cfg, "[run]\nuser = \"nobody\"\n").unwrap();
    let calls = dir.path().join("calls.jsonl");
    let mut sensor = Sensor::start(
        &[],
        &[
            "--vxlan-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--config",
            cfg.to_str().unwrap(),
            "--calls",
            calls.to_str().unwrap(),
        ],
    );
    sensor.wait_line("query API on", 20);
    assert!(sensor.stderr().contains("running as nobody"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", sensor.child.id())).unwrap();
    let ids = |key: &str| -> Vec<String> {
        let l = status.lines().find(|l| l.starts_with(key)).unwrap();
        l.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(ids("Uid:"), vec![uid.clone(); 4], "{status}");
    assert_eq!(ids("Gid:"), vec![gid.clone(); 4], "{status}");
    assert!(!ids("Groups:").contains(&"0".to_owned()), "{status}");
    let caps = ids("CapEff:");
    assert_eq!(caps, vec!["0000000000000000".to_owned()], "{status}");
    assert_eq!(sensor.stop(30), Some(0), "{}", sensor.stderr());
    assert!(calls.exists());

    // A user that does not exist: a configuration error, before anything runs.
    std::fs::write(&cfg, "[run]\nuser = \"apiscope-no-such-user\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "--vxlan-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}

#[test]
fn run_usage_errors_exit_2() {
    let run = |args: &[&str]| Command::new(BIN).arg("run").args(args).output().unwrap();
    // No source.
    let o = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--interface"));
    // A query API on a non-loopback address needs a token.
    let o = run(&["--vxlan-listen", "127.0.0.1:0", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("api_token"));
    // --inventory must be a file.
    let o = run(&["--vxlan-listen", "127.0.0.1:0", "--inventory", "-"]);
    assert_eq!(o.status.code(), Some(2));
    // A bad [run] section: every error named.
    let dir = TempDir::new("usage");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[run]\ntick_ms = 0\nqueue_max_batches = 0\nbogus = 1\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check-config", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for k in ["tick_ms", "queue_max_batches", "bogus"] {
        assert!(err.contains(k), "{err}");
    }
}

/// Frames on a feed the sensor cannot decode are counted, not fatal.
#[test]
fn garbage_on_the_feed_is_counted() {
    let mut sensor = Sensor::start(
        &[],
        &[
            "--vxlan-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
        ],
    );
    let api: SocketAddr = sensor
        .wait_line("query API on http://", 20)
        .trim()
        .parse()
        .unwrap();
    let line = sensor.wait_line("capturing on udp:", 5);
    let feed: SocketAddr = line.split(';').next().unwrap().parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in [0usize, 3, 8, 20, 200] {
        sock.send_to(&vec![0xa5; n], feed).unwrap();
    }
    wait_for("the frames counted", 10, || {
        let (_, m) = http_get(api, "/metrics")?;
        (metric(&m, "apiscope_packets_total")? >= 5.0).then_some(())
    });
    assert_eq!(sensor.stop(30), Some(0), "{}", sensor.stderr());
}
