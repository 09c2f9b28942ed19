"""
The UID index of one Maildir folder: UIDVALIDITY, UIDNEXT and the UID of each
message, kept in C{mailplat-uidlist} inside the folder so that UIDs survive
restarts (RFC 3501 2.3.1.1).

The file is a header line and then one line per message, appended as messages
arrive and rewritten when messages are removed::

    mailplat-uidlist 1 <uidvalidity> <uidnext>
    <uid> <maildir unique name>
"""

import os
import time

from mailplat._fsutil import writeFileAtomically

INDEX_NAME = "mailplat-uidlist"
_MAGIC = "mailplat-uidlist"


class UIDIndex:
    """
    The UID index of one folder.  Not thread-safe: the owning
    L{mailplat.storage.maildir.MaildirFolder} holds its lock around every call.
    """

    def __init__(self, directory):
        self.path = os.path.join(directory, INDEX_NAME)
        self.uidValidity = None
        self.uidNext = 1
        self.uids = {}
        self._stamp = None

    def _fileStamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self):
        """
        (Re-)read the index if it changed on disk since it was last read; create
        it with a fresh UIDVALIDITY if it does not exist.
        """
        stamp = self._fileStamp()
        if stamp is not None and stamp == self._stamp:
            return
        if stamp is None:
            # A new folder, or an index lost: a new UIDVALIDITY tells clients
            # to forget what they cached (RFC 3501 2.3.1.1).
            self.uidValidity = int(time.time())
            self.uidNext = 1
            self.uids = {}
            self._rewrite()
            return
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        header = lines[0].split()
        if len(header) != 4 or header[0] != _MAGIC:
            raise ValueError(f"{self.path}: not a mailplat uid list")
        self.uidValidity = int(header[2])
        uidNext = int(header[3])
        uids = {}
        for line in lines[1:]:
            uid, _, key = line.partition(" ")
            if not key:
                continue  # blank or torn last line
            uid = int(uid)
            uids[key] = uid
            uidNext = max(uidNext, uid + 1)
        self.uids = uids
        self.uidNext = uidNext
        self._stamp = self._fileStamp()

    def add(self, keys):
        """
        Assign the next UIDs to C{keys}, in order, and append them durably.
        """
        if not keys:
            return
        lines = []
        for key in keys:
            self.uids[key] = self.uidNext
            lines.append(f"{self.uidNext} {key}\n")
            self.uidNext += 1
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, "".join(lines).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._stamp = self._fileStamp()

    def remove(self, keys):
        """
        Forget C{keys} and rewrite the index.  UIDNEXT never goes down.
        """
        changed = False
        for key in keys:
            if self.uids.pop(key, None) is not None:
                changed = True
        if changed:
            self._rewrite()

    def _rewrite(self):
        out = [f"{_MAGIC} 1 {self.uidValidity} {self.uidNext}\n"]
        out += [
            f"{uid} {key}\n"
            for key, uid in sorted(self.uids.items(), key=lambda kv: kv[1])
        ]
        writeFileAtomically(self.path, "".join(out).encode("utf-8"))
        self._stamp = self._fileStamp()
