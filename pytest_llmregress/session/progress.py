"""A progress line for long runs, where pytest's own progress says little: in CI logs (no
TTY, where pytest prints dots) and under xdist (where the controller prints a character per
report). Every ``interval`` seconds at most, as results arrive:

    llmregress: 120/500 cases (24%), pass rate 91.7% so far, 2 errors; in flight: 16 candidate,
    12 judge calls; backing off: candidate limit 8 of 32; spent $0.42; ETA 1 min 20 s

With ``--llm-batch`` it also says how far the provider batches are (and shows in a terminal
too: nothing else moves while a batch runs). Off with ``-q``. The runner's side (calls in
flight, back-off, batches) comes from the runner process's ``status``; the rest from the
results gathered so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmregress.core.text import percent

DEFAULT_INTERVAL_S = 5.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def progress_text(
    *,
    done: int,
    total: int,
    passed: int,
    failed: int,
    errors: int,
    elapsed_s: float,
    status: Mapping[str, Any] | None = None,
) -> str:
    """The line, from counts and the runner's status (None: not known here)."""
    share = f" ({done / total:.0%})" if total else ""
    parts = [f"llmregress: {done}/{total} cases{share}"]
    scored = passed + failed
    if scored:
        parts[0] += f", pass rate {percent(passed / scored)} so far"
    parts[0] += f", {errors} error{'' if errors == 1 else 's'}"
    if status:
        flight = status.get("in_flight", {})
        parts.append(
            f"in flight: {flight.get('candidate', 0)} candidate, {flight.get('judge', 0)} "
            "judge calls"
        )
        backing = [
            f"{kind} limit {status['limit'][kind]} of {status['max'][kind]}"
            for kind in ("candidate", "judge")
            if status.get("limit", {}).get(kind, 0) < status.get("max", {}).get(kind, 0)
        ]
        if status.get("held_s", 0) > 0:
            backing.append(f"new calls held {status['held_s']:.1f} s (retry-after)")
        if backing:
            parts.append("backing off: " + ", ".join(backing))
        batches = status.get("batches") or []
        if batches:
            done = sum(b["done"] for b in batches)
            total = sum(b["total"] for b in batches)
            ended = sum(1 for b in batches if b["status"] == "read")
            parts.append(
                f"batches: {ended} of {len(batches)} read, {done}/{total} requests processed"
            )
        if status.get("spent") is not None:
            parts.append(f"spent ${status['spent']:.2f}")
    if 0 < done < total and elapsed_s > 0:
        parts.append(f"ETA {_duration(elapsed_s / done * (total - done))}")
    return "; ".join(parts)


@dataclass
class Progress:
    """When to say the line: at most once per ``interval`` seconds, and not after the end."""

    write: Callable[[str], None]
    status: Callable[[], Mapping[str, Any] | None]
    interval: float = DEFAULT_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    started: float | None = None  # when the run started (the clock's time); None: now
    _last: float = field(default=0.0)

    def __post_init__(self) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        self._last = self.started

    def due(self) -> bool:
        """Whether ``interval`` has passed since the last line (or the start)."""
        return self.clock() - self._last >= self.interval

    def tick(self, *, done: int, total: int, passed: int, failed: int, errors: int) -> bool:
        """Say the line if ``interval`` has passed since the last one; whether it did."""
        now = self.clock()
        if now - self._last < self.interval or done >= total:
            return False
        self._last = now
        try:
            status = self.status()
        except Exception:  # the runner is gone: its cases say so; the line goes on without it
            status = None
        self.write(
            progress_text(
                done=done,
                total=total,
                passed=passed,
                failed=failed,
                errors=errors,
                elapsed_s=now - (self.started or now),
                status=status,
            )
        )
        return True
