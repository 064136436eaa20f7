"""Checks of builder options, so a bad value fails with a ConfigError naming the option."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError


def _fail(model: str, option: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"model '{model}' option {option}={value!r} is invalid: expected {expected}")


def int_in_range(model: str, option: str, value: Any, low: int, high: int | None = None) -> int:
    """An int in [low, high] (no upper bound when high is None)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise _fail(model, option, value, bound)
    return value


def probability(model: str, option: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _fail(model, option, value, "a number in [0, 1)")
    return float(value)


def int_tuple(model: str, option: str, value: Any, length: int | None, low: int = 1) -> tuple[int, ...]:
    """A tuple of ints >= low; an int is broadcast when a length is given."""
    if length is not None and isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * length
    what = f"{length} integers >= {low}" if length else f"a list of integers >= {low}"
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _fail(model, option, value, what)
    items = tuple(value)
    if (length is not None and len(items) != length) or not items:
        raise _fail(model, option, value, what)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in items):
        raise _fail(model, option, value, what)
    return items
