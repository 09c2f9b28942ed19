"""
C{mailplat dkim}: DKIM signing keys.

    mailplat dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
        writes DKIM.KEY_DIR/DOMAIN/S.key (mode 0600; RSA keys are 2048
        bits) and prints the TXT record to publish at S._domainkey.DOMAIN
    mailplat dkim list [DOMAIN]
        the keys in the key directory and their records
"""

from mailplat.trust import keys as keylib

DEFAULT_SELECTORS = {"rsa": "mail", "ed25519": "mail-ed25519"}


class DKIMCommandError(Exception):
    pass


def _domain(text):
    domain = text.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or any(not l or len(l) > 63 or not all(c.isalnum() or c == "-" for c in l) for l in labels):
        raise DKIMCommandError(f"{text!r} is not a domain name")
    return domain


def keygen(config, domain, selector, algorithm, out, replace=False):
    """
    Generate and write a key; print where and the record to publish.
    """
    domain = _domain(domain)
    selector = selector or DEFAULT_SELECTORS[algorithm]
    if not keylib.validSelector(selector):
        raise DKIMCommandError(f"{selector!r} is not a selector (letters, digits, '-', '.')")
    key = keylib.generateKey(algorithm)
    try:
        path = keylib.writeKey(config.dkim.keyDir, domain, selector, key, replace=replace)
    except FileExistsError:
        raise DKIMCommandError(
            f"{keylib.keyPath(config.dkim.keyDir, domain, selector)} exists: choose another "
            "--selector (publish the new record before removing the old key)"
        ) from None
    except OSError as e:
        raise DKIMCommandError(f"cannot write the key: {e}") from None
    out.write(f"wrote {path} ({algorithm}, mode 0600)\n")
    out.write(f"publish this TXT record at {keylib.recordName(domain, selector)}:\n\n")
    out.write(keylib.zoneRecord(domain, selector, keylib.publicRecord(key)) + "\n")


def listKeys(config, domain, out):
    store = keylib.KeyStore(config.dkim.keyDir)
    domains = [_domain(domain)] if domain else store.domains()
    for name in domains:
        for key in store.keysFor(name):
            out.write(f"{name}\t{key.selector}\t{key.algorithm}\t{key.path}\n")
            out.write(keylib.zoneRecord(name, key.selector, key.record) + "\n")
