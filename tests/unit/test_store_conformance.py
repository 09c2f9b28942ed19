"""
The mailbox store conformance suite (L{mailplat.testing.MailStoreConformanceMixin})
against every store: Maildir, memory, and the example plugin store loaded
from docs/examples/plugins as a Twisted plugin.
"""

import os
import unittest as pyunit

import twisted.plugins
from twisted.plugin import getPlugins
from twisted.trial import unittest

from mailplat.interfaces import IMailStoreFactory
from mailplat.storage.maildir import MaildirStore
from mailplat.storage.memory import MemoryFolder, MemoryStore
from mailplat.testing import MailStoreConformanceMixin, makeContext

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "docs", "examples", "plugins")


class MaildirConformanceTests(MailStoreConformanceMixin, unittest.TestCase):
    def makeStore(self, quota=None):
        return MaildirStore(os.path.abspath(self.mktemp()), quota=quota)


class MemoryConformanceTests(MailStoreConformanceMixin, unittest.TestCase):
    def makeStore(self, quota=None):
        return MemoryStore(quota=quota)


class _ForgetfulFolder(MemoryFolder):
    """
    A broken folder: a flag change does not raise the modification
    sequence, so sessions would never hear of it.
    """

    def storeFlags(self, uids, *args, **kwargs):
        before = self._modseq
        result = MemoryFolder.storeFlags(self, uids, *args, **kwargs)
        self._modseq = before
        return result


class _BrokenStore(MemoryStore):
    def _user(self, address):
        user = MemoryStore._user(self, address)
        for folder in user.folders.values():
            folder.__class__ = _ForgetfulFolder
        return user


class BrokenStoreTests(unittest.TestCase):
    """
    The suite can fail: a store that forgets to raise the modification
    sequence on flag changes fails it.
    """

    def test_brokenStoreFails(self):
        class Broken(MailStoreConformanceMixin, unittest.SynchronousTestCase):
            def makeStore(self, quota=None):
                return _BrokenStore(quota=quota)

        failed = []
        for name in ("test_flags", "test_changes", "test_concurrentSessions", "test_status"):
            result = pyunit.TestResult()
            Broken(name).run(result)
            if result.failures or result.errors:
                failed.append(name)
        self.assertEqual(failed, ["test_flags", "test_concurrentSessions"])


def examplePlugin(name="example_sqlite"):
    """
    The example store factory, found as a Twisted plugin in
    docs/examples/plugins (a separate directory on the plugin path).
    """
    path = os.path.join(EXAMPLES, "twisted", "plugins")
    twisted.plugins.__path__.append(path)
    try:
        [factory] = [p for p in getPlugins(IMailStoreFactory) if p.name == name]
    finally:
        twisted.plugins.__path__.remove(path)
    return factory


class ExamplePluginConformanceTests(MailStoreConformanceMixin, unittest.TestCase):
    """
    The example SQLite store from docs/examples, loaded as a plugin and made
    from a config as the service makes it.
    """

    def makeStore(self, quota=None):
        ctx = makeContext(
            self.mktemp(),
            overrides={"storage": {"backend": "memory", "quota": quota or 0}},
        )
        from dataclasses import replace

        config = replace(ctx.config, storage=replace(
            ctx.config.storage, backend="example_sqlite", options={"file": "x.sqlite3"}))
        from mailplat.storage.backends import buildStore

        store = buildStore(config, plugins=[examplePlugin()])
        self.assertEqual(store.path, os.path.join(config.storage.path, "x.sqlite3"))
        return store

    def test_notOpenedUntilUsed(self):
        store = self.makeStore()
        self.assertFalse(os.path.exists(store.path))
        store.folders("a@example.test")
        self.assertTrue(os.path.exists(store.path))


class ExampleFactoryTests(unittest.TestCase):
    def test_providesInterfaces(self):
        from twisted.plugin import IPlugin
        from zope.interface.verify import verifyObject

        factory = examplePlugin()
        self.assertTrue(verifyObject(IMailStoreFactory, factory))
        self.assertTrue(IPlugin.providedBy(factory))
        self.assertEqual(factory.name, "example_sqlite")
