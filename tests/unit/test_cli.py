"""
Tests for the C{mailplat} admin command.
"""

import io
import os

from twisted.trial import unittest

from mailplat.auth.passwords import verifyPassword
from mailplat.auth.userdb import UserDatabase
from mailplat.cli.main import main
from mailplat.config import loadConfig
from mailplat.demo import ensureDemo


class FakeStdin(io.StringIO):
    def isatty(self):
        return False


class CLITests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.config = ensureDemo(self.dir)
        self.passwd = os.path.join(self.dir, "passwd")

    def cli(self, *argv, stdin=""):
        out = io.StringIO()
        err = io.StringIO()
        self.patch(__import__("sys"), "stderr", err)
        code = main(["--config", self.config, *argv], out=out, stdin=FakeStdin(stdin))
        return code, out.getvalue(), err.getvalue()

    def test_userLifecycle(self):
        self.assertEqual(
            self.cli("user", "add", "Alice@Example.TEST", stdin="s3cret\n"),
            (0, "added alice@example.test\n", ""),
        )
        entry = UserDatabase(self.passwd).get("alice@example.test")
        self.assertTrue(verifyPassword(entry.passwordHash, "s3cret"))
        self.assertTrue(entry.passwordHash.startswith("{ARGON2ID}$argon2id$"))
        self.assertNotIn("s3cret", open(self.passwd).read())
        self.assertEqual(os.stat(self.passwd).st_mode & 0o777, 0o600)
        self.assertEqual(
            self.cli("user", "add", "alice@example.test", stdin="x\n"),
            (1, "", "mailplat: alice@example.test already exists\n"),
        )
        self.assertEqual(
            self.cli("user", "list"),
            (0, "alice@example.test\ndemo@example.test\n", ""),
        )
        self.assertEqual(
            self.cli("user", "passwd", "alice@example.test", stdin="new\n"),
            (0, "changed the password of alice@example.test\n", ""),
        )
        entry = UserDatabase(self.passwd).get("alice@example.test")
        self.assertTrue(verifyPassword(entry.passwordHash, "new"))
        self.assertEqual(
            self.cli("user", "del", "alice@example.test"),
            (0, "deleted alice@example.test (their mail is kept)\n", ""),
        )
        self.assertEqual(
            self.cli("user", "del", "alice@example.test"),
            (1, "", "mailplat: no such user: alice@example.test\n"),
        )
        # The config still validates with the file the command wrote.
        loadConfig(self.config)

    def test_userErrors(self):
        self.assertEqual(
            self.cli("user", "add", "bob@elsewhere.test", stdin="pw\n"),
            (1, "", "mailplat: elsewhere.test is not a local domain "
             "(domains.local: example.test)\n"),
        )
        self.assertEqual(
            self.cli("user", "add", "no-at-sign", stdin="pw\n"),
            (1, "", "mailplat: 'no-at-sign' is not an address\n"),
        )
        self.assertEqual(
            self.cli("user", "add", "bob@example.test", stdin="\n"),
            (1, "", "mailplat: empty password\n"),
        )
        self.assertEqual(
            self.cli("user", "passwd", "ghost@example.test", stdin="pw\n"),
            (1, "", "mailplat: no such user: ghost@example.test\n"),
        )

    def test_configCheck(self):
        code, out, err = self.cli("config", "check")
        self.assertEqual(
            (code, out, err),
            (0, f"{self.config}: ok (7 listeners, domains: example.test)\n", ""),
        )
        with open(self.config, "a") as f:
            f.write("\nbogus = 1\n")
        code, out, err = self.cli("config", "check")
        self.assertEqual(code, 1)
        self.assertEqual(
            err,
            f"mailplat: {self.config}: 1 configuration error(s):\n"
            "  - listen.imaps.bogus: unknown key\n",
        )

    def test_certSelfSigned(self):
        out = os.path.join(self.dir, "newcert")
        code, text, err = self.cli("cert", "selfsigned", "--hostname", "mx.example.org", "--out", out)
        self.assertEqual(code, 0)
        from cryptography import x509

        with open(os.path.join(out, "cert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(
            cert.subject.rfc4514_string(), "CN=mx.example.org"
        )
        self.assertEqual(os.stat(os.path.join(out, "key.pem")).st_mode & 0o777, 0o600)

    def test_demoIsIdempotent(self):
        before = open(self.passwd).read()
        out = io.StringIO()
        self.assertEqual(main(["demo", "--dir", self.dir], out=out), 0)
        self.assertEqual(out.getvalue(), f"demo config: {self.config}\n")
        self.assertEqual(open(self.passwd).read(), before)
