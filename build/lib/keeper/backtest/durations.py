"""Durations written the way a scenario file writes them.

A duration is a number of seconds, or a string ``"<number><unit>"`` with an optional
``"/<divisor>"``: ``"12s"``, ``"block"`` (one 12-second Ethereum slot), ``"5m"``, ``"1h"``,
``"30d"``, ``"1w/4"`` (a quarter of a week), ``"1y"`` (365 days).
"""

from __future__ import annotations

import re

from keeper.errors import ConfigError

SECONDS_PER_YEAR = 365.0 * 86400.0
BLOCK_SECONDS = 12.0

_UNIT_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "block": BLOCK_SECONDS,
    "blocks": BLOCK_SECONDS,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": SECONDS_PER_YEAR,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*$")


def parse_duration(value: object, field: str) -> float:
    """Seconds in ``value``; a ``ConfigError`` naming ``field`` when it is not a duration."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a duration such as '1h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value, field)
    else:
        raise ConfigError(f"{field}: expected a duration such as '1h', got {value!r}")
    if not seconds > 0.0:
        raise ConfigError(f"{field}: a duration must be positive, got {value!r}")
    return seconds


def _parse_text(text: str, field: str) -> float:
    match = _PATTERN.match(text.lower())
    if match is None or match.group(2) not in _UNIT_SECONDS:
        units = ", ".join(sorted(_UNIT_SECONDS))
        raise ConfigError(
            f"{field}: cannot read {text!r} as a duration (number + unit, units: {units}; "
            "optional '/divisor', e.g. '1w/4')"
        )
    count = float(match.group(1)) if match.group(1) else 1.0
    divisor = float(match.group(3)) if match.group(3) else 1.0
    if divisor == 0.0:
        raise ConfigError(f"{field}: divisor of {text!r} is zero")
    return count * _UNIT_SECONDS[match.group(2)] / divisor
