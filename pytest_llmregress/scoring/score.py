"""The verdict of one scorer on one output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ScorerError(Exception):
    """A scorer could not reach a verdict (bad judge reply, missing reference, ...).

    The case becomes an ``error`` outcome, never a silent score of 0.
    """


@dataclass(frozen=True)
class Score:
    """One scorer's verdict: a value in 0..1, whether it passed, and why."""

    scorer: str
    value: float
    passed: bool
    reason: str
    threshold: float | None = None
    judge_model: str | None = None
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Only scalar fields: a shallow copy is the JSON-able dict (asdict deep-copies, slowly).
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        return cls(**data)
