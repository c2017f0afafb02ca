"""The session verdict: pass rate against the minimum, errors against their budget."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmregress.verdict.results import CaseResult
from pytest_llmregress.verdict.stats import PassRate


@dataclass(frozen=True)
class Verdict(PassRate):
    """Counts, rates and whether the golden suite passes, with the reasons when not."""

    passed: int
    failed: int
    errors: int
    missing: int
    by_fallback: int  # answered by a fallback model: reported apart, not the primary's
    min_pass_rate: float
    max_error_rate: float
    reasons: tuple[str, ...]
    recorded: int = 0  # outputs taken as new references: not passes, not in any rate

    @property
    def scored(self) -> int:  # type: ignore[override]
        return self.passed + self.failed

    @property
    def total(self) -> int:
        return self.scored + self.errors + self.by_fallback

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def is_recording(self) -> bool:
        """A run that recorded references gives no verdict on the model."""
        return self.recorded > 0


def decide(
    results: Iterable[CaseResult],
    *,
    min_pass_rate: float,
    max_error_rate: float,
    missing: int = 0,
) -> Verdict:
    """Apply the gate to the results of one run."""
    passed = failed = errors = by_fallback = recorded = 0
    errored: list[CaseResult] = []
    for result in results:
        if result.recorded:
            recorded += 1
        elif result.completion is not None and result.completion.fallback_model:
            by_fallback += 1
        elif result.outcome == "passed":
            passed += 1
        elif result.outcome == "failed":
            failed += 1
        else:
            errors += 1
            errored.append(result)
    reasons: list[str] = []
    scored = passed + failed
    total = scored + errors + by_fallback
    if total and errors / total > max_error_rate:
        reasons.append(
            f"{errors} of {total} cases errored ({errors / total:.1%} > max error rate "
            f"{max_error_rate:.1%}): {_error_causes(errored)}; not the model's quality"
        )
    if scored and passed / scored < min_pass_rate:
        reasons.append(
            f"pass rate {passed / scored:.1%} ({passed}/{scored}) is below the minimum "
            f"{min_pass_rate:.1%}"
        )
    if total and not scored and not recorded:
        if by_fallback and not errors:
            reasons.append(f"the primary model answered no case: fallbacks answered all {total}")
        else:
            reasons.append("no case could be scored")
    if missing:
        reasons.append(
            f"{missing} golden cases have no result (interrupted, or a worker died): the run is "
            f"incomplete, not a smaller denominator"
        )
    return Verdict(
        passed,
        failed,
        errors,
        missing,
        by_fallback,
        min_pass_rate,
        max_error_rate,
        tuple(reasons),
        recorded,
    )


#: Error kinds that are problems of the case itself (its golden file, prompt or scorers), not a
#: failed model or judge call.
CASE_PROBLEM_KINDS = frozenset({"scorer", "prompt", "no_judge"})


def _error_causes(errored: Iterable[CaseResult]) -> str:
    """Errors said as what failed: calls to the provider, or the cases themselves."""
    kinds = [result.error_kind for result in errored]
    problems = sum(1 for kind in kinds if kind in CASE_PROBLEM_KINDS)
    calls = len(kinds) - problems
    causes = []
    if calls:
        causes.append(f"{calls} model or judge calls failed")
    if problems:
        causes.append(
            f"{problems} cases could not be scored (a golden-file, prompt or scorer problem)"
        )
    return "; ".join(causes)
