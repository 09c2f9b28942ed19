"""
Whole queue files committed in groups, and the small rules of queue file
names: what the commit process (L{mailplat.queue.commitd}) needs, in a
module of its own so that the process imports nothing else of the queue
(it starts in about 30 ms and 11.7 MiB; the envelope code would add
6.4 MiB).
L{mailplat.queue.store} uses the same functions.
"""

import os

from mailplat._fsutil import fsyncDirectory, runAll

#: The queue's directories for messages being received and queued messages
#: (L{mailplat.queue.store} describes the layout).
TMP = "tmp"
ACTIVE = "active"


def validId(queueId):
    """
    Whether C{queueId} can name a queue file (no path tricks from the admin
    command line or a malformed frame).
    """
    return bool(queueId) and queueId.isalnum() and queueId.isascii()


def unlinkQuietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def syncRenamed(activeDir, paths):
    """
    I{blocking}.  fsync C{activeDir} once C{paths} were renamed into it; if
    that fails, remove them.

    @return: L{None}, or the exception the fsync raised.
    """
    if not paths:
        return None
    try:
        fsyncDirectory(activeDir)
    except Exception as e:
        for path in paths:
            unlinkQuietly(path)
        return e
    return None


def commitImages(tmpDir, activeDir, images):
    """
    I{blocking}.  Group commit of whole queue files: each is written to
    C{tmpDir/<id>} and fsynced (from several threads at once), renamed into
    C{activeDir}, then C{activeDir} is fsynced once; a message is durable
    when this returns.

    @param images: C{(queueId, data)} pairs, C{data} a bytes-like object
        (L{mailplat.queue.store.SpoolFile.imageChunks} joined).
    @return: a list with, for each image in order, L{None} or the
        L{OSError} that kept it out of the queue (nothing of it is left
        then, in C{tmpDir} or C{activeDir}).
    """
    errors = runAll(_writeAndSync, [(os.path.join(tmpDir, i), data) for i, data in images])
    renamed = []
    for n, ((queueId, _), error) in enumerate(zip(images, errors)):
        if error is not None:
            continue
        final = os.path.join(activeDir, queueId)
        try:
            os.rename(os.path.join(tmpDir, queueId), final)
        except OSError as e:
            errors[n] = e
            unlinkQuietly(os.path.join(tmpDir, queueId))
        else:
            renamed.append(final)
    failed = syncRenamed(activeDir, renamed)
    if failed is not None:
        errors = [failed if error is None else error for error in errors]
    return errors


def _writeAndSync(pathAndData):
    """
    One file of L{commitImages}, in one of its threads: create it, write
    it, fsync it.

    @return: L{None}, or the L{OSError} that stopped it (the file is
        removed then, unless it was someone else's).
    """
    path, data = pathAndData
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        unlinkQuietly(path)
        return e
    return None
