"""
An example credential checker for mailplat, as a twisted.cred strcred plugin:
"application passwords" kept as SHA-256 digests in a JSON file.

    {"alice@example.test": "<hex sha256 of her app password>"}

With the directory holding this C{twisted/plugins/} on C{sys.path}:

    [auth]
    checkers = ["userdb", "example-tokens:/etc/mailplat/tokens.json"]

It is an ordinary L{ICheckerFactory}, so C{twistd --auth example-tokens:...}
would take it too.  (A real deployment would use a slow salted hash; the
point here is the plugin shape.)
"""

import hashlib
import hmac
import json

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.strcred import ICheckerFactory
from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(ICredentialsChecker)
class TokenChecker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, path):
        self.path = path

    def requestAvatarId(self, creds):
        # Small file, read per login so edits apply at once.
        with open(self.path, encoding="utf-8") as f:
            tokens = json.load(f)
        user = creds.username.decode("utf-8", "replace").lower()
        digest = hashlib.sha256(creds.password).hexdigest()
        expected = tokens.get(user)
        if expected is not None and hmac.compare_digest(expected, digest):
            return defer.succeed(user)
        return defer.fail(error.UnauthorizedLogin())


@implementer(ICheckerFactory, IPlugin)
class TokenCheckerFactory:
    authType = "example-tokens"
    authHelp = "Application passwords: SHA-256 digests in a JSON file."
    argStringFormat = "A path to the JSON file."
    credentialInterfaces = TokenChecker.credentialInterfaces

    def generateChecker(self, argstring):
        return TokenChecker(argstring)


tokenCheckerFactory = TokenCheckerFactory()
