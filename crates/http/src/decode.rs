//! Streaming content decoding (gzip, deflate in zlib or raw form, stacked), bounded against
//! decompression bombs.
//!
//! Each layer inflates into an 8 KiB stack buffer that feeds the next layer, and the last
//! layer feeds a [`Sink`] that keeps only the body prefix; nothing proportional to the body
//! is allocated.
//!
//! Inflate states (a zlib-rs state plus its 32 KiB window) are taken from a small
//! per-thread pool and reset rather than allocated per body. Only zlib and raw inflaters
//! can be reset in place (flate2 re-creates a gzip one), so gzip is undone here: the gzip
//! header and trailer are parsed by [`Gz`] with the same checks zlib makes, and the
//! deflate data between them goes through a raw inflater.

use std::cell::RefCell;

use flate2::{Crc, Decompress, FlushDecompress, Status};

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

/// Inflaters kept per thread for reuse.
const POOL_MAX: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

/// A reset inflater for a zlib (`true`) or raw deflate (`false`) stream.
fn take_inflater(zlib: bool) -> Decompress {
    let pooled = POOL.with(|p| p.borrow_mut().pop());
    match pooled {
        Some(mut d) => {
            d.reset(zlib);
            d
        }
        None => Decompress::new(zlib),
    }
}

fn give_inflater(d: Decompress) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(d);
        }
    });
}

const GZ_FHCRC: u8 = 0x02;
const GZ_FEXTRA: u8 = 0x04;
const GZ_FNAME: u8 = 0x08;
const GZ_FCOMMENT: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzPhase {
    /// The fixed 10-byte header (magic, method, flags, mtime, xfl, os).
    Fixed,
    ExtraLen,
    Extra(u16),
    Name,
    Comment,
    HeaderCrc,
    /// Deflate data, through the raw inflater.
    Data,
    /// CRC-32 and ISIZE.
    Trailer,
}

/// Gzip framing around a raw deflate stream (RFC 1952), checked as zlib checks it.
struct Gz {
    phase: GzPhase,
    /// Bytes of a fixed-size field collected so far.
    buf: [u8; 10],
    len: usize,
    flags: u8,
    /// CRC-32 of the header so far (for FHCRC).
    head_crc: Crc,
    /// CRC-32 and length of the decoded data.
    data_crc: Crc,
}

impl Gz {
    fn new() -> Self {
        Gz {
            phase: GzPhase::Fixed,
            buf: [0; 10],
            len: 0,
            flags: 0,
            head_crc: Crc::new(),
            data_crc: Crc::new(),
        }
    }

    /// Collects bytes into `buf` until it holds `n`; `true` once it does.
    fn collect(&mut self, input: &mut &[u8], n: usize) -> bool {
        let take = (n - self.len).min(input.len());
        self.buf[self.len..self.len + take].copy_from_slice(&input[..take]);
        self.len += take;
        *input = &input[take..];
        self.len == n
    }

    /// Consumes header bytes from `input`; `Ok(true)` once the deflate data starts.
    fn header(&mut self, input: &mut &[u8]) -> Result<bool, Stop> {
        loop {
            match self.phase {
                GzPhase::Fixed => {
                    let before = self.len;
                    let start = *input;
                    let full = self.collect(input, 10);
                    self.head_crc.update(&start[..self.len - before]);
                    // zlib reports a bad magic, method or flags as soon as it sees them.
                    if self.len >= 2 && (self.buf[0], self.buf[1]) != (0x1f, 0x8b) {
                        return Err(Stop::Error);
                    }
                    if self.len >= 4 && (self.buf[2] != 8 || self.buf[3] & 0xe0 != 0) {
                        return Err(Stop::Error);
                    }
                    if !full {
                        return Ok(false);
                    }
                    self.flags = self.buf[3];
                    self.len = 0;
                    self.phase = GzPhase::ExtraLen;
                }
                GzPhase::ExtraLen => {
                    if self.flags & GZ_FEXTRA == 0 {
                        self.phase = GzPhase::Name;
                        continue;
                    }
                    let before = self.len;
                    let start = *input;
                    let full = self.collect(input, 2);
                    self.head_crc.update(&start[..self.len - before]);
                    if !full {
                        return Ok(false);
                    }
                    self.len = 0;
                    self.phase = GzPhase::Extra(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                }
                GzPhase::Extra(left) => {
                    let take = usize::from(left).min(input.len());
                    self.head_crc.update(&input[..take]);
                    *input = &input[take..];
                    let left = left - take as u16;
                    if left > 0 {
                        self.phase = GzPhase::Extra(left);
                        return Ok(false);
                    }
                    self.phase = GzPhase::Name;
                }
                GzPhase::Name | GzPhase::Comment => {
                    let (flag, next) = if self.phase == GzPhase::Name {
                        (GZ_FNAME, GzPhase::Comment)
                    } else {
                        (GZ_FCOMMENT, GzPhase::HeaderCrc)
                    };
                    if self.flags & flag != 0 {
                        let Some(nul) = input.iter().position(|&b| b == 0) else {
                            self.head_crc.update(input);
                            *input = &[];
                            return Ok(false);
                        };
                        self.head_crc.update(&input[..=nul]);
                        *input = &input[nul + 1..];
                    }
                    self.phase = next;
                }
                GzPhase::HeaderCrc => {
                    if self.flags & GZ_FHCRC != 0 {
                        if !self.collect(input, 2) {
                            return Ok(false);
                        }
                        let want = u16::from_le_bytes([self.buf[0], self.buf[1]]);
                        if u32::from(want) != self.head_crc.sum() & 0xffff {
                            return Err(Stop::Error);
                        }
                        self.len = 0;
                    }
                    self.phase = GzPhase::Data;
                    return Ok(true);
                }
                GzPhase::Data | GzPhase::Trailer => return Ok(true),
            }
        }
    }

    /// Consumes trailer bytes; `Ok(true)` once the trailer was read and matched.
    fn trailer(&mut self, input: &mut &[u8]) -> Result<bool, Stop> {
        // zlib checks the CRC as soon as its 4 bytes are in, then the length.
        let had = self.len;
        let full = self.collect(input, 8);
        if had < 4 && self.len >= 4 {
            let crc = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            if crc != self.data_crc.sum() {
                return Err(Stop::Error);
            }
        }
        if !full {
            return Ok(false);
        }
        let size = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        if size != self.data_crc.amount() {
            return Err(Stop::Error);
        }
        Ok(true)
    }
}

/// A gzip body measured without inflating it: the header is checked as [`Gz`] checks it,
/// and the decoded length is the trailer's ISIZE (RFC 1952 §2.3.1: the length modulo
/// 2^32), read from the last 8 bytes of the body.
///
/// What this cannot see, next to inflating: corrupt deflate data, a CRC mismatch, several
/// gzip members (the last one's ISIZE is taken), and bytes after the end of the member.
pub(crate) struct GzTrailer {
    gz: Gz,
    /// The last bytes after the header, in arrival order once `after_header >= 8`.
    tail: [u8; 8],
    after_header: u64,
}

impl GzTrailer {
    pub(crate) fn new() -> Self {
        GzTrailer {
            gz: Gz::new(),
            tail: [0; 8],
            after_header: 0,
        }
    }

    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), Stop> {
        if self.gz.phase != GzPhase::Data && !self.gz.header(&mut input)? {
            return Ok(());
        }
        self.after_header += input.len() as u64;
        if input.len() >= 8 {
            self.tail.copy_from_slice(&input[input.len() - 8..]);
        } else {
            self.tail.copy_within(input.len().., 0);
            self.tail[8 - input.len()..].copy_from_slice(input);
        }
        Ok(())
    }

    /// The decoded length the trailer states; `None` when the body is too short to hold a
    /// deflate stream and a trailer, or ended inside the header.
    pub(crate) fn isize(&self) -> Option<u64> {
        (self.gz.phase == GzPhase::Data && self.after_header >= 10).then(|| {
            u64::from(u32::from_le_bytes([
                self.tail[4],
                self.tail[5],
                self.tail[6],
                self.tail[7],
            ]))
        })
    }
}

struct Layer {
    inflate: Option<Decompress>,
    /// Gzip framing, for a gzip layer.
    gz: Option<Gz>,
    /// First bytes of a deflate stream, held until the zlib/raw decision can be made.
    head: [u8; 2],
    head_len: usize,
    done: bool,
}

impl Layer {
    fn new(coding: Coding) -> Self {
        let gz = match coding {
            Coding::Gzip => Some(Gz::new()),
            Coding::Deflate => None,
        };
        Layer {
            inflate: None,
            gz,
            head: [0; 2],
            head_len: 0,
            done: false,
        }
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        if let Some(d) = self.inflate.take() {
            give_inflater(d);
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
        if ratio_exceeded(self.decoded, self.encoded, self.max_ratio) {
            return Err(Stop::Bomb);
        }
        Ok(())
    }
}

/// Whether `decoded` bytes from `encoded` expand past `max_ratio` (past the first
/// `RATIO_GRACE_BYTES`, which small bodies of zeros reach legitimately).
pub(crate) fn ratio_exceeded(decoded: u64, encoded: u64, max_ratio: u64) -> bool {
    decoded > RATIO_GRACE_BYTES && decoded > encoded.saturating_mul(max_ratio)
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
    if let Some(gz) = layer.gz.as_mut() {
        if gz.phase != GzPhase::Data && gz.phase != GzPhase::Trailer {
            if !gz.header(&mut input)? {
                return Ok(());
            }
            layer.inflate = Some(take_inflater(false));
        }
        if gz.phase == GzPhase::Data {
            input = inflate_into(layer, input, rest, sink)?;
        }
        let Some(gz) = layer.gz.as_mut() else {
            return Ok(());
        };
        if gz.phase == GzPhase::Trailer && !input.is_empty() && gz.trailer(&mut input)? {
            layer.done = true;
        }
        return Ok(());
    }
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
        layer.inflate = Some(take_inflater(zlib));
        let head = layer.head;
        inflate_into(layer, &head, rest, sink)?;
    }
    inflate_into(layer, input, rest, sink)?;
    Ok(())
}

/// Inflates `input` through `layer` into the layers after it; returns the input left
/// after the end of the compressed stream (for a gzip layer, the trailer).
fn inflate_into<'i>(
    layer: &mut Layer,
    mut input: &'i [u8],
    rest: &mut [Layer],
    sink: &mut Sink<'_>,
) -> Result<&'i [u8], Stop> {
    let Some(inflate) = layer.inflate.as_mut() else {
        return Ok(input);
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
            if let Some(gz) = layer.gz.as_mut() {
                gz.data_crc.update(&out[..produced]);
            }
            run(rest, &out[..produced], sink)?;
        }
        match status {
            Status::StreamEnd => match layer.gz.as_mut() {
                Some(gz) => {
                    gz.phase = GzPhase::Trailer;
                    break;
                }
                None => layer.done = true,
            },
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
    Ok(input)
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

    /// A gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC set.
    fn gzip_all_fields(data: &[u8]) -> Vec<u8> {
        let plain = gzip(data);
        let mut head = vec![0x1f, 0x8b, 8, GZ_FHCRC | GZ_FEXTRA | GZ_FNAME | GZ_FCOMMENT];
        head.extend_from_slice(&plain[4..10]);
        head.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        head.extend_from_slice(b"name.json\0a comment\0");
        let mut crc = Crc::new();
        crc.update(&head);
        head.extend_from_slice(&(crc.sum() as u16).to_le_bytes());
        head.extend_from_slice(&plain[10..]);
        head
    }

    #[test]
    fn gzip_header_fields_and_checks() {
        let text = b"{\"k\":\"some json text\"}".repeat(30);
        let full = gzip_all_fields(&text);
        for piece in [1, 2, 5, 1000] {
            let (out, _, r) = decode(&[Coding::Gzip], &full, piece, u64::MAX);
            assert_eq!(r, Ok(()), "piece {piece}");
            assert_eq!(out, text);
        }
        let n = full.len();
        // Bad header CRC, data CRC, length, method, reserved flags, magic.
        for (at, xor) in [(32, 1), (n - 8, 1), (n - 2, 1), (2, 1), (3, 0x20), (1, 1)] {
            let mut bad = full.clone();
            bad[at] ^= xor;
            for piece in [1, 1000] {
                let (_, _, r) = decode(&[Coding::Gzip], &bad, piece, u64::MAX);
                assert_eq!(r, Err(Stop::Error), "byte {at} piece {piece}");
            }
        }
        // A missing trailer is not the end of the stream.
        let mut d = Decoder::new(&[Coding::Gzip]);
        let mut prefix = Vec::new();
        let mut sink = Sink {
            prefix: &mut prefix,
            prefix_limit: 1 << 20,
            decoded: 0,
            encoded: n as u64,
            max_decoded: u64::MAX,
            max_ratio: 1000,
        };
        assert_eq!(d.feed(&full[..n - 3], &mut sink), Ok(()));
        assert!(!d.finished());
        assert_eq!(d.feed(&full[n - 3..], &mut sink), Ok(()));
        assert!(d.finished());
    }

    #[test]
    fn pooled_inflaters_decode_every_kind_in_sequence() {
        let a = b"first body, first body, first body".repeat(40);
        let b = b"{\"second\":[1,2,3]}".repeat(70);
        for _ in 0..3 {
            for (coding, enc, want) in [
                (Coding::Gzip, gzip(&a), &a),
                (Coding::Gzip, gzip(&b), &b),
                (Coding::Deflate, raw_deflate(&a), &a),
                (Coding::Deflate, zlib(&b), &b),
                (Coding::Gzip, gzip(&a), &a),
            ] {
                let (out, n, r) = decode(&[coding], &enc, 13, u64::MAX);
                assert_eq!(r, Ok(()));
                assert_eq!(&out, want);
                assert_eq!(n, want.len() as u64);
            }
            // A failed stream goes back to the pool too.
            let (_, _, r) = decode(&[Coding::Deflate], b"\x78\x9c garbage", 4, u64::MAX);
            assert_eq!(r, Err(Stop::Error));
        }
    }

    #[test]
    fn zlib_header_detection() {
        assert!(is_zlib_header(0x78, 0x9c));
        assert!(is_zlib_header(0x78, 0x01));
        assert!(is_zlib_header(0x78, 0xda));
        assert!(!is_zlib_header(0xcb, 0x48));
    }
}
