//! One HTTP connection fed a fuzzed sequence of stream events: data in either direction,
//! gaps, and close. Checks that nothing panics and the parser's invariants hold.
#![no_main]

use apiscope_capture::{Direction, Timestamp};
use apiscope_http::{Call, CallSink, CallStart, HttpConfig, HttpConn, HttpStats};
use libfuzzer_sys::fuzz_target;

/// Keeps the bodies of calls whose index has the bit of `mask` set (all, none, or some).
struct Sink {
    calls: Vec<Call>,
    mask: u8,
}

impl CallSink for Sink {
    fn push(&mut self, call: Call) {
        self.calls.push(call);
    }

    fn keep_bodies(&mut self, call: CallStart<'_>) -> bool {
        self.mask & (1 << (call.seq() % 8)) != 0
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&setup, mut rest)) = input.split_first() else {
        return;
    };
    // Small bounds half of the time, so the limits are reached with short inputs.
    let cfg = if setup & 1 == 0 {
        HttpConfig::default()
    } else {
        HttpConfig {
            max_head_bytes: 300,
            max_headers: 4,
            body_prefix_bytes: 64,
            max_decoded_bytes: 4096,
            max_pending: 2,
            max_encoding_layers: 2,
            max_interim_responses: 1,
            undecided_scan_bytes: 512,
            ..HttpConfig::default()
        }
    };
    let certain = setup & 2 == 0;
    let mut conn = HttpConn::new(&cfg, certain);
    let mut stats = HttpStats::default();
    // Which calls' bodies are kept: all (bit 2 clear), or those picked by the bits of 0xa5.
    let mut sink = Sink {
        calls: Vec::new(),
        mask: if setup & 4 == 0 { 0xff } else { 0xa5 },
    };
    let mut now = 1_000_000_000u64;
    let mut closed = false;

    // Each operation: one byte (kind in the low 2 bits, direction in bit 2, time step in
    // the high bits), then for data and gaps a length byte; data takes that many bytes.
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += u64::from(op >> 3) * 1000;
        let ts = Timestamp::from_nanos(now);
        let dir = if op & 4 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        match op & 3 {
            0 | 1 => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let n = usize::from(len).min(tail.len());
                let (data, tail) = tail.split_at(n);
                rest = tail;
                conn.on_data(&cfg, dir, ts, data, &mut sink, &mut stats);
            }
            2 => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                conn.on_gap(&cfg, dir, ts, u64::from(len) + 1, &mut sink, &mut stats);
            }
            _ => {
                conn.on_close(&cfg, ts, &mut sink, &mut stats);
                closed = true;
            }
        }
        assert!(conn.memory() < 16 << 20, "memory {}", conn.memory());
    }
    if !closed {
        conn.on_close(&cfg, Timestamp::from_nanos(now), &mut sink, &mut stats);
    }
    assert_eq!(conn.earliest_pending(), None);
    let calls = sink.calls;
    assert_eq!(stats.calls, calls.len() as u64);
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call.seq as usize, i, "calls come out in request order");
        assert!(call.request.body.prefix.len() <= cfg.body_prefix_bytes);
        assert!(call.bodies_kept || call.request.body.prefix.is_empty());
        if let Some(r) = &call.response {
            assert!(r.body.prefix.len() <= cfg.body_prefix_bytes);
            assert!(r.body.bytes <= cfg.max_decoded_bytes.max(r.body.wire_bytes));
        }
    }
    if conn.is_http() == Some(false) {
        assert!(calls.is_empty());
    }
});
