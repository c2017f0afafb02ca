"""Golden files and golden cases as pytest collectors and items."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmregress.cases.golden import CaseFileError, GoldenCase, Problem, load_cases
from pytest_llmregress.verdict.results import CaseResult

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr
    from _pytest.fixtures import FuncFixtureInfo


class GoldenCaseFailed(Exception):
    """The model answered, and the answer did not pass the case's scorers."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.case_id)
        self.result = result


class GoldenCaseErrored(Exception):
    """The case could not be scored: a model or judge call failed, or a scorer could not decide."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.error)
        self.result = result


class GoldenFile(pytest.File):
    """A JSONL or YAML file of golden cases; each case becomes a ``GoldenItem``."""

    def collect(self) -> Iterator[GoldenItem]:
        try:
            cases = load_cases(self.path, display_path=self.nodeid)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        except OSError as exc:
            raise self.CollectError(f"{self.path}: cannot read: {exc}") from None
        from pytest_llmregress.session import find_session

        session = find_session(self.config)
        if session is not None:  # parameters the models of this run cannot be sent
            problems = [
                Problem(case.line, f"params.{name}", message, case.id)
                for case in cases
                for name, message in session.plan.param_problems(case)
            ]
            if problems:
                raise self.CollectError(str(CaseFileError(self.nodeid, problems)))
        # Every case of a file sees the same fixtures (the same autouse ones, no arguments of its
        # own), so the fixture closure is computed once, for the first item, and shared, as
        # pytest shares it between the instances of a parametrized test: recomputing it per
        # item was a third of collecting 10,000 cases.
        fixtureinfo: FuncFixtureInfo | None = None
        for case in cases:
            for tag in case.tags:
                _register_tag(self.config, tag)
            item = GoldenItem.from_parent(
                self, name=case.id, callobj=_golden_case, case=case, fixtureinfo=fixtureinfo
            )
            fixtureinfo = item._fixtureinfo
            yield item


_REGISTERED_TAGS = pytest.StashKey[set[str]]()


def _register_tag(config: pytest.Config, tag: str) -> None:
    """Tags become markers; register them so ``--strict-markers`` accepts them."""
    registered = config.stash.setdefault(_REGISTERED_TAGS, set())
    if tag not in registered:
        registered.add(tag)
        config.addinivalue_line("markers", f"{tag}: golden case tag (pytest-llmregress)")


def _golden_case() -> None:
    """A golden case: pytest-llmregress runs it against the model under test."""


class GoldenItem(pytest.Function):
    """One golden case. A ``pytest.Function`` so autouse fixtures and markers apply as usual."""

    case: GoldenCase
    case_result: CaseResult | None
    baseline_result: CaseResult | None  # the compare model's result on this case

    def __init__(self, *, case: GoldenCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.case_result = None
        self.baseline_result = None
        for tag in case.tags:
            self.add_marker(getattr(pytest.mark, tag))

    def setup(self) -> None:
        from pytest_llmregress.session import get_session
        from pytest_llmregress.session.plan import NO_MODEL_REASON

        if get_session(self.config).runner is None:
            pytest.skip(NO_MODEL_REASON)
        super().setup()

    def runtest(self) -> None:
        from pytest_llmregress.session import get_session

        result, baseline = get_session(self.config).run_item(self)
        self.case_result = result
        self.baseline_result = baseline
        if result.outcome == "failed":
            raise GoldenCaseFailed(result)
        if result.outcome == "error":
            raise GoldenCaseErrored(result)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.case.line - 1, f"golden case {self.case.id}"

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, (GoldenCaseFailed, GoldenCaseErrored)):
            return render_verdict(excinfo.value.result)
        return super().repr_failure(excinfo)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or prefix


def _clip(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_verdict(result: CaseResult) -> str:
    """What a failed or errored golden item shows instead of a traceback."""
    where = f"{result.path}:{result.line}"
    lines: list[str] = []
    if result.outcome == "error":
        lines.append(f"golden case {result.case_id!r} ({where}) could not be scored")
        lines.append(f"  {result.error}")
        if result.output is not None:
            lines += ["  output:", _indent(_clip(result.output))]
        return "\n".join(lines)
    # The scorer furthest below the threshold it applied, which may be its own, not the case's.
    deciding = result.deciding_score
    shown = f"{deciding.value:.2f}" if deciding is not None else "-"
    failed = len(result.failing_scores)
    lines.append(
        f"golden case {result.case_id!r} ({where}) failed: score {shown}, "
        f"threshold {result.deciding_threshold:.2f}"
        + (f" ({failed} scorers failed)" if failed > 1 else "")
    )
    if result.repeats:  # the scores below are the first failing repeat's
        outcomes = result.repeat_outcomes
        scored = [o for o in outcomes if o is not None]
        errored = len(outcomes) - len(scored)
        lines.append(
            f"  {sum(scored)} of {len(scored)} scored repeats passed"
            + (f", {errored} errored" if errored else "")
            + " (--llm-repeat); the first failing one:"
        )
    for item in result.scores:
        mark = "ok  " if item.passed else "FAIL"
        limit = f" (threshold {item.threshold:.2f})" if item.threshold is not None else ""
        judge = f" [{item.judge_model}]" if item.judge_model else ""
        lines.append(f"  {mark} {item.scorer}{judge}: {item.value:.2f}{limit}: {item.reason}")
    if result.completion is not None:
        lines.append(
            f"  answered by {result.completion.provider}:{result.completion.resolved_model}"
        )
    if result.reference is not None and result.output is not None:
        diff = list(
            difflib.unified_diff(
                _clip(result.reference, 2000).splitlines(),
                _clip(result.output, 2000).splitlines(),
                "reference",
                "output",
                lineterm="",
                n=2,
            )
        )
        if diff:
            lines.append("  diff (reference -> output):")
            lines += [_indent(line) for line in diff[:40]]
            if len(diff) > 40:
                lines.append(f"    ... {len(diff) - 40} more diff lines")
    elif result.output is not None:
        lines += ["  output:", _indent(_clip(result.output))]
    return "\n".join(lines)
