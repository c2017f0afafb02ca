"""Paired comparison of two runs of the same golden cases: does the candidate regress?

A comparison pairs the cases of two results documents by ``(path, case_id)``, keeps the cases
that were scored in both runs, and asks two questions of them:

1. Is the candidate's pass rate lower than the baseline's by more than the practical margin
   (``max_regression``, a fraction: 0.05 is five percentage points)?
2. Is the difference more than noise? The exact McNemar test on the flips (cases that passed
   in one run and failed in the other) answers at significance level ``alpha``.

Only when both hold is the verdict ``"regression"``; the ``reasons`` say which condition
fired and which did not. The comparison also reports Wilson intervals for both pass rates,
a seeded paired-bootstrap interval for the mean score difference, and the smallest drop the
set can detect at its size (:func:`pytest_llmregress.verdict.stats.min_detectable_effect`).

:func:`alias_moved` reports model aliases that resolved to different versions (or system
fingerprints) between or within runs, and :func:`attribute` splits a migration's change into
the effect of the model, of the prompt, and their interaction from four runs, once
:func:`check_attribution_runs` has found that they form the 2x2 (same cases; the old and the
new model, the old and the new prompts, each in its place).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pytest_llmregress.core.text import cases as _cases
from pytest_llmregress.core.text import p_value as _p
from pytest_llmregress.core.text import percent
from pytest_llmregress.core.text import points as _points
from pytest_llmregress.settings import OPTIONS_BY_NAME
from pytest_llmregress.verdict.results import CaseResult, RunResult

if TYPE_CHECKING:
    from pytest_llmregress.verdict.repeats import RepeatedComparison

from pytest_llmregress.verdict.stats import (
    BootstrapInterval,
    PassRate,
    mcnemar_exact,
    min_detectable_effect,
    paired_bootstrap_ci,
    sign_test,
)

Flip = Literal["pass->fail", "fail->pass"]
VerdictName = Literal["regression", "within noise", "improvement"]
CaseKey = tuple[str, str]  # (path, case_id)

# The plugin's options' defaults (--llm-max-regression, --llm-alpha), also `llmregress compare`'s.
DEFAULT_MAX_REGRESSION: float = OPTIONS_BY_NAME["max_regression"].default
DEFAULT_ALPHA: float = OPTIONS_BY_NAME["alpha"].default
DEFAULT_POWER = 0.8
DEFAULT_RESAMPLES = 2000


def case_key(result: CaseResult) -> CaseKey:
    """What pairs a case across runs: its golden file and its id within that file."""
    return (result.path, result.case_id)


def _passed(result: CaseResult) -> bool:
    return result.outcome == "passed"


def _margin(value: float) -> str:
    """The margin as an adjective: 0.05 -> 'the 5.0-point margin'."""
    return f"the {abs(value) * 100:.1f}-point margin"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_label(run: RunResult, fallback: str) -> str:
    """The model a run evaluated (``metadata.candidate``), else ``fallback``."""
    candidate = run.metadata.get("candidate")
    return str(candidate) if candidate else fallback


@dataclass(frozen=True)
class RunModel:
    """The model a run evaluated (``metadata.candidate``) and the ids its API answered with.

    ``answered_as`` counts ``Completion.resolved_model`` over the replies of that model
    only: not the judge's, nor a fallback's. Both are empty when the run records no model.
    """

    requested: str | None
    answered_as: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, run: RunResult) -> RunModel:
        model = run.metadata.get("candidate")
        if not model:
            return cls(None)
        counts: dict[str, int] = {}
        for result in run.cases:
            completion = result.completion
            if (
                completion is None
                or completion.fallback_model
                or f"{completion.provider}:{completion.requested_model}" != model
            ):
                continue
            counts[completion.resolved_model] = counts.get(completion.resolved_model, 0) + 1
        return cls(str(model), counts)

    def label(self, fallback: str) -> str:
        """The requested id, with the ids the API answered with when they differ from it
        (``anthropic:claude-sonnet-latest (answered as claude-sonnet-4-6)``); ``fallback``
        (say, a file name) without a model."""
        if self.requested is None:
            return fallback
        versions = sorted(self.answered_as)
        if not versions or versions == [self.requested.partition(":")[2]]:
            return self.requested
        return f"{self.requested} (answered as {', '.join(versions)})"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.requested, "answered_as": dict(self.answered_as)}


# --- pairing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedCase:
    """One golden case as both runs saw it."""

    baseline: CaseResult
    candidate: CaseResult

    @property
    def key(self) -> CaseKey:
        return case_key(self.candidate)

    @property
    def case_id(self) -> str:
        return self.candidate.case_id

    @property
    def path(self) -> str:
        return self.candidate.path

    @property
    def nodeid(self) -> str:
        return self.candidate.nodeid

    @property
    def baseline_output(self) -> str | None:
        return self.baseline.output

    @property
    def candidate_output(self) -> str | None:
        return self.candidate.output

    @property
    def baseline_score(self) -> float | None:
        return self.baseline.score

    @property
    def candidate_score(self) -> float | None:
        return self.candidate.score

    @property
    def errored(self) -> bool:
        return self.baseline.outcome == "error" or self.candidate.outcome == "error"

    @property
    def delta(self) -> float | None:
        """Candidate score minus baseline score; None when either has no score."""
        if self.errored or self.baseline_score is None or self.candidate_score is None:
            return None
        return self.candidate_score - self.baseline_score

    @property
    def flip(self) -> Flip | None:
        if self.errored:
            return None
        before, after = _passed(self.baseline), _passed(self.candidate)
        if before and not after:
            return "pass->fail"
        if after and not before:
            return "fail->pass"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.flip_record(),
            "delta": self.delta,
            "flip": self.flip,
            "threshold": self.candidate.deciding_threshold,
            "decided_by": _scorer(self.candidate),
            "baseline_output": self.baseline_output,
            "candidate_output": self.candidate_output,
            "baseline_error": self.baseline.error,
            "candidate_error": self.candidate.error,
        }

    def flip_record(self) -> dict[str, Any]:
        """The case of a flip as a results file lists it: which case, each run's outcome."""
        return {
            "case_id": self.case_id,
            "path": self.path,
            "nodeid": self.nodeid,
            "baseline_outcome": self.baseline.outcome,
            "candidate_outcome": self.candidate.outcome,
            "baseline_score": self.baseline_score,
            "candidate_score": self.candidate_score,
        }


def _scorer(result: CaseResult) -> str | None:
    score = result.deciding_score
    return None if score is None else score.scorer


@dataclass(frozen=True)
class Pairing:
    """The cases of two runs matched by ``(path, case_id)``; nothing is silently dropped.

    ``paired`` holds cases scored in both runs (the statistics use only these), ``errored``
    cases present in both runs but an error in either, ``only_baseline`` and
    ``only_candidate`` cases one run lacks, and ``duplicates`` keys seen more than once in
    one run (the first occurrence is used).
    """

    paired: tuple[PairedCase, ...]
    errored: tuple[PairedCase, ...]
    only_baseline: tuple[CaseResult, ...]
    only_candidate: tuple[CaseResult, ...]
    duplicates: tuple[CaseKey, ...] = ()

    @property
    def flips(self) -> tuple[PairedCase, ...]:
        return tuple(p for p in self.paired if p.flip is not None)

    @property
    def pass_to_fail(self) -> tuple[PairedCase, ...]:
        return tuple(p for p in self.paired if p.flip == "pass->fail")

    @property
    def fail_to_pass(self) -> tuple[PairedCase, ...]:
        return tuple(p for p in self.paired if p.flip == "fail->pass")


def _index(results: Iterable[CaseResult], duplicates: list[CaseKey]) -> dict[CaseKey, CaseResult]:
    index: dict[CaseKey, CaseResult] = {}
    for result in results:
        key = case_key(result)
        if key in index:
            duplicates.append(key)
            continue
        index[key] = result
    return index


def pair_runs(baseline: RunResult, candidate: RunResult) -> Pairing:
    """Match the cases of two runs by ``(path, case_id)``, in the baseline's order."""
    duplicates: list[CaseKey] = []
    before = _index(baseline.cases, duplicates)
    after = _index(candidate.cases, duplicates)
    paired: list[PairedCase] = []
    errored: list[PairedCase] = []
    only_baseline: list[CaseResult] = []
    for key, result in before.items():
        other = after.get(key)
        if other is None:
            only_baseline.append(result)
            continue
        pair = PairedCase(result, other)
        (errored if pair.errored else paired).append(pair)
    only_candidate = [result for key, result in after.items() if key not in before]
    return Pairing(
        tuple(paired),
        tuple(errored),
        tuple(only_baseline),
        tuple(only_candidate),
        tuple(dict.fromkeys(duplicates)),
    )


# --- drift: aliases that moved ---------------------------------------------------------------

VersionField = Literal["resolved_model", "system_fingerprint"]
MoveScope = Literal["between runs", "within baseline", "within candidate"]


@dataclass(frozen=True)
class AliasMove:
    """A requested model that was answered by different versions (or fingerprints).

    ``baseline`` and ``candidate`` count the versions each run saw; for a move within one
    run the other run's mapping is empty.
    """

    requested: str  # "provider:requested model", as in the results' resolved_models
    attribute: VersionField
    scope: MoveScope
    baseline: Mapping[str, int] = field(default_factory=dict)
    candidate: Mapping[str, int] = field(default_factory=dict)

    def describe(self, before: str = "the baseline", after: str = "the candidate run") -> str:
        """One sentence; ``before`` and ``after`` name the runs of a move between runs."""
        what = "resolved to" if self.attribute == "resolved_model" else "had system fingerprint"
        if self.scope == "between runs":
            return (
                f"{self.requested} {what} {_versions(self.baseline)} in {before} "
                f"but {_versions(self.candidate)} in {after}"
            )
        seen = self.baseline if self.scope == "within baseline" else self.candidate
        kind = "versions" if self.attribute == "resolved_model" else "system fingerprints"
        run = self.scope.removeprefix("within ")
        return f"{self.requested} answered with {len(seen)} {kind} within the {run} run: " + (
            _versions(seen)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "attribute": self.attribute,
            "scope": self.scope,
            "baseline": dict(self.baseline),
            "candidate": dict(self.candidate),
            "description": self.describe(),
        }


def _versions(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


def model_versions(run: RunResult) -> dict[str, dict[VersionField, dict[str, int]]]:
    """requested model -> {"resolved_model": {version: count}, "system_fingerprint": {...}}.

    Counts the candidate's and the judge's completions alike: a judge alias that moves
    changes scores as surely as a candidate alias.
    """
    seen: dict[str, dict[VersionField, dict[str, int]]] = {}
    for result in run.cases:
        for completion in (result.completion, result.judge_completion):
            if completion is None:
                continue
            requested = f"{completion.provider}:{completion.requested_model}"
            per = seen.setdefault(requested, {"resolved_model": {}, "system_fingerprint": {}})
            resolved = per["resolved_model"]
            resolved[completion.resolved_model] = resolved.get(completion.resolved_model, 0) + 1
            if completion.system_fingerprint:
                prints = per["system_fingerprint"]
                fp = completion.system_fingerprint
                prints[fp] = prints.get(fp, 0) + 1
    return seen


def within_run_moves(run: RunResult, scope: MoveScope = "within candidate") -> list[AliasMove]:
    """Requested models that one run saw answered by more than one version or fingerprint."""
    moves: list[AliasMove] = []
    attribute: VersionField
    for requested, per in sorted(model_versions(run).items()):
        for attribute in ("resolved_model", "system_fingerprint"):
            counts = per[attribute]
            if len(counts) > 1:
                if scope == "within baseline":
                    moves.append(AliasMove(requested, attribute, scope, baseline=dict(counts)))
                else:
                    moves.append(AliasMove(requested, attribute, scope, candidate=dict(counts)))
    return moves


def alias_moved(baseline: RunResult, candidate: RunResult) -> list[AliasMove]:
    """Aliases whose resolved version or system fingerprint changed between or within runs.

    Between runs, a requested model (provider and id) present in both runs moved when the
    sets of versions differ; fingerprints are compared only when both runs report them
    (Anthropic does not). Within a run, more than one version for one requested model is a
    move. Requested models present in only one run (the migration itself) are not moves.
    """
    before, after = model_versions(baseline), model_versions(candidate)
    moves: list[AliasMove] = []
    attribute: VersionField
    for requested in sorted(before.keys() & after.keys()):
        for attribute in ("resolved_model", "system_fingerprint"):
            old, new = before[requested][attribute], after[requested][attribute]
            if old and new and old.keys() != new.keys():
                moves.append(AliasMove(requested, attribute, "between runs", dict(old), dict(new)))
    moves += within_run_moves(baseline, "within baseline")
    moves += within_run_moves(candidate, "within candidate")
    return moves


# --- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class RateSummary(PassRate):
    """One run's pass rate over the paired cases, with its Wilson interval."""

    passed: int
    scored: int
    mean_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "scored": self.scored,
            "pass_rate": self.pass_rate,
            "interval95": list(self.interval),
            "mean_score": self.mean_score,
        }


def _rates(results: Sequence[CaseResult]) -> RateSummary:
    scores = [r.score for r in results if r.score is not None]
    return RateSummary(
        passed=sum(1 for r in results if _passed(r)),
        scored=len(results),
        mean_score=math.fsum(scores) / len(scores) if scores else None,
    )


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of a candidate run with a baseline run, and its verdict."""

    baseline_label: str
    candidate_label: str
    pairing: Pairing
    baseline: RateSummary
    candidate: RateSummary
    p_value: float
    score_delta: BootstrapInterval | None
    min_detectable_effect: float
    margin_exceeded: bool
    significant: bool
    verdict: VerdictName
    reasons: tuple[str, ...]
    max_regression: float
    alpha: float
    power: float
    seed: int
    mid_p: bool = False
    alias_moves: tuple[AliasMove, ...] = ()
    baseline_model: RunModel = field(default_factory=lambda: RunModel(None))
    candidate_model: RunModel = field(default_factory=lambda: RunModel(None))
    # Runs whose cases were repeated (--llm-repeat) are compared on per-case pass fractions:
    # ``p_value``, the margin, the verdict and ``min_detectable_effect`` are then this one's.
    repeated: RepeatedComparison | None = None

    @property
    def test_name(self) -> str:
        """The paired test behind ``p_value``."""
        if self.repeated is not None:
            return "paired sign-flip test on per-case pass fractions"
        return "exact McNemar"

    @property
    def n(self) -> int:
        """Cases scored in both runs: the sample the statistics are about."""
        return len(self.pairing.paired)

    @property
    def pass_to_fail(self) -> int:
        return len(self.pairing.pass_to_fail)

    @property
    def fail_to_pass(self) -> int:
        return len(self.pairing.fail_to_pass)

    @property
    def difference(self) -> float:
        """Candidate pass rate minus baseline pass rate (negative: the candidate is worse);
        of repeated runs, the mean of the per-case differences of pass fractions."""
        if self.repeated is not None:
            return self.repeated.difference
        return (self.fail_to_pass - self.pass_to_fail) / self.n if self.n else 0.0

    @property
    def discordance(self) -> float:
        """The share of paired cases whose verdict flipped."""
        return (self.pass_to_fail + self.fail_to_pass) / self.n if self.n else 0.0

    @property
    def noise_floor(self) -> float:
        """The estimated share of cases flipping by chance (see :func:`noise_floor`)."""
        return noise_floor(self.pass_to_fail, self.fail_to_pass, self.n)

    @property
    def comparable(self) -> bool:
        """False when no case was scored in both runs: the verdict then proves nothing."""
        return self.n > 0

    @property
    def is_regression(self) -> bool:
        return self.verdict == "regression"

    def to_dict(self, *, cases: bool = True) -> dict[str, Any]:
        pairing = self.pairing
        data: dict[str, Any] = {
            "baseline": {
                "label": self.baseline_label,
                **self.baseline_model.to_dict(),
                **self.baseline.to_dict(),
            },
            "candidate": {
                "label": self.candidate_label,
                **self.candidate_model.to_dict(),
                **self.candidate.to_dict(),
            },
            "paired_cases": self.n,
            "difference": self.difference,
            "pass_to_fail": self.pass_to_fail,
            "fail_to_pass": self.fail_to_pass,
            "discordance": self.discordance,
            "noise_floor": self.noise_floor,
            "mcnemar_p": None if self.repeated is not None else self.p_value,
            "p_value": self.p_value,
            "test": self.test_name,
            "repeated": None
            if self.repeated is None
            else {
                "baseline_rate": self.repeated.baseline_rate,
                "candidate_rate": self.repeated.candidate_rate,
                "difference": self.repeated.difference,
                "interval95": None
                if self.repeated.interval is None
                else [self.repeated.interval.low, self.repeated.interval.high],
            },
            "mid_p": self.mid_p,
            "regressed": [p.flip_record() for p in pairing.pass_to_fail],
            "improved": [p.flip_record() for p in pairing.fail_to_pass],
            "score_delta": None
            if self.score_delta is None
            else {
                "mean": self.score_delta.mean,
                "low": self.score_delta.low,
                "high": self.score_delta.high,
                "confidence": self.score_delta.confidence,
                "resamples": self.score_delta.resamples,
                "n": self.score_delta.n,
                "seed": self.score_delta.seed,
            },
            "min_detectable_effect": _finite(self.min_detectable_effect),
            "max_regression": self.max_regression,
            "alpha": self.alpha,
            "power": self.power,
            "seed": self.seed,
            "margin_exceeded": self.margin_exceeded,
            "significant": self.significant,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "alias_moves": [move.to_dict() for move in self.alias_moves],
            "errored": [p.to_dict() for p in pairing.errored],
            "only_baseline": [r.nodeid for r in pairing.only_baseline],
            "only_candidate": [r.nodeid for r in pairing.only_candidate],
            "duplicates": [list(key) for key in pairing.duplicates],
        }
        if cases:
            data["cases"] = [p.to_dict() for p in pairing.paired]
        return data


def noise_floor(pass_to_fail: int, fail_to_pass: int, n: int) -> float:
    """The share of cases flipping by chance, estimated from the flips that cancel out.

    Noise flips go both ways in equal measure; the excess in one direction is the effect.
    So ``2 * min(b, c) / n`` estimates the A/A discordance (0 without any flip).
    """
    return 2 * min(pass_to_fail, fail_to_pass) / n if n else 0.0


def compare_runs(
    baseline: RunResult,
    candidate: RunResult,
    *,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    power: float = DEFAULT_POWER,
    mid_p: bool = False,
    baseline_label: str | None = None,
    candidate_label: str | None = None,
    baseline_fallback: str = "baseline",
    candidate_fallback: str = "candidate",
) -> Comparison:
    """Compare a candidate run with a baseline run of the same golden cases.

    ``max_regression`` is the practical margin as a fraction of cases (0.05: five pass-rate
    points); ``alpha`` the significance level of the two-sided exact McNemar test. The
    verdict is ``"regression"`` when the candidate's pass rate is lower by more than the
    margin *and* the difference is significant, ``"improvement"`` when it is higher and
    significant, ``"within noise"`` otherwise (including a significant drop smaller than the
    margin: the reasons say so). ``resamples=0`` skips the bootstrap.

    Each run is named by the model its results record and the ids that model answered with
    (:class:`RunModel`), or by ``baseline_fallback`` / ``candidate_fallback`` (a file name)
    when they record none; ``baseline_label`` / ``candidate_label`` replace that name.
    """
    if not 0.0 <= max_regression <= 1.0:
        raise ValueError(f"max_regression must be a fraction in [0, 1], got {max_regression!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    pairing = pair_runs(baseline, candidate)
    paired = pairing.paired
    n = len(paired)
    before = _rates([p.baseline for p in paired])
    after = _rates([p.candidate for p in paired])
    b = sum(1 for p in paired if p.flip == "pass->fail")
    c = sum(1 for p in paired if p.flip == "fail->pass")
    repeated = (
        _compare_repeated(paired, alpha, max_regression, seed, resamples, power)
        if any(p.baseline.repeats or p.candidate.repeats for p in paired)
        else None
    )
    p_value = mcnemar_exact(b, c, mid_p=mid_p) if repeated is None else repeated.p_value
    deltas = [d for d in (p.delta for p in paired) if d is not None]
    score_delta = (
        paired_bootstrap_ci(deltas, resamples=resamples, seed=seed)
        if deltas and resamples > 0
        else None
    )
    mde = min_detectable_effect(
        n,
        alpha,
        power,
        baseline_rate=before.pass_rate if before.pass_rate is not None else 0.5,
        discordance=noise_floor(b, c, n),
    )
    difference = (c - b) / n if n else 0.0
    rated = (before.pass_rate, after.pass_rate)
    if repeated is not None:
        difference, mde = repeated.difference, repeated.min_detectable_drop
        rated = (repeated.baseline_rate, repeated.candidate_rate)
    drop = -difference
    # Rounded so that 0.05 read from a file is not "more than" a 5-point margin.
    margin_exceeded = n > 0 and round(drop, 12) > round(max_regression, 12)
    significant = n > 0 and p_value < alpha

    reasons: list[str] = []
    flips = f"{b} pass->fail, {c} fail->pass"
    test = f"exact McNemar p = {_p(p_value)}"
    if repeated is not None:
        k = max(len(p.candidate.repeats or (p.candidate,)) for p in paired)
        flips = f"{k} repeats per case; cases passing every repeat: {flips}"
        test = f"paired sign-flip test on per-case pass fractions p = {_p(p_value)}"
    if n == 0:
        verdict: VerdictName = "within noise"
        reasons.append("no case was scored in both runs: there is nothing to compare")
    else:
        rates = f"{percent(rated[0] or 0.0)} -> {percent(rated[1] or 0.0)} on {n} paired cases"
        if drop > 0:
            change = f"pass rate fell by {_points(drop)} ({rates})"
            margin = (
                f"more than {_margin(max_regression)}"
                if margin_exceeded
                else f"within {_margin(max_regression)}"
            )
            reasons.append(f"{change}, {margin}")
        elif difference > 0:
            reasons.append(f"pass rate rose by {_points(difference)} ({rates})")
        else:
            reasons.append(f"pass rate unchanged ({rates})")
        if significant:
            reasons.append(f"the difference is significant: {test} < alpha {alpha:g} ({flips})")
        else:
            reasons.append(
                f"the difference is not significant: {test} >= alpha {alpha:g} ({flips})"
            )
        if margin_exceeded and significant:
            verdict = "regression"
        elif difference > 0 and significant:
            verdict = "improvement"
        else:
            verdict = "within noise"
    if n and mde > max_regression:
        reasons.append(
            f"the set is too small to detect a drop of {_margin(max_regression)}: "
            f"the smallest drop detectable with {n} paired cases is "
            + (_points(mde) if math.isfinite(mde) else "none")
            + f" ({power:.0%} power, alpha {alpha:g}); add cases"
        )
    if pairing.errored:
        reasons.append(
            f"{_cases(len(pairing.errored))} errored in either run, not in the statistics"
        )
    missing = len(pairing.only_baseline) + len(pairing.only_candidate)
    if missing:
        reasons.append(
            f"{_cases(missing)} in only one run ({len(pairing.only_baseline)} only in the "
            f"baseline, {len(pairing.only_candidate)} only in the candidate), not compared"
        )
    baseline_model, candidate_model = RunModel.of(baseline), RunModel.of(candidate)
    return Comparison(
        baseline_label=baseline_label or baseline_model.label(baseline_fallback),
        candidate_label=candidate_label or candidate_model.label(candidate_fallback),
        pairing=pairing,
        baseline=before,
        candidate=after,
        p_value=p_value,
        score_delta=score_delta,
        min_detectable_effect=mde,
        margin_exceeded=margin_exceeded,
        significant=significant,
        verdict=verdict,
        reasons=tuple(reasons),
        max_regression=max_regression,
        alpha=alpha,
        power=power,
        seed=seed,
        mid_p=mid_p,
        alias_moves=tuple(alias_moved(baseline, candidate)),
        baseline_model=baseline_model,
        candidate_model=candidate_model,
        repeated=repeated,
    )


def _compare_repeated(
    paired: Sequence[PairedCase],
    alpha: float,
    max_regression: float,
    seed: int,
    resamples: int,
    power: float,
) -> RepeatedComparison:
    """Repeated runs' comparison on per-case pass fractions (``repeats.compare_repeated``)."""
    from pytest_llmregress.verdict.judging import case_repeats
    from pytest_llmregress.verdict.repeats import compare_repeated

    return compare_repeated(
        [case_repeats(p.baseline) for p in paired],
        [case_repeats(replace(p.candidate, nodeid=p.baseline.nodeid)) for p in paired],
        alpha=alpha,
        max_regression=max_regression,
        seed=seed,
        resamples=max(resamples, 1),
        power=power,
    )


def worst_pairs(comparison: Comparison, count: int) -> list[PairedCase]:
    """Pass->fail flips first, then the largest score drops; ``count`` of them."""
    ranked = sorted(
        (p for p in comparison.pairing.paired if p.flip == "pass->fail" or (p.delta or 0) < 0),
        key=lambda p: (p.flip != "pass->fail", p.delta if p.delta is not None else 0.0, p.nodeid),
    )
    return ranked[:count]


# --- one run on its own (history) ------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary(PassRate):
    """Pass rate and mean score of one run, for a history of runs."""

    label: str
    started_at: str | None
    passed: int
    failed: int
    errors: int
    mean_score: float | None

    @property
    def scored(self) -> int:  # type: ignore[override]
        return self.passed + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.label,
            "started_at": self.started_at,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "interval95": list(self.interval),
            "mean_score": self.mean_score,
        }


def summarize_run(run: RunResult, fallback_label: str = "unknown model") -> RunSummary:
    scored = [r for r in run.cases if r.outcome != "error"]
    scores = [r.score for r in scored if r.score is not None]
    started = run.metadata.get("started_at")
    return RunSummary(
        label=run_label(run, fallback_label),
        started_at=str(started) if started else None,
        passed=sum(1 for r in scored if _passed(r)),
        failed=sum(1 for r in scored if r.outcome == "failed"),
        errors=len(run.cases) - len(scored),
        mean_score=math.fsum(scores) / len(scores) if scores else None,
    )


# --- attribution: model, prompt, interaction -------------------------------------------------

Cell = Literal[
    "old_model_old_prompt", "old_model_new_prompt", "new_model_old_prompt", "new_model_new_prompt"
]
CELLS: tuple[Cell, ...] = (
    "old_model_old_prompt",
    "old_model_new_prompt",
    "new_model_old_prompt",
    "new_model_new_prompt",
)

ROLES: Mapping[Cell, str] = {
    "old_model_old_prompt": "old model + old prompt",
    "old_model_new_prompt": "old model + new prompt",
    "new_model_old_prompt": "new model + old prompt",
    "new_model_new_prompt": "new model + new prompt",
}
"""How messages name each place of the 2x2, in the order :func:`attribute` takes the runs."""
_MIXED = (ROLES["old_model_new_prompt"], ROLES["new_model_old_prompt"])

PROMPTS_RECORDED_SINCE = "0.1.0"
"""The first pytest-llmregress whose results files record the prompts of a run."""


class AttributionError(ValueError):
    """The four runs given to :func:`attribute` do not form its 2x2; ``problems`` says how."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        order = ", ".join(ROLES[cell] for cell in CELLS)
        return "\n".join(
            [f"the four runs do not form the 2x2 of an attribution (in order: {order}):"]
            + [f"  - {problem}" for problem in self.problems]
        )


@dataclass(frozen=True)
class _RunFacts:
    """What the 2x2 check reads from one run's metadata."""

    name: str
    role: str
    model: str | None  # metadata.candidate
    digest: str | None  # metadata.prompts.digest; None: not recorded (an older results file)
    prompt_model: str | None  # metadata.prompt_model: --llm-prompt-model, None for its own
    prompts_for: str | None  # metadata.prompts.model: whose versions the run used
    has_prompt_files: bool
    tasks: Mapping[str, Any]
    identity: tuple[Any, ...]  # tells a copy of a run from another run of the same cell

    @property
    def prompts(self) -> str:
        """The run's prompts in a message: whose versions, and the digest that tells them apart."""
        if not self.has_prompt_files:
            return "no prompt files"
        short = (self.digest or "")[:12]
        return f"the {self.prompts_for} prompts {short}" if self.prompts_for else f"prompts {short}"

    @property
    def ran(self) -> str:
        return f"{self.model} with {self.prompts}"


def _run_facts(run: RunResult, name: str, role: str) -> _RunFacts:
    meta = run.metadata
    prompts = meta.get("prompts")
    prompts = prompts if isinstance(prompts, Mapping) else {}
    digest = prompts.get("digest")
    recorded = isinstance(digest, str) and "prompt_model" in meta
    model = meta.get("candidate")
    prompt_model = meta.get("prompt_model")
    prompts_for = prompts.get("model")
    tasks = prompts.get("tasks")
    return _RunFacts(
        name=name,
        role=role,
        model=str(model) if model else None,
        digest=digest if recorded else None,
        prompt_model=str(prompt_model) if prompt_model else None,
        prompts_for=str(prompts_for) if prompts_for else None,
        has_prompt_files=prompts.get("source") is not None,
        tasks=tasks if isinstance(tasks, Mapping) else {},
        identity=(meta.get("started_at"), meta.get("pid"), model, len(run.cases)),
    )


def _join(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _names(facts: Sequence[_RunFacts], indexes: Iterable[int]) -> str:
    return _join([facts[i].name for i in indexes])


def _case_problems(runs: Sequence[RunResult], facts: Sequence[_RunFacts]) -> list[str]:
    """Cases that some runs have and others lack, grouped by the runs that lack them."""
    keys = [dict.fromkeys(case_key(result) for result in run.cases) for run in runs]
    lacking: dict[tuple[int, ...], list[CaseKey]] = {}
    for key in sorted({key for run_keys in keys for key in run_keys}):
        without = tuple(i for i, run_keys in enumerate(keys) if key not in run_keys)
        if without:
            lacking.setdefault(without, []).append(key)
    problems = []
    for without, missing in lacking.items():
        shown = ", ".join(f"{path}::{case_id}" for path, case_id in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        problems.append(
            f"{_cases(len(missing))} missing from {_names(facts, without)}: {shown}{more}; "
            "the four runs must hold the same cases"
        )
    return problems


def _task_differences(a: _RunFacts, b: _RunFacts) -> str:
    """The tasks whose prompt differs between two runs, as ``'task' (version digest vs ...)``."""

    def text(entry: Any) -> object:  # what tells two texts apart: the digest of each
        return entry.get("digest") if isinstance(entry, Mapping) else None

    def shown(entry: Any) -> str:
        if not isinstance(entry, Mapping):
            return "absent"
        if "error" in entry:
            return "no version"
        return f"{entry.get('version')!r} {entry.get('digest')}"

    differing = [
        f"{task!r} ({shown(a.tasks.get(task))} vs {shown(b.tasks.get(task))})"
        for task in sorted(a.tasks.keys() | b.tasks.keys())
        if text(a.tasks.get(task)) != text(b.tasks.get(task))
        or (task in a.tasks) != (task in b.tasks)
    ]
    return "in task(s) " + ", ".join(differing) if differing else "in their prompts"


def _value_problems(facts: Sequence[_RunFacts]) -> list[str]:
    """Each factor must take two values: the old one and the new one."""
    problems: list[str] = []
    models = list(dict.fromkeys(f.model or "" for f in facts))
    digests = list(dict.fromkeys(f.digest or "" for f in facts))
    if len(models) == 1:
        problems.append(
            f"all four runs ran {models[0]}: the model did not change, so nothing can be "
            "attributed to it"
        )
    elif len(models) > 2:
        by_model = "; ".join(
            f"{_names(facts, [i for i, f in enumerate(facts) if f.model == m])} ran {m}"
            for m in models
        )
        problems.append(f"the runs ran {len(models)} models where a 2x2 has two: {by_model}")
    if len(digests) == 1:
        same = f"prompts {digests[0][:12]}" if facts[0].has_prompt_files else "no prompt files"
        problems.append(
            f"all four runs used the same prompts ({same}): the prompt did not change, so "
            "nothing can be attributed to it (run the old model + new prompt and new model + "
            "old prompt runs with --llm-prompt-model set to the other model)"
        )
    elif len(digests) > 2:
        by_digest = "; ".join(
            f"{_names(facts, group)} used {facts[group[0]].prompts}"
            for group in ([i for i, f in enumerate(facts) if f.digest == d] for d in digests)
        )
        problems.append(
            f"the runs used {len(digests)} different prompts where a 2x2 has two: {by_digest}"
        )
        for i, j, which in ((0, 2, "old"), (1, 3, "new")):
            a, b = facts[i], facts[j]
            if a.digest != b.digest:
                problems.append(
                    f"{a.name} and {b.name} should use the same ({which}) prompts but differ "
                    f"{_task_differences(a, b)}"
                )
    return problems


def _duplicate_problems(facts: Sequence[_RunFacts]) -> list[str]:
    """Runs that share one place of the 2x2, and the places no run fills."""
    cells: dict[tuple[str | None, str | None], list[int]] = {}
    for i, f in enumerate(facts):
        cells.setdefault((f.model, f.digest), []).append(i)
    problems: list[str] = []
    for group in cells.values():
        if len(group) < 2:
            continue
        runs = [facts[i] for i in group]
        given = "given as " + _join([f.role for f in runs])
        if len({f.name for f in runs}) == 1:
            problem = f"{runs[0].name} is given {len(runs)} times ({given})"
        elif len({f.identity for f in runs}) == 1 and runs[0].identity[0]:
            problem = (
                f"{_names(facts, group)} are copies of one run, started {runs[0].identity[0]} "
                f"({given})"
            )
        else:
            both = "both" if len(runs) == 2 else "all"
            problem = f"{_names(facts, group)} {both} ran {runs[0].ran} ({given})"
        unforced = [f.name for f in runs if f.prompt_model is None and f.role in _MIXED]
        if unforced:
            problem += f"; {_join(unforced)} ran without --llm-prompt-model"
        problems.append(problem)
    if problems:
        models = {f.model: f for f in facts}
        prompts = {f.digest: f for f in facts}
        absent = [
            f"{m} with {p.prompts}"
            for m in models
            for d, p in prompts.items()
            if (m, d) not in cells
        ]
        problems.append("no run is " + "; no run is ".join(absent))
    return problems


def _best_order(cells: Sequence[tuple[str | None, str | None]], own: set[int]) -> list[int]:
    """Which given run belongs in each place of the 2x2, moving the fewest runs.

    Which model and which prompt are the old ones is read from the order given: of the four
    readings, the one that moves the fewest runs wins, keeping the first run first on a tie.
    ``own``, when not empty, are the two runs that must be first and last.
    """
    models = list(dict.fromkeys(m for m, _ in cells))
    digests = list(dict.fromkeys(d for _, d in cells))
    best: tuple[tuple[int, bool, list[int]], list[int]] | None = None
    for old_m in models:
        new_m = next(m for m in models if m != old_m)
        for old_d in digests:
            new_d = next(d for d in digests if d != old_d)
            order = [
                cells.index(cell)
                for cell in ((old_m, old_d), (old_m, new_d), (new_m, old_d), (new_m, new_d))
            ]
            if own and {order[0], order[3]} != own:
                continue
            key = (sum(1 for place, run in enumerate(order) if place != run), order[0] != 0, order)
            if best is None or key < best[0]:
                best = (key, order)
    assert best is not None  # ``own`` on a diagonal keeps two of the four readings
    return best[1]


def _placement_problems(facts: Sequence[_RunFacts]) -> list[str]:
    """With all four places of the 2x2 filled, is each run in its place?

    When exactly two runs, on a diagonal, ran without ``--llm-prompt-model``, they are the
    runs of each model with its own prompts: the first and the last. (When every run went
    without it, the prompts changed between revisions of the prompt files, and the order given
    is all there is to go by.)
    """
    cells = [(f.model, f.digest) for f in facts]
    own = [i for i, f in enumerate(facts) if f.prompt_model is None]
    on_diagonal = len(own) == 2 and all(
        x != y for x, y in zip(cells[own[0]], cells[own[1]], strict=True)
    )
    order = _best_order(cells, set(own) if on_diagonal else set())
    if order == [0, 1, 2, 3]:
        return []
    roles = [ROLES[cell] for cell in CELLS]
    belongs = {run: place for place, run in enumerate(order)}
    moved = [run for run in range(4) if belongs[run] != run]
    if len(moved) == 2:
        a, b = (facts[i] for i in moved)
        problem = (
            f"{a.name} and {b.name} are swapped: {a.name} ({a.ran}) is the "
            f"{roles[belongs[moved[0]]]} run, {b.name} ({b.ran}) the {roles[belongs[moved[1]]]} run"
        )
    else:
        problem = "the runs are not in their places: " + "; ".join(
            f"{facts[run].name} ({facts[run].ran}) is the {roles[belongs[run]]} run"
            for run in moved
        )
    if on_diagonal and order != _best_order(cells, set()):
        problem += (
            f" ({_names(facts, own)} ran without --llm-prompt-model, each with its own model's "
            "prompts, so they are the old model + old prompt and new model + new prompt runs)"
        )
    return [problem + "; give them in the order " + " ".join(facts[run].name for run in order)]


def check_attribution_runs(
    runs: Sequence[RunResult], names: Sequence[str] | None = None
) -> list[str]:
    """What keeps four runs from being the 2x2 :func:`attribute` expects; empty when nothing.

    The runs come in the order old model + old prompt, old model + new prompt, new model +
    old prompt, new model + new prompt; ``names`` (file names) name them in the messages.
    Checked: every run records its model (``metadata.candidate``) and its prompts
    (``metadata.prompts.digest``, written since :data:`PROMPTS_RECORDED_SINCE`); all four
    hold the same cases; the models take two values and so do the prompt digests; no two runs
    share a place of the 2x2 (a run given twice, a mixed run without ``--llm-prompt-model``);
    and each run is in its place (swapped runs are named, with the order to give).
    """
    if len(runs) != len(CELLS):
        return [f"an attribution takes {len(CELLS)} runs, got {len(runs)}"]
    labels = list(names) if names is not None else [f"the {ROLES[cell]} run" for cell in CELLS]
    facts = [
        _run_facts(run, label, ROLES[cell])
        for run, label, cell in zip(runs, labels, CELLS, strict=True)
    ]
    problems: list[str] = []
    for f in facts:
        if f.model is None:
            problems.append(f"{f.name} does not record its model (metadata.candidate)")
        if f.digest is None:
            problems.append(
                f"{f.name} does not record its prompt version; rerun it with "
                f"pytest-llmregress >= {PROMPTS_RECORDED_SINCE}"
            )
    problems += _case_problems(runs, facts)
    if any(f.model is None or f.digest is None for f in facts):
        return problems
    values = _value_problems(facts)
    problems += values
    if not values:
        problems += _duplicate_problems(facts) or _placement_problems(facts)
    return problems


@dataclass(frozen=True)
class Effect:
    """One effect of a 2x2 factorial comparison, with its paired significance.

    ``estimate`` is in pass-rate points as a fraction. ``p_value`` is the exact sign test of
    the per-case effects over the cases scored in all four runs (for a single pair of runs
    this is McNemar's test); ``interval`` a seeded paired bootstrap interval of the estimate.
    """

    name: str
    estimate: float
    p_value: float
    drops: int  # cases whose per-case effect is negative
    gains: int
    interval: BootstrapInterval | None

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "estimate": self.estimate,
            "p_value": self.p_value,
            "drops": self.drops,
            "gains": self.gains,
            "interval": None
            if self.interval is None
            else {"low": self.interval.low, "high": self.interval.high},
        }


@dataclass(frozen=True)
class Attribution:
    """A migration's pass-rate change split into model effect, prompt effect, interaction.

    With pass rates ``r[model][prompt]`` on the cases scored in all four runs:

    - model effect = mean over prompts of (new model - old model)
      = ((r10 - r00) + (r11 - r01)) / 2
    - prompt effect = mean over models of (new prompt - old prompt)
      = ((r01 - r00) + (r11 - r10)) / 2
    - interaction = (r11 - r10) - (r01 - r00): how much the new prompt's effect differs
      between the models (equivalently the model effect between the prompts).

    ``total = r11 - r00 = model + prompt`` exactly. Read from the old/old corner instead,
    ``total = model_at_old_prompt + prompt_at_old_model + interaction``.
    """

    labels: Mapping[Cell, str]
    n: int
    rates: Mapping[Cell, float]
    model: Effect
    prompt: Effect
    interaction: Effect
    alpha: float
    excluded: tuple[CaseKey, ...]
    reasons: tuple[str, ...]
    prompts: Mapping[Cell, Mapping[str, Any]] = field(default_factory=dict)
    """Per run: ``digest`` of its prompts, ``model`` they were written for, ``prompt_model``."""

    @property
    def total(self) -> float:
        return self.rates["new_model_new_prompt"] - self.rates["old_model_old_prompt"]

    @property
    def model_at_old_prompt(self) -> float:
        return self.rates["new_model_old_prompt"] - self.rates["old_model_old_prompt"]

    @property
    def prompt_at_old_model(self) -> float:
        return self.rates["old_model_new_prompt"] - self.rates["old_model_old_prompt"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "cases": self.n,
            "rates": dict(self.rates),
            "total": self.total,
            "model": self.model.to_dict(),
            "prompt": self.prompt.to_dict(),
            "interaction": self.interaction.to_dict(),
            "model_at_old_prompt": self.model_at_old_prompt,
            "prompt_at_old_model": self.prompt_at_old_model,
            "alpha": self.alpha,
            "excluded": [list(key) for key in self.excluded],
            "reasons": list(self.reasons),
            "prompts": {cell: dict(record) for cell, record in self.prompts.items()},
        }


def _effect(
    name: str, per_case: Sequence[float], *, seed: int, resamples: int, mid_p: bool
) -> Effect:
    n = len(per_case)
    return Effect(
        name=name,
        estimate=math.fsum(per_case) / n if n else 0.0,
        p_value=sign_test(per_case, mid_p=mid_p),
        drops=sum(1 for d in per_case if d < 0),
        gains=sum(1 for d in per_case if d > 0),
        interval=paired_bootstrap_ci(per_case, resamples=resamples, seed=seed)
        if n and resamples > 0
        else None,
    )


def attribute(
    old_old: RunResult,
    old_new_prompt: RunResult,
    new_model_old_prompt: RunResult,
    new_new: RunResult,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    mid_p: bool = False,
    names: Sequence[str] | None = None,
) -> Attribution:
    """Attribute the change from (old model, old prompt) to (new model, new prompt).

    The four runs are: the old model with its own prompts, the old model with the prompts
    written for the new model, the new model with the old prompts (``--llm-prompt-model``),
    and the new model with its own prompts. Raises :class:`AttributionError` when they are
    not that 2x2 (:func:`check_attribution_runs`; ``names`` name the runs in its messages).
    Only cases scored (not errored) in all four runs are used; the others are listed in
    ``excluded``.
    """
    given = (old_old, old_new_prompt, new_model_old_prompt, new_new)
    problems = check_attribution_runs(given, names)
    if problems:
        raise AttributionError(problems)
    runs: dict[Cell, RunResult] = dict(zip(CELLS, given, strict=True))
    indexes: dict[Cell, dict[CaseKey, CaseResult]] = {}
    for cell, run in runs.items():
        indexes[cell] = _index(run.cases, [])
    all_keys = list(dict.fromkeys(key for cell in CELLS for key in indexes[cell]))
    common = [
        key
        for key in all_keys
        if all(key in indexes[cell] and indexes[cell][key].outcome != "error" for cell in CELLS)
    ]
    excluded = tuple(key for key in all_keys if key not in set(common))
    x: dict[Cell, list[float]] = {
        cell: [1.0 if _passed(indexes[cell][key]) else 0.0 for key in common] for cell in CELLS
    }
    n = len(common)
    rates: dict[Cell, float] = {
        cell: math.fsum(values) / n if n else 0.0 for cell, values in x.items()
    }
    r00, r01, r10, r11 = (
        x["old_model_old_prompt"],
        x["old_model_new_prompt"],
        x["new_model_old_prompt"],
        x["new_model_new_prompt"],
    )
    per_model = [((d - a) + (e - b)) / 2 for a, b, d, e in zip(r00, r01, r10, r11, strict=True)]
    per_prompt = [((b - a) + (e - d)) / 2 for a, b, d, e in zip(r00, r01, r10, r11, strict=True)]
    per_inter = [(e - d) - (b - a) for a, b, d, e in zip(r00, r01, r10, r11, strict=True)]
    model, prompt, inter = (
        _effect(name, values, seed=seed, resamples=resamples, mid_p=mid_p)
        for name, values in (
            ("model", per_model),
            ("prompt", per_prompt),
            ("interaction", per_inter),
        )
    )

    reasons: list[str] = []
    if n == 0:
        reasons.append("no case was scored in all four runs: nothing to attribute")
    else:
        total = rates["new_model_new_prompt"] - rates["old_model_old_prompt"]
        reasons.append(
            f"pass rate {percent(rates['old_model_old_prompt'])} (old model, old prompt) -> "
            f"{percent(rates['new_model_new_prompt'])} (new model, new prompt) on {n} cases: "
            f"{_signed_points(total)}"
        )
        for effect in (model, prompt, inter):
            verdict = "significant" if effect.significant(alpha) else "not significant"
            reasons.append(
                f"{effect.name} effect {_signed_points(effect.estimate)} "
                f"({verdict}: sign test p = {_p(effect.p_value)}, "
                f"{effect.drops} cases worse, {effect.gains} better)"
            )
        causes = [
            f"the {e.name} ({_signed_points(e.estimate)})"
            for e in (model, prompt)
            if e.significant(alpha)
        ]
        if inter.significant(alpha):
            reasons.append(
                "the model and the prompt interact: the new prompt's effect depends on the model"
            )
        if causes:
            reasons.append("the change is attributable to " + " and ".join(causes))
        else:
            reasons.append("neither the model nor the prompt has a significant effect")
    if excluded:
        reasons.append(f"{_cases(len(excluded))} errored in some run, not attributed")
    return Attribution(
        labels={cell: run_label(run, cell) for cell, run in runs.items()},
        prompts={cell: _prompts_record(run) for cell, run in runs.items()},
        n=n,
        rates=rates,
        model=model,
        prompt=prompt,
        interaction=inter,
        alpha=alpha,
        excluded=excluded,
        reasons=tuple(reasons),
    )


def _prompts_record(run: RunResult) -> dict[str, Any]:
    prompts = run.metadata.get("prompts")
    prompts = prompts if isinstance(prompts, Mapping) else {}
    return {
        "digest": prompts.get("digest"),
        "model": prompts.get("model"),
        "prompt_model": run.metadata.get("prompt_model"),
    }


def _signed_points(value: float) -> str:
    sign = "-" if value < 0 else "+"
    return f"{sign}{_points(value)}"


def __getattr__(name: str) -> object:
    # ``comparison_lines`` renders a comparison, so it lives with the other renderers since 0.2.
    if name == "comparison_lines":
        import importlib
        import warnings

        warnings.warn(
            "pytest_llmregress.verdict.compare.comparison_lines moved to "
            "pytest_llmregress.report.terminal",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("pytest_llmregress.report.terminal").comparison_lines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
