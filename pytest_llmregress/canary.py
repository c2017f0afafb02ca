"""Canary ramp for a model migration: stable user assignment and promote / hold / rollback.

Application code (no pytest, no SDK) calls :func:`resolve_model` on every request::

    config = load_canary_config()          # [tool.llmregress.canary] or llmregress.toml [canary]
    model_id, variant = config.resolve(user_id)

and logs ``variant`` with each outcome. A job (or a person) feeds the counts per variant to
:class:`CanaryController`, which says whether to promote the candidate to the next stage,
hold, or roll back; ``llmregress canary advance | rollback`` applies that as a config change.

Assignment
    ``SHA-256("{experiment_id}:{user_id}")`` picks one of 10,000 buckets; the user gets the
    candidate iff ``bucket < canary_pct * 100``. A user keeps their bucket for the whole
    experiment, so raising the percentage only moves users from control to candidate, and a
    new ``experiment_id`` reshuffles everybody.

Decision rules (:meth:`CanaryController.decide`), checked in this order:

1. ``canary_pct == 0`` (not started, or rolled back): **promote** to the first stage.
2. **rollback** when the candidate's regression rate or error rate exceeds the current stage's
   maximum. When the control variant has requests, the candidate is compared with it: it is
   rolled back when ``candidate rate - control rate > max``; without control data, when
   ``candidate rate > max``. This check needs no minimum volume: a canary that fails early
   is rolled back early (rolling back is only a config change).
3. **hold** while the time at the stage is below the stage's ``min_hours``.
4. **hold** while the candidate has fewer than ``min_requests`` requests (default 100).
5. **promote** to the next stage's percentage; after the last stage, to 100 (full rollout).
   At 100 the ramp is complete and the decision is **hold** (rollback still applies).

The stage in force is the last stage whose ``pct`` is at or below ``canary_pct`` (the first
stage when ``canary_pct`` is below every stage). Rates are fractions: ``0.02`` is 2 %.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, Literal

BUCKETS: Final = 10_000
DEFAULT_MIN_REQUESTS: Final = 100
CANARY_KEYS: Final = (
    "production",
    "candidate",
    "experiment_id",
    "canary_pct",
    "stage_started_at",
    "min_requests",
    "stages",
)
STAGE_KEYS: Final = ("pct", "min_hours", "max_regression_rate", "max_error_rate")

Variant = Literal["control", "candidate"]
Action = Literal["promote", "hold", "rollback"]


class CanaryConfigError(ValueError):
    """An invalid canary config; the message names the file and the key when known."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None):
        super().__init__(message)
        self.path = path
        self.key = key


# -- assignment -------------------------------------------------------------------------------


def _check_pct(canary_pct: object, name: str = "canary_pct") -> float:
    if isinstance(canary_pct, bool) or not isinstance(canary_pct, int | float):
        raise TypeError(f"{name} must be a number from 0 to 100, got {canary_pct!r}")
    value = float(canary_pct)
    if math.isnan(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be from 0 to 100, got {canary_pct!r}")
    return value


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


def bucket(user_id: str, experiment_id: str) -> int:
    """The user's bucket in ``0..9999`` for this experiment (stable across processes)."""
    _check_ids(user_id, experiment_id)
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def resolve_model(
    user_id: str,
    experiment_id: str,
    production: str,
    candidate: str,
    canary_pct: float,
) -> tuple[str, Variant]:
    """``(model_id, variant)`` for this user: the candidate iff ``bucket < canary_pct * 100``.

    ``canary_pct`` is a percentage from 0 (nobody) to 100 (everybody); fractions such as
    ``0.5`` are allowed down to 0.01 % (one bucket). Raises ``ValueError`` for an empty id, an
    ``experiment_id`` containing ``':'`` or a percentage outside 0..100, and ``TypeError`` for
    a percentage that is not a number.
    """
    pct = _check_pct(canary_pct)
    for name, value in (("production", production), ("candidate", candidate)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty model id, got {value!r}")
    if bucket(user_id, experiment_id) < pct * (BUCKETS / 100):
        return candidate, "candidate"
    return production, "control"


# -- ramp -------------------------------------------------------------------------------------


def _rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a fraction from 0 to 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction from 0 to 1 (0.02 = 2%), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Stage:
    """One step of the ramp: ``pct`` of users on the candidate for at least ``min_hours``.

    ``max_regression_rate`` (a fraction: 0.02 = 2 %) is the largest regression rate the
    candidate may show, above control's when control has data; ``max_error_rate`` is the same
    for errors and defaults to ``max_regression_rate``.
    """

    pct: float
    min_hours: float
    max_regression_rate: float
    max_error_rate: float | None = None

    def __post_init__(self) -> None:
        pct = _check_pct(self.pct, "stage pct")
        if pct <= 0:
            raise ValueError(f"stage pct must be above 0, got {self.pct!r}")
        if (
            isinstance(self.min_hours, bool)
            or not isinstance(self.min_hours, int | float)
            or not math.isfinite(self.min_hours)
            or self.min_hours < 0
        ):
            raise ValueError(f"min_hours must be a number of hours >= 0, got {self.min_hours!r}")
        _rate(self.max_regression_rate, "max_regression_rate")
        if self.max_error_rate is not None:
            _rate(self.max_error_rate, "max_error_rate")

    @property
    def error_limit(self) -> float:
        return self.max_regression_rate if self.max_error_rate is None else self.max_error_rate


def _check_stages(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    result = tuple(stages)
    if not result:
        raise ValueError("a canary needs at least one stage")
    for before, after in pairwise(result):
        if after.pct <= before.pct:
            raise ValueError(
                f"stage percentages must increase: {_pct(after.pct)} follows {_pct(before.pct)}"
            )
    return result


@dataclass(frozen=True)
class CanaryConfig:
    """The canary's state: who is compared with whom, where the ramp stands, its stages."""

    production: str
    candidate: str
    experiment_id: str
    canary_pct: float
    stages: tuple[Stage, ...]
    stage_started_at: datetime | None = None
    min_requests: int = DEFAULT_MIN_REQUESTS
    path: Path | None = field(default=None, compare=False)
    """The file the config was read from, if any."""

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
        _check_pct(self.canary_pct)
        object.__setattr__(self, "stages", _check_stages(self.stages))
        if (
            isinstance(self.min_requests, bool)
            or not isinstance(self.min_requests, int)
            or self.min_requests < 1
        ):
            raise ValueError(f"min_requests must be an integer >= 1, got {self.min_requests!r}")
        if self.stage_started_at is not None:
            object.__setattr__(self, "stage_started_at", _aware(self.stage_started_at))

    def resolve(self, user_id: str) -> tuple[str, Variant]:
        """:func:`resolve_model` with this config's models, experiment and percentage."""
        return resolve_model(
            user_id, self.experiment_id, self.production, self.candidate, self.canary_pct
        )

    def hours_at_stage(self, now: datetime | None = None) -> float:
        """Hours since ``stage_started_at`` (0 when unset or in the future)."""
        if self.stage_started_at is None:
            return 0.0
        current = _aware(now) if now is not None else datetime.now(UTC)
        return max(0.0, (current - self.stage_started_at).total_seconds() / 3600)

    def stage_index(self) -> int | None:
        """Index of the stage in force (see the module doc); None at 0 %."""
        return stage_index(self.stages, self.canary_pct)

    def next_pct(self) -> float:
        """The percentage a promotion moves to: the next stage's, or 100 after the last."""
        return next_pct(self.stages, self.canary_pct)


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def stage_index(stages: Sequence[Stage], canary_pct: float) -> int | None:
    """The stage in force at ``canary_pct``: the last one at or below it; None at 0 %."""
    if canary_pct <= 0:
        return None
    index = 0
    for i, stage in enumerate(stages):
        if stage.pct <= canary_pct:
            index = i
    return index


def next_pct(stages: Sequence[Stage], canary_pct: float) -> float:
    """The first stage percentage above ``canary_pct``; 100 when none is."""
    for stage in stages:
        if stage.pct > canary_pct:
            return stage.pct
    return 100.0


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
        unknown = sorted(set(data) - {"requests", "errors", "regressions"})
        if unknown:
            raise ValueError(
                f"{name}.{unknown[0]}: unknown key (allowed: requests, errors, regressions)"
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
    """What the controller advises: the action, a full-sentence reason, and the new pct."""

    action: Action
    reason: str
    next_pct: float


def _pct(value: float) -> str:
    return f"{value:g}%"


def _share(value: float) -> str:
    return f"{value * 100:.2f}%"


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
            return Decision(
                "promote",
                f"The canary is at 0%, so no user gets {config.candidate}; promoting starts "
                f"stage 1 of {len(stages)} at {_pct(first)}.",
                first,
            )
        stage = stages[index]
        where = f"stage {index + 1} of {len(stages)} ({_pct(pct)} of users)"
        if pct >= 100:
            where = f"full rollout (100% of users, limits of stage {len(stages)})"
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

        if pct >= 100:
            return Decision(
                "hold",
                f"The ramp is complete: {config.candidate} serves 100% of users. Make it the "
                "production model and end the experiment.",
                100.0,
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
            f"stage {index + 2} ({_pct(target)})"
            if index + 1 < len(stages)
            else "100% (full rollout)"
        )
        return Decision(
            "promote",
            f"Promoting from {where} to {then}: after {hours_at_stage:.1f} h and "
            f"{candidate.requests} candidate requests, its regression rate "
            f"{_share(candidate.regression_rate)} and error rate {_share(candidate.error_rate)} "
            f"are within the stage's limits (at most {_share(stage.max_regression_rate)} "
            f"regressions and {_share(stage.error_limit)} errors"
            + (" above control)." if control.requests else ")."),
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


def load_canary_config(start: Path | None = None, *, path: Path | None = None) -> CanaryConfig:
    """Read the canary config from ``path``, or the nearest file found from ``start``.

    Raises :class:`CanaryConfigError` (naming the file and key) when there is none or it is
    invalid.
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
    return parse_canary_config(text, path)


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
    """Build a :class:`CanaryConfig` from a parsed TOML table (or any mapping)."""
    where = f"{path}: " if path is not None else ""

    def error(key: str, problem: str) -> CanaryConfigError:
        full = f"{prefix}.{key}" if key else prefix
        return CanaryConfigError(f"{where}{full}: {problem}", path=path, key=full)

    if not isinstance(table, Mapping):
        raise error("", f"expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(CANARY_KEYS))
    if unknown:
        raise error(unknown[0], f"unknown key (allowed: {', '.join(CANARY_KEYS)})")
    for key in ("production", "candidate", "experiment_id", "canary_pct", "stages"):
        if key not in table:
            raise error(key, "missing")
    strings: dict[str, str] = {}
    for key in ("production", "candidate", "experiment_id"):
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise error(key, f"expected a non-empty string, got {value!r}")
        strings[key] = value.strip()
    try:
        _check_pct(table["canary_pct"])
    except (TypeError, ValueError) as exc:
        raise error("canary_pct", str(exc)) from None
    started = _started_at(table.get("stage_started_at"), error)
    raw_stages = table["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise error("stages", f"expected an array of tables [[{prefix}.stages]]")
    stages: list[Stage] = []
    for i, raw in enumerate(raw_stages):
        key = f"stages[{i}]"
        if not isinstance(raw, Mapping):
            raise error(key, f"expected a table, got {raw!r}")
        unknown = sorted(set(raw) - set(STAGE_KEYS))
        if unknown:
            raise error(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(STAGE_KEYS)})")
        for required in ("pct", "min_hours", "max_regression_rate"):
            if required not in raw:
                raise error(f"{key}.{required}", "missing")
        try:
            stages.append(
                Stage(
                    pct=raw["pct"],
                    min_hours=raw["min_hours"],
                    max_regression_rate=raw["max_regression_rate"],
                    max_error_rate=raw.get("max_error_rate"),
                )
            )
        except (TypeError, ValueError) as exc:
            raise error(key, str(exc)) from None
    try:
        _check_stages(stages)
    except ValueError as exc:
        raise error("stages", str(exc)) from None
    min_requests = table.get("min_requests", DEFAULT_MIN_REQUESTS)
    try:
        return CanaryConfig(
            production=strings["production"],
            candidate=strings["candidate"],
            experiment_id=strings["experiment_id"],
            canary_pct=table["canary_pct"],
            stages=tuple(stages),
            stage_started_at=started,
            min_requests=min_requests,
            path=path,
        )
    except (TypeError, ValueError) as exc:
        raise error("", str(exc)) from None


def _started_at(value: object, error: Callable[[str, str], CanaryConfigError]) -> datetime | None:
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
    raise error(
        "stage_started_at", f"expected a date-time such as 2026-11-26T09:00:00Z, got {value!r}"
    )
