"""One frozen ``Settings`` object, resolved once from the command line, ini and pyproject.

Every knob has one name: ``--llm-<name>`` on the command line, ``llm_<name>`` in the ini
file (``[tool.pytest.ini_options]``, ``pytest.ini``, ...) and ``<name>`` in
``[tool.llmregress]`` of ``pyproject.toml``. Precedence: command line > ini >
``[tool.llmregress]`` > default. Nothing else in the plugin reads options.
"""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from pytest_llmregress.providers.retries import DEFAULT_RATE_LIMIT_WAIT

CacheMode = Literal["off", "replay", "record", "refresh"]
"""What ``--llm-cache`` does with the response cache (see ``engine/cache.py``)."""
CACHE_MODES: tuple[str, ...] = ("off", "replay", "record", "refresh")

DEFAULT_GOLDEN_FILES = (
    "*golden_cases/*.jsonl",
    "*golden_cases/*.yaml",
    "*golden_cases/*.yml",
)


class SettingsError(Exception):
    """A setting has a value the plugin cannot use; the message says what was expected."""


N = TypeVar("N", int, float)


def _number(
    convert: Callable[[str], N], accept: Callable[[N], bool], expected: str
) -> Callable[[str], N]:
    """A parser for a number option that says what it expected when the value does not fit."""

    def parse(value: str) -> N:
        try:
            number = convert(value)
        except ValueError:
            number = None
        if number is None or not accept(number):  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    return parse


_fraction = _number(float, lambda x: 0.0 <= x <= 1.0, "a number between 0 and 1")
_positive_int = _number(int, lambda x: x >= 1, "a positive integer")
_non_negative_int = _number(int, lambda x: x >= 0, "an integer >= 0")
_positive_float = _number(float, lambda x: 0.0 < x < math.inf, "a number of seconds > 0")
_dollars = _number(float, lambda x: 0.0 <= x < math.inf, "an amount of US dollars >= 0")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _request_params(value: str | Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters for every call of a kind: ``name=value,...`` (each value read as JSON
    where it parses, else as a string; ``none`` leaves the parameter out), a JSON object, or a
    table in ``[tool.llmregress]``. Checked as a golden case's ``params`` are."""
    from pytest_llmregress.cases.golden import PARAM_NAMES, check_param
    from pytest_llmregress.core.validation import did_you_mean

    raw: object = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"invalid JSON object: {exc}") from None
        else:
            raw = dict(_assignment(part) for part in text.split(",") if part.strip())
    if not isinstance(raw, Mapping):
        raise argparse.ArgumentTypeError(f"expected name=value,... or a JSON object, got {raw!r}")
    params: dict[str, Any] = {}
    for name, item in raw.items():
        if name not in PARAM_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown parameter {name!r} (expected one of: {', '.join(PARAM_NAMES)})"
                f"{did_you_mean(str(name), PARAM_NAMES)}"
            )
        if isinstance(item, str) and item.lower() in ("none", "null") and name != "stop":
            item = None  # a table has no null: the word leaves a default out, as on the CLI
        problem = None if item is None else check_param(name, item)
        if problem:
            raise argparse.ArgumentTypeError(f"{name}: {problem}")
        params[name] = item
    return params


def _assignment(part: str) -> tuple[str, Any]:
    name, sep, text = part.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected name=value, got {part.strip()!r}")
    text = text.strip()
    if text.lower() in ("none", "null"):
        return name.strip(), None
    try:
        return name.strip(), json.loads(text)
    except ValueError:
        return name.strip(), text


def _openai_extra_params(value: str | Sequence[str]) -> tuple[str, ...]:
    from pytest_llmregress.providers.registry import OPENAI_EXTRA_PARAMS

    names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    for name in names:
        if name not in OPENAI_EXTRA_PARAMS:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a parameter the OpenAI API lacks (those: "
                f"{', '.join(OPENAI_EXTRA_PARAMS)}); the others are always sent"
            )
    return tuple(dict.fromkeys(names))


def format_value(value: Any) -> str:
    """A setting's value as it is written on the command line (the header's rerun line)."""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={'none' if v is None else json.dumps(v)}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _shard(value: str) -> str:
    """``I/N``: shard I (1-based) of N, kept as written (``shard_of`` reads it)."""
    shard_of(value)
    return value.strip()


def shard_of(value: str) -> tuple[int, int]:
    """``"2/4"`` as ``(2, 4)``; anything else is an ``ArgumentTypeError`` saying why."""
    index, sep, count = value.strip().partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(
            f"expected I/N with 1 <= I <= N (shard I of N, e.g. 2/4), got {value!r}"
        )
    return i, n


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return value


@dataclass(frozen=True)
class Option:
    """One knob: its name (without prefix), parser, default, metavar and help text."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    cli: bool = True  # list-valued knobs live in ini / pyproject only
    switch: bool = False  # a flag without a value on the command line (--llm-x)
    table: bool = False  # [tool.llmregress] may also give it as a table or a list

    @property
    def flag(self) -> str:
        return "--llm-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "llm_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        _text,
        None,
        "model under test, e.g. claude-sonnet-4-6 or openai:gpt-5.5-2026-04-23; "
        "without it golden cases are skipped",
        "ID",
    ),
    Option(
        "judge_model",
        _text,
        None,
        "model that judges outputs against references; pick another "
        "family than the candidate (self-preference bias). Several, comma-separated, make a "
        "panel (--llm-judge-panel)",
        "ID[,ID...]",
    ),
    Option(
        "judge_panel",
        _choice("mean", "majority"),
        "mean",
        "how a panel of judges decides a case: mean (the mean of the judges' scores against "
        "the threshold) or majority (more than half of the judges pass it; default mean)",
        "mean|majority",
    ),
    Option(
        "judge_repeat",
        _positive_int,
        1,
        "judge each output this many times (each its own cache entry) and use the mean; the "
        "summary tells the judge's noise apart from the model's (default 1)",
        "J",
    ),
    Option(
        "judge_order_sample",
        _fraction,
        0.0,
        "share of judged cases (a stable choice by case id) also judged with the candidate "
        "shown before the reference; the summary reports how often the verdict changed "
        "(position bias; default 0)",
        "SHARE",
    ),
    Option(
        "calibration",
        _text,
        "golden_cases/judge-calibration.json",
        "the judge calibrations of `llmregress judge calibrate`, relative to rootdir; the "
        "summary states the judge's (default golden_cases/judge-calibration.json)",
        "PATH",
    ),
    Option(
        "min_pass_rate",
        _fraction,
        1.0,
        "fail the session when the golden pass rate is below this "
        "(0..1, default 1.0: every case must pass)",
        "RATE",
    ),
    Option(
        "max_error_rate",
        _fraction,
        0.0,
        "fail the session when more than this share of golden "
        "cases end in an error (failed model or judge call; default 0)",
        "RATE",
    ),
    Option(
        "repeat",
        _positive_int,
        1,
        "run each golden case K times (each repeat its own cache entry); per case passes out "
        "of K, pass^K, pass@K and flakiness; the gate as --llm-gate says (default 1)",
        "K",
    ),
    Option(
        "gate",
        _choice("mean", "all"),
        "mean",
        "with --llm-repeat, the pass rate the gate reads: mean (the mean over cases of each "
        "case's share of passing repeats) or all (the share of cases whose every repeat "
        "passed, pass^K; default mean)",
        "mean|all",
    ),
    Option(
        "concurrency",
        _positive_int,
        32,
        "candidate model calls in flight at once, in total across xdist workers; halves on "
        "429, timeouts and queueing, and recovers (default 32: measured in benchmarks.md)",
        "N",
    ),
    Option(
        "judge_concurrency",
        _positive_int,
        32,
        "judge calls in flight at once, in total across xdist workers; backs off like "
        "--llm-concurrency (default 32)",
        "N",
    ),
    Option(
        "params",
        _request_params,
        {},
        "request parameters for every candidate call, under a case's own params, e.g. "
        "temperature=0,max_tokens=512 (default: none, the server's own sampling)",
        "NAME=VALUE,...",
        table=True,
    ),
    Option(
        "judge_params",
        _request_params,
        {},
        "request parameters for every judge call, over the default temperature=0 "
        "(temperature=none sends none); a parameter a model refuses is dropped for it, once",
        "NAME=VALUE,...",
        table=True,
    ),
    Option(
        "openai_extra_params",
        _openai_extra_params,
        (),
        "parameters the OpenAI API does not take but a compatible server does (vLLM, llama.cpp: "
        "top_k), sent as they are; without it a golden case setting one is refused at load",
        "NAME,...",
        table=True,
    ),
    Option(
        "timeout",
        _positive_float,
        60.0,
        "seconds one model call may take before it is retried (default 60)",
        "SECONDS",
    ),
    Option(
        "retries",
        _non_negative_int,
        3,
        "retries of a call that failed for a transient reason (5xx, 529, timeouts, lost "
        "connections; default 3). Rate limits are waited out instead: --llm-rate-limit-wait",
        "N",
    ),
    Option(
        "rate_limit_wait",
        _positive_float,
        DEFAULT_RATE_LIMIT_WAIT,
        "seconds one call may spend waiting out rate limits (429), in total: each wait is the "
        "server's retry-after plus jitter, and new calls are held back meanwhile (default 300)",
        "SECONDS",
    ),
    Option(
        "case_deadline",
        _positive_float,
        None,
        "seconds one case (model and judge calls, retries included) may take before it is an "
        "error (default: none)",
        "SECONDS",
    ),
    Option(
        "cache",
        _choice(*CACHE_MODES),
        "off",
        "candidate reply cache: off; replay (cached replies only, no network); record (use and "
        "fill); refresh (call and overwrite). Judge verdicts are cached unless "
        "--llm-judge-cache=off",
        "MODE",
    ),
    Option(
        "judge_cache", _choice("on", "off"), "on", "cache judge verdicts (default on)", "on|off"
    ),
    Option(
        "cache_dir",
        _text,
        ".llmregress/cache",
        "where the cache lives, relative to rootdir (default .llmregress/cache)",
        "DIR",
    ),
    Option(
        "resume",
        _text,
        None,
        "results file of an interrupted run: run only the cases it lacks and write the complete "
        "results there",
        "PATH",
    ),
    Option(
        "batch",
        _boolean,
        False,
        "send the golden cases' candidate calls, then their judge calls, through the "
        "providers' Batch APIs (half price, results within 24 h); with --llm-report the batch "
        "ids are journaled the moment they exist, so --llm-resume polls the same batches",
        switch=True,
    ),
    Option(
        "batch_poll",
        _positive_float,
        10.0,
        "seconds before the first poll of a batch; each later wait is 1.5 times longer, up to "
        "5 minutes (default 10)",
        "SECONDS",
    ),
    Option(
        "batch_failed",
        _choice("error", "online"),
        "error",
        "a batch request that failed or expired: error (an error of its case, the default) or "
        "online (sent again as an ordinary call)",
        "error|online",
    ),
    Option(
        "shard",
        _shard,
        None,
        "run only shard I of N (1-based): a stable share of the golden cases chosen by case id, "
        "for CI matrices; combine the shards' results with `llmregress merge`",
        "I/N",
    ),
    Option(
        "preflight",
        _choice("on", "off"),
        "on",
        "check each model once before any case runs (default on)",
        "on|off",
    ),
    Option("report", _text, None, "write a JSON results file here, as results arrive", "PATH"),
    Option(
        "serve",
        _text,
        None,
        "start the local provider server with this scenario file and send "
        "every model call to it (no API key, no network)",
        "SCENARIO",
    ),
    Option(
        "anthropic_base_url",
        _text,
        None,
        "base URL for Anthropic calls (default: $ANTHROPIC_BASE_URL or the SDK's)",
        "URL",
    ),
    Option(
        "openai_base_url",
        _text,
        None,
        "base URL for OpenAI and OpenAI-compatible calls (default: $OPENAI_BASE_URL or the SDK's)",
        "URL",
    ),
    Option(
        "require_cross_family",
        _boolean,
        False,
        "a judge of the candidate's family (self-preference bias) is an error before any call, "
        "not a warning",
        switch=True,
    ),
    Option(
        "require_pinned",
        _boolean,
        False,
        "an alias, a preview, or a self-hosted model id that no lifecycle entry pins (candidate, "
        "judge, fallback) is an error before any call, not a warning",
        switch=True,
    ),
    Option(
        "retirement_warning_days",
        _non_negative_int,
        60,
        "warn when a model retires within this many days (default 60); a retired model is an "
        "error before any call",
        "DAYS",
    ),
    Option(
        "fallback",
        _boolean,
        False,
        "answer through the candidate's fallback chain from the model config; cases answered "
        "by a fallback are reported apart",
        switch=True,
    ),
    Option(
        "prompts_dir",
        _text,
        "prompts",
        "folder of prompt files, versioned per model, relative to rootdir (default prompts)",
        "DIR",
    ),
    Option(
        "prompt_model",
        _text,
        None,
        "resolve prompts as written for this model instead of the candidate's, to split a "
        "migration into its model change and its prompt change",
        "ID",
    ),
    Option(
        "record",
        _choice("off", "missing", "all"),
        "off",
        "write the model's outputs into golden files as references: missing (fill cases without "
        "one) or all (also replace existing ones); for a run the team has validated",
        "MODE",
    ),
    Option(
        "baseline",
        _text,
        None,
        "results file of an earlier run (e.g. production) to compare this run with, case by case",
        "PATH",
    ),
    Option(
        "compare_model",
        _text,
        None,
        "also run this model (e.g. the production model) on every case and compare, paired; "
        "the same id as --llm-model measures the noise floor (A/A)",
        "ID",
    ),
    Option(
        "max_regression",
        _fraction,
        0.05,
        "fail when the candidate's pass rate is worse than the baseline's by more than this "
        "(0..1, default 0.05 = 5 points) and the difference is significant",
        "RATE",
    ),
    Option(
        "alpha",
        _fraction,
        0.05,
        "significance level of the paired test against the baseline (default 0.05)",
        "ALPHA",
    ),
    Option(
        "markdown",
        _text,
        None,
        "write a markdown summary here (also appended to $GITHUB_STEP_SUMMARY when it is set)",
        "PATH",
    ),
    Option(
        "html",
        _text,
        None,
        "write a self-contained HTML report here (opens offline: filters, search, diffs, "
        "the comparison side by side)",
        "PATH",
    ),
    Option(
        "max_cost",
        _dollars,
        None,
        "a budget in US dollars: no call is sent that could take the spend past it (each call "
        "reserves its input and max_tokens at the model's price); cases not run are reported "
        "and the gate fails (default: none)",
        "USD",
    ),
    Option(
        "history",
        _text,
        None,
        "keep a copy of this run's results in this folder, one file per run (drift runs)",
        "DIR",
    ),
    Option(
        "worst",
        _non_negative_int,
        5,
        "how many of the worst cases the summary shows (default 5)",
        "N",
    ),
    Option(
        "golden_files",
        str,
        DEFAULT_GOLDEN_FILES,
        "glob patterns (matched against the path "
        "relative to rootdir) of files collected as golden cases",
        cli=False,
    ),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Every setting of one session, resolved once in ``pytest_configure``.

    No field has a default here: each option's default is in ``OPTIONS`` and nowhere else.
    ``resolve_settings`` gives every field; ``Settings.defaults`` is the table's defaults.
    """

    model: str | None
    judge_model: str | None
    judge_panel: str
    judge_repeat: int
    judge_order_sample: float
    calibration: str
    min_pass_rate: float
    max_error_rate: float
    repeat: int
    gate: str
    concurrency: int
    judge_concurrency: int
    params: Mapping[str, Any]
    judge_params: Mapping[str, Any]
    openai_extra_params: tuple[str, ...]
    timeout: float
    retries: int
    rate_limit_wait: float
    case_deadline: float | None
    cache: CacheMode
    judge_cache: str
    cache_dir: str
    resume: str | None
    batch: bool
    batch_poll: float
    batch_failed: str
    shard: str | None
    preflight: str
    report: str | None
    serve: str | None
    # Not in the repr: a base URL may carry credentials (http://user:key@host).
    anthropic_base_url: str | None = field(repr=False)
    openai_base_url: str | None = field(repr=False)
    require_cross_family: bool
    require_pinned: bool
    retirement_warning_days: int
    fallback: bool
    prompts_dir: str
    prompt_model: str | None
    record: str
    baseline: str | None
    compare_model: str | None
    max_regression: float
    alpha: float
    markdown: str | None
    html: str | None
    max_cost: float | None
    history: str | None
    worst: int
    golden_files: tuple[str, ...]
    # Where each value came from ("cli", "ini", "pyproject", "default"), for the header line.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def defaults(cls, **overrides: Any) -> Settings:
        """Every option at its default from ``OPTIONS``, but for ``overrides``."""
        return cls(**{option.name: option.default for option in OPTIONS} | overrides)

    @property
    def judge_models(self) -> tuple[str, ...]:
        """``--llm-judge-model``'s ids: one judge, or a panel (comma-separated)."""
        if not self.judge_model:
            return ()
        return tuple(part.strip() for part in self.judge_model.split(",") if part.strip())

    def explicit(self) -> dict[str, Any]:
        """The settings that were not left at their default."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "sources" and self.sources.get(f.name, "default") != "default"
        }


@dataclass(frozen=True)
class RunnerSettings:
    """The runner's slice of ``Settings``: what ``Runner`` needs of the options, sent to the
    runner process as JSON (``to_json``, ``from_json``).

    Built from ``Settings`` by ``of`` alone; ``defaults`` is the option table's defaults (tests
    override a few: ``RunnerSettings.defaults(timeout=10, retries=0)``).
    """

    concurrency: int
    judge_concurrency: int
    timeout: float
    retries: int
    rate_limit_wait: float
    case_deadline: float | None
    cache_mode: CacheMode
    judge_cache: bool
    record: str
    params: Mapping[str, Any]
    judge_params: Mapping[str, Any]
    openai_extra_params: tuple[str, ...]
    repeat: int
    judge_repeat: int
    judge_panel: str
    judge_order_sample: float
    max_cost: float | None
    batch: bool
    batch_poll: float
    batch_failed: str
    batch_journal: str | None  # where batch ids are journaled (the results file's journal dir)
    batch_resume: bool  # read the journal: the run resumes one that may have left batches

    @classmethod
    def of(cls, settings: Settings, *, batch_journal: str | None = None) -> RunnerSettings:
        """The slice of a session's settings; ``batch_journal``: the session's batch journal
        (``--llm-batch`` with a results file)."""
        return cls(
            concurrency=settings.concurrency,
            judge_concurrency=settings.judge_concurrency,
            timeout=settings.timeout,
            retries=settings.retries,
            rate_limit_wait=settings.rate_limit_wait,
            case_deadline=settings.case_deadline,
            cache_mode=settings.cache,
            judge_cache=settings.judge_cache == "on",
            record=settings.record,
            params=dict(settings.params),
            judge_params=dict(settings.judge_params),
            openai_extra_params=tuple(settings.openai_extra_params),
            repeat=settings.repeat,
            judge_repeat=settings.judge_repeat,
            judge_panel=settings.judge_panel,
            judge_order_sample=settings.judge_order_sample,
            max_cost=settings.max_cost,
            batch=settings.batch,
            batch_poll=settings.batch_poll,
            batch_failed=settings.batch_failed,
            batch_journal=batch_journal,
            batch_resume=settings.resume is not None,
        )

    @classmethod
    def defaults(cls, **overrides: Any) -> RunnerSettings:
        """The slice of ``Settings.defaults()``, but for ``overrides`` (by this slice's names)."""
        return replace(cls.of(Settings.defaults()), **overrides)

    def to_json(self) -> dict[str, Any]:
        """JSON-able, for the runner process's configuration line."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(
            params=dict(self.params),
            judge_params=dict(self.judge_params),
            openai_extra_params=list(self.openai_extra_params),
        )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunnerSettings:
        """The slice ``to_json`` wrote."""
        return cls(**{**data, "openai_extra_params": tuple(data["openai_extra_params"])})


def read_pyproject_section(path: Path | None) -> dict[str, Any]:
    """Return ``[tool.llmregress]`` of a pyproject.toml, or {} when there is none."""
    if path is None or not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    section = data.get("tool", {}).get("llmregress", {})
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [tool.llmregress] must be a table")
    return section


def _coerce(option: Option, raw: Any, where: str) -> Any:
    """Turn an ini / pyproject value into the option's type, with a clear error."""
    if option.name == "golden_files":
        items: Sequence[Any] = raw.split() if isinstance(raw, str) else raw
        if not isinstance(items, Sequence) or not all(isinstance(i, str) for i in items):
            raise SettingsError(f"{where}: expected a list of glob patterns, got {raw!r}")
        return tuple(items)
    if option.name == "judge_model" and isinstance(raw, list):  # a panel, as a TOML list
        if not raw or not all(isinstance(i, str) and i.strip() for i in raw):
            raise SettingsError(f"{where}: expected a list of model ids, got {raw!r}")
        return ",".join(raw)
    if option.table and isinstance(raw, (list, dict)):
        try:
            return option.parse(raw)  # type: ignore[arg-type]  # a table parser takes both
        except argparse.ArgumentTypeError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    if isinstance(raw, (bool, list, dict)):
        raise SettingsError(f"{where}: {option.help.split(';')[0]}: got {raw!r}")
    try:
        return option.parse(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise SettingsError(f"{where}: {exc}") from None


def resolve_settings(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    pyproject: Mapping[str, Any],
    pyproject_path: str = "pyproject.toml",
) -> Settings:
    """Merge the three sources (CLI > ini > pyproject > default) into one ``Settings``.

    ``cli`` and ``ini`` map option names to values or None when not given; ``pyproject`` is the
    raw ``[tool.llmregress]`` table, whose unknown keys are an error.
    """
    known_tables = {"models", "lifecycle", "prices"}  # read by pytest_llmregress.models
    unknown = sorted(set(pyproject) - set(OPTIONS_BY_NAME) - known_tables)
    if unknown:
        raise SettingsError(
            f"{pyproject_path}: unknown key(s) in [tool.llmregress]: {', '.join(unknown)} "
            f"(known: {', '.join(OPTIONS_BY_NAME)})"
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if cli.get(option.name) is not None:
            values[option.name], sources[option.name] = cli[option.name], "cli"
        elif ini.get(option.name) not in (None, "", []):
            where = f"ini option {option.ini}"
            values[option.name] = _coerce(option, ini[option.name], where)
            sources[option.name] = "ini"
        elif option.name in pyproject:
            where = f"{pyproject_path} [tool.llmregress] {option.name}"
            values[option.name] = _coerce(option, pyproject[option.name], where)
            sources[option.name] = "pyproject"
        else:
            values[option.name], sources[option.name] = option.default, "default"
    return Settings(**values, sources=sources)
