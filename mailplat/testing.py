"""
Public test helpers: fakes that mailplat's tests and plugin authors' tests can
use.  Nothing here opens a socket.
"""

import io
import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from mailplat.auth.checkers import portalFor, userDatabase
from mailplat.auth.passwords import hashPassword
from mailplat.auth.realm import MailRealm
from mailplat.auth.sasl import buildRegistry
from mailplat.config import configFromDict
from mailplat.auth.throttle import AuthThrottle
from mailplat.context import ServerContext
from mailplat.interfaces import (
    INBOX,
    BadFolderName,
    FolderExists,
    FolderNotRemovable,
    IMailFolder,
    IMailStore,
    MessageGone,
    NoSuchFolder,
    QuotaExceeded,
)
from mailplat.policy.registry import buildPipeline
from mailplat.recipients import resolverFor
from mailplat.queue.commit import GroupCommitter
from mailplat.queue.store import QueueStore
from mailplat.storage.backends import buildStore


def runSynchronously(f, *args, **kwargs):
    """
    A stand-in for C{deferToThread} that runs C{f} at once, for unit tests.
    """
    return defer.maybeDeferred(f, *args, **kwargs)


_hashes = {}


class LogCapture:
    """
    Every event published to Twisted's global log publisher while a test
    runs.
    """

    def __init__(self, case):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self):
        """
        @return: the events as text.
        """
        return [formatEvent(e) for e in self.events]


def cachedHash(password):
    """
    An argon2id hash of C{password}, computed once per test run (hashing is
    slow by design).
    """
    if password not in _hashes:
        _hashes[password] = hashPassword(password)
    return _hashes[password]


class RecordingRunner:
    """
    A queue runner stand-in that records what it was given.
    """

    def __init__(self):
        self.enqueued = []

    def enqueue(self, item):
        self.enqueued.append(item)


def makeContext(
    directory,
    users=(("demo@example.test", "demo"),),
    domains=("example.test",),
    clock=None,
    runBlocking=runSynchronously,
    tlsOptions=None,
    overrides=None,
    plugins=(),
    saslPlugins=(),
):
    """
    Build a L{ServerContext} over real files in C{directory} (a test's temporary
    directory), with a L{Clock}, synchronous blocking calls and a
    L{RecordingRunner}.

    @param users: C{(address, password)} pairs to create.
    @param overrides: extra config tables, merged into the config dict.
    @param plugins: the L{ICheckFactory} plugins available to C{[[check]]}
        tables (none by default: tests do not scan C{sys.path}).
    @param saslPlugins: the L{ISASLMechanismFactory} plugins available to
        C{[auth] mechanisms} (none by default).
    """
    os.makedirs(directory, exist_ok=True)
    data = {"hostname": "mail.example.test", "domains": {"local": list(domains)}}
    for key, value in (overrides or {}).items():
        data[key] = value
    config = configFromDict(data, directory)
    db = userDatabase(config)
    for address, password in users:
        db.setPassword(address, cachedHash(password))
    clock = clock if clock is not None else Clock()
    store = buildStore(config)
    queue = QueueStore(config.queue.path)
    queue.create()
    portal = portalFor(
        config.auth.checkers, db, MailRealm(store), clock, runBlocking,
        config.auth.failureDelay, config,
    )
    context = ServerContext(
        config=config,
        portal=portal,
        store=store,
        users=db,
        queue=queue,
        runner=RecordingRunner(),
        tlsOptions=tlsOptions,
        clock=clock,
        runBlocking=runBlocking,
        callFromThread=lambda f, *a: f(*a),
        recipients=resolverFor(config, db),
        committer=GroupCommitter(queue, runBlocking),
        authThrottle=AuthThrottle(
            clock,
            base=config.auth.failureDelay,
            maximum=config.smtp.authThrottleMax,
            window=config.smtp.authThrottleWindow,
        ),
    )
    context.policy = buildPipeline(context, plugins=plugins)
    context.sasl = buildRegistry(config, plugins=saslPlugins).select(
        config.auth.mechanisms
    )
    return context


_ADDRESS = "conformance@example.test"
#: The folders every user of every store has, as C{store.folders} lists them.
STANDARD_FOLDERS = [
    ("Archive", "\\Archive"),
    ("Drafts", "\\Drafts"),
    ("INBOX", None),
    ("Junk", "\\Junk"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
]


def _message(n):
    return b"Subject: message %d\r\n\r\nbody %d\r\n" % (n, n)


class MailStoreConformanceMixin:
    """
    The conformance suite of L{mailplat.interfaces.IMailStore}: mix it into a
    C{twisted.trial.unittest.TestCase} (or C{unittest.TestCase}) and define
    L{makeStore}; every C{test_*} method then runs against your store.  The
    same suite runs against mailplat's Maildir and memory stores.

        class MyStoreTests(MailStoreConformanceMixin, unittest.TestCase):
            def makeStore(self, quota=None):
                return MyStore(self.mktemp(), quota=quota)

    Store methods are called directly (they are I{blocking}, as the
    protocols call them in a thread), except in
    L{test_concurrentDeliveries}, which delivers from several threads.
    """

    def makeStore(self, quota=None):
        """
        @param quota: the per-user quota in bytes, or L{None}.
        @return: a new, empty L{mailplat.interfaces.IMailStore}.
        """
        raise NotImplementedError("define makeStore() in the test case")

    def setUp(self):
        self.store = self.makeStore()
        self.inbox = self.store.folder(_ADDRESS)

    def deliver(self, n, folder=INBOX):
        return self.store.deliver(_ADDRESS, [_message(n)], folder)

    def infos(self, folder=None):
        return list((folder or self.inbox).snapshot())

    # -- the interfaces

    def test_providesInterfaces(self):
        self.assertTrue(verifyObject(IMailStore, self.store))
        self.assertTrue(verifyObject(IMailFolder, self.inbox))

    def test_folderIsShared(self):
        """
        One folder object per folder, so that listeners hear every change;
        addresses are compared in lower case.
        """
        self.assertIs(self.store.folder(_ADDRESS.upper(), "inbox"), self.inbox)
        self.assertEqual(self.inbox.name, INBOX)

    def test_standardFolders(self):
        self.assertEqual(self.store.folders(_ADDRESS), STANDARD_FOLDERS)
        self.assertEqual(self.store.quota(_ADDRESS), (0, None))

    # -- messages

    def test_deliverAndRead(self):
        before = self.inbox.uidNext
        uid = self.store.deliver(_ADDRESS, [b"Subject: hi\r\n", b"\r\nbody\r\n"])
        self.assertEqual(uid, before)
        self.assertEqual(self.inbox.uidNext, uid + 1)
        [info] = self.infos()
        self.assertEqual(
            (info.uid, info.flags, info.size, info.recent),
            (uid, frozenset(), 21, True),
        )
        self.assertEqual(self.inbox.read(info), b"Subject: hi\r\n\r\nbody\r\n")
        f = self.inbox.openMessage(info)
        try:
            self.assertEqual(f.read(), b"Subject: hi\r\n\r\nbody\r\n")
        finally:
            f.close()
        self.assertEqual(self.store.quota(_ADDRESS), (21, None))

    def test_deliverFlagsAndDate(self):
        """
        A folder's C{deliver} (IMAP APPEND) takes a binary file, flags and an
        INTERNALDATE; C{\\Recent} and unknown system flags are not stored.
        """
        uid = self.inbox.deliver(
            io.BytesIO(_message(1)), {"\\Seen", "$Label", "\\Recent", "\\Bogus"},
            1000000000.0,
        )
        [info] = self.inbox.messages([uid, uid + 100])
        self.assertEqual(info.flags, frozenset({"\\Seen", "$Label"}))
        self.assertEqual(info.internalDate, 1000000000.0)
        self.assertEqual(info.size, len(_message(1)))

    def test_uidsStable(self):
        """
        UIDs go up, survive other messages' removal and are never reused
        while UIDVALIDITY stays the same.
        """
        validity = self.inbox.uidValidity
        uids = [self.deliver(n) for n in range(3)]
        self.assertEqual(uids, sorted(set(uids)))
        self.assertEqual([i.uid for i in self.infos()], uids)
        self.inbox.remove([self.infos()[1]])
        self.assertEqual([i.uid for i in self.infos()], [uids[0], uids[2]])
        self.assertEqual([self.inbox.read(i) for i in self.infos()],
                         [_message(0), _message(2)])
        later = self.deliver(3)
        self.assertGreater(later, uids[2])
        self.assertEqual([i.uid for i in self.infos()], [uids[0], uids[2], later])
        self.assertEqual(self.inbox.uidValidity, validity)

    def test_snapshotDoesNotChange(self):
        self.deliver(0)
        snapshot = self.inbox.snapshot()
        self.deliver(1)
        self.assertEqual(len(snapshot), 1)
        self.assertEqual(len(self.inbox.snapshot()), 2)

    def test_removedMessageIsGone(self):
        self.deliver(0)
        [info] = self.infos()
        self.inbox.remove([info])
        self.assertRaises(MessageGone, self.inbox.read, info)
        self.assertRaises(MessageGone, self.inbox.changeFlags, info, {"\\Seen"})
        # Removing it again is not an error.
        self.inbox.remove([info])
        self.assertEqual(self.infos(), [])
        self.assertEqual(self.store.quota(_ADDRESS), (0, None))

    def test_status(self):
        self.deliver(0)
        uid = self.deliver(1)
        self.inbox.storeFlags([uid], {"\\Seen"})
        status = self.inbox.status()
        self.assertEqual(status, {
            "MESSAGES": 2, "RECENT": 2, "UIDNEXT": uid + 1,
            "UIDVALIDITY": self.inbox.uidValidity, "UNSEEN": 1,
            "HIGHESTMODSEQ": self.inbox.highestModseq,
            "SIZE": len(_message(0)) + len(_message(1)),
        })

    # -- flags and modification sequences

    def test_flags(self):
        a, b = self.deliver(0), self.deliver(1)
        start = self.inbox.highestModseq
        infos, gone, modified = self.inbox.storeFlags([a, b, 999], add={"\\Flagged", "k1"})
        self.assertEqual([(i.uid, i.flags) for i in infos],
                         [(a, {"\\Flagged", "k1"}), (b, {"\\Flagged", "k1"})])
        self.assertEqual((gone, modified), ([999], []))
        self.assertGreater(self.inbox.highestModseq, start)
        self.assertEqual({i.modseq for i in infos}, {self.inbox.highestModseq})
        mark = self.inbox.highestModseq
        infos, _, _ = self.inbox.storeFlags([a], remove={"k1"})
        self.assertEqual(infos[0].flags, {"\\Flagged"})
        # Flags that do not change keep the modification sequence.
        [same], _, _ = self.inbox.storeFlags([b], add={"k1"})
        self.assertEqual(same.modseq, mark)
        info = self.inbox.setFlags(self.inbox.messages([b])[0], {"\\Answered"})
        self.assertEqual(info.flags, {"\\Answered"})
        info = self.inbox.changeFlags(info, replace={"\\Draft", "\\Recent"})
        self.assertEqual(info.flags, {"\\Draft"})
        self.assertEqual([(i.uid, i.flags) for i in self.infos()],
                         [(a, {"\\Flagged"}), (b, {"\\Draft"})])

    def test_unchangedSince(self):
        """
        RFC 7162 UNCHANGEDSINCE: messages changed after it are skipped.
        """
        a, b = self.deliver(0), self.deliver(1)
        mark = self.inbox.highestModseq
        self.inbox.storeFlags([b], {"\\Seen"})
        infos, gone, modified = self.inbox.storeFlags(
            [a, b], {"\\Flagged"}, unchangedSince=mark)
        self.assertEqual([(i.uid, i.flags) for i in infos], [(a, {"\\Flagged"})])
        self.assertEqual((gone, modified), ([], [b]))

    def test_expunge(self):
        a, b, c = self.deliver(0), self.deliver(1), self.deliver(2)
        self.inbox.storeFlags([a, c], {"\\Deleted"})
        self.assertEqual(self.inbox.expunge([c, b]), [c])
        self.assertEqual([i.uid for i in self.infos()], [a, b])
        self.assertEqual(self.inbox.expunge(), [a])
        self.assertEqual(self.inbox.expunge(), [])
        self.assertEqual([i.uid for i in self.infos()], [b])

    # -- what a session sees

    def test_recent(self):
        """
        A new message is C{\\Recent} until one session claims it (RFC 3501
        2.3.2).
        """
        a = self.deliver(0)
        status, uids, recent, firstUnseen, keywords = self.inbox.select(False)
        self.assertEqual((list(uids), recent, firstUnseen, list(keywords)), ([a], {a}, a, []))
        _, _, recent, _, _ = self.inbox.select(True)
        self.assertEqual(recent, {a})
        _, _, recent, _, _ = self.inbox.select(True)
        self.assertEqual(recent, frozenset())
        self.assertEqual([i.recent for i in self.infos()], [False])

    def test_select(self):
        a, b = self.deliver(0), self.deliver(1)
        self.inbox.storeFlags([a], {"\\Seen", "work"})
        status, uids, recent, firstUnseen, keywords = self.inbox.select(False)
        self.assertEqual(
            (status.uidValidity, status.uidNext, status.highestModseq),
            (self.inbox.uidValidity, b + 1, self.inbox.highestModseq),
        )
        self.assertEqual((list(uids), firstUnseen, list(keywords)), ([a, b], b, ["work"]))

    def test_changes(self):
        """
        C{changes} tells a session what happened since it last looked:
        arrivals, flag changes, expunges.
        """
        a, b = self.deliver(0), self.deliver(1)
        status, uids, _, _, _ = self.inbox.select(True)
        modseq = status.highestModseq
        self.assertEqual(self.inbox.changes(modseq, b, 2),
                         (status, None, [], [], frozenset()))
        c = self.deliver(2)
        status, every, arrived, changed, claimed = self.inbox.changes(modseq, b, 2, True)
        self.assertEqual((every, list(arrived), [i.uid for i in changed], claimed),
                         (None, [c], [c], {c}))
        self.assertEqual(status.uidNext, c + 1)
        modseq = status.highestModseq
        self.inbox.storeFlags([a], {"\\Deleted"})
        self.inbox.expunge()
        self.inbox.storeFlags([b], {"\\Seen"})
        status, every, arrived, changed, claimed = self.inbox.changes(modseq, c, 3)
        self.assertEqual((list(every), list(arrived), claimed), ([b, c], [], frozenset()))
        self.assertEqual([(i.uid, i.flags) for i in changed], [(b, {"\\Seen"})])
        self.assertEqual(status.highestModseq, self.inbox.highestModseq)
        self.assertGreater(status.highestModseq, modseq)

    def test_concurrentSessions(self):
        """
        Two sessions on one folder: a change by one is seen by the other,
        and each recent message goes to one of them only.
        """
        store2 = self.store.folder(_ADDRESS)
        one = self.inbox.select(True)
        two = store2.select(True)
        a = self.deliver(0)
        first = self.inbox.changes(one[0].highestModseq, 0, 0, True)
        second = store2.changes(two[0].highestModseq, 0, 0, True)
        self.assertEqual((list(first[2]), first[4]), ([a], {a}))
        self.assertEqual((list(second[2]), second[4]), ([a], frozenset()))
        store2.storeFlags([a], {"\\Answered"})
        [info] = self.inbox.changes(first[0].highestModseq, a, 1)[3]
        self.assertEqual(info.flags, {"\\Answered"})

    def test_concurrentDeliveries(self):
        """
        Deliveries from several threads at once each get their own UID and
        none is lost.
        """
        import threading

        uids, errors = [], []

        def deliverSome(k):
            try:
                for n in range(20):
                    uids.append(self.deliver(k * 100 + n))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=deliverSome, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(set(uids)), 80)
        self.assertEqual(sorted(i.uid for i in self.infos()), sorted(uids))
        self.assertEqual(sorted(self.inbox.read(i) for i in self.infos()),
                         sorted(_message(k * 100 + n) for k in range(4) for n in range(20)))

    def test_listeners(self):
        calls = []
        listener = lambda: calls.append(1)  # noqa: E731
        self.inbox.addListener(listener)
        a = self.deliver(0)
        self.assertEqual(len(calls), 1)
        self.inbox.storeFlags([a], {"\\Deleted"})
        self.assertEqual(len(calls), 2)
        self.inbox.expunge()
        self.assertEqual(len(calls), 3)
        self.inbox.removeListener(listener)
        self.deliver(1)
        self.assertEqual(len(calls), 3)

    def test_poll(self):
        self.assertIn(self.inbox.poll(), (True, False))

    def test_usersAreSeparate(self):
        self.deliver(0)
        other = self.store.folder("other@example.test")
        self.assertEqual(list(other.snapshot()), [])
        self.assertEqual(self.store.quota("other@example.test"), (0, None))

    # -- copy and move

    def test_copy(self):
        a = self.inbox.deliver([_message(0)], {"\\Seen", "k"}, 1000000000.0)
        sent = self.store.folder(_ADDRESS, "Sent")
        [(source, copy)] = self.inbox.copyTo([a, 999], sent)
        self.assertEqual(source, a)
        [info] = sent.snapshot()
        self.assertEqual(
            (info.uid, info.flags, info.internalDate, info.recent),
            (copy, {"\\Seen", "k"}, 1000000000.0, True),
        )
        self.assertEqual(sent.read(info), _message(0))
        self.assertEqual(len(self.infos()), 1)

    def test_move(self):
        a, b = self.deliver(0), self.deliver(1)
        calls = []
        self.inbox.addListener(lambda: calls.append("inbox"))
        trash = self.store.folder(_ADDRESS, "Trash")
        trash.addListener(lambda: calls.append("trash"))
        pairs = self.inbox.moveTo([b], trash)
        self.assertEqual([p[0] for p in pairs], [b])
        self.assertEqual([i.uid for i in self.infos()], [a])
        [info] = trash.snapshot()
        self.assertEqual((info.uid, trash.read(info)), (pairs[0][1], _message(1)))
        self.assertEqual(sorted(calls), ["inbox", "trash"])

    # -- folders

    def test_createFolder(self):
        self.store.createFolder(_ADDRESS, "a/b/c")
        names = [n for n, _ in self.store.folders(_ADDRESS)]
        self.assertEqual([n for n in names if n.startswith("a")], ["a", "a/b", "a/b/c"])
        self.assertRaises(FolderExists, self.store.createFolder, _ADDRESS, "a/b")
        self.assertRaises(BadFolderName, self.store.createFolder, _ADDRESS, "../x")
        self.assertRaises(BadFolderName, self.store.folder, _ADDRESS, "a//b")
        self.assertRaises(NoSuchFolder, self.store.folder, _ADDRESS, "nope")
        self.store.deliver(_ADDRESS, [_message(0)], "a/b")
        self.assertEqual(len(self.store.folder(_ADDRESS, "a/b").snapshot()), 1)

    def test_deleteFolder(self):
        self.store.createFolder(_ADDRESS, "a/b")
        folder = self.store.folder(_ADDRESS, "a/b")
        validity = folder.uidValidity
        calls = []
        folder.addListener(lambda: calls.append(1))
        for name in ("INBOX", "Trash", "a"):
            self.assertRaises(FolderNotRemovable, self.store.deleteFolder, _ADDRESS, name)
        self.store.deleteFolder(_ADDRESS, "a/b")
        self.assertEqual((folder.exists(), calls), (False, [1]))
        self.assertRaises(NoSuchFolder, self.store.folder, _ADDRESS, "a/b")
        self.assertRaises(NoSuchFolder, self.store.deleteFolder, _ADDRESS, "a/b")
        self.assertRaises(NoSuchFolder, folder.snapshot)
        self.store.createFolder(_ADDRESS, "a/b")
        self.assertNotEqual(self.store.folder(_ADDRESS, "a/b").uidValidity, validity)

    def test_renameFolder(self):
        self.store.createFolder(_ADDRESS, "a/b")
        self.store.subscribe(_ADDRESS, "a/b")
        folder = self.store.folder(_ADDRESS, "a/b")
        uid = self.store.deliver(_ADDRESS, [_message(0)], "a/b")
        validity = folder.uidValidity
        self.store.renameFolder(_ADDRESS, "a", "x/y")
        names = [n for n, _ in self.store.folders(_ADDRESS)]
        self.assertEqual([n for n in names if n[0] in "ax"], ["x", "x/y", "x/y/b"])
        moved = self.store.folder(_ADDRESS, "x/y/b")
        self.assertEqual(([i.uid for i in moved.snapshot()], moved.uidValidity),
                         ([uid], validity))
        self.assertIn("x/y/b", self.store.subscriptions(_ADDRESS))
        self.assertNotIn("a/b", self.store.subscriptions(_ADDRESS))
        self.assertRaises(NoSuchFolder, self.store.renameFolder, _ADDRESS, "a", "z")
        self.assertRaises(FolderExists, self.store.renameFolder, _ADDRESS, "x", "Sent")
        self.assertRaises(FolderNotRemovable, self.store.renameFolder, _ADDRESS, "Sent", "z")
        self.assertRaises(BadFolderName, self.store.renameFolder, _ADDRESS, "x", "x/y/z")

    def test_renameInbox(self):
        """
        RFC 3501 6.3.5: renaming INBOX moves its messages to the new folder
        and leaves INBOX, empty.
        """
        self.deliver(0)
        self.deliver(1)
        self.store.renameFolder(_ADDRESS, "INBOX", "old")
        old = self.store.folder(_ADDRESS, "old")
        self.assertEqual([old.read(i) for i in old.snapshot()], [_message(0), _message(1)])
        self.assertEqual(self.store.folder(_ADDRESS).snapshot(), [])

    def test_subscriptions(self):
        self.store.subscribe(_ADDRESS, "not/there")
        self.assertIn("not/there", self.store.subscriptions(_ADDRESS))
        self.store.subscribe(_ADDRESS, "not/there", False)
        self.assertNotIn("not/there", self.store.subscriptions(_ADDRESS))
        subscribed = self.store.subscriptions(_ADDRESS)
        self.assertEqual(list(subscribed), sorted(subscribed))

    # -- quota

    def test_quota(self):
        store = self.makeStore(quota=100)
        store.deliver(_ADDRESS, [b"x" * 60])
        self.assertEqual(store.quota(_ADDRESS), (60, 100))
        self.assertRaises(QuotaExceeded, store.deliver, _ADDRESS, [b"x" * 41])
        self.assertRaises(QuotaExceeded, store.folder(_ADDRESS, "Sent").deliver, [b"y" * 41])
        inbox = store.folder(_ADDRESS)
        self.assertRaises(QuotaExceeded, inbox.copyTo,
                          [inbox.snapshot()[0].uid], store.folder(_ADDRESS, "Sent"))
        store.deliver(_ADDRESS, [b"x" * 40])
        self.assertEqual(store.quota(_ADDRESS), (100, 100))
        self.assertEqual(len(inbox.snapshot()), 2)
