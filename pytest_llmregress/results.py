"""Results of golden cases as versioned JSON documents, written as they arrive.

While a run goes, each process that runs cases appends every finished case to its own
journal, ``PATH.partial/<process>.jsonl`` (a header line, then one line per case, flushed at
once). At the end the controller writes the whole document to ``PATH`` atomically and
removes the journals. A crash, a killed worker or Ctrl-C leaves every finished case in the
journals, and ``load_results`` reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pytest_llmregress.providers.base import Completion
from pytest_llmregress.scoring.score import Score

RESULTS_VERSION = 1
Outcome = Literal["passed", "failed", "error"]


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

    @property
    def score(self) -> float | None:
        """The lowest score value: what the case's verdict hinges on."""
        return min((s.value for s in self.scores), default=None)

    @property
    def failing_scores(self) -> tuple[Score, ...]:
        return tuple(s for s in self.scores if not s.passed)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)  # shallow: nested records convert themselves below
        data["scores"] = [s.to_dict() for s in self.scores]
        data["tags"] = list(self.tags)
        for key in ("completion", "judge_completion"):
            if data[key] is not None:
                data[key] = data[key].to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        values = dict(data)
        values["scores"] = tuple(Score.from_dict(s) for s in values.get("scores", ()))
        values["tags"] = tuple(values.get("tags", ()))
        for key in ("completion", "judge_completion"):
            if values.get(key) is not None:
                values[key] = Completion.from_dict(values[key])
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
            "metadata": self.metadata,
            "cases": [case.to_dict() for case in self.cases],
        }
        if self.compare_cases:
            data["compare_cases"] = [case.to_dict() for case in self.compare_cases]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<results>") -> RunResult:
        version = data.get("version")
        if version != RESULTS_VERSION:
            raise ValueError(f"{source}: results version {version!r} is not {RESULTS_VERSION}")
        return cls(
            metadata=dict(data.get("metadata", {})),
            cases=[CaseResult.from_dict(c) for c in data.get("cases", [])],
            compare_cases=[CaseResult.from_dict(c) for c in data.get("compare_cases", [])],
        )


def journal_dir(path: str | os.PathLike[str]) -> Path:
    """Where the processes of a run append their results while it goes."""
    return Path(os.fspath(path) + ".partial")


def _read_journal(source: Path) -> tuple[dict[str, Any], list[CaseResult], list[CaseResult]]:
    header: dict[str, Any] | None = None
    cases: list[CaseResult] = []
    compare_cases: list[CaseResult] = []
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # The last line of a killed process can be cut short; everything before it counts.
            continue
        if record.get("kind") == "header":
            header = record
        elif record.get("kind") == "case":
            cases.append(CaseResult.from_dict(record["case"]))
            if record.get("compare") is not None:
                compare_cases.append(CaseResult.from_dict(record["compare"]))
        else:
            raise ValueError(f"{source}:{number}: not a results journal line")
    if header is None:
        raise ValueError(f"{source}: not a results journal (no header line)")
    if header.get("version") != RESULTS_VERSION:
        raise ValueError(
            f"{source}: results version {header.get('version')!r} is not {RESULTS_VERSION}"
        )
    return dict(header.get("metadata", {})), cases, compare_cases


def load_results(path: str | os.PathLike[str]) -> RunResult:
    """Read a results document, adding what its run's journals hold.

    An interrupted run may have no document, or a document without the cases that finished
    but were not reported; the journals (``PATH.partial/*.jsonl``) have them. For a case found
    more than once, the document wins over journals and a later journal line over an earlier.
    """
    target = Path(path)
    journals = sorted(journal_dir(target).glob("*.jsonl")) if journal_dir(target).is_dir() else []
    if target.suffix == ".jsonl" and target.is_file():
        journals, document = [target], None
    elif target.is_file():
        document = RunResult.from_dict(json.loads(target.read_text()), str(target))
    elif journals:
        document = None
    else:
        raise FileNotFoundError(f"no results at {target} (and no {journal_dir(target)}/)")
    by_node: dict[str, CaseResult] = {}
    compared: dict[str, CaseResult] = {}
    metadata: dict[str, Any] = {}
    for journal in journals:
        meta, cases, compare_cases = _read_journal(journal)
        metadata = metadata or meta
        by_node.update((case.nodeid, case) for case in cases)
        compared.update((case.nodeid, case) for case in compare_cases)
    if document is not None:
        metadata = document.metadata
        by_node.update((case.nodeid, case) for case in document.cases)
        compared.update((case.nodeid, case) for case in document.compare_cases)
    return RunResult(metadata, list(by_node.values()), list(compared.values()))


def write_json_atomic(path: str | os.PathLike[str], document: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def finish_results(path: str | os.PathLike[str], run: RunResult, *, keep_journals: bool) -> None:
    """Write the run's document atomically; drop the journals once the run is complete."""
    write_json_atomic(path, run.to_dict())
    if not keep_journals:
        directory = journal_dir(path)
        for journal in directory.glob("*.jsonl"):
            journal.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
