"""
A throw-away PAM service for tests: C{/etc/pam.d/mailplat-test-RANDOM},
whose C{auth} stack is C{pam_exec.so expose_authtok} running a small script
that accepts exactly the given user names and passwords.  No system account
is read or touched.

Why a file in C{/etc/pam.d}, which needs root: the checker under test calls
python-pam, which calls C{pam_start(service, ...)}, and Linux-PAM reads
C{/etc/pam.d/SERVICE} for that.  Linux-PAM 1.4+ also has
C{pam_start_confdir}, which takes another directory, but python-pam does not
use it: the tests would have to replace python-pam's C{pam_start} binding,
and then test a path that the server never takes.  So the tests need root
(they run as root here and in CI), and without it they fail, saying why,
rather than skip.
"""

import os
import secrets
import shlex

PAM_DIRECTORY = "/etc/pam.d"


def requireRoot():
    """
    @raise AssertionError: the process is not root, so it cannot create a
        PAM service.
    """
    if os.geteuid() != 0:
        raise AssertionError(
            "the PAM tests create a PAM service in /etc/pam.d and must run as "
            "root (see tests/pamsupport.py for why they do not skip)"
        )


def _script(accounts, callLog):
    lines = [
        "#!/bin/sh",
        "# pam_exec expose_authtok: the password on stdin, NUL-terminated.",
        "password=$(tr -d '\\000')",
        f'printf "%s %s\\n" "$PAM_SERVICE" "$PAM_USER" >> {shlex.quote(callLog)}',
        'case "$PAM_USER" in',
    ]
    for user, password in accounts.items():
        lines.append(
            f"  {shlex.quote(user)}) "
            f'[ "$password" = {shlex.quote(password)} ] && exit 0 ;;'
        )
    lines += ["esac", "exit 1", ""]
    return "\n".join(lines)


class PAMService:
    """
    A PAM service that accepts C{accounts} (a dict of user name to
    password) and nothing else.

    @ivar name: the service name, C{mailplat-test-} and random hex.
    @ivar path: its file in C{/etc/pam.d}.
    @ivar callLog: a file with a line C{"SERVICE USER"} for each time PAM
        ran the script.
    """

    def __init__(self, directory, accounts):
        requireRoot()
        self.name = f"mailplat-test-{secrets.token_hex(8)}"
        self.path = os.path.join(PAM_DIRECTORY, self.name)
        os.makedirs(directory, exist_ok=True)
        self.callLog = os.path.join(directory, f"{self.name}.calls")
        open(self.callLog, "w").close()
        script = os.path.join(directory, f"{self.name}.sh")
        with open(script, "w") as f:
            f.write(_script(accounts, self.callLog))
        os.chmod(script, 0o700)
        with open(self.path, "x") as f:
            f.write(
                f"# mailplat test service ({__file__}); removed by the test.\n"
                f"auth required pam_exec.so expose_authtok quiet {script}\n"
                "account required pam_permit.so\n"
            )

    def calls(self):
        """
        @return: the user names PAM asked the script about, in order.
        """
        with open(self.callLog) as f:
            return [line.split(" ", 1)[1].rstrip("\n") for line in f if line.strip()]

    def remove(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def missingServiceName():
    """
    A service name with no file in C{/etc/pam.d}.
    """
    while True:
        name = f"mailplat-test-missing-{secrets.token_hex(8)}"
        if not os.path.exists(os.path.join(PAM_DIRECTORY, name)):
            return name
