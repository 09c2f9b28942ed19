"""
An example mailplat policy check, as a third-party Twisted plugin.

Put the directory that holds this C{twisted/plugins/} on C{sys.path} (for
instance with PYTHONPATH; there is no C{__init__.py} in C{twisted/} or
C{twisted/plugins/}), then name it in the config:

    [[check]]
    type = "example_blocklist"
    senders = ["spammer.example"]     # sender domains to refuse at MAIL
    helos = ["bad.example"]           # HELO names to refuse

mailplat finds it with twisted.plugin.getPlugins, like twistd finds its own
plugins.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer, provider

from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.policy.verdict import CONTINUE_VERDICT, reject


@implementer(ICheck)
class BlocklistCheck:
    """
    Refuses listed HELO names and sender domains.
    """

    name = "example_blocklist"
    stages = frozenset({"helo", "mail"})

    def __init__(self, senders, helos):
        self.senders = {d.lower() for d in senders}
        self.helos = {h.lower() for h in helos}

    def check(self, stage, facts):
        if stage == "helo" and facts.helo.lower() in self.helos:
            return reject(550, "5.7.1", "Go away", reason="HELO on the blocklist")
        if stage == "mail":
            domain = (facts.sender or "").rpartition("@")[2].lower()
            if domain in self.senders:
                return reject(
                    550, "5.7.1", f"<{facts.sender}>: Sender domain blocked",
                    reason="sender on the blocklist",
                )
        return CONTINUE_VERDICT


# getPlugins finds the module-level objects that provide IPlugin.
@provider(IPlugin, ICheckFactory)
class BlocklistFactory:
    name = "example_blocklist"

    @staticmethod
    def makeCheck(options, context):
        unknown = set(options) - {"senders", "helos"}
        if unknown:
            raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
        senders = options.get("senders", [])
        helos = options.get("helos", [])
        for key, value in (("senders", senders), ("helos", helos)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} must be a list of strings")
        return BlocklistCheck(senders, helos)

