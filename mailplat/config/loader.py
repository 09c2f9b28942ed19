"""
Load and validate a TOML config.  Every problem is collected and reported
together, each with its table and key, in one L{ConfigError}.
"""

import os
import tomllib

from twisted.internet.endpoints import serverFromString

from mailplat.auth.userdb import UserFileError, parseUserFile
from mailplat.config import schema
from mailplat.config.units import parseDuration, parseSize

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
    domains.finish()

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
    )
    t.finish()

    t = top.table("storage")
    storage = schema.StorageConfig(path=t.get("path", path, path("mail")))
    t.finish()

    t = top.table("queue")
    queue = schema.QueueConfig(
        path=t.get("path", path, path("queue")),
        retryInitial=t.get("retry_initial", parseDuration, 60.0),
        retryMax=t.get("retry_max", parseDuration, 3600.0),
        maxLifetime=t.get("max_lifetime", parseDuration, 5 * 86400.0),
    )
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
    )
    t.finish()

    listeners = []
    listen = top.table("listen")
    for name in listen.data:
        lt = listen.table(name)
        protocol = lt.get("protocol", _choice(*schema.PROTOCOLS))
        tlsMode = lt.get("tls", _choice(*schema.TLS_MODES), "starttls")
        profile = lt.get("profile", _choice(*schema.SMTP_PROFILES), None)
        endpoint = lt.get("endpoint", _endpoint)
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
                schema.ListenerConfig(name, protocol, endpoint, tlsMode, profile)
            )
    listen.finish()
    top.finish()

    # Users are checked last so that their domains can be checked against the
    # local domains.
    if auth.usersFile and os.path.exists(auth.usersFile):
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
        listeners=tuple(listeners),
        tls=tls,
        auth=auth,
        storage=storage,
        queue=queue,
        smtp=smtp,
        access=access,
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
