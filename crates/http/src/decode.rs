//! Streaming content decoding (gzip, deflate in zlib or raw form, stacked), bounded against
//! decompression bombs.
//!
//! Each layer inflates into an 8 KiB stack buffer that feeds the next layer, and the last
//! layer feeds a [`Sink`] that keeps only the body prefix; nothing proportional to the body
//! is allocated.

use flate2::{Decompress, FlushDecompress, Status};

/// A content or transfer coding this crate can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    /// zlib-wrapped or raw deflate: which one is decided from the first two bytes.
    Deflate,
}

impl Coding {
    /// `None` for codings we cannot undo (br, zstd, compress, anything unknown).
    pub(crate) fn from_name(name: &str) -> Option<Coding> {
        match name {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }
}

/// Hard cap on layers whatever the configuration says (each one takes an 8 KiB stack buffer
/// while decoding).
pub(crate) const MAX_LAYERS: usize = 8;

/// Decoded output is only measured against the ratio once this much was produced.
pub(crate) const RATIO_GRACE_BYTES: u64 = 64 * 1024;

const SCRATCH: usize = 8 * 1024;

/// Rough heap size of one inflate state (zlib-rs state plus its 32 KiB window).
pub(crate) const LAYER_HEAP_ESTIMATE: usize = 48 * 1024;

/// Why decoding stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Corrupt or unsupported data.
    Error,
    /// The size or ratio limit was reached.
    Bomb,
}

struct Layer {
    inflate: Option<Decompress>,
    /// First bytes of a deflate stream, held until the zlib/raw decision can be made.
    head: [u8; 2],
    head_len: usize,
    done: bool,
}

impl Layer {
    fn new(coding: Coding) -> Self {
        let inflate = match coding {
            Coding::Gzip => Some(Decompress::new_gzip(15)),
            Coding::Deflate => None,
        };
        Layer {
            inflate,
            head: [0; 2],
            head_len: 0,
            done: false,
        }
    }
}

/// A zlib header: CM = 8 (deflate), CINFO <= 7, and the FCHECK bits make the pair a
/// multiple of 31 (RFC 1950).
fn is_zlib_header(b0: u8, b1: u8) -> bool {
    b0 & 0x0f == 8 && b0 >> 4 <= 7 && (u16::from(b0) << 8 | u16::from(b1)) % 31 == 0
}

/// Where decoded bytes go: the prefix, and the limits.
pub(crate) struct Sink<'a> {
    pub prefix: &'a mut Vec<u8>,
    pub prefix_limit: usize,
    pub decoded: u64,
    pub encoded: u64,
    pub max_decoded: u64,
    pub max_ratio: u64,
}

impl Sink<'_> {
    fn write(&mut self, data: &[u8]) -> Result<(), Stop> {
        let room = self.max_decoded.saturating_sub(self.decoded);
        let take = (data.len() as u64).min(room) as usize;
        let keep = take.min(self.prefix_limit.saturating_sub(self.prefix.len()));
        self.prefix.extend_from_slice(&data[..keep]);
        self.decoded += take as u64;
        if take < data.len() {
            return Err(Stop::Bomb);
        }
        if self.decoded > RATIO_GRACE_BYTES
            && self.decoded > self.encoded.saturating_mul(self.max_ratio)
        {
            return Err(Stop::Bomb);
        }
        Ok(())
    }
}

/// A stack of decoders for one body. `layers[0]` undoes the last coding applied.
pub(crate) struct Decoder {
    layers: Vec<Layer>,
}

impl Decoder {
    /// `applied` lists codings in the order they were applied to the body.
    pub(crate) fn new(applied: &[Coding]) -> Self {
        Decoder {
            layers: applied.iter().rev().map(|c| Layer::new(*c)).collect(),
        }
    }

    /// Every layer reached the end of its compressed stream.
    pub(crate) fn finished(&self) -> bool {
        self.layers.iter().all(|l| l.done)
    }

    pub(crate) fn heap_estimate(&self) -> usize {
        self.layers.len() * LAYER_HEAP_ESTIMATE
    }

    /// Feeds encoded bytes; decoded bytes go to `sink`. The caller adds `input.len()` to
    /// `sink.encoded` first.
    pub(crate) fn feed(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), Stop> {
        run(&mut self.layers, input, sink)
    }
}

fn run(layers: &mut [Layer], input: &[u8], sink: &mut Sink<'_>) -> Result<(), Stop> {
    let Some((layer, rest)) = layers.split_first_mut() else {
        return sink.write(input);
    };
    if layer.done || input.is_empty() {
        // Bytes after the end of a compressed stream are ignored.
        return Ok(());
    }
    let mut input = input;
    if layer.inflate.is_none() {
        // Deflate: decide zlib or raw from the first two bytes.
        while layer.head_len < 2 {
            let Some((&b, tail)) = input.split_first() else {
                return Ok(());
            };
            layer.head[layer.head_len] = b;
            layer.head_len += 1;
            input = tail;
        }
        let zlib = is_zlib_header(layer.head[0], layer.head[1]);
        layer.inflate = Some(Decompress::new(zlib));
        let head = layer.head;
        inflate_into(layer, &head, rest, sink)?;
    }
    inflate_into(layer, input, rest, sink)
}

fn inflate_into(
    layer: &mut Layer,
    mut input: &[u8],
    rest: &mut [Layer],
    sink: &mut Sink<'_>,
) -> Result<(), Stop> {
    let Some(inflate) = layer.inflate.as_mut() else {
        return Ok(());
    };
    let mut out = [0u8; SCRATCH];
    while !layer.done {
        let (in0, out0) = (inflate.total_in(), inflate.total_out());
        let status = inflate
            .decompress(input, &mut out, FlushDecompress::None)
            .map_err(|_| Stop::Error)?;
        let consumed = (inflate.total_in() - in0) as usize;
        let produced = (inflate.total_out() - out0) as usize;
        input = input.get(consumed..).unwrap_or(&[]);
        if produced > 0 {
            run(rest, &out[..produced], sink)?;
        }
        match status {
            Status::StreamEnd => layer.done = true,
            Status::Ok | Status::BufError => {
                if consumed == 0 && produced == 0 {
                    break;
                }
                if input.is_empty() && produced < out.len() {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(crate) fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(
        applied: &[Coding],
        data: &[u8],
        piece: usize,
        max: u64,
    ) -> (Vec<u8>, u64, Result<(), Stop>) {
        let mut d = Decoder::new(applied);
        let mut prefix = Vec::new();
        let mut sink = Sink {
            prefix: &mut prefix,
            prefix_limit: 1 << 20,
            decoded: 0,
            encoded: 0,
            max_decoded: max,
            max_ratio: 1000,
        };
        let mut r = Ok(());
        for c in data.chunks(piece) {
            sink.encoded += c.len() as u64;
            r = d.feed(c, &mut sink);
            if r.is_err() {
                break;
            }
        }
        let n = sink.decoded;
        (prefix, n, r)
    }

    #[test]
    fn gzip_zlib_raw_in_pieces() {
        let text = b"hello hello hello hello, deflate world".repeat(50);
        for piece in [1, 3, 7, 100, 100_000] {
            for (coding, enc) in [
                (Coding::Gzip, gzip(&text)),
                (Coding::Deflate, zlib(&text)),
                (Coding::Deflate, raw_deflate(&text)),
            ] {
                let (out, n, r) = decode(&[coding], &enc, piece, u64::MAX);
                assert_eq!(r, Ok(()));
                assert_eq!(out, text);
                assert_eq!(n, text.len() as u64);
            }
        }
    }

    #[test]
    fn stacked_is_undone_in_reverse() {
        let text = b"{\"a\":1}".repeat(10);
        // "Content-Encoding: gzip, deflate": gzip applied first, then deflate.
        let enc = zlib(&gzip(&text));
        let (out, _, r) = decode(&[Coding::Gzip, Coding::Deflate], &enc, 5, u64::MAX);
        assert_eq!(r, Ok(()));
        assert_eq!(out, text);
    }

    #[test]
    fn corrupt_is_an_error_and_limit_is_a_bomb() {
        let (_, _, r) = decode(&[Coding::Gzip], b"not gzip at all", 4, u64::MAX);
        assert_eq!(r, Err(Stop::Error));
        let zeros = vec![0u8; 1 << 20];
        let (out, n, r) = decode(&[Coding::Gzip], &gzip(&zeros), 512, 100_000);
        assert_eq!(r, Err(Stop::Bomb));
        assert_eq!(n, 100_000);
        assert_eq!(out.len(), 100_000);
    }

    #[test]
    fn zlib_header_detection() {
        assert!(is_zlib_header(0x78, 0x9c));
        assert!(is_zlib_header(0x78, 0x01));
        assert!(is_zlib_header(0x78, 0xda));
        assert!(!is_zlib_header(0xcb, 0x48));
    }
}
