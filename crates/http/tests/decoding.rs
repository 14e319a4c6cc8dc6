//! Content decoding: gzip, x-gzip, deflate (zlib and raw), stacked codings, request
//! bodies, unknown and corrupt codings, and decompression bombs.

mod common;

use std::io::Write;

use apiscope_http::{Anomaly, HttpConfig};
use common::*;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn encoded_response(encoding: &str, body: &[u8]) -> Vec<u8> {
    cat(&[
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        body,
    ])
}

fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for p in body.chunks(piece) {
        v.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        v.extend_from_slice(p);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

const JSON: &[u8] =
    br#"{"users":[{"id":1,"name":"ada"},{"id":2,"name":"grace"},{"id":3,"name":"linus"}]}"#;

#[test]
fn gzip_xgzip_zlib_and_raw_deflate() {
    for (encoding, wire) in [
        ("gzip", gzip(JSON)),
        ("x-gzip", gzip(JSON)),
        ("deflate", zlib(JSON)),
        ("deflate", raw_deflate(JSON)),
        ("GZIP", gzip(JSON)),
    ] {
        let o = run(&[
            c(req("GET", "/u", &[])),
            s(encoded_response(encoding, &wire)),
        ]);
        let b = &o.calls[0].response.as_ref().unwrap().body;
        assert_eq!(b.prefix, JSON, "{encoding}");
        assert_eq!(b.bytes, JSON.len() as u64);
        assert_eq!(b.wire_bytes, wire.len() as u64);
        assert_eq!(b.encoding, vec![encoding.to_ascii_lowercase()]);
        assert!(!b.truncated);
        assert!(o.calls[0].anomalies.is_empty(), "{encoding}");
    }
}

#[test]
fn stacked_encodings_are_undone_in_reverse() {
    // "gzip, deflate": gzip was applied first, deflate last.
    let wire = zlib(&gzip(JSON));
    let o = run(&[
        c(req("GET", "/s", &[])),
        s(encoded_response("gzip, identity, deflate", &wire)),
    ]);
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!(b.prefix, JSON);
    assert_eq!(b.encoding, vec!["gzip", "deflate"]);
    assert!(o.calls[0].anomalies.is_empty());
}

#[test]
fn gzip_inside_chunked_and_request_bodies() {
    let wire = gzip(JSON);
    let o = run(&[
        c(cat(&[
            &req(
                "POST",
                "/in",
                &[
                    "Content-Encoding: gzip",
                    &format!("Content-Length: {}", wire.len()),
                ],
            ),
            &wire,
        ])),
        s(cat(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n",
            &chunked(&wire, 7),
        ])),
    ]);
    let call = &o.calls[0];
    assert_eq!(call.request.body.prefix, JSON);
    assert_eq!(call.request.body.bytes, JSON.len() as u64);
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!(b.prefix, JSON);
    assert_eq!(b.wire_bytes, wire.len() as u64);
}

#[test]
fn transfer_coding_gzip_before_chunked() {
    let wire = gzip(JSON);
    let o = run(&[
        c(req("GET", "/te", &[])),
        s(cat(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &chunked(&wire, 16),
        ])),
    ]);
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!(b.prefix, JSON);
    assert_eq!(b.encoding, vec!["gzip"]);
}

#[test]
fn unknown_and_corrupt_codings_stay_undecoded() {
    let o = run(&[
        c(req("GET", "/br", &[])),
        s(encoded_response("br", b"\x1b\x03\x00compressed")),
    ]);
    let call = &o.calls[0];
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!(b.prefix, b"\x1b\x03\x00compressed");
    assert_eq!((b.bytes, b.wire_bytes), (13, 13));
    assert_eq!(call.anomalies, anomalies(&[Anomaly::DecodeError]));
    assert_eq!(o.stats.decode_errors, 1);

    // Corrupt after a valid start: reported undecoded, with the wire prefix.
    let mut wire = gzip(JSON);
    let mid = wire.len() / 2;
    wire[mid..].iter_mut().for_each(|b| *b = 0xff);
    let o = run(&[
        c(req("GET", "/bad", &[])),
        s(encoded_response("gzip", &wire)),
    ]);
    let call = &o.calls[0];
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!(call.anomalies, anomalies(&[Anomaly::DecodeError]));
    assert_eq!(b.bytes, wire.len() as u64);
    assert_eq!(b.prefix, wire);

    // An empty body with an unknown coding is not an error.
    let o = run(&[c(req("HEAD", "/", &[])), s(encoded_response("br", b""))]);
    assert!(o.calls[0].anomalies.is_empty());
}

#[test]
fn too_many_layers_stay_undecoded() {
    let cfg = HttpConfig {
        max_encoding_layers: 2,
        ..HttpConfig::default()
    };
    let wire = gzip(&gzip(&gzip(JSON)));
    let o = run_cfg(
        &cfg,
        true,
        &[
            c(req("GET", "/", &[])),
            s(encoded_response("gzip, gzip, gzip", &wire)),
        ],
    );
    let call = &o.calls[0];
    assert_eq!(call.anomalies, anomalies(&[Anomaly::TooManyEncodings]));
    assert_eq!(call.response.as_ref().unwrap().body.prefix, wire);
    assert_eq!(o.stats.too_many_encodings, 1);
}

#[test]
fn decompression_bomb_stops_at_the_size_limit() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let wire = gzip(&zeros);
    let cfg = HttpConfig {
        max_decoded_bytes: 1024 * 1024,
        max_decode_ratio: u64::MAX,
        body_prefix_bytes: 100,
        ..HttpConfig::default()
    };
    let o = run_cfg(
        &cfg,
        true,
        &[
            c(req("GET", "/bomb", &[])),
            s(encoded_response("gzip", &wire)),
            c(req("GET", "/next", &[])),
            s(resp(200, b"fine")),
        ],
    );
    assert_eq!(
        summary(&o.calls),
        sum(&[("GET", "/bomb", Some(200)), ("GET", "/next", Some(200))])
    );
    let call = &o.calls[0];
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!(call.anomalies, anomalies(&[Anomaly::DecompressionBomb]));
    // Decoding stopped, so the decoded length is unknown: the wire length is reported.
    assert_eq!(b.bytes, wire.len() as u64);
    assert_eq!(b.wire_bytes, wire.len() as u64);
    assert_eq!(b.prefix, vec![0u8; 100]);
    assert!(b.truncated);
    assert_eq!(o.stats.decompression_bombs, 1);
    assert_eq!(o.stats.bodies_beyond_prefix, 1);
    assert_eq!(o.calls[1].response.as_ref().unwrap().body.prefix, b"fine");
}

#[test]
fn decompression_bomb_stops_at_the_ratio_limit() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let wire = gzip(&zeros); // about 1000:1
    let o = run_split(
        &HttpConfig::default(),
        true,
        &[
            c(req("GET", "/bomb", &[])),
            s(encoded_response("gzip", &wire)),
        ],
        Split::Random(3),
    );
    let call = &o.calls[0];
    let b = &call.response.as_ref().unwrap().body;
    assert_eq!(call.anomalies, anomalies(&[Anomaly::DecompressionBomb]));
    assert_eq!(b.bytes, b.wire_bytes);
    // Decoding stopped near the ratio limit: the prefix holds what was decoded before.
    assert_eq!(b.prefix.len(), HttpConfig::default().body_prefix_bytes);
    assert!(b.truncated);
}

#[test]
fn prefix_is_bounded_and_body_is_not_buffered() {
    let cfg = HttpConfig {
        body_prefix_bytes: 10,
        ..HttpConfig::default()
    };
    let body = vec![b'x'; 1_000_000];
    let o = run_split(
        &cfg,
        true,
        &[c(req("GET", "/", &[])), s(resp(200, &body))],
        Split::Random(9),
    );
    let b = &o.calls[0].response.as_ref().unwrap().body;
    assert_eq!(b.prefix, b"xxxxxxxxxx");
    assert_eq!(b.bytes, 1_000_000);
    assert_eq!(o.stats.bodies_beyond_prefix, 1);
}

#[test]
fn content_encoding_with_odd_whitespace_is_still_decoded() {
    // HTTP Evader 324 sends `Content-Encoding:\x0bgzip`: strict parsers reject the head,
    // browsers decode the body. The sensor reads it leniently and decodes it.
    let wire = gzip(JSON);
    let o = run(&[
        c(req("GET", "/broken", &[])),
        s(cat(&[
            format!(
                "HTTP/1.1 200 ok\r\nContent-Encoding:\x0bgzip\r\nContent-length: {}\r\n\r\n",
                wire.len()
            )
            .as_bytes(),
            &wire,
        ])),
    ]);
    let call = &o.calls[0];
    assert_eq!(call.response.as_ref().unwrap().body.prefix, JSON);
    assert_eq!(call.anomalies, anomalies(&[Anomaly::NonConformingHead]));
}

/// Inflaters are pooled and reset between bodies: gzip, gzip, raw deflate, zlib deflate
/// and gzip again on one connection, each whole and split into 1-byte chunks.
#[test]
fn reused_inflaters_decode_gzip_raw_and_zlib_in_sequence() {
    let other = br#"{"different":"body","n":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(20);
    let bodies: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("gzip", gzip(JSON), JSON),
        ("gzip", gzip(&other), &other),
        ("deflate", raw_deflate(JSON), JSON),
        ("deflate", zlib(&other), &other),
        ("gzip", gzip(JSON), JSON),
    ];
    for piece in [1, usize::MAX] {
        let mut segs = Vec::new();
        for (encoding, wire, _) in &bodies {
            segs.push(c(req("GET", "/r", &[])));
            let resp = if piece == 1 {
                cat(&[
                    format!("HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .as_bytes(),
                    &chunked(wire, 1),
                ])
            } else {
                encoded_response(encoding, wire)
            };
            segs.push(s(resp));
        }
        let o = run(&segs);
        assert_eq!(o.calls.len(), bodies.len());
        for (call, (encoding, _, plain)) in o.calls.iter().zip(&bodies) {
            let b = &call.response.as_ref().unwrap().body;
            assert_eq!(b.prefix, *plain, "{encoding} piece {piece}");
            assert_eq!(b.bytes, plain.len() as u64);
            assert!(call.anomalies.is_empty(), "{encoding} piece {piece}");
        }
    }
}

/// Bodies the sink does not keep are only measured: the same calls and lengths, no prefix,
/// and a gzip-only body's length read from its trailer.
fn measure_all(_: &str) -> bool {
    false
}

fn keep_all(_: &str) -> bool {
    true
}

/// The calls of `events` when bodies are kept and when they are only measured; asserts
/// they are the same but for the prefixes.
fn kept_and_measured(cfg: &HttpConfig, events: &[Ev]) -> (Outcome, Outcome) {
    let (kept, _) = run_choosy(cfg, events, keep_all);
    let (measured, _) = run_choosy(cfg, events, measure_all);
    assert_eq!(kept.calls.len(), measured.calls.len());
    for (k, m) in kept.calls.iter().zip(&measured.calls) {
        let mut k = k.clone();
        assert!(k.bodies_kept && !m.bodies_kept);
        k.bodies_kept = false;
        k.request.body.prefix.clear();
        if let Some(r) = k.response.as_mut() {
            r.body.prefix.clear();
        }
        assert_eq!(&k, m);
    }
    (kept, measured)
}

#[test]
fn measured_bodies_have_the_decoded_lengths_without_a_prefix() {
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{{\"id\":{i}}},").into_bytes())
        .collect();
    let gz = gzip(&big);
    let gz_chunked = cat(&[
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked(&gz, 1000),
    ]);
    let events = [
        c(req("GET", "/gz", &[])),
        s(encoded_response("gzip", &gzip(JSON))),
        c(req("GET", "/gz-chunked", &[])),
        s(gz_chunked),
        c(req("GET", "/zlib", &[])),
        s(encoded_response("deflate", &zlib(JSON))),
        c(req("GET", "/plain", &[])),
        s(resp(200, JSON)),
        c(cat(&[
            &req(
                "POST",
                "/up",
                &[
                    "Content-Encoding: gzip",
                    &format!("Content-Length: {}", gz.len()),
                ],
            ),
            &gz,
        ])),
        s(resp(201, b"")),
        c(req("GET", "/empty-gzip", &[])),
        s(encoded_response("gzip", &gzip(b""))),
    ];
    let (kept, measured) = kept_and_measured(&HttpConfig::default(), &events);
    let lens: Vec<_> = measured
        .calls
        .iter()
        .map(|c| {
            (
                c.request.body.bytes,
                c.response.as_ref().unwrap().body.bytes,
            )
        })
        .collect();
    let json = JSON.len() as u64;
    let big = big.len() as u64;
    assert_eq!(
        lens,
        [(0, json), (0, big), (0, json), (0, json), (big, 0), (0, 0)]
    );
    assert!(measured.calls.iter().all(|c| c.anomalies.is_empty()
        && c.request.body.prefix.is_empty()
        && c.response.as_ref().unwrap().body.prefix.is_empty()));
    assert_eq!(kept.calls[0].response.as_ref().unwrap().body.prefix, JSON);
    assert_eq!(measured.stats.calls_bodies_measured, 6);
    assert_eq!(kept.stats.calls_bodies_measured, 0);
    let mut stats = measured.stats.clone();
    stats.calls_bodies_measured = 0;
    assert_eq!(stats, kept.stats);
}

#[test]
fn measured_gzip_bodies_are_checked_like_decoded_ones() {
    let cfg = HttpConfig {
        max_decoded_bytes: 1024 * 1024,
        ..HttpConfig::default()
    };
    let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
    let mut bad_magic = gzip(JSON);
    bad_magic[0] = 0x1e;
    let events = [
        c(req("GET", "/bomb", &[])),
        s(encoded_response("gzip", &bomb)),
        c(req("GET", "/bad-magic", &[])),
        s(encoded_response("gzip", &bad_magic)),
        c(req("GET", "/header-only", &[])),
        s(encoded_response("gzip", &gzip(JSON)[..10])),
        c(req("GET", "/next", &[])),
        s(resp(200, b"fine")),
    ];
    let (measured, _) = run_choosy(&cfg, &events, measure_all);
    let calls = &measured.calls;
    let body = |i: usize| &calls[i].response.as_ref().unwrap().body;
    assert_eq!(calls[0].anomalies, anomalies(&[Anomaly::DecompressionBomb]));
    assert_eq!(body(0).bytes, bomb.len() as u64);
    assert!(body(0).truncated);
    assert_eq!(calls[1].anomalies, anomalies(&[Anomaly::DecodeError]));
    assert_eq!(body(1).bytes, bad_magic.len() as u64);
    assert_eq!(calls[2].anomalies, anomalies(&[Anomaly::DecodeError]));
    assert_eq!(body(2).bytes, 10);
    assert!(calls[3].anomalies.is_empty());
    assert_eq!(measured.stats.decompression_bombs, 1);
    assert_eq!(measured.stats.decode_errors, 2);
    // Decoding finds the same bomb and the same errors, and reports the same lengths.
    let (kept, _) = run_choosy(&cfg, &events, keep_all);
    for (k, m) in kept.calls.iter().zip(calls) {
        assert_eq!(k.anomalies, m.anomalies);
        let (kb, mb) = (
            &k.response.as_ref().unwrap().body,
            &m.response.as_ref().unwrap().body,
        );
        assert_eq!((kb.bytes, kb.truncated), (mb.bytes, mb.truncated));
    }
}

#[test]
fn measured_gzip_body_cut_by_a_gap_reports_its_wire_length() {
    let gz = gzip(JSON);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    );
    let events = [
        c(req("GET", "/g", &[])),
        s(cat(&[head.as_bytes(), &gz[..20]])),
        gap_s(gz.len() as u64 - 20),
        c(req("GET", "/next", &[])),
        s(resp(200, b"fine")),
    ];
    let (kept, measured) = kept_and_measured(&HttpConfig::default(), &events);
    let b = &measured.calls[0].response.as_ref().unwrap().body;
    assert_eq!((b.bytes, b.wire_bytes, b.truncated), (20, 20, true));
    assert_eq!(kept.calls[1].response.as_ref().unwrap().status, 200);
}

#[test]
fn the_sink_is_asked_once_per_request_before_its_body() {
    let events = [
        c(req("GET", "/keep/1?x=1", &["Host: api.example"])),
        s(encoded_response("gzip", &gzip(JSON))),
        c(req("POST", "http://other.example/measure", &[])),
        s(encoded_response("gzip", &gzip(JSON))),
    ];
    let (o, sink) = run_choosy(&HttpConfig::default(), &events, |p| p.starts_with("/keep"));
    assert_eq!(
        sink.asked,
        [
            (
                Some("api.example".into()),
                "GET".into(),
                "/keep/1".into(),
                0
            ),
            (
                Some("other.example".into()),
                "POST".into(),
                "/measure".into(),
                1
            ),
        ]
    );
    assert_eq!(o.calls[0].response.as_ref().unwrap().body.prefix, JSON);
    assert!(o.calls[1].response.as_ref().unwrap().body.prefix.is_empty());
    assert_eq!(
        o.calls[1].response.as_ref().unwrap().body.bytes,
        JSON.len() as u64
    );
}
