"""
Loading mailplat's Twisted plugins (checks, credential checkers, stores,
delivery targets) with L{twisted.plugin.getPlugins}, the mechanism twistd
itself uses, while noticing plugin modules that fail to import:
C{getPlugins} only logs those and carries on, so a typo in a plugin would
silently turn into "unknown type".
"""

import os

from twisted.logger import globalLogPublisher
from twisted.plugin import getPlugins

# Plugin modules whose file name starts with this are mailplat's: when one
# fails to import, start-up stops.
PREFIX = "mailplat"


def _pluginFile(failure):
    """
    The plugin module file a load failure comes from, if its traceback
    goes through a C{twisted/plugins/} directory.
    """
    found = None
    for frame in failure.frames:
        filename = frame[1]
        if f"{os.sep}twisted{os.sep}plugins{os.sep}" in filename:
            found = filename
    return found


def loadPlugins(interface):
    """
    @return: C{(plugins, failures)}: the plugin objects providing
        C{interface}, and C{(file, problem)} pairs for plugin modules that
        could not be imported.
    """
    failures = []

    def observe(event):
        failure = event.get("log_failure") or event.get("failure")
        if failure is None:
            return
        where = _pluginFile(failure)
        if where is not None:
            failures.append((where, f"{type(failure.value).__name__}: {failure.value}"))

    globalLogPublisher.addObserver(observe)
    try:
        plugins = list(getPlugins(interface))
    finally:
        globalLogPublisher.removeObserver(observe)
    return plugins, failures


def isOurs(path):
    """
    Whether a plugin file is one of mailplat's (by its name).
    """
    return os.path.basename(path).startswith(PREFIX)


def findPlugins(interface, plugins=None):
    """
    The plugins of one extension point, with the problems that stop
    start-up.

    @param plugins: the plugin objects to use instead of looking them up
        (tests); then nothing failed to import.
    @return: C{(plugins, problems, failures)}: the plugin objects providing
        C{interface}; a line for each mailplat plugin module (L{isOurs})
        that failed to import; and C{(file, problem)} for every plugin
        module that failed to import (hints for an unknown name).
    """
    if plugins is not None:
        return list(plugins), [], []
    plugins, failures = loadPlugins(interface)
    problems = [
        f"plugin {path} failed to load: {problem}"
        for path, problem in failures
        if isOurs(path)
    ]
    return plugins, problems, failures


def unknownName(what, name, known, failures):
    """
    The problem line for a name that no plugin provides: the names known,
    and every plugin module that failed to load (it may have been the one).

    @param what: what the name is of (C{"check type"}).
    @param known: the known names, in the order to show them.
    @param failures: C{(file, problem)} pairs, from L{findPlugins}.
    """
    hint = "".join(f"; plugin {path} failed to load: {problem}" for path, problem in failures)
    return f"unknown {what} {name!r} (known: {', '.join(known) or 'none'}){hint}"


def describe(plugin):
    """
    How problems name a plugin object: its module, else its C{repr}.
    """
    return getattr(plugin, "__module__", None) or repr(plugin)
