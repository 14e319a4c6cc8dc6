//! A sequence of TCP segments with fuzzed flags, sequence numbers and payloads, both ways.
#![no_main]

use apiscope_capture::{ConnMeta, Engine, EngineConfig, LinkType, StreamEvent, StreamHandler, Timestamp};
use libfuzzer_sys::fuzz_target;

/// Checks the stream invariants: events only between open and close, no empty data.
#[derive(Default)]
struct Check;

impl StreamHandler for Check {
    type Conn = bool;
    fn open(&mut self, _: &ConnMeta) -> bool {
        false
    }
    fn event(&mut self, closed: &mut bool, _: &ConnMeta, ev: StreamEvent<'_>) {
        assert!(!*closed, "event after close");
        match ev {
            StreamEvent::Data { data, .. } => assert!(!data.is_empty()),
            StreamEvent::Gap { len, .. } => assert!(len > 0),
            StreamEvent::Closed { .. } => *closed = true,
            StreamEvent::Anomaly { .. } => {}
        }
    }
}

fn frame(to_server: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (a, b, sp, dp) = if to_server {
        ([10, 0, 0, 1], [10, 0, 0, 2], 40000u16, 80u16)
    } else {
        ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
    };
    let total = 40 + payload.len();
    let mut v = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 6, 0, 0];
    v.extend_from_slice(&a);
    v.extend_from_slice(&b);
    v.extend_from_slice(&sp.to_be_bytes());
    v.extend_from_slice(&dp.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ack.to_be_bytes());
    v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = EngineConfig::default();
    cfg.reassembly.max_ooo_bytes_per_flow = 2048;
    cfg.reassembly.max_ooo_segments_per_flow = 8;
    let mut engine = Engine::new(cfg, Check);
    // Each record: dir/flags (1), seq delta (2), ack delta (2), length (1), payload.
    let (mut seq, mut ack) = (0xffff_ff00u32, 1000u32);
    let mut rest = data;
    let mut t = 1;
    while rest.len() >= 6 {
        let (h, tail) = rest.split_at(6);
        let len = usize::from(h[5] % 64).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let to_server = h[0] & 0x80 != 0;
        let flags = h[0] & 0x17; // FIN, SYN, RST, ACK
        seq = seq.wrapping_add(u32::from(u16::from_be_bytes([h[1], h[2]]))).wrapping_sub(512);
        ack = ack.wrapping_add(u32::from(u16::from_be_bytes([h[3], h[4]]))).wrapping_sub(512);
        let f = frame(to_server, seq, ack, flags, payload);
        engine.process(Timestamp::from_secs(t), Some(LinkType::Raw), &f, f.len() as u32);
        t += u64::from(h[0] & 0x08 != 0) * 100;
    }
    engine.finish();
});
