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
    assert_eq!(b.bytes, 1024 * 1024);
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
    assert!(b.bytes < 10 * 1024 * 1024);
    assert!(
        b.bytes <= b.wire_bytes * 200 + 64 * 1024,
        "{} {}",
        b.bytes,
        b.wire_bytes
    );
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
