//! The model itself: an unsynced commit is lost at a power loss, a synced one is not, and a cut
//! fails the call it lands in.

use rusqlite::Connection;

fn open(dir: &std::path::Path, synchronous: &str) -> Connection {
    let c = Connection::open(dir.join("t.db")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", synchronous).unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c
}

fn rows(dir: &std::path::Path) -> i64 {
    let c = Connection::open_with_flags_and_vfs(
        dir.join("t.db"),
        rusqlite::OpenFlags::default(),
        c"unix",
    )
    .unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn unsynced_commits_are_lost_synced_ones_survive() {
    lossy_vfs::install();
    for (synchronous, survives) in [("OFF", false), ("NORMAL", false), ("FULL", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        lossy_vfs::watch(dir, true);
        {
            let c = open(dir, synchronous);
            c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        }
        lossy_vfs::settle(dir);
        {
            let c = open(dir, synchronous);
            c.execute("INSERT INTO t VALUES (1)", []).unwrap();
            // The machine stops before anything else is written.
            lossy_vfs::cut_after(dir, 1);
            assert!(c.execute("INSERT INTO t VALUES (2)", []).is_err());
            assert!(lossy_vfs::crashed(dir));
        }
        let loss = lossy_vfs::power_loss(dir, &mut || false).unwrap();
        assert_eq!(
            rows(dir),
            i64::from(survives),
            "synchronous={synchronous}: {loss:?}"
        );
        lossy_vfs::unwatch(dir);
    }
}

#[test]
fn a_file_never_synced_is_lost_and_a_process_crash_keeps_everything() {
    lossy_vfs::install();
    for keep in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        lossy_vfs::watch(dir, true);
        {
            let c = open(dir, "OFF");
            c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        }
        lossy_vfs::settle(dir);
        {
            // `synchronous=OFF`: not even the WAL header is synced (NORMAL syncs it).
            let c = open(dir, "OFF");
            c.execute("INSERT INTO t VALUES (1)", []).unwrap();
            lossy_vfs::cut_after(dir, 1);
            let _ = c.execute("INSERT INTO t VALUES (2)", []);
        }
        // The WAL was created after the settle and never synced: kept whole, it is a process
        // crash (the row is there); with nothing kept the file itself is gone.
        let loss = lossy_vfs::power_loss(dir, &mut || keep).unwrap();
        assert_eq!(dir.join("t.db-wal").exists(), keep, "{loss:?}");
        assert_eq!(rows(dir), i64::from(keep), "{loss:?}");
        lossy_vfs::unwatch(dir);
    }
}

#[test]
fn refused_writes_fail_with_the_given_code_and_stop_when_lifted() {
    lossy_vfs::install();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    lossy_vfs::watch(dir, false);
    let c = open(dir, "NORMAL");
    c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    lossy_vfs::set_readonly(dir, true);
    let e = c.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    assert_eq!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{e}"
    );
    assert!(lossy_vfs::set_readonly(dir, false) > 0);
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    assert_eq!(
        c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        1
    );
    drop(c);
    lossy_vfs::unwatch(dir);
}
