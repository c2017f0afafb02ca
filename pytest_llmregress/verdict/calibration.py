"""The judge measured against people (``llmregress judge calibrate``, issue 15): the labelled
cases, the agreement they give, and the store that keeps it next to the golden files.

- :func:`load_labels` reads a labels file (JSONL, one case per line, or YAML, a list of
  cases): every problem of the file at once, each ``FILE:LINE: case 'id': field 'x': problem``
  (:class:`LabelsFileError`).
- :func:`calibrate` turns the judge's verdicts on those cases into a :class:`CalibrationRun`:
  the :class:`Calibration` (Cohen's kappa, agreement, precision and recall of "pass", the
  best threshold), the disagreements worst first, the judge calls that failed (counted
  apart: an error is never a disagreement).
- The store is one JSON file (by default ``golden_cases/judge-calibration.json``, the
  ``--llm-calibration`` option's default) holding one :class:`Calibration` per judge model
  and judge prompt version, under the key ``"<provider:model>@<prompt version>"``
  (:func:`calibration_key`). :func:`save_calibration` replaces its own key and keeps the
  others, written atomically; :func:`load_calibrations`, :func:`find_calibration`;
  :func:`calibration_line` is the summary's one line. A damaged store is a
  :class:`CalibrationStoreError` naming the file.

Pure: no pytest, no SDK; the statistics are :mod:`~pytest_llmregress.verdict.agreement`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_llmregress.core.files import FileChangedError, atomic_write_text
from pytest_llmregress.core.validation import (
    LineMap,
    Problem,
    Problems,
    ProblemText,
    describe,
    is_number,
    message_text,
    unknown_key_message,
    yaml_construct,
    yaml_duplicate_keys,
    yaml_line,
    yaml_problem,
)
from pytest_llmregress.providers.registry import ModelSpecError, parse_model
from pytest_llmregress.scoring.judge import JUDGE_PROMPT_VERSION
from pytest_llmregress.settings import OPTIONS_BY_NAME
from pytest_llmregress.verdict.agreement import (
    best_threshold,
    binary_agreement,
    cohen_kappa,
    krippendorff_alpha,
)

if TYPE_CHECKING:
    import yaml

__all__ = [
    "LABEL_FIELDS",
    "STORE_VERSION",
    "Calibration",
    "CalibrationRun",
    "CalibrationStoreError",
    "Disagreement",
    "Judged",
    "Label",
    "LabelsFileError",
    "calibrate",
    "calibration_key",
    "calibration_line",
    "default_store",
    "find_calibration",
    "load_calibrations",
    "load_labels",
    "parse_labels",
    "save_calibration",
]

STORE_VERSION: Final = 1
"""The version of the store's format (its ``version`` key)."""

LABEL_FIELDS: Final = ("id", "task", "user", "reference", "output", "label", "score", "note")
"""The keys a labelled case may have (``task`` and ``user`` are one field, two names)."""

_PASS_WORDS: Final = {"pass": True, "fail": False}


def default_store() -> str:
    """The store's path relative to the rootdir: the ``--llm-calibration`` option's default."""
    default: str = OPTIONS_BY_NAME["calibration"].default
    return default


# --------------------------------------------------------------------------------------------
# Labelled cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One case people labelled: the output they judged, their verdict and (optionally) their
    score in 0..1. ``line``: where the case is written in its file."""

    id: str
    task: str
    reference: str
    output: str
    passed: bool
    score: float | None = None
    line: int = 0


class LabelsFileError(ValueError):
    """Every problem of one labels file; its message is one ``FILE:LINE: ...`` line each."""

    def __init__(self, path: str, problems: Sequence[Problem], omitted: int = 0) -> None:
        self.path = path
        self.problems = list(problems)
        self.omitted = omitted
        super().__init__(path, self.problems)

    def __str__(self) -> str:
        lines = [problem.format(self.path) for problem in self.problems]
        if self.omitted:
            lines.append(f"{self.path}: {self.omitted} more problem(s) not shown")
        return "\n".join(lines)


def _check_case(
    data: Mapping[str, Any],
    line_of: Callable[[str | None], int],
    problems: Problems[Problem],
    seen: dict[str, int],
) -> Label | None:
    """One case's fields checked; ``line_of(field)`` is the line of a field (or of the case
    for None). The label, or None when the case has a problem (each added to ``problems``)."""
    found = len(problems)
    raw_id = data.get("id")
    case_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None

    def add(field: str | None, message: ProblemText) -> None:
        problems.add(lambda: Problem(line_of(field), field, message_text(message), case_id))

    for key in data:
        if key not in LABEL_FIELDS:
            add(key, unknown_key_message("key", key, LABEL_FIELDS))
    if "id" not in data:
        add(None, "missing field 'id'")
    elif case_id is None:
        add("id", f"expected a non-empty string, got {describe(raw_id)}")
    elif case_id in seen:
        add("id", f"duplicate id {case_id!r} (first at line {seen[case_id]})")
    else:
        seen[case_id] = line_of(None)
    if "task" in data and "user" in data:
        add("user", "give the task as 'task' or as 'user', not both")
    task_key = "user" if "user" in data and "task" not in data else "task"
    texts: dict[str, str] = {}
    for key in (task_key, "reference", "output"):
        value = data.get(key)
        if key not in data:
            what = "'task' (or 'user')" if key in ("task", "user") else repr(key)
            add(None, f"missing field {what}")
        elif not isinstance(value, str):
            add(key, f"expected a string, got {describe(value)}")
        elif key != "output" and not value.strip():
            add(key, "expected a non-empty string")
        else:
            texts[key] = value
    raw_label = data.get("label")
    passed: bool | None = None
    if "label" not in data:
        add(None, "missing field 'label'")
    elif isinstance(raw_label, bool):
        passed = raw_label
    elif isinstance(raw_label, str) and raw_label.strip().lower() in _PASS_WORDS:
        passed = _PASS_WORDS[raw_label.strip().lower()]
    else:
        add("label", f"expected pass or fail (or true/false), got {describe(raw_label)}")
    score = data.get("score")
    if score is not None and (not is_number(score) or not 0.0 <= float(score) <= 1.0):
        add("score", f"expected a number from 0 to 1, got {describe(score)}")
    if len(problems) != found or passed is None or case_id is None:
        return None
    return Label(
        id=case_id,
        task=texts[task_key],
        reference=texts["reference"],
        output=texts["output"],
        passed=passed,
        score=None if score is None else float(score),
        line=line_of(None),
    )


def _note(problems: Problems[Problem], line: int | None, message: str) -> None:
    problems.add(lambda: Problem(line, None, message))


def _on_line(line: int) -> Callable[[str | None], int]:
    """A JSONL case's fields are all on its line."""
    return lambda _field: line


def _lines_of(node: yaml.Node) -> Callable[[str | None], int]:
    """Where a YAML case's fields are written (the case's line for None)."""
    lines = LineMap(node)
    return lambda field: lines.line((field,) if field else None)


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose every key is written once (a second 'label' would hide the first)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def parse_labels(text: str, path: str) -> list[Label]:
    """The labelled cases of a file's ``text``: YAML when ``path`` ends in ``.yaml``/``.yml``
    (a list of cases, or a mapping whose ``cases`` is one), else JSONL (one object a line;
    blank lines and lines starting with ``//`` skipped). Raises :class:`LabelsFileError`
    with every problem of the file."""
    text = text.removeprefix("\ufeff")
    if path.lower().endswith((".yaml", ".yml")):
        return _parse_yaml(text, path)
    problems: Problems[Problem] = Problems()
    seen: dict[str, int] = {}
    labels: list[Label] = []
    any_case = False
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        any_case = True
        try:
            data = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            _note(problems, number, f"duplicate key {exc.args[0]!r} in the JSON object")
            continue
        except json.JSONDecodeError as exc:
            message = f"invalid JSON at column {exc.colno}: {exc.msg}"
            _note(problems, number, message)
            continue
        except (RecursionError, ValueError):
            _note(problems, number, "invalid JSON")
            continue
        if not isinstance(data, dict):
            got = f"expected a JSON object (one case per line), got {describe(data)}"
            _note(problems, number, got)
            continue
        label = _check_case(data, _on_line(number), problems, seen)
        if label is not None:
            labels.append(label)
    if not any_case:
        problems.add(lambda: Problem(None, None, "no labelled cases in the file"))
    if problems:
        raise LabelsFileError(path, problems.items, problems.omitted)
    return labels


def _parse_yaml(text: str, path: str) -> list[Label]:
    import yaml

    problems: Problems[Problem] = Problems()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else None
        raise LabelsFileError(path, [Problem(line, None, yaml_problem(exc))]) from None
    items: list[yaml.Node] = []
    if isinstance(root, yaml.MappingNode):
        cases = next((pair for pair in root.value if pair[0].value == "cases"), None)
        if cases is not None and isinstance(cases[1], yaml.SequenceNode):
            items = list(cases[1].value)
        else:
            where = yaml_line(cases[0]) if cases is not None else yaml_line(root)
            raise LabelsFileError(
                path, [Problem(where, "cases", "expected a list of labelled cases")]
            )
    elif isinstance(root, yaml.SequenceNode):
        items = list(root.value)
    elif root is not None:
        raise LabelsFileError(
            path,
            [Problem(yaml_line(root), None, "expected a list of labelled cases (or 'cases:')")],
        )
    seen: dict[str, int] = {}
    labels: list[Label] = []
    for item in items:
        where = yaml_line(item)
        if not isinstance(item, yaml.MappingNode):
            _note(problems, where, "expected a mapping (one labelled case)")
            continue
        duplicates = yaml_duplicate_keys(item, "a labelled case")
        for line, message in duplicates:
            _note(problems, line, message)
        if duplicates:
            continue
        try:
            data = yaml_construct(item)
        except yaml.YAMLError as exc:
            message = yaml_problem(exc)
            _note(problems, where, message)
            continue
        label = _check_case(data, _lines_of(item), problems, seen)
        if label is not None:
            labels.append(label)
    if not items and not problems:
        problems.add(lambda: Problem(None, None, "no labelled cases in the file"))
    if problems:
        raise LabelsFileError(path, problems.items, problems.omitted)
    return labels


def load_labels(path: str | Path) -> list[Label]:
    """Read and check a labels file (see :func:`parse_labels`); a file that cannot be read
    is a :class:`LabelsFileError` too."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LabelsFileError(
            name, [Problem(None, None, f"not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise LabelsFileError(
            name, [Problem(None, None, f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    return parse_labels(text, name)


# --------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """The judge's verdict on one labelled case: its score and reason, or (``error``) why the
    call gave none."""

    label: Label
    score: float | None
    reason: str
    error: str | None = None


@dataclass(frozen=True)
class Disagreement:
    """A case where the judge's verdict at the threshold is not the people's."""

    id: str
    line: int
    people_pass: bool
    judge_pass: bool
    score: float
    threshold: float
    reason: str

    @property
    def margin(self) -> float:
        """How far the judge's score is from the threshold: the larger, the surer it was."""
        return abs(self.score - self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "line": self.line,
            "people": "pass" if self.people_pass else "fail",
            "judge": "pass" if self.judge_pass else "fail",
            "score": self.score,
            "threshold": self.threshold,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Calibration:
    """One judge (model as given, prompt version) measured against people's labels.

    ``cases``: the labelled cases the judge scored (those are the numbers' base);
    ``errors``: the cases whose judge call failed, left out. ``kappa``, ``precision``,
    ``recall``, ``agreement`` (the share of cases where the verdicts match) are at
    ``threshold``; ``best_threshold`` is the judge score from which a case passing agrees
    best with people, ``best_kappa`` the kappa there. ``score_alpha``: Krippendorff's alpha
    (interval) of people's scores and the judge's on the ``scored`` cases that have both.
    A statistic that is undefined (every label the same) is None.
    """

    judge_model: str
    prompt_version: str
    date: str
    cases: int
    kappa: float | None
    agreement: float | None
    precision: float | None
    recall: float | None
    true_pass: int
    false_pass: int
    false_fail: int
    true_fail: int
    threshold: float
    best_threshold: float
    best_kappa: float | None
    disagreements: int
    errors: int
    labels: str
    scored: int = 0
    score_alpha: float | None = None

    @property
    def key(self) -> str:
        """The store's key of this calibration (:func:`calibration_key`)."""
        return calibration_key(self.judge_model, self.prompt_version)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """A calibration as :meth:`to_dict` wrote it; ``ValueError`` naming the first field
        that is missing or of the wrong kind."""
        checked: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.name in ("scored", "score_alpha"):
                    continue
                raise ValueError(f"missing field {f.name!r}")
            value = data[f.name]
            kind = str(f.type)
            if kind == "str":
                ok = isinstance(value, str)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            elif kind == "float":
                ok = is_number(value)
            else:  # float | None
                ok = value is None or is_number(value)
            if not ok:
                raise ValueError(f"field {f.name!r}: unexpected {describe(value)}")
            checked[f.name] = float(value) if "float" in kind and value is not None else value
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        return cls(**checked)


@dataclass(frozen=True)
class CalibrationRun:
    """What one ``llmregress judge calibrate`` found: the calibration, the disagreements
    (worst first: the judge's score farthest from the threshold, then by id) and the cases
    whose judge call failed, in the labels file's order."""

    calibration: Calibration
    disagreements: tuple[Disagreement, ...]
    errors: tuple[Judged, ...]


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def calibrate(
    judged: Sequence[Judged],
    *,
    judge_model: str,
    prompt_version: str = JUDGE_PROMPT_VERSION,
    threshold: float,
    labels: str,
    date: str,
) -> CalibrationRun:
    """Measure the judge against people from its verdicts on the labelled cases.

    A case passes for the judge when its score is ``>= threshold``. Cases whose judge call
    failed (``error``) are left out of every number and listed apart. ``ValueError`` when no
    case was scored.
    """
    scored = [j for j in judged if j.error is None and j.score is not None]
    failed = tuple(j for j in judged if j.error is not None or j.score is None)
    if not scored:
        raise ValueError("the judge scored none of the labelled cases")
    people = [j.label.passed for j in scored]
    scores = [float(j.score) for j in scored if j.score is not None]
    verdicts = [s >= threshold for s in scores]
    counts = binary_agreement(people, verdicts)
    best = best_threshold(scores, people)
    disagreements = sorted(
        (
            Disagreement(
                id=j.label.id,
                line=j.label.line,
                people_pass=j.label.passed,
                judge_pass=verdict,
                score=score,
                threshold=threshold,
                reason=j.reason,
            )
            for j, score, verdict in zip(scored, scores, verdicts, strict=True)
            if verdict != j.label.passed
        ),
        key=lambda d: (-d.margin, d.id),
    )
    both = [
        (j.label.score, s) for j, s in zip(scored, scores, strict=True) if j.label.score is not None
    ]
    alpha = (
        _number(krippendorff_alpha([[p for p, _ in both], [s for _, s in both]], "interval"))
        if len(both) >= 2
        else None
    )
    calibration = Calibration(
        judge_model=judge_model,
        prompt_version=prompt_version,
        date=date,
        cases=len(scored),
        kappa=_number(cohen_kappa(people, verdicts)),
        agreement=counts.accuracy,
        precision=counts.precision,
        recall=counts.recall,
        true_pass=counts.true_pass,
        false_pass=counts.false_pass,
        false_fail=counts.false_fail,
        true_fail=counts.true_fail,
        threshold=threshold,
        best_threshold=best.threshold,
        best_kappa=_number(best.kappa),
        disagreements=len(disagreements),
        errors=len(failed),
        labels=labels,
        scored=len(both),
        score_alpha=alpha,
    )
    return CalibrationRun(calibration, tuple(disagreements), failed)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class CalibrationStoreError(ValueError):
    """A store that cannot be read or written; the message names the file."""


def calibration_key(judge_model: str, prompt_version: str = JUDGE_PROMPT_VERSION) -> str:
    """``openai:gpt-5.5-2026-04-23@2``: the judge as ``provider:model`` (so that
    ``gpt-5.5-2026-04-23`` and ``openai:gpt-5.5-2026-04-23`` are one judge; an id no
    provider can be told for stays as given) and the judge prompt's version."""
    try:
        model = str(parse_model(judge_model))
    except ModelSpecError:
        model = judge_model.strip()
    return f"{model}@{prompt_version}"


def _read_store(path: Path) -> tuple[dict[str, Calibration], bytes | None]:
    """The store's calibrations by key and the bytes they were read from (None: no file)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        raise CalibrationStoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
    damaged = f"{path}: not a judge calibration store"
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CalibrationStoreError(f"{damaged}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CalibrationStoreError(
            f"{damaged}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (RecursionError, ValueError):
        raise CalibrationStoreError(f"{damaged}: invalid JSON") from None
    if not isinstance(document, dict):
        raise CalibrationStoreError(f"{damaged}: expected a JSON object, got {describe(document)}")
    version = document.get("version")
    if version != STORE_VERSION:
        raise CalibrationStoreError(
            f"{damaged}: expected 'version': {STORE_VERSION}, got {describe(version)}"
        )
    entries = document.get("calibrations")
    if not isinstance(entries, dict):
        raise CalibrationStoreError(
            f"{damaged}: 'calibrations' must be an object, got {describe(entries)}"
        )
    found: dict[str, Calibration] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise CalibrationStoreError(
                f"{damaged}: calibrations[{key!r}]: expected an object, got {describe(entry)}"
            )
        try:
            found[key] = Calibration.from_dict(entry)
        except ValueError as exc:
            raise CalibrationStoreError(f"{damaged}: calibrations[{key!r}]: {exc}") from None
    return found, raw


def load_calibrations(path: str | Path) -> dict[str, Calibration]:
    """Every calibration of the store by key; {} when there is no store.
    :class:`CalibrationStoreError` (naming the file) when it is damaged."""
    return _read_store(Path(path))[0]


def save_calibration(path: str | Path, calibration: Calibration) -> None:
    """Store ``calibration`` under its key, keeping every other key; the file is written
    atomically (its folder made when missing). Refuses a damaged store rather than
    overwriting it; a store another process changed meanwhile is read again."""
    target = Path(path)
    for _ in range(5):
        entries, before = _read_store(target)
        entries[calibration.key] = calibration
        document = {
            "version": STORE_VERSION,
            "calibrations": {key: entry.to_dict() for key, entry in entries.items()},
        }
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, text, expected=before)
        except FileChangedError:
            continue
        except FileNotFoundError:
            if before is None:
                raise CalibrationStoreError(f"{target}: cannot write: no such folder") from None
            continue  # removed meanwhile: read again
        except OSError as exc:
            raise CalibrationStoreError(f"{target}: cannot write: {exc.strerror or exc}") from None
        return
    raise CalibrationStoreError(f"{target}: changed by another process at every try")


def find_calibration(
    path: str | Path, judge_model: str, prompt_version: str = JUDGE_PROMPT_VERSION
) -> Calibration | None:
    """The calibration of this judge model and judge prompt version, or None."""
    return load_calibrations(path).get(calibration_key(judge_model, prompt_version))


def calibration_line(
    calibration: Calibration | None,
    judge_model: str,
    *,
    prompt_version: str = JUDGE_PROMPT_VERSION,
    store: str | Path | None = None,
) -> str:
    """The summary's one line on the judge: ``judge M: κ = 0.81 on 120 labelled cases,
    2026-11-02``, or ``judge M: uncalibrated (no calibration for judge prompt v2 in STORE;
    run llmregress judge calibrate)``."""
    if calibration is None:
        where = default_store() if store is None else str(store)
        return (
            f"judge {judge_model}: uncalibrated (no calibration for judge prompt "
            f"v{prompt_version} in {where}; run llmregress judge calibrate)"
        )
    kappa = "κ undefined" if calibration.kappa is None else f"κ = {calibration.kappa:.2f}"
    return (
        f"judge {judge_model}: {kappa} on {calibration.cases} labelled "
        f"{'case' if calibration.cases == 1 else 'cases'}, {calibration.date}"
    )
