"""Scenario schema and loader for the local provider server.

A *scenario* tells :class:`pytest_llmregress.testing.server.LocalProviderServer` which model ids
exist, what they answer, how slow they are and which faults to inject. It is written as YAML or
JSON (or given as a ``dict`` in Python, with the same keys) and validated strictly: an unknown key,
a wrong type or an impossible value raises :class:`ScenarioError` naming the file and the key path
(for example ``models.claude-sonnet-4-6.errors[1].status``), so a typo never silently turns into
default behaviour.

This module uses the standard library and the validation kit (``core/validation.py``, which
names the type of a bad value as every checker does); PyYAML is imported lazily, only when a
YAML file is read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pytest_llmregress.core.validation import type_name

__all__ = [
    "DEFAULT_REPLY",
    "DEFAULT_SCENARIO",
    "WILDCARD",
    "AnswerRule",
    "BatchesConfig",
    "DriftConfig",
    "ErrorRule",
    "JudgeNoise",
    "ModelConfig",
    "PassRateRule",
    "SamplingConfig",
    "Scenario",
    "ScenarioError",
    "ServerConfig",
    "load_answers",
    "load_scenario",
    "parse_model_changes",
    "parse_scenario",
]

WILDCARD = "*"
"""Model key that configures every model id not listed explicitly."""

DEFAULT_REPLY = "This is a canned reply from the llmregress local server."
"""What a model answers when no rule matches and no ``default_reply`` is configured."""

DEFAULT_DRIFT_REPLY = "I am not sure."
"""What a drifted prompt is answered with when the drift block gives no ``reply``."""

DEFAULT_SAMPLED_REPLY = "Sorry, I lost track of the question."
"""What a sampling model answers on the draws that miss, when the sampling block gives no
``reply``."""

DEFAULT_SCENARIO: dict[str, Any] = {"models": {WILDCARD: {"default_reply": DEFAULT_REPLY}}}
"""The scenario used when none is given: every model id exists and answers a fixed sentence."""

ERROR_SHAPES = ("provider", "detail", "detail_list", "error_string", "message", "text")
"""How an error body is written: the provider's JSON (``provider``), FastAPI's
``{"detail": "..."}`` (``detail``) or validation list ``{"detail": [{"loc", "msg", "type"}]}``
(``detail_list``), ``{"error": "..."}`` (``error_string``), ``{"message": "..."}``
(``message``), or the message as plain text (``text``)."""

APPLIES_TO = ("online", "batch", "both")
"""Which requests an error rule fires on: online requests (the default), the requests of a
batch (Message Batches, OpenAI Batch) or both."""

AUTH_MODES = ("required", "none")
MODELS_ENDPOINT_MODES = ("full", "loaded", "none")

_T = TypeVar("_T")


class ScenarioError(ValueError):
    """A scenario (or a runtime change to one) is invalid.

    ``source`` is the file (or ``"<dict>"``), ``path`` the dotted key path of the offending value
    (empty for whole-file problems) and ``problem`` what is wrong with it.
    """

    def __init__(self, problem: str, *, source: str | None = None, path: str = "") -> None:
        self.problem = problem
        self.source = source
        self.path = path
        where = ": ".join(part for part in (source, path) if part)
        super().__init__(f"invalid scenario {where}: {problem}" if where else problem)


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerRule:
    """One ``answers`` entry: reply ``reply`` when the last user message matches.

    ``match`` is a case-insensitive substring, ``regex`` a pattern applied with ``re.search``
    (exactly one of the two is set).
    """

    reply: str
    match: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        """Whether this rule applies to the last user message ``text``."""
        if self.match is not None:
            return self.match.casefold() in text.casefold()
        return self.regex is not None and self.regex.search(text) is not None


@dataclass(frozen=True)
class DriftConfig:
    """Degrade a deterministic share of prompts to ``reply``.

    Which prompts drift is decided by hashing ``(seed, snapshot id, prompt)``, so the same prompts
    drift in every run and every process. ``seed`` defaults to the scenario's ``seed``.
    """

    share: float
    seed: int | None = None
    reply: str = DEFAULT_DRIFT_REPLY


@dataclass(frozen=True)
class PassRateRule:
    """One ``sampling.pass_rates`` entry: prompts whose last user message contains ``match``
    (case-insensitive) answer normally with probability ``pass_rate``."""

    match: str
    pass_rate: float


@dataclass(frozen=True)
class SamplingConfig:
    """A model that samples: on a fixed ``share`` of prompts, each request draws whether the
    model gives its normal answer (probability ``pass_rate``, or the first matching rule of
    ``pass_rates``) or ``reply``.

    Which prompts sample is decided by hashing ``(seed, snapshot id, prompt)``, as for drift;
    the n-th request of a sampled prompt by hashing ``(seed, snapshot id, prompt, n)``, so the
    answers of K requests of a prompt are the same multiset whatever order they arrive in.
    ``seed`` defaults to the scenario's ``seed``.
    """

    share: float
    pass_rate: float
    reply: str = DEFAULT_SAMPLED_REPLY
    seed: int | None = None
    pass_rates: tuple[PassRateRule, ...] = ()

    def pass_rate_for(self, text: str) -> float:
        """The pass rate of the prompt ``text``: the first ``pass_rates`` rule whose ``match``
        it contains (casefolded), else ``pass_rate``."""
        folded = text.casefold()
        for rule in self.pass_rates:
            if rule.match.casefold() in folded:
                return rule.pass_rate
        return self.pass_rate


@dataclass(frozen=True)
class JudgeNoise:
    """A judge that is noisy: for a fixed ``share`` of (reference, candidate) pairs, each
    judging of the pair gives the opposite verdict with probability ``flip``.

    Which pairs are noisy is decided by hashing ``(seed, snapshot id, reference, candidate)``;
    the n-th judging of a noisy pair flips when the hash of ``(seed, snapshot id, reference,
    candidate, n)`` falls below ``flip``. ``seed`` defaults to the scenario's ``seed``.
    """

    share: float
    flip: float
    seed: int | None = None


@dataclass(frozen=True)
class ErrorRule:
    """One injected fault, checked in order for every request to the model.

    The rule fires when all its conditions hold: the last user message contains ``match`` (if set),
    the request is among the model's first ``first_n`` requests (if set), and a seeded per-model
    random draw falls below ``share`` (if set). A rule with no condition always fires.
    """

    status: int
    share: float | None = None
    first_n: int | None = None
    match: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    quota: bool = False
    message: str | None = None
    type: str | None = None
    code: str | None = None
    latency_ms: float = 0.0
    param: str | None = None
    shape: str | None = None  # one of ERROR_SHAPES; None: the server's error_shape
    applies_to: str = "online"  # one of APPLIES_TO


@dataclass(frozen=True)
class RateLimit:
    """A real rate limit: a token bucket of ``burst`` requests refilled at
    ``requests_per_second``. A request that finds it empty gets a 429 whose ``retry-after``
    is the time until the next token, as providers answer."""

    requests_per_second: float
    burst: int


@dataclass(frozen=True)
class ModelConfig:
    """How one model id (a snapshot, or the ``"*"`` wildcard) behaves.

    ``latency_ms=None`` means "use the scenario default". ``answers_index`` is derived from
    ``answers_from`` when the scenario is loaded (normalized user text -> reference).
    ``structured_output=False`` makes requests for structured output (Anthropic ``tools``,
    ``output_config.format``; OpenAI ``response_format`` JSON) a 400, as some self-hosted
    compatible servers answer. ``slots`` is how many of its requests generate at once (the
    rest queue), ``refuses_params`` the request fields it answers with a 400.
    ``judge_scores``: the value a judge model gives a criterion, by name, instead of the
    similarity (so a test knows a rubric's scores).
    ``sampling``: the model samples (:class:`SamplingConfig`); ``judge_noise``: a judge model
    flips some verdicts (:class:`JudgeNoise`); ``judge_order_bias``: what a judge model adds
    to every criterion when the candidate block comes before the reference block.
    """

    latency_ms: float | None = None
    jitter_ms: float = 0.0
    system_fingerprint: str | None = None
    answers_from: tuple[Path, ...] = ()
    answers_index: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    answers: tuple[AnswerRule, ...] = ()
    default_reply: str = DEFAULT_REPLY
    drift: DriftConfig | None = None
    malformed_share: float = 0.0
    errors: tuple[ErrorRule, ...] = ()
    rate_limit: RateLimit | None = None
    retired: bool = False
    retires_on: _dt.date | None = None
    judge: bool = False
    judge_scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    structured_output: bool = True
    display_name: str | None = None
    created_at: _dt.date | None = None
    slots: int | None = None
    refuses_params: tuple[str, ...] = ()
    sampling: SamplingConfig | None = None
    judge_noise: JudgeNoise | None = None
    judge_order_bias: float = 0.0


@dataclass(frozen=True)
class ServerConfig:
    """How the server as a whole behaves, like one kind of self-hosted server or another.

    ``auth``: ``required`` (a key must be sent) or ``none`` (keys are not looked at).
    ``models_endpoint``: ``full`` (list and retrieve), ``loaded`` (no retrieve route; the list
    holds the models that have answered since the server started, as ``transformers serve``
    does) or ``none`` (no models routes). ``slots``: how many requests generate at once across
    all models (the rest queue). ``accepts_params``: request fields the OpenAI endpoint takes
    besides the API's own. ``error_shape``: how the server's own errors are written.
    ``unknown_model``: the error for a model id that is not configured.
    """

    auth: str = "required"
    models_endpoint: str = "full"
    slots: int | None = None
    accepts_params: tuple[str, ...] = ()
    error_shape: str = "provider"
    unknown_model: ErrorRule | None = None


@dataclass(frozen=True)
class BatchesConfig:
    """How the server's batches (Message Batches, OpenAI Batch) progress.

    A batch ends on its ``polls``-th retrieval, once ``delay_s`` seconds have passed since its
    creation (both must hold), unless the server holds batches. ``expire_after``: a batch
    expires instead of completing, with that many of its requests answered (the first ones, in
    order) and the others expired.
    """

    polls: int = 1
    delay_s: float = 0.0
    expire_after: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole validated scenario: global defaults, aliases and per-model configurations."""

    models: Mapping[str, ModelConfig]
    aliases: Mapping[str, str] = field(default_factory=dict)
    api_key: str | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0
    description: str | None = None
    source: str = "<dict>"
    base_dir: Path = field(default_factory=Path.cwd)
    server: ServerConfig = field(default_factory=ServerConfig)
    batches: BatchesConfig = field(default_factory=BatchesConfig)

    def resolve(self, model_id: str) -> tuple[str, ModelConfig] | None:
        """Resolve a requested model id (or alias) to ``(snapshot id, config)``.

        Returns ``None`` when the id is neither configured nor covered by a wildcard.
        """
        snapshot = self.aliases.get(model_id, model_id)
        config = self.models.get(snapshot)
        if config is None:
            config = self.models.get(WILDCARD)
        return None if config is None else (snapshot, config)


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


class _Ctx:
    """Where we are while validating: the source name and the base dir for relative paths."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def error(self, path: str, problem: str) -> ScenarioError:
        return ScenarioError(problem, source=self.source, path=path)


_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _join(path: str, key: str) -> str:
    """Append a mapping key to a dotted key path, quoting keys that contain dots or spaces."""
    part = key if _SIMPLE_KEY.match(key) or key == WILDCARD else json.dumps(key)
    if not path:
        return part
    return f"{path}.{part}" if _SIMPLE_KEY.match(key) or key == WILDCARD else f"{path}[{part}]"


def _mapping(ctx: _Ctx, path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping, got {type_name(value, article=True)}")
    for key in value:
        if not isinstance(key, str):
            raise ctx.error(path, f"keys must be strings, got {key!r}")
    return value


def _check_keys(ctx: _Ctx, path: str, value: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed_set = set(allowed)
    for key in value:
        if key not in allowed_set:
            hint = ", ".join(sorted(allowed_set))
            raise ctx.error(_join(path, key), f"unknown key {key!r} (allowed here: {hint})")


def _number(ctx: _Ctx, path: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(path, f"expected a number, got {type_name(value, article=True)}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ctx.error(path, f"must be a finite number >= {minimum:g}, got {value!r}")
    return number


def _integer(ctx: _Ctx, path: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(path, f"expected an integer, got {type_name(value, article=True)}")
    if minimum is not None and value < minimum:
        raise ctx.error(path, f"must be >= {minimum}, got {value}")
    return value


def _share(ctx: _Ctx, path: str, value: object) -> float:
    number = _number(ctx, path, value)
    if number > 1.0:
        raise ctx.error(path, f"a share must be between 0 and 1, got {value!r}")
    return number


def _string(ctx: _Ctx, path: str, value: object) -> str:
    if not isinstance(value, str):
        raise ctx.error(path, f"expected a string, got {type_name(value, article=True)}")
    return value


def _opt_string(ctx: _Ctx, path: str, value: object) -> str | None:
    return None if value is None else _string(ctx, path, value)


def _boolean(ctx: _Ctx, path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, f"expected true or false, got {type_name(value, article=True)}")
    return value


def _date(ctx: _Ctx, path: str, value: object) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ctx.error(path, f"expected a date like 2027-01-14, got {value!r}")


def _list(ctx: _Ctx, path: str, value: object) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ctx.error(path, f"expected a list, got {type_name(value, article=True)}")
    return list(value)


def _names(ctx: _Ctx, path: str, value: object) -> tuple[str, ...]:
    """A list of request field names (a single name is accepted as a list of one)."""
    items = [value] if isinstance(value, str) else _list(ctx, path, value)
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ctx.error(f"{path}[{index}]", f"expected a field name, got {item!r}")
    return tuple(items)


def _choice(choices: tuple[str, ...]) -> Callable[[_Ctx, str, object], str]:
    def parse(ctx: _Ctx, path: str, value: object) -> str:
        if value not in choices:
            raise ctx.error(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return parse


def _slots(ctx: _Ctx, path: str, value: object) -> int | None:
    return None if value is None else _integer(ctx, path, value, minimum=1)


# ---------------------------------------------------------------------------------------------
# Parsing the parts
# ---------------------------------------------------------------------------------------------

_ANSWER_KEYS = ("match", "regex", "reply")
_DRIFT_KEYS = ("share", "seed", "reply")
_SAMPLING_KEYS = ("share", "pass_rate", "reply", "seed", "pass_rates")
_PASS_RATE_KEYS = ("match", "pass_rate")
_JUDGE_NOISE_KEYS = ("share", "flip", "seed")
_ERROR_KEYS = (
    "status",
    "share",
    "first_n",
    "match",
    "retry_after",
    "retry_after_ms",
    "quota",
    "message",
    "type",
    "code",
    "latency_ms",
    "param",
    "shape",
    "applies_to",
)
_UNKNOWN_MODEL_KEYS = ("status", "message", "type", "code", "param", "shape")
_RATE_LIMIT_KEYS = ("requests_per_second", "burst")
_TOP_KEYS = (
    "api_key",
    "latency_ms",
    "jitter_ms",
    "seed",
    "aliases",
    "models",
    "description",
    "server",
    "batches",
)
_BATCHES_KEYS = ("polls", "delay_s", "expire_after")


def _parse_answer(ctx: _Ctx, path: str, value: object) -> AnswerRule:
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _ANSWER_KEYS)
    if "reply" not in raw:
        raise ctx.error(_join(path, "reply"), "missing required key 'reply'")
    reply = _string(ctx, _join(path, "reply"), raw["reply"])
    has_match, has_regex = "match" in raw, "regex" in raw
    if has_match == has_regex:
        raise ctx.error(path, "give exactly one of 'match' (substring) or 'regex'")
    if has_match:
        return AnswerRule(reply=reply, match=_string(ctx, _join(path, "match"), raw["match"]))
    pattern = _string(ctx, _join(path, "regex"), raw["regex"])
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ctx.error(_join(path, "regex"), f"invalid regular expression: {exc}") from None
    return AnswerRule(reply=reply, regex=compiled)


def _parse_rate_limit(ctx: _Ctx, path: str, value: object) -> RateLimit | None:
    if value is None:
        return None
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _RATE_LIMIT_KEYS)
    if "requests_per_second" not in raw:
        raise ctx.error(
            _join(path, "requests_per_second"), "missing required key 'requests_per_second'"
        )
    rate = _number(ctx, _join(path, "requests_per_second"), raw["requests_per_second"])
    if rate <= 0:
        raise ctx.error(_join(path, "requests_per_second"), f"must be > 0, got {rate:g}")
    burst = raw.get("burst")
    return RateLimit(
        requests_per_second=rate,
        burst=max(1, math.ceil(rate))
        if burst is None
        else _integer(ctx, _join(path, "burst"), burst, minimum=1),
    )


def _parse_drift(ctx: _Ctx, path: str, value: object) -> DriftConfig | None:
    if value is None:
        return None
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _DRIFT_KEYS)
    if "share" not in raw:
        raise ctx.error(_join(path, "share"), "missing required key 'share'")
    return DriftConfig(
        share=_share(ctx, _join(path, "share"), raw["share"]),
        seed=None if raw.get("seed") is None else _integer(ctx, _join(path, "seed"), raw["seed"]),
        reply=_string(ctx, _join(path, "reply"), raw.get("reply", DEFAULT_DRIFT_REPLY)),
    )


def _required(ctx: _Ctx, path: str, raw: Mapping[str, Any], key: str) -> object:
    if key not in raw:
        raise ctx.error(_join(path, key), f"missing required key {key!r}")
    return raw[key]


def _opt_seed(ctx: _Ctx, path: str, raw: Mapping[str, Any]) -> int | None:
    seed = raw.get("seed")
    return None if seed is None else _integer(ctx, _join(path, "seed"), seed)


def _parse_pass_rate(ctx: _Ctx, path: str, value: object) -> PassRateRule:
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _PASS_RATE_KEYS)
    return PassRateRule(
        match=_string(ctx, _join(path, "match"), _required(ctx, path, raw, "match")),
        pass_rate=_share(ctx, _join(path, "pass_rate"), _required(ctx, path, raw, "pass_rate")),
    )


def _parse_sampling(ctx: _Ctx, path: str, value: object) -> SamplingConfig | None:
    if value is None:
        return None
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _SAMPLING_KEYS)
    rules_path = _join(path, "pass_rates")
    rules = raw.get("pass_rates")
    return SamplingConfig(
        share=_share(ctx, _join(path, "share"), _required(ctx, path, raw, "share")),
        pass_rate=_share(ctx, _join(path, "pass_rate"), _required(ctx, path, raw, "pass_rate")),
        reply=_string(ctx, _join(path, "reply"), raw.get("reply", DEFAULT_SAMPLED_REPLY)),
        seed=_opt_seed(ctx, path, raw),
        pass_rates=()
        if rules is None
        else tuple(
            _parse_pass_rate(ctx, f"{rules_path}[{index}]", item)
            for index, item in enumerate(_list(ctx, rules_path, rules))
        ),
    )


def _parse_judge_noise(ctx: _Ctx, path: str, value: object) -> JudgeNoise | None:
    if value is None:
        return None
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, _JUDGE_NOISE_KEYS)
    return JudgeNoise(
        share=_share(ctx, _join(path, "share"), _required(ctx, path, raw, "share")),
        flip=_share(ctx, _join(path, "flip"), _required(ctx, path, raw, "flip")),
        seed=_opt_seed(ctx, path, raw),
    )


def _order_bias(ctx: _Ctx, path: str, value: object) -> float:
    number = _number(ctx, path, value, minimum=-1.0)
    if number > 1.0:
        raise ctx.error(path, f"a bias must be between -1 and 1, got {value!r}")
    return number


def _parse_error(
    ctx: _Ctx,
    path: str,
    value: object,
    *,
    keys: tuple[str, ...] = _ERROR_KEYS,
    default_status: int | None = None,
) -> ErrorRule:
    raw = _mapping(ctx, path, value)
    _check_keys(ctx, path, raw, keys)
    if "status" not in raw and default_status is None:
        raise ctx.error(_join(path, "status"), "missing required key 'status'")
    status = _integer(ctx, _join(path, "status"), raw.get("status", default_status))
    if not 400 <= status <= 599:
        raise ctx.error(
            _join(path, "status"), f"unknown status {status} (must be an HTTP error status 400-599)"
        )

    def opt(key: str, parse: Callable[[_Ctx, str, object], _T]) -> _T | None:
        return None if raw.get(key) is None else parse(ctx, _join(path, key), raw[key])

    return ErrorRule(
        status=status,
        share=opt("share", _share),
        first_n=opt("first_n", lambda c, p, v: _integer(c, p, v, minimum=0)),
        match=opt("match", _string),
        retry_after=opt("retry_after", _number),
        retry_after_ms=opt("retry_after_ms", _number),
        quota=bool(opt("quota", _boolean)),
        message=opt("message", _string),
        type=opt("type", _string),
        code=opt("code", _string),
        latency_ms=opt("latency_ms", _number) or 0.0,
        param=opt("param", _string),
        shape=opt("shape", _choice(ERROR_SHAPES)),
        applies_to=opt("applies_to", _choice(APPLIES_TO)) or "online",
    )


def _parse_server(ctx: _Ctx, value: object) -> ServerConfig:
    raw = _mapping(ctx, "server", {} if value is None else value)
    parsers: dict[str, Callable[[_Ctx, str, object], object]] = {
        "auth": _choice(AUTH_MODES),
        "models_endpoint": _choice(MODELS_ENDPOINT_MODES),
        "slots": _slots,
        "accepts_params": _names,
        "error_shape": _choice(ERROR_SHAPES),
        "unknown_model": lambda c, p, v: (
            None
            if v is None
            else _parse_error(c, p, v, keys=_UNKNOWN_MODEL_KEYS, default_status=404)
        ),
    }
    _check_keys(ctx, "server", raw, parsers)
    parsed: dict[str, Any] = {
        key: parsers[key](ctx, _join("server", key), item) for key, item in raw.items()
    }
    return ServerConfig(**parsed)


def _parse_batches(ctx: _Ctx, value: object) -> BatchesConfig:
    raw = _mapping(ctx, "batches", {} if value is None else value)
    _check_keys(ctx, "batches", raw, _BATCHES_KEYS)
    config = BatchesConfig()
    if raw.get("polls") is not None:
        polls = _integer(ctx, "batches.polls", raw["polls"], minimum=1)
        config = dataclasses.replace(config, polls=polls)
    if raw.get("delay_s") is not None:
        delay = _number(ctx, "batches.delay_s", raw["delay_s"])
        config = dataclasses.replace(config, delay_s=delay)
    if raw.get("expire_after") is not None:
        done = _integer(ctx, "batches.expire_after", raw["expire_after"], minimum=0)
        config = dataclasses.replace(config, expire_after=done)
    return config


def _parse_answers_from(ctx: _Ctx, path: str, value: object) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str | os.PathLike) else _list(ctx, path, value)
    paths: list[Path] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        if not isinstance(item, str | os.PathLike):
            raise ctx.error(
                item_path, f"expected a path string, got {type_name(item, article=True)}"
            )
        resolved = (ctx.base_dir / Path(item)).resolve()
        if not resolved.exists():
            raise ctx.error(item_path, f"no such file or directory: {resolved}")
        paths.append(resolved)
    return tuple(paths)


def _judge_scores(ctx: _Ctx, path: str, value: object) -> Mapping[str, float]:
    """``{criterion: 0..1}``: what a judge model gives those criteria whatever it grades."""
    raw = _mapping(ctx, path, {} if value is None else value)
    return {name: _score(ctx, _join(path, name), item) for name, item in raw.items()}


def _score(ctx: _Ctx, path: str, value: object) -> float:
    number = _number(ctx, path, value)
    if number > 1.0:
        raise ctx.error(path, f"a score must be between 0 and 1, got {value!r}")
    return number


def _model_field_parsers() -> dict[str, Callable[[_Ctx, str, object], object]]:
    def tuple_of(
        parse: Callable[[_Ctx, str, object], _T],
    ) -> Callable[[_Ctx, str, object], tuple[_T, ...]]:
        def parse_list(ctx: _Ctx, path: str, value: object) -> tuple[_T, ...]:
            if value is None:
                return ()
            items = _list(ctx, path, value)
            return tuple(parse(ctx, f"{path}[{i}]", item) for i, item in enumerate(items))

        return parse_list

    return {
        "latency_ms": lambda c, p, v: None if v is None else _number(c, p, v),
        "jitter_ms": _number,
        "system_fingerprint": _opt_string,
        "answers_from": _parse_answers_from,
        "answers": tuple_of(_parse_answer),
        "default_reply": _string,
        "drift": _parse_drift,
        "malformed_share": _share,
        "errors": tuple_of(_parse_error),
        "rate_limit": _parse_rate_limit,
        "retired": _boolean,
        "retires_on": _date,
        "judge": _boolean,
        "judge_scores": _judge_scores,
        "structured_output": _boolean,
        "display_name": _opt_string,
        "created_at": _date,
        "slots": _slots,
        "refuses_params": _names,
        "sampling": _parse_sampling,
        "judge_noise": _parse_judge_noise,
        "judge_order_bias": _order_bias,
    }


_MODEL_FIELDS = _model_field_parsers()


def _parse_model_fields(ctx: _Ctx, path: str, value: object) -> dict[str, Any]:
    raw = _mapping(ctx, path, {} if value is None else value)
    _check_keys(ctx, path, raw, _MODEL_FIELDS)
    parsed: dict[str, Any] = {
        key: _MODEL_FIELDS[key](ctx, _join(path, key), item) for key, item in raw.items()
    }
    if "answers_from" in parsed:
        try:
            parsed["answers_index"] = load_answers(parsed["answers_from"])
        except ScenarioError as exc:
            raise ctx.error(_join(path, "answers_from"), exc.problem) from None
    return parsed


def _parse_model(ctx: _Ctx, path: str, value: object) -> ModelConfig:
    return ModelConfig(**_parse_model_fields(ctx, path, value))


def parse_model_changes(
    model_id: str,
    changes: Mapping[str, Any],
    *,
    existing: ModelConfig | None = None,
    base_dir: Path | None = None,
    source: str = "<update>",
) -> ModelConfig:
    """Apply a partial model configuration (same keys as in a scenario) to ``existing``.

    Used by :meth:`LocalProviderServer.update_model` and ``PATCH /_admin/models/<id>``; raises
    :class:`ScenarioError` naming ``models.<id>.<key>`` when a change is invalid.
    """
    ctx = _Ctx(source, base_dir or Path.cwd())
    parsed = _parse_model_fields(ctx, _join("models", model_id), dict(changes))
    return dataclasses.replace(existing or ModelConfig(), **parsed)


def parse_scenario(
    data: object, *, source: str = "<dict>", base_dir: str | os.PathLike[str] | None = None
) -> Scenario:
    """Validate already-decoded scenario data (a mapping) and build a :class:`Scenario`.

    ``base_dir`` anchors relative ``answers_from`` paths (default: the current directory).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    ctx = _Ctx(source, base)
    raw = _mapping(ctx, "", {} if data is None else data)
    _check_keys(ctx, "", raw, _TOP_KEYS)

    models_value = raw.get("models")
    models_raw = _mapping(ctx, "models", {} if models_value is None else models_value)
    models = {
        model_id: _parse_model(ctx, _join("models", model_id), value)
        for model_id, value in models_raw.items()
    }
    aliases_value = raw.get("aliases")
    aliases_raw = _mapping(ctx, "aliases", {} if aliases_value is None else aliases_value)
    aliases: dict[str, str] = {}
    for alias, raw_target in aliases_raw.items():
        alias_path = _join("aliases", alias)
        target = _string(ctx, alias_path, raw_target)

        def fail(problem: str, where: str = alias_path) -> ScenarioError:
            return ctx.error(where, problem)

        _check_alias(models, alias, target, fail)
        aliases[alias] = target

    seed = raw.get("seed")
    server = _parse_server(ctx, raw.get("server"))
    api_key = _opt_string(ctx, "api_key", raw.get("api_key"))
    if api_key is not None and server.auth == "none":
        raise ctx.error("api_key", "server.auth is none, so no key is checked; drop one of the two")
    return Scenario(
        models=models,
        aliases=aliases,
        api_key=api_key,
        latency_ms=_number(ctx, "latency_ms", raw.get("latency_ms") or 0),
        jitter_ms=_number(ctx, "jitter_ms", raw.get("jitter_ms") or 0),
        seed=0 if seed is None else _integer(ctx, "seed", seed),
        description=_opt_string(ctx, "description", raw.get("description")),
        source=source,
        base_dir=base,
        server=server,
        batches=_parse_batches(ctx, raw.get("batches")),
    )


def _check_alias(
    models: Mapping[str, ModelConfig],
    alias: str,
    target: str,
    fail: Callable[[str], ScenarioError],
) -> None:
    """Validate one alias -> target pair against the configured models."""
    if alias == WILDCARD or target == WILDCARD:
        raise fail("the wildcard '*' cannot be used in an alias")
    if alias in models:
        raise fail(f"alias {alias!r} is also configured as a model; pick one")
    if target not in models and WILDCARD not in models:
        known = ", ".join(sorted(m for m in models if m != WILDCARD)) or "none"
        raise fail(f"alias target {target!r} is not a configured model (configured: {known})")


def check_alias(models: Mapping[str, ModelConfig], alias: str, target: str) -> None:
    """Raise :class:`ScenarioError` if ``alias -> target`` is not valid for ``models``."""

    def fail(problem: str) -> ScenarioError:
        return ScenarioError(problem, source="<alias>", path=_join("aliases", alias))

    _check_alias(models, alias, target, fail)


def load_scenario(
    source: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> Scenario:
    """Load a scenario from a file path (YAML or JSON), a mapping, or pass a Scenario through.

    ``None`` gives :data:`DEFAULT_SCENARIO`. Relative ``answers_from`` paths are resolved against
    the scenario file's directory (for mappings: ``base_dir``, default the current directory).
    """
    if isinstance(source, Scenario):
        return source
    if source is None:
        return parse_scenario(DEFAULT_SCENARIO, source="<default>", base_dir=base_dir)
    if isinstance(source, Mapping):
        return parse_scenario(source, source="<dict>", base_dir=base_dir)
    path = Path(source)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            f"cannot read scenario file: {exc.strerror or exc}", source=name
        ) from None
    data = _decode(text, path, name)
    directory = Path(base_dir) if base_dir is not None else path.resolve().parent
    return parse_scenario(data, source=name, base_dir=directory)


def _decode(text: str, path: Path, name: str) -> object:
    """Decode scenario text: JSON for ``.json`` files, YAML (a JSON superset) otherwise."""
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"invalid JSON: {exc}", source=name) from None
    return _load_yaml(text, name)


def _load_yaml(text: str, name: str) -> object:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency of the project
        raise ScenarioError("reading YAML needs PyYAML (pip install pyyaml)", source=name) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", source=name) from None


# ---------------------------------------------------------------------------------------------
# answers_from: golden files -> {normalized user text: reference}
# ---------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace and strip: the key used to match prompts to golden cases."""
    return _WS.sub(" ", text).strip()


def content_text(content: object) -> str:
    """Text of a message ``content``: a string, or the ``text`` parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block["text"]
            for block in content
            if isinstance(block, Mapping) and isinstance(block.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _record_user_text(record: Mapping[str, Any]) -> str | None:
    user = record.get("user")
    if isinstance(user, str):
        return user
    messages = record.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return content_text(message.get("content"))
    return None


def _iter_golden_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix.lower() in {".jsonl", ".yaml", ".yml"}]
        yield from sorted(p for p in found if p.is_file())
    else:
        yield path


def _iter_records(path: Path) -> Iterator[object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in {".yaml", ".yml"}:
        data = _load_yaml(text, str(path))
        if isinstance(data, Mapping):
            data = data.get("cases")
        if data is None:
            return
        if not isinstance(data, list):
            raise ScenarioError(f"{path}: expected a list of cases or a mapping with 'cases'")
        yield from data
        return
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            yield json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{path}:{number}: invalid JSON: {exc.msg}") from None


def load_answers(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Read golden case files and map each case's normalized last user message to its reference.

    Each path is a file or a directory (all ``*.jsonl``, ``*.yaml``, ``*.yml`` inside, recursively,
    in sorted order). JSONL files hold one JSON object per line (blank lines and lines starting
    with ``//`` are skipped); YAML files hold a list of mappings or a mapping with a ``cases`` list.
    Records without a ``reference`` are ignored; non-string references are JSON-encoded.
    """
    index: dict[str, str] = {}
    for root in paths:
        for file in _iter_golden_files(Path(root)):
            for record in _iter_records(file):
                if not isinstance(record, Mapping) or record.get("reference") is None:
                    continue
                user = _record_user_text(record)
                if user is None:
                    continue
                reference = record["reference"]
                if not isinstance(reference, str):
                    reference = json.dumps(reference, ensure_ascii=False)
                index[normalize_text(user)] = reference
    return index
