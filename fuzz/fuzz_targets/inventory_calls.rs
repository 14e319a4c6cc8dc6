//! Calls made of fuzzed parts (method, target, headers, bodies, status, media types) counted
//! by one inventory: templating, parameters, schemas, GraphQL, auth, principals and the
//! sensitive-data scan all see hostile input. Checks that nothing panics.
#![no_main]

use apiscope_capture::{Endpoint, Timestamp};
use apiscope_http::{Anomalies, Body, Call, Headers, Request, Response, Version};
use apiscope_inventory::inventory::{CallFacts, Inventory, InventoryConfig};
use apiscope_inventory::keyed::KeyedHasher;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 6] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/graphql",
    "text/plain",
    "application/problem+json",
];

fn body(b: &[u8]) -> Body {
    Body {
        wire_bytes: b.len() as u64,
        bytes: b.len() as u64,
        prefix: b.to_vec(),
        ..Body::default()
    }
}

fuzz_target!(|input: &[u8]| {
    let mut inv = Inventory::new(InventoryConfig::default(), None);
    let hasher = KeyedHasher::new(&[9; 32]);
    let ep = |port| Endpoint {
        ip: "10.0.0.1".parse().unwrap(),
        port,
    };
    // Calls are separated by 0xff; within a call, parts by 0xfe:
    // setup byte, method, target, header lines ("name: value\n"), request body, response body.
    for (n, chunk) in input.split(|b| *b == 0xff).take(64).enumerate() {
        let mut parts = chunk.split(|b| *b == 0xfe);
        let setup = parts.next().and_then(|p| p.first().copied()).unwrap_or(0);
        let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or(b"")).into_owned();
        let method = text(parts.next());
        let target = text(parts.next());
        let headers: Headers = parts
            .next()
            .unwrap_or(b"")
            .split(|b| *b == b'\n')
            .filter_map(|l| {
                let colon = l.iter().position(|b| *b == b':')?;
                Some((String::from_utf8_lossy(&l[..colon]).into_owned(), &l[colon + 1..]))
            })
            .chain([(
                "Content-Type".to_owned(),
                TYPES[usize::from(setup) % TYPES.len()].as_bytes(),
            )])
            .collect();
        let req_body = parts.next().unwrap_or(b"");
        let resp_body = parts.next().unwrap_or(b"");
        let ts = Timestamp::from_secs(n as u64);
        let status = [200, 201, 204, 401, 403, 404, 500][usize::from(setup >> 4) % 7];
        let mut call = Call {
            request: Request {
                ts,
                ts_end: ts,
                method: method.into(),
                target,
                version: Version::Http11,
                headers,
                body: body(req_body),
            },
            response: Some(Response {
                ts,
                ts_end: ts,
                status,
                reason: "".into(),
                version: Version::Http11,
                headers: [(
                    "Content-Type",
                    TYPES[usize::from(setup >> 3) % TYPES.len()].as_bytes(),
                )]
                .into_iter()
                .collect(),
                body: body(resp_body),
                interim: Vec::new(),
            }),
            anomalies: Anomalies::new(),
            seq: n as u64,
            bodies_kept: true,
        };
        let mut facts = CallFacts::extract(&mut call, ep(40000), ep(80), true, &hasher);
        let _ = inv.observe(&mut facts);
    }
    let _ = inv.to_json();
    let _ = inv.take_changed();
});
