"""
An example mailbox store for mailplat, as a Twisted plugin: every user's
folders, messages and subscriptions in one SQLite file (the standard
library's C{sqlite3}).

With the directory holding this C{twisted/plugins/} on C{sys.path}:

    [storage]
    backend = "example_sqlite"
    path = "/var/lib/mailplat/mail"     # the store's directory
    file = "mail.sqlite3"               # relative to path (the default)

The protocols call every store method off the reactor thread (in the
reactor's thread pool), so the methods here simply block on SQLite; one
connection, shared by those threads under one lock, is opened on first
use, never at import or in L{SQLiteStoreFactory.makeStore}.  Each change is
one transaction, committed (C{synchronous=FULL}) before the method returns,
so a delivery is durable when local delivery reports it.

It passes mailplat's conformance suite
(L{mailplat.testing.MailStoreConformanceMixin}); the point is the shape of a
store, not speed (bodies are read whole from the database).
"""

import io
import os
import sqlite3
import threading
import time

from twisted.plugin import IPlugin
from zope.interface import implementer

from mailplat.interfaces import (
    INBOX,
    FolderExists,
    IMailFolder,
    IMailStore,
    IMailStoreFactory,
    MessageGone,
    NoSuchFolder,
    QuotaExceeded,
)
from mailplat.storage.folderbase import (
    FolderBase,
    normalizeFlagChange,
    planFlagChanges,
)
from mailplat.storage.names import (
    checkDeletable,
    checkRenamable,
    isInside,
    normalizeName,
    parentNames,
)
from mailplat.storage.records import (
    SPECIAL_FOLDERS,
    FolderStatus,
    MessageInfo,
    storableFlags,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, name TEXT NOT NULL,
    special TEXT, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,
    modseq INTEGER NOT NULL, UNIQUE (user, name));
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL, uid INTEGER NOT NULL, body BLOB NOT NULL,
    flags TEXT NOT NULL, size INTEGER NOT NULL, date REAL NOT NULL,
    modseq INTEGER NOT NULL, recent INTEGER NOT NULL, PRIMARY KEY (folder, uid));
CREATE TABLE IF NOT EXISTS subscriptions (
    user TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS users (user TEXT PRIMARY KEY, lastvalidity INTEGER NOT NULL);
"""

_INFO = "SELECT uid, flags, size, date, recent, modseq FROM messages WHERE folder = ?"


def _flags(text):
    return frozenset(text.split())


def _text(flags):
    return " ".join(sorted(flags))


@implementer(IMailFolder)
class SQLiteFolder(FolderBase):
    """
    One folder: a row of C{folders}.  The store keeps one object per folder.
    """

    def __init__(self, store, user, folderId, name, specialUse):
        self._store = store
        self._user = user
        self.id = folderId
        self.name = name
        self.specialUse = specialUse
        self._listeners = []
        self._gone = False

    # -- helpers (the caller holds the store's lock)

    def _row(self):
        row = self._store._db().execute(
            "SELECT uidvalidity, uidnext, modseq FROM folders WHERE id = ?", (self.id,)
        ).fetchone()
        if row is None:
            raise NoSuchFolder(self.name)
        return FolderStatus(*row)

    def _info(self, row):
        uid, flags, size, date, recent, modseq = row
        return MessageInfo(uid, f"{self.id}.{uid}", "", _flags(flags), size,
                           bool(recent), date, modseq)

    def _infos(self, where="", args=()):
        rows = self._store._db().execute(
            _INFO + where + " ORDER BY uid", (self.id, *args)
        ).fetchall()
        return [self._info(r) for r in rows]

    def _bump(self, db):
        db.execute("UPDATE folders SET modseq = modseq + 1 WHERE id = ?", (self.id,))
        return db.execute("SELECT modseq FROM folders WHERE id = ?", (self.id,)).fetchone()[0]

    def _add(self, db, entries):
        """
        Add C{(body, flags, date)} messages with one new modseq; returns UIDs.
        """
        modseq = self._bump(db)
        uids = []
        for body, flags, date in entries:
            uid = db.execute("SELECT uidnext FROM folders WHERE id = ?", (self.id,)).fetchone()[0]
            db.execute("UPDATE folders SET uidnext = ? WHERE id = ?", (uid + 1, self.id))
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (self.id, uid, body, _text(flags), len(body), date, modseq),
            )
            uids.append(uid)
        return uids

    def _drop(self, db, uids):
        if uids:
            self._bump(db)
            db.executemany("DELETE FROM messages WHERE folder = ? AND uid = ?",
                           [(self.id, uid) for uid in uids])

    def _claim(self, db):
        uids = [r[0] for r in db.execute(
            "SELECT uid FROM messages WHERE folder = ? AND recent = 1", (self.id,))]
        db.execute("UPDATE messages SET recent = 0 WHERE folder = ?", (self.id,))
        return frozenset(uids)

    # -- IMailFolder

    @property
    def uidValidity(self):
        with self._store._lock:
            return self._row().uidValidity

    @property
    def uidNext(self):
        with self._store._lock:
            return self._row().uidNext

    @property
    def highestModseq(self):
        with self._store._lock:
            return self._row().highestModseq

    def exists(self):
        return not self._gone

    def poll(self):
        with self._store._lock:
            self._row()
        return False

    def snapshot(self):
        with self._store._lock:
            self._row()
            return self._infos()

    def messages(self, uids):
        wanted = set(uids)
        return [i for i in self.snapshot() if i.uid in wanted]

    def status(self):
        with self._store._lock:
            row = self._row()
            infos = self._infos()
        return {
            "MESSAGES": len(infos),
            "RECENT": sum(i.recent for i in infos),
            "UIDNEXT": row.uidNext,
            "UIDVALIDITY": row.uidValidity,
            "UNSEEN": sum("\\Seen" not in i.flags for i in infos),
            "HIGHESTMODSEQ": row.highestModseq,
            "SIZE": sum(i.size for i in infos),
        }

    def select(self, claimRecent):
        with self._store._lock, self._store._db() as db:
            row = self._row()
            infos = self._infos()
            if claimRecent:
                recent = self._claim(db)
            else:
                recent = frozenset(i.uid for i in infos if i.recent)
        unseen = [i.uid for i in infos if "\\Seen" not in i.flags]
        keywords = sorted({f for i in infos for f in i.flags if not f.startswith("\\")})
        return row, [i.uid for i in infos], recent, (unseen or [None])[0], keywords

    def changes(self, sinceModseq, lastUID=0, count=0, claimRecent=False):
        with self._store._lock, self._store._db() as db:
            row = self._row()
            if row.highestModseq == sinceModseq:
                return row, None, [], [], frozenset()
            claimed = self._claim(db) if claimRecent else frozenset()
            infos = self._infos()
        uids = [i.uid for i in infos]
        kept = sum(1 for uid in uids if uid <= lastUID)
        return (
            row,
            None if kept == count else uids,
            [uid for uid in uids if uid > lastUID],
            [i for i in infos if i.modseq > sinceModseq],
            claimed,
        )

    def read(self, info):
        with self._store._lock:
            row = self._store._db().execute(
                "SELECT body FROM messages WHERE folder = ? AND uid = ?",
                (self.id, info.uid),
            ).fetchone()
        if row is None or self._gone or info.key != f"{self.id}.{info.uid}":
            raise MessageGone(info.key)
        return bytes(row[0])

    def openMessage(self, info):
        return io.BytesIO(self.read(info))

    def deliver(self, chunks, flags=frozenset(), internalDate=None):
        body = chunks.read() if hasattr(chunks, "read") else b"".join(chunks)
        with self._store._lock, self._store._db() as db:
            self._row()
            self._store._checkQuota(self._user, len(body))
            date = time.time() if internalDate is None else internalDate
            [uid] = self._add(db, [(body, storableFlags(flags), date)])
        self._changed()
        return uid

    def storeFlags(self, uids, add=frozenset(), remove=frozenset(), replace=None,
                   unchangedSince=None):
        add, remove, replace = normalizeFlagChange(add, remove, replace)
        with self._store._lock, self._store._db() as db:
            self._row()
            present = {i.uid: i for i in self._infos()}
            gone = sorted(set(uids) - set(present))
            kept, modified, changing = planFlagChanges(
                [present[uid] for uid in sorted(set(uids) & set(present))],
                add, remove, replace, unchangedSince,
            )
            if changing:
                modseq = self._bump(db)
                db.executemany(
                    "UPDATE messages SET flags = ?, modseq = ? WHERE folder = ? AND uid = ?",
                    [(_text(flags), modseq, self.id, uid) for uid, flags in changing],
                )
            infos = [i for i in self._infos() if i.uid in set(kept)]
        if changing:
            self._changed()
        return infos, gone, modified

    def remove(self, infos):
        with self._store._lock, self._store._db() as db:
            self._row()
            present = {i.uid for i in self._infos()}
            doomed = [i.uid for i in infos
                      if i.uid in present and i.key == f"{self.id}.{i.uid}"]
            self._drop(db, doomed)
        if doomed:
            self._changed()

    def expunge(self, uids=None):
        with self._store._lock, self._store._db() as db:
            self._row()
            doomed = [i.uid for i in self._infos()
                      if "\\Deleted" in i.flags and (uids is None or i.uid in uids)]
            self._drop(db, doomed)
        if doomed:
            self._changed()
        return doomed

    def _transfer(self, uids, target, move):
        if target._user != self._user or target._store is not self._store:
            raise ValueError("copy or move between users")
        wanted = set(uids)
        with self._store._lock, self._store._db() as db:
            self._row()
            target._row()
            infos = [i for i in self._infos() if i.uid in wanted]
            if not move:
                self._store._checkQuota(self._user, sum(i.size for i in infos))
            entries = [(self.read(i), i.flags, i.internalDate) for i in infos]
            newUIDs = target._add(db, entries) if entries else []
            if move:
                self._drop(db, [i.uid for i in infos])
        if infos:
            if move:
                self._changed()
            target._changed()
        return list(zip([i.uid for i in infos], newUIDs))

    def copyTo(self, uids, target):
        return self._transfer(uids, target, False)

    def moveTo(self, uids, target):
        return self._transfer(uids, target, True)


@implementer(IMailStore)
class SQLiteStore:
    """
    Every user's mail in one SQLite file.
    """

    def __init__(self, path, quota=None):
        self.path = path
        self.quotaLimit = quota or None
        self._lock = threading.RLock()
        self._connection = None
        self._folders = {}

    def _db(self):
        """
        The connection, opened on first use (in a thread, by a store method).
        Used as a context manager, it is one transaction.
        """
        if self._connection is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
            self._connection = db
        return self._connection

    def _setUp(self, user):
        """
        Give a user INBOX and the special-use folders on first sight.
        """
        db = self._db()
        if db.execute("SELECT 1 FROM users WHERE user = ?", (user,)).fetchone():
            return
        with db:
            db.execute("INSERT INTO users VALUES (?, 0)", (user,))
            for name, special in [(INBOX, None), *SPECIAL_FOLDERS]:
                self._create(db, user, name, special)
                db.execute("INSERT INTO subscriptions VALUES (?, ?)", (user, name))

    def _create(self, db, user, name, special=None):
        last = db.execute("SELECT lastvalidity FROM users WHERE user = ?", (user,)).fetchone()[0]
        validity = max(int(time.time()), last + 1)
        db.execute("UPDATE users SET lastvalidity = ? WHERE user = ?", (validity, user))
        db.execute(
            "INSERT INTO folders (user, name, special, uidvalidity, uidnext, modseq) "
            "VALUES (?, ?, ?, ?, 1, 1)", (user, name, special, validity),
        )

    def _folderRow(self, user, name):
        return self._db().execute(
            "SELECT id, special FROM folders WHERE user = ? AND name = ?", (user, name)
        ).fetchone()

    def _names(self, user):
        return [r[0] for r in self._db().execute(
            "SELECT name FROM folders WHERE user = ? ORDER BY name", (user,))]

    def _checkQuota(self, user, extra):
        if self.quotaLimit and self._usage(user) + extra > self.quotaLimit:
            raise QuotaExceeded()

    def _usage(self, user):
        return self._db().execute(
            "SELECT COALESCE(SUM(size), 0) FROM messages JOIN folders "
            "ON messages.folder = folders.id WHERE folders.user = ?", (user,),
        ).fetchone()[0]

    # -- IMailStore

    def folder(self, address, name=INBOX):
        canonical = normalizeName(name)
        user = address.lower()
        with self._lock:
            self._setUp(user)
            row = self._folderRow(user, canonical)
            if row is None:
                raise NoSuchFolder(name)
            folder = self._folders.get(row[0])
            if folder is None:
                folder = self._folders[row[0]] = SQLiteFolder(
                    self, user, row[0], canonical, row[1])
            return folder

    def deliver(self, address, chunks, folder=INBOX):
        return self.folder(address, folder).deliver(chunks)

    def folders(self, address):
        user = address.lower()
        with self._lock:
            self._setUp(user)
            return [tuple(r) for r in self._db().execute(
                "SELECT name, special FROM folders WHERE user = ? ORDER BY name", (user,))]

    def createFolder(self, address, name):
        canonical = normalizeName(name)
        user = address.lower()
        with self._lock:
            self._setUp(user)
            names = self._names(user)
            if canonical in names:
                raise FolderExists(canonical)
            with self._db() as db:
                for parent in parentNames(canonical):
                    if parent not in names:
                        self._create(db, user, parent)
                self._create(db, user, canonical)

    def deleteFolder(self, address, name):
        canonical = normalizeName(name)
        user = address.lower()
        with self._lock:
            self._setUp(user)
            row = self._folderRow(user, canonical)
            if row is None:
                raise NoSuchFolder(canonical)
            checkDeletable(canonical, row[1], self._names(user))
            with self._db() as db:
                db.execute("DELETE FROM messages WHERE folder = ?", (row[0],))
                db.execute("DELETE FROM folders WHERE id = ?", (row[0],))
            folder = self._folders.pop(row[0], None)
        if folder is not None:
            folder._gone = True
            folder._changed()

    def renameFolder(self, address, old, new):
        oldName, newName = normalizeName(old), normalizeName(new)
        user = address.lower()
        with self._lock:
            self._setUp(user)
            row = self._folderRow(user, oldName)
            if row is None:
                raise NoSuchFolder(oldName)
            names = self._names(user)
            if newName in names:
                raise FolderExists(newName)
            checkRenamable(oldName, newName, row[1])
            with self._db() as db:
                for parent in parentNames(newName):
                    if parent not in names:
                        self._create(db, user, parent)
                if oldName == INBOX:
                    self._create(db, user, newName)
            if oldName == INBOX:
                inbox = self.folder(user)
                inbox.moveTo([i.uid for i in inbox.snapshot()], self.folder(user, newName))
                return
            moving = [n for n in names if n == oldName or isInside(n, oldName)]
            with self._db() as db:
                for name in moving:
                    target = newName + name[len(oldName):]
                    db.execute("UPDATE folders SET name = ? WHERE user = ? AND name = ?",
                               (target, user, name))
                    db.execute("UPDATE subscriptions SET name = ? WHERE user = ? AND name = ?",
                               (target, user, name))
            for folder in self._folders.values():
                if folder._user == user and folder.name in moving:
                    folder.name = newName + folder.name[len(oldName):]

    def subscriptions(self, address):
        with self._lock:
            return [r[0] for r in self._db().execute(
                "SELECT name FROM subscriptions WHERE user = ? ORDER BY name",
                (address.lower(),))]

    def subscribe(self, address, name, subscribed=True):
        canonical = normalizeName(name)
        with self._lock, self._db() as db:
            if subscribed:
                db.execute("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)",
                           (address.lower(), canonical))
            else:
                db.execute("DELETE FROM subscriptions WHERE user = ? AND name = ?",
                           (address.lower(), canonical))

    def quota(self, address):
        with self._lock:
            return self._usage(address.lower()), self.quotaLimit


@implementer(IMailStoreFactory, IPlugin)
class SQLiteStoreFactory:
    """
    C{[storage] backend = "example_sqlite"}; option C{file}, the database
    (relative to C{[storage] path}; default C{mail.sqlite3}).
    """

    name = "example_sqlite"

    def makeStore(self, options, config):
        options = dict(options)
        fileName = options.pop("file", "mail.sqlite3")
        if options:
            raise ValueError(f"unknown option(s): {', '.join(sorted(options))} (known: file)")
        if not isinstance(fileName, str) or not fileName:
            raise ValueError("file: expected the database's file name, a string")
        path = os.path.join(config.storage.path, fileName)
        return SQLiteStore(path, quota=config.storage.quota)


sqliteStoreFactory = SQLiteStoreFactory()
