"""
StringTransports that look like TLS-capable (ITLSTransport) and TLS
(ISSLTransport) transports, for protocol unit tests.
"""

from twisted.internet import interfaces
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, implementer


class _FakeTLSConnection:
    def get_protocol_version_name(self):
        return "TLSv1.3"

    def get_cipher_name(self):
        return "TLS_AES_256_GCM_SHA384"

    def get_cipher_bits(self):
        return 256


@implementer(interfaces.ITLSTransport)
class StartTLSTransport(StringTransport):
    """
    A transport on which C{startTLS} only records the call and marks the
    transport as secure from then on.
    """

    tlsStarted = False
    tlsOptions = None

    def startTLS(self, contextFactory):
        self.tlsStarted = True
        self.tlsOptions = contextFactory
        alsoProvides(self, interfaces.ISSLTransport)

    def getHandle(self):
        return _FakeTLSConnection()

    def getPeerCertificate(self):
        return None


@implementer(interfaces.ISSLTransport)
class ImplicitTLSTransport(StringTransport):
    """
    A transport that is TLS from the first byte.
    """

    def getHandle(self):
        return _FakeTLSConnection()

    def getPeerCertificate(self):
        return None
