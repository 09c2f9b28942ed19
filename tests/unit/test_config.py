"""
Tests for L{mailplat.config}: every error is reported, together, with its
table and key.
"""

import os

from twisted.trial import unittest

from mailplat.auth.userdb import UserDatabase
from mailplat.certs import makeSelfSigned
from mailplat.config import ConfigError, loadConfig, loadConfigString
from mailplat.config.units import parseDuration, parseSize
from mailplat.testing import cachedHash

MINIMAL = """
hostname = "mail.example.test"
[domains]
local = ["example.test"]
postmaster = "demo@example.test"
"""


class UnitsTests(unittest.TestCase):
    def test_durations(self):
        self.assertEqual(parseDuration("90s"), 90)
        self.assertEqual(parseDuration("5m"), 300)
        self.assertEqual(parseDuration("4h"), 14400)
        self.assertEqual(parseDuration("5d"), 432000)
        self.assertEqual(parseDuration("250ms"), 0.25)
        self.assertEqual(parseDuration(12), 12)
        for bad in ("5 parsecs", "", -1, True, "m"):
            self.assertRaises(ValueError, parseDuration, bad)

    def test_sizes(self):
        self.assertEqual(parseSize("25M"), 25 * 1024 * 1024)
        self.assertEqual(parseSize("512K"), 512 * 1024)
        self.assertEqual(parseSize("1GiB"), 1024**3)
        self.assertEqual(parseSize(100), 100)
        for bad in ("12Q", "-1", True, 1.5):
            self.assertRaises(ValueError, parseSize, bad)


class LoaderTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def errors(self, text):
        e = self.assertRaises(ConfigError, loadConfigString, text, self.dir, "t.toml")
        return e.errors

    def test_minimalDefaults(self):
        config = loadConfigString(MINIMAL, self.dir)
        self.assertEqual(config.hostname, "mail.example.test")
        self.assertEqual(config.localDomains, ("example.test",))
        self.assertEqual(config.storage.path, os.path.join(self.dir, "mail"))
        self.assertEqual(config.queue.path, os.path.join(self.dir, "queue"))
        self.assertEqual(config.auth.usersFile, os.path.join(self.dir, "passwd"))
        self.assertEqual(config.smtp.maxMessageSize, 25 * 1024 * 1024)
        self.assertEqual(config.listeners, ())
        self.assertTrue(config.isLocalDomain("EXAMPLE.test."))

    def test_allErrorsTogether(self):
        errors = self.errors(
            """
hostname = "mail.example.test"
bogus = 1
[domains]
local = ["example.test"]
[tls]
certificate = "missing-cert.pem"
key = "missing-key.pem"
[smtp]
max_message_size = "12Q"
max_recipients = "many"
max_command_line = 100
[queue]
max_lifetime = "forever"
[listen.smtp]
protocol = "smtp"
endpoint = "tcp:abc"
profile = "relay"
colour = "blue"
[listen.imaps]
protocol = "imap"
endpoint = "ssl:993"
tls = "implicit"
profile = "mx"
"""
        )
        path = self.dir
        self.assertEqual(
            errors,
            [
                f"tls.certificate: cannot read {path}/missing-cert.pem: "
                "No such file or directory",
                f"tls.key: cannot read {path}/missing-key.pem: No such file or directory",
                "queue.max_lifetime: expected a duration such as 30s, 5m, 4h or 5d, "
                "not 'forever'",
                "smtp.max_message_size: expected a size such as 25M or 512K, not '12Q'",
                "smtp.max_recipients: expected an integer, got str",
                "smtp.max_command_line: must be at least 512 (RFC 5321 4.5.3.1.4)",
                "listen.smtp.profile: expected one of mx, submission, submissions, "
                "not 'relay'",
                "listen.smtp.endpoint: bad endpoint string 'tcp:abc': invalid literal "
                "for int() with base 10: 'abc'",
                "listen.smtp.colour: unknown key",
                "listen.imaps.endpoint: 'ssl:993': use a tcp:, tcp6: or unix: "
                "endpoint; TLS is set with 'tls'",
                "listen.imaps.profile: only SMTP listeners have a profile",
                "bogus: unknown key",
            ],
        )

    def test_missingRequired(self):
        self.assertEqual(
            self.errors("[listen.x]\nendpoint = 'tcp:25'\n"),
            [
                "hostname: missing required key",
                "domains.local: missing required key",
                "listen.x.protocol: missing required key",
                "listen.x.tls: tls = 'starttls' needs [tls] certificate and key",
            ],
        )

    def test_tlsNeedsCertificate(self):
        self.assertEqual(
            self.errors(MINIMAL + "[listen.imap]\nprotocol='imap'\nendpoint='tcp:143'\n"),
            ["listen.imap.tls: tls = 'starttls' needs [tls] certificate and key"],
        )

    def test_smtpNeedsPostmaster(self):
        self.assertEqual(
            self.errors(
                MINIMAL.replace('postmaster = "demo@example.test"', "")
                + "[listen.smtp]\nprotocol='smtp'\nendpoint='tcp:25'\ntls='none'\n"
            ),
            [
                "domains.postmaster: missing required key: the address that receives "
                "mail for postmaster@ every local domain (RFC 5321 4.5.1)"
            ],
        )

    def test_aliasesAndVirtualDomains(self):
        with open(os.path.join(self.dir, "aliases"), "w") as f:
            f.write("a@example.test: b@example.test\nb@example.test: a@example.test\n")
        errors = self.errors(
            MINIMAL.replace(
                'local = ["example.test"]',
                'local = ["example.test"]\nvirtual = ["example.test", "alias.example"]\n'
                'aliases_file = "aliases"\nrecipient_delimiter = "+-"',
            )
        )
        self.assertEqual(
            errors,
            [
                "domains.virtual: example.test also in domains.local",
                "domains.recipient_delimiter: one character, or empty to disable",
                f"domains.aliases_file: {self.dir}/aliases:1: alias loop: "
                "a@example.test -> b@example.test -> a@example.test",
                f"domains.aliases_file: {self.dir}/aliases:2: alias loop: "
                "b@example.test -> a@example.test -> b@example.test",
            ],
        )

    def test_accessProtocolsNeedTLS(self):
        self.assertEqual(
            self.errors(
                MINIMAL
                + "[listen.pop3]\nprotocol='pop3'\nendpoint='tcp:110'\ntls='none'\n"
                + "[listen.imap]\nprotocol='imap'\nendpoint='tcp:143'\ntls='none'\n"
            ),
            [
                'listen.pop3.tls: POP3 logins are only accepted over TLS: use '
                '"starttls" or "implicit"',
                'listen.imap.tls: IMAP logins are only accepted over TLS: use '
                '"starttls" or "implicit"',
            ],
        )

    def test_submissionsNeedsImplicitTLS(self):
        cert, key = makeSelfSigned("localhost", os.path.join(self.dir, "tls"))
        text = MINIMAL + f"""
[tls]
certificate = "{cert}"
key = "{key}"
[listen.smtps]
protocol = "smtp"
profile = "submissions"
endpoint = "tcp:465"
"""
        self.assertEqual(
            self.errors(text),
            ['listen.smtps.tls: the submissions profile needs tls = "implicit"'],
        )
        config = loadConfigString(text.replace('"tcp:465"', '"tcp:465"\ntls = "implicit"'), self.dir)
        self.assertEqual(config.listeners[0].profile, "submissions")
        self.assertEqual(config.tls.certificate, cert)

    def test_notPEM(self):
        bad = os.path.join(self.dir, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a certificate")
        errors = self.errors(MINIMAL + f'[tls]\ncertificate = "{bad}"\nkey = "{bad}"\n')
        self.assertEqual(len(errors), 2)
        self.assertTrue(errors[0].startswith(f"tls.certificate: {bad} is not a PEM certificate"))
        self.assertTrue(errors[1].startswith(f"tls.key: {bad} is not a PEM private key"))

    def test_userWithUnknownDomain(self):
        users = UserDatabase(os.path.join(self.dir, "passwd"))
        users.setPassword("demo@example.test", cachedHash("demo"))
        users.setPassword("bob@elsewhere.test", cachedHash("demo"))
        self.assertEqual(
            self.errors(MINIMAL),
            [
                f"auth.users_file: {self.dir}/passwd:2: bob@elsewhere.test: domain "
                "elsewhere.test is not in domains.local"
            ],
        )

    def test_badUserFile(self):
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("no-colon-here\nx@example.test:plaintext\n")
        self.assertEqual(
            self.errors(MINIMAL),
            [
                f"auth.users_file: {self.dir}/passwd:1: expected address:{{SCHEME}}hash",
                f"auth.users_file: {self.dir}/passwd:2: x@example.test: unsupported "
                "password scheme",
            ],
        )

    def test_tomlSyntax(self):
        errors = self.errors("hostname = \n")
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("TOML syntax: "))

    def test_loadConfigFileAndDescribe(self):
        path = os.path.join(self.dir, "m.toml")
        with open(path, "w") as f:
            f.write("hostname = 3\n")
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(
            e.describe(),
            f"{path}: 2 configuration error(s):\n"
            "  - hostname: expected a string, got int\n"
            "  - domains.local: missing required key",
        )
        e = self.assertRaises(ConfigError, loadConfig, path + ".missing")
        self.assertEqual(
            e.errors, ["cannot read the config file: No such file or directory"]
        )


class AccessKeysTests(unittest.TestCase):
    """
    The keys of the mail access issue: the storage quota and the per-user
    IMAP connection limit.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_defaults(self):
        config = loadConfigString(MINIMAL, self.dir)
        self.assertEqual(config.storage.quota, 0)
        self.assertEqual(config.access.maxConnectionsPerUser, 20)

    def test_values(self):
        config = loadConfigString(
            MINIMAL + '[storage]\nquota = "1G"\n[access]\nmax_connections_per_user = 3\n',
            self.dir,
        )
        self.assertEqual(config.storage.quota, 1024**3)
        self.assertEqual(config.access.maxConnectionsPerUser, 3)

    def test_errors(self):
        e = self.assertRaises(
            ConfigError, loadConfigString,
            MINIMAL + '[storage]\nquota = "lots"\n[access]\nmax_connections_per_user = -1\n',
            self.dir, "t.toml",
        )
        self.assertEqual(e.errors, [
            "storage.quota: expected a size such as 25M or 512K, not 'lots'",
            "access.max_connections_per_user: must not be negative",
        ])
