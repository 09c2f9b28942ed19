"""
DKIM signing keys on disk: C{KEY_DIR/DOMAIN/SELECTOR.key}, PKCS#8 PEM,
mode 0600, RSA (2048 bits, RFC 8301 section 3.2) or Ed25519 (RFC 8463).

    key = generateKey("ed25519")
    path = writeKey("/etc/mailplat/dkim", "example.org", "mail", key)
    print(zoneRecord("example.org", "mail", publicRecord(key)))

L{KeyStore} finds the keys of a domain for signing (re-reading a file when
it changes); L{publicRecord} is the TXT record to publish at
C{SELECTOR._domainkey.DOMAIN} (RFC 6376 section 3.6.1).
"""

import base64
import os
import re
import stat
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ALGORITHMS = ("rsa", "ed25519")
SIGNATURE_ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
RSA_BITS = 2048
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$")


class KeyFileError(Exception):
    """
    A key file is missing, unreadable or not a usable key.
    """


def validSelector(selector):
    """
    Whether C{selector} is a valid selector: one or more DNS labels
    (RFC 6376 section 3.1).
    """
    return bool(_SELECTOR.match(selector or ""))


def generateKey(algorithm="rsa", bits=RSA_BITS):
    """
    @return: a new private key (a L{cryptography} key object).
    """
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown algorithm {algorithm!r} (use rsa or ed25519)")


def keyPath(keyDir, domain, selector):
    return os.path.join(keyDir, domain.lower().rstrip("."), f"{selector}.key")


def writeKey(keyDir, domain, selector, key, replace=False):
    """
    Write C{key} to C{KEY_DIR/DOMAIN/SELECTOR.key}, mode 0600 from the
    moment the file exists.

    @raise FileExistsError: the file exists and C{replace} is false.
    @return: the path.
    """
    path = keyPath(keyDir, domain, selector)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def loadPrivateKey(path):
    """
    @return: the private key in the PEM file at C{path}.
    @raise KeyFileError: it cannot be read or is not an RSA or Ed25519 key.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path} is not a PEM private key: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise KeyFileError(f"{path}: only RSA and Ed25519 keys can sign DKIM")
    return key


def algorithmOf(key):
    """
    @return: C{"rsa"} or C{"ed25519"}.
    """
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    return "ed25519"


def publicKeyData(key):
    """
    The C{p=} value of the key record: base64 of the DER
    SubjectPublicKeyInfo for RSA (RFC 6376 section 3.6.1), of the raw 32
    octets for Ed25519 (RFC 8463 section 4.2).
    """
    public = key.public_key() if hasattr(key, "public_key") else key
    if algorithmOf(public) == "rsa":
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def publicRecord(key):
    """
    The TXT record to publish for C{key}: C{v=DKIM1; k=rsa; p=...}.
    """
    return f"v=DKIM1; k={algorithmOf(key)}; p={publicKeyData(key)}"


def recordName(domain, selector):
    return f"{selector}._domainkey.{domain.lower().rstrip('.')}"


def quoteTXT(text):
    """
    C{text} as zone-file character-strings of at most 255 octets each
    (RFC 1035 section 3.3.14), in parentheses when there are several.
    """
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    quoted = ['"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks]
    if len(quoted) == 1:
        return quoted[0]
    return "( " + "\n\t".join(quoted) + " )"


def zoneRecord(domain, selector, record):
    """
    The zone-file line publishing a DKIM key record.
    """
    return f"{recordName(domain, selector)}.\tIN\tTXT\t{quoteTXT(record)}"


def dkimpyKey(key):
    """
    The private key as dkimpy's C{sign} takes it: PKCS#1 PEM for RSA, the
    base64 of the 32-octet seed for Ed25519.
    """
    if algorithmOf(key) == "rsa":
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw)


@dataclass(frozen=True)
class SigningKey:
    """
    A key found in the key directory.

    @ivar algorithm: C{"rsa"} or C{"ed25519"}.
    @ivar key: the L{cryptography} private key.
    """

    domain: str
    selector: str
    algorithm: str
    path: str
    key: object

    @property
    def signatureAlgorithm(self):
        return SIGNATURE_ALGORITHMS[self.algorithm]

    @property
    def record(self):
        return publicRecord(self.key)


class KeyStore:
    """
    The keys of C{keyDir}, by domain.  Every method is I{blocking} (it
    reads files); a key is re-read when its file changes.
    """

    def __init__(self, keyDir):
        self.keyDir = keyDir
        self._loaded = {}

    def domains(self):
        """
        @return: the domains that have a key directory, sorted.
        """
        try:
            names = os.listdir(self.keyDir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.isdir(os.path.join(self.keyDir, n)))

    def keysFor(self, domain):
        """
        @return: the L{SigningKey} objects of C{domain}, sorted by selector;
            files that are not usable keys are skipped.
        """
        directory = os.path.join(self.keyDir, domain.lower().rstrip("."))
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys = []
        for name in names:
            selector, ext = os.path.splitext(name)
            if ext != ".key" or not validSelector(selector):
                continue
            path = os.path.join(directory, name)
            try:
                keys.append(self._load(domain, selector, path))
            except KeyFileError:
                continue
        return keys

    def signingKeys(self, domain):
        """
        The keys to sign mail from C{domain} with: its own, or those of the
        closest parent domain that has keys (a signature by a parent domain
        is aligned for DMARC in relaxed mode, RFC 7489 section 3.1.1).
        """
        labels = domain.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            keys = self.keysFor(".".join(labels[i:]))
            if keys:
                return keys
        return []

    def _load(self, domain, selector, path):
        try:
            st = os.stat(path)
        except OSError as e:
            raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path} is not a file")
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        key = loadPrivateKey(path)
        signing = SigningKey(domain.lower().rstrip("."), selector, algorithmOf(key), path, key)
        self._loaded[path] = (stamp, signing)
        return signing
