"""
Tests for the outbound tables of the config: C{[dns]}, C{[delivery]},
C{[smarthost]} and the queue's notice settings.
"""

import os

from twisted.trial import unittest

from mailplat.config import ConfigError, loadConfigString
from mailplat.config.schema import DeliveryConfig

MINIMAL = """
hostname = "mail.example.test"
[domains]
local = ["example.test"]
postmaster = "demo@example.test"
"""


class OutboundConfigTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def load(self, text):
        return loadConfigString(MINIMAL + text, self.dir)

    def errors(self, text):
        try:
            self.load(text)
        except ConfigError as e:
            return e.errors
        return []

    def test_defaults(self):
        config = self.load("")
        self.assertEqual(config.delivery.port, 25)
        self.assertEqual(config.delivery.tls, "may")
        self.assertEqual(config.dns.nameservers, ())
        self.assertIsNone(config.smarthost.host)
        self.assertEqual(config.queue.delayWarning, 4 * 3600)
        self.assertEqual(config.queue.maxLifetime, 5 * 86400)

    def test_everything(self):
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write("secret\n")
        config = self.load("""
[queue]
delay_warning = "2h"
[dns]
nameservers = ["127.0.0.1", "::1"]
port = 5353
timeout = "3s"
[delivery]
port = 2525
helo_name = "out.example.test"
tls = "encrypt"
max_per_destination = 3
[delivery.tls_policy]
"bank.example" = "verify"
".gov.example" = "verify"
[smarthost]
host = "relay.example.net"
port = 465
tls = "verify"
domains = ["Slow.Example"]
username = "me"
password_file = "pw"
""")
        self.assertEqual(config.queue.delayWarning, 7200)
        self.assertEqual(config.dns.nameservers, ("127.0.0.1", "::1"))
        self.assertEqual((config.dns.port, config.dns.timeout), (5353, 3.0))
        self.assertEqual(config.delivery.policyFor("BANK.example."), "verify")
        self.assertEqual(config.delivery.policyFor("x.gov.example"), "verify")
        self.assertEqual(config.delivery.policyFor("other.example"), "encrypt")
        self.assertEqual(config.delivery.heloName, "out.example.test")
        self.assertEqual(config.smarthost.domains, ("slow.example",))
        self.assertEqual(config.smarthost.passwordFile, os.path.join(self.dir, "pw"))

    def test_errorsCollected(self):
        self.assertEqual(
            self.errors("""
[dns]
nameservers = ["localhost"]
port = 70000
[delivery]
tls = "sometimes"
max_per_destination = 0
[delivery.tls_policy]
"x.example" = "always"
[smarthost]
port = 25
username = "me"
"""),
            [
                "dns.nameservers: 'localhost' is not an IP address",
                "dns.port: expected a TCP port, 1 to 65535",
                "delivery.tls_policy.x.example: expected one of none, may, encrypt, verify, not 'always'",
                "delivery.tls: expected one of none, may, encrypt, verify, not 'sometimes'",
                "delivery.max_per_destination: must be at least 1",
                "smarthost.host: missing required key (the smarthost's name or address)",
                "smarthost: give both username and password_file, or neither",
            ],
        )

    def test_authNeedsTLS(self):
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write("secret\n")
        self.assertEqual(
            self.errors('[smarthost]\nhost = "[192.0.2.1]"\ntls = "may"\n'
                        'username = "me"\npassword_file = "pw"\n'),
            ['smarthost.tls: AUTH needs TLS: use "encrypt" or "verify"'],
        )

    def test_policyDefault(self):
        self.assertEqual(DeliveryConfig().policyFor("anything.example"), "may")
