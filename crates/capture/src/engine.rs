//! The engine: frames in, per-connection stream events out.
//!
//! [`Engine::process`] decodes a frame, reassembles IP fragments, finds or creates the
//! connection in the flow table and runs both directions' [`HalfStream`]s, which call the
//! [`StreamHandler`]. Capture time only moves forward (the largest timestamp seen so far),
//! and every second of it the table is swept for idle and over-age connections.
//!
//! The flow table is a slab of connections with a hash index on the direction-free key.
//! When it holds `flow.max_flows` connections, or the estimated memory passes
//! `flow.memcap_bytes`, a connection is evicted: of a few sampled slots, the one idle the
//! longest (sampling with a fixed seed keeps replays deterministic).

use hashbrown::HashTable;

use serde::Deserialize;

use crate::counters::Counters;
use crate::decode::{self, DecodeConfig, DecodeError, Decoder, IpPacket, LinkType};
use crate::frag::{FragConfig, FragTable};
use crate::key::{Endpoint, FlowKey, NormKey, TunnelId};
use crate::stream::{CloseReason, ConnMeta, Direction, Orientation, StreamEvent, StreamHandler};
use crate::tcp::{HalfStream, ReasmConfig, Segment, Shared};
use crate::time::{Duration, Timestamp};

/// Flow table bounds and timeouts (`[flow]` in the configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Connections tracked at once (`flow.max_flows`).
    pub max_flows: usize,
    /// Estimated bytes for flows, buffers and consumer state (`flow.memcap_bytes`).
    pub memcap_bytes: usize,
    /// Close a connection after this long without packets (`flow.idle_timeout_secs`).
    pub idle_timeout_secs: u64,
    /// Close a connection this long after its first packet (`flow.lifetime_timeout_secs`).
    pub lifetime_timeout_secs: u64,
    /// Keep a closed connection this long to absorb its last ACKs (`flow.closed_timeout_secs`).
    pub closed_timeout_secs: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            memcap_bytes: 1 << 30,
            idle_timeout_secs: 300,
            lifetime_timeout_secs: 86_400,
            closed_timeout_secs: 10,
        }
    }
}

/// Everything the engine needs to know.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub decode: DecodeConfig,
    pub frag: FragConfig,
    pub flow: FlowConfig,
    pub reassembly: ReasmConfig,
}

/// Estimated memory held by an [`Engine`], by part (their sum is [`Engine::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Flow-table entries (entries × a fixed overhead).
    pub flows: usize,
    /// Out-of-order bytes buffered by TCP reassembly.
    pub reassembly: usize,
    /// Bytes held by the IP fragment table.
    pub fragments: usize,
    /// The consumer's per-connection state ([`StreamHandler::conn_memory`]).
    pub consumer: usize,
}

/// A table key with its hash computed once per packet (the shard hash, `loose_key`'s
/// stable hash), so the maps do not hash the addresses a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keyed {
    hash: u64,
    key: NormKey,
}

/// Flow slots by key: a hashbrown table of slot numbers (four bytes and a control byte a
/// bucket), each compared through the flow in its slot. Every entry's hash is its flow's
/// `meta.hash`, so the table can rehash from the slots.
#[derive(Debug, Default)]
struct SlotMap(HashTable<u32>);

impl SlotMap {
    fn get<S>(
        &self,
        slots: &[Option<Flow<S>>],
        hash: u64,
        eq: impl Fn(&Flow<S>) -> bool,
    ) -> Option<u32> {
        self.0
            .find(hash, |&s| slots[s as usize].as_ref().is_some_and(&eq))
            .copied()
    }

    /// Points the entry of the flows `eq` matches at `slot`, adding it if there is none.
    fn insert<S>(
        &mut self,
        slots: &[Option<Flow<S>>],
        hash: u64,
        slot: u32,
        eq: impl Fn(&Flow<S>) -> bool,
    ) {
        let same = |&s: &u32| s != slot && slots[s as usize].as_ref().is_some_and(&eq);
        match self.0.find_mut(hash, same) {
            Some(v) => *v = slot,
            None => {
                self.0.insert_unique(hash, slot, |&s| {
                    slots[s as usize].as_ref().map_or(0, |f| f.meta.hash)
                });
            }
        }
    }

    /// Removes the entries (with this `hash`) that point at `slot`.
    fn remove(&mut self, hash: u64, slot: u32) {
        while let Ok(e) = self.0.find_entry(hash, |&s| s == slot) {
            e.remove();
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes held: all buckets, used or not (removals leave tombstones, and a table that
    /// churns may double with fewer entries than buckets).
    fn bytes(&self) -> usize {
        match self.0.capacity() {
            0 => 0,
            c => (c * 8 / 7).next_power_of_two() * (std::mem::size_of::<u32>() + 1),
        }
    }
}

/// Bytes of one flow's slot and its place in the free list.
const fn slot_bytes<S>() -> usize {
    std::mem::size_of::<Option<Flow<S>>>() + std::mem::size_of::<u32>()
}

/// What a new flow may add besides its buffers and its consumer's heap: its slot and, for
/// each of the two key maps, up to three buckets (hashbrown keeps a control byte per bucket,
/// at most 7/8 of them full, and doubles).
const fn flow_overhead<S>() -> usize {
    slot_bytes::<S>() + 2 * 3 * (std::mem::size_of::<u32>() + 1)
}

/// Slots sampled when choosing a flow to evict.
const EVICTION_SAMPLES: usize = 8;
/// How often (in capture time) the table is swept for timeouts.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Flow<S> {
    meta: ConnMeta,
    halves: [HalfStream; 2],
    last_seen: Timestamp,
    /// `Closed` was delivered; the entry lingers to absorb stray packets.
    closed: bool,
    /// Consumer state; dropped at close.
    user: Option<S>,
    user_mem: usize,
    /// The other direction's key when it arrived under another tunnel id (asymmetric join).
    alias: Option<NormKey>,
}

/// Packets in, stream events out. See the module docs.
#[derive(Debug)]
pub struct Engine<H: StreamHandler> {
    cfg: EngineConfig,
    decoder: Decoder,
    frags: FragTable,
    slots: Vec<Option<Flow<H::Conn>>>,
    free: Vec<u32>,
    index: SlotMap,
    /// Flows by their key without tunnel id and VLAN, to join the two
    /// directions of a connection mirrored by different sessions (see `join_asymmetric`).
    loose: SlotMap,
    counters: Counters,
    handler: H,
    ooo_bytes: usize,
    user_mem: usize,
    next_id: u64,
    now: Timestamp,
    last_sweep: Timestamp,
    shard: Option<(u64, u64)>,
    rng: u64,
}

impl<H: StreamHandler> Engine<H> {
    pub fn new(cfg: EngineConfig, handler: H) -> Self {
        // The slot vector is sized once for the most flows the two caps allow, so it never
        // doubles (untouched capacity is address space, not memory: slots fill from the
        // front). The key maps grow as usual: pre-sized, they would scatter a few flows over
        // every page of a table sized for the cap.
        let most = cfg
            .flow
            .max_flows
            .min(cfg.flow.memcap_bytes / slot_bytes::<H::Conn>())
            .max(1);
        Engine {
            decoder: Decoder::new(cfg.decode.clone()),
            frags: FragTable::new(cfg.frag.clone()),
            cfg,
            slots: Vec::with_capacity(most),
            free: Vec::new(),
            index: SlotMap::default(),
            loose: SlotMap::default(),
            counters: Counters::default(),
            handler,
            ooo_bytes: 0,
            user_mem: 0,
            next_id: 0,
            now: Timestamp::ZERO,
            last_sweep: Timestamp::ZERO,
            shard: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Only handle connections whose symmetric hash is in the shard `index` of `count`
    /// ([`worker_of`](crate::key::worker_of)); the other
    /// workers of a sharded replay handle the rest. Frame-level counters (packets, bytes,
    /// decode errors) are kept only by shard 0 so that the sum over workers is right.
    pub fn with_shard(mut self, index: u64, count: u64) -> Self {
        if count > 1 {
            self.shard = Some((index, count));
        }
        self
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Connections currently tracked (including closed ones lingering).
    pub fn flows(&self) -> usize {
        self.index.len()
    }

    /// Current capture time: the largest timestamp seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Estimated memory held by the flow table, buffers and consumer state.
    pub fn memory(&self) -> usize {
        self.flow_table_bytes() + self.ooo_bytes + self.frags.memory() + self.user_mem
    }

    /// The slots in use and both key maps.
    fn flow_table_bytes(&self) -> usize {
        (self.slots.len() - self.free.len()) * slot_bytes::<H::Conn>()
            + self.index.bytes()
            + self.loose.bytes()
    }

    /// [`Engine::memory`] by part, for metrics.
    pub fn memory_use(&self) -> MemoryUse {
        MemoryUse {
            flows: self.flow_table_bytes(),
            reassembly: self.ooo_bytes,
            fragments: self.frags.memory(),
            consumer: self.user_mem,
        }
    }

    fn counts_frames(&self) -> bool {
        !matches!(self.shard, Some((i, _)) if i != 0)
    }

    /// Processes one captured frame. `link` is `None` for a link type we do not decode;
    /// `wire_len` is the frame's length on the wire (above `data.len()` when the capture
    /// truncated it).
    pub fn process(&mut self, ts: Timestamp, link: Option<LinkType>, data: &[u8], wire_len: u32) {
        let frames = self.counts_frames();
        if frames {
            self.counters.packets += 1;
            self.counters.bytes += data.len() as u64;
        }
        self.advance_time(ts);
        let truncated = (data.len() as u64) < u64::from(wire_len);
        if truncated && frames {
            self.counters.packets_truncated += 1;
        }
        let Some(link) = link else {
            if frames {
                self.counters.link_unsupported += 1;
            }
            return;
        };
        let decoder = &self.decoder;
        match decoder.decode(link, data, truncated) {
            Ok(ip) if ip.frag.is_some() => self.fragment(ts, &ip),
            Ok(ip) => self.transport(ts, &ip),
            Err(e) => {
                if frames {
                    count_decode_error(&mut self.counters, e);
                }
            }
        }
    }

    fn fragment(&mut self, ts: Timestamp, ip: &IpPacket<'_>) {
        // Every shard reassembles (fragments are rare); ownership is decided afterwards.
        let mut scratch = Counters::default();
        let counters = if self.counts_frames() {
            &mut self.counters
        } else {
            &mut scratch
        };
        let Some(d) = self.frags.insert(self.now, ip, counters) else {
            return;
        };
        let decoder = self.decoder.clone();
        match decoder.resume(d.ctx, d.src, d.dst, d.proto, &d.payload) {
            // Fragments inside a tunnel inside fragments: reassemble once more.
            Ok(inner) if inner.frag.is_some() => {
                if let Some(d2) = self.frags.insert(self.now, &inner, counters) {
                    if let Ok(ip2) = decoder.resume(d2.ctx, d2.src, d2.dst, d2.proto, &d2.payload) {
                        if ip2.frag.is_none() {
                            self.transport(ts, &ip2);
                        }
                    }
                }
            }
            Ok(inner) => self.transport(ts, &inner),
            Err(e) => count_decode_error(counters, e),
        }
    }

    fn transport(&mut self, ts: Timestamp, ip: &IpPacket<'_>) {
        let frames = self.counts_frames();
        if ip.proto != 6 {
            if frames {
                self.counters.ip_not_tcp += 1;
            }
            return;
        }
        let Some(seg) = decode::tcp(ip.payload) else {
            if frames {
                self.counters.tcp_malformed += 1;
            }
            return;
        };
        let key = FlowKey {
            src: Endpoint {
                ip: ip.src,
                port: seg.src_port,
            },
            dst: Endpoint {
                ip: ip.dst,
                port: seg.dst_port,
            },
            tunnel: ip.ctx.tunnel,
        };
        let nk = key.normalized();
        // Sharding ignores tunnel ids and VLANs, so that two directions mirrored under
        // different ids meet on one worker (see `join_asymmetric`).
        let hash = loose_key(&nk).stable_hash();
        if let Some((i, n)) = self.shard {
            if crate::key::worker_of(hash, n) != i {
                self.counters.shard_skipped += 1;
                return;
            }
        }
        self.counters.tcp_segments += 1;
        let flags = seg.flags;
        let pure_syn = flags.syn && !flags.ack;

        let keyed = Keyed { hash, key: nk };
        let slot = match self.index.get(&self.slots, hash, |f| is_key(f, &nk)) {
            Some(slot) => {
                let flow = self.slots[slot as usize]
                    .as_ref()
                    .expect("indexed slot is occupied");
                if flow.closed {
                    // Stray ACKs/FINs/RSTs of the ended connection are absorbed; a SYN, a
                    // SYN-ACK or data start a new one (e.g. after a RST that the endpoints
                    // ignored, a classic evasion).
                    if !flags.syn && (flags.rst || seg.payload.is_empty()) {
                        self.slots[slot as usize]
                            .as_mut()
                            .expect("occupied")
                            .last_seen = self.now;
                        return;
                    }
                    // A new connection on a 4-tuple whose previous one has ended.
                    self.remove(slot);
                    self.create(ts, key, nk, hash, flags)
                } else if pure_syn && is_new_syn(flow, &key, seg.seq) {
                    self.counters.tcp_conn_reused += 1;
                    self.close(slot, ts, CloseReason::Reused);
                    self.remove(slot);
                    self.create(ts, key, nk, hash, flags)
                } else {
                    slot
                }
            }
            None => match self.join_asymmetric(&key, keyed, pure_syn) {
                Some(slot) => slot,
                // Stray ACKs, FINs and RSTs of connections we never saw do not open one.
                None if flags.rst || (!flags.syn && seg.payload.is_empty()) => return,
                None => self.create(ts, key, nk, hash, flags),
            },
        };

        let Engine {
            slots,
            handler,
            counters,
            ooo_bytes,
            cfg,
            user_mem,
            now,
            ..
        } = self;
        let flow = slots[slot as usize].as_mut().expect("occupied");
        flow.last_seen = *now;
        let dir = if key.src == flow.meta.key.src {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let Flow {
            meta, halves, user, ..
        } = flow;
        let mut sh = Shared {
            cfg: &cfg.reassembly,
            counters,
            ooo_bytes,
        };
        let mut sink = |ev: StreamEvent<'_>| {
            if let Some(u) = user.as_mut() {
                handler.event(u, meta, ev);
            }
        };
        let [to_server, to_client] = halves;
        let (this, peer) = match dir {
            Direction::ToServer => (to_server, to_client),
            Direction::ToClient => (to_client, to_server),
        };
        if flags.ack {
            peer.on_peer_ack(ts, seg.ack, &mut sh, &mut sink);
        }
        let mut seq = seg.seq;
        if flags.syn {
            this.on_syn(seg.seq);
            seq = seg.seq.wrapping_add(1);
            if !seg.payload.is_empty() {
                sh.counters.tcp_syn_data += 1;
            }
        }
        if flags.rst {
            self.close(slot, ts, CloseReason::Rst);
            return;
        }
        // Bytes cut off by the snap length leave a hole after this segment; a FIN on such a
        // segment sits after the missing bytes.
        let segment = Segment {
            seq,
            payload: seg.payload,
            fin: flags.fin,
            missing: ip.missing,
        };
        this.segment(ts, segment, &mut sh, &mut sink);
        let both_done = halves[0].finished() && halves[1].finished();
        let new_mem = user.as_ref().map_or(0, |u| handler.conn_memory(u));
        *user_mem = *user_mem + new_mem - flow.user_mem;
        flow.user_mem = new_mem;
        if both_done {
            self.close(slot, ts, CloseReason::Fin);
        }
        if self.memory() > self.cfg.flow.memcap_bytes {
            self.evict(Some(slot), true);
        }
    }

    /// Mirroring often delivers the two directions of a connection under different session
    /// ids (ERSPAN sessions, GRE keys, VLANs of a routed SPAN). When a packet's exact key is
    /// unknown, it is not a SYN, and an open flow with the same addresses and ports under
    /// another id has not yet seen this direction, the packet joins that flow.
    fn join_asymmetric(&mut self, key: &FlowKey, keyed: Keyed, pure_syn: bool) -> Option<u32> {
        if pure_syn {
            return None;
        }
        let lk = loose_key(&keyed.key);
        let slot = self.loose.get(&self.slots, keyed.hash, |f| {
            loose_key(&f.meta.key.normalized()) == lk
        })?;
        let flow = self.slots[slot as usize].as_mut()?;
        let dir = usize::from(key.src != flow.meta.key.src);
        if flow.closed
            || flow.halves[dir].started()
            || flow.alias.is_some()
            || flow.meta.key.tunnel == key.tunnel
        {
            return None;
        }
        flow.alias = Some(keyed.key);
        let nk = keyed.key;
        self.index
            .insert(&self.slots, keyed.hash, slot, |f| is_key(f, &nk));
        self.counters.flows_joined_asymmetric += 1;
        Some(slot)
    }

    fn create(
        &mut self,
        ts: Timestamp,
        key: FlowKey,
        nk: NormKey,
        hash: u64,
        flags: decode::TcpFlags,
    ) -> u32 {
        while self.index.len() >= self.cfg.flow.max_flows.max(1) {
            if !self.evict(None, false) {
                break;
            }
        }
        while self.memory() + flow_overhead::<H::Conn>() > self.cfg.flow.memcap_bytes
            && !self.index.is_empty()
        {
            if !self.evict(None, true) {
                break;
            }
        }
        let (client_first, orientation) = if flags.syn && !flags.ack {
            (true, Orientation::Handshake)
        } else if flags.syn {
            (false, Orientation::Handshake)
        } else {
            self.counters.tcp_midstream += 1;
            (dst_is_server(&key), Orientation::PortHeuristic)
        };
        let conn_key = if client_first { key } else { key.reversed() };
        let meta = ConnMeta {
            id: self.next_id,
            key: conn_key,
            hash,
            orientation,
            first_seen: ts,
        };
        self.next_id += 1;
        self.counters.flows_created += 1;
        let user = self.handler.open(&meta);
        let user_mem = self.handler.conn_memory(&user);
        self.user_mem += user_mem;
        let flow = Flow {
            meta,
            halves: [
                HalfStream::new(Direction::ToServer),
                HalfStream::new(Direction::ToClient),
            ],
            last_seen: self.now,
            closed: false,
            user: Some(user),
            user_mem,
            alias: None,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(flow);
                s
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.index
            .insert(&self.slots, hash, slot, |f| is_key(f, &nk));
        let lk = loose_key(&nk);
        self.loose.insert(&self.slots, hash, slot, |f| {
            loose_key(&f.meta.key.normalized()) == lk
        });
        slot
    }

    /// Flushes both directions and delivers `Closed`; the entry stays until removed.
    fn close(&mut self, slot: u32, ts: Timestamp, reason: CloseReason) {
        let Engine {
            slots,
            handler,
            counters,
            ooo_bytes,
            cfg,
            user_mem,
            ..
        } = self;
        let Some(flow) = slots[slot as usize].as_mut() else {
            return;
        };
        if flow.closed {
            return;
        }
        let Flow {
            meta, halves, user, ..
        } = flow;
        let mut sh = Shared {
            cfg: &cfg.reassembly,
            counters,
            ooo_bytes,
        };
        if let Some(mut u) = user.take() {
            let mut sink = |ev: StreamEvent<'_>| handler.event(&mut u, meta, ev);
            for h in halves.iter_mut() {
                h.flush(ts, &mut sh, &mut sink);
            }
            sink(StreamEvent::Closed { ts, reason });
        }
        for h in halves.iter_mut() {
            h.discard(&mut sh);
        }
        *user_mem -= flow.user_mem;
        flow.user_mem = 0;
        flow.closed = true;
    }

    fn remove(&mut self, slot: u32) {
        if let Some(flow) = self.slots[slot as usize].take() {
            debug_assert!(flow.closed, "only closed flows are removed");
            // The key and its alias; the loose entry only if it still points here.
            self.index.remove(flow.meta.hash, slot);
            self.loose.remove(flow.meta.hash, slot);
            self.free.push(slot);
        }
    }

    /// Evicts one flow chosen by sampling; `false` when there was none to evict.
    fn evict(&mut self, spare: Option<u32>, memcap: bool) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mut victim: Option<(u32, bool, Timestamp)> = None;
        let mut tries = 0;
        while tries < EVICTION_SAMPLES * 4 && (tries < EVICTION_SAMPLES || victim.is_none()) {
            tries += 1;
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let s = (self.rng % self.slots.len() as u64) as u32;
            if Some(s) == spare {
                continue;
            }
            let Some(f) = self.slots[s as usize].as_ref() else {
                continue;
            };
            // Prefer closed entries, then the longest idle.
            let better = match victim {
                None => true,
                Some((_, closed, seen)) => {
                    (f.closed && !closed) || (f.closed == closed && f.last_seen < seen)
                }
            };
            if better {
                victim = Some((s, f.closed, f.last_seen));
            }
        }
        if victim.is_none() {
            // Sparse slab: fall back to a scan.
            victim = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, f)| f.is_some() && Some(*i as u32) != spare)
                .map(|(i, f)| {
                    let f = f.as_ref().expect("filtered");
                    (i as u32, f.closed, f.last_seen)
                })
                .next();
        }
        let Some((slot, closed, _)) = victim else {
            return false;
        };
        if !closed {
            if memcap {
                self.counters.flows_evicted_memcap += 1;
            } else {
                self.counters.flows_evicted_capacity += 1;
            }
            let now = self.now;
            self.close(slot, now, CloseReason::Evicted);
        }
        self.remove(slot);
        true
    }

    /// Moves capture time forward to `ts` (never backward) and runs due timeouts. Call it
    /// with the wall clock mapped to capture time when a live link goes quiet.
    pub fn advance_time(&mut self, ts: Timestamp) {
        if ts > self.now {
            self.now = ts;
        }
        if self.now.saturating_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.last_sweep = self.now;
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        let now = self.now;
        let mut scratch = Counters::default();
        let counters = if self.counts_frames() {
            &mut self.counters
        } else {
            &mut scratch
        };
        self.frags.expire(now, counters);
        let idle = Duration::from_secs(self.cfg.flow.idle_timeout_secs);
        let life = Duration::from_secs(self.cfg.flow.lifetime_timeout_secs);
        let linger = Duration::from_secs(self.cfg.flow.closed_timeout_secs);
        for slot in 0..self.slots.len() as u32 {
            let Some(f) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let quiet = now.saturating_since(f.last_seen);
            if f.closed {
                if quiet > linger {
                    self.remove(slot);
                }
                continue;
            }
            let reason = if quiet > idle {
                self.counters.flows_idle_timeout += 1;
                CloseReason::IdleTimeout
            } else if now.saturating_since(f.meta.first_seen) > life {
                self.counters.flows_lifetime_timeout += 1;
                CloseReason::LifetimeTimeout
            } else {
                continue;
            };
            self.close(slot, now, reason);
            self.remove(slot);
        }
    }

    /// Closes every open connection (end of capture or shutdown), oldest first.
    pub fn finish(&mut self) {
        let mut open: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.as_ref()
                    .filter(|f| !f.closed)
                    .map(|f| (f.meta.id, i as u32))
            })
            .collect();
        open.sort_unstable();
        let now = self.now;
        for (_, slot) in open {
            self.close(slot, now, CloseReason::EndOfCapture);
        }
        for slot in 0..self.slots.len() as u32 {
            if self.slots[slot as usize].is_some() {
                self.remove(slot);
            }
        }
    }
}

/// Whether `nk` is the key of `f`, or its alias.
fn is_key<S>(f: &Flow<S>, nk: &NormKey) -> bool {
    f.meta.key.normalized() == *nk || f.alias.as_ref() == Some(nk)
}

fn loose_key(nk: &NormKey) -> NormKey {
    NormKey {
        tunnel: TunnelId::NONE,
        ..*nk
    }
}

fn count_decode_error(c: &mut Counters, e: DecodeError) {
    match e {
        DecodeError::LinkMalformed => c.link_malformed += 1,
        DecodeError::NonIp => c.non_ip += 1,
        DecodeError::IpMalformed => c.ip_malformed += 1,
        DecodeError::TunnelMalformed => c.tunnel_malformed += 1,
        DecodeError::TunnelDepthExceeded => c.tunnel_depth_exceeded += 1,
        DecodeError::TunnelUnsupported => c.tunnel_unsupported += 1,
    }
}

/// A pure SYN that starts a new connection rather than repeating the old one's.
fn is_new_syn<S>(flow: &Flow<S>, key: &FlowKey, seq: u32) -> bool {
    if key.src != flow.meta.key.src {
        // A SYN from the server's side: simultaneous open or noise, not a new connection.
        return false;
    }
    match flow.halves[0].isn() {
        Some(isn) => isn != seq,
        None => true,
    }
}

/// Without a handshake: the server is the side on a well-known port, else the lower port.
fn dst_is_server(key: &FlowKey) -> bool {
    let (s, d) = (key.src.port, key.dst.port);
    match (s < 1024, d < 1024) {
        (true, false) => false,
        (false, true) => true,
        _ => d <= s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records (connection id, event) as owned values.
    #[derive(Default)]
    struct Log(Vec<(u64, String)>);

    impl StreamHandler for Log {
        type Conn = ();
        fn open(&mut self, meta: &ConnMeta) {
            self.0
                .push((meta.id, format!("open {}->{}", meta.key.src, meta.key.dst)));
        }
        fn event(&mut self, _: &mut (), meta: &ConnMeta, ev: StreamEvent<'_>) {
            let s = match ev {
                StreamEvent::Data { dir, data, .. } => {
                    format!("{dir:?} {}", String::from_utf8_lossy(data))
                }
                StreamEvent::Gap { dir, len, .. } => format!("{dir:?} gap {len}"),
                StreamEvent::Anomaly { kind, .. } => format!("{kind:?}"),
                StreamEvent::Closed { reason, .. } => format!("closed {reason}"),
            };
            self.0.push((meta.id, s));
        }
    }

    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const FIN: u8 = 0x01;

    /// A raw IPv4 TCP frame between 10.0.0.1 (client) and 10.0.0.2:80.
    fn frame(to_server: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (a, b, sp, dp) = if to_server {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40000u16, 80u16)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
        };
        let total = 40 + payload.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            6,
            0,
            0,
        ];
        v.extend_from_slice(&a);
        v.extend_from_slice(&b);
        v.extend_from_slice(&sp.to_be_bytes());
        v.extend_from_slice(&dp.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ack.to_be_bytes());
        v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn run(cfg: EngineConfig, frames: &[(u64, Vec<u8>)]) -> Vec<(u64, String)> {
        let mut e = Engine::new(cfg, Log::default());
        for (t, f) in frames {
            e.process(
                Timestamp::from_secs(*t),
                Some(LinkType::Raw),
                f,
                f.len() as u32,
            );
        }
        e.finish();
        e.into_handler().0
    }

    /// A consumer whose connections each hold 1000 bytes from their first packet.
    struct Heavy;

    impl StreamHandler for Heavy {
        type Conn = ();
        fn open(&mut self, _: &ConnMeta) {}
        fn event(&mut self, _: &mut (), _: &ConnMeta, _: StreamEvent<'_>) {}
        fn conn_memory(&self, _: &()) -> usize {
            1000
        }
    }

    #[test]
    fn consumer_memory_is_counted_from_the_syn_against_the_memcap() {
        let per_flow = flow_overhead::<()>() + 1000;
        let mut cfg = EngineConfig::default();
        cfg.flow.memcap_bytes = 10 * per_flow;
        let mut e = Engine::new(cfg, Heavy);
        for i in 0..20u16 {
            let mut f = frame(true, 100, 0, SYN, b"");
            f[20..22].copy_from_slice(&(30000 + i).to_be_bytes());
            e.process(
                Timestamp::from_secs(1),
                Some(LinkType::Raw),
                &f,
                f.len() as u32,
            );
        }
        let m = e.memory_use();
        assert_eq!(e.flows(), 10);
        assert_eq!(m.consumer, 10 * 1000);
        assert!(e.memory() <= 10 * per_flow);
        assert_eq!(e.counters().flows_evicted_memcap, 10);
    }

    /// Records the capture time of each gap.
    #[derive(Default)]
    struct GapTimes(Vec<(u64, Timestamp)>);

    impl StreamHandler for GapTimes {
        type Conn = ();
        fn open(&mut self, _: &ConnMeta) {}
        fn event(&mut self, _: &mut (), _: &ConnMeta, ev: StreamEvent<'_>) {
            if let StreamEvent::Gap { len, ts, .. } = ev {
                self.0.push((len, ts));
            }
        }
    }

    #[test]
    fn a_gap_is_dated_by_the_acknowledgment_of_its_end() {
        let mut e = Engine::new(EngineConfig::default(), GapTimes::default());
        let frames = [
            (1, frame(true, 100, 0, SYN, b"")),
            (1, frame(false, 500, 101, SYN | ACK, b"")),
            (1, frame(true, 101, 501, ACK, b"GET /a HTTP/1.1\r\n\r\n")),
            (2, frame(false, 501, 120, ACK, b"0123456789")),
            // 20 bytes from the server never captured; the client acknowledges them at 3 s.
            (3, frame(true, 120, 531, ACK, b"")),
            (4, frame(true, 120, 531, ACK, b"GET /b HTTP/1.1\r\n\r\n")),
            (5, frame(false, 531, 139, ACK, b"abc")),
            // 7 more lost, but the client's acknowledgment went past them: dated at arrival.
            (6, frame(true, 139, 545, ACK, b"")),
            (7, frame(false, 541, 139, ACK, b"xyz")),
        ];
        for (t, f) in &frames {
            e.process(
                Timestamp::from_secs(*t),
                Some(LinkType::Raw),
                f,
                f.len() as u32,
            );
        }
        assert_eq!(
            e.handler().0,
            [(20, Timestamp::from_secs(3)), (7, Timestamp::from_secs(7))]
        );
    }

    #[test]
    fn data_after_rst_starts_a_new_connection() {
        let log = run(
            EngineConfig::default(),
            &[
                (1, frame(true, 100, 0, SYN, b"")),
                (1, frame(false, 0, 101, RST | ACK, b"")),
                (1, frame(true, 101, 0, RST, b"")),
                (1, frame(false, 500, 101, SYN | ACK, b"")),
                (1, frame(true, 101, 501, ACK, b"GET /")),
            ],
        );
        let ids: Vec<&str> = log.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            ids,
            [
                "open 10.0.0.1:40000->10.0.0.2:80",
                "closed rst",
                "open 10.0.0.1:40000->10.0.0.2:80",
                "ToServer GET /",
                "closed end_of_capture"
            ]
        );
    }

    #[test]
    fn new_syn_on_half_closed_connection_reuses_the_tuple() {
        let log = run(
            EngineConfig::default(),
            &[
                (1, frame(true, 100, 0, SYN, b"")),
                (1, frame(false, 500, 101, SYN | ACK, b"")),
                (1, frame(true, 101, 501, ACK | FIN, b"bye")),
                (2, frame(true, 9000, 0, SYN, b"")),
                (2, frame(true, 9000, 0, SYN, b"")), // retransmitted SYN: same connection
            ],
        );
        let ids: Vec<String> = log.iter().map(|(i, s)| format!("{i} {s}")).collect();
        assert_eq!(
            ids,
            [
                "0 open 10.0.0.1:40000->10.0.0.2:80",
                "0 ToServer bye",
                "0 closed reused",
                "1 open 10.0.0.1:40000->10.0.0.2:80",
                "1 closed end_of_capture"
            ]
        );
    }

    #[test]
    fn idle_connections_time_out_on_capture_time() {
        let mut cfg = EngineConfig::default();
        cfg.flow.idle_timeout_secs = 10;
        let log = run(
            cfg,
            &[
                (1, frame(true, 100, 0, ACK, b"a")),
                (5, frame(true, 101, 0, ACK, b"b")),
                (16, frame(true, 102, 0, ACK, b"c")),
            ],
        );
        let ids: Vec<String> = log.iter().map(|(i, s)| format!("{i} {s}")).collect();
        assert_eq!(
            ids,
            [
                "0 open 10.0.0.1:40000->10.0.0.2:80",
                "0 ToServer a",
                "0 ToServer b",
                "0 closed idle_timeout",
                "1 open 10.0.0.1:40000->10.0.0.2:80",
                "1 ToServer c",
                "1 closed end_of_capture"
            ]
        );
    }

    #[test]
    fn full_table_evicts_with_a_counter() {
        let mut cfg = EngineConfig::default();
        cfg.flow.max_flows = 1;
        let mut e = Engine::new(cfg, Log::default());
        let f1 = frame(true, 1, 0, ACK, b"x");
        let mut f2 = frame(true, 1, 0, ACK, b"y");
        f2[21] = 0x41; // another client port
        for f in [&f1, &f2] {
            e.process(
                Timestamp::from_secs(1),
                Some(LinkType::Raw),
                f,
                f.len() as u32,
            );
        }
        assert_eq!(e.counters().flows_evicted_capacity, 1);
        assert_eq!(e.flows(), 1);
        let log = e.into_handler().0;
        assert!(log.iter().any(|(i, s)| *i == 0 && s == "closed evicted"));
    }

    #[test]
    fn fin_both_ways_closes_and_stray_ack_is_absorbed() {
        let log = run(
            EngineConfig::default(),
            &[
                (1, frame(true, 100, 0, SYN, b"")),
                (1, frame(false, 500, 101, SYN | ACK, b"")),
                (1, frame(true, 101, 501, ACK | FIN, b"q")),
                (1, frame(false, 501, 103, ACK | FIN, b"r")),
                (1, frame(true, 103, 503, ACK, b"")),
            ],
        );
        assert_eq!(log.last().unwrap().1, "closed fin");
        assert_eq!(log.iter().filter(|(_, s)| s.starts_with("open")).count(), 1);
    }

    /// `inner` inside IPv4/GRE with `key`.
    fn gre(key: u32, inner: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + inner.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            47,
            0,
            0,
        ];
        v.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        v.extend_from_slice(&[0x20, 0, 0x08, 0x00]);
        v.extend_from_slice(&key.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    #[test]
    fn directions_mirrored_under_different_gre_keys_meet() {
        let frames = [
            (1, gre(0, &frame(true, 100, 0, SYN, b""))),
            (1, gre(7, &frame(false, 500, 101, SYN | ACK, b""))),
            (1, gre(0, &frame(true, 101, 501, ACK, b"req"))),
            (1, gre(7, &frame(false, 501, 104, ACK, b"resp"))),
        ];
        for shards in [1, 2] {
            let mut log = Vec::new();
            for i in 0..shards {
                let mut e =
                    Engine::new(EngineConfig::default(), Log::default()).with_shard(i, shards);
                for (t, f) in &frames {
                    e.process(
                        Timestamp::from_secs(*t),
                        Some(LinkType::Raw),
                        f,
                        f.len() as u32,
                    );
                }
                e.finish();
                log.extend(e.into_handler().0.into_iter().map(|(_, s)| s));
            }
            assert_eq!(
                log,
                [
                    "open 10.0.0.1:40000->10.0.0.2:80",
                    "ToServer req",
                    "ToClient resp",
                    "closed end_of_capture"
                ],
                "{shards} shards"
            );
        }
    }

    #[test]
    fn a_new_syn_under_another_key_stays_a_separate_tenant() {
        let log = run(
            EngineConfig::default(),
            &[
                (1, gre(1, &frame(true, 100, 0, SYN, b""))),
                (1, gre(2, &frame(true, 100, 0, SYN, b""))),
            ],
        );
        assert_eq!(log.iter().filter(|(_, s)| s.starts_with("open")).count(), 2);
    }

    #[test]
    fn tagged_client_and_untagged_server_meet() {
        // 802.1Q-tagged frames one way, untagged the other (sv_bug-4376 in the corpus).
        let eth = |vlan: Option<u16>, ip: Vec<u8>| {
            let mut v = vec![0u8; 12];
            if let Some(id) = vlan {
                v.extend_from_slice(&[0x81, 0x00]);
                v.extend_from_slice(&id.to_be_bytes());
            }
            v.extend_from_slice(&[0x08, 0x00]);
            v.extend_from_slice(&ip);
            v
        };
        let frames = [
            eth(Some(3136), frame(true, 100, 0, SYN, b"")),
            eth(None, frame(false, 500, 101, SYN | ACK, b"")),
            eth(Some(3136), frame(true, 101, 501, ACK, b"req")),
            eth(None, frame(false, 501, 104, ACK, b"resp")),
        ];
        let mut e = Engine::new(EngineConfig::default(), Log::default());
        for f in &frames {
            e.process(
                Timestamp::from_secs(1),
                Some(LinkType::Ethernet),
                f,
                f.len() as u32,
            );
        }
        e.finish();
        let log: Vec<String> = e.into_handler().0.into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            log,
            [
                "open 10.0.0.1:40000->10.0.0.2:80",
                "ToServer req",
                "ToClient resp",
                "closed end_of_capture"
            ]
        );
    }
}
