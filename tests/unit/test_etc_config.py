"""
The annotated production config parses (with its certificate paths pointed
at a test certificate).
"""

import os

from twisted.trial import unittest

from mailplat.certs import makeSelfSigned
from mailplat.config import loadConfigString
from mailplat.config.schema import PAMConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EtcConfigTests(unittest.TestCase):
    def test_productionConfigIsValid(self):
        with open(os.path.join(REPO, "etc", "mailplat.toml")) as f:
            text = f.read()
        cert, key = makeSelfSigned("mx.example.org", os.path.abspath(self.mktemp()))
        text = text.replace("/etc/mailplat/tls/fullchain.pem", cert).replace(
            "/etc/mailplat/tls/privkey.pem", key
        )
        config = loadConfigString(text, "/etc/mailplat")
        self.assertEqual(
            (config.storage.backend, config.storage.path, config.storage.options),
            ("maildir", "/var/lib/mailplat/mail", {}),
        )
        # The checks it lists build into a pipeline (no file is touched).
        from mailplat.service import MailplatService

        service = MailplatService(config)
        from mailplat.storage.maildir import MaildirStore

        self.assertIsInstance(service.context.store, MaildirStore)
        self.assertEqual(
            [c.name for c in service.context.policy.checks],
            ["connection_limits", "greet_pause", "iprev", "spf", "dkim", "dmarc",
             "dkim_sign", "submission", "recipients", "relay", "mail_loop",
             "authentication_results"],
        )
        self.assertEqual(service.context.sasl.offered(True), ["PLAIN", "LOGIN"])
        self.assertEqual(service.context.sasl.offered(False), [])
        self.assertEqual(
            sorted((l.name, l.endpoint, l.tls, l.profile) for l in config.listeners),
            [
                ("imap", "tcp:143", "starttls", None),
                ("imaps", "tcp:993", "implicit", None),
                ("pop3", "tcp:110", "starttls", None),
                ("pop3s", "tcp:995", "implicit", None),
                ("smtp", "tcp:25", "starttls", "mx"),
                ("submission", "tcp:587", "starttls", "submission"),
                ("submissions", "tcp:465", "implicit", "submissions"),
            ],
        )

    def test_pamExample(self):
        """
        The commented-out PAM example is valid once uncommented.
        """
        with open(os.path.join(REPO, "etc", "mailplat.toml")) as f:
            text = f.read()
        start = text.index("# checkers = [")
        end = text.index("\n\n", start)
        example = "\n".join(line[2:] for line in text[start:end].splitlines())
        text = text[:start] + example + text[end:]
        cert, key = makeSelfSigned("mx.example.org", os.path.abspath(self.mktemp()))
        text = text.replace("/etc/mailplat/tls/fullchain.pem", cert).replace(
            "/etc/mailplat/tls/privkey.pem", key
        )
        config = loadConfigString(text, "/etc/mailplat")
        self.assertEqual(config.auth.checkers, ("userdb", "pam"))
        self.assertEqual(
            config.auth.pam, PAMConfig("mailplat", "localpart", ("example.org",))
        )
