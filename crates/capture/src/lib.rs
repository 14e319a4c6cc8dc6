//! apiscope-capture: packets in, per-connection byte streams out.
//!
//! Placeholder overview; completed with the engine.

pub mod key;
pub mod stream;
pub mod time;

pub use key::{Endpoint, FlowKey, NormKey, TunnelId, TunnelKind};
pub use stream::{
    CloseReason, ConnMeta, Direction, Orientation, StreamAnomaly, StreamEvent, StreamHandler,
};
pub use time::{Duration, Timestamp};
