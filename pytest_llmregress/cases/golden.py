"""Golden cases: the schema of a golden file, its JSONL and YAML loaders, and their validation.

A golden file holds the prompts a model migration must not regress on, each with an optional
recorded reference answer and the scorers that decide whether a new answer is still good enough.
The loaders validate everything up front and report *all* problems of a file at once
(:class:`CaseFileError`), each naming the file, line and field, so a user fixes them in one go.

The format is documented for users in ``docs/golden-files.md``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from pytest_llmregress.core.text import shared
from pytest_llmregress.core.validation import (
    MAX_PROBLEMS,
    Problems,
    ProblemText,
    describe,
    is_int,
    is_number,
    jsonable_problem,
    message_text,
    plain,
    short_repr,
    unknown_key_message,
    yaml_construct,
    yaml_duplicate_keys,
    yaml_key_lines,
    yaml_kind,
    yaml_line,
    yaml_problem,
)
from pytest_llmregress.core.validation import LineMap as _LineMap
from pytest_llmregress.core.validation import Problem as _BaseProblem
from pytest_llmregress.scoring.judge import (
    CRITERION_NAME_RE,
    MAX_CRITERIA,
    RUBRIC_SHORTHAND,
    Criterion,
    Rubric,
)
from pytest_llmregress.scoring.registry import ScorerSpec, active_scorers

if TYPE_CHECKING:
    import yaml

__all__ = [
    "CASE_FIELDS",
    "DEFAULT_THRESHOLD",
    "GOLDEN_SUFFIXES",
    "MAX_ALIAS_CHARACTERS",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_SIZE",
    "MAX_PROBLEMS",
    "MESSAGE_KEYS",
    "MESSAGE_ROLES",
    "PARAM_NAMES",
    "PARAM_RULES",
    "PROMPT_KEYS",
    "RUBRIC_KEYS",
    "YAML_SECTIONS",
    "CaseFileError",
    "GoldenCase",
    "Message",
    "Problem",
    "PromptRef",
    "ScorerSpec",
    "load_cases",
    "parse_jsonl",
    "parse_yaml",
]

GOLDEN_SUFFIXES: Final = (".jsonl", ".yaml", ".yml")
"""File suffixes that :func:`load_cases` understands."""

DEFAULT_THRESHOLD: Final = 0.85
"""Pass mark of a case that sets no ``threshold``."""

CASE_FIELDS: Final = (
    "id",
    "system",
    "prompt",
    "user",
    "messages",
    "reference",
    "threshold",
    "scorers",
    "rubric",
    "tags",
    "params",
    "metadata",
)
"""Every field a case mapping may have, in documentation order."""

DEFAULTS_FIELDS: Final = (
    "system",
    "prompt",
    "threshold",
    "scorers",
    "rubric",
    "tags",
    "params",
    "metadata",
)
"""Fields that the ``defaults`` block of a YAML file may set."""


@dataclass(frozen=True)
class ParamRule:
    """What a request parameter takes: ``kind`` ``integer`` or ``number`` within ``minimum``
    and ``maximum`` (None: no bound), or ``stop`` (a non-empty string or a non-empty list of
    them). :func:`check_param` applies it, the JSON Schema (``cases/json_schema.py``) states it.
    """

    kind: Literal["integer", "number", "stop"]
    minimum: int | None = None
    maximum: int | None = None


PARAM_RULES: Final[Mapping[str, ParamRule]] = MappingProxyType(
    {
        "max_tokens": ParamRule("integer", minimum=1),
        "temperature": ParamRule("number", minimum=0, maximum=2),
        "top_p": ParamRule("number", minimum=0, maximum=1),
        "top_k": ParamRule("integer", minimum=1),
        "stop": ParamRule("stop"),
        "seed": ParamRule("integer"),
    }
)
"""Request parameters a case may set in ``params``, and what each takes."""

PARAM_NAMES: Final = tuple(PARAM_RULES)
"""Request parameters a case may set in ``params``."""

MESSAGE_ROLES: Final = ("user", "assistant")
"""The roles of a case's ``messages`` (the system prompt is the ``system`` field)."""

MESSAGE_KEYS: Final = ("role", "content")
"""The keys of one message."""

PROMPT_KEYS: Final = ("task", "vars")
"""The keys of a ``prompt`` mapping."""

RUBRIC_KEYS: Final = ("name", "description", "weight")
"""The keys of one criterion of a ``rubric`` list (``weight`` optional, default 1)."""

YAML_SECTIONS: Final = ("defaults", "cases")
"""The keys of a YAML golden file that is a mapping (``cases`` required)."""

MAX_ID_LENGTH: Final = 200

MAX_FILE_SIZE: Final = 200 * 1024 * 1024
"""A golden file larger than this many bytes is refused: split it. (A 65 MB file loads in about
3 s as JSONL and 10 s as YAML; a runaway file of gigabytes would take minutes and the memory.)"""

MAX_DEPTH: Final = 100
"""Lists and mappings nest at most this many levels, counted from the top of a YAML document or a
JSONL line, what aliases stand for included. Deeper data would overflow the stack of the parsers
and of every function that walks it."""

MAX_ALIAS_NODES: Final = 1_000_000
"""What the aliases of a YAML file may add to its data: at most this many nodes (scalars, lists,
mappings), or the file's length in characters if that is larger. Aliases share data when loaded,
but every walk (validation, reports, the request) expands them: a "billion laughs" file of 500
bytes stood for gigabytes."""

MAX_ALIAS_CHARACTERS: Final = 50_000_000
"""...and at most this many characters of scalars, or the file's length if that is larger (a
string aliased a million times is sent a million times)."""

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Prompt task names follow the case id rule; variable names are identifiers (``{policy}``).
_TASK_RE: Final = _ID_RE
_VAR_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TAG_KEYWORDS: Final = frozenset({"and", "or", "not"})
# Tags become pytest markers; these names would change how pytest runs the test.
_RESERVED_TAGS: Final = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings"}
)


# --------------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One turn of a conversation sent to the model."""

    role: Literal["user", "assistant"]
    content: str


PromptValue = str | int | float
"""A value of a prompt variable: text, or a number rendered with ``str()``."""


@dataclass(frozen=True)
class PromptRef:
    """A case's system prompt by reference: a task of the prompt library and its variables.

    Which version of the task's prompt is used depends on the model; see
    :func:`pytest_llmregress.prompts.library.resolve_system`. ``vars`` is read-only.
    """

    task: str
    vars: Mapping[str, PromptValue] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not isinstance(self.vars, MappingProxyType):
            object.__setattr__(self, "vars", MappingProxyType(dict(self.vars)))

    def __hash__(self) -> int:
        return hash((self.task, tuple(sorted(self.vars.items()))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able ``{"task": ..., "vars": {...}}``."""
        return {"task": self.task, "vars": dict(self.vars)}


# What most cases have, held once rather than once per case (thousands of cases are read).
_NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})
_JUDGE_ONLY: Final = (ScorerSpec("judge"),)


def _default_scorers() -> tuple[ScorerSpec, ...]:
    return _JUDGE_ONLY


@dataclass(frozen=True)
class GoldenCase:
    """One validated golden case: a conversation, its recorded reference and how to score it."""

    id: str
    messages: tuple[Message, ...]
    system: str | None = None
    """The literal system prompt; None when the case has none or uses :attr:`prompt`."""
    prompt: PromptRef | None = field(default=None, kw_only=True)
    """The prompt task the system prompt is rendered from, per model (instead of ``system``)."""
    reference: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    scorers: tuple[ScorerSpec, ...] = field(default_factory=_default_scorers)
    rubric: Rubric = ()
    """The judge's criteria for this case; empty: accuracy, completeness and format."""
    tags: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    path: str = ""
    line: int = 0
    index: int = 0

    def __post_init__(self) -> None:
        for name in ("params", "metadata"):
            value = getattr(self, name)
            if not value:
                object.__setattr__(self, name, _NOTHING)
            elif not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def __hash__(self) -> int:
        return hash((self.path, self.index, self.id))

    @property
    def user(self) -> str:
        """Text of the last user message (the prompt under test)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    @property
    def needs_judge(self) -> bool:
        """Whether any scorer of this case is the LLM judge (so a judge model must be set up)."""
        return any(spec.name == "judge" for spec in self.scorers)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field, for reports (``rubric`` only when it has one)."""
        data = {
            "id": self.id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "system": self.system,
            "prompt": self.prompt.to_dict() if self.prompt is not None else None,
            "reference": self.reference,
            "threshold": self.threshold,
            "scorers": [spec.to_dict() for spec in self.scorers],
            "tags": list(self.tags),
            "params": plain(self.params),
            "metadata": plain(self.metadata),
            "path": self.path,
            "line": self.line,
            "index": self.index,
        }
        if self.rubric:
            data["rubric"] = [criterion.to_dict() for criterion in self.rubric]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GoldenCase:
        """The case ``to_dict`` wrote (how cases travel to the runner process)."""
        prompt = data["prompt"]
        return cls(
            id=data["id"],
            messages=tuple(Message(m["role"], m["content"]) for m in data["messages"]),
            system=data["system"],
            prompt=PromptRef(prompt["task"], prompt["vars"]) if prompt is not None else None,
            reference=data["reference"],
            threshold=data["threshold"],
            scorers=tuple(ScorerSpec.from_dict(spec) for spec in data["scorers"]),
            rubric=tuple(Criterion.from_dict(c) for c in data.get("rubric", ())),
            tags=tuple(data["tags"]),
            params={name: _param_value(value) for name, value in data["params"].items()},
            metadata=data["metadata"],
            path=data["path"],
            line=data["line"],
            index=data["index"],
        )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem(_BaseProblem):
    """One thing wrong in a golden file; ``line`` is 1-based, ``field`` a path like ``tags[2]``,
    ``subject`` the id of the case it belongs to (:class:`pytest_llmregress.core.validation.
    Problem`); ``format(path)`` writes ``path:line: case 'id': field 'name': message``."""

    @property
    def case_id(self) -> str | None:
        """The id of the case the problem belongs to, when known."""
        return self.subject


class CaseFileError(Exception):
    """All problems found in one golden file."""

    def __init__(self, path: str, problems: list[Problem], omitted: int = 0) -> None:
        self.path = path
        self.problems = problems
        self.omitted = omitted
        super().__init__(path, problems)

    def __str__(self) -> str:
        lines = [problem.format(self.path) for problem in self.problems]
        if self.omitted:
            lines.append(f"{self.path}: {self.omitted} more problem(s) not shown")
        return "\n".join(lines)


_ProblemText = ProblemText


class _Problems:
    """Collects the problems of one file, keeping the first :data:`MAX_PROBLEMS`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: Problems[Problem] = Problems()

    @property
    def items(self) -> list[Problem]:
        return self.found.items

    @property
    def omitted(self) -> int:
        return self.found.omitted

    def __len__(self) -> int:
        """How many problems were added, kept or not."""
        return len(self.found)

    def add(
        self, line: int | None, field: str | None, message: _ProblemText, case_id: str | None = None
    ) -> None:
        """Keep a problem; a callable ``message`` is only called for a problem that is kept."""
        self.found.add(lambda: Problem(line, field, message_text(message), case_id))

    def error(self) -> CaseFileError:
        return CaseFileError(self.path, self.found.sorted(lambda p: p.line or 0), self.omitted)

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


def _fail(path: str, line: int | None, message: str) -> CaseFileError:
    return CaseFileError(path, [Problem(line, None, message)])


# --------------------------------------------------------------------------------------------
# Field validation (shared by JSONL cases, YAML cases and YAML defaults)
# --------------------------------------------------------------------------------------------

# Reports one problem: (top-level key whose line to use, field path, message).
_Report = Callable[[str | None, str | None, str], None]
# A reporter that also takes messages written when needed (see _ProblemText); a _Report
# elsewhere (llm_client.py validates its markers with the checks that take a _Report).
_LazyReport = Callable[[str | None, str | None, _ProblemText], None]


class _Invalid:
    """Marker for a field value that failed validation (already reported)."""


_INVALID: Final = _Invalid()


def _check_id(value: object, report: _Report) -> str | None:
    if not isinstance(value, str):
        hint = "; put it in quotes" if isinstance(value, int | float) else ""
        report("id", "id", f"expected a string, got {describe(value)}{hint}")
        return None
    if len(value) > MAX_ID_LENGTH:
        report("id", "id", f"id is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}")
        return None
    if not _ID_RE.fullmatch(value):
        report(
            "id",
            "id",
            f"invalid id {short_repr(value)}: it must start with a letter or digit and contain "
            "only letters, digits, '.', '_' and '-'",
        )
        return None
    return value


def _check_text(value: object, key: str, report: _Report, *, nullable: bool) -> object:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        expected = "a string or null" if nullable else "a string"
        report(key, key, f"expected {expected}, got {describe(value)}")
        return _INVALID
    return value


def _check_user(value: object, report: _Report) -> object:
    if not isinstance(value, str) or not value.strip():
        report("user", "user", f"expected a non-empty string, got {describe(value)}")
        return _INVALID
    return (Message("user", value),)


def _check_messages(value: object, report: _LazyReport) -> object:
    if not isinstance(value, list) or not value:
        report(
            "messages", "messages", f"expected a non-empty list of messages, got {describe(value)}"
        )
        return _INVALID
    messages: list[Message] = []
    ok = True
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, Mapping):
            report(
                "messages",
                where,
                f"expected a mapping with 'role' and 'content', got {describe(item)}",
            )
            ok = False
            continue
        for key in item:
            if key not in MESSAGE_KEYS:
                report(
                    "messages",
                    where,
                    unknown_key_message("key", key, MESSAGE_KEYS, one_of=False),
                )
                ok = False
        role = item.get("role")
        if role == "system":
            report(
                "messages",
                f"{where}.role",
                "role 'system' is not allowed in messages; put the system prompt in the "
                "case's 'system' field",
            )
            ok = False
        elif role not in MESSAGE_ROLES:
            got = "nothing" if "role" not in item else describe(role)
            report("messages", f"{where}.role", f"expected 'user' or 'assistant', got {got}")
            ok = False
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            got = "nothing" if "content" not in item else describe(content)
            report("messages", f"{where}.content", f"expected a non-empty string, got {got}")
            ok = False
        if ok:
            messages.append(Message(cast(Literal["user", "assistant"], role), cast(str, content)))
    if not ok:
        return _INVALID
    if messages[-1].role != "user":
        report(
            "messages",
            "messages",
            f"the last message must have role 'user', got {messages[-1].role!r}",
        )
        return _INVALID
    return tuple(messages)


def _check_threshold(value: object, key: str, report: _Report) -> object:
    if not is_number(value):
        report(key, key, f"expected a number between 0 and 1, got {describe(value)}")
        return _INVALID
    number = float(cast(float, value))
    if not 0.0 <= number <= 1.0:
        report(key, key, f"expected a number between 0 and 1, got {value!r}")
        return _INVALID
    return number


def _check_scorers(value: object, report: _Report) -> object:
    registry = active_scorers()  # the session's: the built-ins and the team's own
    if not isinstance(value, list):
        report(
            "scorers",
            "scorers",
            f'expected a list of scorers (like ["exact"]), got {describe(value)}',
        )
        return _INVALID
    if not value:
        report("scorers", "scorers", "expected at least one scorer, got an empty list")
        return _INVALID
    specs: list[ScorerSpec] = []
    for i, raw in enumerate(value):
        try:
            specs.append(registry.parse_spec(raw))
        except ValueError as exc:
            report("scorers", f"scorers[{i}]", str(exc))
    return tuple(specs) if len(specs) == len(value) else _INVALID


def _check_criterion(
    item: object, where: str, seen: set[str], report: _LazyReport
) -> Criterion | None:
    if not isinstance(item, Mapping):
        report(
            "rubric",
            where,
            f"expected a mapping with 'name' and 'description', got {describe(item)}",
        )
        return None
    ok = True
    for key in item:
        if key not in RUBRIC_KEYS:
            report("rubric", where, unknown_key_message("key", key, RUBRIC_KEYS, one_of=False))
            ok = False
    name = item.get("name")
    if "name" not in item:
        report("rubric", f"{where}.name", "missing; name the criterion")
        ok = False
    elif not isinstance(name, str) or not CRITERION_NAME_RE.fullmatch(name) or name == "reason":
        what = short_repr(name) if isinstance(name, str) else describe(name)
        report(
            "rubric",
            f"{where}.name",
            f"invalid criterion name {what}: it must start with a letter or '_', contain only "
            "letters, digits and '_' (at most 64) and not be 'reason'",
        )
        ok = False
    elif name in seen:
        report("rubric", f"{where}.name", f"criterion {name!r} is listed twice")
        ok = False
    else:
        seen.add(name)
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        got = "nothing" if "description" not in item else describe(description)
        report("rubric", f"{where}.description", f"expected a non-empty string, got {got}")
        ok = False
    weight = item.get("weight", 1)
    if (
        not is_number(weight)
        or not math.isfinite(cast(float, weight))
        or not cast(float, weight) > 0
    ):
        report("rubric", f"{where}.weight", f"expected a positive number, got {describe(weight)}")
        ok = False
    if not ok:
        return None
    return Criterion(cast(str, name), cast(str, description), float(cast(float, weight)))


def _check_rubric(value: object, report: _LazyReport) -> object:
    if isinstance(value, str):
        if not value.strip():
            report("rubric", "rubric", "expected a non-empty string, got an empty one")
            return _INVALID
        return (Criterion(RUBRIC_SHORTHAND, value),)
    if not isinstance(value, list) or not value:
        report(
            "rubric",
            "rubric",
            "expected a string or a non-empty list of criteria ({name, description, weight}), "
            f"got {describe(value)}",
        )
        return _INVALID
    if len(value) > MAX_CRITERIA:
        report(
            "rubric",
            "rubric",
            f"the rubric lists {len(value)} criteria; the most a rubric may list is {MAX_CRITERIA}",
        )
        return _INVALID
    seen: set[str] = set()
    criteria = [
        _check_criterion(item, f"rubric[{i}]", seen, report) for i, item in enumerate(value)
    ]
    checked = [c for c in criteria if c is not None]
    return tuple(checked) if len(checked) == len(value) else _INVALID


def parse_rubric(raw: object) -> Rubric:
    """A rubric written as a golden file writes it (a string, or a list of ``{name,
    description, weight}``), checked the same way, for code that is not a golden file (the
    ``llm_judge`` fixture); ``ValueError`` names every problem."""
    problems: list[str] = []

    def report(field: str | None, where: str | None, message: _ProblemText) -> None:
        problems.append(f"{where}: {message if isinstance(message, str) else message()}")

    checked = _check_rubric(raw, report)
    if problems or isinstance(checked, _Invalid):
        raise ValueError("; ".join(problems))
    return cast(Rubric, checked)


def _check_tags(value: object, report: _Report) -> object:
    if not isinstance(value, list):
        report("tags", "tags", f"expected a list of strings, got {describe(value)}")
        return _INVALID
    tags: list[str] = []
    ok = True
    for i, tag in enumerate(value):
        where = f"tags[{i}]"
        if not isinstance(tag, str):
            report("tags", where, f"expected a string, got {describe(tag)}")
            ok = False
        elif tag in _TAG_KEYWORDS:
            report(
                "tags",
                where,
                f"tag {tag!r} is a keyword of pytest's -m expressions and cannot be a marker",
            )
            ok = False
        elif tag in _RESERVED_TAGS:
            report(
                "tags",
                where,
                f"tag {tag!r} is a built-in pytest marker and would change how the test runs",
            )
            ok = False
        elif not _TAG_RE.fullmatch(tag):
            report(
                "tags",
                where,
                f"invalid tag {short_repr(tag)}: tags become pytest markers, so they must start "
                "with a letter or '_' and contain only letters, digits, '_' and '-'",
            )
            ok = False
        elif tag not in tags:
            tags.append(tag)
    return tuple(tags) if ok else _INVALID


def check_param(name: str, value: object) -> str | None:
    """Why ``value`` is not a valid request parameter ``name`` (:data:`PARAM_RULES`), or None."""
    rule = PARAM_RULES.get(name)
    if rule is None:
        return None
    if rule.kind != "stop":
        low, high = rule.minimum, rule.maximum
        fits = is_int(value) if rule.kind == "integer" else is_number(value)
        number = cast(float, value)
        if not fits or (low is not None and number < low) or (high is not None and number > high):
            if low is not None and high is not None:
                expected = f"a number between {low} and {high}"
            else:
                expected = f"an {rule.kind}" if rule.kind == "integer" else f"a {rule.kind}"
                expected += f" >= {low}" if low is not None else ""
            return f"expected {expected}, got {describe(value)}"
    elif name == "stop":
        if isinstance(value, str):
            return None if value else "expected a non-empty string, got an empty string"
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(s, str) and s for s in value)
        ):
            return (
                f"expected a string or a non-empty list of non-empty strings, got {describe(value)}"
            )
    return None


def _check_params(value: object, report: _LazyReport) -> object:
    if not isinstance(value, Mapping):
        report("params", "params", f"expected a mapping, got {describe(value)}")
        return _INVALID
    ok = True
    params: dict[str, Any] = {}
    for name, item in value.items():
        if name not in PARAM_NAMES:
            report("params", "params", unknown_key_message("parameter", name, PARAM_NAMES))
            ok = False
            continue
        problem = check_param(name, item)
        if problem:
            report("params", f"params.{name}", problem)
            ok = False
        else:
            params[name] = _param_value(item)
    return params if ok else _INVALID


def _param_value(value: Any) -> Any:
    """A parameter as a case holds it: lists (``stop``) become tuples, read-only."""
    return tuple(value) if isinstance(value, list) else value


def _check_metadata(value: object, report: _Report) -> object:
    if not isinstance(value, Mapping):
        report("metadata", "metadata", f"expected a mapping, got {describe(value)}")
        return _INVALID
    problem = jsonable_problem(value, "metadata")
    if problem:
        report("metadata", *problem)
        return _INVALID
    return dict(value)


def _check_task_name(value: object, where: str, report: _Report) -> str | None:
    if not isinstance(value, str):
        report("prompt", where, f"expected a prompt task name, got {describe(value)}")
        return None
    if not _TASK_RE.fullmatch(value) or len(value) > MAX_ID_LENGTH:
        report(
            "prompt",
            where,
            f"invalid task name {short_repr(value)}: it must start with a letter or digit and "
            "contain only letters, digits, '.', '_' and '-'",
        )
        return None
    return value


def _check_prompt_vars(value: object, report: _Report) -> dict[str, PromptValue] | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report("prompt", "prompt.vars", f"expected a mapping, got {describe(value)}")
        return None
    checked: dict[str, PromptValue] = {}
    ok = True
    for name, item in value.items():
        if not isinstance(name, str) or not _VAR_RE.fullmatch(name):
            report(
                "prompt",
                "prompt.vars",
                f"invalid variable name {short_repr(name)}: it must start with a letter or '_' "
                "and contain only letters, digits and '_'",
            )
            ok = False
        elif isinstance(item, str) or (is_number(item) and math.isfinite(cast(float, item))):
            checked[name] = cast(PromptValue, item)
        else:
            hint = "; put it in quotes" if isinstance(item, bool) or item is None else ""
            report(
                "prompt",
                f"prompt.vars.{name}",
                f"expected a string or a number, got {describe(item)}{hint}",
            )
            ok = False
    return checked if ok else None


def _check_prompt(value: object, report: _LazyReport) -> object:
    if value is None:
        return None
    if isinstance(value, str):
        name = _check_task_name(value, "prompt", report)
        return _INVALID if name is None else PromptRef(name)
    if not isinstance(value, Mapping):
        report(
            "prompt",
            "prompt",
            "expected a task name or a mapping with 'task' and 'vars', got " + describe(value),
        )
        return _INVALID
    ok = True
    for key in value:
        if key not in PROMPT_KEYS:
            report("prompt", "prompt", unknown_key_message("key", key, PROMPT_KEYS, one_of=False))
            ok = False
    task: str | None = None
    if "task" in value:
        task = _check_task_name(value["task"], "prompt.task", report)
    else:
        report("prompt", "prompt.task", "missing; name the prompt task")
    variables = _check_prompt_vars(value.get("vars"), report)
    if not ok or task is None or variables is None:
        return _INVALID
    return PromptRef(task, variables)


def _check_field(name: str, value: object, report: _LazyReport) -> object:
    """Validate one case/defaults field; returns the normalized value or :data:`_INVALID`."""
    if name == "id":
        checked = _check_id(value, report)
        return _INVALID if checked is None else checked
    if name == "user":
        return _check_user(value, report)
    if name == "messages":
        return _check_messages(value, report)
    if name in ("system", "reference"):
        return _check_text(value, name, report, nullable=True)
    if name == "prompt":
        return _check_prompt(value, report)
    if name == "threshold":
        return _check_threshold(value, name, report)
    if name == "scorers":
        return _check_scorers(value, report)
    if name == "rubric":
        return _check_rubric(value, report)
    if name == "tags":
        return _check_tags(value, report)
    if name == "params":
        return _check_params(value, report)
    if name == "metadata":
        return _check_metadata(value, report)
    raise AssertionError(f"no validator for {name}")  # pragma: no cover


def _check_fields(
    raw: Mapping[Any, Any], allowed: tuple[str, ...], report: _LazyReport, what: str
) -> dict[str, Any]:
    """Validate every key of ``raw``; returns the valid ones (invalid ones are reported)."""
    valid: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            report(
                key if isinstance(key, str) else None, None, unknown_key_message(what, key, allowed)
            )
            continue
        checked = _check_field(key, value, report)
        if checked is not _INVALID:
            valid[key] = checked
    return valid


# --------------------------------------------------------------------------------------------
# Values no case can hold: lone surrogates, runaway nesting
# --------------------------------------------------------------------------------------------

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")

_SURROGATE_ESCAPE_RE: Final = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")


def _may_hold_surrogates(text: str) -> bool:
    """Whether loading ``text`` can give a string with a surrogate: from an escape (``\\ud800``
    in JSON, also ``\\U0000d800`` in YAML) or from one in the text itself. Cheap, so that the
    walk of :func:`_unsafe_value` runs only where it can find one.
    """
    if ("\\u" in text or "\\U" in text) and _SURROGATE_ESCAPE_RE.search(text) is not None:
        return True
    return not text.isascii() and _SURROGATE_RE.search(text) is not None


_TOO_DEEP: Final = (
    f"lists and mappings are nested more than {MAX_DEPTH} levels deep, the most a golden file "
    "allows"
)


def _surrogate_problem(text: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8 (it holds a surrogate), or None."""
    if text.isascii():
        return None
    found = _SURROGATE_RE.search(text)
    if found is None:
        return None
    at = found.start()
    high = ord(text[at])
    low = ord(text[at + 1]) if at + 1 < len(text) else 0
    if 0xD800 <= high <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
        joined = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        return (
            f"holds the surrogate pair U+{high:04X} U+{low:04X} as two characters, which is "
            f"not valid Unicode text and cannot be sent to a model; write the character "
            f"itself, or in YAML the escape \\U{joined:08X}"
        )
    return (
        f"holds a lone surrogate U+{high:04X} (from an escape such as \\u{high:04x}), which "
        "is not a character: it is not valid Unicode text and cannot be sent to a model"
    )


_LinkedPath = tuple[Any, Any] | None
"""A field path as linked ``(parent, key)`` pairs, formatted only for the problem found."""


def _unsafe_value(value: object, *, depth: int) -> tuple[str | None, str | None, str] | None:
    """``(top-level key, field path, why)`` for the first part of ``value`` (a case mapping, or
    the value of a JSONL line) that no case can hold, or None.

    A string (or key) with a surrogate cannot be encoded to send to a model; a value nested more
    than :data:`MAX_DEPTH` levels (``value`` itself being at level ``depth``) would overflow the
    stack of the validators. Iterative, so a deep value cannot overflow this walk. A list or
    mapping met twice (YAML aliases share them) is walked once: the composer has already bounded
    the depth of what aliases stand for.
    """
    stack: list[tuple[object, _LinkedPath, int]] = [(value, None, depth)]
    seen: set[int] = set()
    while stack:
        item, path, level = stack.pop()
        if isinstance(item, str):
            problem = _surrogate_problem(item)
            if problem is not None:
                return _path_top(path), _format_path(path), problem
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if level > MAX_DEPTH:
                top = _path_top(path)
                return top, top, _TOO_DEEP
            children: list[tuple[object, _LinkedPath, int]] = []
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if isinstance(key, str):
                        problem = _surrogate_problem(key)
                        if problem is not None:
                            return _path_top(path), _format_path(path), f"a key {problem}"
                    children.append((child, (path, key), level + 1))
            else:
                children = [(child, (path, i), level + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))  # in document order
    return None


def _path_parts(path: _LinkedPath) -> list[Any]:
    parts: list[Any] = []
    while path is not None:
        path, key = path
        parts.append(key)
    return parts[::-1]


def _path_top(path: _LinkedPath) -> str | None:
    parts = _path_parts(path)
    return parts[0] if parts and isinstance(parts[0], str) else None


def _format_path(path: _LinkedPath) -> str | None:
    parts = _path_parts(path)
    if not parts:
        return None
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


# --------------------------------------------------------------------------------------------
# Building cases
# --------------------------------------------------------------------------------------------


@dataclass
class _RawCase:
    """A case mapping as read from a file, before validation."""

    data: Mapping[Any, Any]
    line: int
    lines: _LineMap | None  # where its keys are written (YAML); None for JSONL
    early: list[tuple[int, str]] = field(default_factory=list)  # problems found while reading
    depth: int = 1  # nesting level of the case mapping in its document (1 for a JSONL line)
    suspect: bool = True  # whether _unsafe_value must walk it (False: the text rules it out)


def _build_cases(
    raws: list[_RawCase], path: str, problems: _Problems, defaults: Mapping[str, Any]
) -> list[GoldenCase]:
    cases: list[GoldenCase] = []
    first_line: dict[str, int] = {}
    for index, raw in enumerate(raws):
        case_id: str | None = None
        raw_id = raw.data.get("id")
        if isinstance(raw_id, str) and _ID_RE.fullmatch(raw_id) and len(raw_id) <= MAX_ID_LENGTH:
            case_id = raw_id

        report = _case_reporter(problems, raw, case_id)
        for line, message in raw.early:
            problems.add(line, None, message, case_id)
        unsafe = _unsafe_value(raw.data, depth=raw.depth) if raw.suspect else None
        if unsafe is not None:
            # Validation walks values recursively and the case would fail at call time; the
            # case is not validated further.
            report(*unsafe)
            continue
        before = len(problems) - len(raw.early)
        fields = _check_fields(raw.data, CASE_FIELDS, report, "field")
        if "id" not in raw.data:
            report("id", "id", "missing; every case needs a unique id")
        has_user, has_messages = "user" in raw.data, "messages" in raw.data
        if has_user == has_messages:
            report(
                None,
                None,
                "a case needs exactly one of 'user' or 'messages', got "
                + ("both" if has_user else "neither"),
            )
        if "system" in raw.data and "prompt" in raw.data:
            report("prompt", None, _SYSTEM_AND_PROMPT)
        scorers = fields.get("scorers") or defaults.get("scorers") or _default_scorers()
        if "rubric" in fields and not any(spec.name == "judge" for spec in scorers):
            # A default rubric may meet cases that are not judged; a case's own would be lost.
            report(
                "rubric",
                "rubric",
                "the rubric is for the judge, and this case has no 'judge' scorer",
            )
        if case_id is not None:
            if case_id in first_line:
                report(
                    None, None, f"duplicate id {case_id!r} (first at line {first_line[case_id]})"
                )
            else:
                first_line[case_id] = raw.line
        if len(problems) > before:
            continue
        cases.append(_make_case(fields, defaults, path, raw.line, index))
    return cases


_SYSTEM_AND_PROMPT: Final = (
    "set either 'system' (a literal system prompt) or 'prompt' (a prompt task), not both"
)


def _case_reporter(problems: _Problems, raw: _RawCase, case_id: str | None) -> _LazyReport:
    """A reporter that files problems under ``case_id``, at the line of the offending key."""

    def report(key: str | None, where: str | None, message: _ProblemText) -> None:
        line = raw.lines.key_line(key, raw.line) if raw.lines is not None else raw.line
        problems.add(line, where, message, case_id)

    return report


def _merge_tags(*groups: Iterable[str]) -> tuple[str, ...]:
    merged: list[str] = []
    for group in groups:
        for tag in group:
            if tag not in merged:
                merged.append(tag)
    return tuple(merged)


def _make_case(
    fields: Mapping[str, Any], defaults: Mapping[str, Any], path: str, line: int, index: int
) -> GoldenCase:
    messages = fields["user"] if "user" in fields else fields["messages"]
    merged = {**defaults, **fields}
    # A case's own 'system' or 'prompt' replaces both defaults: the system prompt is one thing.
    own_system = "system" in fields or "prompt" in fields
    system_source = fields if own_system else defaults
    return GoldenCase(
        id=fields["id"],
        messages=messages,
        system=shared(system_source.get("system")),  # most files give all cases one
        prompt=system_source.get("prompt"),
        reference=fields.get("reference"),
        threshold=merged.get("threshold", DEFAULT_THRESHOLD),
        scorers=merged.get("scorers") or _default_scorers(),
        rubric=merged.get("rubric", ()),
        tags=_merge_tags(defaults.get("tags", ()), fields.get("tags", ())),
        params={**defaults.get("params", {}), **fields.get("params", {})},
        metadata={**defaults.get("metadata", {}), **fields.get("metadata", {})},
        path=path,
        line=line,
        index=index,
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a golden file loads.

    Loading allocates an object per value and nearly all of them stay alive: the collector's
    passes over them find nothing and took over half the time (measured, CPU time to parse a
    65 MB file: JSONL 4.2 s with it, 1.9 s without; YAML 21 s and 9.6 s). Objects are still
    freed by reference counting; cycles made meanwhile wait for the next pass.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# Text: characters and numbers no golden file holds
# --------------------------------------------------------------------------------------------


# What YAML refuses in a file (PyYAML's reader and libyaml agree): control characters but tab,
# line feed and carriage return, DEL, C1 controls but NEL, surrogates, U+FFFE and U+FFFF.
_NOT_YAML_RE: Final = re.compile(
    "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]`` (lines end at ``\\n``)."""
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


def _check_characters(text: str, path: str, *, yaml: bool) -> None:
    """Raise :class:`CaseFileError` at the first character a golden file cannot hold.

    A NUL is refused in any golden file: it is how binary files look once decoded. In YAML also
    the other characters YAML does not allow, which its parsers would report without a line.
    (JSON reports raw control characters itself, with their column; escaped ones are text.)
    """
    if yaml:
        found = _NOT_YAML_RE.search(text)
        at = found.start() if found is not None else -1
    else:
        at = text.find("\x00")
    if at < 0:
        return
    line, column = _line_column(text, at)
    code = ord(text[at])
    if code == 0:
        message = (
            f"NUL character at column {column}: golden files are text (is this a binary file?)"
        )
    elif 0xD800 <= code <= 0xDFFF:
        message = f"lone surrogate U+{code:04X} at column {column} is not a character"
    elif unicodedata.category(text[at]) == "Cc":
        message = (
            f"control character U+{code:04X} at column {column} is not allowed in YAML; "
            f'write it as an escape in a double-quoted string ("\\x{code:02x}")'
        )
    else:
        message = f"U+{code:04X} at column {column} is not a character (not allowed in YAML)"
    raise _fail(path, line, message)


def _value_error_text(exc: ValueError) -> str:
    """What a ``ValueError`` from reading a number says, without Python's advice to callers."""
    if "integer string conversion" in str(exc):
        return (
            f"a number has more than {sys.get_int_max_str_digits()} digits, more than Python "
            "reads as an integer"
        )
    return str(exc)


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


@_gc_paused()
def parse_jsonl(text: str, path: str) -> list[GoldenCase]:
    """Parse a JSONL golden file: one case object per line.

    Blank lines and lines starting with ``//`` are skipped. Raises :class:`CaseFileError` with
    every problem of the file.
    """
    text = text.removeprefix("\ufeff")
    _check_characters(text, path, yaml=False)
    problems = _Problems(path)
    raws: list[_RawCase] = []
    # Not str.splitlines(): JSON strings may hold raw U+2028 and friends.
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            data = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKeyError as exc:
            problems.add(number, None, f"duplicate key {exc.args[0]!r} in JSON object")
            continue
        except json.JSONDecodeError as exc:
            problems.add(number, None, f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        except RecursionError:
            # The decoder recurses per level: about 1000 levels exhaust the stack.
            problems.add(number, None, _TOO_DEEP)
            continue
        except ValueError as exc:  # a number too long to convert
            problems.add(number, None, f"invalid JSON: {_value_error_text(exc)}")
            continue
        if not isinstance(data, dict):
            unsafe = _unsafe_value(data, depth=1)  # describe() would recurse through it
            if unsafe is not None and unsafe[2] == _TOO_DEEP:
                problems.add(number, None, _TOO_DEEP)
            else:
                problems.add(
                    number,
                    None,
                    f"expected a JSON object (one case per line), got {describe(data)}",
                )
            continue
        # Nesting past MAX_DEPTH needs more brackets than that.
        suspect = line.count("[") + line.count("{") > MAX_DEPTH or _may_hold_surrogates(line)
        raws.append(_RawCase(data, number, None, suspect=suspect))
    if not raws and not problems.items:
        raise _fail(path, None, "no cases in file")
    cases = _build_cases(raws, path, problems, {})
    problems.raise_if_any()
    return cases


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


_REPARSE_LIMIT: Final = 256 * 1024
"""Up to this many characters, a file libyaml fails on is parsed again in pure Python."""


class _YAMLProblem(Exception):
    """Why a YAML value cannot be constructed, and at which 1-based line (None: not known)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(line, message)
        self.line = line
        self.message = message


@_gc_paused()
def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of ``text`` within the limits of :func:`_compose_bounded`, parsed with
    libyaml when available (20x faster). Raises ``yaml.YAMLError``; the limits raise
    :func:`_refusal_class` errors.

    On a syntax error the pure-Python parser runs again, so messages and marks do not depend on
    whether libyaml is installed, as long as that takes well under a second: a file of more
    than :data:`_REPARSE_LIMIT` characters keeps libyaml's message (same line, other words).
    """
    import yaml

    limits = _AliasLimits(max(MAX_ALIAS_NODES, len(text)), max(MAX_ALIAS_CHARACTERS, len(text)))
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        loader = fast(text)
        try:
            return _compose_bounded(loader, limits)
        except _refusal_class():
            raise  # the same with either parser
        except yaml.MarkedYAMLError as exc:
            # libyaml refuses 1000 levels a little ahead of the composer, which refuses 100.
            if exc.problem == "exceeded maximum nesting depth" and exc.problem_mark is not None:
                raise _refusal_class()(None, None, _TOO_DEEP, exc.problem_mark) from None
            if len(text) > _REPARSE_LIMIT:
                raise
        except yaml.YAMLError:
            if len(text) > _REPARSE_LIMIT:
                raise
        finally:
            loader.dispose()
    pure: Any = _pure_loader_class()(text)
    try:
        return _compose_bounded(pure, limits)
    except yaml.YAMLError as exc:
        setattr(exc, _QUOTE_HINT, pure.multiline_quote)
        raise
    finally:
        pure.dispose()


_QUOTE_HINT: Final = "llmregress_multiline_quote"
"""Attribute of a pure-Python parser's error: the last quoted scalar that spans lines."""


@functools.cache
def _pure_loader_class() -> type[yaml.SafeLoader]:
    import yaml

    class PureLoader(yaml.SafeLoader):
        """``SafeLoader`` that remembers the last quoted scalar spanning lines: the likely cause
        of a syntax error on the line where it ends (an unclosed quote swallowed text)."""

        multiline_quote: yaml.ScalarToken | None = None

        def scan_flow_scalar(self, style: str) -> yaml.ScalarToken:
            token: yaml.ScalarToken = super().scan_flow_scalar(style)
            if token.end_mark.line > token.start_mark.line:
                self.multiline_quote = token
            return token

    return PureLoader


@functools.cache
def _refusal_class() -> type[yaml.composer.ComposerError]:
    from yaml.composer import ComposerError

    class YAMLRefusal(ComposerError):
        """A YAML document that is valid but refused: too deep, too much aliasing, recursive."""

    return YAMLRefusal


@dataclass(frozen=True)
class _AliasLimits:
    """How many nodes and characters the aliases of one document may add."""

    nodes: int
    characters: int


@dataclass
class _OpenCollection:
    """A list or mapping being composed: its size and height so far, its pending key."""

    node: yaml.CollectionNode
    anchor: str | None
    nodes: int = 1
    characters: int = 0
    height: int = 1
    key: yaml.Node | None = None


@dataclass
class _Anchored:
    """An anchored node: how many nodes and characters an alias to it adds, how deep it is."""

    node: yaml.Node
    nodes: int = 0
    characters: int = 0
    height: int = 0
    open: bool = True  # still being composed: an alias to it would make a recursive structure


def _compose_bounded(loader: Any, limits: _AliasLimits) -> yaml.Node | None:
    """The node of the single document in ``loader``'s events, as PyYAML's ``Composer`` builds it,
    but refusing (:func:`_refusal_class` errors) what no golden file needs and would not survive:

    - lists and mappings nested more than :data:`MAX_DEPTH` levels, aliases expanded (PyYAML's
      composer recurses per level, so a deep document raised ``RecursionError``);
    - aliases that add more nodes or characters than ``limits`` allow (a "billion laughs");
    - an alias inside the node it names (a recursive structure, which no walk finishes).

    ``loader`` is a ``SafeLoader`` or ``CSafeLoader``: both give events the same way. The loop is
    iterative; ``SafeLoader`` has no path resolvers, so none are applied.
    """
    from yaml.composer import ComposerError
    from yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceStartEvent,
        StreamEndEvent,
    )
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    loader.get_event()  # stream start
    if loader.check_event(StreamEndEvent):
        loader.get_event()
        return None
    loader.get_event()  # document start
    stack: list[_OpenCollection] = []
    anchors: dict[str, _Anchored] = {}
    added_nodes = added_characters = 0
    while True:
        event: Any = loader.get_event()
        kind = type(event)  # tested instead of event: the stubs' marks do not match the nodes'
        node: yaml.Node
        if issubclass(kind, CollectionEndEvent):
            done = stack.pop()
            node = done.node
            node.end_mark = event.end_mark
            nodes, characters, height = done.nodes, done.characters, done.height
            if done.anchor is not None:
                anchors[done.anchor] = _Anchored(node, nodes, characters, height, open=False)
        elif issubclass(kind, AliasEvent):
            target = anchors.get(event.anchor)
            if target is None:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            if target.open:
                raise _refusal(
                    event,
                    f"alias *{event.anchor} is inside the node it names (anchored at line "
                    f"{yaml_line(target.node)}): a recursive structure cannot be a golden case",
                )
            if len(stack) + target.height > MAX_DEPTH:
                raise _refusal(event, f"with alias *{event.anchor}, {_TOO_DEEP}")
            added_nodes += target.nodes
            added_characters += target.characters
            for added, limit, what, floor in (
                (added_nodes, limits.nodes, "nodes", MAX_ALIAS_NODES),
                (added_characters, limits.characters, "characters", MAX_ALIAS_CHARACTERS),
            ):
                if added > limit:
                    raise _refusal(
                        event,
                        f"too much aliasing: with alias *{event.anchor}, the aliases of this "
                        f"file repeat more than {limit:,} {what}, the most they may (the "
                        f"larger of {floor:,} and the file's length)",
                    )
            node, nodes, characters = target.node, target.nodes, target.characters
            height = target.height
        else:
            anchor = event.anchor
            if anchor is not None and anchor in anchors:
                raise ComposerError(
                    f"found duplicate anchor {anchor!r}; first occurrence",
                    anchors[anchor].node.start_mark,
                    "second occurrence",
                    event.start_mark,
                )
            tag = event.tag
            if issubclass(kind, ScalarEvent):
                if tag is None or tag == "!":
                    tag = loader.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style
                )
                nodes, characters, height = 1, len(event.value), 0
                if anchor is not None:
                    anchors[anchor] = _Anchored(node, nodes, characters, height, open=False)
            else:
                if len(stack) >= MAX_DEPTH:
                    raise _refusal(event, _TOO_DEEP)
                assert issubclass(kind, SequenceStartEvent | MappingStartEvent)
                node_class = SequenceNode if issubclass(kind, SequenceStartEvent) else MappingNode
                if tag is None or tag == "!":
                    tag = loader.resolve(node_class, None, event.implicit)
                collection = node_class(
                    tag, [], event.start_mark, None, flow_style=event.flow_style
                )
                if anchor is not None:
                    anchors[anchor] = _Anchored(collection)
                stack.append(_OpenCollection(collection, anchor))
                continue
        if not stack:
            break
        parent = stack[-1]
        parent.nodes += nodes
        parent.characters += characters
        parent.height = max(parent.height, height + 1)
        if isinstance(parent.node, SequenceNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None
    loader.get_event()  # document end
    if not loader.check_event(StreamEndEvent):
        event = loader.get_event()
        raise ComposerError(
            "expected a single document in the stream",
            node.start_mark,
            "but found another document",
            event.start_mark,
        )
    loader.get_event()
    return node


def _refusal(event: Any, message: str) -> yaml.composer.ComposerError:
    return _refusal_class()(None, None, message, event.start_mark)


# Contexts of errors at the end of the file that name what was left open.
_UNCLOSED: Final = {
    "while scanning a quoted scalar": "quoted string",
    "while parsing a flow sequence": "'['",
    "while parsing a flow mapping": "'{'",
}


def _describe_yaml_error(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """``(line, message)`` for a YAML syntax error, naming the line where the problem starts.

    PyYAML marks where it noticed the problem (``problem_mark``) and, for some errors, where the
    construct it was reading began (``context_mark``). An unclosed quote or bracket is noticed at
    the end of the file: its opening line is the one to fix. A quoted scalar that spans lines
    and ends on the error's line (known from the pure-Python parser) probably lacks its closing
    quote.
    """
    import yaml

    problem = yaml_problem(exc)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return None, f"invalid YAML: {problem}"
    problem_mark, context_mark = exc.problem_mark, exc.context_mark
    if isinstance(exc, _refusal_class()) and problem_mark is not None:
        return min(int(problem_mark.line) + 1, _yaml_line_count(text)), problem
    quote = getattr(exc, _QUOTE_HINT, None)
    # libyaml puts the end of a file without a final line break on a line past the end.
    last_line = _yaml_line_count(text)
    if problem_mark is None:
        line = min(context_mark.line + 1, last_line) if context_mark is not None else None
        return line, f"invalid YAML: {problem}"
    problem_line = min(int(problem_mark.line) + 1, last_line)
    if context_mark is not None:
        context_line = min(int(context_mark.line) + 1, last_line)
        column = int(context_mark.column) + 1
        if _at_end(problem_mark, text):
            unclosed = _UNCLOSED.get(exc.context or "")
            if unclosed is not None:
                return context_line, (
                    f"invalid YAML: the {unclosed} at column {column} is never closed"
                )
            return context_line, f"invalid YAML: {problem}"
        if exc.context == "while scanning a simple key":
            return context_line, f"invalid YAML: {problem} after the text at column {column}"
    if (
        quote is not None
        and quote.end_mark.line == problem_mark.line
        and quote.end_mark.index <= problem_mark.index
    ):
        return int(quote.start_mark.line) + 1, (
            f"invalid YAML: the quoted string at column {quote.start_mark.column + 1} runs on "
            f"to line {problem_line}, which then fails ({problem}); is its closing quote missing?"
        )
    if context_mark is not None and context_mark.line < problem_mark.line:
        unclosed = _UNCLOSED.get(exc.context or "")
        if unclosed is not None and unclosed != "quoted string":
            return problem_line, (
                f"invalid YAML: {problem} (in the {unclosed} at line {context_mark.line + 1})"
            )
    return problem_line, f"invalid YAML: {problem}"


def _yaml_line_count(text: str) -> int:
    """How many lines an editor shows for ``text`` (a final line break starts no line)."""
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _at_end(mark: yaml.Mark, text: str) -> bool:
    """Whether ``mark`` is at the end of ``text`` (libyaml may put it on a line past the end)."""
    last_line = text.count("\n")
    last_column = len(text) - (text.rfind("\n") + 1)
    return (int(mark.line), int(mark.column)) >= (last_line, last_column)


@_gc_paused()
def parse_yaml(text: str, path: str) -> list[GoldenCase]:
    """Parse a YAML golden file.

    The document is either a list of case mappings, or a mapping ``{defaults: {...}, cases:
    [...]}`` whose ``defaults`` apply to every case. Raises :class:`CaseFileError` with every
    problem of the file.
    """
    import yaml

    text = text.removeprefix("\ufeff")
    _check_characters(text, path, yaml=True)
    problems = _Problems(path)
    try:
        root = compose_yaml(text)
    except yaml.YAMLError as exc:
        raise _fail(path, *_describe_yaml_error(exc, text)) from None
    # The composer bounds nesting: values need a walk only for surrogates, if the text can hold any.
    suspect = _may_hold_surrogates(text)

    defaults: dict[str, Any] = {}
    if root is None:
        raise _fail(path, None, "no cases in file")
    if isinstance(root, yaml.MappingNode):
        top = yaml_key_lines(root)
        if "cases" not in top:
            keys = ", ".join(short_repr(k.value) for k, _ in root.value) or "none"
            problems.add(
                yaml_line(root),
                None,
                "expected a list of cases, or a mapping with 'cases' (and optional 'defaults'); "
                f"got a mapping with keys: {keys}",
            )
            raise problems.error()
        for line, message in yaml_duplicate_keys(root, "the top-level mapping"):
            problems.add(line, None, message)
        sections: dict[str, yaml.Node] = {}
        for key_node, value_node in root.value:
            key = key_node.value
            if key in YAML_SECTIONS:
                sections[key] = value_node
            else:
                problems.add(
                    yaml_line(key_node),
                    None,
                    unknown_key_message("top-level key", key, YAML_SECTIONS, one_of=False),
                )
        if "defaults" in sections:
            defaults = _yaml_defaults(sections["defaults"], top["defaults"], problems, suspect)
        cases_node = sections["cases"]
    else:
        cases_node = root

    if isinstance(cases_node, yaml.ScalarNode) and cases_node.tag == "tag:yaml.org,2002:null":
        problems.add(None, None, "no cases in file")
        raise problems.error()
    if not isinstance(cases_node, yaml.SequenceNode):
        what = "the document" if cases_node is root else "'cases'"
        problems.add(
            yaml_line(cases_node),
            None,
            f"expected {what} to be a list of cases, got {yaml_kind(cases_node)}",
        )
        raise problems.error()
    if not cases_node.value:
        problems.add(None, None, "no cases in file")
        raise problems.error()

    raws: list[_RawCase] = []
    for item in cases_node.value:
        line = yaml_line(item)
        if not isinstance(item, yaml.MappingNode):
            problems.add(line, None, f"expected a case mapping, got {yaml_kind(item)}")
            continue
        duplicates = yaml_duplicate_keys(item, "the case")
        try:
            data = _yaml_construct_checked(item)
        except _YAMLProblem as exc:
            problems.add(exc.line, None, exc.message)
            continue
        depth = 2 if cases_node is root else 3
        raws.append(_RawCase(data, line, _LineMap(item), duplicates, depth, suspect))
    cases = _build_cases(raws, path, problems, defaults)
    problems.raise_if_any()
    return cases


def _yaml_construct_checked(node: yaml.Node) -> Any:
    """:func:`_yaml_construct`, raising :class:`_YAMLProblem` (with the line of the value at
    fault when known) for whatever goes wrong."""
    import yaml

    try:
        return yaml_construct(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = int(mark.line) + 1 if mark is not None else yaml_line(node)
        raise _YAMLProblem(line, f"invalid YAML: {yaml_problem(exc)}") from None
    except ValueError as exc:
        raise _YAMLProblem(yaml_line(node), f"invalid YAML: {_value_error_text(exc)}") from None
    except Exception as exc:
        # PyYAML's constructors fail in other ways on values that do not fit an explicit tag
        # (KeyError for `!!bool maybe`); it is a problem of the file either way.
        raise _YAMLProblem(
            yaml_line(node),
            f"invalid YAML: a value does not fit its tag ({type(exc).__name__}: {exc})",
        ) from None


def _yaml_defaults(
    node: yaml.Node, line: int, problems: _Problems, suspect: bool
) -> dict[str, Any]:
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(line, "defaults", f"expected a mapping, got {yaml_kind(node)}")
        return {}
    for dup_line, message in yaml_duplicate_keys(node, "defaults"):
        problems.add(dup_line, None, message)
    try:
        data = _yaml_construct_checked(node)
    except _YAMLProblem as exc:
        problems.add(exc.line, "defaults", exc.message)
        return {}
    lines = _LineMap(node)

    def report(key: str | None, where: str | None, message: _ProblemText) -> None:
        problems.add(
            lines.key_line(key, line),
            f"defaults.{where}" if where is not None else None,
            message,
        )

    unsafe = _unsafe_value(data, depth=2) if suspect else None
    if unsafe is not None:
        report(*unsafe)
        return {}
    checked = _check_fields(data, DEFAULTS_FIELDS, report, "defaults field")
    if "system" in data and "prompt" in data:
        report("prompt", "prompt", _SYSTEM_AND_PROMPT)
        checked.pop("system", None)
        checked.pop("prompt", None)
    return checked


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def load_cases(
    path: str | os.PathLike[str], *, display_path: str | None = None
) -> list[GoldenCase]:
    """Read and validate a golden file (``.jsonl``, ``.yaml`` or ``.yml``).

    ``display_path`` is how messages and cases name the file (pytest passes the path relative
    to the rootdir). Raises :class:`CaseFileError` listing every problem, including an
    unreadable file.
    """
    source = os.fspath(path)
    name = display_path or source
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in GOLDEN_SUFFIXES:
        raise _fail(
            name,
            None,
            f"unsupported file type {suffix or name!r} "
            f"(expected one of: {', '.join(GOLDEN_SUFFIXES)})",
        )
    try:
        with open(source, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_SIZE:
                raise _fail(name, None, _too_large())
            data = handle.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise _fail(name, None, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise _fail(name, None, _too_large())
    text = _decode(data, name)
    del data  # the text is all that is needed: do not hold the file twice while parsing
    if suffix == ".jsonl":
        return parse_jsonl(text, name)
    return parse_yaml(text, name)


def _too_large() -> str:
    limit = MAX_FILE_SIZE
    size = f"{limit // 2**20} MB" if limit % 2**20 == 0 else f"{limit:,} bytes"
    return f"file is larger than {size}, the most a golden file may be; split it into several files"


_WIDE_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _decode(data: bytes, path: str) -> str:
    """The text of a golden file's bytes: UTF-8, a byte order mark dropped, universal newlines
    (as ``open()`` reads text). Raises :class:`CaseFileError` naming the line and column of the
    first byte that is not UTF-8."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            raise _fail(
                path,
                None,
                f"file is {encoding} text (it starts with a {encoding} byte order mark); "
                "golden files are UTF-8: save it as UTF-8",
            )
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        # Lines end at \r\n, \r or \n, as they do once the file is read as text.
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        line_start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
        column = len(before[line_start:].decode("utf-8")) + 1
        raise _fail(
            path,
            line,
            f"not UTF-8 text: byte 0x{data[exc.start]:02X} at column {column} cannot be "
            f"decoded ({exc.reason}); golden files are UTF-8 text (is this a binary file?)",
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
