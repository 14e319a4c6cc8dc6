//! Every drop, eviction, truncation and malformation the capture stage sees, by name.
//!
//! One place names each counter (the `counters!` table below); code that hits a bound bumps
//! its counter, and the binary prints or exports them all through [`Counters::iter`].

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Capture-stage counters. Plain integers: each worker owns its own set and the
        /// binary adds them up with [`Counters::merge`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Counters {
            /// `(name, value)` for every counter, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$( (stringify!($name), self.$name), )*].into_iter()
            }

            /// Adds `other` into `self`.
            pub fn merge(&mut self, other: &Counters) {
                $( self.$name += other.$name; )*
            }

            /// The value of the counter called `name`.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => None,
                }
            }
        }
    };
}

counters! {
    /// Packets read from the source.
    packets,
    /// Captured bytes read from the source.
    bytes,
    /// Packets whose captured length was below their wire length (snap length).
    packets_truncated,
    /// Packets of a link type we do not decode.
    link_unsupported,
    /// Link-layer headers cut short or inconsistent.
    link_malformed,
    /// Frames that carry no IP (ARP, LLDP, 802.11 management, ...).
    non_ip,
    /// Invalid or cut-short IPv4/IPv6 headers.
    ip_malformed,
    /// IP packets that are neither TCP nor a tunnel we decode.
    ip_not_tcp,
    /// Invalid or cut-short TCP headers.
    tcp_malformed,
    /// Invalid or cut-short tunnel headers.
    tunnel_malformed,
    /// Tunnel variants not decoded (e.g. GRE version 1).
    tunnel_unsupported,
    /// Frames nested deeper than `capture.max_tunnel_depth`.
    tunnel_depth_exceeded,
    /// IP fragments received.
    frag_fragments,
    /// Datagrams put back together.
    frag_reassembled,
    /// Incomplete datagrams dropped after `frag.timeout_secs`.
    frag_timeouts,
    /// Fragments dropped because `frag.max_datagrams` or `frag.memcap_bytes` was reached.
    frag_dropped_limit,
    /// Fragments that overlapped ones already held (first copy kept).
    frag_overlaps,
    /// Fragments that would grow a datagram past 65535 bytes, or were inconsistent.
    frag_malformed,
    /// Flows created.
    flows_created,
    /// Flows closed after `flow.idle_timeout_secs` without packets.
    flows_idle_timeout,
    /// Flows closed after `flow.lifetime_timeout_secs`.
    flows_lifetime_timeout,
    /// Flows evicted because the table held `flow.max_flows`.
    flows_evicted_capacity,
    /// Flows evicted to stay under `flow.memcap_bytes`.
    flows_evicted_memcap,
    /// Packets that joined the other direction's flow mirrored under another tunnel id/VLAN.
    flows_joined_asymmetric,
    /// TCP segments processed.
    tcp_segments,
    /// Connections picked up without seeing their handshake.
    tcp_midstream,
    /// Segments whose whole payload had already been received.
    tcp_retransmissions,
    /// Segments buffered because they arrived ahead of a hole.
    tcp_out_of_order,
    /// Segments partly overlapping data already received.
    tcp_overlaps,
    /// Overlaps whose bytes differed from the bytes held (an evasion signal).
    tcp_overlap_mismatches,
    /// Gaps delivered to the consumer.
    tcp_gaps,
    /// Bytes covered by those gaps.
    tcp_gap_bytes,
    /// Times the per-flow out-of-order bound `reassembly.max_ooo_bytes_per_flow` forced a gap.
    tcp_ooo_flow_limit,
    /// Times the global bound `reassembly.memcap_bytes` forced a gap.
    tcp_ooo_memcap,
    /// Segments that arrived for a range already given up as a gap.
    tcp_data_after_gap,
    /// New SYNs on a 4-tuple whose previous connection was still open.
    tcp_conn_reused,
    /// SYN segments carrying data (TCP Fast Open).
    tcp_syn_data,
    /// Segments for flows owned by another worker (sharded replay); not drops.
    shard_skipped,
}
