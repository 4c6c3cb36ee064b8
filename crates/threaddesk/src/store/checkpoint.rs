//! WAL checkpoints off the write path.
//!
//! SQLite checkpoints the WAL (copies its pages back into the database file, then `fsync`s it)
//! inside the commit that crosses `wal_autocheckpoint`: that commit, and every write queued
//! behind the single writer, waits for it. Profiled on the 2,000-user cache (research P-13),
//! the checkpoint and its `fsync` were 22 % of the write path. Here a thread with its own
//! connection runs a `PASSIVE` checkpoint shortly after commits, which copies what no reader
//! still needs without blocking the writer or the readers. The writer keeps a larger
//! `wal_autocheckpoint` as a backstop, should this thread fall behind.
//!
//! The WAL starts again from its beginning only when a checkpoint has copied all of it and no
//! reader still reads from it. Under steady writes the thread's copy never catches up by
//! itself (frames are committed while it copies), so what was committed during its copy is
//! copied by the writer, right after its next commit ([`Checkpointer::after_commit`]), with
//! the writer already held; when the WAL is long, the thread then copies again at once,
//! without gathering. Under a saturating stream that is about a third of the copying (store
//! bench P-13), and the writer waits for it — less than it waited before. (It used to be the
//! thread taking the writer's lock for it, but a writer committing back to back re-takes an
//! unfair lock before a waiting thread wakes: the thread starved for whole seconds, the WAL
//! grew to the backstop, and from there every commit checkpointed and `fsync`ed inside the
//! write path — research P-13.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, StoreError};

/// Commits are gathered for this long before a checkpoint, so that a page written by several
/// commits in a burst is copied once.
const GATHER: Duration = Duration::from_millis(200);

/// How long the writer's catch-up waits for readers still reading from the WAL to move to the
/// newest snapshot (they read for a few milliseconds); if one is still there, the WAL goes on
/// growing and the next catch-up tries again.
const CATCH_UP_READER_WAIT: Duration = Duration::from_millis(20);

/// A WAL longer than this at a copy (16 MiB of 4 KiB pages, a quarter of the writer's backstop)
/// during steady writes: the thread is behind, and copies again without gathering first.
/// Below it, gathering goes on: each catch-up holds the writer for a copy and an `fsync`, and
/// catching up at every commit or so (as copying without pause does under a moderate stream)
/// cost the live events their latency (P-9 at 1,000 events/s: p99 from 25–70 ms to 0.6–2.5 s).
const BEHIND_FRAMES: i64 = 4_000;

/// How long the thread waits for the writer's catch-up before it copies again by itself.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    commits: u64,
    stop: bool,
    /// Checkpoints run (for tests).
    runs: u64,
    /// Catch-ups run by the writer (for tests).
    catch_ups: u64,
    /// Times a copy found the WAL shorter than at the one before: it started again from its
    /// beginning in between (for tests).
    restarts: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Commits arrived during the thread's last copy: the writer copies them after its next
    /// commit.
    catch_up: AtomicBool,
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
    /// Opens a connection to `path` and starts the thread.
    ///
    /// # Errors
    /// SQLite failure opening the connection, or the thread could not start.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // It reads WAL frames and writes database pages directly: no page cache needed.
        conn.pragma_update(None, "cache_size", -256)?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &s))
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

    /// Called by the writer after a commit, on its connection, still holding it: when the
    /// thread asked for it, copies what was committed during the thread's last copy and, once
    /// no reader reads from the WAL any more, lets the next write start the WAL again from its
    /// beginning (`RESTART`). Errors are only logged: the commit itself has succeeded, and the
    /// next catch-up (or the backstop) tries again.
    pub(crate) fn after_commit(&self, writer: &Connection) {
        if !self.shared.catch_up.load(Ordering::Acquire) {
            return;
        }
        match checkpoint_waiting(writer, Mode::Restart, CATCH_UP_READER_WAIT) {
            Ok((busy, log, done)) => {
                tracing::trace!(busy, log, done, "store: checkpoint caught up");
            }
            Err(e) => tracing::debug!(error = %e, "store: checkpoint catch-up failed"),
        }
        {
            // Cleared only now: the thread waits for the end of this catch-up, not its start.
            let mut st = lock(&self.shared.state);
            st.catch_ups += 1;
            self.shared.catch_up.store(false, Ordering::Release);
        }
        self.shared.wake.notify_one();
    }

    /// Checkpoints run so far.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> u64 {
        lock(&self.shared.state).runs
    }

    /// Catch-ups the writer ran so far.
    #[cfg(test)]
    pub(crate) fn catch_ups(&self) -> u64 {
        lock(&self.shared.state).catch_ups
    }

    /// Times the thread saw that the WAL had started again from its beginning.
    #[cfg(test)]
    pub(crate) fn restarts(&self) -> u64 {
        lock(&self.shared.state).restarts
    }
}

/// A checkpoint that may wait (for readers, and for the writer) — unlike the thread's
/// `PASSIVE` copies.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Copies everything, then waits until no reader reads from the WAL, so that the next
    /// write starts it again from its beginning.
    Restart,
    /// As `Restart`, and truncates the WAL file to zero bytes.
    Truncate,
}

/// `PRAGMA wal_checkpoint(<mode>)` on `conn`, waiting at most `wait` (instead of the store's
/// busy timeout, put back afterwards) for the readers and locks it needs: (busy, WAL frames,
/// frames copied). Whoever calls it holds the store's writer, so the wait stalls every write.
pub(crate) fn checkpoint_waiting(
    conn: &Connection,
    mode: Mode,
    wait: Duration,
) -> rusqlite::Result<(i64, i64, i64)> {
    let sql = match mode {
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    conn.busy_timeout(wait)?;
    let r = conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
    conn.busy_timeout(BUSY_TIMEOUT)?;
    r
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

fn run(conn: &Connection, shared: &Shared) {
    // The last copy found a long WAL and commits arrived during it: the next copy starts at
    // once, without gathering.
    let mut behind = false;
    // The WAL's length at the last copy (a shorter one means it started again since).
    let mut last_log = 0;
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
        // Gather the burst (a stop request ends the wait early). Not when behind: waiting
        // would only let the WAL grow to the writer's backstop.
        if !behind {
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
        let log = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, done)) => {
                tracing::trace!(log, done, "store: checkpoint");
                if log < last_log {
                    lock(&shared.state).restarts += 1;
                }
                last_log = log;
                log
            }
            Err(e) => {
                tracing::debug!(error = %e, "store: checkpoint failed");
                0
            }
        };
        let steady = lock(&shared.state).commits > 0;
        behind = steady && log > BEHIND_FRAMES;
        if steady {
            // Commits arrived during the copy: the writer copies the rest (module docs). No
            // copy of this thread's may run meanwhile (the catch-up would find the checkpoint
            // lock taken); without further commits the catch-up never runs, and is not needed.
            shared.catch_up.store(true, Ordering::Release);
            let st = lock(&shared.state);
            let (st, _) = shared
                .wake
                .wait_timeout_while(st, CATCH_UP_WAIT, |s| {
                    !s.stop && shared.catch_up.load(Ordering::Acquire)
                })
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.stop {
                return;
            }
        }
        lock(&shared.state).runs += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::{Store, exec};

    /// Table `t` of 4 kB rows, for the tests' writes.
    fn create_table(store: &Store) {
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
    }

    /// One commit: row `k` of table `t`.
    fn insert_row(store: &Store, k: i64) {
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
    }

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
        create_table(&store);
        let before = store.checkpointer.runs();
        for k in 0..2_000_i64 {
            insert_row(&store, k);
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

    /// Steady writes, back to back, while a reader reads, with the writer's backstop off: the
    /// writer re-takes its lock at once after each commit, so a checkpoint that needed that
    /// lock to catch up waited for seconds and the WAL never started again (the store bench's
    /// P-13 saw it grow to 887 MB without the backstop; with it, every commit past 64 MiB
    /// checkpointed and `fsync`ed inside the write path). The writer runs the catch-up after
    /// its commit instead, and the WAL starts again from its beginning cycle after cycle.
    #[test]
    fn steady_writes_with_a_reader_start_the_wal_again_without_the_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        super::super::lock(&store.writer)
            .unwrap()
            .pragma_update(None, "wal_autocheckpoint", 0)
            .unwrap();
        create_table(&store);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, stop) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0_u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A short read, as a queue page is.
                    let k = i64::try_from(reads % 1_000).unwrap_or(0);
                    store
                        .read(|c| {
                            Ok(c.query_row(
                                "SELECT count(*) FROM t WHERE k BETWEEN ?1 AND ?1 + 50",
                                [k],
                                |r| r.get::<_, i64>(0),
                            )?)
                        })
                        .unwrap();
                    reads += 1;
                }
                reads
            })
        };
        // Until the WAL has started again three times (each cycle: a copy by the thread, the
        // writer's catch-up, the restart; about a second here), for at most 30 s or 240 MB
        // (a WAL that never starts again holds all of it).
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut k = 0_i64;
        while store.checkpointer.restarts() < 3 && Instant::now() < deadline && k < 60_000 {
            k += 1;
            insert_row(&store, k);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let (catch_ups, restarts) = (
            store.checkpointer.catch_ups(),
            store.checkpointer.restarts(),
        );
        assert!(
            catch_ups > 0 && restarts >= 3,
            "under steady writes the WAL started again {restarts} times ({catch_ups} \
             catch-ups by the writer); it is {} bytes long after {k} commits of 4 kB",
            wal_bytes(&store)
        );
    }
}
