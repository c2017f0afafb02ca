"""The verdict of one scorer on one output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pytest_llmregress.core.text import shared

RECORD_SCORER: Final = "record"
"""The name of the score a recording run gives a case whose output becomes its reference."""


class ScorerError(Exception):
    """A scorer could not reach a verdict (bad judge reply, missing reference, ...).

    The case becomes an ``error`` outcome, never a silent score of 0.
    """


@dataclass(frozen=True)
class Vote:
    """One judge call's verdict on one output, kept when a judge score is several calls'
    (a panel of judges, ``--llm-judge-repeat``, the order check).

    ``repeat``: which of the judge's repeats (0 first); ``swapped``: the judge saw the candidate
    before the reference (the order check): such a vote is measured, never counted in the
    score. ``input_tokens``, ``output_tokens``: the call's usage, and ``cached``: its verdict
    came from the judge cache, and ``batch``: it went through the Batch API (what the call cost,
    for the cost report; 0 in results written before votes kept them).
    """

    judge: str
    value: float
    passed: bool
    repeat: int = 0
    swapped: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    batch: bool = False  # made through the provider's Batch API (priced at its batch price)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vote:
        return cls(**{**data, "judge": shared(data["judge"])})


@dataclass(frozen=True)
class Score:
    """One scorer's verdict: a value in 0..1, whether it passed, and why.

    ``threshold`` is the pass mark the scorer applied (``passed`` is ``value >= threshold``):
    the scorer's own ``threshold`` option or the case's for ``judge`` and ``similarity``, 1.0
    for the all-or-nothing scorers. None for a score without one (the record of a recording
    run, or a score stored before scorers recorded theirs).

    ``criteria``: the judge's value of each criterion of the case's rubric, by name (the
    ``value`` is their weighted mean); None for every other score, and in results files
    written before rubrics.

    ``votes``: every judge call behind a judge score made of several (see :class:`Vote`);
    empty for a score of one call, and for every other scorer.
    """

    scorer: str
    value: float
    passed: bool
    reason: str
    threshold: float | None = None
    judge_model: str | None = None
    raw: str | None = None
    criteria: dict[str, float] | None = field(default=None, hash=False)
    votes: tuple[Vote, ...] = ()

    def against_threshold(self) -> str:
        """The value against the threshold that decided it: ``0.86 < 0.90``, ``1.00 >= 0.85``.

        More decimals where two would print equal numbers (``0.897 < 0.900``); without a
        threshold, the value and the verdict (``0.00, failed``).
        """
        if self.threshold is None:
            return f"{self.value:.2f}, {'passed' if self.passed else 'failed'}"
        digits = 2
        while (
            digits < 4
            and self.value != self.threshold
            and f"{self.value:.{digits}f}" == f"{self.threshold:.{digits}f}"
        ):
            digits += 1
        sign = ">=" if self.passed else "<"
        return f"{self.value:.{digits}f} {sign} {self.threshold:.{digits}f}"

    def to_dict(self) -> dict[str, Any]:
        # Scalar fields but two: a shallow copy is the JSON-able dict (asdict deep-copies,
        # slowly). ``criteria`` and ``votes`` only when there are some, so other scores read
        # as before.
        data = dict(self.__dict__)
        criteria = data.pop("criteria")
        if criteria is not None:
            data["criteria"] = dict(criteria)
        votes = data.pop("votes")
        if votes:
            data["votes"] = [vote.to_dict() for vote in votes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        values = {**data, "scorer": shared(data["scorer"])}
        if "judge_model" in data:
            values["judge_model"] = shared(data["judge_model"])
        votes = data.get("votes")
        if votes:
            values["votes"] = tuple(Vote.from_dict(v) for v in votes)
        return cls(**values)


def decide(
    scores: Iterable[Score], *, recording: bool, output: str
) -> tuple[Literal["passed", "failed"], bool]:
    """A scored case's outcome, and whether its output became its reference.

    The one rule, for the runner process (built-in scorers, the judge) and for the pytest
    process (a team's scorers, applied when the result arrives): a case passes when every
    score passed; a recording run records an output that passed and is not blank.
    """
    passed = all(score.passed for score in scores)
    return ("passed" if passed else "failed"), recording and passed and bool(output.strip())
