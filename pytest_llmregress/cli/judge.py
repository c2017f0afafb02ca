"""``llmregress judge calibrate LABELS``: the judge measured against people's labels.

::

    llmregress judge calibrate LABELS --judge-model ID [--threshold T] [--serve SCENARIO]
        [--anthropic-base-url URL] [--openai-base-url URL] [--concurrency N]
        [-o/--store PATH | --no-store] [--json]

Runs the judge on every labelled output at once (``Runner.judge_text``, the judge budget
``--concurrency``), then reports Cohen's kappa, agreement, the judge's precision and recall of
"pass", the threshold that agrees best with people and the disagreements, worst first; judge
calls that failed are counted apart. The result is stored by judge model and judge prompt
version (:mod:`pytest_llmregress.verdict.calibration`), where the session's summary reads it.
See ``docs/judge-calibration.md``.

Exit status: 0 measured, 1 when every judge call failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmregress.cases.golden import DEFAULT_THRESHOLD
from pytest_llmregress.core.masking import mask_urls_in
from pytest_llmregress.core.text import one_line
from pytest_llmregress.providers.base import ProviderError
from pytest_llmregress.providers.registry import (
    Endpoints,
    ModelRef,
    ModelSpecError,
    endpoints_from_environment,
    local_server_endpoints,
    parse_model,
)
from pytest_llmregress.scoring.judge import JUDGE_PROMPT_VERSION
from pytest_llmregress.scoring.score import ScorerError
from pytest_llmregress.settings import OPTIONS_BY_NAME, SettingsError, read_pyproject_section
from pytest_llmregress.verdict.calibration import (
    CalibrationRun,
    CalibrationStoreError,
    Judged,
    Label,
    LabelsFileError,
    calibrate,
    calibration_line,
    default_store,
    load_calibrations,
    load_labels,
    save_calibration,
)

if TYPE_CHECKING:
    from pytest_llmregress.engine.runner import Runner
    from pytest_llmregress.testing.server import LocalProviderServer

EXIT_OK = 0
EXIT_ALL_FAILED = 1
EXIT_USAGE = 2
SHOWN = 20
"""The most disagreements (and judge errors) listed one by one."""

_PROG = "llmregress judge"

_CALIBRATE_EPILOG = """\
labels: one case per line (JSONL), or a YAML list of cases, each with
  id, task (or user), reference, output, label (pass/fail or true/false),
  and optionally score (people's score, 0 to 1) and note.

examples:
  llmregress judge calibrate labels.jsonl --judge-model gpt-5.5-2026-04-23
  llmregress judge calibrate labels.jsonl --judge-model openai:judge --serve scenario.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``llmregress judge`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="The LLM judge: how far it can be trusted."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    calibrate_parser = commands.add_parser(
        "calibrate",
        help="measure the judge against human labels",
        description=(
            "Run the judge on outputs people labelled pass or fail, and report how far it "
            "agrees with them: Cohen's kappa, agreement, the judge's precision and recall of "
            "'pass', the threshold that agrees best, and the cases of disagreement. The "
            "result is stored by judge model and judge prompt version, and every later run's "
            "summary states it."
        ),
        epilog=_CALIBRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calibrate_parser.add_argument("labels", metavar="LABELS", help="the labels file")
    calibrate_parser.add_argument(
        "--judge-model",
        metavar="ID",
        help="the judge model (default: judge_model of [tool.llmregress] in ./pyproject.toml)",
    )
    calibrate_parser.add_argument(
        "--threshold",
        type=OPTIONS_BY_NAME["min_pass_rate"].parse,  # a number from 0 to 1, as there
        default=DEFAULT_THRESHOLD,
        help=(
            "the judge score from which a case passes, as in golden files "
            f"(default {DEFAULT_THRESHOLD})"
        ),
    )
    calibrate_parser.add_argument(
        "--serve",
        metavar="SCENARIO",
        help="send the judge calls to the local provider server started on SCENARIO",
    )
    calibrate_parser.add_argument(
        "--anthropic-base-url", metavar="URL", help="default: $ANTHROPIC_BASE_URL"
    )
    calibrate_parser.add_argument(
        "--openai-base-url", metavar="URL", help="default: $OPENAI_BASE_URL"
    )
    default_concurrency = OPTIONS_BY_NAME["judge_concurrency"].default
    calibrate_parser.add_argument(
        "--concurrency",
        type=OPTIONS_BY_NAME["judge_concurrency"].parse,
        default=default_concurrency,
        metavar="N",
        help=f"judge calls in flight at once (default {default_concurrency})",
    )
    store = calibrate_parser.add_mutually_exclusive_group()
    store.add_argument(
        "-o",
        "--store",
        metavar="PATH",
        default=default_store(),
        help="the calibration store to write (default: %(default)s)",
    )
    store.add_argument("--no-store", action="store_true", help="report only, store nothing")
    calibrate_parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (machine-readable)"
    )
    return parser


def _error(message: str) -> int:
    print(f"{_PROG} calibrate: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str]) -> int:
    """Run ``llmregress judge``; the exit status."""
    args = build_parser().parse_args(argv)
    return _calibrate(args)


def _judge_model(given: str | None) -> str | None:
    """``--judge-model``, else ``judge_model`` of ``[tool.llmregress]`` in ./pyproject.toml."""
    if given:
        return given
    value = read_pyproject_section(Path("pyproject.toml")).get("judge_model")
    return value if isinstance(value, str) and value.strip() else None


def _calibrate(args: argparse.Namespace) -> int:
    try:
        judge_model = _judge_model(args.judge_model)
    except SettingsError as exc:
        return _error(str(exc))
    if judge_model is None:
        return _error("no judge model: give --judge-model ID (or judge_model in pyproject.toml)")
    if "," in judge_model:
        return _error(f"one judge at a time: {judge_model!r} names several (--judge-model ID)")
    try:
        judge = parse_model(judge_model)
    except ModelSpecError as exc:
        return _error(f"--judge-model: {exc}")
    try:
        labels = load_labels(args.labels)
    except LabelsFileError as exc:
        print(f"{_PROG} calibrate: {args.labels}: the labels are not valid:", file=sys.stderr)
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if not args.no_store:
        try:
            load_calibrations(args.store)  # a damaged store is refused before any call
        except CalibrationStoreError as exc:
            return _error(str(exc))

    server: LocalProviderServer | None = None
    if args.serve:
        from pytest_llmregress.testing.scenario import ScenarioError
        from pytest_llmregress.testing.server import LocalProviderServer

        try:
            server = LocalProviderServer(args.serve).start()
        except ScenarioError as exc:
            return _error(f"--serve: {exc}")
        except OSError as exc:
            return _error(f"--serve: cannot start the local provider server: {exc}")
        endpoints = local_server_endpoints(server.url)
    else:
        endpoints = endpoints_from_environment(args.anthropic_base_url, args.openai_base_url)
    try:
        missing = endpoints.missing_keys([judge])
        if missing:
            return _error(
                f"{missing[0]} is not set, and the judge {judge} needs it: set it, give "
                f"--{judge.provider}-base-url for a server that takes no key, or run against "
                "the local provider server with --serve SCENARIO"
            )
        judged = asyncio.run(_judge_all(judge, endpoints, labels, args.threshold, args.concurrency))
    finally:
        if server is not None:
            server.stop()

    run: CalibrationRun | None = None
    if any(j.error is None for j in judged):
        run = calibrate(
            judged,
            judge_model=judge_model,
            prompt_version=JUDGE_PROMPT_VERSION,
            threshold=args.threshold,
            labels=args.labels,
            date=dt.datetime.now(dt.UTC).date().isoformat(),
        )
    stored: str | None = None
    refused: CalibrationStoreError | None = None
    if run is not None and not args.no_store:
        try:
            save_calibration(args.store, run.calibration)
            stored = args.store
        except CalibrationStoreError as exc:  # written meanwhile by something else
            refused = exc
    if args.json:
        print(json.dumps(_json_report(run, judged, judge_model, stored), indent=2))
    else:
        print("\n".join(_text_report(run, judged, judge, judge_model, args, stored)))
    if refused is not None:
        return _error(f"not stored: {refused}")
    return EXIT_ALL_FAILED if run is None else EXIT_OK


async def _judge_all(
    judge: ModelRef,
    endpoints: Endpoints,
    labels: Sequence[Label],
    threshold: float,
    concurrency: int,
) -> list[Judged]:
    """The judge's verdict on every labelled output, all at once within the judge budget."""
    from pytest_llmregress.engine.runner import Runner
    from pytest_llmregress.settings import RunnerSettings

    runner = Runner(
        candidate=None,
        judge=judge,
        endpoints=endpoints,
        settings=RunnerSettings.defaults(judge_concurrency=concurrency),
    )
    try:
        return list(
            await asyncio.gather(*(_judge_one(runner, label, threshold) for label in labels))
        )
    finally:
        await runner.aclose()


async def _judge_one(runner: Runner, label: Label, threshold: float) -> Judged:
    try:
        score, _ = await runner.judge_text(
            task=label.task, reference=label.reference, output=label.output, threshold=threshold
        )
    except (ProviderError, ScorerError, TimeoutError) as exc:
        message = mask_urls_in(str(exc) or type(exc).__name__)
        return Judged(label, None, "", error=message)
    return Judged(label, score.value, score.reason)


def _number(value: float | None, digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _strength(kappa: float | None) -> str:
    """Landis and Koch's words for a kappa (see docs/reading-verdicts.md)."""
    if kappa is None:
        return "every label the same, so chance agreement is already perfect"
    if kappa < 0:
        return "worse than chance"
    for bound, word in ((0.4, "weak"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa < bound:
            return word
    return "almost perfect"


def _text_report(
    run: CalibrationRun | None,
    judged: Sequence[Judged],
    judge: ModelRef,
    judge_model: str,
    args: argparse.Namespace,
    stored: str | None,
) -> list[str]:
    lines = [
        f"judge {judge_model} ({judge}), judge prompt v{JUDGE_PROMPT_VERSION}, "
        f"threshold {args.threshold:g}",
    ]
    errors = [j for j in judged if j.error is not None]
    if run is None:
        lines.append(
            f"labels: {args.labels}: {len(judged)} cases; every judge call failed, nothing "
            "was measured or stored"
        )
        lines += _error_lines(errors)
        return lines
    cal = run.calibration
    apart = f" ({len(errors)} judge errors, not counted)" if errors else ""
    lines += [
        f"labels: {cal.labels}: {cal.cases} cases judged{apart}",
        f"Cohen's κ: {_number(cal.kappa)} ({_strength(cal.kappa)})",
        f"agreement: {_number(cal.agreement)} ({cal.true_pass + cal.true_fail} of {cal.cases})",
        f'"pass": precision {_number(cal.precision)}, recall {_number(cal.recall)} '
        f"(judge passes {cal.true_pass + cal.false_pass}, people pass "
        f"{cal.true_pass + cal.false_fail}; {cal.false_pass} false passes, "
        f"{cal.false_fail} false fails)",
        f"best threshold: {cal.best_threshold:g} (κ {_number(cal.best_kappa)} there)",
    ]
    if cal.scored >= 2:
        lines.append(
            f"people's scores vs the judge's: Krippendorff's α (interval) "
            f"{_number(cal.score_alpha)} on {cal.scored} cases"
        )
    if run.disagreements:
        lines.append(f"disagreements ({len(run.disagreements)}, worst first):")
        for d in run.disagreements[:SHOWN]:
            people = "pass" if d.people_pass else "fail"
            verdict = "pass" if d.judge_pass else "fail"
            sign = ">=" if d.judge_pass else "<"
            lines.append(
                f"  {d.id}: people {people}, judge {verdict} ({d.score:.3f} {sign} "
                f"{d.threshold:g}): {one_line(d.reason, 120)}"
            )
        if len(run.disagreements) > SHOWN:
            lines.append(f"  ... and {len(run.disagreements) - SHOWN} more")
    else:
        lines.append("disagreements: none")
    lines += _error_lines(errors)
    if stored is not None:
        lines.append(f"stored as {cal.key} in {stored}")
    elif args.no_store:
        lines.append("not stored (--no-store)")
    else:
        lines.append(f"not stored in {args.store}: it could not be written")
    lines.append(calibration_line(cal, judge_model))
    return lines


def _error_lines(errors: Sequence[Judged]) -> list[str]:
    if not errors:
        return []
    lines = [f"judge errors ({len(errors)}, not counted):"]
    lines += [f"  {j.label.id}: {one_line(j.error, 140)}" for j in errors[:SHOWN]]
    if len(errors) > SHOWN:
        lines.append(f"  ... and {len(errors) - SHOWN} more")
    return lines


def _json_report(
    run: CalibrationRun | None, judged: Sequence[Judged], judge_model: str, stored: str | None
) -> dict[str, Any]:
    errors = [{"id": j.label.id, "line": j.label.line, "error": j.error} for j in judged if j.error]
    if run is None:
        return {
            "judge_model": judge_model,
            "prompt_version": JUDGE_PROMPT_VERSION,
            "calibration": None,
            "disagreements": [],
            "errors": errors,
            "stored": None,
            "summary": None,
        }
    return {
        "judge_model": judge_model,
        "prompt_version": JUDGE_PROMPT_VERSION,
        "key": run.calibration.key,
        "calibration": run.calibration.to_dict(),
        "disagreements": [d.to_dict() for d in run.disagreements],
        "errors": errors,
        "stored": stored,
        "summary": calibration_line(run.calibration, judge_model),
    }
