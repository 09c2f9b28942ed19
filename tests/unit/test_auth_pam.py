"""
The C{pam} checker, against a real PAM service made for each test
(L{tests.pamsupport}: C{pam_exec} with a script, in C{/etc/pam.d}, removed
afterwards), and its C{[auth.pam]} config.
"""

import os
import sys

from twisted.cred import credentials, error
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from mailplat.auth import pamchecker
from mailplat.auth.checkers import CheckerSpecError, checkerFor
from mailplat.auth.pamchecker import PAMChecker, loadPAM, pamRunnerFor
from mailplat.auth.userdb import UserDatabase
from mailplat.config import ConfigError, loadConfigString, schema
from mailplat.interfaces import IMailUser
from mailplat.testing import cachedHash, makeContext, runSynchronously
from tests.pamsupport import PAMService, missingServiceName

BASE = (
    'hostname = "m.example.test"\n[domains]\nlocal = ["example.test", "other.test"]\n'
    'virtual = ["alias.test"]\npostmaster = "alice@example.test"\n'
)


def hideModule(case, replacement):
    """
    Make C{import pam} give C{replacement} (L{None}: raise L{ImportError})
    until C{case} ends.
    """
    missing = object()
    saved = sys.modules.get("pam", missing)

    def restore():
        if saved is missing:
            sys.modules.pop("pam", None)
        else:
            sys.modules["pam"] = saved

    case.addCleanup(restore)
    sys.modules["pam"] = replacement


class PAMLoginTests(unittest.TestCase):
    """
    Logins through the portal that C{checkers = ["pam"]} builds.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.service = PAMService(
            self.dir,
            {
                "alice": "pam pass",
                "bob": "bob pam pass",
                "carol@example.test": "carol pass",
            },
        )
        self.addCleanup(self.service.remove)
        self.warnings = []
        self.patch(pamchecker, "_log", Logger(observer=self.warnings.append))

    def context(self, **pam):
        pam.setdefault("service", self.service.name)
        return makeContext(
            os.path.join(self.dir, "server"),
            # alice's user database password is not her PAM password: only
            # PAM is asked.
            users=(("alice@example.test", "userdb pass"),
                   ("alice@other.test", "userdb pass"),
                   ("carol@example.test", "userdb pass")),
            domains=("example.test", "other.test"),
            overrides={"auth": {"checkers": ["pam"], "pam": pam}},
        )

    def login(self, context, user, password):
        return context.portal.login(
            credentials.UsernamePassword(user, password), None, IMailUser
        )

    def refused(self, context, d):
        """
        C{d} fails with L{error.UnauthorizedLogin} exactly
        C{auth.failure_delay} (2 s) later, as every checker's refusals do.
        """
        self.assertEqual(context.config.auth.failureDelay, 2.0)
        self.assertNoResult(d)
        context.clock.advance(1.9)
        self.assertNoResult(d)
        context.clock.advance(0.1)
        self.failureResultOf(d, error.UnauthorizedLogin)

    def test_rightPassword(self):
        """
        The right PAM password gives the avatar of the login address, in
        lower case; PAM is asked about the local part.
        """
        ctx = self.context()
        interface, avatar, logout = self.successResultOf(
            self.login(ctx, b"Alice@Example.TEST", b"pam pass")
        )
        self.assertIs(interface, IMailUser)
        self.assertEqual(avatar.address, "alice@example.test")
        self.assertIs(avatar.store, ctx.store)
        self.assertEqual(self.service.calls(), ["alice"])
        self.assertEqual(self.warnings, [])

    def test_wrongPassword(self):
        """
        A wrong password (here the user's user database password, which a
        C{["pam"]} chain does not check) is refused after the failure delay.
        """
        ctx = self.context()
        self.refused(ctx, self.login(ctx, b"alice@example.test", b"userdb pass"))
        self.assertEqual(self.service.calls(), ["alice"])

    def test_unknownUser(self):
        """
        A user PAM does not know is refused; so is one that PAM knows but the
        user database does not (bob), after PAM was asked all the same.
        """
        ctx = self.context()
        self.refused(ctx, self.login(ctx, b"mallory@example.test", b"pam pass"))
        self.refused(ctx, self.login(ctx, b"bob@example.test", b"bob pam pass"))
        self.assertEqual(self.service.calls(), ["mallory", "bob"])

    def test_domains(self):
        """
        Logins outside the PAM domains are refused without asking PAM: a
        domain that is not local, an alias-only domain, a bare user name,
        and a local domain left out of C{[auth.pam] domains}.
        """
        ctx = self.context()
        for user in (b"alice@elsewhere.test", b"alice@alias.test", b"alice",
                     b"@example.test"):
            self.refused(ctx, self.login(ctx, user, b"pam pass"))
        self.assertEqual(self.service.calls(), [])
        # Both local domains by default: alice@other.test is PAM's alice too.
        self.successResultOf(self.login(ctx, b"alice@other.test", b"pam pass"))
        self.assertEqual(self.service.calls(), ["alice"])

        ctx = self.context(domains=["example.test"])
        self.refused(ctx, self.login(ctx, b"alice@other.test", b"pam pass"))
        self.assertEqual(self.service.calls(), ["alice"])
        self.successResultOf(self.login(ctx, b"alice@example.test", b"pam pass"))
        self.assertEqual(self.service.calls(), ["alice", "alice"])

    def test_usernameAddress(self):
        """
        With C{username = "address"}, PAM is asked about the whole address.
        """
        ctx = self.context(username="address")
        interface, avatar, logout = self.successResultOf(
            self.login(ctx, b"carol@example.test", b"carol pass")
        )
        self.assertEqual(avatar.address, "carol@example.test")
        self.refused(ctx, self.login(ctx, b"alice@example.test", b"pam pass"))
        self.assertEqual(self.service.calls(), ["carol@example.test", "alice@example.test"])

    def test_nulInPassword(self):
        """
        A password with a NUL (an IMAP literal can carry one) cannot be given
        to PAM: refused, PAM not called.
        """
        ctx = self.context()
        self.refused(ctx, self.login(ctx, b"alice@example.test", b"pam pass\x00x"))
        self.assertEqual(self.service.calls(), [])

    def test_serviceMissing(self):
        """
        A service without a file in /etc/pam.d: a warning when the checker
        is made (Linux-PAM then uses the service C{other}, which does not
        know this made-up user), and the login is refused.
        """
        name = missingServiceName()
        ctx = makeContext(
            os.path.join(self.dir, "server"),
            users=(("mpt7q2x9k4@example.test", "userdb pass"),),
            overrides={"auth": {"checkers": ["pam"], "pam": {"service": name}}},
        )
        self.assertEqual(
            [(e["log_format"], e["service"]) for e in self.warnings],
            [("auth: no PAM service file for {service!r} in {directories}: PAM "
              "uses the service 'other' for mail logins", name)],
        )
        self.refused(ctx, self.login(ctx, b"mpt7q2x9k4@example.test", b"pam pass"))
        self.assertEqual(self.service.calls(), [])


class PAMRunnerTests(unittest.TestCase):
    def test_threadPool(self):
        """
        With a real reactor, PAM runs in a pool of its own (not the hash
        pool, which a PAM failure delay would hold up); with a clock,
        through C{runBlocking}.
        """
        from twisted.internet import reactor

        from mailplat.auth.hashpool import hashRunnerFor

        runner = pamRunnerFor(reactor, runSynchronously)
        self.assertIs(pamRunnerFor(reactor, runSynchronously), runner)
        self.assertIsNot(runner, hashRunnerFor(reactor, runSynchronously))
        self.assertEqual((runner.name, runner.threads), ("mailplat-pam", 4))
        clockRunner = pamRunnerFor(Clock(), runSynchronously)
        self.assertEqual(self.successResultOf(clockRunner(lambda x: x + 1, 1)), 2)

    def test_realThreads(self):
        """
        With the real reactor the check runs off the reactor thread.
        """
        import threading

        from twisted.internet import reactor

        runner = pamRunnerFor(reactor, runSynchronously)
        d = runner(lambda: threading.current_thread().name)
        d.addCallback(self.assertNotEqual, threading.current_thread().name)
        return d


class PAMConfigTests(unittest.TestCase):
    def test_defaults(self):
        config = loadConfigString(BASE + '[auth]\ncheckers = ["userdb", "pam"]\n', "/tmp")
        self.assertEqual(config.auth.checkers, ("userdb", "pam"))
        self.assertEqual(config.auth.pam, schema.PAMConfig("mailplat", "localpart", None))

    def test_table(self):
        config = loadConfigString(
            BASE + '[auth]\ncheckers = ["pam"]\n[auth.pam]\nservice = "imap"\n'
            'username = "address"\ndomains = ["Other.Test."]\n'
            '[listen.s]\nprotocol = "smtp"\nendpoint = "tcp:25"\ntls = "none"\n'
            'checkers = ["userdb", "pam"]\n',
            "/tmp",
        )
        self.assertEqual(config.auth.pam, schema.PAMConfig("imap", "address", ("other.test",)))
        self.assertEqual(config.listeners[0].checkers, ("userdb", "pam"))

    def test_errors(self):
        e = self.assertRaises(
            ConfigError, loadConfigString,
            BASE + '[auth]\nchecker = 1\n[auth.pam]\nservice = "../shadow"\n'
            'username = "uid"\ndomains = ["alias.test", "nowhere.test", "bad..name"]\n'
            'realm = "x"\n',
            "/tmp",
        )
        self.assertEqual(e.errors, [
            "auth.pam.service: '../shadow' is not a PAM service name",
            "auth.pam.username: expected one of localpart, address, not 'uid'",
            "auth.pam.domains: alias.test is not in domains.local",
            "auth.pam.domains: nowhere.test is not in domains.local",
            "auth.pam.domains: 'bad..name' is not a domain name",
            "auth.pam.realm: unknown key",
            "auth.checker: unknown key",
        ])

    def test_pythonPamMissing(self):
        """
        Without python-pam, choosing the C{pam} checker (for all listeners
        or one) is a config error that names the extra, reported with the
        other errors.
        """
        hideModule(self, None)
        e = self.assertRaises(
            ConfigError, loadConfigString,
            BASE + '[auth]\ncheckers = ["userdb", "pam"]\nfailure_delay = "x"\n'
            '[listen.s]\nprotocol = "smtp"\nendpoint = "tcp:25"\ntls = "none"\n'
            'checkers = ["pam"]\n',
            "/tmp",
        )
        missing = (
            "'pam': the pam checker needs python-pam, which is not installed: "
            "install the pam extra (pip install 'mailplat[pam]')"
        )
        self.assertEqual(e.errors, [
            "auth.failure_delay: expected a duration such as 30s, 5m, 4h or 5d, not 'x'",
            f"auth.checkers: {missing}",
            f"listen.s.checkers: {missing}",
        ])
        self.assertRaises(CheckerSpecError, checkerFor, "pam", None, None, None,
                          loadConfigString(BASE, "/tmp"))

    def test_notPythonPam(self):
        """
        Another distribution's C{pam} module (without python-pam's
        C{PamAuthenticator}) is not taken for python-pam.
        """
        import types

        hideModule(self, types.ModuleType("pam"))
        e = self.assertRaises(pamchecker.PAMUnavailable, loadPAM)
        self.assertEqual(
            str(e),
            "the module 'pam' (?) is not python-pam: install the pam extra "
            "(pip install 'mailplat[pam]')",
        )

    def test_checkerNeedsConfig(self):
        users = UserDatabase(os.path.abspath(self.mktemp()))
        e = self.assertRaises(CheckerSpecError, checkerFor, "pam", users, Clock(),
                              runSynchronously)
        self.assertEqual(str(e), "'pam' needs the config ([auth.pam])")

    def test_badUsernameMode(self):
        self.assertRaises(ValueError, PAMChecker, None, (), runSynchronously,
                          username="uid", authenticatorFactory=object)
