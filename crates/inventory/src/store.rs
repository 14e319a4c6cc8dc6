//! The persistent state store: the inventory, its history and other records in `--state DIR`.
//!
//! A [`Store`] is one SQLite database (`DIR/inventory.db`, reached through `rusqlite` and the
//! system `libsqlite3`) plus the secret key file (`DIR/secret.key`). The store does not know the
//! inventory's model: an endpoint is an opaque [`EndpointRecord`] (stable id, host, method,
//! templated path, first/last seen capture times and the endpoint's full JSON object).
//!
//! - [`Store::open`] creates the directory, the database and the key when missing, checks the
//!   database (`PRAGMA quick_check`, or `integrity_check` with
//!   [`StoreConfig::full_integrity_check`]) and its schema version, and loads the counters.
//!   A damaged file is [`StoreError::Corrupt`], a file written by a newer apiscope is
//!   [`StoreError::NewerSchema`]; nothing is modified in either case.
//! - [`Store::flush`] writes the endpoints that changed and the ids that were removed since the
//!   last flush in **one transaction**, at a capture time. Each change appends a version to the
//!   endpoint's history (or folds into the latest version when that is younger than
//!   [`StoreConfig::min_version_interval_secs`]); each removal appends a tombstone.
//! - [`Store::load_current`] is the inventory as last flushed (what the sensor reloads at
//!   start), [`Store::as_of`] the inventory as it was at a capture time,
//!   [`Store::first_seen_since`] the current endpoints first seen at or after a capture time,
//!   [`Store::history`] the versions kept of one endpoint.
//! - [`Store::put_blob`], [`Store::get_blob`], [`Store::list_blobs`] and
//!   [`Store::delete_blob`] keep other records (detector baselines) as bytes under a namespace
//!   and a key.
//! - [`Store::secret_key`] is a 32-byte key generated from `/dev/urandom` at the first open and
//!   kept in `DIR/secret.key` (mode 0600): the key for hashes of values that must be
//!   remembered but not stored (distinct object ids). Deleting the file makes a new key at the
//!   next open, and hashes remembered under the old key no longer match.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=NORMAL`. A flush returns once its
//! transaction is in the write-ahead log: if the process is killed (`kill -9`, a panic, an
//! OOM kill) nothing committed is lost and an interrupted flush leaves no trace, so at most the
//! changes since the last flush are lost. On a power loss or kernel crash the last commits
//! before the most recent checkpoint's `fsync` may be lost as well, but the database is never
//! corrupted (`synchronous=FULL` would `fsync` on every commit; one flush every few seconds
//! does not need it). `docs/decisions/0004-state-store.md` has the reasoning.
//!
//! # Time
//!
//! Every time is capture time in nanoseconds since the Unix epoch, passed in by the caller; the
//! store never reads the wall clock. Flush times only move forward: a flush at an earlier time
//! than the previous one is recorded at the previous one's time. Times must fit in an `i64`
//! (until the year 2262), otherwise [`StoreError::TimeOutOfRange`].
//!
//! # Bounds
//!
//! History is bounded per endpoint by [`StoreConfig::max_versions_per_endpoint`] (the oldest
//! versions are pruned) and in time by [`StoreConfig::history_retention_secs`] (versions
//! superseded before the retention horizon, and removed endpoints whose removal is older, are
//! pruned). Both are counted ([`StoreStats::versions_pruned`]). When the version an endpoint
//! had at time T was pruned, [`Store::as_of`] answers with the oldest version kept, provided
//! the endpoint was first seen by T, and flags it [`VersionedRecord::approximate`].
//!
//! One process writes a state directory at a time; SQLite's own locking keeps the database
//! consistent if two try, but their inventories would interleave. [`Store::open_read_only`]
//! reads a directory that a running sensor is writing.
//!
//! # Example
//!
//! ```
//! use apiscope_inventory::store::{EndpointRecord, Store, StoreConfig};
//!
//! let dir = std::env::temp_dir().join(format!("apiscope-store-doc-{}", std::process::id()));
//! let config = StoreConfig::default();
//! let users = EndpointRecord {
//!     id: "e1".into(),
//!     host: "api.example.com".into(),
//!     method: "GET".into(),
//!     path: "/users/{id}".into(),
//!     first_seen_ns: 1_000,
//!     last_seen_ns: 2_000,
//!     json: r#"{"calls":2}"#.into(),
//! };
//! let mut store = Store::open(&dir, &config)?;
//! store.flush(2_000, &[users.clone()], &[])?;
//! let key = store.secret_key();
//! drop(store);
//!
//! // At the next start: the same inventory, the same key.
//! let mut store = Store::open(&dir, &config)?;
//! assert_eq!(store.load_current()?, vec![users.clone()]);
//! assert_eq!(store.secret_key(), key);
//!
//! // The endpoint goes away; the history still knows it.
//! store.flush(5_000, &[], &["e1".to_string()])?;
//! assert!(store.load_current()?.is_empty());
//! assert_eq!(store.as_of(3_000)?[0].record, users);
//! assert!(store.as_of(1_500)?.is_empty()); // nothing had been flushed by then
//! store.put_blob("baseline", "e1", b"\x01\x02")?;
//! assert_eq!(store.get_blob("baseline", "e1")?, Some(vec![1, 2]));
//! drop(store);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    ffi::ErrorCode, params, Connection, OpenFlags, OptionalExtension, TransactionBehavior,
};

/// The database file inside the state directory.
pub const DB_FILE: &str = "inventory.db";
/// The secret key file inside the state directory.
pub const KEY_FILE: &str = "secret.key";
/// Length of the secret key in bytes.
pub const KEY_LEN: usize = 32;
/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// `PRAGMA application_id` of an apiscope state database ("APIS").
pub const APPLICATION_ID: i32 = 0x4150_4953;

const NS_PER_SEC: u64 = 1_000_000_000;
/// How long a write waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Problems reported by an integrity check that go into [`StoreError::Corrupt`].
const MAX_CHECK_MESSAGES: usize = 5;
/// The write-ahead log is truncated to this size after a checkpoint.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

/// Bounds and checks of the state store (`[state]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Versions kept per endpoint, tombstones included; older ones are pruned (counter
    /// `versions_pruned`). At least 1.
    pub max_versions_per_endpoint: u32,
    /// A change flushed less than this long (capture time) after the start of the endpoint's
    /// latest version is folded into that version instead of starting a new one (counter
    /// `versions_coalesced`), so that an endpoint whose statistics change at every flush
    /// still keeps [`max_versions_per_endpoint`](Self::max_versions_per_endpoint) versions
    /// spread over hours. [`Store::as_of`] then has this resolution. 0 starts a version at
    /// every flush.
    pub min_version_interval_secs: u64,
    /// Versions superseded more than this long (capture time) before the latest flush are
    /// pruned, and so are endpoints removed longer ago than that; the current version of a
    /// current endpoint is always kept. 0 keeps history for as long as the version bound
    /// allows.
    pub history_retention_secs: u64,
    /// Run `PRAGMA integrity_check` at open instead of the faster `quick_check` (which skips
    /// the comparison of indexes with their tables).
    pub full_integrity_check: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_versions_per_endpoint: 64,
            min_version_interval_secs: 900,
            history_retention_secs: 90 * 86_400,
            full_integrity_check: false,
        }
    }
}

impl StoreConfig {
    /// Every problem of this configuration, each naming its key; empty when it is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_versions_per_endpoint < 1 {
            errors.push("max_versions_per_endpoint: must be at least 1".to_owned());
        }
        errors
    }
}

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or a file in it could not be created, read or written.
    #[error("state directory: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// SQLite could not open the database file (permissions, a directory in the way, ...).
    #[error("cannot open state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite would not switch the database to write-ahead logging.
    #[error(
        "cannot use write-ahead logging for {path} (journal mode stays {mode}); put the state \
         directory on a local filesystem"
    )]
    NoWal { path: PathBuf, mode: String },
    /// The database file is damaged or is not an SQLite database at all.
    #[error(
        "state database {path} is damaged ({detail}); move the state directory aside to start \
         with an empty inventory (its history and baselines are then lost), or restore it from \
         a backup; `sqlite3 {path} .recover` may salvage what is still readable"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The database is SQLite but was not written by apiscope.
    #[error(
        "{path} is an SQLite database but not an apiscope state store; \
         point --state at a directory of its own"
    )]
    Foreign { path: PathBuf },
    /// The database was written by a newer apiscope with a schema this build does not know.
    #[error(
        "state database {path} has schema version {found} but this apiscope supports up to \
         {supported}; run the newer apiscope that wrote it, or move the state directory aside"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: u32,
    },
    /// [`Store::open_read_only`] found no state (database or key file) in the directory.
    #[error("no apiscope state at {path}")]
    Missing { path: PathBuf },
    /// The key file does not hold exactly [`KEY_LEN`] bytes.
    #[error(
        "secret key {path} has {len} bytes instead of {KEY_LEN}; restore it, or delete it to \
         make a new key (hashes remembered under the old key will no longer match)"
    )]
    BadKey { path: PathBuf, len: usize },
    /// A capture time does not fit the database's signed 64-bit integers (after 2262).
    #[error("{what} {value} ns is out of range (at most {} ns)", i64::MAX)]
    TimeOutOfRange { what: &'static str, value: u64 },
    /// Any other SQLite failure (disk full, a lock held too long, a read-only store written).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One endpoint as the store sees it: a few indexed fields and the endpoint's JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Stable endpoint id (the store's key).
    pub id: String,
    pub host: String,
    pub method: String,
    /// The templated path (`/users/{id}`).
    pub path: String,
    /// Capture time of the first call, ns since the Unix epoch.
    pub first_seen_ns: u64,
    /// Capture time of the latest call, ns since the Unix epoch.
    pub last_seen_ns: u64,
    /// The endpoint's full JSON object, stored as given.
    pub json: String,
}

/// An endpoint as it was at some capture time ([`Store::as_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord {
    pub record: EndpointRecord,
    /// Capture time of the flush that started this version.
    pub version_from_ns: u64,
    /// Capture time of the last flush folded into this version
    /// ([`StoreConfig::min_version_interval_secs`]); the record is the state at that flush.
    pub version_updated_ns: u64,
    /// The version current at the requested time was pruned: this is the oldest version kept,
    /// which started after that time.
    pub approximate: bool,
}

/// One version of an endpoint's history ([`Store::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Version number, from 1 for the endpoint's first version; pruned versions leave a gap
    /// at the start.
    pub seq: u64,
    /// Capture time of the flush that started this version.
    pub from_ns: u64,
    /// Capture time of the last flush folded into this version.
    pub updated_ns: u64,
    /// The endpoint, or `None` for a removal.
    pub record: Option<EndpointRecord>,
}

/// What one [`Store::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// The capture time the flush was recorded at (never earlier than the previous flush).
    pub at_ns: u64,
    /// New versions, tombstones included.
    pub versions_written: u64,
    /// Changes folded into the endpoint's latest version.
    pub versions_coalesced: u64,
    /// Changed records equal to what was stored already (nothing written).
    pub unchanged: u64,
    /// Current endpoints removed.
    pub removed: u64,
    /// Removed ids that were not current endpoints (ignored).
    pub removed_unknown: u64,
    /// Versions pruned by the version bound or the retention horizon.
    pub versions_pruned: u64,
    /// Removed endpoints whose whole history passed the retention horizon and was dropped.
    pub endpoints_expired: u64,
}

/// Sizes and counters of a store. The totals (flushes, versions written, coalesced, pruned)
/// count since the store was created, not since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Current endpoints.
    pub endpoints: u64,
    /// Removed endpoints whose history is still kept.
    pub endpoints_removed: u64,
    /// Versions kept, tombstones included.
    pub versions: u64,
    /// Records kept with [`Store::put_blob`].
    pub blobs: u64,
    /// Size of the database and its write-ahead log on disk.
    pub bytes: u64,
    /// Flushes committed.
    pub flushes: u64,
    /// Capture time of the latest flush.
    pub last_flush_ns: Option<u64>,
    pub versions_written: u64,
    pub versions_coalesced: u64,
    pub versions_pruned: u64,
}

/// The persistent state of one sensor: see the [module documentation](self).
pub struct Store {
    conn: Connection,
    db_path: PathBuf,
    key: [u8; KEY_LEN],
    config: StoreConfig,
    stats: StoreStats,
    /// Capture time of the last retention sweep in this process.
    last_sweep_ns: Option<i64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Store")
            .field("db_path", &self.db_path)
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE endpoint (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    json TEXT NOT NULL,
    removed_ns INTEGER,
    seq INTEGER NOT NULL,
    version_from_ns INTEGER NOT NULL,
    versions_pruned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX endpoint_current_first_seen ON endpoint (first_seen_ns) WHERE removed_ns IS NULL;
CREATE TABLE endpoint_version (
    endpoint_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    from_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    host TEXT,
    method TEXT,
    path TEXT,
    first_seen_ns INTEGER,
    last_seen_ns INTEGER,
    json TEXT,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX endpoint_version_from ON endpoint_version (from_ns);
CREATE TABLE blob (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
);
";

const RECORD_COLUMNS: &str = "id, host, method, path, first_seen_ns, last_seen_ns, json";
/// Columns of `endpoint_version AS v`.
const VERSION_COLUMNS: &str = "v.endpoint_id, v.host, v.method, v.path, v.first_seen_ns, \
     v.last_seen_ns, v.json, v.from_ns, v.updated_ns";

impl Store {
    /// Opens the state in `dir`, creating the directory (mode 0700), the database and the
    /// secret key when missing.
    ///
    /// Errors: [`StoreError::Io`] for the directory or key file, [`StoreError::Open`] when
    /// SQLite cannot open the file, [`StoreError::Corrupt`] when the integrity check fails or
    /// the file is not a database, [`StoreError::Foreign`] for another program's database,
    /// [`StoreError::NewerSchema`] for a newer schema, [`StoreError::NoWal`] when the
    /// filesystem cannot hold a write-ahead log, [`StoreError::BadKey`] for a damaged key file.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let db_path = dir.join(DB_FILE);
        let conn = Connection::open(&db_path).map_err(|e| open_error(&db_path, e))?;
        let mut store = Store::prepare(conn, db_path, config, false)?;
        store.key = load_or_create_key(dir)?;
        Ok(store)
    }

    /// Opens the state in `dir` for reading only (a running sensor may be writing it). The
    /// database and the key must exist ([`StoreError::Missing`]); writes fail with
    /// [`StoreError::Sqlite`]. Other errors as for [`Store::open`].
    pub fn open_read_only(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        let db_path = dir.join(DB_FILE);
        let key_path = dir.join(KEY_FILE);
        if !db_path.is_file() || !key_path.is_file() {
            return Err(StoreError::Missing {
                path: dir.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&db_path, flags).map_err(|e| open_error(&db_path, e))?;
        let mut store = Store::prepare(conn, db_path, config, true)?;
        store.key = read_key(&key_path)?.ok_or_else(|| StoreError::Missing {
            path: dir.to_owned(),
        })?;
        Ok(store)
    }

    fn prepare(
        conn: Connection,
        db_path: PathBuf,
        config: &StoreConfig,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let classify = |e| classify(&db_path, e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        // The first read of the header: "file is not a database" shows here.
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(classify)?;
        integrity_check(&conn, &db_path, config.full_integrity_check)?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(classify)?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(StoreError::Foreign { path: db_path });
        }
        let has_version_table: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = 'schema_version')",
                [],
                |r| r.get(0),
            )
            .map_err(classify)?;
        if !has_version_table {
            if tables != 0 {
                return Err(StoreError::Foreign { path: db_path });
            }
            if read_only {
                return Err(StoreError::Missing { path: db_path });
            }
        } else {
            let version: Option<i64> = conn
                .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
                .map_err(classify)?;
            match version {
                Some(v) if v == i64::from(SCHEMA_VERSION) => {}
                Some(v) if v > i64::from(SCHEMA_VERSION) => {
                    return Err(StoreError::NewerSchema {
                        path: db_path,
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                // Version 1 is the first; there is nothing older to migrate from.
                other => {
                    return Err(StoreError::Corrupt {
                        path: db_path,
                        detail: format!("invalid schema version {other:?}"),
                    })
                }
            }
        }
        // Only now, with the file known to be ours and readable, is anything changed.
        if !read_only {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(classify)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::NoWal {
                    path: db_path,
                    mode,
                });
            }
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(classify)?;
            conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
                .map_err(classify)?;
        }
        if !has_version_table {
            create_schema(&conn).map_err(classify)?;
        }
        let stats = load_stats(&conn).map_err(classify)?;
        Ok(Store {
            conn,
            db_path,
            key: [0; KEY_LEN],
            config: config.clone(),
            stats,
            last_sweep_ns: None,
        })
    }

    /// The key for hashes of values that must be remembered but not stored.
    pub fn secret_key(&self) -> [u8; KEY_LEN] {
        self.key
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Writes one flush in one transaction: every record of `changed` (a new version, or the
    /// latest version updated, see [`StoreConfig::min_version_interval_secs`]), then every id
    /// of `removed` (a tombstone; ids that are not current endpoints are ignored and counted),
    /// then the prunings the bounds require. An id in both lists ends up removed.
    ///
    /// `at_ns` is the capture time of the flush; an earlier time than the previous flush's is
    /// raised to it. Either all of it is committed or, on error, nothing.
    ///
    /// Errors: [`StoreError::TimeOutOfRange`] (checked before anything is written),
    /// [`StoreError::Sqlite`] (disk full, read-only store, ...), [`StoreError::Corrupt`].
    pub fn flush(
        &mut self,
        at_ns: u64,
        changed: &[EndpointRecord],
        removed: &[String],
    ) -> Result<FlushOutcome, StoreError> {
        let mut at = to_sql_time("flush time", at_ns)?;
        if let Some(last) = self.stats.last_flush_ns {
            at = at.max(to_sql_time("flush time", last)?);
        }
        let rows = changed
            .iter()
            .map(SqlRecord::new)
            .collect::<Result<Vec<_>, _>>()?;
        let sweep = self.config.history_retention_secs > 0
            && self.last_sweep_ns.is_none_or(|s| {
                at.saturating_sub(s) >= sweep_every_ns(self.config.history_retention_secs)
            });
        let (outcome, delta) = flush_tx(
            &mut self.conn,
            &self.config,
            &self.stats,
            at,
            &rows,
            removed,
            sweep,
        )
        .map_err(|e| classify(&self.db_path, e))?;
        let s = &mut self.stats;
        s.endpoints = s.endpoints.wrapping_add_signed(delta.endpoints);
        s.endpoints_removed = s
            .endpoints_removed
            .wrapping_add_signed(delta.endpoints_removed);
        s.versions = s.versions + outcome.versions_written - outcome.versions_pruned;
        s.flushes += 1;
        s.last_flush_ns = Some(outcome.at_ns);
        s.versions_written += outcome.versions_written;
        s.versions_coalesced += outcome.versions_coalesced;
        s.versions_pruned += outcome.versions_pruned;
        if sweep {
            self.last_sweep_ns = Some(at);
        }
        Ok(outcome)
    }

    /// The current endpoints (as of the last flush), ordered by id.
    pub fn load_current(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM endpoint WHERE removed_ns IS NULL ORDER BY id");
        self.query_records(&sql, [])
    }

    /// The current endpoints first seen at or after `t_ns`, ordered by first-seen time then id.
    pub fn first_seen_since(&self, t_ns: u64) -> Result<Vec<EndpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM endpoint \
             WHERE removed_ns IS NULL AND first_seen_ns >= ?1 ORDER BY first_seen_ns, id"
        );
        self.query_records(&sql, [clamp_time(t_ns)])
    }

    /// The inventory as the flushes up to capture time `t_ns` recorded it, ordered by id: for
    /// each endpoint its latest version started at or before `t_ns`, unless that version is a
    /// removal or the endpoint was first seen after `t_ns`. When that version was pruned, the
    /// oldest version kept stands in for it (flagged [`VersionedRecord::approximate`]) if the
    /// endpoint was first seen by `t_ns`.
    pub fn as_of(&self, t_ns: u64) -> Result<Vec<VersionedRecord>, StoreError> {
        let t = clamp_time(t_ns);
        let exact = format!(
            "WITH latest AS (SELECT endpoint_id, MAX(seq) AS seq FROM endpoint_version \
                             WHERE from_ns <= ?1 GROUP BY endpoint_id) \
             SELECT {VERSION_COLUMNS} FROM latest \
             JOIN endpoint_version v ON v.endpoint_id = latest.endpoint_id AND v.seq = latest.seq \
             WHERE v.removed = 0 AND v.first_seen_ns <= ?1"
        );
        let oldest = format!(
            "WITH oldest AS (SELECT endpoint_id, MIN(seq) AS seq FROM endpoint_version \
                             GROUP BY endpoint_id) \
             SELECT {VERSION_COLUMNS} FROM oldest \
             JOIN endpoint_version v ON v.endpoint_id = oldest.endpoint_id AND v.seq = oldest.seq \
             JOIN endpoint e ON e.id = v.endpoint_id \
             WHERE e.versions_pruned > 0 AND v.from_ns > ?1 AND v.removed = 0 \
               AND v.first_seen_ns <= ?1"
        );
        let run = || -> rusqlite::Result<Vec<VersionedRecord>> {
            let mut out = Vec::new();
            for (sql, approximate) in [(&exact, false), (&oldest, true)] {
                let mut stmt = self.conn.prepare(sql)?;
                let rows = stmt.query_map([t], |r| {
                    Ok(VersionedRecord {
                        record: record_from_row(r)?,
                        version_from_ns: from_sql(r.get(7)?),
                        version_updated_ns: from_sql(r.get(8)?),
                        approximate,
                    })
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
            Ok(out)
        };
        run().map_err(|e| classify(&self.db_path, e))
    }

    /// The versions kept of endpoint `id`, oldest first (empty for an unknown id).
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS}, v.seq, v.removed FROM endpoint_version v \
             WHERE v.endpoint_id = ?1 ORDER BY v.seq"
        );
        let run = || -> rusqlite::Result<Vec<HistoryEntry>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map([id], |r| {
                let removed: bool = r.get(10)?;
                Ok(HistoryEntry {
                    seq: from_sql(r.get(9)?),
                    from_ns: from_sql(r.get(7)?),
                    updated_ns: from_sql(r.get(8)?),
                    record: if removed {
                        None
                    } else {
                        Some(record_from_row(r)?)
                    },
                })
            })?;
            rows.collect()
        };
        run().map_err(|e| classify(&self.db_path, e))
    }

    /// Stores `value` under (`namespace`, `key`), replacing what was there, in its own
    /// transaction.
    pub fn put_blob(&mut self, namespace: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_blobs(namespace, [(key, value)])
    }

    /// Stores several records of one namespace in one transaction.
    pub fn put_blobs<'a, I>(&mut self, namespace: &str, entries: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let run = |conn: &mut Connection| -> rusqlite::Result<u64> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut added = 0;
            {
                let mut exists = tx.prepare(
                    "SELECT EXISTS (SELECT 1 FROM blob WHERE namespace = ?1 AND key = ?2)",
                )?;
                let mut put = tx.prepare(
                    "INSERT INTO blob (namespace, key, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                )?;
                for (key, value) in entries {
                    if !exists.query_row(params![namespace, key], |r| r.get::<_, bool>(0))? {
                        added += 1;
                    }
                    put.execute(params![namespace, key, value])?;
                }
            }
            tx.commit()?;
            Ok(added)
        };
        let added = run(&mut self.conn).map_err(|e| classify(&self.db_path, e))?;
        self.stats.blobs += added;
        Ok(())
    }

    /// The record under (`namespace`, `key`), if any.
    pub fn get_blob(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM blob WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| classify(&self.db_path, e))
    }

    /// Deletes the record under (`namespace`, `key`); says whether there was one.
    pub fn delete_blob(&mut self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM blob WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
            )
            .map_err(|e| classify(&self.db_path, e))?;
        self.stats.blobs = self.stats.blobs.saturating_sub(n as u64);
        Ok(n > 0)
    }

    /// Every record of `namespace` as (key, value), ordered by key.
    pub fn list_blobs(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let run = || -> rusqlite::Result<Vec<(String, Vec<u8>)>> {
            let mut stmt = self
                .conn
                .prepare("SELECT key, value FROM blob WHERE namespace = ?1 ORDER BY key")?;
            let rows = stmt.query_map([namespace], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        run().map_err(|e| classify(&self.db_path, e))
    }

    /// Sizes and counters; `bytes` reads the file sizes (0 for a file that cannot be read).
    pub fn stats(&self) -> StoreStats {
        let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.db_path.clone().into_os_string();
        wal.push("-wal");
        StoreStats {
            bytes: size(&self.db_path) + size(Path::new(&wal)),
            ..self.stats
        }
    }

    /// Closes the database, reporting an error that dropping the store would ignore.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.db_path;
        self.conn.close().map_err(|(_, e)| classify(&path, e))
    }

    fn query_records<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let run = || -> rusqlite::Result<Vec<EndpointRecord>> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map(params, record_from_row)?;
            rows.collect()
        };
        run().map_err(|e| classify(&self.db_path, e))
    }
}

/// An [`EndpointRecord`] with its times checked for the database.
struct SqlRecord<'a> {
    r: &'a EndpointRecord,
    first_seen: i64,
    last_seen: i64,
}

impl<'a> SqlRecord<'a> {
    fn new(r: &'a EndpointRecord) -> Result<SqlRecord<'a>, StoreError> {
        Ok(SqlRecord {
            r,
            first_seen: to_sql_time("first_seen_ns", r.first_seen_ns)?,
            last_seen: to_sql_time("last_seen_ns", r.last_seen_ns)?,
        })
    }
}

/// The row of an endpoint before the flush changes it.
struct Existing {
    host: String,
    method: String,
    path: String,
    first_seen: i64,
    last_seen: i64,
    json: String,
    removed: bool,
    seq: i64,
    version_from: i64,
}

impl Existing {
    fn same_as(&self, r: &SqlRecord<'_>) -> bool {
        !self.removed
            && self.host == r.r.host
            && self.method == r.r.method
            && self.path == r.r.path
            && self.first_seen == r.first_seen
            && self.last_seen == r.last_seen
            && self.json == r.r.json
    }
}

/// Changes of the in-memory counts, applied once the transaction has committed.
#[derive(Default)]
struct Delta {
    endpoints: i64,
    endpoints_removed: i64,
}

fn flush_tx(
    conn: &mut Connection,
    config: &StoreConfig,
    totals: &StoreStats,
    at: i64,
    changed: &[SqlRecord<'_>],
    removed: &[String],
    sweep: bool,
) -> rusqlite::Result<(FlushOutcome, Delta)> {
    let max_versions = i64::from(config.max_versions_per_endpoint.max(1));
    let interval = secs_to_ns(config.min_version_interval_secs);
    let mut out = FlushOutcome {
        at_ns: from_sql(at),
        ..FlushOutcome::default()
    };
    let mut delta = Delta::default();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut get = tx.prepare(
            "SELECT host, method, path, first_seen_ns, last_seen_ns, json, removed_ns, seq, \
             version_from_ns FROM endpoint WHERE id = ?1",
        )?;
        let mut insert_version = tx.prepare(
            "INSERT INTO endpoint_version (endpoint_id, seq, from_ns, updated_ns, removed, host, \
             method, path, first_seen_ns, last_seen_ns, json) \
             VALUES (?1, ?2, ?3, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut update_version = tx.prepare(
            "UPDATE endpoint_version SET updated_ns = ?3, host = ?4, method = ?5, path = ?6, \
             first_seen_ns = ?7, last_seen_ns = ?8, json = ?9 WHERE endpoint_id = ?1 AND seq = ?2",
        )?;
        let mut insert_tombstone = tx.prepare(
            "INSERT INTO endpoint_version (endpoint_id, seq, from_ns, updated_ns, removed) \
             VALUES (?1, ?2, ?3, ?3, 1)",
        )?;
        let mut upsert = tx.prepare(
            "INSERT INTO endpoint (id, host, method, path, first_seen_ns, last_seen_ns, json, \
             removed_ns, seq, version_from_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, method = excluded.method, \
             path = excluded.path, first_seen_ns = excluded.first_seen_ns, \
             last_seen_ns = excluded.last_seen_ns, json = excluded.json, removed_ns = NULL, \
             seq = excluded.seq, version_from_ns = excluded.version_from_ns",
        )?;
        let mut mark_removed = tx.prepare(
            "UPDATE endpoint SET removed_ns = ?2, seq = ?3, version_from_ns = ?2 WHERE id = ?1",
        )?;
        let mut prune =
            tx.prepare("DELETE FROM endpoint_version WHERE endpoint_id = ?1 AND seq <= ?2")?;
        let mut count_pruned =
            tx.prepare("UPDATE endpoint SET versions_pruned = versions_pruned + ?2 WHERE id = ?1")?;
        let mut prune_below =
            |id: &str, seq: i64, out: &mut FlushOutcome| -> rusqlite::Result<()> {
                let n = prune.execute(params![id, seq])?;
                if n > 0 {
                    count_pruned.execute(params![id, n as i64])?;
                    out.versions_pruned += n as u64;
                }
                Ok(())
            };
        let get_existing = |get: &mut rusqlite::Statement<'_>, id: &str| {
            get.query_row([id], |r| {
                Ok(Existing {
                    host: r.get(0)?,
                    method: r.get(1)?,
                    path: r.get(2)?,
                    first_seen: r.get(3)?,
                    last_seen: r.get(4)?,
                    json: r.get(5)?,
                    removed: r.get::<_, Option<i64>>(6)?.is_some(),
                    seq: r.get(7)?,
                    version_from: r.get(8)?,
                })
            })
            .optional()
        };

        for rec in changed {
            let r = rec.r;
            let existing = get_existing(&mut get, &r.id)?;
            match &existing {
                Some(e) if e.same_as(rec) => out.unchanged += 1,
                Some(e) if !e.removed && interval > 0 && at - e.version_from < interval => {
                    update_version.execute(params![
                        r.id,
                        e.seq,
                        at,
                        r.host,
                        r.method,
                        r.path,
                        rec.first_seen,
                        rec.last_seen,
                        r.json
                    ])?;
                    upsert.execute(params![
                        r.id,
                        r.host,
                        r.method,
                        r.path,
                        rec.first_seen,
                        rec.last_seen,
                        r.json,
                        e.seq,
                        e.version_from
                    ])?;
                    out.versions_coalesced += 1;
                }
                _ => {
                    let seq = existing.as_ref().map_or(1, |e| e.seq + 1);
                    insert_version.execute(params![
                        r.id,
                        seq,
                        at,
                        r.host,
                        r.method,
                        r.path,
                        rec.first_seen,
                        rec.last_seen,
                        r.json
                    ])?;
                    upsert.execute(params![
                        r.id,
                        r.host,
                        r.method,
                        r.path,
                        rec.first_seen,
                        rec.last_seen,
                        r.json,
                        seq,
                        at
                    ])?;
                    out.versions_written += 1;
                    match &existing {
                        None => delta.endpoints += 1,
                        Some(e) if e.removed => {
                            delta.endpoints += 1;
                            delta.endpoints_removed -= 1;
                        }
                        Some(_) => {}
                    }
                    if seq > max_versions {
                        prune_below(&r.id, seq - max_versions, &mut out)?;
                    }
                }
            }
        }

        for id in removed {
            match get_existing(&mut get, id)? {
                Some(e) if !e.removed => {
                    let seq = e.seq + 1;
                    insert_tombstone.execute(params![id, seq, at])?;
                    mark_removed.execute(params![id, at, seq])?;
                    out.versions_written += 1;
                    out.removed += 1;
                    delta.endpoints -= 1;
                    delta.endpoints_removed += 1;
                    if seq > max_versions {
                        prune_below(id, seq - max_versions, &mut out)?;
                    }
                }
                _ => out.removed_unknown += 1,
            }
        }

        if sweep {
            let cutoff = at.saturating_sub(secs_to_ns(config.history_retention_secs));
            // Versions whose successor started before the horizon: nobody asks for a time at
            // which they were current any more. The kept versions stay a contiguous range.
            let superseded: Vec<(String, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT v.endpoint_id, MAX(v.seq) FROM endpoint_version v \
                     WHERE v.from_ns < ?1 AND EXISTS (SELECT 1 FROM endpoint_version s \
                       WHERE s.endpoint_id = v.endpoint_id AND s.seq > v.seq AND s.from_ns < ?1) \
                     GROUP BY v.endpoint_id",
                )?;
                let rows = stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, seq) in &superseded {
                prune_below(id, *seq, &mut out)?;
            }
            // Endpoints removed before the horizon: their whole history goes.
            let expired: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM endpoint WHERE removed_ns IS NOT NULL AND removed_ns < ?1",
                )?;
                let rows = stmt.query_map([cutoff], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in &expired {
                let n = tx.execute("DELETE FROM endpoint_version WHERE endpoint_id = ?1", [id])?;
                tx.execute("DELETE FROM endpoint WHERE id = ?1", [id])?;
                out.versions_pruned += n as u64;
                out.endpoints_expired += 1;
                delta.endpoints_removed -= 1;
            }
        }

        let mut meta = tx.prepare(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?;
        let totals = [
            ("flushes", totals.flushes + 1),
            ("last_flush_ns", out.at_ns),
            (
                "versions_written",
                totals.versions_written + out.versions_written,
            ),
            (
                "versions_coalesced",
                totals.versions_coalesced + out.versions_coalesced,
            ),
            (
                "versions_pruned",
                totals.versions_pruned + out.versions_pruned,
            ),
        ];
        for (key, value) in totals {
            meta.execute(params![key, clamp_time(value)])?;
        }
    }
    tx.commit()?;
    Ok((out, delta))
}

/// How often (capture time) the retention sweep runs: a sixteenth of the retention, between a
/// second and an hour.
fn sweep_every_ns(retention_secs: u64) -> i64 {
    secs_to_ns((retention_secs / 16).clamp(1, 3600))
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         PRAGMA application_id = {APPLICATION_ID};
         {SCHEMA}
         INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});
         COMMIT;"
    ))
}

fn load_stats(conn: &Connection) -> rusqlite::Result<StoreStats> {
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0).map(from_sql));
    let meta = |key: &str| {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, i64>(0).map(from_sql)
        })
        .optional()
    };
    Ok(StoreStats {
        endpoints: count("SELECT COUNT(*) FROM endpoint WHERE removed_ns IS NULL")?,
        endpoints_removed: count("SELECT COUNT(*) FROM endpoint WHERE removed_ns IS NOT NULL")?,
        versions: count("SELECT COUNT(*) FROM endpoint_version")?,
        blobs: count("SELECT COUNT(*) FROM blob")?,
        bytes: 0,
        flushes: meta("flushes")?.unwrap_or(0),
        last_flush_ns: meta("last_flush_ns")?,
        versions_written: meta("versions_written")?.unwrap_or(0),
        versions_coalesced: meta("versions_coalesced")?.unwrap_or(0),
        versions_pruned: meta("versions_pruned")?.unwrap_or(0),
    })
}

fn integrity_check(conn: &Connection, path: &Path, full: bool) -> Result<(), StoreError> {
    let sql = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.take(MAX_CHECK_MESSAGES).collect()
    };
    let messages = run().map_err(|e| classify(path, e))?;
    if messages.len() == 1 && messages[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!(
            "{} failed: {}",
            sql.trim_start_matches("PRAGMA "),
            messages.join("; ")
        ),
    })
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRecord> {
    Ok(EndpointRecord {
        id: r.get(0)?,
        host: r.get(1)?,
        method: r.get(2)?,
        path: r.get(3)?,
        first_seen_ns: from_sql(r.get(4)?),
        last_seen_ns: from_sql(r.get(5)?),
        json: r.get(6)?,
    })
}

/// Damage shows as `SQLITE_CORRUPT` or `SQLITE_NOTADB` from any statement.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        _ => StoreError::Sqlite(e),
    }
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match classify(path, e) {
        StoreError::Sqlite(source) => StoreError::Open {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

fn to_sql_time(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::TimeOutOfRange { what, value })
}

/// A time used only for comparison: beyond the range means "after everything".
fn clamp_time(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Stored times and counts are never negative.
fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn secs_to_ns(secs: u64) -> i64 {
    clamp_time(secs.saturating_mul(NS_PER_SEC))
}

/// Reads the key file: `None` when it does not exist.
fn read_key(path: &Path) -> Result<Option<[u8; KEY_LEN]>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
            Ok(key) => Ok(Some(key)),
            Err(_) => Err(StoreError::BadKey {
                path: path.to_owned(),
                len: bytes.len(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the key, or makes one: random bytes into a temporary file (mode 0600, synced), then
/// a hard link to the final name, which fails rather than replace a key another process made
/// meanwhile (the winner's key is then read).
fn load_or_create_key(dir: &Path) -> Result<[u8; KEY_LEN], StoreError> {
    let path = dir.join(KEY_FILE);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let mut key = [0u8; KEY_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(io_err(Path::new("/dev/urandom")))?;
    let tmp = dir.join(format!("{KEY_FILE}.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&key)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // Make the new name durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_key(&path)?.ok_or_else(|| StoreError::BadKey { path, len: 0 })
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const S: u64 = NS_PER_SEC;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "apiscope-store-unit-{name}-{}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
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
            host: "h".into(),
            method: "GET".into(),
            path: format!("/{id}"),
            first_seen_ns: first,
            last_seen_ns: last,
            json: json.into(),
        }
    }

    fn config(interval: u64, max: u32, retention: u64) -> StoreConfig {
        StoreConfig {
            max_versions_per_endpoint: max,
            min_version_interval_secs: interval,
            history_retention_secs: retention,
            full_integrity_check: true,
        }
    }

    /// The in-memory counts agree with the tables.
    fn assert_counts(store: &Store) {
        let fresh = load_stats(&store.conn).unwrap();
        let s = store.stats();
        assert_eq!(
            (s.endpoints, s.endpoints_removed, s.versions, s.blobs),
            (
                fresh.endpoints,
                fresh.endpoints_removed,
                fresh.versions,
                fresh.blobs
            )
        );
        assert_eq!(s.flushes, fresh.flushes);
        assert_eq!(s.versions_pruned, fresh.versions_pruned);
    }

    #[test]
    fn coalesces_changes_within_the_interval() {
        let d = TempDir::new("coalesce");
        let mut st = Store::open(&d.0, &config(60, 8, 0)).unwrap();
        let o = st.flush(100 * S, &[rec("a", 1, 2, "1")], &[]).unwrap();
        assert_eq!(o.versions_written, 1);
        let o = st.flush(130 * S, &[rec("a", 1, 3, "2")], &[]).unwrap();
        assert_eq!((o.versions_written, o.versions_coalesced), (0, 1));
        let o = st.flush(140 * S, &[rec("a", 1, 3, "2")], &[]).unwrap();
        assert_eq!(o.unchanged, 1);
        let o = st.flush(160 * S, &[rec("a", 1, 4, "3")], &[]).unwrap();
        assert_eq!(o.versions_written, 1);
        let h = st.history("a").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].from_ns, h[0].updated_ns), (100 * S, 130 * S));
        assert_eq!(h[0].record.as_ref().unwrap().json, "2");
        assert_eq!((h[1].seq, h[1].from_ns), (2, 160 * S));
        // as_of(150 s): the first version, as last updated at 130 s.
        let v = st.as_of(150 * S).unwrap();
        assert_eq!(v[0].record.json, "2");
        assert_eq!(v[0].version_updated_ns, 130 * S);
        assert_counts(&st);
    }

    #[test]
    fn tombstones_and_readding() {
        let d = TempDir::new("tomb");
        let mut st = Store::open(&d.0, &config(0, 8, 0)).unwrap();
        st.flush(10, &[rec("a", 1, 2, "1"), rec("b", 1, 2, "1")], &[])
            .unwrap();
        let o = st
            .flush(20, &[], &["a".into(), "zz".into(), "a".into()])
            .unwrap();
        assert_eq!((o.removed, o.removed_unknown), (1, 2));
        assert_eq!(st.stats().endpoints_removed, 1);
        assert_counts(&st);
        st.flush(30, &[rec("a", 25, 30, "2")], &[]).unwrap();
        let ids = |v: Vec<VersionedRecord>| -> Vec<String> {
            v.into_iter().map(|v| v.record.id).collect()
        };
        assert_eq!(ids(st.as_of(15).unwrap()), ["a", "b"]);
        assert_eq!(ids(st.as_of(25).unwrap()), ["b"]);
        assert_eq!(ids(st.as_of(35).unwrap()), ["a", "b"]);
        let h = st.history("a").unwrap();
        assert_eq!(
            h.iter().map(|h| h.record.is_some()).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(st.stats().endpoints, 2);
        assert_counts(&st);
        // Changed and removed in one flush: removed.
        st.flush(40, &[rec("b", 1, 40, "3")], &["b".into()])
            .unwrap();
        assert_eq!(ids(st.as_of(40).unwrap()), ["a"]);
        assert_counts(&st);
    }

    #[test]
    fn flush_time_only_moves_forward() {
        let d = TempDir::new("forward");
        let mut st = Store::open(&d.0, &config(0, 8, 0)).unwrap();
        st.flush(100, &[rec("a", 1, 2, "1")], &[]).unwrap();
        let o = st.flush(50, &[rec("a", 1, 3, "2")], &[]).unwrap();
        assert_eq!(o.at_ns, 100);
        assert_eq!(st.stats().last_flush_ns, Some(100));
    }

    #[test]
    fn out_of_range_times_write_nothing() {
        let d = TempDir::new("range");
        let mut st = Store::open(&d.0, &config(0, 8, 0)).unwrap();
        let e = st.flush(u64::MAX, &[], &[]).unwrap_err();
        assert!(matches!(e, StoreError::TimeOutOfRange { .. }), "{e}");
        let e = st
            .flush(5, &[rec("a", 1, 2, "1"), rec("b", 1, u64::MAX, "1")], &[])
            .unwrap_err();
        assert!(matches!(
            e,
            StoreError::TimeOutOfRange {
                what: "last_seen_ns",
                ..
            }
        ));
        assert!(st.load_current().unwrap().is_empty());
        assert_eq!(st.stats().flushes, 0);
        // Queries clamp instead.
        assert!(st.as_of(u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn retention_drops_superseded_versions_and_old_removals() {
        let d = TempDir::new("retention");
        // Retention 160 s: the sweep runs every 10 s of capture time.
        let mut st = Store::open(&d.0, &config(0, 100, 160)).unwrap();
        for i in 0..10u64 {
            let t = i * 10 * S;
            st.flush(t, &[rec("a", 0, t, &i.to_string())], &[]).unwrap();
        }
        st.flush(100 * S, &[rec("b", 100 * S, 100 * S, "b")], &["a".into()])
            .unwrap();
        for i in 0..4u64 {
            let t = (110 + i * 10) * S;
            st.flush(t, &[rec("b", 100 * S, t, &i.to_string())], &[])
                .unwrap();
        }
        // Latest flush at 140 s: nothing is older than the horizon yet.
        assert_eq!(st.stats().versions_pruned, 0);
        // At 215 s the horizon is 55 s: versions of a superseded before 55 s go (those from
        // 0..=40 s, whose successors started at 10..=50 s); the version from 50 s stays.
        let o = st.flush(215 * S, &[], &[]).unwrap();
        assert_eq!(o.versions_pruned, 5);
        assert_eq!(st.history("a").unwrap()[0].from_ns, 50 * S);
        let v = st.as_of(20 * S).unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].approximate);
        assert_eq!(v[0].version_from_ns, 50 * S);
        assert_counts(&st);
        // At 300 s the horizon is 140 s: a's removal at 100 s is older; a expires entirely.
        let o = st.flush(300 * S, &[], &[]).unwrap();
        assert_eq!(o.endpoints_expired, 1);
        assert!(st.history("a").unwrap().is_empty());
        // b keeps the versions current at or after the horizon: from 130 s (superseded at
        // 140 s, exactly the horizon) on.
        assert_eq!(st.history("b").unwrap()[0].from_ns, 130 * S);
        assert_eq!(st.stats().endpoints_removed, 0);
        assert_counts(&st);
    }

    #[test]
    fn config_validation_names_the_key() {
        assert!(StoreConfig::default().validate().is_empty());
        let c = StoreConfig {
            max_versions_per_endpoint: 0,
            ..StoreConfig::default()
        };
        assert_eq!(
            c.validate(),
            ["max_versions_per_endpoint: must be at least 1"]
        );
    }

    #[test]
    fn store_moves_to_a_writer_thread() {
        fn is_send<T: Send>() {}
        is_send::<Store>();
    }

    #[test]
    fn debug_hides_the_key() {
        let d = TempDir::new("debug");
        let st = Store::open(&d.0, &StoreConfig::default()).unwrap();
        let dbg = format!("{st:?}");
        assert!(dbg.contains("inventory.db"));
        assert!(!dbg.contains("key:"));
    }
}
