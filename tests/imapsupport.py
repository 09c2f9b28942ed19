"""
Helpers for IMAP server unit tests: the server over a real Maildir store,
driven through a L{StringTransport} with a fake clock and synchronous disk
calls.
"""

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, implementer

from mailplat.config import ListenerConfig
from mailplat.imap import IMAPFactory
from mailplat.testing import makeContext

USER = b"demo@example.test"
ADDRESS = "demo@example.test"

MSG1 = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: demo@example.test\r\n"
    b"Subject: first\r\n"
    b"Received: from a\r\n"
    b"  by b\r\n"
    b"Received: from c\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"World\r\n"
)
MSG2 = b"From: bob@example.test\r\nSubject: second\r\n\r\nBye\r\n"
MSG3 = b"Subject: third\r\n\r\nThree\r\n"
MULTIPART = (
    b"From: carol@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"part one\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)

FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
EXTENSIONS = (
    b"LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN "
    b"SPECIAL-USE QUOTA QUOTA=RES-STORAGE CONDSTORE APPENDLIMIT=67108864"
)
CAPS_PLAIN = b"IMAP4rev1 STARTTLS LOGINDISABLED " + EXTENSIONS
CAPS_TLS = b"IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR " + EXTENSIONS
GREETING_PLAIN = (
    b"* OK [CAPABILITY " + CAPS_PLAIN + b"] mail.example.test IMAP4rev1 server ready"
)
NO_PLAINTEXT = b"NO [PRIVACYREQUIRED] Plaintext authentication is disabled without TLS"


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that can start TLS: afterwards it provides
    L{ISSLTransport}, as Twisted's TCP transports do.
    """

    tlsOptions = None

    def startTLS(self, contextFactory, normal=True):
        self.tlsOptions = contextFactory
        alsoProvides(self, ISSLTransport)

    def getPeerCertificate(self):
        return None


@implementer(ISSLTransport)
class SSLStringTransport(StringTransport):
    """
    A transport that is TLS from the first byte (implicit TLS, RFC 8314).
    """

    def getPeerCertificate(self):
        return None


class Session:
    """
    One client connection to the server under test.
    """

    def __init__(self, proto, transport):
        self.proto = proto
        self.transport = transport

    def send(self, data):
        """
        Deliver C{data} and return what the server wrote in response.
        """
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.output()

    def command(self, line):
        """
        Send one command line and return the response lines.
        """
        return self.send(line + b"\r\n").split(b"\r\n")[:-1]

    def output(self):
        value = self.transport.value()
        self.transport.clear()
        return value

    def lines(self):
        return self.output().split(b"\r\n")[:-1]


class IMAPTestMixin:
    """
    Builds a context with a real store and connects sessions to it.
    """

    overrides = None

    def setUp(self):
        self.tlsOptions = object()
        self.ctx = makeContext(
            self.mktemp(), tlsOptions=self.tlsOptions, overrides=self.overrides
        )
        self.store = self.ctx.store
        self.folder = self.store.folder(ADDRESS)

    def deliver(self, *messages, folder="INBOX"):
        return [self.store.deliver(ADDRESS, [m], folder) for m in messages]

    def connect(self, tls="starttls", transport=None, ctx=None):
        listener = ListenerConfig(name="imap", protocol="imap", endpoint="tcp:0", tls=tls)
        proto = IMAPFactory(ctx or self.ctx, listener).buildProtocol(None)
        if transport is None:
            transport = TLSStringTransport()
        proto.makeConnection(transport)
        session = Session(proto, transport)
        self.addCleanup(self.disconnect, session)
        return session

    def disconnect(self, session):
        if session.proto._connected:
            session.proto.connectionLost(None)

    def login(self, ctx=None):
        """
        A session that did STARTTLS and LOGIN.
        """
        session = self.connect(ctx=ctx)
        session.output()
        self.assertEqual(session.command(b"s STARTTLS"), [b"s OK Begin TLS negotiation now"])
        self.assertEqual(
            session.command(b"l LOGIN demo@example.test demo"), [b"l OK LOGIN completed"]
        )
        return session

    def selected(self, command=b"SELECT", mailbox=b"INBOX", ctx=None):
        session = self.login(ctx)
        response = session.command(b"x " + command + b" " + mailbox)
        self.assertTrue(response[-1].startswith(b"x OK"), response)
        return session

    def flags(self, folder=None):
        folder = folder or self.folder
        return {info.uid: set(info.flags) for info in folder.snapshot()}

    def seen(self, folder=None):
        folder = folder or self.folder
        folder.claimRecent()


class DeferredRunner:
    """
    A C{runBlocking} whose calls complete only when the test says so, like
    a thread pool that has not got round to them yet.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, f, *args, **kwargs):
        d = defer.Deferred()
        self.pending.append((d, f, args, kwargs))
        return d

    def runAll(self):
        while self.pending:
            d, f, args, kwargs = self.pending.pop(0)
            try:
                result = f(*args, **kwargs)
            except Exception:
                d.errback()
            else:
                d.callback(result)
