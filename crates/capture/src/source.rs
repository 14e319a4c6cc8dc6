//! Packet sources through libpcap: capture files (pcap with µs or ns timestamps, pcapng) and
//! live interfaces, with libpcap's drop statistics.
//!
//! Both hand out [`Packet`]s that borrow libpcap's buffer until the next call, so the
//! engine can process a frame without copying it.

use std::path::{Path, PathBuf};

use pcap::{Active, Capture, Offline, Precision};
use serde::Deserialize;

use crate::decode::LinkType;
use crate::time::Timestamp;

/// One captured frame, valid until the next read.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    /// `None` when the capture's link type is not one we decode.
    pub link: Option<LinkType>,
    pub data: &'a [u8],
    /// Length on the wire; above `data.len()` when the snap length cut the frame.
    pub wire_len: u32,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file does not exist or cannot be read.
    #[error("cannot open {path}: {msg}")]
    Open { path: PathBuf, msg: String },
    /// The file exists but is not a pcap or pcapng capture.
    #[error("{path} is not a pcap or pcapng capture: {msg}")]
    NotACapture { path: PathBuf, msg: String },
    /// The file ends in the middle of a record or is damaged further on; the packets before
    /// the damage were delivered.
    #[error("{path} is truncated or damaged after {packets} packets: {msg}")]
    Truncated {
        path: PathBuf,
        packets: u64,
        msg: String,
    },
    /// A live interface could not be opened or configured.
    #[error("cannot capture on {iface}: {msg}")]
    Live { iface: String, msg: String },
}

/// Reads a pcap or pcapng file.
pub struct FileSource {
    cap: Capture<Offline>,
    path: PathBuf,
    link: Option<LinkType>,
    dlt: i32,
    packets: u64,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("dlt", &self.dlt)
            .field("packets", &self.packets)
            .finish()
    }
}

impl FileSource {
    /// Opens a capture file. Timestamps are read at nanosecond precision whatever the file
    /// holds (libpcap scales microsecond files).
    pub fn open(path: &Path) -> Result<FileSource, SourceError> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(SourceError::Open {
                path: path.to_owned(),
                msg: e.to_string(),
            });
        }
        let cap = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("unknown file format")
                || msg.contains("truncated dump file")
                || msg.contains("bad dump file format")
            {
                SourceError::NotACapture {
                    path: path.to_owned(),
                    msg,
                }
            } else {
                SourceError::Open {
                    path: path.to_owned(),
                    msg,
                }
            }
        })?;
        let dlt = cap.get_datalink().0;
        Ok(FileSource {
            cap,
            path: path.to_owned(),
            link: LinkType::from_dlt(dlt),
            dlt,
            packets: 0,
        })
    }

    /// The file's link type number (DLT).
    pub fn dlt(&self) -> i32 {
        self.dlt
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next frame; `Ok(None)` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, SourceError> {
        match self.cap.next_packet() {
            Ok(p) => {
                self.packets += 1;
                Ok(Some(Packet {
                    ts: Timestamp::from_parts(p.header.ts.tv_sec, p.header.ts.tv_usec, 1),
                    link: self.link,
                    data: p.data,
                    wire_len: p.header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(SourceError::Truncated {
                path: self.path.clone(),
                packets: self.packets,
                msg: e.to_string(),
            }),
        }
    }
}

/// Live capture settings (`[capture.live]` in the configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Bytes captured per frame (`capture.live.snaplen`).
    pub snaplen: i32,
    /// Put the interface in promiscuous mode (`capture.live.promiscuous`).
    pub promiscuous: bool,
    /// Kernel capture buffer in bytes (`capture.live.buffer_bytes`).
    pub buffer_bytes: i32,
    /// Deliver packets as they arrive instead of in kernel batches (`capture.live.immediate`).
    pub immediate: bool,
    /// Read timeout in milliseconds, so idle links still tick (`capture.live.timeout_ms`).
    pub timeout_ms: i32,
    /// BPF filter expression, empty for none (`capture.live.bpf`).
    pub bpf: String,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            snaplen: 65_535,
            promiscuous: true,
            buffer_bytes: 64 << 20,
            immediate: false,
            timeout_ms: 100,
            bpf: String::new(),
        }
    }
}

/// libpcap's statistics for a live capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub received: u64,
    /// Dropped because the kernel buffer was full (we did not keep up).
    pub dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
}

/// Captures from a live interface.
///
/// The capture is put in non-blocking mode and [`LiveSource::next_packet`] waits with
/// `poll(2)` for at most `timeout_ms` itself: libpcap on Linux blocks in `poll` without a
/// timeout when it leaves the wake-up to the kernel's TPACKET_V3 block timer (and in immediate
/// mode), so a quiet link would never give control back to the caller.
pub struct LiveSource {
    cap: Capture<Active>,
    iface: String,
    link: Option<LinkType>,
    nanos: bool,
    timeout_ms: u16,
    /// The last read found nothing: wait for the socket before the next one.
    idle: bool,
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSource")
            .field("iface", &self.iface)
            .finish()
    }
}

impl LiveSource {
    /// Opens `iface` (needs root or CAP_NET_RAW).
    pub fn open(iface: &str, cfg: &LiveConfig) -> Result<LiveSource, SourceError> {
        let err = |e: pcap::Error| SourceError::Live {
            iface: iface.to_owned(),
            msg: e.to_string(),
        };
        let inactive = Capture::from_device(iface)
            .map_err(err)?
            .promisc(cfg.promiscuous)
            .snaplen(cfg.snaplen)
            .buffer_size(cfg.buffer_bytes)
            .immediate_mode(cfg.immediate)
            .timeout(cfg.timeout_ms);
        // Nanosecond timestamps where the platform has them, microseconds otherwise.
        let (mut cap, nanos) = match inactive.precision(Precision::Nano).open() {
            Ok(c) => (c, true),
            Err(_) => (
                Capture::from_device(iface)
                    .map_err(err)?
                    .promisc(cfg.promiscuous)
                    .snaplen(cfg.snaplen)
                    .buffer_size(cfg.buffer_bytes)
                    .immediate_mode(cfg.immediate)
                    .timeout(cfg.timeout_ms)
                    .open()
                    .map_err(err)?,
                false,
            ),
        };
        if !cfg.bpf.is_empty() {
            cap.filter(&cfg.bpf, true).map_err(err)?;
        }
        let link = LinkType::from_dlt(cap.get_datalink().0);
        let cap = cap.setnonblock().map_err(err)?;
        Ok(LiveSource {
            cap,
            iface: iface.to_owned(),
            link,
            nanos,
            timeout_ms: u16::try_from(cfg.timeout_ms.max(1)).unwrap_or(u16::MAX),
            idle: false,
        })
    }

    /// The next frame; `Ok(None)` when the read timeout passed without one.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, SourceError> {
        use nix::poll::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd as _;
        let unit = if self.nanos { 1 } else { 1_000 };
        if self.idle {
            let mut fds = [PollFd::new(self.cap.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, self.timeout_ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(SourceError::Live {
                        iface: self.iface.clone(),
                        msg: format!("poll: {e}"),
                    })
                }
            }
        }
        let r = self.cap.next_packet();
        self.idle = matches!(r, Err(pcap::Error::TimeoutExpired));
        match r {
            Ok(p) => Ok(Some(Packet {
                ts: Timestamp::from_parts(p.header.ts.tv_sec, p.header.ts.tv_usec, unit),
                link: self.link,
                data: p.data,
                wire_len: p.header.len,
            })),
            Err(pcap::Error::TimeoutExpired) => Ok(None),
            Err(e) => Err(SourceError::Live {
                iface: self.iface.clone(),
                msg: e.to_string(),
            }),
        }
    }

    /// libpcap's counters since the capture started.
    pub fn stats(&mut self) -> Result<LiveStats, SourceError> {
        let s = self.cap.stats().map_err(|e| SourceError::Live {
            iface: self.iface.clone(),
            msg: e.to_string(),
        })?;
        Ok(LiveStats {
            received: u64::from(s.received),
            dropped: u64::from(s.dropped),
            if_dropped: u64::from(s.if_dropped),
        })
    }
}
