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
            or the C{continue} verdict when every check continued.
        """
        result = self.runNow(stage, facts)
        if isinstance(result, defer.Deferred):
            return result
        return defer.succeed(result)

    def runNow(self, stage, facts):
        """
        Like L{run}, but when every check answered synchronously (as most
        built-ins do), the verdict itself rather than a Deferred: an SMTP
        command then costs no Deferred and no generator.

        @return: a verdict, or a Deferred firing with one (or failing with
            the error a check raised).
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
                return verdict
        return CONTINUE_VERDICT

    def _continue(self, verdict, checks, i, stage, facts):
        if verdict.final:
            return verdict
        return self._runFrom(checks, i, stage, facts)
