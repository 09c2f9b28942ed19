"""
The queue on disk.

Layout under the queue directory::

    tmp/<id>          a message being received (removed on failure or restart)
    active/<id>       a queued message: header line, JSON envelope, message
    active/<id>.state per-recipient state, once an attempt changed it
    hold/<id>         messages an admin put on hold (C{mailplat queue hold})
    quarantine/<id>   queue files that could not be parsed
    control           the runner's control socket (L{mailplat.queue.control})

Whoever works on a queued message (the runner during a delivery attempt, the
admin command) holds an exclusive C{flock} on its queue file, so the admin
command never moves or deletes a message in the middle of a delivery.

A queue file is::

    MAILPLAT-QUEUE 1 <length of the JSON envelope>\\n
    <JSON envelope>\\n
    <the message, CRLF line endings>

Durability contract (docs/queue.md): L{SpoolFile.commit} fsyncs the file,
renames it into C{active/} and fsyncs the directory before returning; only then
does SMTP answer 250.  Every method that touches the disk is I{blocking}.
"""

import fcntl
import os
import secrets
import shutil
import threading
import time

from mailplat._fsutil import fsyncDirectory, runAll, writeFileAtomically
from mailplat.queue.envelope import Envelope
from mailplat.queue.files import ACTIVE, TMP, commitImages, syncRenamed, unlinkQuietly, validId

_MAGIC = b"MAILPLAT-QUEUE 1 "
_CHUNK = 64 * 1024


def _prefix(header, room):
    """
    The start of a queue file: the header line, then the JSON envelope
    C{header} padded with spaces to C{room} bytes.
    """
    return _MAGIC + b"%d\n" % room + header.ljust(room) + b"\n"


class QueueFileError(ValueError):
    """
    A queue file cannot be parsed.
    """


class QueueBusy(Exception):
    """
    Another process or attempt holds the lock on this message.
    """


def newQueueId():
    """
    A new queue id: the time in milliseconds and 6 random hex digits,
    upper case, sortable by arrival.
    """
    return f"{int(time.time() * 1000):010X}{secrets.token_hex(3).upper()}"


class QueuedMessage:
    """
    A message in C{active/}: its envelope and where its content starts.
    """

    def __init__(self, path, envelope, offset, size):
        self.path = path
        self.envelope = envelope
        self.offset = offset
        self.storedSize = size
        self.lockFD = None
        # Whether active/<id>.state may exist (read at load, or written
        # since): removal skips a useless unlink otherwise.
        self.hasState = False

    @property
    def size(self):
        """
        The size of the message as delivered: the added header fields and the
        stored content.
        """
        return self.storedSize + len(self.prefix)

    def lock(self):
        """
        I{blocking}.  Take the exclusive lock on the queue file.

        @raise QueueBusy: someone else holds it.
        @raise FileNotFoundError: the message was moved or removed meanwhile.
        """
        if self.lockFD is None:
            self.lockFD = lockFile(self.path)

    def unlock(self):
        if self.lockFD is not None:
            os.close(self.lockFD)
            self.lockFD = None

    @property
    def id(self):
        return self.envelope.id

    @property
    def prefix(self):
        """
        The header fields checks added at receipt (L{Envelope.headers}),
        which come before the stored content.
        """
        return "".join(self.envelope.headers).encode("utf-8")

    def openContent(self):
        """
        I{blocking}.  @return: a binary file-like object reading the message:
            the added header fields, then the stored content.
        """
        f = open(self.path, "rb")
        f.seek(self.offset)
        prefix = self.prefix
        return _PrefixedFile(prefix, f) if prefix else f

    def contentChunks(self, chunkSize=_CHUNK):
        """
        I{blocking}.  Yield the message content in chunks.

        A locked message is read through its lock's descriptor with
        C{pread} (the same file: L{lockFile} checks it), which saves the
        open, stat, seek and close of L{openContent}; a short read of a
        regular file is its end.
        """
        fd = self.lockFD
        if fd is not None:
            prefix = self.prefix
            if prefix:
                yield prefix
            position = self.offset
            while True:
                chunk = os.pread(fd, chunkSize, position)
                if chunk:
                    yield chunk
                if len(chunk) < chunkSize:
                    return
                position += len(chunk)
        with self.openContent() as f:
            while True:
                chunk = f.read(chunkSize)
                if not chunk:
                    return
                yield chunk


def lockFile(path, wait=0.0):
    """
    I{blocking}.  Open C{path} and take an exclusive C{flock} on it, waiting
    up to C{wait} seconds.

    @return: the file descriptor holding the lock (close it to unlock).
    @raise QueueBusy: the lock is held elsewhere.
    @raise FileNotFoundError: no such file, or it was renamed or removed
        while we were waiting.
    """
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise QueueBusy(os.path.basename(path)) from None
            time.sleep(0.1)
            continue
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            raise FileNotFoundError(path)
        return fd


class _PrefixedFile:
    """
    A read-only file that yields C{prefix} and then the rest of C{f}.
    """

    def __init__(self, prefix, f):
        self._prefix = prefix
        self._file = f

    @property
    def closed(self):
        return self._file.closed

    def read(self, size=-1):
        if self._prefix:
            if size is None or size < 0:
                data, self._prefix = self._prefix + self._file.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            if len(data) < size:
                data += self._file.read(size - len(data))
            return data
        return self._file.read(size)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Room left in a queue file's envelope for what policy checks add at the end
# of DATA (Authentication-Results, DKIM-Signature), so that the envelope can
# be rewritten in place; a larger envelope makes commit copy the message.
_ENVELOPE_RESERVE = 2048


#: A message being received stays in memory until it is this large (then
#: its file in C{tmp/} is created and written as it arrives)...
MEMORY_LIMIT = 256 * 1024
#: ...and while all the messages of a process held in memory stay under
#: this together.
MEMORY_BUDGET = 16 * 1024 * 1024


class SpoolFile:
    """
    A message being received.  L{write} and L{flush} are called from the
    reactor thread; L{commit} and L{abort} are I{blocking}.

    A small message is kept in memory and its file is created, written,
    fsynced and renamed in one go by L{commit} (in the commit thread), or
    by the commit process from L{imageChunks}: the reactor thread makes no file
    system call for it at all.  Once a
    message grows past L{MEMORY_LIMIT} (or the process holds
    L{MEMORY_BUDGET} in memory), its file is created and what arrives is
    written to it (buffered, no fsync).  L{flush} creates the file too, for
    checks that read it.
    """

    def __init__(self, queue, envelope):
        self.queue = queue
        self.envelope = envelope
        self.tmpPath = os.path.join(queue.tmpDir, envelope.id)
        self._file = None
        queue.spooling.add(envelope.id)
        header = envelope.toJSON()
        self._header = header
        self._reserved = len(header) + _ENVELOPE_RESERVE
        # JSON allows trailing white space: the padding is room to grow.
        prefix = _prefix(header, self._reserved)
        self._headerAt = len(prefix) - self._reserved - 1
        self._chunks = [prefix]
        self._held = 0
        self.offset = len(prefix)
        self.size = 0
        self.closed = False

    @property
    def inMemory(self):
        """
        Whether the message is still held in memory only (no file yet).
        """
        return self._file is None

    def write(self, data):
        """
        Append message content.

        @raise OSError: on a disk error (ENOSPC, EIO...).
        """
        if self._file is None:
            if self._held + len(data) <= MEMORY_LIMIT and self.queue.holdInMemory(len(data)):
                self._chunks.append(data)
                self._held += len(data)
                self.size += len(data)
                return
            self._createFile()
        self._file.write(data)
        self.size += len(data)

    def _createFile(self):
        """
        Create the file in C{tmp/} and write what was held in memory.

        @raise OSError: on a disk error; the caller aborts.
        """
        chunks, self._chunks = self._chunks, None
        held, self._held = self._held, 0
        self.queue.releaseMemory(held)
        self._file = open(self.tmpPath, "xb", buffering=_CHUNK)
        for chunk in chunks:
            self._file.write(chunk)

    def commit(self):
        """
        Make the message durable and visible to the runner.

        @return: the L{QueuedMessage}.
        @raise OSError: on a disk error; nothing is left in C{active/} then.
        """
        item = self.syncAndRename()
        try:
            fsyncDirectory(self.queue.activeDir)
        except BaseException:
            os.unlink(item.path)
            raise
        return item

    def syncAndRename(self):
        """
        The first half of L{commit}: fsync the file and rename it into
        C{active/}.  The message is durable only once C{active/} is fsynced
        too (L{QueueStore.commitMany} does that once for many files).

        @return: the L{QueuedMessage}.
        @raise OSError: on a disk error; the file is removed then.
        """
        try:
            self._prepare()
            os.fsync(self._file.fileno())
        except BaseException:
            self.abort()
            raise
        return self._closeAndRename()

    def _prepare(self):
        """
        Hand everything to the kernel, with the final envelope (creating the
        file of a message held in memory).  The caller fsyncs, then calls
        L{_closeAndRename}.
        """
        if self._file is None:
            self._createFile()
        self._file.flush()
        self._finalEnvelope()

    def _closeAndRename(self):
        """
        Close the (fsynced) file and rename it into C{active/}.

        @return: the L{QueuedMessage}.
        """
        try:
            self._file.close()
            self.closed = True
            final = os.path.join(self.queue.activeDir, self.envelope.id)
            os.rename(self.tmpPath, final)
        except BaseException:
            self.abort()
            raise
        self.queue.spooling.discard(self.envelope.id)
        return QueuedMessage(final, self.envelope, self.offset, self.size)

    def flush(self):
        """
        Hand buffered content to the kernel (no fsync), creating the file of
        a message held in memory, so that the file can be read, for instance
        by the data-stage policy checks.

        @raise OSError: on a disk error.
        """
        if self._file is None:
            self._createFile()
        self._file.flush()

    def imageChunks(self):
        """
        The whole queue file of a message held in memory (L{inMemory}), with
        the final envelope, for the commit process
        (L{mailplat.queue.commitprocess}): the chunks as they arrived, after
        a new first chunk if the envelope changed.  The spool stays open
        until L{committed} or L{abort}.

        @return: a list of L{bytes}, L{offset} + L{size} long together.
        """
        header = self.envelope.toJSON()
        if header != self._header:
            room = max(self._reserved, len(header))
            prefix = _prefix(header, room)
            self._chunks[0] = prefix
            self._header = header
            self._reserved = room
            self._headerAt = len(prefix) - room - 1
            self.offset = len(prefix)
        return self._chunks

    def committed(self):
        """
        The commit process wrote L{imageChunks} to C{active/} durably: forget the
        message held in memory.

        @return: the L{QueuedMessage}.
        """
        self._chunks = None
        self.queue.releaseMemory(self._held)
        self._held = 0
        self.closed = True
        self.queue.spooling.discard(self.envelope.id)
        final = os.path.join(self.queue.activeDir, self.envelope.id)
        return QueuedMessage(final, self.envelope, self.offset, self.size)

    def _finalEnvelope(self):
        """
        Write the envelope again if it changed since DATA began (checks added
        header fields, a quarantine mark): in place when it fits the reserved
        room, else by copying the message into a new file.
        """
        header = self.envelope.toJSON()
        if header == self._header:
            return
        if len(header) <= self._reserved:
            os.pwrite(self._file.fileno(), header.ljust(self._reserved), self._headerAt)
            return
        copyPath = self.tmpPath + ".grow"
        prefix = _prefix(header, len(header))
        with open(copyPath, "xb") as out, open(self.tmpPath, "rb") as old:
            out.write(prefix)
            old.seek(self.offset)
            shutil.copyfileobj(old, out, _CHUNK)
            out.flush()
        self._file.close()
        os.replace(copyPath, self.tmpPath)
        self._file = open(self.tmpPath, "ab")
        self.offset = len(prefix)

    def abort(self):
        """
        Throw the partial message away.
        """
        self.queue.spooling.discard(self.envelope.id)
        if self._file is None:
            self.closed = True
            if self._chunks is not None:
                self._chunks = None
                self.queue.releaseMemory(self._held)
                self._held = 0
            return
        if not self.closed:
            self.closed = True
            try:
                self._file.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmpPath)
        except FileNotFoundError:
            pass


def _prepareAndSync(spool):
    """
    The first part of L{QueueStore.commitMany} for one message, in one of
    its threads: L{SpoolFile._prepare}, then fsync.

    @return: L{None}, or the exception that stopped it.
    """
    try:
        spool._prepare()
        os.fsync(spool._file.fileno())
    except Exception as e:
        return e
    return None


class QueueStore:
    """
    The queue directory.
    """

    def __init__(self, path):
        self.path = path
        self.tmpDir = os.path.join(path, TMP)
        self.activeDir = os.path.join(path, ACTIVE)
        self.quarantineDir = os.path.join(path, "quarantine")
        self.holdDir = os.path.join(path, "hold")
        self.controlPath = os.path.join(path, "control")
        # The ids of the messages this process is receiving (in tmp/).
        self.spooling = set()
        # Bytes of messages being received held in memory (SpoolFile),
        # counted from the reactor thread and the commit thread.
        self.memoryHeld = 0
        self._heldLock = threading.Lock()

    def holdInMemory(self, n):
        """
        Count C{n} more bytes of messages held in memory, if they fit in
        L{MEMORY_BUDGET}.

        @return: whether they fit (if not, nothing was counted).
        """
        with self._heldLock:
            if self.memoryHeld + n > MEMORY_BUDGET:
                return False
            self.memoryHeld += n
            return True

    def releaseMemory(self, n):
        """
        Count C{n} bytes of messages held in memory less.
        """
        with self._heldLock:
            self.memoryHeld -= n

    def create(self):
        """
        I{blocking}.  Create the directories and remove what a crash left in
        C{tmp/} (messages that never got a 250).

        @return: the ids removed from C{tmp/}.
        """
        for d in (self.tmpDir, self.activeDir, self.quarantineDir, self.holdDir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        removed = []
        for name in os.listdir(self.tmpDir):
            os.unlink(os.path.join(self.tmpDir, name))
            removed.append(name)
        return removed

    def removeOrphans(self):
        """
        I{blocking}.  Remove what another process (a separate SMTP process
        that died) left in C{tmp/}: every file but those of this process's
        own messages being received (L{spooling}).

        @return: the ids removed.
        """
        removed = []
        for name in os.listdir(self.tmpDir):
            queueId = name.split(".", 1)[0]
            if queueId in self.spooling:
                continue
            try:
                os.unlink(os.path.join(self.tmpDir, name))
            except FileNotFoundError:
                continue
            removed.append(queueId)
        return removed

    def spool(self, envelope):
        """
        Start receiving a message (opens a file in C{tmp/}).

        @rtype: L{SpoolFile}
        """
        return SpoolFile(self, envelope)

    def commitMany(self, spools):
        """
        I{blocking}.  Group commit: L{SpoolFile.commit} for several messages
        with one fsync of C{active/} for all of them.  The files are fsynced
        (all at once), each is renamed into C{active/}, then the directory
        is fsynced once; a message is durable (and may get its 250) only
        when this returns.

        @param spools: L{SpoolFile}s.
        @return: a list with, for each spool in order, its L{QueuedMessage}
            or the L{OSError} that kept it out of the queue (its file is
            removed then; nothing of it is left in C{active/}).
        """
        results = [None] * len(spools)
        # Each file is completed (created and written, for a message held in
        # memory) and fsynced by one of several threads, all at the same
        # time: the file system commits them together
        # (mailplat._fsutil.runAll).
        errors = runAll(_prepareAndSync, spools)
        renamed = []
        for n, (spool, error) in enumerate(zip(spools, errors)):
            if error is not None:
                spool.abort()
                results[n] = error
                continue
            try:
                item = spool._closeAndRename()
            except Exception as e:
                results[n] = e
            else:
                results[n] = item
                renamed.append(item)
        error = syncRenamed(self.activeDir, [item.path for item in renamed])
        if error is not None:
            results = [r if isinstance(r, Exception) else error for r in results]
        return results

    def commitImages(self, images):
        """
        I{blocking}.  L{mailplat.queue.files.commitImages} into this queue.
        """
        return commitImages(self.tmpDir, self.activeDir, images)

    def discardCommits(self, queueIds):
        """
        I{blocking}.  Remove whatever a commit process that died wrote of
        these messages, in C{tmp/} and in C{active/} (durably: a message
        that never got its 250 must not come back after a crash).
        """
        removed = False
        for queueId in queueIds:
            unlinkQuietly(os.path.join(self.tmpDir, queueId))
            try:
                os.unlink(os.path.join(self.activeDir, queueId))
                removed = True
            except FileNotFoundError:
                pass
        if removed:
            fsyncDirectory(self.activeDir)

    def ids(self):
        """
        I{blocking}.  @return: the ids in C{active/}, oldest first.
        """
        return sorted(
            n
            for n in os.listdir(self.activeDir)
            if not n.endswith(".state") and ".tmp" not in n
        )

    def heldIds(self):
        """
        I{blocking}.  @return: the ids in C{hold/}, oldest first.
        """
        try:
            names = os.listdir(self.holdDir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.endswith(".state") and ".tmp" not in n)

    def load(self, queueId, held=False):
        """
        I{blocking}.  Read a queued message's envelope and state.

        @param held: read it from C{hold/} rather than C{active/}.
        @raise QueueFileError: it cannot be parsed.
        @raise FileNotFoundError: no such message.
        """
        if not validId(queueId):
            raise FileNotFoundError(queueId)
        path = os.path.join(self.holdDir if held else self.activeDir, queueId)
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC) + 12)
            if not head.startswith(_MAGIC) or b"\n" not in head[len(_MAGIC) :]:
                raise QueueFileError(f"{queueId}: bad header")
            digits = head[len(_MAGIC) :].split(b"\n", 1)[0]
            if not digits.isdigit():
                raise QueueFileError(f"{queueId}: bad header")
            length = int(digits)
            start = len(_MAGIC) + len(digits) + 1
            f.seek(start)
            data = f.read(length)
            if len(data) != length or f.read(1) != b"\n":
                raise QueueFileError(f"{queueId}: truncated envelope")
            offset = start + length + 1
            size = os.fstat(f.fileno()).st_size - offset
        try:
            envelope = Envelope.fromJSON(data)
        except ValueError as e:
            raise QueueFileError(f"{queueId}: {e}") from None
        if envelope.id != queueId:
            raise QueueFileError(f"{queueId}: envelope names {envelope.id!r}")
        statePath = path + ".state"
        hasState = False
        try:
            with open(statePath, "rb") as f:
                envelope.applyState(f.read())
            hasState = True
        except FileNotFoundError:
            pass
        except ValueError as e:
            raise QueueFileError(f"{queueId}: state file: {e}") from None
        item = QueuedMessage(path, envelope, offset, size)
        item.hasState = hasState
        return item

    def saveState(self, item):
        """
        I{blocking}.  Durably record the per-recipient state of C{item}.
        """
        item.hasState = True
        writeFileAtomically(item.path + ".state", item.envelope.stateJSON())

    def remove(self, queueId):
        """
        I{blocking}.  Remove a message whose recipients are all final.
        """
        path = os.path.join(self.activeDir, queueId)
        for p in (path + ".state", path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        fsyncDirectory(self.activeDir)

    def removeMany(self, queueIds):
        """
        I{blocking}.  L{remove} for several messages, with one directory
        fsync for all of them.

        @param queueIds: queue ids, or L{QueuedMessage}s (whose state file
            is unlinked only if it may exist).
        @return: for each id, L{None} or the L{OSError} that kept it.
        """
        results = []
        for queueId in queueIds:
            suffixes = (".state", "")
            if isinstance(queueId, QueuedMessage):
                if not queueId.hasState:
                    suffixes = ("",)
                queueId = queueId.id
            path = os.path.join(self.activeDir, queueId)
            try:
                for p in [path + suffix for suffix in suffixes]:
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
            except OSError as e:
                results.append(e)
            else:
                results.append(None)
        try:
            fsyncDirectory(self.activeDir)
        except OSError as e:
            return [e] * len(queueIds)
        return results

    def _move(self, queueId, source, destination, wait):
        if not validId(queueId):
            raise FileNotFoundError(queueId)
        path = os.path.join(source, queueId)
        fd = lockFile(path, wait)
        try:
            for suffix in (".state", ""):
                try:
                    os.rename(path + suffix, os.path.join(destination, queueId + suffix))
                except FileNotFoundError:
                    if not suffix:
                        raise
            fsyncDirectory(destination)
            fsyncDirectory(source)
        finally:
            os.close(fd)

    def hold(self, queueId, wait=10.0):
        """
        I{blocking}.  Move a message from C{active/} to C{hold/}: the runner
        leaves it alone until it is released.

        @raise FileNotFoundError: no such active message.
        @raise QueueBusy: it is being delivered right now.
        """
        self._move(queueId, self.activeDir, self.holdDir, wait)

    def release(self, queueId, wait=10.0):
        """
        I{blocking}.  Move a held message back to C{active/}.

        @raise FileNotFoundError: no such held message.
        """
        self._move(queueId, self.holdDir, self.activeDir, wait)

    def delete(self, queueId, wait=10.0):
        """
        I{blocking}.  Delete an active or held message (no bounce is sent).

        @return: C{"active"} or C{"hold"}, where it was.
        @raise FileNotFoundError: no such message.
        @raise QueueBusy: it is being delivered right now.
        """
        if not validId(queueId):
            raise FileNotFoundError(queueId)
        for where, directory in (("active", self.activeDir), ("hold", self.holdDir)):
            path = os.path.join(directory, queueId)
            try:
                fd = lockFile(path, wait)
            except FileNotFoundError:
                continue
            try:
                for p in (path + ".state", path):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
                fsyncDirectory(directory)
            finally:
                os.close(fd)
            return where
        raise FileNotFoundError(queueId)

    def quarantine(self, queueId):
        """
        I{blocking}.  Move an unparseable message (and its state) aside.
        """
        path = os.path.join(self.activeDir, queueId)
        for suffix in ("", ".state"):
            try:
                os.rename(
                    path + suffix, os.path.join(self.quarantineDir, queueId + suffix)
                )
            except FileNotFoundError:
                pass
        fsyncDirectory(self.activeDir)
        fsyncDirectory(self.quarantineDir)
