//! Group commit: many callers' writes in one transaction.
//!
//! Every user's live events are applied by that user's task, and SQLite has one writer. With
//! one transaction per event, an instance receiving events for many users at once pays a
//! `BEGIN … COMMIT` (and the WAL frames of every page the event touched) per event, and the
//! events queue behind each other (research P-9 at 1,000 events/s, P-13). Here a caller queues
//! its write and waits; whoever holds the writer next runs every queued write (up to
//! [`MAX_GROUP`]) in one transaction, each inside its own savepoint, so one write failing rolls
//! back only itself. The results are handed out after the commit: a write is never reported
//! done before it is committed, and if the commit fails every write of the group gets the
//! error (nothing of it was stored).
//!
//! Leader/follower, no extra thread: a caller pushes its job, then takes the writer lock. If
//! its result is already there, a previous holder ran it; otherwise it runs the queue itself.
//! Results are delivered before the lock is released, so a caller that gets the lock after the
//! group holding its job has committed always finds its result.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;

use rusqlite::TransactionBehavior;

use super::{Store, StoreError, Tx, lock};

/// Most writes one transaction holds (bounds the latency a group adds to its first write).
pub(crate) const MAX_GROUP: usize = 256;

/// What a queued write hands back once its group's commit is known.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// A queued write: runs in the group's transaction and returns how to deliver its result.
pub(crate) type Job = Box<dyn FnOnce(&Tx<'_>) -> Deliver + Send>;

enum Outcome<R> {
    Done(Result<R, StoreError>),
    Panicked(Box<dyn Any + Send>),
}

/// A copy of a commit error for every write of the group (`StoreError` is not `Clone`; the
/// SQLite code is kept, so a full disk is still recognised as one).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, msg)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, msg.clone()))
        }
        other => StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        )),
    }
}

/// The writes waiting for the writer, in arrival order, each with an id (a caller whose group
/// cannot start takes its own write back out).
#[derive(Default)]
pub(crate) struct Queue {
    next_id: u64,
    jobs: VecDeque<(u64, Job)>,
    /// Transactions led so far (for tests and the bench).
    groups: u64,
}

impl Store {
    /// Runs `f` in a write transaction shared with other callers' queued writes (group commit,
    /// `synchronous=NORMAL`): `f`'s changes are committed if it returns `Ok` and rolled back
    /// alone if it returns an error or panics (the panic is resumed in the caller). Returns
    /// once the group is committed. For the live event path; writes that must survive power
    /// loss use [`Store::write_durable`].
    ///
    /// # Errors
    /// `f`'s error, or the group's SQLite failure.
    pub fn write_grouped<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (send, recv) = mpsc::sync_channel::<Outcome<R>>(1);
        let job: Job = Box::new(move |tx: &Tx<'_>| -> Deliver {
            let ran = run_in_savepoint(tx, f);
            Box::new(move |commit_error: Option<&StoreError>| {
                let outcome = match (ran, commit_error) {
                    (Outcome::Done(Ok(_)), Some(e)) => Outcome::Done(Err(copy_error(e))),
                    (ran, _) => ran,
                };
                // The caller waits for this under the writer lock's protocol; a failed send
                // means it is gone, and there is nobody left to tell.
                let _ = send.send(outcome);
            })
        });
        let id = {
            let mut q = lock(&self.group)?;
            q.next_id += 1;
            let id = q.next_id;
            q.jobs.push_back((id, job));
            id
        };
        loop {
            let mut conn = lock(&self.writer)?;
            match recv.try_recv() {
                Ok(outcome) => {
                    drop(conn);
                    return match outcome {
                        Outcome::Done(r) => r,
                        Outcome::Panicked(p) => resume_unwind(p),
                    };
                }
                // Our write ran but its group's leader panicked before the commit (outside any
                // write): nothing of the group was committed.
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError::Corrupt("the group holding this write failed"));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            // Our write is still queued (jobs leave the queue only under the writer lock, and
            // a job that left was answered before the lock was released): lead a group.
            let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    lock(&self.group)?.jobs.retain(|(j, _)| *j != id);
                    return Err(e.into());
                }
            };
            let jobs: Vec<Job> = {
                let mut q = lock(&self.group)?;
                let n = q.jobs.len().min(MAX_GROUP);
                q.jobs.drain(..n).map(|(_, j)| j).collect()
            };
            lock(&self.group)?.groups += 1;
            let handle = Tx { conn: &tx };
            let delivers: Vec<Deliver> = jobs.into_iter().map(|job| job(&handle)).collect();
            let committed = self.commit(tx);
            if let Err(e) = &committed {
                tracing::warn!(writes = delivers.len(), error = %e, "store: a grouped commit failed");
            }
            for d in delivers {
                d(committed.as_ref().err());
            }
            self.checkpointer.after_commit(&conn);
        }
    }
}

/// Runs one queued write inside a savepoint of the group's transaction: its error or panic
/// rolls back only its own changes (and its queued items and search rows, which are in
/// temporary tables of the same connection).
fn run_in_savepoint<R>(
    tx: &Tx<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
) -> Outcome<R> {
    if let Err(e) = tx.conn.execute_batch("SAVEPOINT grouped") {
        return Outcome::Done(Err(e.into()));
    }
    let ran = catch_unwind(AssertUnwindSafe(|| f(tx)));
    let end = match &ran {
        Ok(Ok(_)) => "RELEASE grouped",
        _ => "ROLLBACK TO grouped; RELEASE grouped",
    };
    let ended = tx.conn.execute_batch(end);
    match (ran, ended) {
        (Err(panic), _) => Outcome::Panicked(panic),
        (Ok(Ok(v)), Ok(())) => Outcome::Done(Ok(v)),
        (Ok(Ok(_)), Err(e)) => Outcome::Done(Err(e.into())),
        (Ok(Err(e)), _) => Outcome::Done(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::exec;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store
            .write(|tx| {
                exec(
                    tx.conn,
                    "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn rows(store: &Store) -> Vec<i64> {
        store
            .read(|c| {
                let mut st = c.prepare("SELECT k FROM t ORDER BY k")?;
                let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(v)
            })
            .unwrap()
    }

    /// Writes queued while the writer is busy are committed by ONE transaction; a write that
    /// fails or panics in it is rolled back alone and reported to its own caller only.
    #[test]
    fn queued_writes_share_one_transaction_and_fail_alone() {
        let (_dir, store) = store();
        let before = lock(&store.group).unwrap().groups;
        let busy = lock(&store.writer).unwrap();
        let mut handles = Vec::new();
        for k in 0..40_i64 {
            let s = Arc::clone(&store);
            handles.push(std::thread::spawn(move || {
                s.write_grouped(move |tx| {
                    exec(tx.conn, "INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
                    match k {
                        13 => Err(StoreError::NotFound),
                        29 => panic!("write 29 panics"),
                        _ => Ok(k * 2),
                    }
                })
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&store.group).unwrap().jobs.len() < 40 {
            assert!(Instant::now() < deadline, "the writes never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(busy);
        for (k, h) in (0_i64..).zip(handles) {
            match (k, h.join()) {
                (29, Err(_)) => {}
                (29, Ok(_)) => panic!("the panic of write 29 was not resumed in its caller"),
                (13, Ok(Err(StoreError::NotFound))) => {}
                (k, Ok(Ok(v))) => assert_eq!(v, k * 2),
                (k, other) => panic!("write {k}: {other:?}"),
            }
        }
        let want: Vec<i64> = (0..40).filter(|k| *k != 13 && *k != 29).collect();
        assert_eq!(rows(&store), want);
        assert_eq!(
            lock(&store.group).unwrap().groups - before,
            1,
            "40 writes queued behind a busy writer take one transaction"
        );
    }

    /// Many threads writing at once: every write is committed exactly once, and a reader never
    /// sees a write before its caller was answered... and always after.
    #[test]
    fn concurrent_writers_all_commit_and_are_visible_when_answered() {
        let (_dir, store) = store();
        let handles: Vec<_> = (0..8_i64)
            .map(|t| {
                let s = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50_i64 {
                        let k = t * 1_000 + i;
                        s.write_grouped(move |tx| {
                            exec(tx.conn, "INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
                            Ok(())
                        })
                        .unwrap();
                        let seen: bool = s
                            .read(|c| {
                                Ok(c.query_row(
                                    "SELECT EXISTS (SELECT 1 FROM t WHERE k = ?1)",
                                    [k],
                                    |r| r.get(0),
                                )?)
                            })
                            .unwrap();
                        assert!(seen, "write {k} answered before it was committed");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(rows(&store).len(), 400);
    }

    /// A commit that fails fails every write of its group, and none of them is stored.
    #[test]
    fn a_failed_commit_fails_every_write_of_the_group() {
        let (_dir, store) = store();
        // A deferred foreign key violated at commit time makes the COMMIT itself fail.
        store
            .write(|tx| {
                exec(
                    tx.conn,
                    "CREATE TABLE child (k INTEGER PRIMARY KEY,
                       parent INTEGER REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        let busy = lock(&store.writer).unwrap();
        let ok = {
            let s = Arc::clone(&store);
            std::thread::spawn(move || {
                s.write_grouped(|tx| {
                    exec(tx.conn, "INSERT INTO t (k, v) VALUES (1, 'x')", [])?;
                    Ok(())
                })
            })
        };
        let bad = {
            let s = Arc::clone(&store);
            std::thread::spawn(move || {
                s.write_grouped(|tx| {
                    exec(tx.conn, "INSERT INTO child (k, parent) VALUES (1, 999)", [])?;
                    Ok(())
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&store.group).unwrap().jobs.len() < 2 {
            assert!(Instant::now() < deadline, "the writes never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(busy);
        let (ok, bad) = (ok.join().unwrap(), bad.join().unwrap());
        assert!(ok.is_err() && bad.is_err(), "{ok:?} {bad:?}");
        assert!(
            rows(&store).is_empty(),
            "a write of a failed group was stored"
        );
        // The store goes on.
        store
            .write_grouped(|tx| {
                exec(tx.conn, "INSERT INTO t (k, v) VALUES (2, 'y')", [])?;
                Ok(())
            })
            .unwrap();
        assert_eq!(rows(&store), vec![2]);
    }
}
