//! Gaps are normal input: inside Content-Length, chunked and close-delimited bodies, inside
//! heads, at the start of a stream; and mid-stream pickup.

mod common;

use apiscope_capture::Direction;
use apiscope_http::{Anomaly, HttpConfig};
use common::*;

#[test]
fn gap_inside_content_length_body_keeps_the_boundary() {
    let o = run(&[
        c(req("GET", "/a", &[])),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234"),
        gap_s(10),
        s(b"ABCDE"),
        c(req("GET", "/b", &[])),
        s(resp(200, b"next")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", Some(200))])
    );
    let call = &o.calls[0];
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!((b.wire_bytes, b.gap_bytes), (10, 10));
    assert_eq!(b.prefix, b"01234ABCDE");
    assert!(b.truncated);
    assert_eq!(call.anomalies, anomalies(&[Anomaly::BodyGap]));
    assert!(o.calls[1].anomalies.is_empty());
    assert_eq!(o.stats.body_gaps, 1);
    assert_eq!(o.stats.gap_bytes, 10);
}

#[test]
fn gap_running_past_the_end_of_a_body_resynchronises() {
    let o = run(&[
        c(cat(&[&req("GET", "/a", &[]), &req("GET", "/b", &[])])),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123"),
        gap_s(10), // 6 bytes of body, then 4 bytes of the next response's head
        s(b"/1.1 204 No Content\r\n\r\n"),
        c(req("GET", "/c", &[])),
        s(resp(201, b"")),
        close(),
    ]);
    // The 204's head was cut: it is skipped, and /b is left without a response, since /c
    // was sent after the gap (its client had the lost bytes): the resynchronised 201 is
    // paired with /c, not shifted onto /b.
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/a", Some(200)),
            ("GET", "/b", None),
            ("GET", "/c", Some(201))
        ])
    );
    assert_eq!(o.stats.responses_lost_to_gap, 1);
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!((b.wire_bytes, b.gap_bytes), (4, 6));
    assert_eq!(o.stats.resyncs, 1);
}

#[test]
fn gap_in_chunked_body_within_a_chunk_continues() {
    let o = run(&[
        c(req("GET", "/a", &[])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123"),
        gap_s(8),
        s(b"CDEF\r\n0\r\n\r\n"),
        c(req("GET", "/b", &[])),
        s(resp(200, b"")),
    ]);
    assert_eq!(o.calls.len(), 2);
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!((b.wire_bytes, b.gap_bytes), (8, 8));
    assert!(b.truncated);
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::BodyGap]));
}

#[test]
fn gap_across_chunk_framing_ends_the_message_and_resynchronises() {
    let o = run(&[
        c(cat(&[&req("GET", "/a", &[]), &req("GET", "/b", &[])])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n"),
        gap_s(30),
        s(b"ia\r\n0\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", Some(202))])
    );
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!(b.prefix, b"Wiki");
    assert_eq!((b.wire_bytes, b.gap_bytes), (4, 30));
    assert!(b.truncated);
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::BodyGap]));
    assert_eq!(o.calls[1].response.as_ref().unwrap().body.prefix, b"ok");
    assert_eq!(o.stats.resync_skipped_bytes, 9);
}

#[test]
fn gap_in_close_delimited_body_is_accounted() {
    let o = run(&[
        c(b"GET / HTTP/1.0\r\n\r\n"),
        s(b"HTTP/1.0 200 OK\r\n\r\nabc"),
        gap_s(100),
        s(b"xyz"),
        close(),
    ]);
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!((b.wire_bytes, b.gap_bytes), (6, 100));
    assert_eq!(b.prefix, b"abcxyz");
    assert!(b.truncated);
}

#[test]
fn gap_in_request_head_drops_it_but_keeps_pairing() {
    let o = run(&[
        c(b"GET /lost HTTP/1.1\r\nHost: h\r\nUser-Ag"),
        gap_c(20),
        c(b"ent: x\r\n\r\nGET /found HTTP/1.1\r\nHost: h\r\n\r\n"),
        s(resp(200, b"for lost")),
        s(resp(200, b"for found")),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/found", Some(200))]));
    assert_eq!(
        o.calls[0].response.as_ref().unwrap().body.prefix,
        b"for found"
    );
    assert_eq!(o.stats.heads_lost_to_gap, 1);
    assert_eq!(o.stats.responses_to_dropped_requests, 1);
    assert_eq!(o.calls[0].seq, 0);
}

#[test]
fn gap_in_response_head_leaves_request_unanswered() {
    let o = run(&[
        c(cat(&[&req("GET", "/1", &[]), &req("GET", "/2", &[])])),
        s(b"HTTP/1.1 200 OK\r\nContent-Le"),
        gap_s(40),
        s(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/1", None), ("GET", "/2", Some(201))])
    );
    assert_eq!(o.stats.heads_lost_to_gap, 1);
}

#[test]
fn gap_in_request_body_with_gzip_stops_decoding() {
    let o = run(&[
        c(cat(&[
            &req(
                "POST",
                "/z",
                &["Content-Encoding: gzip", "Content-Length: 30"],
            ),
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        ])),
        gap_c(22),
        s(resp(200, b"")),
    ]);
    let b = &o.calls[0].request.body;
    // The decoded length is unknown: the wire length stands for it.
    assert_eq!((b.wire_bytes, b.gap_bytes, b.bytes), (8, 22, 8));
    assert!(b.truncated);
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::BodyGap]));
}

#[test]
fn mid_stream_start_inside_a_body() {
    // Picked up mid-stream (no handshake): each direction starts inside a message.
    let cfg = HttpConfig::default();
    let o = run_cfg(
        &cfg,
        false,
        &[
            s(b"tail of some earlier body\r\nmore\nHTTP/1.1 in the text\r\n"),
            c(b"mple&b=2\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
            s(resp(200, b"answer")),
            close(),
        ],
    );
    assert_eq!(summary(&o.calls), sum(&[("GET", "/next", Some(200))]));
    assert!(!o.conn.roles_swapped());
    assert!(o.stats.resync_skipped_bytes > 0);
    assert_eq!(o.conn.is_http(), Some(true));
}

#[test]
fn stream_starting_with_a_gap_resynchronises() {
    let o = run(&[
        gap_c(1000),
        c(b"ody bytes\r\nPOST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        gap_s(500),
        s(b"junk\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("POST", "/p", Some(200))]));
    assert_eq!(o.stats.resyncs, 2);
}

#[test]
fn resync_ignores_lowercase_and_unknown_methods_but_finds_webdav() {
    let o = run(&[
        gap_c(10),
        c(b"xx\r\nget /no HTTP/1.1\r\n\r\nFOO /no HTTP/1.1\r\n\r\nPROPFIND /dav HTTP/1.1\r\nDepth: 1\r\n\r\n"),
        s(resp(207, b"")),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("PROPFIND", "/dav", Some(207))]));
}

#[test]
fn undecided_connection_gives_up_after_the_scan_budget() {
    let cfg = HttpConfig {
        undecided_scan_bytes: 1000,
        ..HttpConfig::default()
    };
    let noise: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let o = run_cfg(&cfg, false, &[c(&noise), s(&noise), close()]);
    assert!(o.calls.is_empty());
    assert_eq!(o.conn.is_http(), Some(false));
    assert_eq!(o.stats.non_http_connections, 1);
}

#[test]
fn a_response_lost_in_a_gap_does_not_shift_the_pairs_after_it() {
    // Keep-alive, not pipelined: /b is sent after the client had /a's response, which the
    // capture lost whole; the response after the gap is /b's.
    let o = run(&[
        c(req("GET", "/a", &[])),
        gap_s(40),
        c(req("GET", "/b", &[])),
        s(resp(404, b"")),
        c(req("GET", "/c", &[])),
        s(resp(200, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/a", None),
            ("GET", "/b", Some(404)),
            ("GET", "/c", Some(200))
        ])
    );
    assert_eq!(o.stats.responses_lost_to_gap, 1);
}

#[test]
fn pipelined_requests_sent_before_a_gap_keep_their_order() {
    // Both requests went out before the gap: nothing says which response the gap held, so
    // the next response pairs with the first, as without the rule.
    let o = run(&[
        c(cat(&[&req("GET", "/a", &[]), &req("GET", "/b", &[])])),
        gap_s(40),
        s(resp(200, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", None)])
    );
    assert_eq!(o.stats.responses_lost_to_gap, 0);
}

#[test]
fn a_request_lost_in_a_gap_does_not_take_the_next_requests_response() {
    // The client's /b is not in the capture; the server answers it (202), and the capture
    // layer declares the hole once /c is buffered after it, dated by the server's
    // acknowledgment of its end (the 202's packet). The 202 answers the lost request: it is
    // dropped, not paired with /c.
    let lost = req("GET", "/b", &["Host: x"]).len() as u64;
    let events = [
        c(req("GET", "/a", &["Host: x"])),
        s(resp(201, b"")),
        s(resp(202, b"")),
        Ev::DatedGap(Direction::ToServer, lost, 2),
        c(req("GET", "/c", &["Host: x"])),
        s(resp(203, b"")),
        close(),
    ];
    let o = run(&events);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(201)), ("GET", "/c", Some(203))])
    );
    assert_eq!(o.stats.responses_to_lost_requests, 1);
    // The same when the gap is reported before the response arrives.
    let o = run(&[
        c(req("GET", "/a", &["Host: x"])),
        s(resp(201, b"")),
        gap_c(lost),
        s(resp(202, b"")),
        c(req("GET", "/c", &["Host: x"])),
        s(resp(203, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(201)), ("GET", "/c", Some(203))])
    );
    // A response captured before its request with no gap (skewed taps) still waits for it.
    let o = run(&[
        s(resp(200, b"")),
        c(req("GET", "/a", &["Host: x"])),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/a", Some(200))]));
}

#[test]
fn after_a_gap_the_next_message_is_found_even_without_a_line_end_before_it() {
    // A gap inside a response head leaves the rest of that response (its body has no line
    // end) running straight into the next response: the start line is found mid-line.
    let r202 = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    let o = run(&[
        c(req("GET", "/a", &["Host: x"])),
        s(resp(201, b"")),
        c(req("GET", "/b", &["Host: x"])),
        s(&r202[..10]),
        gap_s(5),
        s(&r202[15..]),
        c(req("GET", "/c", &["Host: x"])),
        s(resp(203, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/a", Some(201)),
            ("GET", "/b", None),
            ("GET", "/c", Some(203))
        ])
    );
    // Garbage without a line end on the request side runs into the next request.
    let o = run(&[
        c(req("GET", "/a", &["Host: x"])),
        s(resp(200, b"")),
        gap_c(3),
        c(cat(&[
            b"tail-of-lost-body",
            &req("POST", "/d", &["Host: x"]),
        ])),
        s(resp(201, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("POST", "/d", Some(201))])
    );
}
