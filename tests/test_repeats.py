"""Statistics of repeated runs: pass@k and pass^k against exhaustive counts, the run summary,
and the paired comparison's A/A false-alarm rate and power on seeded simulated models."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from fractions import Fraction
from pathlib import Path

import pytest

from pytest_llmregress.verdict.agreement import (
    best_threshold,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
)
from pytest_llmregress.verdict.repeats import (
    CaseRepeats,
    compare_repeated,
    min_detectable_drop,
    pass_at_k,
    pass_hat_k,
    summarize_repeats,
    within_case_variance,
)
from pytest_llmregress.verdict.stats import sign_flip_test

# --- one case --------------------------------------------------------------------------------


def test_case_repeats_keeps_errors_apart() -> None:
    case = CaseRepeats.of("t::a", [True, None, False, True, None])
    assert (case.passes, case.trials, case.errors) == (2, 3, 2)
    assert case.pass_fraction == pytest.approx(2 / 3)
    assert case.flipped
    assert case.any_pass
    assert not case.all_pass
    steady = CaseRepeats("t::b", passes=4, trials=4, errors=1)
    assert steady.all_pass
    assert steady.any_pass
    assert not steady.flipped
    only_errors = CaseRepeats.of("t::c", [None, None])
    assert only_errors.pass_fraction is None
    assert not (only_errors.all_pass)
    assert not (only_errors.any_pass)
    assert not (only_errors.flipped)
    with pytest.raises(ValueError, match="passes <= trials"):
        CaseRepeats("t::d", passes=3, trials=2)


# --- pass@k and pass^k -----------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_and_pass_hat_k_count_every_subset(n: int) -> None:
    """The closed forms against the share of all k-subsets of n trials with c passes."""
    for c in range(n + 1):
        trials = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(trials, k))
            any_share = Fraction(sum(1 for s in subsets if any(s)), len(subsets))
            all_share = Fraction(sum(1 for s in subsets if all(s)), len(subsets))
            assert pass_at_k(n, c, k) == pytest.approx(float(any_share), abs=1e-15)
            assert pass_hat_k(n, c, k) == pytest.approx(float(all_share), abs=1e-15)


@pytest.mark.parametrize(("n", "k", "p"), [(5, 2, 0.3), (8, 3, 0.75), (10, 10, 0.9)])
def test_pass_hat_k_and_pass_at_k_are_unbiased(n: int, k: int, p: float) -> None:
    """Averaged over c ~ Binomial(n, p), the estimates equal p**k and 1 - (1 - p)**k."""
    weights = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    hat = math.fsum(w * pass_hat_k(n, c, k) for c, w in enumerate(weights))
    at = math.fsum(w * pass_at_k(n, c, k) for c, w in enumerate(weights))
    assert hat == pytest.approx(p**k, rel=1e-12)
    assert at == pytest.approx(1 - (1 - p) ** k, rel=1e-12)


def test_pass_at_k_refuses_k_above_n() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c <= n"):
        pass_hat_k(3, 4, 1)


# --- a run -----------------------------------------------------------------------------------


def test_summary_of_a_small_run() -> None:
    cases = [
        CaseRepeats("t::a", 5, 5),
        CaseRepeats("t::b", 3, 5),
        CaseRepeats("t::c", 2, 5),
        CaseRepeats("t::d", 0, 5),
        CaseRepeats("t::e", 4, 5),
        CaseRepeats("t::f", 0, 0, errors=5),
    ]
    summary = summarize_repeats(cases, seed=1)
    assert summary.cases == 5
    assert summary.errored_cases == 1
    assert summary.mean_pass_rate == pytest.approx((1 + 0.6 + 0.4 + 0 + 0.8) / 5)
    assert summary.flaky_share == pytest.approx(3 / 5)
    # 0.6 and 0.4 are equally close to 0.5: node id order; then 0.8.
    assert [c.nodeid for c in summary.flakiest] == ["t::b", "t::c", "t::e"]
    assert summary.all_pass_rate == pytest.approx(1 / 5)
    assert summary.any_pass_rate == pytest.approx(4 / 5)
    assert summary.interval is not None
    assert summary.mean_pass_rate is not None
    assert summary.interval.low <= summary.mean_pass_rate <= summary.interval.high
    assert summarize_repeats(cases, flakiest=1).flakiest == (cases[1],)
    assert summarize_repeats(cases, seed=1) == summary  # seeded: the same on every run


def test_summary_without_a_scored_case() -> None:
    summary = summarize_repeats([CaseRepeats("t::a", 0, 0, errors=3)])
    assert summary.cases == 0
    assert summary.mean_pass_rate is None
    assert summary.interval is None


def test_the_cluster_interval_has_the_width_of_the_case_level_spread() -> None:
    """Resampling cases (not repeats): the interval's width is that of the mean of the
    per-case fractions, 2 * 1.96 * sd / sqrt(n), whatever K; resampling the 10 repeats as
    independent trials would give a narrower interval for cases this heterogeneous."""
    rng = random.Random(7)
    k = 10
    cases = []
    for i in range(300):
        p = rng.choice([0.0, 0.05, 0.5, 0.95, 1.0])
        cases.append(CaseRepeats(f"t::{i}", sum(rng.random() < p for _ in range(k)), k))
    summary = summarize_repeats(cases, resamples=2000, seed=3)
    assert summary.interval is not None
    fractions = [c.passes / c.trials for c in cases]
    expected = 2 * 1.96 * statistics.stdev(fractions) / math.sqrt(len(cases))
    width = summary.interval.high - summary.interval.low
    assert width == pytest.approx(expected, rel=0.12)
    mean = statistics.fmean(fractions)
    naive = 2 * 1.96 * math.sqrt(mean * (1 - mean) / (len(cases) * k))
    assert width > 1.5 * naive


# --- comparing repeated runs -----------------------------------------------------------------

K = 5
CASES = 200
SPREAD = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]


def draw_run(rng: random.Random, probabilities: list[float], k: int = K) -> list[CaseRepeats]:
    return [
        CaseRepeats(f"t::{i}", sum(rng.random() < p for _ in range(k)), k)
        for i, p in enumerate(probabilities)
    ]


def test_a_a_runs_with_five_repeats_report_no_regression() -> None:
    """Both runs draw from each case's own pass probability: at alpha 0.05, at least 95 of
    100 simulated A/A comparisons say "no regression", and the test itself is not
    anti-conservative (its false-alarm rate, margin aside, stays near alpha)."""
    regressions = significant = 0
    for seed in range(100):
        rng = random.Random(seed)
        probabilities = [rng.choice(SPREAD) for _ in range(CASES)]
        baseline, candidate = draw_run(rng, probabilities), draw_run(rng, probabilities)
        result = compare_repeated(baseline, candidate, alpha=0.05, seed=seed, resamples=500)
        regressions += result.verdict == "regression"
        significant += result.significant
    assert regressions <= 5
    assert significant <= 12  # 5 expected; 12 is beyond 3 standard deviations


def test_a_real_drop_of_fifteen_points_is_found() -> None:
    found = 0
    for seed in range(100):
        rng = random.Random(1000 + seed)
        probabilities = [rng.choice([0.3, 0.5, 0.7, 0.8, 0.9, 1.0]) for _ in range(CASES)]
        worse = [p - 0.15 for p in probabilities]
        baseline, candidate = draw_run(rng, probabilities), draw_run(rng, worse)
        result = compare_repeated(baseline, candidate, seed=seed, resamples=500)
        found += result.verdict == "regression"
    assert found >= 90


def test_the_verdict_rule_mirrors_compare_runs() -> None:
    def run(fractions: list[int]) -> list[CaseRepeats]:
        return [CaseRepeats(f"t::{i}", c, 5) for i, c in enumerate(fractions)]

    baseline = run([5] * 100)
    # Significant drop of 3 points (15 cases lose one pass of 5): within the 5-point margin.
    small = compare_repeated(baseline, run([4] * 15 + [5] * 85), max_regression=0.05)
    assert small.significant
    assert not small.margin_exceeded
    assert small.verdict == "within noise"
    assert small.difference == pytest.approx(-0.03)
    large = compare_repeated(baseline, run([3] * 30 + [5] * 70), max_regression=0.05)
    assert large.verdict == "regression"
    assert large.difference == pytest.approx(-0.12)
    assert large.interval is not None
    assert large.interval.high < 0
    better = compare_repeated(run([3] * 30 + [5] * 70), baseline)
    assert better.verdict == "improvement"
    # A drop beyond the margin on too few cases is not significant: within noise.
    few = compare_repeated(run([5] * 3), run([4, 5, 5]), max_regression=0.05)
    assert few.margin_exceeded
    assert not few.significant
    assert few.verdict == "within noise"


def test_pairing_lists_what_it_cannot_compare() -> None:
    baseline = [CaseRepeats("t::a", 5, 5), CaseRepeats("t::b", 1, 5), CaseRepeats("t::c", 0, 0, 5)]
    candidate = [CaseRepeats("t::a", 4, 5), CaseRepeats("t::c", 3, 5), CaseRepeats("t::d", 1, 5)]
    result = compare_repeated(baseline, candidate, resamples=100)
    assert result.n == 1
    assert result.only_baseline == ("t::b",)
    assert result.only_candidate == ("t::d",)
    assert result.unscored == ("t::c",)
    assert result.baseline_rate == pytest.approx(1.0)
    assert result.candidate_rate == pytest.approx(0.8)


def test_within_case_variance_is_unbiased() -> None:
    """Averaged over c ~ Binomial(K, p): p (1 - p)."""
    for k, p in [(2, 0.5), (5, 0.3), (10, 0.9)]:
        expected = math.fsum(
            math.comb(k, c)
            * p**c
            * (1 - p) ** (k - c)
            * (within_case_variance([CaseRepeats("t::a", c, k)]) or 0.0)
            for c in range(k + 1)
        )
        assert expected == pytest.approx(p * (1 - p), rel=1e-12)
    assert within_case_variance([CaseRepeats("t::a", 1, 1)]) is None


def test_min_detectable_drop_shrinks_with_repeats() -> None:
    one = min_detectable_drop(200, 1, 0.16)
    five = min_detectable_drop(200, 5, 0.16)
    assert five == pytest.approx(one / math.sqrt(5))
    assert five == pytest.approx((1.959964 + 0.841621) * math.sqrt(2 * 0.16 / 1000), rel=1e-6)
    assert min_detectable_drop(200, 5, 0.0) == 0.0
    assert min_detectable_drop(0, 5, 0.16) == math.inf


def test_min_detectable_drop_has_about_the_stated_power() -> None:
    """A drop of the predicted size is found in about 80% of simulated runs."""
    rng = random.Random(99)
    probabilities = [rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(CASES)]
    variance = statistics.fmean(p * (1 - p) for p in probabilities)
    drop = min_detectable_drop(CASES, K, variance)
    found = 0
    for seed in range(60):
        rng = random.Random(seed)
        baseline = draw_run(rng, probabilities)
        candidate = draw_run(rng, [p - drop for p in probabilities])
        found += compare_repeated(baseline, candidate, seed=seed, resamples=400).significant
    assert 0.6 <= found / 60 <= 0.95


# --- the sign-flip test ----------------------------------------------------------------------


def exact_sign_flip(differences: list[float]) -> float:
    """The exact two-sided p-value over all 2**m sign assignments."""
    values = [d for d in differences if d != 0]
    observed = abs(math.fsum(values))
    hits = sum(
        1
        for signs in itertools.product([1, -1], repeat=len(values))
        if abs(math.fsum(s * v for s, v in zip(signs, values, strict=True))) >= observed - 1e-12
    )
    return hits / (1 << len(values))


@pytest.mark.parametrize(
    "differences",
    [[-0.2, -0.4, 0.0, -0.2, 0.2, -0.6, -0.2, -0.4], [0.2, -0.2, 0.4, -0.2, 0.0, 0.2], [-1.0] * 6],
)
def test_sign_flip_test_matches_the_exact_enumeration(differences: list[float]) -> None:
    exact = exact_sign_flip(differences)
    assert sign_flip_test(differences, resamples=20000, seed=5) == pytest.approx(exact, abs=0.01)
    one_sided = sign_flip_test(differences, resamples=20000, seed=5, alternative="greater")
    if sum(differences) < 0:  # a drop: the one-sided p-value is half the two-sided one
        assert one_sided == pytest.approx(exact / 2, abs=0.01)
    assert sign_flip_test([0.0, 0.0]) == 1.0


# --- docs/reading-verdicts.md ----------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "reading-verdicts.md"


def test_the_worked_example_in_the_docs_is_what_the_functions_give() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())

    def cases(passes: list[int]) -> list[CaseRepeats]:
        return [CaseRepeats(f"case-{i + 1:02d}", c, 5) for i, c in enumerate(passes)]

    baseline = cases([5, 5, 5, 5, 4, 4, 3, 5, 2, 5, 0, 5])
    candidate = cases([5, 4, 5, 5, 3, 4, 1, 5, 2, 4, 0, 3])
    assert "baseline: 5 5 5 5 4 4 3 5 2 5 0 5" in text
    assert "candidate: 5 4 5 5 3 4 1 5 2 4 0 3" in text
    before, after = summarize_repeats(baseline), summarize_repeats(candidate)
    assert before.interval is not None
    assert after.interval is not None
    rows = {
        "mean pass rate": (before.mean_pass_rate, after.mean_pass_rate),
        "flaky share": (before.flaky_share, after.flaky_share),
        "pass^5 rate": (before.all_pass_rate, after.all_pass_rate),
        "pass@5 rate": (before.any_pass_rate, after.any_pass_rate),
    }
    for name, (x, y) in rows.items():
        assert f"| {name} | {x:.3f} | {y:.3f} |" in text
    intervals = " | ".join(
        f"[{s.interval.low:.3f}, {s.interval.high:.3f}]" for s in (before, after) if s.interval
    )
    assert f"| clustered 95% interval | {intervals} |" in text
    flakiest = " | ".join(", ".join(c.nodeid for c in s.flakiest[:3]) for s in (before, after))
    assert f"| flakiest (first three) | {flakiest} |" in text

    result = compare_repeated(baseline, candidate)
    assert result.interval is not None
    assert f"fell by {-result.difference:.3f}" in text
    assert f"[{result.interval.low:.3f}, {result.interval.high:.3f}]" in text
    assert f"p = {result.p_value:.3f}" in text
    assert f"the verdict is **{result.verdict}**" in text
    assert f"can detect is {result.min_detectable_drop:.3f}" in text
    assert f"`pass_at_k(5, 3, 2)` = {pass_at_k(5, 3, 2):.3f}" in text
    assert f"`pass_hat_k(5, 3, 2)` = {pass_hat_k(5, 3, 2):.3f}" in text

    scores = [0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1]
    people = [True, True, True, False, True, True, False, True, False, False, False, False]
    assert "scores: " + " ".join(f"{s:.2f}" for s in scores) in text
    assert "people: " + " ".join("pass" if p else "fail" for p in people) in text
    best = best_threshold(scores, people)
    agreement = best.agreement
    assert f"picks {best.threshold:.2f} with κ = {best.kappa:.3f}" in text
    assert f"{agreement.true_pass} true passes, {agreement.false_pass} false passes" in text
    assert agreement.false_fail == 0
    assert f"{agreement.true_fail} true fails" in text
    assert f"precision of {agreement.precision:.3f}, a recall of {agreement.recall:.3f}" in text
    assert f"accuracy of {agreement.accuracy:.3f}" in text

    panel: list[list[str | None]] = [
        ["pass", "pass", "fail", "pass", "fail", "pass", "pass", "fail"],
        ["pass", "pass", "fail", "fail", "fail", "pass", "pass", "fail"],
        ["pass", "fail", "fail", "pass", "fail", "pass", "fail", "fail"],
    ]
    for i, row in enumerate(panel, start=1):
        assert f"judge {i}: " + " ".join(str(v) for v in row) in text
    table = [[sum(r[u] == label for r in panel) for label in ("pass", "fail")] for u in range(8)]
    assert f"Fleiss' κ = {fleiss_kappa(table):.3f}" in text
    assert f"Krippendorff's α (nominal) = {krippendorff_alpha(panel):.3f}" in text
    assert f"Cohen's κ = {cohen_kappa(panel[0], panel[1]):.3f}" in text
    panel[2][6] = None
    assert f"(`None`), α = {krippendorff_alpha(panel):.3f}" in text


def test_compare_repeated_refuses_bad_parameters() -> None:
    run = [CaseRepeats("t::a", 5, 5)]
    with pytest.raises(ValueError, match="resamples"):
        compare_repeated(run, run, resamples=0)
    with pytest.raises(ValueError, match="alpha"):
        compare_repeated(run, run, alpha=1.5)
    with pytest.raises(ValueError, match="max_regression"):
        compare_repeated(run, run, max_regression=2.0)
    nothing = compare_repeated(run, [CaseRepeats("t::b", 5, 5)])
    assert nothing.n == 0
    assert nothing.verdict == "within noise"
    assert nothing.p_value == 1.0
    assert nothing.interval is None
