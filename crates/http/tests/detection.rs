//! Recognising HTTP by content on any port, and client/server roles by content when the
//! capture layer only guessed them.

mod common;

use apiscope_http::HttpConfig;
use common::*;

#[test]
fn garbage_connection_makes_no_calls() {
    for first in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS client hello"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00\x00\x00\x10binary protocol",
        b"hello there, this is not HTTP\r\n",
        b"GET key\r\n",
    ] {
        let o = run(&[
            c(first),
            s(resp(
                200,
                b"looks like http but the stream did not start as http",
            )),
            c(req("GET", "/x", &[])),
            close(),
        ]);
        assert!(o.calls.is_empty(), "{first:?}");
        assert_eq!(o.conn.is_http(), Some(false), "{first:?}");
        assert_eq!(o.stats.non_http_connections, 1);
        assert_eq!(o.conn.memory(), 0);
    }
}

#[test]
fn server_speaks_first_non_http_protocol() {
    let o = run(&[
        s(b"220 mail.example ESMTP ready\r\n"),
        c(b"EHLO client\r\n"),
        close(),
    ]);
    assert!(o.calls.is_empty());
    assert_eq!(o.conn.is_http(), Some(false));
}

#[test]
fn http_on_any_port_is_recognised_and_undecided_before_enough_bytes() {
    let cfg = HttpConfig::default();
    let o = run_split(&cfg, true, &[c(b"GET /x HT")], Split::Whole);
    assert_eq!(o.conn.is_http(), None);
    let o = run(&[c(req("PATCH", "/x", &[])), s(resp(200, b""))]);
    assert_eq!(o.conn.is_http(), Some(true));
    assert_eq!(o.calls.len(), 1);
}

#[test]
fn roles_swap_when_the_guessed_client_sends_responses() {
    let cfg = HttpConfig::default();
    // Uncertain orientation: the capture layer's "client" is really the server.
    let o = run_cfg(
        &cfg,
        false,
        &[
            s(req("GET", "/swapped", &["Host: h"])),
            c(resp(200, b"hello")),
            s(req("GET", "/again", &[])),
            c(resp(404, b"")),
            close(),
        ],
    );
    assert!(o.conn.roles_swapped());
    assert_eq!(o.stats.roles_swapped, 1);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/swapped", Some(200)), ("GET", "/again", Some(404))])
    );
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.prefix, b"hello");

    // Decided by the request side first.
    let o = run_cfg(
        &cfg,
        false,
        &[s(req("GET", "/r", &[])), c(resp(200, b"")), close()],
    );
    assert!(o.conn.roles_swapped());
    assert_eq!(summary(&o.calls), sum(&[("GET", "/r", Some(200))]));
}

#[test]
fn certain_orientation_never_swaps() {
    let o = run(&[
        c(resp(200, b"")),
        s(req("GET", "/", &[])),
        c(req("GET", "/real", &[])),
        s(resp(200, b"")),
        close(),
    ]);
    assert!(!o.conn.roles_swapped());
    assert_eq!(summary(&o.calls), sum(&[("GET", "/real", Some(200))]));
}

#[test]
fn uncertain_orientation_without_swap() {
    let cfg = HttpConfig::default();
    let o = run_cfg(
        &cfg,
        false,
        &[c(req("GET", "/n", &[])), s(resp(200, b"")), close()],
    );
    assert!(!o.conn.roles_swapped());
    assert_eq!(o.calls.len(), 1);
}

#[test]
fn memory_stays_small_while_streaming_a_large_body() {
    let cfg = HttpConfig::default();
    let mut conn = apiscope_http::HttpConn::new(&cfg, true);
    let mut stats = apiscope_http::HttpStats::default();
    let mut out = Vec::new();
    let dir = apiscope_capture::Direction::ToClient;
    conn.on_data(
        &cfg,
        apiscope_capture::Direction::ToServer,
        ts(0),
        &req("GET", "/big", &[]),
        &mut out,
        &mut stats,
    );
    conn.on_data(
        &cfg,
        dir,
        ts(1),
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n",
        &mut out,
        &mut stats,
    );
    let chunk = vec![b'a'; 1460];
    for _ in 0..10_000 {
        conn.on_data(&cfg, dir, ts(2), &chunk, &mut out, &mut stats);
    }
    assert!(conn.memory() < 100_000, "{}", conn.memory());
    // A partial head is the only thing copied, and it is bounded.
    conn.on_close(&cfg, ts(3), &mut out, &mut stats);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].response.as_ref().unwrap().body.wire_bytes,
        14_600_000
    );
}

#[test]
fn http_inside_a_socks5_tunnel() {
    let o = run(&[
        c(b"\x05\x01\x00"),
        s(b"\x05\x00"),
        c(b"\x05\x01\x00\x03\x0ewww.osnews.com\x00\x50"),
        s(b"\x05\x00\x00\x01\xc0\xa8\x00\x1f\x0a\x80"),
        c(req(
            "GET",
            "/images/printer2.gif",
            &["Host: www.osnews.com"],
        )),
        s(resp(200, b"GIF89a")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/images/printer2.gif", Some(200))])
    );
    assert_eq!(o.stats.socks_handshakes, 1);
    assert_eq!(o.stats.resync_skipped_bytes, 0);

    // With username/password, greeting and request sent together.
    let o = run(&[
        c(b"\x05\x01\x02"),
        s(b"\x05\x02"),
        c(b"\x01\x03bob\x02pw"),
        s(b"\x01\x00"),
        c(cat(&[
            b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50",
            &req("GET", "/", &[]),
        ])),
        s(cat(&[
            b"\x05\x00\x00\x01\x0a\x00\x00\x01\x00\x50",
            &resp(204, b""),
        ])),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/", Some(204))]));
}

#[test]
fn http_inside_a_socks4a_tunnel_and_tls_inside_socks() {
    let o = run(&[
        c(cat(&[
            b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00api.example\x00",
            &req("GET", "/v1", &[]),
        ])),
        s(cat(&[b"\x00\x5a\x00\x50\x00\x00\x00\x00", &resp(200, b"")])),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/v1", Some(200))]));

    let o = run(&[
        c(b"\x05\x01\x00"),
        s(b"\x05\x00"),
        c(b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"),
        s(b"\x05\x00\x00\x01\x0a\x00\x00\x01\x01\xbb"),
        c(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        close(),
    ]);
    assert!(o.calls.is_empty());
    assert_eq!(o.conn.is_http(), Some(false));
}

/// Regression (sv_tcp-stream-after-swap): picked up mid-stream with a response before any
/// request byte, that response answers a request from before the capture; it must not be
/// paired with the next request.
#[test]
fn response_before_any_request_on_a_mid_stream_connection_is_an_orphan() {
    let cfg = HttpConfig::default();
    let o = run_cfg(
        &cfg,
        false,
        &[
            s(resp(200, b"old")),
            c(req("GET", "/favicon.ico", &[])),
            s(resp(404, b"")),
            close(),
        ],
    );
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/favicon.ico", Some(404))])
    );
    assert_eq!(o.stats.orphan_responses, 1);
}

#[test]
fn proxy_protocol_headers_before_the_first_request_are_skipped() {
    // Version 1 (text), as HAProxy or an AWS NLB sends it.
    let mut first = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 80\r\n".to_vec();
    first.extend(req("GET", "/a", &["Host: x"]));
    let o = run(&[
        c(first),
        s(resp(200, b"ok")),
        c(req("GET", "/b", &["Host: x"])),
        s(resp(404, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", Some(404))])
    );
    assert_eq!(o.stats.proxy_headers, 1);
    assert!(o.calls.iter().all(|c| c.anomalies.is_empty()));

    // Version 2 (binary), PROXY command, TCP over IPv4.
    let mut first = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    first.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0, 80]);
    first.extend(req("POST", "/v2", &["Host: x", "Content-Length: 2"]));
    first.extend_from_slice(b"hi");
    let o = run(&[c(first), s(resp(201, b""))]);
    assert_eq!(summary(&o.calls), sum(&[("POST", "/v2", Some(201))]));
    assert_eq!(o.stats.proxy_headers, 1);

    // A method that merely starts with P is not a PROXY header.
    let o = run(&[c(req("PROPFIND", "/d", &["Host: x"])), s(resp(207, b""))]);
    assert_eq!(summary(&o.calls), sum(&[("PROPFIND", "/d", Some(207))]));
    assert_eq!(o.stats.proxy_headers, 0);
}

#[test]
fn empty_lines_before_the_first_request_are_ignored() {
    // RFC 9112, section 2.2: a server ignores at least one empty line before a request-line.
    let o = run(&[
        c([&b"\r\n\r\n"[..], &req("GET", "/a", &["Host: x"])].concat()),
        s(resp(200, b"")),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/a", Some(200))]));
    assert_eq!(o.stats.non_http_connections, 0);
    // Only empty lines: nothing, and nothing given up within the scan budget.
    let o = run(&[c(b"\r\n\r\n"), close()]);
    assert!(o.calls.is_empty());
    assert_eq!(o.stats.non_http_connections, 0);
}
