"""
The typed configuration objects.  A L{Config} is built by
L{mailplat.config.loader} from TOML, or directly by an embedding application.
"""

from dataclasses import dataclass, field

PROTOCOLS = ("smtp", "pop3", "imap")
TLS_MODES = ("none", "starttls", "implicit")
SMTP_PROFILES = ("mx", "submission", "submissions")


@dataclass(frozen=True)
class ListenerConfig:
    """
    One listening endpoint.

    @ivar name: the table name under C{[listen]}, used in logs.
    @ivar protocol: C{smtp}, C{pop3} or C{imap}.
    @ivar endpoint: a Twisted server endpoint string such as
        C{tcp:2525:interface=127.0.0.1}.
    @ivar tls: C{starttls} (offer STARTTLS/STLS), C{implicit} (TLS from the
        first byte, RFC 8314) or C{none}.
    @ivar profile: for SMTP, C{mx}, C{submission} or C{submissions};
        L{None} for POP3 and IMAP.
    """

    name: str
    protocol: str
    endpoint: str
    tls: str = "starttls"
    profile: str = None


@dataclass(frozen=True)
class SMTPConfig:
    maxMessageSize: int = 25 * 1024 * 1024
    maxRecipients: int = 100
    maxCommandLine: int = 2048
    commandTimeout: float = 300.0
    dataTimeout: float = 600.0
    maxErrors: int = 20
    # RFC 5321 4.5.3.1.8 asks for at least 100; Postfix uses 100 too.
    maxReceivedHeaders: int = 50


@dataclass(frozen=True)
class AuthConfig:
    usersFile: str = "passwd"
    failureDelay: float = 2.0


@dataclass(frozen=True)
class QueueConfig:
    path: str = "queue"
    retryInitial: float = 60.0
    retryMax: float = 3600.0
    maxLifetime: float = 5 * 86400.0


@dataclass(frozen=True)
class StorageConfig:
    path: str = "mail"


@dataclass(frozen=True)
class TLSConfig:
    certificate: str = None
    key: str = None


@dataclass(frozen=True)
class AccessConfig:
    """
    Limits shared by POP3 and IMAP.
    """

    maxLineLength: int = 8192
    maxLiteralSize: int = 64 * 1024 * 1024
    # RFC 3501 5.4: at least 30 minutes after login; RFC 1939 3: at least 10.
    imapTimeout: float = 1800.0
    pop3Timeout: float = 600.0


@dataclass(frozen=True)
class Config:
    """
    The whole configuration.  Paths are absolute (the loader resolves relative
    paths against the directory of the config file).
    """

    hostname: str
    localDomains: tuple
    listeners: tuple = ()
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    access: AccessConfig = field(default_factory=AccessConfig)

    def isLocalDomain(self, domain):
        return domain.lower().rstrip(".") in self.localDomains
