"""
Maildir folders (U{https://cr.yp.to/proto/maildir.html}, Maildir++ for
subfolders) with a per-user index, and the store that maps a user to their
folders.

Bodies live in the Maildir, stored exactly as they are served: CRLF line
endings, so that sizes (POP3 LIST, IMAP RFC822.SIZE) and DKIM signatures are
byte-exact.  System flags are also kept in the file names (C{:2,FRS}) as
other Maildir programs expect.  Everything else -- UIDs, keywords,
modification sequences, INTERNALDATE, C{\\Recent} -- lives in the user's
index (L{mailplat.storage.index}).

Every method here does disk I/O and may block: protocol code calls them
through C{runBlocking}.  Each user's folders share one lock, so delivery,
several IMAP sessions and POP3 can use them at once, and a COPY or MOVE
between two folders is one atomic step.

Files are changed before the index: a crash in between leaves a difference
that the next directory scan repairs (a new file is adopted, a missing one is
forgotten, a renamed one keeps its UID).  The scan runs whenever the
modification time of C{new/} or C{cur/} changes, which is also how mail
dropped into the Maildir by another program gets its UID.
"""

import itertools
import os
import shutil
import socket
import threading
import time
import weakref
from collections import OrderedDict
from zope.interface import implementer

from mailplat._fsutil import fsyncAll, fsyncDirectory
from mailplat.interfaces import (
    INBOX,
    BadFolderName,
    FolderExists,
    IMailFolder,
    IMailStore,
    MessageGone,
    NoSuchFolder,
    QuotaExceeded,
)
from mailplat.storage import names as _names
from mailplat.storage import nowait
from mailplat.storage.folderbase import FolderBase, normalizeFlagChange
from mailplat.storage.index import UserIndex, indexPath
from mailplat.storage.records import SPECIAL_FOLDERS, MessageInfo, storableFlags
from mailplat.storage.state import FolderState, nextGeneration

# Re-exported for callers that catch them from here.
__all__ = [
    "BadFolderName",
    "MaildirFolder",
    "MaildirStore",
    "MessageGone",
    "MessageInfo",
    "NoSuchFolder",
    "SPECIAL_FOLDERS",
]

# IMAP system flag <-> Maildir info letter (the letters must stay sorted in
# file names).
FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
SYSTEM_FLAGS = tuple(FLAG_LETTERS)
DELETED = "\\Deleted"

LEGACY_INDEX = "mailplat-uidlist"
_TRASH_PREFIX = ".#deleted-"
_COPY_CHUNK = 256 * 1024
# A directory whose modification time is this recent may change again
# within the same timestamp tick, unseen: it is scanned again next time.
# File systems with whole-second times need a second; others (ext4, XFS,
# tmpfs, Btrfs) stamp with the kernel's clock tick, a few milliseconds.
_SETTLE_NS = 1_000_000_000
_SETTLE_FINE_NS = 50_000_000


def systemFlags(flags):
    return frozenset(f for f in flags if f in FLAG_LETTERS)


def _parseName(name):
    """
    @return: C{(key, systemFlags)} for a Maildir file name.
    """
    key, sep, info = name.partition(":2,")
    return key, frozenset(LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS)


def _fileName(key, flags, inNew=False):
    """
    The path of a message file relative to its folder: in C{new/} when it
    has no system flags and C{inNew}, else in C{cur/} with the flags.
    """
    flags = systemFlags(flags)
    if inNew and not flags:
        return "new/" + key
    return "cur/" + key + ":2," + "".join(sorted(FLAG_LETTERS[f] for f in flags))


class _UniqueNames:
    """
    Maildir unique names: C{<seconds>.M<usec>P<pid>Q<n>.<host>,S=<size>}.
    """

    def __init__(self):
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", "\\057").replace(":", "\\072")

    def next(self, size=None):
        now = time.time()
        with self._lock:
            n = next(self._counter)
        name = f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{n}.{self._host}"
        return name if size is None else f"{name},S={size}"


def _writeFile(path, chunks):
    """
    Write C{chunks} (an iterable of bytes, or a binary file) to a new file and
    fsync it.

    @return: the number of bytes written.
    """
    fd, size = _writeUnsynced(path, chunks)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return size


def _writeUnsynced(path, chunks):
    """
    Write C{chunks} (an iterable of bytes, or a binary file) to a new file,
    without fsync: the caller fsyncs (L{_writeFile}, or several files at once
    in L{MaildirFolder.deliverMany}) and closes.

    @return: C{(fd, size)}; on an error nothing is left.
    """
    if hasattr(chunks, "read"):
        source = chunks
        chunks = iter(lambda: source.read(_COPY_CHUNK), b"")
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                size += n
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, size


def _toCRLF(path):
    """
    Rewrite a file that has bare LF line endings with CRLF (atomically).

    @return: its size afterwards.
    """
    with open(path, "rb") as f:
        data = f.read()
    fixed = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if fixed == data:
        return len(data)
    tmp = path + ".crlf"
    _writeFile(tmp, [fixed])
    os.rename(tmp, path)
    return len(fixed)


@implementer(IMailFolder)
class MaildirFolder(FolderBase):
    """
    One Maildir folder of one user.  Get it from L{MaildirStore.folder}: there
    is one instance per folder, shared by every session and delivery, so
    listeners hear about every change made in this process.

    @ivar id: the folder's id in the index (stable across renames).
    @ivar specialUse: its RFC 6154 attribute, or L{None}.
    """

    def __init__(self, user, row):
        self._user = user
        self.id = row.id
        self._name = row.name
        self.specialUse = row.specialUse
        self._listeners = []
        self._stamp = None
        self._settled = False
        self._known = None
        # The in-memory picture of the index (storage/state.py), current
        # while its generation is ours; every change made through the store
        # takes a new generation (_invalidate).
        self._state = None
        self._generation = nextGeneration()

    def __repr__(self):
        return f"<MaildirFolder {self._user.address} {self._name!r}>"

    @property
    def name(self):
        return self._name

    @property
    def path(self):
        return self._user.folderPath(self._name)

    @property
    def _index(self):
        return self._user.index

    # -- listeners (addListener, removeListener: FolderBase)

    def _changed(self):
        self._invalidate()
        FolderBase._changed(self)

    def _invalidate(self):
        """
        The index changed (or may have): the cached state is no longer
        current.  Called by every writer before it returns to its caller,
        so a session never sees a state older than its own change.
        """
        self._generation = nextGeneration()

    # -- structure

    def _row(self):
        row = self._index.folderById(self.id)
        if row is None:
            raise NoSuchFolder(self._name)
        return row

    def ensureDirectories(self):
        path = self.path
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
        if self._name != INBOX:
            marker = os.path.join(path, "maildirfolder")
            if not os.path.exists(marker):
                open(marker, "ab").close()

    def exists(self):
        with self._user.lock:
            return self._index.folderById(self.id) is not None

    def _dirStamp(self):
        path = self.path
        try:
            return (
                os.stat(os.path.join(path, "new")).st_mtime_ns,
                os.stat(os.path.join(path, "cur")).st_mtime_ns,
            )
        except FileNotFoundError:
            self.ensureDirectories()
            return self._dirStamp()

    def poll(self):
        """
        I{blocking}: look for changes made to the Maildir by other programs,
        and tell the listeners if there are any.

        @return: whether there were.
        """
        with self._user.lock:
            self._row()
            changed = self._sync()
        if changed:
            self._changed()
        return changed

    def _sync(self):
        """
        Bring the index in step with the directory if the directory changed
        since the last look.  The caller holds the lock.

        @return: whether the index changed.
        """
        stamp = self._dirStamp()
        if stamp == self._stamp and self._settled:
            return False
        path = self.path
        found = {}
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(path, sub)) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    key, flags = _parseName(entry.name)
                    if key in found and sub == "new":
                        continue
                    found[key] = (sub + "/" + entry.name, flags, sub == "new")
        names = frozenset(v[0] for v in found.values())
        changed = False
        if names != self._known:
            changed = self._reconcile(found)
            self._known = names
            # Renames leave the modification sequences alone, so the cached
            # state cannot be brought up to date from them: build it afresh.
            self._state = None
            if changed:
                self._invalidate()
        self._stamp = stamp
        fine = any(t % 1_000_000_000 for t in stamp)
        settle = _SETTLE_FINE_NS if fine else _SETTLE_NS
        self._settled = time.time_ns() - max(stamp) > settle
        return changed

    def _reconcile(self, found):
        rows = self._index.messages(self.id)
        byKey = {row.key: row for row in rows}
        removed = [row.uid for row in rows if row.key not in found]
        renamed, reflagged = [], []
        for row in rows:
            entry = found.get(row.key)
            if entry is None or entry[0] == row.name:
                continue
            name, flags, inNew = entry
            if not inNew and flags != systemFlags(row.flags):
                keywords = row.flags - frozenset(SYSTEM_FLAGS)
                reflagged.append((row.uid, name, keywords | flags))
            else:
                renamed.append((row.uid, name))
        path = self.path
        new = []
        for key, (name, flags, inNew) in found.items():
            if key in byKey:
                continue
            full = os.path.join(path, name)
            try:
                mtime = os.stat(full).st_mtime
                size = _toCRLF(full)
            except FileNotFoundError:
                continue
            new.append((mtime, key, name, flags, size, inNew))
        new.sort()
        with self._index.transaction():
            self._index.removeMessages(self.id, removed)
            self._index.setFlags(self.id, reflagged)
            self._index.setNames(self.id, renamed)
            self._index.addMessages(
                self.id,
                [(key, name, flags, size, mtime, inNew)
                 for mtime, key, name, flags, size, inNew in new],
            )
        return bool(removed or reflagged or new)

    def _noteFiles(self, added=(), removed=()):
        """
        Record files this process added or removed, so that the next scan
        does not mistake them for someone else's.
        """
        if self._known is not None:
            self._known = (self._known - frozenset(removed)) | frozenset(added)

    def _info(self, row, path=None):
        return MessageInfo(
            uid=row.uid,
            key=row.key,
            path=os.path.join(path or self.path, row.name),
            flags=row.flags,
            size=row.size,
            recent=row.recent,
            internalDate=row.internalDate,
            modseq=row.modseq,
        )

    # -- reading

    # How the fast paths below tell time (tests replace it).
    clock = staticmethod(time.monotonic)

    @property
    def uidValidity(self):
        return self.status()["UIDVALIDITY"]

    @property
    def uidNext(self):
        return self.status()["UIDNEXT"]

    @property
    def highestModseq(self):
        return self.status()["HIGHESTMODSEQ"]

    def _currentState(self, row=None):
        """
        The folder's L{FolderState}, brought up to date with the index.  The
        caller holds the lock and has just called L{_sync}.

        After a change it is updated from the messages whose modification
        sequence went up (new messages, flag changes: cheap whatever the
        size of the folder); anything else (expunges, renames by another
        program, a renamed folder) builds it afresh.
        """
        # Read before the index, so the state is never marked newer than
        # what it was built from.
        generation = self._generation
        if row is None:
            row = self._row()
        path = self.path
        state = self._state
        if state is None or state.generation != generation or state.row != row:
            fresh = None
            index = self._index
            if (
                state is not None
                and state.path == path
                and state.row.uidValidity == row.uidValidity
                and state.row.highestModseq <= row.highestModseq
            ):
                if state.row.highestModseq == row.highestModseq:
                    fresh = state.updated(row, [], generation)
                else:
                    fresh = state.updated(
                        row, index.changedSince(self.id, state.row.highestModseq),
                        generation,
                    )
                if fresh is not None and len(fresh) != index.countUpTo(self.id, 2**32):
                    fresh = None
            if fresh is None:
                fresh = FolderState.fromRows(
                    row, path, index.messages(self.id), MessageInfo, generation
                )
            state = self._state = fresh
        # The directories were just looked at; a change within the file
        # system's time stamp resolution could still be missed, so such a
        # state is checked again next time.
        state.checkedAt = self.clock() if self._settled else 0.0
        return state

    def _freshState(self):
        """
        I{blocking}: sync with the Maildir and return the current state.
        """
        with self._user.lock:
            row = self._row()
            changed = self._sync()
            state = self._currentState(None if changed else row)
        if changed:
            self._changed()
        return state

    def cachedState(self, maxAge):
        """
        I{not blocking}: the folder's state if it is current and the Maildir
        was looked at less than C{maxAge} seconds ago; else L{None} (call a
        blocking method then).  Memory only: safe on the reactor thread.
        """
        state = self._state
        if (
            state is None
            or not maxAge
            or state.generation != self._generation
            or self.clock() - state.checkedAt >= maxAge
        ):
            return None
        return state

    def status(self):
        """
        @return: a L{dict} with C{MESSAGES}, C{RECENT}, C{UIDNEXT},
            C{UIDVALIDITY}, C{UNSEEN}, C{HIGHESTMODSEQ} and C{SIZE} (RFC 3501
            6.3.10, RFC 7162 3.1.6, RFC 8438).
        """
        return self._status(self._freshState())

    def cachedStatus(self, maxAge):
        """
        I{not blocking}: L{status} from the cached state, or L{None}.
        """
        state = self.cachedState(maxAge)
        return None if state is None else self._status(state)

    @staticmethod
    def _status(state):
        row = state.row
        return {
            "MESSAGES": len(state),
            "RECENT": len(state.recent),
            "UIDNEXT": row.uidNext,
            "UIDVALIDITY": row.uidValidity,
            "UNSEEN": state.unseenCount(),
            "HIGHESTMODSEQ": row.highestModseq,
            "SIZE": state.totalSize(),
        }

    def snapshot(self):
        """
        The folder's messages now, ordered by UID.

        @return: a L{list} of L{MessageInfo}.
        """
        return list(self._freshState())

    def view(self):
        """
        I{blocking}: the folder's messages now, ordered by UID, as a
        read-only sequence of L{MessageInfo} that never changes (what a POP3
        session keeps): compact arrays shared with every other user of the
        folder, rather than one object per message.

        @rtype: L{FolderState}
        """
        return self._freshState()

    def cachedView(self, maxAge):
        """
        I{not blocking}: L{view} from the cached state, or L{None}.
        """
        return self.cachedState(maxAge)

    def messages(self, uids):
        """
        @return: the L{MessageInfo}s of those of C{uids} still in the folder,
            by UID.
        """
        return self._freshState().infos(uids)

    def cachedMessages(self, uids, maxAge):
        """
        I{not blocking}: L{messages} from the cached state, or L{None}.
        """
        state = self.cachedState(maxAge)
        return None if state is None else state.infos(uids)

    def changes(self, sinceModseq, lastUID=0, count=0, claimRecent=False):
        """
        What changed since a session last looked, for it to catch up (RFC
        3501 7.4.1, RFC 7162 3.2).  Cheap when nothing changed: every change
        raises the folder's highest modification sequence.

        @param sinceModseq: the highest modification sequence the session
            knows.
        @param lastUID: the highest UID in the session's view.
        @param count: the number of messages in the session's view.
        @param claimRecent: take new C{\\Recent} messages for the caller.
        @return: C{(row, uids, arrived, changed, claimed)}: the folder's
            L{mailplat.storage.index.FolderRow}; every UID in the folder when
            some of the session's messages are gone, else L{None}; the UIDs
            above C{lastUID}; the L{MessageInfo}s whose modification sequence
            is above C{sinceModseq}; and the UIDs claimed as recent.
        """
        with self._user.lock:
            row = self._row()
            synced = self._sync()
            state = self._currentState(None if synced else row)
            claimed = frozenset()
            if state.row.highestModseq != sinceModseq and claimRecent and state.recent:
                claimed = self.claimRecent()
                state = self._currentState()
            result = state.changes(sinceModseq, lastUID, count)[:4] + (claimed,)
        if synced:
            self._changed()
        return result

    def cachedChanges(self, sinceModseq, lastUID, count, claimRecent, maxAge):
        """
        I{not blocking}: L{changes} from the cached state, or L{None} (also
        when recent messages would have to be claimed, which writes).
        """
        state = self.cachedState(maxAge)
        if state is None or (
            claimRecent and state.recent and state.row.highestModseq != sinceModseq
        ):
            return None
        return state.changes(sinceModseq, lastUID, count)

    def select(self, claimRecent):
        """
        Everything SELECT and EXAMINE report (RFC 3501 6.3.1), in one step.

        @param claimRecent: take the C{\\Recent} messages for the caller
            (a read-write SELECT).
        @return: C{(row, uids, recent, firstUnseen, keywords)}: the folder's
            L{mailplat.storage.index.FolderRow}, every UID, the UIDs that are
            recent for the caller, the UID of the first message without
            C{\\Seen} (or L{None}) and the keywords in use.
        """
        with self._user.lock:
            row = self._row()
            changed = self._sync()
            state = self._currentState(None if changed else row)
            claimed = frozenset()
            if claimRecent and state.recent:
                claimed = self.claimRecent()
                state = self._currentState()
        if changed:
            self._changed()
        return self._selection(state, claimRecent, claimed)

    def cachedSelect(self, claimRecent, maxAge):
        """
        I{not blocking}: L{select} from the cached state, or L{None} (also
        when recent messages would have to be claimed).
        """
        state = self.cachedState(maxAge)
        if state is None or (claimRecent and state.recent):
            return None
        return self._selection(state, claimRecent, frozenset())

    @staticmethod
    def _selection(state, claimRecent, claimed):
        recent = claimed if claimRecent else state.recent
        return state.row, state.uids, recent, state.firstUnseen(), state.keywords()

    def _open(self, info):
        try:
            return open(info.path, "rb")
        except FileNotFoundError:
            pass
        with self._user.lock:
            self._row()
            self._sync()
            rows = self._index.messagesByUID(self.id, [info.uid])
            if not rows or rows[0].key != info.key:
                raise MessageGone(info.key)
            try:
                return open(os.path.join(self.path, rows[0].name), "rb")
            except FileNotFoundError:
                raise MessageGone(info.key) from None

    def read(self, info):
        """
        @return: the bytes of the message C{info} (a L{MessageInfo}),
            following a rename by another session.
        @raise MessageGone: it was expunged.
        """
        with self._open(info) as f:
            return f.read()

    def readNowait(self, info, closeLater):
        """
        I{not blocking}: the bytes of the message C{info} if the kernel has
        its path and data in memory, else L{None} (use L{read} or
        L{openMessage} in a thread then).  See L{mailplat.storage.nowait}
        for why this is safe on the reactor thread.

        @param closeLater: C{f(fd)} closing a descriptor in a thread.
        """
        return nowait.readNowait(info.path, info.size, closeLater)

    def openMessage(self, info):
        """
        @return: a binary file open on the message (the caller closes it).
        @raise MessageGone: it was expunged.
        """
        return self._open(info)

    # -- writing

    def deliver(self, chunks, flags=frozenset(), internalDate=None):
        """
        Store a new message durably: write C{tmp/}, fsync, rename into C{new/}
        (or C{cur/} with system flags), fsync the directory, give it the next
        UID.

        @param chunks: an iterable of L{bytes} or a binary file; CRLF line
            endings.
        @param flags: flags (system flags and keywords).
        @param internalDate: its INTERNALDATE, a POSIX time (now by default).
        @return: the new message's UID.
        @raise QuotaExceeded: the user's quota would be exceeded.
        """
        user = self._user
        with user.lock:
            self._row()
            user.checkQuota(0)
            self.ensureDirectories()
        key = user.names.next()
        tmpPath = os.path.join(self.path, "tmp", key)
        size = _writeFile(tmpPath, chunks)
        key = f"{key},S={size}"
        flags = storableFlags(flags)
        name = _fileName(key, flags, inNew=True)
        try:
            with user.lock:
                self._row()
                user.checkQuota(size)
                target = os.path.join(self.path, name)
                os.rename(tmpPath, target)
                if internalDate is None:
                    internalDate = time.time()
                else:
                    os.utime(target, (internalDate, internalDate))
                fsyncDirectory(os.path.dirname(target))
                [uid] = self._index.addMessages(
                    self.id, [(key, name, flags, size, internalDate, True)]
                )
                self._noteFiles(added=[name])
        except BaseException:
            if os.path.exists(tmpPath):
                os.unlink(tmpPath)
            raise
        self._changed()
        return uid

    def deliverMany(self, messages):
        """
        Store several new messages durably, as L{deliver} does for one, but
        with one fsync of C{new/} and one index transaction for all of them
        (local delivery's group commit): each is written to C{tmp/} and
        fsynced, all are renamed into C{new/}, the directory is fsynced once,
        then their UIDs are added in one transaction.  A UID is returned only
        once all of that is done.

        @param messages: a list of messages, each an iterable of L{bytes} or
            a binary file; CRLF line endings.
        @return: a list with, for each message in order, its new UID or the
            L{OSError} (L{QuotaExceeded} included) that kept it out.  As with
            L{deliver}, a failure leaves nothing in C{tmp/}; a file already
            renamed into C{new/} when the index fails is adopted by the next
            scan.
        """
        user = self._user
        results = [None] * len(messages)
        with user.lock:
            self._row()
            self.ensureDirectories()
            limit = user.store.quotaLimit
            used = user.index.usage() if limit else 0
        written = []
        for i, chunks in enumerate(messages):
            if limit and used >= limit:
                results[i] = QuotaExceeded()
                continue
            key = user.names.next()
            tmpPath = os.path.join(self.path, "tmp", key)
            try:
                fd, size = _writeUnsynced(tmpPath, chunks)
            except OSError as e:
                results[i] = e
                continue
            written.append((i, tmpPath, f"{key},S={size}", size, fd))
        # Every file is fsynced at once: the file system commits them
        # together (mailplat._fsutil.fsyncAll).
        errors = fsyncAll([w[4] for w in written], size=sum(w[3] for w in written))
        synced = []
        for (i, tmpPath, key, size, fd), error in zip(written, errors):
            os.close(fd)
            if error is None:
                synced.append((i, tmpPath, key, size))
            else:
                os.unlink(tmpPath)
                results[i] = error
        written = synced
        moved = []
        try:
            with user.lock:
                self._row()
                used = user.index.usage() if limit else 0
                entries = []
                for i, tmpPath, key, size in written:
                    if limit and used + size > limit:
                        os.unlink(tmpPath)
                        results[i] = QuotaExceeded()
                        continue
                    used += size
                    name = _fileName(key, frozenset(), inNew=True)
                    os.rename(tmpPath, os.path.join(self.path, name))
                    moved.append((i, name))
                    entries.append((key, name, frozenset(), size, time.time(), True))
                if entries:
                    fsyncDirectory(os.path.join(self.path, "new"))
                    uids = self._index.addMessages(self.id, entries)
                    self._noteFiles(added=[name for _, name in moved])
                    for (i, _), uid in zip(moved, uids):
                        results[i] = uid
        except Exception as e:
            for i, tmpPath, key, size in written:
                if os.path.exists(tmpPath):
                    os.unlink(tmpPath)
                if results[i] is None:
                    results[i] = e
        if moved:
            self._changed()
        return results

    def storeFlags(self, uids, add=frozenset(), remove=frozenset(), replace=None,
                   unchangedSince=None):
        """
        Change the flags of messages as they are now (not as an older view
        saw them, so a flag another session set meanwhile is kept), in one
        transaction with one new modification sequence (RFC 7162 3.1.3).

        @param replace: the new flags, or L{None} to add C{add} and remove
            C{remove}.
        @param unchangedSince: leave alone the messages whose modification
            sequence is above this (RFC 7162 C{UNCHANGEDSINCE}).
        @return: C{(infos, gone, modified)}: the L{MessageInfo} of every
            message still there and not skipped (changed or not), the UIDs no
            longer in the folder, and the UIDs skipped for C{unchangedSince}.
        """
        add, remove, replace = normalizeFlagChange(add, remove, replace)
        with self._user.lock:
            self._row()
            self._sync()
            path = self.path
            rows = self._index.messagesByUID(self.id, uids)
            gone = set(uids) - {row.uid for row in rows}
            changes, results, modified = [], [], []
            added, removed = [], []
            for row in rows:
                if unchangedSince is not None and row.modseq > unchangedSince:
                    modified.append(row.uid)
                    continue
                if replace is not None:
                    flags = frozenset(replace)
                else:
                    flags = (row.flags | add) - remove
                if flags == row.flags:
                    results.append(row)
                    continue
                name = row.name
                if systemFlags(flags) != systemFlags(row.flags):
                    name = _fileName(row.key, flags)
                    try:
                        os.rename(os.path.join(path, row.name), os.path.join(path, name))
                    except FileNotFoundError:
                        gone.add(row.uid)
                        continue
                    added.append(name)
                    removed.append(row.name)
                changes.append((row.uid, name, flags))
                results.append(row)
            modseq = self._index.setFlags(self.id, changes)
            self._noteFiles(added, removed)
            byUID = {uid: (name, flags) for uid, name, flags in changes}
            infos = []
            for row in results:
                info = self._info(row, path)
                if row.uid in byUID:
                    name, flags = byUID[row.uid]
                    info = MessageInfo(
                        row.uid, row.key, os.path.join(path, name), flags,
                        row.size, row.recent, row.internalDate, modseq,
                    )
                infos.append(info)
        if changes:
            self._changed()
        return infos, sorted(gone), modified

    def claimRecent(self):
        """
        Take the C{\\Recent} messages for the calling session: no other
        session will see them as recent (RFC 3501 2.3.2).  Their files move
        from C{new/} to C{cur/}, as a Maildir reader does.

        @return: the L{frozenset} of their UIDs.
        """
        with self._user.lock:
            self._row()
            self._sync()
            rows = self._index.clearRecent(self.id)
            path = self.path
            renames, added, removed = [], [], []
            for row in rows:
                if row.name.startswith("new/"):
                    name = _fileName(row.key, row.flags)
                    try:
                        os.rename(os.path.join(path, row.name), os.path.join(path, name))
                    except FileNotFoundError:
                        continue
                    renames.append((row.uid, name))
                    added.append(name)
                    removed.append(row.name)
            self._index.setNames(self.id, renames)
            self._noteFiles(added, removed)
            claimed = frozenset(row.uid for row in rows)
            if rows and self._state is not None:
                # No modification sequence changes here, so the state is
                # updated directly (keeping its generation: current or not,
                # it now has these names and recent bits).
                self._state = self._state.withNames(
                    renames, claimed, self._state.generation
                )
        return claimed

    def _removeRows(self, rows):
        """
        Delete the files, then forget the messages.  The caller holds the lock.
        """
        path = self.path
        for row in rows:
            try:
                os.unlink(os.path.join(path, row.name))
            except FileNotFoundError:
                pass
        if rows:
            for sub in ("new", "cur"):
                fsyncDirectory(os.path.join(path, sub))
        self._index.removeMessages(self.id, [row.uid for row in rows])
        self._noteFiles(removed=[row.name for row in rows])

    def remove(self, infos):
        """
        Delete messages and forget their UIDs.  Messages already gone are
        ignored.
        """
        with self._user.lock:
            self._row()
            self._sync()
            keys = {info.uid: info.key for info in infos}
            rows = [
                row
                for row in self._index.messagesByUID(self.id, keys)
                if keys[row.uid] == row.key
            ]
            self._removeRows(rows)
        if rows:
            self._changed()

    def expunge(self, uids=None):
        """
        Delete the messages flagged C{\\Deleted} (only those among C{uids}
        when given: RFC 4315 UID EXPUNGE), in one step so that a flag cleared
        by another session meanwhile is respected.

        @return: the UIDs removed.
        """
        with self._user.lock:
            self._row()
            self._sync()
            if uids is None:
                rows = self._index.messages(self.id)
            else:
                rows = self._index.messagesByUID(self.id, uids)
            doomed = [row for row in rows if DELETED in row.flags]
            self._removeRows(doomed)
        if doomed:
            self._changed()
        return [row.uid for row in doomed]

    def copyTo(self, uids, target):
        """
        Copy messages into another folder of the same user, with their flags
        and INTERNALDATE (RFC 3501 6.4.7).  Files are hard-linked where the
        file system allows.

        @param target: a L{MaildirFolder} of the same user.
        @return: C{[(sourceUID, targetUID)]} (RFC 4315 COPYUID).
        @raise QuotaExceeded: the copies would exceed the user's quota.
        """
        if target._user is not self._user:
            raise ValueError("copy between users")
        user = self._user
        with user.lock:
            self._row()
            target._row()
            self._sync()
            target._sync()
            rows = self._index.messagesByUID(self.id, uids)
            user.checkQuota(sum(row.size for row in rows))
            target.ensureDirectories()
            source, destination = self.path, target.path
            entries, copied = [], []
            for row in rows:
                key = user.names.next(row.size)
                name = _fileName(key, row.flags, inNew=True)
                tmp = os.path.join(destination, "tmp", key)
                try:
                    _linkOrCopy(os.path.join(source, row.name), tmp)
                except FileNotFoundError:
                    continue
                os.rename(tmp, os.path.join(destination, name))
                entries.append((key, name, row.flags, row.size, row.internalDate, True))
                copied.append(row.uid)
            for sub in ("new", "cur"):
                fsyncDirectory(os.path.join(destination, sub))
            newUIDs = self._index.addMessages(target.id, entries)
            target._noteFiles(added=[e[1] for e in entries])
        if entries:
            target._changed()
        return list(zip(copied, newUIDs))

    def moveTo(self, uids, target):
        """
        Move messages into another folder of the same user (RFC 6851): each
        file is renamed, so a message is never in both or in neither.

        @return: C{[(sourceUID, targetUID)]}.
        """
        if target._user is not self._user:
            raise ValueError("move between users")
        user = self._user
        with user.lock:
            self._row()
            target._row()
            self._sync()
            target._sync()
            rows = self._index.messagesByUID(self.id, uids)
            target.ensureDirectories()
            source, destination = self.path, target.path
            taken = {row.key for row in self._index.messages(target.id)}
            entries, moved, movedRows = [], [], []
            for row in rows:
                key = row.key if row.key not in taken else user.names.next(row.size)
                name = _fileName(key, row.flags, inNew=True)
                try:
                    os.rename(
                        os.path.join(source, row.name), os.path.join(destination, name)
                    )
                except FileNotFoundError:
                    continue
                entries.append((key, name, row.flags, row.size, row.internalDate, True))
                moved.append(row.uid)
                movedRows.append(row)
            for folder in (source, destination):
                for sub in ("new", "cur"):
                    fsyncDirectory(os.path.join(folder, sub))
            with self._index.transaction():
                self._index.removeMessages(self.id, moved)
                newUIDs = self._index.addMessages(target.id, entries)
            self._noteFiles(removed=[row.name for row in movedRows])
            target._noteFiles(added=[e[1] for e in entries])
        if entries:
            self._changed()
            target._changed()
        return list(zip(moved, newUIDs))


def _linkOrCopy(source, target):
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:
        with open(source, "rb") as f:
            _writeFile(target, f)


def _readLegacyIndex(path):
    """
    Read the foundation's C{mailplat-uidlist} (one per folder), so that UIDs
    given out before the per-user index existed stay the same.

    @return: C{(uidValidity, uidNext, {key: uid})} or L{None}.
    """
    try:
        with open(os.path.join(path, LEGACY_INDEX), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (FileNotFoundError, NotADirectoryError):
        return None
    header = lines[0].split()
    if len(header) != 4 or header[0] != LEGACY_INDEX:
        return None
    uids = {}
    uidNext = int(header[3])
    for line in lines[1:]:
        uid, _, key = line.partition(" ")
        if key and uid.isdigit():
            uids[key] = int(uid)
            uidNext = max(uidNext, int(uid) + 1)
    return int(header[2]), uidNext, uids


class _UserMail:
    """
    One user's mail: the Maildir, the index, the folder objects and the lock
    they share.
    """

    def __init__(self, store, address):
        self.store = store
        self.address = address
        self.names = store.names
        self.directory = store.userDirectory(address)
        self.maildir = os.path.join(self.directory, "Maildir")
        self.lock = threading.RLock()
        self._folders = {}
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.makedirs(self.maildir, mode=0o700, exist_ok=True)
        self.index = UserIndex(indexPath(self.directory))
        with self.lock:
            self._setUp()

    def folderPath(self, name):
        if name == INBOX:
            return self.maildir
        return os.path.join(self.maildir, _names.directoryName(name))

    # -- set-up

    def _setUp(self):
        """
        Make sure INBOX and the special folders exist, adopt folders found on
        disk that the index does not know (made by the foundation, or by
        another program), and finish deletions a crash interrupted.
        """
        for entry in os.listdir(self.maildir):
            if entry.startswith(_TRASH_PREFIX):
                shutil.rmtree(os.path.join(self.maildir, entry), ignore_errors=True)
        known = {row.name for row in self.index.folders()}
        if INBOX not in known:
            self._adopt(INBOX)
        self.discover(known)
        special = dict(SPECIAL_FOLDERS)
        for name, use in SPECIAL_FOLDERS:
            if name not in known:
                row = self.index.folderByName(name)
                if row is None:
                    self._create(name, use)
                    self.index.subscribe(name)
        for row in self.index.folders():
            if row.name in special and row.specialUse != special[row.name]:
                self.index._execute(
                    "UPDATE folders SET specialuse = ? WHERE id = ?",
                    (special[row.name], row.id),
                )
        if INBOX not in known:
            self.index.subscribe(INBOX)

    def discover(self, known=None):
        """
        Adopt folder directories the index does not know.
        """
        if known is None:
            known = {row.name for row in self.index.folders()}
        for entry in sorted(os.listdir(self.maildir)):
            name = _names.nameFromDirectory(entry)
            if name is None or name in known:
                continue
            if os.path.isdir(os.path.join(self.maildir, entry, "cur")):
                self._adopt(name)
                known.add(name)

    def _adopt(self, name):
        path = self.folderPath(name)
        legacy = _readLegacyIndex(path)
        special = dict(SPECIAL_FOLDERS).get(name)
        with self.index.transaction():
            if legacy is None:
                row = self.index.createFolder(name, special)
            else:
                uidValidity, uidNext, uids = legacy
                row = self.index.createFolder(name, special, uidValidity, uidNext)
                self._importLegacy(row, path, uids)
        self.folderObject(row).ensureDirectories()
        return row

    def _importLegacy(self, row, path, uids):
        entries = []
        for sub in ("new", "cur"):
            try:
                listing = os.listdir(os.path.join(path, sub))
            except FileNotFoundError:
                continue
            for fileName in listing:
                key, flags = _parseName(fileName)
                if key in uids:
                    st = os.stat(os.path.join(path, sub, fileName))
                    entries.append((uids[key], key, f"{sub}/{fileName}", flags,
                                    st.st_size, st.st_mtime, sub == "new"))
        self.index._db.executemany(
            "INSERT OR IGNORE INTO messages (folder, uid, key, name, flags, modseq, "
            "size, internaldate, recent) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
            [(row.id, uid, key, name, " ".join(sorted(flags)), size, date, int(recent))
             for uid, key, name, flags, size, date, recent in entries],
        )

    def _create(self, name, specialUse=None):
        path = self.folderPath(name)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
        row = self.index.createFolder(name, specialUse)
        self.folderObject(row).ensureDirectories()
        return row

    # -- folders

    def folderObject(self, row):
        folder = self._folders.get(row.id)
        if folder is None:
            folder = self._folders[row.id] = MaildirFolder(self, row)
        return folder

    def folder(self, name):
        canonical = _names.normalizeName(name)
        with self.lock:
            row = self.index.folderByName(canonical)
            if row is None:
                raise NoSuchFolder(name)
            folder = self.folderObject(row)
            folder.ensureDirectories()
            return folder

    def checkQuota(self, extra):
        """
        @raise QuotaExceeded: C{extra} more bytes would exceed the quota (or
            the quota is already used up).
        """
        limit = self.store.quotaLimit
        if limit:
            used = self.index.usage()
            if used + extra > limit or (extra == 0 and used >= limit):
                raise QuotaExceeded()

    def folders(self):
        with self.lock:
            self.discover()
            return [(row.name, row.specialUse) for row in self.index.folders()]

    def createFolder(self, name):
        canonical = _names.normalizeName(name)
        with self.lock:
            self.discover()
            if self.index.folderByName(canonical) is not None:
                raise FolderExists(canonical)
            for parent in _names.parentNames(canonical):
                if self.index.folderByName(parent) is None:
                    self._create(parent)
            self._create(canonical)

    def deleteFolder(self, name):
        canonical = _names.normalizeName(name)
        with self.lock:
            row = self.index.folderByName(canonical)
            if row is None:
                raise NoSuchFolder(canonical)
            _names.checkDeletable(
                canonical, row.specialUse, (r.name for r in self.index.folders())
            )
            path = self.folderPath(canonical)
            trash = os.path.join(self.maildir, f"{_TRASH_PREFIX}{row.id}-{time.time_ns()}")
            if os.path.exists(path):
                os.rename(path, trash)
            self.index.deleteFolder(row.id)
            folder = self._folders.pop(row.id, None)
            shutil.rmtree(trash, ignore_errors=True)
        if folder is not None:
            folder._changed()

    def renameFolder(self, old, new):
        oldName = _names.normalizeName(old)
        newName = _names.normalizeName(new)
        with self.lock:
            self.discover()
            row = self.index.folderByName(oldName)
            if row is None:
                raise NoSuchFolder(oldName)
            if self.index.folderByName(newName) is not None:
                raise FolderExists(newName)
            _names.checkRenamable(oldName, newName, row.specialUse)
            for parent in _names.parentNames(newName):
                if self.index.folderByName(parent) is None:
                    self._create(parent)
            if oldName == INBOX:
                self._create(newName)
                inbox = self.folderObject(row)
                target = self.folder(newName)
                uids = self.index.uids(row.id)
                inbox.moveTo(uids, target)
                return
            moving = [
                r for r in self.index.folders()
                if r.name == oldName or _names.isInside(r.name, oldName)
            ]
            renames = []
            for r in moving:
                target = newName + r.name[len(oldName):]
                os.rename(self.folderPath(r.name), self.folderPath(target))
                renames.append((r.id, target))
            subscribed = set(self.index.subscriptions())
            with self.index.transaction():
                self.index.renameFolders(renames)
                for r, (_, target) in zip(moving, renames):
                    if r.name in subscribed:
                        self.index.subscribe(r.name, False)
                        self.index.subscribe(target)
            for folderId, target in renames:
                folder = self._folders.get(folderId)
                if folder is not None:
                    folder._name = target
                    folder._stamp = None
                    folder._state = None
                    folder._invalidate()

    def subscriptions(self):
        with self.lock:
            return self.index.subscriptions()

    def subscribe(self, name, subscribed=True):
        canonical = _names.normalizeName(name)
        with self.lock:
            self.index.subscribe(canonical, subscribed)

    def quota(self):
        with self.lock:
            return self.index.usage(), self.store.quotaLimit


@implementer(IMailStore)
class MaildirStore:
    """
    All mailboxes under one root: C{<root>/<domain>/<local part>/} holds a
    user's index and C{Maildir/}, their INBOX; C{Maildir/.<Name>} holds their
    other folders (Maildir++).

    @ivar quotaLimit: the storage quota of every user in bytes, or L{None}.
    """

    delimiter = _names.DELIMITER
    # How many users' indexes stay open when nobody uses them.
    keepOpen = 64

    def __init__(self, root, quota=None):
        self.root = root
        self.quotaLimit = quota or None
        self.names = _UniqueNames()
        self._lock = threading.Lock()
        self._users = weakref.WeakValueDictionary()
        self._recent = OrderedDict()

    def userDirectory(self, address):
        """
        The directory of a user's mail.  The address is one the user database
        knows, but it is still quoted so that no address can name a path
        outside the root.
        """
        local, _, domain = address.lower().rpartition("@")
        parts = [_quotePathPart(domain), _quotePathPart(local)]
        return os.path.join(self.root, *parts)

    def _user(self, address):
        address = address.lower()
        with self._lock:
            user = self._users.get(address)
            if user is None:
                user = self._users[address] = _UserMail(self, address)
            self._recent[address] = user
            self._recent.move_to_end(address)
            while len(self._recent) > self.keepOpen:
                self._recent.popitem(last=False)
            return user

    def cachedFolder(self, address, name=INBOX):
        """
        I{not blocking}: the L{MaildirFolder} C{name} of C{address} if this
        process already has it open, else L{None} (call L{folder} in a
        thread then).  Memory only -- no lock that disk work is done under
        is taken -- so it is safe on the reactor thread.
        """
        address = address.lower()
        user = self._users.get(address)
        if user is None:
            return None
        try:
            canonical = _names.normalizeName(name)
            # Keep the user among the recently used (see _user); another
            # thread may drop it meanwhile, which only costs a reopen.
            self._recent.move_to_end(address)
        except (BadFolderName, KeyError):
            return None
        for folder in list(user._folders.values()):
            if folder._name == canonical:
                return folder
        return None

    def folder(self, address, name=INBOX):
        """
        The L{MaildirFolder} C{name} of C{address}.

        @raise BadFolderName: the name is not allowed.
        @raise NoSuchFolder: the folder does not exist.
        """
        _names.normalizeName(name)
        return self._user(address).folder(name)

    def deliver(self, address, chunks, folder=INBOX):
        """
        Deliver a message (an iterable of byte chunks) to a user's folder.

        @return: the new UID.
        @raise QuotaExceeded: the user's quota would be exceeded.
        """
        return self.folder(address, folder).deliver(chunks)

    def deliverMany(self, address, messages, folder=INBOX):
        """
        Deliver several messages to one user's folder with one directory
        fsync and one index transaction (L{MaildirFolder.deliverMany}).

        @return: for each message, its new UID or the L{OSError} that kept
            it out.
        """
        return self.folder(address, folder).deliverMany(messages)

    def folders(self, address):
        return self._user(address).folders()

    def createFolder(self, address, name):
        self._user(address).createFolder(name)

    def deleteFolder(self, address, name):
        self._user(address).deleteFolder(name)

    def renameFolder(self, address, old, new):
        self._user(address).renameFolder(old, new)

    def subscriptions(self, address):
        return self._user(address).subscriptions()

    def subscribe(self, address, name, subscribed=True):
        self._user(address).subscribe(name, subscribed)

    def quota(self, address):
        return self._user(address).quota()


def _quotePathPart(part):
    """
    Quote one path component: only letters, digits and C{-_+=.} stay as they
    are, everything else (C{/}, NUL, ...) becomes C{%XX}; a leading dot is
    quoted too, so no component is C{.}, C{..} or hidden.
    """
    out = []
    for byte in part.encode("utf-8"):
        c = chr(byte)
        if c.isascii() and (c.isalnum() or c in "-_+=."):
            out.append(c)
        else:
            out.append("%%%02X" % byte)
    quoted = "".join(out)
    if quoted.startswith(".") or not quoted:
        quoted = "%2E" + quoted[1:] if quoted else "%"
    return quoted
