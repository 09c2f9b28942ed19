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
    # Credential checkers for this listener only (else [auth] checkers).
    checkers: tuple = None
    # SASL mechanisms for this listener only (else [auth] mechanisms).
    mechanisms: tuple = None


@dataclass(frozen=True)
class SMTPConfig:
    maxMessageSize: int = 25 * 1024 * 1024
    maxRecipients: int = 100
    maxCommandLine: int = 2048
    commandTimeout: float = 300.0
    dataTimeout: float = 600.0
    maxErrors: int = 20
    # RFC 5321 6.3: a loop is detected by counting Received headers.
    maxReceivedHeaders: int = 50
    # The whole session, however busy the client keeps it.
    sessionTimeout: float = 1800.0
    maxConnections: int = 500
    maxConnectionsPerIP: int = 20
    # Wait this long before the greeting; a client that talks first is a
    # spammer that does not wait for replies (Postfix's postscreen).
    greetPause: float = 0.0
    # "cannot": VRFY/EXPN answer 252 2.1.5 (no user enumeration);
    # "verify": 250 for a deliverable address, 550 5.1.1 otherwise.
    vrfy: str = "cannot"
    # Clients from these networks may relay without AUTH (CIDR strings).
    trustedNetworks: tuple = ()
    # Failed AUTH from one address: each failure doubles the extra wait,
    # up to authThrottleMax, forgotten after authThrottleWindow.
    authThrottleMax: float = 30.0
    authThrottleWindow: float = 3600.0
    # Run every SMTP listener in one child process of its own
    # (mailplat.smtpprocess), so that receiving and delivering use two cores.
    separateProcess: bool = False


@dataclass(frozen=True)
class CheckConfig:
    """
    One C{[[check]]} table: a policy check by type name, with its options.
    """

    type: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PAMConfig:
    """
    The C{[auth.pam]} table: how the C{pam} checker asks PAM
    (L{mailplat.auth.pamchecker}).

    @ivar service: the PAM service name, configured in C{/etc/pam.d/SERVICE}.
    @ivar username: C{"localpart"} (PAM is asked about C{alice} for
        C{alice@example.org}) or C{"address"} (about the whole address).
    @ivar domains: the domains whose logins PAM checks, each in
        C{localDomains}; L{None}: every domain in C{localDomains}.
    """

    service: str = "mailplat"
    username: str = "localpart"
    domains: tuple = None


@dataclass(frozen=True)
class AuthConfig:
    usersFile: str = "passwd"
    # When set, the user database is this SQLite file instead.
    sqlite: str = None
    # Credential checkers tried in order: "userdb" (the user database),
    # "pam" (PAM, the pam extra) and twisted.cred.strcred strings
    # ("file:PATH", "unix", plugins).
    checkers: tuple = ("userdb",)
    failureDelay: float = 2.0
    pam: PAMConfig = field(default_factory=PAMConfig)
    # SASL mechanisms offered by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH,
    # in this order: built-in PLAIN and LOGIN, or plugins (mailplat.auth.sasl).
    mechanisms: tuple = ("PLAIN", "LOGIN")


@dataclass(frozen=True)
class QueueConfig:
    path: str = "queue"
    retryInitial: float = 60.0
    retryMax: float = 3600.0
    maxLifetime: float = 5 * 86400.0
    # RFC 3464 "delayed" notice for recipients still pending after this long
    # (0: never).
    delayWarning: float = 4 * 3600.0
    # Threads for queue and delivery disk work (apart from SMTP's).
    deliveryThreads: int = 2
    # Commit received messages in a process of their own
    # (mailplat.queue.commitprocess) rather than in threads of the process
    # that runs the SMTP sessions.
    commitProcess: bool = True


@dataclass(frozen=True)
class DNSConfig:
    """
    The resolver (L{mailplat.dns}): C{nameservers} empty means the system's
    C{/etc/resolv.conf}.
    """

    nameservers: tuple = ()
    port: int = 53
    timeout: float = 5.0


@dataclass(frozen=True)
class DKIMConfig:
    """
    DKIM signing keys (L{mailplat.trust.keys}): C{keyDir/DOMAIN/SELECTOR.key},
    written by C{mailplat dkim keygen}, used by the C{dkim_sign} check and
    C{mailplat dns check}.
    """

    keyDir: str = "dkim"


TLS_POLICIES = ("none", "may", "encrypt", "verify")


@dataclass(frozen=True)
class DeliveryConfig:
    """
    Outbound SMTP (L{mailplat.delivery.remote}).

    @ivar port: the TCP port of MX hosts (25; tests use a high port).
    @ivar tls: the default TLS policy for MX delivery: C{may} (opportunistic,
        unverified), C{encrypt} (required, unverified), C{verify} (required,
        certificate checked against the MX host name) or C{none}.
    @ivar tlsPolicy: per-domain TLS policies, a tuple of C{(domain, policy)}.
    @ivar caFile: PEM trust anchors for C{verify}; the system's when L{None}.
    @ivar maxPerDestination: concurrent connections to one destination.
    @ivar maxMessagesPerConnection: messages sent over one connection before
        it is closed.
    @ivar connectionIdle: how long an idle connection is kept for more
        messages to the same destination.
    """

    port: int = 25
    heloName: str = None
    tls: str = "may"
    tlsPolicy: tuple = ()
    caFile: str = None
    connectTimeout: float = 30.0
    maxPerDestination: int = 5
    maxMessagesPerConnection: int = 100
    connectionIdle: float = 2.0

    def policyFor(self, domain):
        domain = domain.lower().rstrip(".")
        for name, policy in self.tlsPolicy:
            if domain == name or (name.startswith(".") and domain.endswith(name)):
                return policy
        return self.tls


@dataclass(frozen=True)
class SmarthostConfig:
    """
    Relay outbound mail through one host instead of the recipients' MX hosts.

    @ivar host: a host name (its A/AAAA records are used, not its MX) or an
        IP address; L{None} when no smarthost is configured.
    @ivar domains: the recipient domains relayed this way; empty for all
        non-local mail.
    @ivar tls: C{encrypt} (default), C{verify}, C{may} or C{none}.
    @ivar username: for AUTH PLAIN (sent only over TLS).
    @ivar passwordFile: the file holding the password (first line).
    """

    host: str = None
    port: int = 587
    domains: tuple = ()
    tls: str = "encrypt"
    username: str = None
    passwordFile: str = None


@dataclass(frozen=True)
class StorageConfig:
    # The mailbox store: "maildir" (built in, the default), "memory" (built
    # in, nothing kept across restarts) or the name of an IMailStoreFactory
    # plugin.
    backend: str = "maildir"
    # The store's directory: Maildir trees and indexes for "maildir", what
    # a plugin keeps (as its docs say) for a plugin; unused by "memory".
    path: str = "mail"
    # Per-user storage quota in bytes (RFC 9208 STORAGE), enforced at
    # delivery, APPEND and COPY; 0 means none.
    quota: int = 0
    # How stale (seconds) the in-memory picture of a folder may get before
    # an IMAP command or a POP3 login looks at the Maildir directories again
    # for mail other programs dropped in; changes made through mailplat are
    # seen at once.  0 looks every time.
    rescanInterval: float = 1.0
    # A plugin backend's options: the other keys of [storage].
    options: dict = field(default_factory=dict)


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
    # Logged-in IMAP sessions one user may have at once; 0 means no limit.
    maxConnectionsPerUser: int = 20


@dataclass(frozen=True)
class Config:
    """
    The whole configuration.  Paths are absolute (the loader resolves relative
    paths against the directory of the config file).
    """

    hostname: str
    localDomains: tuple
    # Domains that have aliases but no mailboxes of their own.
    virtualDomains: tuple = ()
    postmaster: str = None
    recipientDelimiter: str = "+"
    aliasesFile: str = None
    checks: tuple = ()
    # [[target]] tables: plugin delivery targets, CheckConfig-shaped.
    targets: tuple = ()
    listeners: tuple = ()
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    dkim: DKIMConfig = field(default_factory=DKIMConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    smarthost: SmarthostConfig = field(default_factory=SmarthostConfig)

    def isLocalDomain(self, domain):
        """
        Whether mail for C{domain} is accepted here (a mailbox domain or an
        alias-only virtual domain).
        """
        domain = domain.lower().rstrip(".")
        return domain in self.localDomains or domain in self.virtualDomains
