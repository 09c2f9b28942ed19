"""
The policy layer: verdicts, the pipeline, the registry of checks, and the
example third-party check in docs/examples/plugins.
"""

import os

import twisted.plugins
from twisted.internet import defer
from twisted.plugin import getPlugins
from twisted.trial import unittest
from zope.interface import implementer, provider
from zope.interface.verify import verifyObject

from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.policy import verdict as V
from mailplat.policy.builtin import BUILTINS
from mailplat.policy.facts import SessionFacts
from mailplat.policy.pipeline import Pipeline
from mailplat.policy.registry import PolicyError, buildPipeline, checkFactories
from mailplat.testing import makeContext
from tests.unit.test_smtp_server import SessionMixin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "docs", "examples", "plugins")


@implementer(ICheck)
class Recorder:
    def __init__(self, name, stages, verdict, calls):
        self.name = name
        self.stages = frozenset(stages)
        self.verdict = verdict
        self.calls = calls

    def check(self, stage, facts):
        self.calls.append((self.name, stage))
        return defer.succeed(self.verdict)


class PipelineTests(unittest.TestCase):
    def test_firstFinalVerdictWins(self):
        calls = []
        stop = V.reject(550, "5.7.1", "no")
        pipeline = Pipeline([
            Recorder("a", {"mail"}, V.CONTINUE_VERDICT, calls),
            Recorder("b", {"rcpt"}, V.accept(), calls),
            Recorder("c", {"mail"}, stop, calls),
            Recorder("d", {"mail"}, V.accept(), calls),
        ])
        self.assertEqual(self.successResultOf(pipeline.run("mail", None)), stop)
        self.assertEqual(calls, [("a", "mail"), ("c", "mail")])
        self.assertEqual(
            self.successResultOf(pipeline.run("helo", None)), V.CONTINUE_VERDICT
        )

    def test_verdictHelpers(self):
        self.assertRaises(ValueError, V.reject, 450, "4.7.1", "x")
        self.assertRaises(ValueError, V.tempfail, 550, "5.7.1", "x")
        self.assertEqual(V.quarantine("spam").action, V.QUARANTINE)
        self.assertEqual(V.disconnect(421, "4.7.0", "bye").reply.toBytes(), b"421 4.7.0 bye\r\n")

    def test_builtinsProvideInterfaces(self):
        ctx = makeContext(self.mktemp())
        for factory in BUILTINS:
            verifyObject(ICheckFactory, factory)
            verifyObject(ICheck, factory.makeCheck({}, ctx))


class RegistryTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()

    def context(self, checks, plugins=()):
        return makeContext(self.dir, overrides={"check": checks}, plugins=plugins)

    def test_defaultOrder(self):
        ctx = self.context([])
        self.assertEqual(
            [c.name for c in ctx.policy.checks],
            ["connection_limits", "greet_pause", "submission", "recipients", "relay", "mail_loop"],
        )

    def test_configuredChecksGoBeforeRecipientDecisions(self):
        ctx = self.context(
            [{"type": "mail_loop"}, {"type": "example_blocklist", "senders": ["x.example"]}],
            plugins=[_exampleFactory()],
        )
        self.assertEqual(
            [c.name for c in ctx.policy.checks],
            ["connection_limits", "greet_pause", "mail_loop", "example_blocklist",
             "submission", "recipients", "relay"],
        )

    def test_problemsAreListed(self):
        @provider(ICheckFactory)
        class NotACheck:
            name = "not_a_check"

            @staticmethod
            def makeCheck(options, context):
                return object()

        e = self.assertRaises(
            PolicyError,
            self.context,
            [
                {"type": "nonesuch"},
                {"type": "relay", "networks": ["x"]},
                {"type": "not_a_check"},
                {"type": "example_blocklist", "colour": "red"},
                {"type": "mail_loop"},
                {"type": "mail_loop"},
            ],
            [NotACheck, _exampleFactory()],
        )
        self.assertEqual(
            e.problems,
            [
                "check[0]: unknown check type 'nonesuch' (known: authentication_results, "
                "connection_limits, dkim, dkim_sign, dmarc, dnsbl, "
                "example_blocklist, greet_pause, iprev, mail_loop, not_a_check, recipients, "
                "relay, spf, submission)",
                "check[1] (relay): the built-in check 'relay' takes no options (got "
                "networks); its settings are in [smtp]",
                "check[2] (not_a_check): the check does not provide ICheck",
                "check[3] (example_blocklist): unknown options: colour",
                "check[5]: 'mail_loop' is listed twice",
            ],
        )

    def test_duplicateNames(self):
        @provider(ICheckFactory)
        class Impostor:
            name = "relay"

        e = self.assertRaises(PolicyError, checkFactories, [Impostor])
        self.assertEqual(
            e.problems,
            [f"check plugin {__name__}: the name 'relay' is taken by mailplat.policy.builtin"],
        )


def _exampleFactory():
    """
    The example plugin, found the way mailplat finds plugins: getPlugins over
    twisted.plugins with the example directory on the plugin path.
    """
    path = os.path.join(EXAMPLES, "twisted", "plugins")
    added = path not in twisted.plugins.__path__
    if added:
        twisted.plugins.__path__.append(path)
    try:
        found = [p for p in getPlugins(ICheckFactory) if p.name == "example_blocklist"]
    finally:
        if added:
            twisted.plugins.__path__.remove(path)
    assert len(found) == 1, found
    return found[0]


class ExamplePluginTests(SessionMixin, unittest.TestCase):
    overrides = {
        "check": [
            {"type": "example_blocklist", "senders": ["spammer.example"], "helos": ["bad.example"]}
        ]
    }

    def setUp(self):
        from mailplat import testing

        self.ctx = testing.makeContext(
            self.mktemp(), tlsOptions=object(), overrides=self.overrides,
            plugins=[_exampleFactory()],
        )
        from mailplat.config.schema import ListenerConfig

        self.listener = ListenerConfig("test", "smtp", "tcp:0", tls="starttls", profile="mx")

    def test_exampleCheckRejects(self):
        proto, t = self.connect()
        self.assertEqual(self.send(proto, t, b"HELO bad.example\r\n"), b"550 5.7.1 Go away\r\n")
        self.send(proto, t, b"EHLO good.example\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<x@Spammer.example>\r\n"),
            b"550 5.7.1 <x@spammer.example>: Sender domain blocked\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<x@fine.example>\r\n"), b"250 2.1.0 Ok\r\n"
        )


class SubmissionPolicyTests(SessionMixin, unittest.TestCase):
    profile = "submission"
    overrides = {"domains": {"local": ["example.test"], "aliases_file": "aliases"}}

    def setUp(self):
        SessionMixin.setUp(self)
        with open(os.path.join(os.path.dirname(self.ctx.config.auth.usersFile), "aliases"), "w") as f:
            f.write("sales@example.test: demo@example.test, other@elsewhere.example\n")

    def session(self):
        import base64
        from tests.tlsfakes import ImplicitTLSTransport

        proto, t = self.connect(ImplicitTLSTransport)
        token = base64.b64encode(b"\0demo@example.test\0demo")
        self.send(proto, t, b"EHLO c\r\nAUTH PLAIN " + token + b"\r\n")
        return proto, t

    def test_senderMayBeAnAliasOrExtension(self):
        for sender in (b"sales@example.test", b"demo+list@example.test", b"DEMO@example.test"):
            proto, t = self.session()
            self.assertEqual(
                self.send(proto, t, b"MAIL FROM:<" + sender + b">\r\n"), b"250 2.1.0 Ok\r\n"
            )

    def test_fromHeaderMustBeOwned(self):
        proto, t = self.session()
        self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n")
        self.assertEqual(
            self.send(proto, t, b"From: Boss <ceo@example.test>\r\n\r\nwire money\r\n.\r\n"),
            b"553 5.7.1 <ceo@example.test>: From: header address not owned by user "
            b"demo@example.test\r\n",
        )
        self.assertEqual(self.activeFiles(), [])
        self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n")
        out = self.send(proto, t, b"From: Sales <sales@example.test>\r\n\r\nhi\r\n.\r\n")
        self.assertTrue(out.startswith(b"250 2.0.0 Ok: queued as "))


@provider(ICheckFactory)
class _TaggingFactory:
    """
    A data-stage check that adds a header field and quarantines.
    """

    name = "tagging"

    @staticmethod
    def makeCheck(options, context):
        @implementer(ICheck)
        class Tagging:
            name = "tagging"
            stages = frozenset({"data"})

            def check(self, stage, facts):
                content = open(facts.spool.tmpPath, "rb").read()[facts.spool.offset:]
                assert content.startswith(b"Received: from c ")
                facts.extraHeaders.append(b"Authentication-Results: mail.example.test; none\r\n")
                return V.quarantine("test")

        return Tagging()


class ExtraHeadersTests(SessionMixin, unittest.TestCase):
    overrides = {"check": [{"type": "tagging"}]}

    def setUp(self):
        from mailplat import testing
        from mailplat.config.schema import ListenerConfig

        self.ctx = testing.makeContext(
            self.mktemp(), tlsOptions=object(), overrides=self.overrides,
            plugins=[_TaggingFactory],
        )
        self.listener = ListenerConfig("test", "smtp", "tcp:0", tls="starttls", profile="mx")

    def test_headersAndQuarantinePersist(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<demo@example.test>\r\n")
        self.send(proto, t, b"DATA\r\n")
        out = self.send(proto, t, b"Subject: q\r\n\r\nbody\r\n.\r\n")
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(out, f"250 2.0.0 Ok: queued as {item.id}\r\n".encode())
        loaded = self.ctx.queue.load(item.id)
        self.assertEqual(loaded.envelope.params["quarantine"], "test")
        self.assertEqual(
            loaded.envelope.headers, ["Authentication-Results: mail.example.test; none\r\n"]
        )
        content = b"".join(loaded.contentChunks())
        self.assertTrue(content.startswith(
            b"Authentication-Results: mail.example.test; none\r\nReceived: from c "))


class BrokenPluginTests(unittest.TestCase):
    """
    A plugin module that fails to import stops start-up with a message that
    names it, instead of turning silently into an unknown check type.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.plugins = os.path.join(self.dir, "twisted", "plugins")
        os.makedirs(self.plugins)
        twisted.plugins.__path__.append(self.plugins)
        self.addCleanup(twisted.plugins.__path__.remove, self.plugins)

    def write(self, name, text):
        path = os.path.join(self.plugins, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_ourBrokenPluginStopsStartup(self):
        path = self.write("mailplat_broken_check.py", "import nonexistent_module_xyz\n")
        e = self.assertRaises(PolicyError, checkFactories)
        self.assertEqual(
            e.problems,
            [f"plugin {path} failed to load: ModuleNotFoundError: No module named "
             "'nonexistent_module_xyz'"],
        )
        # getPlugins logged the import error too (trial counts it).
        self.flushLoggedErrors(ModuleNotFoundError)

    def test_otherBrokenPluginIsAHintForUnknownTypes(self):
        path = self.write("thirdparty_check.py", "raise RuntimeError('half-installed')\n")
        self.assertIn("relay", checkFactories())
        e = self.assertRaises(
            PolicyError, makeContext, self.mktemp(),
            overrides={"check": [{"type": "thirdparty"}]}, plugins=None,
        )
        [problem] = e.problems
        self.assertTrue(problem.startswith("check[0]: unknown check type 'thirdparty' (known: "))
        self.assertTrue(problem.endswith(
            f"; plugin {path} failed to load: RuntimeError: half-installed"), problem)
        self.flushLoggedErrors(RuntimeError)


class TargetPluginTests(unittest.TestCase):
    def spoolFactory(self):
        path = os.path.join(EXAMPLES, "twisted", "plugins")
        twisted.plugins.__path__.append(path)
        try:
            from mailplat.interfaces import IDeliveryTargetFactory

            [factory] = [p for p in getPlugins(IDeliveryTargetFactory)
                         if p.name == "example_spool"]
        finally:
            twisted.plugins.__path__.remove(path)
        return factory

    def test_problemsAreListed(self):
        from mailplat.delivery.plugins import buildTargets

        ctx = makeContext(self.mktemp(), overrides={"target": [
            {"type": "nonesuch"},
            {"type": "example_spool", "domains": "x"},
            {"type": "example_spool", "domains": ["a.example"], "colour": 1},
        ]})
        e = self.assertRaises(PolicyError, buildTargets, ctx, [self.spoolFactory()])
        self.assertEqual(e.problems, [
            "target[0]: unknown target type 'nonesuch' (known: example_spool)",
            "target[1] (example_spool): domains must be a list of domains",
            "target[2] (example_spool): unknown options: colour",
        ])

    def test_recipientsOfATargetAreAccepted(self):
        from mailplat.delivery.plugins import buildTargets
        from mailplat.interfaces import IDeliveryTarget

        ctx = makeContext(self.mktemp(), overrides={"target": [
            {"type": "example_spool", "domains": ["app.example"], "directory": "/nonexistent"},
        ]})
        ctx.targets = buildTargets(ctx, [self.spoolFactory()])
        verifyObject(IDeliveryTarget, ctx.targets[0])
        facts = SessionFacts(context=ctx, peer="192.0.2.1", listener="t", profile="mx")
        facts.recipient = "Orders@App.example"
        recipients = [c for c in ctx.policy.checks if c.name == "recipients"][0]
        verdict = self.successResultOf(defer.maybeDeferred(recipients.check, "rcpt", facts))
        self.assertEqual((verdict.action, verdict.recipients), (V.ACCEPT, ("orders@app.example",)))
