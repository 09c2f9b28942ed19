"""
A mailbox store that keeps everything in memory: for tests, and for
applications that embed mailplat to process mail rather than keep it
(C{[storage] backend = "memory"}).  Nothing survives a restart.

It keeps the whole L{mailplat.interfaces.IMailStore} contract -- UIDs,
UIDVALIDITY, flags and keywords, modification sequences, C{\\Recent},
folders, subscriptions, quota, listeners -- so IMAP and POP3 sessions work
on it exactly as on Maildir.  It has none of the Maildir store's optional
fast paths, so the protocols use their plain (thread) paths with it.

Each user's folders share one lock, as in the Maildir store: delivery,
sessions and COPY/MOVE between folders see consistent states.  Listeners
are called after the lock is released, from the thread that made the
change.
"""

import bisect
import io
import threading
import time

from zope.interface import implementer

from mailplat.interfaces import (
    INBOX,
    FolderExists,
    IMailFolder,
    IMailStore,
    MessageGone,
    NoSuchFolder,
    QuotaExceeded,
)
from mailplat.storage import names as _names
from mailplat.storage.folderbase import (
    FolderBase,
    normalizeFlagChange,
    planFlagChanges,
)
from mailplat.storage.records import (
    SPECIAL_FOLDERS,
    FolderStatus,
    MessageInfo,
    storableFlags,
)

DELETED = "\\Deleted"
SEEN = "\\Seen"


def _bytesOf(chunks):
    if hasattr(chunks, "read"):
        return chunks.read()
    return b"".join(chunks)


@implementer(IMailFolder)
class MemoryFolder(FolderBase):
    """
    One folder of one user, in memory.  Get it from L{MemoryStore.folder}.

    @ivar specialUse: its RFC 6154 attribute, or L{None}.
    """

    def __init__(self, user, name, specialUse, uidValidity):
        self._user = user
        self._name = name
        self.specialUse = specialUse
        self._uidValidity = uidValidity
        self._uidNext = 1
        self._modseq = 1
        self._uids = []
        self._infos = {}
        self._bodies = {}
        self._listeners = []
        self._deleted = False

    def __repr__(self):
        return f"<MemoryFolder {self._user.address} {self._name!r}>"

    @property
    def name(self):
        return self._name

    def _check(self):
        if self._deleted:
            raise NoSuchFolder(self._name)

    def _status(self):
        return FolderStatus(self._uidValidity, self._uidNext, self._modseq)

    @property
    def uidValidity(self):
        with self._user.lock:
            self._check()
            return self._uidValidity

    @property
    def uidNext(self):
        with self._user.lock:
            self._check()
            return self._uidNext

    @property
    def highestModseq(self):
        with self._user.lock:
            self._check()
            return self._modseq

    # -- listeners: FolderBase

    # -- reading

    def exists(self):
        return not self._deleted

    def poll(self):
        with self._user.lock:
            self._check()
        return False

    def snapshot(self):
        with self._user.lock:
            self._check()
            return [self._infos[uid] for uid in self._uids]

    def messages(self, uids):
        with self._user.lock:
            self._check()
            infos = self._infos
            return [infos[uid] for uid in sorted(set(uids)) if uid in infos]

    def status(self):
        with self._user.lock:
            self._check()
            infos = [self._infos[uid] for uid in self._uids]
            return {
                "MESSAGES": len(infos),
                "RECENT": sum(1 for i in infos if i.recent),
                "UIDNEXT": self._uidNext,
                "UIDVALIDITY": self._uidValidity,
                "UNSEEN": sum(1 for i in infos if SEEN not in i.flags),
                "HIGHESTMODSEQ": self._modseq,
                "SIZE": sum(i.size for i in infos),
            }

    def _claimRecent(self):
        """
        Take every C{\\Recent} message for the caller.  The caller holds the
        lock.  Not a flag change: no modification sequence.
        """
        claimed = []
        for uid in self._uids:
            info = self._infos[uid]
            if info.recent:
                self._infos[uid] = info._replace(recent=False)
                claimed.append(uid)
        return frozenset(claimed)

    def claimRecent(self):
        """
        Take the C{\\Recent} messages for the calling session.

        @return: the L{frozenset} of their UIDs.
        """
        with self._user.lock:
            self._check()
            return self._claimRecent()

    def select(self, claimRecent):
        with self._user.lock:
            self._check()
            infos = [self._infos[uid] for uid in self._uids]
            if claimRecent:
                recent = self._claimRecent()
            else:
                recent = frozenset(i.uid for i in infos if i.recent)
            firstUnseen = next((i.uid for i in infos if SEEN not in i.flags), None)
            keywords = sorted({f for i in infos for f in i.flags if not f.startswith("\\")})
            return self._status(), list(self._uids), recent, firstUnseen, keywords

    def changes(self, sinceModseq, lastUID=0, count=0, claimRecent=False):
        with self._user.lock:
            self._check()
            if self._modseq == sinceModseq:
                return self._status(), None, [], [], frozenset()
            claimed = self._claimRecent() if claimRecent else frozenset()
            uids = self._uids
            upTo = bisect.bisect_right(uids, lastUID)
            every = None if upTo == count else list(uids)
            changed = [
                self._infos[uid] for uid in uids if self._infos[uid].modseq > sinceModseq
            ]
            return self._status(), every, uids[upTo:], changed, claimed

    def read(self, info):
        with self._user.lock:
            current = self._infos.get(info.uid)
            if self._deleted or current is None or current.key != info.key:
                raise MessageGone(info.key)
            return self._bodies[info.uid]

    def openMessage(self, info):
        return io.BytesIO(self.read(info))

    # -- writing

    def _add(self, entries):
        """
        Add messages with one new modification sequence.  The caller holds
        the lock and has checked the quota.

        @param entries: C{(data, flags, internalDate)} triples.
        @return: their UIDs.
        """
        self._modseq += 1
        uids = []
        for data, flags, internalDate in entries:
            uid = self._uidNext
            self._uidNext += 1
            self._infos[uid] = MessageInfo(
                uid, f"{self._uidValidity}.{uid}", "", frozenset(flags), len(data), True,
                internalDate, self._modseq,
            )
            self._bodies[uid] = data
            self._uids.append(uid)
            uids.append(uid)
        return uids

    def _drop(self, uids):
        """
        Forget messages, with one new modification sequence.  The caller
        holds the lock.
        """
        if not uids:
            return
        self._modseq += 1
        gone = set(uids)
        for uid in gone:
            del self._infos[uid]
            del self._bodies[uid]
        self._uids = [uid for uid in self._uids if uid not in gone]

    def deliver(self, chunks, flags=frozenset(), internalDate=None):
        data = _bytesOf(chunks)
        with self._user.lock:
            self._check()
            self._user.checkQuota(len(data))
            if internalDate is None:
                internalDate = time.time()
            [uid] = self._add([(data, storableFlags(flags), internalDate)])
        self._changed()
        return uid

    def storeFlags(self, uids, add=frozenset(), remove=frozenset(), replace=None,
                   unchangedSince=None):
        add, remove, replace = normalizeFlagChange(add, remove, replace)
        with self._user.lock:
            self._check()
            present = [uid for uid in sorted(set(uids)) if uid in self._infos]
            gone = sorted(set(uids) - set(present))
            results, modified, changing = planFlagChanges(
                [self._infos[uid] for uid in present], add, remove, replace,
                unchangedSince,
            )
            if changing:
                self._modseq += 1
                for uid, flags in changing:
                    self._infos[uid] = self._infos[uid]._replace(
                        flags=flags, modseq=self._modseq
                    )
            infos = [self._infos[uid] for uid in results]
        if changing:
            self._changed()
        return infos, gone, modified

    def remove(self, infos):
        with self._user.lock:
            self._check()
            doomed = [
                info.uid for info in infos
                if info.uid in self._infos and self._infos[info.uid].key == info.key
            ]
            self._drop(doomed)
        if doomed:
            self._changed()

    def expunge(self, uids=None):
        with self._user.lock:
            self._check()
            candidates = self._uids if uids is None else sorted(set(uids))
            doomed = [
                uid for uid in candidates
                if uid in self._infos and DELETED in self._infos[uid].flags
            ]
            self._drop(doomed)
        if doomed:
            self._changed()
        return doomed

    def _transfer(self, uids, target, move):
        if target._user is not self._user:
            raise ValueError("copy or move between users")
        with self._user.lock:
            self._check()
            target._check()
            taken = [uid for uid in sorted(set(uids)) if uid in self._infos]
            if not move:
                self._user.checkQuota(sum(self._infos[uid].size for uid in taken))
            entries = [
                (self._bodies[uid], self._infos[uid].flags, self._infos[uid].internalDate)
                for uid in taken
            ]
            newUIDs = target._add(entries) if entries else []
            if move:
                self._drop(taken)
        if taken:
            if move:
                self._changed()
            target._changed()
        return list(zip(taken, newUIDs))

    def copyTo(self, uids, target):
        return self._transfer(uids, target, move=False)

    def moveTo(self, uids, target):
        return self._transfer(uids, target, move=True)


class _MemoryUser:
    """
    One user's folders and subscriptions, and the lock they share.
    """

    def __init__(self, store, address):
        self.store = store
        self.address = address
        self.lock = threading.RLock()
        self.folders = {}
        self.subscribed = set()
        self._lastValidity = 0
        self._create(INBOX)
        for name, use in SPECIAL_FOLDERS:
            self._create(name, use)
        self.subscribed.update([INBOX] + [name for name, _ in SPECIAL_FOLDERS])

    def _create(self, name, specialUse=None):
        # RFC 3501 2.3.1.1: a folder created again gets a new UIDVALIDITY.
        self._lastValidity = max(int(time.time()), self._lastValidity + 1)
        folder = MemoryFolder(self, name, specialUse, self._lastValidity)
        self.folders[name] = folder
        return folder

    def usage(self):
        return sum(info.size for f in self.folders.values() for info in f._infos.values())

    def checkQuota(self, extra):
        """
        @raise QuotaExceeded: C{extra} more bytes would exceed the quota.
        """
        limit = self.store.quotaLimit
        if limit and (self.usage() + extra > limit):
            raise QuotaExceeded()


@implementer(IMailStore)
class MemoryStore:
    """
    Every user's folders, in memory.

    @ivar quotaLimit: the storage quota of every user in bytes, or L{None}.
    """

    delimiter = _names.DELIMITER

    def __init__(self, quota=None):
        self.quotaLimit = quota or None
        self._lock = threading.Lock()
        self._users = {}

    def _user(self, address):
        address = address.lower()
        with self._lock:
            user = self._users.get(address)
            if user is None:
                user = self._users[address] = _MemoryUser(self, address)
            return user

    def folder(self, address, name=INBOX):
        canonical = _names.normalizeName(name)
        user = self._user(address)
        with user.lock:
            folder = user.folders.get(canonical)
            if folder is None:
                raise NoSuchFolder(name)
            return folder

    def deliver(self, address, chunks, folder=INBOX):
        return self.folder(address, folder).deliver(chunks)

    def folders(self, address):
        user = self._user(address)
        with user.lock:
            return [(name, user.folders[name].specialUse) for name in sorted(user.folders)]

    def createFolder(self, address, name):
        canonical = _names.normalizeName(name)
        user = self._user(address)
        with user.lock:
            if canonical in user.folders:
                raise FolderExists(canonical)
            for parent in _names.parentNames(canonical):
                if parent not in user.folders:
                    user._create(parent)
            user._create(canonical)

    def deleteFolder(self, address, name):
        canonical = _names.normalizeName(name)
        user = self._user(address)
        with user.lock:
            folder = user.folders.get(canonical)
            if folder is None:
                raise NoSuchFolder(canonical)
            _names.checkDeletable(canonical, folder.specialUse, user.folders)
            del user.folders[canonical]
            folder._deleted = True
        folder._changed()

    def renameFolder(self, address, old, new):
        oldName = _names.normalizeName(old)
        newName = _names.normalizeName(new)
        user = self._user(address)
        with user.lock:
            folder = user.folders.get(oldName)
            if folder is None:
                raise NoSuchFolder(oldName)
            if newName in user.folders:
                raise FolderExists(newName)
            _names.checkRenamable(oldName, newName, folder.specialUse)
            for parent in _names.parentNames(newName):
                if parent not in user.folders:
                    user._create(parent)
            if oldName == INBOX:
                target = user._create(newName)
                folder.moveTo(list(folder._uids), target)
                return
            moving = [
                name for name in user.folders
                if name == oldName or _names.isInside(name, oldName)
            ]
            renamed = {}
            for name in moving:
                moved = user.folders.pop(name)
                moved._name = newName + name[len(oldName):]
                renamed[moved._name] = moved
                if name in user.subscribed:
                    user.subscribed.discard(name)
                    user.subscribed.add(moved._name)
            user.folders.update(renamed)

    def subscriptions(self, address):
        user = self._user(address)
        with user.lock:
            return sorted(user.subscribed)

    def subscribe(self, address, name, subscribed=True):
        canonical = _names.normalizeName(name)
        user = self._user(address)
        with user.lock:
            if subscribed:
                user.subscribed.add(canonical)
            else:
                user.subscribed.discard(canonical)

    def quota(self, address):
        user = self._user(address)
        with user.lock:
            return user.usage(), self.quotaLimit
