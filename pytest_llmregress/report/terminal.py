"""The terminal summary: one section that explains the session's exit status at a glance."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_llmregress.core.text import cases, one_line, p_value, percent, points
from pytest_llmregress.verdict.gate import Verdict
from pytest_llmregress.verdict.results import CaseResult

if TYPE_CHECKING:  # the comparison module loads only when a run is compared
    from pytest_llmregress.models.prices import PriceTable
    from pytest_llmregress.scoring.score import Score
    from pytest_llmregress.verdict.compare import Comparison
    from pytest_llmregress.verdict.cost import CostChange, RoleCost, RunCost
    from pytest_llmregress.verdict.judging import Noise


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""  # "", "green", "red", "yellow"


def failing_scores_text(result: CaseResult) -> str:
    """Each failing scorer against the threshold it applied: ``similarity 0.86 < 0.90``.

    Not the case's ``threshold``: a scorer with its own ``threshold`` option, or one that
    passes only at 1.0 (``exact``, ``contains``, ``regex``, ``json``), applied another.
    A judge score of a case with a rubric adds each criterion's value:
    ``judge 0.47 < 0.85 [cites_policy 0.20, polite 1.00]``.
    """
    return "; ".join(
        f"{s.scorer} {s.against_threshold()}{_criteria_text(s)}" for s in result.failing_scores
    )


def _criteria_text(score: Score) -> str:
    """`` [name 0.20, other 1.00]``: the values of a rubric's criteria; empty without."""
    if not score.criteria:
        return ""
    return " [" + ", ".join(f"{name} {value:.2f}" for name, value in score.criteria.items()) + "]"


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
    cost: RunCost | None = None,
    compare_cost: RunCost | None = None,
    compare_label: str = "",
) -> list[Line]:
    """Lines of the ``llmregress`` summary section, most important first.

    ``cost``: what the run's calls cost (``verdict.cost.run_cost``), said after the tokens;
    ``compare_cost``: the ``--llm-compare-model``'s calls, named ``compare_label``.

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
                f"{verdict.rate_name} {percent(verdict.pass_rate)} "
                f"(95% CI {percent(low)}-{percent(high)}) "
                f"against minimum {percent(verdict.min_pass_rate)}"
            )
        )
    lines.append(
        Line(
            f"{'judged, not recorded: ' if verdict.is_recording else ''}"
            f"{verdict.passed} passed, {verdict.failed} failed, {verdict.errors} errors"
            + (f", {verdict.not_run} not run (budget)" if verdict.not_run else "")
            + " "
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
            repeats = ""
            if result.repeats:
                runs = [o for o in result.repeat_outcomes if o is not None]
                repeats = f"; {sum(runs)} of {len(runs)} repeats passed"
            lines.append(Line(f"  {result.nodeid}  {failing_scores_text(result)}{repeats}", "red"))
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
    for result in (run for r in results for run in r.repeats or (r,)):
        if result.completion is not None:
            tokens_in += result.completion.input_tokens
            tokens_out += result.completion.output_tokens
        votes = [vote for score in result.scores for vote in score.votes]
        if votes:  # a judge score of several calls: every call's tokens
            judge_in += sum(vote.input_tokens for vote in votes)
            judge_out += sum(vote.output_tokens for vote in votes)
        elif result.judge_completion is not None:
            judge_in += result.judge_completion.input_tokens
            judge_out += result.judge_completion.output_tokens
    lines.append(
        Line(
            f"tokens: candidate {tokens_in} in / {tokens_out} out"
            + (f"; judge {judge_in} in / {judge_out} out" if judge else "")
        )
    )
    if cost is not None:
        spent = cost_texts(cost, compare=compare_cost, label=compare_label)
        lines += [Line(text, "yellow" if "unknown price" in text else "") for text in spent]
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


def money(value: float) -> str:
    """``$0.42``, ``$12.30``; below a cent two significant digits (``$0.0031``)."""
    if value == 0:
        return "$0"
    if abs(value) >= 0.01:
        return f"${value:,.2f}"
    digits = max(2, -math.floor(math.log10(abs(value))) + 1)
    return f"${value:.{digits}f}"


def _as_of(cost: RunCost) -> str:
    dates = [d.isoformat() for d in cost.as_of]
    text = ""
    if dates:
        text = f"prices as of {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "")
    if cost.project_prices:
        text += ("; " if text else "") + "the project's own prices"
    return text


def cost_texts(cost: RunCost, *, compare: RunCost | None = None, label: str = "") -> list[str]:
    """What the run's calls cost, one sentence each (the terminal summary and the markdown):
    the candidate's and the judge's, the prices' date, what came from the response cache,
    and every model whose price is unknown (said, never guessed). ``compare``: the
    ``--llm-compare-model`` run's candidate calls, named ``label``."""
    if not cost.candidate.calls and not cost.judge.calls:
        return []

    def amount(role: RoleCost) -> str:
        """A role's cost: unknown when no call had a price, a floor when some lacked one."""
        if role.unpriced and sum(role.unpriced.values()) == role.calls:
            return "unknown"
        return ("at least " if role.unpriced else "") + money(role.cost)

    parts = [f"candidate {amount(cost.candidate)}"]
    if cost.judge.calls:
        parts.append(f"judge {amount(cost.judge)}")
    if compare is not None and compare.candidate.calls:
        parts.append(f"{label or 'compare model'} {amount(compare.candidate)}")
    when = _as_of(cost)
    text = f"cost: {', '.join(parts)}" + (f" ({when})" if when else "")
    per_case = cost.candidate_per_case
    if per_case is not None:
        text += f"; candidate {money(per_case)} per case"
    texts = [text]
    batched = cost.candidate.batch_calls + cost.judge.batch_calls
    if compare is not None:
        batched += compare.candidate.batch_calls
    if batched:
        texts.append(
            f"  {batched} call{'s' if batched != 1 else ''} through the Batch APIs, at the "
            "batch prices"
        )
    cached = cost.cached_cost + (compare.cached_cost if compare is not None else 0.0)
    if cached:
        texts.append(f"  {money(cached)} of it replayed from the response cache, not spent")
    unpriced = dict(cost.candidate.unpriced)
    for model, calls in [
        *cost.judge.unpriced.items(),
        *(compare.candidate.unpriced.items() if compare is not None else ()),
    ]:
        unpriced[model] = unpriced.get(model, 0) + calls
    for model, calls in sorted(unpriced.items()):
        texts.append(
            f"  unknown price for {model} ({calls} call{'s' if calls != 1 else ''} not in the "
            "cost): add it under [tool.llmregress.prices]"
        )
    return texts


def cost_lines(
    run: RunCost,
    *,
    compare: RunCost | None = None,
    change: CostChange | None = None,
    label: str = "",
) -> list[str]:
    """A run's cost sentences (``cost_texts``) with the comparison's cost change: the HTML
    page's."""
    texts = cost_texts(run, compare=compare, label=label)
    if change is not None:
        texts.append(cost_change_text(change))
    return texts


def run_cost_texts(
    results: Sequence[CaseResult],
    comparison: Comparison | None,
    table: PriceTable,
    *,
    compare_results: Sequence[CaseResult] = (),
    compare_label: str = "",
) -> list[str]:
    """:func:`cost_lines` of stored results priced with ``table`` (``llmregress report``)."""
    from pytest_llmregress.verdict.cost import cost_change, run_cost

    return cost_lines(
        run_cost(results, table),
        compare=run_cost(compare_results, table) if compare_results else None,
        change=cost_change(comparison, table) if comparison is not None else None,
        label=compare_label,
    )


def cost_change_text(change: CostChange) -> str:
    """``cost per case $0.0031 -> $0.0024 (-23%)``, or why it cannot be said."""
    if change.unpriced:
        return f"cost per case: unknown price for {', '.join(change.unpriced)}"
    if change.baseline_per_case is None or change.candidate_per_case is None:
        return "cost per case: no priced calls"
    text = f"cost per case {money(change.baseline_per_case)} -> {money(change.candidate_per_case)}"
    if change.relative is not None:
        text += f" ({change.relative:+.0%})"
    return text + f" on {cases(change.cases)}"


def comparison_lines(
    comparison: Comparison, *, worst: int = 5, cost: CostChange | None = None
) -> list[Line]:
    """The comparison as terminal summary lines, most important first. ``cost``: the
    candidate calls' cost per case in both runs, said next to the quality change."""
    from pytest_llmregress.verdict.compare import worst_pairs

    c = comparison
    style = {"regression": "red", "improvement": "green", "within noise": "green"}[c.verdict]
    lines = [
        Line(
            f"{c.verdict.upper()}: {c.candidate_label} against {c.baseline_label} "
            f"on {c.n} paired cases",
            style,
        )
    ]
    repeated = c.repeated
    if repeated is not None:  # the rates compared are the mean pass rates over repeats
        for label, rate in (
            (c.baseline_label, repeated.baseline_rate),
            (c.candidate_label, repeated.candidate_rate),
        ):
            if rate is not None:
                lines.append(Line(f"  {label}: mean pass rate over repeats {percent(rate)}"))
        if repeated.interval is not None:
            low, high = repeated.interval.low, repeated.interval.high
            lines.append(
                Line(
                    f"mean difference of per-case pass fractions {repeated.difference:+.3f} "
                    f"(95% bootstrap CI {low:+.3f} to {high:+.3f})"
                )
            )
    for label, summary in ((c.baseline_label, c.baseline), (c.candidate_label, c.candidate)):
        if summary.pass_rate is None or repeated is not None:
            continue
        low, high = summary.interval
        mean = f", mean score {summary.mean_score:.3f}" if summary.mean_score is not None else ""
        lines.append(
            Line(
                f"  {label}: pass rate {percent(summary.pass_rate)} "
                f"(95% CI {percent(low)}-{percent(high)}, {summary.passed}/{summary.scored}){mean}"
            )
        )
    lines.append(
        Line(
            f"flips: {c.pass_to_fail} pass->fail, {c.fail_to_pass} fail->pass"
            + (" (of cases passing every repeat)" if repeated is not None else "")
            + f"; {c.test_name} p = {p_value(c.p_value)} (alpha {c.alpha:g})"
            + (", mid-p" if c.mid_p else "")
        )
    )
    if cost is not None:
        lines.append(Line(cost_change_text(cost)))
    if c.score_delta is not None:
        d = c.score_delta
        lines.append(
            Line(
                f"mean score difference {d.mean:+.3f} "
                f"({d.confidence:.0%} bootstrap CI {d.low:+.3f} to {d.high:+.3f}, "
                f"{d.resamples} resamples, seed {d.seed})"
            )
        )
    mde = c.min_detectable_effect
    lines.append(
        Line(
            "smallest detectable drop: "
            + (points(mde) if math.isfinite(mde) else "none at this size")
            + f" ({c.power:.0%} power, alpha {c.alpha:g}, {c.n} cases, "
            + (
                "repeats and their within-case variance counted"
                if repeated is not None
                else f"noise floor {percent(c.noise_floor)} of cases flipping"
            )
            + f"); margin {points(c.max_regression)}",
            "yellow" if mde > c.max_regression else "",
        )
    )
    for reason in c.reasons:
        lines.append(Line(f"  reason: {reason}", "red" if c.is_regression else ""))
    bad = [p for p in worst_pairs(c, worst) if p.flip == "pass->fail"]
    if bad:
        lines.append(Line(f"{len(bad)} of {c.pass_to_fail} pass->fail flips:"))
        for pair in bad:
            lines.append(
                Line(
                    f"  {pair.nodeid}  score {_score(pair.baseline_score)} -> "
                    f"{_score(pair.candidate_score)} ({failing_scores_text(pair.candidate)})",
                    "red",
                )
            )
            for failing in pair.candidate.failing_scores:
                lines.append(Line(f"      {failing.scorer}: {one_line(failing.reason)}"))
    pairing = c.pairing
    if pairing.errored:
        lines.append(
            Line(f"{cases(len(pairing.errored))} errored in either run (not compared):", "yellow")
        )
        for pair in pairing.errored[: max(worst, 1)]:
            cause = pair.candidate.error or pair.baseline.error
            lines.append(Line(f"  {pair.nodeid}: {one_line(cause, 120)}", "yellow"))
    for name, only in (
        ("baseline", pairing.only_baseline),
        ("candidate", pairing.only_candidate),
    ):
        if only:
            lines.append(Line(f"{cases(len(only))} only in the {name} run (not compared):"))
            for result in only[: max(worst, 1)]:
                lines.append(Line(f"  {result.nodeid}"))
            if len(only) > max(worst, 1):
                lines.append(Line(f"  ... and {len(only) - max(worst, 1)} more"))
    for move in c.alias_moves:
        lines.append(Line(f"alias moved: {move.describe()}", "yellow"))
    return lines


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def noise_texts(noise: Noise, *, flakiest: int = 5) -> list[str]:
    """What a run's repeats and judge votes say about its noise, one sentence each (the
    terminal summary and the markdown): repeats, why cases were flaky (the model or the
    judge), the flakiest cases, the panel, the order check."""
    texts: list[str] = []
    repeats = noise.repeats
    mean = repeats.summary.mean_pass_rate if repeats is not None else None
    if repeats is not None and mean is not None:
        summary, k = repeats.summary, repeats.repeats
        text = f"repeats: each case {k} times; mean pass rate {percent(mean)}"
        if summary.interval is not None:
            low, high = summary.interval.low, summary.interval.high
            text += f" (95% CI {percent(low)}-{percent(high)}, bootstrap over cases)"
        text += (
            f", pass^{k} {percent(summary.all_pass_rate or 0.0)}, "
            f"pass@{k} {percent(summary.any_pass_rate or 0.0)}"
        )
        if repeats.errored_repeats:
            text += f"; {repeats.errored_repeats} repeats errored (not in the rates)"
        texts.append(text)
        flaky = round((summary.flaky_share or 0.0) * summary.cases)
        texts.append(
            f"flaky: {flaky} of {cases(summary.cases)} ({percent(summary.flaky_share or 0.0)}) "
            "passed some repeats and failed others"
        )
        if summary.flakiest:
            listed = ", ".join(f"{c.nodeid} ({c.passes}/{c.trials})" for c in summary.flakiest)
            texts.append(f"  flakiest: {listed}")
    if repeats is not None or noise.judge_repeats > 1:
        model, judge = len(noise.sources.model), len(noise.sources.judge)
        texts.append(
            f"  why: the model answered differently in {cases(model)} (pin its sampling "
            f"parameters), the judge scored the same answer differently in {cases(judge)} "
            "(change the judge or the rubric)"
        )
    panel = noise.panel
    if panel is not None:
        rates = ", ".join(
            f"{r.judge} {percent(r.passed / r.judged)}" for r in panel.judges if r.judged
        )
        alpha = "undefined (no variation)" if math.isnan(panel.alpha) else f"{panel.alpha:.2f}"
        texts.append(
            f"judge panel: pass rates {rates} on {panel.outputs} outputs; agreement "
            f"Krippendorff's alpha = {alpha}"
        )
    order = noise.order
    if order is not None:
        texts.append(
            f"order check: the verdict changed with the order on {len(order.changed)} of "
            f"{order.checked} outputs judged both ways ({percent(order.change_rate)}); the "
            f"candidate shown first moved scores by {order.mean_shift:+.3f} on average"
        )
    return texts
