"""Results of golden cases as versioned JSON documents, written as they arrive.

A run writes ``PATH.partial.jsonl`` while it goes (a header line, then one line per finished
case, flushed at once), and at the end the whole document to ``PATH`` atomically, removing
the partial file. A crash or Ctrl-C leaves every finished case in the partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
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

    @property
    def score(self) -> float | None:
        """The lowest score value: what the case's verdict hinges on."""
        return min((s.value for s in self.scores), default=None)

    @property
    def failing_scores(self) -> tuple[Score, ...]:
        return tuple(s for s in self.scores if not s.passed)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scores"] = [s.to_dict() for s in self.scores]
        data["tags"] = list(self.tags)
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
    """One run: its metadata and its case results, in the order they finished."""

    metadata: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RESULTS_VERSION,
            "metadata": self.metadata,
            "cases": [case.to_dict() for case in self.cases],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<results>") -> RunResult:
        version = data.get("version")
        if version != RESULTS_VERSION:
            raise ValueError(f"{source}: results version {version!r} is not {RESULTS_VERSION}")
        return cls(
            metadata=dict(data.get("metadata", {})),
            cases=[CaseResult.from_dict(c) for c in data.get("cases", [])],
        )


def partial_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path) + ".partial.jsonl")


def load_results(path: str | os.PathLike[str]) -> RunResult:
    """Read a results document, or the partial file an interrupted run left behind."""
    target = Path(path)
    if target.suffix == ".jsonl" or (not target.exists() and partial_path(target).exists()):
        source = target if target.suffix == ".jsonl" else partial_path(target)
        lines = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        if not lines or lines[0].get("kind") != "header":
            raise ValueError(f"{source}: not a partial results file (no header line)")
        header = lines[0]
        run = RunResult.from_dict(
            {"version": header.get("version"), "metadata": header.get("metadata", {})},
            str(source),
        )
        run.cases = [CaseResult.from_dict(line["case"]) for line in lines[1:] if "case" in line]
        return run
    return RunResult.from_dict(json.loads(target.read_text()), str(target))


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


class ResultsWriter:
    """Appends each case result to the partial file as it arrives; finalizes at the end."""

    def __init__(self, path: str | os.PathLike[str], metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.run = RunResult(metadata=metadata)
        self._partial = partial_path(self.path)
        self._partial.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = self._partial.open("w")
        self._write_line({"kind": "header", "version": RESULTS_VERSION, "metadata": metadata})

    def _write_line(self, obj: Mapping[str, Any]) -> None:
        assert self._handle is not None
        self._handle.write(json.dumps(obj) + "\n")
        self._handle.flush()

    def add(self, result: CaseResult) -> None:
        self.run.cases.append(result)
        if self._handle is not None:
            self._write_line({"kind": "case", "case": result.to_dict()})

    def extend(self, results: Iterable[CaseResult]) -> None:
        for result in results:
            self.add(result)

    def finish(self, extra_metadata: Mapping[str, Any]) -> None:
        """Write the whole document atomically and drop the partial file."""
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        self.run.metadata.update(extra_metadata)
        write_json_atomic(self.path, self.run.to_dict())
        self._partial.unlink(missing_ok=True)
