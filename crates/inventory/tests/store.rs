//! The state store against its contract: round trip, history, the secret key, damaged and
//! newer files, and survival of `kill -9` in the middle of flushing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use apiscope_inventory::store::{
    EndpointRecord, Store, StoreConfig, StoreError, DB_FILE, KEY_FILE, KEY_LEN, SCHEMA_VERSION,
};

const S: u64 = 1_000_000_000;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("apiscope-store-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn rec(id: &str, first: u64, last: u64, json: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        host: "api.example.com".into(),
        method: "GET".into(),
        path: format!("/{id}/{{id}}"),
        first_seen_ns: first,
        last_seen_ns: last,
        json: json.into(),
    }
}

/// A version at every flush, no retention: the history is exactly what was flushed.
fn every_flush(max_versions: u32) -> StoreConfig {
    StoreConfig {
        max_versions_per_endpoint: max_versions,
        min_version_interval_secs: 0,
        history_retention_secs: 0,
        full_integrity_check: true,
    }
}

fn ids<T>(v: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    v.iter().map(|x| id(x).to_owned()).collect()
}

#[test]
fn round_trip_through_reopen() {
    let d = TempDir::new("roundtrip");
    let config = StoreConfig::default();
    let records = vec![
        rec(
            "a",
            10 * S,
            20 * S,
            r#"{"calls":3,"schema":{"type":"object"}}"#,
        ),
        rec("b", 11 * S, 11 * S, "{}"),
        EndpointRecord {
            host: "ünïcode.example".into(),
            path: "/search".into(),
            json: "\"quoted\"\n\u{0}nul".into(),
            ..rec("c", 0, u64::try_from(i64::MAX).unwrap(), "")
        },
    ];
    let mut store = Store::open(d.path(), &config).unwrap();
    assert!(store.load_current().unwrap().is_empty());
    store.flush(30 * S, &records, &[]).unwrap();
    store.put_blob("baseline", "a", &[0, 1, 255]).unwrap();
    store.close().unwrap();

    let store = Store::open(d.path(), &config).unwrap();
    assert_eq!(store.load_current().unwrap(), records);
    assert_eq!(
        store.get_blob("baseline", "a").unwrap(),
        Some(vec![0, 1, 255])
    );
    let stats = store.stats();
    assert_eq!(stats.endpoints, 3);
    assert_eq!(stats.versions, 3);
    assert_eq!(stats.flushes, 1);
    assert_eq!(stats.last_flush_ns, Some(30 * S));
    assert_eq!(stats.blobs, 1);
    assert!(stats.bytes > 0);
}

#[test]
fn history_as_of_and_first_seen_since() {
    let d = TempDir::new("history");
    let mut store = Store::open(d.path(), &every_flush(64)).unwrap();
    // t=100: a, b.  t=200: a changes, c appears.  t=300: b removed.  t=400: a changes.
    store
        .flush(
            100 * S,
            &[
                rec("a", 90 * S, 99 * S, "a1"),
                rec("b", 95 * S, 99 * S, "b1"),
            ],
            &[],
        )
        .unwrap();
    store
        .flush(
            200 * S,
            &[
                rec("a", 90 * S, 199 * S, "a2"),
                rec("c", 150 * S, 190 * S, "c1"),
            ],
            &[],
        )
        .unwrap();
    store.flush(300 * S, &[], &["b".to_owned()]).unwrap();
    store
        .flush(400 * S, &[rec("a", 90 * S, 399 * S, "a3")], &[])
        .unwrap();

    let at = |t: u64| -> Vec<(String, String)> {
        store
            .as_of(t)
            .unwrap()
            .into_iter()
            .map(|v| {
                assert!(!v.approximate);
                (v.record.id, v.record.json)
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(at(50 * S), pairs(&[]));
    assert_eq!(at(99 * S), pairs(&[]), "nothing flushed before 100 s");
    assert_eq!(at(100 * S), pairs(&[("a", "a1"), ("b", "b1")]));
    assert_eq!(at(250 * S), pairs(&[("a", "a2"), ("b", "b1"), ("c", "c1")]));
    assert_eq!(at(300 * S), pairs(&[("a", "a2"), ("c", "c1")]));
    assert_eq!(at(u64::MAX), pairs(&[("a", "a3"), ("c", "c1")]));
    let v = store.as_of(250 * S).unwrap();
    assert_eq!(
        (v[0].version_from_ns, v[0].version_updated_ns),
        (200 * S, 200 * S)
    );

    let since = |t: u64| ids(&store.first_seen_since(t).unwrap(), |r| &r.id);
    assert_eq!(since(0), ["a", "c"], "b was removed");
    assert_eq!(since(91 * S), ["c"]);
    assert_eq!(since(150 * S), ["c"], "at or after");
    assert!(since(151 * S).is_empty());

    let h = store.history("b").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].record.as_ref().unwrap().json, "b1");
    assert!(h[1].record.is_none());
    assert!(store.history("nope").unwrap().is_empty());

    let s = store.stats();
    assert_eq!((s.endpoints, s.endpoints_removed, s.versions), (2, 1, 6));
    assert_eq!(
        (s.flushes, s.versions_written, s.versions_pruned),
        (4, 6, 0)
    );
}

#[test]
fn version_bound_prunes_the_oldest_and_counts() {
    let d = TempDir::new("prune");
    let mut store = Store::open(d.path(), &every_flush(3)).unwrap();
    for i in 1..=10u64 {
        let o = store
            .flush(
                i * 100 * S,
                &[rec("a", 50 * S, i * 100 * S, &format!("v{i}"))],
                &[],
            )
            .unwrap();
        assert_eq!(o.versions_pruned, u64::from(i > 3));
    }
    let h = store.history("a").unwrap();
    assert_eq!(h.iter().map(|h| h.seq).collect::<Vec<_>>(), [8, 9, 10]);
    let s = store.stats();
    assert_eq!(
        (s.versions, s.versions_written, s.versions_pruned),
        (3, 10, 7)
    );

    // Exact while the version is kept...
    let v = store.as_of(850 * S).unwrap();
    assert_eq!((v[0].record.json.as_str(), v[0].approximate), ("v8", false));
    // ...the oldest kept, flagged, when it was pruned but the endpoint already existed...
    let v = store.as_of(250 * S).unwrap();
    assert_eq!((v[0].record.json.as_str(), v[0].approximate), ("v8", true));
    assert_eq!(v[0].version_from_ns, 800 * S);
    // ...and nothing before the endpoint was first seen.
    assert!(store.as_of(40 * S).unwrap().is_empty());

    // The counters survive a reopen.
    drop(store);
    let store = Store::open(d.path(), &every_flush(3)).unwrap();
    assert_eq!(store.stats().versions_pruned, 7);
}

#[test]
fn blobs_by_namespace() {
    let d = TempDir::new("blobs");
    let mut store = Store::open(d.path(), &StoreConfig::default()).unwrap();
    store.put_blob("bola", "k2", b"two").unwrap();
    store.put_blob("bola", "k1", b"one").unwrap();
    store.put_blob("other", "k1", b"x").unwrap();
    store.put_blob("bola", "k1", b"uno").unwrap();
    store
        .put_blobs("many", [("a", &b"1"[..]), ("b", &b""[..])])
        .unwrap();
    assert_eq!(
        store.list_blobs("bola").unwrap(),
        [
            ("k1".to_owned(), b"uno".to_vec()),
            ("k2".to_owned(), b"two".to_vec())
        ]
    );
    assert_eq!(store.get_blob("many", "b").unwrap(), Some(Vec::new()));
    assert_eq!(store.get_blob("bola", "k3").unwrap(), None);
    assert_eq!(store.stats().blobs, 5);
    assert!(store.delete_blob("bola", "k2").unwrap());
    assert!(!store.delete_blob("bola", "k2").unwrap());
    assert_eq!(store.stats().blobs, 4);
    drop(store);
    let store = Store::open(d.path(), &StoreConfig::default()).unwrap();
    assert_eq!(store.stats().blobs, 4);
    assert_eq!(store.list_blobs("other").unwrap().len(), 1);
}

#[test]
fn secret_key_is_made_once_and_private() {
    let d = TempDir::new("key");
    let store = Store::open(d.path(), &StoreConfig::default()).unwrap();
    let key = store.secret_key();
    assert_ne!(key, [0; KEY_LEN]);
    drop(store);
    let path = d.path().join(KEY_FILE);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), KEY_LEN as u64);
    let dir_mode = fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        dir_mode & 0o077,
        0,
        "state directory is private: {dir_mode:o}"
    );
    assert_eq!(fs::read(&path).unwrap(), key);
    let again = Store::open(d.path(), &StoreConfig::default()).unwrap();
    assert_eq!(again.secret_key(), key);
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");

    // Another state directory gets another key.
    let d2 = TempDir::new("key2");
    assert_ne!(
        Store::open(d2.path(), &StoreConfig::default())
            .unwrap()
            .secret_key(),
        key
    );
}

#[test]
fn damaged_key_file_is_a_typed_error() {
    let d = TempDir::new("badkey");
    drop(Store::open(d.path(), &StoreConfig::default()).unwrap());
    fs::write(d.path().join(KEY_FILE), b"short").unwrap();
    let e = Store::open(d.path(), &StoreConfig::default()).unwrap_err();
    assert!(matches!(e, StoreError::BadKey { len: 5, .. }), "{e}");
    assert!(e.to_string().contains("delete it to make a new key"), "{e}");
}

#[test]
fn garbage_file_is_corrupt() {
    let d = TempDir::new("garbage");
    fs::create_dir_all(d.path()).unwrap();
    let db = d.path().join(DB_FILE);
    fs::write(&db, vec![b'x'; 8192]).unwrap();
    let e = Store::open(d.path(), &StoreConfig::default()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&db.display().to_string()), "{msg}");
    assert!(msg.contains("move the state directory aside"), "{msg}");
    // Nothing was written over it.
    assert_eq!(fs::read(&db).unwrap(), vec![b'x'; 8192]);
}

#[test]
fn damaged_pages_are_corrupt() {
    let d = TempDir::new("damaged");
    let mut store = Store::open(d.path(), &every_flush(64)).unwrap();
    let records: Vec<_> = (0..400)
        .map(|i| rec(&format!("e{i:04}"), i, i + 1, &"j".repeat(300)))
        .collect();
    store.flush(1000, &records, &[]).unwrap();
    store.close().unwrap();
    // Closing checkpoints the log into the database file; the log is gone.
    let db = d.path().join(DB_FILE);
    let mut bytes = fs::read(&db).unwrap();
    assert!(bytes.len() > 40 * 4096, "{}", bytes.len());
    // Scribble over every page but the first (the header and the schema).
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 + 13) as u8;
    }
    fs::write(&db, &bytes).unwrap();
    for full in [false, true] {
        let config = StoreConfig {
            full_integrity_check: full,
            ..StoreConfig::default()
        };
        let e = Store::open(d.path(), &config).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    }
}

#[test]
fn newer_schema_is_refused() {
    let d = TempDir::new("newer");
    drop(Store::open(d.path(), &StoreConfig::default()).unwrap());
    let conn = rusqlite::Connection::open(d.path().join(DB_FILE)).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    let e = Store::open(d.path(), &StoreConfig::default()).unwrap_err();
    match &e {
        StoreError::NewerSchema {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, SCHEMA_VERSION)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

#[test]
fn another_programs_database_is_refused() {
    let d = TempDir::new("foreign");
    fs::create_dir_all(d.path()).unwrap();
    let conn = rusqlite::Connection::open(d.path().join(DB_FILE)).unwrap();
    conn.execute("CREATE TABLE users (name TEXT)", []).unwrap();
    drop(conn);
    let e = Store::open(d.path(), &StoreConfig::default()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    // Left as it was: not switched to write-ahead logging.
    let conn = rusqlite::Connection::open(d.path().join(DB_FILE)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn read_only_sees_what_a_writer_committed() {
    let d = TempDir::new("readonly");
    assert!(matches!(
        Store::open_read_only(d.path(), &StoreConfig::default()).unwrap_err(),
        StoreError::Missing { .. }
    ));
    let mut writer = Store::open(d.path(), &StoreConfig::default()).unwrap();
    writer.flush(10, &[rec("a", 1, 2, "1")], &[]).unwrap();
    let mut reader = Store::open_read_only(d.path(), &StoreConfig::default()).unwrap();
    assert_eq!(reader.secret_key(), writer.secret_key());
    assert_eq!(reader.load_current().unwrap().len(), 1);
    writer.flush(20, &[rec("b", 1, 2, "1")], &[]).unwrap();
    assert_eq!(reader.load_current().unwrap().len(), 2);
    assert!(reader.flush(30, &[rec("c", 1, 2, "1")], &[]).is_err());
    assert!(reader.put_blob("x", "y", b"z").is_err());
}

// ---------------------------------------------------------------------------------------------
// kill -9
// ---------------------------------------------------------------------------------------------

/// Set in the child: the state directory the writer flushes into.
const WRITER_ENV: &str = "APISCOPE_STORE_TEST_WRITER";
/// Flushes each writer run commits (at least) before it is killed.
const FLUSHES_PER_RUN: u64 = 15;
const RUNS: usize = 3;
/// Every this many flushes, a large one.
const BIG_EVERY: u64 = 8;

fn kill_config() -> StoreConfig {
    StoreConfig {
        max_versions_per_endpoint: 4,
        min_version_interval_secs: 0,
        history_retention_secs: 0,
        full_integrity_check: true,
    }
}

/// What flush `n` (from 1) writes: five new endpoints, every seventh endpoint updated, the
/// one added 40 flushes ago removed. Every eighth flush updates every endpoint with a large
/// body: a transaction bigger than SQLite's page cache (2 MB), whose pages spill into the log
/// before the commit, so that a kill leaves uncommitted frames behind.
fn flush_input(n: u64) -> (Vec<EndpointRecord>, Vec<String>) {
    let t = n * S;
    let big = n % BIG_EVERY == 0;
    let pad = "p".repeat(if big { 40_000 } else { 1_500 });
    let mut changed = Vec::new();
    for j in 0..n * 5 {
        if big || j >= (n - 1) * 5 || j % 7 == n % 7 {
            let json = format!(r#"{{"flush":{n},"pad":"{pad}"}}"#);
            changed.push(rec(&format!("e{j:05}"), (j / 5 + 1) * S, t, &json));
        }
    }
    let removed = if n > 40 {
        vec![format!("e{:05}", (n - 40) * 5)]
    } else {
        Vec::new()
    };
    (changed, removed)
}

/// The current endpoints after flushes 1..=n.
fn expected_after(n: u64) -> Vec<EndpointRecord> {
    let mut model = BTreeMap::new();
    for i in 1..=n {
        let (changed, removed) = flush_input(i);
        for r in changed {
            model.insert(r.id.clone(), r);
        }
        for id in removed {
            model.remove(&id);
        }
    }
    model.into_values().collect()
}

/// The child: continue from the last committed flush, print each commit, until killed.
fn writer(dir: &Path) -> ! {
    let mut store = Store::open(dir, &kill_config()).expect("writer opens the store");
    let mut out = std::io::stdout().lock();
    let start = store.stats().flushes;
    // Bounded, in case the parent never kills it; printing to a closed pipe also ends it.
    for n in start + 1..start + 100_000 {
        let (changed, removed) = flush_input(n);
        writeln!(out, "begin {n}")
            .and_then(|()| out.flush())
            .expect("stdout");
        let started = Instant::now();
        store.flush(n * S, &changed, &removed).expect("flush");
        let micros = started.elapsed().as_micros();
        writeln!(out, "flushed {n} {micros}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
    std::process::exit(3);
}

#[test]
fn survives_kill_9_while_flushing() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        writer(Path::new(&dir));
    }
    let d = TempDir::new("kill9");
    let exe = std::env::current_exe().unwrap();
    let mut committed = 0u64;
    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["survives_kill_9_while_flushing", "--exact", "--nocapture"])
            .env(WRITER_ENV, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut reported = committed;
        // Wait for the writer to report enough commits, then kill it halfway through a large
        // flush (by the time the previous large one took): inside the transaction, after
        // pages have spilled into the log.
        let target = committed + FLUSHES_PER_RUN;
        let mut big_took = Duration::ZERO;
        loop {
            let line = match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!("writer (run {run}) ended after flush {reported}"),
            };
            if let Some(rest) = line.strip_prefix("flushed ") {
                let (n, micros) = rest.split_once(' ').unwrap();
                reported = n.parse().unwrap();
                if reported % BIG_EVERY == 0 {
                    big_took = Duration::from_micros(micros.parse().unwrap());
                }
            } else if let Some(n) = line.strip_prefix("begin ") {
                let n: u64 = n.parse().unwrap();
                if reported >= target && n % BIG_EVERY == 0 {
                    std::thread::sleep(big_took / 2);
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Commits reported after the target was reached but before the kill.
        for line in lines {
            if let Some(rest) = line.unwrap().strip_prefix("flushed ") {
                reported = rest.split_once(' ').unwrap().0.parse().unwrap();
            }
        }

        let store = Store::open(d.path(), &kill_config()).unwrap(); // integrity_check passes
        let flushes = store.stats().flushes;
        // Everything reported is committed; at most the one flush between commit and print
        // is committed without being reported.
        assert!(
            flushes == reported || flushes == reported + 1,
            "run {run}: {flushes} flushes committed, {reported} reported"
        );
        assert_eq!(store.stats().last_flush_ns, Some(flushes * S));
        let current = store.load_current().unwrap();
        assert_eq!(current.len(), expected_after(flushes).len(), "run {run}");
        assert!(
            current == expected_after(flushes),
            "run {run}: contents differ"
        );
        // History up to a flush before the kill is intact too.
        let earlier = flushes - 3;
        let as_of: Vec<_> = store
            .as_of(earlier * S)
            .unwrap()
            .into_iter()
            .map(|v| v.record)
            .collect();
        assert!(as_of == expected_after(earlier), "run {run}: as_of differs");
        committed = flushes;
    }
    assert!(committed >= RUNS as u64 * FLUSHES_PER_RUN);
}
