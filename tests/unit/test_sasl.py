"""
The SASL mechanisms of L{mailplat.auth.sasl}: the built-in PLAIN and LOGIN,
the registry and its plugins, the config keys, and the same mechanism
objects driven by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH.
"""

import base64
import hashlib
import json
import os

import twisted.plugins
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.plugin import getPlugins
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailplat.auth.checkers import ChainedChecker
from mailplat.auth.realm import MailRealm
from mailplat.auth.sasl import (
    BUILTINS,
    LOGIN,
    PLAIN,
    SASLMechanisms,
    buildRegistry,
    decodeResponse,
    encodeChallenge,
    findMechanisms,
)
from mailplat.config import ConfigError, ListenerConfig, loadConfigString
from mailplat.imap import IMAPFactory
from mailplat.interfaces import (
    IMailUser,
    ISASLMechanism,
    ISASLMechanismFactory,
    SASLAuthorizationRefused,
    SASLBadEncoding,
    SASLCancelled,
    SASLMalformedResponse,
)
from mailplat.policy.registry import PolicyError
from mailplat.pop3 import POP3Factory
from mailplat.smtp.server import SMTPFactory
from mailplat.testing import makeContext
from tests.tlsfakes import ImplicitTLSTransport, StartTLSTransport

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "docs", "examples", "plugins")
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
USER = b"demo@example.test"

BASE = (
    'hostname = "m.example.test"\n[domains]\nlocal = ["example.test"]\n'
    'postmaster = "a@example.test"\n'
)


def b64(data):
    return base64.b64encode(data)


def plain(authzid, authcid, password):
    return b64(authzid + b"\0" + authcid + b"\0" + password)


# -- fakes


@implementer(ISASLMechanism)
class EchoMechanism:
    """
    A two-challenge mechanism for tests: asks C{who?}, then C{secret?}.
    """

    def __init__(self):
        self.user = None

    def respond(self, response):
        if response is None and self.user is None:
            return b"who?"
        if self.user is None:
            self.user = response
            return b"secret?"
        if response == b"bad":
            raise SASLMalformedResponse("bad")
        return credentials.UsernamePassword(self.user, response)


@implementer(ISASLMechanismFactory)
class EchoFactory:
    """
    A test mechanism that claims to reveal no secret, so it is offered
    before TLS.
    """

    name = "X-ECHO"
    cleartext = False

    def makeMechanism(self, protocol, hostname):
        return EchoMechanism()


class IKey(credentials.ICredentials):
    """
    Credentials of a test mechanism that are not a username and password.
    """


@implementer(IKey)
class KeyCredentials:
    def __init__(self, username, key):
        self.username = username
        self.key = key


@implementer(ICredentialsChecker)
class RecordingChecker:
    def __init__(self, interfaces, accept):
        self.credentialInterfaces = interfaces
        self.accept = accept
        self.seen = []

    def requestAvatarId(self, creds):
        self.seen.append(creds)
        if self.accept(creds):
            return defer.succeed(creds.username)
        return defer.fail(error.UnauthorizedLogin())


def loadExample(testCase):
    """
    Put docs/examples/plugins on the plugin path for the rest of the test,
    as a plugin author installs it, and find the example mechanism the way
    mailplat does.
    """
    path = os.path.join(EXAMPLES, "twisted", "plugins")
    twisted.plugins.__path__.append(path)
    testCase.addCleanup(twisted.plugins.__path__.remove, path)
    found = [p for p in getPlugins(ISASLMechanismFactory) if p.name == "XOAUTH2"]
    testCase.assertEqual(len(found), 1, found)
    return found[0]


# -- sessions of the three protocols over fake transports


class SMTPSession:
    """
    One session on a fake transport: C{factory} and C{listener} say which
    protocol.
    """

    factory = SMTPFactory
    listener = ListenerConfig("s", "smtp", "tcp:0", tls="starttls", profile="submission")

    def __init__(self, ctx, transport):
        self.proto = self.factory(ctx, self.listener).buildProtocol(PEER)
        self.transport = transport
        self.proto.makeConnection(transport)
        transport.clear()

    def send(self, line):
        self.transport.clear()
        self.proto.dataReceived(line + b"\r\n")
        value = self.transport.value()
        self.transport.clear()
        return value


class IMAPSession(SMTPSession):
    factory = IMAPFactory
    listener = ListenerConfig("i", "imap", "tcp:0", tls="starttls")


class POP3Session(SMTPSession):
    factory = POP3Factory
    listener = ListenerConfig("p", "pop3", "tcp:0", tls="starttls")


# -- the parts


class FramingTests(unittest.TestCase):
    def test_decodeResponse(self):
        self.assertEqual(decodeResponse(b64(b"\0u\0p")), b"\0u\0p")
        self.assertEqual(decodeResponse(b"="), b"")
        self.assertEqual(decodeResponse(b""), b"")
        self.assertRaises(SASLCancelled, decodeResponse, b"*")
        self.assertRaises(SASLBadEncoding, decodeResponse, b"!!!")
        self.assertRaises(SASLBadEncoding, decodeResponse, b"abc")

    def test_encodeChallenge(self):
        self.assertEqual(encodeChallenge(b""), b"")
        self.assertEqual(encodeChallenge(b"Username:"), b"VXNlcm5hbWU6")


class BuiltinTests(unittest.TestCase):
    def test_interfaces(self):
        self.assertEqual([f.name for f in BUILTINS], ["PLAIN", "LOGIN"])
        for factory in BUILTINS:
            verifyObject(ISASLMechanismFactory, factory)
            self.assertIs(factory.cleartext, True)
            verifyObject(ISASLMechanism, factory.makeMechanism("smtp", "h"))

    def test_plain(self):
        m = PLAIN.makeMechanism("imap", "h")
        self.assertEqual(m.respond(None), b"")
        creds = m.respond(b"\0demo@example.test\0pw")
        self.assertIsInstance(creds, credentials.UsernamePassword)
        self.assertEqual((creds.username, creds.password), (USER, b"pw"))

    def test_plainAuthzid(self):
        """
        An authorization identity naming the user itself (in any case) is
        accepted; any other is refused: there is no proxy authorization.
        """
        creds = PLAIN.makeMechanism("imap", "h").respond(b"Demo@Example.test\0demo@example.test\0pw")
        self.assertEqual(creds.username, USER)
        e = self.assertRaises(
            SASLAuthorizationRefused,
            PLAIN.makeMechanism("imap", "h").respond,
            b"admin@example.test\0demo@example.test\0pw",
        )
        self.assertEqual((e.authcid, e.authzid), (USER, b"admin@example.test"))

    def test_plainMalformed(self):
        for response in (b"", b"u\0p", b"a\0u\0p\0x", b"a\0\0p", b"\0\0p"):
            self.assertRaises(
                SASLMalformedResponse, PLAIN.makeMechanism("smtp", "h").respond, response
            )

    def test_login(self):
        m = LOGIN.makeMechanism("pop3", "h")
        self.assertEqual(m.respond(None), b"Username:")
        self.assertEqual(m.respond(USER), b"Password:")
        creds = m.respond(b"pw")
        self.assertEqual((creds.username, creds.password), (USER, b"pw"))

    def test_loginInitialResponse(self):
        m = LOGIN.makeMechanism("smtp", "h")
        self.assertEqual(m.respond(USER), b"Password:")
        self.assertEqual(m.respond(b"").password, b"")


class OfferTests(unittest.TestCase):
    def test_offeredByConnection(self):
        mechanisms = SASLMechanisms([PLAIN, EchoFactory(), LOGIN])
        self.assertEqual(mechanisms.offered(True), ["PLAIN", "X-ECHO", "LOGIN"])
        self.assertEqual(mechanisms.offered(False), ["X-ECHO"])
        self.assertIs(mechanisms.get(b"plain"), PLAIN)
        self.assertIs(mechanisms.get("x-echo").name, "X-ECHO")
        self.assertIsNone(mechanisms.get("CRAM-MD5"))
        self.assertIsNone(mechanisms.get(b""))
        self.assertFalse(mechanisms.allows(PLAIN, False))
        self.assertTrue(mechanisms.allows(PLAIN, True))


class RegistryTests(unittest.TestCase):
    def config(self, text=""):
        return loadConfigString(BASE + text, "/tmp")

    def test_pluginAdded(self):
        echo = EchoFactory()
        factories, problems, failures = findMechanisms([echo])
        self.assertEqual(factories, {"PLAIN": PLAIN, "LOGIN": LOGIN, "X-ECHO": echo})
        self.assertEqual((problems, failures), ([], []))

    def test_brokenPlugins(self):
        """
        Every broken plugin is a problem naming its module: a taken name,
        a bad name, a missing method, a cleartext that is not a bool.
        """
        class Taken(EchoFactory):
            name = "PLAIN"

        class Twin(EchoFactory):
            pass

        class BadName(EchoFactory):
            name = "lower case"

        @implementer(ISASLMechanismFactory)
        class NoMethod:
            name = "X-NOMETHOD"
            cleartext = False

        class Vague(EchoFactory):
            name = "X-VAGUE"
            cleartext = "yes"

        _, problems, _ = findMechanisms(
            [EchoFactory(), Taken(), Twin(), BadName(), NoMethod(), Vague()]
        )
        self.assertEqual(problems[0], f"SASL mechanism plugin {__name__}: the "
                         "name 'PLAIN' is taken by mailplat.auth.sasl")
        self.assertEqual(problems[1], f"SASL mechanism plugin {__name__}: the "
                         f"name 'X-ECHO' is taken by {__name__}")
        self.assertEqual(problems[2], f"SASL mechanism plugin {__name__}: bad "
                         "name 'lower case' (RFC 4422 3.1: 1 to 20 of A-Z 0-9 - _)")
        self.assertTrue(problems[3].startswith(
            f"SASL mechanism plugin {__name__}: it does not provide "
            "ISASLMechanismFactory: "), problems[3])
        self.assertIn("makeMechanism", problems[3])
        self.assertEqual(problems[4], f"SASL mechanism plugin {__name__}: "
                         "cleartext must be True or False")
        self.assertEqual(len(problems), 5)

    def test_buildRegistryStopsOnProblems(self):
        class Taken(EchoFactory):
            name = "LOGIN"

        e = self.assertRaises(PolicyError, buildRegistry, self.config(), [Taken()])
        self.assertEqual(e.problems, [
            f"SASL mechanism plugin {__name__}: the name 'LOGIN' is taken by "
            "mailplat.auth.sasl",
        ])

    def test_wrongMechanismInterface(self):
        """
        A factory whose mechanisms do not provide L{ISASLMechanism} stops
        start-up when it is configured.
        """
        class Wrong(EchoFactory):
            name = "X-WRONG"

            def makeMechanism(self, protocol, hostname):
                return object()

        config = self.config()
        import dataclasses

        config = dataclasses.replace(
            config, auth=dataclasses.replace(config.auth, mechanisms=("X-WRONG",))
        )
        e = self.assertRaises(PolicyError, buildRegistry, config, [Wrong()])
        self.assertEqual(e.problems, [
            f"SASL mechanism X-WRONG ({__name__}): makeMechanism returned an "
            "object that does not provide ISASLMechanism",
        ])
        # Not configured: nobody calls it.
        self.assertEqual(
            buildRegistry(self.config(), [Wrong()]).select(["PLAIN"]).offered(True),
            ["PLAIN"],
        )

    def test_unknownNameInBuiltConfig(self):
        """
        A config built in code (not loaded) is checked too.
        """
        import dataclasses

        config = self.config()
        config = dataclasses.replace(
            config,
            listeners=(ListenerConfig("sub", "smtp", "tcp:0", mechanisms=("X-NONE",)),),
        )
        e = self.assertRaises(PolicyError, buildRegistry, config, [])
        self.assertEqual(e.problems, [
            "listen.sub.mechanisms: unknown SASL mechanism 'X-NONE' (known: LOGIN, PLAIN)",
        ])

    def test_ourBrokenPluginModuleStopsStartup(self):
        directory = os.path.abspath(self.mktemp())
        plugins = os.path.join(directory, "twisted", "plugins")
        os.makedirs(plugins)
        path = os.path.join(plugins, "mailplat_broken_sasl.py")
        with open(path, "w") as f:
            f.write("import nonexistent_sasl_module\n")
        twisted.plugins.__path__.append(plugins)
        self.addCleanup(twisted.plugins.__path__.remove, plugins)
        e = self.assertRaises(PolicyError, buildRegistry, self.config())
        self.assertEqual(e.problems, [
            f"plugin {path} failed to load: ModuleNotFoundError: No module named "
            "'nonexistent_sasl_module'",
        ])
        self.flushLoggedErrors(ModuleNotFoundError)


class ConfigTests(unittest.TestCase):
    def test_default(self):
        config = loadConfigString(BASE, "/tmp")
        self.assertEqual(config.auth.mechanisms, ("PLAIN", "LOGIN"))

    def test_namesAndListeners(self):
        config = loadConfigString(
            BASE + '[auth]\nmechanisms = ["login", "Plain"]\n'
            '[listen.s]\nprotocol = "smtp"\nendpoint = "tcp:25"\ntls = "none"\n'
            'mechanisms = ["PLAIN"]\n'
            '[listen.t]\nprotocol = "smtp"\nendpoint = "tcp:26"\ntls = "none"\n',
            "/tmp",
        )
        self.assertEqual(config.auth.mechanisms, ("LOGIN", "PLAIN"))
        self.assertEqual(config.listeners[0].mechanisms, ("PLAIN",))
        self.assertIsNone(config.listeners[1].mechanisms)

    def test_errorsCollected(self):
        """
        Unknown names are reported with the other config errors.
        """
        e = self.assertRaises(
            ConfigError, loadConfigString,
            BASE + '[auth]\nmechanisms = ["PLAIN", "X-NONESUCH"]\nfailure_delay = "x"\n'
            '[listen.s]\nprotocol = "smtp"\nendpoint = "tcp:25"\ntls = "none"\n'
            'mechanisms = []\n'
            '[listen.t]\nprotocol = "smtp"\nendpoint = "tcp:26"\ntls = "none"\n'
            'mechanisms = ["PLAIN", "plain"]\n'
            '[listen.u]\nprotocol = "smtp"\nendpoint = "tcp:27"\ntls = "none"\n'
            'mechanisms = "PLAIN"\n',
            "/tmp",
        )
        self.assertEqual(len(e.errors), 5, e.errors)
        self.assertTrue(e.errors[0].startswith("auth.failure_delay: "), e.errors[0])
        # Which plugins are known depends on what is installed.
        self.assertTrue(e.errors[1].startswith(
            "auth.mechanisms: unknown SASL mechanism 'X-NONESUCH' (known: "), e.errors[1])
        self.assertIn("LOGIN, PLAIN", e.errors[1])
        self.assertEqual(e.errors[2:], [
            "listen.s.mechanisms: list at least one mechanism",
            "listen.t.mechanisms: 'PLAIN' is listed twice",
            "listen.u.mechanisms: expected a list of strings",
        ])

    def test_perListenerOffer(self):
        """
        The service gives a listener with its own C{mechanisms} its own
        offer; the others offer C{[auth] mechanisms}.
        """
        from mailplat.certs import makeSelfSigned
        from mailplat.service import MailplatService

        directory = os.path.abspath(self.mktemp())
        cert, key = makeSelfSigned("localhost", os.path.join(directory, "tls"))
        service = MailplatService.fromTOML(
            BASE + '[auth]\nmechanisms = ["LOGIN", "PLAIN"]\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
            '[listen.a]\nprotocol = "imap"\nendpoint = "tcp:0"\n'
            '[listen.b]\nprotocol = "smtp"\nendpoint = "tcp:0"\nmechanisms = ["PLAIN"]\n',
            directory,
        )
        offer = {
            name: service.listeners[name].makeFactory().context.sasl.offered(True)
            for name in ("a", "b")
        }
        self.assertEqual(offer, {"a": ["LOGIN", "PLAIN"], "b": ["PLAIN"]})


class ChainTests(unittest.TestCase):
    def test_credentialsGoToCheckersOfTheirInterface(self):
        """
        Credentials a plugin mechanism makes reach only the checkers that
        handle their interface; the portal takes them through the chain.
        """
        passwords = RecordingChecker(
            (credentials.IUsernamePassword,), lambda c: c.password == b"pw")
        keys = RecordingChecker((IKey,), lambda c: c.key == b"k")
        chain = ChainedChecker([passwords, keys], None, 0)
        self.assertEqual(chain.credentialInterfaces, (credentials.IUsernamePassword, IKey))
        portal = Portal(MailRealm(None), [chain])
        key = KeyCredentials(USER, b"k")
        _, avatar, _ = self.successResultOf(portal.login(key, None, IMailUser))
        self.assertEqual(avatar.address, "demo@example.test")
        self.assertEqual((passwords.seen, keys.seen), ([], [key]))
        pw = credentials.UsernamePassword(USER, b"pw")
        self.successResultOf(portal.login(pw, None, IMailUser))
        self.assertEqual((passwords.seen, keys.seen), ([pw], [key]))
        self.failureResultOf(
            portal.login(KeyCredentials(USER, b"no"), None, IMailUser),
            error.UnauthorizedLogin,
        )


# -- the protocols


class LoginOverAllProtocolsTests(unittest.TestCase):
    """
    LOGIN, now offered by IMAP and POP3 too, and the framing errors on its
    second step, with each protocol's replies.
    """

    def setUp(self):
        self.ctx = makeContext(self.mktemp(), tlsOptions=object())

    def test_smtp(self):
        s = SMTPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        s.send(b"EHLO c")
        self.assertEqual(s.send(b"AUTH login " + b64(USER)), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b"*"), b"501 5.7.0 Authentication aborted\r\n")
        s.send(b"AUTH LOGIN")
        s.send(b64(USER))
        self.assertEqual(s.send(b"!!"), b"501 5.5.2 Cannot decode response\r\n")
        s.send(b"AUTH LOGIN")
        s.send(b64(USER))
        self.assertEqual(s.send(b"x" * 3000), b"500 5.5.2 Error: line too long\r\n")
        self.assertEqual(s.send(b"NOOP"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(s.send(b"AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(s.send(b64(USER)), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"235 2.7.0 Authentication successful\r\n")

    def test_smtpAuthzidRefusedLikeAWrongPassword(self):
        s = SMTPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        s.send(b"EHLO c")
        self.assertEqual(
            s.send(b"AUTH PLAIN " + plain(b"admin@example.test", USER, b"demo")),
            b"535 5.7.8 Error: authentication failed\r\n",
        )
        self.assertIsNone(s.proto.authenticated)
        # It counts as a failure for the throttle.
        self.assertEqual(
            self.ctx.authThrottle.delay(PEER.host), self.ctx.config.auth.failureDelay
        )

    def test_imap(self):
        s = IMAPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertEqual(s.send(b"a AUTHENTICATE LOGIN"), b"+ VXNlcm5hbWU6\r\n")
        self.assertEqual(s.send(b64(USER)), b"+ UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b"*"), b"a BAD AUTHENTICATE cancelled\r\n")
        s.send(b"b AUTHENTICATE LOGIN")
        s.send(b64(USER))
        self.assertEqual(s.send(b"!!"), b"b BAD Invalid base64 data\r\n")
        self.assertEqual(s.send(b"c AUTHENTICATE LOGIN " + b64(USER)), b"+ UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"c OK AUTHENTICATE completed\r\n")
        self.assertEqual(s.proto.state, "auth")

    def test_imapOverlongResponse(self):
        s = IMAPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        s.send(b"a AUTHENTICATE LOGIN")
        s.send(b64(USER))
        limit = self.ctx.config.access.maxLineLength
        self.assertEqual(s.send(b"x" * (limit + 10)), b"* BYE Command line too long\r\n")
        self.assertTrue(s.transport.disconnecting)

    def test_pop3(self):
        s = POP3Session(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertEqual(s.send(b"AUTH LOGIN"), b"+ VXNlcm5hbWU6\r\n")
        self.assertEqual(s.send(b64(USER)), b"+ UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b"*"), b"-ERR Authentication cancelled.\r\n")
        s.send(b"AUTH LOGIN " + b64(USER))
        self.assertEqual(s.send(b"!!"), b"-ERR Invalid base64 data.\r\n")
        s.send(b"AUTH LOGIN " + b64(USER))
        limit = self.ctx.config.access.maxLineLength
        self.assertEqual(s.send(b"x" * (limit + 10)), b"-ERR Line too long\r\n")
        self.assertEqual(s.send(b"STAT"), b"-ERR Not logged in.\r\n")
        self.assertEqual(s.send(b"AUTH LOGIN " + b64(USER)), b"+ UGFzc3dvcmQ6\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"+OK Logged in.\r\n")
        self.assertEqual(s.proto.state, "TRANSACTION")


class ConfiguredOfferTests(unittest.TestCase):
    """
    Only the configured mechanisms are advertised and accepted, and only
    those allowed on the connection: a mechanism that sends no secret in
    the clear is offered before TLS, the others only after.
    """

    def setUp(self):
        self.ctx = makeContext(
            self.mktemp(), tlsOptions=object(),
            overrides={"auth": {"mechanisms": ["PLAIN"]}},
        )

    def withEcho(self):
        self.ctx.sasl = SASLMechanisms([PLAIN, EchoFactory()])

    def test_smtpOnlyConfigured(self):
        s = SMTPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertTrue(s.send(b"EHLO c").endswith(b"250 AUTH PLAIN\r\n"))
        self.assertEqual(
            s.send(b"AUTH LOGIN"), b"504 5.5.4 Unrecognized authentication mechanism\r\n"
        )

    def test_imapOnlyConfigured(self):
        s = IMAPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        caps = s.send(b"a CAPABILITY").split(b"\r\n")[0]
        self.assertTrue(caps.startswith(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+ "), caps)
        self.assertEqual(
            s.send(b"b AUTHENTICATE LOGIN"), b"b NO Unsupported authentication mechanism\r\n"
        )

    def test_pop3OnlyConfigured(self):
        s = POP3Session(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertIn(b"\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION", s.send(b"CAPA"))
        self.assertEqual(s.send(b"AUTH"), b"+OK\r\nPLAIN\r\n.\r\n")
        self.assertEqual(
            s.send(b"AUTH LOGIN"), b"-ERR [AUTH] Unsupported authentication mechanism.\r\n"
        )

    def test_smtpBeforeTLS(self):
        self.withEcho()
        s = SMTPSession(self.ctx, StartTLSTransport(peerAddress=PEER))
        self.assertEqual(
            s.send(b"EHLO c").split(b"\r\n")[-3:],
            [b"250-STARTTLS", b"250 AUTH X-ECHO", b""],
        )
        self.assertEqual(
            s.send(b"AUTH PLAIN " + plain(b"", USER, b"demo")),
            b"530 5.7.0 Must issue a STARTTLS command first\r\n",
        )
        self.assertEqual(
            s.send(b"AUTH CRAM-MD5"), b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        )
        self.assertEqual(s.send(b"AUTH x-echo"), b"334 d2hvPw==\r\n")
        self.assertEqual(s.send(b64(USER)), b"334 c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"bad")), b"501 5.5.2 Cannot decode response\r\n")
        self.assertEqual(s.send(b"AUTH X-ECHO " + b64(USER)), b"334 c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"235 2.7.0 Authentication successful\r\n")
        self.assertEqual(s.proto.authenticated, "demo@example.test")

    def test_imapBeforeTLS(self):
        self.withEcho()
        s = IMAPSession(self.ctx, StartTLSTransport(peerAddress=PEER))
        caps = s.send(b"a CAPABILITY").split(b"\r\n")[0]
        self.assertTrue(caps.startswith(
            b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=X-ECHO SASL-IR LITERAL+ "
        ), caps)
        self.assertEqual(
            s.send(b"b AUTHENTICATE PLAIN"),
            b"b NO [PRIVACYREQUIRED] Plaintext authentication is disabled without TLS\r\n",
        )
        self.assertEqual(s.send(b"c AUTHENTICATE X-ECHO"), b"+ d2hvPw==\r\n")
        self.assertEqual(s.send(b64(USER)), b"+ c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"bad")), b"c BAD Invalid X-ECHO response\r\n")
        self.assertEqual(s.send(b"d AUTHENTICATE X-ECHO " + b64(USER)), b"+ c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"d OK AUTHENTICATE completed\r\n")

    def test_pop3BeforeTLS(self):
        self.withEcho()
        s = POP3Session(self.ctx, StartTLSTransport(peerAddress=PEER))
        self.assertIn(b"\r\nSTLS\r\nSASL X-ECHO\r\nIMPLEMENTATION", s.send(b"CAPA"))
        self.assertEqual(s.send(b"AUTH"), b"+OK\r\nX-ECHO\r\n.\r\n")
        self.assertEqual(
            s.send(b"AUTH PLAIN"),
            b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
            b"(SSL/TLS) connections.\r\n",
        )
        self.assertEqual(s.send(b"AUTH X-ECHO"), b"+ d2hvPw==\r\n")
        self.assertEqual(s.send(b64(USER)), b"+ c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"bad")), b"-ERR Invalid X-ECHO response.\r\n")
        self.assertEqual(s.send(b"AUTH X-ECHO " + b64(USER)), b"+ c2VjcmV0Pw==\r\n")
        self.assertEqual(s.send(b64(b"demo")), b"+OK Logged in.\r\n")


class ExamplePluginTests(unittest.TestCase):
    """
    The example XOAUTH2 mechanism in docs/examples/plugins, loaded as a real
    Twisted plugin, with the example token checker: a token logs in over
    SMTP, IMAP and POP3.
    """

    def setUp(self):
        self.factory = loadExample(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        tokens = os.path.join(directory, "tokens.json")
        with open(tokens, "w") as f:
            json.dump({"app@example.test": hashlib.sha256(b"app-token").hexdigest()}, f)
        self.ctx = makeContext(
            directory, tlsOptions=object(), saslPlugins=None,
            overrides={"auth": {
                "checkers": [f"example-tokens:{tokens}"],
                "mechanisms": ["PLAIN", "XOAUTH2"],
            }},
        )

    def token(self, user=b"app@example.test", token=b"app-token"):
        return b64(b"user=" + user + b"\x01auth=Bearer " + token + b"\x01\x01")

    def test_interfaces(self):
        verifyObject(ISASLMechanismFactory, self.factory)
        self.assertIs(self.factory.cleartext, True)
        verifyObject(ISASLMechanism, self.factory.makeMechanism("imap", "h"))
        self.assertEqual(self.ctx.sasl.offered(True), ["PLAIN", "XOAUTH2"])
        self.assertEqual(self.ctx.sasl.offered(False), [])

    def test_malformed(self):
        for response in (
            b"user=a\x01auth=Bearer t\x01",
            b"user=a\x01auth=Basic t\x01\x01",
            b"auth=Bearer t\x01\x01",
            b"user=a\x01user=b\x01auth=Bearer t\x01\x01",
            b"user=a\x01auth=Bearer \x01\x01",
            b"garbage",
        ):
            self.assertRaises(
                SASLMalformedResponse,
                self.factory.makeMechanism("smtp", "h").respond, response,
            )

    def test_smtp(self):
        s = SMTPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertTrue(s.send(b"EHLO c").endswith(b"250 AUTH PLAIN XOAUTH2\r\n"))
        self.assertEqual(s.send(b"AUTH XOAUTH2 " + b64(b"user=x")),
                         b"501 5.5.2 Cannot decode response\r\n")
        self.assertEqual(s.send(b"AUTH XOAUTH2 " + self.token(token=b"wrong")), b"")
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(s.transport.value(), b"535 5.7.8 Error: authentication failed\r\n")
        self.ctx.authThrottle.succeeded(PEER.host)
        s.transport.clear()
        self.assertEqual(s.send(b"AUTH XOAUTH2"), b"334 \r\n")
        self.assertEqual(s.send(self.token()), b"235 2.7.0 Authentication successful\r\n")
        self.assertEqual(s.proto.authenticated, "app@example.test")

    def test_smtpBeforeTLS(self):
        s = SMTPSession(self.ctx, StartTLSTransport(peerAddress=PEER))
        self.assertTrue(s.send(b"EHLO c").endswith(b"250 STARTTLS\r\n"))
        self.assertEqual(s.send(b"AUTH XOAUTH2 " + self.token()),
                         b"530 5.7.0 Must issue a STARTTLS command first\r\n")

    def test_imap(self):
        s = IMAPSession(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertIn(b" AUTH=PLAIN AUTH=XOAUTH2 SASL-IR ", s.send(b"a CAPABILITY"))
        self.assertEqual(s.send(b"b AUTHENTICATE XOAUTH2 " + b64(b"user=x")),
                         b"b BAD Invalid XOAUTH2 response\r\n")
        self.assertEqual(s.send(b"c AUTHENTICATE XOAUTH2 " + self.token(token=b"no")), b"")
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(s.transport.value(),
                         b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        s.transport.clear()
        self.assertEqual(s.send(b"d AUTHENTICATE XOAUTH2"), b"+ \r\n")
        self.assertEqual(s.send(self.token()), b"d OK AUTHENTICATE completed\r\n")
        self.assertEqual(s.proto.user.address, "app@example.test")

    def test_imapBeforeTLS(self):
        s = IMAPSession(self.ctx, StartTLSTransport(peerAddress=PEER))
        self.assertEqual(
            s.send(b"a AUTHENTICATE XOAUTH2 " + self.token()),
            b"a NO [PRIVACYREQUIRED] Plaintext authentication is disabled without TLS\r\n",
        )

    def test_pop3(self):
        s = POP3Session(self.ctx, ImplicitTLSTransport(peerAddress=PEER))
        self.assertIn(b"\r\nSASL PLAIN XOAUTH2\r\n", s.send(b"CAPA"))
        self.assertEqual(s.send(b"AUTH XOAUTH2 " + b64(b"user=x")),
                         b"-ERR Invalid XOAUTH2 response.\r\n")
        self.assertEqual(s.send(b"AUTH XOAUTH2 " + self.token(token=b"no")), b"")
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(s.transport.value(), b"-ERR [AUTH] Authentication failed.\r\n")
        s.transport.clear()
        self.assertEqual(s.send(b"AUTH XOAUTH2"), b"+ \r\n")
        self.assertEqual(s.send(self.token()), b"+OK Logged in.\r\n")
        self.assertEqual(s.proto.state, "TRANSACTION")

    def test_pop3BeforeTLS(self):
        s = POP3Session(self.ctx, StartTLSTransport(peerAddress=PEER))
        self.assertEqual(
            s.send(b"AUTH XOAUTH2 " + self.token()),
            b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
            b"(SSL/TLS) connections.\r\n",
        )
