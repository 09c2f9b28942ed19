"""
The outbound delivery targets a config describes: the smarthost (when
configured) and the MX delivery, in the order the queue runner asks them.
"""

from mailplat.delivery.remote import MXRoute, RemoteDelivery, SmarthostRoute


def _passwordReader(path):
    def read():
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")

    return read


def outboundTargets(config, resolver, clock, runBlocking, connect=None):
    """
    @param config: the L{mailplat.config.schema.Config}.
    @param resolver: the L{mailplat.dns.Resolver}.
    @param connect: see L{RemoteDelivery} (tests).
    @return: a list of L{mailplat.interfaces.IDeliveryTarget}: a smarthost
        target when C{[smarthost]} names a host (for all non-local mail, or
        for its C{domains}), then MX delivery for everything else.
    """
    d = config.delivery
    common = dict(
        isLocalDomain=config.isLocalDomain,
        clock=clock,
        runBlocking=runBlocking,
        heloName=d.heloName or config.hostname,
        connect=connect,
        connectTimeout=d.connectTimeout,
        maxPerDestination=d.maxPerDestination,
        maxMessagesPerConnection=d.maxMessagesPerConnection,
        connectionIdle=d.connectionIdle,
        caFile=d.caFile,
    )
    targets = []
    s = config.smarthost
    if s.host is not None:
        auth = None
        if s.username is not None:
            read = _passwordReader(s.passwordFile)

            def auth(read=read, user=s.username):
                return runBlocking(read).addCallback(lambda pw: (user, pw))

        route = SmarthostRoute(resolver, s.host, s.port, s.tls, s.domains, auth)
        targets.append(RemoteDelivery(route, **common))
        if not s.domains:
            return targets
    route = MXRoute(resolver, config.hostname, d.port, d.policyFor)
    targets.append(RemoteDelivery(route, **common))
    return targets
