"""
Tests for the selected state: STORE, COPY, MOVE, EXPUNGE, CLOSE, UNSELECT,
APPEND, CONDSTORE, and how changes made by other sessions, delivery, POP3
and other programs are reported (RFC 3501 7.4.1, RFC 2177).
"""

import os

from twisted.trial import unittest

from mailplat.config import ListenerConfig
from mailplat.pop3.server import POP3Factory
from tests.imapsupport import (
    ADDRESS,
    FLAGS,
    MSG1,
    MSG2,
    MSG3,
    IMAPTestMixin,
)
from tests.tlsfakes import ImplicitTLSTransport


class StoreTests(IMAPTestMixin, unittest.TestCase):
    """
    STORE and UID STORE (RFC 3501 6.4.6, 6.4.8).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.seen()

    def test_addRemoveReplace(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1:2 +FLAGS (\\Seen \\Flagged)"),
            [b"* 1 FETCH (FLAGS (\\Flagged \\Seen))",
             b"* 2 FETCH (FLAGS (\\Flagged \\Seen))", b"a OK STORE completed"],
        )
        self.assertEqual(
            session.command(b"b STORE 2 -FLAGS \\Flagged"),
            [b"* 2 FETCH (FLAGS (\\Seen))", b"b OK STORE completed"],
        )
        self.assertEqual(
            session.command(b"c STORE 1 FLAGS (\\Answered)"),
            [b"* 1 FETCH (FLAGS (\\Answered))", b"c OK STORE completed"],
        )
        self.assertEqual(
            self.flags(), {1: {"\\Answered"}, 2: {"\\Seen"}, 3: set()}
        )

    def test_silent(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 3 +FLAGS.SILENT (\\Deleted)"), [b"a OK STORE completed"]
        )
        self.assertEqual(self.flags()[3], {"\\Deleted"})

    def test_uidStore(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID STORE 2,3 +FLAGS (\\Draft)"),
            [b"* 2 FETCH (FLAGS (\\Draft) UID 2)", b"* 3 FETCH (FLAGS (\\Draft) UID 3)",
             b"a OK UID STORE completed"],
        )
        self.assertEqual(
            session.command(b"b UID STORE 2 -FLAGS.SILENT (\\Draft)"),
            [b"b OK UID STORE completed"],
        )
        self.assertEqual(self.flags(), {1: set(), 2: set(), 3: {"\\Draft"}})

    def test_keywords(self):
        """
        Keywords are stored (PERMANENTFLAGS has C{\\*}); a new one is
        announced with FLAGS and PERMANENTFLAGS first.  C{\\Recent} cannot be
        stored.
        """
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS ($Forwarded \\Recent \\seen)"),
            [
                b"* FLAGS (" + FLAGS + b" $Forwarded)",
                b"* OK [PERMANENTFLAGS (" + FLAGS + b" $Forwarded \\*)] Flags permitted",
                b"* 1 FETCH (FLAGS (\\Seen $Forwarded))",
                b"a OK STORE completed",
            ],
        )
        self.assertEqual(
            session.command(b"b STORE 2 +FLAGS ($Forwarded)"),
            [b"* 2 FETCH (FLAGS ($Forwarded))", b"b OK STORE completed"],
        )
        self.assertEqual(self.flags()[1], {"\\Seen", "$Forwarded"})

    def test_badFlags(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (\\Bogus)"),
            [b"a BAD Invalid system flag \\Bogus"],
        )
        self.assertEqual(
            session.command(b"b STORE 1 +FLAGS (" + b"k" * 65 + b")"),
            [b"b BAD Keyword too long"],
        )
        self.assertEqual(
            session.command(b"c STORE 1 +FLAGS (a(b)"), [b"c BAD Expected a space"]
        )

    def test_readOnly(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (\\Seen)"),
            [b"a NO [READ-ONLY] Mailbox is read-only"],
        )
        self.assertEqual(self.flags()[1], set())

    def test_invalidItem(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1 LABELS (\\Seen)"), [b"a BAD Invalid STORE data item"]
        )
        self.assertEqual(session.command(b"b STORE 1 +FLAGS"), [b"b BAD Missing argument"])

    def test_condstore(self):
        """
        RFC 7162: UNCHANGEDSINCE skips messages changed since, reported with
        MODIFIED; FETCH gets MODSEQ once CONDSTORE is enabled.
        """
        session = self.selected()
        base = self.folder.highestModseq
        self.folder.storeFlags([2], add={"\\Flagged"})
        self.assertEqual(
            session.command(b"a STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % base),
            [
                b"* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % (base + 2),
                b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))" % (base + 1),
                b"a OK [MODIFIED 2] Conditional STORE failed for some messages; completed",
            ],
        )
        self.assertEqual(
            session.command(b"b FETCH 1:3 (FLAGS) (CHANGEDSINCE %d)" % base),
            [b"* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % (base + 2),
             b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))" % (base + 1),
             b"b OK FETCH completed"],
        )
        self.assertEqual(
            session.command(b"c UID SEARCH MODSEQ %d" % (base + 2)),
            [b"* SEARCH 1 (MODSEQ %d)" % (base + 2), b"c OK UID SEARCH completed"],
        )
        self.assertEqual(
            session.command(b"d STORE 3 +FLAGS.SILENT (\\Seen)"),
            [b"* 3 FETCH (MODSEQ (%d))" % (base + 3), b"d OK STORE completed"],
        )


class ExpungeTests(IMAPTestMixin, unittest.TestCase):
    """
    EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT (RFC 3501 6.4.2, 6.4.3; RFC
    4315; RFC 3691).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.seen()

    def files(self):
        return sorted(os.listdir(os.path.join(self.folder.path, "cur")))

    def test_expunge(self):
        session = self.selected()
        session.command(b"a STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(
            session.command(b"b EXPUNGE"),
            [b"* 3 EXPUNGE", b"* 1 EXPUNGE", b"b OK EXPUNGE completed"],
        )
        self.assertEqual(len(self.files()), 1)
        self.assertEqual([i.uid for i in self.folder.snapshot()], [2])
        self.assertEqual(
            session.command(b"c FETCH 1:* UID"), [b"* 1 FETCH (UID 2)", b"c OK FETCH completed"]
        )

    def test_uidExpunge(self):
        session = self.selected()
        session.command(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(
            session.command(b"b UID EXPUNGE 2:3"),
            [b"* 3 EXPUNGE", b"* 2 EXPUNGE", b"b OK UID EXPUNGE completed"],
        )
        self.assertEqual([i.uid for i in self.folder.snapshot()], [1])

    def test_expungeReadOnly(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a EXPUNGE"), [b"a NO [READ-ONLY] Mailbox is read-only"]
        )

    def test_close(self):
        session = self.selected()
        session.command(b"a STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(session.command(b"b CLOSE"), [b"b OK CLOSE completed"])
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual([i.uid for i in self.folder.snapshot()], [1, 3])
        self.assertEqual(self.folder._listeners, [])

    def test_closeReadOnly(self):
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Deleted"})
        session = self.selected(b"EXAMINE")
        self.assertEqual(session.command(b"b CLOSE"), [b"b OK CLOSE completed"])
        self.assertEqual(len(self.folder.snapshot()), 3)

    def test_unselect(self):
        session = self.selected()
        session.command(b"a STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(session.command(b"b UNSELECT"), [b"b OK UNSELECT completed"])
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual(len(self.folder.snapshot()), 3)
        self.assertEqual(session.command(b"c UNSELECT"), [b"c BAD No mailbox selected"])


class CopyMoveTests(IMAPTestMixin, unittest.TestCase):
    """
    COPY, MOVE and their UID forms, with COPYUID (RFC 3501 6.4.7, RFC 6851,
    RFC 4315).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.seen()
        self.archive = self.store.folder(ADDRESS, "Archive")

    def test_copy(self):
        session = self.selected()
        session.command(b"a STORE 2 +FLAGS.SILENT (\\Flagged Work)")
        self.assertEqual(
            session.command(b"b COPY 2:3 Archive"),
            [b"b OK [COPYUID %d 2:3 1:2] COPY completed" % self.archive.uidValidity],
        )
        self.assertEqual(
            self.flags(self.archive), {1: {"\\Flagged", "Work"}, 2: set()}
        )
        self.assertEqual([self.archive.read(i) for i in self.archive.snapshot()], [MSG2, MSG3])
        self.assertEqual(len(self.folder.snapshot()), 3)

    def test_uidCopy(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID COPY 1,3,9 Archive"),
            [b"a OK [COPYUID %d 1,3 1:2] UID COPY completed" % self.archive.uidValidity],
        )

    def test_copyToMissing(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a COPY 1 Nope"), [b"a NO [TRYCREATE] Mailbox does not exist"]
        )
        self.assertEqual(
            session.command(b"b COPY 1 ../x"), [b"b NO [CANNOT] Invalid mailbox name"]
        )

    def test_move(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a MOVE 1:2 Archive"),
            [
                b"* OK [COPYUID %d 1:2 1:2] Moved" % self.archive.uidValidity,
                b"* 2 EXPUNGE",
                b"* 1 EXPUNGE",
                b"a OK MOVE completed",
            ],
        )
        self.assertEqual([i.uid for i in self.folder.snapshot()], [3])
        self.assertEqual([self.archive.read(i) for i in self.archive.snapshot()], [MSG1, MSG2])

    def test_uidMove(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID MOVE 3 Trash"),
            [
                b"* OK [COPYUID %d 3 1] Moved"
                % self.store.folder(ADDRESS, "Trash").uidValidity,
                b"* 3 EXPUNGE",
                b"a OK UID MOVE completed",
            ],
        )

    def test_moveReadOnly(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a MOVE 1 Archive"), [b"a NO [READ-ONLY] Mailbox is read-only"]
        )

    def test_moveToSelf(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a MOVE 1 INBOX"),
            [b"* OK [COPYUID %d 1 4] Moved" % self.folder.uidValidity,
             b"* 1 EXPUNGE", b"* 3 EXISTS", b"* 1 RECENT", b"a OK MOVE completed"],
        )


class AppendTests(IMAPTestMixin, unittest.TestCase):
    """
    APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315) and APPENDLIMIT (RFC
    7889).
    """

    overrides = {"access": {"max_literal_size": "1K"}}

    def test_append(self):
        session = self.login()
        self.assertEqual(session.command(b"a APPEND Drafts {4}"), [b"+ Ready for literal data"])
        drafts = self.store.folder(ADDRESS, "Drafts")
        self.assertEqual(
            session.command(b"x\r\ny"),
            [b"a OK [APPENDUID %d 1] APPEND completed" % drafts.uidValidity],
        )
        [info] = drafts.snapshot()
        self.assertEqual(drafts.read(info), b"x\r\ny")
        self.assertEqual(info.flags, frozenset())
        self.assertTrue(info.recent)

    def test_appendWithFlagsAndDate(self):
        session = self.login()
        response = session.send(
            b'a APPEND Sent (\\Seen $MDNSent) " 2-Feb-2024 10:20:30 +0100" {14+}\r\n'
            b"Subject: x\r\n\r\n\r\n"
        )
        sent = self.store.folder(ADDRESS, "Sent")
        self.assertEqual(
            response, b"a OK [APPENDUID %d 1] APPEND completed\r\n" % sent.uidValidity
        )
        [info] = sent.snapshot()
        self.assertEqual(info.flags, frozenset({"\\Seen", "$MDNSent"}))
        self.assertEqual(info.internalDate, 1706865630.0)
        self.assertEqual(
            session.command(b"b EXAMINE Sent")[-1], b"b OK [READ-ONLY] EXAMINE completed"
        )
        self.assertEqual(
            session.command(b"c FETCH 1 INTERNALDATE"),
            [b'* 1 FETCH (INTERNALDATE " 2-Feb-2024 09:20:30 +0000")', b"c OK FETCH completed"],
        )

    def test_appendEmptyFlagList(self):
        session = self.login()
        self.assertEqual(
            session.send(b"a APPEND INBOX () {3+}\r\nx\r\n\r\n"),
            b"a OK [APPENDUID %d 1] APPEND completed\r\n" % self.folder.uidValidity,
        )

    def test_appendBareLF(self):
        """
        The store keeps CRLF line endings whatever the client sends.
        """
        session = self.login()
        session.send(b"a APPEND INBOX {11+}\r\nA: b\n\nbody\n\r\n")
        [info] = self.folder.snapshot()
        self.assertEqual(self.folder.read(info), b"A: b\r\n\r\nbody\r\n")
        self.assertEqual(info.size, 14)

    def test_appendCRLFSplitAcrossReads(self):
        session = self.login()
        session.send(b"a APPEND INBOX {9+}\r\nA: b\r")
        session.send(b"\n\r\nx\r\n")
        [info] = self.folder.snapshot()
        self.assertEqual(self.folder.read(info), b"A: b\r\n\r\nx")

    def test_appendTooBig(self):
        """
        Over APPENDLIMIT: NO [TOOBIG] before any continuation, so the client
        never sends the message.
        """
        session = self.login()
        self.assertEqual(
            session.command(b"a APPEND INBOX (\\Seen) {1025}"),
            [b"a NO [TOOBIG] Message too large (APPENDLIMIT 1024)"],
        )
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])
        self.assertEqual(self.folder.snapshot(), [])

    def test_appendTooBigNonSync(self):
        """
        With LITERAL+, the refused message is read and dropped, never run as
        commands and never stored.
        """
        session = self.login()
        message = (b"c LOGOUT\r\n" * 103)[:1025]
        self.assertEqual(
            session.send(b"a APPEND INBOX {1025+}\r\n" + message + b"\r\nb NOOP\r\n"),
            b"a NO [TOOBIG] Message too large (APPENDLIMIT 1024)\r\nb OK NOOP completed\r\n",
        )
        self.assertEqual(self.folder.snapshot(), [])

    def test_appendLimitIsForTheMessageOnly(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a APPEND {5}"), [b"+ Ready for literal data"]
        )
        self.assertEqual(
            session.command(b"INBOX {1024}"), [b"+ Ready for literal data"]
        )
        self.assertEqual(
            session.command(b"x" * 1024),
            [b"a OK [APPENDUID %d 1] APPEND completed" % self.folder.uidValidity],
        )

    def test_appendToMissing(self):
        session = self.login()
        self.assertEqual(
            session.send(b"a APPEND Nope {1+}\r\nx\r\n"),
            b"a NO [TRYCREATE] Mailbox does not exist\r\n",
        )
        self.assertEqual(
            session.send(b"b APPEND ../x {1+}\r\nx\r\n"),
            b"b NO [CANNOT] Invalid mailbox name\r\n",
        )

    def test_appendSyntax(self):
        session = self.login()
        for line, error in [
            (b'a APPEND INBOX "bad date" {1+}', b"a BAD Invalid date-time"),
            (b'a APPEND INBOX " 1-Foo-2024 10:00:00 +0000" {1+}', b"a BAD Invalid date-time"),
            (b"a APPEND INBOX (\\Nope) {1+}", b"a BAD Invalid system flag \\Nope"),
            (b"a APPEND INBOX x {1+}", b"a BAD Expected a literal"),
        ]:
            self.assertEqual(session.send(line + b"\r\nx\r\n"), error + b"\r\n")
        self.assertEqual(session.command(b"b APPEND INBOX"), [b"b BAD Missing argument"])
        self.assertEqual(self.folder.snapshot(), [])

    def test_appendToSelectedReportsExists(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a APPEND INBOX {1+}\r\nx\r\n"),
            b"* 1 EXISTS\r\n* 1 RECENT\r\n"
            b"a OK [APPENDUID %d 1] APPEND completed\r\n" % self.folder.uidValidity,
        )


class OtherSessionTests(IMAPTestMixin, unittest.TestCase):
    """
    Changes made elsewhere are reported at the next command (RFC 3501 7.4.1)
    and during IDLE (RFC 2177).
    """

    def test_newMessageAtNoop(self):
        self.deliver(MSG1)
        session = self.selected()
        self.deliver(MSG2, MSG3)
        self.assertEqual(
            session.command(b"a NOOP"), [b"* 3 EXISTS", b"* 3 RECENT", b"a OK NOOP completed"]
        )
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])
        self.assertEqual(
            session.command(b"c FETCH 3 (UID FLAGS)"),
            [b"* 3 FETCH (UID 3 FLAGS (\\Recent))", b"c OK FETCH completed"],
        )

    def test_otherSessionChanges(self):
        self.deliver(MSG1, MSG2, MSG3)
        watcher = self.selected()
        other = self.selected()
        other.command(b"a STORE 1:3 +FLAGS.SILENT (\\Seen)")
        other.command(b"b STORE 2 +FLAGS.SILENT (\\Deleted)")
        other.command(b"c EXPUNGE")
        self.deliver(MSG1)
        self.assertEqual(
            watcher.command(b"d CHECK"),
            [
                b"* 2 EXPUNGE",
                b"* 1 FETCH (FLAGS (\\Seen \\Recent))",
                b"* 2 FETCH (FLAGS (\\Seen \\Recent))",
                b"* 3 EXISTS",
                b"* 3 RECENT",
                b"d OK CHECK completed",
            ],
        )

    def test_noExpungeDuringFetchStoreSearch(self):
        """
        RFC 3501 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH;
        it comes with the next command that allows it.
        """
        self.deliver(MSG1, MSG2)
        session = self.selected()
        self.folder.remove([self.folder.snapshot()[0]])
        self.deliver(MSG3)
        self.assertEqual(
            session.command(b"a STORE 1:2 +FLAGS (\\Flagged)"),
            [b"* 2 FETCH (FLAGS (\\Flagged \\Recent))",
             b"a NO [EXPUNGEISSUED] Some of the requested messages no longer exist"],
        )
        self.assertEqual(session.command(b"b SEARCH ALL"),
                         [b"* SEARCH 2", b"b OK SEARCH completed"])
        self.assertEqual(session.command(b"c FETCH 2 UID"),
                         [b"* 2 FETCH (UID 2)", b"c OK FETCH completed"])
        self.assertEqual(
            session.command(b"d UID FETCH 2 UID"),
            [b"* 2 FETCH (UID 2)", b"* 1 EXPUNGE", b"* 2 EXISTS", b"* 2 RECENT",
             b"d OK UID FETCH completed"],
        )

    def test_uidStoreIgnoresExpunged(self):
        self.deliver(MSG1, MSG2)
        session = self.selected()
        self.folder.remove([self.folder.snapshot()[0]])
        self.assertEqual(
            session.command(b"a UID STORE 1:2 +FLAGS (\\Flagged)"),
            [b"* 2 FETCH (FLAGS (\\Flagged \\Recent) UID 2)", b"* 1 EXPUNGE",
             b"a OK UID STORE completed"],
        )

    def test_storeKeepsOtherSessionsFlags(self):
        self.deliver(MSG1)
        session = self.selected()
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Flagged"})
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (\\Answered)"),
            [b"* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent))", b"a OK STORE completed"],
        )
        self.assertEqual(self.flags(), {1: {"\\Answered", "\\Flagged"}})

    def test_implicitSeenKeepsOtherSessionsFlags(self):
        self.deliver(MSG2)
        session = self.selected()
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Draft"})
        self.assertEqual(
            session.send(b"a FETCH 1 (FLAGS BODY[TEXT])\r\n"),
            b"* 1 FETCH (FLAGS (\\Seen \\Draft \\Recent) BODY[TEXT] {5}\r\nBye\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: {"\\Seen", "\\Draft"}})

    def test_idle(self):
        self.deliver(MSG1)
        session = self.selected()
        self.assertEqual(session.command(b"a IDLE"), [b"+ idling"])
        self.deliver(MSG2)
        self.assertEqual(session.lines(), [b"* 2 EXISTS", b"* 2 RECENT"])
        # IDLE ends only on DONE.
        self.assertEqual(session.command(b"b NOOP"), [b"* BAD Expected DONE"])
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Flagged"})
        self.assertEqual(session.lines(), [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))"])
        self.folder.remove(self.folder.snapshot()[:1])
        self.assertEqual(session.lines(), [b"* 1 EXPUNGE"])
        self.assertEqual(session.command(b"DONE"), [b"a OK IDLE terminated"])
        self.deliver(MSG3)
        self.assertEqual(session.lines(), [])
        self.assertEqual(
            session.command(b"c NOOP"), [b"* 2 EXISTS", b"* 2 RECENT", b"c OK NOOP completed"]
        )

    def test_idleReportsPendingChanges(self):
        session = self.selected()
        self.deliver(MSG1)
        self.assertEqual(session.command(b"a IDLE"), [b"+ idling", b"* 1 EXISTS", b"* 1 RECENT"])

    def test_idleUnselected(self):
        session = self.login()
        self.assertEqual(session.command(b"a IDLE"), [b"+ idling"])
        self.assertEqual(session.command(b"done"), [b"a OK IDLE terminated"])

    def test_idleSeesExternalDrop(self):
        """
        Mail dropped into the Maildir by another program reaches an idling
        session through the poller, within its interval.
        """
        session = self.selected()
        session.command(b"a IDLE")
        with open(os.path.join(self.folder.path, "new", "1.ext.host"), "wb") as f:
            f.write(b"Subject: dropped\r\n\r\nx\r\n")
        self.assertEqual(session.lines(), [])
        self.ctx.clock.advance(0.5)
        self.assertEqual(session.lines(), [b"* 1 EXISTS", b"* 1 RECENT"])
        self.assertEqual(session.command(b"DONE"), [b"a OK IDLE terminated"])
        # Only the autologout timer is left: the poller stopped.
        self.assertEqual(
            [c.func.__name__ for c in self.ctx.clock.getDelayedCalls()], ["__timedOut"]
        )

    def test_pop3DeletionTellsIMAP(self):
        """
        A message deleted over POP3 (at QUIT) disappears from IMAP, and an
        idling IMAP session is told.
        """
        self.deliver(MSG1, MSG2)
        session = self.selected()
        session.command(b"a IDLE")
        listener = ListenerConfig(name="pop3s", protocol="pop3", endpoint="tcp:0",
                                  tls="implicit")
        pop = POP3Factory(self.ctx, listener).buildProtocol(None)
        transport = ImplicitTLSTransport()
        pop.makeConnection(transport)
        pop.dataReceived(b"USER demo@example.test\r\nPASS demo\r\nDELE 1\r\nQUIT\r\n")
        self.assertIn(b"+OK Logging out, 1 messages deleted.", transport.value())
        self.assertEqual(session.lines(), [b"* 1 EXPUNGE"])
        self.assertEqual([i.uid for i in self.folder.snapshot()], [2])

    def test_listenerRemovedOnDisconnect(self):
        session = self.selected()
        session.command(b"a IDLE")
        self.assertEqual(len(self.folder._listeners), 1)
        session.proto.connectionLost(None)
        self.assertEqual(self.folder._listeners, [])
        self.assertEqual(session.proto.poller._watched, {})
