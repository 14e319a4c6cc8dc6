//! The consumer interface: what the reassembler hands to the next stage.
//!
//! A [`StreamHandler`] receives, per TCP connection, an `open` call and then a sequence of
//! [`StreamEvent`]s: in-order data for one direction (borrowed straight from the packet
//! buffer when it arrived in order), explicit gaps with their length, anomalies such as
//! overlapping segments whose bytes differ, and exactly one `Closed` with its reason.
//! The handler keeps its own per-connection state in [`StreamHandler::Conn`], which the
//! flow table stores next to the connection, so no second lookup is needed.

use std::fmt;

use crate::key::FlowKey;
use crate::time::Timestamp;

/// Which way bytes travel on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the side that sent the SYN, or the best guess) to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

impl Direction {
    pub const fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }

    pub const fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// How the client/server roles of a connection were decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// A SYN or SYN-ACK was seen: the roles are certain.
    Handshake,
    /// Picked up mid-stream; roles guessed from the ports (well-known or lower port is
    /// the server). A consumer may swap them on content evidence.
    PortHeuristic,
}

/// What a consumer knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Unique per engine, in order of creation (stable for a given input).
    pub id: u64,
    /// The flow key with `client` as the first endpoint.
    pub key: FlowKey,
    /// Symmetric hash of the addresses and ports (not the tunnel id), the same for both
    /// directions; it picks the worker shard.
    pub hash: u64,
    pub orientation: Orientation,
    /// Capture time of the first packet.
    pub first_seen: Timestamp,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished with FIN.
    Fin,
    /// A RST was seen.
    Rst,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// The connection outlived the lifetime timeout.
    LifetimeTimeout,
    /// A new SYN reused the 4-tuple after the connection was closed or reset.
    Reused,
    /// Evicted to keep the flow table within its flow count or memory cap.
    Evicted,
    /// The capture ended (replay) or the sensor shut down.
    EndOfCapture,
}

impl CloseReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::LifetimeTimeout => "lifetime_timeout",
            CloseReason::Reused => "reused",
            CloseReason::Evicted => "evicted",
            CloseReason::EndOfCapture => "end_of_capture",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stream-level irregularities worth reporting upward (evasion signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAnomaly {
    /// Two segments covered the same sequence range with different bytes.
    OverlapMismatch,
    /// Data arrived for a range already given up as a gap.
    DataAfterGap,
}

/// One event on a connection, in stream order for each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The next bytes of `dir`, in order. `ts` is the capture time of the packet that
    /// carried the first of them.
    Data {
        dir: Direction,
        ts: Timestamp,
        data: &'a [u8],
    },
    /// `len` bytes of `dir` were never seen; the next `Data` for `dir` follows them. `ts` is
    /// the packet's that showed the hole, or, when the peer's latest acknowledgment is exactly
    /// the gap's end, that acknowledgment's (earlier): the time the receiver had the bytes.
    Gap {
        dir: Direction,
        ts: Timestamp,
        len: u64,
    },
    Anomaly {
        dir: Direction,
        ts: Timestamp,
        kind: StreamAnomaly,
    },
    /// The last event of a connection.
    Closed { ts: Timestamp, reason: CloseReason },
}

/// The next stage after reassembly.
pub trait StreamHandler {
    /// Per-connection state kept in the flow table.
    type Conn;

    /// Called once per connection, before any event for it.
    fn open(&mut self, meta: &ConnMeta) -> Self::Conn;

    /// Called for each event of the connection; `Closed` is the last one.
    fn event(&mut self, conn: &mut Self::Conn, meta: &ConnMeta, event: StreamEvent<'_>);

    /// Approximate heap bytes held by `conn`, counted against the flow memory cap.
    fn conn_memory(&self, _conn: &Self::Conn) -> usize {
        0
    }
}
