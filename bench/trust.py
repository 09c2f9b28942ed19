"""
Issue 6's benchmark: inbound accepted messages/s with SPF, DKIM, DMARC,
iprev and one DNSBL on (against a DNS server on 127.0.0.1), compared with
every check off, in one run, alternating off / on.

    .venv/bin/python bench/trust.py [--quick] [--rounds N]

Writes bench/results/<date>-<host>-trust.md.  smtp-source (Debian's postfix
package) is the client: 20 sessions of 1 KB messages from
bench@good.example, whose SPF record authorizes 127.0.0.1 and whose DMARC
policy is p=none; the client's PTR resolves back (iprev pass); the DNSBL
does not list it; the messages are unsigned (dkim=none).
"""

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.integration.dnsserver import DNSServer  # noqa: E402
from tests.integration.support import Twistd, freePorts, writeConfig  # noqa: E402

CHECKS = """
[dns]
nameservers = ["127.0.0.1"]
port = {port}
[[check]]
type = "iprev"
[[check]]
type = "dnsbl"
zones = ["zen.dnsbl.example"]
[[check]]
type = "spf"
[[check]]
type = "dkim"
[[check]]
type = "dmarc"
"""

ZONE = {
    "good.example": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
    "_dmarc.good.example": [("TXT", '"v=DMARC1; p=none"')],
    "1.0.0.127.in-addr.arpa": [("PTR", "client.good.example.")],
    "client.good.example": [("A", "127.0.0.1")],
}


def firstDelivered(root):
    """
    The header section of one delivered message under C{root}.
    """
    for directory, _, files in os.walk(root):
        if os.path.basename(directory) in ("new", "cur") and files:
            with open(os.path.join(directory, files[0]), "rb") as f:
                return f.read().split(b"\r\n\r\n", 1)[0]
    raise SystemExit(f"no delivered message under {root}")


def runOnce(mode, count, dnsPort, scratch):
    directory = tempfile.mkdtemp(prefix=f"trust-{mode}-", dir=scratch)
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    ports = dict(zip(names, freePorts(len(names))))
    extra = CHECKS.format(port=dnsPort) if mode == "on" else ""
    extra += "\n[smtp]\nmax_connections_per_ip = 100\n"
    config = writeConfig(directory, ports, extra=extra)
    server = Twistd(config, os.path.join(directory, "twistd.log")).start()
    try:
        t0 = time.monotonic()
        r = subprocess.run(
            ["smtp-source", "-s", "20", "-m", str(count), "-l", "1024",
             "-f", "bench@good.example", "-M", "client.good.example",
             "-t", "demo@example.test", f"127.0.0.1:{ports['smtp']}"],
            capture_output=True, text=True, timeout=600,
        )
        elapsed = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"smtp-source failed: {r.stderr.strip()}")
        # The log is written in batches at most 50 ms late
        # (mailplat/logobserver.py): give the last lines a moment.
        deadline = time.monotonic() + 5
        while True:
            accepted = server.output().count(": accepted from=<bench@good.example>")
            if accepted >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if accepted != count:
            raise SystemExit(f"{mode}: {accepted} of {count} accepted; see {server.logPath}")
        if mode == "on":
            # The checks really ran: a delivered message carries their results.
            server.waitForLog("status=delivered")
            header = firstDelivered(os.path.join(directory, "mail"))
            for result in (b"iprev=pass", b"spf=pass", b"dmarc=pass"):
                if result not in header:
                    raise SystemExit(f"checks on, but no {result.decode()} in:\n{header.decode()}")
        return count / elapsed
    finally:
        server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    count = 300 if args.quick else 1000
    scratch = os.path.join(REPO, "bench", ".scratch", "trust")
    os.makedirs(scratch, exist_ok=True)
    samples = {"off": [], "on": []}
    with DNSServer(ZONE) as dns:
        for r in range(1, args.rounds + 1):
            for mode in ("off", "on"):
                rate = runOnce(mode, count, dns.port, scratch)
                samples[mode].append(rate)
                print(f"round {r}, checks {mode}: {rate:.0f} msg/s", flush=True)
        queries = len(dns.queries)
    med = {m: statistics.median(v) for m, v in samples.items()}
    ratio = med["on"] / med["off"]
    host = socket.gethostname()
    day = datetime.date.today().isoformat()
    name = f"{day}-{host}{'-quick' if args.quick else ''}-trust.md"
    path = os.path.join(REPO, "bench", "results", name)
    fmt = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})"  # noqa: E731
    with open(path, "w") as f:
        f.write(
            f"# Inbound checks on vs off — {datetime.datetime.now():%Y-%m-%dT%H:%M:%S} on {host}\n\n"
            f"`bench/trust.py{' --quick' if args.quick else ''}`: {args.rounds} rounds, "
            f"alternating off / on; each round is smtp-source, 20 sessions x {count} "
            "messages of 1 KB, to a fresh mailplat under twistd. Checks on: iprev, one "
            "DNSBL, SPF, DKIM (unsigned mail: none), DMARC (p=none), against a DNS "
            f"server on 127.0.0.1 ({queries} queries answered in the run; results are "
            "cached by TTL).\n\n"
            "| figure | unit | checks off | checks on | on / off |\n|---|---|---|---|---|\n"
            f"| SMTP accept, 20 sessions x 1 KB ({count} messages) | msg/s | "
            f"{fmt(samples['off'])} | {fmt(samples['on'])} | {ratio:.2f} |\n"
        )
    print(f"checks on / off: {ratio:.2f} -> {path}")


if __name__ == "__main__":
    main()
