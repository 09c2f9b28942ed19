"""
The twistd plugin: C{twistd -n mailplat --config FILE}.
"""

import sys

from twisted.python import usage

from mailplat.config import ConfigError, loadConfig
from mailplat.listeners import ListenError
from mailplat.logobserver import useForTwistd
from mailplat.policy.registry import PolicyError
from mailplat.service import MailplatService


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = (
        "Run the mailplat mail server (ESMTP, queue, Maildir, POP3, IMAP) "
        "described by a TOML config file."
    )
    optParameters = [["config", "c", None, "The TOML configuration file."]]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        parent = getattr(self, "parent", None)
        if parent is not None:
            # twistd reads --logger after the plugin's options are parsed: a
            # command line without --logger or --syslog gets mailplat's
            # buffered text log (the same lines, cheaper; see logobserver).
            useForTwistd(parent)


def _exit(message):
    """
    Print C{message} on the process's real standard error (twistd replaces
    C{sys.stderr} with a log file once logging starts) and exit with status 1.
    """
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"mailplat: {message}\n")
    stream.flush()
    raise SystemExit(1)


class TwistdMailplatService(MailplatService):
    """
    L{MailplatService} as twistd runs it: a port that cannot be bound ends the
    process with one clear line and exit status 1, not a traceback.
    """

    def privilegedStartService(self):
        try:
            MailplatService.privilegedStartService(self)
        except ListenError as e:
            _exit(str(e))

    def startService(self):
        try:
            MailplatService.startService(self)
        except ListenError as e:
            _exit(str(e))


def makeService(options):
    """
    Load and validate the config; on errors print all of them and exit 1.
    """
    try:
        config = loadConfig(options["config"])
    except ConfigError as e:
        _exit(e.describe())
    try:
        return TwistdMailplatService(config)
    except PolicyError as e:
        _exit(ConfigError(options["config"], e.problems).describe())
