"""Statistics of repeated runs: each golden case run K times (issue 15), as pure functions.

- :class:`CaseRepeats`: one case's K outcomes (passes out of scored trials; errors apart).
- :func:`pass_at_k` / :func:`pass_hat_k`: unbiased estimates of pass@k and pass^k from ``n``
  trials with ``c`` passes.
- :func:`summarize_repeats`: a run's mean pass rate with a cluster-bootstrap interval (cases
  resampled, their repeats kept together), the flaky share, the flakiest cases, pass^K and
  pass@K rates.
- :func:`compare_repeated`: the paired comparison of two repeated runs on per-case pass
  proportions, with the same verdict rule as
  :func:`pytest_llmregress.verdict.compare.compare_runs`.
- :func:`min_detectable_drop`: the smallest mean pass-rate drop that ``n`` cases with ``K``
  repeats detect.

Nothing here imports pytest or an SDK: the plugin wires these in with issue 15's options.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_llmregress.verdict.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_REGRESSION,
    DEFAULT_POWER,
    DEFAULT_RESAMPLES,
    VerdictName,
)
from pytest_llmregress.verdict.stats import (
    BootstrapInterval,
    normal_quantile,
    paired_bootstrap_ci,
    sign_flip_test,
)

DEFAULT_FLAKIEST = 5


@dataclass(frozen=True)
class CaseRepeats:
    """One golden case run ``trials + errors`` times: ``passes`` of the ``trials`` scored
    repeats passed. Errors are kept apart and never count as failures."""

    nodeid: str
    passes: int
    trials: int
    errors: int = 0

    def __post_init__(self) -> None:
        if self.trials < 0 or not 0 <= self.passes <= self.trials or self.errors < 0:
            raise ValueError(
                f"{self.nodeid}: need 0 <= passes <= trials and errors >= 0, "
                f"got {self.passes}/{self.trials} with {self.errors} errors"
            )

    @classmethod
    def of(cls, nodeid: str, outcomes: Iterable[bool | None]) -> CaseRepeats:
        """From each repeat's outcome: True passed, False failed, None errored."""
        listed = list(outcomes)
        return cls(
            nodeid,
            passes=sum(1 for o in listed if o is True),
            trials=sum(1 for o in listed if o is not None),
            errors=sum(1 for o in listed if o is None),
        )

    @property
    def scored(self) -> bool:
        return self.trials > 0

    @property
    def pass_fraction(self) -> float | None:
        """Passes over scored repeats; None when no repeat was scored."""
        return self.passes / self.trials if self.trials else None

    @property
    def all_pass(self) -> bool:
        """pass^K: every scored repeat passed (False when none was scored)."""
        return self.trials > 0 and self.passes == self.trials

    @property
    def any_pass(self) -> bool:
        """pass@K: at least one repeat passed."""
        return self.passes > 0

    @property
    def flipped(self) -> bool:
        """Flaky: some repeats passed and some failed."""
        return 0 < self.passes < self.trials


def _check_nck(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` trials with ``c`` passes (Chen et al. 2021, Codex):

        pass@k = 1 - C(n - c, k) / C(n, k)

    the probability that ``k`` trials drawn without replacement from the ``n`` include at
    least one pass. Exact integer binomials, one division; needs ``1 <= k <= n``.
    """
    _check_nck(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k from ``n`` trials with ``c`` passes (Yao et al. 2024, tau-bench):

        pass^k = C(c, k) / C(n, k)

    the probability that ``k`` trials drawn without replacement from the ``n`` all pass: an
    unbiased estimate of ``p**k`` for a case that passes with probability ``p``. Needs
    ``1 <= k <= n``.
    """
    _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _flakiness_order(case: CaseRepeats) -> tuple[float, str]:
    fraction = case.pass_fraction
    return (abs((fraction if fraction is not None else 0.0) - 0.5), case.nodeid)


@dataclass(frozen=True)
class RepeatSummary:
    """A repeated run in numbers; only cases with a scored repeat count (``cases``).

    ``interval`` is the cluster-bootstrap interval of ``mean_pass_rate`` (None without a
    scored case or with ``resamples=0``).
    """

    cases: int
    errored_cases: int
    mean_pass_rate: float | None
    interval: BootstrapInterval | None
    flaky_share: float | None
    flakiest: tuple[CaseRepeats, ...]
    all_pass_rate: float | None
    any_pass_rate: float | None


def summarize_repeats(
    cases: Sequence[CaseRepeats],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    flakiest: int = DEFAULT_FLAKIEST,
) -> RepeatSummary:
    """Summarize a run whose cases were each repeated.

    The mean pass rate is the mean over cases of each case's pass fraction (every case
    weighs the same, whatever its number of scored repeats). Its interval is a **cluster
    bootstrap over cases**: cases are resampled with replacement, each with all its repeats,
    and the percentile interval of the resampled means is reported (seeded with
    ``random.Random(seed)``). Resampling single repeats instead would treat the K repeats of
    a case as independent cases and give an interval too narrow by about the square root of
    the design effect.

    ``flaky_share`` is the share of cases with both a pass and a fail; ``flakiest`` lists up
    to ``flakiest`` flaky cases, closest to a pass fraction of 0.5 first, ties by node id.
    ``all_pass_rate`` (pass^K) and ``any_pass_rate`` (pass@K) are the shares of cases whose
    every repeat passed and of cases with at least one pass. Cases with only errors are
    counted in ``errored_cases`` and left out of every rate.
    """
    scored = [c for c in cases if c.scored]
    errored = len(cases) - len(scored)
    if not scored:
        return RepeatSummary(0, errored, None, None, None, (), None, None)
    fractions = [c.passes / c.trials for c in scored]
    n = len(scored)
    interval = (
        paired_bootstrap_ci(fractions, resamples=resamples, confidence=confidence, seed=seed)
        if resamples > 0
        else None
    )
    flaky = sorted((c for c in scored if c.flipped), key=_flakiness_order)
    return RepeatSummary(
        cases=n,
        errored_cases=errored,
        mean_pass_rate=math.fsum(fractions) / n,
        interval=interval,
        flaky_share=len(flaky) / n,
        flakiest=tuple(flaky[: max(0, flakiest)]),
        all_pass_rate=sum(1 for c in scored if c.all_pass) / n,
        any_pass_rate=sum(1 for c in scored if c.any_pass) / n,
    )


def within_case_variance(cases: Iterable[CaseRepeats]) -> float | None:
    """The mean over cases of the unbiased per-case Bernoulli variance ``p_i (1 - p_i)``:
    ``c (K - c) / (K (K - 1))`` for ``c`` passes of ``K`` repeats. Cases with fewer than two
    scored repeats carry no information on it and are skipped; None without any."""
    values = [
        c.passes * (c.trials - c.passes) / (c.trials * (c.trials - 1))
        for c in cases
        if c.trials >= 2
    ]
    return math.fsum(values) / len(values) if values else None


def min_detectable_drop(
    n: int,
    repeats: int,
    within_variance: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> float:
    """The smallest drop in the mean pass rate that ``n`` paired cases with ``repeats``
    repeats per case in each run detect, by the normal approximation of the paired test of
    the mean per-case difference.

    Design effect: a case's pass fraction over ``K`` repeats has variance ``p_i (1 - p_i) / K``
    around its true pass probability. In a paired comparison the between-case spread of
    ``p_i`` cancels (each case is its own control), so with no real change the difference of
    a case's two fractions has variance ``2 w / K``, ``w`` the mean within-case variance
    (:func:`within_case_variance`), and the mean of ``n`` differences ``2 w / (K n)``. The
    drop found with probability ``power`` by a two-sided test at ``alpha`` is then

        delta = (z(1 - alpha/2) + z(power)) * sqrt(2 w / (K n))

    K repeats shrink it by ``sqrt(K)``; a model that never samples (``w = 0``) gives 0: any
    drop is visible. ``math.inf`` when ``n`` or ``repeats`` is 0.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if not 0.0 <= within_variance <= 0.25:
        raise ValueError(f"within_variance must be in [0, 0.25], got {within_variance!r}")
    if n <= 0 or repeats <= 0:
        return math.inf
    z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power)
    return min(1.0, z * math.sqrt(2.0 * within_variance / (repeats * n)))


@dataclass(frozen=True)
class RepeatedComparison:
    """Two repeated runs compared on the cases scored in both (``n``)."""

    n: int
    baseline_rate: float | None
    candidate_rate: float | None
    difference: float
    p_value: float
    interval: BootstrapInterval | None  # None when no case was compared
    min_detectable_drop: float
    margin_exceeded: bool
    significant: bool
    verdict: VerdictName
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]
    unscored: tuple[str, ...]


def compare_repeated(
    baseline: Sequence[CaseRepeats],
    candidate: Sequence[CaseRepeats],
    *,
    alpha: float = DEFAULT_ALPHA,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    power: float = DEFAULT_POWER,
) -> RepeatedComparison:
    """Compare two repeated runs of the same cases on their per-case pass proportions.

    Cases pair by node id; a case is compared when both runs scored at least one repeat of
    it (the others are listed). Each case gives the difference ``d_i`` of its candidate and
    baseline pass fractions; ``difference`` is their mean, ``interval`` its paired bootstrap
    interval over cases (seeded percentile).

    The p-value is a **paired sign-flip permutation test** of the mean difference
    (:func:`pytest_llmregress.verdict.stats.sign_flip_test`, ``resamples`` seeded draws; the
    smallest p-value it can give is ``1 / (1 + resamples)``, so keep ``resamples`` well above
    ``1 / alpha``).
    Chosen over a Wilcoxon signed-rank test because (1) its only assumption is the one an
    A/A run satisfies by construction, that a case's two runs are exchangeable, so its level
    holds for any mix of pass probabilities and any K; (2) it tests the mean difference, the
    same quantity the verdict's margin and the bootstrap interval are about, while Wilcoxon
    tests a location shift of ranks; (3) per-case fractions of K repeats take only K + 1
    values, so |d_i| ties are everywhere and the signed-rank normal approximation needs tie
    corrections the permutation test does not.

    The verdict mirrors :func:`pytest_llmregress.verdict.compare.compare_runs`:
    ``"regression"`` when the mean pass rate fell by more than ``max_regression`` *and* the
    difference is significant (p < ``alpha``), ``"improvement"`` when it rose and is
    significant, ``"within noise"`` otherwise. ``min_detectable_drop`` is
    :func:`min_detectable_drop` with the within-case variance of both runs pooled and the
    smallest repeat count of the compared cases.
    """
    if not 0.0 <= max_regression <= 1.0:
        raise ValueError(f"max_regression must be a fraction in [0, 1], got {max_regression!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    before = {c.nodeid: c for c in baseline}
    after = {c.nodeid: c for c in candidate}
    only_baseline = tuple(sorted(set(before) - set(after)))
    only_candidate = tuple(sorted(set(after) - set(before)))
    pairs: list[tuple[CaseRepeats, CaseRepeats]] = []
    unscored: list[str] = []
    for nodeid in sorted(set(before) & set(after)):
        b, c = before[nodeid], after[nodeid]
        if b.scored and c.scored:
            pairs.append((b, c))
        else:
            unscored.append(nodeid)
    n = len(pairs)
    differences = [c.passes / c.trials - b.passes / b.trials for b, c in pairs]
    difference = math.fsum(differences) / n if n else 0.0
    p_value = sign_flip_test(differences, resamples=resamples, seed=seed) if n else 1.0
    interval = paired_bootstrap_ci(differences, resamples=resamples, seed=seed) if n else None
    variance = within_case_variance([case for pair in pairs for case in pair])
    repeats = min((min(b.trials, c.trials) for b, c in pairs), default=0)
    mde = (
        min_detectable_drop(n, repeats, min(0.25, variance), alpha, power)
        if variance is not None
        else math.inf
    )
    drop = -difference
    # Rounded so that a drop of exactly the margin is not "more than" it.
    margin_exceeded = n > 0 and round(drop, 12) > round(max_regression, 12)
    significant = n > 0 and p_value < alpha
    if margin_exceeded and significant:
        verdict: VerdictName = "regression"
    elif difference > 0 and significant:
        verdict = "improvement"
    else:
        verdict = "within noise"
    return RepeatedComparison(
        n=n,
        baseline_rate=math.fsum(b.passes / b.trials for b, _ in pairs) / n if n else None,
        candidate_rate=math.fsum(c.passes / c.trials for _, c in pairs) / n if n else None,
        difference=difference,
        p_value=p_value,
        interval=interval,
        min_detectable_drop=mde,
        margin_exceeded=margin_exceeded,
        significant=significant,
        verdict=verdict,
        only_baseline=only_baseline,
        only_candidate=only_candidate,
        unscored=tuple(unscored),
    )
