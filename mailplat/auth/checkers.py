"""
Credential checkers from the config: the user database (password file or
SQLite), PAM (L{mailplat.auth.pamchecker}, the C{pam} extra), and any
C{twisted.cred.strcred} checker (C{file:}, C{unix:}, a third-party
L{ICheckerFactory} plugin), tried in order; failures are answered after the
same delay whichever checker refused.
"""

from twisted.cred import credentials, error, strcred
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from mailplat.auth.checker import PasswordFileChecker
from mailplat.auth.hashpool import hashRunnerFor
from mailplat.auth.pamchecker import PAM, PAMUnavailable, pamCheckerFor
from mailplat.auth.sqlitedb import SQLiteUserDatabase
from mailplat.auth.userdb import UserDatabase

USERDB = "userdb"


def userDatabase(config):
    """
    The user database the config names: C{auth.sqlite} when set, else the
    password file C{auth.users_file}.
    """
    if config.auth.sqlite:
        return SQLiteUserDatabase(config.auth.sqlite)
    return UserDatabase(config.auth.usersFile)


class CheckerSpecError(ValueError):
    """
    A checker string names no known checker, or its argument is wrong.
    """


def checkerFor(spec, users, clock, runBlocking, config=None):
    """
    @param spec: C{"userdb"}, C{"pam"}, or a C{strcred} string such as
        C{"file:/etc/mail.passwd"} or C{"unix"}.
    @param config: the L{mailplat.config.Config}; C{"pam"} needs it (its
        C{[auth.pam]} table and local domains).
    @return: an L{ICredentialsChecker} for L{IUsernamePassword}.
    @raise CheckerSpecError: unknown or bad.
    """
    if spec == USERDB:
        return PasswordFileChecker(
            users, clock, hashRunnerFor(clock, runBlocking), failureDelay=0
        )
    if spec == PAM:
        if config is None:
            raise CheckerSpecError(f"{spec!r} needs the config ([auth.pam])")
        try:
            return pamCheckerFor(config, users, clock, runBlocking)
        except PAMUnavailable as e:
            raise CheckerSpecError(f"{spec!r}: {e}") from None
    try:
        checker = strcred.makeChecker(spec)
    except (strcred.InvalidAuthType, strcred.InvalidAuthArgumentString) as e:
        raise CheckerSpecError(f"{spec!r}: {e}") from None
    except Exception as e:
        raise CheckerSpecError(f"{spec!r}: {e}") from None
    if credentials.IUsernamePassword not in checker.credentialInterfaces:
        raise CheckerSpecError(f"{spec!r} does not check usernames and passwords")
    return checker


@implementer(ICredentialsChecker)
class ChainedChecker:
    """
    Try each checker in turn; the first to accept wins.  A refusal is
    answered C{failureDelay} seconds after the last checker refused, so
    neither the answer nor its timing says which checker knew the user.

    Avatar ids are normalized to lower case: every mailbox is named by its
    lower-case address.

    Credentials go only to the checkers that handle one of the interfaces
    they provide: every checker handles L{IUsernamePassword}, and a checker
    may handle more (say the credentials a plugin SASL mechanism makes),
    which the chain then handles too.
    """

    log = Logger()

    def __init__(self, checkers, clock, failureDelay):
        self.checkers = list(checkers)
        self.clock = clock
        self.failureDelay = failureDelay
        interfaces = [credentials.IUsernamePassword]
        for checker in self.checkers:
            for interface in checker.credentialInterfaces:
                if interface not in interfaces:
                    interfaces.append(interface)
        self.credentialInterfaces = tuple(interfaces)

    @staticmethod
    def _handles(checker, creds):
        return any(i.providedBy(creds) for i in checker.credentialInterfaces)

    @defer.inlineCallbacks
    def requestAvatarId(self, creds):
        for checker in self.checkers:
            if not self._handles(checker, creds):
                continue
            try:
                avatarId = yield defer.maybeDeferred(checker.requestAvatarId, creds)
            except (error.UnauthorizedLogin, error.UnhandledCredentials):
                continue
            except Exception:
                self.log.failure("auth: checker {checker!r} failed", checker=checker)
                continue
            if isinstance(avatarId, bytes):
                avatarId = avatarId.decode("utf-8", "replace")
            return avatarId.lower()
        if self.failureDelay:
            yield task.deferLater(self.clock, self.failureDelay, lambda: None)
        raise error.UnauthorizedLogin("authentication failed")


def portalFor(specs, users, realm, clock, runBlocking, failureDelay, config=None):
    """
    A L{Portal} whose only checker tries C{specs} in order.

    @param config: the L{mailplat.config.Config}, needed by C{"pam"}.
    @raise CheckerSpecError: a spec is unknown or bad.
    """
    from twisted.cred.portal import Portal

    chain = ChainedChecker(
        [checkerFor(spec, users, clock, runBlocking, config) for spec in specs],
        clock,
        failureDelay,
    )
    return Portal(realm, [chain])
