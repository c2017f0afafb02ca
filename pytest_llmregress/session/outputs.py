"""What a session shows and writes: the header, each golden report's JUnit properties, and at
the end the results file, its history copy, the markdown summary, recorded references and the
terminal summary. Each is a function of the run plan and the gathered results; none imports
pytest, and the heavy renderers are imported when used.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_llmregress.core.masking import mask_url
from pytest_llmregress.settings import format_value

if TYPE_CHECKING:
    from pytest_llmregress.report.terminal import Line
    from pytest_llmregress.session.gather import Gatherer
    from pytest_llmregress.session.plan import RunPlan
    from pytest_llmregress.verdict.results import CaseResult, RunResult


@dataclass(frozen=True)
class Recorded:
    """What ``--llm-record`` (or a snapshot update) wrote into golden files: one line per
    file, and whether any file could not be written (which fails the session)."""

    lines: tuple[str, ...] = ()
    failed: bool = False


# -- at start-up -----------------------------------------------------------------------------


def header_lines(plan: RunPlan) -> list[str]:
    """pytest's header lines: the models, where they are served, the gate, how to rerun."""
    if plan.candidate is None:
        if plan.judge is None:
            return []  # a project that does not use the plugin sees nothing of it
        return [f"llmregress: judge {plan.judge}; no --llm-model: golden cases will be skipped"]
    assert plan.endpoints is not None
    settings = plan.settings
    where = plan.endpoints.describe(plan.candidate.provider)
    judge = f"judge {plan.judge}" if plan.judge else "no judge"
    if plan.panel:
        judge = f"judge panel ({settings.judge_panel}) {', '.join(map(str, plan.judges))}"
    if settings.judge_repeat > 1 and plan.judge:
        judge += f", each output judged {settings.judge_repeat} times"
    repeats = ""
    if settings.repeat > 1:
        gate = "mean of repeats" if settings.gate == "mean" else "every repeat passes"
        repeats = f", each case {settings.repeat} times (gate: {gate})"
    served = f", local server {settings.serve}" if settings.serve else ""
    explicit = settings.explicit()
    for name in ("anthropic_base_url", "openai_base_url"):
        if explicit.get(name):  # the line is pasted into CI logs and issues
            explicit[name] = mask_url(explicit[name])
    rerun = " ".join(
        f"--llm-{name.replace('_', '-')}" + ("" if value is True else f"={format_value(value)}")
        for name, value in explicit.items()
        if name not in ("golden_files",)
    )
    calls = (
        f"through the Batch APIs (--llm-batch{', journaled' if plan.batch_journal else ''})"
        if settings.batch
        else f"concurrency {settings.concurrency}"
    )
    lines = [
        f"llmregress: model {plan.candidate} at {where}, {judge}, min pass rate "
        f"{settings.min_pass_rate:.0%}{repeats}, {calls}{served}",
        sampling_line(plan),
        f"llmregress: rerun with {rerun}",
    ]
    if plan.lifecycle_findings:
        count = len(plan.lifecycle_findings)
        lines.append(
            f"llmregress: {count} model warning{'s' if count > 1 else ''} "
            f"({plan.lifecycle_source}), listed in the summary"
        )
    return lines


def sampling_line(plan: RunPlan) -> str:
    """What each model samples with: sampling that is stated, not the server's accident."""
    from pytest_llmregress.engine.runner import judge_request_params, with_params

    settings = plan.settings
    own = with_params(settings.params, {})
    models = ", ".join(str(ref) for ref in (plan.candidate, plan.compare) if ref)
    line = f"llmregress: sampling: {models} "
    if own:
        line += f"{format_value(own)} (--llm-params), under a case's own params"
    else:
        line += "at the server's defaults unless a case sets params (--llm-params)"
    if plan.judge is not None:
        judge = judge_request_params(settings.judge_params)
        judges = ", ".join(map(str, plan.judges))
        line += f"; judge {judges} {format_value(judge) or 'at its defaults'}"
    return line


# -- per case --------------------------------------------------------------------------------


def junit_properties(result: CaseResult) -> list[tuple[str, object]]:
    """A golden report's ``user_properties``: its outcome, and the score that decided the
    verdict against the threshold its scorer applied."""
    properties: list[tuple[str, object]] = [
        ("llm_outcome", result.outcome),
        ("llm_threshold", result.deciding_threshold),
    ]
    deciding = result.deciding_score
    score = deciding.value if deciding is not None else result.score
    if score is not None:
        properties.append(("llm_score", round(score, 4)))
    return properties


# -- at the end ------------------------------------------------------------------------------


def junit_session_properties(plan: RunPlan, gathered: Gatherer) -> list[tuple[str, object]]:
    """The session's verdict as JUnit test-suite properties: the verdict, pass rate and its
    interval, the counts, the comparison's verdict and p-value, and the cost."""
    verdict = gathered.verdict
    if plan.candidate is None or verdict is None:
        return []
    outcome = "recorded" if verdict.is_recording else ("passed" if verdict.ok else "failed")
    properties: list[tuple[str, object]] = [
        ("llm_verdict", outcome),
        ("llm_model", str(plan.candidate)),
        ("llm_passed", verdict.passed),
        ("llm_failed", verdict.failed),
        ("llm_errors", verdict.errors),
    ]
    if verdict.pass_rate is not None and not verdict.is_recording:
        low, high = verdict.interval
        properties += [
            ("llm_pass_rate", round(verdict.pass_rate, 4)),
            ("llm_pass_rate_low", round(low, 4)),
            ("llm_pass_rate_high", round(high, 4)),
            ("llm_min_pass_rate", verdict.min_pass_rate),
        ]
    if verdict.reasons and not verdict.is_recording:
        properties.append(("llm_reasons", "; ".join(verdict.reasons)))
    comparison = gathered.comparison
    if comparison is not None:
        properties += [
            ("llm_comparison", comparison.verdict),
            ("llm_comparison_baseline", comparison.baseline_label),
            ("llm_comparison_p_value", round(comparison.p_value, 6)),
            ("llm_comparison_difference", round(comparison.difference, 4)),
        ]
    costs = gathered.costs()
    if costs.run is not None:
        run = costs.run
        properties += [
            ("llm_cost_usd", round(run.total, 6)),
            ("llm_cost_candidate_usd", round(run.candidate.cost, 6)),
            ("llm_cost_judge_usd", round(run.judge.cost, 6)),
        ]
        if run.as_of:
            properties.append(("llm_prices_as_of", run.as_of[-1].isoformat()))
        unpriced = sorted({*run.candidate.unpriced, *run.judge.unpriced})
        if unpriced:
            properties.append(("llm_cost_unknown_price", ", ".join(unpriced)))
    if costs.change is not None and costs.change.relative is not None:
        properties.append(("llm_comparison_cost_change", round(costs.change.relative, 4)))
    return properties


def add_junit_session_properties(xml: object, plan: RunPlan, gathered: Gatherer) -> None:
    """Add :func:`junit_session_properties` to pytest's JUnit XML (``xml``: the junitxml
    plugin's ``LogXML``, None without ``--junitxml``), before it writes the file."""
    add = getattr(xml, "add_global_property", None)
    if add is None:
        return
    for name, value in junit_session_properties(plan, gathered):
        add(name, value)


def model_warnings(plan: RunPlan, gathered: Gatherer) -> list[str]:
    """Lifecycle warnings (an alias says which snapshot it answered as in this run), then
    the preflight's and the runner's warnings about models."""
    answered = gathered.resolved_models()
    messages = []
    roles = plan.models_by_role()
    for finding in plan.lifecycle_findings:
        message = finding.message
        refs = [ref for role, ref in roles if role == finding.role]
        ref = next((r for r in refs if r.model == finding.model_id), refs[0] if refs else None)
        versions = answered.get(str(ref), {}) if ref is not None else {}
        snapshots = sorted({name.split(" (")[0] for name in versions})
        if finding.code == "alias" and snapshots:
            message = (
                f"{finding.role}: alias {finding.model_id} answered as "
                f"{', '.join(snapshots)} in this run; pin a dated snapshot"
            )
        messages.append(message)
    return [*messages, *gathered.preflight_warnings]


def summary(plan: RunPlan, gathered: Gatherer, recorded: Recorded) -> list[Line]:
    """The ``llmregress`` section of the terminal summary."""
    from pytest_llmregress.report.terminal import (
        Line,
        comparison_lines,
        noise_texts,
        summary_lines,
    )

    verdict = gathered.verdict
    if plan.candidate is None and gathered.skipped_golden:
        return [
            Line(
                f"{gathered.skipped_golden} golden cases skipped: no model under test (run with "
                f"--llm-model=ID, or set model in [tool.llmregress])",
                "yellow",
            )
        ]
    if plan.candidate is None:
        return []
    if verdict is None:  # no case ran: the warnings the header promised are still said
        return [Line(f"model warning: {w}", "yellow") for w in model_warnings(plan, gathered)]

    report_path = plan.report_path
    costs = gathered.costs()
    lines = summary_lines(
        verdict,
        gathered.results,
        candidate=str(plan.candidate),
        judge=str(plan.judge) if plan.judge else None,
        resolved=gathered.resolved_models(),
        worst=plan.settings.worst,
        report_path=str(report_path) if report_path else None,
        missing=gathered.missing(),
        resumed=gathered.resumed_count(),
        model_warnings=model_warnings(plan, gathered),
        chain=[str(ref) for ref in plan.chain] if plan.fallbacks else (),
        cache_use=gathered.cache_use,
        damaged_state=gathered.damaged_state,
        cost=costs.run,
        compare_cost=costs.compare,
        compare_label=costs.label,
    )
    if costs.error:
        lines.append(Line(costs.error, "red"))
    if not verdict.is_recording:
        lines += [Line(text) for text in noise_texts(gathered.noise())]
        lines += [
            Line(text, "" if calibrated else "yellow")
            for text, calibrated in judge_calibrations(plan, gathered)
        ]
    lines += [Line(text, "yellow") for text in gathered.traffic_lines]
    if gathered.comparison is not None:
        lines += comparison_lines(gathered.comparison, worst=plan.settings.worst, cost=costs.change)
    if gathered.comparison_error:
        lines.append(Line(gathered.comparison_error, "red"))
    for text in recorded.lines:
        lines.append(Line(f"recorded: {text}", "red" if recorded.failed else "green"))
    if recorded.lines:
        lines.append(Line("  review the new references with git diff before committing them"))
    return lines


def judge_calibrations(plan: RunPlan, gathered: Gatherer) -> list[tuple[str, bool]]:
    """Each judge's agreement with people from ``--llm-calibration`` (``llmregress judge
    calibrate``), or that it is uncalibrated: (line, calibrated). Said when the judge scored
    a case of the run."""
    from pytest_llmregress.verdict.calibration import (
        CalibrationStoreError,
        calibration_line,
        find_calibration,
    )

    judged = any(score.scorer == "judge" for result in gathered.results for score in result.scores)
    if not judged:
        return []
    store = plan.settings.calibration
    lines = []
    for judge in plan.judges:
        try:
            found = find_calibration(plan.rooted(store), str(judge))
        except CalibrationStoreError as error:
            lines.append((f"judge {judge}: calibration not read: {error}", False))
            continue
        lines.append((calibration_line(found, str(judge), store=store), found is not None))
    return lines


def run_result(plan: RunPlan, gathered: Gatherer) -> RunResult:
    """The results document: the plan's metadata, what the run found, the cases in file order."""
    from pytest_llmregress.verdict.results import RunResult

    verdict = gathered.verdict
    comparison = gathered.comparison
    metadata = plan.metadata()
    metadata.update(
        finished_at=dt.datetime.now(dt.UTC).isoformat(),
        resolved_models=gathered.resolved_models(),
        missing=gathered.missing(),
        broken_golden_files=sorted(gathered.broken_golden_files),  # for llmregress merge
        verdict=None
        if verdict is None
        else {
            "ok": None if verdict.is_recording else verdict.ok,
            "recorded": verdict.recorded,
            "passed": verdict.passed,
            "failed": verdict.failed,
            "errors": verdict.errors,
            "pass_rate": verdict.pass_rate,
            "interval95": list(verdict.interval),
            "rate_name": verdict.rate_name,
            "reasons": list(verdict.reasons),
        },
        noise=gathered.noise().to_dict() or None,
        comparison=None if comparison is None else comparison.to_dict(cases=False),
    )
    costs = gathered.costs()
    if costs.run is not None:
        cost = costs.run.to_document()
        if costs.compare is not None:
            cost["compare"] = costs.compare.to_document()
        if costs.change is not None:
            cost["change"] = costs.change.to_dict()
        metadata["cost"] = cost
    elif costs.error:
        metadata["cost"] = {"error": costs.error}

    def in_file_order(results: list[CaseResult]) -> list[CaseResult]:
        return sorted(results, key=lambda r: (r.path, r.line, r.case_id))

    return RunResult(
        metadata, in_file_order(gathered.results), in_file_order(gathered.compare_results)
    )


def write_outputs(
    plan: RunPlan, gathered: Gatherer, environ: Mapping[str, str] | None = None
) -> Recorded:
    """Everything the end of a run writes: the results file (``--llm-report``, replacing its
    journals unless cases are missing), the history copy, the markdown summary, the HTML page
    (``--llm-html``) and recorded references. ``environ``: where ``GITHUB_STEP_SUMMARY`` is
    read (default ``os.environ``)."""
    from pytest_llmregress.verdict.results import finish_results, write_run

    run = run_result(plan, gathered)
    if plan.report_path is not None:
        finish_results(plan.report_path, run, keep_journals=bool(run.metadata["missing"]))
    if plan.settings.history:
        folder = plan.rooted(plan.settings.history)
        stamp = plan.started_at.strftime("%Y%m%dT%H%M%SZ")
        model = "".join(c if c.isalnum() or c in "-._" else "_" for c in str(plan.candidate))
        write_run(folder / f"{stamp}_{model}.json", run)
    write_markdown(plan, gathered, run, os.environ if environ is None else environ)
    write_html(plan, gathered, run)
    return record_references(plan, gathered.results)


def write_markdown(
    plan: RunPlan, gathered: Gatherer, run: RunResult, environ: Mapping[str, str]
) -> None:
    """The CI summary: to ``--llm-markdown`` and appended to ``$GITHUB_STEP_SUMMARY``."""
    settings = plan.settings
    step_summary = environ.get("GITHUB_STEP_SUMMARY")
    if not settings.markdown and not step_summary:
        return
    from pytest_llmregress.report.markdown import comparison_markdown, run_markdown

    verdict = gathered.verdict
    costs = gathered.costs()
    text = run_markdown(
        verdict if verdict is not None else run,
        results=gathered.results,
        candidate=str(plan.candidate),
        worst=settings.worst,
        cost=costs.run,
        compare_cost=costs.compare,
        compare_label=costs.label,
        measured=gathered.noise(),
    )
    if costs.error:
        text += f"\n> ⚠️ {costs.error}\n"
    if gathered.comparison is not None:
        text += "\n" + comparison_markdown(
            gathered.comparison, worst=settings.worst, cost=costs.change
        )
    if settings.markdown:
        target = plan.rooted(settings.markdown)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def html_cost(gathered: Gatherer) -> list[str]:
    """The page's cost sentences, as the summary says them."""
    from pytest_llmregress.report.terminal import cost_lines

    costs = gathered.costs()
    if costs.run is None:
        return [costs.error] if costs.error else []
    return cost_lines(costs.run, compare=costs.compare, change=costs.change, label=costs.label)


def write_html(plan: RunPlan, gathered: Gatherer, run: RunResult) -> None:
    """``--llm-html``: the run's self-contained HTML page, with the comparison, the runs
    before this one in ``--llm-history``, each case's input from its golden file and the
    model warnings."""
    if not plan.settings.html:
        return
    from pytest_llmregress.report.html import (
        history_points,
        load_history_runs,
        load_inputs,
        render_html,
    )
    from pytest_llmregress.report.html import write_html as write_page

    history = plan.settings.history
    runs = load_history_runs(plan.rooted(history), exclude=run) if history else []
    page = render_html(
        run,
        comparison=gathered.comparison,
        history=history_points(runs),
        inputs=load_inputs(run.cases, plan.root),
        warnings=model_warnings(plan, gathered),
        cost=html_cost(gathered),
        measured=gathered.noise(),
    )
    write_page(plan.rooted(plan.settings.html), page)


def record_references(plan: RunPlan, results: list[CaseResult]) -> Recorded:
    """``--llm-record``: write recorded outputs into their golden files, once, here."""
    recorded: dict[str | os.PathLike[str], dict[str, str]] = {}
    names: dict[str | os.PathLike[str], str] = {}
    for result in results:
        if result.recorded and result.output is not None:
            path = str(plan.root / result.path)
            recorded.setdefault(path, {})[result.case_id] = result.output
            names[path] = result.path
    if not recorded:
        return Recorded()
    from pytest_llmregress.authoring.recording import record_many

    reports = record_many(recorded, overwrite=plan.settings.record == "all", display_paths=names)
    return Recorded(
        tuple(report.summary() for report in reports), any(report.error for report in reports)
    )
