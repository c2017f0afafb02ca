"""A team's scorers, applied in the pytest process when a case's result arrives.

The runner process scores the built-in scorers and the judge; it cannot see a team's code, so
it passes the team's specs through (:attr:`~pytest_llmregress.scoring.registry.ScorerSpec.
in_pytest`). The pytest process that holds the case finishes the result: its ``RunnerClient``
applies :func:`finish_with_team_scorers` on its reader thread, before the result is journaled
and before the item waiting for it wakes up. The outcome is decided again by the runner's own
rule (:func:`~pytest_llmregress.scoring.score.decide`); a team scorer that raises makes the
case an ``error`` outcome, never a silent 0.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_llmregress.core.masking import mask_urls_in
from pytest_llmregress.core.validation import describe
from pytest_llmregress.scoring.score import RECORD_SCORER, Score, ScorerError, decide

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase
    from pytest_llmregress.scoring.registry import ScorerRegistry, ScorerSpec
    from pytest_llmregress.verdict.results import CaseResult

__all__ = ["finish_with_team_scorers", "score_team_scorers"]


def finish_with_team_scorers(
    registry: ScorerRegistry,
) -> Callable[[CaseResult, GoldenCase], CaseResult]:
    """The ``finish`` of a pytest process's ``RunnerClient``: ``(result, case) -> result``,
    with ``case``'s team scorers (from ``registry``, the session's) applied. Never raises."""

    def finish(result: CaseResult, case: GoldenCase) -> CaseResult:
        return score_team_scorers(registry, result, case)

    return finish


def score_team_scorers(
    registry: ScorerRegistry, result: CaseResult, case: GoldenCase
) -> CaseResult:
    """``result`` with the scores of ``case``'s team scorers, and its outcome decided again.

    The scores stay in the order of the case's ``scorers``. A result that is an error already
    (a failed call, a scorer error in the runner) is returned as it is, as is one of a case
    without team scorers. While the reference is being recorded, a team scorer that needs it
    is left out, as the runner leaves out the built-ins that do.
    """
    if (result.outcome == "error" and not result.repeats) or result.output is None:
        return result
    if not any(spec.in_pytest for spec in case.scorers):
        return result
    if result.repeats:  # each repeat scored as a run of its own, then the case again
        runs = tuple(score_team_scorers(registry, run, case) for run in result.repeats)
        return type(result).of_repeats(runs)
    started = time.perf_counter()
    recording = any(score.scorer == RECORD_SCORER for score in result.scores)
    scores = [score for score in result.scores if score.scorer == RECORD_SCORER]
    by_runner = iter([score for score in result.scores if score.scorer != RECORD_SCORER])
    for spec in case.scorers:
        if recording and registry.needs_reference(spec):
            continue
        if not spec.in_pytest:  # the runner scored it: one score per spec, in order
            scored = next(by_runner, None)
            if scored is not None:
                scores.append(scored)
            continue
        try:
            scores.append(_score_one(registry, spec, result.output, case))
        except Exception as error:  # a team's code: whatever it raises is an error outcome
            return dataclasses.replace(
                result,
                outcome="error",
                error=f"scoring failed: {mask_urls_in(_failure(spec, error))}",
                error_kind="scorer",
                scores=tuple(scores),
                recorded=False,
                duration_s=result.duration_s + time.perf_counter() - started,
            )
    scores.extend(by_runner)  # none left, unless the runner scored differently
    outcome, recorded = decide(scores, recording=recording, output=result.output)
    return dataclasses.replace(
        result,
        outcome=outcome,
        recorded=recorded,
        scores=tuple(scores),
        duration_s=result.duration_s + time.perf_counter() - started,
    )


class _BadScore(Exception):
    """A team's score function returned something that is not a usable Score."""


def _score_one(registry: ScorerRegistry, spec: ScorerSpec, output: str, case: GoldenCase) -> Score:
    score = registry.score(spec, output, case)
    if not isinstance(score, Score):
        raise _BadScore(f"scorer {spec.name!r} returned {describe(score)}, expected a Score")
    value = score.value
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise _BadScore(f"scorer {spec.name!r} returned a score of {value!r}, outside 0..1")
    return score


def _failure(spec: ScorerSpec, error: Exception) -> str:
    if isinstance(error, _BadScore):
        return str(error)
    if isinstance(error, ScorerError):
        return f"scorer {spec.name!r}: {error}"
    return f"scorer {spec.name!r} raised {type(error).__name__}: {error}"
