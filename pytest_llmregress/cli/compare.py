"""``llmregress compare`` and ``llmregress history``: statistics over stored results.

No model is called::

    llmregress compare BASELINE.json CANDIDATE.json [--max-regression 0.05] [--alpha 0.05]
                       [--seed 0] [--format text|json|markdown] [--fail-on-regression]
    llmregress compare --attribute OLD_OLD OLD_NEW NEW_OLD NEW_NEW
    llmregress history DIR [--format text|json|markdown]

Results files are the documents ``--llm-report`` writes; for an interrupted run, give the same
path: :func:`~pytest_llmregress.verdict.results.load_results` reads the partial results it left.
A damaged results file is refused (exit 2) with its name, line and what was expected; a
damaged line of a partial run's journal is skipped, and said on stderr.
``--attribute`` refuses (exit 2, naming every mismatch) four runs that are not the 2x2
(:func:`~pytest_llmregress.verdict.compare.check_attribution_runs`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmregress.report.terminal import comparison_lines
from pytest_llmregress.verdict.compare import (
    CELLS,
    DEFAULT_ALPHA,
    DEFAULT_MAX_REGRESSION,
    DEFAULT_POWER,
    DEFAULT_RESAMPLES,
    ROLES,
    Attribution,
    AttributionError,
    Comparison,
    RunSummary,
    alias_moved,
    attribute,
    compare_runs,
    summarize_run,
    within_run_moves,
)
from pytest_llmregress.verdict.results import RunResult, read_results

if TYPE_CHECKING:
    from pytest_llmregress.verdict.cost import CostChange

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


def parse_margin(text: str) -> float:
    """A pass-rate margin: ``0.05``, ``5%`` and ``5`` all mean five percentage points.

    Values up to 1 are fractions; values above 1 (or with ``%``) are percentage points.
    """
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if percent or value > 1.0:
        value /= 100.0
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"margin must be between 0 and 100 points: {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive): {text!r}")
    return value


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress compare",
        description=(
            "Compare a candidate run with a baseline run of the same golden cases (paired by "
            "case id), without calling a model. The verdict is 'regression' when the "
            "candidate's pass rate is lower by more than --max-regression AND the exact "
            "McNemar test on the flips is significant at --alpha. Runs with repeats "
            "(--llm-repeat) are compared on per-case pass fractions with a paired sign-flip "
            "test instead."
        ),
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="RESULTS",
        help="BASELINE CANDIDATE: two results files (an interrupted run's partial results too)",
    )
    parser.add_argument(
        "--attribute",
        nargs=4,
        metavar=("OLD_OLD", "OLD_NEW", "NEW_OLD", "NEW_NEW"),
        help=(
            "attribute a migration to the model, the prompt and their interaction from four "
            "runs: old model + old prompt, old model + new prompt, new model + old prompt, "
            "new model + new prompt; refused (exit 2) unless they hold the same cases and the "
            "models and prompts their results files record are in those places"
        ),
    )
    parser.add_argument(
        "--max-regression",
        type=parse_margin,
        default=DEFAULT_MAX_REGRESSION,
        help="practical margin in pass-rate points: 0.05, 5 or 5%% (default 0.05)",
    )
    parser.add_argument(
        "--alpha",
        type=_probability,
        default=DEFAULT_ALPHA,
        help="significance level of the two-sided exact McNemar test (default 0.05)",
    )
    parser.add_argument(
        "--power",
        type=_probability,
        default=DEFAULT_POWER,
        help="power for the smallest detectable drop (default 0.8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help="bootstrap resamples; 0 skips the bootstrap (default 2000)",
    )
    parser.add_argument(
        "--mid-p", action="store_true", help="use the mid-p McNemar test (less conservative)"
    )
    parser.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format"
    )
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help='also append the markdown summary to PATH (e.g. "$GITHUB_STEP_SUMMARY")',
    )
    parser.add_argument(
        "--worst", type=int, default=5, help="how many flipped cases to list (default 5)"
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when the verdict is 'regression' (or nothing could be paired)",
    )
    return parser


def _history_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress history",
        description=(
            "Pass rate and mean score per model over time, from a folder holding one results "
            "file per run; flags aliases that moved and significant changes between "
            "consecutive runs of one model."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the history folder")
    parser.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format"
    )
    parser.add_argument(
        "--alpha",
        type=_probability,
        default=DEFAULT_ALPHA,
        help="significance level for changes between consecutive runs (default 0.05)",
    )
    return parser


def _load(path: str) -> RunResult:
    run, skipped = read_results(path)
    for lines in skipped:
        print(f"llmregress: note: {lines.describe()}; their cases are left out", file=sys.stderr)
    return run


def _error(message: str) -> int:
    print(f"llmregress: {message}", file=sys.stderr)
    return EXIT_USAGE


def _append(path: str, text: str) -> None:
    target = Path(path)
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
        handle.write("\n")


def _text(comparison: Comparison, worst: int, cost: CostChange | None = None) -> str:
    lines = comparison_lines(comparison, worst=worst, cost=cost)
    return "\n".join(line.text for line in lines) + "\n"


def _cost_change(comparison: Comparison) -> CostChange | None:
    """The migration's cost per case, priced with the bundled table and this project's own
    prices (``llmregress.toml``, else ``pyproject.toml`` in the current folder); None, with a
    note, when the project's prices do not read."""
    from pytest_llmregress.models.prices import PriceError, project_prices
    from pytest_llmregress.verdict.cost import cost_change

    try:
        table = project_prices(Path())
    except PriceError as exc:
        print(f"llmregress: note: prices not read, no cost shown: {exc}", file=sys.stderr)
        return None
    return cost_change(comparison, table)


def _attribution_text(attribution: Attribution) -> str:
    lines = [f"attribution over {attribution.n} cases scored in all four runs:"]
    for cell in CELLS:
        digest = attribution.prompts.get(cell, {}).get("digest")
        prompts = f", prompts {str(digest)[:12]}" if digest else ""
        lines.append(
            f"  {ROLES[cell].replace(' +', ',')}  {attribution.rates[cell]:.1%}  "
            f"({attribution.labels[cell]}{prompts})"
        )
    lines += [f"  {reason}" for reason in attribution.reasons]
    return "\n".join(lines) + "\n"


def compare_main(argv: Sequence[str]) -> int:
    parser = _compare_parser()
    args = parser.parse_args(list(argv))
    from pytest_llmregress.report.markdown import attribution_markdown, comparison_markdown

    if args.resamples < 0:
        parser.error("--resamples must be >= 0")
    if args.attribute:
        if args.files:
            parser.error("--attribute takes the four files itself; no other files")
        try:
            runs = [_load(path) for path in args.attribute]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return _error(f"cannot read results: {exc}")
        try:
            attribution = attribute(
                *runs,
                alpha=args.alpha,
                seed=args.seed,
                resamples=args.resamples,
                mid_p=args.mid_p,
                names=args.attribute,
            )
        except AttributionError as exc:
            return _error(str(exc))
        markdown = attribution_markdown(attribution)
        if args.format == "json":
            sys.stdout.write(json.dumps(attribution.to_dict(), indent=2) + "\n")
        elif args.format == "markdown":
            sys.stdout.write(markdown)
        else:
            sys.stdout.write(_attribution_text(attribution))
        if args.markdown:
            _append(args.markdown, markdown)
        return EXIT_OK

    if len(args.files) != 2:
        parser.error("give two results files, BASELINE CANDIDATE (or --attribute with four)")
    try:
        baseline, candidate = (_load(path) for path in args.files)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _error(f"cannot read results: {exc}")
    comparison = compare_runs(
        baseline,
        candidate,
        max_regression=args.max_regression,
        alpha=args.alpha,
        seed=args.seed,
        resamples=args.resamples,
        power=args.power,
        mid_p=args.mid_p,
        baseline_fallback=args.files[0],
        candidate_fallback=args.files[1],
    )
    cost = _cost_change(comparison)
    if args.format == "json":
        document = comparison.to_dict()
        document["files"] = {"baseline": args.files[0], "candidate": args.files[1]}
        document["cost"] = None if cost is None else cost.to_dict()
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(comparison_markdown(comparison, worst=args.worst, cost=cost))
    else:
        sys.stdout.write(f"baseline:  {args.files[0]}\ncandidate: {args.files[1]}\n")
        sys.stdout.write(_text(comparison, args.worst, cost))
    if args.markdown:
        _append(args.markdown, comparison_markdown(comparison, worst=args.worst, cost=cost))
    if args.fail_on_regression and comparison.is_regression:
        return EXIT_REGRESSION
    if args.fail_on_regression and not comparison.comparable:
        # Nothing paired (every candidate case errored, or other case ids): a gate that
        # passed here would pass a candidate it never looked at.
        print("llmregress: no case was scored in both runs; failing the gate", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


# --- history ---------------------------------------------------------------------------------


def _started(run: RunResult) -> dt.datetime | None:
    value = run.metadata.get("started_at")
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class HistoryRun:
    """Where one run of a history folder is: the path to load and whether it is complete."""

    path: Path  # what load_results reads: a results document, or a run's journal
    shown: str  # the name to print, relative to the folder
    partial: bool  # no final document: the run was interrupted


def _relative(path: Path, directory: Path) -> str:
    return str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path)


def history_files(directory: Path) -> list[HistoryRun]:
    """The runs in a history folder, recursively.

    A run is its final results document (``NAME.json``); without one, what an interrupted
    run left: a journal folder ``NAME.json.partial/`` or a journal file
    ``NAME.json.partial.jsonl``, both read by :func:`load_results`.
    """
    runs: dict[Path, HistoryRun] = {}
    for path in sorted(directory.rglob("*.json")):
        if path.is_file():
            runs[path] = HistoryRun(path, _relative(path, directory), partial=False)
    for path in sorted(directory.rglob("*.partial")):
        final = path.with_name(path.name.removesuffix(".partial"))
        if path.is_dir() and final not in runs:
            runs[final] = HistoryRun(final, _relative(path, directory) + "/", partial=True)
    for path in sorted(directory.rglob("*.partial.jsonl")):
        final = path.with_name(path.name.removesuffix(".partial.jsonl"))
        if path.is_file() and final not in runs:
            runs[final] = HistoryRun(path, _relative(path, directory), partial=True)
    return [runs[key] for key in sorted(runs)]


def load_history(directory: Path) -> tuple[list[tuple[HistoryRun, RunResult]], list[str]]:
    """Every readable run in the folder, oldest first by ``metadata.started_at``; and warnings."""
    runs: list[tuple[HistoryRun, RunResult]] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for where in history_files(directory):
        try:
            run, skipped = read_results(where.path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.append(f"skipped {where.shown}: {exc}")
            continue
        warnings += [f"{where.shown}: {lines.describe()}" for lines in skipped]
        # A copy of a run (an "accepted.json" beside the runs) would show the run twice.
        identity = json.dumps(
            [run.metadata.get(k) for k in ("started_at", "candidate", "pid")] + [len(run.cases)],
            default=str,
        )
        if run.metadata.get("started_at") and identity in seen:
            warnings.append(f"skipped {where.shown}: the same run as {seen[identity]}")
            continue
        seen[identity] = where.shown
        runs.append((where, run))
    undated = [where.shown for where, run in runs if _started(run) is None]
    if undated:
        warnings.append("no metadata.started_at (listed last): " + ", ".join(undated))
    far_future = dt.datetime.max.replace(tzinfo=dt.UTC)
    runs.sort(key=lambda item: (_started(item[1]) or far_future, item[0].shown))
    return runs, warnings


def _history_entries(
    runs: Sequence[tuple[HistoryRun, RunResult]], alpha: float
) -> list[dict[str, Any]]:
    """One entry per run with its summary, the change from the same model's previous run,
    and flags: aliases that moved, significant changes, interrupted runs."""
    entries: list[dict[str, Any]] = []
    previous: dict[str, tuple[RunResult, RunSummary]] = {}
    for where, run in runs:
        summary = summarize_run(run)
        flags: list[str] = []
        entry: dict[str, Any] = {
            "file": where.shown,
            **summary.to_dict(),
            "partial": where.partial,
            "change": None,
            "p_value": None,
        }
        if entry["partial"]:
            flags.append("interrupted run (partial results)")
        before = previous.get(summary.label)
        if before is not None:
            prev_run, prev_summary = before
            if summary.pass_rate is not None and prev_summary.pass_rate is not None:
                entry["change"] = summary.pass_rate - prev_summary.pass_rate
            paired = compare_runs(prev_run, run, resamples=0, alpha=alpha)
            if paired.n:
                entry["p_value"] = paired.p_value
                if paired.significant:
                    direction = "drop" if paired.difference < 0 else "rise"
                    flags.append(
                        f"significant {direction} vs previous run "
                        f"({paired.difference * 100:+.1f} pts on {paired.n} paired cases, "
                        f"p = {paired.p_value:.2g})"
                    )
            flags += [
                "alias moved: " + move.describe("the previous run", "this run")
                for move in alias_moved(prev_run, run)
                if move.scope == "between runs"
            ]
        flags += ["alias moved: " + move.describe() for move in within_run_moves(run)]
        entry["flags"] = flags
        entries.append(entry)
        previous[summary.label] = (run, summary)
    return entries


def _history_text(entries: Sequence[dict[str, Any]]) -> str:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_model.setdefault(str(entry["model"]), []).append(entry)
    lines: list[str] = []
    for model, items in by_model.items():
        lines.append(f"{model} ({len(items)} runs)")
        lines.append(
            f"  {'started':<26} {'pass rate':>9} {'95% CI':>13} {'mean':>6} {'cases':>6} "
            f"{'errors':>6} {'change':>10}  file"
        )
        for entry in items:
            rate = entry["pass_rate"]
            low, high = entry["interval95"]
            scored = entry["passed"] + entry["failed"]
            mean = entry["mean_score"]
            change = entry["change"]
            lines.append(
                f"  {entry['started_at'] or '?'!s:<26} "
                f"{'-' if rate is None else f'{rate:.1%}':>9} "
                f"{f'{low:.1%}-{high:.1%}' if scored else '-':>13} "
                f"{'-' if mean is None else f'{mean:.3f}':>6} {scored:>6} {entry['errors']:>6} "
                f"{'' if change is None else f'{change * 100:+.1f} pts':>10}  {entry['file']}"
            )
            for flag in entry["flags"]:
                lines.append(f"    ! {flag}")
        lines.append("")
    return "\n".join(lines)


def history_main(argv: Sequence[str]) -> int:
    args = _history_parser().parse_args(list(argv))
    directory = Path(args.directory)
    if not directory.is_dir():
        return _error(f"history folder {directory} does not exist")
    runs, warnings = load_history(directory)
    for warning in warnings:
        print(f"llmregress history: {warning}", file=sys.stderr)
    entries = _history_entries(runs, args.alpha)
    if args.format == "json":
        models: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            models.setdefault(str(entry["model"]), []).append(entry)
        sys.stdout.write(json.dumps({"runs": entries, "models": models}, indent=2) + "\n")
    elif args.format == "markdown":
        from pytest_llmregress.report.markdown import history_markdown

        sys.stdout.write(
            history_markdown(
                [
                    (str(entry["file"]), summarize_run(run), entry["flags"])
                    for entry, (_, run) in zip(entries, runs, strict=True)
                ]
            )
        )
    elif not entries:
        print(f"no results files in {directory}")
    else:
        sys.stdout.write(_history_text(entries))
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    """Entry point for both commands; ``argv[0]`` is the command name."""
    if not argv or argv[0] not in ("compare", "history"):
        return _error("usage: llmregress compare|history ...")
    command, rest = argv[0], argv[1:]
    try:
        if command == "compare":
            return compare_main(rest)
        return history_main(rest)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        code = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
