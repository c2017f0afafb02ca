"""The terminal summary: one section that explains the session's exit status at a glance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_llmregress.verdict.gate import Verdict
from pytest_llmregress.verdict.results import CaseResult


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""  # "", "green", "red", "yellow"


def percent(value: float) -> str:
    """A rate as a percentage with one decimal: 0.8123 -> 81.2%."""
    return f"{value:.1%}"


def one_line(text: str | None, limit: int = 160) -> str:
    """Text on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def failing_scores_text(result: CaseResult) -> str:
    """Each failing scorer against the threshold it applied: ``similarity 0.86 < 0.90``.

    Not the case's ``threshold``: a scorer with its own ``threshold`` option, or one that
    passes only at 1.0 (``exact``, ``contains``, ``regex``, ``json``), applied another.
    """
    return "; ".join(f"{s.scorer} {s.against_threshold()}" for s in result.failing_scores)


def worst_cases(results: Sequence[CaseResult], count: int) -> list[CaseResult]:
    """Failed cases, lowest score first (errors are listed apart)."""
    failed = [r for r in results if r.outcome == "failed"]
    failed.sort(key=lambda r: (r.score if r.score is not None else 0.0, r.nodeid))
    return failed[:count]


def summary_lines(
    verdict: Verdict,
    results: Sequence[CaseResult],
    *,
    candidate: str,
    judge: str | None,
    resolved: Mapping[str, Mapping[str, int]],
    worst: int,
    report_path: str | None,
    missing: Sequence[str] = (),
    resumed: int = 0,
    model_warnings: Sequence[str] = (),
    chain: Sequence[str] = (),
    cache_use: str | None = None,
    damaged_state: Sequence[str] = (),
) -> list[Line]:
    """Lines of the ``llmregress`` summary section, most important first.

    ``cache_use``: the cache's hits and misses (``cache.cache_use_line``), None without a cache.
    ``damaged_state``: what was healed or skipped (damaged cache entries replaced, damaged
    journal lines skipped on resume), one line each.
    """
    lines: list[Line] = []
    if verdict.is_recording:
        lines.append(
            Line(
                f"RECORDED: {verdict.recorded} references from {candidate}; no verdict on the "
                f"model (recorded cases are not passes: run again without recording to judge it)",
                "yellow",
            )
        )
    else:
        status = "PASSED" if verdict.ok else "FAILED"
        lines.append(
            Line(
                f"{status}: {candidate} on {verdict.total} golden cases",
                "green" if verdict.ok else "red",
            )
        )
    if verdict.pass_rate is not None and not verdict.is_recording:
        low, high = verdict.interval
        lines.append(
            Line(
                f"pass rate {percent(verdict.pass_rate)} (95% CI {percent(low)}-{percent(high)}) "
                f"against minimum {percent(verdict.min_pass_rate)}"
            )
        )
    lines.append(
        Line(
            f"{'judged, not recorded: ' if verdict.is_recording else ''}"
            f"{verdict.passed} passed, {verdict.failed} failed, {verdict.errors} errors "
            f"(errors are not in the pass rate; max error rate {percent(verdict.max_error_rate)})"
        )
    )
    for reason in () if verdict.is_recording else verdict.reasons:
        lines.append(Line(f"  reason: {reason}", "red"))
    # Which model of the chain answered each case: the primary, or a fallback by provider:id
    # (the same id may sit in the chain twice, through two providers).
    by_model: dict[str, list[CaseResult]] = {}
    for result in results:
        if result.completion is not None and result.completion.fallback_model:
            answerer = f"{result.completion.provider}:{result.completion.fallback_model}"
            by_model.setdefault(answerer, []).append(result)
    if chain or by_model:
        primary = sum(1 for r in results if r.completion and not r.completion.fallback_model)
        chain_members = dict.fromkeys([candidate, *chain, *sorted(by_model)])
        counts = [
            f"{m} {primary if m == candidate else len(by_model.get(m, []))}" for m in chain_members
        ]
        lines.append(Line(f"answered by the chain: {', '.join(counts)}"))
    if verdict.by_fallback:
        lines.append(
            Line(
                f"{verdict.by_fallback} cases answered by a fallback (reported apart, not counted "
                f"as the primary's passes):",
                "yellow",
            )
        )
        for model, answered in sorted(by_model.items()):
            ok = sum(1 for r in answered if r.outcome == "passed")
            scored = sum(1 for r in answered if r.outcome != "error")
            rate = f"{ok / scored:.1%}" if scored else "-"
            lines.append(Line(f"  {model}: {ok}/{scored} passed ({rate})"))

    bad = worst_cases(results, worst)
    if bad:
        lines.append(Line(f"worst {len(bad)} of {verdict.failed} failed cases:"))
        for result in bad:
            lines.append(Line(f"  {result.nodeid}  {failing_scores_text(result)}", "red"))
            for failing in result.failing_scores:
                lines.append(Line(f"      {failing.scorer}: {one_line(failing.reason)}"))
    errored = [r for r in results if r.outcome == "error"]
    if errored:
        # One line per cause: 300 cases failing with one 404 read as one problem.
        causes: dict[str, list[CaseResult]] = {}
        for result in errored:
            causes.setdefault(one_line(result.error), []).append(result)
        lines.append(Line(f"{len(errored)} errored cases, by cause:", "yellow"))
        for cause, members in sorted(causes.items(), key=lambda kv: -len(kv[1]))[: max(worst, 1)]:
            example = members[0].nodeid + (
                f" and {len(members) - 1} more" if len(members) > 1 else ""
            )
            lines.append(Line(f"  {len(members)} x {cause}", "yellow"))
            lines.append(Line(f"      {example}"))

    tokens_in = tokens_out = judge_in = judge_out = 0
    for result in results:
        if result.completion is not None:
            tokens_in += result.completion.input_tokens
            tokens_out += result.completion.output_tokens
        if result.judge_completion is not None:
            judge_in += result.judge_completion.input_tokens
            judge_out += result.judge_completion.output_tokens
    lines.append(
        Line(
            f"tokens: candidate {tokens_in} in / {tokens_out} out"
            + (f"; judge {judge_in} in / {judge_out} out" if judge else "")
        )
    )
    for requested, versions in sorted(resolved.items()):
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(versions.items()))
        lines.append(Line(f"answered by: {requested} -> {listed}"))
        models = {name.split(" (")[0] for name in versions}
        if len(models) > 1:
            lines.append(
                Line(
                    f"  alias moved: {requested} answered as {len(models)} versions in one run",
                    "red",
                )
            )
        elif len(versions) > 1:
            lines.append(
                Line(f"  system fingerprint changed within the run: {requested}", "yellow")
            )
    for warning in model_warnings:
        lines.append(Line(f"model warning: {warning}", "yellow"))
    if cache_use:
        lines.append(Line(cache_use))
    for text in damaged_state:
        lines.append(Line(text, "yellow"))
    if resumed:
        lines.append(Line(f"resumed: {resumed} cases taken from the earlier run, not called again"))
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        lines.append(
            Line(f"incomplete: {len(missing)} golden cases have no result: {shown}", "red")
        )
        if report_path:
            resume = f"--llm-resume={report_path}"
            lines.append(Line(f"  finished results are kept; run only the rest with {resume}"))
    if report_path:
        lines.append(Line(f"results: {report_path}"))
    return lines
