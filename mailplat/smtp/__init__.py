"""
The ESMTP server.
"""
