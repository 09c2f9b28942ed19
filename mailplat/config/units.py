"""
Parsing of the human-friendly units used in the config: durations and sizes.
"""

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_FACTORS = {
    "ms": 0.001,
    "s": 1,
    None: 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgKMG]i?[bB]?|[bB])?\s*$")
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parseDuration(value):
    """
    Parse a duration: a number of seconds, or a string such as C{"90s"},
    C{"5m"}, C{"4h"}, C{"5d"}, C{"250ms"}.

    @return: seconds as a L{float}
    @raise ValueError: when C{value} is not a duration.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 4h or 5d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_FACTORS[m.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 4h or 5d, not {value!r}")


def parseSize(value):
    """
    Parse a size in bytes: an integer, or a string such as C{"25M"},
    C{"512KiB"}, C{"1G"} (binary multiples).

    @return: bytes as an L{int}
    @raise ValueError: when C{value} is not a size.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size such as 25M or 512K")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = (m.group(2) or "").lower()[:1]
            return int(m.group(1)) * _SIZE_FACTORS[unit]
    raise ValueError(f"expected a size such as 25M or 512K, not {value!r}")
