"""Agreement statistics against published values and independent implementations.

Published: Fleiss (1971)'s psychiatric diagnoses (kappa = 0.430), the Wikipedia worked
example of Fleiss' kappa (0.210), Wikipedia's 50-proposal example of Cohen's kappa (0.4),
Krippendorff (2011)'s 4 coders x 12 units with missing values (nominal alpha = 0.743,
interval 0.849). Independent: statsmodels (Fleiss, Cohen) and the `krippendorff` package,
on seeded random tables, when installed (both are in the ``dev`` extra).
"""

from __future__ import annotations

import importlib
import math
import random
from typing import Any

import pytest

from pytest_llmregress.verdict.agreement import (
    BinaryAgreement,
    best_threshold,
    binary_agreement,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
)

np: Any
inter_rater: Any
krippendorff: Any
try:
    np = importlib.import_module("numpy")
    inter_rater = importlib.import_module("statsmodels.stats.inter_rater")
except ImportError:  # pragma: no cover - optional: the published values still run
    np = inter_rater = None
try:
    krippendorff = importlib.import_module("krippendorff")
except ImportError:  # pragma: no cover
    krippendorff = None

needs_statsmodels = pytest.mark.skipif(inter_rater is None, reason="statsmodels not installed")
needs_krippendorff = pytest.mark.skipif(
    krippendorff is None or np is None, reason="krippendorff not installed"
)

# Fleiss (1971), Table 1: 30 patients, each diagnosed by 6 of the psychiatrists, as the
# diagnosis (1..5: depression, personality disorder, schizophrenia, neurosis, other) each gave.
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]  # fmt: skip

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1..5, None where an observer gave no value.
KRIPPENDORFF_2011: list[list[int | None]] = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def counts_table(ratings: list[list[int]], categories: int) -> list[list[int]]:
    return [[row.count(c) for c in range(1, categories + 1)] for row in ratings]


# --- published values ------------------------------------------------------------------------


def test_fleiss_kappa_of_fleiss_1971_is_0_430() -> None:
    assert fleiss_kappa(counts_table(FLEISS_1971, 5)) == pytest.approx(0.430, abs=5e-4)


def test_fleiss_kappa_of_the_wikipedia_example_is_0_210() -> None:
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(0.210, abs=5e-4)


def test_cohen_kappa_of_the_wikipedia_50_proposals_is_0_4() -> None:
    # 20 both yes, 5 A yes B no, 10 A no B yes, 15 both no.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


def test_krippendorff_alpha_of_the_2011_example() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_2011) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)


def test_perfect_agreement_and_undefined_agreement() -> None:
    assert cohen_kappa([1, 2, 1], [1, 2, 1]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    assert fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))
    assert krippendorff_alpha([[1, 2, None], [1, 2, 3]]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))


def test_krippendorff_alpha_ignores_units_with_one_value() -> None:
    with_lone = [[*row, 9] if i == 0 else [*row, None] for i, row in enumerate(KRIPPENDORFF_2011)]
    assert krippendorff_alpha(with_lone) == pytest.approx(krippendorff_alpha(KRIPPENDORFF_2011))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cohen_kappa([1], [1, 2]), "different numbers"),
        (lambda: fleiss_kappa([[2, 1], [1, 1]]), "same number of raters"),
        (lambda: fleiss_kappa([[1, 0]]), "at least 2 raters"),
        (lambda: krippendorff_alpha([[1, 2], [1]]), "every unit"),
        (lambda: krippendorff_alpha([["a", "b"], ["a", "b"]], "interval"), "numbers"),
    ],
)
def test_bad_input_is_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- binary agreement and the threshold ------------------------------------------------------


def test_binary_agreement_counts_and_rates() -> None:
    truth = [True, True, True, False, False, True, False, False]
    judge = [True, True, False, True, False, True, False, False]
    result = binary_agreement(truth, judge)
    assert result == BinaryAgreement(true_pass=3, false_pass=1, false_fail=1, true_fail=3)
    assert result.precision == pytest.approx(0.75)
    assert result.recall == pytest.approx(0.75)
    assert result.f1 == pytest.approx(0.75)
    assert result.accuracy == pytest.approx(0.75)
    assert result.kappa == pytest.approx(cohen_kappa(truth, judge))
    assert result.kappa == pytest.approx(0.5)
    assert binary_agreement([False], [False]).precision is None


def test_best_threshold_finds_the_cut_people_use() -> None:
    scores = [0.1, 0.3, 0.45, 0.55, 0.6, 0.7, 0.9, 0.95]
    truth = [False, False, False, False, True, True, True, True]
    best = best_threshold(scores, truth)
    assert best.threshold == 0.6
    assert best.kappa == pytest.approx(1.0)
    assert best.agreement.false_pass == best.agreement.false_fail == 0


def test_best_threshold_ties_go_to_the_threshold_closest_to_one_half() -> None:
    scores = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    truth = [False, False, True, False, True, False, True, True]
    kappas = {t: binary_agreement(truth, [s >= t for s in scores]).kappa for t in scores}
    best = max(kappas.values())
    assert [t for t, k in kappas.items() if k == pytest.approx(best)] == [0.3, 0.6, 0.8]
    assert best_threshold(scores, truth).threshold == 0.6
    # Thresholds 0.3 and 0.7 tie on kappa and are equally close to 0.5: the lower one.
    scores = [0.1, 0.2, 0.3, 0.4, 0.6, 0.65, 0.7, 0.9]
    truth = [False, False, True, True, False, False, True, True]
    kappas = {t: binary_agreement(truth, [s >= t for s in scores]).kappa for t in (0.3, 0.7)}
    assert kappas[0.3] == pytest.approx(kappas[0.7])
    assert best_threshold(scores, truth).threshold == 0.3
    assert best_threshold(scores[::-1], truth[::-1]).threshold == 0.3


# --- independent implementations -------------------------------------------------------------


@needs_statsmodels
@pytest.mark.parametrize("seed", range(8))
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = random.Random(seed)
    raters, categories = rng.randint(2, 7), rng.randint(2, 5)
    table = []
    for _ in range(rng.randint(5, 40)):
        weights = [rng.random() ** 2 for _ in range(categories)]
        picks = rng.choices(range(categories), weights=weights, k=raters)
        table.append([picks.count(c) for c in range(categories)])
    expected = float(inter_rater.fleiss_kappa(np.array(table), method="fleiss"))
    assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-12)
    assert fleiss_kappa(counts_table(FLEISS_1971, 5)) == pytest.approx(
        float(inter_rater.fleiss_kappa(np.array(counts_table(FLEISS_1971, 5)))), abs=1e-12
    )


@needs_statsmodels
@pytest.mark.parametrize("seed", range(8))
def test_cohen_kappa_matches_statsmodels(seed: int) -> None:
    rng = random.Random(seed)
    labels = "abcd"[: rng.randint(2, 4)]
    a = [rng.choice(labels) for _ in range(rng.randint(10, 80))]
    b = [x if rng.random() < 0.6 else rng.choice(labels) for x in a]
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    expected = float(inter_rater.cohens_kappa(table, return_results=False))
    assert cohen_kappa(a, b) == pytest.approx(expected, abs=1e-12)


@needs_krippendorff
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", ["nominal", "interval"])
def test_krippendorff_alpha_matches_the_krippendorff_package(seed: int, level: Any) -> None:
    rng = random.Random(seed)
    raters, units = rng.randint(2, 6), rng.randint(5, 40)
    truth = [rng.randint(1, 5) for _ in range(units)]
    data: list[list[int | None]] = [
        [
            None if rng.random() < 0.2 else (t if rng.random() < 0.7 else rng.randint(1, 5))
            for t in truth
        ]
        for _ in range(raters)
    ]
    reliability = np.array([[np.nan if v is None else v for v in row] for row in data])
    expected = float(krippendorff.alpha(reliability, level_of_measurement=level))
    assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-9)
