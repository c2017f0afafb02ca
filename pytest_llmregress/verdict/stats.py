"""Statistics for pass rates and paired comparisons, in pure Python (no numpy, no scipy).

- :func:`wilson_interval`: a confidence interval for one pass rate.
- :func:`normal_quantile` / :func:`normal_cdf`: the standard normal distribution (the
  quantile is ``statistics.NormalDist().inv_cdf``).
- :func:`mcnemar_exact`: the exact McNemar test on the discordant pairs of two paired runs
  (a two-sided binomial test of ``b`` against ``b + c`` at p = 1/2), optionally mid-p.
- :func:`sign_test`: the same exact test on the signs of any paired per-case effect.
- :func:`paired_bootstrap_ci`: a seeded percentile bootstrap interval for a mean difference.
- :func:`sign_flip_test`: a seeded paired permutation test (random sign flips) of the mean
  of per-case paired differences.
- :func:`min_detectable_effect`: the smallest pass-rate drop a paired set of ``n`` cases
  detects with the given power, from the normal approximation of McNemar's test.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# Two-sided 95%: the normal quantile 1 - 0.05 / 2.
Z_95 = 1.959963984540054

Alternative = Literal["two-sided", "less", "greater"]


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 and n successes the bound is exactly 0 or 1; rounding would leave 1e-16 off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


class PassRate:
    """Pass rate and its 95% Wilson interval, for a record with ``passed`` and ``scored``.

    Errors are never in ``scored``: a case that could not be scored is not a failure.
    """

    passed: int
    scored: int

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.scored)


# --- the normal distribution ----------------------------------------------------------------


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """The x with P(Z <= x) = p for a standard normal Z: ``statistics.NormalDist().inv_cdf``
    (Wichura's algorithm AS 241, accurate to about 1e-16 relative).

    ``normal_quantile(0.975)`` is 1.959963984540054 within 1e-15. Raises ``ValueError`` outside
    (0, 1).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_quantile needs 0 < p < 1, got {p!r}")
    from statistics import NormalDist  # not at start-up: the plugin imports this module

    return NormalDist().inv_cdf(p)


# --- exact binomial tests at p = 1/2 (McNemar, sign test) ----------------------------------


def _binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly: integer sums, one correctly rounded division."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    term = total = 1  # C(n, 0); each next binomial coefficient from the previous one
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        total += term
    return total / (1 << n)


def _binomial_half_pmf(k: int, n: int) -> float:
    return math.comb(n, k) / (1 << n) if 0 <= k <= n else 0.0


def mcnemar_exact(
    b: int, c: int, *, mid_p: bool = False, alternative: Alternative = "two-sided"
) -> float:
    """Exact McNemar p-value from the discordant pairs of a paired comparison.

    ``b`` counts cases that passed in the first run and failed in the second (pass->fail),
    ``c`` the reverse (fail->pass). Under the null hypothesis (same pass rate) each
    discordant pair is a fair coin, so ``b ~ Binomial(b + c, 1/2)``. The two-sided p-value
    is ``min(1, 2 * P(X <= min(b, c)))``, which for p = 1/2 equals the "sum of outcomes no
    more likely than the observed one" p-value of ``scipy.stats.binomtest``.

    ``alternative="greater"`` tests whether pass->fail flips outnumber fail->pass flips (the
    second run is worse), ``"less"`` the reverse.

    ``mid_p`` subtracts half the probability of the observed outcome from each tail
    (Lancaster's mid-p): less conservative, no longer an exact level-alpha test. Off by
    default. With no discordant pair the p-value is 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    half = 0.5 * _binomial_half_pmf(b, n) if mid_p else 0.0
    if alternative == "greater":  # P(X >= b) = P(X <= n - b) by symmetry, without cancellation
        return min(1.0, _binomial_half_cdf(n - b, n) - half)
    if alternative == "less":  # P(X <= b)
        return min(1.0, _binomial_half_cdf(b, n) - half)
    if alternative != "two-sided":
        raise ValueError(f"alternative must be two-sided, less or greater, got {alternative!r}")
    k = min(b, c)
    if mid_p:
        tail = _binomial_half_cdf(k, n) - 0.5 * _binomial_half_pmf(k, n)
    else:
        tail = _binomial_half_cdf(k, n)
    return min(1.0, 2.0 * tail)


def sign_test(
    differences: Sequence[float], *, mid_p: bool = False, alternative: Alternative = "two-sided"
) -> float:
    """Exact sign test of per-case paired differences (zeros dropped).

    ``alternative="greater"`` tests whether negative differences outnumber positive ones
    (consistent with :func:`mcnemar_exact`, whose ``b`` counts drops). For two runs of
    pass/fail outcomes it is exactly McNemar's test.
    """
    drops = sum(1 for d in differences if d < 0)
    gains = sum(1 for d in differences if d > 0)
    return mcnemar_exact(drops, gains, mid_p=mid_p, alternative=alternative)


def min_significant_flips(alpha: float, *, mid_p: bool = False) -> int:
    """The fewest discordant pairs, all in one direction, that the two-sided exact McNemar
    test can call significant at ``alpha`` (6 at alpha = 0.05: p = 2 / 2**6 = 0.031)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    k = 1
    while mcnemar_exact(k, 0, mid_p=mid_p) >= alpha:
        k += 1
    return k


# --- the bootstrap ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval for the mean of paired differences."""

    mean: float
    low: float
    high: float
    confidence: float
    resamples: int
    n: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * weight


def paired_bootstrap_ci(
    differences: Sequence[float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """Seeded percentile bootstrap interval for the mean of per-case paired differences.

    Cases are resampled with replacement (a case's two scores stay together, which is what
    makes the bootstrap paired). The same ``differences``, ``resamples`` and ``seed`` give
    the same interval on every machine: the resampling uses ``random.Random(seed)`` only.
    """
    n = len(differences)
    if n == 0:
        raise ValueError("paired_bootstrap_ci needs at least one difference")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    values = [float(d) for d in differences]
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    return BootstrapInterval(
        mean=math.fsum(values) / n,
        low=_quantile(means, tail),
        high=_quantile(means, 1.0 - tail),
        confidence=confidence,
        resamples=resamples,
        n=n,
        seed=seed,
    )


def sign_flip_test(
    differences: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    alternative: Alternative = "two-sided",
) -> float:
    """Seeded paired permutation test of the mean of per-case differences (sign flips).

    Under the null hypothesis the two runs of a case are exchangeable (the same model or the
    same pass probability produced both), so each difference is as likely to have either
    sign. The test draws ``resamples`` random sign assignments with ``random.Random(seed)``
    and counts those whose sum is at least as extreme as the observed one; the p-value is
    ``(1 + count) / (1 + resamples)`` (Phipson and Smyth 2010), which never reaches 0 and
    keeps the Monte Carlo test at level alpha. Zero differences do not change under a flip
    and are dropped. ``alternative="greater"`` tests whether the differences are negative
    (a drop: the same direction convention as :func:`mcnemar_exact`), ``"less"`` positive.
    With no non-zero difference the p-value is 1.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be two-sided, less or greater, got {alternative!r}")
    values = [float(d) for d in differences if d != 0]
    if not values:
        return 1.0
    total = math.fsum(values)
    # Sums are compared with a relative tolerance so that a resample equal to the observed
    # sum up to rounding counts as "at least as extreme".
    slack = 1e-9 * math.fsum(abs(v) for v in values)
    rng = random.Random(seed)
    m = len(values)
    extreme = 0
    for _ in range(resamples):
        bits = rng.getrandbits(m)
        flipped = math.fsum(v for i, v in enumerate(values) if (bits >> i) & 1)
        resampled = total - 2.0 * flipped
        if alternative == "two-sided":
            hit = abs(resampled) >= abs(total) - slack
        elif alternative == "greater":
            hit = resampled <= total + slack
        else:
            hit = resampled >= total - slack
        extreme += hit
    return (1 + extreme) / (1 + resamples)


# --- power -----------------------------------------------------------------------------------


def min_detectable_effect(
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    baseline_rate: float = 0.5,
    discordance: float | None = None,
) -> float:
    """The smallest pass-rate drop (a fraction) that ``n`` paired cases detect.

    The approximation is the normal approximation of McNemar's test (Connor 1987): with
    discordance rate ``psi`` (the share of cases whose verdict differs between the two
    runs) and a true drop ``delta``, the two-sided test at ``alpha`` has power ``power`` when

        delta * sqrt(n) = z(1 - alpha/2) * sqrt(psi) + z(power) * sqrt(psi - delta**2)

    which is solved for ``delta`` by bisection.

    ``discordance`` is the noise floor: the share of cases that flip between two runs when
    there is no real difference (measured by an A/A run, or estimated from a comparison as
    the flips that cancel out, ``2 * min(b, c) / n``). Noise flips go both ways, so a real
    drop of ``delta`` adds ``delta`` one-way flips: ``psi = discordance + delta``.

    Without ``discordance`` the two runs are assumed independent given their pass rates
    (``psi = p(1 - p') + p'(1 - p)`` with ``p = baseline_rate`` and ``p' = p - delta``): the
    classical unpaired two-proportion answer, an upper bound for models whose verdicts
    agree more often than chance.

    The result is never below ``k / n`` where ``k`` is the fewest one-directional flips the
    exact test can call significant (6 at alpha = 0.05), and is ``math.inf`` when no drop,
    not even from 100% to 0%, would be detected (tiny ``n``).
    """
    if n <= 0:
        return math.inf
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if not 0.0 <= baseline_rate <= 1.0:
        raise ValueError(f"baseline_rate must be in [0, 1], got {baseline_rate!r}")
    if discordance is not None and not 0.0 <= discordance <= 1.0:
        raise ValueError(f"discordance must be in [0, 1], got {discordance!r}")
    z_alpha = normal_quantile(1.0 - alpha / 2.0)
    z_power = normal_quantile(power)
    root_n = math.sqrt(n)

    def psi(delta: float) -> float:
        if discordance is not None:
            return min(1.0, discordance + delta)
        p, q = baseline_rate, baseline_rate - delta
        return min(1.0, max(p * (1.0 - q) + q * (1.0 - p), delta))

    def shortfall(delta: float) -> float:
        share = psi(delta)
        return (
            delta * root_n
            - z_alpha * math.sqrt(share)
            - z_power * math.sqrt(max(0.0, share - delta * delta))
        )

    if shortfall(1.0) < 0.0:
        return math.inf
    low, high = 0.0, 1.0
    for _ in range(80):
        middle = (low + high) / 2.0
        if shortfall(middle) >= 0.0:
            high = middle
        else:
            low = middle
    floor = min_significant_flips(alpha) / n
    if floor > 1.0:
        return math.inf
    return max(high, floor)
