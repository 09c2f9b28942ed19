"""
Where password hashes are verified: argon2 with each hashing thread's own
buffer (mailplat.auth.argon2mem) gives the same answers as argon2-cffi, and
hashes run in a small dedicated pool (mailplat.auth.hashpool).
"""

import os
import threading

from argon2 import PasswordHasher
from argon2.low_level import Type, hash_secret
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from mailplat.auth import argon2mem, hashpool
from mailplat.auth.passwords import verifyPassword
from mailplat.testing import runSynchronously


class Argon2MemoryTests(unittest.TestCase):
    if argon2mem._callbacks is None:
        skip = "cffi callbacks are not available here"

    def test_sameAnswersAsArgon2Cffi(self):
        hasher = PasswordHasher()
        for t, m, p in ((1, 8, 1), (2, 1024, 2), (1, 4096, 4)):
            for kind in (Type.ID, Type.I):
                for password in ("s3cret pass", "", "ünïcode"):
                    encoded = hash_secret(
                        password.encode(), os.urandom(16), t, m, p, 32, kind).decode()
                    for attempt in (password, password + "x", "x"):
                        try:
                            expected = hasher.verify(encoded, attempt)
                        except Exception:
                            expected = False
                        self.assertIs(argon2mem.verify(encoded, attempt), expected,
                                      (encoded, attempt))
                        self.assertIs(verifyPassword("{ARGON2ID}" + encoded, attempt),
                                      expected)

    def test_leftToArgon2Cffi(self):
        """
        Hashes above MAX_KEPT and encodings it does not parse are not
        handled here (L{None}); verifyPassword still answers.
        """
        big = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$" + "A" * 43
        self.assertIsNone(argon2mem.verify(big, "x"))
        for bad in ("$argon2id$garbage", "$argon2id$v=19$m=8,t=1$c2FsdA$aGFzaA",
                    "$argon2x$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
                    "$argon2id$v=19$m=8,t=1,p=1$!!!$aGFzaA"):
            self.assertIsNone(argon2mem.verify(bad, "x"), bad)
            self.assertFalse(verifyPassword("{ARGON2ID}" + bad, "x"))

    def test_bufferKeptPerThread(self):
        encoded = hash_secret(b"pw", os.urandom(16), 1, 64, 1, 32, Type.ID).decode()
        self.assertTrue(argon2mem.verify(encoded, "pw"))
        first = argon2mem._local.buffer
        self.assertTrue(argon2mem.verify(encoded, "pw"))
        self.assertIs(argon2mem._local.buffer, first)
        seen = []
        thread = threading.Thread(
            target=lambda: seen.append((argon2mem.verify(encoded, "pw"),
                                        argon2mem._local.buffer)))
        thread.start()
        thread.join()
        self.assertTrue(seen[0][0])
        self.assertIsNot(seen[0][1], first)


class HashRunnerTests(unittest.TestCase):
    def test_clockUsesRunBlocking(self):
        calls = []

        def runBlocking(f, *args):
            calls.append(f)
            return runSynchronously(f, *args)

        runner = hashpool.hashRunnerFor(Clock(), runBlocking)
        self.assertEqual(self.successResultOf(runner(lambda: 7)), 7)
        self.assertEqual(len(calls), 1)
        self.assertIsNone(runner.pool)

    def test_oneDaemonPoolPerReactor(self):
        runner = hashpool.HashRunner(reactor, None)
        self.addCleanup(runner.stop)
        self.assertIs(hashpool.hashRunnerFor(reactor, None),
                      hashpool.hashRunnerFor(reactor, None))
        done = threading.Event()
        names = []

        def work():
            names.append((threading.current_thread().name,
                          threading.current_thread().daemon))
            done.set()

        runner(work)
        self.assertTrue(done.wait(10))
        self.assertEqual(names, [("PoolThread-mailplat-hash-0", True)])
        self.assertEqual(runner.pool.max, hashpool.HASH_THREADS)
