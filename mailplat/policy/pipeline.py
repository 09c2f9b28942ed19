"""
The check pipeline: runs the checks of a stage in config order until one
gives a final verdict.
"""

from twisted.internet import defer

from mailplat.policy.verdict import CONTINUE_VERDICT

STAGES = ("connect", "helo", "mail", "rcpt", "data")


class Pipeline:
    """
    @ivar checks: L{mailplat.interfaces.ICheck} providers in config order.
    """

    def __init__(self, checks):
        self.checks = list(checks)
        self._byStage = {
            stage: [c for c in self.checks if stage in c.stages] for stage in STAGES
        }

    def run(self, stage, facts):
        """
        @return: a Deferred firing with the first final verdict of C{stage},
            or the C{continue} verdict when every check continued.  Checks
            that answer synchronously (most built-ins) are run without an
            C{inlineCallbacks} generator: one SMTP command costs one stage.
        """
        return self._runFrom(self._byStage[stage], 0, stage, facts)

    def _runFrom(self, checks, i, stage, facts):
        while i < len(checks):
            try:
                verdict = checks[i].check(stage, facts)
            except BaseException:
                return defer.fail()
            i += 1
            if isinstance(verdict, defer.Deferred):
                return verdict.addCallback(self._continue, checks, i, stage, facts)
            if verdict.final:
                return defer.succeed(verdict)
        return defer.succeed(CONTINUE_VERDICT)

    def _continue(self, verdict, checks, i, stage, facts):
        if verdict.final:
            return verdict
        return self._runFrom(checks, i, stage, facts)
