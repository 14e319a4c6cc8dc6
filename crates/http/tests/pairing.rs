//! Request/response pairing: keep-alive, pipelining, responses before requests, the
//! waiting-queue bound, timestamps and the pending-time API.

mod common;

use apiscope_capture::{Direction, Timestamp};
use apiscope_http::{Anomaly, HttpConfig, HttpConn, HttpStats, Version};
use common::*;

#[test]
fn keep_alive_two_calls() {
    let o = run(&[
        c(req("GET", "/a", &["Host: api.example"])),
        s(resp(200, b"first")),
        c(cat(&[
            &req("POST", "/b", &["Host: api.example", "Content-Length: 3"]),
            b"xyz",
        ])),
        s(resp(201, b"second!")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("POST", "/b", Some(201))])
    );
    let (a, b) = (&o.calls[0], &o.calls[1]);
    assert_eq!((a.seq, b.seq), (0, 1));
    assert_eq!(a.request.version, Version::Http11);
    assert_eq!(a.request.host(), Some("api.example"));
    assert_eq!(a.request.body.wire_bytes, 0);
    let ra = a.response.as_ref().unwrap();
    assert_eq!(ra.reason, "X");
    assert_eq!(ra.body.prefix, b"first");
    assert_eq!((ra.body.wire_bytes, ra.body.bytes), (5, 5));
    assert!(!ra.body.truncated);
    assert_eq!(b.request.body.prefix, b"xyz");
    assert_eq!(b.response.as_ref().unwrap().body.bytes, 7);
    assert!(a.anomalies.is_empty() && b.anomalies.is_empty());
    assert_eq!(o.stats.calls, 2);
    assert_eq!(o.stats.requests, 2);
    assert_eq!(o.stats.responses, 2);
    assert_eq!(o.conn.is_http(), Some(true));
}

#[test]
fn calls_are_emitted_as_soon_as_complete() {
    let cfg = HttpConfig::default();
    let mut conn = HttpConn::new(&cfg, true);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    conn.on_data(
        &cfg,
        Direction::ToServer,
        ts(0),
        &req("GET", "/", &[]),
        &mut out,
        &mut stats,
    );
    assert!(out.is_empty());
    conn.on_data(
        &cfg,
        Direction::ToClient,
        ts(1),
        &resp(204, b""),
        &mut out,
        &mut stats,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(conn.earliest_pending(), None);
}

#[test]
fn pipelining_three_requests_then_three_responses() {
    let reqs = cat(&[
        &req("GET", "/1", &["Host: h"]),
        &req("GET", "/2", &["Host: h"]),
        &cat(&[&req("PUT", "/3", &["Host: h", "Content-Length: 2"]), b"ok"]),
    ]);
    let resps = cat(&[&resp(200, b"one"), &resp(404, b""), &resp(200, b"three")]);
    let o = run(&[c(reqs), s(resps), close()]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/1", Some(200)),
            ("GET", "/2", Some(404)),
            ("PUT", "/3", Some(200))
        ])
    );
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.prefix, b"one");
    assert_eq!(o.calls[2].response.as_ref().unwrap().body.prefix, b"three");
    assert_eq!(o.calls[2].request.body.prefix, b"ok");
    assert_eq!(
        o.calls.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn response_before_request_is_held_and_paired() {
    // The request direction had a hole, so the capture layer delivered the response first.
    let o = run(&[
        s(resp(200, b"early")),
        c(req("GET", "/late", &["Host: h"])),
        s(resp(202, b"")),
        c(req("GET", "/next", &["Host: h"])),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/late", Some(200)), ("GET", "/next", Some(202))])
    );
    assert_eq!(o.stats.orphan_responses, 0);
}

#[test]
fn a_head_response_before_its_request_has_no_body() {
    // The directions were captured out of order: the response to a HEAD came first. Its
    // Content-Length describes the resource, not a body, so it must wait for the request
    // before its framing is known; otherwise the next response becomes its "body".
    let o = run(&[
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        c(req("HEAD", "/h", &["Host: h"])),
        s(resp(201, b"next")),
        c(req("GET", "/n", &["Host: h"])),
        s(resp(200, b"last")),
        c(req("GET", "/l", &["Host: h"])),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("HEAD", "/h", Some(200)),
            ("GET", "/n", Some(201)),
            ("GET", "/l", Some(200))
        ])
    );
    let bodies: Vec<_> = o
        .calls
        .iter()
        .map(|c| c.response.as_ref().unwrap().body.prefix.clone())
        .collect();
    assert_eq!(bodies, [&b""[..], b"next", b"last"]);
    assert_eq!(o.stats.orphan_responses, 0);
    assert_eq!(o.stats.responses_framed_alone, 0);
}

#[test]
fn a_response_held_for_its_request_is_an_orphan_when_none_comes() {
    // Held for a request that never comes: at close it is parsed and counted, as before.
    let o = run(&[s(resp(200, b"a")), s(resp(200, b"b")), close()]);
    assert!(o.calls.is_empty());
    assert_eq!(o.stats.orphan_responses, 2);
    assert_eq!(o.stats.heads_lost_to_close, 0);
    assert_eq!(o.stats.responses_framed_alone, 2);
    // And it does not wait past `max_response_wait_bytes`: a long body goes through as a
    // body.
    let cfg = HttpConfig {
        max_response_wait_bytes: 100,
        ..HttpConfig::default()
    };
    let big = vec![b'x'; 5000];
    let o = run_cfg(
        &cfg,
        true,
        &[
            s(resp(200, &big)),
            c(req("GET", "/late", &[])),
            s(resp(202, b"")),
            c(req("GET", "/next", &[])),
            close(),
        ],
    );
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/late", Some(200)), ("GET", "/next", Some(202))])
    );
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.bytes, 5000);
    assert_eq!(o.stats.responses_framed_alone, 1);
}

#[test]
fn unanswered_requests_and_orphan_responses_at_close() {
    let o = run(&[
        c(cat(&[&req("GET", "/x", &[]), &req("GET", "/y", &[])])),
        s(resp(200, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/x", Some(200)), ("GET", "/y", None)])
    );
    assert_eq!(o.stats.calls_without_response, 1);

    let o = run(&[s(resp(200, b"a")), s(resp(200, b"b")), close()]);
    assert!(o.calls.is_empty());
    assert_eq!(o.stats.orphan_responses, 2);
}

#[test]
fn pending_bound_emits_oldest_without_response() {
    let cfg = HttpConfig {
        max_pending: 2,
        ..HttpConfig::default()
    };
    let reqs = cat(&[
        &req("GET", "/1", &[]),
        &req("GET", "/2", &[]),
        &req("GET", "/3", &[]),
    ]);
    let o = run_cfg(
        &cfg,
        true,
        &[c(reqs), s(resp(200, b"")), s(resp(201, b"")), close()],
    );
    // /1 was pushed out when /3 arrived; the first response then answers /2.
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/1", None),
            ("GET", "/2", Some(200)),
            ("GET", "/3", Some(201))
        ])
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::PendingOverflow]));
    assert_eq!(o.stats.pending_overflow, 1);

    // Held responses are bounded the same way.
    let o = run_cfg(
        &cfg,
        true,
        &[
            s(cat(&[&resp(200, b""), &resp(201, b""), &resp(202, b"")])),
            c(req("GET", "/", &[])),
            close(),
        ],
    );
    assert_eq!(summary(&o.calls), sum(&[("GET", "/", Some(201))]));
    assert_eq!(o.stats.orphan_responses, 2);
}

#[test]
fn timestamps_of_first_and_last_byte() {
    let head = req("POST", "/up", &["Content-Length: 6"]);
    let o = run(&[
        c(&head[..5]),
        c(&head[5..]),
        c(b"abc"),
        c(b"def"),
        s(b"HTTP/1.1 200 OK\r\n"),
        s(b"Content-Length: 2\r\n\r\nok"),
    ]);
    let call = &o.calls[0];
    assert_eq!(call.request.ts, ts(0));
    assert_eq!(call.request.ts_end, ts(3));
    let r = call.response.as_ref().unwrap();
    assert_eq!((r.ts, r.ts_end), (ts(4), ts(5)));
}

#[test]
fn earliest_pending_tracks_partial_and_waiting_requests() {
    let cfg = HttpConfig::default();
    let mut conn = HttpConn::new(&cfg, true);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    let t = |s| Timestamp::from_secs(s);
    assert_eq!(conn.earliest_pending(), None);
    conn.on_data(
        &cfg,
        Direction::ToServer,
        t(10),
        b"GET /a HT",
        &mut out,
        &mut stats,
    );
    assert_eq!(conn.earliest_pending(), Some(t(10)));
    conn.on_data(
        &cfg,
        Direction::ToServer,
        t(11),
        b"TP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        &mut out,
        &mut stats,
    );
    assert_eq!(conn.earliest_pending(), Some(t(10)));
    conn.on_data(
        &cfg,
        Direction::ToClient,
        t(12),
        &resp(200, b""),
        &mut out,
        &mut stats,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(conn.earliest_pending(), Some(t(11)));
    conn.on_close(&cfg, t(13), &mut out, &mut stats);
    assert_eq!(out.len(), 2);
    assert_eq!(conn.earliest_pending(), None);
}

#[test]
fn http10_close_delimited_response() {
    let o = run(&[
        c(b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n"),
        s(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of "),
        s(b"this until close"),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/old", Some(200))]));
    let call = &o.calls[0];
    assert_eq!(call.request.version, Version::Http10);
    let r = call.response.as_ref().unwrap();
    assert_eq!(r.version, Version::Http10);
    assert_eq!(r.body.prefix, b"all of this until close");
    assert!(!r.body.truncated);
    assert_eq!(r.ts_end, ts(2));
}

#[test]
fn methods_and_targets_as_sent() {
    let o = run(&[
        c(req("get", "/lower", &[])),
        s(resp(200, b"")),
        c(cat(&[
            &req("QUERY", "/users?x=%20y", &["Content-Length: 2"]),
            b"{}",
        ])),
        s(resp(200, b"")),
        c(req("GET", "http://user@api.example:8080/p/q?z=1", &[])),
        s(resp(200, b"")),
        c(req("OPTIONS", "*", &[])),
        s(resp(204, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("get", "/lower", Some(200)),
            ("QUERY", "/users?x=%20y", Some(200)),
            ("GET", "http://user@api.example:8080/p/q?z=1", Some(200)),
            ("OPTIONS", "*", Some(204)),
        ])
    );
    assert_eq!(o.calls[1].request.path(), "/users");
    assert_eq!(o.calls[1].request.body.bytes, 2);
    assert_eq!(o.calls[2].request.host(), Some("api.example:8080"));
    assert_eq!(o.calls[2].request.path(), "/p/q");
}

#[test]
fn headers_are_kept_as_sent() {
    let o = run(&[
        c(req(
            "GET",
            "/",
            &["Host: h", "X-Dup: 1", "x-dup: 2", "Accept:  */*  "],
        )),
        s(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let r = &o.calls[0].request;
    let names: Vec<_> = r.headers.iter().map(|h| h.name).collect();
    assert_eq!(names, ["Host", "X-Dup", "x-dup", "Accept"]);
    assert_eq!(r.header("X-DUP"), Some(&b"1"[..]));
    assert_eq!(r.header("accept"), Some(&b"*/*"[..]));
    let resp = o.calls[0].response.as_ref().unwrap();
    assert_eq!(resp.header("set-cookie"), Some(&b"a=b"[..]));
}

#[test]
fn leading_empty_lines_between_messages_are_ignored() {
    let o = run(&[
        c(cat(&[
            &req("POST", "/a", &["Content-Length: 1"]),
            b"x\r\n\r\n",
            &req("GET", "/b", &[]),
        ])),
        s(cat(&[&resp(200, b""), &resp(200, b"")])),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/a", Some(200)), ("GET", "/b", Some(200))])
    );
    assert_eq!(o.stats.resync_skipped_bytes, 0);
    assert_eq!(o.stats.unparseable_heads, 0);
}
