"""
Maildir folders (U{https://cr.yp.to/proto/maildir.html}) with a UID index, and
the store that maps a user to their folders.

Every method here does disk I/O and may block: protocol code calls them through
C{deferToThread}; each folder serialises its callers with a lock, so delivery,
several IMAP sessions and POP3 can share one folder.  Flags live in the file
names (C{:2,FRS}) as other Maildir programs expect; UIDs live in the index.

Messages are stored exactly as they will be served, with CRLF line endings, so
that sizes (POP3 LIST, IMAP RFC822.SIZE) and DKIM signatures are byte-exact.
"""

import itertools
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

from zope.interface import implementer

from mailplat._fsutil import fsyncDirectory
from mailplat.interfaces import (
    INBOX,
    BadFolderName,
    IMailFolder,
    IMailStore,
    MessageGone,
    NoSuchFolder,
)
from mailplat.storage.uidindex import UIDIndex

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

_COPY_CHUNK = 256 * 1024


@dataclass(frozen=True)
class MessageInfo:
    """
    One message of a folder snapshot.

    @ivar uid: its UID, stable across sessions and restarts.
    @ivar key: the Maildir unique name (the file name before C{:2,}).
    @ivar path: the file's current absolute path.
    @ivar flags: the IMAP system flags, a L{frozenset} of L{str}.
    @ivar size: the size in bytes, exactly as served.
    @ivar recent: whether the message is still in C{new/}.
    @ivar mtime: the delivery time (the file's mtime), used as INTERNALDATE.
    """

    uid: int
    key: str
    path: str
    flags: frozenset
    size: int
    recent: bool
    mtime: float


def _parseName(name):
    """
    @return: C{(key, flags)} for a Maildir file name.
    """
    key, sep, info = name.partition(":2,")
    flags = frozenset(LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS)
    return key, flags


def _sizeFromName(key):
    m = re.search(r",S=(\d+)", key)
    return int(m.group(1)) if m else None


class _UniqueNames:
    """
    Maildir unique names: C{<seconds>.M<usec>P<pid>Q<n>.<host>,S=<size>}.
    """

    def __init__(self):
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", "\\057").replace(":", "\\072")

    def next(self, size):
        now = time.time()
        with self._lock:
            n = next(self._counter)
        return (
            f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{n}."
            f"{self._host},S={size}"
        )


@implementer(IMailFolder)
class MaildirFolder:
    """
    One Maildir folder and its UID index.
    """

    def __init__(self, path, names):
        self.path = path
        self._names = names
        self._lock = threading.RLock()
        self._index = UIDIndex(path)
        self._listeners = []
        self._created = False

    # -- structure

    def _ensure(self):
        if self._created:
            return
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)
        self._created = True

    def exists(self):
        return os.path.isdir(os.path.join(self.path, "cur"))

    def create(self):
        with self._lock:
            self._ensure()
            self._index.load()

    # -- listeners

    def addListener(self, listener):
        """
        Call C{listener()} (in the thread that made the change) after a
        delivery, a flag change or an expunge.
        """
        self._listeners.append(listener)

    def removeListener(self, listener):
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self):
        for listener in list(self._listeners):
            listener()

    # -- reading

    @property
    def uidValidity(self):
        with self._lock:
            self._ensure()
            self._index.load()
            return self._index.uidValidity

    @property
    def uidNext(self):
        with self._lock:
            self._ensure()
            self._index.load()
            return self._index.uidNext

    def _scan(self):
        """
        List C{new/} and C{cur/}: C{{key: (path, flags, recent)}}.
        """
        found = {}
        for sub in ("new", "cur"):
            directory = os.path.join(self.path, sub)
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    key, flags = _parseName(entry.name)
                    if sub == "new":
                        flags = frozenset()
                    found[key] = (entry.path, flags, sub == "new")
        return found

    def snapshot(self):
        """
        The folder's messages now, ordered by UID.  Messages put in the Maildir
        by another program get the next UIDs; messages removed by another
        program are dropped from the index.

        @return: a L{list} of L{MessageInfo}.
        """
        with self._lock:
            self._ensure()
            self._index.load()
            found = self._scan()
            uids = self._index.uids
            gone = [key for key in uids if key not in found]
            if gone:
                self._index.remove(gone)
            new = [key for key in found if key not in uids]
            if new:
                # Oldest first: the Maildir unique name starts with the time.
                new.sort(key=lambda k: (os.path.getmtime(found[k][0]), k))
                self._index.add(new)
            result = []
            for key, (path, flags, recent) in found.items():
                size = _sizeFromName(key)
                st = os.stat(path)
                if size is None or size != st.st_size:
                    size = st.st_size
                result.append(
                    MessageInfo(
                        uid=uids[key],
                        key=key,
                        path=path,
                        flags=flags,
                        size=size,
                        recent=recent,
                        mtime=st.st_mtime,
                    )
                )
            result.sort(key=lambda m: m.uid)
            return result

    def _locate(self, key):
        found = self._scan()
        if key not in found:
            raise MessageGone(key)
        return found[key]

    def read(self, info):
        """
        @return: the bytes of the message described by C{info} (a
            L{MessageInfo}), following a rename by another session.
        @raise MessageGone: it was expunged.
        """
        try:
            with open(info.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            pass
        with self._lock:
            path = self._locate(info.key)[0]
            with open(path, "rb") as f:
                return f.read()

    def openMessage(self, info):
        """
        @return: a binary file open on the message (the caller closes it).
        @raise MessageGone: it was expunged.
        """
        try:
            return open(info.path, "rb")
        except FileNotFoundError:
            pass
        with self._lock:
            return open(self._locate(info.key)[0], "rb")

    # -- writing

    def deliver(self, chunks, flags=frozenset()):
        """
        Store a new message durably: write C{tmp/}, fsync, rename into C{new/}
        (or C{cur/} with flags), fsync the directory, give it the next UID.

        @param chunks: an iterable of L{bytes}, CRLF line endings.
        @return: the new message's UID.
        """
        with self._lock:
            self._ensure()
        tmpName = self._names.next(0)
        tmpPath = os.path.join(self.path, "tmp", tmpName)
        size = 0
        fd = os.open(tmpPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    size += n
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmpPath)
            raise
        os.close(fd)
        key = tmpName.rsplit(",S=", 1)[0] + f",S={size}"
        if flags:
            sub, name = "cur", key + ":2," + "".join(
                sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS)
            )
        else:
            sub, name = "new", key
        with self._lock:
            os.rename(tmpPath, os.path.join(self.path, sub, name))
            fsyncDirectory(os.path.join(self.path, sub))
            self._index.load()
            self._index.add([key])
            uid = self._index.uids[key]
        self._changed()
        return uid

    def changeFlags(self, info, add=frozenset(), remove=frozenset(), replace=None):
        """
        Change the system flags of a message atomically: the flags on disk
        now (not those of C{info}, which may be older) get C{add} and lose
        C{remove}, or become C{replace}; the file is renamed into C{cur/}.

        @return: the new L{MessageInfo}.
        @raise MessageGone: it was expunged.
        """
        with self._lock:
            path, current, recent = self._locate(info.key)
            if replace is not None:
                flags = frozenset(replace)
            else:
                flags = (current | frozenset(add)) - frozenset(remove)
            flags = frozenset(f for f in flags if f in FLAG_LETTERS)
            name = info.key + ":2," + "".join(sorted(FLAG_LETTERS[f] for f in flags))
            target = os.path.join(self.path, "cur", name)
            changed = path != target
            if changed:
                os.rename(path, target)
        if changed:
            self._changed()
        return MessageInfo(
            info.uid, info.key, target, flags, info.size, False, info.mtime
        )

    def setFlags(self, info, flags):
        """
        Replace the system flags of a message (see L{changeFlags}).
        """
        return self.changeFlags(info, replace=flags)

    def markSeenByClient(self, infos):
        """
        Move messages from C{new/} to C{cur/} without flags, so they are no
        longer "recent" (done when a session selects the folder read-write).
        """
        with self._lock:
            for info in infos:
                if info.recent:
                    try:
                        os.rename(
                            info.path, os.path.join(self.path, "cur", info.key + ":2,")
                        )
                    except FileNotFoundError:
                        pass

    def remove(self, infos):
        """
        Delete messages and forget their UIDs.  Missing files are ignored.
        """
        with self._lock:
            found = self._scan()
            for info in infos:
                entry = found.get(info.key)
                if entry is not None:
                    os.unlink(entry[0])
            for sub in ("new", "cur"):
                fsyncDirectory(os.path.join(self.path, sub))
            self._index.load()
            self._index.remove([info.key for info in infos])
        self._changed()


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


_FOLDER_PART = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")


@implementer(IMailStore)
class MaildirStore:
    """
    All mailboxes under one root: C{<root>/<domain>/<local part>/Maildir/} is a
    user's INBOX and C{Maildir/.<Name>} their other folders (Maildir++).
    """

    delimiter = "/"

    def __init__(self, root):
        self.root = root
        self._names = _UniqueNames()
        self._folders = {}
        self._lock = threading.Lock()

    def userDirectory(self, address):
        """
        The directory of a user's mail.  The address is one the user database
        knows, but it is still quoted so that no address can name a path
        outside the root.
        """
        local, _, domain = address.lower().rpartition("@")
        parts = [_quotePathPart(domain), _quotePathPart(local)]
        return os.path.join(self.root, *parts)

    def _folderPath(self, address, name):
        if name.upper() == INBOX:
            sub = ""
        else:
            segments = name.split(self.delimiter)
            for seg in segments:
                if not seg or seg in (".", "..") or not _FOLDER_PART.match(seg):
                    raise BadFolderName(name)
                if seg.startswith("."):
                    raise BadFolderName(name)
            sub = "." + ".".join(segments)
        return os.path.join(self.userDirectory(address), "Maildir", sub)

    def folder(self, address, name=INBOX):
        """
        The L{MaildirFolder} C{name} of C{address}; INBOX is created on demand,
        other folders must exist.

        @raise BadFolderName: the name is not allowed.
        @raise NoSuchFolder: the folder does not exist.
        """
        path = os.path.normpath(self._folderPath(address, name))
        with self._lock:
            folder = self._folders.get(path)
            if folder is None:
                folder = self._folders[path] = MaildirFolder(path, self._names)
        if name.upper() == INBOX:
            folder.create()
        elif not folder.exists():
            raise NoSuchFolder(name)
        return folder

    def deliver(self, address, chunks, folder=INBOX):
        """
        Deliver a message (an iterable of byte chunks) to a user's folder.

        @return: the new UID.
        """
        return self.folder(address, folder).deliver(chunks)
