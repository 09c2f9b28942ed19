"""
Whole IMAP and POP3 sessions on the memory store: the protocol tests of the
Maildir store, run again with C{[storage] backend = "memory"} (except the
few that look at Maildir files or restart the store).
"""

import test_imap_fetch
import test_imap_mailbox
import test_imap_server
import test_pop3_server

from mailplat.storage.memory import MemoryStore
from mailplat.testing import makeContext

MEMORY = {"storage": {"backend": "memory"}}


class MemoryFetchTests(test_imap_fetch.FetchTests):
    overrides = MEMORY

    def test_usesMemoryStore(self):
        self.assertIsInstance(self.store, MemoryStore)


class MemoryStructureTests(test_imap_fetch.StructureTests):
    overrides = MEMORY


class MemoryFlagTests(test_imap_mailbox.StoreTests):
    overrides = MEMORY


class MemoryCopyMoveTests(test_imap_mailbox.CopyMoveTests):
    overrides = MEMORY


class MemoryAppendTests(test_imap_mailbox.AppendTests):
    overrides = dict(test_imap_mailbox.AppendTests.overrides, **MEMORY)


class MemorySelectTests(test_imap_server.SelectTests):
    overrides = MEMORY
    # Nothing survives a restart of the memory store.
    test_uidsStableAcrossRestart = None


class MemoryListTests(test_imap_server.ListTests):
    overrides = MEMORY


class MemoryQuotaTests(test_imap_server.QuotaTests):
    overrides = {"storage": {"quota": "10K", "backend": "memory"}}


class MemoryPOP3Tests(test_pop3_server.POP3ServerTests):
    def setUp(self):
        self.ctx = makeContext(
            self.mktemp(), tlsOptions=test_pop3_server.TLS_OPTIONS, overrides=MEMORY
        )
        self.factories = {}

    def test_usesMemoryStore(self):
        self.assertIsInstance(self.ctx.store, MemoryStore)

    # These look at Maildir files, or restart the store.
    test_deleQuitRemoves = None
    test_uidlStableAcrossRestart = None
