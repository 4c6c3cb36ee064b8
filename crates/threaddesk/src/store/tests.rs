use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::inbox::{self, Filter, ItemKey, ItemKind, Marks};

/// A 26-char id: one letter + 25 digits.
fn id(prefix: char, n: usize) -> String {
    format!("{prefix}{n:0>25}")
}

fn uid(n: usize) -> UserId {
    UserId::parse(&id('u', n)).unwrap()
}

struct Fx {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    Fx { _dir: dir, store }
}

fn profile(u: &UserId) -> Profile {
    Profile {
        user_id: u.as_str().into(),
        username: format!("user{}", &u.as_str()[20..]),
        ..Profile::default()
    }
}

fn channel(n: usize, ty: &str, team: &str, last_post_at: i64) -> Channel {
    Channel {
        channel_id: id('c', n),
        team_id: team.into(),
        channel_type: ty.into(),
        name: format!("ch{n}"),
        display_name: format!("Channel {n}"),
        total_msg_count: 10,
        total_msg_count_root: 8,
        last_post_at,
        last_root_post_at: last_post_at,
        update_at: 1,
        delete_at: 0,
    }
}

fn member(n: usize) -> Membership {
    Membership {
        channel_id: id('c', n),
        msg_count: 5,
        msg_count_root: 5,
        last_update_at: 1,
        ..Membership::default()
    }
}

fn post(n: usize, channel: usize, root: Option<usize>, at: i64, text: &str) -> Post {
    Post {
        post_id: id('p', n),
        channel_id: id('c', channel),
        root_id: root.map(|r| id('p', r)).unwrap_or_default(),
        user_id: id('u', 99),
        create_at: at,
        update_at: at,
        message: MessageText::new(text),
        props: JsonText::new("{}"),
        file_ids: JsonText::new("[]"),
        reactions: JsonText::new("[]"),
        metadata: JsonText::new("{}"),
        ..Post::default()
    }
}

fn thread(root: usize, channel: usize, team: &str, last_reply_at: i64) -> Thread {
    Thread {
        root_id: id('p', root),
        channel_id: id('c', channel),
        team_id: team.into(),
        reply_count: 2,
        last_reply_at,
        last_viewed_at: 0,
        unread_replies: 2,
        unread_mentions: 0,
        is_urgent: false,
        following: true,
        delete_at: 0,
        participants: JsonText::new("[]"),
    }
}

/// User `u` with: team T, open channel 1 (thread on post 1 + replies), DM channel 2 with
/// posts, GM channel 3, mention post 4 in channel 1.
fn seed(store: &Store, u: &UserId, base: usize) {
    let team = id('t', 1);
    store
        .write(|tx| {
            let ut = tx.user(u);
            ut.upsert_self(&profile(u), 1)?;
            tx.upsert_team(&Team {
                team_id: team.clone(),
                name: "t".into(),
                display_name: "Team".into(),
                update_at: 1,
                delete_at: 0,
            })?;
            ut.set_teams(&[&team])?;
            tx.upsert_channel(&channel(base + 1, "O", &team, 1_000))?;
            tx.upsert_channel(&channel(base + 2, "D", "", 2_000))?;
            tx.upsert_channel(&channel(base + 3, "G", "", 3_000))?;
            for c in 1..=3 {
                ut.upsert_membership(&member(base + c))?;
            }
            tx.upsert_post(&post(
                base + 1,
                base + 1,
                None,
                100,
                "root of thread canary",
            ))?;
            tx.upsert_post(&post(base + 10, base + 1, Some(base + 1), 1_500, "a reply"))?;
            tx.upsert_post(&post(base + 20, base + 2, None, 2_000, "hello in dm"))?;
            ut.upsert_thread(&thread(base + 1, base + 1, &team, 1_500))?;
            tx.upsert_post(&post(base + 4, base + 1, None, 4_000, "@user look"))?;
            ut.add_mention(&Mention {
                post_id: id('p', base + 4),
                channel_id: id('c', base + 1),
                team_id: team.clone(),
                create_at: 4_000,
            })?;
            Ok(())
        })
        .unwrap();
}

fn keys(page: &QueuePage) -> Vec<String> {
    page.rows.iter().map(|r| r.key.to_string()).collect()
}

#[test]
fn user_id_is_validated() {
    assert!(UserId::parse("short").is_err());
    assert!(UserId::parse(&id('u', 1)).is_ok());
    assert!(UserId::parse(&id('U', 1)).is_err());
}

#[test]
fn migrates_from_every_past_version_to_head() {
    for v in 0..=migrations::head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let s = Store::open_at_version(&path, v).unwrap();
            assert_eq!(s.schema_version().unwrap(), v);
            if v >= 1 {
                // Written with version-1 SQL: the code of later versions may need later tables.
                let c = s.writer.lock().unwrap();
                c.execute_batch(&format!(
                    "INSERT INTO users (user_id, username, created_at, updated_at) VALUES ('{u}', 'x', 1, 1);
                     INSERT INTO posts (post_id, channel_id, root_id, user_id, type, create_at, update_at,
                       edit_at, delete_at, message, props, file_ids, reactions, metadata)
                     VALUES ('{p}', '{c}', '', '{u}', '', 5, 5, 0, 0, 'old searchable words', '{{}}', '[]', '[]', '{{}}');",
                    u = id('u', 1),
                    p = id('p', 1),
                    c = id('c', 1)
                ))
                .unwrap();
            }
        }
        let s = Store::open_file(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::head(), "from {v}");
        if v >= 1 {
            // Data written at the old version survives (and is searchable after the FTS step).
            let u = uid(1);
            s.write(|tx| tx.user(&u).upsert_membership(&member(1)))
                .unwrap();
            assert!(
                s.for_user(&u).post(&id('p', 1)).unwrap().is_some(),
                "from {v}"
            );
            if v < 2 {
                // Migration 2 indexes the posts already cached.
                assert_eq!(
                    s.for_user(&u).search("searchable", 10).unwrap().len(),
                    1,
                    "from {v}"
                );
            }
        }
    }
}

#[test]
fn newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    drop(Store::open_file(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", migrations::head() + 1)
            .unwrap();
    }
    let e = Store::open_file(&path).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { .. }));
    assert!(e.to_string().contains("newer ThreadDesk"), "{e}");
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Store::open(&data).unwrap();
    let u = uid(1);
    s.write(|tx| tx.user(&u).upsert_self(&profile(&u), 1))
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(DB_FILE)), 0o600);
    assert_eq!(mode(&data.join(format!("{DB_FILE}-wal"))), 0o600);
}

#[test]
fn mark_and_outbox_in_one_durable_transaction() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    let key = ItemKey::channel(&id('c', 2)).unwrap();
    let new = NewOutbox {
        kind: "done".into(),
        item_key: key.clone(),
        payload: JsonText::new("[]"),
        pending_post_id: String::new(),
        marker: String::new(),
        coalesce: true,
    };
    // A failing step rolls back both.
    let r: Result<(), StoreError> = us.write_durable(|t| {
        t.set_marks(
            &key,
            Marks {
                done_at: Some(5_000),
                snoozed_until: None,
            },
        )?;
        t.outbox_enqueue(&new, 5_000)?;
        Err(StoreError::NotFound)
    });
    assert!(r.is_err());
    assert!(us.marks().unwrap().is_empty());
    assert!(us.outbox_rows(None).unwrap().is_empty());
    us.write_durable(|t| {
        t.set_marks(
            &key,
            Marks {
                done_at: Some(5_000),
                snoozed_until: None,
            },
        )?;
        t.outbox_enqueue(&new, 5_000)
    })
    .unwrap();
    assert_eq!(us.marks().unwrap().len(), 1);
    assert_eq!(us.outbox_rows(None).unwrap().len(), 1);
    assert_eq!(us.threads().unwrap().len(), 1);
}

#[test]
fn pragmas_are_set() {
    let f = fx();
    let c = f.store.writer.lock().unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = c
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(sync, 1, "NORMAL outside durable writes");
    let mmap: i64 = c.query_row("PRAGMA mmap_size", [], |r| r.get(0)).unwrap();
    assert_eq!(mmap, 0, "reads go through pread: see `configure`");
}

/// `.cargo/config.toml` builds the bundled SQLite without the two process-wide locks every
/// connection would otherwise take (the memory statistics mutex at each allocation; one page
/// cache shared by all connections, locked at each page): a value of `LIBSQLITE3_FLAGS` set in
/// the environment replaces that file's, and readers would wait for the writer again.
#[test]
fn sqlite_is_built_without_process_wide_locks() {
    let f = fx();
    let c = f.store.writer.lock().unwrap();
    let opts: Vec<String> = c
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        opts.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "memory statistics are on: {opts:?}"
    );
    assert!(
        !opts.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "one page cache for every connection: {opts:?}"
    );
}

#[test]
fn queue_filters_and_order() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    let now = 10_000;
    let all = us.queue(&Filter::All, now, None, 50).unwrap();
    // mention (4000), GM (3000), DM (2000), thread (1500)
    assert_eq!(
        keys(&all),
        vec![
            format!("t_{}", id('p', 4)),
            format!("c_{}", id('c', 3)),
            format!("c_{}", id('c', 2)),
            format!("t_{}", id('p', 1)),
        ]
    );
    let kinds: Vec<ItemKind> = all.rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ItemKind::Mention,
            ItemKind::Group,
            ItemKind::Direct,
            ItemKind::Thread
        ]
    );
    // DM: unread = total_root 8 − read 5 = 3, all mentions; preview is the latest post.
    let dm = &all.rows[2];
    assert_eq!((dm.counts.unread, dm.counts.mentions), (3, 3));
    assert_eq!(dm.preview.as_ref().unwrap().expose(), "hello in dm");
    assert_eq!(
        all.rows[3].preview.as_ref().unwrap().expose(),
        "root of thread canary"
    );
    assert_eq!(all.rows[3].channel_display_name, "Channel 1");
    assert!(all.next.is_none());

    let q = |flt: &Filter| keys(&us.queue(flt, now, None, 50).unwrap());
    assert_eq!(q(&Filter::Direct).len(), 2);
    assert_eq!(q(&Filter::Threads).len(), 2);
    assert_eq!(q(&Filter::Mentions).len(), 2, "mention post + DM");
    assert_eq!(q(&Filter::Team(id('t', 1))).len(), 2);
    assert_eq!(q(&Filter::Team(String::new())).len(), 2);

    // Keyset pagination visits every row once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = us.queue(&Filter::All, now, cursor.as_ref(), 1).unwrap();
        seen.extend(keys(&page));
        match page.next {
            Some(c) => cursor = Some(Cursor::decode(&c.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, keys(&all));

    // Done: activity exactly at the mark is not new; snooze hides until it expires.
    let dm_key = ItemKey::channel(&id('c', 2)).unwrap();
    let gm_key = ItemKey::channel(&id('c', 3)).unwrap();
    us.write(|t| {
        t.set_marks(
            &dm_key,
            Marks {
                done_at: Some(2_000),
                snoozed_until: None,
            },
        )?;
        t.set_marks(
            &gm_key,
            Marks {
                done_at: None,
                snoozed_until: Some(now + 1),
            },
        )
    })
    .unwrap();
    assert_eq!(q(&Filter::All).len(), 2);
    assert_eq!(q(&Filter::Done), vec![dm_key.to_string()]);
    assert_eq!(q(&Filter::Snoozed), vec![gm_key.to_string()]);
    let later = us.queue(&Filter::All, now + 1, None, 50).unwrap();
    assert_eq!(later.rows.len(), 3, "snooze expiring exactly now: back");
    let c = us.counts(now).unwrap();
    assert_eq!(
        (c.all, c.done, c.snoozed, c.direct, c.threads, c.mentions),
        (2, 1, 1, 0, 2, 1)
    );
    assert_eq!(c.teams, vec![(id('t', 1), 2)]);

    // New DM activity after the done mark brings it back.
    f.store
        .write(|tx| tx.upsert_post(&post(21, 2, None, 2_001, "new dm")))
        .unwrap();
    assert!(q(&Filter::All).contains(&dm_key.to_string()));

    // Marks mirror round trip.
    let marks = us.marks().unwrap();
    assert_eq!(marks[&gm_key].snoozed_until, Some(now + 1));
    let mut replaced = BTreeMap::new();
    replaced.insert(
        gm_key.clone(),
        Marks {
            done_at: Some(99_999),
            snoozed_until: None,
        },
    );
    us.write(|t| t.replace_marks(&replaced)).unwrap();
    assert_eq!(us.marks().unwrap(), replaced);
    assert_eq!(q(&Filter::Done), vec![gm_key.to_string()]);
}

#[test]
fn item_lifecycle_edges() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    let now = 10_000;
    let thread_key = ItemKey::thread(&id('p', 1)).unwrap();
    let mention_key = ItemKey::thread(&id('p', 4)).unwrap();

    // Item detail: root + reply, oldest first.
    let d = us.item(&thread_key, 50).unwrap().unwrap();
    let ids: Vec<&str> = d.posts.iter().map(|p| p.post_id.as_str()).collect();
    assert_eq!(ids, vec![id('p', 1), id('p', 10)]);

    // A reply to the mention post: the mention item is gone (no follow) ...
    f.store
        .write(|tx| tx.upsert_post(&post(40, 1, Some(4), 5_000, "reply")))
        .unwrap();
    assert!(us.item(&mention_key, 10).unwrap().is_none());
    // ... and comes back as a thread when the user follows, keeping its key.
    f.store
        .write(|tx| tx.user(&u).upsert_thread(&thread(4, 1, &id('t', 1), 5_000)))
        .unwrap();
    assert_eq!(
        us.item(&mention_key, 10).unwrap().unwrap().row.kind,
        ItemKind::Thread
    );

    // Stale thread update (older last_reply_at) is ignored; equal applies.
    let mut stale = thread(1, 1, &id('t', 1), 1_000);
    stale.unread_replies = 99;
    f.store
        .write(|tx| tx.user(&u).upsert_thread(&stale))
        .unwrap();
    assert_eq!(us.thread(&id('p', 1)).unwrap().unwrap().unread_replies, 2);
    let mut read = thread(1, 1, &id('t', 1), 1_500);
    read.unread_replies = 0;
    f.store
        .write(|tx| tx.user(&u).upsert_thread(&read))
        .unwrap();
    assert_eq!(
        us.item(&thread_key, 1).unwrap().unwrap().row.counts.unread,
        0
    );

    // Root deleted: thread leaves the queue, replies dropped, text gone.
    let mut del = post(1, 1, None, 100, "");
    del.update_at = 6_000;
    del.delete_at = 6_000;
    f.store.write(|tx| tx.upsert_post(&del)).unwrap();
    assert!(us.item(&thread_key, 10).unwrap().is_none());
    assert!(us.post(&id('p', 10)).unwrap().is_none());
    assert!(us.search("canary", 10).unwrap().is_empty());
    // A replayed older version of the post does not resurrect it.
    f.store
        .write(|tx| tx.upsert_post(&post(1, 1, None, 100, "root of thread canary")))
        .unwrap();
    assert!(us.item(&thread_key, 10).unwrap().is_none());

    // Removed from the DM channel: item gone; every read of it fails.
    f.store
        .write(|tx| tx.user(&u).remove_membership(&id('c', 2)))
        .unwrap();
    let dm_key = ItemKey::channel(&id('c', 2)).unwrap();
    assert!(us.item(&dm_key, 10).unwrap().is_none());
    assert!(us.channel(&id('c', 2)).unwrap().is_none());
    assert!(us.channel_posts(&id('c', 2), None, 10).unwrap().is_empty());
    assert!(!keys(&us.queue(&Filter::All, now, None, 50).unwrap()).contains(&dm_key.to_string()));

    // Removed from channel 1: thread on post 4 gone too.
    f.store
        .write(|tx| tx.user(&u).remove_membership(&id('c', 1)))
        .unwrap();
    assert!(us.item(&mention_key, 10).unwrap().is_none());
    // Re-joining restores it (rules are recomputed, nothing was lost).
    f.store
        .write(|tx| tx.user(&u).upsert_membership(&member(1)))
        .unwrap();
    assert!(us.item(&mention_key, 10).unwrap().is_some());
}

#[test]
fn user_a_cannot_read_user_b() {
    let f = fx();
    let (a, b) = (uid(1), uid(2));
    seed(&f.store, &a, 0);
    seed(&f.store, &b, 100);
    f.store
        .write(|tx| {
            let bt = tx.user(&b);
            bt.put_token("pat", &EncryptedBlob(vec![7; 8]), 1)?;
            bt.create_session("b-session", &SecretText::new("csrf"), 1, i64::MAX)?;
            bt.set_marks(
                &ItemKey::channel(&id('c', 102)).unwrap(),
                Marks {
                    done_at: Some(1),
                    snoozed_until: None,
                },
            )?;
            bt.set_ws_state("conn-b", 5)
        })
        .unwrap();
    f.store
        .for_user(&b)
        .outbox_enqueue(&new_outbox("reply", &id('p', 101), false), 1)
        .unwrap();
    let ua = f.store.for_user(&a);
    let now = 10_000;
    // Every read method with B's ids returns nothing of B.
    assert!(ua.token("pat").unwrap().is_none());
    assert_eq!(ua.profile().unwrap().unwrap().user_id, a.as_str());
    for ch in [101, 102, 103] {
        assert!(ua.channel(&id('c', ch)).unwrap().is_none());
        assert!(ua.channel_posts(&id('c', ch), None, 50).unwrap().is_empty());
        assert!(
            ua.item(&ItemKey::channel(&id('c', ch)).unwrap(), 50)
                .unwrap()
                .is_none()
        );
    }
    for p in [101, 104, 110, 120] {
        assert!(ua.post(&id('p', p)).unwrap().is_none());
        assert!(ua.thread(&id('p', p)).unwrap().is_none());
        assert!(ua.thread_posts(&id('p', p), 50).unwrap().is_empty());
        assert!(
            ua.item(&ItemKey::thread(&id('p', p)).unwrap(), 50)
                .unwrap()
                .is_none()
        );
    }
    for flt in [
        Filter::All,
        Filter::Mentions,
        Filter::Direct,
        Filter::Threads,
        Filter::Snoozed,
        Filter::Done,
        Filter::Team(id('t', 1)),
    ] {
        for row in ua.queue(&flt, now, None, 200).unwrap().rows {
            assert!(row.channel_id <= id('c', 3), "{flt:?} leaked {:?}", row.key);
        }
    }
    assert_eq!(ua.counts(now).unwrap().all, 4);
    assert!(ua.marks().unwrap().is_empty());
    assert!(
        ua.memberships()
            .unwrap()
            .iter()
            .all(|m| m.channel_id <= id('c', 3))
    );
    assert!(
        ua.search("canary", 50)
            .unwrap()
            .iter()
            .all(|p| p.channel_id == id('c', 1))
    );
    assert_eq!(ua.search("canary", 50).unwrap().len(), 1);
    assert_eq!(ua.sync_state().unwrap().ws_connection_id, "");
    assert_eq!(ua.session_count().unwrap(), 0);
    assert!(ua.outbox_rows(None).unwrap().is_empty());
    let b_row = f.store.for_user(&b).outbox_rows(None).unwrap()[0].id;
    assert!(matches!(
        ua.outbox_mark_failed(b_row, "x"),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(ua.outbox_cancel(b_row), Err(StoreError::NotFound)));
    assert!(ua.outbox_claim_next(now).unwrap().is_none());
    let ex = ua.export().unwrap();
    let json = serde_json::to_string(&ex).unwrap();
    assert!(!json.contains(b.as_str()));
    assert!(!json.contains(&id('c', 101)));
    // Deleting A leaves B intact.
    ua.delete_all().unwrap();
    let ub = f.store.for_user(&b);
    assert_eq!(ub.counts(now).unwrap().all, 4);
    assert!(ub.token("pat").unwrap().is_some());
}

fn new_outbox(kind: &str, root: &str, coalesce: bool) -> NewOutbox {
    NewOutbox {
        kind: kind.into(),
        item_key: ItemKey::thread(root).unwrap(),
        payload: JsonText::new("{\"message\":\"canary reply\"}"),
        pending_post_id: "u:1".into(),
        marker: "m1".into(),
        coalesce,
    }
}

#[test]
fn outbox_state_machine() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    let r1 = id('p', 1);
    let r2 = id('p', 4);
    let a = us
        .outbox_enqueue(&new_outbox("reply", &r1, false), 100)
        .unwrap();
    let b = us
        .outbox_enqueue(&new_outbox("reply", &r1, false), 101)
        .unwrap();
    let c = us
        .outbox_enqueue(&new_outbox("reply", &r2, false), 102)
        .unwrap();
    // Not due yet.
    assert!(us.outbox_claim_next(99).unwrap().is_none());
    // Oldest first; b waits for a (same item).
    let got = us.outbox_claim_next(200).unwrap().unwrap();
    assert_eq!(
        (got.id, got.state, got.attempts, got.first_sent_at),
        (a, OutboxState::Inflight, 1, Some(200))
    );
    assert!(!format!("{got:?}").contains("canary"));
    let got = us.outbox_claim_next(200).unwrap().unwrap();
    assert_eq!(got.id, c, "b is blocked behind a");
    assert!(us.outbox_claim_next(200).unwrap().is_none());
    // a: unknown outcome → retry later with the same pending id and first_sent_at.
    us.outbox_retry_later(a, 300, "timeout").unwrap();
    assert!(us.outbox_claim_next(250).unwrap().is_none());
    let again = us.outbox_claim_next(300).unwrap().unwrap();
    assert_eq!(
        (again.id, again.attempts, again.first_sent_at),
        (a, 2, Some(200))
    );
    assert_eq!(again.pending_post_id, "u:1");
    us.outbox_mark_sent(a, Some(&id('p', 77))).unwrap();
    // Invalid transitions are refused.
    assert!(matches!(
        us.outbox_mark_sent(a, None),
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        us.outbox_retry_failed(b, 1),
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(us.outbox_cancel(a), Err(StoreError::NotFound)));
    // c fails, then the user retries.
    us.outbox_mark_failed(c, "400 api.post.create_post.root_id.app_error")
        .unwrap();
    assert_eq!(us.outbox_rows(Some(OutboxState::Failed)).unwrap().len(), 1);
    us.outbox_retry_failed(c, 400).unwrap();
    // b is now free.
    let got = us.outbox_claim_next(400).unwrap().unwrap();
    assert_eq!(got.id, b);
    // Crash: in-flight rows go back to queued at start-up.
    assert_eq!(f.store.outbox_users_due(400).unwrap(), vec![u.clone()]);
    assert_eq!(f.store.outbox_requeue_inflight(500).unwrap(), 1);
    assert_eq!(
        us.outbox_rows(Some(OutboxState::Inflight)).unwrap().len(),
        0
    );
    // Cancel a queued row.
    us.outbox_cancel(c).unwrap();
    // Coalescing replaces the queued row of the same kind and item.
    let d1 = us
        .outbox_enqueue(&new_outbox("read", &r2, true), 600)
        .unwrap();
    let d2 = us
        .outbox_enqueue(&new_outbox("read", &r2, true), 601)
        .unwrap();
    assert_eq!(d1, d2);
    assert_eq!(us.outbox_resume(700).unwrap(), 2);
}

#[test]
fn outbox_transition_table_matches_pure_rules() {
    use OutboxState::{Failed, Inflight, Queued, Sent};
    let all = [Queued, Inflight, Sent, Failed];
    let allowed: Vec<(OutboxState, OutboxState)> = all
        .iter()
        .flat_map(|a| all.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| a.can_go(*b))
        .collect();
    assert_eq!(
        allowed,
        vec![
            (Queued, Inflight),
            (Inflight, Queued),
            (Inflight, Sent),
            (Inflight, Failed),
            (Failed, Queued)
        ]
    );
    for s in all {
        assert_eq!(OutboxState::parse(s.as_str()), Some(s));
    }
}

#[test]
fn retention_purge_with_injected_clock() {
    let f = fx();
    let u = uid(1);
    let day = 86_400_000;
    let now = 100 * day;
    let cutoff = now - 14 * day;
    let team = id('t', 1);
    f.store
        .write(|tx| {
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            tx.upsert_channel(&channel(1, "O", &team, now))?;
            ut.upsert_membership(&member(1))?;
            // 2,500 old posts (three purge batches) + 10 recent ones.
            for n in 0..2_500 {
                tx.upsert_post(&post(
                    1_000 + n,
                    1,
                    None,
                    cutoff - 1 - i64::try_from(n).unwrap(),
                    "old canary",
                ))?;
            }
            for n in 0..10 {
                tx.upsert_post(&post(
                    5_000 + n,
                    1,
                    None,
                    cutoff + i64::try_from(n).unwrap(),
                    "new words",
                ))?;
            }
            // Old thread whose root is old but reply is recent: root kept.
            tx.upsert_post(&post(
                9_000,
                1,
                None,
                cutoff - day,
                "old root of live thread",
            ))?;
            tx.upsert_post(&post(9_001, 1, Some(9_000), now - 1, "fresh reply"))?;
            ut.upsert_thread(&thread(9_000, 1, &team, now - 1))?;
            // Thread entirely old.
            ut.upsert_thread(&thread(1_000, 1, &team, cutoff - 1))?;
            Ok(())
        })
        .unwrap();
    let us = f.store.for_user(&u);
    assert_eq!(
        us.search("canary", 200).unwrap().len(),
        50,
        "(the test bound of candidates)"
    );
    let rep = f.store.purge_older_than(cutoff).unwrap();
    assert_eq!(rep.posts, 2_500);
    assert_eq!(rep.threads, 1);
    assert_eq!(rep.items, 1);
    assert!(
        us.search("canary", 200).unwrap().is_empty(),
        "search rows purged with posts"
    );
    assert_eq!(us.search("words", 200).unwrap().len(), 10);
    // The search index was merged to the end (in many small steps): nothing is left to merge.
    let left = f
        .store
        .write(|tx| {
            let before = tx.conn.total_changes();
            exec(
                tx.conn,
                "INSERT INTO posts_fts (posts_fts, rank) VALUES ('merge', -2)",
                [],
            )?;
            Ok(tx.conn.total_changes() - before)
        })
        .unwrap();
    assert!(left < 2, "the index was not fully merged ({left} changes)");
    assert!(us.post(&id('p', 9_000)).unwrap().is_some());
    assert!(
        us.item(&ItemKey::thread(&id('p', 1_000)).unwrap(), 1)
            .unwrap()
            .is_none()
    );
    assert!(
        us.item(&ItemKey::thread(&id('p', 9_000)).unwrap(), 1)
            .unwrap()
            .is_some()
    );
    // Idempotent.
    assert_eq!(
        f.store.purge_older_than(cutoff).unwrap(),
        PurgeReport::default()
    );
    // A full sync re-sending an old DM channel does not bring an item older than the window.
    f.store
        .write(|tx| {
            tx.upsert_channel(&channel(7, "D", "", cutoff - day))?;
            tx.user(&u).upsert_membership(&member(7))
        })
        .unwrap();
    assert!(
        us.item(&ItemKey::channel(&id('c', 7)).unwrap(), 1)
            .unwrap()
            .is_none()
    );
    f.store
        .write(|tx| tx.upsert_channel(&channel(8, "D", "", cutoff + 1)))
        .unwrap();
    f.store
        .write(|tx| tx.user(&u).upsert_membership(&member(8)))
        .unwrap();
    assert!(
        us.item(&ItemKey::channel(&id('c', 8)).unwrap(), 1)
            .unwrap()
            .is_some()
    );
    // Purged text is not left in the file.
    drop(f.store);
    let bytes = std::fs::read(f._dir.path().join(DB_FILE)).unwrap();
    let wal = std::fs::read(f._dir.path().join(format!("{DB_FILE}-wal"))).unwrap_or_default();
    for b in [&bytes, &wal] {
        assert!(
            !b.windows(6).any(|w| w == b"canary"),
            "purged text or search terms still on disk"
        );
    }
}

/// The purge merges the search index in many short steps (not one long 'optimize'), until
/// no segment holds a purged post's terms: the words leave the index's pages.
#[test]
fn purge_merges_the_search_index_in_steps_until_purged_words_are_gone() {
    let f = fx();
    let u = uid(1);
    let day = 86_400_000;
    let now = 100 * day;
    let cutoff = now - 14 * day;
    f.store
        .write(|tx| {
            tx.user(&u).upsert_self(&profile(&u), 1)?;
            tx.upsert_channel(&channel(1, "O", &id('t', 1), now))?;
            tx.user(&u).upsert_membership(&member(1))
        })
        .unwrap();
    // 40 commits: as many segments (FTS5 merges some on its own), each with 2 posts of 50 to
    // purge — under FTS5's own 'deletemerge' share (10 %), so no segment is rewritten by
    // FTS5 itself. The purged posts' terms sort after the kept ones: a merge stopped early
    // leaves them in its unread input.
    for c in 0..40_usize {
        f.store
            .write(|tx| {
                for n in 0..50_usize {
                    let k = c * 50 + n;
                    let (at, text) = if n < 2 {
                        (
                            cutoff - 1 - i64::try_from(k).unwrap(),
                            format!("zebra{k} old"),
                        )
                    } else {
                        (
                            cutoff + i64::try_from(k).unwrap(),
                            format!("aardvark{k} new"),
                        )
                    };
                    tx.upsert_post(&post(10_000 + k, 1, None, at, &text))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let blocks_before = f
        .store
        .read(|c| {
            Ok(c.query_row("SELECT count(*) FROM posts_fts_data", [], |r| {
                r.get::<_, i64>(0)
            })?)
        })
        .unwrap();
    assert!(blocks_before > 0);
    let rep = f.store.purge_older_than(cutoff).unwrap();
    assert_eq!(rep.posts, 80);
    assert!(
        rep.search_merge_steps > 2,
        "merged in steps of a few pages ({} steps)",
        rep.search_merge_steps
    );
    // Nothing is left to merge, and the next full merge takes one (empty) step.
    assert_eq!(f.store.fts_merge_fully().unwrap(), 1);
    let blocks: Vec<Vec<u8>> = f
        .store
        .read(|c| {
            let mut st = c.prepare("SELECT block FROM posts_fts_data WHERE block IS NOT NULL")?;
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert!(
        !blocks.iter().any(|b| b.windows(5).any(|w| w == b"zebra")),
        "a purged post's terms are still in the search index"
    );
    assert!(
        blocks
            .iter()
            .any(|b| b.windows(8).any(|w| w == b"aardvark")),
        "kept posts' terms are there (else the check above proves nothing)"
    );
    let us = f.store.for_user(&u);
    assert_eq!(us.search("aardvark1052", 10).unwrap().len(), 1);
}

/// The purge walks threads and items by primary key in chunks (no time index since migration
/// 12): over several chunks and users, every old row and only old rows go, in write batches
/// of at most `PURGE_BATCH`, and the queue counters stay equal to a scan of the items.
#[test]
fn purge_walk_removes_exactly_the_old_rows_across_chunks_and_users() {
    let f = fx();
    let day = 86_400_000;
    let now = 100 * day;
    let cutoff = now - 14 * day;
    let team = id('t', 1);
    let users: Vec<UserId> = (1..=3).map(uid).collect();
    let per_user = PURGE_SCAN_CHUNK + 700; // > one chunk each, several in all
    let is_old = |n: usize| !n.is_multiple_of(3); // two of three old: more than a batch per chunk
    f.store
        .write(|tx| {
            tx.upsert_channel(&channel(1, "O", &team, now))?;
            for u in &users {
                let ut = tx.user(u);
                ut.upsert_self(&profile(u), 1)?;
                ut.upsert_membership(&member(1))?;
                for n in 0..per_user {
                    let at = if is_old(n) { cutoff - 1 } else { cutoff };
                    ut.upsert_thread(&thread(10_000 + n, 1, &team, at))?;
                }
            }
            Ok(())
        })
        .unwrap();
    let old = (0..per_user).filter(|n| is_old(*n)).count();
    let rep = f.store.purge_older_than(cutoff).unwrap();
    assert_eq!(rep.threads, old * users.len());
    assert_eq!(rep.items, old * users.len());
    for u in &users {
        let us = f.store.for_user(u);
        for n in [
            0,
            1,
            2,
            3,
            PURGE_SCAN_CHUNK - 1,
            PURGE_SCAN_CHUNK,
            per_user - 1,
        ] {
            let key = ItemKey::thread(&id('p', 10_000 + n)).unwrap();
            assert_eq!(us.item(&key, 1).unwrap().is_some(), !is_old(n), "item {n}");
        }
        let counts = us.counts(now).unwrap();
        assert_eq!(counts.all, i64::try_from(per_user - old).unwrap());
        let scan = f
            .store
            .read(|c| user::count_items_scan(c, u.as_str(), now))
            .unwrap();
        assert_eq!(counts, scan);
    }
    let left: i64 = f
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM threads", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(left, i64::try_from((per_user - old) * users.len()).unwrap());
    assert_eq!(
        f.store.purge_older_than(cutoff).unwrap(),
        PurgeReport::default()
    );
}

/// The purge is background work: it rests after each step as long as the step took, so it
/// holds the writer (which the sync engine's writes wait for) at most about half of the
/// time, and leaves the cores to the page reads. Flat out it held the writer most of the
/// time (research P-14: the reads' p99 during a purge).
#[test]
fn purge_rests_between_steps_and_holds_the_writer_at_most_half_the_time() {
    let f = fx();
    let day = 86_400_000;
    let now = 100 * day;
    let cutoff = now - 14 * day;
    let team = id('t', 1);
    let u = uid(1);
    let old = 12 * PURGE_BATCH;
    f.store
        .write(|tx| {
            tx.upsert_channel(&channel(1, "O", &team, now))?;
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            ut.upsert_membership(&member(1))?;
            for n in 0..old {
                ut.upsert_thread(&thread(10_000 + n, 1, &team, cutoff - 1))?;
            }
            Ok(())
        })
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (held, samples) = std::thread::scope(|s| {
        // Samples whether the writer is held, until the purge returns.
        let probe = s.spawn(|| {
            let (mut held, mut samples) = (0u32, 0u32);
            while !done.load(Ordering::Relaxed) {
                samples += 1;
                if matches!(
                    f.store.writer.try_lock(),
                    Err(std::sync::TryLockError::WouldBlock)
                ) {
                    held += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            (held, samples)
        });
        let rep = f.store.purge_older_than(cutoff).unwrap();
        done.store(true, Ordering::Relaxed);
        assert_eq!((rep.threads, rep.items), (old, old));
        probe.join().unwrap()
    });
    let share = f64::from(held) / f64::from(samples.max(1));
    assert!(samples >= 100, "only {samples} samples");
    assert!(
        share < 0.6,
        "the purge held the writer in {held} of {samples} samples ({share:.2})"
    );
}

#[test]
fn purge_all_and_tokens_not_in_file() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    us.put_token("oauth", &EncryptedBlob(b"ciphertext-bytes".to_vec()), 1)
        .unwrap();
    assert_eq!(us.token("oauth").unwrap().unwrap().0, b"ciphertext-bytes");
    f.store.purge_all().unwrap();
    assert!(f.store.user_ids().unwrap().is_empty());
    assert!(us.token("oauth").unwrap().is_none());
    assert_eq!(us.counts(1).unwrap(), QueueCounts::default());
    let path = f.store.path().to_owned();
    drop(f.store);
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"canary"));
    assert!(!bytes.windows(16).any(|w| w == b"ciphertext-bytes"));
}

#[test]
fn sessions_and_oauth_attempts() {
    let f = fx();
    let u = uid(1);
    let idle = 1_000_000;
    f.store
        .write(|tx| {
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            ut.create_session("tok-1", &SecretText::new("csrf-1"), 100, 10_000_000)
        })
        .unwrap();
    let s = f.store.session("tok-1", 200, idle).unwrap().unwrap();
    assert_eq!(s.user_id, u);
    assert_eq!(s.csrf_token.expose(), "csrf-1");
    assert!(f.store.session("tok-2", 200, idle).unwrap().is_none());
    // last_seen refreshed after a minute; idle timeout counts from it.
    let s = f.store.session("tok-1", 100_000, idle).unwrap().unwrap();
    assert_eq!(s.last_seen_at, 100_000);
    assert!(
        f.store
            .session("tok-1", 100_000 + idle, idle)
            .unwrap()
            .is_none()
    );
    assert!(
        f.store.session("tok-1", 1, idle).unwrap().is_none(),
        "expired sessions are deleted"
    );
    // Absolute expiry.
    f.store
        .write(|tx| {
            tx.user(&u)
                .create_session("tok-3", &SecretText::new("c"), 0, 500)
        })
        .unwrap();
    assert!(f.store.session("tok-3", 500, idle).unwrap().is_none());
    // Sign-out everywhere.
    f.store
        .write(|tx| {
            tx.user(&u)
                .create_session("tok-4", &SecretText::new("c"), 0, 9_000)
        })
        .unwrap();
    assert_eq!(
        f.store
            .write(|tx| tx.user(&u).delete_all_sessions())
            .unwrap(),
        1
    );
    // Session tokens are stored hashed.
    let raw: i64 = f
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM web_sessions WHERE id_hash = 'tok-4'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(raw, 0);

    // OAuth: single use, bound to the browser, 10-minute expiry.
    f.store
        .oauth_attempt_create("st", "browser", "verifier", "/", 0)
        .unwrap();
    assert!(
        f.store
            .oauth_attempt_take("st", "other-browser", 1)
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .oauth_attempt_take("st", "browser", 1)
            .unwrap()
            .is_none(),
        "consumed"
    );
    f.store
        .oauth_attempt_create("st2", "b", "v", "/x", 0)
        .unwrap();
    let a = f
        .store
        .oauth_attempt_take("st2", "b", OAUTH_ATTEMPT_TTL_MS - 1)
        .unwrap()
        .unwrap();
    assert_eq!((a.pkce_verifier.expose(), a.redirect.as_str()), ("v", "/x"));
    f.store
        .oauth_attempt_create("st3", "b", "v", "/", 0)
        .unwrap();
    assert!(
        f.store
            .oauth_attempt_take("st3", "b", OAUTH_ATTEMPT_TTL_MS)
            .unwrap()
            .is_none()
    );
    f.store
        .oauth_attempt_create("st4", "b", "v", "/", 0)
        .unwrap();
    assert_eq!(
        f.store
            .purge_expired_auth(OAUTH_ATTEMPT_TTL_MS, idle)
            .unwrap(),
        1
    );
}

#[test]
fn export_and_delete_user() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    us.put_token("pat", &EncryptedBlob(vec![1, 2, 3]), 5)
        .unwrap();
    let mut mine = post(50, 2, None, 2_500, "my own words");
    mine.user_id = u.as_str().into();
    f.store.write(|tx| tx.upsert_post(&mine)).unwrap();
    let ex = us.export().unwrap();
    assert_eq!(ex.items.len(), 4);
    assert_eq!(ex.memberships.len(), 3);
    assert_eq!(ex.threads.len(), 1);
    assert_eq!(ex.mentions.len(), 1);
    assert_eq!(ex.tokens, vec![("pat".to_owned(), 5)]);
    assert_eq!(ex.posts.len(), 1);
    let json = serde_json::to_value(&ex).unwrap();
    assert_eq!(json["posts"][0]["message"], "my own words");
    assert!(
        !format!("{ex:?}").contains("my own words"),
        "Debug stays redacted"
    );
    us.delete_all().unwrap();
    assert!(us.profile().unwrap().is_none());
    assert!(us.token("pat").unwrap().is_none());
    let left: i64 = f
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM posts", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(left, 0, "posts of channels nobody else is in are deleted");
}

#[test]
fn queue_matches_pure_rules_on_random_data() {
    // Deterministic pseudo-random scenarios: the SQL queue equals inbox::Filter on derived items.
    let f = fx();
    let u = uid(1);
    let mut seed_v: u64 = 42;
    let mut rnd = |m: u64| {
        seed_v = seed_v
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (seed_v >> 33) % m
    };
    let team = id('t', 1);
    let mut marks = BTreeMap::new();
    f.store
        .write(|tx| {
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            for n in 0..60usize {
                let at = i64::try_from(rnd(50)).unwrap() * 10;
                let ty = ["O", "D", "G"][usize::try_from(rnd(3)).unwrap()];
                let team_id = if ty == "O" {
                    team.clone()
                } else {
                    String::new()
                };
                tx.upsert_channel(&channel(n, ty, &team_id, at + 1))?;
                ut.upsert_membership(&member(n))?;
                if ty == "O" {
                    tx.upsert_post(&post(n, n, None, 1, "r"))?;
                    ut.upsert_thread(&thread(n, n, &team_id, at))?;
                }
                let key = if ty == "O" {
                    ItemKey::thread(&id('p', n)).unwrap()
                } else {
                    ItemKey::channel(&id('c', n)).unwrap()
                };
                let m = Marks {
                    done_at: (rnd(2) == 0).then(|| i64::try_from(rnd(60)).unwrap() * 10),
                    snoozed_until: (rnd(3) == 0).then(|| i64::try_from(rnd(60)).unwrap() * 10),
                };
                if m != Marks::default() {
                    ut.set_marks(&key, m)?;
                    marks.insert(key, m);
                }
            }
            Ok(())
        })
        .unwrap();
    let us = f.store.for_user(&u);
    let all_rows = us.export().unwrap().items;
    let items: Vec<inbox::Item> = all_rows
        .iter()
        .map(|r| inbox::Item {
            key: r.key.clone(),
            kind: r.kind,
            channel_id: r.channel_id.clone(),
            team_id: r.team_id.clone(),
            last_activity_at: r.last_activity_at,
            counts: r.counts,
        })
        .collect();
    for now in [0, 250, 600] {
        for flt in [
            Filter::All,
            Filter::Mentions,
            Filter::Direct,
            Filter::Threads,
            Filter::Team(team.clone()),
            Filter::Snoozed,
            Filter::Done,
        ] {
            let mut want: Vec<&inbox::Item> = items
                .iter()
                .filter(|i| flt.matches(i, &marks.get(&i.key).copied().unwrap_or_default(), now))
                .collect();
            want.sort_by(|a, b| inbox::queue_order(a, b));
            let want: Vec<String> = want.iter().map(|i| i.key.to_string()).collect();
            let got = keys(&us.queue(&flt, now, None, 200).unwrap());
            assert_eq!(got, want, "{flt:?} at {now}");
        }
    }
}

#[test]
fn queue_queries_use_indexes() {
    let f = fx();
    let filters = [
        Filter::All,
        Filter::Mentions,
        Filter::Direct,
        Filter::Threads,
        Filter::Team(id('t', 1)),
        Filter::Done,
        Filter::Snoozed,
    ];
    for flt in filters {
        let (sql, team) = user::queue_sql(&flt);
        for cursor in [None, Some(5_i64)] {
            let plan: Vec<String> = f
                .store
                .read(|c| {
                    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = st.query_map(
                        rusqlite::params![id('u', 1), 5, cursor, "k", 51, team],
                        |r| r.get::<_, String>(3),
                    )?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains("INDEX items_"), "{flt:?}: {plan}");
            assert!(!plan.contains("SCAN i "), "{flt:?}: {plan}");
            // Snoozed items are few; every other filter reads rows in index order.
            if flt != Filter::Snoozed {
                assert!(!plan.contains("TEMP B-TREE"), "{flt:?}: {plan}");
            }
        }
    }
}

#[test]
fn concurrent_writer_and_readers() {
    let f = fx();
    let store = Arc::new(f.store);
    let u = uid(1);
    store
        .write(|tx| {
            tx.user(&u).upsert_self(&profile(&u), 1)?;
            tx.upsert_channel(&channel(1, "D", "", 1))?;
            tx.user(&u).upsert_membership(&member(1))
        })
        .unwrap();
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for n in 0..200 {
                let at = 10 + i64::try_from(n).unwrap();
                store
                    .write(|tx| tx.upsert_post(&post(n, 1, None, at, "m")))
                    .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            let u = u.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..100 {
                    let page = store.for_user(&u).queue(&Filter::All, 0, None, 10).unwrap();
                    let at = page.rows.first().map_or(0, |r| r.last_activity_at);
                    assert!(at >= last, "reads never go back in time");
                    last = at;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let page = store.for_user(&u).queue(&Filter::All, 0, None, 10).unwrap();
    assert_eq!(page.rows[0].last_activity_at, 209);
}

#[test]
#[ignore = "timing; run with --ignored --release"]
fn queue_page_at_10k_items() {
    let f = fx();
    let u = uid(1);
    let team = id('t', 1);
    f.store
        .write(|tx| {
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            tx.upsert_channel(&channel(1, "O", &team, 1))?;
            ut.upsert_membership(&member(1))?;
            for n in 0..10_000 {
                ut.upsert_thread(&thread(n, 1, &team, i64::try_from(n).unwrap()))?;
            }
            Ok(())
        })
        .unwrap();
    let us = f.store.for_user(&u);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(us.queue(&Filter::All, 0, None, 50).unwrap().rows.len(), 50);
    }
    let page = t.elapsed() / 100;
    let t = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(us.counts(0).unwrap().all, 10_000);
    }
    let counts = t.elapsed() / 100;
    let plan: Vec<String> = f
        .store
        .read(|c| {
            let mut st = c.prepare("EXPLAIN QUERY PLAN SELECT team_id, sum(is_open = 1 AND coalesce(snoozed_until <= ?2, 1)), sum(is_open = 0) FROM items WHERE user_id = ?1 GROUP BY team_id ORDER BY team_id")?;
            let rows = st.query_map(rusqlite::params![u.as_str(), 0], |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    eprintln!("{plan:?}");
    let t = std::time::Instant::now();
    for _ in 0..100 {
        let n: i64 = f
            .store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM items WHERE user_id = ?1",
                    [u.as_str()],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(n, 10_000);
    }
    eprintln!("bare count {:?}", t.elapsed() / 100);
    eprintln!("10k items: page {page:?}, counts {counts:?}");
}

#[test]
fn live_event_helpers() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    let tk = ItemKey::thread(&id('p', 1)).unwrap();
    let dk = ItemKey::channel(&id('c', 2)).unwrap();
    // Read elsewhere: counts drop, item stays (it is not done).
    assert!(
        us.write(|t| t.set_thread_read(&id('p', 1), 1_500, 0, 0))
            .unwrap()
    );
    assert_eq!(us.item(&tk, 1).unwrap().unwrap().row.counts.unread, 0);
    assert!(
        !us.write(|t| t.set_thread_read(&id('p', 9), 1, 0, 0))
            .unwrap()
    );
    // Unfollow: gone; follow again: back.
    us.write(|t| t.set_thread_following(&id('p', 1), false))
        .unwrap();
    assert!(us.item(&tk, 1).unwrap().is_none());
    us.write(|t| t.set_thread_following(&id('p', 1), true))
        .unwrap();
    assert!(us.item(&tk, 1).unwrap().is_some());
    // Channel viewed: read counts = totals, idempotent on replay.
    assert_eq!(us.item(&dk, 1).unwrap().unwrap().row.counts.unread, 3);
    assert!(
        us.write(|t| t.mark_channel_viewed(&id('c', 2), 5_000))
            .unwrap()
    );
    assert!(
        !us.write(|t| t.mark_channel_viewed(&id('c', 2), 5_000))
            .unwrap()
    );
    let row = us.item(&dk, 1).unwrap().unwrap().row;
    assert_eq!((row.counts.unread, row.counts.mentions), (0, 0));
    // Reactions: newer wins.
    let r = JsonText::new("[{\"emoji_name\":\"+1\"}]");
    assert!(
        f.store
            .write(|tx| tx.set_post_reactions(&id('p', 20), &r, 3_000))
            .unwrap()
    );
    assert!(
        !f.store
            .write(|tx| tx.set_post_reactions(&id('p', 20), &JsonText::new("[]"), 2_500))
            .unwrap()
    );
    assert_eq!(us.post(&id('p', 20)).unwrap().unwrap().reactions, r);
    // Operator helpers.
    assert!(f.store.quick_check().unwrap());
    let backup = f._dir.path().join("backup.db");
    f.store.backup_to(&backup).unwrap();
    let b = Store::open_file(&backup).unwrap();
    assert_eq!(
        b.for_user(&u).counts(10_000).unwrap(),
        us.counts(10_000).unwrap()
    );
}

#[test]
#[ignore = "timing; run with --ignored --release"]
fn write_throughput_batched() {
    let f = fx();
    let u = uid(1);
    let team = id('t', 1);
    f.store
        .write(|tx| {
            let ut = tx.user(&u);
            ut.upsert_self(&profile(&u), 1)?;
            tx.upsert_channel(&channel(1, "O", &team, 1))?;
            ut.upsert_membership(&member(1))?;
            for n in 0..100 {
                tx.upsert_post(&post(n, 1, None, 1, "root"))?;
                ut.upsert_thread(&thread(n, 1, &team, 1))?;
            }
            Ok(())
        })
        .unwrap();
    let t = std::time::Instant::now();
    let events = 5_000;
    for batch in 0..events / 100 {
        f.store
            .write(|tx| {
                let ut = tx.user(&u);
                for k in 0..100 {
                    let n = batch * 100 + k;
                    let at = 10 + i64::try_from(n).unwrap();
                    tx.upsert_post(&post(1_000 + n, 1, Some(n % 100), at, "reply text"))?;
                    ut.upsert_thread(&thread(n % 100, 1, &team, at))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let el = t.elapsed();
    eprintln!(
        "{events} events (post + thread) in {el:?}: {:.0} events/s",
        f64::from(u32::try_from(events).unwrap()) / el.as_secs_f64()
    );
}

#[test]
fn search_is_safe_and_follows_edits() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    for q in [
        "\"",
        "*",
        "AND",
        "NEAR(",
        "-x",
        "message:x",
        "a\"b",
        "(",
        "^",
        "",
        "   ",
        "ü€",
    ] {
        assert!(us.search(q, 10).is_ok(), "{q:?}");
    }
    assert_eq!(us.search("hello dm", 10).unwrap().len(), 1);
    // An edit replaces the indexed words.
    let mut edited = post(20, 2, None, 2_000, "goodbye everyone");
    edited.update_at = 2_500;
    edited.edit_at = 2_500;
    f.store.write(|tx| tx.upsert_post(&edited)).unwrap();
    assert!(us.search("hello", 10).unwrap().is_empty());
    assert_eq!(us.search("goodbye", 10).unwrap().len(), 1);
}

#[test]
fn a_panic_in_a_write_rolls_back_and_the_store_goes_on() {
    let f = fx();
    let u = uid(1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = f.store.write(|tx| {
            tx.user(&u).upsert_self(&profile(&u), 1)?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        });
    }));
    assert!(r.is_err());
    assert!(f.store.user_ids().unwrap().is_empty(), "rolled back");
    f.store
        .write(|tx| tx.user(&u).upsert_self(&profile(&u), 1))
        .unwrap();
    assert_eq!(f.store.user_ids().unwrap(), vec![u]);
}

mod order_independence {
    use proptest::prelude::*;

    use super::*;

    /// One event: a thread version, a channel version, or a post version. Versions of one
    /// entity carry distinct timestamps, so "newer wins" has one answer.
    #[derive(Debug, Clone)]
    enum Ev {
        Thread { root: usize, at: i64, unread: i64 },
        Channel { ch: usize, at: i64 },
        Post { n: usize, ch: usize, at: i64 },
    }

    fn apply(store: &Store, u: &UserId, evs: &[Ev]) {
        let team = id('t', 1);
        for ev in evs {
            store
                .write(|tx| {
                    let ut = tx.user(u);
                    match ev {
                        Ev::Thread { root, at, unread } => {
                            let mut t = thread(*root, 1, &team, *at);
                            t.unread_replies = *unread;
                            ut.upsert_thread(&t)
                        }
                        Ev::Channel { ch, at } => {
                            let mut c = channel(*ch, "D", "", *at);
                            c.update_at = *at;
                            c.total_msg_count = *at;
                            c.total_msg_count_root = *at;
                            tx.upsert_channel(&c)
                        }
                        Ev::Post { n, ch, at } => {
                            let mut p = post(*n, *ch, None, 1, "x");
                            p.update_at = *at;
                            tx.upsert_post(&p)
                        }
                    }
                })
                .unwrap();
        }
    }

    fn setup(u: &UserId) -> Fx {
        let f = fx();
        let team = id('t', 1);
        f.store
            .write(|tx| {
                let ut = tx.user(u);
                ut.upsert_self(&profile(u), 1)?;
                tx.upsert_channel(&channel(1, "O", &team, 1))?;
                for c in 1..=4 {
                    ut.upsert_membership(&member(c))?;
                }
                Ok(())
            })
            .unwrap();
        f
    }

    fn events() -> impl Strategy<Value = Vec<Ev>> {
        // Timestamps: entity index * 1000 + version, so each version is distinct.
        let thread = (0usize..3, 1i64..20, 0i64..5).prop_map(|(root, v, unread)| Ev::Thread {
            root: root + 10,
            at: v * 10 + i64::try_from(root).unwrap(),
            unread,
        });
        let chan = (2usize..5, 1i64..20).prop_map(|(ch, v)| Ev::Channel { ch, at: v * 10 });
        let post = (0usize..3, 1i64..20).prop_map(|(n, v)| Ev::Post {
            n: n + 100,
            ch: 2 + n,
            at: v * 10,
        });
        proptest::collection::vec(prop_oneof![thread, chan, post], 1..25)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Replaying events in any order, with duplicates, ends in the same state as applying
        /// them in order (what a resync after a dropped socket relies on).
        #[test]
        fn any_order_same_state(evs in events(), seed in any::<u64>()) {
            // Keep only the first occurrence of each (entity, timestamp): equal timestamps with
            // different payloads are not a thing the server produces.
            let mut seen = std::collections::HashSet::new();
            let evs: Vec<Ev> = evs.into_iter().filter(|e| seen.insert(match e {
                Ev::Thread { root, at, .. } => (0, *root, *at),
                Ev::Channel { ch, at } => (1, *ch, *at),
                Ev::Post { n, at, .. } => (2, *n, *at),
            })).collect();
            let u = uid(1);
            let a = setup(&u);
            apply(&a.store, &u, &evs);
            let mut shuffled = evs.clone();
            shuffled.extend(evs.iter().take(3).cloned());
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let j = usize::try_from((s >> 33) % (i as u64 + 1)).unwrap();
                shuffled.swap(i, j);
            }
            let b = setup(&u);
            apply(&b.store, &u, &shuffled);
            let ea = serde_json::to_value(a.store.for_user(&u).export().unwrap()).unwrap();
            let eb = serde_json::to_value(b.store.for_user(&u).export().unwrap()).unwrap();
            prop_assert_eq!(&ea["items"], &eb["items"]);
            prop_assert_eq!(&ea["threads"], &eb["threads"]);
            for n in 100..103 {
                let pa = a.store.for_user(&u).post(&id('p', n)).unwrap();
                let pb = b.store.for_user(&u).post(&id('p', n)).unwrap();
                prop_assert_eq!(pa.map(|p| p.update_at), pb.map(|p| p.update_at));
            }
        }
    }
}

#[test]
fn counts_always_equal_a_fresh_count() {
    // Random writes (new threads, marks, snoozes that expire, deletions) interleaved with reads
    // at moving (and sometimes earlier) times: the trigger-kept counters never differ from a
    // scan of every item.
    let f = fx();
    let (u, other) = (uid(1), uid(2));
    let team = id('t', 1);
    let mut seed_v: u64 = 7;
    let mut rnd = |m: u64| {
        seed_v = seed_v
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (seed_v >> 33) % m
    };
    f.store
        .write(|tx| {
            tx.user(&u).upsert_self(&profile(&u), 1)?;
            tx.user(&other).upsert_self(&profile(&other), 1)
        })
        .unwrap();
    let us = f.store.for_user(&u);
    let fresh = |now: i64| {
        f.store
            .read(|c| user::count_items_scan(c, u.as_str(), now))
            .unwrap()
    };
    let mut now = 1_000i64;
    for step in 0..400usize {
        match rnd(7) {
            0 | 1 => {
                let n = usize::try_from(rnd(30)).unwrap();
                let at = now + i64::try_from(rnd(100)).unwrap();
                let who = if rnd(4) == 0 { &other } else { &u };
                // Mentions come and go on a thread that stays open (the counters' trigger
                // must see a change of `mentions > 0` alone).
                let t = Thread {
                    unread_mentions: i64::try_from(rnd(2)).unwrap(),
                    unread_replies: i64::try_from(rnd(3)).unwrap(),
                    ..thread(n, n, &team, at)
                };
                f.store
                    .write(|tx| {
                        tx.upsert_channel(&channel(n, "O", &team, at))?;
                        tx.user(who).upsert_membership(&member(n))?;
                        tx.upsert_post(&post(n, n, None, at, "r"))?;
                        tx.user(who).upsert_thread(&t)
                    })
                    .unwrap();
            }
            5 => {
                // A DM with news (a direct item, no team), read or not.
                let n = 100 + usize::try_from(rnd(5)).unwrap();
                let at = now + i64::try_from(rnd(100)).unwrap();
                let m = Membership {
                    msg_count: i64::try_from(rnd(12)).unwrap(),
                    ..member(n)
                };
                f.store
                    .write(|tx| {
                        tx.upsert_channel(&channel(n, "D", "", at))?;
                        tx.user(&u).upsert_membership(&m)
                    })
                    .unwrap();
            }
            2 | 3 => {
                let n = usize::try_from(rnd(30)).unwrap();
                let m = Marks {
                    done_at: (rnd(2) == 0).then(|| now + i64::try_from(rnd(50)).unwrap()),
                    snoozed_until: (rnd(2) == 0).then(|| now + i64::try_from(rnd(80)).unwrap()),
                };
                let key = ItemKey::thread(&id('p', n)).unwrap();
                f.store.write(|tx| tx.user(&u).set_marks(&key, m)).unwrap();
            }
            4 => {
                let n = usize::try_from(rnd(30)).unwrap();
                f.store
                    .write(|tx| tx.user(&u).remove_membership(&id('c', n)))
                    .unwrap();
            }
            _ => {}
        }
        // Time mostly moves forward, across snooze expiries; now and then it steps back.
        now = if rnd(10) == 0 {
            now - i64::try_from(rnd(40)).unwrap()
        } else {
            now + i64::try_from(rnd(20)).unwrap()
        };
        let want = fresh(now);
        assert_eq!(us.counts(now).unwrap(), want, "step {step} at {now}");
    }
    // Deleting the user's data and starting again starts from zero.
    us.delete_all().unwrap();
    f.store
        .write(|tx| tx.user(&u).upsert_self(&profile(&u), 1))
        .unwrap();
    assert_eq!(us.counts(now).unwrap(), fresh(now));
}

#[test]
fn search_rows_are_written_at_commit_and_roll_back_with_the_transaction() {
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let us = f.store.for_user(&u);
    // One transaction: a new post, then its edit, and a post created and deleted.
    f.store
        .write(|tx| {
            tx.upsert_post(&post(30, 2, None, 3_000, "first words zebra"))?;
            let mut edited = post(30, 2, None, 3_000, "second words giraffe");
            edited.update_at = 3_100;
            tx.upsert_post(&edited)?;
            tx.upsert_post(&post(31, 2, None, 3_200, "gone okapi"))?;
            let mut del = post(31, 2, None, 3_200, "");
            del.update_at = 3_300;
            del.delete_at = 3_300;
            tx.upsert_post(&del)
        })
        .unwrap();
    assert!(us.search("zebra", 10).unwrap().is_empty());
    assert_eq!(us.search("giraffe", 10).unwrap().len(), 1);
    assert!(us.search("okapi", 10).unwrap().is_empty());
    // A failed transaction leaves nothing queued for the next one.
    let r: Result<(), StoreError> = f.store.write(|tx| {
        tx.upsert_post(&post(32, 2, None, 3_400, "rolled back tapir"))?;
        Err(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    });
    assert!(r.is_err());
    f.store
        .write(|tx| tx.upsert_post(&post(33, 2, None, 3_500, "after lemur")))
        .unwrap();
    assert!(us.search("tapir", 10).unwrap().is_empty());
    assert_eq!(us.search("lemur", 10).unwrap().len(), 1);
    let left: i64 = f
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM posts_fts WHERE posts_fts MATCH 'zebra OR okapi OR tapir'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn queue_counters_are_backfilled_by_their_migration() {
    // Items written by a binary without the counters (version 7) are counted after the upgrade.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let u = uid(1);
    {
        let s = Store::open_at_version(&path, 7).unwrap();
        seed(&s, &u, 0);
        let key = ItemKey::channel(&id('c', 3)).unwrap();
        s.write(|tx| {
            tx.user(&u).set_marks(
                &key,
                Marks {
                    done_at: None,
                    snoozed_until: Some(10_000),
                },
            )
        })
        .unwrap();
    }
    let s = Store::open_file(&path).unwrap();
    for now in [0, 9_999, 10_000, 20_000] {
        let scan = s
            .read(|c| user::count_items_scan(c, u.as_str(), now))
            .unwrap();
        assert!(scan.all > 0);
        assert_eq!(s.for_user(&u).counts(now).unwrap(), scan, "at {now}");
    }
}

#[test]
fn snoozed_part_of_the_counts_reads_only_a_covering_index() {
    let f = fx();
    let plan: Vec<String> = f
        .store
        .read(|c| {
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {}", user::EXPIRED_SNOOZES))?;
            let rows = st.query_map(rusqlite::params!["u", 5], |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    // A range of the index up to `now`: the snoozes still running are not read.
    assert!(
        plan.iter()
            .any(|p| p.contains("COVERING INDEX items_snoozed") && p.contains("snoozed_until<?")),
        "{plan:?}"
    );
}

/// The items kept up to date event by event equal the items derived from scratch, after every
/// transaction of a random multi-user history (posts, replies, edits, deletions, thread rows,
/// mentions, memberships, channel views, marks), each transaction holding several events. This
/// is what lets a post skip re-deriving other users' items when none of their inputs moved,
/// and lets a transaction derive each item once.
#[test]
fn incremental_items_equal_items_derived_from_scratch() {
    fn snapshot(store: &Store) -> Vec<String> {
        store
            .read(|c| {
                let mut st = c.prepare(
                    "SELECT user_id, item_key, kind, channel_id, team_id, last_activity_at, unread,
                            mentions, urgent, done_at, snoozed_until, is_open, is_direct
                       FROM items ORDER BY user_id, item_key",
                )?;
                let rows = st
                    .query_map([], |r| {
                        let mut s = String::new();
                        for i in 0..13 {
                            let v: rusqlite::types::Value = r.get(i)?;
                            s.push_str(&format!("{v:?}|"));
                        }
                        Ok(s)
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .unwrap()
    }
    for seed in [1_u64, 7, 42, 2024] {
        let f = fx();
        let mut s = seed;
        let mut rnd = move |m: u64| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from((s >> 33) % m).unwrap()
        };
        let team = id('t', 1);
        let users: Vec<UserId> = (1..=4).map(uid).collect();
        // Channels 1-2 open (team), 3 DM, 4 GM.
        f.store
            .write(|tx| {
                for u in &users {
                    tx.user(u).upsert_self(&profile(u), 1)?;
                }
                for (n, ty) in [(1, "O"), (2, "O"), (3, "D"), (4, "G")] {
                    let t = if ty == "O" { team.as_str() } else { "" };
                    tx.upsert_channel(&channel(n, ty, t, 0))?;
                }
                Ok(())
            })
            .unwrap();
        let mut live_posts: Vec<(usize, usize, Option<usize>)> = Vec::new(); // (post, channel, root)
        let mut next_post = 100;
        let mut at = 1_000_i64;
        for step in 0..150 {
            let events = 1 + rnd(6);
            f.store
                .write(|tx| {
                    for _ in 0..events {
                        at += 10;
                        let u = &users[rnd(users.len() as u64)];
                        let ut = tx.user(u);
                        let ch = 1 + rnd(4);
                        let team_of = if ch <= 2 { team.as_str() } else { "" };
                        match rnd(10) {
                            0 | 1 => {
                                // A root, or a reply to a known root of the same channel.
                                let roots: Vec<usize> = live_posts
                                    .iter()
                                    .filter(|p| p.1 == ch && p.2.is_none())
                                    .map(|p| p.0)
                                    .collect();
                                let root = (rnd(3) > 0 && !roots.is_empty())
                                    .then(|| roots[rnd(roots.len() as u64)]);
                                tx.upsert_post(&post(next_post, ch, root, at, "text"))?;
                                live_posts.push((next_post, ch, root));
                                next_post += 1;
                            }
                            2 if !live_posts.is_empty() => {
                                // Delete or edit a post.
                                let i = rnd(live_posts.len() as u64);
                                let (pid, c, root) = live_posts[i];
                                let mut p = post(pid, c, root, at - 5_000, "edited");
                                p.update_at = at;
                                if rnd(2) == 0 {
                                    p.delete_at = at;
                                    live_posts.remove(i);
                                    if root.is_none() {
                                        live_posts.retain(|q| q.2 != Some(pid));
                                    }
                                }
                                tx.upsert_post(&p)?;
                            }
                            3 | 4 if !live_posts.is_empty() => {
                                let (pid, c, root) = live_posts[rnd(live_posts.len() as u64)];
                                let root = root.unwrap_or(pid);
                                let mut t = thread(root, c, if c <= 2 { &team } else { "" }, at);
                                t.reply_count = i64::try_from(rnd(3)).unwrap();
                                t.unread_replies = i64::try_from(rnd(3)).unwrap();
                                t.unread_mentions = i64::try_from(rnd(2)).unwrap();
                                t.following = rnd(4) > 0;
                                t.is_urgent = rnd(5) == 0;
                                ut.upsert_thread(&t)?;
                            }
                            5 if !live_posts.is_empty() => {
                                let (pid, c, root) = live_posts[rnd(live_posts.len() as u64)];
                                if root.is_none() {
                                    ut.add_mention(&Mention {
                                        post_id: id('p', pid),
                                        channel_id: id('c', c),
                                        team_id: if c <= 2 { team.clone() } else { String::new() },
                                        create_at: at,
                                    })?;
                                }
                            }
                            6 => {
                                let mut m = member(ch);
                                m.last_viewed_at = at - i64::try_from(rnd(3_000)).unwrap();
                                m.last_update_at = at;
                                m.mention_count = i64::try_from(rnd(3)).unwrap();
                                ut.upsert_membership(&m)?;
                            }
                            7 => {
                                if rnd(3) == 0 {
                                    ut.remove_membership(&id('c', ch))?;
                                } else {
                                    ut.mark_channel_viewed(&id('c', ch), at)?;
                                }
                            }
                            8 => {
                                let mut c = channel(ch, ["O", "O", "D", "G"][ch - 1], team_of, at);
                                c.total_msg_count = i64::try_from(10 + rnd(20)).unwrap();
                                tx.upsert_channel(&c)?;
                            }
                            _ => {
                                let key = if rnd(2) == 0 || live_posts.is_empty() {
                                    ItemKey::channel(&id('c', ch)).unwrap()
                                } else {
                                    let p = live_posts[rnd(live_posts.len() as u64)];
                                    ItemKey::thread(&id('p', p.2.unwrap_or(p.0))).unwrap()
                                };
                                let m = Marks {
                                    done_at: (rnd(2) == 0).then_some(at - 100),
                                    snoozed_until: (rnd(3) == 0).then_some(at + 100),
                                };
                                ut.set_marks(&key, m)?;
                            }
                        }
                    }
                    Ok(())
                })
                .unwrap();
            let incremental = snapshot(&f.store);
            f.store.write(|tx| items::rederive_all(tx.conn)).unwrap();
            let scratch = snapshot(&f.store);
            assert_eq!(
                incremental, scratch,
                "seed {seed}, after transaction {step}"
            );
        }
        assert!(
            !snapshot(&f.store).is_empty(),
            "seed {seed}: the history produced no item (the test would prove nothing)"
        );
    }
}

#[test]
fn search_finds_the_users_items_by_any_of_their_messages_and_only_the_users() {
    use crate::inbox::search::SearchQuery;
    let f = fx();
    let (a, b) = (uid(1), uid(2));
    seed(&f.store, &a, 0);
    seed(&f.store, &b, 100);
    f.store
        .write(|tx| {
            tx.upsert_profiles(&[Profile {
                user_id: id('u', 99),
                username: "poster".into(),
                ..Profile::default()
            }])?;
            // An older reply of the thread holds the word; the row's preview is the root.
            tx.upsert_post(&post(11, 1, Some(1), 1_200, "the deployment rolled back"))?;
            let mut other = post(12, 1, Some(1), 1_300, "rolled forward by someone");
            other.user_id = id('u', 98);
            tx.upsert_post(&other)
        })
        .unwrap();
    let ua = f.store.for_user(&a);
    let find = |us: &UserStore<'_>, q: &str| -> Vec<(String, String)> {
        us.search_items(&SearchQuery::parse(q), 100)
            .unwrap()
            .into_iter()
            .map(|m| (m.key.to_string(), m.post.post_id))
            .collect()
    };
    let thread = format!("t_{}", id('p', 1));
    assert_eq!(find(&ua, "deploy*"), vec![(thread.clone(), id('p', 11))]);
    assert_eq!(
        find(&ua, "Rolled"),
        vec![(thread.clone(), id('p', 12))],
        "newest match per item"
    );
    assert_eq!(
        find(&ua, "\"rolled back\""),
        vec![(thread.clone(), id('p', 11))]
    );
    assert_eq!(
        find(&ua, "rolled -forward"),
        vec![(thread.clone(), id('p', 11))]
    );
    assert_eq!(
        find(&ua, "rolled from:poster"),
        vec![(thread.clone(), id('p', 11))]
    );
    assert_eq!(find(&ua, "from:nobody rolled"), vec![]);
    assert_eq!(
        find(&ua, "hello"),
        vec![(format!("c_{}", id('c', 2)), id('p', 20))]
    );
    assert_eq!(
        find(&ua, "deploy"),
        vec![],
        "whole words unless a * says otherwise"
    );
    // `in:` a channel by its name: alone, or with words; another user's channel finds nothing.
    assert_eq!(
        find(&ua, "in:ch2"),
        vec![(format!("c_{}", id('c', 2)), id('p', 20))]
    );
    assert_eq!(
        find(&ua, "rolled in:~CH1"),
        vec![(thread.clone(), id('p', 12))]
    );
    assert_eq!(find(&ua, "rolled in:ch2"), vec![]);
    assert_eq!(find(&ua, "in:ch101"), vec![], "bob's channel");
    // `from:` alone lists the person's messages, one per item, newest first.
    assert_eq!(
        find(&ua, "from:poster")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec![
            format!("t_{}", id('p', 4)),
            format!("c_{}", id('c', 2)),
            thread.clone()
        ]
    );
    // The same words in the other user's channels are theirs alone.
    let ub = f.store.for_user(&b);
    assert_eq!(
        find(&ub, "canary"),
        vec![(format!("t_{}", id('p', 101)), id('p', 101))]
    );
    assert_eq!(find(&ub, "rolled"), vec![]);
    // Done items are found, with their state; deleted messages are not.
    ua_done(&f.store, &a, &thread);
    let done = ua.search_items(&SearchQuery::parse("rolled"), 100).unwrap();
    assert!(!done[0].is_open);
    let mut gone = post(12, 1, Some(1), 1_300, "rolled forward by someone");
    gone.delete_at = 1_400;
    f.store.write(|tx| tx.upsert_post(&gone)).unwrap();
    assert_eq!(find(&ua, "forward"), vec![]);
    // Nothing to look for finds nothing (and never reaches FTS5 as syntax).
    for q in ["", "-rolled", "\"", "NEAR(", "from:", "*"] {
        assert_eq!(find(&ua, q), vec![], "{q:?}");
    }
}

fn ua_done(store: &Store, u: &UserId, key: &str) {
    let key = ItemKey::parse(key).unwrap();
    store
        .write(|tx| {
            tx.user(u).set_marks(
                &key,
                Marks {
                    done_at: Some(10_000),
                    snoozed_until: None,
                },
            )
        })
        .unwrap();
}

#[test]
fn a_word_in_more_messages_than_the_search_reads_finds_its_newest_uses() {
    use crate::inbox::search::SearchQuery;
    let f = fx();
    let (a, b) = (uid(1), uid(2));
    seed(&f.store, &a, 0);
    seed(&f.store, &b, 100);
    // Alice's old message, then 60 newer ones in bob's channel (the test bound is 50).
    f.store
        .write(|tx| {
            tx.upsert_post(&post(30, 1, Some(1), 1_100, "common word, rare zanzibar"))?;
            for n in 0..60 {
                tx.upsert_post(&post(
                    200 + n,
                    101,
                    Some(101),
                    5_000 + i64::try_from(n).unwrap(),
                    "common word",
                ))?;
            }
            Ok(())
        })
        .unwrap();
    let ua = f.store.for_user(&a);
    let n = |q: &str| ua.search_items(&SearchQuery::parse(q), 100).unwrap().len();
    assert_eq!(
        n("common"),
        0,
        "past the bound: only the newest 50 uses are read"
    );
    assert_eq!(n("zanzibar"), 1);
    assert_eq!(n("common zanzibar"), 1);
    assert_eq!(
        f.store
            .for_user(&b)
            .search_items(&SearchQuery::parse("common"), 100)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_first_unread_message_is_after_the_last_view_and_only_the_users() {
    let f = fx();
    let (a, b) = (uid(1), uid(2));
    seed(&f.store, &a, 0);
    seed(&f.store, &b, 100);
    let ua = f.store.for_user(&a);
    let dm = ItemKey::channel(&id('c', 2)).unwrap();
    let thread_key = ItemKey::thread(&id('p', 1)).unwrap();
    // Never viewed: the oldest message (the DM's root post; the thread's root).
    assert_eq!(ua.first_unread_post(&dm).unwrap(), Some(id('p', 20)));
    assert_eq!(ua.first_unread_post(&thread_key).unwrap(), Some(id('p', 1)));
    f.store
        .write(|tx| {
            tx.upsert_post(&post(21, 2, None, 2_500, "second dm"))?;
            // A reply in the DM: its thread is an item of its own; the DM counts root posts.
            tx.upsert_post(&post(22, 2, Some(20), 2_200, "reply in dm"))?;
            let ut = tx.user(&a);
            ut.upsert_membership(&Membership {
                last_viewed_at: 2_100,
                ..member(2)
            })?;
            ut.upsert_thread(&Thread {
                last_viewed_at: 1_000,
                ..thread(1, 1, &id('t', 1), 1_500)
            })
        })
        .unwrap();
    assert_eq!(ua.first_unread_post(&dm).unwrap(), Some(id('p', 21)));
    assert_eq!(
        ua.first_unread_post(&thread_key).unwrap(),
        Some(id('p', 10))
    );
    // All read: nothing.
    f.store
        .write(|tx| {
            tx.user(&a).upsert_membership(&Membership {
                last_viewed_at: 3_000,
                ..member(2)
            })
        })
        .unwrap();
    assert_eq!(ua.first_unread_post(&dm).unwrap(), None);
    // Another user's conversation is not found.
    assert_eq!(
        ua.first_unread_post(&ItemKey::channel(&id('c', 102)).unwrap())
            .unwrap(),
        None
    );
    assert_eq!(
        f.store
            .for_user(&b)
            .first_unread_post(&ItemKey::thread(&id('p', 1)).unwrap())
            .unwrap(),
        None
    );
}

#[test]
fn triage_stats_count_recent_done_marks_and_the_inbox_waiting() {
    const DAY: i64 = 86_400_000;
    let f = fx();
    let (a, b) = (uid(1), uid(2));
    seed(&f.store, &a, 0);
    seed(&f.store, &b, 100);
    let now = 20 * DAY;
    let ua = f.store.for_user(&a);
    let before = ua.triage_stats(now).unwrap();
    assert_eq!((before.done_day, before.done_week), (0, 0));
    // Seeded activity is at t ≈ 0: every open item has waited more than a day; the oldest
    // is the thread (activity 1 500), unless it is done.
    let open = ua.counts(now).unwrap().all;
    assert_eq!(before.waiting_over_day, open);
    let thread = ItemKey::thread(&id('p', 1)).unwrap();
    assert_eq!(before.oldest, Some((thread.clone(), 1_500)));
    let mark = |key: &ItemKey, done_at: Option<i64>, snoozed_until: Option<i64>| {
        f.store
            .write(|tx| {
                tx.user(&a).set_marks(
                    key,
                    Marks {
                        done_at,
                        snoozed_until,
                    },
                )
            })
            .unwrap();
    };
    // Done an hour ago, done three days ago, done ten days ago; one item snoozed.
    mark(&thread, Some(now - 3_600_000), None);
    mark(
        &ItemKey::channel(&id('c', 2)).unwrap(),
        Some(now - 3 * DAY),
        None,
    );
    mark(
        &ItemKey::channel(&id('c', 3)).unwrap(),
        Some(now - 10 * DAY),
        None,
    );
    mark(
        &ItemKey::thread(&id('p', 4)).unwrap(),
        None,
        Some(now + DAY),
    );
    let s = ua.triage_stats(now).unwrap();
    assert_eq!((s.done_day, s.done_week), (1, 2));
    assert_eq!(s.waiting_over_day, ua.counts(now).unwrap().all);
    assert_eq!(s.waiting_over_day, 0, "every item done or snoozed");
    assert_eq!(s.oldest, None);
    // Another user's figures are their own.
    let sb = f.store.for_user(&b).triage_stats(now).unwrap();
    assert_eq!((sb.done_day, sb.done_week), (0, 0));
    assert_eq!(
        sb.oldest,
        Some((ItemKey::thread(&id('p', 101)).unwrap(), 1_500))
    );
}

/// Writing the saved searches says whether anything changed (the live stream then sends the
/// sidebar's list): a full read that finds the same list, or the same search saved again, is
/// no change; a new label, a removal or a new search is.
#[test]
fn saved_search_writes_say_whether_they_changed_anything() {
    use crate::inbox::searches::SavedSearch;
    let f = fx();
    let u = uid(1);
    seed(&f.store, &u, 0);
    let a = SavedSearch::new("", "deploy", "all", "").unwrap();
    let b = SavedSearch::new("", "zebra", "done", "").unwrap();
    let replace = |list: Vec<SavedSearch>| {
        f.store
            .write(|tx| tx.user(&u).replace_saved_searches(&list))
            .unwrap()
    };
    let set = |name: &str, s: Option<SavedSearch>| {
        f.store
            .write(|tx| tx.user(&u).set_saved_search(name, s.as_ref()))
            .unwrap()
    };
    assert!(replace(vec![a.clone(), b.clone()]));
    assert!(!replace(vec![b.clone(), a.clone()]), "the same list");
    assert!(!set(&a.name, Some(a.clone())), "the same search again");
    let relabelled = SavedSearch::new("Deploys", "deploy", "all", "").unwrap();
    assert!(set(&a.name, Some(relabelled.clone())));
    assert!(replace(vec![relabelled.clone()]), "b removed");
    assert!(!set(&b.name, None), "b is gone already");
    assert!(set(&relabelled.name, None));
    assert!(!replace(Vec::new()));
    assert!(f.store.for_user(&u).saved_searches().unwrap().is_empty());
}
