"""The SQLite schema, one migration per version (`PRAGMA user_version` says which ran last).

Migrations only ever append: a database of any older version is brought up to date, in
one transaction per step, when the server starts.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: messages, clustered by (room, id): the latest N of a room, a page before an id and
    # everything after an id are all one index range, however large the room.
    """
    CREATE TABLE messages (
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        name TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 2: a room's last id outlives its messages, so ids keep increasing when retention has
    # deleted them all (retention records it before it deletes; commits need not touch it).
    """
    CREATE TABLE rooms (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO rooms (name, last_id) SELECT room, max(id) FROM messages GROUP BY room;
    """,
    # 3: accounts (app/core/accounts.py): users by name key, the argon2id hash of their
    # password; sessions by the SHA-256 of their id, never the id. Messages say whether a
    # guest wrote them. Notices carry what concerns every process's connections (a session
    # that ended) from whichever process wrote them (a server, or `chatroom users`).
    """
    ALTER TABLE messages ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE users (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users (key) ON DELETE CASCADE,
        created INTEGER NOT NULL,
        seen INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_of_user ON sessions (user);
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        ts INTEGER NOT NULL
    );
    """,
    # 4: moderation (app/core/moderation/): each room's door and topic; who owns, moderates
    # and is invited to it; bans and mutes, in a room or server-wide (scope ''), on an
    # account ('a:KEY') or a guest's address, as a keyed hash ('g:HMAC'), never the address;
    # the audit log. The key of those hashes is in `meta` (moderation_secret).
    """
    CREATE TABLE room_rules (
        room TEXT PRIMARY KEY,
        members_only INTEGER NOT NULL DEFAULT 0,
        topic TEXT,
        topic_by TEXT,
        topic_ts INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE room_roles (
        room TEXT NOT NULL,
        role TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (room, role, key)
    ) WITHOUT ROWID;
    CREATE TABLE sanctions (
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        by TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL,
        until INTEGER,
        PRIMARY KEY (scope, kind, target)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        room TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        reason TEXT NOT NULL,
        until INTEGER,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_of_room ON audit (room, id);
    """,
    # 5: direct messages (app/core/direct.py): by conversation (its two accounts' keys, sorted,
    # joined by a newline) and id, like a room's; each conversation's last id apart, so that ids
    # keep increasing if its messages are ever deleted. Each account's conversations, with the
    # last id and time of each, for its welcome; buddy lists (with who has whom, for an account
    # that is removed) and block lists, by the owner's key.
    """
    CREATE TABLE dms (
        conversation TEXT NOT NULL,
        id INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        auto INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation, id)
    ) WITHOUT ROWID;
    CREATE TABLE dm_ids (conversation TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE conversations (
        owner TEXT NOT NULL,
        other TEXT NOT NULL,
        name TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (owner, other)
    ) WITHOUT ROWID;
    CREATE TABLE buddies (
        owner TEXT NOT NULL,
        buddy TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (owner, buddy)
    ) WITHOUT ROWID;
    CREATE INDEX buddies_watchers ON buddies (buddy);
    CREATE TABLE blocks (
        owner TEXT NOT NULL,
        blocked TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (owner, blocked)
    ) WITHOUT ROWID;
    """,
    # 6: what happens to messages afterwards (app/core/changes.py): an edit's time, a
    # tombstone's mark (its text emptied, overwritten: `secure_delete`), the reactions'
    # counts as the wire has them, and who gave each (by name key); how far each account
    # read in each room. `search` is a full-text index of what messages say now; contentless,
    # so it keeps no copy of any text. Its rowid is the room's number times 2^40 plus the
    # message id, so that a room's matches newest first are one range of it (ids from 2^40
    # on are not indexed). New messages are indexed in batches, off the commits
    # (sqlite/index.py), up to each room's `indexed`; triggers keep what is indexed in step
    # with edits, deletions and retention.
    """
    ALTER TABLE messages ADD COLUMN edited_ts INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN reactions TEXT;
    CREATE TABLE reactions (
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (room, id, emoji, key)
    ) WITHOUT ROWID;
    CREATE TABLE reads (
        key TEXT NOT NULL,
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (key, room)
    ) WITHOUT ROWID;
    CREATE TABLE search_rooms (
        number INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        indexed INTEGER NOT NULL DEFAULT 0
    );
    CREATE VIRTUAL TABLE search USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2');
    CREATE TRIGGER search_update AFTER UPDATE OF text, deleted ON messages BEGIN
        INSERT INTO search (search, rowid, text)
            SELECT 'delete', number * 1099511627776 + OLD.id, OLD.text FROM search_rooms
            WHERE name = OLD.room AND OLD.id <= indexed AND OLD.id < 1099511627776 AND OLD.deleted = 0;
        INSERT INTO search (rowid, text)
            SELECT number * 1099511627776 + NEW.id, NEW.text FROM search_rooms
            WHERE name = NEW.room AND NEW.id <= indexed AND NEW.id < 1099511627776 AND NEW.deleted = 0;
    END;
    CREATE TRIGGER search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO search (search, rowid, text)
            SELECT 'delete', number * 1099511627776 + OLD.id, OLD.text FROM search_rooms
            WHERE name = OLD.room AND OLD.id <= indexed AND OLD.id < 1099511627776 AND OLD.deleted = 0;
        DELETE FROM reactions WHERE room = OLD.room AND id = OLD.id;
    END;
    """,
]

# Search's rowids (migration 6): a room's number times this, plus the message id.
SEARCH_SPAN = 2**40

VERSION = len(MIGRATIONS)


def version_of(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection, target: int = VERSION) -> int:
    """Bring the database up to `target`; returns the version it had before."""
    found = version_of(connection)
    if found > VERSION:
        raise RuntimeError(
            f"The database has schema version {found}, but this chatroom knows only up to {VERSION}: upgrade chatroom"
        )
    for version in range(found + 1, target + 1):
        # BEGIN ... COMMIT makes each step all or nothing, its version number included.
        try:
            connection.executescript(f"BEGIN;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};\nCOMMIT;")
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    return found
