//! apiscope-capture: packets in, per-connection byte streams out.
//!
//! The pipeline of this crate, in the order a frame meets it:
//!
//! 1. a [`source`] reads frames from a capture file or a live interface through libpcap
//!    ([`FileSource`], [`LiveSource`]);
//! 2. the [`decode`] module peels link layers and tunnels (VLAN, QinQ, MPLS, VXLAN, GENEVE,
//!    GRE, ERSPAN, ...) down to the innermost IP packet, without copying;
//! 3. the [`frag`] table puts IP fragments back together, within bounds;
//! 4. the [`Engine`] keeps the flow table (direction-free keys with the tunnel id, idle and
//!    lifetime timeouts on capture time, a flow count and a memory cap with eviction) and
//!    runs [`tcp`] reassembly for both directions of each connection;
//! 5. a [`StreamHandler`] of the caller's receives [`StreamEvent`]s per connection: in-order
//!    data (borrowed from the packet when it arrived in order), gaps with their length,
//!    anomalies, and one close with its reason.
//!
//! Everything dropped, evicted, truncated or malformed is counted in [`Counters`].
//!
//! ```
//! use apiscope_capture::{ConnMeta, Engine, EngineConfig, StreamEvent, StreamHandler, Timestamp};
//!
//! /// Counts the bytes of every connection.
//! struct ByteCounter(u64);
//!
//! impl StreamHandler for ByteCounter {
//!     type Conn = ();
//!     fn open(&mut self, _meta: &ConnMeta) {}
//!     fn event(&mut self, _conn: &mut (), _meta: &ConnMeta, ev: StreamEvent<'_>) {
//!         if let StreamEvent::Data { data, .. } = ev {
//!             self.0 += data.len() as u64;
//!         }
//!     }
//! }
//!
//! let mut engine = Engine::new(EngineConfig::default(), ByteCounter(0));
//! // A raw IPv4 TCP segment carrying "hi", picked up mid-stream.
//! let frame: &[u8] = &[
//!     0x45, 0, 0, 42, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
//!     0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, // TCP
//!     b'h', b'i',
//! ];
//! engine.process(Timestamp::from_secs(1), Some(apiscope_capture::LinkType::Raw), frame, 42);
//! engine.finish();
//! assert_eq!(engine.handler().0, 2);
//! assert_eq!(engine.counters().tcp_midstream, 1);
//! ```

pub mod counters;
pub mod decode;
pub mod engine;
pub mod frag;
pub mod key;
pub mod source;
pub mod stream;
pub mod tcp;
pub mod time;

pub use counters::Counters;
pub use decode::{DecodeConfig, LinkType};
pub use engine::{Engine, EngineConfig, FlowConfig};
pub use frag::FragConfig;
pub use key::{
    bucket_of, worker_of, Endpoint, FlowKey, NormKey, TunnelId, TunnelKind, FLOW_BUCKETS,
};
pub use source::{FileSource, LiveConfig, LiveSource, LiveStats, Packet, SourceError};
pub use stream::{
    CloseReason, ConnMeta, Direction, Orientation, StreamAnomaly, StreamEvent, StreamHandler,
};
pub use tcp::{OverlapPolicy, ReasmConfig};
pub use time::{Duration, Timestamp};
