"""``llmregress merge``: the shards of a CI matrix (``--llm-shard=I/N``) as one run::

    llmregress merge SHARD.json... -o MERGED.json [--markdown PATH] [--html PATH]
                     [--baseline BASE.json] [--history DIR] [--root DIR]
                     [--min-pass-rate R] [--max-error-rate R] [--gate mean|all]
                     [--max-regression M] [--alpha A] [--worst N]

Each file is one shard's results (``--llm-report``; an interrupted shard's partial results
read too). Before anything is written the shards are checked to be one run cut once: every
file a shard (``settings.shard`` in its metadata) of the same N, each shard exactly once, the
same models, prompts, plugin version and run design (repeats, judging), the same gate settings
unless given here, and each case in the shard its case id belongs to (``collect/shard.py``) and
in no other. A refusal names the files and cases at fault (exit 2).

The merged run is then gated, compared and rendered by the session's own code: a ``RunPlan``
and a ``Gatherer`` are built from the shards (``session/plan.py``, ``session/gather.py``), the
verdict is ``Gatherer.conclude`` (the gate, ``--baseline`` or the compare model's pairs) and the
outputs are ``session/outputs.py``'s results document, markdown and HTML page, so they are
those of one run of the same cases. Exit status: 0 the gate passed, 1 it failed, 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmregress.collect.shard import shard_of_case
from pytest_llmregress.providers.registry import ModelSpecError, parse_model
from pytest_llmregress.settings import OPTIONS_BY_NAME, Settings, shard_of
from pytest_llmregress.verdict.results import RunResult, read_results

if TYPE_CHECKING:
    from pytest_llmregress.session.gather import Gatherer
    from pytest_llmregress.session.plan import RunPlan

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2

GATE_SETTINGS: dict[str, str] = {
    "min_pass_rate": "the gate's minimum pass rate (0..1)",
    "max_error_rate": "the largest share of cases that may end in an error (0..1)",
    "gate": "with repeats, gate on the mean pass rate or on pass^K",
    "max_regression": "the largest significant drop against the baseline (0..1)",
    "alpha": "the comparison's significance level",
    "worst": "worst cases listed in the summary and the markdown",
}
"""Settings the merge may be given (with their help); else the shards' (which must agree)."""

DESIGN_SETTINGS = ("repeat", "judge_repeat", "judge_panel", "judge_order_sample")
"""Settings that change what a case's result is: the shards must agree on them."""

SAME_RUN = ("plugin_version", "candidate", "compare", "judge", "judges", "prompt_model", "prompts")
"""Metadata every shard of one run shares."""


CASES_LISTED = 20
"""Problems of single cases listed before the rest are counted."""


class MergeError(Exception):
    """Shards that cannot be merged; the message names every file and case at fault."""


@dataclass(frozen=True)
class Shard:
    """One shard's results file: its path as given, its run, its place ``index`` of ``count``."""

    path: str
    run: RunResult
    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress merge",
        description=(
            "Merge the results files of the shards of one run (--llm-shard=I/N) into one, "
            "checking that every case ran exactly once, and gate, compare and report it as "
            "one run. Exit 0: the gate passed; 1: it failed; 2: usage or shards refused."
        ),
    )
    parser.add_argument(
        "shards", nargs="+", metavar="SHARD_RESULTS", help="each shard's results file"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="MERGED.json", help="the merged results file"
    )
    parser.add_argument("--markdown", metavar="PATH", help="write the markdown summary there")
    parser.add_argument("--html", metavar="PATH", help="write the HTML page there")
    parser.add_argument(
        "--baseline", metavar="BASE.json", help="compare the merged run with this results file"
    )
    parser.add_argument(
        "--history", metavar="DIR", help="a history folder: the HTML page draws its runs"
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=".",
        help="the project: golden files (each case's input), prices, calibration (default: .)",
    )
    for name, text in GATE_SETTINGS.items():
        option = OPTIONS_BY_NAME[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=option.parse,
            metavar=option.metavar,
            help=f"{text} (default: the shards' {option.flag})",
        )
    return parser


def _error(message: str) -> int:
    print(f"llmregress merge: {message}", file=sys.stderr)
    return EXIT_USAGE


def _named(path: str, error: Exception) -> str:
    text = str(error)
    return text if path in text else f"{path}: {text}"


def load_shard(path: str) -> Shard:
    """A shard's results file; ``MergeError`` when it cannot be read or is not a shard's."""
    try:
        run, skipped = read_results(path)
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read results: {_named(path, exc)}") from None
    for lines in skipped:
        print(
            f"llmregress merge: note: {lines.describe()}; their cases are left out",
            file=sys.stderr,
        )
    value = (run.metadata.get("settings") or {}).get("shard")
    if not isinstance(value, str):
        raise MergeError(
            f"{path}: not a shard's results: its run had no --llm-shard=I/N "
            f"(metadata.settings.shard is {value!r})"
        )
    try:
        index, count = shard_of(value)
    except argparse.ArgumentTypeError as exc:
        raise MergeError(f"{path}: metadata.settings.shard: {exc}") from None
    return Shard(path, run, index, count)


def _differing(shards: Sequence[Shard], read: Any, what: str) -> list[str]:
    """A problem line when ``read(shard)`` is not the same for every shard."""
    values = [read(shard) for shard in shards]
    if all(value == values[0] for value in values):
        return []
    listed = "; ".join(f"{s.path} ({s.label}): {v!r}" for s, v in zip(shards, values, strict=True))
    return [f"{what} differs between the shards: {listed}"]


def check_shards(shards: Sequence[Shard], given: Sequence[str] = ()) -> list[str]:
    """Every reason the shards are not one run cut once; empty when they are.

    ``given``: gate settings set on the command line, whose shard values may differ.
    """
    problems: list[str] = []
    counts = sorted({shard.count for shard in shards})
    if len(counts) > 1:
        listed = ", ".join(f"{s.path} is shard {s.label}" for s in shards)
        return [f"the shards were not cut into the same number of shards: {listed}"]
    count = counts[0]
    by_index: dict[int, list[Shard]] = {}
    for shard in shards:
        by_index.setdefault(shard.index, []).append(shard)
    for index, found in sorted(by_index.items()):
        if len(found) > 1:
            names = ", ".join(s.path for s in found)
            problems.append(f"shard {index}/{count} is given {len(found)} times: {names}")
    absent = [f"{index}/{count}" for index in range(1, count + 1) if index not in by_index]
    if absent:
        have = ", ".join(f"{s.label} ({s.path})" for s in sorted(shards, key=lambda s: s.index))
        problems.append(
            f"shard{'s' if len(absent) > 1 else ''} {', '.join(absent)} missing: every shard "
            f"of the run must be given (given: {have}); a shard that selected no case leaves "
            f"only its journal (its --llm-report path with .partial/): give that path too"
        )
    for key in SAME_RUN:
        problems += _differing(shards, lambda s, k=key: s.run.metadata.get(k), f"metadata.{key}")
    for name in (*DESIGN_SETTINGS, *(n for n in GATE_SETTINGS if n not in given)):
        problems += _differing(
            shards,
            lambda s, n=name: (s.run.metadata.get("settings") or {}).get(n),
            f"settings.{name}" + (" (or give it to merge)" if name in GATE_SETTINGS else ""),
        )
    cases: list[str] = []
    seen: dict[str, Shard] = {}
    for shard in shards:
        for result in shard.run.cases:
            belongs = shard_of_case(result.case_id, count)
            if belongs != shard.index:
                cases.append(
                    f"case {result.nodeid} (id {result.case_id!r}) is in {shard.path} "
                    f"(shard {shard.label}) but its id belongs to shard {belongs}/{count}: "
                    f"the shards did not run the same cases"
                )
            first = seen.setdefault(result.nodeid, shard)
            if first is not shard:
                cases.append(
                    f"case {result.nodeid} ran more than once: in {first.path} "
                    f"(shard {first.label}) and in {shard.path} (shard {shard.label})"
                )
    if len(cases) > CASES_LISTED:
        more = len(cases) - CASES_LISTED
        cases[CASES_LISTED:] = [f"... and {more} more problem{'s' if more > 1 else ''} of cases"]
    return problems + cases


def _started(run: RunResult, key: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(run.metadata[key]))
    except (KeyError, ValueError):
        return None


def _settings(shard: Shard, args: argparse.Namespace) -> Settings:
    """The merged run's settings: the shards' as recorded, the gate's as given, and this
    command's outputs (absolute: ``--root`` roots only the project's own files)."""
    recorded = shard.run.metadata.get("settings") or {}
    names = {f.name for f in fields(Settings)} - {"sources", "shard"}
    values: dict[str, Any] = {k: v for k, v in recorded.items() if k in names}
    values |= {
        name: getattr(args, name) for name in GATE_SETTINGS if getattr(args, name) is not None
    }

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else None

    return Settings.defaults(
        **values,
        report=absolute(args.output),
        baseline=absolute(args.baseline),
        markdown=absolute(args.markdown),
        html=absolute(args.html),
        history=absolute(args.history),
    )


def merge(shards: Sequence[Shard], args: argparse.Namespace) -> tuple[RunPlan, Gatherer, RunResult]:
    """The merged run's plan, gatherer (concluded) and results document."""
    from pytest_llmregress.session.gather import Gatherer
    from pytest_llmregress.session.outputs import run_result
    from pytest_llmregress.session.plan import PlanError, RunPlan, load_model_config
    from pytest_llmregress.verdict.results import in_file_order

    first = shards[0].run.metadata
    root = Path(args.root).resolve()
    pyproject = root / "pyproject.toml"
    try:
        model_config = load_model_config(root, pyproject if pyproject.is_file() else None)
        models = {
            role: parse_model(first[role]) if first.get(role) else None
            for role in ("candidate", "judge", "compare")
        }
        panel = tuple(parse_model(ref) for ref in (first.get("judges") or [])[1:])
    except (PlanError, ModelSpecError) as exc:
        raise MergeError(str(exc)) from None
    if models["candidate"] is None:
        raise MergeError(f"{shards[0].path}: its run had no model under test (metadata.candidate)")
    starts = [t for t in (_started(s.run, "started_at") for s in shards) if t is not None]
    plan = RunPlan(
        settings=_settings(shards[0], args),
        root=root,
        started_at=min(starts) if starts else dt.datetime.now(dt.UTC),
        model_config=model_config,
        candidate=models["candidate"],
        judge=models["judge"],
        panel=panel,
        compare=models["compare"],
        prompts_metadata={k: first[k] for k in ("prompt_model", "prompts") if k in first},
    )

    results = in_file_order([case for shard in shards for case in shard.run.cases])
    compared = {case.nodeid: case for shard in shards for case in shard.run.compare_cases}
    gathered = Gatherer(plan)
    for result in results:
        gathered.add(result, compared.get(result.nodeid))
    # The denominator: every case a shard ran, and every case a shard expected but lost.
    missing = {str(n) for shard in shards for n in shard.run.metadata.get("missing") or ()}
    gathered.expected = {result.nodeid for result in results} | missing
    for shard in shards:  # every shard collects every golden file: one broken, all see it
        broken = shard.run.metadata.get("broken_golden_files") or ()
        gathered.broken_golden_files.update(str(path) for path in broken)
    gathered.conclude()
    run = run_result(plan, gathered)
    for key in ("plugin_version", "base_urls"):  # the shards' run, not this command's
        if key in first:
            run.metadata[key] = first[key]
    ends = [t for t in (_started(s.run, "finished_at") for s in shards) if t is not None]
    if ends:
        run.metadata["finished_at"] = max(ends).isoformat()
    run.metadata["merged_shards"] = [
        {
            "file": shard.path,
            "shard": shard.label,
            "cases": len(shard.run.cases),
            "started_at": shard.run.metadata.get("started_at"),
            "finished_at": shard.run.metadata.get("finished_at"),
        }
        for shard in sorted(shards, key=lambda s: s.index)
    ]
    return plan, gathered, run


def main(argv: Sequence[str]) -> int:
    """Entry point of ``llmregress merge``."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from pytest_llmregress.session.outputs import Recorded, summary, write_html, write_markdown
    from pytest_llmregress.verdict.results import write_run

    try:
        shards = [load_shard(path) for path in args.shards]
        given = [name for name in GATE_SETTINGS if getattr(args, name) is not None]
        problems = check_shards(shards, given)
        if problems:
            listed = "\n  ".join(problems)
            return _error(f"cannot merge these shards:\n  {listed}")
        plan, gathered, run = merge(shards, args)
    except MergeError as exc:
        return _error(str(exc))
    verdict = gathered.verdict
    if verdict is None:
        return _error("the shards hold no case results: nothing to gate")
    try:
        write_run(args.output, run)
        write_markdown(plan, gathered, run, {})
        write_html(plan, gathered, run)
    except OSError as exc:
        return _error(f"cannot write the merged outputs: {exc}")
    print(
        f"llmregress merge: {len(shards)} shards, {len(run.cases)} cases, "
        f"each run once -> {args.output}"
    )
    for line in summary(plan, gathered, Recorded()):
        print(line.text)
    return EXIT_OK if verdict.is_recording or verdict.ok else EXIT_GATE_FAILED
