"""
Load and validate a TOML config.  Every problem is collected and reported
together, each with its table and key, in one L{ConfigError}.
"""

import os
import tomllib

from twisted.internet.endpoints import serverFromString

from mailplat.aliases import AliasFileError, parseAliases
from mailplat.auth.userdb import UserFileError, parseUserFile
from mailplat.config import schema
from mailplat.config.units import parseDuration, parseSize

# The stores [storage] backend names without a plugin (as
# mailplat.storage.backends.BUILTIN_STORES, which imports more than the
# loader needs).
BUILTIN_STORES = ("maildir", "memory")

_REQUIRED = object()


class ConfigError(Exception):
    """
    The config is invalid.  C{errors} lists every problem as C{"table.key:
    message"} strings.
    """

    def __init__(self, source, errors):
        self.source = source
        self.errors = list(errors)
        Exception.__init__(self, self.describe())

    def describe(self):
        lines = [f"{self.source}: {len(self.errors)} configuration error(s):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


class _Table:
    """
    A view of one TOML table that records what was read, so that unknown keys
    can be reported, and collects errors instead of raising.
    """

    def __init__(self, errors, name, data):
        self.errors = errors
        self.name = name
        self.data = data if isinstance(data, dict) else {}
        self.seen = set()
        if not isinstance(data, dict):
            self.error(None, f"expected a table, got {type(data).__name__}")

    def where(self, key):
        if key is None:
            return self.name or "(top level)"
        return f"{self.name}.{key}" if self.name else key

    def error(self, key, message):
        self.errors.append(f"{self.where(key)}: {message}")

    def get(self, key, convert, default=_REQUIRED):
        self.seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                self.error(key, "missing required key")
                return None
            return default
        try:
            return convert(self.data[key])
        except (ValueError, TypeError) as e:
            self.error(key, str(e))
            return default if default is not _REQUIRED else None

    def table(self, key):
        self.seen.add(key)
        return _Table(self.errors, self.where(key), self.data.get(key, {}))

    def finish(self):
        for key in self.data:
            if key not in self.seen:
                self.error(key, "unknown key")


def _string(value):
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _choice(*choices):
    def convert(value):
        value = _string(value)
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, not {value!r}")
        return value

    return convert


def _stringList(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return value


def _address(value):
    value = _string(value).strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or any(c.isspace() or c in ",:<>" for c in value):
        raise ValueError(f"{value!r} is not an address")
    _domain(domain)
    return value


def _networks(value):
    import ipaddress

    out = []
    for item in _stringList(value):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not a network such as 192.0.2.0/24") from None
    return tuple(out)


def _typedTables(top, data, key, errors):
    """
    An array of tables (C{[[check]]}, C{[[target]]}), each with a C{type}
    and the options of that type.
    """
    raw = data.get(key, []) if isinstance(data, dict) else []
    top.seen.add(key)
    if not isinstance(raw, list):
        top.error(key, f"use [[{key}]] tables")
        return []
    found = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict) or not isinstance(table.get("type"), str):
            errors.append(f"{key}[{i}].type: missing required key")
            continue
        options = {k: v for k, v in table.items() if k != "type"}
        found.append(schema.CheckConfig(table["type"], options))
    return found


def _checkerSpecs(value):
    """
    A list of checker strings: C{"userdb"}, C{"pam"} (when python-pam is
    installed) or a twisted.cred.strcred string whose type a checker factory
    plugin provides.
    """
    from twisted.cred import strcred

    from mailplat.auth.pamchecker import PAM, PAMUnavailable, loadPAM

    specs = _stringList(value)
    if not specs:
        raise ValueError("list at least one checker")
    known = {f.authType for f in strcred.findCheckerFactories()}
    for spec in specs:
        kind = spec.split(":", 1)[0]
        if spec == PAM:
            try:
                loadPAM()
            except PAMUnavailable as e:
                raise ValueError(f"{spec!r}: {e}") from None
        elif spec != "userdb" and kind not in known:
            raise ValueError(
                f"unknown checker {spec!r} (userdb, pam, or one of: "
                f"{', '.join(sorted(known))})"
            )
    return tuple(specs)


def _pamService(value):
    value = _string(value)
    # A file name in /etc/pam.d.
    if not value or "/" in value or "\0" in value or value in (".", ".."):
        raise ValueError(f"{value!r} is not a PAM service name")
    return value


def _pamConfig(auth, localDomains):
    """
    The C{[auth.pam]} table.
    """
    from mailplat.auth.pamchecker import USERNAME_MODES

    t = auth.table("pam")
    d = schema.PAMConfig()
    service = t.get("service", _pamService, d.service)
    username = t.get("username", _choice(*USERNAME_MODES), d.username)
    domains = None
    given = t.get("domains", _stringList, None)
    if given is not None:
        domains = []
        for name in given:
            try:
                name = _domain(name)
            except ValueError as e:
                t.error("domains", str(e))
                continue
            if localDomains and name not in localDomains:
                t.error("domains", f"{name} is not in domains.local")
            domains.append(name)
        domains = tuple(domains)
    t.finish()
    return schema.PAMConfig(service=service, username=username, domains=domains)
def _mechanismNames(value):
    """
    A list of SASL mechanism names (compared as upper-case, RFC 4422 3.1):
    the built-in C{PLAIN} and C{LOGIN}, or a name an
    L{ISASLMechanismFactory} plugin provides.
    """
    from mailplat.auth.sasl import BUILTINS, knownMechanismNames
    from mailplat.plugins import unknownName

    names = [name.upper() for name in _stringList(value)]
    if not names:
        raise ValueError("list at least one mechanism")
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{name!r} is listed twice")
    builtin = {f.name for f in BUILTINS}
    if any(name not in builtin for name in names):
        known, failures = knownMechanismNames()
        for name in names:
            if name not in known:
                raise ValueError(unknownName("SASL mechanism", name, known, failures))
    return tuple(names)


def _domain(value):
    value = _string(value).strip().lower().rstrip(".")
    labels = value.split(".")
    if not value or any(
        not label or len(label) > 63 or label.startswith("-") or label.endswith("-")
        for label in labels
    ):
        raise ValueError(f"{value!r} is not a domain name")
    return value


class _EndpointCheckReactor:
    """
    Stands in for the reactor while an endpoint string is parsed: parsing
    opens no socket, and the config is loaded before a reactor is chosen.
    """


def _endpoint(value):
    value = _string(value)
    if value.split(":", 1)[0] not in ("tcp", "tcp6", "unix"):
        raise ValueError(
            f"{value!r}: use a tcp:, tcp6: or unix: endpoint; TLS is set with 'tls'"
        )
    try:
        serverFromString(_EndpointCheckReactor(), value)
    except Exception as e:
        raise ValueError(f"bad endpoint string {value!r}: {e}") from None
    return value


def _checkPEM(table, key, path, kind):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        table.error(key, f"cannot read {path}: {e.strerror}")
        return
    try:
        if kind == "certificate":
            x509.load_pem_x509_certificates(data)
        else:
            load_pem_private_key(data, password=None)
    except Exception as e:
        table.error(key, f"{path} is not a PEM {kind}: {e}")


def _port(value):
    value = _integer(value)
    if not 0 < value < 65536:
        raise ValueError("expected a TCP port, 1 to 65535")
    return value


def _ipAddress(value):
    import ipaddress

    return str(ipaddress.ip_address(_string(value)))


def _host(value):
    """
    A host name, or an IP address (bare or in brackets).
    """
    import ipaddress

    value = _string(value).strip()
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        return _domain(value)


def _outbound(top, path):
    """
    The C{[dns]}, C{[delivery]} and C{[smarthost]} tables (outbound mail).
    """
    t = top.table("dns")
    d = schema.DNSConfig()
    nameservers = []
    for item in t.get("nameservers", _stringList, []) or []:
        try:
            nameservers.append(_ipAddress(item))
        except ValueError:
            t.error("nameservers", f"{item!r} is not an IP address")
    dnsConfig = schema.DNSConfig(
        nameservers=tuple(nameservers),
        port=t.get("port", _port, d.port),
        timeout=t.get("timeout", parseDuration, d.timeout),
    )
    t.finish()

    t = top.table("delivery")
    d = schema.DeliveryConfig()
    policies = []
    pt = t.table("tls_policy")
    for domain in pt.data:
        policy = pt.get(domain, _choice(*schema.TLS_POLICIES), None)
        try:
            name = ("." if domain.startswith(".") else "") + _domain(domain.lstrip("."))
        except ValueError as e:
            pt.error(domain, str(e))
            continue
        if policy is not None:
            policies.append((name, policy))
    delivery = schema.DeliveryConfig(
        port=t.get("port", _port, d.port),
        heloName=t.get("helo_name", _domain, None),
        tls=t.get("tls", _choice(*schema.TLS_POLICIES), d.tls),
        tlsPolicy=tuple(policies),
        caFile=t.get("ca_file", path, None),
        connectTimeout=t.get("connect_timeout", parseDuration, d.connectTimeout),
        maxPerDestination=t.get(
            "max_per_destination", _integer, d.maxPerDestination
        ),
        maxMessagesPerConnection=t.get(
            "max_messages_per_connection", _integer, d.maxMessagesPerConnection
        ),
        connectionIdle=t.get("connection_idle", parseDuration, d.connectionIdle),
    )
    if delivery.maxPerDestination == 0:
        t.error("max_per_destination", "must be at least 1")
    if delivery.maxMessagesPerConnection == 0:
        t.error("max_messages_per_connection", "must be at least 1")
    if delivery.caFile is not None and not os.path.exists(delivery.caFile):
        t.error("ca_file", f"{delivery.caFile} does not exist")
    t.finish()

    t = top.table("smarthost")
    d = schema.SmarthostConfig()
    domains = []
    for item in t.get("domains", _stringList, []) or []:
        try:
            domains.append(_domain(item))
        except ValueError as e:
            t.error("domains", str(e))
    smarthost = schema.SmarthostConfig(
        host=t.get("host", _host, None),
        port=t.get("port", _port, d.port),
        domains=tuple(domains),
        tls=t.get("tls", _choice(*schema.TLS_POLICIES), d.tls),
        username=t.get("username", _string, None),
        passwordFile=t.get("password_file", path, None),
    )
    if t.data and smarthost.host is None and "host" not in t.data:
        t.error("host", "missing required key (the smarthost's name or address)")
    if (smarthost.username is None) != (smarthost.passwordFile is None):
        t.error(None, "give both username and password_file, or neither")
    if smarthost.username is not None and smarthost.tls in ("none", "may"):
        t.error("tls", "AUTH needs TLS: use \"encrypt\" or \"verify\"")
    if smarthost.passwordFile is not None and not os.path.exists(
        smarthost.passwordFile
    ):
        t.error("password_file", f"{smarthost.passwordFile} does not exist")
    t.finish()
    return dnsConfig, delivery, smarthost


def configFromDict(data, baseDir, source="<config>"):
    """
    Build a L{schema.Config} from parsed TOML C{data}.

    @param baseDir: the directory that relative paths are resolved against.
    @raise ConfigError: listing every problem.
    """
    errors = []
    top = _Table(errors, "", data)

    def path(value):
        return os.path.normpath(os.path.join(baseDir, _string(value)))

    hostname = top.get("hostname", _domain)

    domains = top.table("domains")
    local = domains.get("local", _stringList)
    localDomains = []
    for d in local or []:
        try:
            localDomains.append(_domain(d))
        except ValueError as e:
            domains.error("local", str(e))
    if local == []:
        domains.error("local", "list at least one local domain")
    virtualDomains = []
    for d in domains.get("virtual", _stringList, []) or []:
        try:
            virtualDomains.append(_domain(d))
        except ValueError as e:
            domains.error("virtual", str(e))
    overlap = set(virtualDomains) & set(localDomains)
    if overlap:
        domains.error("virtual", f"{', '.join(sorted(overlap))} also in domains.local")
    postmaster = domains.get("postmaster", _address, None)
    delimiter = domains.get("recipient_delimiter", _string, "+")
    if delimiter is not None and len(delimiter) > 1:
        domains.error("recipient_delimiter", "one character, or empty to disable")
    aliasesFile = domains.get("aliases_file", path, None)
    domains.finish()
    if aliasesFile and os.path.exists(aliasesFile):
        try:
            with open(aliasesFile, encoding="utf-8") as f:
                parseAliases(f.read(), aliasesFile)
        except AliasFileError as e:
            for n, msg in e.problems:
                errors.append(f"domains.aliases_file: {aliasesFile}:{n}: {msg}")
        except OSError as e:
            errors.append(f"domains.aliases_file: cannot read {aliasesFile}: {e.strerror}")

    t = top.table("tls")
    tls = schema.TLSConfig(
        certificate=t.get("certificate", path, None), key=t.get("key", path, None)
    )
    t.finish()
    if (tls.certificate is None) != (tls.key is None):
        t.error(None, "give both certificate and key")
    if tls.certificate:
        _checkPEM(t, "certificate", tls.certificate, "certificate")
    if tls.key:
        _checkPEM(t, "key", tls.key, "private key")

    t = top.table("auth")
    auth = schema.AuthConfig(
        usersFile=t.get("users_file", path, path("passwd")),
        failureDelay=t.get("failure_delay", parseDuration, 2.0),
        sqlite=t.get("sqlite", path, None),
        checkers=t.get("checkers", _checkerSpecs, ("userdb",)),
        pam=_pamConfig(t, localDomains),
        mechanisms=t.get("mechanisms", _mechanismNames, schema.AuthConfig.mechanisms),
    )
    if auth.sqlite and "users_file" in t.data:
        t.error("sqlite", "give users_file or sqlite, not both")
    t.finish()

    t = top.table("storage")
    backend = t.get("backend", _string, "maildir")
    storage = schema.StorageConfig(
        backend=backend,
        path=t.get("path", path, path("mail")),
        quota=t.get("quota", parseSize, 0),
        rescanInterval=t.get("rescan_interval", parseDuration, 1.0),
        options={k: v for k, v in t.data.items() if k not in t.seen},
    )
    if backend in BUILTIN_STORES:
        t.finish()
    elif backend is not None:
        # A plugin store: the other keys are its options.  Plugins are
        # looked up only here, when the config names one.
        from mailplat.storage.backends import storeBackendProblems

        for problem in storeBackendProblems(backend):
            t.error("backend", problem)

    t = top.table("queue")
    queue = schema.QueueConfig(
        path=t.get("path", path, path("queue")),
        retryInitial=t.get("retry_initial", parseDuration, 60.0),
        retryMax=t.get("retry_max", parseDuration, 3600.0),
        maxLifetime=t.get("max_lifetime", parseDuration, 5 * 86400.0),
        delayWarning=t.get("delay_warning", parseDuration, 4 * 3600.0),
        deliveryThreads=t.get("delivery_threads", _integer, 2),
        commitProcess=t.get("commit_process", _boolean, True),
    )
    if queue.deliveryThreads == 0:
        t.error("delivery_threads", "must be at least 1")
    t.finish()

    dnsConfig, delivery, smarthost = _outbound(top, path)

    t = top.table("dkim")
    dkimConfig = schema.DKIMConfig(keyDir=t.get("key_dir", path, path("dkim")))
    t.finish()

    t = top.table("smtp")
    d = schema.SMTPConfig()
    smtp = schema.SMTPConfig(
        maxMessageSize=t.get("max_message_size", parseSize, d.maxMessageSize),
        maxRecipients=t.get("max_recipients", _integer, d.maxRecipients),
        maxCommandLine=t.get("max_command_line", parseSize, d.maxCommandLine),
        commandTimeout=t.get("command_timeout", parseDuration, d.commandTimeout),
        dataTimeout=t.get("data_timeout", parseDuration, d.dataTimeout),
        maxErrors=t.get("max_errors", _integer, d.maxErrors),
        maxReceivedHeaders=t.get(
            "max_received_headers", _integer, d.maxReceivedHeaders
        ),
        sessionTimeout=t.get("session_timeout", parseDuration, d.sessionTimeout),
        maxConnections=t.get("max_connections", _integer, d.maxConnections),
        maxConnectionsPerIP=t.get(
            "max_connections_per_ip", _integer, d.maxConnectionsPerIP
        ),
        greetPause=t.get("greet_pause", parseDuration, d.greetPause),
        vrfy=t.get("vrfy", _choice("cannot", "verify"), d.vrfy),
        trustedNetworks=t.get("trusted_networks", _networks, d.trustedNetworks),
        authThrottleMax=t.get("auth_throttle_max", parseDuration, d.authThrottleMax),
        authThrottleWindow=t.get(
            "auth_throttle_window", parseDuration, d.authThrottleWindow
        ),
        separateProcess=t.get("separate_process", _boolean, d.separateProcess),
    )
    if smtp.maxCommandLine is not None and smtp.maxCommandLine < 512:
        t.error("max_command_line", "must be at least 512 (RFC 5321 4.5.3.1.4)")
    t.finish()

    t = top.table("access")
    d = schema.AccessConfig()
    access = schema.AccessConfig(
        maxLineLength=t.get("max_line_length", parseSize, d.maxLineLength),
        maxLiteralSize=t.get("max_literal_size", parseSize, d.maxLiteralSize),
        imapTimeout=t.get("imap_timeout", parseDuration, d.imapTimeout),
        pop3Timeout=t.get("pop3_timeout", parseDuration, d.pop3Timeout),
        maxConnectionsPerUser=t.get(
            "max_connections_per_user", _integer, d.maxConnectionsPerUser
        ),
    )
    t.finish()

    checks = _typedTables(top, data, "check", errors)
    targets = _typedTables(top, data, "target", errors)

    listeners = []
    listen = top.table("listen")
    for name in listen.data:
        lt = listen.table(name)
        protocol = lt.get("protocol", _choice(*schema.PROTOCOLS))
        tlsMode = lt.get("tls", _choice(*schema.TLS_MODES), "starttls")
        profile = lt.get("profile", _choice(*schema.SMTP_PROFILES), None)
        endpoint = lt.get("endpoint", _endpoint)
        listenerCheckers = lt.get("checkers", _checkerSpecs, None)
        listenerMechanisms = lt.get("mechanisms", _mechanismNames, None)
        lt.finish()
        if profile is not None and protocol != "smtp":
            lt.error("profile", "only SMTP listeners have a profile")
        if profile is None and protocol == "smtp":
            profile = "mx"
        if profile == "submissions" and tlsMode != "implicit":
            lt.error("tls", "the submissions profile needs tls = \"implicit\"")
        if tlsMode == "none" and protocol in ("pop3", "imap"):
            lt.error(
                "tls",
                f"{protocol.upper()} logins are only accepted over TLS: use "
                '"starttls" or "implicit"',
            )
        if tlsMode != "none" and tls.certificate is None:
            lt.error("tls", f"tls = {tlsMode!r} needs [tls] certificate and key")
        if None not in (protocol, endpoint, tlsMode):
            listeners.append(
                schema.ListenerConfig(
                    name, protocol, endpoint, tlsMode, profile, listenerCheckers,
                    listenerMechanisms,
                )
            )
    listen.finish()
    top.finish()
    if postmaster is None and any(l.protocol == "smtp" for l in listeners):
        errors.append(
            "domains.postmaster: missing required key: the address that receives "
            "mail for postmaster@ every local domain (RFC 5321 4.5.1)"
        )

    # Users are checked last so that their domains can be checked against the
    # local domains.
    if not auth.sqlite and auth.usersFile and os.path.exists(auth.usersFile):
        try:
            users = parseUserFile(auth.usersFile)
        except UserFileError as e:
            for n, msg in e.problems:
                errors.append(f"auth.users_file: {auth.usersFile}:{n}: {msg}")
        except OSError as e:
            errors.append(f"auth.users_file: cannot read {auth.usersFile}: {e.strerror}")
        else:
            for entry in users.values():
                if localDomains and entry.domain not in localDomains:
                    errors.append(
                        f"auth.users_file: {auth.usersFile}:{entry.line}: "
                        f"{entry.address}: domain {entry.domain} is not in "
                        "domains.local"
                    )

    if errors:
        raise ConfigError(source, errors)
    return schema.Config(
        hostname=hostname,
        localDomains=tuple(localDomains),
        virtualDomains=tuple(virtualDomains),
        postmaster=postmaster,
        recipientDelimiter=delimiter or "",
        aliasesFile=aliasesFile,
        checks=tuple(checks),
        targets=tuple(targets),
        listeners=tuple(listeners),
        tls=tls,
        auth=auth,
        storage=storage,
        queue=queue,
        smtp=smtp,
        access=access,
        dns=dnsConfig,
        dkim=dkimConfig,
        delivery=delivery,
        smarthost=smarthost,
    )


def loadConfigString(text, baseDir, source="<string>"):
    """
    Parse and validate a config given as TOML text.

    @raise ConfigError: listing every problem.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"TOML syntax: {e}"]) from None
    return configFromDict(data, baseDir, source)


def loadConfig(path):
    """
    Read, parse and validate the config file at C{path}; relative paths in it
    are resolved against its directory.

    @raise ConfigError: listing every problem.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, [f"cannot read the config file: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, ["the config file is not UTF-8"]) from None
    return loadConfigString(text, os.path.dirname(os.path.abspath(path)), path)
