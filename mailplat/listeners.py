"""
One service per configured listener: binds its endpoint, with implicit TLS
where the config says so.
"""

from twisted.application import service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory


class ListenError(Exception):
    """
    An endpoint could not be bound.  The message is one line naming the
    listener and its endpoint.
    """


class ListenerService(service.Service):
    """
    Binds one endpoint in L{privilegedStartService} (so that twistd can bind
    ports below 1024 before it drops privileges) and stops listening in
    L{stopService}.

    @ivar port: the L{IListeningPort} once bound.
    """

    log = Logger()

    def __init__(self, listener, makeFactory, reactor, tlsOptions):
        self.listener = listener
        self.name = "listen." + listener.name
        self.makeFactory = makeFactory
        self.reactor = reactor
        self.tlsOptions = tlsOptions
        self.port = None

    def buildFactory(self):
        """
        @return: the listener's protocol factory, wrapped in TLS for
            implicit TLS.
        """
        factory = self.makeFactory()
        if self.listener.tls == "implicit":
            factory = TLSMemoryBIOFactory(self.tlsOptions(), False, factory)
        return factory

    def bind(self):
        if self.port is not None:
            return
        factory = self.buildFactory()
        endpoint = serverFromString(self.reactor, self.listener.endpoint)
        result = []
        endpoint.listen(factory).addBoth(result.append)
        if not result:
            raise ListenError(
                f"cannot listen on {self.listener.endpoint} "
                f"(listen.{self.listener.name}): binding did not complete"
            )
        outcome = result[0]
        if not hasattr(outcome, "getHost"):
            reason = getattr(outcome.value, "socketError", None) or outcome.value
            reason = getattr(reason, "strerror", None) or str(reason)
            raise ListenError(
                f"cannot listen on {self.listener.endpoint} "
                f"(listen.{self.listener.name}): {reason}"
            )
        self.port = outcome
        host = outcome.getHost()
        self.log.info(
            "listening: {name} ({protocol}, tls={tls}{profile}) on {host}",
            name=self.listener.name,
            protocol=self.listener.protocol,
            tls=self.listener.tls,
            profile=(
                f", profile={self.listener.profile}"
                if self.listener.protocol == "smtp"
                else ""
            ),
            host=f"{getattr(host, 'host', host)}:{getattr(host, 'port', '')}",
        )

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self.bind()

    def startService(self):
        service.Service.startService(self)
        self.bind()

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
