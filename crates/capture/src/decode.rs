//! Link layers and tunnels down to the innermost IP packet, without copying.
//!
//! [`Decoder::decode`] walks a captured frame layer by layer (Ethernet, 802.1Q/QinQ, MPLS,
//! PPPoE, LLC/SNAP, 802.11 data frames, IPv4, IPv6 with extension headers, IP-in-IP, GRE
//! with key/sequence, transparent Ethernet bridging, ERSPAN II/III, UDP-carried VXLAN,
//! GENEVE, GRE-in-UDP, Teredo and AYIYA) and returns an [`IpPacket`] that borrows the
//! transport payload from the frame. Every header is bounds-checked before it is read, so
//! no input can panic; a failure is a small `Copy` [`DecodeError`] the caller counts.
//!
//! A fragmented datagram comes back with [`IpPacket::frag`] set; once the fragment table
//! has put it back together, [`Decoder::resume`] continues decapsulation from its payload
//! (tunnels over fragmented outer packets are common on mirroring links with a small MTU).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::key::{TunnelId, TunnelKind};

/// The link types we decode, from the capture's DLT/LINKTYPE value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// BSD loopback: 4-byte address family in the writer's byte order (DLT_NULL).
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order (DLT_LOOP).
    Loop,
    /// Raw IP, version from the first nibble.
    Raw,
    Ipv4,
    Ipv6,
    LinuxSll,
    LinuxSll2,
    CiscoHdlc,
    Ppp,
    Ieee80211,
    Radiotap,
    Nflog,
}

impl LinkType {
    /// Maps a pcap LINKTYPE/DLT number; `None` when unsupported.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            12 | 14 | 101 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            104 => LinkType::CiscoHdlc,
            9 | 50 => LinkType::Ppp,
            105 => LinkType::Ieee80211,
            127 => LinkType::Radiotap,
            239 => LinkType::Nflog,
            _ => return None,
        })
    }
}

/// Why a frame could not be decoded to an IP packet. Each kind has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A link-layer header was cut short or inconsistent.
    LinkMalformed,
    /// Not IP (ARP, LLDP, 802.11 management, ...): skipped, not an error of the input.
    NonIp,
    /// An IPv4/IPv6 header or extension header was invalid or cut short.
    IpMalformed,
    /// A tunnel header was invalid or cut short.
    TunnelMalformed,
    /// More nested tunnels than `capture.max_tunnel_depth`.
    TunnelDepthExceeded,
    /// A tunnel variant we do not decode (e.g. GRE version 1).
    TunnelUnsupported,
}

/// Decoder settings (`[capture]` in the configuration).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// UDP destination ports carrying VXLAN (`capture.vxlan_ports`).
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports carrying GENEVE (`capture.geneve_ports`).
    pub geneve_ports: Vec<u16>,
    /// UDP destination ports carrying GRE-in-UDP, RFC 8086 (`capture.gre_udp_ports`).
    pub gre_udp_ports: Vec<u16>,
    /// UDP port of Teredo (`capture.teredo_port`, 0 = off).
    pub teredo_port: u16,
    /// UDP port of AYIYA (`capture.ayiya_port`, 0 = off).
    pub ayiya_port: u16,
    /// Maximum nested tunnels (`capture.max_tunnel_depth`).
    pub max_tunnel_depth: u8,
    /// Put the innermost VLAN id into the flow key (`capture.track_vlan`).
    pub track_vlan: bool,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            vxlan_ports: vec![4789],
            geneve_ports: vec![6081],
            gre_udp_ports: vec![4754],
            teredo_port: 3544,
            ayiya_port: 5072,
            max_tunnel_depth: 8,
            track_vlan: true,
        }
    }
}

/// What decapsulation has learned on the way in; carried across fragment reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ctx {
    pub tunnel: TunnelId,
    /// Tunnels crossed so far.
    pub depth: u8,
}

/// An IPv4/IPv6 fragment's place in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frag {
    pub id: u32,
    /// Byte offset of this fragment's payload in the datagram's payload.
    pub offset: u32,
    pub more: bool,
}

/// The innermost IP packet of a frame.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    pub ctx: Ctx,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// The transport payload (TCP header and data), as much as was captured.
    pub payload: &'a [u8],
    /// Bytes of the payload cut off by the capture's snap length.
    pub missing: u32,
    /// Set when this packet is a fragment (including a first fragment).
    pub frag: Option<Frag>,
}

/// Stateless frame decoder; cloning it is cheap (the configuration is shared).
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    cfg: std::sync::Arc<DecodeConfig>,
}

enum Layer<'a> {
    Ether(&'a [u8]),
    EtherType(u16, &'a [u8]),
    Ip(&'a [u8]),
    Ieee80211(&'a [u8]),
    /// A transport payload after an IP header, to dispatch on protocol/ports.
    IpPayload(IpPacket<'a>),
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;
const ETH_ARUBA_WLAN: u16 = 0x8200;

/// Decoding steps per frame; bounds pathological inputs such as thousands of VLAN tags.
const MAX_STEPS: usize = 64;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Self {
        Decoder {
            cfg: std::sync::Arc::new(cfg),
        }
    }

    pub fn config(&self) -> &DecodeConfig {
        &self.cfg
    }

    /// Decodes `frame` of link type `link` to its innermost IP packet. `truncated` says the
    /// capture cut the frame short (caplen < wire length), which makes a short IP payload
    /// legitimate rather than malformed.
    pub fn decode<'a>(
        &self,
        link: LinkType,
        frame: &'a [u8],
        truncated: bool,
    ) -> Result<IpPacket<'a>, DecodeError> {
        // Fast path for the common frame: Ethernet, IPv4, TCP, not a fragment.
        if link == LinkType::Ethernet && frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
            if let Ok(ip) = ipv4(&frame[14..], Ctx::default(), truncated) {
                if ip.proto == 6 && ip.frag.is_none() {
                    return Ok(ip);
                }
            }
        }
        let first = self.link_layer(link, frame)?;
        self.walk(first, Ctx::default(), truncated)
    }

    /// Continues decapsulation of a reassembled datagram's payload.
    pub fn resume<'a>(
        &self,
        ctx: Ctx,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        payload: &'a [u8],
    ) -> Result<IpPacket<'a>, DecodeError> {
        let ip = IpPacket {
            ctx,
            src,
            dst,
            proto,
            payload,
            missing: 0,
            frag: None,
        };
        self.walk(Layer::IpPayload(ip), ctx, false)
    }

    fn link_layer<'a>(&self, link: LinkType, f: &'a [u8]) -> Result<Layer<'a>, DecodeError> {
        use DecodeError::LinkMalformed;
        Ok(match link {
            LinkType::Ethernet => Layer::Ether(f),
            LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Layer::Ip(f),
            LinkType::Null | LinkType::Loop => {
                let raw: [u8; 4] = f
                    .get(..4)
                    .ok_or(LinkMalformed)?
                    .try_into()
                    .unwrap_or([0; 4]);
                let af = if link == LinkType::Loop {
                    u32::from_be_bytes(raw)
                } else {
                    // Host byte order of the writer: whichever reading is small.
                    let le = u32::from_le_bytes(raw);
                    if le <= 0xffff {
                        le
                    } else {
                        u32::from_be_bytes(raw)
                    }
                };
                match af {
                    2 | 24 | 28 | 30 | 10 => Layer::Ip(&f[4..]),
                    _ => return Err(DecodeError::NonIp),
                }
            }
            LinkType::LinuxSll => {
                let proto = be16(f, 14).ok_or(LinkMalformed)?;
                Layer::EtherType(proto, &f[16..])
            }
            LinkType::LinuxSll2 => {
                let proto = be16(f, 0).ok_or(LinkMalformed)?;
                if f.len() < 20 {
                    return Err(LinkMalformed);
                }
                Layer::EtherType(proto, &f[20..])
            }
            LinkType::CiscoHdlc => {
                let proto = be16(f, 2).ok_or(LinkMalformed)?;
                Layer::EtherType(proto, &f[4..])
            }
            LinkType::Ppp => ppp(f)?,
            LinkType::Ieee80211 => Layer::Ieee80211(f),
            LinkType::Radiotap => {
                let len = f
                    .get(2..4)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                    .ok_or(LinkMalformed)?;
                Layer::Ieee80211(f.get(len..).ok_or(LinkMalformed)?)
            }
            LinkType::Nflog => nflog(f)?,
        })
    }

    fn walk<'a>(
        &self,
        mut layer: Layer<'a>,
        mut ctx: Ctx,
        truncated: bool,
    ) -> Result<IpPacket<'a>, DecodeError> {
        for _ in 0..MAX_STEPS {
            let inside = ctx.depth > 0;
            let tunnel_err = |e: DecodeError| match e {
                // A cut-short link header inside a tunnel is the tunnel's damage.
                DecodeError::LinkMalformed if inside => DecodeError::TunnelMalformed,
                e => e,
            };
            layer = match layer {
                Layer::Ether(f) => ethernet(f).map_err(tunnel_err)?,
                Layer::EtherType(t, p) => self.ethertype(t, p, &mut ctx).map_err(tunnel_err)?,
                Layer::Ieee80211(f) => ieee80211(f).map_err(tunnel_err)?,
                Layer::Ip(p) => {
                    let ip = ip(p, ctx, truncated)?;
                    if ip.frag.is_some() {
                        return Ok(ip);
                    }
                    Layer::IpPayload(ip)
                }
                Layer::IpPayload(ip) => match self.ip_payload(ip, &mut ctx)? {
                    Some(next) => next,
                    None => return Ok(IpPacket { ctx, ..ip }),
                },
            };
        }
        Err(DecodeError::TunnelDepthExceeded)
    }

    fn enter_tunnel(&self, ctx: &mut Ctx) -> Result<(), DecodeError> {
        ctx.depth += 1;
        if ctx.depth > self.cfg.max_tunnel_depth {
            return Err(DecodeError::TunnelDepthExceeded);
        }
        Ok(())
    }

    fn ethertype<'a>(&self, t: u16, p: &'a [u8], ctx: &mut Ctx) -> Result<Layer<'a>, DecodeError> {
        use DecodeError::*;
        Ok(match t {
            ETH_IPV4 | ETH_IPV6 => Layer::Ip(p),
            // 802.1Q, 802.1ad, and the pre-standard QinQ types.
            0x8100 | 0x88a8 | 0x9100 | 0x9200 => {
                let tci = be16(p, 0).ok_or(LinkMalformed)?;
                let inner = be16(p, 2).ok_or(LinkMalformed)?;
                if self.cfg.track_vlan {
                    ctx.tunnel.vlan = tci & 0x0fff;
                }
                Layer::EtherType(inner, &p[4..])
            }
            0x8847 | 0x8848 => mpls(p)?,
            // PPPoE session: 6-byte header, then PPP.
            0x8864 => ppp_proto(p.get(6..).ok_or(LinkMalformed)?)?,
            ETH_TEB => Layer::Ether(p),
            ETH_ERSPAN2 => {
                // Type II: ver(4) vlan(12) cos(3) en(2) t(1) session(10) reserved(12) index(20).
                let w = be16(p, 2).ok_or(TunnelMalformed)?;
                let ver = p[0] >> 4;
                if ver != 1 {
                    return Err(TunnelMalformed);
                }
                ctx.tunnel.kind = TunnelKind::Erspan;
                ctx.tunnel.id = u32::from(w & 0x03ff);
                Layer::Ether(p.get(8..).ok_or(TunnelMalformed)?)
            }
            ETH_ERSPAN3 => {
                // Type III: 12 bytes, plus an 8-byte platform subheader when O is set.
                let w = be16(p, 2).ok_or(TunnelMalformed)?;
                let flags = *p.get(11).ok_or(TunnelMalformed)?;
                if p[0] >> 4 != 2 {
                    return Err(TunnelMalformed);
                }
                ctx.tunnel.kind = TunnelKind::Erspan;
                ctx.tunnel.id = u32::from(w & 0x03ff);
                let hdr = if flags & 0x01 != 0 { 20 } else { 12 };
                Layer::Ether(p.get(hdr..).ok_or(TunnelMalformed)?)
            }
            // Aruba's GRE-carried 802.11.
            ETH_ARUBA_WLAN..=0x8300 => Layer::Ieee80211(p),
            _ => return Err(NonIp),
        })
    }

    /// Dispatches on the transport protocol: another tunnel (`Some`) or the end (`None`).
    fn ip_payload<'a>(
        &self,
        ip: IpPacket<'a>,
        ctx: &mut Ctx,
    ) -> Result<Option<Layer<'a>>, DecodeError> {
        use DecodeError::*;
        let p = ip.payload;
        Ok(Some(match ip.proto {
            // IP-in-IP, IPv6-in-IP.
            4 | 41 => {
                self.enter_tunnel(ctx)?;
                Layer::Ip(p)
            }
            47 => {
                self.enter_tunnel(ctx)?;
                self.gre(p, ctx)?
            }
            17 => {
                let (Some(sport), Some(dport)) = (be16(p, 0), be16(p, 2)) else {
                    return Ok(None);
                };
                let Some(body) = p.get(8..) else {
                    return Ok(None);
                };
                if self.cfg.vxlan_ports.contains(&dport) {
                    self.enter_tunnel(ctx)?;
                    let flags = *body.first().ok_or(TunnelMalformed)?;
                    let vni = be32(body, 4).ok_or(TunnelMalformed)? >> 8;
                    if flags & 0x08 != 0 {
                        ctx.tunnel.kind = TunnelKind::Vxlan;
                        ctx.tunnel.id = vni;
                    }
                    Layer::Ether(&body[8..])
                } else if self.cfg.geneve_ports.contains(&dport) {
                    self.enter_tunnel(ctx)?;
                    let opt_len = usize::from(*body.first().ok_or(TunnelMalformed)? & 0x3f) * 4;
                    if body[0] >> 6 != 0 {
                        return Err(TunnelMalformed);
                    }
                    let proto = be16(body, 2).ok_or(TunnelMalformed)?;
                    let vni = be32(body, 4).ok_or(TunnelMalformed)? >> 8;
                    ctx.tunnel.kind = TunnelKind::Geneve;
                    ctx.tunnel.id = vni;
                    Layer::EtherType(proto, body.get(8 + opt_len..).ok_or(TunnelMalformed)?)
                } else if self.cfg.gre_udp_ports.contains(&dport) {
                    self.enter_tunnel(ctx)?;
                    self.gre(body, ctx)?
                } else if self.cfg.teredo_port != 0
                    && (dport == self.cfg.teredo_port || sport == self.cfg.teredo_port)
                {
                    match teredo(body) {
                        Some(inner) => {
                            self.enter_tunnel(ctx)?;
                            Layer::Ip(inner)
                        }
                        None => return Ok(None),
                    }
                } else if self.cfg.ayiya_port != 0
                    && (dport == self.cfg.ayiya_port || sport == self.cfg.ayiya_port)
                {
                    match ayiya(body) {
                        Some(inner) => {
                            self.enter_tunnel(ctx)?;
                            Layer::Ip(inner)
                        }
                        None => return Ok(None),
                    }
                } else {
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }))
    }

    fn gre<'a>(&self, p: &'a [u8], ctx: &mut Ctx) -> Result<Layer<'a>, DecodeError> {
        use DecodeError::*;
        let flags = be16(p, 0).ok_or(TunnelMalformed)?;
        let proto = be16(p, 2).ok_or(TunnelMalformed)?;
        if flags & 0x0007 != 0 {
            // Version 1 is PPTP's enhanced GRE.
            return Err(TunnelUnsupported);
        }
        let mut off = 4;
        if flags & 0x8000 != 0 {
            off += 4; // checksum + reserved
        }
        if flags & 0x2000 != 0 {
            let key = be32(p, off).ok_or(TunnelMalformed)?;
            ctx.tunnel.kind = TunnelKind::Gre;
            ctx.tunnel.id = key;
            off += 4;
        }
        let has_seq = flags & 0x1000 != 0;
        if has_seq {
            off += 4;
        }
        let rest = p.get(off..).ok_or(TunnelMalformed)?;
        // ERSPAN type I has no ERSPAN header and no sequence number.
        if proto == ETH_ERSPAN2 && !has_seq {
            ctx.tunnel.kind = TunnelKind::Erspan;
            ctx.tunnel.id = 0;
            return Ok(Layer::Ether(rest));
        }
        Ok(Layer::EtherType(proto, rest))
    }
}

fn ethernet(f: &[u8]) -> Result<Layer<'_>, DecodeError> {
    let t = be16(f, 12).ok_or(DecodeError::LinkMalformed)?;
    let p = &f[14..];
    if t >= 0x0600 {
        return Ok(Layer::EtherType(t, p));
    }
    // 802.3 length field: LLC, possibly SNAP.
    llc(p)
}

fn llc(p: &[u8]) -> Result<Layer<'_>, DecodeError> {
    match p {
        [0xaa, 0xaa, 0x03, _, _, _, t0, t1, rest @ ..] => {
            Ok(Layer::EtherType(u16::from_be_bytes([*t0, *t1]), rest))
        }
        [0x06, 0x06, 0x03, rest @ ..] => Ok(Layer::Ip(rest)),
        _ => Err(DecodeError::NonIp),
    }
}

fn mpls(mut p: &[u8]) -> Result<Layer<'_>, DecodeError> {
    loop {
        let entry = be32(p, 0).ok_or(DecodeError::LinkMalformed)?;
        p = &p[4..];
        if entry & 0x100 != 0 {
            break;
        }
    }
    match p.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Ok(Layer::Ip(p)),
        // Pseudowire control word (first nibble 0), then Ethernet.
        Some(0) => Ok(Layer::Ether(p.get(4..).ok_or(DecodeError::LinkMalformed)?)),
        _ => Err(DecodeError::NonIp),
    }
}

fn ppp(f: &[u8]) -> Result<Layer<'_>, DecodeError> {
    // Address/control 0xff 0x03 are optional (ACFC).
    let f = if f.starts_with(&[0xff, 0x03]) {
        &f[2..]
    } else {
        f
    };
    ppp_proto(f)
}

fn ppp_proto(p: &[u8]) -> Result<Layer<'_>, DecodeError> {
    let (proto, rest) = match p.first() {
        // Protocol field compression: a one-byte protocol is odd.
        Some(b) if b & 1 == 1 => (u16::from(*b), &p[1..]),
        _ => (
            be16(p, 0).ok_or(DecodeError::LinkMalformed)?,
            p.get(2..).unwrap_or(&[]),
        ),
    };
    match proto {
        0x0021 | 0x0057 => Ok(Layer::Ip(rest)),
        _ => Err(DecodeError::NonIp),
    }
}

fn nflog(f: &[u8]) -> Result<Layer<'_>, DecodeError> {
    // family(1) version(1) resource id(2), then TLVs: length(2, host order), type(2).
    let mut off = 4;
    while off + 4 <= f.len() {
        let len = usize::from(u16::from_le_bytes([f[off], f[off + 1]]));
        let ty = u16::from_le_bytes([f[off + 2], f[off + 3]]);
        if len < 4 || off + len > f.len() {
            return Err(DecodeError::LinkMalformed);
        }
        if ty == 9 {
            return Ok(Layer::Ip(&f[off + 4..off + len]));
        }
        off += (len + 3) & !3;
    }
    Err(DecodeError::NonIp)
}

fn ieee80211(f: &[u8]) -> Result<Layer<'_>, DecodeError> {
    let fc = *f.first().ok_or(DecodeError::LinkMalformed)?;
    let flags = *f.get(1).ok_or(DecodeError::LinkMalformed)?;
    let ftype = (fc >> 2) & 0x3;
    let subtype = fc >> 4;
    if ftype != 2 || subtype & 0x4 != 0 {
        // Not a data frame, or a null-data frame.
        return Err(DecodeError::NonIp);
    }
    let mut hdr = 24;
    if flags & 0x03 == 0x03 {
        hdr += 6; // four addresses
    }
    if subtype & 0x8 != 0 {
        hdr += 2; // QoS control
        if flags & 0x80 != 0 {
            hdr += 4; // HT control
        }
    }
    if flags & 0x40 != 0 {
        return Err(DecodeError::NonIp); // protected frame
    }
    llc(f.get(hdr..).ok_or(DecodeError::LinkMalformed)?)
}

fn teredo(mut p: &[u8]) -> Option<&[u8]> {
    // Optional authentication indicator, then optional origin indication.
    if p.starts_with(&[0x00, 0x01]) {
        let id_len = usize::from(*p.get(2)?);
        let au_len = usize::from(*p.get(3)?);
        p = p.get(4 + id_len + au_len + 9..)?;
    }
    if p.starts_with(&[0x00, 0x00]) {
        p = p.get(8..)?;
    }
    // Only accept what is plainly an IPv6 header of the right length.
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(be16(p, 4)?);
    (plen + 40 == p.len()).then_some(p)
}

fn ayiya(p: &[u8]) -> Option<&[u8]> {
    let id_len = 1usize << (p.first()? >> 4);
    let sig_len = usize::from(p.get(1)? >> 4) * 4;
    let next = *p.get(3)?;
    if next != 41 && next != 4 {
        return None;
    }
    let inner = p.get(8 + id_len + sig_len..)?;
    matches!(inner.first().map(|b| b >> 4), Some(4) | Some(6)).then_some(inner)
}

fn ip(p: &[u8], ctx: Ctx, truncated: bool) -> Result<IpPacket<'_>, DecodeError> {
    match p.first().map(|b| b >> 4) {
        Some(4) => ipv4(p, ctx, truncated),
        Some(6) => ipv6(p, ctx, truncated),
        _ => Err(DecodeError::IpMalformed),
    }
}

/// Cuts an IP payload to the header's stated length: trims Ethernet padding; a shortfall
/// is legitimate only when the capture truncated the frame.
fn cut(p: &[u8], start: usize, end: usize, truncated: bool) -> Result<(&[u8], u32), DecodeError> {
    if end < start {
        return Err(DecodeError::IpMalformed);
    }
    if end <= p.len() {
        return Ok((&p[start..end], 0));
    }
    if !truncated {
        return Err(DecodeError::IpMalformed);
    }
    let avail = p.get(start..).unwrap_or(&[]);
    Ok((avail, (end - start - avail.len()) as u32))
}

fn ipv4(p: &[u8], ctx: Ctx, truncated: bool) -> Result<IpPacket<'_>, DecodeError> {
    use DecodeError::IpMalformed;
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return Err(IpMalformed);
    }
    let total = usize::from(be16(p, 2).ok_or(IpMalformed)?);
    let (payload, missing) = cut(p, ihl, total, truncated)?;
    let id = u32::from(be16(p, 4).ok_or(IpMalformed)?);
    let ff = be16(p, 6).ok_or(IpMalformed)?;
    let more = ff & 0x2000 != 0;
    let offset = u32::from(ff & 0x1fff) * 8;
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Ok(IpPacket {
        ctx,
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto: p[9],
        payload,
        missing,
        frag: (more || offset != 0).then_some(Frag { id, offset, more }),
    })
}

fn ipv6(p: &[u8], ctx: Ctx, truncated: bool) -> Result<IpPacket<'_>, DecodeError> {
    use DecodeError::IpMalformed;
    if p.len() < 40 {
        return Err(IpMalformed);
    }
    let plen = usize::from(be16(p, 4).ok_or(IpMalformed)?);
    // A zero payload length means a jumbogram; we treat it as "to the end of the frame".
    let end = if plen == 0 { p.len() } else { 40 + plen };
    let (body, missing) = cut(p, 40, end, truncated)?;
    let src: [u8; 16] = p[8..24].try_into().map_err(|_| IpMalformed)?;
    let dst: [u8; 16] = p[24..40].try_into().map_err(|_| IpMalformed)?;
    let (next, payload, frag) = ipv6_extensions(p[6], body)?;
    // A non-first fragment's payload is not a transport header: its protocol is the one
    // named by the fragment header.
    Ok(IpPacket {
        ctx,
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: next,
        payload,
        missing,
        frag,
    })
}

/// Walks IPv6 extension headers (RFC 8200): returns the upper-layer protocol, its payload,
/// and the fragment header's fields when the packet is a real fragment (an atomic fragment,
/// offset 0 without more, is a whole datagram).
fn ipv6_extensions(mut next: u8, mut p: &[u8]) -> Result<(u8, &[u8], Option<Frag>), DecodeError> {
    use DecodeError::IpMalformed;
    let mut frag = None;
    // Each header is at least 8 bytes, so this loop is bounded by the packet length.
    loop {
        let len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*p.get(1).ok_or(IpMalformed)?) + 1) * 8,
            // Authentication header: length in 4-byte units, minus 2.
            51 => (usize::from(*p.get(1).ok_or(IpMalformed)?) + 2) * 4,
            44 => {
                let v = be16(p, 2).ok_or(IpMalformed)?;
                let id = be32(p, 4).ok_or(IpMalformed)?;
                let offset = u32::from(v & 0xfff8);
                let more = v & 1 != 0;
                if offset != 0 || more {
                    frag = Some(Frag { id, offset, more });
                }
                let nh = p[0];
                p = &p[8..];
                if offset != 0 {
                    // A later fragment holds no headers of its own.
                    return Ok((nh, p, frag));
                }
                next = nh;
                continue;
            }
            _ => return Ok((next, p, frag)),
        };
        let nh = *p.first().ok_or(IpMalformed)?;
        p = p.get(len..).ok_or(IpMalformed)?;
        next = nh;
    }
}

/// A TCP segment's header fields and payload.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: &'a [u8],
}

/// The TCP flags we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Parses a TCP header; `None` when it is cut short or its data offset is invalid.
pub fn tcp(p: &[u8]) -> Option<TcpSegment<'_>> {
    let h = etherparse::TcpHeaderSlice::from_slice(p).ok()?;
    let hl = h.slice().len();
    Some(TcpSegment {
        src_port: h.source_port(),
        dst_port: h.destination_port(),
        seq: h.sequence_number(),
        ack: h.acknowledgment_number(),
        flags: TcpFlags {
            syn: h.syn(),
            ack: h.ack(),
            fin: h.fin(),
            rst: h.rst(),
        },
        window: h.window_size(),
        payload: &p[hl..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ];
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
        ]);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn eth(ethertype: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = eth(0x0800, &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], b"hi"));
        let ip = Decoder::default()
            .decode(LinkType::Ethernet, &f, false)
            .unwrap();
        assert_eq!(ip.proto, 6);
        let seg = tcp(ip.payload).unwrap();
        assert_eq!((seg.src_port, seg.dst_port), (40000, 80));
        assert_eq!(seg.payload, b"hi");
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let mut f = eth(0x0800, &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], b""));
        f.extend_from_slice(&[0; 6]);
        let ip = Decoder::default()
            .decode(LinkType::Ethernet, &f, false)
            .unwrap();
        assert_eq!(tcp(ip.payload).unwrap().payload, b"");
    }

    #[test]
    fn short_ip_is_malformed_unless_truncated() {
        let f = eth(0x0800, &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], b"hello"));
        let cut_frame = &f[..f.len() - 3];
        let d = Decoder::default();
        assert_eq!(
            d.decode(LinkType::Ethernet, cut_frame, false).unwrap_err(),
            DecodeError::IpMalformed
        );
        let ip = d.decode(LinkType::Ethernet, cut_frame, true).unwrap();
        assert_eq!(ip.missing, 3);
    }

    #[test]
    fn vlan_and_vxlan_set_the_tunnel_id() {
        let inner = eth(0x0800, &ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], b"x"));
        let mut udp = vec![0x12, 0x34, 0x12, 0xb5, 0, 0, 0, 0]; // dport 4789
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
        udp.extend_from_slice(&inner);
        let total = 20 + udp.len();
        let mut outer = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            64,
            17,
            0,
            0,
        ];
        outer.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        outer.extend_from_slice(&udp);
        let mut tagged = vec![0x00, 0x07, 0x08, 0x00];
        tagged.extend_from_slice(&outer);
        let f = eth(0x8100, &tagged);
        let ip = Decoder::default()
            .decode(LinkType::Ethernet, &f, false)
            .unwrap();
        assert_eq!(ip.src, IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)));
        assert_eq!(ip.ctx.tunnel.kind, TunnelKind::Vxlan);
        assert_eq!(ip.ctx.tunnel.id, 42);
        assert_eq!(ip.ctx.tunnel.vlan, 7);
        assert_eq!(ip.ctx.depth, 1);
    }

    #[test]
    fn every_prefix_of_a_frame_decodes_without_panic() {
        let inner = eth(0x0800, &ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], b"payload"));
        let d = Decoder::default();
        for link in [
            LinkType::Ethernet,
            LinkType::Null,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Nflog,
            LinkType::Radiotap,
            LinkType::Ppp,
            LinkType::CiscoHdlc,
        ] {
            for n in 0..inner.len() {
                let _ = d.decode(link, &inner[..n], n % 2 == 0);
            }
        }
    }

    #[test]
    fn tunnel_depth_is_bounded() {
        // IPv4-in-IPv4 nested ten times.
        let mut pkt = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], b"");
        for _ in 0..10 {
            let total = 20 + pkt.len();
            let mut outer = vec![
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                1,
                0,
                0,
                64,
                4,
                0,
                0,
            ];
            outer.extend_from_slice(&[9, 9, 9, 9, 8, 8, 8, 8]);
            outer.extend_from_slice(&pkt);
            pkt = outer;
        }
        let err = Decoder::default()
            .decode(LinkType::Raw, &pkt, false)
            .unwrap_err();
        assert_eq!(err, DecodeError::TunnelDepthExceeded);
    }
}
