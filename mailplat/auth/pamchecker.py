"""
Logins checked by PAM, through python-pam (the C{pam} extra:
C{pip install 'mailplat[pam]'}).

A mail login is an address; PAM knows user names.  The address must be in
one of the PAM domains (by default every domain in C{domains.local}), and
PAM is asked about its local part (C{username = "localpart"}, for system
accounts) or about the whole address (C{username = "address"}, for PAM
modules whose users are addresses).  The avatar is the address, and the
address must also be a user of the user database: PAM says whose password
is right, the user database says which mailboxes exist (the same one that
RCPT TO is accepted for), so a PAM login always lands in a mailbox that
receives mail.

PAM calls block (modules read files, talk to LDAP, and C{pam_unix} sleeps
about two seconds after a wrong password), so they run in a small pool of
their own: never on the reactor thread, and never in the hash pool, where
one wrong password would hold up every other login for the length of that
sleep.
"""

import os
import weakref

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from zope.interface import implementer

from mailplat.auth.checker import loginAndPassword
from mailplat.auth.hashpool import HashRunner

PAM = "pam"

# How PAM user names are made from login addresses.
LOCALPART = "localpart"
ADDRESS = "address"
USERNAME_MODES = (LOCALPART, ADDRESS)

# Threads calling PAM at once.  Each wrong password can keep one busy for
# the module's failure delay (pam_unix: about two seconds).
PAM_THREADS = 4

# Where Linux-PAM looks for a service's file; without one it uses "other".
SERVICE_DIRECTORIES = ("/etc/pam.d", "/usr/lib/pam.d")

_log = Logger()


class PAMUnavailable(Exception):
    """
    python-pam is not installed, or it cannot load libpam.
    """


def loadPAM():
    """
    Import python-pam and load libpam.

    @return: python-pam's C{PamAuthenticator} class.
    @raise PAMUnavailable: with a message that names the missing extra.
    """
    try:
        import pam
    except ImportError:
        raise PAMUnavailable(
            "the pam checker needs python-pam, which is not installed: "
            "install the pam extra (pip install 'mailplat[pam]')"
        ) from None
    authenticator = getattr(pam, "PamAuthenticator", None)
    if authenticator is None:
        raise PAMUnavailable(
            f"the module 'pam' ({getattr(pam, '__file__', '?')}) is not python-pam: "
            "install the pam extra (pip install 'mailplat[pam]')"
        )
    try:
        # Loads libpam (once per process).
        authenticator()
    except (OSError, AttributeError, TypeError) as e:
        raise PAMUnavailable(f"python-pam cannot load libpam: {e}") from None
    return authenticator


def serviceFile(service, directories=SERVICE_DIRECTORIES):
    """
    @return: the path of the file that configures PAM service C{service},
        or L{None} when there is none (Linux-PAM then uses the service
        C{other}).
    """
    for directory in directories:
        path = os.path.join(directory, service)
        if os.path.isfile(path):
            return path
    return None


_runners = weakref.WeakKeyDictionary()


def pamRunnerFor(reactor, runBlocking):
    """
    @return: the runner of PAM calls of C{reactor}: one pool of
        L{PAM_THREADS} threads per process, however many listeners have
        their own portal.  With a reactor without threads (a
        L{twisted.internet.task.Clock} in unit tests), C{runBlocking}.
    """
    if not IReactorThreads.providedBy(reactor):
        return HashRunner(reactor, runBlocking, PAM_THREADS, "mailplat-pam")
    runner = _runners.get(reactor)
    if runner is None:
        runner = _runners[reactor] = HashRunner(
            reactor, runBlocking, PAM_THREADS, "mailplat-pam"
        )
    return runner


@implementer(ICredentialsChecker)
class PAMChecker:
    """
    Checks L{IUsernamePassword} credentials with PAM.

    Refusals carry no delay of their own: L{mailplat.auth.checkers}'s
    chain adds C{auth.failure_delay} and SMTP its per-client throttle, as
    for every checker.  A user missing from the user database is still
    asked about (and then refused), so that timing does not tell which
    addresses have mailboxes.

    @ivar users: the user database (an L{IUserDirectory}).
    @ivar domains: the domains whose addresses PAM checks.
    @ivar service: the PAM service name (C{/etc/pam.d/SERVICE}).
    @ivar username: L{LOCALPART} or L{ADDRESS}.
    @ivar runPAM: C{f, *args -> Deferred}, running C{f} off the reactor
        thread.
    @ivar authenticatorFactory: makes one python-pam C{PamAuthenticator}
        per login (an instance must not be shared between threads).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)
    log = Logger()

    def __init__(self, users, domains, runPAM, service="mailplat",
                 username=LOCALPART, authenticatorFactory=None):
        if username not in USERNAME_MODES:
            raise ValueError(f"username must be one of {USERNAME_MODES}, not {username!r}")
        self.users = users
        self.domains = frozenset(d.lower() for d in domains)
        self.runPAM = runPAM
        self.service = service
        self.username = username
        if authenticatorFactory is None:
            authenticatorFactory = loadPAM()
        self.authenticatorFactory = authenticatorFactory

    def pamUser(self, address):
        """
        @param address: a normalized login address.
        @return: the PAM user name for C{address}, or L{None} when PAM does
            not check logins of its domain.
        """
        local, at, domain = address.rpartition("@")
        if not at or not local or domain not in self.domains:
            return None
        return local if self.username == LOCALPART else address

    def _check(self, address, pamUser, password):
        """
        I{blocking}: ask PAM, then the user database.

        @return: C{(accepted, reason)}.
        """
        authenticator = self.authenticatorFactory()
        try:
            # resetcreds=False: a mail login establishes no credentials
            # (no groups, no Kerberos tickets) for anybody.
            ok = authenticator.authenticate(
                pamUser, password, service=self.service, resetcreds=False
            )
        except ValueError as e:
            # A NUL in the user name or password.
            return False, str(e)
        if not ok:
            return False, f"PAM: {authenticator.reason} ({authenticator.code})"
        if not self.users.exists(address):
            return False, "PAM accepted it, but the address is not in the user database"
        return True, None

    def requestAvatarId(self, creds):
        address, password = loginAndPassword(creds)
        pamUser = self.pamUser(address)
        if pamUser is None:
            self.log.info(
                "auth: PAM does not check {user!r} (not an address in a PAM domain)",
                user=address,
            )
            return defer.fail(error.UnauthorizedLogin("authentication failed"))
        d = self.runPAM(self._check, address, pamUser, password)

        def checked(result):
            ok, reason = result
            if ok:
                return address
            self.log.info(
                "auth: failed PAM login for {user!r} (PAM user {pamUser!r}, "
                "service {service!r}): {reason}",
                user=address, pamUser=pamUser, service=self.service, reason=reason,
            )
            raise error.UnauthorizedLogin("authentication failed")

        def failed(failure):
            if failure.check(error.UnauthorizedLogin):
                return failure
            self.log.failure("auth: PAM checker error", failure)
            raise error.UnauthorizedLogin("authentication failed")

        return d.addCallback(checked).addErrback(failed)


def pamCheckerFor(config, users, clock, runBlocking):
    """
    The L{PAMChecker} that C{config}'s C{[auth.pam]} table describes.

    @raise PAMUnavailable: python-pam or libpam is missing.
    """
    pam = config.auth.pam
    domains = pam.domains if pam.domains is not None else config.localDomains
    checker = PAMChecker(
        users,
        domains,
        pamRunnerFor(clock, runBlocking),
        service=pam.service,
        username=pam.username,
    )
    if serviceFile(pam.service) is None:
        _log.warn(
            "auth: no PAM service file for {service!r} in {directories}: PAM "
            "uses the service 'other' for mail logins",
            service=pam.service, directories=", ".join(SERVICE_DIRECTORIES),
        )
    return checker
