"""The session verdict: pass rate against the minimum, errors against their budget."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmregress.verdict.results import CaseResult
from pytest_llmregress.verdict.stats import PassRate, wilson_interval


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
    # With --llm-repeat=K > 1: K, and under --llm-gate=mean the mean over cases of each
    # case's share of passing repeats with its cluster-bootstrap interval. ``passed`` and
    # ``failed`` count cases (a case passes when every repeat passed); under --llm-gate=all
    # their rate is the gate's.
    repeats: int = 1
    gate: str = "mean"
    mean_rate: float | None = None
    mean_interval: tuple[float, float] | None = None
    not_run: int = 0  # cases the budget (--llm-max-cost) stopped: not errors, not in any rate

    @property
    def pass_rate(self) -> float | None:
        """The rate the gate reads: the mean of repeats, or passed cases over scored ones."""
        if self.mean_rate is not None:
            return self.mean_rate
        return self.passed / self.scored if self.scored else None

    @property
    def interval(self) -> tuple[float, float]:
        if self.mean_rate is not None and self.mean_interval is not None:
            return self.mean_interval
        return wilson_interval(self.passed, self.scored)

    @property
    def rate_name(self) -> str:
        """What the pass rate is, in words: ``pass rate``, ``mean pass rate over 5 repeats``,
        ``pass^5 rate (every repeat passed)``."""
        if self.repeats <= 1:
            return "pass rate"
        if self.mean_rate is not None:
            return f"mean pass rate over {self.repeats} repeats"
        return f"pass^{self.repeats} rate (every repeat passed)"

    @property
    def scored(self) -> int:  # type: ignore[override]
        return self.passed + self.failed

    @property
    def total(self) -> int:
        return self.scored + self.errors + self.by_fallback + self.not_run

    @property
    def error_rate(self) -> float:
        ran = self.total - self.not_run
        return self.errors / ran if ran else 0.0

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
    gate: str = "mean",
) -> Verdict:
    """Apply the gate to the results of one run.

    Cases run several times (``--llm-repeat``) are gated as ``gate`` says: ``mean``, on the
    mean over cases of their share of passing repeats; ``all``, on the share of cases whose
    every repeat passed (pass^K).
    """
    from pytest_llmregress.verdict.judging import repeat_report

    results = list(results)
    passed = failed = errors = by_fallback = recorded = not_run = 0
    errored: list[CaseResult] = []
    for result in results:
        if result.outcome == "error" and result.error_kind == "budget":
            not_run += 1
        elif result.recorded:
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
    repeated = repeat_report(results)
    repeats = repeated.repeats if repeated else 1
    mean_rate = mean_interval = None
    if repeated is not None and gate == "mean":
        summary = repeated.summary
        mean_rate = summary.mean_pass_rate
        if summary.interval is not None:
            mean_interval = (summary.interval.low, summary.interval.high)
    if mean_rate is not None and mean_rate < min_pass_rate:
        reasons.append(
            f"mean pass rate over {repeats} repeats {mean_rate:.1%} ({scored} cases) is below "
            f"the minimum {min_pass_rate:.1%}"
        )
    elif mean_rate is None and scored and passed / scored < min_pass_rate:
        what = f"pass^{repeats} rate (every repeat passed)" if repeats > 1 else "pass rate"
        reasons.append(
            f"{what} {passed / scored:.1%} ({passed}/{scored}) is below the minimum "
            f"{min_pass_rate:.1%}"
        )
    if total and not scored and not recorded:
        if by_fallback and not errors:
            reasons.append(f"the primary model answered no case: fallbacks answered all {total}")
        else:
            reasons.append("no case could be scored")
    if not_run:
        reasons.append(
            f"the budget (--llm-max-cost) stopped the run: {not_run} cases not run or not "
            "finished; a partial run is never a pass"
        )
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
        repeats,
        gate,
        mean_rate,
        mean_interval,
        not_run,
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
