"""
The commit process: the queue files it writes (L{QueueStore.commitImages},
L{SpoolFile.imageChunks}), its program (L{mailplat.queue.commitd}) and the
service that feeds it and keeps it running
(L{mailplat.queue.commitprocess.CommitProcess}, with a real child process).
"""

import errno
import os
import signal
import subprocess
import sys

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from mailplat.queue import commitd
from mailplat.queue import files as filesModule
from mailplat.queue.commitprocess import CommitProcess
from mailplat.queue.envelope import Envelope, Recipient
from mailplat.queue.store import QueueStore, newQueueId
from mailplat.testing import LogCapture, runSynchronously

CONTENT = b"Subject: x\r\n\r\nbody\r\n"


def spooled(queue, content=CONTENT):
    spool = queue.spool(
        Envelope(
            id=newQueueId(),
            sender="a@b.example",
            recipients=[Recipient("demo@example.test")],
            arrival=1000.0,
        )
    )
    spool.write(content)
    return spool


def image(spool):
    """
    The queue file the commit process gets for C{spool}.
    """
    return b"".join(spool.imageChunks())


def frame(queueId, data):
    return commitd.frameHead(queueId, len(data)) + data


def stored(queue, queueId):
    with open(os.path.join(queue.activeDir, queueId), "rb") as f:
        return f.read()


class CommitImagesTests(unittest.TestCase):
    """
    L{SpoolFile.imageChunks} and L{QueueStore.commitImages} make the same queue
    files as the commit threads, and leave nothing of a message they fail.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def commitImage(self, spool):
        [error] = self.queue.commitImages([(spool.envelope.id, image(spool))])
        self.assertIsNone(error)
        return spool.committed()

    def assertSameAsThreads(self, change):
        """
        A message committed as an image and one committed by the threads,
        after the same C{change} of their envelopes, are the same file
        (but for the id) and read back the same.
        """
        viaImage, viaThreads = spooled(self.queue), spooled(self.queue)
        for spool in (viaImage, viaThreads):
            change(spool.envelope)
        one = self.commitImage(viaImage)
        [two] = self.queue.commitMany([viaThreads])
        self.assertEqual(
            stored(self.queue, one.id).replace(one.id.encode(), b"ID"),
            stored(self.queue, two.id).replace(two.id.encode(), b"ID"),
        )
        loaded = self.queue.load(one.id)
        self.assertEqual((loaded.offset, loaded.storedSize), (one.offset, one.storedSize))
        self.assertEqual(loaded.envelope.headers, viaImage.envelope.headers)
        self.assertEqual(b"".join(one.contentChunks()), b"".join(two.contentChunks()))
        self.assertTrue(b"".join(one.contentChunks()).endswith(CONTENT))
        return one

    def test_unchangedEnvelope(self):
        self.assertSameAsThreads(lambda envelope: None)

    def test_envelopeGrownWithinItsRoom(self):
        def change(envelope):
            envelope.headers = ["X-Check: yes\r\n"]

        item = self.assertSameAsThreads(change)
        self.assertEqual(b"".join(item.contentChunks()), b"X-Check: yes\r\n" + CONTENT)

    def test_envelopeGrownPastItsRoom(self):
        long = "X-Long: " + "v" * 5000 + "\r\n"

        def change(envelope):
            envelope.headers = [long]

        item = self.assertSameAsThreads(change)
        self.assertEqual(b"".join(item.contentChunks()), long.encode() + CONTENT)

    def test_committedForgetsTheMessage(self):
        spool = spooled(self.queue)
        self.assertEqual(self.queue.memoryHeld, len(CONTENT))
        item = self.commitImage(spool)
        self.assertEqual(item.path, os.path.join(self.queue.activeDir, spool.envelope.id))
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    def test_oneFailureFailsThatMessageOnly(self):
        good, bad = spooled(self.queue), spooled(self.queue)
        foreign = os.path.join(self.queue.tmpDir, bad.envelope.id)
        with open(foreign, "wb") as f:
            f.write(b"not ours")
        errors = self.queue.commitImages(
            [(s.envelope.id, image(s)) for s in (good, bad)]
        )
        self.assertIsNone(errors[0])
        self.assertIsInstance(errors[1], FileExistsError)
        self.assertEqual(os.listdir(self.queue.activeDir), [good.envelope.id])
        with open(foreign, "rb") as f:
            self.assertEqual(f.read(), b"not ours")

    def test_writeFailureLeavesNothing(self):
        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "fsync", full)
        spool = spooled(self.queue)
        [error] = self.queue.commitImages([(spool.envelope.id, image(spool))])
        self.assertEqual(error.errno, errno.ENOSPC)
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        self.assertEqual(os.listdir(self.queue.activeDir), [])

    def test_directoryFsyncFailureFailsTheGroup(self):
        def broken(path):
            raise OSError(errno.EIO, "Input/output error")

        self.patch(filesModule, "fsyncDirectory", broken)
        spools = [spooled(self.queue) for _ in range(3)]
        errors = self.queue.commitImages([(s.envelope.id, image(s)) for s in spools])
        self.assertEqual([e.errno for e in errors], [errno.EIO] * 3)
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        self.assertEqual(os.listdir(self.queue.activeDir), [])

    def test_discardCommits(self):
        for directory, name in [
            (self.queue.tmpDir, "AAA1"),
            (self.queue.activeDir, "AAA2"),
            (self.queue.activeDir, "KEPT"),
        ]:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(b"x")
        self.queue.discardCommits(["AAA1", "AAA2", "AAA3"])
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        self.assertEqual(os.listdir(self.queue.activeDir), ["KEPT"])


class CommitdTests(unittest.TestCase):
    """
    The commit process's program, run in this process on pipes.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def serve(self, data):
        """
        Run L{commitd.serve} on C{data} as its whole input.

        @return: what it wrote.
        """
        inRead, inWrite = os.pipe()
        outRead, outWrite = os.pipe()
        os.write(inWrite, data)
        os.close(inWrite)
        try:
            commitd.serve(self.queue.commitImages, inRead, outWrite)
        finally:
            os.close(inRead)
            os.close(outWrite)
        with os.fdopen(outRead, "rb") as f:
            return f.read()

    def test_parseFrames(self):
        data = frame("AAA1", b"one") + frame("BBB2", b"") + frame(
            "CCC3", b"three"
        )
        whole, consumed = commitd.parseFrames(bytearray(data))
        self.assertEqual(whole, [("AAA1", b"one"), ("BBB2", b""), ("CCC3", b"three")])
        self.assertEqual(consumed, len(data))
        for cut in (1, len(data) - 1, len(data) - 5):
            images, consumed = commitd.parseFrames(bytearray(data[:cut]))
            self.assertEqual(images, whole[: len(images)])
            self.assertLess(len(images), 3)
            self.assertEqual(
                consumed, len(b"".join(frame(i, d) for i, d in images))
            )

    def test_badQueueId(self):
        for name in ("../x", "", "a/b", "AA.state"):
            self.assertRaises(
                commitd.ProtocolError,
                commitd.parseFrames,
                bytearray(frame(name, b"x")),
            )

    def test_serve(self):
        first, second = spooled(self.queue), spooled(self.queue, b"Subject: 2\r\n\r\n")
        # The second message's tmp/ file is in the way.
        with open(os.path.join(self.queue.tmpDir, second.envelope.id), "wb"):
            pass
        out = self.serve(
            b"".join(frame(s.envelope.id, image(s)) for s in (first, second))
        )
        self.assertEqual(
            out,
            b"%s ok\n%s error %d\n"
            % (first.envelope.id.encode(), second.envelope.id.encode(), errno.EEXIST),
        )
        self.assertEqual(stored(self.queue, first.envelope.id), image(first))
        self.assertEqual(os.listdir(self.queue.activeDir), [first.envelope.id])

    def test_inputEndsInsideAFrame(self):
        spool = spooled(self.queue)
        data = frame(spool.envelope.id, image(spool))
        self.assertRaises(commitd.ProtocolError, self.serve, data[:-1])
        self.assertEqual(os.listdir(self.queue.activeDir), [])

    def test_mainUsage(self):
        self.assertEqual(commitd.main([]), 2)
        self.assertEqual(commitd.main(["--parent", "x", "queue"]), 2)

    def test_program(self):
        """
        C{python -m mailplat.queue.commitd} answers, exits 0 at the end of
        its input and 2 for a malformed frame, saying why.
        """
        spool = spooled(self.queue)
        run = lambda data: subprocess.run(
            [sys.executable, "-m", "mailplat.queue.commitd", self.queue.path],
            input=data,
            capture_output=True,
            timeout=30,
        )
        done = run(frame(spool.envelope.id, image(spool)))
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (0, spool.envelope.id.encode() + b" ok\n", b""),
        )
        bad = run(frame("../etc", b"x"))
        self.assertEqual(
            (bad.returncode, bad.stdout, bad.stderr),
            (2, b"", b"malformed input: bad queue id '../etc'\n"),
        )

    def test_parentGoneBeforeStart(self):
        """
        Started with C{--parent} naming a process that is not its parent
        (its parent died first), it exits at once with status 1.
        """
        done = subprocess.run(
            [sys.executable, "-m", "mailplat.queue.commitd", "--parent", "1",
             self.queue.path],
            input=b"",
            capture_output=True,
            timeout=30,
        )
        self.assertEqual((done.returncode, done.stdout, done.stderr), (1, b"", b""))


class RecordingCommitter:
    def __init__(self):
        self.spools = []

    def commit(self, spool):
        self.spools.append(spool)
        return defer.succeed("committed by threads")


def waitFor(predicate, timeout=20.0):
    """
    @return: a Deferred firing once C{predicate()} is true.
    """
    deadline = reactor.seconds() + timeout

    def check():
        if predicate():
            return None
        if reactor.seconds() > deadline:
            raise AssertionError("timed out")
        return task.deferLater(reactor, 0.02, check)

    return task.deferLater(reactor, 0, check)


class CommitProcessTests(unittest.TestCase):
    """
    L{CommitProcess} with a real commit process.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.fallback = RecordingCommitter()
        self.service = CommitProcess(self.queue, reactor, self.fallback, runSynchronously)
        self.service.startService()
        self.addCleanup(self.stop)

    def stop(self):
        if self.service.running:
            return self.service.stopService()

    @defer.inlineCallbacks
    def test_commitsThroughTheProcess(self):
        spools = [spooled(self.queue, CONTENT + b"%d\r\n" % n) for n in range(5)]
        items = yield defer.gatherResults([self.service.commit(s) for s in spools])
        self.assertEqual(self.fallback.spools, [])
        for n, (spool, item) in enumerate(zip(spools, items)):
            self.assertEqual(item.path, os.path.join(self.queue.activeDir, spool.envelope.id))
            self.assertEqual(
                b"".join(self.queue.load(item.id).contentChunks()), CONTENT + b"%d\r\n" % n
            )
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    @defer.inlineCallbacks
    def test_fileBackedMessagesGoToTheThreads(self):
        spool = spooled(self.queue)
        spool.flush()
        result = yield self.service.commit(spool)
        self.assertEqual(result, "committed by threads")
        self.assertEqual(self.fallback.spools, [spool])

    @defer.inlineCallbacks
    def test_errorReply(self):
        spool = spooled(self.queue)
        with open(os.path.join(self.queue.tmpDir, spool.envelope.id), "wb"):
            pass
        error = yield self.assertFailure(self.service.commit(spool), OSError)
        self.assertEqual(error.errno, errno.EEXIST)
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())
        self.assertEqual(os.listdir(self.queue.activeDir), [])

    @defer.inlineCallbacks
    def test_deathRefusesWhatItWasCommitting(self):
        """
        When the commit process dies, the messages it had not answered fail
        with EIO after their files are removed (even one it had renamed
        into C{active/}); the threads commit until a new process starts,
        which then commits.
        """
        logged = LogCapture(self)
        pid = self.service.child.pid
        os.kill(pid, signal.SIGSTOP)
        spool = spooled(self.queue)
        d = self.service.commit(spool)
        # As if it had renamed the file before it died.
        with open(os.path.join(self.queue.activeDir, spool.envelope.id), "wb") as f:
            f.write(b"half")
        self.service._delay = 0.2
        os.kill(pid, signal.SIGKILL)
        error = yield self.assertFailure(d, OSError)
        self.assertEqual(error.errno, errno.EIO)
        self.assertEqual(os.listdir(self.queue.activeDir), [])
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertIsNone(self.service.child)
        self.assertEqual(
            [e for e in logged.texts() if e.startswith("commit process")],
            [
                f"commit process [{pid}]: ended unexpectedly (A process has ended "
                "with a probable error condition: process ended by signal 9.); "
                "messages are committed by threads until a new one starts in 0.2s",
                f"commit process [{pid}]: 1 message(s) it was committing are "
                "refused (451 4.3.0)",
            ],
        )
        meanwhile = spooled(self.queue)
        result = yield self.service.commit(meanwhile)
        self.assertEqual((result, self.fallback.spools), ("committed by threads", [meanwhile]))
        yield waitFor(lambda: self.service.child is not None)
        self.assertEqual(self.service.started, 2)
        item = yield self.service.commit(spooled(self.queue))
        self.assertEqual(os.listdir(self.queue.activeDir), [item.id])

    @defer.inlineCallbacks
    def test_stopFinishesWhatItWasGiven(self):
        d = self.service.commit(spooled(self.queue))
        child = self.service.child
        yield self.service.stopService()
        self.assertIsNone(self.service.child)
        item = yield d
        self.assertEqual(os.listdir(self.queue.activeDir), [item.id])
        self.assertTrue(child.ended.called)

    @defer.inlineCallbacks
    def test_diesWithItsParent(self):
        """
        Started with C{--parent}, the commit process gets SIGKILL when its
        parent dies, even while its standard input stays open.
        """
        # Its standard input stays open here: the parent's death does not
        # end it.
        inRead, inWrite = os.pipe()
        self.addCleanup(os.close, inWrite)
        parent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, subprocess, sys, time\n"
                "p = subprocess.Popen([sys.executable, '-m', 'mailplat.queue.commitd',"
                " '--parent', str(os.getpid()), sys.argv[1]], stdin=int(sys.argv[2]))\n"
                "print(p.pid, flush=True)\n"
                "time.sleep(60)\n",
                self.queue.path,
                str(inRead),
            ],
            stdout=subprocess.PIPE,
            pass_fds=[inRead],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
        )
        os.close(inRead)
        self.addCleanup(parent.stdout.close)
        commitPid = int(parent.stdout.readline())
        # Once it answered a message it is past its start-up (a process
        # whose parent dies before that exits by itself).
        spool = spooled(self.queue)
        os.write(inWrite, frame(spool.envelope.id, image(spool)))
        self.assertEqual(parent.stdout.readline(), spool.envelope.id.encode() + b" ok\n")
        self.assertTrue(_alive(commitPid))
        parent.kill()
        parent.wait()
        yield waitFor(lambda: not _alive(commitPid))


def _alive(pid):
    """
    Whether C{pid} runs (a zombie, dead but not reaped by its new parent
    yet, does not).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except OSError:
        return False
