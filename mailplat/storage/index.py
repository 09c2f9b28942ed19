"""
The index of one user's mail: a SQLite database next to the user's Maildir
that keeps, for every folder, UIDVALIDITY, UIDNEXT and the highest
modification sequence, and for every message its UID, its Maildir file, its
flags and keywords, its modification sequence (RFC 7162), its size, its
INTERNALDATE and whether it is still C{\\Recent}; and the user's
subscriptions.

Why SQLite (the standard library's C{sqlite3}): the index must survive
restarts and crashes and stay consistent while delivery, several IMAP
sessions and POP3 change it at once.  SQLite gives atomic, durable
transactions (WAL journal, C{synchronous=FULL}) and indexed look-ups (the
messages changed since a modification sequence) that a hand-written text
file would have to re-implement.

The index never holds message bodies: those stay in the Maildir, and
L{mailplat.storage.maildir} keeps the two in step (files first, index
second, so that a crash in between is repaired by the next directory scan).

Not thread-safe by itself: L{UserIndex.lock} must be held around every call,
which L{mailplat.storage.maildir} does.
"""

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass

INDEX_NAME = "mailplat-index.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    specialuse TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    flags TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    recent INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_key ON messages (folder, key);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (folder, modseq);
CREATE INDEX IF NOT EXISTS messages_recent ON messages (folder) WHERE recent = 1;
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY);
"""

_COLUMNS = "uid, key, name, flags, modseq, size, internaldate, recent"


class IndexIOError(OSError):
    """
    The index could not be read or written (a SQLite error): an L{OSError},
    so that delivery treats it as a temporary failure.
    """


@dataclass(frozen=True)
class FolderRow:
    id: int
    name: str
    uidValidity: int
    uidNext: int
    highestModseq: int
    specialUse: str


@dataclass(frozen=True)
class MessageRow:
    """
    One message as the index has it.

    @ivar name: the file's path relative to the folder directory
        (C{new/<key>} or C{cur/<key>:2,<info>}).
    @ivar flags: a L{frozenset} of flag names (system flags and keywords).
    """

    uid: int
    key: str
    name: str
    flags: frozenset
    modseq: int
    size: int
    internalDate: float
    recent: bool


def encodeFlags(flags):
    return " ".join(sorted(flags))


def _messageRow(row):
    uid, key, name, flags, modseq, size, internaldate, recent = row
    return MessageRow(
        uid,
        key,
        name,
        frozenset(flags.split()) if flags else frozenset(),
        modseq,
        size,
        internaldate,
        bool(recent),
    )


def _folderRow(row):
    return FolderRow(*row) if row is not None else None


class UserIndex:
    """
    The index database of one user.

    @ivar path: the database file.
    """

    def __init__(self, path):
        self.path = path
        # Private like the Maildir: SQLite gives its -wal and -shm files the
        # same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        except sqlite3.Error as e:
            raise IndexIOError(f"{path}: {e}") from e

    def close(self):
        self._db.close()

    @contextlib.contextmanager
    def transaction(self):
        """
        Run a block as one transaction (committed durably on success, rolled
        back on any error); nested uses join the outer one.
        """
        if self._db.in_transaction:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise IndexIOError(f"{self.path}: {e}") from e

    def _query(self, sql, args=()):
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise IndexIOError(f"{self.path}: {e}") from e

    def _execute(self, sql, args=()):
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise IndexIOError(f"{self.path}: {e}") from e

    # -- folders

    def folders(self):
        """
        @return: every L{FolderRow}, by name.
        """
        return [
            _folderRow(r)
            for r in self._query("SELECT * FROM folders ORDER BY name")
        ]

    def folderByName(self, name):
        rows = self._query("SELECT * FROM folders WHERE name = ?", (name,))
        return _folderRow(rows[0]) if rows else None

    def folderById(self, folderId):
        rows = self._query("SELECT * FROM folders WHERE id = ?", (folderId,))
        return _folderRow(rows[0]) if rows else None

    def newUIDValidity(self):
        """
        A UIDVALIDITY never used by this user before: the time, or one more
        than the last one given out (RFC 3501 2.3.1.1: a folder deleted and
        created again must get a new one).
        """
        rows = self._query("SELECT value FROM meta WHERE key = 'lastuidvalidity'")
        last = int(rows[0][0]) if rows else 0
        value = max(int(time.time()), last + 1)
        self._execute(
            "INSERT OR REPLACE INTO meta VALUES ('lastuidvalidity', ?)", (str(value),)
        )
        return value

    def createFolder(self, name, specialUse=None, uidValidity=None, uidNext=1):
        """
        @return: the new L{FolderRow}.
        """
        with self.transaction():
            if uidValidity is None:
                uidValidity = self.newUIDValidity()
            self._execute(
                "INSERT INTO folders (name, uidvalidity, uidnext, highestmodseq, "
                "specialuse) VALUES (?, ?, ?, 1, ?)",
                (name, uidValidity, uidNext, specialUse),
            )
        return self.folderByName(name)

    def renameFolder(self, folderId, name):
        self._execute("UPDATE folders SET name = ? WHERE id = ?", (name, folderId))

    def deleteFolder(self, folderId):
        with self.transaction():
            self._execute("DELETE FROM messages WHERE folder = ?", (folderId,))
            self._execute("DELETE FROM folders WHERE id = ?", (folderId,))

    def _nextModseq(self, folderId):
        self._execute(
            "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?",
            (folderId,),
        )
        return self._query(
            "SELECT highestmodseq FROM folders WHERE id = ?", (folderId,)
        )[0][0]

    # -- messages

    def messages(self, folderId):
        """
        @return: every L{MessageRow} of the folder, by UID.
        """
        return [
            _messageRow(r)
            for r in self._query(
                f"SELECT {_COLUMNS} FROM messages WHERE folder = ? ORDER BY uid",
                (folderId,),
            )
        ]

    def messagesByUID(self, folderId, uids):
        """
        @return: the L{MessageRow}s of those of C{uids} that exist, by UID.
        """
        uids = sorted(set(uids))
        if not uids:
            return []
        if len(uids) > 500:
            wanted = set(uids)
            low, high = uids[0], uids[-1]
            rows = self._query(
                f"SELECT {_COLUMNS} FROM messages WHERE folder = ? AND uid "
                "BETWEEN ? AND ? ORDER BY uid",
                (folderId, low, high),
            )
            return [_messageRow(r) for r in rows if r[0] in wanted]
        marks = ",".join("?" * len(uids))
        rows = self._query(
            f"SELECT {_COLUMNS} FROM messages WHERE folder = ? AND uid IN ({marks}) "
            "ORDER BY uid",
            (folderId, *uids),
        )
        return [_messageRow(r) for r in rows]

    def uids(self, folderId):
        return [
            r[0]
            for r in self._query(
                "SELECT uid FROM messages WHERE folder = ? ORDER BY uid", (folderId,)
            )
        ]

    def uidsAbove(self, folderId, uid):
        """
        @return: the UIDs greater than C{uid}, sorted.
        """
        return [
            r[0]
            for r in self._query(
                "SELECT uid FROM messages WHERE folder = ? AND uid > ? ORDER BY uid",
                (folderId, uid),
            )
        ]

    def countUpTo(self, folderId, uid):
        """
        @return: how many messages have a UID up to C{uid}.
        """
        return self._query(
            "SELECT COUNT(*) FROM messages WHERE folder = ? AND uid <= ?", (folderId, uid)
        )[0][0]

    def changedSince(self, folderId, modseq):
        """
        @return: the L{MessageRow}s whose modification sequence is above
            C{modseq}, by UID.
        """
        rows = self._query(
            f"SELECT {_COLUMNS} FROM messages WHERE folder = ? AND modseq > ? "
            "ORDER BY uid",
            (folderId, modseq),
        )
        return [_messageRow(r) for r in rows]

    def status(self, folderId):
        """
        @return: C{(messages, recent, unseen, bytes)} of a folder.
        """
        row = self._query(
            "SELECT COUNT(*), COALESCE(SUM(recent), 0), COALESCE(SUM(size), 0), "
            "COALESCE(SUM(' ' || flags || ' ' LIKE '% \\Seen %'), 0) "
            "FROM messages WHERE folder = ?",
            (folderId,),
        )[0]
        count, recent, size, seen = row
        return count, recent, count - seen, size

    def usage(self):
        """
        @return: the total size of the user's messages, in bytes.
        """
        return self._query("SELECT COALESCE(SUM(size), 0) FROM messages")[0][0]

    def addMessages(self, folderId, entries):
        """
        Give new messages the next UIDs and one new modification sequence.

        @param entries: C{(key, name, flags, size, internalDate, recent)}
            tuples, in the order their UIDs should go.
        @return: the new UIDs.
        """
        if not entries:
            return []
        with self.transaction():
            modseq = self._nextModseq(folderId)
            uidNext = self._query(
                "SELECT uidnext FROM folders WHERE id = ?", (folderId,)
            )[0][0]
            uids = list(range(uidNext, uidNext + len(entries)))
            self._db.executemany(
                "INSERT INTO messages (folder, uid, key, name, flags, modseq, size, "
                "internaldate, recent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (folderId, uid, key, name, encodeFlags(flags), modseq, size,
                     date, int(recent))
                    for uid, (key, name, flags, size, date, recent) in zip(uids, entries)
                ],
            )
            self._execute(
                "UPDATE folders SET uidnext = ? WHERE id = ?",
                (uidNext + len(entries), folderId),
            )
        return uids

    def setFlags(self, folderId, changes):
        """
        Record new flags (and file names) for messages, all with one new
        modification sequence.

        @param changes: C{(uid, name, flags)} tuples.
        @return: the new modification sequence, or L{None} if C{changes} is
            empty.
        """
        if not changes:
            return None
        with self.transaction():
            modseq = self._nextModseq(folderId)
            self._db.executemany(
                "UPDATE messages SET name = ?, flags = ?, modseq = ? "
                "WHERE folder = ? AND uid = ?",
                [(name, encodeFlags(flags), modseq, folderId, uid)
                 for uid, name, flags in changes],
            )
        return modseq

    def setNames(self, folderId, changes):
        """
        Record new file names (no flag change: the modification sequence
        stays).

        @param changes: C{(uid, name)} pairs.
        """
        if changes:
            with self.transaction():
                self._db.executemany(
                    "UPDATE messages SET name = ? WHERE folder = ? AND uid = ?",
                    [(name, folderId, uid) for uid, name in changes],
                )

    def clearRecent(self, folderId):
        """
        Take every C{\\Recent} message of the folder (RFC 3501 2.3.2: only one
        session sees a message as recent).

        @return: the L{MessageRow}s that were recent.
        """
        rows = [
            _messageRow(r)
            for r in self._query(
                f"SELECT {_COLUMNS} FROM messages WHERE folder = ? AND recent = 1 "
                "ORDER BY uid",
                (folderId,),
            )
        ]
        if rows:
            with self.transaction():
                self._db.executemany(
                    "UPDATE messages SET recent = 0 WHERE folder = ? AND uid = ?",
                    [(folderId, row.uid) for row in rows],
                )
        return rows

    def removeMessages(self, folderId, uids):
        """
        Forget messages; the folder's modification sequence goes up.
        """
        if not uids:
            return
        with self.transaction():
            self._nextModseq(folderId)
            self._db.executemany(
                "DELETE FROM messages WHERE folder = ? AND uid = ?",
                [(folderId, uid) for uid in uids],
            )

    def renameFolders(self, renames):
        """
        @param renames: C{(folderId, newName)} pairs, applied in one
            transaction.
        """
        with self.transaction():
            for folderId, name in renames:
                self.renameFolder(folderId, name)

    # -- subscriptions

    def subscriptions(self):
        return [r[0] for r in self._query("SELECT name FROM subscriptions ORDER BY name")]

    def subscribe(self, name, subscribed=True):
        if subscribed:
            self._execute("INSERT OR IGNORE INTO subscriptions VALUES (?)", (name,))
        else:
            self._execute("DELETE FROM subscriptions WHERE name = ?", (name,))


def indexPath(userDirectory):
    return os.path.join(userDirectory, INDEX_NAME)
