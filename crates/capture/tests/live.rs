//! Live capture on the loopback interface: a real TCP exchange between a listener and a
//! client of this test, captured through libpcap and reassembled. Needs root or CAP_NET_RAW;
//! skips (with a message) otherwise. Only 127.0.0.1 receives traffic.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use apiscope_capture::{Engine, EngineConfig, LiveConfig, LiveSource};
use common::{Piece, Recorder};

#[test]
fn loopback_exchange_is_captured_and_reassembled() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = LiveConfig {
        immediate: true,
        timeout_ms: 50,
        bpf: format!("tcp port {port}"),
        ..LiveConfig::default()
    };
    let mut src = match LiveSource::open("lo", &cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: cannot capture on lo ({e}); needs root or CAP_NET_RAW");
            return;
        }
    };
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        s.write_all(b"pong:").unwrap();
        s.write_all(&buf[..n]).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    drop(c);
    server.join().unwrap();
    assert_eq!(reply, b"pong:ping");

    let mut engine = Engine::new(EngineConfig::default(), Recorder::default());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(p) = src.next_packet().unwrap() {
            engine.process(p.ts, p.link, p.data, p.wire_len);
        }
        let done = engine
            .handler()
            .conns
            .first()
            .is_some_and(|c| c.close.is_some());
        if done {
            break;
        }
    }
    let stats = src.stats().unwrap();
    assert!(stats.received >= 6, "libpcap saw {stats:?}");
    engine.finish();
    let rec = engine.into_handler();
    assert_eq!(rec.conns.len(), 1, "{:?}", rec.conns);
    let c = &rec.conns[0];
    assert_eq!(c.server, format!("127.0.0.1:{port}"));
    assert_eq!(c.dirs[0], vec![Piece::Data(b"ping".to_vec())]);
    assert_eq!(c.dirs[1], vec![Piece::Data(b"pong:ping".to_vec())]);
    assert_eq!(c.close.map(|r| r.to_string()).as_deref(), Some("fin"));
}

/// On a quiet capture, `next_packet` gives control back after the read timeout, in both
/// kernel modes (libpcap alone would block in `poll` for good: it leaves the wake-up to the
/// TPACKET_V3 block timer, and waits without a timeout in immediate mode).
#[test]
fn a_quiet_capture_returns_after_the_timeout() {
    // A port nobody uses: the filter lets nothing through.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for immediate in [false, true] {
        let cfg = LiveConfig {
            immediate,
            timeout_ms: 50,
            bpf: format!("tcp port {port}"),
            ..LiveConfig::default()
        };
        let mut src = match LiveSource::open("lo", &cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: cannot capture on lo ({e}); needs root or CAP_NET_RAW");
                return;
            }
        };
        let start = Instant::now();
        for _ in 0..3 {
            assert!(src.next_packet().unwrap().is_none());
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "immediate={immediate}: 3 quiet reads took {took:?}"
        );
    }
}
