"""
Random commands, shaped like the IMAP grammar but mostly wrong, against a
selected session: each gets exactly one tagged answer, never an internal
error, a traceback or a dropped connection.  (A fixed seed keeps it
repeatable.)
"""

import random

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.imapsupport import MSG1, MSG2, MULTIPART, IMAPTestMixin

COMMANDS = [
    b"NOOP", b"CHECK", b"CAPABILITY", b"FETCH", b"UID FETCH", b"STORE", b"UID STORE",
    b"SEARCH", b"UID SEARCH", b"COPY", b"UID COPY", b"MOVE", b"UID MOVE", b"STATUS",
    b"LIST", b"LSUB", b"CREATE", b"DELETE", b"RENAME", b"SUBSCRIBE", b"UNSUBSCRIBE",
    b"APPEND", b"EXAMINE", b"SELECT", b"NAMESPACE", b"ID", b"GETQUOTAROOT",
    b"GETQUOTA", b"EXPUNGE", b"UID EXPUNGE", b"ENABLE", b"BOGUS", b"UID BOGUS",
]
WORDS = [
    b"1", b"2", b"*", b"1:*", b"2,1:3", b"0", b"4294967296", b"INBOX", b"Archive",
    b'"Trash"', b"&ZeVnLIqe-", b"&", b"..", b"/", b"(", b")", b"()", b"[", b"]", b"<",
    b">", b"<0.5>", b"BODY[]", b"BODY.PEEK[HEADER.FIELDS (From To)]", b"BODY[1.2.MIME]",
    b"BODY[TEXT]<2.3>", b"ENVELOPE", b"BODYSTRUCTURE", b"FLAGS", b"+FLAGS", b"-FLAGS.SILENT",
    b"(\\Seen)", b"(\\Deleted $Work)", b"\\Bogus", b"ALL", b"FAST", b"OR", b"NOT", b"FROM",
    b"SUBJECT", b"HEADER", b"TEXT", b"BODY", b"SINCE", b"1-Jan-2024", b'"bad date"',
    b"CHARSET", b"UTF-8", b"KOI8", b"UNCHANGEDSINCE", b"(CHANGEDSINCE 1)", b"MODSEQ",
    b"(MESSAGES UIDNEXT)", b"(CONDSTORE)", b"NIL", b'""', b'"a\\"b"', b'"unterminated',
    b"\\", b"%", b"\xff\xfe", b"\x00", b'"\x00"', b"CONDSTORE", b"LARGER", b"99999999999",
]


class FuzzTests(IMAPTestMixin, unittest.TestCase):
    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MULTIPART)
        self.errors = []

        def observer(event):
            if event.get("log_failure") is not None or event.get("isError"):
                self.errors.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def randomCommand(self, rng, tag):
        parts = [tag, rng.choice(COMMANDS)]
        literals = []
        for _ in range(rng.randrange(0, 7)):
            choice = rng.random()
            if choice < 0.1:
                data = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, 12)))
                literals.append(data)
                parts.append(b"{%d+}" % len(data))
                # The literal ends the line; the rest follows it.
                parts.append(None)
            elif choice < 0.15:
                parts.append(bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 8))))
            else:
                parts.append(rng.choice(WORDS))
        out = b""
        for part in parts:
            if part is None:
                out += b"\r\n" + literals.pop(0)
            else:
                out += (b" " if out and not out.endswith(b"\r\n") and not
                        out.endswith(b"]") else b"") + part
        return out + b"\r\n"

    def test_randomCommands(self):
        rng = random.Random(20261122)
        session = self.selected()
        for n in range(600):
            tag = b"t%d" % n
            command = self.randomCommand(rng, tag)
            out = session.send(command)
            lines = out.split(b"\r\n")
            tagged = [line for line in lines if line.startswith(tag + b" ")]
            self.assertEqual(len(tagged), 1, (command, out))
            self.assertNotIn(b"SERVERBUG", out, command)
            self.assertFalse(session.transport.disconnecting, command)
            # Keep the session selected for the commands after this one.
            if session.proto.state != "select":
                session.command(b"s SELECT INBOX")
        self.assertEqual(self.errors, [])

    def randomSearchKey(self, rng, depth=0):
        simple = [b"ALL", b"SEEN", b"UNSEEN", b"NEW", b"OLD", b"RECENT", b"DELETED",
                  b"FLAGGED", b"KEYWORD $Work", b"LARGER 100", b"SMALLER 5000",
                  b"FROM carol", b"SUBJECT first", b"BODY part", b"TEXT inner",
                  b"HEADER Content-Type mixed", b"SINCE 1-Jan-2020", b"SENTON 1-Jan-2020",
                  b"UID 1:*", b"2:*", b"MODSEQ 1"]
        if depth < 4 and rng.random() < 0.4:
            kind = rng.choice([b"OR", b"NOT", b"("])
            if kind == b"OR":
                return b"OR " + self.randomSearchKey(rng, depth + 1) + b" " + (
                    self.randomSearchKey(rng, depth + 1))
            if kind == b"NOT":
                return b"NOT " + self.randomSearchKey(rng, depth + 1)
            return b"(" + self.randomSearchKey(rng, depth + 1) + b" " + (
                self.randomSearchKey(rng, depth + 1)) + b")"
        return rng.choice(simple)

    def randomValidCommand(self, rng, tag):
        sets = [b"1", b"1:*", b"2:3", b"*", b"3,1"]
        items = [b"FLAGS", b"UID", b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", b"RFC822.SIZE",
                 b"INTERNALDATE", b"BODY.PEEK[]", b"BODY[1]", b"BODY.PEEK[1.MIME]",
                 b"BODY.PEEK[2.HEADER]", b"BODY.PEEK[TEXT]<1.5>", b"RFC822.HEADER",
                 b"BODY.PEEK[HEADER.FIELDS (Subject From)]", b"MODSEQ"]
        flags = [b"\\Seen", b"\\Flagged", b"\\Deleted", b"$Work", b"\\Answered"]
        kind = rng.randrange(5)
        uid = b"UID " if rng.random() < 0.5 else b""
        if kind == 0:
            chosen = rng.sample(items, rng.randrange(1, 5))
            return tag + b" " + uid + b"FETCH " + rng.choice(sets) + b" (" + b" ".join(
                chosen) + b")"
        if kind == 1:
            return tag + b" " + uid + b"SEARCH " + self.randomSearchKey(rng)
        if kind == 2:
            op = rng.choice([b"+FLAGS", b"-FLAGS", b"FLAGS", b"+FLAGS.SILENT"])
            chosen = rng.sample(flags, rng.randrange(0, 3))
            return tag + b" " + uid + b"STORE " + rng.choice(sets) + b" " + op + b" (" + (
                b" ".join(chosen)) + b")"
        if kind == 3:
            return tag + b" " + uid + b"COPY " + rng.choice(sets) + b" " + rng.choice(
                [b"Archive", b"Trash", b"INBOX"])
        return tag + b" " + rng.choice([b"NOOP", b"CHECK", b"EXPUNGE", b"STATUS INBOX "
                                         b"(MESSAGES UIDNEXT HIGHESTMODSEQ)"])

    def test_randomValidCommands(self):
        """
        Well-formed commands in random order: always one tagged OK (or NO
        for messages another command expunged), never an internal error.
        """
        rng = random.Random(3501)
        session = self.selected()
        statuses = set()
        for n in range(400):
            tag = b"v%d" % n
            command = self.randomValidCommand(rng, tag)
            out = session.send(command + b"\r\n")
            tagged = [line for line in out.split(b"\r\n") if line.startswith(tag + b" ")]
            self.assertEqual(len(tagged), 1, (command, out))
            statuses.add(tagged[0].split()[1])
            self.assertNotIn(b"SERVERBUG", out, command)
            if b" BAD " in tagged[0]:
                # Only for sequence numbers past the (shrinking) mailbox.
                self.assertEqual(tagged[0], tag + b" BAD Invalid message sequence number",
                                 command)
            if len(self.folder.snapshot()) < 2:
                self.deliver(MSG1, MULTIPART)
        self.assertIn(b"OK", statuses)
        self.assertEqual(self.errors, [])
