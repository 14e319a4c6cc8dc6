//! What can be odd about a message: a small `Copy` enum, one bit each in [`Anomalies`].

use std::fmt;

/// One irregularity seen while parsing a message. Each kind is counted in
/// [`HttpStats`](crate::HttpStats) when it is detected, and recorded on the [`Call`](crate::Call)
/// it belongs to (a request anomaly and a response anomaly both land on their call).
///
/// Anomalies that cost the message itself (a dropped head) are carried to the next message
/// parsed in the same direction, so they still show up on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Anomaly {
    /// Both `Content-Length` and `Transfer-Encoding` were sent (request smuggling pattern).
    /// Framing follows `Transfer-Encoding` when it names `chunked`.
    AmbiguousFraming = 0,
    /// Several `Content-Length` values that differ. Framing uses the first valid value.
    ConflictingContentLength = 1,
    /// A `Content-Length` that is not a plain decimal number fitting in 64 bits.
    InvalidContentLength = 2,
    /// A `Transfer-Encoding` that is not exactly a list of known codings (in any case) with
    /// `chunked` once and last (`chunked, identity`, `\x0bchunked`, RFC 2047 words).
    ObfuscatedTransferEncoding = 3,
    /// A head longer than `max_head_bytes`; the message was dropped.
    OversizedHead = 4,
    /// A head with more than `max_headers` header lines; the message was dropped.
    TooManyHeaders = 5,
    /// A head that neither httparse nor the lenient fallback could parse; the message was
    /// dropped and the parser resynchronised on the next message start.
    Unparseable = 6,
    /// A head that httparse rejected but the lenient fallback read: control bytes in a header
    /// value, a request-target that is not UTF-8, or obsolete line folding.
    NonConformingHead = 7,
    /// Part of the body was never captured (a TCP gap).
    BodyGap = 8,
    /// Decoding stopped at `max_decoded_bytes` or `max_decode_ratio`.
    DecompressionBomb = 9,
    /// An unknown content coding or corrupt compressed data; the body is kept undecoded.
    DecodeError = 10,
    /// An HTTP/0.9 request (a request line without version) or its response.
    Http09 = 11,
    /// A chunk size that overflows 64 bits or is not hexadecimal, a chunk not followed by
    /// CRLF, or trailers longer than `max_head_bytes`. The message ends there, truncated.
    InvalidChunk = 12,
    /// More than `max_pending` requests waited for responses; this one was emitted without.
    PendingOverflow = 13,
    /// More encodings stacked than `max_encoding_layers`; the body is kept undecoded.
    TooManyEncodings = 14,
    /// A request that announced a body with `Expect: 100-continue` and got a final response
    /// before sending any of it; the client went on with its next request instead, so the
    /// body was never sent (its length is 0).
    BodyNotSent = 15,
}

impl Anomaly {
    /// Every kind, in bit order.
    pub const ALL: [Anomaly; 16] = [
        Anomaly::AmbiguousFraming,
        Anomaly::ConflictingContentLength,
        Anomaly::InvalidContentLength,
        Anomaly::ObfuscatedTransferEncoding,
        Anomaly::OversizedHead,
        Anomaly::TooManyHeaders,
        Anomaly::Unparseable,
        Anomaly::NonConformingHead,
        Anomaly::BodyGap,
        Anomaly::DecompressionBomb,
        Anomaly::DecodeError,
        Anomaly::Http09,
        Anomaly::InvalidChunk,
        Anomaly::PendingOverflow,
        Anomaly::TooManyEncodings,
        Anomaly::BodyNotSent,
    ];

    /// A stable snake_case name, for logs and event schemas.
    pub const fn as_str(self) -> &'static str {
        match self {
            Anomaly::AmbiguousFraming => "ambiguous_framing",
            Anomaly::ConflictingContentLength => "conflicting_content_length",
            Anomaly::InvalidContentLength => "invalid_content_length",
            Anomaly::ObfuscatedTransferEncoding => "obfuscated_transfer_encoding",
            Anomaly::OversizedHead => "oversized_head",
            Anomaly::TooManyHeaders => "too_many_headers",
            Anomaly::Unparseable => "unparseable",
            Anomaly::NonConformingHead => "non_conforming_head",
            Anomaly::BodyGap => "body_gap",
            Anomaly::DecompressionBomb => "decompression_bomb",
            Anomaly::DecodeError => "decode_error",
            Anomaly::Http09 => "http09",
            Anomaly::InvalidChunk => "invalid_chunk",
            Anomaly::PendingOverflow => "pending_overflow",
            Anomaly::TooManyEncodings => "too_many_encodings",
            Anomaly::BodyNotSent => "body_not_sent",
        }
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Anomaly`] kinds (a bitset: `Copy`, no allocation).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Anomalies(u32);

impl Anomalies {
    /// The empty set.
    pub const fn new() -> Self {
        Anomalies(0)
    }

    pub fn insert(&mut self, a: Anomaly) {
        self.0 |= a.bit();
    }

    pub const fn contains(self, a: Anomaly) -> bool {
        self.0 & a.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Adds every kind in `other`.
    pub fn extend(&mut self, other: Anomalies) {
        self.0 |= other.0;
    }

    /// The kinds present, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Anomaly> {
        Anomaly::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Anomaly> for Anomalies {
    fn from_iter<I: IntoIterator<Item = Anomaly>>(iter: I) -> Self {
        let mut s = Anomalies::new();
        for a in iter {
            s.insert(a);
        }
        s
    }
}

impl fmt::Debug for Anomalies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_round_trip() {
        let mut s = Anomalies::new();
        assert!(s.is_empty());
        s.insert(Anomaly::BodyGap);
        s.insert(Anomaly::Http09);
        s.insert(Anomaly::BodyGap);
        assert_eq!(s.len(), 2);
        assert!(s.contains(Anomaly::Http09));
        assert!(!s.contains(Anomaly::DecodeError));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Anomaly::BodyGap, Anomaly::Http09]
        );
        assert_eq!(format!("{s:?}"), "{BodyGap, Http09}");
    }

    #[test]
    fn all_fit_in_the_bitset_and_names_are_unique() {
        let all: Anomalies = Anomaly::ALL.into_iter().collect();
        assert_eq!(all.len(), Anomaly::ALL.len());
        let mut names: Vec<_> = Anomaly::ALL.iter().map(|a| a.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Anomaly::ALL.len());
    }
}
