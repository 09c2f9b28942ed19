"""
mailplat against Postfix and Dovecot, side by side: `make bench` (full) or
`bench/run --quick`.  See bench/README.md for what each figure means.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

import prepare
import procs
import report
from servers import BENCH, Dovecot, Mailplat, Peer, Postfix, ServerError, Sink, freePorts

LOADGEN = os.path.join(BENCH, "loadgen.py")
ROOT = os.path.dirname(BENCH)

# Sizes of each benchmark by mode.  The quick mode keeps every benchmark and
# the A B A B rounds but shrinks the work, to finish within two minutes.
MODES = {
    "full": dict(
        # The SMTP runs last a few seconds each: with 1,000 / 300 / 500
        # messages they took under a second, and their spread between
        # rounds (about 15 %) was as large as the differences measured.
        rounds=5, smtp1k=4000, smtp100k=1000, relay=2000, duration=6.0,
        idleSmtp=1000, idleImap=1000, bigMB=50, mbsync=1000, settle=1.0,
    ),
    "quick": dict(
        rounds=3, smtp1k=200, smtp100k=40, relay=100, duration=0.8,
        idleSmtp=200, idleImap=200, bigMB=20, mbsync=300, settle=0.5,
    ),
}
CONCURRENCY = 8  # IMAP and POP3 client connections at once
LOAD_USERS = [f"u{i:02d}@{prepare.DOMAIN}" for i in range(1, 17)]
BULK = f"bulk@{prepare.DOMAIN}"
SENDER = "sender@client.test"


class NotAvailable(Exception):
    """
    A figure that cannot be measured on one side; the message says why.
    """


class Environment:
    def __init__(self, scratch, say):
        self.scratch = scratch
        self.say = say
        self.registry = procs.Registry(os.path.join(scratch, "pids.json"), say)
        self.ports = {}
        self.maxSize = 64 * 1024 * 1024
        self.mailUid, self.mailGid = prepare.mailIds()
        self.tls = os.path.join(scratch, "tls")
        self.cert = os.path.join(self.tls, "cert.pem")
        self.key = os.path.join(self.tls, "key.pem")
        self.passwd = os.path.join(scratch, "passwd")
        self.peerMail = os.path.join(scratch, "peermail")

    def path(self, *parts):
        return os.path.join(self.scratch, *parts)


class Results:
    def __init__(self):
        self.samples = {}  # figure -> side -> [values]
        self.na = {}  # figure -> side -> reason
        self.notes = []

    def add(self, figure, side, value):
        self.samples.setdefault(figure, {}).setdefault(side, []).append(value)

    def notAvailable(self, figure, side, reason):
        self.na.setdefault(figure, {}).setdefault(side, reason)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)


class Harness:
    def __init__(self, args):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.p = dict(MODES[self.mode])
        if args.rounds:
            self.p["rounds"] = args.rounds
        self.t0 = time.monotonic()
        self.results = Results()
        self.loadStart = os.getloadavg()

    def say(self, text):
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    # -- set-up

    def setUp(self):
        args = self.args
        if os.geteuid() != 0:
            raise SystemExit(
                "bench/run needs root: it installs Debian packages and runs private "
                "Postfix and Dovecot instances, whose daemons switch users.")
        self.installed = [] if args.no_install else prepare.ensurePackages(self.say)
        prepare.ensureMatplotlib(self.say)
        self.fileLimit = procs.raiseFileLimit()
        if self.fileLimit < 2 * self.p["idleImap"] + 100:
            raise SystemExit(f"RLIMIT_NOFILE is {self.fileLimit}: too low for the idle tests")

        scratch = os.path.abspath(args.scratch)
        blocked = prepare.checkTraversable(scratch)
        if blocked:
            raise SystemExit(
                f"{blocked} is not searchable by others, but the peers' mail processes "
                "run as nobody: use --scratch DIR somewhere else (e.g. /var/tmp/bench)")
        os.makedirs(scratch, exist_ok=True)
        env = self.env = Environment(scratch, self.say)
        env.registry.reapStale()
        for name in os.listdir(scratch):
            p = os.path.join(scratch, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        os.chmod(scratch, 0o755)

        names = ["mailplat_smtp", "mailplat_imaps", "mailplat_pop3s", "postfix_smtp",
                 "dovecot_imaps", "dovecot_pop3s", "sink"]
        env.ports = dict(zip(names, freePorts(len(names))))

        from mailplat.certs import makeSelfSigned

        makeSelfSigned("mail.example.test", env.tls)
        os.chmod(env.tls, 0o755)

        R = self.p["rounds"]
        self.roundUsers = {
            kind: [f"{kind}-r{r}@{prepare.DOMAIN}" for r in range(1, R + 1)]
            for kind in ("a1k", "a100k", "big")
        }
        users = LOAD_USERS + [BULK] + sum(self.roundUsers.values(), [])
        self.say(f"writing {len(users)} users, filling mailboxes")
        prepare.writePasswd(env.passwd, users)
        mailboxes = {u: [(i * 100 + k, 2000 + (k * 997) % 6000) for k in range(20)]
                     for i, u in enumerate(LOAD_USERS)}
        mailboxes[BULK] = [(10000 + k, 1000 + (k * 7919) % 19000) for k in range(self.p["mbsync"])]
        self.mailplat = Mailplat(env)
        os.makedirs(self.mailplat.dir, exist_ok=True)
        os.makedirs(env.peerMail, exist_ok=True)
        prepare.populate(self.mailplat.mailRoot, env.peerMail, mailboxes,
                         env.mailUid, env.mailGid)

        # mailplat: without a config it accepts, every mailplat figure is
        # n/a (the peers are measured all the same); the relay fragment may
        # be rejected alone.
        self.mailplatDown = None
        self.mailplat.writeConfig()
        problem = self.mailplat.checkConfig(self.mailplat.config)
        if problem:
            self.mailplatDown = f"mailplat rejects bench/config/mailplat.toml.in: {problem}"
            self.say(self.mailplatDown)
        from servers import fill

        fragment = "\n" + fill("mailplat-relay.toml.in", {"SINK_PORT": env.ports["sink"]})
        trial = env.path("mailplat", "relay-check.toml")
        self.mailplat.writeConfig(fragment)
        shutil.copy(self.mailplat.config, trial)
        problem = self.mailplat.checkConfig(trial)
        if problem:
            self.relayProblem = (
                "mailplat has no outbound relay yet: `mailplat config check` rejects "
                f"bench/config/mailplat-relay.toml.in ({problem})")
            self.mailplat.writeConfig()
        else:
            self.relayProblem = None

        self.postfix = Postfix(env)
        self.postfix.writeConfig(users)
        self.dovecot = Dovecot(env)
        self.dovecot.writeConfig()
        self.peer = Peer(self.postfix, self.dovecot)
        self.sink = Sink(env)

    def startAll(self):
        self.say("starting smtp-sink, mailplat, Postfix and Dovecot on 127.0.0.1")
        self.sink.start()
        try:
            if not self.mailplatDown:
                self.mailplat.start()
        except ServerError as e:
            # Measure the peers all the same; every mailplat figure says why
            # it is missing.
            self.mailplatDown = "mailplat did not start: " + str(e).strip().splitlines()[-1]
            self.say(self.mailplatDown)
            self.results.note(f"{self.mailplatDown} (log: {self.mailplat.log})")
        self.peer.start()
        self.say("warming up (one pass of IMAP and POP3 sessions on every mailbox)")
        for side in ("mailplat", "peer")[1 if self.mailplatDown else 0:]:
            self.loadgen("imap-sessions", self.port(side, "imaps"),
                         users=LOAD_USERS + [BULK], duration=0.5, check=False)
            self.loadgen("pop3-sessions", self.port(side, "pop3s"),
                         users=LOAD_USERS[:CONCURRENCY], duration=0.5, check=False)

    def stopAll(self):
        for s in ("sink", "mailplat", "postfix", "dovecot"):
            server = getattr(self, s, None)
            if server is not None:
                try:
                    server.stop()
                except Exception as e:
                    self.say(f"stopping {s}: {e}")
        if getattr(self, "env", None) is not None:
            self.env.registry.stopAll()

    # -- helpers

    def port(self, side, what):
        prefix = "mailplat" if side == "mailplat" else {"smtp": "postfix"}.get(what, "dovecot")
        return self.env.ports[f"{prefix}_{what}"]

    def server(self, side, what=None):
        """
        The server (or pair) that plays C{what} on C{side}.
        """
        if side == "mailplat":
            return self.mailplat
        return {"smtp": self.postfix, "imap": self.dovecot, None: self.peer}[what]

    def mailRoot(self, side):
        return self.mailplat.mailRoot if side == "mailplat" else self.env.peerMail

    def ensureRunning(self, side):
        for server in ([self.mailplat] if side == "mailplat" else [self.postfix, self.dovecot]):
            if not server.running():
                self.say(f"{server.name} is not running: restarting it")
                self.results.note(f"{server.name} stopped during the run and was restarted")
                server.restart()

    def loadgen(self, mode, port, users=(), duration=None, check=True, **extra):
        cmd = [sys.executable, LOADGEN, mode, "--port", str(port),
               "--users", ",".join(users), "--password", prepare.PASSWORD,
               "--duration", str(duration or self.p["duration"])]
        for k, v in extra.items():
            cmd += [f"--{k}", str(v)]
        r = procs.run(cmd, timeout=(duration or self.p["duration"]) + 120)
        if r.returncode != 0:
            raise ServerError(f"load generator failed: {r.stderr.strip().splitlines()[-1:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        if check and out.get("count", 1) == 0:
            raise NotAvailable(out.get("firstError") or "nothing completed")
        return out

    def smtpSource(self, port, count, size, rcpt, sessions=20, timeout=600):
        cmd = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
               "-f", SENDER, "-t", rcpt, "-M", "client.test", f"127.0.0.1:{port}"]
        t0 = time.monotonic()
        r = procs.run(cmd, timeout=timeout)
        elapsed = time.monotonic() - t0
        if r.returncode != 0:
            raise NotAvailable(
                "smtp-source: " + (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])[-1])
        return t0, elapsed

    def waitFor(self, predicate, timeout, interval=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def drain(self, side, timeout=120):
        servers = [self.mailplat] if side == "mailplat" else [self.postfix]
        if not self.waitFor(lambda: all(s.queueEmpty() for s in servers), timeout, 0.1):
            self.results.note(f"{servers[0].name}'s queue was not empty {timeout}s after a round")

    # -- benchmarks: each returns {figure: value} for one side, one round

    def benchStartup(self, side, r):
        if side == "mailplat":
            t = self.mailplat.restart()
            out = {"startup_smtp": t["smtp"], "startup_imap": t["imap"]}
        else:
            out = {"startup_smtp": self.postfix.restart()["smtp"],
                   "startup_imap": self.dovecot.restart()["imap"]}
        time.sleep(self.p["settle"])
        rss, pss = self.server(side).memory()
        out["rss_rest"] = rss / 1024
        out["pss_rest"] = pss / 1024
        return out

    def _accept(self, side, r, kind, size, count):
        rcpt = self.roundUsers[kind][r - 1]
        _, elapsed = self.smtpSource(self.port(side, "smtp"), count, size, rcpt)
        root = self.mailRoot(side)
        if not self.waitFor(lambda: prepare.maildirCount(root, rcpt) >= count, 60 + count / 5, 0.1):
            self.results.note(
                f"{side}: only {prepare.maildirCount(root, rcpt)} of {count} accepted "
                f"messages were in the Maildir {60 + count / 5:.0f}s later")
        self.drain(side)
        return count / elapsed

    def benchSmtp1k(self, side, r):
        return {"smtp_1k": self._accept(side, r, "a1k", 1024, self.p["smtp1k"])}

    def benchSmtp100k(self, side, r):
        return {"smtp_100k": self._accept(side, r, "a100k", 100 * 1024, self.p["smtp100k"])}

    def benchRelay(self, side, r):
        if side == "mailplat" and self.relayProblem:
            raise NotAvailable(self.relayProblem)
        count = self.p["relay"]
        before = self.sink.messages()
        t0, _ = self.smtpSource(self.port(side, "smtp"), count, 1024, "bench@remote.test")
        timeout = 60 + count / 5
        if not self.waitFor(lambda: self.sink.messages() >= before + count, timeout):
            got = self.sink.messages() - before
            self.drain(side, 30)
            raise NotAvailable(f"{got} of {count} relayed messages reached smtp-sink "
                               f"within {timeout:.0f}s")
        elapsed = time.monotonic() - t0
        self.drain(side)
        return {"relay": count / elapsed}

    def benchImapSessions(self, side, r):
        out = self.loadgen("imap-sessions", self.port(side, "imaps"),
                           users=LOAD_USERS[:CONCURRENCY])
        self._errors(side, "IMAP sessions", out)
        return {"imap_sessions": out["rate"]}

    def benchImapCommands(self, side, r):
        out = self.loadgen("imap-commands", self.port(side, "imaps"),
                           users=LOAD_USERS[:CONCURRENCY])
        self._errors(side, "IMAP commands", out)
        return {"imap_commands": out["rate"]}

    def benchPop3(self, side, r):
        out = self.loadgen("pop3-sessions", self.port(side, "pop3s"),
                           users=LOAD_USERS[CONCURRENCY:2 * CONCURRENCY])
        self._errors(side, "POP3 sessions", out)
        return {"pop3_sessions": out["rate"]}

    def _errors(self, side, what, out):
        if out.get("errors"):
            self.results.note(f"{side}, {what}: {out['errors']} error(s), first: {out['firstError']}")

    def _idle(self, side, what, mode, count, users, parallel, figure):
        server = self.server(side, what)
        server.restart()
        time.sleep(0.5)
        port = self.port(side, "smtp" if what == "smtp" else "imaps")
        info, base, after = self._holdIdle(mode, port, users, count, parallel, measure=server)
        if info["open"] < count:
            raise NotAvailable(f"only {info['open']} of {count} sessions opened "
                               f"({info['firstError']})")
        self.say(f"  {count} sessions opened in {info['elapsed']:.1f}s")
        return {f"{figure}_rss": (after[0] - base[0]) / count,
                f"{figure}_pss": (after[1] - base[1]) / count}

    def _holdIdle(self, mode, port, users, count, parallel, measure=None):
        """
        Run the load generator in an idle mode: it starts and opens and
        closes one warm-up session, the server's memory is read, it opens C{count} sessions, the memory is read again
        1 s after they are all up, then it closes them.

        @return: C{(info, before, after)}.
        """
        cmd = [sys.executable, LOADGEN, mode, "--port", str(port), "--users", ",".join(users),
               "--password", prepare.PASSWORD, "--count", str(count),
               "--parallel", str(parallel), "--warmup"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.env.registry.add("load generator", proc.pid)
        try:
            def expect(word):
                line = proc.stdout.readline()
                if not line.startswith(word):
                    raise ServerError(
                        f"load generator: {line.strip()} {proc.stderr.read()[-300:]}")
                return line

            expect("STARTED")
            before = measure.memory() if measure else None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            info = json.loads(expect("READY ")[6:])
            after = None
            if measure is not None:
                time.sleep(self.p["settle"])  # let the server settle
                after = measure.memory()
            proc.stdin.close()
            proc.wait(timeout=120)
            return info, before, after
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.env.registry.forget(proc.pid)

    def benchIdleSmtp(self, side, r):
        return self._idle(side, "smtp", "smtp-idle", self.p["idleSmtp"], [], 100, "smtp_idle")

    def benchIdleImap(self, side, r):
        return self._idle(side, "imap", "imap-idle", self.p["idleImap"], LOAD_USERS, 50,
                          "imap_idle")

    def benchBig(self, side, r):
        server = self.server(side)
        server.restart()
        time.sleep(0.5)
        size = self.p["bigMB"] * 1024 * 1024
        rcpt = self.roundUsers["big"][r - 1]
        root = self.mailRoot(side)
        base = procs.rssOnly(server.pids())
        sampler = procs.PeakSampler(server.roots)
        sampler.start()
        try:
            t0, _ = self.smtpSource(self.port(side, "smtp"), 1, size, rcpt, sessions=1)
            if not self.waitFor(lambda: prepare.maildirCount(root, rcpt) >= 1, 120, 0.05):
                raise NotAvailable("the 50 MB message was not delivered within 120s")
            out = self.loadgen("imap-fetch", self.port(side, "imaps"), users=[rcpt])
            elapsed = time.monotonic() - t0
        finally:
            peak = sampler.stop()
        if out["bytes"] < size:
            raise NotAvailable(f"IMAP FETCH returned {out['bytes']} bytes, fewer than {size}")
        return {"big_rss": (peak - base) / 1024, "big_time": elapsed}

    def benchMbsync(self, side, r):
        local = self.env.path("mbsync", f"{side}-r{r}")
        os.makedirs(os.path.join(local, "mail"))
        rc = os.path.join(local, "mbsyncrc")
        from servers import fill

        with open(rc, "w") as f:
            f.write(fill("mbsyncrc.in", dict(
                PORT=self.port(side, "imaps"), USER=BULK, PASSWORD=prepare.PASSWORD,
                CERT=self.env.cert, LOCAL=os.path.join(local, "mail"))))
        os.chmod(rc, 0o600)
        t0 = time.monotonic()
        try:
            res = procs.run(["mbsync", "-c", rc, "-a"], timeout=600, cwd=local)
        except subprocess.TimeoutExpired:
            raise NotAvailable("mbsync did not finish within 600s")
        elapsed = time.monotonic() - t0
        inbox = os.path.join(local, "mail", "INBOX")
        got = sum(len(os.listdir(os.path.join(inbox, s))) for s in ("cur", "new")
                  if os.path.isdir(os.path.join(inbox, s)))
        if res.returncode != 0 or got != self.p["mbsync"]:
            lines = [l for l in (res.stdout + res.stderr).splitlines() if l.strip()]
            raise NotAvailable(f"mbsync pulled {got} of {self.p['mbsync']} messages, exit status "
                               f"{res.returncode}: {' / '.join(lines[-2:])[:200]}")
        shutil.rmtree(os.path.join(local, "mail"))
        return {"mbsync": elapsed}

    BENCHMARKS = [
        ("start-up and RSS at rest", "benchStartup",
         ["startup_smtp", "startup_imap", "rss_rest", "pss_rest"]),
        ("SMTP accept, 1 KB", "benchSmtp1k", ["smtp_1k"]),
        ("SMTP accept, 100 KB", "benchSmtp100k", ["smtp_100k"]),
        ("relay end to end", "benchRelay", ["relay"]),
        ("IMAP sessions", "benchImapSessions", ["imap_sessions"]),
        ("IMAP commands", "benchImapCommands", ["imap_commands"]),
        ("POP3 sessions", "benchPop3", ["pop3_sessions"]),
        ("idle SMTP sessions", "benchIdleSmtp", ["smtp_idle_rss", "smtp_idle_pss"]),
        ("idle IMAP sessions", "benchIdleImap", ["imap_idle_rss", "imap_idle_pss"]),
        ("50 MB message", "benchBig", ["big_rss", "big_time"]),
        ("mbsync full pull", "benchMbsync", ["mbsync"]),
    ]

    def runAll(self):
        only = set(self.args.only.split(",")) if self.args.only else None
        for title, method, figures in self.BENCHMARKS:
            if only and not only & {method, *figures}:
                continue
            for r in range(1, self.p["rounds"] + 1):
                for side in ("mailplat", "peer"):  # A B A B ...
                    label = "mailplat" if side == "mailplat" else "peer"
                    try:
                        if side == "mailplat" and self.mailplatDown:
                            raise NotAvailable(self.mailplatDown)
                        self.ensureRunning(side)
                        values = getattr(self, method)(side, r)
                    except (NotAvailable, ServerError) as e:
                        reason = (str(e).strip().splitlines() or ["?"])[0]
                        if len(reason) > 160:
                            self.results.note(f"{label}, {title}: n/a: {reason}")
                        for f in figures:
                            self.results.notAvailable(f, side, reason)
                        self.say(f"{title}, round {r}, {label}: n/a: {reason}")
                        continue
                    except Exception as e:
                        traceback.print_exc()
                        for f in figures:
                            self.results.notAvailable(f, side, f"harness error: {e!r}"[:300])
                        continue
                    for f, v in values.items():
                        self.results.add(f, side, v)
                    shown = ", ".join(f"{f}={v:.4g}" for f, v in values.items())
                    self.say(f"{title}, round {r}, {label}: {shown}")

    def versions(self):
        v = {}
        import mailplat
        import twisted

        v["mailplat"] = mailplat.__version__ + _commit()
        v["Twisted"] = twisted.__version__
        v["Python"] = platform.python_version()
        v["Postfix"] = self.postfix.version()
        v["Dovecot"] = self.dovecot.version()
        v["isync"] = procs.run(["mbsync", "--version"]).stdout.strip()
        v["kernel"] = platform.release()
        v["CPU"] = f"{os.cpu_count()} x {_cpuModel()}"
        v["memory"] = _memTotal()
        return v


def _commit():
    # The commit the working tree was on (read from .git, not by running git).
    try:
        with open(os.path.join(ROOT, ".git", "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = os.path.join(ROOT, ".git", ref)
            if os.path.exists(path):
                with open(path) as f:
                    return f" ({f.read().strip()[:10]}, working tree as it was)"
            with open(os.path.join(ROOT, ".git", "packed-refs")) as f:
                for line in f:
                    if line.strip().endswith(ref):
                        return f" ({line.split()[0][:10]}, working tree as it was)"
        return f" ({head[:10]})"
    except OSError:
        return ""


def _cpuModel():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _memTotal():
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return f"{kib / 1024 / 1024:.1f} GiB"


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a local check in under two minutes")
    p.add_argument("--rounds", type=int, help="rounds per server (at least 3)")
    p.add_argument("--only", help="comma-separated benchmark methods or figure names "
                   "(results go to <date>-<host>[-quick]-partial.md)")
    p.add_argument("--scratch", default=os.path.join(BENCH, ".scratch"),
                   help="scratch directory (emptied at start); default bench/.scratch")
    p.add_argument("--results", default=os.path.join(BENCH, "results"))
    p.add_argument("--no-install", action="store_true", help="do not run apt-get")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 3:
        p.error("--rounds must be at least 3")

    h = Harness(args)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell that starts us in the background may have set it
    # to "ignore", which Python would otherwise keep.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    started = datetime.datetime.now()
    try:
        h.setUp()
        h.say(f"{h.mode} run: {h.p['rounds']} rounds per server, alternating mailplat / peer")
        h.startAll()
        h.runAll()
        versions = h.versions()
    except KeyboardInterrupt:
        h.say("interrupted: stopping everything this run started")
        h.stopAll()
        return 130
    finally:
        h.stopAll()
    host = socket.gethostname().split(".")[0]
    stem = f"{started:%Y-%m-%d}-{host}" + ("-quick" if h.mode == "quick" else "")
    if args.only:
        stem += "-partial"  # never replaces a complete run's results
    meta = {
        "mode": h.mode,
        "params": h.p,
        "started": started.isoformat(timespec="seconds"),
        "duration": time.monotonic() - h.t0,
        "host": host,
        "versions": versions,
        "load": [h.loadStart, os.getloadavg()],
        "installed": h.installed,
        "fileLimit": h.fileLimit,
    }
    paths = report.write(args.results, stem, meta, h.results)
    h.say("results: " + ", ".join(os.path.relpath(x, ROOT) for x in paths))
    with open(paths[0]) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
