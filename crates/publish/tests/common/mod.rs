//! Test helpers: a tansu broker on a free loopback port, a consumer that reads a topic back,
//! and temporary directories.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apiscope_publish::rdkafka::consumer::{BaseConsumer, Consumer};
use apiscope_publish::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The tansu binary from `APISCOPE_TANSU`, or `None` (the caller prints that it skips).
pub fn tansu() -> Option<PathBuf> {
    match std::env::var_os("APISCOPE_TANSU") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        Some(p) => panic!("APISCOPE_TANSU={p:?} is not a file"),
        None => None,
    }
}

/// Returns the tansu binary or makes the calling test return early, saying it skips.
#[macro_export]
macro_rules! need_tansu {
    () => {
        match common::tansu() {
            Some(t) => t,
            None => {
                eprintln!(
                    "skipped: set APISCOPE_TANSU to the tansu broker binary (make kafka-broker)"
                );
                return;
            }
        }
    };
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker with in-memory storage on 127.0.0.1:`port`; killed on drop.
#[derive(Debug)]
pub struct Broker {
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start(bin: &Path) -> Broker {
        Broker::start_on(bin, free_port())
    }

    /// Starts a broker on `port` and waits until it accepts connections.
    pub fn start_on(bin: &Path, port: u16) -> Broker {
        let mut b = Broker {
            bin: bin.to_owned(),
            port,
            child: None,
        };
        b.restart();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its memory storage is lost with it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `topic` from the beginning (every partition) until `want` records were read or
/// `timeout` passed; returns (key, value) in partition order.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("apiscope-test-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let n = md.topics().first().map_or(0, |t| t.partitions().len());
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "topic {topic} has no partitions");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let key = String::from_utf8_lossy(m.key().unwrap_or(&[])).into_owned();
            out.push((key, m.payload().unwrap_or(&[]).to_vec()));
        }
    }
    out
}

fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("apiscope-publish-{what}-{}", unique()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
