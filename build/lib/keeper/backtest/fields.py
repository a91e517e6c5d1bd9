"""Typed reading of one TOML table, with errors that name the offending field.

Every getter marks its key as used; ``finish()`` then rejects keys nobody asked for, so a
misspelt field fails loudly instead of silently taking its default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keeper.backtest.durations import parse_duration
from keeper.errors import ConfigError

_REQUIRED: Any = object()


class Fields:
    """One table of a scenario file; ``where`` is its dotted path, e.g. ``policies[2]``."""

    def __init__(self, table: object, where: str, source: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: field '{where}' must be a table, got {table!r}")
        self._table: dict[str, Any] = table
        self._where = where
        self._source = source
        self._used: set[str] = set()

    def name(self, key: str) -> str:
        """The dotted name of ``key`` in this table."""
        return f"{self._where}.{key}" if self._where else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._source}: field '{self.name(key)}': {problem}")

    def has(self, key: str) -> bool:
        return key in self._table

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key in self._table:
            return self._table[key]
        if default is _REQUIRED:
            raise self.error(key, "is required but missing")
        return default

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        minimum: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self._get(key, default)
        return self._check_number(key, value, minimum, positive)

    def _check_number(self, key: str, value: Any, minimum: float | None, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error(key, f"expected a finite number, got {value!r}")
        if positive and number <= 0.0:
            raise self.error(key, f"must be positive, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        return number

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        return value

    def text(self, key: str, default: Any = _REQUIRED, *, choices: Sequence[str] = ()) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def duration(self, key: str, default: Any = _REQUIRED) -> float:
        """Seconds; see ``keeper.backtest.durations``."""
        value = self._get(key, default)
        return parse_duration(value, f"{self._source}: field '{self.name(key)}'")

    def numbers(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        minimum: float | None = None,
        positive: bool = False,
    ) -> tuple[float, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not value:
            raise self.error(key, f"expected a non-empty list of numbers, got {value!r}")
        return tuple(self._check_number(key, item, minimum, positive) for item in value)

    def table(self, key: str) -> Fields:
        return Fields(self._get(key, _REQUIRED), self.name(key), self._source)

    def tables(self, key: str) -> list[Fields]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not value:
            raise self.error(key, "expected a non-empty array of tables ([[...]])")
        return [
            Fields(item, f"{self.name(key)}[{index}]", self._source)
            for index, item in enumerate(value)
        ]

    def finish(self) -> None:
        """Reject keys that no getter read (typos, fields of another model)."""
        unknown = sorted(set(self._table) - self._used)
        if unknown:
            raise self.error(unknown[0], "is not a known field here")
