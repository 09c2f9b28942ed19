"""
Load generators for the IMAP, POP3 and idle-connection benchmarks.

One asyncio event loop in one process, the same code and TLS settings for
mailplat and for the peer, so the client's own cost is the same on both sides.
Each mode prints one JSON object on stdout; the idle modes print
C{STARTED}, wait for a line on stdin, open their connections, print
C{READY <json>} once every connection is up, and hold them until stdin closes.

    python bench/loadgen.py imap-sessions --port P --users a,b --password X --concurrency 8 --duration 5
"""

import argparse
import asyncio
import json
import re
import ssl
import sys
import time

HOST = "127.0.0.1"  # loopback only, always
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def tlsContext():
    # The servers use a self-signed certificate made for this run.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ProtocolError(Exception):
    pass


class IMAP:
    """
    A minimal IMAP4rev1 client: tagged commands, responses with literals.
    """

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.n = 0

    @classmethod
    async def connect(cls, port, ctx):
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=ctx, limit=1 << 20
        )
        self = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ProtocolError(f"greeting {greeting[:80]!r}")
        return self

    async def command(self, text, sink=None):
        """
        Send a command, read to its tagged response.

        @return: the number of bytes received.
        @raise ProtocolError: NO, BAD or a closed connection.
        """
        self.n += 1
        tag = b"a%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        received = 0
        while True:
            line = await self.reader.readline()
            if not line:
                raise ProtocolError(f"connection closed during {text.split()[0]}")
            received += len(line)
            m = _LITERAL.search(line)
            if m:
                remaining = int(m.group(1))
                received += remaining
                while remaining:
                    chunk = await self.reader.readexactly(min(remaining, 1 << 20))
                    remaining -= len(chunk)
                    if sink is not None:
                        sink(chunk)
                continue  # the rest of the response line follows the literal
            if line.startswith(tag + b" "):
                if line[len(tag) + 1 :].startswith(b"OK"):
                    return received
                raise ProtocolError(f"{text.split()[0]}: {line[:120]!r}")

    async def login(self, user, password):
        await self.command(f'LOGIN "{user}" "{password}"')

    async def close(self, logout=True):
        try:
            if logout:
                await self.command("LOGOUT")
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


class POP3:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port, ctx):
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=ctx, limit=1 << 24
        )
        self = cls(reader, writer)
        await self._status("greeting")
        return self

    async def _status(self, what):
        line = await self.reader.readline()
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"{what}: {line[:120]!r}")
        return line

    async def command(self, text):
        self.writer.write(text.encode() + b"\r\n")
        return await self._status(text.split()[0])

    async def retr(self, n):
        await self.command(f"RETR {n}")
        # Our messages are never empty, so the data ends with CRLF "." CRLF.
        data = await self.reader.readuntil(b"\r\n.\r\n")
        return len(data)

    async def close(self):
        try:
            await self.command("QUIT")
        except (ProtocolError, ConnectionError):
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def _timed(workers, duration):
    """
    Run C{workers(deadline, stats)} concurrently; each counts what it
    completes in C{stats}.  The rate is counted over the time until the last
    worker finished its last unit of work.
    """
    stats = {"count": 0, "errors": 0, "firstError": None}
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(*(w(deadline, stats) for w in workers))
    elapsed = time.monotonic() - start
    stats["elapsed"] = elapsed
    stats["rate"] = stats["count"] / elapsed if elapsed else 0.0
    return stats


def _error(stats, e):
    stats["errors"] += 1
    if stats["firstError"] is None:
        stats["firstError"] = f"{type(e).__name__}: {e}"


async def imapSessions(a):
    """
    Sessions with reconnects: TLS connect, LOGIN, SELECT INBOX,
    UID FETCH 1:* (FLAGS), LOGOUT, again and again.
    """
    ctx = tlsContext()

    def worker(user):
        async def run(deadline, stats):
            while time.monotonic() < deadline:
                try:
                    c = await IMAP.connect(a.port, ctx)
                    await c.login(user, a.password)
                    await c.command("SELECT INBOX")
                    await c.command("UID FETCH 1:* (FLAGS)")
                    await c.command("LOGOUT")
                    await c.close(logout=False)
                    stats["count"] += 1
                except Exception as e:
                    _error(stats, e)
                    if stats["errors"] > 50:
                        return
                    await asyncio.sleep(0.05)

        return run

    return await _timed([worker(u) for u in _users(a)], a.duration)


async def imapCommands(a):
    """
    Commands without reconnects: one logged-in session per worker with INBOX
    selected, cycling through NOOP, UID FETCH 1:* (FLAGS), FETCH n
    (BODY.PEEK[HEADER]) and FETCH n (BODY.PEEK[]).
    """
    ctx = tlsContext()

    def worker(user):
        async def run(deadline, stats):
            try:
                c = await IMAP.connect(a.port, ctx)
                await c.login(user, a.password)
                await c.command("SELECT INBOX")
            except Exception as e:
                _error(stats, e)
                return
            i = 0
            try:
                while time.monotonic() < deadline:
                    k = (i // 4) % a.messages + 1
                    await c.command((
                        "NOOP",
                        "UID FETCH 1:* (FLAGS)",
                        f"FETCH {k} (BODY.PEEK[HEADER])",
                        f"FETCH {k} (BODY.PEEK[])",
                    )[i % 4])
                    stats["count"] += 1
                    i += 1
            except Exception as e:
                _error(stats, e)
            await c.close()

        return run

    return await _timed([worker(u) for u in _users(a)], a.duration)


async def pop3Sessions(a):
    """
    Sessions: TLS connect, USER, PASS, STAT, RETR 1..N, QUIT (no DELE).
    """
    ctx = tlsContext()

    def worker(user):
        async def run(deadline, stats):
            while time.monotonic() < deadline:
                try:
                    c = await POP3.connect(a.port, ctx)
                    await c.command(f"USER {user}")
                    await c.command(f"PASS {a.password}")
                    line = await c.command("STAT")
                    count = int(line.split()[1])
                    if count < a.messages:
                        raise ProtocolError(f"STAT says {count} messages")
                    for n in range(1, a.messages + 1):
                        await c.retr(n)
                    await c.close()
                    stats["count"] += 1
                except Exception as e:
                    _error(stats, e)
                    if stats["errors"] > 50:
                        return
                    await asyncio.sleep(0.05)

        return run

    return await _timed([worker(u) for u in _users(a)], a.duration)


async def imapFetch(a):
    """
    Fetch the last message of INBOX (BODY.PEEK[]) and report its size.
    """
    ctx = tlsContext()
    start = time.monotonic()
    c = await IMAP.connect(a.port, ctx)
    await c.login(_users(a)[0], a.password)
    await c.command("SELECT INBOX")
    got = []
    await c.command("FETCH * (BODY.PEEK[])", sink=lambda chunk: got.append(len(chunk)))
    await c.close()
    return {"bytes": sum(got), "elapsed": time.monotonic() - start}


async def _hold(opened, opener, a):
    sem = asyncio.Semaphore(a.parallel)
    errors = []

    async def one(i):
        async with sem:
            try:
                opened.append(await opener(i))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")

    # The harness reads the server's memory now, with this process already
    # running: its libraries (libc, libssl, libpython) are shared with the
    # servers, and PSS splits shared pages between every process that maps
    # them, so the "before" and "after" readings must see the same processes.
    if a.warmup:
        # One session first, so that what the server allocates once (on its
        # first connection) is not counted per connection.
        first = await opener(0)
        (first.writer if hasattr(first, "writer") else first).close()
        await asyncio.sleep(0.5)
    print("STARTED", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(a.count)))
    info = {
        "open": len(opened),
        "errors": len(errors),
        "firstError": errors[0] if errors else None,
        "elapsed": time.monotonic() - start,
    }
    print("READY " + json.dumps(info), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    return info


async def smtpIdle(a):
    """
    Open C{count} SMTP sessions (plain TCP, as an MX sees them), read each
    greeting, and hold them idle.
    """
    opened = []

    async def opener(i):
        reader, writer = await asyncio.open_connection(HOST, a.port)
        while True:
            line = await reader.readline()
            if not line.startswith(b"220"):
                writer.close()
                raise ProtocolError(f"greeting {line[:80]!r}")
            if line[3:4] == b" ":
                return writer

    info = await _hold(opened, opener, a)
    for w in opened:
        w.close()
    return info


async def imapIdle(a):
    """
    Open C{count} IMAP sessions over implicit TLS, log each in (the users in
    turn), and hold them idle.
    """
    ctx = tlsContext()
    users = _users(a)
    opened = []

    async def opener(i):
        c = await IMAP.connect(a.port, ctx)
        await c.login(users[i % len(users)], a.password)
        return c

    info = await _hold(opened, opener, a)
    for c in opened:
        c.writer.close()
    return info


def _users(a):
    return a.users.split(",")


MODES = {
    "imap-sessions": imapSessions,
    "imap-commands": imapCommands,
    "pop3-sessions": pop3Sessions,
    "imap-fetch": imapFetch,
    "smtp-idle": smtpIdle,
    "imap-idle": imapIdle,
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--users", default="")
    p.add_argument("--password", default="")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--warmup", action="store_true", help="idle modes: one session first")
    a = p.parse_args(argv)
    result = asyncio.run(MODES[a.mode](a))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
