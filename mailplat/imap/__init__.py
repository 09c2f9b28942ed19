"""
IMAP4rev1 access to the mail store (RFC 3501): L{IMAPFactory} builds the
protocol for a listener.
"""

from mailplat.imap.server import IMAPFactory, IMAPServer

__all__ = ["IMAPFactory", "IMAPServer"]
