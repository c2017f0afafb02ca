"""Statistics against known values: hand-computed tables, published intervals, and scipy."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from pytest_llmregress.verdict.stats import (
    Z_95,
    mcnemar_exact,
    min_detectable_effect,
    min_significant_flips,
    normal_cdf,
    normal_quantile,
    paired_bootstrap_ci,
    sign_test,
    wilson_interval,
)

try:
    from scipy import stats as scipy_stats  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - scipy is optional, the hard-coded values still run
    scipy_stats = None

needs_scipy = pytest.mark.skipif(scipy_stats is None, reason="scipy is not installed")


# --- normal quantile -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "z"),
    [
        (0.5, 0.0),
        (0.8, 0.8416212335729143),
        (0.9, 1.2815515655446004),
        (0.95, 1.6448536269514722),
        (0.975, 1.959963984540054),
        (0.99, 2.3263478740408408),
        (0.995, 2.5758293035489004),
        (0.999, 3.090232306167813),
        (0.9999, 3.719016485455709),
        (0.025, -1.959963984540054),
        (1e-10, -6.361340902404056),
    ],
)
def test_normal_quantile_known_values(p: float, z: float) -> None:
    assert normal_quantile(p) == pytest.approx(z, rel=1e-13, abs=1e-13)


def test_z95_constant_is_the_quantile() -> None:
    assert normal_quantile(0.975) == pytest.approx(Z_95, rel=1e-15)


def test_normal_quantile_matches_stdlib_and_inverts_cdf() -> None:
    reference = statistics.NormalDist()
    for i in range(1, 1000):
        p = i / 1000
        assert normal_quantile(p) == pytest.approx(reference.inv_cdf(p), rel=1e-12, abs=1e-12)
        assert normal_cdf(normal_quantile(p)) == pytest.approx(p, rel=1e-12)
        assert normal_quantile(p) == pytest.approx(-normal_quantile(1 - p), rel=1e-12, abs=1e-15)
    for exponent in range(2, 300, 7):
        tiny = 10.0**-exponent
        assert normal_quantile(tiny) == pytest.approx(reference.inv_cdf(tiny), rel=1e-12)


@needs_scipy
def test_normal_quantile_matches_scipy() -> None:
    assert scipy_stats is not None
    for p in (1e-300, 1e-20, 1e-5, 0.01, 0.02425, 0.3, 0.7, 0.97575, 0.999999, 1 - 1e-12):
        assert normal_quantile(p) == pytest.approx(float(scipy_stats.norm.ppf(p)), rel=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_normal_quantile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="0 < p < 1"):
        normal_quantile(p)


# --- Wilson interval -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_published_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    got_low, got_high = wilson_interval(successes, trials)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert 0.69 < low < 0.73
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


@needs_scipy
def test_wilson_interval_matches_scipy() -> None:
    assert scipy_stats is not None
    for k, n in ((0, 5), (3, 7), (81, 263), (290, 300), (500, 1000)):
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


# --- McNemar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        # Exact binomial (sign test) values: 2 * sum_{i<=min} C(n, i) / 2**n.
        (0, 6, 2 / 64),  # the fewest one-sided flips significant at 0.05
        (0, 5, 2 / 32),
        (1, 9, 2 * 11 / 1024),  # sign-test table: n=10, critical value 1 at 0.05
        (2, 8, 2 * 56 / 1024),
        (5, 15, 2 * 21700 / 2**20),  # n=20, critical value 5 at 0.05: p = 0.0414
        (6, 14, 2 * 60460 / 2**20),  # one more: p = 0.1153, not significant
        (5, 5, 1.0),
        (0, 0, 1.0),
        (7, 3, 2 * 176 / 1024),  # symmetric in b and c
        (3, 7, 2 * 176 / 1024),
    ],
)
def test_mcnemar_exact_table_values(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_published_examples() -> None:
    # Sign test n=20, two-sided: P = 0.0414 at 5 vs 15 and 0.1153 at 6 vs 14 (standard tables).
    assert round(mcnemar_exact(15, 5), 4) == 0.0414
    assert round(mcnemar_exact(14, 6), 4) == 0.1153
    assert min_significant_flips(0.05) == 6
    assert min_significant_flips(0.01) == 8  # 2 / 2**8 = 0.0078; 2 / 2**7 = 0.0156


def test_mcnemar_one_sided_and_mid_p() -> None:
    # P(X >= 9 | n=10) = 11/1024
    assert mcnemar_exact(9, 1, alternative="greater") == pytest.approx(11 / 1024)
    assert mcnemar_exact(9, 1, alternative="less") == pytest.approx(1 - 1 / 1024)
    # Mid-p: 2 * (P(X <= 1) - P(X = 1) / 2) = 2 * (11 - 5) / 1024
    assert mcnemar_exact(1, 9, mid_p=True) == pytest.approx(12 / 1024)
    assert mcnemar_exact(9, 1, mid_p=True, alternative="greater") == pytest.approx(6 / 1024)
    assert mcnemar_exact(4, 4, mid_p=True) == 1.0  # 2 * (163 - 70 / 2) / 256
    assert mcnemar_exact(3, 5, mid_p=True) == pytest.approx(2 * (93 - 28) / 256)
    assert mcnemar_exact(1, 9, mid_p=True) < mcnemar_exact(1, 9)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 3)


def test_mcnemar_large_counts_stay_finite() -> None:
    p = mcnemar_exact(3000, 2900)
    assert 0.19 < p < 0.2
    assert mcnemar_exact(5000, 0) == 0.0 or mcnemar_exact(5000, 0) < 1e-300


@needs_scipy
def test_mcnemar_matches_scipy_binomtest() -> None:
    assert scipy_stats is not None
    rng = random.Random(7)
    pairs = [(0, 1), (1, 1), (4, 11), (35, 5), (12, 4), (300, 250), (3000, 2900)]
    pairs += [(rng.randrange(0, 60), rng.randrange(0, 60)) for _ in range(40)]
    for b, c in pairs:
        if b + c == 0:
            continue
        expected = scipy_stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
        for alternative in ("greater", "less"):
            one_sided = scipy_stats.binomtest(b, b + c, 0.5, alternative=alternative).pvalue
            got = mcnemar_exact(b, c, alternative=alternative)
            assert got == pytest.approx(one_sided, rel=1e-9, abs=1e-300)


def test_sign_test_is_mcnemar_on_signs() -> None:
    differences = [-1.0] * 9 + [1.0] + [0.0] * 40 + [-0.5]
    assert sign_test(differences) == mcnemar_exact(10, 1)


# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_with_a_seed() -> None:
    data = [random.Random(1).uniform(-1, 1) for _ in range(50)]
    first = paired_bootstrap_ci(data, seed=3)
    assert paired_bootstrap_ci(data, seed=3) == first
    assert paired_bootstrap_ci(data, seed=4) != first
    assert first.resamples == 2000
    assert first.low <= first.mean <= first.high
    assert first.mean == pytest.approx(statistics.fmean(data))


def test_bootstrap_constant_data_and_errors() -> None:
    interval = paired_bootstrap_ci([0.25] * 30, resamples=100)
    assert (interval.low, interval.high) == pytest.approx((0.25, 0.25))
    assert interval.excludes_zero
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap_ci([])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap_ci([1.0], resamples=0)


def test_bootstrap_coverage_is_near_nominal() -> None:
    """About 95% of intervals from samples of a known distribution contain its mean."""
    rng = random.Random(11)
    true_mean = 0.1
    hits = 0
    trials = 120
    for trial in range(trials):
        sample = [rng.gauss(true_mean, 0.3) for _ in range(40)]
        interval = paired_bootstrap_ci(sample, resamples=400, seed=trial)
        hits += interval.low <= true_mean <= interval.high
    assert 0.85 <= hits / trials <= 1.0


@needs_scipy
def test_bootstrap_close_to_scipy_percentile_interval() -> None:
    assert scipy_stats is not None
    data = [random.Random(5).gauss(0.0, 1.0) for _ in range(60)]
    ours = paired_bootstrap_ci(data, resamples=4000, seed=1)
    theirs = scipy_stats.bootstrap(
        (data,), statistics.fmean, n_resamples=4000, method="percentile", random_state=1
    ).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.06)
    assert ours.high == pytest.approx(theirs.high, abs=0.06)


# --- minimum detectable effect ---------------------------------------------------------------


def _required_n(delta: float, psi: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Connor (1987) sample size for McNemar's test, the formula the MDE inverts."""
    za, zb = normal_quantile(1 - alpha / 2), normal_quantile(power)
    return (za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2)) ** 2 / delta**2


def test_mde_inverts_the_sample_size_formula() -> None:
    # delta 0.10 with 20% discordance needs 154.6 pairs (textbook value ~155); a 20%
    # discordance at a 10-point drop is a 10% noise floor plus the 10 one-way flips.
    assert _required_n(0.1, 0.2) == pytest.approx(154.6, abs=0.1)
    mde = min_detectable_effect(155, 0.05, 0.8, discordance=0.1)
    assert mde == pytest.approx(0.1, abs=0.001)
    assert mde <= 0.1
    for n, noise in ((300, 0.1), (1000, 0.05), (80, 0.3)):
        delta = min_detectable_effect(n, discordance=noise)
        assert _required_n(delta, noise + delta) == pytest.approx(n, rel=1e-6)


def test_mde_shrinks_with_more_cases_and_grows_with_noise() -> None:
    values = [min_detectable_effect(n, discordance=0.1) for n in (50, 100, 300, 1000, 10000)]
    assert values == sorted(values, reverse=True)
    assert min_detectable_effect(300, discordance=0.2) > min_detectable_effect(
        300, discordance=0.05
    )
    assert min_detectable_effect(300, power=0.9, discordance=0.1) > min_detectable_effect(
        300, power=0.8, discordance=0.1
    )


def test_mde_unpaired_default_and_floors() -> None:
    # Without a discordance, independence at the baseline rate: close to the classical
    # unpaired two-proportion answer (Fleiss), solved here by bisection.
    def fleiss_n(delta: float, p1: float = 0.85) -> float:
        p2 = p1 - delta
        mean = (p1 + p2) / 2
        za, zb = normal_quantile(0.975), normal_quantile(0.8)
        spread = za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(
            p1 * (1 - p1) + p2 * (1 - p2)
        )
        return spread**2 / delta**2

    low, high = 0.001, 0.5
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if fleiss_n(middle) > 300 else (low, middle)
    assert high == pytest.approx(0.0905, abs=0.001)
    assert min_detectable_effect(300, baseline_rate=0.85) == pytest.approx(high, rel=0.02)
    # The paired answer with a realistic discordance is much smaller.
    assert min_detectable_effect(300, discordance=0.02) < high / 2
    # No flips observed: the exact test still needs 6 one-sided flips at alpha 0.05.
    assert min_detectable_effect(1000, discordance=0.0) >= 6 / 1000
    assert min_detectable_effect(3) == math.inf
    assert min_detectable_effect(0) == math.inf
    with pytest.raises(ValueError, match="alpha"):
        min_detectable_effect(100, alpha=0.0)


def test_mde_has_about_the_promised_power() -> None:
    """Simulated exact McNemar tests at the detectable drop reject about 80% of the time."""
    n, noise = 300, 0.08
    delta = min_detectable_effect(n, discordance=noise)
    rng = random.Random(2)
    psi = noise + delta  # all flips; pass->fail flips are noise / 2 + delta
    p_worse = noise / 2 + delta
    rejections = 0
    sims = 600
    cache: dict[tuple[int, int], float] = {}
    for _ in range(sims):
        b = c = 0
        for _ in range(n):
            u = rng.random()
            if u < p_worse:
                b += 1
            elif u < psi:
                c += 1
        if (b, c) not in cache:
            cache[(b, c)] = mcnemar_exact(b, c)
        rejections += cache[(b, c)] < 0.05
    assert 0.7 <= rejections / sims <= 0.9
