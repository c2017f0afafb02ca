"""Canary assignment (stability, monotonicity, uniform split) and the ramp controller."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.canary import (
    BUCKETS,
    CanaryConfig,
    CanaryConfigError,
    CanaryController,
    Stage,
    VariantMetrics,
    bucket,
    load_canary_config,
    parse_canary_config,
    resolve_model,
)

PRODUCTION = "claude-sonnet-4-6"
CANDIDATE = "claude-opus-4-7"
EXPERIMENT = "opus-4-7-migration"
USERS = [f"user-{i:05d}" for i in range(20_000)]


def candidates_at(pct: float, experiment: str = EXPERIMENT) -> set[str]:
    return {
        user
        for user in USERS
        if resolve_model(user, experiment, PRODUCTION, CANDIDATE, pct)[1] == "candidate"
    }


# -- assignment -------------------------------------------------------------------------------


def test_bucket_is_sha256_of_experiment_and_user_into_10000_buckets() -> None:
    # Pinned values: changing the hashing would move users between variants mid-experiment.
    assert bucket("user-42", EXPERIMENT) == 6963
    for user in USERS[:500]:
        digest = hashlib.sha256(f"{EXPERIMENT}:{user}".encode()).digest()
        assert bucket(user, EXPERIMENT) == int.from_bytes(digest[:8], "big") % BUCKETS
    assert {bucket(user, EXPERIMENT) for user in USERS} <= set(range(BUCKETS))


def test_same_user_gets_the_same_model_on_every_call() -> None:
    for user in USERS[:2000]:
        first = resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, 30)
        assert all(
            resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, 30) == first for _ in range(3)
        )
        model, variant = first
        assert (model, variant) in ((CANDIDATE, "candidate"), (PRODUCTION, "control"))


def test_candidate_iff_bucket_below_pct_times_100() -> None:
    for user in USERS[:3000]:
        b = bucket(user, EXPERIMENT)
        for pct in (0.5, 5, 37.25):
            _, variant = resolve_model(user, EXPERIMENT, PRODUCTION, CANDIDATE, pct)
            assert (variant == "candidate") == (b < pct * 100)


def test_raising_the_percentage_only_moves_users_to_the_candidate() -> None:
    ramp = [0, 0.01, 0.5, 1, 5, 10, 25, 50, 99.99, 100]
    previous: set[str] = set()
    sizes = []
    for pct in ramp:
        current = candidates_at(pct)
        assert previous <= current, f"users moved back to control when raising to {pct}%"
        previous = current
        sizes.append(len(current))
    assert sizes[0] == 0
    assert sizes[-1] == len(USERS)
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("pct", [1, 5, 10, 25, 50, 90])
def test_candidate_share_is_close_to_pct(pct: float) -> None:
    n = len(USERS)
    p = pct / 100
    k = len(candidates_at(pct))
    # Binomial: 4.5 standard deviations (two-sided p ~ 7e-6); the id set is fixed, so the
    # test is deterministic.
    assert abs(k - n * p) <= 4.5 * math.sqrt(n * p * (1 - p)), (k, n * p)


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
    a = candidates_at(50, "exp-a")
    b = candidates_at(50, "exp-b")
    both = len(a & b) / len(USERS)
    assert abs(both - 0.25) < 0.02
    assert a != b


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"canary_pct": -0.01}, ValueError),
        ({"canary_pct": 100.5}, ValueError),
        ({"canary_pct": float("nan")}, ValueError),
        ({"canary_pct": True}, TypeError),
        ({"canary_pct": "5"}, TypeError),
        ({"canary_pct": None}, TypeError),
        ({"user_id": ""}, ValueError),
        ({"user_id": 42}, ValueError),
        ({"experiment_id": ""}, ValueError),
        ({"experiment_id": "a:b"}, ValueError),
        ({"production": ""}, ValueError),
        ({"candidate": ""}, ValueError),
    ],
)
def test_resolve_model_validates_its_inputs(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {
        "user_id": "u1",
        "experiment_id": EXPERIMENT,
        "production": PRODUCTION,
        "candidate": CANDIDATE,
        "canary_pct": 10,
        **kwargs,
    }
    with pytest.raises(error):
        resolve_model(**args)


def test_bounds_are_accepted() -> None:
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 0) == (PRODUCTION, "control")
    assert resolve_model("u1", EXPERIMENT, PRODUCTION, CANDIDATE, 100) == (CANDIDATE, "candidate")


# -- the ramp ---------------------------------------------------------------------------------

STAGES = (
    Stage(pct=1, min_hours=24, max_regression_rate=0.02),
    Stage(pct=5, min_hours=24, max_regression_rate=0.02),
    Stage(pct=25, min_hours=48, max_regression_rate=0.01, max_error_rate=0.005),
    Stage(pct=50, min_hours=24, max_regression_rate=0.01),
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
    ("not started", 0, 0, {}, "promote", 1, ["0%", "stage 1 of 4", "1%"]),
    ("stage 1 too early", 1, 2, GOOD, "hold", 1, ["2.0 h", "24 h", "stage 1 of 4"]),
    (
        "stage 1 too few requests",
        1,
        30,
        {"control": m(5000), "candidate": m(40)},
        "hold",
        1,
        ["40 requests", "100"],
    ),
    ("stage 1 promote", 1, 30, GOOD, "promote", 5, ["stage 2 (5%)", "1.50%", "1000"]),
    ("stage 2 promote", 5, 24, GOOD, "promote", 25, ["stage 3 (25%)"]),
    ("stage 3 too early", 25, 47.9, GOOD, "hold", 25, ["47.9 h", "48 h"]),
    (
        "stage 3 regressions",
        25,
        50,
        {"control": m(10_000, 0, 100), "candidate": m(1_000, 0, 40)},
        "rollback",
        0,
        ["regression rate", "4.00%", "40 of 1000", "1.00%", "3.00%", "stage 3 of 4"],
    ),
    (
        "stage 3 errors",
        25,
        50,
        {"control": m(10_000, 50, 100), "candidate": m(1_000, 12, 10)},
        "rollback",
        0,
        ["error rate", "1.20%", "12 of 1000", "0.50%", "0.70%", "stage 3 of 4"],
    ),
    (
        "rollback before the time is up",
        5,
        1,
        {"control": m(1_000), "candidate": m(50, 0, 5)},
        "rollback",
        0,
        ["10.00%", "5 of 50"],
    ),
    (
        "rollback without control data",
        1,
        30,
        {"candidate": m(200, 0, 6)},
        "rollback",
        0,
        ["3.00%", "6 of 200", "no requests to compare"],
    ),
    (
        "bad but no worse than control",
        5,
        30,
        {"control": m(10_000, 0, 900), "candidate": m(1_000, 0, 100)},
        "promote",
        25,
        ["10.00%"],
    ),
    ("last stage promotes to 100", 50, 24, GOOD, "promote", 100, ["100% (full rollout)"]),
    ("between stages", 10, 30, GOOD, "promote", 25, ["stage 3 (25%)"]),
    ("full rollout is complete", 100, 100, {"candidate": m(5_000, 5, 10)}, "hold", 100, ["100%"]),
    (
        "full rollout still rolls back",
        100,
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


def test_rollback_needs_the_difference_to_exceed_the_maximum() -> None:
    controller = CanaryController(config(5))
    # 2.5% - 0.5% = 2.0% exactly: not above the 2% maximum.
    at_limit = {"control": m(1_000, 0, 5), "candidate": m(1_000, 0, 25)}
    assert controller.decide(at_limit, 30).action == "promote"
    above = {"control": m(1_000, 0, 5), "candidate": m(1_000, 0, 26)}
    assert controller.decide(above, 30).action == "rollback"


def test_min_requests_setting() -> None:
    metrics = {"control": m(1_000), "candidate": m(150)}
    assert CanaryController(config(1)).decide(metrics, 30).action == "promote"
    held = CanaryController(config(1, min_requests=500)).decide(metrics, 30)
    assert held.action == "hold"
    assert "150 requests" in held.reason
    assert "500" in held.reason


def test_decide_validates_its_inputs() -> None:
    controller = CanaryController(config(5))
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
            {"stages": (Stage(5, 1, 0.01), Stage(5, 1, 0.01))},
            "must increase",
        ),
        ({"canary_pct": 101}, "0 to 100"),
        ({"min_requests": 0}, "min_requests"),
        ({"experiment_id": "a:b"}, "':'"),
    ],
)
def test_config_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config(5, **changes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pct": 0}, "above 0"),
        ({"pct": 120}, "0 to 100"),
        ({"min_hours": -1}, "min_hours"),
        ({"max_regression_rate": 2}, "fraction"),
        ({"max_error_rate": -0.1}, "fraction"),
    ],
)
def test_stage_validation(kwargs: dict[str, Any], match: str) -> None:
    values: dict[str, Any] = {"pct": 5, "min_hours": 1, "max_regression_rate": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        Stage(**values)


def test_hours_at_stage_and_resolve() -> None:
    started = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    cfg = config(5, stage_started_at=started)
    assert cfg.hours_at_stage(datetime(2026, 11, 26, 10, 0, tzinfo=UTC)) == 26
    assert cfg.hours_at_stage(datetime(2026, 11, 24, tzinfo=UTC)) == 0
    assert config(5).hours_at_stage() == 0
    assert cfg.resolve("user-42") == resolve_model("user-42", EXPERIMENT, PRODUCTION, CANDIDATE, 5)


# -- loading ----------------------------------------------------------------------------------

PYPROJECT = """\
[project]
name = "app"

[tool.llmregress.canary]
production = "claude-sonnet-4-6"
candidate = "claude-opus-4-7"
experiment_id = "opus-4-7-migration"
canary_pct = 5
stage_started_at = 2026-11-25T08:00:00Z

[[tool.llmregress.canary.stages]]
pct = 1
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 5
min_hours = 24
max_regression_rate = 0.02
max_error_rate = 0.01
"""


def test_load_from_pyproject_and_llmregress_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "src" / "app"
    sub.mkdir(parents=True)
    cfg = load_canary_config(sub)
    assert cfg.path == tmp_path / "pyproject.toml"
    assert cfg.canary_pct == 5
    assert cfg.stage_started_at == datetime(2026, 11, 25, 8, tzinfo=UTC)
    assert cfg.stages[1] == Stage(5, 24, 0.02, 0.01)
    assert cfg.min_requests == 100

    toml = PYPROJECT.replace("tool.llmregress.canary", "canary").replace(
        '[project]\nname = "app"\n', ""
    )
    (tmp_path / "llmregress.toml").write_text(toml)
    assert load_canary_config(sub).path == tmp_path / "llmregress.toml"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("canary_pct = 5", "canary_pct = 500", "tool.llmregress.canary.canary_pct"),
        ("canary_pct = 5", "canary_pct = 5\ncanary_pc = 1", "tool.llmregress.canary.canary_pc"),
        ('production = "claude-sonnet-4-6"\n', "", "tool.llmregress.canary.production"),
        ("\npct = 5\n", "\npct = 0.5\n", "tool.llmregress.canary.stages"),
        ("max_error_rate = 0.01", "max_error_rate = 3", "tool.llmregress.canary.stages[1]"),
        ("2026-11-25T08:00:00Z", '"yesterday"', "tool.llmregress.canary.stage_started_at"),
    ],
)
def test_load_errors_name_the_key(old: str, new: str, key: str) -> None:
    text = PYPROJECT.replace(old, new, 1)
    with pytest.raises(CanaryConfigError) as info:
        parse_canary_config(text, Path("pyproject.toml"))
    assert info.value.key == key
    assert str(info.value).startswith(f"pyproject.toml: {key}")


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(CanaryConfigError, match="no canary config found"):
        load_canary_config(tmp_path)
