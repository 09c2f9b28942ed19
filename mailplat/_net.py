"""
Socket options for server connections.
"""


def setNoDelay(transport):
    """
    Turn Nagle's algorithm off on C{transport} (or the TCP transport under a
    TLS layer).  Replies are written in several pieces (a FETCH literal, then
    its closing parenthesis and the tagged OK); with Nagle on, the later
    pieces wait for the peer's delayed ACK, about 40 ms per reply.
    """
    seen = 0
    while transport is not None and seen < 4:
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:
                pass
            return
        transport = getattr(transport, "transport", None)
        seen += 1
