//! Message framing (RFC 9112 §6): Content-Length, chunked, close-delimited, the no-body
//! responses, interim responses, and the protocol switches that end HTTP on a connection.

mod common;

use apiscope_http::Anomaly;
use common::*;

#[test]
fn chunked_with_extensions_and_trailers() {
    let body = b"4;name=value\r\nWiki\r\n5 ; quoted=\"a;b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
    let o = run(&[
        c(cat(&[
            &req("POST", "/c", &["Transfer-Encoding: chunked"]),
            b"3\r\nabc\r\n0\r\n\r\n",
        ])),
        s(cat(&[
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
        ])),
        c(req("GET", "/after", &[])),
        s(resp(200, b"ok")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/c", Some(200)), ("GET", "/after", Some(200))])
    );
    let call = &o.calls[0];
    assert_eq!(call.request.body.prefix, b"abc");
    assert_eq!(call.request.body.wire_bytes, 3);
    let r = call.response.as_ref().unwrap();
    assert_eq!(r.body.prefix, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!((r.body.wire_bytes, r.body.bytes), (23, 23));
    assert!(!r.body.truncated);
    assert!(call.anomalies.is_empty());
    assert_eq!(o.calls[1].response.as_ref().unwrap().body.prefix, b"ok");
}

#[test]
fn chunked_tolerates_bare_lf_and_uppercase_hex() {
    let o = run(&[
        c(req("GET", "/", &[])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\nabcdefghij\n0\n\n"),
        c(req("GET", "/2", &[])),
        s(resp(204, b"")),
    ]);
    assert_eq!(o.calls.len(), 2);
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.bytes, 10);
}

#[test]
fn head_204_304_have_no_body() {
    let o = run(&[
        c(req("HEAD", "/h", &[])),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        c(req("DELETE", "/d", &[])),
        s(b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
        c(req("GET", "/n", &["If-None-Match: \"x\""])),
        s(b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
        c(req("GET", "/last", &[])),
        s(resp(200, b"body")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("HEAD", "/h", Some(200)),
            ("DELETE", "/d", Some(204)),
            ("GET", "/n", Some(304)),
            ("GET", "/last", Some(200)),
        ])
    );
    for call in &o.calls[..3] {
        assert_eq!(call.response.as_ref().unwrap().body.wire_bytes, 0);
    }
    assert_eq!(o.calls[3].response.as_ref().unwrap().body.prefix, b"body");
}

#[test]
fn expect_100_continue_and_several_interim_responses() {
    let o = run(&[
        c(req(
            "POST",
            "/upload",
            &["Content-Length: 5", "Expect: 100-continue"],
        )),
        s(b"HTTP/1.1 100 Continue\r\n\r\n"),
        s(b"HTTP/1.1 100 Continue\r\n\r\n"),
        c(b"hello"),
        s(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
        s(resp(201, b"created")),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("POST", "/upload", Some(201))]));
    let r = o.calls[0].response.as_ref().unwrap();
    assert_eq!(r.interim, vec![100, 100, 103]);
    assert_eq!(r.body.prefix, b"created");
    assert_eq!(o.calls[0].request.body.prefix, b"hello");
    assert_eq!(o.stats.interim_responses, 3);
    assert_eq!(o.stats.responses, 1);
}

#[test]
fn a_refused_expectation_lets_the_next_request_through() {
    // The server answers `Expect: 100-continue` with a final status before any body byte
    // (RFC 9110 §10.1.1): the client may leave the body unsent and go on with its next
    // request on the same connection. That request is not body.
    let o = run(&[
        c(req(
            "PUT",
            "/big",
            &["Content-Length: 1000000", "Expect: 100-continue"],
        )),
        s(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
        c(req("GET", "/next", &[])),
        s(resp(200, b"ok")),
        c(req(
            "POST",
            "/chunked",
            &["Transfer-Encoding: chunked", "eXpect: 100-Continue"],
        )),
        s(resp(401, b"who?")),
        c(req("GET", "/last", &[])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("PUT", "/big", Some(417)),
            ("GET", "/next", Some(200)),
            ("POST", "/chunked", Some(401)),
            ("GET", "/last", Some(200)),
        ])
    );
    for i in [0, 2] {
        let call = &o.calls[i];
        assert_eq!(call.request.body.wire_bytes, 0);
        assert_eq!(call.anomalies, anomalies(&[Anomaly::BodyNotSent]));
    }
    assert!(o.calls[1].anomalies.is_empty());
    assert_eq!(o.stats.bodies_not_sent, 2);
}

#[test]
fn a_body_sent_after_a_refused_expectation_is_still_the_body() {
    // The client may also send the body anyway; then it is the body, whatever follows.
    let o = run(&[
        c(req(
            "POST",
            "/up",
            &["Content-Length: 7", "Expect: 100-continue"],
        )),
        s(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
        c(b"{\"a\":1}"),
        c(req("GET", "/next", &[])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/up", Some(417)), ("GET", "/next", Some(200))])
    );
    assert_eq!(o.calls[0].request.body.prefix, b"{\"a\":1}");
    assert!(o.calls[0].anomalies.is_empty());
    assert_eq!(o.stats.bodies_not_sent, 0);
}

#[test]
fn without_a_refusal_a_request_line_in_the_body_stays_body() {
    // No `Expect`, or an expectation the server accepted: the announced body is the body.
    let inner = req("GET", "/looks-like-a-request", &[]);
    let len = format!("Content-Length: {}", inner.len());
    let o = run(&[
        c(req("POST", "/a", &[&len])),
        s(resp(400, b"")),
        c(inner.clone()),
        c(req("POST", "/b", &[&len, "Expect: 100-continue"])),
        s(b"HTTP/1.1 100 Continue\r\n\r\n"),
        c(inner.clone()),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/a", Some(400)), ("POST", "/b", Some(200))])
    );
    assert_eq!(o.stats.bodies_not_sent, 0);
}

#[test]
fn early_final_response_waits_for_request_body() {
    // The server answers before the client finished its body (e.g. 413); the call is
    // complete only when both are.
    let o = run(&[
        c(req("POST", "/big", &["Content-Length: 6"])),
        s(resp(413, b"")),
        c(b"abcdef"),
        c(req("GET", "/next", &[])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/big", Some(413)), ("GET", "/next", Some(200))])
    );
    assert_eq!(o.calls[0].request.body.bytes, 6);
}

#[test]
fn switching_protocols_ends_http() {
    let frame: &[u8] = b"\x81\x05hello";
    let client: &[u8] = b"\x81\x85\x00\x00\x00\x00hello GET /not-http HTTP/1.1\r\n\r\n";
    let late: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";
    let o = run(&[
        c(req(
            "GET",
            "/chat",
            &["Upgrade: websocket", "Connection: Upgrade"],
        )),
        s(cat(&[
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            frame,
        ])),
        c(client),
        s(late),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/chat", Some(101))]));
    assert_eq!(o.stats.upgraded_connections, 1);
    assert_eq!(
        o.stats.tunnel_bytes,
        (frame.len() + client.len() + late.len()) as u64
    );
}

#[test]
fn connect_tunnel_and_refused_connect() {
    let o = run(&[
        c(req("CONNECT", "db.example:443", &["Host: db.example:443"])),
        c(b"\x16\x03\x01\x00\x05hello"),
        s(b"HTTP/1.1 200 Connection established\r\n\r\n"),
        s(b"\x16\x03\x03 server hello"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("CONNECT", "db.example:443", Some(200))])
    );
    assert_eq!(o.calls[0].request.host(), Some("db.example:443"));
    assert_eq!(o.stats.upgraded_connections, 1);
    assert_eq!(o.stats.resync_skipped_bytes, 0);

    // A refused CONNECT: the proxy answers 407 and the client retries on the connection.
    let o = run(&[
        c(req("CONNECT", "db.example:443", &[])),
        s(resp(407, b"auth")),
        c(req(
            "CONNECT",
            "db.example:443",
            &["Proxy-Authorization: Basic eA=="],
        )),
        s(b"HTTP/1.1 200 OK\r\n\r\n"),
        c(b"tunnel bytes"),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("CONNECT", "db.example:443", Some(407)),
            ("CONNECT", "db.example:443", Some(200))
        ])
    );

    // The client pipelined a request behind a CONNECT that was refused: it is parsed.
    let o = run(&[
        c(cat(&[
            &req("CONNECT", "x:443", &[]),
            &req("GET", "/after", &[]),
        ])),
        s(cat(&[&resp(403, b""), &resp(200, b"")])),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("CONNECT", "x:443", Some(403)),
            ("GET", "/after", Some(200))
        ])
    );
}

#[test]
fn request_without_length_has_no_body() {
    let o = run(&[
        c(b"POST /nolen HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\n\r\n"),
        s(cat(&[&resp(200, b""), &resp(200, b"")])),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/nolen", Some(200)), ("GET", "/second", Some(200))])
    );
    assert_eq!(o.calls[0].request.body.wire_bytes, 0);
}

#[test]
fn close_before_end_truncates() {
    let o = run(&[
        c(req("GET", "/", &[])),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"),
        close(),
    ]);
    let r = o.calls[0].response.as_ref().unwrap();
    assert!(r.body.truncated);
    assert_eq!(r.body.wire_bytes, 9);
    assert_eq!(o.stats.bodies_truncated_by_close, 1);

    let o = run(&[
        c(req("GET", "/", &[])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly"),
        close(),
    ]);
    let r = o.calls[0].response.as_ref().unwrap();
    assert!(r.body.truncated);
    assert_eq!(r.body.prefix, b"only");
    assert!(!o.calls[0].anomalies.contains(Anomaly::BodyGap));
}

#[test]
fn a_start_line_where_trailers_would_be_ends_a_chunked_message() {
    // A sender that leaves out the empty line after the last chunk: the next message follows
    // at once. It is not read as a trailer field; the message is flagged InvalidChunk.
    let o = run(&[
        c(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"),
        c(req("GET", "/next", &["Host: x"])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"),
        s(resp(201, b"")),
        c(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("POST", "/up", Some(200)),
            ("GET", "/next", Some(201)),
            ("GET", "/t", Some(200))
        ])
    );
    assert_eq!(o.calls[0].request.body.bytes, 3);
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.bytes, 2);
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::InvalidChunk]));
    assert!(o.calls[1].anomalies.is_empty() && o.calls[2].anomalies.is_empty());
}
