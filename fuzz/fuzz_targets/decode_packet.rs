//! Any bytes, as a frame of any supported link type, through the whole engine.
#![no_main]

use apiscope_capture::{ConnMeta, Engine, EngineConfig, LinkType, StreamEvent, StreamHandler, Timestamp};
use libfuzzer_sys::fuzz_target;

struct Sink;

impl StreamHandler for Sink {
    type Conn = ();
    fn open(&mut self, _: &ConnMeta) {}
    fn event(&mut self, _: &mut (), _: &ConnMeta, _: StreamEvent<'_>) {}
}

const LINKS: [i32; 13] = [1, 0, 108, 101, 228, 229, 113, 276, 104, 9, 105, 127, 239];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = LinkType::from_dlt(LINKS[usize::from(sel) % LINKS.len()]);
    let mut engine = Engine::new(EngineConfig::default(), Sink);
    // Once whole, once as if the capture had cut it short.
    engine.process(Timestamp::from_secs(1), link, frame, frame.len() as u32);
    engine.process(Timestamp::from_secs(2), link, frame, frame.len() as u32 + 100);
    engine.finish();
});
