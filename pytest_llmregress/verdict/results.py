"""Results of golden cases as versioned JSON documents, written as they arrive.

While a run goes, each process that runs cases appends every finished case to its own
journal, ``PATH.partial/<process>.jsonl`` (a header line, then one line per case, flushed at
once). At the end the controller writes the whole document to ``PATH`` atomically and
removes the journals. A crash, a killed worker or Ctrl-C leaves every finished case in the
journals, and ``load_results`` reads them.

Damaged files: a document that is cut short or not a results document is a
``ResultsFileError`` naming the file, the line and column (or the case) and what was
expected. A damaged journal line (not UTF-8, not JSON, not an object, a record missing
fields) is skipped and counted (``read_results``): the case on it is simply run again. The
last line of a journal whose process was killed mid-write is not damage, only unfinished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Literal

from pytest_llmregress.core.files import atomic_write_bytes
from pytest_llmregress.core.text import shared
from pytest_llmregress.core.validation import plain
from pytest_llmregress.providers.base import Completion
from pytest_llmregress.scoring.score import Score

RESULTS_VERSION = 1
Outcome = Literal["passed", "failed", "error"]
OUTCOMES: tuple[str, ...] = ("passed", "failed", "error")


class ResultsFileError(ValueError):
    """A results document or journal that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class CaseResult:
    """Everything known about one golden case's run."""

    case_id: str
    nodeid: str
    path: str
    line: int
    outcome: Outcome
    threshold: float
    scores: tuple[Score, ...] = ()
    output: str | None = None
    reference: str | None = None
    completion: Completion | None = None
    judge_completion: Completion | None = None
    error: str | None = None
    error_kind: str | None = None
    tags: tuple[str, ...] = ()
    duration_s: float = 0.0
    recorded: bool = False  # the output was taken as the case's new reference (--llm-record)
    # Each repeat's own result (--llm-repeat=K > 1), in repeat order; empty for one run. The
    # case's own fields are then one repeat's (the first failing, else the first passing),
    # with the outcome of every repeat (``of_repeats``).
    repeats: tuple[CaseResult, ...] = ()

    @property
    def score(self) -> float | None:
        """The lowest score value: the case's score in rates, means and comparisons.

        Each scorer passes against its own threshold, so what decided the verdict is
        :attr:`deciding_score`, not this value against the case's ``threshold``.
        """
        return min((s.value for s in self.scores), default=None)

    @property
    def failing_scores(self) -> tuple[Score, ...]:
        return tuple(s for s in self.scores if not s.passed)

    @property
    def deciding_score(self) -> Score | None:
        """The score the verdict hinges on, against the threshold its scorer applied.

        Of a failed case, the failing score furthest below its threshold; of a passed one,
        the score nearest above its threshold. A score without a threshold (the record of a
        recording run, a score stored before scorers recorded theirs) counts only when it
        failed, as one of 1.0. None when no score qualifies.
        """
        scores = self.failing_scores or tuple(s for s in self.scores if s.threshold is not None)
        return min(
            scores,
            key=lambda s: s.value - (1.0 if s.threshold is None else s.threshold),
            default=None,
        )

    @property
    def deciding_threshold(self) -> float:
        """The threshold of :attr:`deciding_score`; the case's ``threshold`` without one."""
        score = self.deciding_score
        return self.threshold if score is None or score.threshold is None else score.threshold

    @property
    def repeat_outcomes(self) -> tuple[bool | None, ...]:
        """Each run's outcome (True passed, False failed, None errored): the repeats', or
        this result's own for a case run once. A recorded case has none."""
        runs = self.repeats or (self,)
        return tuple(
            None if r.outcome == "error" else r.outcome == "passed" for r in runs if not r.recorded
        )

    @property
    def pass_fraction(self) -> float | None:
        """The share of scored runs that passed (1 or 0 for a case run once); None when no
        run was scored."""
        scored = [o for o in self.repeat_outcomes if o is not None]
        return sum(scored) / len(scored) if scored else None

    @classmethod
    def of_repeats(cls, runs: tuple[CaseResult, ...]) -> CaseResult:
        """One case's result from its K runs: ``passed`` when every scored run passed
        (pass^K: a case that fails sometimes is shown failing), ``failed`` when one failed,
        ``error`` only when no run was scored. Its fields are the first failing run's (else
        the first passing, else the first), its duration the longest run's."""
        if len(runs) == 1:
            return runs[0]
        failed = [r for r in runs if r.outcome == "failed"]
        passed = [r for r in runs if r.outcome == "passed"]
        shown = (failed or passed or list(runs))[0]
        error = shown.error
        if shown.outcome == "error":
            error = f"every one of {len(runs)} repeats errored; the first: {shown.error}"
        return replace(
            shown,
            error=error,
            duration_s=max(r.duration_s for r in runs),
            recorded=False,
            repeats=runs,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)  # shallow: nested records convert themselves below
        data["scores"] = [s.to_dict() for s in self.scores]
        data["tags"] = list(self.tags)
        for key in ("completion", "judge_completion"):
            if data[key] is not None:
                data[key] = data[key].to_dict()
        repeats = data.pop("repeats")
        if repeats:  # only when repeated, so other results read as before
            data["repeats"] = [r.to_dict() for r in repeats]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        values = dict(data)
        for key in ("path", "outcome", "error_kind"):
            if key in values:
                values[key] = shared(values[key])
        for key in ("completion", "judge_completion"):
            if values.get(key) is not None:
                values[key] = Completion.from_dict(values[key])
        completion, judge = values.get("completion"), values.get("judge_completion")
        if completion is not None and values.get("output") == completion.text:
            values["output"] = completion.text  # one string, not two equal ones
        scores = []
        for score in values.get("scores", ()):
            if judge is not None and score.get("raw") == judge.text:
                score = {**score, "raw": judge.text}
            scores.append(Score.from_dict(score))
        values["scores"] = tuple(scores)
        values["tags"] = tuple(values.get("tags", ()))
        if values.get("repeats"):
            values["repeats"] = tuple(cls.from_dict(r) for r in values["repeats"])
        return cls(**values)


@dataclass
class RunResult:
    """One run: its metadata and its case results, in the order they finished.

    ``compare_cases`` holds the ``--llm-compare-model``'s results on the same cases, when the
    run had one (so a resumed run can pair them again).
    """

    metadata: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)
    compare_cases: list[CaseResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "version": RESULTS_VERSION,
            # Plain dicts: the cost per case is a mapping read as it is written (PerCase).
            "metadata": plain(self.metadata),
            "cases": [case.to_dict() for case in self.cases],
        }
        if self.compare_cases:
            data["compare_cases"] = [case.to_dict() for case in self.compare_cases]
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "<results>", text: str | None = None
    ) -> RunResult:
        """A document's run; ``ResultsFileError`` naming ``source`` and the place at fault.

        ``text``: the document's JSON, to name the line of a case that does not read.
        """
        if not isinstance(data, Mapping):
            raise ResultsFileError(
                f"{source}: expected a results document (a JSON object with version, metadata "
                f"and cases), found a JSON {_json_type(data)}"
            )
        version = data.get("version")
        if version != RESULTS_VERSION:
            raise ResultsFileError(
                f"{source}: results version {version!r} is not {RESULTS_VERSION}"
            )
        metadata = data.get("metadata", {})
        if not isinstance(metadata, Mapping):
            raise ResultsFileError(
                f"{source}: metadata: expected an object, found a JSON {_json_type(metadata)}"
            )
        lists: dict[str, list[CaseResult]] = {}
        for key in ("cases", "compare_cases"):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise ResultsFileError(
                    f"{source}: {key}: expected a list of case results, found a JSON "
                    f"{_json_type(items)}"
                )
            lists[key] = []
            for index, item in enumerate(items):
                try:
                    lists[key].append(case_from_record(item))
                except ValueError as error:
                    lines = _array_lines(text, key) if text is not None else []
                    where = f":{lines[index]}" if index < len(lines) else ""
                    raise ResultsFileError(f"{source}{where}: {key}[{index}]: {error}") from None
        return cls(dict(metadata), lists["cases"], lists["compare_cases"])


_CASE_FIELDS = {f.name: f for f in fields(CaseResult)}
_REQUIRED_CASE_FIELDS = [
    name
    for name, f in _CASE_FIELDS.items()
    if f.default is MISSING and f.default_factory is MISSING
]


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def case_from_record(data: Any) -> CaseResult:
    """A stored case result, or ``ValueError`` saying what is wrong with it."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a case result (an object), found a JSON {_json_type(data)}")
    missing = [name for name in _REQUIRED_CASE_FIELDS if name not in data]
    if missing:
        raise ValueError(f"a case result without {', '.join(missing)}")
    unknown = sorted(set(data) - set(_CASE_FIELDS))
    if unknown:
        raise ValueError(f"a case result with unknown fields: {', '.join(unknown)}")
    if data["outcome"] not in OUTCOMES:
        raise ValueError(f"outcome {data['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    for name, kind in (("case_id", str), ("nodeid", str), ("path", str), ("line", int)):
        if not isinstance(data[name], kind):
            raise ValueError(f"{name}: expected a {kind.__name__}, found {data[name]!r}")
    try:
        return CaseResult.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        problem = f"case {data['case_id']!r}: its scores or replies do not read: {error}"
        raise ValueError(problem) from None


_SPACE = re.compile(r"[ \t\n\r]*")


def _array_lines(text: str, key: str) -> list[int]:
    """The line on which each element of the top-level ``key`` list starts, in valid JSON.

    Only for error messages: json.loads keeps no positions.
    """
    decoder = json.JSONDecoder()
    lines: list[int] = []
    line, counted = 1, 0

    def skip(index: int) -> int:
        match = _SPACE.match(text, index)
        return match.end() if match else index

    def line_at(index: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, index)
        counted = index
        return line

    try:
        index = skip(0)
        if text[index : index + 1] != "{":
            return []
        index = skip(index + 1)
        while text[index : index + 1] == '"':
            name, index = decoder.raw_decode(text, index)
            index = skip(skip(index) + 1)  # the colon
            if name == key and text[index : index + 1] == "[":
                index = skip(index + 1)
                while text[index : index + 1] not in ("]", ""):
                    lines.append(line_at(index))
                    _, index = decoder.raw_decode(text, index)
                    index = skip(index)
                    if text[index : index + 1] == ",":
                        index = skip(index + 1)
                return lines
            _, index = decoder.raw_decode(text, index)
            index = skip(index)
            if text[index : index + 1] != ",":
                break
            index = skip(index + 1)
    except (ValueError, IndexError):
        pass
    return lines


def in_file_order(results: Iterable[CaseResult]) -> list[CaseResult]:
    """Results as a results file lists them (by golden file, line, case id): statistics that
    resample or pair cases do not depend on the order cases finished in, so a run, its results
    file and its merged shards give the same numbers."""
    return sorted(results, key=lambda r: (r.path, r.line, r.case_id))


BATCH_JOURNAL = "batches.jsonl"
"""``--llm-batch``'s journal of the batches a run created, beside the results journals (not one
of them: it holds batch ids, no results)."""


def journal_dir(path: str | os.PathLike[str]) -> Path:
    """Where the processes of a run append their results while it goes."""
    return Path(os.fspath(path) + ".partial")


@dataclass(frozen=True)
class SkippedLines:
    """Damaged lines of one journal, skipped when it was read: their cases run again."""

    path: Path
    lines: tuple[int, ...]  # 1-based line numbers
    first_problem: str

    def describe(self) -> str:
        count = len(self.lines)
        return (
            f"skipped {count} damaged line{'s' if count > 1 else ''} in {self.path} "
            f"(first at line {self.lines[0]}: {self.first_problem})"
        )


@dataclass
class _Journal:
    metadata: dict[str, Any] | None = None  # None: no readable header line
    cases: list[CaseResult] = field(default_factory=list)
    compare_cases: list[CaseResult] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (line, problem)


def _journal_record(raw: bytes) -> dict[str, Any]:
    """One journal line as its record, or ``ValueError`` saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
        ) from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(
            f"expected a journal record (an object), found a JSON {_json_type(record)}"
        )
    if record.get("kind") not in ("header", "case"):
        raise ValueError(f"a record of kind {record.get('kind')!r}, not header or case")
    return record


def _read_journal(source: Path) -> _Journal:
    journal = _Journal()
    data = source.read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = _journal_record(raw)
            if record["kind"] == "header":
                version = record.get("version")
                if version != RESULTS_VERSION:  # not damage: a journal of another version
                    raise ResultsFileError(
                        f"{source}:{number}: results version {version!r} is not {RESULTS_VERSION}"
                    )
                metadata = record.get("metadata", {})
                if not isinstance(metadata, dict):
                    raise ValueError(f"a header whose metadata is a JSON {_json_type(metadata)}")
                journal.metadata = journal.metadata or metadata
                continue
            if "case" not in record:
                raise ValueError("a case record without its case")
            case = case_from_record(record["case"])
            compare = record.get("compare")
            compared = case_from_record(compare) if compare is not None else None
        except ResultsFileError:
            raise
        except ValueError as error:
            if number == len(lines):
                # No newline after it: the write of a killed process, cut short. Unfinished,
                # not damaged: everything before it counts.
                continue
            journal.damaged.append((number, str(error)))
            continue
        journal.cases.append(case)
        if compared is not None:
            journal.compare_cases.append(compared)
    if journal.metadata is None and not journal.cases and journal.damaged:
        line, problem = journal.damaged[0]
        raise ResultsFileError(
            f"{source}:{line}: not a results journal: no line of it is a header or a case "
            f"({problem})"
        )
    return journal


def _read_document(target: Path) -> RunResult:
    """A results document; ``ResultsFileError`` naming the file and line when it is damaged."""
    data = target.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ResultsFileError(
            f"{target}:{line}:{column}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
            f"expected a results document (JSON)"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        end = len(text.rstrip())
        if not end:
            raise ResultsFileError(
                f"{target}: the file is empty; expected a results document (JSON)"
            ) from None
        if error.pos >= end or error.msg.startswith("Unterminated string"):
            line = text.count("\n", 0, end) + 1
            column = end - (text.rfind("\n", 0, end) + 1) + 1
            raise ResultsFileError(
                f"{target}:{line}:{column}: the file ends in the middle of its JSON (cut "
                f"short?); expected the rest of a results document"
            ) from None
        raise ResultsFileError(
            f"{target}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); expected a "
            f"results document"
        ) from None
    return RunResult.from_dict(document, str(target), text)


def read_results(path: str | os.PathLike[str]) -> tuple[RunResult, list[SkippedLines]]:
    """``load_results``, and the damaged journal lines it skipped (one entry per journal)."""
    target = Path(path)
    journals = [
        journal
        for journal in (
            sorted(journal_dir(target).glob("*.jsonl")) if journal_dir(target).is_dir() else []
        )
        if journal.name != BATCH_JOURNAL
    ]
    if target.suffix == ".jsonl" and target.is_file():
        journals, document = [target], None
    elif target.is_file():
        document = _read_document(target)
    elif journals:
        document = None
    else:
        raise FileNotFoundError(f"no results at {target} (and no {journal_dir(target)}/)")
    by_node: dict[str, CaseResult] = {}
    compared: dict[str, CaseResult] = {}
    metadata: dict[str, Any] = {}
    skipped: list[SkippedLines] = []
    for source in journals:
        journal = _read_journal(source)
        metadata = metadata or journal.metadata or {}
        by_node.update((case.nodeid, case) for case in journal.cases)
        compared.update((case.nodeid, case) for case in journal.compare_cases)
        if journal.damaged:
            numbers = tuple(line for line, _ in journal.damaged)
            skipped.append(SkippedLines(source, numbers, journal.damaged[0][1]))
    if document is not None:
        metadata = document.metadata
        by_node.update((case.nodeid, case) for case in document.cases)
        compared.update((case.nodeid, case) for case in document.compare_cases)
    run = RunResult(metadata, list(by_node.values()), list(compared.values()))
    return run, skipped


def load_results(path: str | os.PathLike[str]) -> RunResult:
    """Read a results document, adding what its run's journals hold.

    An interrupted run may have no document, or a document without the cases that finished
    but were not reported; the journals (``PATH.partial/*.jsonl``) have them. For a case found
    more than once, the document wins over journals and a later journal line over an earlier.
    A damaged document raises ``ResultsFileError``; damaged journal lines are skipped
    (``read_results`` says which).
    """
    return read_results(path)[0]


def write_run(path: str | os.PathLike[str], run: RunResult) -> None:
    """Write a run's results document so that readers see the old file or the new one, never
    half of one: ``json.dumps(run.to_dict(), indent=2)``, the same bytes, written a case at a
    time, so that neither the whole document nor its text is held (at 5,000 cases they were
    most of the memory the end of a run took)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, (text.encode("utf-8") for text in _joined(_run_json(run))))


def _joined(pieces: Iterator[str], size: int = 1 << 16) -> Iterator[str]:
    """``pieces`` joined into texts of about ``size`` characters (a write each, not one per
    piece: the metadata comes in hundreds of thousands of pieces)."""
    batch: list[str] = []
    length = 0
    for piece in pieces:
        batch.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(batch)
            batch, length = [], 0
    yield "".join(batch)


def _run_json(run: RunResult) -> Iterator[str]:
    """The text of ``json.dumps(run.to_dict(), indent=2) + "\n"``, in pieces: the metadata as
    it is encoded (:func:`_json_pieces`), each case dumped alone and indented to its depth (a
    JSON string holds no raw line break)."""
    yield '{\n  "version": ' + json.dumps(RESULTS_VERSION) + ',\n  "metadata": '
    yield from _json_pieces(run.metadata, 1)
    lists = [("cases", run.cases)]
    if run.compare_cases:
        lists.append(("compare_cases", run.compare_cases))
    for name, cases in lists:
        yield f',\n  "{name}": ['
        for index, case in enumerate(cases):
            text = json.dumps(case.to_dict(), indent=2).replace("\n", "\n    ")
            yield ("," if index else "") + "\n    " + text
        yield "\n  ]" if cases else "]"
    yield "\n}\n"


def _json_pieces(value: Any, level: int) -> Iterator[str]:
    """The text of ``json.dumps(value, indent=2)`` for a value at depth ``level``, in pieces.

    ``json.dumps`` holds every piece of its text until it joins them, and needs every value
    made first; here a mapping that is not a dict (the cost per case,
    :class:`~pytest_llmregress.verdict.cost.PerCase`) is read an entry at a time as it is
    written, so that neither it nor its text is ever whole.
    """
    if isinstance(value, (Mapping, list, tuple)):
        if not value:
            yield "{}" if isinstance(value, Mapping) else "[]"
            return
        inner = "\n" + "  " * (level + 1)
        if isinstance(value, Mapping):
            opening, closing = "{" + inner, "}"
            for key, item in value.items():
                # json.dumps writes a key that is not a string as the string of its JSON.
                yield opening + json.dumps(key if isinstance(key, str) else json.dumps(key)) + ": "
                yield from _json_pieces(item, level + 1)
                opening = "," + inner
        else:
            opening, closing = "[" + inner, "]"
            for item in value:
                yield opening
                yield from _json_pieces(item, level + 1)
                opening = "," + inner
        yield "\n" + "  " * level + closing
    else:
        yield json.dumps(value)


class ResultsJournal:
    """One process's append-only record of the cases it finished, flushed line by line.

    Every process that runs cases (the lone pytest process, or each xdist worker) keeps its
    own journal, so no two writers share a file. Thread-safe: the runner client's reader
    thread writes each case the moment its result arrives.
    """

    def __init__(self, path: str | os.PathLike[str], name: str, metadata: dict[str, Any]) -> None:
        directory = journal_dir(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        self._lock = threading.Lock()
        self._handle: IO[str] | None = self.path.open("a")
        if self._handle.tell() and not _ends_with_newline(self.path):
            # A resumed journal whose process was killed mid-line: the header must not be
            # glued to that half line.
            self._handle.write("\n")
        self._write({"kind": "header", "version": RESULTS_VERSION, "metadata": metadata})

    def _write(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.write(json.dumps(obj) + "\n")
                self._handle.flush()

    def add(self, result: CaseResult, compare: CaseResult | None = None) -> None:
        """One finished case, with the compare model's result on it if there is one."""
        record: dict[str, Any] = {"kind": "case", "case": result.to_dict()}
        if compare is not None:
            record["compare"] = compare.to_dict()
        self._write(record)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def finish_results(path: str | os.PathLike[str], run: RunResult, *, keep_journals: bool) -> None:
    """Write the run's document atomically; drop the journals once the run is complete."""
    write_run(path, run)
    if not keep_journals:
        directory = journal_dir(path)
        for journal in directory.glob("*.jsonl"):
            journal.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
