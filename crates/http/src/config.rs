//! The parser's bounds. Every limit here has a counter in [`HttpStats`](crate::HttpStats)
//! that moves when the limit is hit.

/// Limits for the HTTP parser, shared by all connections of a worker.
///
/// A plain struct: the binary maps its own (serde) configuration onto it. Construct with
/// `HttpConfig { max_pending: 16, ..HttpConfig::default() }` so new fields keep compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// A request or response head (start line and headers) longer than this is dropped:
    /// anomaly `OversizedHead`, counter `oversized_heads`. Also the bound on the bytes a
    /// direction buffers while a head, chunk-size line, trailer section or resync candidate
    /// line is split across packets. Values below 256 are treated as 256.
    pub max_head_bytes: usize,
    /// A head with more header lines is dropped: anomaly `TooManyHeaders`, counter
    /// `too_many_headers`.
    pub max_headers: usize,
    /// Bytes of each decoded body kept on the call (`Body::prefix`); counter
    /// `bodies_beyond_prefix` for bodies that were longer.
    pub body_prefix_bytes: usize,
    /// Decoding of one body stops after this many decoded bytes: anomaly
    /// `DecompressionBomb`, counter `decompression_bombs`.
    pub max_decoded_bytes: u64,
    /// Once more than 64 KiB are decoded, decoding stops when decoded / encoded bytes exceeds
    /// this ratio: anomaly `DecompressionBomb`, counter `decompression_bombs`.
    pub max_decode_ratio: u64,
    /// Requests waiting for responses on one connection (pipelining), and responses waiting
    /// for their requests. Beyond it the oldest request is emitted without a response
    /// (anomaly `PendingOverflow`, counter `pending_overflow`), or the oldest waiting response
    /// is dropped (counter `orphan_responses`). Values below 1 are treated as 1.
    pub max_pending: usize,
    /// Stacked encodings (content codings plus transfer codings other than chunked) undone
    /// per body; more leaves the body undecoded (anomaly `TooManyEncodings`, counter
    /// `too_many_encodings`). At most 8 are ever undone.
    pub max_encoding_layers: usize,
    /// Interim (1xx) statuses remembered per response; counter `interim_dropped` beyond.
    pub max_interim_responses: usize,
    /// On a connection not yet known to be HTTP (picked up mid-stream, or after a gap), the
    /// parser gives up (counter `non_http_connections`) once resynchronisation has skipped
    /// this many bytes without finding a message.
    pub undecided_scan_bytes: u64,
    /// A response whose request has not been parsed yet (the two directions captured out of
    /// order) is not framed until it is, since the request decides (a HEAD's response has
    /// no body); it waits while at most this many bytes follow its head, then is framed on
    /// its own (counter `responses_framed_alone`). 0: never wait.
    pub max_response_wait_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 65_536,
            max_headers: 128,
            body_prefix_bytes: 65_536,
            max_decoded_bytes: 16 * 1024 * 1024,
            max_decode_ratio: 200,
            max_pending: 64,
            max_encoding_layers: 4,
            max_interim_responses: 16,
            undecided_scan_bytes: 1024 * 1024,
            max_response_wait_bytes: 16 * 1024,
        }
    }
}

impl HttpConfig {
    /// The effective buffer bound (never below 256, so a degenerate value cannot stall).
    pub(crate) fn head_cap(&self) -> usize {
        self.max_head_bytes.max(256)
    }

    pub(crate) fn pending_cap(&self) -> usize {
        self.max_pending.max(1)
    }
}
