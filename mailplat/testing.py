"""
Public test helpers: fakes that mailplat's tests and plugin authors' tests can
use.  Nothing here opens a socket.
"""

import os

from twisted.internet import defer
from twisted.internet.task import Clock

from mailplat.auth.checkers import portalFor, userDatabase
from mailplat.auth.passwords import hashPassword
from mailplat.auth.realm import MailRealm
from mailplat.auth.sasl import buildRegistry
from mailplat.config import configFromDict
from mailplat.auth.throttle import AuthThrottle
from mailplat.context import ServerContext
from mailplat.policy.registry import buildPipeline
from mailplat.recipients import resolverFor
from mailplat.queue.commit import GroupCommitter
from mailplat.queue.store import QueueStore
from mailplat.storage.maildir import MaildirStore


def runSynchronously(f, *args, **kwargs):
    """
    A stand-in for C{deferToThread} that runs C{f} at once, for unit tests.
    """
    return defer.maybeDeferred(f, *args, **kwargs)


_hashes = {}


def cachedHash(password):
    """
    An argon2id hash of C{password}, computed once per test run (hashing is
    slow by design).
    """
    if password not in _hashes:
        _hashes[password] = hashPassword(password)
    return _hashes[password]


class RecordingRunner:
    """
    A queue runner stand-in that records what it was given.
    """

    def __init__(self):
        self.enqueued = []

    def enqueue(self, item):
        self.enqueued.append(item)


def makeContext(
    directory,
    users=(("demo@example.test", "demo"),),
    domains=("example.test",),
    clock=None,
    runBlocking=runSynchronously,
    tlsOptions=None,
    overrides=None,
    plugins=(),
    saslPlugins=(),
):
    """
    Build a L{ServerContext} over real files in C{directory} (a test's temporary
    directory), with a L{Clock}, synchronous blocking calls and a
    L{RecordingRunner}.

    @param users: C{(address, password)} pairs to create.
    @param overrides: extra config tables, merged into the config dict.
    @param plugins: the L{ICheckFactory} plugins available to C{[[check]]}
        tables (none by default: tests do not scan C{sys.path}).
    @param saslPlugins: the L{ISASLMechanismFactory} plugins available to
        C{[auth] mechanisms} (none by default).
    """
    os.makedirs(directory, exist_ok=True)
    data = {"hostname": "mail.example.test", "domains": {"local": list(domains)}}
    for key, value in (overrides or {}).items():
        data[key] = value
    config = configFromDict(data, directory)
    db = userDatabase(config)
    for address, password in users:
        db.setPassword(address, cachedHash(password))
    clock = clock if clock is not None else Clock()
    store = MaildirStore(config.storage.path, quota=config.storage.quota)
    queue = QueueStore(config.queue.path)
    queue.create()
    portal = portalFor(
        config.auth.checkers, db, MailRealm(store), clock, runBlocking,
        config.auth.failureDelay, config,
    )
    context = ServerContext(
        config=config,
        portal=portal,
        store=store,
        users=db,
        queue=queue,
        runner=RecordingRunner(),
        tlsOptions=tlsOptions,
        clock=clock,
        runBlocking=runBlocking,
        callFromThread=lambda f, *a: f(*a),
        recipients=resolverFor(config, db),
        committer=GroupCommitter(queue, runBlocking),
        authThrottle=AuthThrottle(
            clock,
            base=config.auth.failureDelay,
            maximum=config.smtp.authThrottleMax,
            window=config.smtp.authThrottleWindow,
        ),
    )
    context.policy = buildPipeline(context, plugins=plugins)
    context.sasl = buildRegistry(config, plugins=saslPlugins).select(
        config.auth.mechanisms
    )
    return context
