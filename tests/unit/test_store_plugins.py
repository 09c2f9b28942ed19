"""
Choosing the mailbox store with C{[storage] backend}, and broken store
plugins: each stops start-up with a message naming the plugin and the
problem.
"""

import itertools
import os
import sys
import textwrap

import twisted.plugins
from twisted.trial import unittest

from mailplat.config import ConfigError, loadConfigString
from mailplat.policy.registry import PolicyError
from mailplat.storage.backends import buildStore
from mailplat.storage.maildir import MaildirStore
from mailplat.storage.memory import MemoryStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "docs", "examples", "plugins", "twisted", "plugins")
BASE = 'hostname = "mail.example.test"\n[domains]\nlocal = ["example.test"]\n'
_counter = itertools.count()

FACTORY = """
from twisted.plugin import IPlugin
from zope.interface import implementer
from mailplat.interfaces import IMailStoreFactory
from mailplat.storage.memory import MemoryStore

@implementer(IMailStoreFactory, IPlugin)
class Factory:
    name = {name!r}

    def makeStore(self, options, config):
        return {make}

factory = Factory()
"""


class BackendConfigTests(unittest.TestCase):
    def load(self, storage):
        return loadConfigString(BASE + "[storage]\n" + storage, "/srv/mail")

    def test_defaultIsMaildir(self):
        config = loadConfigString(BASE, "/srv/mail")
        self.assertEqual((config.storage.backend, config.storage.options), ("maildir", {}))
        self.assertIsInstance(buildStore(config), MaildirStore)

    def test_memory(self):
        config = self.load('backend = "memory"\nquota = "1M"\n')
        store = buildStore(config)
        self.assertIsInstance(store, MemoryStore)
        self.assertEqual(store.quotaLimit, 1024 * 1024)

    def test_builtinStoresTakeNoOptions(self):
        e = self.assertRaises(ConfigError, self.load, 'backend = "memory"\ncolour = "red"\n')
        self.assertEqual(e.errors, ["storage.colour: unknown key"])

    def test_backendMustBeAString(self):
        e = self.assertRaises(ConfigError, self.load, "backend = 3\n")
        self.assertEqual(e.errors, ["storage.backend: expected a string, got int"])


class StorePluginTests(unittest.TestCase):
    """
    Plugins in a temporary C{twisted/plugins} directory on the plugin path.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.plugins = os.path.join(self.dir, "twisted", "plugins")
        os.makedirs(self.plugins)
        self.addPluginPath(self.plugins)

    def addPluginPath(self, path):
        twisted.plugins.__path__.append(path)
        self.addCleanup(twisted.plugins.__path__.remove, path)

    def write(self, text, prefix="mailplat_test_store"):
        module = f"{prefix}_{next(_counter)}"
        path = os.path.join(self.plugins, module + ".py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        self.addCleanup(sys.modules.pop, "twisted.plugins." + module, None)
        return module, path

    def load(self, storage):
        return loadConfigString(
            BASE + "[storage]\n" + storage, self.dir, source="mailplat.toml")

    def test_pluginOptions(self):
        """
        The keys of [storage] that mailplat does not read are the plugin's
        options; path is resolved against the config's directory.
        """
        self.addPluginPath(EXAMPLES)
        config = self.load('backend = "example_sqlite"\npath = "data"\nfile = "m.db"\n')
        self.assertEqual(config.storage.options, {"file": "m.db"})
        store = buildStore(config)
        self.assertEqual(
            (type(store).__name__, store.path),
            ("SQLiteStore", os.path.join(self.dir, "data", "m.db")),
        )

    def test_unknownBackend(self):
        self.write(FACTORY.format(name="mine", make="MemoryStore()"))
        e = self.assertRaises(ConfigError, self.load, 'backend = "theirs"\n')
        self.assertEqual(len(e.errors), 1)
        self.assertTrue(e.errors[0].startswith(
            "storage.backend: unknown mailbox store 'theirs' (known: maildir, memory, "),
            e.errors)
        self.assertIn("mine", e.errors[0])

    def test_importError(self):
        module, path = self.write("import nonexistent_store_module_xyz\n")
        e = self.assertRaises(ConfigError, self.load, 'backend = "broken"\n')
        self.assertEqual(e.errors[0],
                         f"storage.backend: plugin {path} failed to load: "
                         "ModuleNotFoundError: No module named 'nonexistent_store_module_xyz'")
        self.assertTrue(e.errors[1].startswith(
            "storage.backend: unknown mailbox store 'broken' (known: "), e.errors)
        self.assertTrue(e.errors[1].endswith(
            f"; plugin {path} failed to load: ModuleNotFoundError: No module named "
            "'nonexistent_store_module_xyz'"), e.errors)
        self.flushLoggedErrors(ModuleNotFoundError)

    def test_duplicateName(self):
        first, _ = self.write(FACTORY.format(name="dup", make="MemoryStore()"))
        second, _ = self.write(FACTORY.format(name="dup", make="MemoryStore()"))
        e = self.assertRaises(ConfigError, self.load, 'backend = "dup"\n')
        modules = sorted(["twisted.plugins." + first, "twisted.plugins." + second])
        self.assertIn(
            e.errors,
            [[f"storage.backend: store plugin {a}: the name 'dup' is taken by {b}"]
             for a, b in (modules, modules[::-1])],
        )

    def test_builtinName(self):
        module, _ = self.write(FACTORY.format(name="memory", make="MemoryStore()"))
        e = self.assertRaises(ConfigError, self.load, 'backend = "other"\n')
        self.assertEqual(
            e.errors[0],
            f"storage.backend: store plugin twisted.plugins.{module}: the name 'memory' "
            "is taken by a built-in store")

    def test_wrongInterface(self):
        module, _ = self.write(FACTORY.format(name="wrong", make="object()"))
        config = self.load('backend = "wrong"\n')
        e = self.assertRaises(PolicyError, buildStore, config)
        [problem] = e.problems
        self.assertTrue(problem.startswith(
            f"storage (wrong, twisted.plugins.{module}): it does not provide IMailStore ("),
            problem)
        self.assertIn("folder", problem)

    def test_badOptions(self):
        self.addPluginPath(EXAMPLES)
        config = self.load('backend = "example_sqlite"\ncolour = "red"\n')
        e = self.assertRaises(PolicyError, buildStore, config)
        self.assertEqual(e.problems, [
            "storage (example_sqlite, twisted.plugins.mailplat_example_store): "
            "unknown option(s): colour (known: file)"
        ])

    def test_startupStops(self):
        """
        twistd's makeService prints the problem, naming the plugin, and
        exits with status 1.
        """
        from io import StringIO

        from mailplat import tap

        module, _ = self.write(FACTORY.format(name="wrong2", make="object()"))
        config = os.path.join(self.dir, "mailplat.toml")
        with open(config, "w") as f:
            f.write(BASE + '[storage]\nbackend = "wrong2"\n')
        err = StringIO()
        self.patch(sys, "__stderr__", err)
        e = self.assertRaises(SystemExit, tap.makeService, {"config": config})
        self.assertEqual(e.code, 1)
        lines = err.getvalue().splitlines()
        self.assertEqual(lines[0], f"mailplat: {config}: 1 configuration error(s):")
        self.assertTrue(lines[1].startswith(
            f"  - storage (wrong2, twisted.plugins.{module}): it does not provide "
            "IMailStore ("), lines)
