"""Agreement between raters (judges, judge panels, people), as pure functions (issue 15).

- :func:`cohen_kappa`: two raters, nominal labels.
- :func:`fleiss_kappa`: many raters, a subjects x categories table of counts.
- :func:`krippendorff_alpha`: raters x units with missing values, nominal or interval.
- :func:`binary_agreement`: a judge's "pass" against people's labels (precision, recall, F1,
  accuracy, the confusion counts).
- :func:`best_threshold`: the judge score threshold that agrees best with people.

A statistic that is undefined (every label the same, so chance agreement is already perfect)
is ``math.nan``, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

Level = Literal["nominal", "interval"]


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who labelled the same items with nominal labels.

    ``kappa = (p_o - p_e) / (1 - p_e)``: ``p_o`` the share of items with the same label,
    ``p_e`` the agreement expected by chance from each rater's own label frequencies
    (``sum_k p_a(k) p_b(k)``). ``math.nan`` when ``p_e = 1`` (both raters used one and the
    same label throughout).
    """
    if len(a) != len(b):
        raise ValueError(f"the raters labelled different numbers of items: {len(a)}, {len(b)}")
    n = len(a)
    if n == 0:
        raise ValueError("cohen_kappa needs at least one item")
    observed = sum(1 for x, y in zip(a, b, strict=True) if x == y) / n
    counts_a, counts_b = Counter(a), Counter(b)
    expected = math.fsum(counts_a[k] * counts_b[k] for k in counts_a) / (n * n)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa (1971) from a subjects x categories table: ``table[i][j]`` raters put
    subject ``i`` in category ``j``; every subject has the same number of raters (>= 2).

    ``P_i = (sum_j n_ij**2 - m) / (m (m - 1))`` is subject i's agreement among its ``m``
    raters, ``P = mean(P_i)``, ``p_j`` the share of all ratings in category j and
    ``P_e = sum_j p_j**2``; ``kappa = (P - P_e) / (1 - P_e)``, ``math.nan`` when ``P_e = 1``.
    """
    if not table:
        raise ValueError("fleiss_kappa needs at least one subject")
    width = len(table[0])
    raters = sum(table[0])
    for row in table:
        if len(row) != width:
            raise ValueError("every subject needs a count for every category")
        if any(count < 0 for count in row):
            raise ValueError(f"counts must be >= 0, got {list(row)}")
        if sum(row) != raters:
            raise ValueError(
                f"every subject needs the same number of raters: {sum(row)} != {raters}"
            )
    if raters < 2:
        raise ValueError(f"fleiss_kappa needs at least 2 raters per subject, got {raters}")
    subjects = len(table)
    agreement = (
        math.fsum((sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in table)
        / subjects
    )
    shares = [sum(row[j] for row in table) / (subjects * raters) for j in range(width)]
    expected = math.fsum(p * p for p in shares)
    if expected >= 1.0:
        return math.nan
    return (agreement - expected) / (1.0 - expected)


def krippendorff_alpha(
    data: Sequence[Sequence[Hashable | None]], level: Level = "nominal"
) -> float:
    """Krippendorff's alpha of ``data[rater][unit]``; ``None`` is a missing value.

    Computed from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): each unit with ``m_u >= 2`` values contributes each ordered pair of
    its values (from different raters) with weight ``1 / (m_u - 1)``; units with fewer than
    two values are not pairable and are left out. With ``n`` pairable values,
    ``D_o = sum_ck o_ck delta_ck / n`` and ``D_e = sum_ck n_c n_k delta_ck / (n (n - 1))``,
    ``alpha = 1 - D_o / D_e``. ``level="nominal"``: ``delta`` is 0 for equal values and 1
    otherwise; ``"interval"``: ``(c - k)**2`` on numeric values. ``math.nan`` when there is
    no variation at all (``D_e = 0``).
    """
    if level not in ("nominal", "interval"):
        raise ValueError(f"level must be nominal or interval, got {level!r}")
    if not data:
        raise ValueError("krippendorff_alpha needs at least one rater")
    units = len(data[0])
    if any(len(row) != units for row in data):
        raise ValueError("every rater needs a value (or None) for every unit")
    if level == "interval":
        for row in data:
            for value in row:
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float))
                ):
                    raise ValueError(f"interval data must be numbers, got {value!r}")
    weights: dict[tuple[Hashable, Hashable], float] = {}
    for u in range(units):
        values = [row[u] for row in data if row[u] is not None]
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                if pairs:
                    key = (c, k)
                    weights[key] = weights.get(key, 0.0) + pairs / (m - 1)
    totals: dict[Hashable, float] = {}
    for (c, _k), weight in weights.items():
        totals[c] = totals.get(c, 0.0) + weight
    n = math.fsum(totals.values())
    if n <= 1.0:
        return math.nan

    def delta(c: Hashable, k: Hashable) -> float:
        if level == "nominal":
            return 0.0 if c == k else 1.0
        return (float(c) - float(k)) ** 2  # type: ignore[arg-type]

    observed = math.fsum(w * delta(c, k) for (c, k), w in weights.items()) / n
    expected = math.fsum(totals[c] * totals[k] * delta(c, k) for c in totals for k in totals) / (
        n * (n - 1.0)
    )
    if expected == 0.0:
        return math.nan
    return 1.0 - observed / expected


@dataclass(frozen=True)
class BinaryAgreement:
    """A judge's pass/fail against people's, "pass" the positive class.

    ``true_pass``: both say pass; ``false_pass``: the judge passes what people failed;
    ``false_fail``: the judge fails what people passed; ``true_fail``: both say fail.
    Precision, recall and F1 are None when their denominator is 0.
    """

    true_pass: int
    false_pass: int
    false_fail: int
    true_fail: int

    @property
    def total(self) -> int:
        return self.true_pass + self.false_pass + self.false_fail + self.true_fail

    @property
    def precision(self) -> float | None:
        called = self.true_pass + self.false_pass
        return self.true_pass / called if called else None

    @property
    def recall(self) -> float | None:
        actual = self.true_pass + self.false_fail
        return self.true_pass / actual if actual else None

    @property
    def f1(self) -> float | None:
        denominator = 2 * self.true_pass + self.false_pass + self.false_fail
        return 2 * self.true_pass / denominator if denominator else None

    @property
    def accuracy(self) -> float | None:
        return (self.true_pass + self.true_fail) / self.total if self.total else None

    @property
    def kappa(self) -> float:
        """Cohen's kappa of the two pass/fail labellings (``math.nan`` when undefined)."""
        n = self.total
        if n == 0:
            return math.nan
        observed = (self.true_pass + self.true_fail) / n
        judge_pass = (self.true_pass + self.false_pass) / n
        people_pass = (self.true_pass + self.false_fail) / n
        expected = judge_pass * people_pass + (1 - judge_pass) * (1 - people_pass)
        if expected >= 1.0:
            return math.nan
        return (observed - expected) / (1.0 - expected)


def binary_agreement(truth: Sequence[bool], predicted: Sequence[bool]) -> BinaryAgreement:
    """The confusion counts of ``predicted`` (the judge) against ``truth`` (people)."""
    if len(truth) != len(predicted):
        raise ValueError(f"truth and predicted differ in length: {len(truth)}, {len(predicted)}")
    pairs = list(zip(truth, predicted, strict=True))
    return BinaryAgreement(
        true_pass=sum(1 for t, p in pairs if t and p),
        false_pass=sum(1 for t, p in pairs if not t and p),
        false_fail=sum(1 for t, p in pairs if t and not p),
        true_fail=sum(1 for t, p in pairs if not t and not p),
    )


@dataclass(frozen=True)
class Threshold:
    """The judge score threshold that agrees best with people (pass when score >= it)."""

    threshold: float
    kappa: float
    agreement: BinaryAgreement


def best_threshold(scores: Sequence[float], truth: Sequence[bool]) -> Threshold:
    """The threshold ``t`` (a case passes when its judge score is ``>= t``) whose verdicts
    agree best with people's, by Cohen's kappa.

    The candidates are the distinct observed scores: any threshold between two neighbouring
    scores gives the same verdicts as the upper one. The rule: the highest kappa wins (an
    undefined kappa counts as the lowest); among equal kappas (to 1e-12) the threshold
    closest to 0.5 wins, and of two equally close (to 1e-12) the lower one.
    """
    if len(scores) != len(truth):
        raise ValueError(f"scores and truth differ in length: {len(scores)}, {len(truth)}")
    if not scores:
        raise ValueError("best_threshold needs at least one labelled score")
    best: Threshold | None = None
    for t in sorted({float(s) for s in scores}):
        agreement = binary_agreement(truth, [s >= t for s in scores])
        candidate = Threshold(t, agreement.kappa, agreement)
        if best is None or _better(candidate, best):
            best = candidate
    assert best is not None
    return best


def _better(candidate: Threshold, best: Threshold) -> bool:
    new = -math.inf if math.isnan(candidate.kappa) else candidate.kappa
    old = -math.inf if math.isnan(best.kappa) else best.kappa
    if new > old + 1e-12:
        return True
    if new < old - 1e-12:
        return False
    # Candidates arrive in increasing order: "strictly closer" keeps the lower one on ties
    # (to 1e-12, so that 0.3 and 0.7 are equally close despite rounding).
    return abs(candidate.threshold - 0.5) < abs(best.threshold - 0.5) - 1e-12
