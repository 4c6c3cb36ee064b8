//! Embedded SQLite cache: one file `<data_dir>/threaddesk.db` (WAL).
//!
//! - One writer connection behind a mutex ([`Store::write`], one transaction per call) and a
//!   small pool of reader connections. Every call is blocking: the async layer calls it through
//!   `spawn_blocking`.
//! - `synchronous=NORMAL` for the cache (rebuildable from Mattermost); `FULL` around outbox and
//!   token writes ([`Store::write_durable`]), since `synchronous` is per connection.
//! - Per-user scoping is a type: user-owned rows are only reachable through
//!   [`Store::for_user`] → [`UserStore`] (reads) and [`Tx::user`] → [`UserTx`] (writes), which
//!   bind every statement to that user's id. Shared cache rows (channels, posts) are read only
//!   through queries that join the user's memberships.
//! - Retention: [`Store::purge_older_than`] deletes in batches of ≤ 1000 rows, one short
//!   transaction each, so readers and the writer interleave. Threads and items have no index
//!   on their time (each would cost a b-tree change per update): the purge walks their primary
//!   keys once, in chunks, on a reader.
//!
//! Logs carry ids and counts only.

mod checkpoint;
mod group;
mod items;
pub mod migrations;
pub mod outbox;
mod sessions;
pub mod text;
pub mod types;
mod user;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

pub use outbox::{NewOutbox, OutboxRow, OutboxState};
pub use sessions::SessionEntry;
pub use text::{EncryptedBlob, JsonText, MessageText, SecretText};
pub use types::*;
pub use user::{UserExport, UserStore, UserTx};

use crate::inbox::Millis;

/// Database file name inside the data directory.
pub const DB_FILE: &str = "threaddesk.db";
/// Rows deleted per transaction by the purge.
pub const PURGE_BATCH: usize = 1000;

/// Leaf pages of the search index rewritten per step of the purge's merge (≈ 2 MiB; a few in
/// tests, so that they take many steps).
const FTS_MERGE_PAGES: i64 = if cfg!(test) { 2 } else { 500 };
/// Steps before the merge finishes in one go (a safety bound: 100 k pages ≈ 400 MiB of index).
const FTS_MERGE_STEPS_MAX: usize = 200;

/// Rows read per step of the purge's walk over a primary key ([`Store::purge_older_than`]).
const PURGE_SCAN_CHUNK: usize = 5000;

/// The purge is background work: after each of its steps (a write batch, a chunk of a walk,
/// a merge step) it rests as long as the step took, so that it uses at most about half of a
/// core and holds the writer at most about half of the time. Running flat out on the 2-core
/// machine it took the cores from the page reads (research P-14; BENCHMARKS.md has figures).
fn purge_rest(step: Duration) {
    std::thread::sleep(step);
}

/// A table the purge walks by its two-column primary key, with the time compared to the cutoff.
struct WalkedTable {
    table: &'static str,
    key: (&'static str, &'static str),
    time: &'static str,
}

impl WalkedTable {
    const THREADS: Self = Self {
        table: "threads",
        key: ("user_id", "root_id"),
        time: "last_reply_at",
    };
    const ITEMS: Self = Self {
        table: "items",
        key: ("user_id", "item_key"),
        time: "last_activity_at",
    };
}
/// OAuth attempts expire after 10 minutes.
pub const OAUTH_ATTEMPT_TTL_MS: Millis = 10 * 60 * 1000;
const READER_POOL: usize = 4;
/// Prepared statements kept per connection (the store uses about 60 distinct ones).
const STATEMENT_CACHE: usize = 128;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB (negative `cache_size` = KiB).
const CACHE_KIB: i64 = 8 * 1024;
/// The writer's page cache, in KiB: every event rewrites items through eight indexes, and on a
/// cache of many users those pages no longer fit in 8 MiB (research P-13).
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// WAL pages before the writer checkpoints inside a commit (SQLite's default is 1,000 =
/// 4 MiB): only a backstop, checkpoints are run by a thread of their own shortly after
/// commits ([`checkpoint`]).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_000;

/// Store errors. Messages carry no user content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot use data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the cache database was written by a newer ThreadDesk (schema version {found}; this binary knows up to {known}); upgrade ThreadDesk, or run `threaddesk purge` and delete the database to start a fresh cache"
    )]
    TooNew { found: i64, known: i64 },
    #[error("cache database migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("not a valid Mattermost id")]
    BadId,
    #[error("outbox row {id} cannot go from {from} to {to}")]
    InvalidTransition {
        id: i64,
        from: String,
        to: &'static str,
    },
    #[error("not found")]
    NotFound,
    #[error("stored data is not valid: {0}")]
    Corrupt(&'static str),
}

/// A Mattermost user id (26 chars, lowercase base32), validated.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Validates a Mattermost user id.
    ///
    /// # Errors
    /// [`StoreError::BadId`].
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        if crate::inbox::is_valid_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::BadId)
        }
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a secret token (sessions, OAuth state): only the hash is stored.
#[must_use]
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// Writes waiting to be committed together ([`Store::write_grouped`]).
    group: Mutex<group::Queue>,
    /// Runs the WAL checkpoints off the write path.
    checkpointer: checkpoint::Checkpointer,
    /// A purge deleted rows whose text may still be in the WAL, and its truncate is pending.
    wal_truncate_due: AtomicBool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks, recovering from poisoning: a panic inside a write closure dropped (rolled back) its
/// transaction, so the connection is still sound.
fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    Ok(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// `execute` through the connection's prepared-statement cache (no SQL parsing per call).
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the prepared-statement cache.
pub(crate) fn q_row<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(p, f)
}

/// The search rows a write transaction still has to add (`keep = 1`) or remove (`keep = 0`),
/// by post `seq`; a temporary table of the writer connection, so it rolls back with the
/// transaction. FTS5 flushes its pending terms to a new on-disk segment at every statement
/// savepoint once it is part of a transaction, and most statements of an event open one
/// (upserts, triggers): writing the search rows one by one made every event flush and merge
/// segments (research P-13, measured with callgrind: FTS5 flush + merge was 60 % of the
/// write path). Collected here, they are written by two statements at commit.
const FTS_PENDING: &str = "CREATE TEMP TABLE IF NOT EXISTS fts_pending (
    seq   INTEGER PRIMARY KEY,
    keep  INTEGER NOT NULL
)";

/// Queues the search row of post `seq` to be written (`keep`) or removed at commit.
pub(crate) fn fts_later(conn: &Connection, seq: i64, keep: bool) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO temp.fts_pending (seq, keep) VALUES (?1, ?2)
         ON CONFLICT (seq) DO UPDATE SET keep = excluded.keep",
        params![seq, keep],
    )?;
    Ok(())
}

/// What a write transaction left for its commit: the items to derive
/// ([`items::flush_items`]), then the search rows ([`flush_fts`]).
fn flush(conn: &Connection) -> Result<(), StoreError> {
    items::flush_items(conn)?;
    flush_fts(conn)?;
    Ok(())
}

/// Applies the queued search-row changes of this transaction (see [`FTS_PENDING`]).
fn flush_fts(conn: &Connection) -> rusqlite::Result<()> {
    let pending: bool = q_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM temp.fts_pending)",
        [],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(());
    }
    exec(
        conn,
        "DELETE FROM posts_fts WHERE rowid IN (SELECT seq FROM temp.fts_pending WHERE keep = 0)",
        [],
    )?;
    // OR REPLACE: an edited post's old terms go, its current text is indexed once.
    exec(
        conn,
        "INSERT OR REPLACE INTO posts_fts (rowid, message)
         SELECT p.seq, p.message FROM temp.fts_pending f JOIN posts p ON p.seq = f.seq
          WHERE f.keep = 1 AND p.delete_at = 0",
        [],
    )?;
    exec(conn, "DELETE FROM temp.fts_pending", [])?;
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // No memory map (`mmap_size` stays 0): in WAL mode SQLite unmaps the whole file at the
    // start of every read transaction that follows another connection's commit, and the next
    // reads fault every page in again — with a commit every few ms that made a page read after
    // a write 1.8× slower at p99 than reading the same pages by `pread` (research P-13; the
    // store bench's "an item of the user changed before every read" row).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/threaddesk.db` and migrates it to head.
    ///
    /// # Errors
    /// Unusable directory, SQLite failure, or a database newer than this binary.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        };
        if !data_dir.exists() {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            // The cache holds message text: only the service user may enter the directory.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
        }
        Self::open_file(&data_dir.join(DB_FILE))
    }

    /// Opens a database file and migrates it to head.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        Self::open_at_version(path, migrations::head())
    }

    /// Opens and migrates only up to `version` (tests of the migration path).
    pub(crate) fn open_at_version(path: &Path, version: i64) -> Result<Self, StoreError> {
        if !path.exists() {
            // Created 0600; SQLite gives the -wal and -shm files the same mode.
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            opts.open(path).map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let mut writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        configure(&writer)?;
        writer.execute_batch(FTS_PENDING)?;
        writer.execute_batch(items::ITEMS_DIRTY)?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        // Zero deleted content so purged messages do not linger in free pages.
        writer.pragma_update(None, "secure_delete", "ON")?;
        migrations::migrate_to(&mut writer, version)?;
        tracing::debug!(version = migrations::version(&writer)?, "store: opened");
        let writer = Arc::new(Mutex::new(writer));
        Ok(Self {
            path: path.to_owned(),
            checkpointer: checkpoint::Checkpointer::start(path)?,
            writer,
            readers: Mutex::new(Vec::new()),
            group: Mutex::new(group::Queue::default()),
            wal_truncate_due: AtomicBool::new(false),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(migrations::version)
    }

    /// Runs `f` on a reader connection (a consistent snapshot for the whole call).
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = lock(&self.readers)?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                configure(&c)?;
                c
            }
        };
        let out = (|| {
            conn.execute_batch("BEGIN DEFERRED")?;
            let r = f(&conn);
            conn.execute_batch("COMMIT")?;
            r
        })();
        if out.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut pool = lock(&self.readers)?;
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` in one write transaction (`synchronous=NORMAL`): committed if `f` returns `Ok`,
    /// rolled back otherwise. Batch many events in one call for throughput.
    ///
    /// # Errors
    /// `f`'s error or a SQLite failure.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = lock(&self.writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let r = f(&Tx { conn: &tx })?;
        self.commit(tx)?;
        self.checkpointer.after_commit(&conn);
        Ok(r)
    }

    /// One write step of the purge: [`Store::write`], then a rest as long ([`purge_rest`]).
    fn purge_write<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let t = Instant::now();
        let r = self.write(f);
        purge_rest(t.elapsed());
        r
    }

    /// One read step of the purge (a chunk of a walk), then its rest.
    fn purge_read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let t = Instant::now();
        let r = self.read(f);
        purge_rest(t.elapsed());
        r
    }

    /// As [`Store::write`], but with `synchronous=FULL` for this commit (outbox, tokens): the
    /// commit survives power loss.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_durable<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = lock(&self.writer)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let r = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let r = f(&Tx { conn: &tx })?;
            self.commit(tx)?;
            Ok(r)
        })();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.checkpointer.after_commit(&conn);
        r
    }

    /// Ends a write transaction: what it queued for its commit ([`flush`]), the commit, then
    /// a checkpoint soon after ([`checkpoint`]; the caller then runs
    /// [`checkpoint::Checkpointer::after_commit`] on the writer it still holds).
    fn commit(&self, tx: rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        flush(&tx)?;
        tx.commit()?;
        self.checkpointer.committed();
        Ok(())
    }

    /// `PRAGMA quick_check`: run at start-up after an unclean shutdown. `Ok(true)` when sound;
    /// if not, the cache can be purged and rebuilt from Mattermost.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn quick_check(&self) -> Result<bool, StoreError> {
        let conn = lock(&self.writer)?;
        let r: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok(r == "ok")
    }

    /// Online backup to a new file (`VACUUM INTO`); `dest` must not exist.
    ///
    /// # Errors
    /// SQLite failure (e.g. `dest` exists).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let conn = lock(&self.writer)?;
        let dest = dest
            .to_str()
            .ok_or(StoreError::Corrupt("backup path is not UTF-8"))?;
        conn.execute("VACUUM INTO ?1", params![dest])?;
        Ok(())
    }

    /// The read handle of one user. Every user-owned query exists only there.
    #[must_use]
    pub fn for_user(&self, user: &UserId) -> UserStore<'_> {
        UserStore::new(self, user.clone())
    }

    /// Every user known to the store (to restart their sync at start-up).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn user_ids(&self) -> Result<Vec<UserId>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT user_id FROM users ORDER BY user_id")?;
            let ids = st.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for id in ids {
                out.push(UserId::parse(&id?)?);
            }
            Ok(out)
        })
    }

    /// Finds a live session by its token, enforcing the absolute (`expires_at`) and idle
    /// timeouts; an expired session is deleted. Refreshes `last_seen_at` at most once a minute.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn session(
        &self,
        token: &str,
        now: Millis,
        idle_timeout_ms: Millis,
    ) -> Result<Option<SessionInfo>, StoreError> {
        let hash = hash_token(token);
        let found = self.read(|c| {
            q_row(
                c,
                "SELECT user_id, csrf_token, created_at, last_seen_at, expires_at
                 FROM web_sessions WHERE id_hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::from)
        })?;
        let Some((uid, csrf, created_at, last_seen_at, expires_at)) = found else {
            return Ok(None);
        };
        let last_seen_at: Millis = last_seen_at;
        let expires_at: Millis = expires_at;
        if expires_at <= now || last_seen_at.saturating_add(idle_timeout_ms) <= now {
            self.delete_session(token)?;
            return Ok(None);
        }
        let mut info = SessionInfo {
            user_id: UserId::parse(&uid)?,
            csrf_token: SecretText::new(csrf),
            created_at,
            last_seen_at,
            expires_at,
        };
        if now - last_seen_at >= 60_000 {
            self.write(|tx| {
                exec(
                    tx.conn,
                    "UPDATE web_sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
                    params![hash, now],
                )?;
                Ok(())
            })?;
            info.last_seen_at = now;
        }
        Ok(Some(info))
    }

    /// Signs one browser out.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn delete_session(&self, token: &str) -> Result<bool, StoreError> {
        let hash = hash_token(token);
        self.write(|tx| {
            Ok(exec(
                tx.conn,
                "DELETE FROM web_sessions WHERE id_hash = ?1",
                params![hash],
            )? > 0)
        })
    }

    /// Records an OAuth attempt: `state` and the browser `binding` (a pre-session cookie value)
    /// are stored hashed.
    ///
    /// # Errors
    /// SQLite failure (e.g. a duplicate state).
    pub fn oauth_attempt_create(
        &self,
        state: &str,
        binding: &str,
        pkce_verifier: &str,
        redirect: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            exec(tx.conn,
                "INSERT INTO oauth_attempts (state_hash, binding_hash, pkce_verifier, redirect, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash_token(state), hash_token(binding), pkce_verifier, redirect, now],
            )?;
            Ok(())
        })
    }

    /// Takes (single use: always deletes) the attempt for `state`; returns it only when the
    /// browser binding matches and it is younger than 10 minutes.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn oauth_attempt_take(
        &self,
        state: &str,
        binding: &str,
        now: Millis,
    ) -> Result<Option<OAuthAttempt>, StoreError> {
        let row = self.write(|tx| {
            q_row(
                tx.conn,
                "DELETE FROM oauth_attempts WHERE state_hash = ?1
                     RETURNING binding_hash, pkce_verifier, redirect, created_at",
                params![hash_token(state)],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Millis>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::from)
        })?;
        Ok(row.and_then(|(b, verifier, redirect, created_at)| {
            (b == hash_token(binding)
                && now - created_at < OAUTH_ATTEMPT_TTL_MS
                && created_at <= now)
                .then(|| OAuthAttempt {
                    pkce_verifier: SecretText::new(verifier),
                    redirect,
                    created_at,
                })
        }))
    }

    /// Deletes expired sessions (absolute or idle) and OAuth attempts older than 10 minutes.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn purge_expired_auth(
        &self,
        now: Millis,
        idle_timeout_ms: Millis,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let s = exec(
                tx.conn,
                "DELETE FROM web_sessions WHERE expires_at <= ?1 OR last_seen_at + ?2 <= ?1",
                params![now, idle_timeout_ms],
            )?;
            let o = exec(
                tx.conn,
                "DELETE FROM oauth_attempts WHERE created_at <= ?1",
                params![now - OAUTH_ATTEMPT_TTL_MS],
            )?;
            Ok(s + o)
        })
    }

    /// Users with outbox rows due at `now` (queued, `next_attempt_at <= now`).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_users_due(&self, now: Millis) -> Result<Vec<UserId>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT user_id FROM outbox WHERE state = 'queued' AND next_attempt_at <= ?1",
            )?;
            let ids = st.query_map(params![now], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for id in ids {
                out.push(UserId::parse(&id?)?);
            }
            Ok(out)
        })
    }

    /// At start-up: rows left in flight by a crash go back to `queued` (their outcome is
    /// unknown; `first_sent_at` is kept so the sender reconciles before resending).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_requeue_inflight(&self, now: Millis) -> Result<usize, StoreError> {
        self.write_durable(|tx| {
            Ok(exec(
                tx.conn,
                "UPDATE outbox SET state = 'queued', next_attempt_at = ?1 WHERE state = 'inflight'",
                params![now],
            )?)
        })
    }

    /// Retention: deletes cached posts (and their search rows), threads, items, mentions, old
    /// done/snooze mirrors and finished outbox rows older than `cutoff` (ms), in transactions of
    /// at most [`PURGE_BATCH`] rows. The root post of a thread with activity after the cutoff
    /// is kept (the item still shows it). Call at start and periodically with
    /// `now_ms − retention`. Until the next purge, items older than `cutoff` are not
    /// materialised again.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn purge_older_than(&self, cutoff: Millis) -> Result<PurgeReport, StoreError> {
        let mut rep = PurgeReport::default();
        let batch = i64::try_from(PURGE_BATCH).unwrap_or(1000);
        self.purge_write(|tx| {
            exec(
                tx.conn,
                "UPDATE retention SET cutoff = ?1 WHERE id = 1",
                params![cutoff],
            )?;
            Ok(())
        })?;
        loop {
            let n = self.purge_write(|tx| {
                let mut st = tx.conn.prepare_cached(
                    "SELECT seq FROM posts WHERE create_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM threads t
                                       WHERE t.root_id = posts.post_id AND t.last_reply_at >= ?1)
                     LIMIT ?2",
                )?;
                let seqs: Vec<i64> = st
                    .query_map(params![cutoff, batch], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for s in &seqs {
                    fts_later(tx.conn, *s, false)?;
                    exec(tx.conn, "DELETE FROM posts WHERE seq = ?1", params![s])?;
                }
                Ok(seqs.len())
            })?;
            rep.posts += n;
            if n < PURGE_BATCH {
                break;
            }
        }
        let batched = |sql: &str| -> Result<usize, StoreError> {
            let mut total = 0;
            loop {
                let n = self.purge_write(|tx| Ok(exec(tx.conn, sql, params![cutoff, batch])?))?;
                total += n;
                if n < PURGE_BATCH {
                    return Ok(total);
                }
            }
        };
        rep.threads = self.purge_by_key_walk(&WalkedTable::THREADS, cutoff)?;
        rep.items = self.purge_by_key_walk(&WalkedTable::ITEMS, cutoff)?;
        rep.mentions = batched(
            "DELETE FROM user_mentions WHERE (user_id, post_id) IN
               (SELECT user_id, post_id FROM user_mentions WHERE create_at < ?1 LIMIT ?2)",
        )?;
        // Marks are a mirror of Mattermost preferences; drop those whose item is gone and whose
        // times are all older than the window.
        rep.marks = batched(
            "DELETE FROM marks WHERE (user_id, item_key) IN
               (SELECT m.user_id, m.item_key FROM marks m
                WHERE coalesce(m.done_at, 0) < ?1 AND coalesce(m.snoozed_until, 0) < ?1
                  AND NOT EXISTS (SELECT 1 FROM items i WHERE i.user_id = m.user_id AND i.item_key = m.item_key)
                LIMIT ?2)",
        )?;
        rep.outbox = batched(
            "DELETE FROM outbox WHERE id IN
               (SELECT id FROM outbox WHERE state IN ('sent', 'failed') AND created_at < ?1 LIMIT ?2)",
        )?;
        if rep.posts > 0 {
            rep.search_merge_steps = self.fts_merge_fully()?;
        }
        let deleted = rep.posts + rep.threads + rep.items + rep.mentions + rep.outbox + rep.marks;
        if deleted > 0 {
            self.wal_truncate_due.store(true, Ordering::Relaxed);
        }
        if self.wal_truncate_due.load(Ordering::Relaxed) {
            let conn = lock(&self.writer)?;
            // Best effort: shrink the WAL after a large delete, so that purged text does not
            // linger in it. A busy reader defers it to the next purge (which runs it even if it
            // deletes nothing; with nothing deleted and nothing deferred — every start runs a
            // purge — nothing waits here): with a short busy timeout (the background
            // checkpoint may hold the checkpoint lock for a moment), so that writes do not
            // stall behind the writer lock for the 5 s the checkpoint would otherwise wait.
            let busy = checkpoint::checkpoint_waiting(
                &conn,
                checkpoint::Mode::Truncate,
                Duration::from_millis(250),
            )
            .map_or(1, |(busy, _, _)| busy);
            if busy == 0 {
                self.wal_truncate_due.store(false, Ordering::Relaxed);
            }
        }
        tracing::info!(
            posts = rep.posts,
            threads = rep.threads,
            items = rep.items,
            mentions = rep.mentions,
            marks = rep.marks,
            outbox = rep.outbox,
            search_merge_steps = rep.search_merge_steps,
            "store: retention purge"
        );
        Ok(rep)
    }

    /// FTS5 keeps deleted rows' terms in its segments until a merge: the index is merged into
    /// one segment so that purged words leave the file (`secure_delete` zeroes the freed
    /// pages). What `'optimize'` does in one transaction — seconds on a large cache, holding the
    /// writer (research P-14) — is done in steps of [`FTS_MERGE_PAGES`] leaf pages, one short
    /// transaction each: a negative `'merge'` treats every segment as input of one merge and
    /// goes on where the last step stopped; a step that writes nothing (fewer than 2 changes,
    /// FTS5's own signal) means the index is one segment without deleted entries.
    /// Returns the steps taken (the last one, which found nothing to do, included).
    fn fts_merge_fully(&self) -> Result<usize, StoreError> {
        for step in 1..=FTS_MERGE_STEPS_MAX {
            let changes = self.purge_write(|tx| {
                let before = tx.conn.total_changes();
                exec(
                    tx.conn,
                    "INSERT INTO posts_fts (posts_fts, rank) VALUES ('merge', ?1)",
                    params![-FTS_MERGE_PAGES],
                )?;
                Ok(tx.conn.total_changes() - before)
            })?;
            if changes < 2 {
                return Ok(step);
            }
        }
        // Never seen; the rest is merged at once rather than left behind.
        self.purge_write(|tx| {
            exec(
                tx.conn,
                "INSERT INTO posts_fts (posts_fts) VALUES ('optimize')",
                [],
            )?;
            Ok(FTS_MERGE_STEPS_MAX + 1)
        })
    }

    /// Deletes the rows of `t` older than `cutoff` without an index on their time: walks the
    /// primary key in chunks of [`PURGE_SCAN_CHUNK`] rows on a reader (the writer is not held
    /// while reading) and deletes what it found in write transactions of at most
    /// [`PURGE_BATCH`] rows, each row checked again (it may have moved since it was read).
    /// One walk per purge, O(rows); a time index instead cost a b-tree change on every
    /// item and thread update (research P-13).
    fn purge_by_key_walk(&self, t: &WalkedTable, cutoff: Millis) -> Result<usize, StoreError> {
        let (table, k1, k2, time) = (t.table, t.key.0, t.key.1, t.time);
        let first =
            format!("SELECT {k1}, {k2}, {time} < ?1 FROM {table} ORDER BY {k1}, {k2} LIMIT ?2");
        let next = format!(
            "SELECT {k1}, {k2}, {time} < ?1 FROM {table} WHERE ({k1}, {k2}) > (?3, ?4)
              ORDER BY {k1}, {k2} LIMIT ?2"
        );
        let delete = format!("DELETE FROM {table} WHERE {k1} = ?1 AND {k2} = ?2 AND {time} < ?3");
        let chunk = i64::try_from(PURGE_SCAN_CHUNK).unwrap_or(i64::MAX);
        let mut after: Option<(String, String)> = None;
        let mut expired: Vec<(String, String)> = Vec::new();
        let mut total = 0;
        loop {
            let rows: Vec<(String, String, bool)> = self.purge_read(|c| {
                let mut st = match &after {
                    None => c.prepare_cached(&first)?,
                    Some(_) => c.prepare_cached(&next)?,
                };
                let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
                let rows = match &after {
                    None => st.query_map(params![cutoff, chunk], map)?,
                    Some((a, b)) => st.query_map(params![cutoff, chunk, a, b], map)?,
                };
                Ok(rows.collect::<Result<_, _>>()?)
            })?;
            let end = rows.len() < PURGE_SCAN_CHUNK;
            after = rows.last().map(|r| (r.0.clone(), r.1.clone())).or(after);
            expired.extend(rows.into_iter().filter(|r| r.2).map(|r| (r.0, r.1)));
            while expired.len() >= PURGE_BATCH || (end && !expired.is_empty()) {
                let batch: Vec<_> = expired.drain(..expired.len().min(PURGE_BATCH)).collect();
                total += self.purge_write(|tx| {
                    let mut n = 0;
                    for (a, b) in &batch {
                        n += exec(tx.conn, &delete, params![a, b, cutoff])?;
                    }
                    Ok(n)
                })?;
            }
            if end {
                return Ok(total);
            }
        }
    }

    /// `threaddesk purge`: deletes the whole cache, tokens and sessions included, and compacts
    /// the file. Done/snooze state lives in Mattermost and comes back at the next sign-in.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn purge_all(&self) -> Result<(), StoreError> {
        self.write_durable(|tx| {
            tx.conn.execute_batch(
                "INSERT INTO posts_fts (posts_fts) VALUES ('delete-all'); DELETE FROM posts; DELETE FROM outbox; DELETE FROM items; DELETE FROM item_counts;
                 DELETE FROM marks; DELETE FROM user_mentions; DELETE FROM threads;
                 DELETE FROM memberships; DELETE FROM channels; DELETE FROM profiles;
                 DELETE FROM user_teams; DELETE FROM teams; DELETE FROM team_sync;
                 DELETE FROM sync_state; DELETE FROM oauth_attempts; DELETE FROM web_sessions;
                 DELETE FROM user_tokens; DELETE FROM users; UPDATE retention SET cutoff = 0;",
            )?;
            Ok(())
        })?;
        let conn = lock(&self.writer)?;
        conn.execute_batch("VACUUM")?;
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        tracing::info!("store: purged all cached data");
        Ok(())
    }
}

/// One write transaction. Shared cache rows are written here; user-owned rows through
/// [`Tx::user`].
pub struct Tx<'a> {
    pub(crate) conn: &'a Connection,
}

impl Tx<'_> {
    /// The write handle of one user within this transaction.
    #[must_use]
    pub fn user<'u>(&'u self, user: &'u UserId) -> UserTx<'u> {
        UserTx::new(self.conn, user)
    }
}
