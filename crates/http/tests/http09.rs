//! HTTP/0.9: a request line without version, answered by a bare body.
//!
//! Decision: the request is reported with version 0.9 and anomaly `Http09`; a server answer
//! that does not start with `HTTP/` is the head-less 0.9 response, reported with status 0,
//! version 0.9, no headers and the rest of the server stream as body (Zeek logs the same
//! status 0; tshark does not see these requests at all).

mod common;

use apiscope_http::{Anomaly, Version};
use common::*;

#[test]
fn request_and_headless_response() {
    let page = b"<html>\n  The Zeek Network Security Monitor\n</html>\n";
    let o = run(&[c(b"GET /zeek.html\r\n"), s(page), close()]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/zeek.html", Some(0))]));
    let call = &o.calls[0];
    assert_eq!(call.request.version, Version::Http09);
    assert!(call.request.headers.is_empty());
    let r = call.response.as_ref().unwrap();
    assert_eq!(r.version, Version::Http09);
    assert_eq!(r.reason, "");
    assert!(r.headers.is_empty());
    assert_eq!(r.body.prefix, page);
    assert_eq!(r.body.bytes, 51);
    assert!(!r.body.truncated);
    assert_eq!(call.anomalies, anomalies(&[Anomaly::Http09]));
    assert_eq!(o.stats.http09_requests, 1);
    assert_eq!(o.conn.is_http(), Some(true));
}

#[test]
fn request_line_committed_at_close_without_answer() {
    let o = run(&[c(b"GET /only\n"), close()]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/only", None)]));
    assert_eq!(o.calls[0].request.version, Version::Http09);
}

#[test]
fn header_lines_after_a_versionless_request_line_are_read() {
    // A client that forgot the protocol version but sent headers anyway (Suricata's
    // http-missing-protocol case).
    let o = run(&[
        c(b"GET /gen.php?generate=1&hwid=2\r\nHost: 5.8.88.25\r\nConnection:keep-alive\r\n\r\n"),
        s(b"xzscxc#$#AzMTax4wGxA5DSBkODw8e3d3PCsADwwXfXdienNreXM=$#$vxxd"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/gen.php?generate=1&hwid=2", Some(0))])
    );
    let call = &o.calls[0];
    assert_eq!(call.request.host(), Some("5.8.88.25"));
    assert_eq!(call.request.header("connection"), Some(&b"keep-alive"[..]));
    assert_eq!(call.response.as_ref().unwrap().body.bytes, 60);
}

#[test]
fn zero_nine_request_followed_by_an_http11_request() {
    let o = run(&[
        c(b"GET /a\r\nGET /b HTTP/1.1\r\n\r\n"),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
        s(resp(200, b"y")),
    ]);
    // A 0.9 request answered with a real status line: parsed as a normal response.
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", Some(200))])
    );
    assert_eq!(o.calls[0].request.version, Version::Http09);
    assert_eq!(o.calls[1].request.version, Version::Http11);
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::Http09]));
    assert!(o.calls[1].anomalies.is_empty());
}

#[test]
fn headless_answer_to_an_http11_request_is_no_response() {
    // curl asked with HTTP/1.1 and the server answered 0.9-style: the call has no response
    // (Zeek logs no status either) and the bytes are counted as skipped.
    let o = run(&[
        c(req("GET", "/zeek.html", &["Host: localhost"])),
        s(b"<html>\n  body\n</html>\n"),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/zeek.html", None)]));
    assert_eq!(o.stats.resync_skipped_bytes, 22);
}

#[test]
fn response_first_then_zero_nine_request() {
    // Zeek's http-09-content-length-confusion shape: a response arrives before any request.
    let o = run(&[
        s(b"HTTP/1.1 200 OK\r\n"),
        s(b"Content-Length: 4\r\n"),
        s(b"\r\n"),
        c(b"GET /\r\n"),
        s(b"\r\n"),
        c(b"\r\n"),
        s(b"this is too much.\n"),
        close(),
    ]);
    // The held response pairs with the 0.9 request; its 4-byte body takes "\r\nth".
    assert_eq!(summary(&o.calls), sum(&[("GET", "/", Some(200))]));
    assert!(o.calls[0].anomalies.contains(Anomaly::Http09));
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.prefix, b"\r\nth");
}
