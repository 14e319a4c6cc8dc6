//! Every bound has a config field and a counter; hitting it never breaks the connection's
//! later calls. Plus a random-input robustness run.

mod common;

use apiscope_capture::Direction;
use apiscope_http::{Anomaly, HttpConfig, HttpConn, HttpStats};
use common::*;

fn small() -> HttpConfig {
    HttpConfig {
        max_head_bytes: 300,
        max_headers: 4,
        max_interim_responses: 2,
        ..HttpConfig::default()
    }
}

#[test]
fn oversized_request_head_is_dropped() {
    let big = format!("X-Big: {}", "a".repeat(400));
    let o = run_cfg(
        &small(),
        true,
        &[
            c(req("GET", "/huge", &[&big])),
            c(req("GET", "/ok", &[])),
            s(resp(431, b"")),
            s(resp(200, b"")),
            close(),
        ],
    );
    assert_eq!(summary(&o.calls), sum(&[("GET", "/ok", Some(200))]));
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::OversizedHead]));
    assert_eq!(o.stats.oversized_heads, 1);
    assert_eq!(o.stats.responses_to_dropped_requests, 1);
    assert_eq!(o.calls[0].seq, 0);
}

#[test]
fn partial_head_buffer_is_bounded() {
    let cfg = small();
    let mut conn = HttpConn::new(&cfg, true);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    conn.on_data(
        &cfg,
        Direction::ToServer,
        ts(0),
        b"GET / HTTP/1.1\r\n",
        &mut out,
        &mut stats,
    );
    for _ in 0..10_000 {
        conn.on_data(
            &cfg,
            Direction::ToServer,
            ts(1),
            b"X-Long: aaaaaaaa\r\n",
            &mut out,
            &mut stats,
        );
        assert!(conn.memory() <= 4096, "{}", conn.memory());
    }
    assert_eq!(stats.oversized_heads, 1);
    conn.on_data(
        &cfg,
        Direction::ToServer,
        ts(2),
        b"\r\nGET /after HTTP/1.1\r\n\r\n",
        &mut out,
        &mut stats,
    );
    conn.on_close(&cfg, ts(3), &mut out, &mut stats);
    assert_eq!(summary(&out), sum(&[("GET", "/after", None)]));
}

#[test]
fn oversized_response_head_leaves_its_request_unanswered() {
    let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "b".repeat(400));
    let o = run_cfg(
        &small(),
        true,
        &[
            c(cat(&[&req("GET", "/1", &[]), &req("GET", "/2", &[])])),
            s(big),
            s(resp(200, b"two")),
            close(),
        ],
    );
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/1", None), ("GET", "/2", Some(200))])
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::OversizedHead]));
}

#[test]
fn too_many_headers() {
    let o = run_cfg(
        &small(),
        true,
        &[
            c(req(
                "GET",
                "/many",
                &["A: 1", "B: 2", "C: 3", "D: 4", "E: 5"],
            )),
            c(req("GET", "/few", &["A: 1", "B: 2", "C: 3", "D: 4"])),
            s(resp(400, b"")),
            s(resp(200, b"")),
            close(),
        ],
    );
    assert_eq!(summary(&o.calls), sum(&[("GET", "/few", Some(200))]));
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::TooManyHeaders]));
    assert_eq!(o.stats.too_many_headers, 1);
}

#[test]
fn interim_statuses_are_bounded() {
    let o = run_cfg(
        &small(),
        true,
        &[
            c(req("GET", "/", &[])),
            s(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"),
            s(resp(200, b"")),
        ],
    );
    assert_eq!(
        o.calls[0].response.as_ref().unwrap().interim,
        vec![100, 102]
    );
    assert_eq!(o.stats.interim_responses, 3);
    assert_eq!(o.stats.interim_dropped, 1);
}

#[test]
fn trailers_and_chunk_lines_are_bounded() {
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(400));
    let o = run_cfg(
        &small(),
        true,
        &[
            c(req("GET", "/", &[])),
            s(cat(&[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                long_ext.as_bytes(),
            ])),
            close(),
        ],
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::InvalidChunk]));
    let many_trailers = format!("0\r\n{}\r\n", "T: x\r\n".repeat(100));
    let o = run_cfg(
        &small(),
        true,
        &[
            c(req("GET", "/", &[])),
            s(cat(&[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                many_trailers.as_bytes(),
            ])),
            close(),
        ],
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::InvalidChunk]));
}

#[test]
fn non_utf8_target_is_kept_lossily_and_flagged() {
    let o = run(&[
        c(b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n"),
        s(resp(200, b"")),
    ]);
    assert_eq!(o.calls[0].request.target, "/caf\u{fffd}");
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
    assert_eq!(o.stats.non_conforming_heads, 1);
}

#[test]
fn events_after_close_are_ignored() {
    let cfg = HttpConfig::default();
    let mut conn = HttpConn::new(&cfg, true);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    conn.on_close(&cfg, ts(0), &mut out, &mut stats);
    conn.on_data(
        &cfg,
        Direction::ToServer,
        ts(1),
        &req("GET", "/", &[]),
        &mut out,
        &mut stats,
    );
    conn.on_gap(&cfg, Direction::ToServer, ts(1), 5, &mut out, &mut stats);
    conn.on_close(&cfg, ts(2), &mut out, &mut stats);
    assert!(out.is_empty());
    assert_eq!(conn.memory(), 0);
}

/// Fragments that make interesting soups.
const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /p HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.0\r\n",
    b"CONNECT h:443 HTTP/1.1\r\n",
    b"GET /09\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.1 204 No\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: \x0bchunked, identity\r\n",
    b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: deflate, gzip\r\n",
    b"\r\n",
    b"\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffffff\r\n",
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
    b"\x78\x9c",
    b"abc",
    b"\x00\xff\x16\x03",
    b" folded\r\n",
    b"X: \x01\r\n",
    b"GET /a b HTTP/1.1\r\n",
    b"\x05\x01\x00",
    b"\x05\x00",
    b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50",
    b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00h\x00",
    b"\x00\x5a\x00\x50\x00\x00\x00\x00",
];

fn soup(rng: &mut Rng) -> Vec<Ev> {
    let mut evs = Vec::new();
    for _ in 0..rng.size(12) {
        let mut data = Vec::new();
        for _ in 0..rng.size(6) {
            data.extend_from_slice(FRAGMENTS[rng.size(FRAGMENTS.len()) - 1]);
        }
        match rng.size(10) {
            1 => evs.push(gap_c(rng.size(40) as u64)),
            2 => evs.push(gap_s(rng.size(40) as u64)),
            3..=6 => evs.push(c(data)),
            _ => evs.push(s(data)),
        }
    }
    if rng.size(4) > 1 {
        evs.push(close());
    }
    evs
}

#[test]
fn random_soups_never_panic_and_do_not_depend_on_packet_boundaries() {
    let mut rng = Rng::new(42);
    let cfgs = [HttpConfig::default(), small()];
    for i in 0..1000 {
        let evs = soup(&mut rng);
        let cfg = &cfgs[i % 2];
        let o = run_cfg(cfg, i % 3 != 0, &evs);
        assert!(o.conn.memory() < 1 << 20, "{}", o.conn.memory());
        for call in &o.calls {
            assert!(call.request.body.prefix.len() <= cfg.body_prefix_bytes);
        }
    }
}

#[test]
fn an_idle_keep_alive_connection_holds_no_queue() {
    // A million idle connections must not each keep the request queue they once used.
    let o = run(&[
        c(req("GET", "/a", &["Host: x"])),
        s(resp(200, b"ok")),
        c(req("GET", "/b", &["Host: x"])),
        s(resp(200, b"ok")),
    ]);
    assert_eq!(o.calls.len(), 2);
    assert_eq!(o.conn.memory(), 0);
}
