"""
Tests for C{[smtp] separate_process} without subprocesses: the line protocol
between the SMTP process and the main process (L{mailplat.smtpprocess},
L{mailplat.smtpchild}), the bootstrap record, the main process's handling
of a child's death, L{mailplat.queue.runner.QueueRunner.scheduleNew} and the
config key.
"""

import json
import os
import socket
import threading
import time
from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from mailplat.config import ConfigError, loadConfigString
from mailplat.config.schema import QueueConfig
from mailplat.events import ACCEPTED, DELIVERED, EventHub, MailEvent
from mailplat.interfaces import IDeliveryTarget
from mailplat.logobserver import _SecondClock, formatLine
from mailplat.queue.envelope import DELIVERED as STATE_DELIVERED
from mailplat.queue.envelope import DeliveryResult, Envelope, Recipient
from mailplat.queue.runner import QueueRunner
from mailplat.queue.store import QueueStore, newQueueId
from mailplat.smtpchild import LogForwarder, ParentRunner, readBootstrap
from mailplat.smtpprocess import (
    HandedOffListener,
    SMTPProcessService,
    bootstrapRecord,
    escape,
    unescape,
)
from mailplat.testing import LogCapture, runSynchronously

MINIMAL = """
hostname = "mail.example.test"
[domains]
local = ["example.test"]
postmaster = "demo@example.test"
"""

AWKWARD = [
    "",
    "plain",
    "tab\there",
    "two\nlines\n",
    "back\\slash",
    "a literal \\n and \\t",
    "\\",
    "ends with \\",
    "\\\\n",
    "\t\n\\\t\n\\",
    "carriage\r\nreturn",
    "non-ASCII: é ü ß 日本語 😀",
    "mixed\té\n\\😀",
]


class EscapeTests(unittest.TestCase):
    def test_roundTrip(self):
        for text in AWKWARD:
            escaped = escape(text)
            self.assertNotIn("\n", escaped)
            self.assertNotIn("\t", escaped)
            self.assertEqual(unescape(escaped), text, repr(text))

    def test_exactForm(self):
        self.assertEqual(escape("a\tb\nc\\d"), "a\\tb\\nc\\\\d")
        self.assertEqual(escape("é😀"), "é😀")
        self.assertEqual(unescape("a\\tb\\nc\\\\d"), "a\tb\nc\\d")
        self.assertEqual(unescape("no escapes"), "no escapes")

    def test_roundTripThroughUTF8Line(self):
        """
        As the child sends a field: escaped, UTF-8, split on LF and tab by
        the main process.
        """
        wire = "\t".join(escape(t) for t in AWKWARD).encode("utf-8") + b"\n"
        [line, rest] = wire.split(b"\n")
        self.assertEqual(rest, b"")
        fields = line.decode("utf-8").split("\t")
        self.assertEqual([unescape(f) for f in fields], AWKWARD)


class FakeRunner:
    def __init__(self):
        self.scheduled = []
        self.scans = 0

    def schedule(self, queueId, delay, force=False):
        self.scheduled.append((queueId, delay))

    def scheduleNew(self):
        self.scans += 1
        return defer.succeed([])


class FakeQueue:
    """
    Records L{QueueStore.removeOrphans} calls; C{orphans} is what it
    returns.
    """

    def __init__(self):
        self.cleaned = 0
        self.orphans = []

    def removeOrphans(self):
        self.cleaned += 1
        return list(self.orphans)


class FakePort:
    def __init__(self):
        self.reading = []

    def startReading(self):
        self.reading.append(True)

    def stopReading(self):
        self.reading.append(False)


def fakeMail(clock=None, names=()):
    """
    What L{SMTPProcessService} uses of L{mailplat.service.MailplatService}.
    """
    listeners = {}
    for name in names:
        listener = HandedOffListener(
            SimpleNamespace(name=name, protocol="smtp"), None, clock, lambda: None
        )
        listener.port = FakePort()
        listeners[name] = listener
    # Another kind of listener is left alone.
    listeners["imap"] = SimpleNamespace(port=FakePort())
    events = EventHub()
    mail = SimpleNamespace(
        runner=FakeRunner(), events=events, listeners=listeners, reactor=clock,
        emitted=[],
        context=SimpleNamespace(
            queue=FakeQueue(),
            runBlocking=lambda f, *a, **kw: defer.maybeDeferred(f, *a, **kw),
        ),
    )
    events.subscribe(mail.emitted.append)
    return mail


class ReceivedTests(unittest.TestCase):
    """
    L{SMTPProcessService.received}: one line from the child.
    """

    def setUp(self):
        self.mail = fakeMail(Clock(), ["smtp", "submission"])
        self.service = SMTPProcessService(self.mail)

    def test_queued(self):
        self.service.received("Q1A2B3C\tsender\\twith\\\\odd\\nchars@example.test")
        self.assertEqual(self.mail.runner.scheduled, [("1A2B3C", 0)])
        self.assertEqual(
            self.mail.emitted,
            [MailEvent(ACCEPTED, "1A2B3C", "sender\twith\\odd\nchars@example.test")],
        )

    def test_queuedNullSender(self):
        self.service.received("QABC\t")
        self.assertEqual(self.mail.runner.scheduled, [("ABC", 0)])
        self.assertEqual(self.mail.emitted, [MailEvent(ACCEPTED, "ABC", "")])

    def test_log(self):
        logged = LogCapture(self)
        self.service.received(
            "L1700000000.25\terror\tSMTPServer,3,127.0.0.1\\tx\tline one\\n"
            "\\ttabbed \\\\ é"
        )
        [event] = logged.events
        self.assertEqual(event["log_time"], 1700000000.25)
        self.assertIs(event["log_level"], LogLevel.error)
        self.assertEqual(event["log_system"], "SMTPServer,3,127.0.0.1\tx")
        self.assertEqual(event["log_text"], "line one\n\ttabbed \\ é")
        self.assertEqual(event["log_format"], "{log_text}")
        self.assertEqual(self.mail.runner.scheduled, [])
        self.assertEqual(self.mail.emitted, [])

    def test_everyLevel(self):
        logged = LogCapture(self)
        for level in LogLevel.iterconstants():
            self.service.received(f"L1.5\t{level.name}\tsys\ttext")
        self.assertEqual(
            [e["log_level"] for e in logged.events], list(LogLevel.iterconstants())
        )

    def test_event(self):
        event = MailEvent(
            DELIVERED, "ABC", "a@remote.example", "demo@example.test", "2.0.0",
            "delivered\tto maildir", "local",
        )
        import dataclasses

        self.service.received("E" + json.dumps(dataclasses.asdict(event)))
        self.assertEqual(self.mail.emitted, [event])
        self.assertEqual(self.mail.runner.scheduled, [])

    def test_ready(self):
        logged = LogCapture(self)
        fired = []
        self.service.whenReady().addCallback(fired.append)
        self.service.received("R4242")
        self.assertEqual(fired, [4242])
        for name in ("smtp", "submission"):
            self.assertEqual(self.mail.listeners[name].port.reading, [False])
        self.assertEqual(self.mail.listeners["imap"].port.reading, [])
        self.assertIn("smtp process [4242]: serving smtp, submission", logged.texts())
        # Fired once only; a later child fires later waiters.
        later = []
        self.service.whenReady().addCallback(later.append)
        self.service.received("R4243")
        self.assertEqual((fired, later), ([4242], [4243]))

    def test_unknownKinds(self):
        for line in ("", "X1", "q1\tlower case", " Q1\ta"):
            self.assertRaises(ValueError, self.service.received, line)
        self.assertEqual(self.mail.runner.scheduled, [])
        self.assertEqual(self.mail.emitted, [])


class FakeChannel:
    def __init__(self):
        self.lines = []

    def send(self, line):
        self.lines.append(line)


class LogForwarderTests(unittest.TestCase):
    """
    L{LogForwarder} in the child, then L{SMTPProcessService.received} in
    the main process: the main process's log line is the one the child
    would have written.
    """

    def setUp(self):
        self.channel = FakeChannel()
        self.forward = LogForwarder(self.channel)
        self.service = SMTPProcessService(fakeMail(Clock()))

    def relay(self, event):
        """
        @return: the event the main process publishes for C{event}.
        """
        self.forward(event)
        [line] = self.channel.lines
        self.assertNotIn("\n", line)
        # As the main process reads it.
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        logged = LogCapture(self)
        self.service.received(line)
        [relayed] = logged.events
        return relayed

    def assertSameLine(self, event):
        relayed = self.relay(event)
        self.assertEqual(
            formatLine(relayed, _SecondClock()), formatLine(event, _SecondClock())
        )
        return relayed

    def test_formattedEvent(self):
        event = {
            "log_format": "{queueId}: accepted from=<{sender}>, nrcpt={n}",
            "queueId": "1A2B",
            "sender": "odd\tsender\\é@example.test",
            "n": 2,
            "log_level": LogLevel.info,
            "log_namespace": "mailplat.smtp.server.SMTPServer",
            "log_time": 1700000000.125,
        }
        relayed = self.assertSameLine(event)
        self.assertEqual(
            self.channel.lines[0],
            "L1700000000.125\tinfo\tmailplat.smtp.server.SMTPServer#info\t"
            "1A2B: accepted from=<odd\\tsender\\\\é@example.test>, nrcpt=2",
        )
        self.assertEqual(relayed["log_time"], 1700000000.125)
        self.assertIs(relayed["log_level"], LogLevel.info)
        self.assertEqual(relayed["log_system"], "mailplat.smtp.server.SMTPServer#info")
        self.assertEqual(
            relayed["log_text"], "1A2B: accepted from=<odd\tsender\\é@example.test>, nrcpt=2"
        )

    def test_multiLineAndSystem(self):
        event = {
            "log_format": "{text}",
            "text": "first\nsecond\n\tthird",
            "log_level": LogLevel.warn,
            "log_system": "SMTPServer,7,127.0.0.1\todd\\system",
            "log_time": 1700000001.0,
        }
        relayed = self.assertSameLine(event)
        self.assertEqual(relayed["log_text"], "first\nsecond\n\tthird")
        self.assertEqual(relayed["log_system"], "SMTPServer,7,127.0.0.1\todd\\system")

    def test_failure(self):
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        event = {
            "log_format": "{queueId}: delivery attempt failed",
            "queueId": "ABC",
            "log_failure": failure,
            "log_level": LogLevel.critical,
            "log_namespace": "mailplat.queue.runner.QueueRunner",
            "log_time": 1700000002.5,
        }
        relayed = self.assertSameLine(event)
        self.assertTrue(relayed["log_text"].startswith("ABC: delivery attempt failed\n"))
        self.assertIn("ZeroDivisionError", relayed["log_text"])
        self.assertIs(relayed["log_level"], LogLevel.critical)

    def test_noTimeUsesNow(self):
        before = time.time()
        relayed = self.relay({"log_format": "x", "log_level": LogLevel.debug})
        self.assertTrue(before <= relayed["log_time"] <= time.time())
        self.assertIs(relayed["log_level"], LogLevel.debug)

    def test_emptyTextIsNotSent(self):
        self.forward({"log_format": "", "log_level": LogLevel.info, "log_time": 1.0})
        self.assertEqual(self.channel.lines, [])

    def test_parentRunnerAnnouncesQueued(self):
        runner = ParentRunner(self.channel)
        item = SimpleNamespace(
            id="1A2B", envelope=SimpleNamespace(sender="we\tird\\@example.test")
        )
        runner.enqueue(item)
        self.assertEqual(self.channel.lines, ["Q1A2B\twe\\tird\\\\@example.test"])
        mail = fakeMail(Clock())
        SMTPProcessService(mail).received(self.channel.lines[0])
        self.assertEqual(mail.runner.scheduled, [("1A2B", 0)])
        self.assertEqual(mail.emitted, [MailEvent(ACCEPTED, "1A2B", "we\tird\\@example.test")])


class BootstrapTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = loadConfigString(
            MINIMAL + "[smtp]\nseparate_process = true\n", self.dir
        )
        self.mail = SimpleNamespace(
            config=self.config, tlsPEM=(b"-----CERT-----\n", b"-----KEY-----\n")
        )
        self.listeners = [("smtp", 3, socket.AF_INET), ("smtps", 4, socket.AF_INET6)]

    def pipe(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        return r, w

    def test_roundTripReadsNothingMore(self):
        record = bootstrapRecord(self.mail, self.listeners)
        r, w = self.pipe()
        # Written in small pieces by another thread: reads return parts.
        data = record + b"what comes next"

        def write():
            for n in range(0, len(data), 97):
                os.write(w, data[n:n + 97])
            os.close(w)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            bootstrap = readBootstrap(r)
        finally:
            writer.join()
        self.assertEqual(bootstrap["config"], self.config)
        self.assertTrue(bootstrap["config"].smtp.separateProcess)
        self.assertEqual(bootstrap["tlsPEM"], self.mail.tlsPEM)
        self.assertEqual(bootstrap["listeners"], self.listeners)
        self.assertEqual(os.read(r, 100), b"what comes next")

    def test_closedEarly(self):
        record = bootstrapRecord(self.mail, self.listeners)
        for cut in (0, 5, 8, len(record) - 1):
            r, w = self.pipe()
            os.write(w, record[:cut])
            os.close(w)
            e = self.assertRaises(SystemExit, readBootstrap, r)
            self.assertEqual(
                e.args, ("mailplat.smtpchild: the parent closed stdin early",)
            )


class ChildEndedTests(unittest.TestCase):
    """
    L{SMTPProcessService.ended}: the main process serves SMTP, scans the
    queue and starts a new child after a doubling delay.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.mail = fakeMail(self.clock, ["smtp"])
        self.service = SMTPProcessService(self.mail)
        self.spawned = []
        self.service._spawn = self.spawn
        self.service.running = True
        self.spawn()

    def spawn(self):
        self.service._restart = None
        self.service._startedAt = self.clock.seconds()
        self.service.child = SimpleNamespace(pid=100 + len(self.spawned))
        self.spawned.append(self.clock.seconds())

    def test_restartsWithGrowingDelay(self):
        logged = LogCapture(self)
        port = self.mail.listeners["smtp"].port
        killed = Failure(ProcessTerminated(signal=9))
        self.service.ended(self.service.child, killed)
        self.assertIsNone(self.service.child)
        self.assertEqual(port.reading, [True])
        self.assertEqual(self.mail.runner.scans, 1)
        self.assertEqual(self.mail.context.queue.cleaned, 1)
        self.assertEqual(logged.texts(), [
            "smtp process [100]: ended unexpectedly (A process has ended with a "
            "probable error condition: process ended by signal 9.); this process "
            "accepts SMTP until a new one is ready in 0.5s"
        ])
        self.assertIs(logged.events[0]["log_level"], LogLevel.error)
        self.clock.advance(0.49)
        self.assertEqual(len(self.spawned), 1)
        self.clock.advance(0.01)
        self.assertEqual(self.spawned, [1000, 1000.5])
        # Dying again soon: twice the delay.
        self.service.ended(self.service.child, killed)
        self.assertIn("until a new one is ready in 1.0s", logged.texts()[-1])
        self.clock.advance(1.0)
        self.assertEqual(self.spawned, [1000, 1000.5, 1001.5])
        # A child that ran for more than a minute: back to the first delay.
        self.clock.advance(61)
        self.service.ended(self.service.child, killed)
        self.assertIn("until a new one is ready in 0.5s", logged.texts()[-1])
        self.assertEqual(self.mail.runner.scans, 3)

    def test_maximumDelay(self):
        logged = LogCapture(self)
        for _ in range(10):
            self.service.ended(self.service.child, Failure(ProcessDone(0)))
            self.clock.advance(30)
        delays = [t.rsplit(" in ", 1)[1] for t in logged.texts()]
        self.assertEqual(
            delays,
            ["0.5s", "1.0s", "2.0s", "4.0s", "8.0s", "16.0s", "30.0s", "30.0s",
             "30.0s", "30.0s"],
        )

    def test_staleChildIgnored(self):
        old = self.service.child
        self.spawn()
        self.service.ended(old, Failure(ProcessDone(0)))
        self.assertEqual(self.mail.runner.scans, 0)
        self.assertEqual(self.mail.listeners["smtp"].port.reading, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_endedWhileStopping(self):
        logged = LogCapture(self)
        self.service.running = False
        self.service.ended(self.service.child, Failure(ProcessDone(0)))
        self.assertEqual(logged.texts(), [
            "smtp process [100]: stopped (A process has ended without apparent "
            "errors: process finished with exit code 0.)"
        ])
        self.assertEqual(self.mail.runner.scans, 0)
        self.assertEqual(self.mail.listeners["smtp"].port.reading, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopCancelsRestart(self):
        self.service.ended(self.service.child, Failure(ProcessDone(0)))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertIsNone(self.service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.spawned, [1000])


@implementer(IDeliveryTarget)
class HeldTarget:
    """
    Delivers when the test says so.
    """

    name = "held"

    def __init__(self):
        self.calls = {}

    def accepts(self, recipient):
        return True

    def deliver(self, item, recipients):
        d = defer.Deferred()
        self.calls.setdefault(item.id, []).append(d)
        return d

    def finish(self, queueId):
        for d in self.calls[queueId]:
            if not d.called:
                d.callback(
                    {"demo@example.test": DeliveryResult(STATE_DELIVERED, "2.0.0", "ok", "held")}
                )


class ScheduleNewTests(unittest.TestCase):
    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.clock = Clock()
        self.clock.advance(1000)
        self.target = HeldTarget()
        self.runner = QueueRunner(
            self.queue, [self.target], self.clock, runSynchronously,
            QueueConfig(retryInitial=60, retryMax=3600, maxLifetime=5 * 86400),
            now=self.clock.seconds, hostname="mail.example.test",
        )
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        # Run first: a failed test leaves no attempt for stopService to wait on.
        self.addCleanup(self.finishAll)

    def finishAll(self):
        # Finishing an attempt may start another one (a second schedule).
        for _ in range(10):
            for queueId in list(self.target.calls):
                self.target.finish(queueId)
            self.clock.advance(0)
            if all(d.called for calls in self.target.calls.values() for d in calls):
                break

    def commit(self):
        spool = self.queue.spool(
            Envelope(
                id=newQueueId(),
                sender="a@remote.example",
                recipients=[Recipient("demo@example.test")],
                arrival=self.clock.seconds(),
            )
        )
        spool.write(b"Subject: x\r\n\r\nbody\r\n")
        return spool.commit()

    def test_onlyUnknownMessages(self):
        running = self.commit()
        self.runner.enqueue(running)
        self.clock.advance(0)
        self.assertEqual(list(self.target.calls), [running.id])
        waiting = self.commit()
        self.runner.enqueue(waiting)
        timer = self.runner._timers[waiting.id]
        unknown = [self.commit(), self.commit()]

        new = self.successResultOf(self.runner.scheduleNew())
        self.assertEqual(sorted(new), sorted(m.id for m in unknown))
        self.assertIs(self.runner._timers[waiting.id], timer)
        for m in unknown:
            self.assertEqual(self.runner._timers[m.id].getTime(), self.clock.seconds())

        self.clock.advance(0)
        self.assertEqual(
            {i: len(calls) for i, calls in self.target.calls.items()},
            {running.id: 1, waiting.id: 1, unknown[0].id: 1, unknown[1].id: 1},
        )
        # Nothing left to find; each message is delivered once.
        self.assertEqual(self.successResultOf(self.runner.scheduleNew()), [])
        for queueId in list(self.target.calls):
            self.target.finish(queueId)
        self.clock.advance(0)
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(
            {i: len(calls) for i, calls in self.target.calls.items()},
            {running.id: 1, waiting.id: 1, unknown[0].id: 1, unknown[1].id: 1},
        )

    def test_deferredMessageKeepsItsSchedule(self):
        item = self.commit()
        self.runner.schedule(item.id, 600)
        timer = self.runner._timers[item.id]
        self.assertEqual(self.successResultOf(self.runner.scheduleNew()), [])
        self.assertIs(self.runner._timers[item.id], timer)
        self.assertEqual(timer.getTime(), 1600)


class ConfigTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_default(self):
        self.assertFalse(loadConfigString(MINIMAL, self.dir).smtp.separateProcess)

    def test_booleans(self):
        for text, value in (("true", True), ("false", False)):
            config = loadConfigString(
                MINIMAL + f"[smtp]\nseparate_process = {text}\n", self.dir
            )
            self.assertIs(config.smtp.separateProcess, value)

    def test_notABoolean(self):
        for text, kind in (('"yes"', "str"), ("1", "int"), ('"true"', "str")):
            e = self.assertRaises(
                ConfigError, loadConfigString,
                MINIMAL + f"[smtp]\nseparate_process = {text}\n", self.dir, "t.toml",
            )
            self.assertEqual(
                e.errors, [f"smtp.separate_process: expected true or false, got {kind}"]
            )


class OrphanTests(unittest.TestCase):
    """
    What a dead SMTP process was receiving is removed from C{tmp/}, and
    logged; what this process is receiving stays.
    """

    def test_deadChildsPartialMessagesRemovedAndLogged(self):
        clock = Clock()
        mail = fakeMail(clock, ["smtp"])
        mail.context.queue.orphans = ["1A2B3C"]
        service = SMTPProcessService(mail)
        service._spawn = lambda: None
        service.running = True
        service._startedAt = 0
        service.child = SimpleNamespace(pid=7)
        logged = LogCapture(self)
        service.ended(service.child, Failure(ProcessTerminated(signal=9)))
        self.assertEqual(
            logged.texts()[1:],
            ["1A2B3C: removed a partly received message left by the smtp process "
             "(it never got a 250)"],
        )

    def test_removeOrphansKeepsOwnSpools(self):
        from mailplat.queue.envelope import Envelope
        from mailplat.queue.store import QueueStore

        path = self.mktemp()
        queue = QueueStore(path)
        queue.create()
        mine = queue.spool(Envelope(id="MINE", sender="", recipients=[], arrival=0.0))
        mine.write(b"Subject: x\r\n\r\nbody\r\n")
        mine.flush()  # as a message too large to be held in memory
        for name in ("DEAD1", "DEAD2.grow"):
            with open(os.path.join(queue.tmpDir, name), "wb") as f:
                f.write(b"half")
        self.assertEqual(sorted(queue.removeOrphans()), ["DEAD1", "DEAD2"])
        self.assertEqual(os.listdir(queue.tmpDir), ["MINE"])
        item = mine.commit()
        self.assertEqual(queue.spooling, set())
        self.assertEqual(queue.ids(), [item.envelope.id])
        other = queue.spool(Envelope(id="GONE", sender="", recipients=[], arrival=0.0))
        other.abort()
        self.assertEqual(queue.spooling, set())


class ServiceTests(unittest.TestCase):
    """
    L{MailplatService} with C{separate_process}: SMTP listeners become
    L{HandedOffListener}s served by an L{SMTPProcessService}; without an
    SMTP listener there is no SMTP process.
    """

    def build(self, listeners):
        from mailplat.certs import makeSelfSigned
        from mailplat.service import MailplatService

        directory = os.path.abspath(self.mktemp())
        cert, key = makeSelfSigned("localhost", os.path.join(directory, "tls"))
        return MailplatService.fromTOML(
            'hostname = "m.example.test"\n[domains]\nlocal = ["example.test"]\n'
            'postmaster = "demo@example.test"\n[smtp]\nseparate_process = true\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
            + listeners,
            directory,
        )

    def test_smtpListenersHandedOff(self):
        service = self.build(
            '[listen.smtp]\nprotocol = "smtp"\nendpoint = "tcp:0"\n'
            '[listen.pop3]\nprotocol = "pop3"\nendpoint = "tcp:0"\n'
        )
        self.assertIsInstance(service.smtpProcess, SMTPProcessService)
        self.assertIs(type(service.listeners["smtp"]), HandedOffListener)
        self.assertIsNot(type(service.listeners["pop3"]), HandedOffListener)

    def test_noSMTPListenerNoProcess(self):
        service = self.build(
            '[listen.pop3]\nprotocol = "pop3"\nendpoint = "tcp:0"\n'
        )
        self.assertIsNone(service.smtpProcess)
