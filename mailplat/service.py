"""
L{MailplatService}: everything a config describes, as one Twisted service that
twistd runs or that any Twisted application can add to its own hierarchy.
"""

import dataclasses
import os

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool
from twisted.logger import Logger

from mailplat.auth.checkers import portalFor, userDatabase
from mailplat.auth.realm import MailRealm
from mailplat.auth.sasl import buildRegistry
from mailplat.auth.throttle import AuthThrottle
from mailplat.config import loadConfigString
from mailplat.context import ServerContext
from mailplat.delivery.local import LocalDelivery
from mailplat.delivery.plugins import buildTargets
from mailplat.embedding import Submitter, addUser, deliveryEvents
from mailplat.events import EventHub
from mailplat.delivery.targets import outboundTargets
from mailplat.dns import Resolver
from mailplat.listeners import ListenError, ListenerService
from mailplat.policy.registry import buildPipeline
from mailplat.queue.commit import GroupCommitter
from mailplat.queue.commitprocess import CommitProcess
from mailplat.queue.control import ControlService
from mailplat.queue.runner import QueueRunner
from mailplat.recipients import resolverFor
from mailplat.queue.store import QueueStore
from mailplat.storage.backends import buildStore
from mailplat.tls import readPEM, serverContextFactoryFromPEM

__all__ = ["ListenError", "MailplatService"]


def _factoryFor(protocol):
    if protocol == "smtp":
        from mailplat.smtp.server import SMTPFactory

        return SMTPFactory
    if protocol == "pop3":
        from mailplat.pop3.server import POP3Factory

        return POP3Factory
    from mailplat.imap.server import IMAPFactory

    return IMAPFactory


class MailplatService(service.MultiService):
    """
    The mail server described by a L{mailplat.config.Config}.

    Nothing touches the disk or the network until the service starts: ports
    are bound in L{privilegedStartService} (before twistd drops privileges),
    directories are created and the TLS key is read... in
    L{privilegedStartService} too for the key (it may be readable by root
    only), and the queue is created in L{startService} (as the final user).

    @ivar context: the L{ServerContext} shared by every protocol.
    @ivar runner: the L{QueueRunner}.
    @ivar listeners: L{ListenerService} children by listener name.
    """

    log = Logger()

    def __init__(self, config, reactor=None):
        service.MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor

        def runBlocking(f, *args, **kwargs):
            return threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), f, *args, **kwargs
            )

        self._runBlocking = runBlocking
        # Queue and delivery work gets its own few threads, so that a backlog
        # of deliveries never delays the fsync a waiting SMTP client's 250
        # depends on, and fewer Python threads compete with the reactor for
        # the GIL.
        self.deliveryPool = ThreadPool(
            minthreads=0, maxthreads=config.queue.deliveryThreads,
            name="mailplat-delivery",
        )

        def runDelivery(f, *args, **kwargs):
            return threads.deferToThreadPool(
                reactor, self.deliveryPool, f, *args, **kwargs
            )

        # Received messages are committed in groups by one thread of their
        # own (mailplat.queue.commit): one hand-off and one directory fsync
        # serve every session waiting for its 250 at that moment.
        self.commitPool = ThreadPool(minthreads=0, maxthreads=1, name="mailplat-commit")

        def runCommit(f, *args, **kwargs):
            return threads.deferToThreadPool(
                reactor, self.commitPool, f, *args, **kwargs
            )

        # [storage] backend: Maildir, memory or a plugin's store (raises
        # PolicyError for bad options or a store of the wrong interface).
        store = buildStore(config)
        users = userDatabase(config)
        self.realm = MailRealm(store)
        queue = QueueStore(config.queue.path)
        committer = GroupCommitter(queue, runCommit)
        # The process that runs the SMTP sessions commits what they receive
        # through a commit process of its own (mailplat.queue.commitprocess);
        # started first, so that it stops after the listeners.
        self.commitProcess = None
        if config.queue.commitProcess and not config.smtp.separateProcess:
            self.commitProcess = CommitProcess(queue, reactor, committer, runBlocking)
            self.commitProcess.setServiceParent(self)
            committer = self.commitProcess
        local = LocalDelivery(store, users, config.isLocalDomain, runDelivery)
        self.resolver = Resolver.fromConfig(config.dns, reactor, runBlocking)
        self.runner = self._makeRunner(queue, local, runDelivery)
        self.context = ServerContext(
            config=config,
            portal=self._portal(config.auth.checkers, users),
            store=store,
            users=users,
            queue=queue,
            runner=self.runner,
            tlsOptions=None,
            clock=reactor,
            runBlocking=runBlocking,
            callFromThread=reactor.callFromThread,
            recipients=resolverFor(config, users),
            resolver=self.resolver,
            committer=committer,
            events=EventHub(),
            authThrottle=AuthThrottle(
                reactor,
                base=config.auth.failureDelay,
                maximum=config.smtp.authThrottleMax,
                window=config.smtp.authThrottleWindow,
            ),
        )
        # Plugin delivery targets come before the built-in ones; SMTP accepts
        # what they accept.  Both raise PolicyError for unknown or broken
        # plugins.
        self.context.targets = buildTargets(self.context)
        self.sasl = buildRegistry(config)
        self.context.sasl = self.sasl.select(config.auth.mechanisms)
        self.context.policy = buildPipeline(self.context)
        self.events = self.context.events
        self._startQueue(queue)
        # Watch the user and alias files every second, so that RCPT can use
        # the resolutions of recent recipients without a thread hand-off
        # (mailplat.recipients.RecipientResolver.cached).
        watcher = TimerService(1.0, self._checkRecipientFiles)
        watcher.clock = reactor
        watcher.setServiceParent(self)
        self.listeners = {}
        self.smtpProcess = None
        # The certificate and key files' bytes, once read.
        self.tlsPEM = None
        for listener in config.listeners:
            child = self._makeListener(listener)
            if child is not None:
                child.setServiceParent(self)
                self.listeners[listener.name] = child
        if config.smtp.separateProcess and any(
            l.protocol == "smtp" for l in config.listeners
        ):
            from mailplat.smtpprocess import SMTPProcessService

            # Bound here (before twistd drops privileges), served there.
            self.smtpProcess = SMTPProcessService(self)
            self.smtpProcess.setServiceParent(self)

    # -- the parts a separate SMTP process (mailplat.smtpchild) replaces

    def _makeRunner(self, queue, local, runDelivery):
        return QueueRunner(
            queue,
            [local, *outboundTargets(self.config, self.resolver, self.reactor, runDelivery)],
            self.reactor,
            runDelivery,
            self.config.queue,
            hostname=self.config.hostname,
            postmaster=self.config.postmaster,
        )

    def _startQueue(self, queue):
        self.runner.targets[:0] = self.context.targets
        self.runner.observers.append(deliveryEvents(self.events))
        self._submitter = Submitter(self.context, self.runner)
        self.runner.setServiceParent(self)
        ControlService(queue.controlPath, self.runner, self.reactor).setServiceParent(
            self
        )

    def _makeListener(self, listener):
        """
        @return: the service that listens for C{listener}; with
            C{[smtp] separate_process}, an SMTP listener is only bound here
            (L{mailplat.smtpprocess.HandedOffListener}).
        """
        cls = ListenerService
        if listener.protocol == "smtp" and self.config.smtp.separateProcess:
            from mailplat.smtpprocess import HandedOffListener as cls
        return cls(
            listener,
            self._makeFactory(listener),
            self.reactor,
            lambda: self.context.tlsOptions,
        )

    @classmethod
    def fromTOML(cls, text, baseDir, reactor=None):
        """
        Build the service from TOML text; relative paths are resolved against
        C{baseDir}.

        @raise mailplat.config.ConfigError: listing every problem.
        """
        return cls(loadConfigString(text, baseDir), reactor)

    def _checkRecipientFiles(self):
        d = self._runBlocking(self.context.recipients.checkFiles)
        d.addErrback(lambda f: self.log.failure("cannot check the user files", f))
        return d

    def _portal(self, specs, users):
        return portalFor(
            specs,
            users,
            self.realm,
            self.reactor,
            self._runBlocking,
            self.config.auth.failureDelay,
            self.config,
        )

    def _makeFactory(self, listener):
        def make():
            context = self.context
            if listener.checkers:
                context = dataclasses.replace(
                    context, portal=self._portal(listener.checkers, context.users)
                )
            if listener.mechanisms is not None:
                context = dataclasses.replace(
                    context, sasl=self.sasl.select(listener.mechanisms)
                )
            return _factoryFor(listener.protocol)(context, listener)

        return make

    def _loadTLS(self):
        tls = self.config.tls
        if tls.certificate and self.context.tlsOptions is None:
            self.tlsPEM = readPEM(tls.certificate, tls.key)
            self.context.tlsOptions = serverContextFactoryFromPEM(*self.tlsPEM)

    def privilegedStartService(self):
        """
        Read the TLS key and bind every listener.

        @raise ListenError: a port could not be bound; nothing stays bound.
        """
        self._loadTLS()
        try:
            service.MultiService.privilegedStartService(self)
        except ListenError:
            for child in self.listeners.values():
                if child.port is not None:
                    child.port.stopListening()
                    child.port = None
            raise

    def startService(self):
        """
        Create the store and queue directories, clear what a crash left
        half-received, resume the queue and start serving.

        @raise ListenError: a port could not be bound.
        """
        self._loadTLS()
        self._prepareDirectories()
        self.deliveryPool.start()
        self.commitPool.start()
        try:
            service.MultiService.startService(self)
        except ListenError:
            self.stopService()
            raise

    def _prepareDirectories(self):
        os.makedirs(self.config.storage.path, mode=0o700, exist_ok=True)
        for name in self.context.queue.create():
            self.log.info(
                "{queueId}: removed a partly received message left by an earlier "
                "run (it never got a 250)",
                queueId=name,
            )

    def stopService(self):
        """
        Stop listening and let deliveries under way finish, then stop the
        delivery threads.
        """
        d = defer.maybeDeferred(service.MultiService.stopService, self)

        def stopPool(result):
            for pool in (self.deliveryPool, self.commitPool):
                if pool.started:
                    pool.stop()
            return result

        return d.addBoth(stopPool)

    # -- the embedding API (docs/embedding.md)

    def submit(self, sender, recipients, message):
        """
        Queue a message from Python, as SMTP would (fsynced before this
        returns), and wait for each recipient's first outcome.

        @param sender: the envelope sender, C{""} for C{<>}.
        @param recipients: addresses; local aliases are expanded.
        @param message: the message, L{bytes} with LF or CRLF line endings.
        @return: a Deferred firing with a L{dict} of address to
            L{mailplat.queue.envelope.DeliveryResult} (C{state} delivered,
            deferred or failed).
        """
        return self._submitter.submit(sender, recipients, message)

    def subscribe(self, callback):
        """
        Call C{callback(event)} with every L{mailplat.events.MailEvent}:
        accepted, delivered, deferred, bounced, newMail.

        @return: a callable that unsubscribes.
        """
        return self.events.subscribe(callback)

    def addUser(self, address, password):
        """
        Add a user or change their password (hashed in a thread).

        @return: a Deferred.
        """
        return self.context.runBlocking(addUser, self.context, address, password)

    def removeUser(self, address):
        """
        Remove a user (their mail is kept).

        @return: a Deferred; it fails with L{KeyError} for an unknown user.
        """
        return self.context.runBlocking(self.context.users.delete, address)

    def setAlias(self, address, targets):
        """
        Add or replace an alias in the aliases file (C{domains.aliases_file}
        must be set).

        @return: a Deferred; it fails with
            L{mailplat.aliases.AliasFileError} for a loop or a bad address.
        """
        return self.context.runBlocking(
            self.context.recipients.aliases.set, address, targets
        )

    def removeAlias(self, address):
        """
        @return: a Deferred; it fails with L{KeyError} for an unknown alias.
        """
        return self.context.runBlocking(self.context.recipients.aliases.delete, address)

    def listeningPorts(self):
        """
        @return: a L{dict} of listener name to its bound L{IListeningPort}
            (handy with C{tcp:0} endpoints in tests and embedding).
        """
        return {name: child.port for name, child in self.listeners.items()}
