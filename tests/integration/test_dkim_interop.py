"""
DKIM interoperability with OpenDKIM (Debian's opendkim and opendkim-tools,
installed by `make test`): messages OpenDKIM signs verify with us (key
records fetched through our resolver from a DNS server on 127.0.0.1), and
our signatures verify with OpenDKIM (C{opendkim -t}, its test mode, with
the key records given as C{TestPublicKeys}).  Keys come from both sides:
C{mailplat dkim keygen} and C{opendkim-genkey}.
"""

import io
import os
import re
import shutil
import subprocess

import pytest
from twisted.internet.task import Clock

from mailplat.cli.main import main
from mailplat.dns import DNSPythonQuery, Resolver, parseTXT
from mailplat.testing import runSynchronously
from mailplat.trust import keys as K
from mailplat.trust.dkim import DKIMVerifier, signHeaders
from tests.integration.dnsserver import DNSServer
from tests.trustsupport import txt

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
    b"Subject: interop\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <interop@example.org>\r\n\r\nHello, OpenDKIM.\r\n\r\n.dot\r\n"
)


def tool(name, package):
    exe = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
    if exe is None:
        raise RuntimeError(f"{name} is not installed: run `make test`, which installs {package}")
    return exe


def opendkimSign(tmp, keyPath, selector, algorithm, message):
    """
    Sign C{message} with C{opendkim -t}; return the signed message.
    """
    conf = tmp / f"sign-{selector}.conf"
    conf.write_text(
        "Mode s\nDomain example.org\n"
        f"Selector {selector}\nKeyFile {keyPath}\nSignatureAlgorithm {algorithm}\n"
        "Canonicalization relaxed/relaxed\nRequireSafeKeys no\nSyslog no\n"
    )
    path = tmp / f"unsigned-{selector}.eml"
    path.write_bytes(message)
    out = subprocess.run(
        [tool("opendkim", "opendkim"), "-x", str(conf), "-t", str(path)],
        capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    field = text[text.index(b"DKIM-Signature:"):]
    field = field.replace(b"\r\n", b"\n").rstrip(b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    return field + message


def opendkimVerify(tmp, records, message):
    """
    Verify C{message} with C{opendkim -t}; return its
    Authentication-Results clauses, e.g. C{["dkim=pass ... header.s=x"]}.
    """
    keys = tmp / "testkeys"
    keys.write_text("".join(f"{name} {record}\n" for name, record in records.items()))
    conf = tmp / "verify.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keys}\nSyslog no\nAuthservID test\n")
    path = tmp / "signed.eml"
    path.write_bytes(message)
    out = subprocess.run(
        [tool("opendkim", "opendkim"), "-x", str(conf), "-vvv", "-t", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    m = re.search(r"hname='Authentication-Results' hvalue='test;(.*?)'", out.stdout + out.stderr, re.S)
    assert m is not None, out.stdout + out.stderr
    return [c.strip() for c in m.group(1).split(";") if c.strip().startswith("dkim=")]


@pytest.fixture
def dnsServer():
    server = DNSServer({}).start()
    yield server
    server.stop()


def verifyWithUs(dnsServer, message):
    resolver = Resolver(Clock(), runSynchronously, DNSPythonQuery(["127.0.0.1"], dnsServer.port, 2.0))
    results = []
    DKIMVerifier(resolver, runSynchronously).verify(lambda: message).addBoth(results.append)
    return results[0]


def mailplatKeygen(tmp, algorithm, selector):
    config = tmp / "mailplat.toml"
    config.write_text('hostname = "mx.example.org"\n[domains]\nlocal = ["example.org"]\n')
    out = io.StringIO()
    assert main(["--config", str(config), "dkim", "keygen", "example.org",
                 "--algorithm", algorithm, "--selector", selector], out=out) == 0
    text = out.getvalue()
    name, _, _, data = text[text.index("\n\n") + 2:].strip().split("\t", 3)
    record = parseTXT(data.strip("( )").replace("\n\t", " ")).decode()
    return str(tmp / "dkim" / "example.org" / f"{selector}.key"), name.rstrip("."), record


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_openDKIMSignaturesVerifyWithUs(tmp_path, dnsServer, algorithm):
    keyPath, name, record = mailplatKeygen(tmp_path, algorithm, "s1")
    dnsServer.records[name] = [("TXT", txt(record))]
    signed = opendkimSign(tmp_path, keyPath, "s1", f"{algorithm}-sha256", MESSAGE)
    (result,) = verifyWithUs(dnsServer, signed)
    assert (result.result, result.algorithm, result.domain) == ("pass", f"{algorithm}-sha256", "example.org")
    (result,) = verifyWithUs(dnsServer, signed.replace(b"Hello", b"Jello"))
    assert result.result == "fail"


def test_ourSignaturesVerifyWithOpenDKIM(tmp_path):
    keyDir = str(tmp_path / "keys")
    K.writeKey(keyDir, "example.org", "ed", K.generateKey("ed25519"))
    K.writeKey(keyDir, "example.org", "rsa", K.generateKey("rsa"))
    keys = K.KeyStore(keyDir).keysFor("example.org")
    signed = b"".join(signHeaders(MESSAGE, keys)) + MESSAGE
    records = {K.recordName(k.domain, k.selector): k.record for k in keys}
    clauses = opendkimVerify(tmp_path, records, signed)
    assert len(clauses) == 2
    assert clauses[0].startswith("dkim=pass ") and "header.a=ed25519-sha256" in clauses[0]
    assert clauses[1].startswith("dkim=pass (2048-bit key) ") and "header.a=rsa-sha256" in clauses[1]
    bad = opendkimVerify(tmp_path, records, signed.replace(b"Subject: interop", b"Subject: changed"))
    assert [c.split()[0] for c in bad] == ["dkim=fail", "dkim=fail"]


def test_openDKIMGenkeyKeysSignWithUs(tmp_path, dnsServer):
    """
    A key made by opendkim-genkey signs with us (our key store reads its
    PEM file) and verifies with OpenDKIM from the record genkey printed.
    """
    out = subprocess.run(
        [tool("opendkim-genkey", "opendkim-tools"), "-b", "2048", "-d", "example.org",
         "-s", "gk", "-D", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    keyDir = tmp_path / "keys" / "example.org"
    keyDir.mkdir(parents=True)
    shutil.copy(tmp_path / "gk.private", keyDir / "gk.key")
    (key,) = K.KeyStore(str(tmp_path / "keys")).keysFor("example.org")
    assert key.algorithm == "rsa"
    record = "".join(re.findall(r'"([^"]*)"', (tmp_path / "gk.txt").read_text()))
    signed = b"".join(signHeaders(MESSAGE, [key])) + MESSAGE
    clauses = opendkimVerify(tmp_path, {"gk._domainkey.example.org": record}, signed)
    assert clauses[0].startswith("dkim=pass (2048-bit key) ")
    dnsServer.records["gk._domainkey.example.org"] = [("TXT", txt(record))]
    (result,) = verifyWithUs(dnsServer, signed)
    assert result.result == "pass"


def test_openDKIMTestmsgRSASHA1IsNotAccepted(tmp_path, dnsServer):
    """
    opendkim-testmsg signs with rsa-sha1, which RFC 8301 forbids
    verifiers to accept: we say dkim=policy.
    """
    keyPath, name, record = mailplatKeygen(tmp_path, "rsa", "t1")
    dnsServer.records[name] = [("TXT", txt(record))]
    out = subprocess.run(
        [tool("opendkim-testmsg", "opendkim-tools"), "-C", "-d", "example.org", "-k", keyPath, "-s", "t1"],
        input=MESSAGE, capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert b"a=rsa-sha1" in out.stdout
    (result,) = verifyWithUs(dnsServer, out.stdout)
    assert (result.result, result.reason) == ("policy", "algorithm rsa-sha1 is not accepted (RFC 8301)")
