"""GitHub-flavoured markdown summaries, for ``$GITHUB_STEP_SUMMARY`` and pull-request comments.

- :func:`comparison_markdown`: a candidate against a baseline (verdict, pass rates, the
  statistics, the flips, the worst cases, what was not compared, aliases that moved).
- :func:`run_markdown`: one run's gate verdict and its worst cases.
- :func:`attribution_markdown`: a migration split into model, prompt and interaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmregress.report.terminal import (
    cost_change_text,
    cost_texts,
    failing_scores_text,
    noise_texts,
    worst_cases,
)
from pytest_llmregress.verdict.compare import (
    Attribution,
    Comparison,
    PairedCase,
    RunSummary,
    worst_pairs,
)
from pytest_llmregress.verdict.gate import Verdict, decide
from pytest_llmregress.verdict.judging import noise
from pytest_llmregress.verdict.results import CaseResult, RunResult
from pytest_llmregress.verdict.stats import wilson_interval

if TYPE_CHECKING:
    from pytest_llmregress.verdict.cost import CostChange, RunCost
    from pytest_llmregress.verdict.judging import Noise

_ICON = {"regression": "❌", "within noise": "✅", "improvement": "🟢"}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _points(value: float) -> str:
    if not math.isfinite(value):
        return "none at this size"
    return f"{abs(value) * 100:.1f} pts"


def _signed(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def cell(text: object, limit: int = 120) -> str:
    """Text made safe for one markdown table cell: one line, pipes escaped, shortened."""
    flat = " ".join(str(text if text is not None else "").split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return flat or " "


def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    escaped = text.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _flip_rows(pairs: Sequence[PairedCase], limit: int) -> list[list[str]]:
    rows = []
    for pair in pairs[:limit]:
        reasons = _why(pair.candidate)
        rows.append(
            [
                _code(pair.nodeid),
                _score(pair.baseline_score),
                _score(pair.candidate_score),
                "–" if pair.delta is None else f"{pair.delta:+.2f}",
                cell(pair.candidate_output, 80),
                cell(reasons, 100),
            ]
        )
    return rows


def _why(result: CaseResult) -> str:
    """Each failing scorer against the threshold it applied, and its reason."""
    return "; ".join(
        f"{s.scorer} {s.against_threshold()}: {s.reason}" for s in result.failing_scores
    )


_FLIP_HEADER = ("Case", "Baseline", "Candidate", "Δ score", "Candidate output", "Why")


def comparison_markdown(
    comparison: Comparison,
    *,
    worst: int = 10,
    title: str | None = None,
    cost: CostChange | None = None,
) -> str:
    """A comparison as a GitHub-flavoured markdown section. ``cost``: the candidate calls'
    cost per case in both runs, a row of the statistics."""
    c = comparison
    icon = _ICON[c.verdict]
    lines = [
        f"## {icon} {title or 'LLM regression check'}: {c.verdict}",
        "",
        f"**{cell(c.candidate_label)}** (candidate) against **{cell(c.baseline_label)}** "
        f"(baseline) on {c.n} paired cases.",
        "",
    ]
    rows = []
    for role, label, summary in (
        ("Baseline", c.baseline_label, c.baseline),
        ("Candidate", c.candidate_label, c.candidate),
    ):
        low, high = summary.interval
        rows.append(
            [
                role,
                _code(label),
                _pct(summary.pass_rate),
                f"{_pct(low)} – {_pct(high)}" if summary.scored else "–",
                f"{summary.passed}/{summary.scored}",
                _score(summary.mean_score),
            ]
        )
    lines += _table(("", "Model", "Pass rate", "95% CI", "Passed", "Mean score"), rows)
    lines.append("")
    stats = [
        ["Pass-rate change", _signed(c.difference) + f" (margin {_points(c.max_regression)})"],
        ["Flips", f"{c.pass_to_fail} pass→fail, {c.fail_to_pass} fail→pass"],
        [
            "Exact McNemar p" + (" (mid-p)" if c.mid_p else ""),
            f"{_p(c.p_value)} (alpha {c.alpha:g}: "
            + ("significant" if c.significant else "not significant")
            + ")",
        ],
    ]
    if cost is not None:
        change = cost_change_text(cost)
        stats.append(["Cost per case", cell(change.removeprefix("cost per case").strip(" :"))])
    if c.score_delta is not None:
        d = c.score_delta
        stats.append(
            [
                "Mean score difference",
                f"{d.mean:+.3f} ({d.confidence:.0%} bootstrap CI {d.low:+.3f} to {d.high:+.3f})",
            ]
        )
    mde = c.min_detectable_effect
    warn = " ⚠️ larger than the margin: add cases" if mde > c.max_regression else ""
    stats.append(
        ["Smallest detectable drop", f"{_points(mde)} ({c.power:.0%} power){warn}"],
    )
    lines += _table(("Statistic", "Value"), stats)
    lines.append("")
    if c.reasons:
        lines.append("**Why this verdict**")
        lines.append("")
        lines += [f"- {cell(reason, 400)}" for reason in c.reasons]
        lines.append("")
    for move in c.alias_moves:
        lines.append(f"> ⚠️ **Alias moved:** {cell(move.describe(), 400)}")
        lines.append("")

    drops = [p for p in worst_pairs(c, max(len(c.pairing.paired), 1)) if p.flip == "pass->fail"]
    if drops:
        heading = "significant" if c.significant and c.difference < 0 else "not significant"
        lines.append(f"### Pass → fail flips ({len(drops)}, {heading} overall)")
        lines.append("")
        lines += _table(_FLIP_HEADER, _flip_rows(drops, worst))
        if len(drops) > worst:
            lines.append("")
            lines.append(f"… and {len(drops) - worst} more.")
        lines.append("")
    gains = list(c.pairing.fail_to_pass)
    if gains:
        lines += _details(
            f"Fail → pass flips ({len(gains)})",
            _table(_FLIP_HEADER, _flip_rows(gains, worst)),
        )
    lowered = [p for p in worst_pairs(c, worst) if p.flip is None]
    if lowered:
        lines += _details(
            f"Largest score drops without a flip ({len(lowered)})",
            _table(_FLIP_HEADER, _flip_rows(lowered, worst)),
        )
    pairing = c.pairing
    if pairing.errored:
        rows = [
            [
                _code(p.nodeid),
                p.baseline.outcome,
                p.candidate.outcome,
                cell(p.candidate.error or p.baseline.error, 120),
            ]
            for p in pairing.errored[:worst]
        ]
        lines += _details(
            f"⚠️ Errored in either run, not compared ({len(pairing.errored)})",
            _table(("Case", "Baseline", "Candidate", "Error"), rows),
        )
    for name, only in (("baseline", pairing.only_baseline), ("candidate", pairing.only_candidate)):
        if only:
            body = [f"- {_code(r.nodeid)}" for r in only[:worst]]
            if len(only) > worst:
                body.append(f"- … and {len(only) - worst} more")
            lines += _details(f"Only in the {name} run, not compared ({len(only)})", body)
    return "\n".join(lines).rstrip() + "\n"


def _verdict_dict(source: Verdict | Mapping[str, Any] | RunResult) -> dict[str, Any]:
    if isinstance(source, Verdict):
        return {
            "ok": source.ok,
            "recorded": source.recorded,
            "passed": source.passed,
            "failed": source.failed,
            "errors": source.errors,
            "pass_rate": source.pass_rate,
            "interval95": list(source.interval),
            "reasons": list(source.reasons),
            "min_pass_rate": source.min_pass_rate,
            "max_error_rate": source.max_error_rate,
            "rate_name": source.rate_name,
        }
    if isinstance(source, RunResult):
        settings = source.metadata.get("settings") or {}
        verdict = decide(
            source.cases,
            min_pass_rate=float(settings.get("min_pass_rate", 0.0)),
            max_error_rate=float(settings.get("max_error_rate", 1.0)),
            gate=str(settings.get("gate", "mean")),
        )
        data = _verdict_dict(verdict)
        stored = source.metadata.get("verdict")
        if isinstance(stored, Mapping) and "ok" in stored:
            data["ok"] = bool(stored["ok"])
            data["reasons"] = list(stored.get("reasons", data["reasons"]))
        return data
    return dict(source)


def run_markdown(
    source: Verdict | Mapping[str, Any] | RunResult,
    *,
    results: Sequence[CaseResult] | None = None,
    candidate: str | None = None,
    worst: int = 5,
    title: str | None = None,
    cost: RunCost | None = None,
    compare_cost: RunCost | None = None,
    compare_label: str = "",
    measured: Noise | None = None,
) -> str:
    """One run's gate verdict as markdown: pass rate, verdict, reasons, cost, worst cases.

    ``measured``: the results' noise when the caller has it already (else computed here).

    ``cost``: what the run's calls cost (``verdict.cost.run_cost``); ``compare_cost``: the
    ``--llm-compare-model``'s calls, named ``compare_label``.

    ``source`` is a :class:`~pytest_llmregress.verdict.gate.Verdict`, the ``verdict`` mapping of a
    results document, or a whole :class:`RunResult` (its cases give the worst cases; pass
    ``results`` to list them with the other two).
    """
    data = _verdict_dict(source)
    if isinstance(source, RunResult):
        results = source.cases if results is None else results
        candidate = candidate or source.metadata.get("candidate")
    results = list(results or ())
    passed, failed, errors = (int(data.get(k, 0)) for k in ("passed", "failed", "errors"))
    scored = passed + failed
    ok = bool(data.get("ok", not data.get("reasons")))
    rate = data.get("pass_rate")
    if rate is None and scored:
        rate = passed / scored
    interval = data.get("interval95") or list(wilson_interval(passed, scored))
    name = f" — {_code(str(candidate))}" if candidate else ""
    recorded = int(data.get("recorded") or 0)
    if recorded:  # a recording run gives no verdict on the model
        headline = f"references recorded ({recorded}), no verdict"
        lines = [f"## ⏺️ {title or 'LLM golden suite'}{name}: {headline}", ""]
    else:
        lines = [
            f"## {'✅' if ok else '❌'} {title or 'LLM golden suite'}{name}: "
            f"{'passed' if ok else 'failed'}",
            "",
        ]
    row = [
        _pct(rate),
        f"{_pct(interval[0])} – {_pct(interval[1])}" if scored else "–",
        str(passed),
        str(failed),
        str(errors),
    ]
    rate_name = str(data.get("rate_name") or "pass rate")
    header = [rate_name[:1].upper() + rate_name[1:], "95% CI", "Passed", "Failed", "Errors"]
    if data.get("min_pass_rate") is not None:
        header.append("Minimum")
        row.append(_pct(float(data["min_pass_rate"])))
    lines += _table(header, [row])
    lines.append("")
    reasons = [] if recorded else list(data.get("reasons") or ())
    if reasons:
        lines.append("**Why it failed**")
        lines.append("")
        lines += [f"- {cell(reason, 400)}" for reason in reasons]
        lines.append("")
    if measured is None and results and not recorded:
        measured = noise(results)
    if recorded:
        measured = None
    if measured is not None and measured.measured:
        lines.append("**Noise**")
        lines.append("")
        lines += [f"- {cell(text.strip(), 600)}" for text in noise_texts(measured)]
        lines.append("")
    spent = [] if cost is None else cost_texts(cost, compare=compare_cost, label=compare_label)
    if spent:
        lines.append("**Cost**")
        lines.append("")
        lines += [f"- {cell(text.strip(), 400)}" for text in spent]
        lines.append("")
    bad = worst_cases(results, worst)
    if bad:
        lines.append(f"### Worst {len(bad)} of {failed} failed cases")
        lines.append("")
        rows = [
            [
                _code(r.nodeid),
                cell(failing_scores_text(r)),
                cell("; ".join(f"{s.scorer}: {s.reason}" for s in r.failing_scores), 160),
            ]
            for r in bad
        ]
        lines += _table(("Case", "Score vs threshold", "Why"), rows)
        lines.append("")
    errored = [r for r in results if r.outcome == "error"]
    if errored:
        causes: dict[str, list[CaseResult]] = {}
        for r in errored:
            causes.setdefault(cell(r.error, 160), []).append(r)
        rows = [
            [str(len(members)), cause, _code(members[0].nodeid)]
            for cause, members in sorted(causes.items(), key=lambda kv: -len(kv[1]))
        ]
        lines += _details(
            f"⚠️ {len(errored)} errored cases, by cause",
            _table(("Cases", "Cause", "Example"), rows),
        )
    return "\n".join(lines).rstrip() + "\n"


def attribution_markdown(attribution: Attribution) -> str:
    """A four-run attribution (model x prompt) as markdown."""
    a = attribution
    r = a.rates
    lines = [
        "## LLM migration attribution: model, prompt, interaction",
        "",
        f"On {a.n} cases scored in all four runs.",
        "",
    ]
    lines += _table(
        ("", "Old prompt", "New prompt"),
        [
            [
                "Old model",
                _pct(r["old_model_old_prompt"]),
                _pct(r["old_model_new_prompt"]),
            ],
            [
                "New model",
                _pct(r["new_model_old_prompt"]),
                _pct(r["new_model_new_prompt"]),
            ],
        ],
    )
    lines.append("")
    rows = [["Total (new/new − old/old)", _signed(a.total), "", ""]]
    for effect in (a.model, a.prompt, a.interaction):
        interval = (
            f"{_signed(effect.interval.low)} to {_signed(effect.interval.high)}"
            if effect.interval is not None
            else "–"
        )
        significant = "yes" if effect.significant(a.alpha) else "no"
        rows.append(
            [
                f"{effect.name.capitalize()} effect",
                _signed(effect.estimate),
                interval,
                f"{_p(effect.p_value)} ({significant})",
            ]
        )
    lines += _table(("", "Estimate", "95% bootstrap CI", "Sign test p"), rows)
    lines.append("")
    lines += [f"- {cell(reason, 400)}" for reason in a.reasons]
    return "\n".join(lines).rstrip() + "\n"


def history_markdown(runs: Sequence[tuple[str, RunSummary, Sequence[str]]]) -> str:
    """Runs over time as one table: (file, summary, flags) per run, oldest first."""
    rows = [
        [
            cell(summary.started_at or "?"),
            _code(summary.label),
            _pct(summary.pass_rate),
            _score(summary.mean_score),
            f"{summary.passed}/{summary.scored}",
            str(summary.errors),
            cell("; ".join(flags), 200) if flags else " ",
            _code(name),
        ]
        for name, summary, flags in runs
    ]
    header = ("Started", "Model", "Pass rate", "Mean score", "Passed", "Errors", "Flags", "File")
    return "\n".join(["## LLM golden suite history", "", *_table(header, rows)]) + "\n"
