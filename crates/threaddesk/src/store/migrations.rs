//! Numbered, append-only, embedded migrations tracked by `PRAGMA user_version`.
//!
//! Never edit or reorder an entry once released: add a new one. `MIGRATIONS[i]` takes the
//! database from version `i` to `i + 1`; head = `MIGRATIONS.len()`. Each runs in its own
//! transaction together with the `user_version` bump. A database newer than the binary is refused.

use rusqlite::Connection;

use super::StoreError;

/// The schema, one step per entry.
pub const MIGRATIONS: &[&str] = &[
    // 1: the cache.
    r"
CREATE TABLE users (
    user_id      TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    first_name   TEXT NOT NULL DEFAULT '',
    last_name    TEXT NOT NULL DEFAULT '',
    nickname     TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

-- Encrypted by the caller's cipher; the store only sees opaque bytes.
CREATE TABLE user_tokens (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    blob        BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind)
) STRICT, WITHOUT ROWID;

-- Session ids are stored as SHA-256 hashes only.
CREATE TABLE web_sessions (
    id_hash       BLOB PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);

-- OAuth state is stored hashed; single use; 10-minute expiry.
CREATE TABLE oauth_attempts (
    state_hash     BLOB PRIMARY KEY,
    binding_hash   BLOB NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    redirect       TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX oauth_attempts_created ON oauth_attempts(created_at);

CREATE TABLE teams (
    team_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    update_at     INTEGER NOT NULL,
    delete_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE user_teams (
    user_id  TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    team_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, team_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE channels (
    channel_id            TEXT PRIMARY KEY,
    team_id               TEXT NOT NULL,
    type                  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    total_msg_count       INTEGER NOT NULL,
    total_msg_count_root  INTEGER NOT NULL,
    last_post_at          INTEGER NOT NULL,
    last_root_post_at     INTEGER NOT NULL,
    update_at             INTEGER NOT NULL,
    delete_at             INTEGER NOT NULL
) STRICT;

CREATE TABLE memberships (
    user_id               TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    channel_id            TEXT NOT NULL,
    msg_count             INTEGER NOT NULL,
    mention_count         INTEGER NOT NULL,
    msg_count_root        INTEGER NOT NULL,
    mention_count_root    INTEGER NOT NULL,
    urgent_mention_count  INTEGER NOT NULL,
    last_viewed_at        INTEGER NOT NULL,
    last_update_at        INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_channel ON memberships(channel_id, user_id);

CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    first_name  TEXT NOT NULL,
    last_name   TEXT NOT NULL,
    nickname    TEXT NOT NULL,
    update_at   INTEGER NOT NULL,
    delete_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE threads (
    user_id          TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    root_id          TEXT NOT NULL,
    channel_id       TEXT NOT NULL,
    team_id          TEXT NOT NULL,
    reply_count      INTEGER NOT NULL,
    last_reply_at    INTEGER NOT NULL,
    last_viewed_at   INTEGER NOT NULL,
    unread_replies   INTEGER NOT NULL,
    unread_mentions  INTEGER NOT NULL,
    is_urgent        INTEGER NOT NULL,
    following        INTEGER NOT NULL,
    delete_at        INTEGER NOT NULL,
    participants     TEXT NOT NULL,
    PRIMARY KEY (user_id, root_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX threads_root ON threads(root_id);
CREATE INDEX threads_last_reply ON threads(last_reply_at);

-- Shared cache of recent posts; read only through a user handle that checks membership.
CREATE TABLE posts (
    seq         INTEGER PRIMARY KEY,
    post_id     TEXT NOT NULL UNIQUE,
    channel_id  TEXT NOT NULL,
    root_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    create_at   INTEGER NOT NULL,
    update_at   INTEGER NOT NULL,
    edit_at     INTEGER NOT NULL,
    delete_at   INTEGER NOT NULL,
    message     TEXT NOT NULL,
    props       TEXT NOT NULL,
    file_ids    TEXT NOT NULL,
    reactions   TEXT NOT NULL,
    metadata    TEXT NOT NULL
) STRICT;
CREATE INDEX posts_channel ON posts(channel_id, create_at);
CREATE INDEX posts_root ON posts(root_id, create_at);
CREATE INDEX posts_create ON posts(create_at);

-- Root posts that mention the user (item kind 'mention' until someone replies).
CREATE TABLE user_mentions (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    post_id     TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    team_id     TEXT NOT NULL,
    create_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, post_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX user_mentions_post ON user_mentions(post_id);
CREATE INDEX user_mentions_create ON user_mentions(create_at);

-- Done / snooze marks, mirrored from Mattermost preferences.
CREATE TABLE marks (
    user_id        TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    item_key       TEXT NOT NULL,
    done_at        INTEGER,
    snoozed_until  INTEGER,
    PRIMARY KEY (user_id, item_key)
) STRICT, WITHOUT ROWID;

-- The materialised queue: one row per item, computed by inbox::derive_* on every change.
-- is_open = has news since done_at (snooze depends on now and is filtered at query time).
CREATE TABLE items (
    user_id           TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    item_key          TEXT NOT NULL,
    kind              TEXT NOT NULL,
    channel_id        TEXT NOT NULL,
    team_id           TEXT NOT NULL,
    last_activity_at  INTEGER NOT NULL,
    unread            INTEGER NOT NULL,
    mentions          INTEGER NOT NULL,
    urgent            INTEGER NOT NULL,
    done_at           INTEGER,
    snoozed_until     INTEGER,
    is_open           INTEGER NOT NULL,
    -- 1 for DM/GM items, 0 for threads and mention posts (one index serves both filters).
    is_direct         INTEGER NOT NULL,
    PRIMARY KEY (user_id, item_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX items_queue ON items(user_id, is_open, last_activity_at DESC, item_key);
CREATE INDEX items_direct ON items(user_id, is_direct, is_open, last_activity_at DESC, item_key);
CREATE INDEX items_team ON items(user_id, team_id, is_open, last_activity_at DESC, item_key);
CREATE INDEX items_mentions ON items(user_id, last_activity_at DESC, item_key)
    WHERE is_open = 1 AND mentions > 0;
-- Covering index for the per-filter counts (one pass, no table lookups).
CREATE INDEX items_counts ON items(user_id, team_id, is_open, is_direct, mentions, snoozed_until);
CREATE INDEX items_snoozed ON items(user_id, snoozed_until) WHERE snoozed_until IS NOT NULL;
CREATE INDEX items_channel ON items(channel_id);
CREATE INDEX items_activity ON items(last_activity_at);

CREATE TABLE sync_state (
    user_id            TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    ws_connection_id   TEXT NOT NULL DEFAULT '',
    ws_next_seq        INTEGER NOT NULL DEFAULT 0,
    last_full_sync_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE team_sync (
    user_id              TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    team_id              TEXT NOT NULL,
    last_thread_sync_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, team_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    item_key         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    pending_post_id  TEXT NOT NULL,
    marker           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'inflight', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_sent_at    INTEGER,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    post_id          TEXT,
    created_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_user ON outbox(user_id, state, id);
",
    // 2: full-text search over cached messages. Contentless (the text lives once, in posts);
    // rowid = posts.seq, deleted together with the post.
    r"
CREATE VIRTUAL TABLE posts_fts USING fts5(message, content='', contentless_delete=1);
INSERT INTO posts_fts (rowid, message) SELECT seq, message FROM posts WHERE delete_at = 0;
",
    // 3: the retention cutoff of the last purge: items older than it are not materialised
    // again (e.g. when a full sync re-sends an old DM channel).
    r"
CREATE TABLE retention (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    cutoff  INTEGER NOT NULL
) STRICT;
INSERT INTO retention (id, cutoff) VALUES (1, 0);
",
    // 4: a per-user generation of the materialised queue, set by triggers on every change to
    // the user's items from one store-wide clock (so a user deleted and created again never
    // gets back an old value). Readers compare it, in their own snapshot, with a memo of the
    // per-filter counts: `counts` is O(1) while nothing changed instead of a scan of every
    // item (research P-5).
    r"
CREATE TABLE items_clock (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    tick  INTEGER NOT NULL
) STRICT;
INSERT INTO items_clock (id, tick) VALUES (1, 0);
ALTER TABLE users ADD COLUMN items_gen INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER items_gen_insert AFTER INSERT ON items BEGIN
    UPDATE items_clock SET tick = tick + 1 WHERE id = 1;
    UPDATE users SET items_gen = (SELECT tick FROM items_clock WHERE id = 1)
     WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER items_gen_update AFTER UPDATE ON items BEGIN
    UPDATE items_clock SET tick = tick + 1 WHERE id = 1;
    UPDATE users SET items_gen = (SELECT tick FROM items_clock WHERE id = 1)
     WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER items_gen_delete AFTER DELETE ON items BEGIN
    UPDATE items_clock SET tick = tick + 1 WHERE id = 1;
    UPDATE users SET items_gen = (SELECT tick FROM items_clock WHERE id = 1)
     WHERE user_id = OLD.user_id;
END;
",
    // 5: a summary of each browser session's user agent ("Firefox on Linux": a fixed phrase
    // chosen by `web::session::agent_summary`, never the raw header) for the sessions list.
    r"
ALTER TABLE web_sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
",
    // 6: saved posts (Mattermost's `flagged_post` preferences) mirrored per user, so items and
    // posts can show them; kept live from preference events, replaced by every full read.
    r"
CREATE TABLE saved_posts (
    user_id  TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    post_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, post_id)
) STRICT, WITHOUT ROWID;
",
    // 7: the sync engine's memory of the last sync (team counters, DM/GM positions, channel
    // list ETag; JSON written by `sync::engine`), so a restart can resume the WebSocket or run
    // an incremental resync instead of a full initial sync.
    r"
ALTER TABLE sync_state ADD COLUMN memo TEXT NOT NULL DEFAULT '';
",
    // 8: per-team queue counters kept by triggers in the same transaction as each item change
    // (the research's "badge counters"), over the items that are not snoozed; snoozed items
    // depend on the time and are counted at read time through `items_snoozed`. `counts` then
    // reads at most one row per team plus the snoozed items, never every item (P-5).
    r"
CREATE TABLE item_counts (
    user_id    TEXT NOT NULL,
    team_id    TEXT NOT NULL,
    open_n     INTEGER NOT NULL DEFAULT 0,
    mention_n  INTEGER NOT NULL DEFAULT 0,
    direct_n   INTEGER NOT NULL DEFAULT 0,
    done_n     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, team_id)
) STRICT, WITHOUT ROWID;
INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n)
SELECT user_id, team_id,
       sum(is_open = 1 AND snoozed_until IS NULL),
       sum(is_open = 1 AND snoozed_until IS NULL AND mentions > 0),
       sum(is_open = 1 AND snoozed_until IS NULL AND is_direct = 1),
       sum(is_open = 0)
  FROM items GROUP BY user_id, team_id;
CREATE TRIGGER item_counts_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n)
    VALUES (NEW.user_id, NEW.team_id,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.mentions > 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.is_direct = 1,
            NEW.is_open = 0)
    ON CONFLICT (user_id, team_id) DO UPDATE SET
        open_n = open_n + excluded.open_n, mention_n = mention_n + excluded.mention_n,
        direct_n = direct_n + excluded.direct_n, done_n = done_n + excluded.done_n;
END;
CREATE TRIGGER item_counts_delete AFTER DELETE ON items BEGIN
    UPDATE item_counts SET
        open_n = open_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL),
        mention_n = mention_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.mentions > 0),
        direct_n = direct_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.is_direct = 1),
        done_n = done_n - (OLD.is_open = 0)
     WHERE user_id = OLD.user_id AND team_id = OLD.team_id;
END;
CREATE TRIGGER item_counts_update AFTER UPDATE ON items BEGIN
    UPDATE item_counts SET
        open_n = open_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL),
        mention_n = mention_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.mentions > 0),
        direct_n = direct_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.is_direct = 1),
        done_n = done_n - (OLD.is_open = 0)
     WHERE user_id = OLD.user_id AND team_id = OLD.team_id;
    INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n)
    VALUES (NEW.user_id, NEW.team_id,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.mentions > 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.is_direct = 1,
            NEW.is_open = 0)
    ON CONFLICT (user_id, team_id) DO UPDATE SET
        open_n = open_n + excluded.open_n, mention_n = mention_n + excluded.mention_n,
        direct_n = direct_n + excluded.direct_n, done_n = done_n + excluded.done_n;
END;
",
    // 9: the items generation of migration 4 is no longer read (the counters of migration 8
    // make `counts` cheap without a memo); its triggers cost two writes per item change.
    r"
DROP TRIGGER items_gen_insert;
DROP TRIGGER items_gen_update;
DROP TRIGGER items_gen_delete;
DROP TABLE items_clock;
ALTER TABLE users DROP COLUMN items_gen;
",
    // 10: the snoozed items' index covers what `counts` reads of them (no row lookups: the
    // snoozed part of the counts is read at request time, P-5 at 100 k items).
    r"
DROP INDEX items_snoozed;
CREATE INDEX items_snoozed ON items(user_id, snoozed_until, team_id, is_open, mentions, is_direct)
    WHERE snoozed_until IS NOT NULL;
",
    // 11: every item change went through 8 indexes (P-13). `items_counts` has no reader since
    // the counters of migration 8; `items_channel` served only the re-derivation of one user's
    // items in a channel, which it answered by walking every member's items of the channel.
    r"
DROP INDEX items_counts;
DROP INDEX items_channel;
CREATE INDEX items_user_channel ON items(user_id, channel_id);
",
    // 12: fewer b-trees per item change (research P-13; measured on its bench: the item
    // indexes were half of the write path's CPU). `items_activity` and `threads_last_reply`
    // served only the retention purge, which now walks the primary keys instead (once per
    // purge, in chunks, on a reader); `items_direct` is covered by `items_team`, DM/GM items
    // having no team (`team_id = ''`). The counters' update trigger fires only when a counted
    // fact changes, not on every new reply.
    r"
DROP INDEX items_activity;
DROP INDEX threads_last_reply;
DROP INDEX items_direct;
DROP TRIGGER item_counts_update;
CREATE TRIGGER item_counts_update AFTER UPDATE OF team_id, is_open, snoozed_until, mentions, is_direct ON items
WHEN OLD.team_id IS NOT NEW.team_id OR OLD.is_open IS NOT NEW.is_open
  OR (OLD.snoozed_until IS NULL) <> (NEW.snoozed_until IS NULL)
  OR (OLD.mentions > 0) <> (NEW.mentions > 0) OR OLD.is_direct IS NOT NEW.is_direct
BEGIN
    UPDATE item_counts SET
        open_n = open_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL),
        mention_n = mention_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.mentions > 0),
        direct_n = direct_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.is_direct = 1),
        done_n = done_n - (OLD.is_open = 0)
     WHERE user_id = OLD.user_id AND team_id = OLD.team_id;
    INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n)
    VALUES (NEW.user_id, NEW.team_id,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.mentions > 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.is_direct = 1,
            NEW.is_open = 0)
    ON CONFLICT (user_id, team_id) DO UPDATE SET
        open_n = open_n + excluded.open_n, mention_n = mention_n + excluded.mention_n,
        direct_n = direct_n + excluded.direct_n, done_n = done_n + excluded.done_n;
END;
",
    // 13: the counters also count the open snoozed items (`snoozed_n`), so that `counts`
    // reads only the snoozes that have expired by now (through `items_snoozed`) instead of
    // every snoozed item at every request (P-5: its cost grew with the user's snoozes).
    r"
ALTER TABLE item_counts ADD COLUMN snoozed_n INTEGER NOT NULL DEFAULT 0;
UPDATE item_counts SET snoozed_n = (
    SELECT count(*) FROM items i
     WHERE i.user_id = item_counts.user_id AND i.team_id = item_counts.team_id
       AND i.is_open = 1 AND i.snoozed_until IS NOT NULL);
DROP TRIGGER item_counts_insert;
DROP TRIGGER item_counts_delete;
DROP TRIGGER item_counts_update;
CREATE TRIGGER item_counts_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n, snoozed_n)
    VALUES (NEW.user_id, NEW.team_id,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.mentions > 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.is_direct = 1,
            NEW.is_open = 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NOT NULL)
    ON CONFLICT (user_id, team_id) DO UPDATE SET
        open_n = open_n + excluded.open_n, mention_n = mention_n + excluded.mention_n,
        direct_n = direct_n + excluded.direct_n, done_n = done_n + excluded.done_n,
        snoozed_n = snoozed_n + excluded.snoozed_n;
END;
CREATE TRIGGER item_counts_delete AFTER DELETE ON items BEGIN
    UPDATE item_counts SET
        open_n = open_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL),
        mention_n = mention_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.mentions > 0),
        direct_n = direct_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.is_direct = 1),
        done_n = done_n - (OLD.is_open = 0),
        snoozed_n = snoozed_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NOT NULL)
     WHERE user_id = OLD.user_id AND team_id = OLD.team_id;
END;
CREATE TRIGGER item_counts_update AFTER UPDATE OF team_id, is_open, snoozed_until, mentions, is_direct ON items
WHEN OLD.team_id IS NOT NEW.team_id OR OLD.is_open IS NOT NEW.is_open
  OR (OLD.snoozed_until IS NULL) <> (NEW.snoozed_until IS NULL)
  OR (OLD.mentions > 0) <> (NEW.mentions > 0) OR OLD.is_direct IS NOT NEW.is_direct
BEGIN
    UPDATE item_counts SET
        open_n = open_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL),
        mention_n = mention_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.mentions > 0),
        direct_n = direct_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NULL AND OLD.is_direct = 1),
        done_n = done_n - (OLD.is_open = 0),
        snoozed_n = snoozed_n - (OLD.is_open = 1 AND OLD.snoozed_until IS NOT NULL)
     WHERE user_id = OLD.user_id AND team_id = OLD.team_id;
    INSERT INTO item_counts (user_id, team_id, open_n, mention_n, direct_n, done_n, snoozed_n)
    VALUES (NEW.user_id, NEW.team_id,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.mentions > 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NULL AND NEW.is_direct = 1,
            NEW.is_open = 0,
            NEW.is_open = 1 AND NEW.snoozed_until IS NOT NULL)
    ON CONFLICT (user_id, team_id) DO UPDATE SET
        open_n = open_n + excluded.open_n, mention_n = mention_n + excluded.mention_n,
        direct_n = direct_n + excluded.direct_n, done_n = done_n + excluded.done_n,
        snoozed_n = snoozed_n + excluded.snoozed_n;
END;
",
    // 14: saved searches (ThreadDesk's `threaddesk_search` preferences) mirrored per user, like
    // saved posts: kept live from preference events, replaced by every full read.
    r"
CREATE TABLE saved_searches (
    user_id  TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    label    TEXT NOT NULL,
    q        TEXT NOT NULL,
    filter   TEXT NOT NULL,
    team_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
) STRICT, WITHOUT ROWID;
",
];

/// The schema version this binary writes.
#[must_use]
pub fn head() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Reads `PRAGMA user_version`.
///
/// # Errors
/// SQLite failure.
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Migrates up to `target` (≤ head). Refuses a database newer than the binary.
///
/// # Errors
/// [`StoreError::TooNew`], or the failing migration (rolled back).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let current = version(conn)?;
    if current > head() {
        return Err(StoreError::TooNew {
            found: current,
            known: head(),
        });
    }
    for v in current..target.min(head()) {
        let idx = usize::try_from(v).map_err(|_| StoreError::TooNew {
            found: v,
            known: head(),
        })?;
        let Some(sql) = MIGRATIONS.get(idx) else {
            break;
        };
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration {
                version: v + 1,
                source,
            })?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
        tracing::info!(version = v + 1, "store: applied migration");
    }
    Ok(())
}
