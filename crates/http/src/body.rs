//! Body accumulation: counts, the bounded prefix, gaps, and streaming decoding.

use crate::anomaly::{Anomalies, Anomaly};
use crate::config::HttpConfig;
use crate::decode::{ratio_exceeded, Coding, Decoder, GzTrailer, Sink, Stop, MAX_LAYERS};
use crate::message::Body;
use crate::stats::HttpStats;

enum Plan {
    /// No coding: the prefix is the wire body.
    Plain,
    /// Codings known; the decoder is created when the first byte arrives (an empty body
    /// costs nothing). `Err` holds why decoding is impossible, reported on the first byte.
    Pending(Result<Vec<Coding>, Anomaly>),
    Active(Decoder),
    /// A gzip body that is only measured: its length comes from the trailer.
    Trailer(Box<GzTrailer>),
    /// Decoding stopped (gap or bomb limit): the length is unknown, the prefix is final.
    Stopped,
    /// Decoding failed or was impossible: the body is reported undecoded.
    Failed,
}

/// Builds a [`Body`] from the bytes and gaps of one message.
pub(crate) struct BodyAcc {
    body: Body,
    plan: Plan,
    /// The undecoded prefix, kept while decoding in case decoding fails.
    raw_prefix: Vec<u8>,
    decoded: u64,
    had_gap: bool,
    /// The wire length when the framing says it (0 otherwise): the first append reserves
    /// up to it at once instead of growing the prefix step by step.
    len_hint: u64,
    /// Keep the prefix; when false the body is only measured (`CallSink::keep_bodies`).
    keep: bool,
}

impl BodyAcc {
    /// `encoding`: codings in the order they were applied (lowercase, no `identity`).
    /// `len_hint`: the body's wire length if known, else 0. `keep`: keep the prefix; when
    /// false the body is only measured, and a body that is only gzip-encoded is measured by
    /// its trailer instead of being inflated.
    pub(crate) fn new(cfg: &HttpConfig, encoding: Vec<String>, len_hint: u64, keep: bool) -> Self {
        let plan = if encoding.is_empty() {
            Plan::Plain
        } else if encoding.len() > cfg.max_encoding_layers.min(MAX_LAYERS) {
            Plan::Pending(Err(Anomaly::TooManyEncodings))
        } else {
            let codings: Option<Vec<Coding>> =
                encoding.iter().map(|n| Coding::from_name(n)).collect();
            Plan::Pending(codings.ok_or(Anomaly::DecodeError))
        };
        BodyAcc {
            body: Body {
                encoding,
                ..Body::default()
            },
            plan,
            raw_prefix: Vec::new(),
            decoded: 0,
            had_gap: false,
            len_hint,
            keep,
        }
    }

    /// A body that will never receive bytes.
    pub(crate) fn empty() -> Self {
        BodyAcc {
            body: Body::default(),
            plan: Plan::Plain,
            raw_prefix: Vec::new(),
            decoded: 0,
            had_gap: false,
            len_hint: 0,
            keep: true,
        }
    }

    pub(crate) fn data(
        &mut self,
        cfg: &HttpConfig,
        data: &[u8],
        anomalies: &mut Anomalies,
        stats: &mut HttpStats,
    ) {
        if data.is_empty() {
            return;
        }
        self.body.wire_bytes += data.len() as u64;
        let limit = if self.keep { cfg.body_prefix_bytes } else { 0 };
        if let Plan::Pending(p) = &mut self.plan {
            self.plan = match std::mem::replace(p, Ok(Vec::new())) {
                Ok(codings) if !self.keep && codings == [Coding::Gzip] => {
                    Plan::Trailer(Box::new(GzTrailer::new()))
                }
                Ok(codings) => Plan::Active(Decoder::new(&codings)),
                Err(a) => {
                    anomalies.insert(a);
                    stats.anomaly(a);
                    Plan::Failed
                }
            };
        }
        match &mut self.plan {
            Plan::Plain | Plan::Failed => {
                append_bounded(&mut self.body.prefix, data, limit, self.len_hint)
            }
            Plan::Trailer(t) => {
                if t.feed(data).is_err() {
                    anomalies.insert(Anomaly::DecodeError);
                    stats.anomaly(Anomaly::DecodeError);
                    self.plan = Plan::Failed;
                }
            }
            Plan::Active(dec) => {
                append_bounded(&mut self.raw_prefix, data, limit, self.len_hint);
                let mut sink = Sink {
                    prefix: &mut self.body.prefix,
                    prefix_limit: limit,
                    decoded: self.decoded,
                    encoded: self.body.wire_bytes,
                    max_decoded: cfg.max_decoded_bytes,
                    max_ratio: cfg.max_decode_ratio,
                };
                let r = dec.feed(data, &mut sink);
                self.decoded = sink.decoded;
                match r {
                    Ok(()) => {}
                    Err(Stop::Error) => {
                        anomalies.insert(Anomaly::DecodeError);
                        stats.anomaly(Anomaly::DecodeError);
                        self.body.prefix = std::mem::take(&mut self.raw_prefix);
                        self.plan = Plan::Failed;
                    }
                    Err(Stop::Bomb) => {
                        anomalies.insert(Anomaly::DecompressionBomb);
                        stats.anomaly(Anomaly::DecompressionBomb);
                        self.body.truncated = true;
                        self.raw_prefix = Vec::new();
                        self.plan = Plan::Stopped;
                    }
                }
            }
            Plan::Stopped | Plan::Pending(_) => {}
        }
    }

    /// `len` bytes of this body were not captured.
    pub(crate) fn gap(&mut self, len: u64, anomalies: &mut Anomalies, stats: &mut HttpStats) {
        self.body.gap_bytes = self.body.gap_bytes.saturating_add(len);
        self.body.truncated = true;
        if !self.had_gap {
            self.had_gap = true;
            anomalies.insert(Anomaly::BodyGap);
            stats.anomaly(Anomaly::BodyGap);
        }
        if matches!(
            self.plan,
            Plan::Active(_) | Plan::Trailer(_) | Plan::Pending(Ok(_))
        ) {
            // A compressed stream cannot continue across missing bytes.
            self.plan = Plan::Stopped;
            self.raw_prefix = Vec::new();
        }
    }

    /// The finished body. A compressed stream that did not reach its end in a body that
    /// did is corrupt (its checksum was never seen): `DecodeError`, reported undecoded. A
    /// body whose decoding could not reach its end (a gap, the connection closing early,
    /// the bomb limits) has an unknown decoded length: its wire length is reported.
    pub(crate) fn finish(
        mut self,
        cfg: &HttpConfig,
        truncated: bool,
        anomalies: &mut Anomalies,
        stats: &mut HttpStats,
    ) -> Body {
        self.body.truncated |= truncated;
        match &self.plan {
            Plan::Active(dec) if !self.body.truncated && !dec.finished() => {
                anomalies.insert(Anomaly::DecodeError);
                stats.anomaly(Anomaly::DecodeError);
                self.body.prefix = std::mem::take(&mut self.raw_prefix);
                self.plan = Plan::Failed;
            }
            Plan::Trailer(t) if !self.body.truncated => match t.isize() {
                Some(n) if over_limits(n, self.body.wire_bytes, cfg) => {
                    anomalies.insert(Anomaly::DecompressionBomb);
                    stats.anomaly(Anomaly::DecompressionBomb);
                    self.body.truncated = true;
                    self.plan = Plan::Stopped;
                }
                Some(n) => self.decoded = n,
                None => {
                    anomalies.insert(Anomaly::DecodeError);
                    stats.anomaly(Anomaly::DecodeError);
                    self.plan = Plan::Failed;
                }
            },
            _ => {}
        }
        self.body.bytes = match self.plan {
            Plan::Active(_) | Plan::Trailer(_) if !self.body.truncated => self.decoded,
            _ => self.body.wire_bytes,
        };
        if self.body.bytes > cfg.body_prefix_bytes as u64 {
            stats.bodies_beyond_prefix += 1;
        }
        self.body
    }

    pub(crate) fn heap_size(&self) -> usize {
        let dec = match &self.plan {
            Plan::Active(d) => d.heap_estimate(),
            Plan::Trailer(_) => std::mem::size_of::<GzTrailer>(),
            _ => 0,
        };
        self.body.heap_size() + self.raw_prefix.capacity() + dec
    }
}

/// Whether `decoded` bytes from `encoded` wire bytes break `max_decoded_bytes` or
/// `max_decode_ratio` (the same test the decoder makes as it goes).
fn over_limits(decoded: u64, encoded: u64, cfg: &HttpConfig) -> bool {
    decoded > cfg.max_decoded_bytes || ratio_exceeded(decoded, encoded, cfg.max_decode_ratio)
}

fn append_bounded(prefix: &mut Vec<u8>, data: &[u8], limit: usize, len_hint: u64) {
    let room = limit.saturating_sub(prefix.len());
    let take = room.min(data.len());
    if prefix.capacity() == 0 && take > 0 {
        let want = usize::try_from(len_hint).unwrap_or(usize::MAX).min(limit);
        prefix.reserve_exact(want.max(take));
    }
    prefix.extend_from_slice(&data[..take]);
}
