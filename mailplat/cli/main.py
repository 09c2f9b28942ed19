"""
C{mailplat}: the admin command.

    mailplat [--config FILE] user add|passwd|del ADDRESS
    mailplat [--config FILE] user list
    mailplat [--config FILE] config check
    mailplat [--config FILE] queue list|show ID|flush [ID]|hold ID|release ID|delete ID
    mailplat [--config FILE] dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
    mailplat [--config FILE] dkim list [DOMAIN]
    mailplat [--config FILE] dns check DOMAIN [--ip IP] [--hostname H]
    mailplat [--config FILE] dns records DOMAIN [--ip IP] [--hostname H]
    mailplat cert selfsigned --hostname H --out DIR
    mailplat demo [--dir DIR]

Passwords are read from a prompt, or from standard input when it is not a
terminal: never from the command line, where other users could see them.
"""

import argparse
import getpass
import os
import sys

from mailplat.auth.passwords import hashPassword
from mailplat.auth.checkers import userDatabase
from mailplat.auth.userdb import UserFileError, normalizeAddress
from mailplat.config import ConfigError, loadConfig


class CommandError(Exception):
    """
    Ends the command with a message and exit status 1.
    """


def _config(args):
    path = args.config or os.environ.get("MAILPLAT_CONFIG")
    if not path:
        raise CommandError("give --config FILE (or set MAILPLAT_CONFIG)")
    try:
        return loadConfig(path)
    except ConfigError as e:
        raise CommandError(e.describe()) from None


def _readPassword(stdin):
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Again: ")
        if first != second:
            raise CommandError("the passwords do not match")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("empty password")
    return password


def cmdUser(args, out, stdin):
    config = _config(args)
    users = userDatabase(config)
    try:
        if args.action == "list":
            for address in sorted(users.users()):
                out.write(address + "\n")
            return
        if not args.address:
            raise CommandError(f"user {args.action} needs an ADDRESS")
        address = normalizeAddress(args.address)
        local, at, domain = address.rpartition("@")
        if not at or not local or ":" in address or any(c.isspace() for c in address):
            raise CommandError(f"{args.address!r} is not an address")
        if args.action == "add":
            if not config.isLocalDomain(domain):
                raise CommandError(
                    f"{domain} is not a local domain (domains.local: "
                    f"{', '.join(config.localDomains)})"
                )
            if users.exists(address):
                raise CommandError(f"{address} already exists")
            users.setPassword(address, hashPassword(_readPassword(stdin)), replace=False)
            out.write(f"added {address}\n")
        elif args.action == "passwd":
            if not users.exists(address):
                raise CommandError(f"no such user: {address}")
            users.setPassword(address, hashPassword(_readPassword(stdin)), create=False)
            out.write(f"changed the password of {address}\n")
        elif args.action == "del":
            try:
                users.delete(address)
            except KeyError:
                raise CommandError(f"no such user: {address}") from None
            out.write(f"deleted {address} (their mail is kept)\n")
    except UserFileError as e:
        raise CommandError(str(e)) from None


def cmdConfigCheck(args, out, stdin):
    config = _config(args)
    out.write(
        f"{args.config or os.environ.get('MAILPLAT_CONFIG')}: ok "
        f"({len(config.listeners)} listeners, domains: "
        f"{', '.join(config.localDomains)})\n"
    )


def cmdCert(args, out, stdin):
    from mailplat.certs import makeSelfSigned

    cert, key = makeSelfSigned(args.hostname, args.out)
    out.write(f"wrote {cert} and {key}\n")


def cmdDemo(args, out, stdin):
    from mailplat.demo import ensureDemo

    path = ensureDemo(args.dir, lambda line: out.write(line + "\n"))
    out.write(f"demo config: {path}\n")


def cmdQueue(args, out, stdin):
    from mailplat.cli.queue import QueueCommandError, runQueueCommand

    config = _config(args)
    try:
        runQueueCommand(config, args.action, args.queueId, out)
    except QueueCommandError as e:
        raise CommandError(str(e)) from None


def cmdDkim(args, out, stdin):
    from mailplat.cli.dkim import DKIMCommandError, keygen, listKeys

    config = _config(args)
    try:
        if args.action == "keygen":
            if not args.domain:
                raise CommandError("dkim keygen needs a DOMAIN")
            keygen(config, args.domain, args.selector, args.algorithm, out)
        else:
            listKeys(config, args.domain, out)
    except DKIMCommandError as e:
        raise CommandError(str(e)) from None


def cmdDns(args, out, stdin):
    from mailplat.cli.dns import DNSCommandError, check, records

    config = _config(args)
    try:
        if args.action == "check":
            failed = check(config, args.domain, args.ip, args.hostname, out)
            if failed:
                raise CommandError(f"{args.domain}: {failed} check(s) failed")
        else:
            records(config, args.domain, args.ip, args.hostname, out)
    except DNSCommandError as e:
        raise CommandError(str(e)) from None


def buildParser():
    parser = argparse.ArgumentParser(prog="mailplat", description=__doc__.split("\n")[1])
    parser.add_argument("--config", "-c", help="the TOML config file")
    sub = parser.add_subparsers(dest="command", required=True)

    user = sub.add_parser("user", help="manage users in the password file")
    user.add_argument("action", choices=["add", "passwd", "del", "list"])
    user.add_argument("address", nargs="?")
    user.set_defaults(func=cmdUser)

    config = sub.add_parser("config", help="validate the config")
    config.add_argument("action", choices=["check"])
    config.set_defaults(func=cmdConfigCheck)

    queue = sub.add_parser("queue", help="list and manage the mail queue")
    queue.add_argument(
        "action", choices=["list", "show", "flush", "hold", "release", "delete"]
    )
    queue.add_argument("queueId", nargs="?", metavar="ID")
    queue.set_defaults(func=cmdQueue)

    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    dkim.add_argument("action", choices=["keygen", "list"])
    dkim.add_argument("domain", nargs="?", metavar="DOMAIN")
    dkim.add_argument("--selector", help="default: mail (rsa), mail-ed25519 (ed25519)")
    dkim.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa")
    dkim.set_defaults(func=cmdDkim)

    dns = sub.add_parser("dns", help="check or print the DNS records a domain needs")
    dns.add_argument("action", choices=["check", "records"])
    dns.add_argument("domain", metavar="DOMAIN")
    dns.add_argument("--ip", help="the server's address (default: the host's A/AAAA)")
    dns.add_argument("--hostname", help="the mail host (default: the config's hostname)")
    dns.set_defaults(func=cmdDns)

    cert = sub.add_parser("cert", help="certificates")
    cert.add_argument("action", choices=["selfsigned"])
    cert.add_argument("--hostname", required=True)
    cert.add_argument("--out", required=True, help="directory for cert.pem, key.pem")
    cert.set_defaults(func=cmdCert)

    demo = sub.add_parser("demo", help="create the demo set-up (used by make run)")
    demo.add_argument("--dir", default="var")
    demo.set_defaults(func=cmdDemo)
    return parser


def main(argv=None, out=None, stdin=None):
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    args = buildParser().parse_args(argv)
    try:
        args.func(args, out, stdin)
    except CommandError as e:
        sys.stderr.write(f"mailplat: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
