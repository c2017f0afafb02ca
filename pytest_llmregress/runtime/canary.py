"""Canary ramp for a model migration: stable user assignment and promote / hold / rollback.

Application code (no pytest, no SDK) calls :func:`resolve_model` on every request::

    config = load_canary_config()          # [tool.llmregress.canary] or llmregress.toml [canary]
    model_id, variant = config.resolve(user_id)

and logs ``variant`` with each outcome. A job (or a person) feeds the counts per variant to
:class:`CanaryController`, which says whether to promote the candidate to the next stage,
hold, or roll back; ``llmregress canary advance | rollback`` applies that as a config change.

Assignment (the contract other services compute too, bit for bit)
    The bucket is ``int(sha256(f"{experiment_id}:{user_id}").hexdigest(), 16) % 10_000``:
    the full digest as one integer. ``canary_pct`` is a **fraction** (``0.0`` nobody,
    ``0.05`` 5 % of users, ``1.0`` everybody); ``0.0`` gives production and ``1.0`` the
    candidate without hashing, anything between gives the candidate iff
    ``bucket < int(canary_pct * 10_000)``. A user keeps their bucket for the whole experiment,
    so raising the fraction only moves users from control to candidate, and a new
    ``experiment_id`` reshuffles everybody.

Config files and the ``LLMREGRESS_CANARY_PCT`` environment variable also accept a percentage
string such as ``"5%"`` (:func:`parse_canary_pct`); a bare number is always a fraction. The
environment variable overrides the file's ``canary_pct`` in :func:`load_canary_config`, so a
rollback needs no rebuild.

Decision rules (:meth:`CanaryController.decide`), checked in this order:

1. ``canary_pct == 0``: **hold** when the config records a rollback that no advance has
   followed (restarting is a deliberate act); otherwise **promote** to the first stage.
2. **rollback** when the candidate's regression rate or error rate exceeds the current stage's
   maximum. When the control variant has requests, the candidate is compared with it: it is
   rolled back when ``candidate rate - control rate > max``; without control data, when
   ``candidate rate > max``. This check needs no minimum volume: a canary that fails early
   is rolled back early (rolling back is only a config change). A stage without a maximum
   (the full-rollout stage of the default ramp) never triggers it.
3. **hold** while the time at the stage is below the stage's ``min_hours``.
4. **hold** while the candidate has fewer than ``min_requests`` requests (default 100).
5. **promote** to the next stage's fraction; after the last stage, to 1.0 (full rollout).
   At 1.0 the ramp is complete and the decision is **hold** (rollback still applies).

The stage in force is the last stage whose ``pct`` is at or below ``canary_pct`` (the first
stage when ``canary_pct`` is below every stage). Rates are fractions too: ``0.02`` is 2 %.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, Literal

from pytest_llmregress.core.validation import KeyedError, first_unknown_key

BUCKETS: Final = 10_000
DEFAULT_MIN_REQUESTS: Final = 100
CANARY_PCT_ENV: Final = "LLMREGRESS_CANARY_PCT"
"""The environment variable that overrides the config file's ``canary_pct``."""
CANARY_KEYS: Final = (
    "production",
    "candidate",
    "experiment_id",
    "canary_pct",
    "stage_started_at",
    "min_requests",
    "stages",
    "rollback_reason",
    "rolled_back_at",
)
STAGE_KEYS: Final = ("pct", "min_hours", "max_regression_rate", "max_error_rate")

Variant = Literal["control", "candidate"]
Action = Literal["promote", "hold", "rollback"]


class CanaryConfigError(KeyedError):
    """An invalid canary config; the message names the file and the key when known."""


# -- fractions ----------------------------------------------------------------------------------

_FRACTION_TEXT: Final = "a fraction from 0.0 to 1.0 (0.05 = 5% of users)"


def format_fraction(value: float) -> str:
    """A fraction as the shortest text that reads back to the same float: ``0.05``, ``1.0``."""
    return repr(float(value))


def format_percent(value: float) -> str:
    """A fraction as a percentage for people: ``0.05`` -> ``5%``, ``0.0001`` -> ``0.01%``."""
    return f"{float(value) * 100:g}%"


def _percent_to_fraction_text(percent: float) -> str:
    """``5`` -> ``0.05``: the fraction a person who wrote a percentage meant, exactly."""
    text = format((Decimal(repr(float(percent))) / 100).normalize(), "f")
    return text if "." in text else f"{text}.0"


def _check_canary_pct(value: object, name: str = "canary_pct") -> float:
    """``value`` as a float fraction in 0.0..1.0, or a ``ValueError`` that says what to pass."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = (
            '; parse a string such as "5%" with parse_canary_pct()'
            if isinstance(value, str)
            else ""
        )
        raise ValueError(f"{name} must be {_FRACTION_TEXT}, got {value!r}{hint}")
    pct = float(value)
    if math.isnan(pct) or not 0.0 <= pct <= 1.0:
        hint = f"; for {pct:g}% pass {_percent_to_fraction_text(pct)}" if 1.0 < pct <= 100.0 else ""
        raise ValueError(f"{name} must be {_FRACTION_TEXT}, got {value!r}{hint}")
    return pct


_NUMBER: Final = r"(\d+(?:\.\d*)?|\.\d+)"
_PERCENT_STRING: Final = re.compile(rf"\s*{_NUMBER}\s*%\s*")
_FRACTION_STRING: Final = re.compile(rf"\s*{_NUMBER}\s*")


def parse_canary_pct(value: object) -> float:
    """A canary share as written in a config file or the environment, as a fraction.

    - A number is a fraction: ``0.05`` is 5 % of users, ``1.0`` everybody.
    - A string ending in ``%`` is a percentage: ``"5%"`` is ``0.05``, the very float the
      literal ``0.05`` gives (the division is exact), so both spellings pick the same users.
    - Any other string is read as a number, so a fraction: ``"0.05"`` (environment variables
      are always strings).
    - The integer ``1`` (or the string ``"1"``) is refused as ambiguous: it meant 1 % when
      ``canary_pct`` was a percentage. ``1.0`` or ``"100%"`` is everybody, ``"1%"`` one percent.

    Raises ``ValueError`` saying what was expected (callers add the file and key).
    """
    expected = f'expected {_FRACTION_TEXT} or a percentage string such as "5%"'
    if isinstance(value, str):
        match = _PERCENT_STRING.fullmatch(value)
        if match is not None:
            percent = Decimal(match.group(1))
            if percent > 100:
                raise ValueError(f"{expected}, got {value!r} (above 100%)")
            return float(percent / 100)
        match = _FRACTION_STRING.fullmatch(value)
        if match is None:
            raise ValueError(f"{expected}, got {value!r}")
        text = match.group(1)
        number: float = float(Decimal(text))
        ambiguous_one = "." not in text and int(text) == 1
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{expected}, got {value!r}")
    else:
        number = float(value)
        ambiguous_one = isinstance(value, numbers.Integral) and value == 1
    if ambiguous_one:
        raise ValueError(
            f"{value!r} is ambiguous: canary_pct is a fraction, so it would mean every user, but "
            'it meant 1% when canary_pct was a percentage; write 1.0 for every user or "1%" '
            "for one percent"
        )
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        hint = ""
        if 1.0 < number <= 100.0:
            hint = f'; for {number:g}% write {_percent_to_fraction_text(number)} or "{number:g}%"'
        raise ValueError(f"{expected}, got {value!r}{hint}")
    return number


# -- assignment -------------------------------------------------------------------------------


def _check_ids(user_id: object, experiment_id: object) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    _check_experiment(experiment_id)


def _check_experiment(experiment_id: object) -> None:
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError(f"experiment_id must be a non-empty string, got {experiment_id!r}")
    if ":" in experiment_id:
        # "a:b" + "c" and "a" + "b:c" would hash the same.
        raise ValueError(f"experiment_id must not contain ':', got {experiment_id!r}")


def _bucket(experiment_id: str, user_id: str) -> int:
    # The contract: the full hex digest as one integer, not a prefix of the digest.
    return int(hashlib.sha256(f"{experiment_id}:{user_id}".encode()).hexdigest(), 16) % BUCKETS


def bucket(user_id: str, experiment_id: str) -> int:
    """The user's bucket in ``0..9999`` for this experiment (stable across processes).

    ``int(sha256(f"{experiment_id}:{user_id}".encode()).hexdigest(), 16) % 10_000``.
    """
    _check_ids(user_id, experiment_id)
    return _bucket(experiment_id, user_id)


def candidate_buckets(canary_pct: float) -> int:
    """How many buckets get the candidate at ``canary_pct``: ``int(canary_pct * 10_000)``.

    The candidate's buckets are ``0 .. n - 1``. ``int`` truncates the float product, as every
    service computing the contract does: ``0.57`` gives 5699 buckets, not 5700.
    """
    return int(_check_canary_pct(canary_pct) * BUCKETS)


def resolve_model(
    user_id: str,
    experiment_id: str,
    production_model: str,
    candidate_model: str,
    canary_pct: float = 0.0,
) -> tuple[str, Variant]:
    """``(model_id, variant)`` for this user; ``variant`` is ``"candidate"`` or ``"control"``.

    ``canary_pct`` is a fraction: ``0.0`` gives ``production_model`` and ``1.0`` gives
    ``candidate_model`` to everybody without hashing; in between the user gets the candidate
    iff ``bucket(user_id, experiment_id) < int(canary_pct * 10_000)``. Raises ``ValueError``
    for a ``canary_pct`` that is not a number from 0.0 to 1.0 (a bool, NaN, ``5`` meaning
    5 %, a string), an empty id or model, or an ``experiment_id`` containing ``':'``.
    """
    pct = _check_canary_pct(canary_pct)
    _check_ids(user_id, experiment_id)
    for name, value in (
        ("production_model", production_model),
        ("candidate_model", candidate_model),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty model id, got {value!r}")
    if pct == 0.0:
        return production_model, "control"
    if pct >= 1.0:
        return candidate_model, "candidate"
    if _bucket(experiment_id, user_id) < int(pct * BUCKETS):
        return candidate_model, "candidate"
    return production_model, "control"


# -- ramp -------------------------------------------------------------------------------------


def _rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a fraction from 0 to 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction from 0 to 1 (0.02 = 2%), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Stage:
    """One step of the ramp: ``pct`` of users (a fraction) on the candidate for ``min_hours``.

    ``max_regression_rate`` (a fraction: 0.02 = 2 %) is the largest regression rate the
    candidate may show, above control's when control has data; ``None`` sets no limit, which
    only the full-rollout stage (``pct`` 1.0) may do. ``max_error_rate`` is the same for
    errors and defaults to ``max_regression_rate``.
    """

    pct: float
    min_hours: float
    max_regression_rate: float | None
    max_error_rate: float | None = None

    def __post_init__(self) -> None:
        pct = _check_canary_pct(self.pct, "stage pct")
        if pct <= 0:
            raise ValueError(f"stage pct must be above 0, got {self.pct!r}")
        object.__setattr__(self, "pct", pct)
        if (
            isinstance(self.min_hours, bool)
            or not isinstance(self.min_hours, int | float)
            or not math.isfinite(self.min_hours)
            or self.min_hours < 0
        ):
            raise ValueError(f"min_hours must be a number of hours >= 0, got {self.min_hours!r}")
        if self.max_regression_rate is None:
            if pct < 1.0:
                raise ValueError(
                    f"max_regression_rate is required below full rollout (stage pct {pct!r}); "
                    "only the stage at 1.0 may go without one"
                )
        else:
            _rate(self.max_regression_rate, "max_regression_rate")
        if self.max_error_rate is not None:
            _rate(self.max_error_rate, "max_error_rate")

    @property
    def error_limit(self) -> float | None:
        return self.max_regression_rate if self.max_error_rate is None else self.max_error_rate

    def as_dict(self) -> dict[str, float | None]:
        """The stage in the shape of the config file (``max_error_rate`` only when set)."""
        data: dict[str, float | None] = {
            "pct": self.pct,
            "min_hours": self.min_hours,
            "max_regression_rate": self.max_regression_rate,
        }
        if self.max_error_rate is not None:
            data["max_error_rate"] = self.max_error_rate
        return data


DEFAULT_STAGES: Final = (
    Stage(pct=0.01, min_hours=2, max_regression_rate=0.05),
    Stage(pct=0.05, min_hours=6, max_regression_rate=0.03),
    Stage(pct=0.20, min_hours=24, max_regression_rate=0.02),
    Stage(pct=0.50, min_hours=48, max_regression_rate=0.02),
    Stage(pct=1.00, min_hours=0, max_regression_rate=None),
)
"""The ramp of the reference practice, used when a config has no ``stages``."""


def _check_stages(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    result = tuple(stages)
    if not result:
        raise ValueError("a canary needs at least one stage")
    for before, after in pairwise(result):
        if after.pct <= before.pct:
            raise ValueError(
                f"stage fractions must increase: {_pct(after.pct)} follows {_pct(before.pct)}"
            )
    return result


@dataclass(frozen=True)
class CanaryConfig:
    """The canary's state: who is compared with whom, where the ramp stands, its stages."""

    production: str
    candidate: str
    experiment_id: str
    canary_pct: float = 0.0
    """The share of users on the candidate, a fraction from 0.0 to 1.0."""
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    stage_started_at: datetime | None = None
    min_requests: int = DEFAULT_MIN_REQUESTS
    rollback_reason: str | None = None
    """Why the canary was last rolled back (written by ``llmregress canary rollback``)."""
    rolled_back_at: datetime | None = None
    """When the canary was last rolled back."""
    path: Path | None = field(default=None, compare=False)
    """The file the config was read from, if any."""
    overridden_by: str | None = field(default=None, compare=False)
    """The environment variable whose value replaced the file's ``canary_pct``, if any."""

    def __post_init__(self) -> None:
        for name in ("production", "candidate"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty model id, got {value!r}")
        if self.production == self.candidate:
            raise ValueError(
                f"production and candidate are the same model ({self.production!r}); "
                "a canary compares two different models"
            )
        _check_experiment(self.experiment_id)
        object.__setattr__(self, "canary_pct", _check_canary_pct(self.canary_pct))
        object.__setattr__(self, "stages", _check_stages(self.stages))
        if (
            isinstance(self.min_requests, bool)
            or not isinstance(self.min_requests, int)
            or self.min_requests < 1
        ):
            raise ValueError(f"min_requests must be an integer >= 1, got {self.min_requests!r}")
        if self.rollback_reason is not None and (
            not isinstance(self.rollback_reason, str) or not self.rollback_reason.strip()
        ):
            raise ValueError(
                f"rollback_reason must be a non-empty string, got {self.rollback_reason!r}"
            )
        for name in ("stage_started_at", "rolled_back_at"):
            moment = getattr(self, name)
            if moment is not None:
                object.__setattr__(self, name, _aware(moment))

    def resolve(self, user_id: str) -> tuple[str, Variant]:
        """:func:`resolve_model` with this config's models, experiment and fraction."""
        return resolve_model(
            user_id, self.experiment_id, self.production, self.candidate, self.canary_pct
        )

    @property
    def rolled_back(self) -> bool:
        """True while ``canary_pct`` is 0 because of a recorded rollback no advance followed."""
        if self.canary_pct != 0 or (self.rolled_back_at is None and self.rollback_reason is None):
            return False
        if self.rolled_back_at is None or self.stage_started_at is None:
            return True
        return self.stage_started_at <= self.rolled_back_at

    def hours_at_stage(self, now: datetime | None = None) -> float:
        """Hours since ``stage_started_at`` (0 when unset or in the future)."""
        if self.stage_started_at is None:
            return 0.0
        current = _aware(now) if now is not None else datetime.now(UTC)
        return max(0.0, (current - self.stage_started_at).total_seconds() / 3600)

    def stage_index(self) -> int | None:
        """Index of the stage in force (see the module doc); None at 0."""
        return stage_index(self.stages, self.canary_pct)

    def next_pct(self) -> float:
        """The fraction a promotion moves to: the next stage's, or 1.0 after the last."""
        return next_pct(self.stages, self.canary_pct)


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def stage_index(stages: Sequence[Stage], canary_pct: float) -> int | None:
    """The stage in force at ``canary_pct``: the last one at or below it; None at 0."""
    if canary_pct <= 0:
        return None
    index = 0
    for i, stage in enumerate(stages):
        if stage.pct <= canary_pct:
            index = i
    return index


def next_pct(stages: Sequence[Stage], canary_pct: float) -> float:
    """The first stage fraction above ``canary_pct``; 1.0 when none is."""
    for stage in stages:
        if stage.pct > canary_pct:
            return stage.pct
    return 1.0


@dataclass(frozen=True)
class VariantMetrics:
    """Outcomes logged for one variant: requests, failed calls, and regressions."""

    requests: int = 0
    errors: int = 0
    regressions: int = 0

    def __post_init__(self) -> None:
        for name in ("requests", "errors", "regressions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("errors", "regressions"):
            if getattr(self, name) > self.requests:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) cannot exceed requests ({self.requests})"
                )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def regression_rate(self) -> float:
        return self.regressions / self.requests if self.requests else 0.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], name: str = "metrics") -> VariantMetrics:
        if not isinstance(data, Mapping):
            raise ValueError(f"{name}: expected an object with requests, errors, regressions")
        unknown = first_unknown_key(data, ("requests", "errors", "regressions"))
        if unknown is not None:
            raise ValueError(
                f"{name}.{unknown}: unknown key (allowed: requests, errors, regressions)"
            )
        try:
            return cls(
                requests=data.get("requests", 0),
                errors=data.get("errors", 0),
                regressions=data.get("regressions", 0),
            )
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Decision:
    """What the controller advises: the action, a full-sentence reason, the new fraction."""

    action: Action
    reason: str
    next_pct: float


def _pct(value: float) -> str:
    """A fraction for a sentence: ``0.05 (5%)``."""
    return f"{format_fraction(value)} ({format_percent(value)})"


def _share(value: float) -> str:
    return f"{value * 100:.2f}%"


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


class CanaryController:
    """Decides promote / hold / rollback for a :class:`CanaryConfig` (rules: module doc)."""

    def __init__(self, config: CanaryConfig) -> None:
        self.config = config

    def decide(
        self, metrics_by_variant: Mapping[str, VariantMetrics], hours_at_stage: float
    ) -> Decision:
        """The decision for the current stage given metrics per variant and the hours spent.

        ``metrics_by_variant`` maps ``"control"`` and ``"candidate"`` to their metrics; a
        missing variant counts as no requests.
        """
        if (
            isinstance(hours_at_stage, bool)
            or not isinstance(hours_at_stage, int | float)
            or math.isnan(hours_at_stage)
            or hours_at_stage < 0
        ):
            raise ValueError(f"hours_at_stage must be a number >= 0, got {hours_at_stage!r}")
        unknown = sorted(set(metrics_by_variant) - {"control", "candidate"})
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r} (expected 'control' and 'candidate')")
        config = self.config
        pct = float(config.canary_pct)
        stages = config.stages
        index = stage_index(stages, pct)
        if index is None:
            first = stages[0].pct
            start = f"stage 1 of {len(stages)} at {_pct(first)}"
            if config.rolled_back:
                when = f" at {_moment(config.rolled_back_at)}" if config.rolled_back_at else ""
                why = f" ({config.rollback_reason})" if config.rollback_reason else ""
                return Decision(
                    "hold",
                    f"The canary was rolled back{when}{why} and has not been restarted since; "
                    f"restart it on purpose, once the cause is fixed, at {start}.",
                    0.0,
                )
            return Decision(
                "promote",
                f"The canary is at 0.0, so no user gets {config.candidate}; promoting starts "
                f"{start}.",
                first,
            )
        stage = stages[index]
        where = f"stage {index + 1} of {len(stages)} at {_pct(pct)}"
        if pct >= 1.0:
            where = f"full rollout (1.0, 100% of users, limits of stage {len(stages)})"
        control = metrics_by_variant.get("control", VariantMetrics())
        candidate = metrics_by_variant.get("candidate", VariantMetrics())

        if candidate.requests:
            for what, cand_rate, ctrl_rate, limit in (
                (
                    "regression rate",
                    candidate.regression_rate,
                    control.regression_rate,
                    stage.max_regression_rate,
                ),
                ("error rate", candidate.error_rate, control.error_rate, stage.error_limit),
            ):
                if limit is None:
                    continue
                count = candidate.regressions if what == "regression rate" else candidate.errors
                observed = (
                    f"The candidate's {what} is {_share(cand_rate)} "
                    f"({count} of {candidate.requests} requests)"
                )
                if control.requests:
                    ctrl_count = (
                        control.regressions if what == "regression rate" else control.errors
                    )
                    if cand_rate - ctrl_rate > limit:
                        return Decision(
                            "rollback",
                            f"{observed}, against {_share(ctrl_rate)} for control "
                            f"({ctrl_count} of {control.requests}); the difference of "
                            f"{_share(cand_rate - ctrl_rate)} exceeds the maximum of "
                            f"{_share(limit)} at {where}.",
                            0.0,
                        )
                elif cand_rate > limit:
                    return Decision(
                        "rollback",
                        f"{observed}, above the maximum of {_share(limit)} at {where} "
                        "(control has no requests to compare with).",
                        0.0,
                    )

        if pct >= 1.0:
            return Decision(
                "hold",
                f"The ramp is complete: {config.candidate} serves every user (1.0, 100%). Make "
                "it the production model and end the experiment.",
                1.0,
            )
        if hours_at_stage < stage.min_hours:
            return Decision(
                "hold",
                f"Holding at {where}: {hours_at_stage:.1f} h of the required "
                f"{stage.min_hours:g} h at this stage have passed.",
                pct,
            )
        if candidate.requests < config.min_requests:
            return Decision(
                "hold",
                f"Holding at {where}: the candidate has {candidate.requests} requests, fewer "
                f"than the {config.min_requests} needed to judge it.",
                pct,
            )
        target = next_pct(stages, pct)
        then = (
            f"stage {index + 2} at {_pct(target)}"
            if index + 1 < len(stages)
            else "1.0 (100%, full rollout)"
        )
        regression_limit, error_limit = stage.max_regression_rate, stage.error_limit
        if regression_limit is None and error_limit is None:
            limits = "are not limited at this stage"
        else:
            limits = "are within the stage's limits (at most " + " and ".join(
                f"{_share(limit)} {what}"
                for what, limit in (("regressions", regression_limit), ("errors", error_limit))
                if limit is not None
            )
            limits += " above control)" if control.requests else ")"
        return Decision(
            "promote",
            f"Promoting from {where} to {then}: after {hours_at_stage:.1f} h and "
            f"{candidate.requests} candidate requests, its regression rate "
            f"{_share(candidate.regression_rate)} and error rate {_share(candidate.error_rate)} "
            f"{limits}.",
            target,
        )


# -- loading ----------------------------------------------------------------------------------

CONFIG_FILENAME: Final = "llmregress.toml"
PYPROJECT_FILENAME: Final = "pyproject.toml"


def canary_table_path(path: Path) -> tuple[str, ...]:
    """The table that holds the canary in ``path``: ``tool.llmregress.canary`` or ``canary``."""
    return ("tool", "llmregress", "canary") if path.name == PYPROJECT_FILENAME else ("canary",)


def find_canary_config(start: Path | None = None) -> Path | None:
    """The nearest ``llmregress.toml`` with ``[canary]`` or ``pyproject.toml`` with
    ``[tool.llmregress.canary]`` at or above ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        for name in (CONFIG_FILENAME, PYPROJECT_FILENAME):
            candidate = directory / name
            if candidate.is_file() and _has_canary(candidate):
                return candidate
    return None


def _has_canary(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    if "canary" not in text:
        return False
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True  # let the loader report it
    return _lookup(doc, canary_table_path(path)) is not None


def _lookup(doc: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def canary_pct_from_env(environ: Mapping[str, str] | None = None) -> float | None:
    """The ``canary_pct`` set in ``LLMREGRESS_CANARY_PCT``; None when unset or blank.

    Read with :func:`parse_canary_pct`: ``"0"``, ``"0.05"`` or ``"5%"``. Raises
    :class:`CanaryConfigError` (key ``LLMREGRESS_CANARY_PCT``) for any other value.
    """
    env = os.environ if environ is None else environ
    raw = env.get(CANARY_PCT_ENV)
    if raw is None or not raw.strip():
        return None
    try:
        return parse_canary_pct(raw)
    except ValueError as exc:
        raise CanaryConfigError(
            f"environment variable {CANARY_PCT_ENV}: {exc}", key=CANARY_PCT_ENV
        ) from None


def load_canary_config(
    start: Path | None = None,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> CanaryConfig:
    """Read the canary config from ``path``, or the nearest file found from ``start``.

    ``LLMREGRESS_CANARY_PCT`` in ``environ`` (default ``os.environ``), when set and not
    blank, replaces the file's ``canary_pct`` (``overridden_by`` names it): the way to roll
    back, or change the share, without rebuilding an image that holds the file. Pass
    ``environ={}`` to read the file alone. Raises :class:`CanaryConfigError` (naming the file
    and key, or the variable) when there is no config or it is invalid.
    """
    if path is None:
        path = find_canary_config(start)
        if path is None:
            raise CanaryConfigError(
                f"no canary config found: looked for {CONFIG_FILENAME} with [canary] or "
                f"{PYPROJECT_FILENAME} with [tool.llmregress.canary]"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CanaryConfigError(f"{path}: cannot read: {exc}", path=path) from None
    config = parse_canary_config(text, path)
    try:
        override = canary_pct_from_env(environ)
    except CanaryConfigError as exc:
        raise CanaryConfigError(
            f"{exc} (it overrides canary_pct of {path})", path=path, key=CANARY_PCT_ENV
        ) from None
    if override is None:
        return config
    return dataclasses.replace(config, canary_pct=override, overridden_by=CANARY_PCT_ENV)


def parse_canary_config(text: str, path: Path) -> CanaryConfig:
    """Parse the canary table of a TOML document (``path`` tells which table and names errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CanaryConfigError(f"{path}: invalid TOML: {exc}", path=path) from None
    keys = canary_table_path(path)
    prefix = ".".join(keys)
    table = _lookup(doc, keys)
    if table is None:
        raise CanaryConfigError(f"{path}: no [{prefix}] table", path=path, key=prefix)
    return canary_config_from_mapping(table, path=path, prefix=prefix)


def canary_config_from_mapping(
    table: Mapping[str, Any], *, path: Path | None = None, prefix: str = "canary"
) -> CanaryConfig:
    """Build a :class:`CanaryConfig` from a parsed TOML table (or any mapping).

    ``canary_pct`` and each stage's ``pct`` are read with :func:`parse_canary_pct`; without
    ``stages`` the ramp is :data:`DEFAULT_STAGES`.
    """

    def error(key: str, problem: str) -> CanaryConfigError:
        return CanaryConfigError.at(problem, path=path, key=f"{prefix}.{key}" if key else prefix)

    if not isinstance(table, Mapping):
        raise error("", f"expected a table, got {type(table).__name__}")
    unknown = first_unknown_key(table, CANARY_KEYS)
    if unknown is not None:
        raise error(unknown, f"unknown key (allowed: {', '.join(CANARY_KEYS)})")
    for key in ("production", "candidate", "experiment_id", "canary_pct"):
        if key not in table:
            raise error(key, "missing")
    strings: dict[str, str] = {}
    for key in ("production", "candidate", "experiment_id"):
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise error(key, f"expected a non-empty string, got {value!r}")
        strings[key] = value.strip()
    try:
        canary_pct = parse_canary_pct(table["canary_pct"])
    except ValueError as exc:
        raise error("canary_pct", str(exc)) from None
    started = _moment_at(table.get("stage_started_at"), "stage_started_at", error)
    rolled_back_at = _moment_at(table.get("rolled_back_at"), "rolled_back_at", error)
    reason = table.get("rollback_reason")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise error("rollback_reason", f"expected a non-empty string, got {reason!r}")
    stages = _stages(table["stages"], prefix, error) if "stages" in table else DEFAULT_STAGES
    min_requests = table.get("min_requests", DEFAULT_MIN_REQUESTS)
    try:
        return CanaryConfig(
            production=strings["production"],
            candidate=strings["candidate"],
            experiment_id=strings["experiment_id"],
            canary_pct=canary_pct,
            stages=stages,
            stage_started_at=started,
            min_requests=min_requests,
            rollback_reason=reason,
            rolled_back_at=rolled_back_at,
            path=path,
        )
    except (TypeError, ValueError) as exc:
        raise error("", str(exc)) from None


def _stages(
    raw_stages: object, prefix: str, error: Callable[[str, str], CanaryConfigError]
) -> tuple[Stage, ...]:
    if not isinstance(raw_stages, list) or not raw_stages:
        raise error("stages", f"expected an array of tables [[{prefix}.stages]]")
    stages: list[Stage] = []
    for i, raw in enumerate(raw_stages):
        key = f"stages[{i}]"
        if not isinstance(raw, Mapping):
            raise error(key, f"expected a table, got {raw!r}")
        unknown = first_unknown_key(raw, STAGE_KEYS)
        if unknown is not None:
            raise error(f"{key}.{unknown}", f"unknown key (allowed: {', '.join(STAGE_KEYS)})")
        for required in ("pct", "min_hours"):
            if required not in raw:
                raise error(f"{key}.{required}", "missing")
        try:
            pct = parse_canary_pct(raw["pct"])
        except ValueError as exc:
            raise error(f"{key}.pct", str(exc)) from None
        if "max_regression_rate" not in raw and pct < 1.0:
            raise error(
                f"{key}.max_regression_rate",
                "missing (only the full-rollout stage, pct 1.0, may go without one)",
            )
        try:
            stages.append(
                Stage(
                    pct=pct,
                    min_hours=raw["min_hours"],
                    max_regression_rate=raw.get("max_regression_rate"),
                    max_error_rate=raw.get("max_error_rate"),
                )
            )
        except (TypeError, ValueError) as exc:
            raise error(key, str(exc)) from None
    try:
        return _check_stages(stages)
    except ValueError as exc:
        raise error("stages", str(exc)) from None


def _moment_at(
    value: object, key: str, error: Callable[[str, str], CanaryConfigError]
) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError:
            pass
    raise error(key, f"expected a date-time such as 2026-11-26T09:00:00Z, got {value!r}")
