"""Canary assignment (the contract bit for bit, stability, uniform split), fractions, the ramp."""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.runtime import canary
from pytest_llmregress.runtime.canary import (
    BUCKETS,
    CANARY_PCT_ENV,
    DEFAULT_STAGES,
    CanaryConfig,
    CanaryConfigError,
    CanaryController,
    Stage,
    VariantMetrics,
    bucket,
    canary_pct_from_env,
    candidate_buckets,
    load_canary_config,
    parse_canary_config,
    parse_canary_pct,
    resolve_model,
)

PRODUCTION = "claude-sonnet-4-6"
CANDIDATE = "claude-opus-4-7"
EXPERIMENT = "opus-4-7-migration"
USERS = [f"user-{i:05d}" for i in range(20_000)]


def reference_resolve(
    user_id: str,
    experiment_id: str,
    production_model: str,
    candidate_model: str,
    canary_pct: float = 0.0,
) -> tuple[str, str]:
    """The contract of SEED_CONTRACTS.md, written out independently of the library."""
    if canary_pct == 0.0:
        return production_model, "control"
    if canary_pct >= 1.0:
        return candidate_model, "candidate"
    key = f"{experiment_id}:{user_id}"
    user_bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 10_000
    if user_bucket < int(canary_pct * 10_000):
        return candidate_model, "candidate"
    return production_model, "control"


def candidates_at(pct: float, experiment: str = EXPERIMENT) -> set[str]:
    return {
        user
        for user in USERS
        if resolve_model(user, experiment, PRODUCTION, CANDIDATE, pct)[1] == "candidate"
    }


# -- assignment: the contract -----------------------------------------------------------------

# Computed once by hand with hashlib (int(sha256(f"{exp}:{user}").hexdigest(), 16) % 10_000)
# and pasted here: another service computing the contract gets these same numbers.
KNOWN_BUCKETS = [
    ("exp-42", "user-1", 5230),
    ("exp-42", "user-2", 2221),
    ("exp-42", "user-42", 6618),
    ("exp-42", "alice@example.com", 1256),
    ("exp-42", "josé", 9825),
    ("exp-42", "user:with:colons", 1656),
    ("opus-4-7-migration", "user-1842", 8419),
    ("opus-4-7-migration", "user-42", 6274),
    ("checkout-v2", "12345", 2263),
    ("a", "b", 8776),
    ("exp-42", "user-110039", 0),
    ("exp-42", "user-1572", 99),
    ("exp-42", "user-13323", 100),
    ("exp-42", "user-114753", 499),
    ("exp-42", "user-105229", 500),
    ("exp-42", "user-3277", 5698),
    ("exp-42", "user-6591", 5699),
    ("exp-42", "user-1748", 5700),
    ("exp-42", "user-100775", 9999),
]

# (experiment, user, canary_pct, variant), worked out by hand from the buckets above.
KNOWN_ASSIGNMENTS = [
    ("exp-42", "user-114753", 0.05, "candidate"),  # bucket 499 < 500
    ("exp-42", "user-105229", 0.05, "control"),  # bucket 500, not < 500
    ("exp-42", "user-1572", 0.01, "candidate"),  # 99 < 100
    ("exp-42", "user-13323", 0.01, "control"),  # 100
    ("exp-42", "user-110039", 0.0001, "candidate"),  # 0 < 1: the smallest canary
    ("exp-42", "user-100775", 0.9999, "control"),  # 9999, not < 9999
    ("exp-42", "user-100775", 1.0, "candidate"),  # 1.0: everybody, no hashing
    ("exp-42", "user-110039", 0.0, "control"),  # 0.0: nobody, no hashing
    ("exp-42", "user-1", 0.5231, "candidate"),  # 5230 < 5231
    ("exp-42", "user-1", 0.523, "control"),  # 5230, not < 5230
    # int() truncates the float product: 0.57 * 10_000 is 5699.999..., so 5699 buckets.
    ("exp-42", "user-3277", 0.57, "candidate"),  # 5698 < 5699
    ("exp-42", "user-6591", 0.57, "control"),  # 5699, not < 5699
    ("exp-42", "user-6591", 0.5701, "candidate"),  # 5699 < 5701
]


@pytest.mark.parametrize(("experiment", "user", "expected"), KNOWN_BUCKETS)
def test_known_buckets(experiment: str, user: str, expected: int) -> None:
    assert bucket(user, experiment) == expected


@pytest.mark.parametrize(("experiment", "user", "pct", "variant"), KNOWN_ASSIGNMENTS)
def test_known_assignments(experiment: str, user: str, pct: float, variant: str) -> None:
    model = CANDIDATE if variant == "candidate" else PRODUCTION
    assert resolve_model(user, experiment, PRODUCTION, CANDIDATE, pct) == (model, variant)


def test_matches_the_reference_over_100000_user_pct_pairs() -> None:
    rng = random.Random(20261126)
    special = [0.0, 1.0, 0.0001, 0.01, 0.05, 0.2, 0.5, 0.57, 0.69, 0.29, 0.07, 0.9999]
    experiments = ["exp-42", EXPERIMENT, "checkout-v2"]
    mismatches = []
    candidates = 0
    for i in range(100_000):
        user = f"user-{i}"
        experiment = experiments[i % 3]
        kind = i % 4
        if kind == 0:
            pct = special[(i // 4) % len(special)]
        elif kind == 1:
            pct = rng.randrange(10_001) / 10_000  # every representable step, truncation included
        elif kind == 2:
            pct = rng.randrange(101) / 100
        else:
            pct = rng.random()
        got = resolve_model(user, experiment, PRODUCTION, CANDIDATE, pct)
        expected = reference_resolve(user, experiment, PRODUCTION, CANDIDATE, pct)
        if got != expected:
            mismatches.append((user, experiment, pct, got, expected))
        candidates += got[1] == "candidate"
    assert mismatches[:5] == []
    # Both variants occur in volume, so the comparison is not vacuous.
    assert 30_000 < candidates < 70_000


def test_bucket_is_the_full_digest_not_a_prefix() -> None:
    for experiment, user, _ in KNOWN_BUCKETS:
        digest = hashlib.sha256(f"{experiment}:{user}".encode()).digest()
        assert bucket(user, experiment) == int.from_bytes(digest, "big") % BUCKETS
    # The former implementation (first 8 bytes) gave other buckets for most users.
    prefix = sum(
        bucket(u, "exp-42")
        == int.from_bytes(hashlib.sha256(f"exp-42:{u}".encode()).digest()[:8], "big") % BUCKETS
        for u in USERS[:1000]
    )
    assert prefix < 10


def test_five_percent_of_20000_users_is_about_1000() -> None:
    # The example: 9 of 20,000 users got the candidate at 0.05 before the fix.
    users = [f"u-{i}" for i in range(20_000)]
    k = sum(
        resolve_model(u, "exp-42", PRODUCTION, CANDIDATE, 0.05)[1] == "candidate" for u in users
    )
    assert abs(k - 1000) <= 4.5 * math.sqrt(20_000 * 0.05 * 0.95), k


def test_keyword_names_and_default() -> None:
    assert resolve_model(
        user_id="user-1",
        experiment_id="exp-42",
        production_model=PRODUCTION,
        candidate_model=CANDIDATE,
    ) == (PRODUCTION, "control")
    assert resolve_model(
        user_id="user-1",
        experiment_id="exp-42",
        production_model=PRODUCTION,
        candidate_model=CANDIDATE,
        canary_pct=0.5231,
    ) == (CANDIDATE, "candidate")


def test_zero_and_one_do_not_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(experiment_id: str, user_id: str) -> int:
        raise AssertionError("hashed")

    monkeypatch.setattr(canary, "_bucket", no_hashing)
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 0.0) == (PRODUCTION, "control")
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 0) == (PRODUCTION, "control")
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 1.0) == (CANDIDATE, "candidate")
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 1) == (CANDIDATE, "candidate")
    with pytest.raises(AssertionError, match="hashed"):
        resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 0.5)


def test_candidate_buckets() -> None:
    assert candidate_buckets(0.0) == 0
    assert candidate_buckets(0.05) == 500
    assert candidate_buckets(0.57) == 5699
    assert candidate_buckets(1.0) == BUCKETS
    with pytest.raises(ValueError, match="fraction"):
        candidate_buckets(5)


# -- assignment: properties -------------------------------------------------------------------


def test_same_user_gets_the_same_model_on_every_call() -> None:
    for user in USERS[:2000]:
        first = resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, 0.3)
        assert all(
            resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, 0.3) == first for _ in range(3)
        )
        model, variant = first
        assert (model, variant) in ((CANDIDATE, "candidate"), (PRODUCTION, "control"))


def test_raising_the_fraction_only_moves_users_to_the_candidate() -> None:
    ramp = [0.0, 0.0001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9999, 1.0]
    previous: set[str] = set()
    sizes = []
    for pct in ramp:
        current = candidates_at(pct)
        assert previous <= current, f"users moved back to control when raising to {pct}"
        previous = current
        sizes.append(len(current))
    assert sizes[0] == 0
    assert sizes[-1] == len(USERS)
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("pct", [0.01, 0.05, 0.1, 0.25, 0.5, 0.9])
def test_candidate_share_is_close_to_pct(pct: float) -> None:
    n = len(USERS)
    k = len(candidates_at(pct))
    # Binomial: 4.5 standard deviations (two-sided p ~ 7e-6); the id set is fixed, so the
    # test is deterministic.
    assert abs(k - n * pct) <= 4.5 * math.sqrt(n * pct * (1 - pct)), (k, n * pct)


def test_buckets_are_uniform_chi_square() -> None:
    bins = 100  # 100 bins of 100 buckets, 200 expected ids per bin
    counts = [0] * bins
    for user in USERS:
        counts[bucket(user, EXPERIMENT) * bins // BUCKETS] += 1
    expected = len(USERS) / bins
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    # 99 degrees of freedom: the 0.999 quantile is 148.2.
    assert chi2 < 148.2, chi2


def test_experiments_assign_independently() -> None:
    a = candidates_at(0.5, "exp-a")
    b = candidates_at(0.5, "exp-b")
    both = len(a & b) / len(USERS)
    assert abs(both - 0.25) < 0.02
    assert a != b


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"canary_pct": -0.01}, "fraction from 0.0 to 1.0"),
        ({"canary_pct": 1.5}, "fraction from 0.0 to 1.0"),
        ({"canary_pct": 5}, "for 5% pass 0.05"),
        ({"canary_pct": 2.5}, "for 2.5% pass 0.025"),
        ({"canary_pct": float("nan")}, "got nan"),
        ({"canary_pct": float("inf")}, "got inf"),
        ({"canary_pct": True}, "got True"),
        ({"canary_pct": False}, "got False"),
        ({"canary_pct": "5%"}, "parse_canary_pct"),
        ({"canary_pct": "0.05"}, "parse_canary_pct"),
        ({"canary_pct": None}, "got None"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"experiment_id": ""}, "experiment_id"),
        ({"experiment_id": "a:b"}, "':'"),
        ({"production_model": ""}, "production_model"),
        ({"candidate_model": ""}, "candidate_model"),
    ],
)
def test_resolve_model_validates_its_inputs(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "user_id": "u1",
        "experiment_id": EXPERIMENT,
        "production_model": PRODUCTION,
        "candidate_model": CANDIDATE,
        "canary_pct": 0.1,
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        resolve_model(**args)


def test_ids_are_checked_even_without_hashing() -> None:
    for pct in (0.0, 1.0):
        with pytest.raises(ValueError, match="user_id"):
            resolve_model("", EXPERIMENT, PRODUCTION, CANDIDATE, pct)


# -- fractions in config files and the environment --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (0.0, 0.0),
        (0.05, 0.05),
        (1.0, 1.0),
        ("5%", 0.05),
        (" 2.5 % ", 0.025),
        ("0.01%", 0.0001),
        ("0%", 0.0),
        ("100%", 1.0),
        ("57%", 0.57),
        ("0.05", 0.05),
        ("0", 0.0),
        ("1.0", 1.0),
        (".5", 0.5),
    ],
)
def test_parse_canary_pct(value: object, expected: float) -> None:
    assert parse_canary_pct(value) == expected


def test_a_percentage_string_is_the_same_float_as_the_fraction_literal() -> None:
    # "2.5%" must pick exactly the users 0.025 picks: the same float, bit for bit.
    for n in range(10_000):
        text = f"{n // 100}.{n % 100:02d}%"
        assert parse_canary_pct(text) == float(f"0.{n:04d}"), text


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (5, r'for 5% write 0.05 or "5%"'),
        ("5", r'for 5% write 0.05 or "5%"'),
        (50.0, r'for 50% write 0.5 or "50%"'),
        (1, "ambiguous"),
        ("1", "ambiguous"),
        ("150%", "above 100%"),
        ("-5%", "got '-5%'"),
        (-0.1, "got -0.1"),
        ("5%%", "got '5%%'"),
        ("five", "got 'five'"),
        ("nan", "got 'nan'"),
        (float("nan"), "got nan"),
        ("", "got ''"),
        (True, "got True"),
        (None, "got None"),
        ([0.05], r"got \[0.05\]"),
    ],
)
def test_parse_canary_pct_refuses(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_canary_pct(value)


# -- the ramp ---------------------------------------------------------------------------------


def test_default_stages_are_the_reference_ramp() -> None:
    assert [stage.as_dict() for stage in DEFAULT_STAGES] == [
        {"pct": 0.01, "min_hours": 2, "max_regression_rate": 0.05},
        {"pct": 0.05, "min_hours": 6, "max_regression_rate": 0.03},
        {"pct": 0.20, "min_hours": 24, "max_regression_rate": 0.02},
        {"pct": 0.50, "min_hours": 48, "max_regression_rate": 0.02},
        {"pct": 1.00, "min_hours": 0, "max_regression_rate": None},
    ]
    assert CanaryConfig(PRODUCTION, CANDIDATE, EXPERIMENT).stages == DEFAULT_STAGES


STAGES = (
    Stage(pct=0.01, min_hours=24, max_regression_rate=0.02),
    Stage(pct=0.05, min_hours=24, max_regression_rate=0.02),
    Stage(pct=0.25, min_hours=48, max_regression_rate=0.01, max_error_rate=0.005),
    Stage(pct=0.5, min_hours=24, max_regression_rate=0.01),
)


def config(pct: float, **changes: Any) -> CanaryConfig:
    values: dict[str, Any] = {
        "production": PRODUCTION,
        "candidate": CANDIDATE,
        "experiment_id": EXPERIMENT,
        "canary_pct": pct,
        "stages": STAGES,
        **changes,
    }
    return CanaryConfig(**values)


def m(requests: int, errors: int = 0, regressions: int = 0) -> VariantMetrics:
    return VariantMetrics(requests=requests, errors=errors, regressions=regressions)


GOOD = {"control": m(10_000, 50, 100), "candidate": m(1_000, 5, 15)}

# (name, pct, hours, metrics, action, next_pct, words in the reason)
DECISIONS: list[tuple[str, float, float, dict[str, VariantMetrics], str, float, list[str]]] = [
    ("not started", 0, 0, {}, "promote", 0.01, ["0.0", "stage 1 of 4 at 0.01 (1%)"]),
    ("stage 1 too early", 0.01, 2, GOOD, "hold", 0.01, ["2.0 h", "24 h", "stage 1 of 4"]),
    (
        "stage 1 too few requests",
        0.01,
        30,
        {"control": m(5000), "candidate": m(40)},
        "hold",
        0.01,
        ["40 requests", "100"],
    ),
    ("stage 1 promote", 0.01, 30, GOOD, "promote", 0.05, ["stage 2 at 0.05 (5%)", "1.50%"]),
    ("stage 2 promote", 0.05, 24, GOOD, "promote", 0.25, ["stage 3 at 0.25 (25%)"]),
    ("stage 3 too early", 0.25, 47.9, GOOD, "hold", 0.25, ["47.9 h", "48 h"]),
    (
        "stage 3 regressions",
        0.25,
        50,
        {"control": m(10_000, 0, 100), "candidate": m(1_000, 0, 40)},
        "rollback",
        0,
        ["regression rate", "4.00%", "40 of 1000", "1.00%", "3.00%", "stage 3 of 4"],
    ),
    (
        "stage 3 errors",
        0.25,
        50,
        {"control": m(10_000, 50, 100), "candidate": m(1_000, 12, 10)},
        "rollback",
        0,
        ["error rate", "1.20%", "12 of 1000", "0.50%", "0.70%", "stage 3 of 4"],
    ),
    (
        "rollback before the time is up",
        0.05,
        1,
        {"control": m(1_000), "candidate": m(50, 0, 5)},
        "rollback",
        0,
        ["10.00%", "5 of 50"],
    ),
    (
        "rollback without control data",
        0.01,
        30,
        {"candidate": m(200, 0, 6)},
        "rollback",
        0,
        ["3.00%", "6 of 200", "no requests to compare"],
    ),
    (
        "bad but no worse than control",
        0.05,
        30,
        {"control": m(10_000, 0, 900), "candidate": m(1_000, 0, 100)},
        "promote",
        0.25,
        ["10.00%"],
    ),
    ("last stage promotes to 1.0", 0.5, 24, GOOD, "promote", 1.0, ["1.0 (100%, full rollout)"]),
    ("between stages", 0.1, 30, GOOD, "promote", 0.25, ["stage 3 at 0.25 (25%)"]),
    ("full rollout is complete", 1.0, 100, {"candidate": m(5_000, 5, 10)}, "hold", 1.0, ["100%"]),
    (
        "full rollout still rolls back",
        1.0,
        100,
        {"candidate": m(5_000, 5, 500)},
        "rollback",
        0,
        ["10.00%"],
    ),
]


@pytest.mark.parametrize(
    ("pct", "hours", "metrics", "action", "next_pct", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in DECISIONS],
)
def test_controller_decisions_over_the_ramp(
    pct: float,
    hours: float,
    metrics: dict[str, VariantMetrics],
    action: str,
    next_pct: float,
    words: list[str],
) -> None:
    decision = CanaryController(config(pct)).decide(metrics, hours)
    assert decision.action == action, decision.reason
    assert decision.next_pct == next_pct
    assert decision.reason.endswith("."), decision.reason
    assert decision.reason[0].isupper()
    for word in words:
        assert word in decision.reason, (word, decision.reason)


def test_default_ramp_walks_its_stages_and_sets_no_limit_at_full_rollout() -> None:
    cfg = CanaryConfig(PRODUCTION, CANDIDATE, EXPERIMENT)
    healthy = {"control": m(10_000, 10, 100), "candidate": m(1_000, 1, 10)}
    walked = [cfg.canary_pct]
    while cfg.canary_pct < 1.0:
        decision = CanaryController(cfg).decide(healthy, 48)
        assert decision.action == "promote", decision.reason
        cfg = config(decision.next_pct, stages=DEFAULT_STAGES)
        walked.append(cfg.canary_pct)
    assert walked == [0.0, 0.01, 0.05, 0.2, 0.5, 1.0]
    # At 1.0 the default stage has no maximum: even a bad candidate is not rolled back by rule.
    bad = {"candidate": m(1_000, 300, 300)}
    assert CanaryController(cfg).decide(bad, 0).action == "hold"
    # Stage 2's maximum is 3%: 4% above control rolls back.
    stage2 = config(0.05, stages=DEFAULT_STAGES)
    worse = {"control": m(1_000, 0, 10), "candidate": m(1_000, 0, 51)}
    assert CanaryController(stage2).decide(worse, 0).action == "rollback"


def test_a_recorded_rollback_holds_until_restarted() -> None:
    rolled = datetime(2026, 11, 26, 10, tzinfo=UTC)
    cfg = config(0, stage_started_at=rolled, rolled_back_at=rolled, rollback_reason="refusals up")
    assert cfg.rolled_back
    decision = CanaryController(cfg).decide(GOOD, 100)
    assert decision.action == "hold"
    assert decision.next_pct == 0
    for word in ("rolled back at 2026-11-26T10:00:00Z", "refusals up", "stage 1 of 4"):
        assert word in decision.reason
    # A reason without a time still counts; an advance after the rollback ends it.
    assert config(0, rollback_reason="x").rolled_back
    later = datetime(2026, 11, 27, tzinfo=UTC)
    restarted = config(0.01, stage_started_at=later, rolled_back_at=rolled, rollback_reason="x")
    assert not restarted.rolled_back
    assert not config(0, stage_started_at=later, rolled_back_at=rolled).rolled_back
    assert not config(0).rolled_back
    assert CanaryController(config(0)).decide({}, 0).action == "promote"


def test_rollback_needs_the_difference_to_exceed_the_maximum() -> None:
    controller = CanaryController(config(0.05))
    # 2.5% - 0.5% = 2.0% exactly: not above the 2% maximum.
    at_limit = {"control": m(1_000, 0, 5), "candidate": m(1_000, 0, 25)}
    assert controller.decide(at_limit, 30).action == "promote"
    above = {"control": m(1_000, 0, 5), "candidate": m(1_000, 0, 26)}
    assert controller.decide(above, 30).action == "rollback"


def test_min_requests_setting() -> None:
    metrics = {"control": m(1_000), "candidate": m(150)}
    assert CanaryController(config(0.01)).decide(metrics, 30).action == "promote"
    held = CanaryController(config(0.01, min_requests=500)).decide(metrics, 30)
    assert held.action == "hold"
    assert "150 requests" in held.reason
    assert "500" in held.reason


def test_decide_validates_its_inputs() -> None:
    controller = CanaryController(config(0.05))
    with pytest.raises(ValueError, match="hours_at_stage"):
        controller.decide(GOOD, -1)
    with pytest.raises(ValueError, match="unknown variant"):
        controller.decide({"treatment": m(1)}, 1)
    with pytest.raises(ValueError, match="cannot exceed"):
        m(10, errors=11)
    with pytest.raises(ValueError, match="requests must be an integer >= 0"):
        m(-1)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"candidate": PRODUCTION}, "same model"),
        ({"stages": ()}, "at least one stage"),
        (
            {"stages": (Stage(0.05, 1, 0.01), Stage(0.05, 1, 0.01))},
            "must increase",
        ),
        ({"canary_pct": 5}, "for 5% pass 0.05"),
        ({"canary_pct": 1.01}, "fraction"),
        ({"min_requests": 0}, "min_requests"),
        ({"experiment_id": "a:b"}, "':'"),
        ({"rollback_reason": " "}, "rollback_reason"),
    ],
)
def test_config_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config(0.05, **changes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pct": 0}, "above 0"),
        ({"pct": 5}, "for 5% pass 0.05"),
        ({"pct": 1.2}, "fraction from 0.0 to 1.0"),
        ({"min_hours": -1}, "min_hours"),
        ({"max_regression_rate": 2}, "fraction"),
        ({"max_regression_rate": None}, "required below full rollout"),
        ({"max_error_rate": -0.1}, "fraction"),
    ],
)
def test_stage_validation(kwargs: dict[str, Any], match: str) -> None:
    values: dict[str, Any] = {"pct": 0.05, "min_hours": 1, "max_regression_rate": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        Stage(**values)


def test_hours_at_stage_and_resolve() -> None:
    started = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    cfg = config(0.05, stage_started_at=started)
    assert cfg.hours_at_stage(datetime(2026, 11, 26, 10, 0, tzinfo=UTC)) == 26
    assert cfg.hours_at_stage(datetime(2026, 11, 24, tzinfo=UTC)) == 0
    assert config(0.05).hours_at_stage() == 0
    for user in USERS[:200]:
        assert cfg.resolve(user) == resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, 0.05)


# -- loading ----------------------------------------------------------------------------------

PYPROJECT = """\
[project]
name = "app"

[tool.llmregress.canary]
production = "claude-sonnet-4-6"
candidate = "claude-opus-4-7"
experiment_id = "opus-4-7-migration"
canary_pct = 0.05
stage_started_at = 2026-11-25T08:00:00Z

[[tool.llmregress.canary.stages]]
pct = 0.01
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 0.05
min_hours = 24
max_regression_rate = 0.02
max_error_rate = 0.01

[[tool.llmregress.canary.stages]]
pct = 1.0
min_hours = 0
"""


def test_load_from_pyproject_and_llmregress_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "src" / "app"
    sub.mkdir(parents=True)
    cfg = load_canary_config(sub, environ={})
    assert cfg.path == tmp_path / "pyproject.toml"
    assert cfg.canary_pct == 0.05
    assert cfg.overridden_by is None
    assert cfg.stage_started_at == datetime(2026, 11, 25, 8, tzinfo=UTC)
    assert cfg.stages[1] == Stage(0.05, 24, 0.02, 0.01)
    assert cfg.stages[2] == Stage(1.0, 0, None)
    assert cfg.min_requests == 100
    assert cfg.rollback_reason is None
    assert cfg.rolled_back_at is None

    toml = PYPROJECT.replace("tool.llmregress.canary", "canary").replace(
        '[project]\nname = "app"\n', ""
    )
    (tmp_path / "llmregress.toml").write_text(toml)
    assert load_canary_config(sub, environ={}).path == tmp_path / "llmregress.toml"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("0.05", 0.05), ('"5%"', 0.05), ("'2.5%'", 0.025), ('"0.05"', 0.05), ("0", 0.0)],
)
def test_canary_pct_spellings_in_the_file(spelling: str, expected: float) -> None:
    text = PYPROJECT.replace("canary_pct = 0.05", f"canary_pct = {spelling}")
    assert parse_canary_config(text, Path("pyproject.toml")).canary_pct == expected


def test_stage_pct_may_be_a_percentage_and_stages_default() -> None:
    text = PYPROJECT.replace("pct = 0.01\n", 'pct = "1%"\n')
    assert parse_canary_config(text, Path("pyproject.toml")).stages[0].pct == 0.01
    bare = PYPROJECT.split("[[tool.llmregress.canary.stages]]")[0]
    assert parse_canary_config(bare, Path("pyproject.toml")).stages == DEFAULT_STAGES


def test_rollback_record_is_read() -> None:
    text = PYPROJECT.replace(
        "canary_pct = 0.05",
        'canary_pct = 0.0\nrollback_reason = "refusals up 3x"\n'
        "rolled_back_at = 2026-11-26T10:00:00Z",
    ).replace("stage_started_at = 2026-11-25T08:00:00Z", "stage_started_at = 2026-11-26T10:00:00Z")
    cfg = parse_canary_config(text, Path("pyproject.toml"))
    assert cfg.rollback_reason == "refusals up 3x"
    assert cfg.rolled_back_at == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert cfg.rolled_back


KEY = "tool.llmregress.canary"


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("canary_pct = 0.05", "canary_pct = 5", f"{KEY}.canary_pct", ['0.05 or "5%"']),
        ("canary_pct = 0.05", "canary_pct = 500", f"{KEY}.canary_pct", ["got 500"]),
        ("canary_pct = 0.05", "canary_pct = 1", f"{KEY}.canary_pct", ["ambiguous", "1.0"]),
        ("canary_pct = 0.05", 'canary_pct = "5"', f"{KEY}.canary_pct", ['"5%"']),
        ("canary_pct = 0.05", 'canary_pct = "lots"', f"{KEY}.canary_pct", ["'lots'"]),
        ("canary_pct = 0.05", "canary_pct = true", f"{KEY}.canary_pct", ["True"]),
        ("canary_pct = 0.05\n", "", f"{KEY}.canary_pct", ["missing"]),
        ("canary_pct = 0.05", "canary_pct = 0.05\ncanary_pc = 1", f"{KEY}.canary_pc", ["unknown"]),
        ('production = "claude-sonnet-4-6"\n', "", f"{KEY}.production", ["missing"]),
        ("\npct = 0.05\n", "\npct = 5\n", f"{KEY}.stages[1].pct", ['0.05 or "5%"']),
        ("\npct = 0.05\n", "\npct = 0.005\n", f"{KEY}.stages", ["must increase"]),
        ("max_error_rate = 0.01", "max_error_rate = 3", f"{KEY}.stages[1]", ["fraction"]),
        (
            "max_regression_rate = 0.02\n\n",
            "\n",
            f"{KEY}.stages[0].max_regression_rate",
            ["missing", "full-rollout"],
        ),
        ("2026-11-25T08:00:00Z", '"yesterday"', f"{KEY}.stage_started_at", ["date-time"]),
        (
            "canary_pct = 0.05",
            'canary_pct = 0.05\nrolled_back_at = "soon"',
            f"{KEY}.rolled_back_at",
            ["date-time"],
        ),
        (
            "canary_pct = 0.05",
            "canary_pct = 0.05\nrollback_reason = 3",
            f"{KEY}.rollback_reason",
            ["non-empty string"],
        ),
    ],
)
def test_load_errors_name_the_file_and_key(old: str, new: str, key: str, words: list[str]) -> None:
    assert old in PYPROJECT
    text = PYPROJECT.replace(old, new, 1)
    with pytest.raises(CanaryConfigError) as info:
        parse_canary_config(text, Path("pyproject.toml"))
    assert info.value.key == key
    assert info.value.path == Path("pyproject.toml")
    assert str(info.value).startswith(f"pyproject.toml: {key}: "), str(info.value)
    for word in words:
        assert word in str(info.value)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(CanaryConfigError, match="no canary config found"):
        load_canary_config(tmp_path)


# -- the environment override -----------------------------------------------------------------


@pytest.fixture
def pyproject(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    return path


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0.0), ("0.0", 0.0), ("5%", 0.05), ("0.01", 0.01), ("1.0", 1.0)]
)
def test_environment_overrides_the_file(pyproject: Path, value: str, expected: float) -> None:
    cfg = load_canary_config(path=pyproject, environ={CANARY_PCT_ENV: value})
    assert cfg.canary_pct == expected
    assert cfg.overridden_by == CANARY_PCT_ENV
    assert cfg.path == pyproject
    assert cfg.stage_started_at == datetime(2026, 11, 25, 8, tzinfo=UTC)  # the rest is the file's
    for user in USERS[:300]:
        assert cfg.resolve(user) == reference_resolve(
            user, EXPERIMENT, PRODUCTION, CANDIDATE, expected
        )


def test_environment_override_defaults_to_os_environ(
    pyproject: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CANARY_PCT_ENV, "0")
    assert load_canary_config(path=pyproject).canary_pct == 0.0
    assert load_canary_config(path=pyproject, environ={}).canary_pct == 0.05
    assert canary_pct_from_env() == 0.0
    monkeypatch.setenv(CANARY_PCT_ENV, "  ")  # blank is unset
    assert load_canary_config(path=pyproject).canary_pct == 0.05
    assert canary_pct_from_env() is None
    monkeypatch.delenv(CANARY_PCT_ENV)
    cfg = load_canary_config(path=pyproject)
    assert cfg.canary_pct == 0.05
    assert cfg.overridden_by is None


@pytest.mark.parametrize(
    ("value", "words"),
    [("5", ['0.05 or "5%"']), ("1", ["ambiguous"]), ("off", ["'off'"]), ("120%", ["above"])],
)
def test_bad_environment_value_is_a_clear_error(
    pyproject: Path, value: str, words: list[str]
) -> None:
    with pytest.raises(CanaryConfigError) as info:
        load_canary_config(path=pyproject, environ={CANARY_PCT_ENV: value})
    message = str(info.value)
    assert info.value.key == CANARY_PCT_ENV
    assert message.startswith(f"environment variable {CANARY_PCT_ENV}: ")
    assert str(pyproject) in message
    for word in words:
        assert word in message
