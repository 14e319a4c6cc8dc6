//! Counters. One place names each of them; the code that hits a limit or sees an anomaly
//! bumps its counter.

use crate::anomaly::Anomaly;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Counters of one worker's HTTP parsing, all monotonic. Add workers together with
        /// [`HttpStats::merge`]; list them with [`HttpStats::counters`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct HttpStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl HttpStats {
            /// Every counter as `(name, value)`, in declaration order. Names are stable
            /// snake_case identifiers.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other` into `self`.
            pub fn merge(&mut self, other: &HttpStats) {
                $( self.$name = self.$name.saturating_add(other.$name); )*
            }
        }
    };
}

counters! {
    /// Requests parsed completely (head and body, possibly truncated).
    requests,
    /// Final responses parsed completely.
    responses,
    /// Calls emitted.
    calls,
    /// Calls emitted with no response (unanswered, lost, or evicted).
    calls_without_response,
    /// Interim (1xx other than 101) responses seen.
    interim_responses,
    /// Interim statuses not recorded beyond `max_interim_responses`.
    interim_dropped,
    /// Responses that never found a request: left over at close, evicted from the waiting
    /// queue, or arriving for a request already emitted.
    orphan_responses,
    /// Responses that answered a request whose head had been dropped (no call for either).
    responses_to_dropped_requests,
    /// Responses framed before their request was parsed: the request had not come within
    /// `max_response_wait_bytes` of the response (or a gap or the end came first), so a
    /// HEAD's response may have taken bytes as its body.
    responses_framed_alone,
    /// Responses to requests lost whole in a gap (they came after the client's missing bytes
    /// were acknowledged, with no request waiting): no call, and the next request is not
    /// paired with them.
    responses_to_lost_requests,
    /// Requests emitted without a response because `max_pending` was exceeded.
    pending_overflow,
    /// Requests emitted without a response because it was lost in a gap: a later request was
    /// sent after the client had acknowledged the missing bytes.
    responses_lost_to_gap,
    /// Calls whose bodies the sink did not keep ([`CallSink::keep_bodies`](crate::CallSink)):
    /// only measured, without a prefix, a gzip body's length read from its trailer.
    calls_bodies_measured,
    /// Requests the sensor's body sampler could not remember by path shape (its table,
    /// `inventory.body_sampler_max_shapes`, was full): sampled at random instead.
    body_sampler_full,
    /// HTTP/0.9 requests.
    http09_requests,
    /// Connections given up as not HTTP.
    non_http_connections,
    /// Connections where the client/server roles were swapped on content.
    roles_swapped,
    /// Connections that started with a SOCKS handshake (skipped; HTTP inside is parsed).
    socks_handshakes,
    /// Connections whose client sent a PROXY protocol header first (skipped; the HTTP after
    /// it is parsed).
    proxy_headers,
    /// Connections that switched protocols (101) or became a tunnel (2xx to CONNECT).
    upgraded_connections,
    /// Bytes ignored after an upgrade or CONNECT.
    tunnel_bytes,
    /// Heads dropped for exceeding `max_head_bytes`.
    oversized_heads,
    /// Heads dropped for exceeding `max_headers`.
    too_many_headers,
    /// Heads (or start lines) that could not be parsed at all.
    unparseable_heads,
    /// Heads httparse rejected that the lenient fallback read.
    non_conforming_heads,
    /// Partial heads lost to a gap.
    heads_lost_to_gap,
    /// Partial heads left when the connection closed.
    heads_lost_to_close,
    /// Gap events received.
    gaps,
    /// Bytes reported missing by gap events.
    gap_bytes,
    /// Bodies that had a gap.
    body_gaps,
    /// Bodies cut short by the connection closing before their end.
    bodies_truncated_by_close,
    /// Bodies longer than `body_prefix_bytes` (only the prefix was kept).
    bodies_beyond_prefix,
    /// Successful resynchronisations on a message start.
    resyncs,
    /// Bytes skipped while looking for a message start.
    resync_skipped_bytes,
    /// Messages with both Content-Length and Transfer-Encoding.
    ambiguous_framing,
    /// Messages with differing Content-Length values.
    conflicting_content_length,
    /// Messages with a malformed Content-Length.
    invalid_content_length,
    /// Messages with an obfuscated Transfer-Encoding.
    obfuscated_transfer_encoding,
    /// Malformed chunk framing.
    invalid_chunks,
    /// Bodies whose decoding failed or used an unknown coding.
    decode_errors,
    /// Bodies whose decoding stopped at the size or ratio limit.
    decompression_bombs,
    /// Bodies with more stacked encodings than `max_encoding_layers`.
    too_many_encodings,
    /// Request bodies never sent: the server refused `Expect: 100-continue` and the client
    /// went on with its next request.
    bodies_not_sent,
}

impl HttpStats {
    /// Bumps the counter that belongs to an anomaly kind.
    pub(crate) fn anomaly(&mut self, a: Anomaly) {
        let c = match a {
            Anomaly::AmbiguousFraming => &mut self.ambiguous_framing,
            Anomaly::ConflictingContentLength => &mut self.conflicting_content_length,
            Anomaly::InvalidContentLength => &mut self.invalid_content_length,
            Anomaly::ObfuscatedTransferEncoding => &mut self.obfuscated_transfer_encoding,
            Anomaly::OversizedHead => &mut self.oversized_heads,
            Anomaly::TooManyHeaders => &mut self.too_many_headers,
            Anomaly::Unparseable => &mut self.unparseable_heads,
            Anomaly::NonConformingHead => &mut self.non_conforming_heads,
            Anomaly::BodyGap => &mut self.body_gaps,
            Anomaly::DecompressionBomb => &mut self.decompression_bombs,
            Anomaly::DecodeError => &mut self.decode_errors,
            Anomaly::Http09 => &mut self.http09_requests,
            Anomaly::InvalidChunk => &mut self.invalid_chunks,
            Anomaly::PendingOverflow => &mut self.pending_overflow,
            Anomaly::TooManyEncodings => &mut self.too_many_encodings,
            Anomaly::BodyNotSent => &mut self.bodies_not_sent,
        };
        *c += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_list_and_merge() {
        let mut a = HttpStats {
            calls: 2,
            ..HttpStats::default()
        };
        let b = HttpStats {
            calls: 3,
            gaps: 1,
            ..HttpStats::default()
        };
        a.merge(&b);
        let list = a.counters();
        assert!(list.contains(&("calls", 5)));
        assert!(list.contains(&("gaps", 1)));
        assert_eq!(list[0].0, "requests");
    }

    #[test]
    fn every_anomaly_has_a_counter() {
        let mut s = HttpStats::default();
        for a in Anomaly::ALL {
            s.anomaly(a);
        }
        let bumped = s.counters().iter().filter(|(_, v)| *v == 1).count();
        assert_eq!(bumped, Anomaly::ALL.len());
    }
}
