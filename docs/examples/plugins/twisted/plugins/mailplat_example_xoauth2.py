"""
An example SASL mechanism for mailplat, as a Twisted plugin: XOAUTH2, the
bearer-token login Gmail and Outlook clients speak, for SMTP AUTH, IMAP
AUTHENTICATE and POP3 AUTH alike.  The client sends one response:

    user=alice@example.test ^A auth=Bearer <token> ^A ^A

(^A is the byte 0x01).  The mechanism turns it into ordinary username and
password credentials, the token as the password, so the example
credential checker next to it (C{mailplat_example_tokens.py}, application
passwords in a JSON file) checks the token.  With the directory holding
this C{twisted/plugins/} on C{sys.path}:

    [auth]
    checkers = ["userdb", "example-tokens:/etc/mailplat/tokens.json"]
    mechanisms = ["PLAIN", "LOGIN", "XOAUTH2"]

A real deployment would check the token with its OAuth 2.0 authorization
server (RFC 7662 introspection) in its checker; the point here is the
plugin shape.  The mechanism only parses: it never decides who may log in.
"""

from twisted.cred.credentials import UsernamePassword
from twisted.plugin import IPlugin
from zope.interface import implementer

from mailplat.interfaces import (
    ISASLMechanism,
    ISASLMechanismFactory,
    SASLMalformedResponse,
)


@implementer(ISASLMechanism)
class XOAuth2Mechanism:
    """
    One XOAUTH2 exchange: an empty challenge if the client sent no initial
    response, then its one response.
    """

    def respond(self, response):
        if response is None:
            return b""
        fields = {}
        # "user=..." ^A "auth=Bearer ..." ^A ^A: the last two are empty.
        parts = response.split(b"\x01")
        if len(parts) < 3 or parts[-2:] != [b"", b""]:
            raise SASLMalformedResponse("XOAUTH2: expected key=value fields ending in ^A^A")
        for part in parts[:-2]:
            key, eq, value = part.partition(b"=")
            if not eq or key in fields:
                raise SASLMalformedResponse("XOAUTH2: bad field")
            fields[key] = value
        user = fields.get(b"user", b"")
        scheme, _, token = fields.get(b"auth", b"").partition(b" ")
        if not user or scheme.lower() != b"bearer" or not token:
            raise SASLMalformedResponse("XOAUTH2: needs user= and auth=Bearer <token>")
        return UsernamePassword(user, token)


@implementer(ISASLMechanismFactory, IPlugin)
class XOAuth2Factory:
    name = "XOAUTH2"
    # A bearer token is as good as a password to whoever reads it: offer
    # the mechanism only under TLS.
    cleartext = True

    def makeMechanism(self, protocol, hostname):
        return XOAuth2Mechanism()


xoauth2 = XOAuth2Factory()
