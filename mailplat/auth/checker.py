"""
The twisted.cred checker over the password file, used by SMTP AUTH, POP3 and
IMAP alike.
"""

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from mailplat.auth.passwords import dummyHash, verifyPassword
from mailplat.auth.userdb import normalizeAddress


def loginAndPassword(creds):
    """
    @param creds: L{IUsernamePassword} credentials (either part L{bytes} or
        L{str}).
    @return: C{(address, password)}: the user name as a normalized address
        and the password, both L{str} (invalid UTF-8 replaced).
    """
    username, password = creds.username, creds.password
    if isinstance(username, bytes):
        username = username.decode("utf-8", "replace")
    if isinstance(password, bytes):
        password = password.decode("utf-8", "replace")
    return normalizeAddress(username), password


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    Checks L{IUsernamePassword} credentials against a
    L{mailplat.auth.userdb.UserDatabase}.

    The hash is verified in a thread (argon2 is slow on purpose).  A failure is
    reported only after C{failureDelay} seconds, and an unknown user costs the
    same hash verification as a known one, so neither the answer nor its
    timing tells whether the user exists.
    """

    credentialInterfaces = (credentials.IUsernamePassword,)
    log = Logger()

    def __init__(self, users, clock, runBlocking, failureDelay=2.0):
        self.users = users
        self.clock = clock
        self.runBlocking = runBlocking
        self.failureDelay = failureDelay

    def _check(self, username, password):
        entry = self.users.get(username)
        stored = entry.passwordHash if entry is not None else dummyHash()
        ok = verifyPassword(stored, password)
        return entry is not None and ok

    def requestAvatarId(self, creds):
        username, password = loginAndPassword(creds)
        d = self.runBlocking(self._check, username, password)

        def checked(ok):
            if ok:
                return username
            self.log.info("auth: failed login for {user!r}", user=username)
            return defer.fail(error.UnauthorizedLogin("authentication failed"))

        def delayed(failure):
            if not failure.check(error.UnauthorizedLogin):
                self.log.failure("auth: checker error", failure)
                failure = defer.fail(error.UnauthorizedLogin("authentication failed"))
            if not self.failureDelay:
                return failure
            return task.deferLater(
                self.clock, self.failureDelay, lambda: None
            ).addCallback(lambda _: failure)

        return d.addCallback(checked).addErrback(delayed)
