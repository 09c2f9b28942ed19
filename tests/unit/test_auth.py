"""
Authentication: password schemes (with hashes made by Dovecot's doveadm),
the password file in Dovecot's passwd-file format, the SQLite user table,
and checkers chained from the config.
"""

import io
import os

from twisted.cred import credentials, error
from twisted.internet.task import Clock
from twisted.trial import unittest

from mailplat.auth.checkers import ChainedChecker, CheckerSpecError, checkerFor
from mailplat.auth.passwords import hashPassword, verifyPassword
from mailplat.auth.schemes import UnknownScheme, splitScheme
from mailplat.auth.sqlitedb import SQLiteUserDatabase
from mailplat.auth.userdb import UserDatabase, parseUserFile
from mailplat.cli.main import main
from mailplat.config import ConfigError, loadConfigString
from mailplat.interfaces import IMailUser
from mailplat.testing import cachedHash, makeContext, runSynchronously

# Made with `doveadm pw -s SCHEME -p 's3cret pass'` (Dovecot 2.3, Debian 12).
DOVECOT = {
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$OUY/tn33k19msXzU$auSWc5nHHsziB1AwLyVdb7b1AqLc/"
    "ZjUse3LumFIuYA48AzFTnU/o/Ljl058h/Tvuqfd44m7ppEMCc.ssEAr91",
    "SHA256-CRYPT": "{SHA256-CRYPT}$5$2u6ICDZ9gjHIU4xq$aMRDQDFG19muhNCBL8NQ.2BJqUd2HF"
    "bc5.Icdg8Wu40",
    "BLF-CRYPT": "{BLF-CRYPT}$2y$05$/UFj5vp9BeSD5O/7f8kjmuo5e1fARigMPw8xzsN.EoTt2I1pAkjqq",
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$XrSGrbEk1qW/gKQ7atbNlQ$XLWpAQ"
    "L6b8ap7deRDpAFNGDFcGSDrawpa9gexFgMGfo",
}


class SchemeTests(unittest.TestCase):
    def test_dovecotHashes(self):
        for scheme, stored in DOVECOT.items():
            self.assertEqual(splitScheme(stored)[0], scheme)
            self.assertTrue(verifyPassword(stored, "s3cret pass"), scheme)
            self.assertFalse(verifyPassword(stored, "s3cret pasS"), scheme)
            self.assertFalse(verifyPassword(stored, ""), scheme)

    def test_written(self):
        for scheme in ("ARGON2ID", "BLF-CRYPT"):
            stored = hashPassword("pw", scheme)
            self.assertTrue(stored.startswith("{" + scheme + "}$"))
            self.assertTrue(verifyPassword(stored, "pw"))
        self.assertRaises(UnknownScheme, hashPassword, "pw", "PLAIN")

    def test_refused(self):
        for stored in ("{PLAIN}s3cret pass", "s3cret pass", "{MD5}x", "{SHA512-CRYPT}$5$x$y",
                       "{BLF-CRYPT}garbage", "{ARGON2ID}$argon2id$garbage"):
            self.assertFalse(verifyPassword(stored, "s3cret pass"), stored)
        self.assertRaises(UnknownScheme, splitScheme, "{PLAIN}x")


class PasswdFileTests(unittest.TestCase):
    def test_dovecotPasswdFileFormat(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "# migrated from Dovecot\n"
                f"alice@example.test:{DOVECOT['SHA512-CRYPT']}:1000:1000::/home/alice::\n"
                f"bob@example.test:{DOVECOT['BLF-CRYPT']}::::::userdb_quota_rule=*:storage=1G\n"
                f"Carol@Example.test:{DOVECOT['ARGON2ID']}\n"
            )
        users = parseUserFile(path)
        self.assertEqual(sorted(users), ["alice@example.test", "bob@example.test", "carol@example.test"])
        for entry in users.values():
            self.assertTrue(verifyPassword(entry.passwordHash, "s3cret pass"))


class SQLiteTests(unittest.TestCase):
    def test_database(self):
        db = SQLiteUserDatabase(os.path.abspath(self.mktemp()))
        self.assertEqual(db.users(), {})
        self.assertIsNone(db.get("a@example.test"))
        db.setPassword("A@example.test", DOVECOT["SHA512-CRYPT"])
        self.assertEqual(os.stat(db.path).st_mode & 0o777, 0o600)
        self.assertTrue(db.exists("a@EXAMPLE.test"))
        self.assertRaises(ValueError, db.setPassword, "a@example.test", "x", replace=False)
        self.assertRaises(KeyError, db.setPassword, "b@example.test", "x", create=False)
        self.assertEqual(list(db.users()), ["a@example.test"])
        db.delete("a@example.test")
        self.assertRaises(KeyError, db.delete, "a@example.test")

    def test_cliAndLogin(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = os.path.join(directory, "m.toml")
        with open(config, "w") as f:
            f.write('hostname = "mail.example.test"\n[domains]\nlocal = ["example.test"]\n'
                    '[auth]\nsqlite = "users.sqlite"\nfailure_delay = 0\n')

        class Stdin(io.StringIO):
            def isatty(self):
                return False

        out = io.StringIO()
        self.assertEqual(main(["--config", config, "user", "add", "zoe@example.test"],
                              out=out, stdin=Stdin("pw\n")), 0)
        self.assertEqual(out.getvalue(), "added zoe@example.test\n")
        self.assertFalse(os.path.exists(os.path.join(directory, "passwd")))
        ctx = makeContext(directory, users=(), overrides={"auth": {"sqlite": "users.sqlite", "failure_delay": 0}})
        result = self.successResultOf(ctx.portal.login(
            credentials.UsernamePassword(b"Zoe@example.test", b"pw"), None, IMailUser))
        self.assertEqual(result[1].address, "zoe@example.test")
        self.failureResultOf(ctx.portal.login(
            credentials.UsernamePassword(b"zoe@example.test", b"nope"), None, IMailUser),
            error.UnauthorizedLogin)


class ChainTests(unittest.TestCase):
    def test_userdbThenStrcredFile(self):
        """
        C{userdb} first, then a twisted.cred.strcred C{file:} checker (the
        same strings twistd's --auth takes); a failure waits the same delay
        whichever checker refused.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        legacy = os.path.join(directory, "legacy.passwd")
        with open(legacy, "w") as f:
            f.write("old@example.test:oldpass\n")
        users = UserDatabase(os.path.join(directory, "passwd"))
        users.setPassword("demo@example.test", cachedHash("demo"))
        clock = Clock()
        chain = ChainedChecker(
            [checkerFor("userdb", users, clock, runSynchronously),
             checkerFor(f"file:{legacy}", users, clock, runSynchronously)],
            clock, 2.0,
        )
        for user, password, expected in [
            (b"demo@example.test", b"demo", "demo@example.test"),
            (b"OLD@example.test", b"oldpass", None),  # file: is case-sensitive
            (b"old@example.test", b"oldpass", "old@example.test"),
        ]:
            d = chain.requestAvatarId(credentials.UsernamePassword(user, password))
            if expected is None:
                self.assertNoResult(d)
                clock.advance(2.0)
                self.failureResultOf(d, error.UnauthorizedLogin)
            else:
                self.assertEqual(self.successResultOf(d), expected)
        d = chain.requestAvatarId(credentials.UsernamePassword(b"demo@example.test", b"x"))
        self.assertNoResult(d)
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.failureResultOf(d, error.UnauthorizedLogin)

    def test_badSpecs(self):
        self.assertRaises(CheckerSpecError, checkerFor, "nonesuch:x", None, None, None)
        self.assertRaises(CheckerSpecError, checkerFor, "anonymous", None, None, None)

    def test_configValidation(self):
        base = (
            'hostname = "m.example.test"\n[domains]\nlocal = ["example.test"]\n'
            'postmaster = "a@example.test"\n'
        )
        e = self.assertRaises(
            ConfigError, loadConfigString,
            base + '[auth]\nchecker = 1\ncheckers = ["userdb", "ldap:x"]\nsqlite = "u.db"\n'
            'users_file = "p"\n',
            "/tmp",
        )
        # The list of strcred types depends on the plugins installed.
        first, known = e.errors[0].split("(userdb, pam, or one of: ")
        self.assertEqual(first, "auth.checkers: unknown checker 'ldap:x' ")
        self.assertTrue({"file", "memory", "unix"} <= set(known.rstrip(")").split(", ")))
        self.assertEqual(e.errors[1:], [
            "auth.sqlite: give users_file or sqlite, not both",
            "auth.checker: unknown key",
        ])
        config = loadConfigString(
            base + '[auth]\ncheckers = ["userdb", "file:/etc/x"]\n'
            '[listen.s]\nprotocol = "smtp"\nendpoint = "tcp:25"\ntls = "none"\n'
            'checkers = ["file:/etc/y"]\n',
            "/tmp",
        )
        self.assertEqual(config.auth.checkers, ("userdb", "file:/etc/x"))
        self.assertEqual(config.listeners[0].checkers, ("file:/etc/y",))


class ListenerCheckerTests(unittest.TestCase):
    def test_perListenerPortal(self):
        """
        A listener with its own C{checkers} gets its own portal; the others
        use C{[auth] checkers}.
        """
        from mailplat.certs import makeSelfSigned
        from mailplat.service import MailplatService

        directory = os.path.abspath(self.mktemp())
        cert, key = makeSelfSigned("localhost", os.path.join(directory, "tls"))
        legacy = os.path.join(directory, "legacy")
        with open(legacy, "w") as f:
            f.write("old@example.test:oldpass\n")
        UserDatabase(os.path.join(directory, "passwd")).setPassword(
            "demo@example.test", cachedHash("demo"))
        service = MailplatService.fromTOML(
            f'hostname = "m.example.test"\n[domains]\nlocal = ["example.test"]\n'
            f'postmaster = "demo@example.test"\n[auth]\nfailure_delay = 0\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
            f'[listen.a]\nprotocol = "smtp"\nendpoint = "tcp:0"\n'
            f'[listen.b]\nprotocol = "smtp"\nendpoint = "tcp:0"\n'
            f'checkers = ["file:{legacy}", "userdb"]\n',
            directory,
        )

        def login(name, user, password):
            factory = service.listeners[name].makeFactory()
            return factory.context.portal.login(
                credentials.UsernamePassword(user, password), None, IMailUser)

        # Listener b: the file checker knows the user.
        result = self.successResultOf(login("b", b"old@example.test", b"oldpass"))
        self.assertEqual(result[1].address, "old@example.test")
        # Listener a: only the user database, which does not (it verifies in
        # the reactor's thread pool, so this one is asynchronous).
        d = login("a", b"old@example.test", b"oldpass")
        return self.assertFailure(d, error.UnauthorizedLogin)
