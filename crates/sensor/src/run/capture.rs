//! The capture threads of `run`: one per interface and one per `--vxlan-listen` socket.
//!
//! A capture thread reads frames, decodes each just far enough to find its shard (the
//! symmetric hash of its innermost addresses and ports, without tunnel id and VLAN, as
//! [`Engine::with_shard`](apiscope_capture::Engine::with_shard) decides it, so both directions
//! of a connection meet on one worker even when mirrored under different ids), and copies it
//! into that worker's pending batch. Frames that are not TCP over IP, or are IP fragments
//! (whose ports only the reassembled datagram shows), go to worker 0. A batch's buffer is
//! allocated once, `run.batch_max_bytes` long, and never grows; it is handed over when it
//! holds `run.batch_max_frames` frames, when the next frame would not fit, or
//! `run.batch_max_delay_ms` after the last hand-over; when the worker's queue is full the batch
//! is dropped and counted (`apiscope_capture_queue_drops_total`): the capture never waits, so
//! the kernel buffer does not overflow behind a slow worker.
//!
//! A `--vxlan-listen` socket receives the mirror traffic itself (VXLAN or GENEVE payloads,
//! the kernel having taken off the outer Ethernet, IP and UDP headers and put fragments back
//! together). The thread puts an outer IPv4/UDP header in front of each datagram, with the
//! tunnel's port as destination, and hands it on as a raw IPv4 frame: the ordinary decoder
//! then peels the tunnel (VNI into the flow key) as it does on a SPAN port.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use apiscope_capture::decode::Decoder;
use apiscope_capture::{
    DecodeConfig, Endpoint, FlowKey, LinkType, LiveSource, Timestamp, TunnelId,
};

use super::telemetry::{wall_now, SourceStats, Telemetry};
use crate::pipeline::Frames;

/// Bounds of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
    pub max_delay: StdDuration,
}

/// Shards frames and hands them to the workers in batches.
#[derive(Debug)]
pub struct Router {
    decoder: Decoder,
    workers: Vec<SyncSender<Frames>>,
    pending: Vec<Frames>,
    limits: BatchLimits,
    telemetry: Arc<Telemetry>,
    source: usize,
    next_flush: Instant,
    /// Newest timestamp routed since the clock was told.
    newest: Timestamp,
    frames: u64,
    bytes: u64,
    dropped_frames: u64,
    dropped_batches: u64,
}

impl Router {
    pub fn new(
        decode: DecodeConfig,
        workers: Vec<SyncSender<Frames>>,
        limits: BatchLimits,
        telemetry: Arc<Telemetry>,
        source: usize,
    ) -> Self {
        Router {
            decoder: Decoder::new(decode),
            pending: workers.iter().map(|_| Frames::default()).collect(),
            workers,
            limits,
            telemetry,
            source,
            next_flush: Instant::now() + limits.max_delay,
            newest: Timestamp::ZERO,
            frames: 0,
            bytes: 0,
            dropped_frames: 0,
            dropped_batches: 0,
        }
    }

    fn stats(&self) -> &SourceStats {
        &self.telemetry.sources[self.source]
    }

    /// The worker of a frame: see the module overview.
    fn shard(&self, link: Option<LinkType>, data: &[u8], wire_len: u32) -> usize {
        let n = self.workers.len();
        if n == 1 {
            return 0;
        }
        let Some(link) = link else { return 0 };
        let truncated = (data.len() as u64) < u64::from(wire_len);
        match self.decoder.decode(link, data, truncated) {
            Ok(ip) if ip.frag.is_none() && ip.proto == 6 && ip.payload.len() >= 4 => {
                let p = ip.payload;
                let key = FlowKey {
                    src: Endpoint {
                        ip: ip.src,
                        port: u16::from_be_bytes([p[0], p[1]]),
                    },
                    dst: Endpoint {
                        ip: ip.dst,
                        port: u16::from_be_bytes([p[2], p[3]]),
                    },
                    tunnel: TunnelId::NONE,
                };
                apiscope_capture::worker_of(key.symmetric_hash(), n as u64) as usize
            }
            _ => 0,
        }
    }

    /// Copies one frame into its worker's batch, handing the batch over when it is full.
    pub fn route(&mut self, ts: Timestamp, link: Option<LinkType>, data: &[u8], wire_len: u32) {
        self.frames += 1;
        self.bytes += data.len() as u64;
        self.newest = self.newest.max(ts);
        let w = self.shard(link, data, wire_len);
        // A batch's buffer is allocated once at its full size and never grows: the bytes a
        // worker's queue holds are at most `queue_max_batches` × `batch_max_bytes` (or one
        // frame, when a single frame is larger).
        if !self.pending[w].frames.is_empty()
            && self.pending[w].data.len() + data.len() > self.limits.max_bytes
        {
            self.send(w, false);
        }
        let b = &mut self.pending[w];
        if b.data.capacity() == 0 {
            b.data.reserve_exact(self.limits.max_bytes.max(data.len()));
            b.frames.reserve_exact(self.limits.max_frames);
        }
        b.push(ts, link, data, wire_len);
        if b.frames.len() >= self.limits.max_frames || b.data.len() >= self.limits.max_bytes {
            self.send(w, false);
        }
    }

    fn send(&mut self, w: usize, wait: bool) {
        let batch = std::mem::take(&mut self.pending[w]);
        let n = batch.frames.len() as u64;
        if n == 0 {
            return;
        }
        let depth = &self.telemetry.workers[w].queue_depth;
        depth.fetch_add(1, Relaxed);
        let sent = if wait {
            self.workers[w].send(batch).is_ok()
        } else {
            match self.workers[w].try_send(batch) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if !sent {
            depth.fetch_sub(1, Relaxed);
            self.dropped_frames += n;
            self.dropped_batches += 1;
        }
    }

    /// Hands over the batches whose time has come, and publishes the counters and the clock.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_flush {
            return;
        }
        self.next_flush = now + self.limits.max_delay;
        for w in 0..self.pending.len() {
            self.send(w, false);
        }
        self.publish();
    }

    fn publish(&mut self) {
        if self.newest > Timestamp::ZERO {
            self.telemetry.clock.observe(self.newest);
        }
        let s = self.stats();
        s.frames.store(self.frames, Relaxed);
        s.bytes.store(self.bytes, Relaxed);
        s.queue_dropped_frames.store(self.dropped_frames, Relaxed);
        s.queue_dropped_batches.store(self.dropped_batches, Relaxed);
    }

    /// At shutdown: hands over every pending batch, waiting for room (the workers are still
    /// draining their queues), so nothing read is lost.
    pub fn finish(mut self) {
        for w in 0..self.pending.len() {
            self.send(w, true);
        }
        self.publish();
    }
}

/// How often the kernel's drop counters are read.
const STATS_EVERY: StdDuration = StdDuration::from_secs(1);

/// Reads `src` until `stop`; errors when the interface fails (it went away, ...).
pub fn interface_thread(
    mut src: LiveSource,
    mut router: Router,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut next_stats = Instant::now();
    let mut result = Ok(());
    while !stop.load(Relaxed) {
        match src.next_packet() {
            Ok(Some(p)) => router.route(p.ts, p.link, p.data, p.wire_len),
            Ok(None) => {}
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
        let now = Instant::now();
        router.tick(now);
        if now >= next_stats {
            next_stats = now + STATS_EVERY;
            kernel_stats(&mut src, router.stats());
        }
    }
    kernel_stats(&mut src, router.stats());
    router.finish();
    result
}

fn kernel_stats(src: &mut LiveSource, s: &SourceStats) {
    if let Ok(k) = src.stats() {
        s.kernel_received.store(k.received, Relaxed);
        s.kernel_dropped.store(k.dropped, Relaxed);
        s.interface_dropped.store(k.if_dropped, Relaxed);
    }
}

/// The outer headers put in front of a received datagram: IPv4 (20) and UDP (8).
const OUTER: usize = 28;

/// A `--vxlan-listen` socket, bound (before privileges are dropped).
#[derive(Debug)]
pub struct UdpFeed {
    pub sock: UdpSocket,
    /// The UDP destination port written in the outer header, which the decoder reads as the
    /// tunnel: a `capture.geneve_ports` port, else a `capture.vxlan_ports` one.
    pub tunnel_port: u16,
    /// The socket's inode, to find its drop counter in `/proc/net/udp`.
    inode: Option<u64>,
}

impl UdpFeed {
    /// Binds `addr` with a receive buffer of `buffer_bytes` (capped by the kernel at
    /// `net.core.rmem_max`). A port listed in `capture.geneve_ports` is read as GENEVE, any
    /// other as VXLAN.
    pub fn bind(
        addr: SocketAddr,
        buffer_bytes: usize,
        decode: &DecodeConfig,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let sock = UdpSocket::bind(addr).with_context(|| format!("cannot listen on udp {addr}"))?;
        let port = sock.local_addr()?.port();
        let known = |ports: &[u16]| ports.contains(&port);
        let tunnel_port = match decode.vxlan_ports.first() {
            _ if known(&decode.geneve_ports) || known(&decode.vxlan_ports) => port,
            Some(&vxlan) => vxlan,
            None => anyhow::bail!("--vxlan-listen {addr}: capture.vxlan_ports is empty"),
        };
        if buffer_bytes > 0 {
            use nix::sys::socket::{setsockopt, sockopt::RcvBuf};
            if let Err(e) = setsockopt(&sock, RcvBuf, &buffer_bytes) {
                eprintln!("apiscope: warning: --vxlan-listen {addr}: receive buffer of {buffer_bytes} bytes refused ({e})");
            }
        }
        sock.set_read_timeout(Some(StdDuration::from_millis(100)))?;
        let inode = sock
            .try_clone()
            .ok()
            .map(|s| std::fs::File::from(std::os::fd::OwnedFd::from(s)))
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        Ok(UdpFeed {
            sock,
            tunnel_port,
            inode,
        })
    }
}

/// Reads a `--vxlan-listen` socket until `stop`.
pub fn udp_thread(feed: UdpFeed, mut router: Router, stop: &AtomicBool) -> Result<(), String> {
    let local = feed.sock.local_addr().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    let mut next_stats = Instant::now();
    let mut received = 0u64;
    let mut result = Ok(());
    while !stop.load(Relaxed) {
        match feed.sock.recv_from(&mut buf[OUTER..]) {
            Ok((n, peer)) => {
                received += 1;
                let n = n.min(buf.len() - OUTER);
                outer_header(&mut buf[..OUTER], n, peer, local, feed.tunnel_port);
                let frame = &buf[..OUTER + n];
                router.route(wall_now(), Some(LinkType::Ipv4), frame, frame.len() as u32);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                result = Err(format!("udp {local}: {e}"));
                break;
            }
        }
        let now = Instant::now();
        router.tick(now);
        if now >= next_stats {
            next_stats = now + STATS_EVERY;
            udp_stats(&feed, router.stats(), received);
        }
    }
    udp_stats(&feed, router.stats(), received);
    router.finish();
    result
}

fn udp_stats(feed: &UdpFeed, s: &SourceStats, received: u64) {
    s.kernel_received.store(received, Relaxed);
    if let Some(d) = feed.inode.and_then(udp_drops) {
        s.kernel_dropped.store(d, Relaxed);
    }
}

/// The kernel's drop counter of the UDP socket with inode `inode` (receive buffer full),
/// from `/proc/net/udp` or `/proc/net/udp6`.
fn udp_drops(inode: u64) -> Option<u64> {
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 13 && f[9].parse::<u64>().ok() == Some(inode) {
                return f[12].parse().ok();
            }
        }
    }
    None
}

/// Writes an IPv4 and UDP header for a datagram of `len` bytes from `peer` to `local` on the
/// tunnel's port (IPv6 addresses, which an IPv4 header cannot carry, become 0.0.0.0: only
/// the inner addresses matter).
fn outer_header(out: &mut [u8], len: usize, peer: SocketAddr, local: SocketAddr, port: u16) {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or([0; 4], |a| a.octets()),
    };
    let total = u16::try_from(OUTER + len).unwrap_or(u16::MAX);
    let udp_len = u16::try_from(8 + len).unwrap_or(u16::MAX);
    out[0] = 0x45;
    out[1] = 0;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[4..8].fill(0); // id, flags, fragment offset: not a fragment
    out[8] = 64;
    out[9] = 17;
    out[10..12].fill(0);
    out[12..16].copy_from_slice(&v4(peer.ip()));
    out[16..20].copy_from_slice(&v4(local.ip()));
    out[20..22].copy_from_slice(&peer.port().to_be_bytes());
    out[22..24].copy_from_slice(&port.to_be_bytes());
    out[24..26].copy_from_slice(&udp_len.to_be_bytes());
    out[26..28].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_becomes_a_frame_the_decoder_peels() {
        // VXLAN (VNI 42) carrying Ethernet / IPv4 / TCP 10.0.0.1:40000 -> 10.0.0.2:80.
        let mut inner = vec![0u8; 12];
        inner.extend_from_slice(&[0x08, 0x00]);
        let total = 40u16;
        inner.extend_from_slice(&[0x45, 0, 0, total as u8, 0, 1, 0, 0, 64, 6, 0, 0]);
        inner.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        inner.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02]);
        inner.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        let mut dgram = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        dgram.extend_from_slice(&inner);
        let mut frame = vec![0u8; OUTER];
        frame.extend_from_slice(&dgram);
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:14789".parse().unwrap();
        outer_header(&mut frame[..OUTER], dgram.len(), peer, local, 4789);
        let d = Decoder::new(DecodeConfig::default());
        let ip = d.decode(LinkType::Ipv4, &frame, false).unwrap();
        assert_eq!(ip.proto, 6);
        assert_eq!(ip.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.ctx.tunnel.id, 42);
        assert_eq!(ip.ctx.tunnel.kind, apiscope_capture::TunnelKind::Vxlan);
    }

    #[test]
    fn batches_never_grow_past_batch_max_bytes() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1000);
        let telemetry = Arc::new(Telemetry::new(vec!["test".into()], 1, 1000, 4));
        let limits = BatchLimits {
            max_frames: 1000,
            max_bytes: 10_000,
            max_delay: StdDuration::from_secs(3600),
        };
        let mut r = Router::new(DecodeConfig::default(), vec![tx], limits, telemetry, 0);
        let frame = vec![0u8; 1500];
        for i in 0..100u64 {
            r.route(Timestamp::from_nanos(i), Some(LinkType::Raw), &frame, 1500);
        }
        // A frame larger than a whole batch still goes, alone.
        r.route(
            Timestamp::from_nanos(100),
            Some(LinkType::Raw),
            &[0u8; 30_000],
            30_000,
        );
        r.send(0, true);
        drop(r);
        let batches: Vec<Frames> = rx.iter().collect();
        let frames: usize = batches.iter().map(|b| b.frames.len()).sum();
        assert_eq!(frames, 101);
        // Sixteen batches of six 1500-byte frames (in 10,000 bytes), then the last four.
        assert_eq!(batches.len(), 18);
        for (i, b) in batches[..17].iter().enumerate() {
            assert_eq!(b.frames.len(), if i < 16 { 6 } else { 4 });
            assert_eq!(b.data.capacity(), 10_000);
        }
        let last = batches.last().unwrap();
        assert_eq!(last.frames.len(), 1);
        assert_eq!(last.data.capacity(), 30_000);
    }
}
