"""``JudgedReference``: a syrupy extension that stores a reference output and judges new ones.

The reference is a plain text file per assertion, ``__snapshots__/<test file>/<test name>.txt``
(syrupy's single-file layout), so a recorded or changed reference reads as an ordinary diff in
review. ``--snapshot-update`` records references (no judge call); without it a new output
matches its reference when the judge's score reaches the case's threshold (``llm_case``, else
0.85), not when the strings are equal. syrupy keeps its usual duties: missing and unused
references, cleanup on ``--snapshot-update``, reports, xdist.

At comparison time the extension reads the running test from
``pytest_llmregress.collect.llm_fixture.current_case()``, which the plugin sets around each test's
body: the judge to call, whether references are being recorded, the case's threshold, and the
``CaseRecord`` that receives the verdict for the gate.

This module imports syrupy (the ``syrupy`` extra): the plugin imports it only inside hooks, when
a comparison involves a syrupy ``SnapshotAssertion``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
except ImportError as exc:  # syrupy is an extra: pytest-llmregress[syrupy]
    raise ImportError(
        "JudgedReference needs syrupy: pip install 'pytest-llmregress[syrupy]'"
    ) from exc

from pytest_llmregress.collect.llm_fixture import CaseOptionsError, JudgedVerdict, current_case
from pytest_llmregress.providers.base import ProviderError
from pytest_llmregress.scoring.score import ScorerError

if TYPE_CHECKING:
    from syrupy.types import (
        PropertyFilter,
        PropertyMatcher,
        SerializableData,
        SerializedData,
    )

__all__ = ["JudgedReference", "JudgedText", "explain_judged"]

NO_PLUGIN = (
    "JudgedReference compares outputs with the judge of pytest-llmregress, which is not active "
    "in this test run (is the plugin disabled with -p no:llmregress?)"
)
NO_JUDGE = (
    "JudgedReference compares the output with its reference using the judge, and no judge "
    "model is set: run with --llm-judge-model=ID (or record references with --snapshot-update)"
)


class JudgedText(str):
    """An output as the extension serialized it; after a judged comparison, ``verdict`` holds
    the judge's verdict (``explain_judged`` shows it when the assertion fails)."""

    verdict: JudgedVerdict | None

    def __new__(cls, text: str) -> JudgedText:
        self = super().__new__(cls, text)
        self.verdict = None
        return self

    def __getnewargs__(self) -> tuple[str]:
        return (str(self),)


class JudgedReference(SingleFileSnapshotExtension):
    """A reference output in a text file; a new output matches when the judge says it is close.

    Use it per assertion, ``assert out == snapshot(extension_class=JudgedReference)``, or for a
    whole test, ``snapshot.use_extension(JudgedReference)``.
    """

    file_extension = "txt"
    _write_mode = WriteMode.TEXT

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        if not isinstance(data, str):
            raise TypeError(
                f"JudgedReference stores text: expected the model's output (a str), got "
                f"{type(data).__name__}"
            )
        return JudgedText(data)

    def matches(
        self, *, serialized_data: SerializableData, snapshot_data: SerializableData
    ) -> bool:
        """Judge the output against the stored reference; record references when updating.

        A judge call that fails, or a case with no judge, fails the test with a message (not a
        mismatch): the verdict was never reached.
        """
        __tracebackhide__ = True
        output, reference = str(serialized_data), str(snapshot_data)
        case = current_case()
        if case is None:
            pytest.fail(NO_PLUGIN, pytrace=False)
        if case.update:
            if output == reference:
                case.record.unchanged_references += 1
                return True
            return False  # a different output is written as the new reference
        if case.judge is None:
            case.record.note_error(NO_JUDGE, "no_judge")
            pytest.fail(NO_JUDGE, pytrace=False)
        problem: str | None = None
        try:
            threshold = case.options().threshold
            score = case.judge(output, reference, threshold=threshold, task=case.task)
        except CaseOptionsError as exc:
            problem = str(exc)
        except ProviderError as error:
            problem = f"judge call failed: {error}"
            case.record.note_error(problem, error.kind)
        except ScorerError as error:
            problem = f"scoring failed: {error}"
            case.record.note_error(problem, "scorer")
        if problem is not None:  # failing outside the except keeps the message alone
            pytest.fail(f"the judged reference could not be scored: {problem}", pytrace=False)
        verdict = JudgedVerdict(output=output, reference=reference, score=score)
        case.record.verdicts.append(verdict)
        if isinstance(serialized_data, JudgedText):
            serialized_data.verdict = verdict
        return score.passed


def _shown_path(location: str) -> str:
    try:
        return os.path.relpath(location)
    except ValueError:  # another drive (Windows)
        return location


def verdict_lines(verdict: JudgedVerdict, location: str) -> list[str]:
    """What a failed judged comparison adds to syrupy's explanation, before its diff."""
    score = verdict.score
    judge = f"judge {score.judge_model}" if score.judge_model else "judge"
    threshold = score.threshold if score.threshold is not None else 0.0
    return [
        f"judged reference {Path(_shown_path(location)).as_posix()}: score {score.value:.2f} "
        f"is below the threshold {threshold:.2f}",
        f"{judge}: {score.reason}",
    ]


def explain_judged(left: Any, right: Any, lines: list[str]) -> list[str]:
    """Add the judge's verdict to syrupy's explanation of a failed judged comparison.

    ``lines`` is one explanation that ``pytest_assertrepr_compare`` produced (syrupy's header
    line and diff). Score, threshold and reason go right after the header, where pytest's
    truncation of long explanations keeps them. Other comparisons are returned unchanged.
    """
    if not lines:
        return lines
    for side in (right, left):
        if not isinstance(side, SnapshotAssertion) or not side.num_executions:
            continue
        result = side.executions.get(side.num_executions - 1)
        if result is None or result.success:
            continue
        data = result.asserted_data
        if isinstance(data, JudgedText) and data.verdict is not None:
            extra = verdict_lines(data.verdict, result.snapshot_location)
            if extra[0] in lines:  # already added (the hook ran twice)
                return lines
            return [lines[0], *extra, *lines[1:]]
    return lines
