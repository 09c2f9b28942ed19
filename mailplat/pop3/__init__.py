"""
POP3 access to the mailplat store (RFC 1939, RFC 2449, RFC 2595, RFC 5034).
"""

from mailplat.pop3.server import POP3Factory, POP3Server

__all__ = ["POP3Factory", "POP3Server"]
