"""
mailplat.logobserver: twistd's text log lines, written in batches.
"""

import io

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEventAsClassicLogText, formatTime
from twisted.python.failure import Failure
from twisted.trial import unittest

from mailplat import logobserver
from mailplat.logobserver import BufferedLogObserver, formatLine, useForTwistd


def classic(event):
    """
    The line twistd's own C{textFileLogObserver} writes for C{event}.
    """
    return formatEventAsClassicLogText(event, formatTime=lambda t: formatTime(t, "%Y-%m-%dT%H:%M:%S%z"))


def event(fmt, level=LogLevel.info, **fields):
    e = {
        "log_format": fmt,
        "log_level": level,
        "log_namespace": "mailplat.queue.runner.QueueRunner",
        "log_time": 1795360000.25,
    }
    e.update(fields)
    return e


class FormatLineTests(unittest.TestCase):
    """
    L{formatLine} writes exactly what twistd's text observer writes.
    """

    def assertSameLine(self, e):
        self.assertEqual(formatLine(e, logobserver._SecondClock()), classic(e))

    def test_fields(self):
        self.assertSameLine(
            event("{queueId}: to=<{rcpt}>, delay={delay:.2f}, size={n!r}",
                  queueId="1A2B", rcpt="a@example.test", delay=0.126, n=12)
        )

    def test_exactText(self):
        line = formatLine(event("{queueId}: removed", queueId="1A2B"), logobserver._SecondClock())
        self.assertRegex(
            line,
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "
            r"\[mailplat\.queue\.runner\.QueueRunner#info\] 1A2B: removed\n$",
        )

    def test_system(self):
        self.assertSameLine(event("hello", log_system="SMTPServer,3,127.0.0.1"))

    def test_multiLine(self):
        self.assertSameLine(event("one\ntwo\nthree"))

    def test_attributeAndIndex(self):
        self.assertSameLine(event("{a.real} {b[0]} {c[k]}", a=3, b=[4], c={"k": 5}))

    def test_callSyntax(self):
        """
        Twisted's C{{f()}} call syntax is formatted by Twisted.
        """
        self.assertSameLine(event("{f()} calls", f=lambda: "it"))

    def test_missingField(self):
        """
        An event whose format names a missing field is logged the way Twisted
        logs it (as unformattable), not dropped.
        """
        e = event("{nothere} x")
        line = formatLine(e, logobserver._SecondClock())
        self.assertEqual(line, classic(e))
        self.assertIn("Unable to format event", line)

    def test_failure(self):
        try:
            1 / 0
        except ZeroDivisionError:
            f = Failure()
        e = event("it broke", level=LogLevel.critical, log_failure=f)
        line = formatLine(e, logobserver._SecondClock())
        self.assertEqual(line, classic(e))
        self.assertIn("ZeroDivisionError", line)

    def test_noText(self):
        self.assertIsNone(formatLine(event(""), logobserver._SecondClock()))

    def test_noFormat(self):
        e = event(None)
        self.assertEqual(formatLine(e, logobserver._SecondClock()), classic(e))

    def test_timeStampPerSecond(self):
        clock = logobserver._SecondClock()
        self.assertEqual(clock(1795360000.1), formatTime(1795360000.1, "%Y-%m-%dT%H:%M:%S%z"))
        self.assertEqual(clock(1795360000.9), clock(1795360000.1))
        self.assertEqual(clock(1795360001.0), formatTime(1795360001.0, "%Y-%m-%dT%H:%M:%S%z"))
        self.assertEqual(clock(None), "-")


class FakeReactor(Clock):
    running = True

    def __init__(self):
        Clock.__init__(self)
        self.triggers = []

    def callFromThread(self, f, *args):
        f(*args)

    def addSystemEventTrigger(self, phase, name, f):
        self.triggers.append((phase, name, f))


class BufferedLogObserverTests(unittest.TestCase):
    def setUp(self):
        self.out = io.StringIO()
        self.reactor = FakeReactor()
        self.observer = BufferedLogObserver(self.out, self.reactor)
        self.log = Logger(namespace="mailplat.test", observer=self.observer)

    def test_heldUntilTheDelay(self):
        self.log.info("{n}: one", n=1)
        self.log.info("{n}: two", n=2)
        self.assertEqual(self.out.getvalue(), "")
        self.reactor.advance(self.observer.flushDelay)
        lines = self.out.getvalue().splitlines()
        self.assertEqual([l.split("] ", 1)[1] for l in lines], ["1: one", "2: two"])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 0)

    def test_errorsAtOnce(self):
        self.log.info("first")
        self.log.error("bad: {what}", what="disk")
        self.assertEqual(
            [l.split("] ", 1)[1] for l in self.out.getvalue().splitlines()], ["first", "bad: disk"]
        )

    def test_largeBufferAtOnce(self):
        self.log.info("{x}", x="y" * self.observer.maxBuffer)
        self.assertIn("y" * 100, self.out.getvalue())

    def test_flushedAtShutdown(self):
        self.log.info("last words")
        [(phase, name, f)] = self.reactor.triggers
        self.assertEqual((phase, name), ("after", "shutdown"))
        f()
        self.assertIn("] last words\n", self.out.getvalue())

    def test_reactorNotRunning(self):
        self.reactor.running = False
        self.log.info("early")
        self.assertIn("] early\n", self.out.getvalue())

    def test_bytesFile(self):
        out = io.BytesIO()
        observer = BufferedLogObserver(out, self.reactor)
        Logger(namespace="n", observer=observer).error("caf\u00e9")
        self.assertTrue(out.getvalue().endswith(" [n#error] caf\u00e9\n".encode("utf-8")))

    def test_writeErrorIgnored(self):
        class Broken(io.StringIO):
            def write(self, text):
                raise OSError(28, "No space left on device")

        observer = BufferedLogObserver(Broken(), self.reactor)
        Logger(namespace="n", observer=observer).error("x")  # does not raise


class UseForTwistdTests(unittest.TestCase):
    def setUp(self):
        self.patch(logobserver, "_twistdOptions", None)

    def test_default(self):
        options = {"logger": None, "syslog": False, "logfile": "", "nodaemon": True}
        self.assertTrue(useForTwistd(options))
        self.assertEqual(options["logger"], "mailplat.logobserver.twistdObserver")
        self.assertIsInstance(logobserver.twistdObserver(), BufferedLogObserver)

    def test_commandLineWins(self):
        for options in ({"logger": "x.y", "syslog": False}, {"logger": None, "syslog": True}):
            before = dict(options)
            self.assertFalse(useForTwistd(options))
            self.assertEqual(options, before)

    def test_logFile(self):
        path = self.mktemp()
        observer = logobserver.makeLogObserver({"logfile": path, "nodaemon": False})
        Logger(namespace="n", observer=observer).error("to the file")
        observer.flush()
        with open(path) as f:
            self.assertTrue(f.read().endswith(" [n#error] to the file\n"))
