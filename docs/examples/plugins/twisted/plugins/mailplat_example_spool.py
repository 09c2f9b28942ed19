"""
An example mailplat delivery target, as a Twisted plugin: it hands each
message for some domains to an application by writing it, durably, into a
directory the application watches (one file per message and recipient).

    [[target]]
    type = "example_spool"
    domains = ["app.example.test"]
    directory = "/var/lib/myapp/incoming"

SMTP accepts any recipient in those domains; the queue runner hands the
message here, and counts it delivered only once the file is fsynced and
renamed into place (the durability contract).
"""

import os

from twisted.plugin import IPlugin
from zope.interface import implementer, provider

from mailplat.interfaces import IDeliveryTarget, IDeliveryTargetFactory
from mailplat.queue.envelope import DELIVERED, DeliveryResult


@implementer(IDeliveryTarget)
class SpoolTarget:
    name = "example_spool"

    def __init__(self, domains, directory, runBlocking):
        self.domains = {d.lower() for d in domains}
        self.directory = directory
        self.runBlocking = runBlocking

    def accepts(self, recipient):
        return recipient.rpartition("@")[2].lower() in self.domains

    def deliver(self, item, recipients):
        return self.runBlocking(self._write, item, recipients)

    def _write(self, item, recipients):
        os.makedirs(self.directory, exist_ok=True)
        results = {}
        for rcpt in recipients:
            name = f"{item.id}.{rcpt}.eml"
            tmp = os.path.join(self.directory, "." + name)
            with open(tmp, "wb") as f:
                for chunk in item.contentChunks():
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.directory, name))
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            results[rcpt] = DeliveryResult(
                DELIVERED, "2.0.0", f"handed to the application as {name}", self.name
            )
        return results


@provider(IPlugin, IDeliveryTargetFactory)
class SpoolTargetFactory:
    name = "example_spool"

    @staticmethod
    def makeTarget(options, context):
        unknown = set(options) - {"domains", "directory"}
        if unknown:
            raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
        domains = options.get("domains")
        directory = options.get("directory")
        if not isinstance(domains, list) or not domains:
            raise ValueError("domains must be a list of domains")
        if not isinstance(directory, str):
            raise ValueError("directory must be a path")
        return SpoolTarget(domains, directory, context.runBlocking)
