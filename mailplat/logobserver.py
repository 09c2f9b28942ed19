"""
The log observer C{twistd mailplat} uses: the same lines as twistd's own text
log, written at a fraction of the cost.

A mail server logs several lines per message (connect, queued, delivered,
removed, disconnect).  twistd's C{textFileLogObserver} formats each event with
a Python-level C{string.Formatter}, computes the time zone of every time stamp
anew and writes and flushes each line on its own: under load that was a third
of the reactor thread's time.  L{BufferedLogObserver} writes the same text
(C{2026-11-22T15:12:53+0000 [system] message}, continuation lines indented by a
tab) but

  - formats with C{str.format_map} (Twisted's formatter is kept for the events
    it alone can format: call syntax such as C{{f()}}, flattened events,
    tracebacks);
  - formats the time stamp once per second;
  - collects lines and writes them together at most C{flushDelay} seconds
    later (0.05 s), at once for warnings and errors, and when the buffer is
    large, the reactor is not running, or the process stops.

Twisted has no buffered file observer of its own, hence this module.  It is
installed through twistd's C{--logger} option, which L{mailplat.tap.Options}
fills in when the command line gives neither C{--logger} nor C{--syslog}.
"""

import atexit
import os
import sys
import threading
from datetime import datetime

from zope.interface import implementer

from twisted.logger import ILogObserver, LogLevel, formatEventAsClassicLogText
from twisted.logger import formatTime as twistedFormatTime
from twisted.python import threadable
from twisted.python.compat import ioType
from twisted.python.logfile import LogFile
from twisted.python._tzhelper import FixedOffsetTimeZone

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_URGENT = frozenset([LogLevel.warn, LogLevel.error, LogLevel.critical])


class _SecondClock:
    """
    Time stamps as twistd writes them (RFC 3339 in local time, to the second),
    computed once per second.
    """

    def __init__(self):
        self._second = None
        self._text = "-"

    def __call__(self, when):
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            tz = FixedOffsetTimeZone.fromLocalTimeStamp(second)
            self._text = datetime.fromtimestamp(second, tz).strftime(_TIME_FORMAT)
            self._second = second
        return self._text


def _asTwistedWould(event):
    """
    Twisted's own formatting of C{event}, for what L{formatLine} leaves to it.
    """
    return formatEventAsClassicLogText(
        event, formatTime=lambda when: twistedFormatTime(when, _TIME_FORMAT)
    )


def messageText(event):
    """
    The text of C{event}'s message, formatted the quick way (no failure, no
    flattened fields, no method calls in the format string).

    @return: the text, or L{None} when Twisted's own formatting is needed.
    """
    fmt = event.get("log_format")
    if (
        fmt.__class__ is not str
        or "log_failure" in event
        or "log_flattened" in event
        or "()" in fmt
    ):
        return None
    try:
        return fmt.format_map(event)
    except Exception:
        return None


def systemOf(event):
    """
    The C{[system]} part of twistd's line for C{event}.
    """
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        return "{}#{}".format(
            event.get("log_namespace", "-"), "-" if level is None else level.name
        )
    if system.__class__ is not str:
        try:
            return str(system)
        except Exception:
            return "UNFORMATTABLE"
    return system


def formatLine(event, stamp):
    """
    Format C{event} as one line of twistd's classic text log.

    @param event: a log event.
    @param stamp: a callable turning C{event["log_time"]} into a time stamp.
    @return: the line (ending in a newline), or C{None} for an event with no
        text.
    """
    text = messageText(event)
    if text is None:
        return _asTwistedWould(event)
    if not text:
        return None
    if "\n" in text:
        text = text.replace("\n", "\n\t")
    return f"{stamp(event.get('log_time'))} [{systemOf(event)}] {text}\n"


@implementer(ILogObserver)
class BufferedLogObserver:
    """
    Write log events to a file as twistd's text log does, in batches.

    Events may come from any thread; the write happens on the reactor thread
    (or on the caller's, when the reactor is not running).

    @ivar flushDelay: the longest an ordinary line waits before it is written.
    @ivar maxBuffer: characters held at most before a write.
    """

    flushDelay = 0.05
    maxBuffer = 65536

    def __init__(self, outFile, reactor=None):
        self._outFile = outFile
        self._encode = ioType(outFile) is not str
        self._reactor = reactor
        self._lock = threading.Lock()
        self._lines = []
        self._size = 0
        self._scheduled = False
        self._stamp = _SecondClock()
        self._triggerAdded = False

    def _getReactor(self):
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def __call__(self, event):
        line = formatLine(event, self._stamp)
        if not line:
            return
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            urgent = self._size >= self.maxBuffer or event.get("log_level") in _URGENT
            schedule = not urgent and not self._scheduled
            if schedule:
                self._scheduled = True
        if urgent:
            self.flush()
        elif schedule:
            self._schedule()

    def _schedule(self):
        reactor = self._getReactor()
        if not getattr(reactor, "running", False):
            self.flush()
            return
        if not self._triggerAdded:
            self._triggerAdded = True
            reactor.addSystemEventTrigger("after", "shutdown", self.flush)
        if threadable.isInIOThread():
            reactor.callLater(self.flushDelay, self.flush)
        else:
            reactor.callFromThread(reactor.callLater, self.flushDelay, self.flush)

    def flush(self):
        """
        Write every line held so far.
        """
        with self._lock:
            lines, self._lines, self._size = self._lines, [], 0
            self._scheduled = False
            if not lines:
                return
            text = "".join(lines)
            try:
                self._outFile.write(text.encode("utf-8") if self._encode else text)
                self._outFile.flush()
            except Exception:
                # A log that cannot be written must not stop the mail flow.
                pass


def makeLogObserver(options):
    """
    Build the observer twistd would build for C{options} (C{--logfile},
    C{--nodaemon}), as a L{BufferedLogObserver}.

    @param options: twistd's parsed options (a mapping).
    @return: the observer, flushed at process exit too.
    """
    logfile = options.get("logfile") or ""
    nodaemon = options.get("nodaemon", False)
    if logfile == "-":
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        outFile = sys.stdout
    elif nodaemon and not logfile:
        outFile = sys.stdout
    else:
        outFile = LogFile.fromFullPath(logfile or "twistd.log")
        _rotateOnSIGUSR1(outFile)
    observer = BufferedLogObserver(outFile)
    atexit.register(observer.flush)
    return observer


def _rotateOnSIGUSR1(logFile):
    """
    Rotate C{logFile} on SIGUSR1, as twistd does for its own log file.
    """
    import signal

    if not signal.getsignal(signal.SIGUSR1):

        def rotateLog(signum, frame):
            from twisted.internet import reactor

            reactor.callFromThread(logFile.rotate)

        signal.signal(signal.SIGUSR1, rotateLog)


# twistd's --logger names a callable without arguments; the options it is to
# honour are set here by useForTwistd, at most once per process.
_twistdOptions = None


def twistdObserver():
    """
    The observer for twistd's C{--logger} (see L{useForTwistd}).
    """
    return makeLogObserver(_twistdOptions or {})


def useForTwistd(options):
    """
    Make twistd log through L{BufferedLogObserver}, unless its command line
    chose a logger or syslog itself.

    @param options: twistd's C{ServerOptions}, before its C{postOptions} (which
        imports the C{--logger} name).
    @return: whether the buffered observer was chosen.
    """
    global _twistdOptions
    if options.get("logger") or options.get("syslog") or os.name != "posix":
        return False
    _twistdOptions = options
    options["logger"] = f"{__name__}.twistdObserver"
    return True
