"""``llmregress report``: the HTML page of a stored results file, no model calls::

    llmregress report RESULTS.json -o report.html [--baseline BASE.json] [--history DIR]
                      [--root DIR] [--title TEXT]

The same page as ``--llm-html`` (:mod:`pytest_llmregress.report.html`). ``--baseline`` compares
the run with another results file (without it, a run made with ``--llm-compare-model`` is
compared with its compare model's results); ``--history`` draws the pass rate over the runs of
a history folder (``--llm-history``); ``--root``: where the golden files named by the results
are read for each case's input (default: the current directory). A file that cannot be read is
refused with its name (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_llmregress.verdict.results import RunResult, read_results

if TYPE_CHECKING:
    from pytest_llmregress.verdict.compare import Comparison

EXIT_OK = 0
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress report",
        description="Write a self-contained HTML report of a results file (--llm-report).",
    )
    parser.add_argument("results", metavar="RESULTS.json", help="the run's results file")
    parser.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where to write the HTML page"
    )
    parser.add_argument(
        "--baseline", metavar="BASE.json", help="compare the run with this results file"
    )
    parser.add_argument(
        "--history", metavar="DIR", help="a history folder: the pass rate over its runs"
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=".",
        help="where the golden files are, for each case's input (default: .)",
    )
    parser.add_argument("--title", default="LLM regression report", help="the page's title")
    return parser


def _error(message: str) -> int:
    print(f"llmregress report: {message}", file=sys.stderr)
    return EXIT_USAGE


def _load(path: str) -> RunResult:
    run, skipped = read_results(path)
    for lines in skipped:
        print(
            f"llmregress report: note: {lines.describe()}; their cases are left out",
            file=sys.stderr,
        )
    return run


def _cost(run: RunResult, comparison: Comparison | None, root: Path) -> list[str]:
    """The page's cost sentences, priced with the bundled table and the project's prices in
    ``root``; a note instead when those do not read."""
    from pytest_llmregress.models.prices import PriceError, project_prices
    from pytest_llmregress.report.terminal import run_cost_texts

    try:
        return run_cost_texts(
            run.cases,
            comparison,
            project_prices(root),
            compare_results=run.compare_cases,
            compare_label=str(run.metadata.get("compare") or ""),
        )
    except PriceError as exc:
        return [f"cost: prices not read: {exc}"]


def _named(path: str, error: Exception) -> str:
    text = str(error)
    return text if path in text else f"{path}: {text}"


def main(argv: Sequence[str]) -> int:
    """Entry point of ``llmregress report``."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from pytest_llmregress.report.html import (
        history_points,
        load_history_runs,
        load_inputs,
        render_html,
        write_html,
    )
    from pytest_llmregress.verdict.compare import compare_runs

    loaded: list[RunResult] = []
    for path in (args.results, args.baseline):
        if path is None:
            continue
        try:
            loaded.append(_load(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return _error(f"cannot read results: {_named(path, exc)}")
    run = loaded[0]
    comparison: Comparison | None = None
    if args.baseline is not None:
        comparison = compare_runs(loaded[1], run, baseline_fallback=f"baseline {args.baseline}")
    elif run.compare_cases:
        compare_model = run.metadata.get("compare") or "compare model"
        baseline = RunResult({**run.metadata, "candidate": compare_model}, run.compare_cases)
        comparison = compare_runs(baseline, run)
    history = []
    if args.history is not None:
        if not Path(args.history).is_dir():
            return _error(f"history folder {args.history} does not exist")
        history = history_points(load_history_runs(args.history, exclude=run))
    page = render_html(
        run,
        comparison=comparison,
        history=history,
        title=args.title,
        inputs=load_inputs(run.cases, args.root),
        cost=_cost(run, comparison, Path(args.root)),
    )
    try:
        write_html(args.output, page)
    except OSError as exc:
        return _error(f"cannot write {_named(args.output, exc)}")
    print(f"llmregress report: wrote {args.output} ({len(run.cases)} cases)")
    return EXIT_OK
