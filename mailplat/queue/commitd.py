"""
The commit process: C{python -m mailplat.queue.commitd QUEUE_DIR}.

The process that runs SMTP sessions hands it each received message held in
memory as the whole queue file (L{mailplat.queue.store.SpoolFile.imageChunks}); it
commits them in groups (L{mailplat.queue.files.commitImages}: each
file written and fsynced, renamed into C{active/}, one fsync of C{active/})
and answers one line per message once its group is on disk.  The SMTP
session sends its 250 only then: the durability contract is the same as
with the commit threads (docs/architecture.md).

Why a process and not threads: the SMTP process's reactor thread keeps the
GIL most of the time under load, and a commit thread waits for it after each
system call (open, write, fsync, rename).  On the bench machine a group of
seven 100 KB files took 5 to 9 ms in the commit threads of a busy SMTP
process and 1.1 ms in a quiet one, and a session waited about two groups for
its 250.  This process has no other work, so its threads get the GIL at
once.

Standard input carries frames: C{!BI} (the length of the queue id, the
length of the file), the id (ASCII letters and digits), the file.  Standard
output carries one line per frame, in the order the group finished:
C{<id> ok} or C{<id> error <errno>}.  Messages that arrive while a group is
being committed form the next group.  End of input: the process finishes
what it read and exits.  A malformed frame is a bug in the sender: the
process says so on standard error and exits with status 2 (its sender fails
every message it was waiting for, as when it dies).

With C{--parent PID} (as L{mailplat.queue.commitprocess} starts it), the
process gets SIGKILL when that process dies (L{dieWithParent}).
"""

import os
import signal
import struct
import sys
from functools import partial

from mailplat.queue.files import ACTIVE, TMP, commitImages, validId

FRAME = struct.Struct("!BI")
# How much standard input is read at once.
READ_SIZE = 8 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


class ProtocolError(ValueError):
    """
    Standard input is not a sequence of frames.
    """


def frameHead(queueId, size):
    """
    @return: what comes before the C{size} bytes of message C{queueId}'s
        queue file in its frame.
    """
    name = queueId.encode("ascii")
    return FRAME.pack(len(name), size) + name


def parseFrames(buffer):
    """
    @param buffer: what was read so far (a L{bytearray}).
    @return: C{(images, consumed)}: the complete frames at the start of
        C{buffer} as C{(queueId, bytearray)}, and how many bytes they took.
    @raise ProtocolError: a frame names an impossible queue id.
    """
    images = []
    pos = 0
    while len(buffer) - pos >= FRAME.size:
        idLength, dataLength = FRAME.unpack_from(buffer, pos)
        start = pos + FRAME.size
        end = start + idLength + dataLength
        if end > len(buffer):
            break
        queueId = bytes(buffer[start : start + idLength]).decode("ascii", "replace")
        if not validId(queueId):
            raise ProtocolError(f"bad queue id {queueId!r}")
        images.append((queueId, buffer[start + idLength : end]))
        pos = end
    return images, pos


def replies(images, errors):
    """
    @return: the lines that answer C{images}, given
        L{mailplat.queue.files.commitImages}'s C{errors}.
    """
    lines = []
    for (queueId, _), error in zip(images, errors):
        if error is None:
            lines.append(b"%s ok\n" % queueId.encode("ascii"))
        else:
            lines.append(b"%s error %d\n" % (queueId.encode("ascii"), error.errno or 0))
    return b"".join(lines)


def serve(commit, inFD, outFD):
    """
    Commit what arrives on C{inFD} until its end, answering on C{outFD}.

    @param commit: C{f(images) -> errors}, I{blocking}
        (L{mailplat.queue.files.commitImages} for one queue).

    @raise ProtocolError: malformed input (what came before was answered).
    """
    buffer = bytearray()
    while True:
        data = os.read(inFD, READ_SIZE)
        if not data:
            if buffer:
                raise ProtocolError(f"input ends inside a frame ({len(buffer)} bytes)")
            return
        buffer += data
        images, consumed = parseFrames(buffer)
        del buffer[:consumed]
        if images:
            answer = replies(images, commit(images))
            while answer:
                answer = answer[os.write(outFD, answer) :]


def dieWithParent(parent):
    """
    Get SIGKILL when process C{parent}, which started this one, dies
    (Linux's C{PR_SET_PDEATHSIG}; elsewhere, nothing).

    @return: whether C{parent} is still this process's parent.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parent = None
    if argv[:1] == ["--parent"] and len(argv) > 1 and argv[1].isdigit():
        parent = int(argv[1])
        argv = argv[2:]
    if len(argv) != 1:
        sys.stderr.write("usage: python -m mailplat.queue.commitd [--parent PID] QUEUE_DIR\n")
        return 2
    if parent is not None and not dieWithParent(parent):
        return 1  # the parent died before this process could start
    try:
        queue = argv[0]
        commit = partial(commitImages, os.path.join(queue, TMP), os.path.join(queue, ACTIVE))
        serve(commit, 0, 1)
    except ProtocolError as e:
        sys.stderr.write(f"malformed input: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
