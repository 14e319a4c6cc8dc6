//! The on-disk spool: order, acknowledgement, damage, bounds, crash recovery.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use apiscope_publish::spool::{Append, Spool};
use apiscope_publish::Topic;
use common::TempDir;

const MAX: u64 = 1 << 20;

fn value(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Takes every unsent record: (seq, value).
fn drain(s: &mut Spool) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(r) = s.peek().unwrap() {
        let v = r.value.clone();
        out.push((s.take().unwrap(), v));
    }
    out
}

#[test]
fn records_come_back_in_order_and_acks_delete_segments() {
    let dir = TempDir::new("spool-order");
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    for i in 0..200 {
        assert_eq!(
            s.append(Topic::Calls, b"key", &value(i)).unwrap(),
            Append::Written
        );
    }
    assert!(segments(dir.path()).len() > 1, "small segments roll over");
    assert_eq!((s.pending(), s.unsent()), (200, 200));
    let got = drain(&mut s);
    assert_eq!(got.len(), 200);
    for (i, (_, v)) in got.iter().enumerate() {
        assert_eq!(v, &value(i));
    }
    assert_eq!((s.pending(), s.unsent()), (200, 0));
    // Acknowledge out of order: nothing is reclaimed until the prefix is complete.
    for (seq, _) in got.iter().rev().take(100) {
        s.ack(*seq).unwrap();
    }
    assert_eq!(s.pending(), 200);
    for (seq, _) in got.iter().take(100) {
        s.ack(*seq).unwrap();
    }
    assert_eq!(s.pending(), 0);
    assert!(
        segments(dir.path()).is_empty(),
        "an empty spool leaves no files"
    );
    assert_eq!(s.file_bytes(), 0);
}

#[test]
fn keys_and_topics_survive() {
    let dir = TempDir::new("spool-fields");
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    s.append(Topic::Inventory, b"ep-1", b"{}").unwrap();
    s.append(Topic::Findings, b"", b"{\"x\":1}").unwrap();
    let r = s.peek().unwrap().unwrap().clone();
    assert_eq!(
        (r.topic, r.key.as_slice(), r.value.as_slice()),
        (Topic::Inventory, &b"ep-1"[..], &b"{}"[..])
    );
    s.take();
    let r = s.peek().unwrap().unwrap().clone();
    assert_eq!((r.topic, r.key.as_slice()), (Topic::Findings, &b""[..]));
}

#[test]
fn reopen_after_a_crash_resends_what_was_not_acknowledged() {
    let dir = TempDir::new("spool-crash");
    {
        let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
        for i in 0..300 {
            s.append(Topic::Findings, b"k", &value(i)).unwrap();
        }
        let got = drain(&mut s);
        // 0..150 acknowledged and saved; 150..160 acknowledged after the last save; 170 alone.
        for (seq, _) in &got[..150] {
            s.ack(*seq).unwrap();
        }
        s.sync().unwrap();
        for (seq, _) in &got[150..160] {
            s.ack(*seq).unwrap();
        }
        s.ack(got[170].0).unwrap();
        // The process dies here: no sync, no clean close.
        std::mem::forget(s);
    }
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    assert_eq!(s.stats().recovered, 150);
    assert_eq!(s.stats().corrupt_frames, 0);
    let got = drain(&mut s);
    let values: Vec<Vec<u8>> = got.into_iter().map(|(_, v)| v).collect();
    let want: Vec<Vec<u8>> = (150..300).map(value).collect();
    assert_eq!(
        values, want,
        "at-least-once from the saved cursor, in order"
    );
    // New records go after the recovered ones.
    s.append(Topic::Findings, b"k", &value(300)).unwrap();
    assert_eq!(s.peek().unwrap().unwrap().value, value(300));
}

#[test]
fn a_torn_tail_is_cut_off_and_counted() {
    let dir = TempDir::new("spool-torn");
    {
        let mut s = Spool::open(dir.path(), MAX, 1 << 16).unwrap();
        for i in 0..10 {
            s.append(Topic::Calls, b"k", &value(i)).unwrap();
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    // A frame header promising 100 bytes followed by only 3: a write cut short by a crash.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(f);
    let mut s = Spool::open(dir.path(), MAX, 1 << 16).unwrap();
    assert_eq!(s.stats().corrupt_frames, 1);
    assert_eq!(s.stats().corrupt_bytes, 11);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        good_len,
        "the torn frame is cut off"
    );
    assert_eq!(s.pending(), 10);
    s.append(Topic::Calls, b"k", &value(10)).unwrap();
    let values: Vec<Vec<u8>> = drain(&mut s).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, (0..11).map(value).collect::<Vec<_>>());
}

#[test]
fn a_damaged_frame_ends_its_segment_only() {
    let dir = TempDir::new("spool-flip");
    {
        let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
        for i in 0..400 {
            s.append(Topic::Calls, b"k", &value(i)).unwrap();
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // Flip a byte in the middle of the first segment.
    let mut bytes = fs::read(&segs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&segs[0], &bytes).unwrap();
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    assert_eq!(s.stats().corrupt_frames, 1);
    assert!(s.stats().corrupt_bytes > 0);
    let values: Vec<Vec<u8>> = drain(&mut s).into_iter().map(|(_, v)| v).collect();
    let lost = 400 - values.len();
    assert!(lost > 0 && lost < 200, "lost {lost}");
    // What survives is in order: a prefix of segment one, then every later record.
    let mut expect = 0;
    let mut skipped = false;
    for v in &values {
        if *v != value(expect) {
            assert!(!skipped, "only one gap");
            skipped = true;
            expect = (expect..400)
                .find(|&i| value(i) == *v)
                .expect("a later record");
        }
        expect += 1;
    }
    assert_eq!(expect, 400, "the last record survives");
}

#[test]
fn garbage_files_are_discarded() {
    let dir = TempDir::new("spool-garbage");
    fs::write(dir.path().join("00000000000000000007.seg"), b"not a spool").unwrap();
    fs::write(dir.path().join("ack"), b"garbage").unwrap();
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    assert_eq!(s.stats().corrupt_frames, 1);
    assert_eq!(s.pending(), 0);
    assert!(s.peek().unwrap().is_none());
    s.append(Topic::Calls, b"k", b"{}").unwrap();
    assert_eq!(s.peek().unwrap().unwrap().value, b"{}");
}

#[test]
fn the_size_bound_refuses_the_newest_records() {
    let dir = TempDir::new("spool-full");
    let mut s = Spool::open(dir.path(), 8192, 4096).unwrap();
    let mut written = 0;
    while s.append(Topic::Calls, b"k", &value(written)).unwrap() == Append::Written {
        written += 1;
    }
    assert!(written > 100, "{written}");
    assert!(s.file_bytes() <= 8192);
    assert_eq!(
        s.append(Topic::Calls, b"k", &value(written)).unwrap(),
        Append::Full,
        "a record as large as the last one refused"
    );
    // The oldest are kept; acknowledging the first segment makes room again.
    let got = drain(&mut s);
    assert_eq!(got[0].1, value(0));
    for (seq, _) in &got[..got.len() / 2 + 10] {
        s.ack(*seq).unwrap();
    }
    assert_eq!(
        s.append(Topic::Calls, b"k", &value(written)).unwrap(),
        Append::Written
    );
    // A record larger than the whole bound is refused outright.
    assert_eq!(
        s.append(Topic::Calls, b"k", &vec![b'x'; 9000]).unwrap(),
        Append::Full
    );
}

#[test]
fn rewind_hands_out_unacknowledged_records_again() {
    let dir = TempDir::new("spool-rewind");
    let mut s = Spool::open(dir.path(), MAX, 4096).unwrap();
    for i in 0..20 {
        s.append(Topic::Calls, b"k", &value(i)).unwrap();
    }
    let got = drain(&mut s);
    for (seq, _) in &got[..5] {
        s.ack(*seq).unwrap();
    }
    s.ack(got[7].0).unwrap();
    s.rewind();
    assert_eq!(s.unsent(), 15);
    let again: Vec<Vec<u8>> = drain(&mut s).into_iter().map(|(_, v)| v).collect();
    assert_eq!(again, (5..20).map(value).collect::<Vec<_>>());
    // Acks of sequence numbers from before the rewind are ignored.
    s.ack(got[10].0).unwrap();
    assert_eq!(s.pending(), 15);
}

/// Random appends, takes, acks and reopenings against a simple model: what is pending is
/// always the appended records minus the acknowledged prefix, in order.
#[test]
fn random_operations_match_a_model() {
    let dir = TempDir::new("spool-random");
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut s = Spool::open(dir.path(), 64 << 10, 4096).unwrap();
    // Model: every record not yet acknowledged in order: (value number, seq if taken, acked).
    let mut model: std::collections::VecDeque<(usize, Option<u64>, bool)> = Default::default();
    let mut n = 0;
    for _ in 0..20_000 {
        match next() % 10 {
            0..=3 => {
                if s.append(Topic::Calls, b"k", &value(n)).unwrap() == Append::Written {
                    model.push_back((n, None, false));
                }
                n += 1;
            }
            4..=6 => {
                if let Some(r) = s.peek().unwrap() {
                    let v = r.value.clone();
                    let seq = s.take().unwrap();
                    let slot = model
                        .iter_mut()
                        .find(|m| m.1.is_none())
                        .expect("model has it");
                    assert_eq!(v, value(slot.0));
                    slot.1 = Some(seq);
                }
            }
            7..=8 => {
                let taken: Vec<usize> = (0..model.len())
                    .filter(|&i| model[i].1.is_some() && !model[i].2)
                    .collect();
                if !taken.is_empty() {
                    let i = taken[(next() as usize) % taken.len()];
                    s.ack(model[i].1.unwrap()).unwrap();
                    model[i].2 = true;
                    while model.front().is_some_and(|m| m.2) {
                        model.pop_front();
                    }
                }
            }
            _ => {
                if next() % 8 == 0 {
                    s.sync().unwrap();
                    drop(s);
                    s = Spool::open(dir.path(), 64 << 10, 4096).unwrap();
                    // Everything not acknowledged is unsent again, acked-out-of-order included.
                    for m in model.iter_mut() {
                        m.1 = None;
                        m.2 = false;
                    }
                }
            }
        }
        assert_eq!(s.pending(), model.len() as u64);
    }
}
