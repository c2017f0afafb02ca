"""Golden cases written as pytest tests: the ``llm`` fixture's client, the ``llm_case`` marker and
the record of what a test did as a case.

A test becomes a golden case when it calls the model under test through the ``llm`` fixture,
compares an output with a judged reference
(``pytest_llmregress.collect.snapshot.JudgedReference``), or
carries ``@pytest.mark.llm_case``. While it runs, everything it does as a case is kept in a
``CaseRecord`` on the item (its model calls, the judge's verdicts, a failed call), and when its
call phase ends ``case_result`` turns that into the same ``CaseResult`` a golden file's case
produces, so both count in the same gate, reports and statistics.

This module imports neither syrupy nor an SDK: the plugin may import it from any hook.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import pytest

from pytest_llmregress.cases.golden import DEFAULT_THRESHOLD, PARAM_NAMES
from pytest_llmregress.core.validation import describe, did_you_mean
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.verdict.results import CaseResult, Outcome

if TYPE_CHECKING:
    from _pytest.nodes import Node

    from pytest_llmregress.providers.registry import ModelRef

__all__ = [
    "LLM_CASE",
    "LLM_CASE_HELP",
    "CaseContext",
    "CaseOptions",
    "CaseOptionsError",
    "CaseRecord",
    "CompleteFn",
    "JudgeFn",
    "JudgedVerdict",
    "LLMCallError",
    "LLMClient",
    "LLMOutput",
    "ModelCall",
    "case_id",
    "case_options",
    "case_record",
    "case_result",
    "current_case",
    "judging",
]

LLM_CASE: Final = "llm_case"
"""The marker that sets a test's options as a golden case."""

LLM_CASE_HELP: Final = (
    "llm_case(threshold=0.85, tags=[...], id=None): options of a golden case written as a "
    "test (pytest-llmregress)"
)
"""The marker's line for ``config.addinivalue_line("markers", ...)``."""

OPTION_NAMES: Final = ("threshold", "tags", "id")


# --------------------------------------------------------------------------------------------
# The llm_case marker
# --------------------------------------------------------------------------------------------


class CaseOptionsError(ValueError):
    """An ``llm_case`` marker with a bad option; the message names the test and every problem."""


@dataclass(frozen=True)
class CaseOptions:
    """A test's options as a golden case, from its ``llm_case`` markers."""

    threshold: float = DEFAULT_THRESHOLD
    tags: tuple[str, ...] = ()
    id: str | None = None


_UNSET: Final = object()


def _where(node: Node, item: pytest.Item) -> str:
    if node is item:
        return ""
    kind = type(node).__name__.lower()
    return f" (on the {kind} {node.name})"


def _reporter(sink: list[str]) -> Callable[[str | None, str | None, str], None]:
    """A problem callback for the golden-file validators that appends to ``sink``."""

    def report(_key: str | None, name: str | None, message: str) -> None:
        sink.append(f"{name}: {message}" if name else message)

    return report


def case_options(item: pytest.Item) -> CaseOptions:
    """Merge the ``llm_case`` markers of ``item``, from the test up to the session.

    ``threshold`` and ``id``: the closest marker that sets them wins. ``tags``: the tags of all
    markers, outermost first, without duplicates. ``id`` names one test, so only a marker on
    the test itself (or on its ``pytest.param``) may set it. Every value is validated as in a
    golden file; all problems are reported at once as a ``CaseOptionsError``.
    """
    from pytest_llmregress.cases.golden import _check_id, _check_tags, _check_threshold

    problems: list[str] = []
    threshold: Any = _UNSET
    case_id: Any = _UNSET
    tag_groups: list[tuple[str, ...]] = []

    for node, mark in item.iter_markers_with_node(LLM_CASE):
        where = _where(node, item)
        local: list[str] = []
        report = _reporter(local)
        if mark.args:
            local.append(
                f"takes keyword arguments only (threshold=, tags=, id=), got positional "
                f"{', '.join(describe(a) for a in mark.args)}"
            )
        for key, value in mark.kwargs.items():
            if key == "threshold":
                checked = _check_threshold(value, "threshold", report)
                if isinstance(checked, float) and threshold is _UNSET:
                    threshold = checked
            elif key == "tags":
                if isinstance(value, str):
                    local.append(
                        f"tags: expected a list of strings, got {describe(value)}; "
                        f"write tags=[{value!r}]"
                    )
                    continue
                raw = list(value) if isinstance(value, tuple) else value
                tags = _check_tags(raw, report)
                if isinstance(tags, tuple):
                    tag_groups.append(tags)
            elif key == "id":
                if node is not item:
                    local.append(
                        "id: an id names one test; set it on the test function, not on a "
                        f"{type(node).__name__.lower()}"
                    )
                    continue
                checked_id = _check_id(value, report)
                if checked_id is not None and case_id is _UNSET:
                    case_id = checked_id
            else:
                local.append(
                    f"unknown option {key!r} (expected: {', '.join(OPTION_NAMES)})"
                    + did_you_mean(key, OPTION_NAMES)
                )
        problems.extend(f"{problem}{where}" for problem in local)

    if problems:
        raise CaseOptionsError(
            f"{item.nodeid}: invalid @pytest.mark.{LLM_CASE}: " + "; ".join(problems)
        )
    merged: list[str] = []
    for group in reversed(tag_groups):
        merged.extend(tag for tag in group if tag not in merged)
    return CaseOptions(
        threshold=DEFAULT_THRESHOLD if threshold is _UNSET else threshold,
        tags=tuple(merged),
        id=None if case_id is _UNSET else case_id,
    )


def case_id(item: pytest.Item, options: CaseOptions) -> str:
    """The case's id in results: the marker's ``id`` (plus ``[param-id]`` for a parametrized
    test), else the test's name within its file (``TestClass::test_name[param-id]``).

    Results of two runs are paired by (file, case id): an ``id`` keeps the pairing when the
    test is renamed.
    """
    if options.id is None:
        return item.nodeid.partition("::")[2] or item.name
    callspec = getattr(item, "callspec", None)
    return f"{options.id}[{callspec.id}]" if callspec is not None else options.id


# --------------------------------------------------------------------------------------------
# What one test did as a case
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCall:
    """One call of the model under test from a test body."""

    request: Request
    completion: Completion


@dataclass(frozen=True)
class JudgedVerdict:
    """One judged comparison of an output with its stored reference."""

    output: str
    reference: str
    score: Score

    @property
    def passed(self) -> bool:
        return self.score.passed


@dataclass
class CaseRecord:
    """Everything one test did as a golden case, in order."""

    calls: list[ModelCall] = field(default_factory=list)
    verdicts: list[JudgedVerdict] = field(default_factory=list)
    error: str | None = None  # a model or judge call that failed: the case is an error
    error_kind: str | None = None
    unchanged_references: int = 0  # under --snapshot-update: outputs equal to their reference

    def note_error(self, message: str, kind: str) -> None:
        """Keep the first failure: later ones are usually its consequences."""
        if self.error is None:
            self.error, self.error_kind = message, kind

    @property
    def task(self) -> str:
        """The last prompt sent to the model: the task the judge is told about."""
        for call in reversed(self.calls):
            for message in reversed(call.request.messages):
                if message.role == "user":
                    return message.content
        return ""


_RECORD = pytest.StashKey[CaseRecord]()


def case_record(item: pytest.Item) -> CaseRecord:
    """The item's record, created on first use."""
    record = item.stash.get(_RECORD, None)
    if record is None:
        record = item.stash[_RECORD] = CaseRecord()
    return record


def _failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if not isinstance(message, str) or not message.strip():
        message = report.longreprtext.strip().splitlines()[-1:] or ["the test failed"]
        message = message[0]
    first = message.strip().splitlines()[0]
    return first if len(first) <= 300 else first[:299] + "…"


def case_result(item: pytest.Item, report: pytest.TestReport) -> CaseResult | None:
    """The golden-case result of a test's call phase, or None if the test is not a case.

    A test is a case when it called the model (``llm``), made a judged comparison, or carries
    ``llm_case``. Outcome: ``passed`` when the test passed; ``error`` when it failed after a
    model or judge call failed; else ``failed``. The scores are the judge's verdicts; a test
    that failed although every verdict passed (its own ``assert`` failed) gets an
    ``assertions`` score of 0 whose reason is the failure message.
    """
    if report.when != "call" or report.skipped:
        return None
    record = item.stash.get(_RECORD, None)
    if record is None:
        if item.get_closest_marker(LLM_CASE) is None:
            return None
        record = CaseRecord()
    try:
        options = case_options(item)
    except CaseOptionsError:
        options = CaseOptions()
    scores = [verdict.score for verdict in record.verdicts]
    outcome: Outcome
    if report.passed:
        outcome = "passed"
    elif record.error is not None:
        outcome = "error"
    else:
        outcome = "failed"
        if all(score.passed for score in scores):
            scores.append(
                Score(scorer="assertions", value=0.0, passed=False, reason=_failure_message(report))
            )
    last_call = record.calls[-1] if record.calls else None
    verdict = record.verdicts[-1] if record.verdicts else None
    if verdict is not None:
        output: str | None = verdict.output
    else:
        output = last_call.completion.text if last_call is not None else None
    _, line, _ = item.reportinfo()
    # Under --snapshot-update a passing test wrote its outputs as references unless every one
    # equalled its stored reference: a recorded case, not a pass.
    snapshot = getattr(item, "funcargs", {}).get("snapshot")
    recorded = (
        bool(getattr(item.config.option, "update_snapshots", False))
        and outcome == "passed"
        and getattr(snapshot, "num_executions", 0) > record.unchanged_references
    )
    return CaseResult(
        recorded=recorded,
        case_id=case_id(item, options),
        nodeid=item.nodeid,
        path=item.nodeid.partition("::")[0],
        line=(line or 0) + 1,
        outcome=outcome,
        threshold=options.threshold,
        scores=tuple(scores),
        output=output,
        reference=verdict.reference if verdict is not None else None,
        completion=last_call.completion if last_call is not None else None,
        error=record.error if outcome == "error" else None,
        error_kind=record.error_kind if outcome == "error" else None,
        tags=options.tags,
        duration_s=report.duration,
    )


# --------------------------------------------------------------------------------------------
# The judge, for judged references
# --------------------------------------------------------------------------------------------


class JudgeFn(Protocol):
    """Score ``output`` against ``reference``; raises ``ProviderError`` or ``ScorerError``.

    ``LLMRegressSession.judge_sync`` is one.
    """

    def __call__(self, output: str, reference: str, *, threshold: float, task: str) -> Score: ...


@dataclass(frozen=True)
class CaseContext:
    """The test being run, as judged references see it."""

    item: pytest.Item
    judge: JudgeFn | None
    update: bool  # --snapshot-update: references are recorded, not judged

    @property
    def record(self) -> CaseRecord:
        return case_record(self.item)

    @property
    def task(self) -> str:
        record = self.item.stash.get(_RECORD, None)
        return record.task if record is not None else ""

    def options(self) -> CaseOptions:
        return case_options(self.item)


_CURRENT: contextvars.ContextVar[CaseContext | None] = contextvars.ContextVar(
    "llmregress_case", default=None
)


@contextlib.contextmanager
def judging(
    item: pytest.Item, judge: JudgeFn | None, *, update: bool | None = None
) -> Iterator[CaseContext]:
    """Make ``item`` the current case while its body runs (the plugin wraps
    ``pytest_runtest_call`` with this); ``judge`` is None when no judge model is set.

    ``update`` (references are recorded, not judged) defaults to syrupy's ``--snapshot-update``.
    """
    if update is None:
        update = bool(getattr(item.config.option, "update_snapshots", False))
    context = CaseContext(item=item, judge=judge, update=update)
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def current_case() -> CaseContext | None:
    """The case whose body is running, if the plugin set one."""
    return _CURRENT.get()


# --------------------------------------------------------------------------------------------
# The llm fixture
# --------------------------------------------------------------------------------------------

CompleteFn = Callable[[Request], Completion]
"""Runs one request against the model under test (``Runner.complete_sync``); raises
``ProviderError``."""


class LLMOutput(str):
    """The model's answer: a ``str`` (compare it, slice it, snapshot it) with its ``Completion``."""

    completion: Completion

    def __new__(cls, text: str, completion: Completion) -> LLMOutput:
        self = super().__new__(cls, text)
        self.completion = completion
        return self

    def __getnewargs__(self) -> tuple[str, Completion]:  # type: ignore[override]
        return (str(self), self.completion)


class LLMCallError(Exception):
    """A model call from a test failed (after the runner's retries): the case is an error, not a
    failure of the model's quality. ``error`` is the ``ProviderError``."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(f"model call failed: {error}")
        self.error = error
        self.kind = error.kind


def _messages(
    user: str | None, messages: Sequence[Mapping[str, Any] | ChatMessage] | None
) -> tuple[ChatMessage, ...]:
    if messages is not None and (
        isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence)
    ):
        raise TypeError(
            f"messages: expected a list of {{'role': ..., 'content': ...}} mappings, got "
            f"{describe(messages)}"
        )
    turns: list[ChatMessage] = []
    for i, raw in enumerate(messages or ()):
        role: object
        content: object
        if isinstance(raw, ChatMessage):
            role, content = raw.role, raw.content
        elif isinstance(raw, Mapping):
            unknown = sorted(set(raw) - {"role", "content"})
            if unknown:
                raise ValueError(
                    f"messages[{i}]: unknown key {unknown[0]!r} (expected: role, content)"
                )
            role, content = raw.get("role"), raw.get("content")
        else:
            raise TypeError(
                f"messages[{i}]: expected a mapping with 'role' and 'content', got {describe(raw)}"
            )
        if role == "system":
            raise ValueError(
                f"messages[{i}]: role 'system' is not allowed in messages; pass system=... instead"
            )
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{i}].role: expected 'user' or 'assistant', got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(
                f"messages[{i}].content: expected a non-empty string, got {describe(content)}"
            )
        turns.append(ChatMessage("user" if role == "user" else "assistant", content))
    if user is not None:
        if not isinstance(user, str) or not user.strip():
            raise ValueError(f"user: expected a non-empty string, got {describe(user)}")
        turns.append(ChatMessage("user", user))
    if not turns:
        raise TypeError("complete() needs user=... or messages=[...]")
    if turns[-1].role != "user":
        raise ValueError(f"the last message must have role 'user', got {turns[-1].role!r}")
    return tuple(turns)


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    from pytest_llmregress.cases.golden import check_param

    for name, value in params.items():
        if name not in PARAM_NAMES:
            raise TypeError(
                f"complete() got an unexpected parameter {name!r} (request parameters: "
                f"{', '.join(PARAM_NAMES)}){did_you_mean(name, PARAM_NAMES)}"
            )
        problem = check_param(name, value)
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
    return dict(params)


class LLMClient:
    """The model under test, called synchronously from a test body (the ``llm`` fixture).

    Each call goes through ``complete`` (the session runner's loop: its retries, timeouts,
    concurrency budget and response cache) and is kept in the test's ``CaseRecord``.
    """

    def __init__(
        self,
        complete: CompleteFn,
        *,
        model: str,
        name: str | None = None,
        record: CaseRecord | None = None,
    ) -> None:
        self._complete = complete
        self.model = model  # the id sent to the provider
        self.name = name or model  # how reports name it, e.g. "anthropic:claude-sonnet-4-6"
        self.record = record if record is not None else CaseRecord()

    @classmethod
    def for_item(cls, item: pytest.Item, complete: CompleteFn, candidate: ModelRef) -> LLMClient:
        """The ``llm`` fixture's value for ``item``: validates its ``llm_case`` markers now, so
        a bad marker is an error of the test's setup."""
        problem: str | None = None
        try:
            case_options(item)
        except CaseOptionsError as exc:
            problem = str(exc)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        return cls(complete, model=candidate.model, name=str(candidate), record=case_record(item))

    def complete(
        self,
        *,
        user: str | None = None,
        messages: Sequence[Mapping[str, Any] | ChatMessage] | None = None,
        system: str | None = None,
        **params: Any,
    ) -> LLMOutput:
        """Send one conversation to the model under test and return its answer.

        ``user`` is the prompt; ``messages`` an earlier conversation (``{"role": "user" |
        "assistant", "content": str}``) that ``user``, if given, continues; ``params`` are
        request parameters as in golden files (``max_tokens``, ``temperature``, ``top_p``,
        ``top_k``, ``stop``, ``seed``). Raises ``LLMCallError`` when the call fails.
        """
        __tracebackhide__ = True
        if system is not None and not isinstance(system, str):
            raise TypeError(f"system: expected a string, got {describe(system)}")
        request = Request(
            model=self.model,
            messages=_messages(user, messages),
            system=system or None,
            params=_params(params),
        )
        try:
            completion = self._complete(request)
        except ProviderError as error:
            self.record.note_error(f"model call failed: {error}", error.kind)
            raise LLMCallError(error) from None  # the SDK's frames say nothing more
        self.record.calls.append(ModelCall(request, completion))
        return LLMOutput(completion.text, completion)

    def __repr__(self) -> str:
        return f"<LLMClient {self.name}>"
