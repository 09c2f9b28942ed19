"""
The shared parts every protocol factory needs, built once by
L{mailplat.service.MailplatService}.
"""

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class ServerContext:
    """
    @ivar config: the L{mailplat.config.Config}.
    @ivar portal: a L{twisted.cred.portal.Portal} whose realm hands out
        L{mailplat.interfaces.IMailUser} avatars.
    @ivar store: the L{mailplat.interfaces.IMailStore}.
    @ivar users: the L{mailplat.interfaces.IUserDirectory}.
    @ivar queue: the L{mailplat.queue.store.QueueStore}.
    @ivar runner: the L{mailplat.queue.runner.QueueRunner} (C{enqueue} a
        committed message).
    @ivar tlsOptions: TLS server options (a L{twisted.internet.ssl.CertificateOptions}),
        or L{None} when no certificate is configured.
    @ivar clock: an L{IReactorTime} (the reactor; a Clock in unit tests).
    @ivar runBlocking: C{f(callable, *args, **kw) -> Deferred} running
        blocking disk or CPU work off the reactor thread (a synchronous
        stand-in in unit tests).
    @ivar callFromThread: C{f(callable, *args)} scheduling a call on the
        reactor thread (used by store listeners).
    @ivar recipients: the L{mailplat.recipients.RecipientResolver}.
    @ivar policy: the SMTP check L{mailplat.policy.pipeline.Pipeline}.
    @ivar authThrottle: the L{mailplat.auth.throttle.AuthThrottle}.
    @ivar resolver: the L{mailplat.dns.Resolver} every DNS lookup goes
        through.
    @ivar events: the L{mailplat.events.EventHub} (may be L{None} in unit
        tests).
    @ivar sasl: the L{mailplat.auth.sasl.SASLMechanisms} SMTP AUTH, IMAP
        AUTHENTICATE and POP3 AUTH offer (L{None}: the built-in PLAIN and
        LOGIN).
    @ivar committer: what makes received messages durable before their 250:
        C{commit(spool) -> Deferred} firing with the
        L{mailplat.queue.store.QueuedMessage} (the
        L{mailplat.queue.commitprocess.CommitProcess} or the
        L{mailplat.queue.commit.GroupCommitter}; L{None}: each message is
        committed on its own through C{runBlocking}).
    """

    config: Any
    portal: Any
    store: Any
    users: Any
    queue: Any
    runner: Any
    tlsOptions: Any
    clock: Any
    runBlocking: Callable
    callFromThread: Callable
    recipients: Any = None
    policy: Any = None
    authThrottle: Any = None
    resolver: Any = None
    committer: Any = None
    events: Any = None
    targets: tuple = ()
    sasl: Any = None
