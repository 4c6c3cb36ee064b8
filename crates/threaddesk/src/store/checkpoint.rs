//! WAL checkpoints off the write path.
//!
//! SQLite checkpoints the WAL (copies its pages back into the database file, then `fsync`s it)
//! inside the commit that crosses `wal_autocheckpoint`: that commit, and every write queued
//! behind the single writer, waits for it. Profiled on the 2,000-user cache (research P-13),
//! the checkpoint and its `fsync` were 22 % of the write path. Here a thread with its own
//! connection runs a `PASSIVE` checkpoint shortly after commits, which copies what no reader
//! still needs without blocking the writer or the readers. The writer keeps a larger
//! `wal_autocheckpoint` as a backstop, should this thread fall behind.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, StoreError};

/// Commits are gathered for this long before a checkpoint, so that a page written by several
/// commits in a burst is copied once.
const GATHER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    commits: u64,
    stop: bool,
    /// Checkpoints run (for tests).
    runs: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The checkpoint thread of one store; stopped and joined on drop.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Checkpointer {
    /// Opens a connection to `path` and starts the thread (`writer`: the store's writer, held
    /// while a checkpoint catches up with the last commits).
    ///
    /// # Errors
    /// SQLite failure opening the connection, or the thread could not start.
    pub(crate) fn start(path: &Path, writer: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // It reads WAL frames and writes database pages directly: no page cache needed.
        conn.pragma_update(None, "cache_size", -256)?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &writer, &s))
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A write transaction committed: a checkpoint follows shortly.
    pub(crate) fn committed(&self) {
        let mut st = lock(&self.shared.state);
        st.commits += 1;
        if st.commits == 1 {
            self.shared.wake.notify_one();
        }
    }

    /// Checkpoints run so far.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> u64 {
        lock(&self.shared.state).runs
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, writer: &Mutex<Connection>, shared: &Shared) {
    loop {
        {
            let mut st = lock(&shared.state);
            while st.commits == 0 && !st.stop {
                st = shared
                    .wake
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if st.stop {
                return;
            }
        }
        // Gather the burst (a stop request ends the wait early).
        {
            let st = lock(&shared.state);
            let (st, _) = shared
                .wake
                .wait_timeout_while(st, GATHER, |s| !s.stop)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.stop {
                return;
            }
        }
        lock(&shared.state).commits = 0;
        // PASSIVE: copies what it can without waiting for readers or the writer; what a
        // reader still needs is copied at a later run.
        let passive = || {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        };
        match passive() {
            Ok((log, done)) => tracing::trace!(log, done, "store: checkpoint"),
            Err(e) => tracing::debug!(error = %e, "store: checkpoint failed"),
        }
        if lock(&shared.state).commits > 0 {
            // Commits arrived during the copy. The WAL restarts from its beginning only once a
            // checkpoint has caught up with it between two writes; under steady writes that
            // never happens by chance, and the WAL would grow without end (seen: 25 MB for
            // 8 MB written). So the rest — what was committed during the copy, a small part —
            // is copied while holding the writer.
            let _writer = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match passive() {
                Ok((log, done)) => tracing::trace!(log, done, "store: checkpoint caught up"),
                Err(e) => tracing::debug!(error = %e, "store: checkpoint failed"),
            }
        }
        lock(&shared.state).runs += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::{Store, exec};

    fn wal_bytes(store: &Store) -> u64 {
        let mut p = store.path().as_os_str().to_owned();
        p.push("-wal");
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits are checkpointed by the thread, not only at the writer's backstop: 8 MB written
    /// in small commits leave a WAL smaller than what was written (without the thread it would
    /// hold all of it, ≈ 8.2 MB of frames, the backstop being 64 MiB). Typically 1–3 MiB; the
    /// bound leaves room for a machine so loaded that the thread runs late (5.8 MB was seen
    /// under a load average of 3.4 on 2 cores).
    #[test]
    fn commits_are_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|tx| {
                exec(
                    tx.conn,
                    "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        let before = store.checkpointer.runs();
        for k in 0..2_000_i64 {
            store
                .write(|tx| {
                    exec(
                        tx.conn,
                        "INSERT INTO t (k, v) VALUES (?1, zeroblob(4000))",
                        [k],
                    )?;
                    Ok(())
                })
                .unwrap();
            if k % 10 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while store.checkpointer.runs() == before {
            assert!(Instant::now() < deadline, "no checkpoint ran");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 2_000);
        assert!(
            wal_bytes(&store) < 7 << 20,
            "the WAL grew to {} bytes: commits were not checkpointed in the background",
            wal_bytes(&store)
        );
        // Dropping the store stops the thread (no hang).
        drop(store);
    }
}
