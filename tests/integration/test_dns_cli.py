"""
C{mailplat dkim keygen}, C{mailplat dns check} and C{mailplat dns records}
against a real DNS server on 127.0.0.1 (the config's C{[dns]} points at it),
as an admin runs them.
"""

import io
import os
import re
import stat
import subprocess
import sys

import pytest

from mailplat.cli.main import main
from mailplat.dns import parseTXT
from tests.integration.dnsserver import DNSServer
from tests.integration.support import REPO
from tests.trustsupport import txt


def writeConfig(directory, port):
    path = os.path.join(directory, "mailplat.toml")
    with open(path, "w") as f:
        f.write(
            'hostname = "mx.example.org"\n[domains]\nlocal = ["example.org"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\ntimeout = "2s"\n'
        )
    return path


def run(*argv):
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def keygen(config, *args):
    status, out = run("--config", config, "dkim", "keygen", "example.org", *args)
    assert status == 0, out
    path = out.split()[1]
    zoneText = out[out.index("\n\n") + 2:].strip()
    name, _, _, data = zoneText.split("\t", 3)
    return path, name.rstrip("."), parseTXT(data.strip("( )").replace("\n\t", " ")).decode()


@pytest.fixture
def dnsServer():
    server = DNSServer({}).start()
    yield server
    server.stop()


def goodZone(keyName, keyRecord):
    return {
        "example.org": [
            ("MX", "10 mx.example.org."),
            ("TXT", txt("v=spf1 mx -all")),
            ("TXT", txt("google-site-verification=abc")),
        ],
        "mx.example.org": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")],
        "1.2.0.192.in-addr.arpa": [("PTR", "mx.example.org.")],
        keyName: [("TXT", txt(keyRecord))],
        "_dmarc.example.org": [("TXT", txt("v=DMARC1; p=reject; rua=mailto:d@example.org"))],
        "_mta-sts.example.org": [("TXT", txt("v=STSv1; id=20260101"))],
        "_smtp._tls.example.org": [("TXT", txt("v=TLSRPTv1; rua=mailto:tls@example.org"))],
    }


def test_keygenWritesKeyAndPrintsRecord(tmp_path, dnsServer):
    config = writeConfig(str(tmp_path), dnsServer.port)
    path, name, record = keygen(config, "--algorithm", "ed25519", "--selector", "s2026")
    assert path == str(tmp_path / "dkim" / "example.org" / "s2026.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert name == "s2026._domainkey.example.org"
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", record)
    path, name, record = keygen(config)
    assert name == "mail._domainkey.example.org"
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # 2048-bit SubjectPublicKeyInfo
    status, out = run("--config", config, "dkim", "keygen", "example.org")
    assert status == 1


def test_checkAllGood(tmp_path, dnsServer):
    config = writeConfig(str(tmp_path), dnsServer.port)
    _, name, record = keygen(config)
    dnsServer.records.update(goodZone(name, record))
    status, out = run("--config", config, "dns", "check", "example.org", "--ip", "192.0.2.1")
    assert status == 0, out
    assert out.splitlines() == [
        "PASS  MX       10 mx.example.org (192.0.2.1, 2001:db8::1)",
        "PASS  A/AAAA   mx.example.org is 192.0.2.1, 2001:db8::1",
        "PASS  PTR      192.0.2.1 is mx.example.org, forward-confirmed",
        "PASS  SPF      v=spf1 mx -all",
        "PASS  SPF      authorizes 192.0.2.1 (mx); 1 of 10 DNS lookups",
        "PASS  DKIM     mail._domainkey.example.org matches the local rsa key",
        "PASS  DMARC    v=DMARC1; p=reject; rua=mailto:d@example.org",
        "PASS  MTA-STS  v=STSv1; id=20260101",
        "PASS  TLS-RPT  v=TLSRPTv1; rua=mailto:tls@example.org",
        "example.org: 9 checks, 0 failed",
    ]


def test_checkFindsProblemsAndSaysWhatToPublish(tmp_path, dnsServer):
    config = writeConfig(str(tmp_path), dnsServer.port)
    _, name, record = keygen(config, "--algorithm", "ed25519")
    _, _, otherRecord = keygen(config, "--algorithm", "ed25519", "--selector", "other")
    os.unlink(str(tmp_path / "dkim" / "example.org" / "other.key"))
    dnsServer.records.update({
        "example.org": [
            ("MX", "10 alias.example.org."),
            ("MX", "20 mx.example.org."),
            ("TXT", txt("v=spf1 ip4:198.51.100.0/24 -all")),
            ("TXT", txt("v=spf1 mx -all")),
        ],
        "alias.example.org": [("CNAME", "mx.example.org.")],
        "mx.example.org": [("A", "192.0.2.1")],
        name: [("TXT", txt(otherRecord))],
        "_dmarc.example.org": [("TXT", txt("v=DMARC1; p=none"))],
        "_mta-sts.example.org": [("TXT", txt("v=STSv1"))],
    })
    status, out = run("--config", config, "dns", "check", "example.org")
    assert status == 1
    assert out.splitlines() == [
        "FAIL  MX       10 alias.example.org is a CNAME (RFC 2181 10.3)",
        "      publish: example.org.\tIN\tMX\t10 mx.example.org.",
        "PASS  MX       20 mx.example.org (192.0.2.1)",
        "PASS  A/AAAA   mx.example.org is 192.0.2.1",
        "FAIL  PTR      192.0.2.1 has no PTR record",
        "      publish: 1.2.0.192.in-addr.arpa.\tIN\tPTR\tmx.example.org.  "
        "; set by whoever holds 192.0.2.1",
        "FAIL  SPF      example.org has 2 SPF records; publish exactly one",
        '      publish: example.org.\tIN\tTXT\t"v=spf1 mx ip4:192.0.2.1 -all"',
        "FAIL  DKIM     mail-ed25519._domainkey.example.org does not match the local "
        f"key {tmp_path}/dkim/example.org/mail-ed25519.key",
        f'      publish: mail-ed25519._domainkey.example.org.\tIN\tTXT\t"{record}"',
        "WARN  DMARC    p=none: failures are only reported (v=DMARC1; p=none)",
        '      publish: _dmarc.example.org.\tIN\tTXT\t"v=DMARC1; p=quarantine; adkim=r; '
        'aspf=r; rua=mailto:postmaster@example.org"',
        "FAIL  MTA-STS  _mta-sts.example.org: needs v=STSv1 and id=: v=STSv1",
        "example.org: 8 checks, 5 failed",
    ]


def test_missingEverything(tmp_path, dnsServer):
    config = writeConfig(str(tmp_path), dnsServer.port)
    dnsServer.records["example.org"] = [("A", "192.0.2.5")]
    status, out = run("--config", config, "dns", "check", "example.org", "--ip", "192.0.2.1")
    assert status == 1
    lines = out.splitlines()
    assert lines[:2] == [
        "FAIL  MX       example.org has no MX record",
        "      publish: example.org.\tIN\tMX\t10 mx.example.org.",
    ]
    assert "FAIL  A/AAAA   mx.example.org has no A or AAAA record" in lines
    assert "      publish: mx.example.org.\tIN\tA\t192.0.2.1" in lines
    assert "FAIL  SPF      example.org has no SPF record" in lines
    assert "WARN  DKIM     no local key for example.org; run: mailplat dkim keygen example.org" in lines
    assert "FAIL  DMARC    _dmarc.example.org has no DMARC record" in lines


def test_spfThatDoesNotAuthorizeTheServer(tmp_path, dnsServer):
    config = writeConfig(str(tmp_path), dnsServer.port)
    dnsServer.records.update({
        "example.org": [("MX", "10 mx.example.org."), ("TXT", txt("v=spf1 ip4:198.51.100.1 ~all"))],
        "mx.example.org": [("A", "192.0.2.1")],
    })
    status, out = run("--config", config, "dns", "check", "example.org")
    assert "FAIL  SPF      192.0.2.1 gets softfail, not pass" in out.splitlines()


def test_recordsSnippet(tmp_path, dnsServer):
    """
    The snippet, run as the installed command would be (a subprocess),
    with the host's address found through the configured DNS server.
    """
    config = writeConfig(str(tmp_path), dnsServer.port)
    _, name, record = keygen(config, "--algorithm", "ed25519", "--selector", "ed")
    dnsServer.records["mx.example.org"] = [("A", "192.0.2.1")]
    out = subprocess.run(
        [sys.executable, "-m", "mailplat.cli.main", "--config", config, "dns", "records", "example.org"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "; mail for example.org, served by mx.example.org",
        "example.org.\tIN\tMX\t10 mx.example.org.",
        "mx.example.org.\tIN\tA\t192.0.2.1",
        'example.org.\tIN\tTXT\t"v=spf1 mx ip4:192.0.2.1 -all"',
        f'ed._domainkey.example.org.\tIN\tTXT\t"{record}"',
        '_dmarc.example.org.\tIN\tTXT\t"v=DMARC1; p=quarantine; adkim=r; aspf=r; '
        'rua=mailto:postmaster@example.org"',
        "; optional: TLS reporting (RFC 8460)",
        ';_smtp._tls.example.org.\tIN\tTXT\t"v=TLSRPTv1; rua=mailto:postmaster@example.org"',
        "; reverse DNS, set by whoever holds 192.0.2.1:",
        ";1.2.0.192.in-addr.arpa.\tIN\tPTR\tmx.example.org.",
    ]


def test_dkimListAndBadArguments(tmp_path, dnsServer, capsys):
    config = writeConfig(str(tmp_path), dnsServer.port)
    path, name, record = keygen(config, "--algorithm", "ed25519", "--selector", "ed")
    status, out = run("--config", config, "dkim", "list")
    assert status == 0
    assert out.splitlines() == [
        f"example.org\ted\ted25519\t{path}",
        f'{name}.\tIN\tTXT\t"{record}"',
    ]
    assert run("--config", config, "dns", "check", "example.org", "--ip", "nonsense")[0] == 1
    assert "'nonsense' is not an IP address" in capsys.readouterr().err
    assert run("--config", config, "dkim", "keygen", "not_a_domain")[0] == 1
    assert run("--config", config, "dkim", "keygen", "example.org", "--selector", "bad selector")[0] == 1
