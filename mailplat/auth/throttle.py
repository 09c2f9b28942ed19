"""
Throttling of failed logins per client address: each failure within the
window doubles an extra wait before the next attempt is answered.
"""


class AuthThrottle:
    """
    @ivar clock: an L{IReactorTime}.
    @ivar base: the first extra wait, in seconds.
    @ivar maximum: the longest extra wait.
    @ivar window: failures older than this are forgotten.
    """

    def __init__(self, clock, base=1.0, maximum=30.0, window=3600.0):
        self.clock = clock
        self.base = base
        self.maximum = maximum
        self.window = window
        self._failures = {}

    def _recent(self, address):
        now = self.clock.seconds()
        count, last = self._failures.get(address, (0, 0.0))
        if count and now - last > self.window:
            del self._failures[address]
            return 0
        return count

    def delay(self, address):
        """
        @return: how long to wait before answering the next login attempt from
            C{address} (0 with no recent failures).
        """
        count = self._recent(address)
        if not count:
            return 0.0
        return min(self.base * 2 ** (count - 1), self.maximum)

    def failed(self, address):
        self._failures[address] = (self._recent(address) + 1, self.clock.seconds())

    def succeeded(self, address):
        self._failures.pop(address, None)
