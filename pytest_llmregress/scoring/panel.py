"""A judge score made of several judge calls: a panel of judges, each judge repeated, and the
order check (issue 15).

- Each judge's value is the mean of its repeats (``--llm-judge-repeat``): repeating a judge
  averages out its own noise.
- The panel decides (``--llm-judge-panel``): ``mean``, the mean of the judges' values against
  the threshold; ``majority``, the *lower median* of the judges' values against the threshold,
  which passes exactly when more than half of the judges passed (a tie fails), and keeps the
  score's value and its verdict consistent (``0.84 < 0.90`` means what it says).
- Votes with the candidate shown first (``Vote.swapped``) are measured for position bias and
  never counted in the score.

Pure functions; the runner makes the calls.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

from pytest_llmregress.scoring.score import Score, Vote

PanelMode = Literal["mean", "majority"]
PANEL_MODES: tuple[str, ...] = ("mean", "majority")


def in_order_sample(case_id: str, share: float) -> bool:
    """Whether a case is in the order check's sample: a stable draw from its id, so the same
    cases are checked in every run and every process."""
    if share <= 0.0:
        return False
    digest = hashlib.sha256(f"llmregress-order:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def judge_values(votes: Sequence[Vote]) -> dict[str, float]:
    """Each judge's value: the mean of its counted (not swapped) votes, in panel order."""
    by_judge: dict[str, list[float]] = {}
    for vote in votes:
        if not vote.swapped:
            by_judge.setdefault(vote.judge, []).append(vote.value)
    return {judge: math.fsum(values) / len(values) for judge, values in by_judge.items()}


def combine(scores: Sequence[Score], votes: Sequence[Vote], mode: PanelMode) -> Score:
    """The panel's score from the counted judge ``scores`` (one per judge call, panel order,
    each judge's repeats together) and every vote (``swapped`` ones included, kept on the
    score). A single counted score without swapped votes is returned as it is."""
    if len(scores) == 1 and len(votes) <= 1:
        return scores[0]
    first = scores[0]
    threshold = first.threshold if first.threshold is not None else 0.0
    values = judge_values(votes)
    per_judge = list(values.values())
    if mode == "majority":
        from statistics import median_low  # not at start-up

        value = median_low(per_judge)
    else:
        value = math.fsum(per_judge) / len(per_judge)
    value = round(value, 4)
    criteria: dict[str, float] | None = None
    if first.criteria is not None:
        n = len(scores)
        criteria = {
            name: round(math.fsum((s.criteria or {}).get(name, 0.0) for s in scores) / n, 4)
            for name in first.criteria
        }
    counted = [v for v in votes if not v.swapped]
    judges = len(values)
    repeats = len(counted) // judges if judges else 0
    passed_judges = sum(1 for v in values.values() if v >= threshold)
    parts = []
    if judges > 1:
        parts.append(f"panel of {judges} judges, {passed_judges} passed, {mode}")
    if repeats > 1:
        parts.append(f"each judge {repeats} times")
    head = f"[{'; '.join(parts)}] " if parts else ""
    return Score(
        scorer=first.scorer,
        value=value,
        passed=value >= threshold,
        reason=f"{head}{first.reason}",
        threshold=first.threshold,
        judge_model=first.judge_model if judges == 1 else ",".join(values),
        raw=first.raw,
        criteria=criteria,
        votes=tuple(votes),
    )
