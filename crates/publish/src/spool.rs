//! The on-disk spool: records that do not fit in memory wait here, in order, until the
//! broker acknowledges them.
//!
//! A spool is a directory of append-only segment files `<id>.seg` (20 decimal digits), each
//! starting with the 8-byte magic `APSPOOL1` and followed by frames:
//!
//! ```text
//! u32 LE  payload length n
//! u32 LE  CRC-32 (IEEE) of the payload
//! payload: u8 topic index (0 findings, 1 calls, 2 inventory)
//!          u32 LE key length k, k key bytes, n - 5 - k value bytes
//! ```
//!
//! Records are handed out ([`Spool::peek`], [`Spool::take`]) in the order they were appended
//! and acknowledged ([`Spool::ack`]) in any order; the *ack cursor* is the end of the longest
//! acknowledged prefix. It is saved in the file `ack` (segment id, offset, index, CRC; written
//! to a temporary file and renamed) by [`Spool::sync`]; a segment is deleted as soon as the
//! cursor has passed its end, and every file is removed when nothing is pending. After a crash
//! the next [`Spool::open`] re-sends everything after the saved cursor (at-least-once: records
//! acknowledged after the last save are sent again).
//!
//! Each append is one `write` of a whole frame (no user-space buffer), so a killed process
//! leaves at most one partial frame. [`Spool::open`] checks every frame; a frame whose length
//! runs past the end of its file, or whose checksum does not match, ends its segment: it and
//! everything after it in that file are counted (`corrupt_frames`, `corrupt_bytes`) and cut off,
//! and the spool goes on with the next segment. Nothing here panics on what it reads.
//!
//! The total size of the segment files is bounded by `max_bytes`; an append that would pass it
//! is refused ([`Append::Full`]): the newest record is the one dropped, so what waits keeps its
//! order and the oldest records, the ones a consumer has waited for longest, go out first.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::Topic;

const MAGIC: &[u8; 8] = b"APSPOOL1";
const HEADER: u64 = MAGIC.len() as u64;
const FRAME_HEADER: u64 = 8;
/// Topic byte and key length.
const PAYLOAD_PREFIX: usize = 5;
const ACK_FILE: &str = "ack";

/// One record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Its stream.
    pub topic: Topic,
    /// The Kafka key.
    pub key: Vec<u8>,
    /// The value, in the sink's format.
    pub value: Vec<u8>,
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// Written.
    Written,
    /// Not written: `max_bytes` would be exceeded.
    Full,
}

/// Damage and recovery seen by a spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Damaged frames found (each ends the readable part of its segment).
    pub corrupt_frames: u64,
    /// Bytes discarded with them.
    pub corrupt_bytes: u64,
    /// Records found pending when the spool was opened.
    pub recovered: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Valid bytes, header included.
    len: u64,
    /// Valid frames.
    records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    seg: u64,
    off: u64,
    /// Frames before `off` in `seg`.
    idx: u64,
}

/// A frame boundary of a segment: (offset, frames before it).
type Boundary = (u64, u64);

#[derive(Debug)]
struct Inflight {
    seq: u64,
    end: Pos,
    acked: bool,
}

/// A bounded on-disk FIFO of records with acknowledgement (see the module documentation).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    next_id: u64,
    writer: Option<File>,
    reader: Option<(u64, File)>,
    read: Pos,
    ack: Pos,
    ack_dirty: bool,
    peeked: Option<(SpoolRecord, Pos)>,
    inflight: VecDeque<Inflight>,
    next_seq: u64,
    file_bytes: u64,
    pending: u64,
    unsent: u64,
    stats: SpoolStats,
    buf: Vec<u8>,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, checking every frame and cutting off
    /// damaged tails; records after the saved ack cursor are pending again.
    ///
    /// Errors: the directory cannot be created or listed, or a segment cannot be read or
    /// truncated.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let saved = read_ack(&dir.join(ACK_FILE));
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            segments: VecDeque::new(),
            next_id: ids.last().map_or(1, |&i| i + 1),
            writer: None,
            reader: None,
            read: Pos {
                seg: 0,
                off: HEADER,
                idx: 0,
            },
            ack: Pos {
                seg: 0,
                off: HEADER,
                idx: 0,
            },
            ack_dirty: false,
            peeked: None,
            inflight: VecDeque::new(),
            next_seq: 0,
            file_bytes: 0,
            pending: 0,
            unsent: 0,
            stats: SpoolStats::default(),
            buf: Vec::new(),
        };
        let mut cursor: Option<Pos> = None;
        for id in ids {
            let path = spool.seg_path(id);
            if saved.is_some_and(|a| id < a.seg) {
                // Wholly acknowledged before the last save.
                fs::remove_file(&path)?;
                continue;
            }
            let (seg, boundaries) = spool.check_segment(id)?;
            let Some(seg) = seg else { continue };
            if let Some(a) = saved.filter(|a| a.seg == id) {
                // The saved offset must be a frame boundary of what survived; else re-send the
                // whole segment.
                if let Some(&(off, idx)) = boundaries.iter().find(|(off, _)| *off == a.off) {
                    cursor = Some(Pos { seg: id, off, idx });
                }
            }
            spool.file_bytes += seg.len;
            spool.segments.push_back(seg);
        }
        let start = cursor.unwrap_or(Pos {
            seg: spool.segments.front().map_or(spool.next_id, |s| s.id),
            off: HEADER,
            idx: 0,
        });
        spool.ack = start;
        spool.read = start;
        spool.pending = spool
            .segments
            .iter()
            .map(|s| {
                if s.id == start.seg {
                    s.records - start.idx
                } else {
                    s.records
                }
            })
            .sum();
        spool.unsent = spool.pending;
        spool.stats.recovered = spool.pending;
        if spool.pending == 0 {
            spool.clear()?;
        } else if let Some(last) = spool.segments.back() {
            if last.len < segment_bytes {
                spool.writer = Some(
                    OpenOptions::new()
                        .append(true)
                        .open(spool.seg_path(last.id))?,
                );
            }
        }
        Ok(spool)
    }

    /// Records waiting: appended and not yet acknowledged (in flight included).
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Records appended and not yet handed out by [`Spool::take`].
    pub fn unsent(&self) -> u64 {
        self.unsent
    }

    /// Bytes of segment files on disk.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Damage and recovery counts since open.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// Appends a record (one `write` of the whole frame). Returns [`Append::Full`] without
    /// writing when the files would pass `max_bytes`.
    ///
    /// Errors: the segment could not be created or written (the partial frame is cut off
    /// again where possible).
    pub fn append(&mut self, topic: Topic, key: &[u8], value: &[u8]) -> io::Result<Append> {
        let payload_len = PAYLOAD_PREFIX + key.len() + value.len();
        let Ok(payload_len32) = u32::try_from(payload_len) else {
            return Ok(Append::Full);
        };
        let frame_len = FRAME_HEADER + payload_len as u64;
        let need_new = match self.segments.back() {
            None => true,
            Some(s) => {
                self.writer.is_none() || (s.len > HEADER && s.len + frame_len > self.segment_bytes)
            }
        };
        let extra = if need_new { HEADER } else { 0 };
        if self.file_bytes + extra + frame_len > self.max_bytes {
            return Ok(Append::Full);
        }
        if need_new {
            self.new_segment()?;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&payload_len32.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.push(topic.index() as u8);
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        let crc = crc32fast::hash(&self.buf[8..]);
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let seg = self
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        let writer = self.writer.as_mut().expect("a writer was just ensured");
        if let Err(e) = writer.write_all(&self.buf) {
            // Cut a partial frame off so the next append starts on a boundary.
            let _ = writer.set_len(seg.len);
            return Err(e);
        }
        seg.len += frame_len;
        seg.records += 1;
        self.file_bytes += frame_len;
        self.pending += 1;
        self.unsent += 1;
        Ok(Append::Written)
    }

    /// The next record not yet handed out, read from disk once and kept until
    /// [`Spool::take`]. A frame damaged since open ends its segment (counted) and reading goes
    /// on with the next one.
    ///
    /// Errors: reading the segment file failed.
    pub fn peek(&mut self) -> io::Result<Option<&SpoolRecord>> {
        if self.peeked.is_none() {
            self.peeked = self.read_next()?;
        }
        Ok(self.peeked.as_ref().map(|(r, _)| r))
    }

    /// The sequence number the next [`Spool::take`] will hand out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Hands out the record last returned by [`Spool::peek`]: it is now in flight, and its
    /// sequence number is what [`Spool::ack`] takes. `None` when nothing was peeked.
    pub fn take(&mut self) -> Option<u64> {
        let (_, end) = self.peeked.take()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.read = end;
        self.unsent -= 1;
        self.inflight.push_back(Inflight {
            seq,
            end,
            acked: false,
        });
        Some(seq)
    }

    /// Marks a record handed out as acknowledged (delivered, or failed for good). The ack
    /// cursor moves over the acknowledged prefix and segments behind it are deleted. Unknown
    /// sequence numbers (from before a [`Spool::rewind`]) are ignored.
    ///
    /// Errors: deleting a segment file failed.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let Some(front) = self.inflight.front() else {
            return Ok(());
        };
        let Some(i) = seq.checked_sub(front.seq) else {
            return Ok(());
        };
        let Some(entry) = self.inflight.get_mut(i as usize) else {
            return Ok(());
        };
        entry.acked = true;
        while self.inflight.front().is_some_and(|f| f.acked) {
            let f = self.inflight.pop_front().expect("front exists");
            self.ack = f.end;
            self.pending -= 1;
            self.ack_dirty = true;
        }
        self.reclaim()
    }

    /// Forgets what is in flight: the next [`Spool::peek`] starts again at the ack cursor
    /// (used when the producer was recreated and its queue lost).
    pub fn rewind(&mut self) {
        self.inflight.clear();
        self.peeked = None;
        self.read = self.ack;
        self.unsent = self.pending;
    }

    /// Saves the ack cursor if it moved (temporary file, then rename).
    ///
    /// Errors: the file could not be written or renamed.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.ack_dirty {
            return Ok(());
        }
        let tmp = self.dir.join("ack.tmp");
        let mut bytes = Vec::with_capacity(28);
        bytes.extend_from_slice(&self.ack.seg.to_le_bytes());
        bytes.extend_from_slice(&self.ack.off.to_le_bytes());
        bytes.extend_from_slice(&self.ack.idx.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        fs::write(&tmp, &bytes)?;
        fs::rename(&tmp, self.dir.join(ACK_FILE))?;
        self.ack_dirty = false;
        Ok(())
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn new_segment(&mut self) -> io::Result<()> {
        let id = self.next_id;
        let path = self.seg_path(id);
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        f.write_all(MAGIC)?;
        drop(f);
        self.writer = Some(OpenOptions::new().append(true).open(&path)?);
        self.next_id += 1;
        if self.segments.is_empty() {
            // Cursors waiting for "the next segment" point at this one.
            self.read = Pos {
                seg: id,
                off: HEADER,
                idx: 0,
            };
            self.ack = self.read;
        }
        self.segments.push_back(Segment {
            id,
            len: HEADER,
            records: 0,
        });
        self.file_bytes += HEADER;
        Ok(())
    }

    /// Scans segment `id`: the valid part, and the (offset, index) of each frame boundary.
    /// A bad magic discards the file; a bad frame cuts the file there.
    fn check_segment(&mut self, id: u64) -> io::Result<(Option<Segment>, Vec<Boundary>)> {
        let path = self.seg_path(id);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut magic = [0u8; 8];
        if file_len < HEADER || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
            self.stats.corrupt_frames += 1;
            self.stats.corrupt_bytes += file_len;
            drop(file);
            fs::remove_file(&path)?;
            return Ok((None, Vec::new()));
        }
        let mut off = HEADER;
        let mut idx = 0;
        let mut boundaries = vec![(off, 0)];
        let mut payload = Vec::new();
        while off < file_len {
            match read_frame(&file, off, file_len, &mut payload)? {
                Some(end) => {
                    off = end;
                    idx += 1;
                    boundaries.push((off, idx));
                }
                None => {
                    self.stats.corrupt_frames += 1;
                    self.stats.corrupt_bytes += file_len - off;
                    file.set_len(off)?;
                    break;
                }
            }
        }
        Ok((
            Some(Segment {
                id,
                len: off,
                records: idx,
            }),
            boundaries,
        ))
    }

    fn read_next(&mut self) -> io::Result<Option<(SpoolRecord, Pos)>> {
        loop {
            let Some(si) = self.segments.iter().position(|s| s.id >= self.read.seg) else {
                return Ok(None);
            };
            if self.segments[si].id != self.read.seg {
                self.read = Pos {
                    seg: self.segments[si].id,
                    off: HEADER,
                    idx: 0,
                };
            }
            let seg_len = self.segments[si].len;
            if self.read.off >= seg_len {
                if si + 1 < self.segments.len() {
                    self.read = Pos {
                        seg: self.segments[si + 1].id,
                        off: HEADER,
                        idx: 0,
                    };
                    continue;
                }
                return Ok(None);
            }
            if self
                .reader
                .as_ref()
                .is_none_or(|(id, _)| *id != self.read.seg)
            {
                let f = File::open(self.seg_path(self.read.seg))?;
                self.reader = Some((self.read.seg, f));
            }
            let (_, file) = self.reader.as_ref().expect("reader just opened");
            let mut payload = Vec::new();
            let frame = read_frame(file, self.read.off, seg_len, &mut payload)?;
            match frame.and_then(|end| Some((decode_payload(&payload)?, end))) {
                Some((rec, end)) => {
                    let next = Pos {
                        seg: self.read.seg,
                        off: end,
                        idx: self.read.idx + 1,
                    };
                    return Ok(Some((rec, next)));
                }
                None => {
                    // Damaged since open: the rest of this segment is lost.
                    let seg = &mut self.segments[si];
                    let lost = seg.records.saturating_sub(self.read.idx);
                    self.stats.corrupt_frames += 1;
                    self.stats.corrupt_bytes += seg.len - self.read.off;
                    self.file_bytes -= seg.len - self.read.off;
                    seg.len = self.read.off;
                    seg.records = self.read.idx;
                    self.pending -= lost;
                    self.unsent -= lost;
                    if si + 1 == self.segments.len() {
                        // The writer appends after the cut.
                        self.writer = None;
                    }
                }
            }
        }
    }

    /// Deletes segments the ack cursor has passed; everything when nothing is pending.
    fn reclaim(&mut self) -> io::Result<()> {
        if self.pending == 0 && self.unsent == 0 && self.inflight.is_empty() {
            return self.clear();
        }
        while let Some(front) = self.segments.front() {
            let passed = front.id < self.ack.seg
                || (front.id == self.ack.seg
                    && self.ack.off >= front.len
                    && self.segments.len() > 1);
            if !passed {
                break;
            }
            let front = self.segments.pop_front().expect("front exists");
            self.file_bytes -= front.len;
            if self.reader.as_ref().is_some_and(|(id, _)| *id == front.id) {
                self.reader = None;
            }
            fs::remove_file(self.seg_path(front.id))?;
            if self.ack.seg == front.id {
                let next = self.segments.front().map_or(self.next_id, |s| s.id);
                self.ack = Pos {
                    seg: next,
                    off: HEADER,
                    idx: 0,
                };
            }
        }
        Ok(())
    }

    /// Removes every segment and the saved cursor: the spool is empty.
    fn clear(&mut self) -> io::Result<()> {
        self.writer = None;
        self.reader = None;
        for s in self.segments.drain(..) {
            fs::remove_file(self.dir.join(format!("{:020}.seg", s.id)))?;
        }
        self.file_bytes = 0;
        self.read = Pos {
            seg: self.next_id,
            off: HEADER,
            idx: 0,
        };
        self.ack = self.read;
        self.ack_dirty = false;
        match fs::remove_file(self.dir.join(ACK_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Reads and checks the frame at `off` (file valid up to `limit`) into `payload`; its end,
/// or `None` when it is damaged.
fn read_frame(file: &File, off: u64, limit: u64, payload: &mut Vec<u8>) -> io::Result<Option<u64>> {
    if limit - off < FRAME_HEADER {
        return Ok(None);
    }
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, off)?;
    let len = u64::from(u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")));
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let end = off + FRAME_HEADER + len;
    if end > limit || len < PAYLOAD_PREFIX as u64 {
        return Ok(None);
    }
    payload.resize(len as usize, 0);
    file.read_exact_at(payload, off + FRAME_HEADER)?;
    if crc32fast::hash(payload) != crc || decode_layout(payload).is_none() {
        return Ok(None);
    }
    Ok(Some(end))
}

/// Topic and key length of a payload whose layout is sound.
fn decode_layout(payload: &[u8]) -> Option<(Topic, usize)> {
    let topic = Topic::from_index(*payload.first()?)?;
    let klen = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?) as usize;
    (PAYLOAD_PREFIX + klen <= payload.len()).then_some((topic, klen))
}

fn decode_payload(payload: &[u8]) -> Option<SpoolRecord> {
    let (topic, klen) = decode_layout(payload)?;
    Some(SpoolRecord {
        topic,
        key: payload[PAYLOAD_PREFIX..PAYLOAD_PREFIX + klen].to_vec(),
        value: payload[PAYLOAD_PREFIX + klen..].to_vec(),
    })
}

/// The saved ack cursor, if the file is there and intact.
fn read_ack(path: &Path) -> Option<Pos> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() != 28 {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
    if crc32fast::hash(&bytes[..24]) != crc {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Some(Pos {
        seg: word(0),
        off: word(1),
        idx: word(2),
    })
}
