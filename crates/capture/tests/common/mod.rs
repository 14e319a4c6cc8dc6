//! Test support: run a capture file through the engine and record every connection.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;

use apiscope_capture::{
    CloseReason, ConnMeta, Counters, Engine, EngineConfig, FileSource, Orientation, SourceError,
    StreamEvent, StreamHandler,
};

/// One reassembled direction: data runs merged, gaps kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    Gap(u64),
}

#[derive(Debug, Clone)]
pub struct Conn {
    pub client: String,
    pub server: String,
    pub tunnel: String,
    pub orientation: Orientation,
    pub dirs: [Vec<Piece>; 2],
    pub close: Option<CloseReason>,
    pub anomalies: usize,
}

impl Conn {
    pub fn bytes(&self, dir: usize) -> u64 {
        self.dirs[dir]
            .iter()
            .map(|p| match p {
                Piece::Data(d) => d.len() as u64,
                Piece::Gap(_) => 0,
            })
            .sum()
    }
}

/// Records connections in order of creation.
#[derive(Debug, Default)]
pub struct Recorder {
    pub conns: Vec<Conn>,
}

impl StreamHandler for Recorder {
    type Conn = usize;

    fn open(&mut self, meta: &ConnMeta) -> usize {
        self.conns.push(Conn {
            client: meta.key.src.to_string(),
            server: meta.key.dst.to_string(),
            tunnel: meta.key.tunnel.to_string(),
            orientation: meta.orientation,
            dirs: [Vec::new(), Vec::new()],
            close: None,
            anomalies: 0,
        });
        self.conns.len() - 1
    }

    fn event(&mut self, conn: &mut usize, _meta: &ConnMeta, ev: StreamEvent<'_>) {
        let c = &mut self.conns[*conn];
        assert!(c.close.is_none(), "event after close: {ev:?}");
        match ev {
            StreamEvent::Data { dir, data, .. } => {
                assert!(!data.is_empty(), "empty data event");
                match c.dirs[dir.index()].last_mut() {
                    Some(Piece::Data(d)) => d.extend_from_slice(data),
                    _ => c.dirs[dir.index()].push(Piece::Data(data.to_vec())),
                }
            }
            StreamEvent::Gap { dir, len, .. } => {
                assert!(len > 0, "empty gap");
                c.dirs[dir.index()].push(Piece::Gap(len));
            }
            StreamEvent::Anomaly { .. } => c.anomalies += 1,
            StreamEvent::Closed { reason, .. } => c.close = Some(reason),
        }
    }
}

/// What a replay of one file produced.
#[derive(Debug)]
pub struct Replay {
    pub conns: Vec<Conn>,
    pub counters: Counters,
    /// The error that ended reading, if any (a truncated file still yields what came before).
    pub error: Option<SourceError>,
}

pub fn replay(path: &Path, cfg: EngineConfig) -> Result<Replay, SourceError> {
    let mut src = FileSource::open(path)?;
    let mut engine = Engine::new(cfg, Recorder::default());
    let error = loop {
        match src.next_packet() {
            Ok(Some(p)) => engine.process(p.ts, p.link, p.data, p.wire_len),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    engine.finish();
    let counters = engine.counters().clone();
    let rec = engine.into_handler();
    for c in &rec.conns {
        assert!(c.close.is_some(), "connection never closed: {c:?}");
    }
    Ok(Replay {
        conns: rec.conns,
        counters,
        error,
    })
}
