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

    @defer.inlineCallbacks
    def run(self, stage, facts):
        """
        @return: a Deferred firing with the first final verdict of C{stage},
            or the C{continue} verdict when every check continued.
        """
        for check in self._byStage[stage]:
            verdict = yield defer.maybeDeferred(check.check, stage, facts)
            if verdict.final:
                return verdict
        return CONTINUE_VERDICT

