"""Numbers and text as every report writes them: rates, points, counts, p-values, one line;
and strings read many times over, kept once."""

from __future__ import annotations

import sys
from typing import TypeVar, cast

_T = TypeVar("_T")


def shared(value: _T) -> _T:
    """``value``, when it is a string read many times over (a model id, a file's path, an
    outcome), as the one copy every reader shares (``sys.intern``); anything else as it is.
    At 5,000 results a fresh copy of each such string per result was megabytes."""
    if isinstance(value, str) and type(value) is str:  # sys.intern takes no subclass
        return cast(_T, sys.intern(value))
    return value


def percent(value: float) -> str:
    """A rate as a percentage with one decimal: 0.8123 -> 81.2%."""
    return f"{value:.1%}"


def points(value: float) -> str:
    """A difference of rates in percentage points: 0.1 -> '10.0 points'."""
    amount = abs(value) * 100
    return f"{amount:.1f} point" + ("" if round(amount, 1) == 1.0 else "s")


def cases(count: int) -> str:
    """``3 cases``, ``1 case``."""
    return f"{count} case" + ("" if count == 1 else "s")


def p_value(value: float) -> str:
    """A p-value with three decimals, or two significant digits below 0.001."""
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def one_line(text: str | None, limit: int = 160) -> str:
    """Text on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
