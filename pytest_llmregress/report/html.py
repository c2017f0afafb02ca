"""One self-contained HTML page of a run: ``--llm-html=PATH`` and ``llmregress report``.

The page is one file that works offline: inline CSS and JS, no external resource (a
Content-Security-Policy forbids any). The run's data rides in a ``<script
type="application/json">`` element, escaped so that no text of a case (model-written, so
hostile) can close the script; the script inserts every text as text (``textContent``), never as
HTML. Rows are built for the visible page only and a case's diff when it is expanded, so a
suite of thousands of cases opens at once.

What it shows: the verdict and its reasons, model warnings, the noise of repeats; a table of
cases with filters (failed, errored, flaky, regressed, by tag), search and sort; per case the
input, the reference and the output with a word-level diff, each scorer's score against its
threshold and its reason, the repeats; with a comparison, both runs' outputs side by side with
the flips marked; with history, the pass rate over runs with model changes and alias moves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmregress.report.terminal import noise_texts
from pytest_llmregress.verdict.compare import (
    CaseKey,
    Comparison,
    PairedCase,
    RunSummary,
    alias_moved,
    case_key,
    summarize_run,
    within_run_moves,
)
from pytest_llmregress.verdict.gate import decide
from pytest_llmregress.verdict.judging import Noise, noise
from pytest_llmregress.verdict.results import CaseResult, RunResult, read_results


@dataclass(frozen=True)
class CaseInput:
    """What a case sent to the model: its system prompt (or the prompt task it names) and its
    messages as (role, text)."""

    system: str | None
    messages: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HistoryPoint:
    """One earlier run on the trend: its summary and what changed (model, aliases)."""

    summary: RunSummary
    flags: tuple[str, ...] = ()


def load_inputs(
    results: Iterable[CaseResult], root: str | os.PathLike[str]
) -> dict[str, CaseInput]:
    """Each case's input read from its golden file under ``root``, by node id.

    Best effort: a golden file that is gone or no longer reads leaves its cases without an
    input (the page says so); the results file does not hold inputs.
    """
    from pytest_llmregress.cases.golden import CaseFileError, load_cases

    wanted: dict[str, dict[str, str]] = {}
    for result in results:
        wanted.setdefault(result.path, {})[result.case_id] = result.nodeid
    inputs: dict[str, CaseInput] = {}
    for path, ids in wanted.items():
        try:
            cases = load_cases(Path(root) / path, display_path=path)
        except (CaseFileError, OSError, ValueError):
            continue
        for case in cases:
            nodeid = ids.get(case.id)
            if nodeid is None:
                continue
            system = case.system
            if system is None and case.prompt is not None:
                values = ", ".join(f"{k}={v}" for k, v in case.prompt.vars.items())
                system = f"(prompt task {case.prompt.task}" + (f": {values})" if values else ")")
            messages = tuple((m.role, m.content) for m in case.messages)
            inputs[nodeid] = CaseInput(system, messages)
    return inputs


def _started(run: RunResult) -> str:
    return str(run.metadata.get("started_at") or "")


def _identity(run: RunResult) -> str:
    keys = [run.metadata.get(k) for k in ("started_at", "candidate", "pid")]
    return json.dumps([*keys, len(run.cases)], default=str)


def load_history_runs(
    directory: str | os.PathLike[str], *, exclude: RunResult | None = None
) -> list[RunResult]:
    """The runs of a history folder (``--llm-history``), oldest first; unreadable files are
    left out, and so is ``exclude`` (the run the page is about) if the folder holds it."""
    runs: list[RunResult] = []
    folder = Path(directory)
    if not folder.is_dir():
        return runs
    skip = _identity(exclude) if exclude is not None else None
    for path in sorted(folder.rglob("*.json")):
        try:
            run, _ = read_results(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if skip is not None and _identity(run) == skip:
            continue
        runs.append(run)
    runs.sort(key=_started)
    return runs


def history_points(runs: Sequence[RunResult]) -> list[HistoryPoint]:
    """Runs as points of the trend, each flagged with a model change or an alias that moved
    since the run before it (or within it)."""
    points: list[HistoryPoint] = []
    previous: RunResult | None = None
    for run in runs:
        summary = summarize_run(run)
        flags: list[str] = []
        if previous is not None:
            before = summarize_run(previous).label
            if before != summary.label:
                flags.append(f"model changed: {before} -> {summary.label}")
            flags += [
                "alias moved: " + move.describe("the previous run", "this run")
                for move in alias_moved(previous, run)
                if move.scope == "between runs"
            ]
        flags += ["alias moved: " + move.describe() for move in within_run_moves(run)]
        points.append(HistoryPoint(summary, tuple(flags)))
        previous = run
    return points


def _verdict(run: RunResult) -> dict[str, Any]:
    """The session's stored verdict, or the gate's on the cases of a file without one."""
    stored = run.metadata.get("verdict")
    settings = run.metadata.get("settings") or {}
    minimum = settings.get("min_pass_rate")
    if isinstance(stored, Mapping) and "ok" in stored:
        return {
            "ok": stored["ok"],
            "recorded": int(stored.get("recorded") or 0),
            "passed": int(stored.get("passed") or 0),
            "failed": int(stored.get("failed") or 0),
            "errors": int(stored.get("errors") or 0),
            "pass_rate": stored.get("pass_rate"),
            "interval": list(stored.get("interval95") or (0.0, 1.0)),
            "rate_name": stored.get("rate_name") or "pass rate",
            "reasons": [str(reason) for reason in stored.get("reasons") or ()],
            "min_pass_rate": None if minimum is None else float(minimum),
        }
    verdict = decide(
        run.cases,
        min_pass_rate=float(settings.get("min_pass_rate", 0.0)),
        max_error_rate=float(settings.get("max_error_rate", 1.0)),
        gate=str(settings.get("gate", "mean")),
    )
    return {
        "ok": verdict.ok,
        "recorded": verdict.recorded,
        "passed": verdict.passed,
        "failed": verdict.failed,
        "errors": verdict.errors,
        "pass_rate": verdict.pass_rate,
        "interval": list(verdict.interval),
        "rate_name": verdict.rate_name,
        "reasons": list(verdict.reasons),
        "min_pass_rate": verdict.min_pass_rate,
    }


def _score(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _case(result: CaseResult, inputs: Mapping[str, CaseInput]) -> dict[str, Any]:
    outcomes = [o for o in result.repeat_outcomes if o is not None]
    given = inputs.get(result.nodeid)
    data: dict[str, Any] = {
        "id": result.case_id,
        "node": result.nodeid,
        "where": f"{result.path}:{result.line}",
        "outcome": result.outcome,
        "tags": list(result.tags),
        "score": _score(result.score),
        "out": result.output,
        "ref": result.reference,
        "err": result.error,
        "dur": round(result.duration_s, 3),
        "scores": [
            {
                "name": s.scorer,
                "value": _score(s.value),
                "passed": s.passed,
                "vs": s.against_threshold(),
                "reason": s.reason,
                "judge": s.judge_model,
            }
            for s in result.scores
        ],
    }
    if len(result.repeats) > 1:
        data["rep"] = [sum(outcomes), len(result.repeats)]
        data["flaky"] = 0 < sum(outcomes) < len(outcomes)
    if given is not None:
        data["sys"] = given.system
        data["msgs"] = [list(m) for m in given.messages]
    return data


def _pairs(comparison: Comparison) -> dict[CaseKey, PairedCase]:
    pairing = comparison.pairing
    return {pair.key: pair for pair in (*pairing.paired, *pairing.errored)}


def _comparison(comparison: Comparison) -> dict[str, Any]:
    c = comparison
    return {
        "verdict": c.verdict,
        "baseline": c.baseline_label,
        "candidate": c.candidate_label,
        "n": c.n,
        "baseline_rate": c.baseline.pass_rate,
        "candidate_rate": c.candidate.pass_rate,
        "difference": c.difference,
        "p": c.p_value,
        "pass_to_fail": c.pass_to_fail,
        "fail_to_pass": c.fail_to_pass,
        "reasons": list(c.reasons),
        "alias_moves": [move.describe() for move in c.alias_moves],
    }


def _history(points: Sequence[HistoryPoint], run: RunResult) -> list[dict[str, Any]]:
    current = history_points([run])[0]
    if points and points[-1].summary.label != current.summary.label:
        changed = f"model changed: {points[-1].summary.label} -> {current.summary.label}"
        current = HistoryPoint(current.summary, (changed, *current.flags))
    rows = []
    for point, now in [*((p, False) for p in points), (current, True)]:
        summary = point.summary
        rows.append(
            {
                "label": summary.label,
                "started": summary.started_at,
                "rate": summary.pass_rate,
                "flags": list(point.flags),
                "current": now,
            }
        )
    return rows


def _warnings(run: RunResult, extra: Sequence[str]) -> list[str]:
    warnings = [str(w) for w in extra]
    metadata_warnings = run.metadata.get("warnings")
    if isinstance(metadata_warnings, list):
        warnings += [str(w) for w in metadata_warnings if str(w) not in warnings]
    warnings += ["alias moved: " + move.describe() for move in within_run_moves(run)]
    missing = run.metadata.get("missing")
    if isinstance(missing, list) and missing:
        warnings.append(f"{len(missing)} cases did not run (an interrupted run): not in the table")
    return warnings


def page_data(
    run: RunResult,
    *,
    comparison: Comparison | None = None,
    history: Sequence[RunSummary | HistoryPoint] = (),
    title: str = "LLM regression report",
    inputs: Mapping[str, CaseInput] | None = None,
    warnings: Sequence[str] = (),
    cost: Sequence[str] = (),
    measured: Noise | None = None,
) -> dict[str, Any]:
    """What the page shows, as the JSON it embeds. ``cost``: the run's cost sentences
    (``report.terminal.cost_lines``); ``measured``: the cases' noise when the caller has it
    already (else computed here)."""
    inputs = inputs or {}
    cases = [_case(result, inputs) for result in run.cases]
    if comparison is not None:
        pairs = _pairs(comparison)
        for data, result in zip(cases, run.cases, strict=True):
            pair = pairs.get(case_key(result))
            if pair is None:
                continue
            data["base"] = {
                "outcome": pair.baseline.outcome,
                "out": pair.baseline.output,
                "score": _score(pair.baseline.score),
                "err": pair.baseline.error,
            }
            if pair.flip is not None:
                data["flip"] = pair.flip
    verdict = _verdict(run)
    if measured is None and run.cases and not verdict["recorded"]:
        measured = noise(run.cases)  # unless the caller has it already
    if verdict["recorded"]:
        measured = None
    points = [p if isinstance(p, HistoryPoint) else HistoryPoint(p) for p in history]
    tags = sorted({tag for result in run.cases for tag in result.tags})
    return {
        "title": title,
        "candidate": run.metadata.get("candidate"),
        "judge": run.metadata.get("judge"),
        "started": run.metadata.get("started_at"),
        "verdict": verdict,
        "warnings": _warnings(run, warnings),
        "noise": noise_texts(measured) if measured is not None and measured.measured else [],
        "cost": list(cost),
        "tags": tags,
        "cases": cases,
        "comparison": None if comparison is None else _comparison(comparison),
        "history": _history(points, run) if points else [],
    }


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` as such, so no text can
    end the element or open a comment; U+2028/9 escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_html(
    run: RunResult,
    *,
    comparison: Comparison | None = None,
    history: Sequence[RunSummary | HistoryPoint] = (),
    title: str = "LLM regression report",
    inputs: Mapping[str, CaseInput] | None = None,
    warnings: Sequence[str] = (),
    cost: Sequence[str] = (),
    measured: Noise | None = None,
) -> str:
    """The page of one run: one HTML document with everything inline.

    ``comparison``: the run (as candidate) against a baseline; ``history``: the runs before
    this one, oldest first (:func:`history_points` flags model changes and alias moves);
    ``inputs``: each case's input by node id (:func:`load_inputs`); ``warnings``: model
    warnings of the session (lifecycle, preflight); ``cost``: what the run's calls cost, in
    sentences (:func:`pytest_llmregress.report.terminal.run_cost_texts`).
    """
    data = page_data(
        run,
        comparison=comparison,
        history=history,
        title=title,
        inputs=inputs,
        warnings=warnings,
        cost=cost,
        measured=measured,
    )
    return (
        _PAGE.replace("@TITLE@", _text(title))
        .replace("@CSS@", _CSS)
        .replace("@JS@", _JS)
        .replace("@DATA@", embed_json(data))
    )


def write_html(path: str | os.PathLike[str], text: str) -> None:
    """Write the page atomically (a reader sees the old page or the new one)."""
    from pytest_llmregress.core.files import atomic_write_text

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<header id="top"></header>
<section id="history" hidden></section>
<section id="cases">
<div id="controls">
<select id="filter" aria-label="filter">
<option value="all">all cases</option>
<option value="failed">failed</option>
<option value="error">errored</option>
<option value="flaky">flaky</option>
<option value="regressed">regressed</option>
<option value="passed">passed</option>
</select>
<select id="tag" aria-label="tag"><option value="">any tag</option></select>
<input id="search" type="search" placeholder="search id, input, output" aria-label="search">
<span id="count"></span>
</div>
<table id="table">
<thead><tr>
<th data-key="id">case</th><th data-key="outcome">outcome</th><th data-key="score">score</th>
<th data-key="rep">repeats</th><th data-key="base">baseline</th><th data-key="dur">time</th>
<th data-key="tags">tags</th>
</tr></thead>
<tbody id="rows"></tbody>
</table>
<div id="pager"><button id="prev" type="button">previous</button>
<span id="page"></span><button id="next" type="button">next</button></div>
</section>
<script type="application/json" id="data">@DATA@</script>
<script>@JS@</script>
</body>
</html>
"""

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1f2328;background:#fff}
h1{font-size:1.4em;margin:.6em 0 .2em}h2{font-size:1.1em;margin:1em 0 .3em}
.ok{color:#1a7f37}.bad{color:#cf222e}.rec{color:#8250df}.muted{color:#656d76}
ul{margin:.3em 0;padding-left:1.4em}.warn{background:#fff8c5;border:1px solid #d4a72c;
padding:.3em .6em;margin:.3em 0;border-radius:4px}
#controls{display:flex;gap:.6em;align-items:center;margin:.8em 0;position:sticky;top:0;
background:#fff;padding:.4em 0}
#search{flex:1;max-width:30em;padding:.3em}
table{border-collapse:collapse;width:100%}
th{cursor:pointer;text-align:left;border-bottom:2px solid #d0d7de;padding:.3em .5em;
user-select:none}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td{border-bottom:1px solid #eaeef2;padding:.3em .5em;vertical-align:top}
tr.case{cursor:pointer}tr.case:hover{background:#f6f8fa}
tr.flip-pass-fail{background:#ffebe9}tr.flip-fail-pass{background:#dafbe1}
.badge{display:inline-block;border-radius:1em;padding:0 .6em;font-size:.85em;
border:1px solid currentColor}
.passed{color:#1a7f37}.failed{color:#cf222e}.error{color:#9a6700}
.flip{font-weight:bold;margin-left:.4em}
td.detail{background:#f6f8fa;padding:.6em 1em}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #d0d7de;
padding:.5em;margin:.2em 0;max-height:30em;overflow:auto;font:12.5px/1.45 ui-monospace,monospace}
ins{background:#aceebb;text-decoration:none}del{background:#ffcecb}
.scores td{border:0;padding:.1em .6em .1em 0}
#pager{margin:.6em 0;display:flex;gap:.8em;align-items:center}
svg text{font-size:11px;fill:#656d76}
"""

_JS = r"""
"use strict";
(function () {
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 100;
const cases = D.cases;
const state = {filter: "all", tag: "", q: "", key: null, dir: 1, page: 0, open: new Set()};
let shown = [];

function el(tag, attrs, kids) {
  const e = document.createElement(tag);
  if (attrs) for (const k in attrs) {
    if (k === "text") e.textContent = attrs[k];
    else if (k === "cls") e.className = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  if (kids) for (const c of kids) if (c != null) e.appendChild(
    typeof c === "string" ? document.createTextNode(c) : c);
  return e;
}
function pct(v) { return v == null ? "\u2013" : (v * 100).toFixed(1) + "%"; }
function num(v) { return v == null ? "\u2013" : v.toFixed(2); }

function header() {
  const top = document.getElementById("top");
  const v = D.verdict;
  let word = v.ok ? "passed" : "failed", cls = v.ok ? "ok" : "bad";
  if (v.recorded) { word = "references recorded, no verdict"; cls = "rec"; }
  top.appendChild(el("h1", {cls: cls, id: "verdict",
    text: D.title + (D.candidate ? " \u2014 " + D.candidate : "") + ": " + word}));
  const scored = v.passed + v.failed;
  const line = (v.rate_name || "pass rate") + " " + pct(v.pass_rate) +
    (scored ? " (95% CI " + pct(v.interval[0]) + "\u2013" + pct(v.interval[1]) + ")" : "") +
    "; " + v.passed + " passed, " + v.failed + " failed, " + v.errors + " errors" +
    (v.min_pass_rate != null ? "; minimum " + pct(v.min_pass_rate) : "") +
    (D.judge ? "; judge " + D.judge : "") + (D.started ? "; started " + D.started : "");
  top.appendChild(el("p", {text: line}));
  if (!v.recorded && v.reasons.length) {
    top.appendChild(el("h2", {text: "Why it failed"}));
    top.appendChild(el("ul", {id: "reasons"}, v.reasons.map(r => el("li", {text: r}))));
  }
  for (const w of D.warnings) top.appendChild(el("div", {cls: "warn", text: "\u26a0 " + w}));
  if (D.cost && D.cost.length) {
    top.appendChild(el("h2", {text: "Cost"}));
    top.appendChild(el("ul", {id: "cost"}, D.cost.map(t => el("li", {text: t.trim()}))));
  }
  if (D.noise.length) {
    top.appendChild(el("h2", {text: "Noise"}));
    top.appendChild(el("ul", {id: "noise"}, D.noise.map(t => el("li", {text: t.trim()}))));
  }
  const c = D.comparison;
  if (c) {
    const box = el("div", {id: "comparison"});
    box.appendChild(el("h2", {cls: c.verdict === "regression" ? "bad" : "ok",
      text: "Comparison: " + c.verdict}));
    box.appendChild(el("p", {text: c.candidate + " (candidate) " + pct(c.candidate_rate) +
      " against " + c.baseline + " (baseline) " + pct(c.baseline_rate) + " on " + c.n +
      " paired cases; " + c.pass_to_fail + " pass\u2192fail, " + c.fail_to_pass +
      " fail\u2192pass; McNemar p " + c.p.toPrecision(3)}));
    box.appendChild(el("ul", null, c.reasons.map(r => el("li", {text: r}))));
    for (const m of c.alias_moves)
      box.appendChild(el("div", {cls: "warn", text: "\u26a0 alias moved: " + m}));
    top.appendChild(box);
  }
}

function history() {
  const H = D.history;
  if (!H.length) return;
  const sec = document.getElementById("history");
  sec.hidden = false;
  sec.appendChild(el("h2", {text: "Pass rate over runs"}));
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, Ht = 160, L = 40, R = 10, T = 10, B = 24;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", Ht);
  svg.setAttribute("viewBox", "0 0 " + W + " " + Ht); svg.setAttribute("id", "trend");
  function s(tag, a, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in a) e.setAttribute(k, a[k]);
    if (text != null) e.textContent = text;
    svg.appendChild(e); return e;
  }
  const x = i => L + (H.length === 1 ? (W - L - R) / 2 : i * (W - L - R) / (H.length - 1));
  const y = r => T + (1 - r) * (Ht - T - B);
  for (const r of [0, 0.5, 1]) {
    s("line", {x1: L, x2: W - R, y1: y(r), y2: y(r), stroke: "#eaeef2"});
    s("text", {x: 2, y: y(r) + 4}, pct(r));
  }
  let path = "";
  H.forEach((h, i) => { if (h.rate != null) path += (path ? "L" : "M") + x(i) + " " + y(h.rate); });
  if (path) s("path", {d: path, fill: "none", stroke: "#0969da", "stroke-width": 2});
  H.forEach((h, i) => {
    const flagged = h.flags.length > 0;
    if (flagged) s("line", {x1: x(i), x2: x(i), y1: T, y2: Ht - B, stroke: "#d4a72c",
      "stroke-dasharray": "3 3", "class": "mark"});
    if (h.rate != null) {
      const c = s("circle", {cx: x(i), cy: y(h.rate), r: h.current ? 5 : 3.5,
        fill: h.current ? "#cf222e" : "#0969da"});
      const t = document.createElementNS(NS, "title");
      t.textContent = (h.started || "?") + " " + h.label + ": " + pct(h.rate) +
        (flagged ? "\n" + h.flags.join("\n") : "");
      c.appendChild(t);
    }
  });
  s("text", {x: L, y: Ht - 6}, H[0].started || "");
  s("text", {x: W - R, y: Ht - 6, "text-anchor": "end"}, "this run");
  sec.appendChild(svg);
  const notes = H.map((h, i) => h.flags.length ? el("li", {text: "run " + (i + 1) + " (" +
    h.label + "): " + h.flags.join("; ")}) : null).filter(Boolean);
  if (notes.length) sec.appendChild(el("ul", {id: "marks"}, notes));
}

function hay(c) {
  if (c._hay == null) {
    let t = c.node + "\n" + (c.out || "") + "\n" + (c.sys || "");
    if (c.msgs) for (const m of c.msgs) t += "\n" + m[1];
    c._hay = t.toLowerCase();
  }
  return c._hay;
}
function keep(c) {
  const f = state.filter;
  if (f === "failed" && c.outcome !== "failed") return false;
  if (f === "passed" && c.outcome !== "passed") return false;
  if (f === "error" && c.outcome !== "error") return false;
  if (f === "flaky" && !c.flaky) return false;
  if (f === "regressed" && c.flip !== "pass->fail") return false;
  if (state.tag && c.tags.indexOf(state.tag) < 0) return false;
  if (state.q && hay(c).indexOf(state.q) < 0) return false;
  return true;
}
const ORDER = {error: 0, failed: 1, passed: 2};
function sortValue(c, key) {
  if (key === "outcome") return ORDER[c.outcome];
  if (key === "rep") return c.rep ? c.rep[0] / c.rep[1] : -1;
  if (key === "base") return c.base ? ORDER[c.base.outcome] : -1;
  if (key === "tags") return c.tags.join(",");
  if (key === "score") return c.score == null ? -1 : c.score;
  return c[key];
}
function refresh() {
  shown = [];
  for (let i = 0; i < cases.length; i++) if (keep(cases[i])) shown.push(i);
  if (state.key) {
    const k = state.key, d = state.dir;
    shown.sort((a, b) => {
      const x = sortValue(cases[a], k), y = sortValue(cases[b], k);
      return (x < y ? -1 : x > y ? 1 : a - b) * d;
    });
  }
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  if (state.page >= pages) state.page = pages - 1;
  draw();
}
function draw() {
  const body = document.getElementById("rows");
  body.textContent = "";
  const start = state.page * PAGE, end = Math.min(shown.length, start + PAGE);
  for (let j = start; j < end; j++) {
    const i = shown[j];
    body.appendChild(row(i));
    if (state.open.has(i)) body.appendChild(detail(i));
  }
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  document.getElementById("count").textContent = shown.length + " of " + cases.length + " cases";
  document.getElementById("page").textContent = "page " + (state.page + 1) + " of " + pages;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
}
function badge(outcome) { return el("span", {cls: "badge " + outcome, text: outcome}); }
function row(i) {
  const c = cases[i];
  const tr = el("tr", {cls: "case" + (c.flip ? " flip-" + c.flip.replace("->", "-") : ""),
    "data-index": i, "data-outcome": c.outcome});
  const outcome = el("td", null, [badge(c.outcome)]);
  if (c.flip) outcome.appendChild(el("span", {cls: "flip", text: c.flip === "pass->fail" ?
    "pass\u2192fail" : "fail\u2192pass"}));
  tr.appendChild(el("td", {text: c.node, title: c.where}));
  tr.appendChild(outcome);
  tr.appendChild(el("td", {text: num(c.score)}));
  const rep = c.rep ? c.rep[0] + "/" + c.rep[1] + (c.flaky ? " flaky" : "") : "";
  tr.appendChild(el("td", {text: rep}));
  tr.appendChild(el("td", null, [c.base ? badge(c.base.outcome) : null]));
  tr.appendChild(el("td", {text: c.dur.toFixed(2) + " s"}));
  tr.appendChild(el("td", {text: c.tags.join(", ")}));
  tr.addEventListener("click", () => {
    if (state.open.has(i)) state.open.delete(i); else state.open.add(i);
    draw();
  });
  return tr;
}

function tokens(text) { return (text || "").match(/\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) || []; }
function diff(a, b) {
  // Word-level: common prefix and suffix, then the longest common subsequence of the middle
  // (a replace of the whole middle when it would be too large to compare).
  const x = tokens(a), y = tokens(b);
  let p = 0;
  while (p < x.length && p < y.length && x[p] === y[p]) p++;
  let s = 0;
  while (s < x.length - p && s < y.length - p && x[x.length - 1 - s] === y[y.length - 1 - s]) s++;
  const xm = x.slice(p, x.length - s), ym = y.slice(p, y.length - s);
  const out = [];
  if (p) out.push(["=", x.slice(0, p).join("")]);
  const n = xm.length, m = ym.length;
  if (n * m > 4000000) {
    if (n) out.push(["-", xm.join("")]);
    if (m) out.push(["+", ym.join("")]);
  } else {
    const w = m + 1, L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      L[i * w + j] = xm[i] === ym[j] ? L[(i + 1) * w + j + 1] + 1 :
        Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
    let i = 0, j = 0;
    const push = (op, t) => {
      const last = out[out.length - 1];
      if (last && last[0] === op) last[1] += t; else out.push([op, t]);
    };
    while (i < n && j < m) {
      if (xm[i] === ym[j]) { push("=", xm[i]); i++; j++; }
      else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) { push("-", xm[i]); i++; }
      else { push("+", ym[j]); j++; }
    }
    while (i < n) { push("-", xm[i]); i++; }
    while (j < m) { push("+", ym[j]); j++; }
  }
  if (s) out.push(["=", x.slice(x.length - s).join("")]);
  return out;
}
function diffPre(a, b) {
  const pre = el("pre", {cls: "diff"});
  for (const [op, t] of diff(a, b))
    pre.appendChild(op === "=" ? document.createTextNode(t) :
      el(op === "+" ? "ins" : "del", {text: t}));
  return pre;
}
function block(label, text, cls) {
  return el("div", {cls: cls || ""},
    [el("h2", {text: label}), el("pre", {text: text == null ? "(none)" : text})]);
}
function detail(i) {
  const c = cases[i];
  const td = el("td", {cls: "detail", colspan: 7});
  if (c.msgs) {
    td.appendChild(block("System", c.sys, "input-system"));
    for (const m of c.msgs)
      td.appendChild(block(m[0] === "user" ? "User" : "Assistant", m[1], "input-" + m[0]));
  } else {
    td.appendChild(el("p", {cls: "muted",
      text: "Input not available (its golden file was not read)."}));
  }
  if (c.err) td.appendChild(block("Error", c.err, "error-text"));
  td.appendChild(el("div", {cls: "cols"}, [block("Reference", c.ref), block("Output", c.out)]));
  if (c.ref != null && c.out != null) {
    td.appendChild(el("h2", {text: "Reference \u2192 output (word diff)"}));
    td.appendChild(diffPre(c.ref, c.out));
  }
  if (c.scores.length) {
    td.appendChild(el("h2", {text: "Scores"}));
    td.appendChild(el("table", {cls: "scores"}, c.scores.map(s => el("tr", null, [
      el("td", null, [badge(s.passed ? "passed" : "failed")]),
      el("td", {text: s.name + (s.judge ? " (" + s.judge + ")" : "")}),
      el("td", {text: s.vs}), el("td", {text: s.reason})]))));
  }
  if (c.rep) td.appendChild(el("p", {text: "repeats: " + c.rep[0] + "/" + c.rep[1] + " passed"}));
  if (c.base) {
    td.appendChild(el("h2", {cls: c.flip === "pass->fail" ? "bad" : "",
      text: "Baseline (" + c.base.outcome + ", " + num(c.base.score) + ") and candidate (" +
        c.outcome + ", " + num(c.score) + ")" + (c.flip ? ": " + c.flip : "")}));
    td.appendChild(el("div", {cls: "cols side"}, [
      block("Baseline output", c.base.err || c.base.out),
      block("Candidate output", c.err || c.out)]));
    if (c.base.out != null && c.out != null) {
      td.appendChild(el("h2", {text: "Baseline \u2192 candidate (word diff)"}));
      td.appendChild(diffPre(c.base.out, c.out));
    }
  }
  return el("tr", {cls: "detail-row"}, [td]);
}

function controls() {
  const tag = document.getElementById("tag");
  for (const t of D.tags) tag.appendChild(el("option", {value: t, text: t}));
  document.getElementById("filter").addEventListener("change", e => {
    state.filter = e.target.value; state.page = 0; refresh(); });
  tag.addEventListener("change", e => { state.tag = e.target.value; state.page = 0; refresh(); });
  let timer = null;
  document.getElementById("search").addEventListener("input", e => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = e.target.value.toLowerCase(); state.page = 0; refresh();
    }, 120);
  });
  for (const th of document.querySelectorAll("th[data-key]")) th.addEventListener("click", () => {
    const k = th.getAttribute("data-key");
    state.dir = state.key === k ? -state.dir : 1;
    state.key = k;
    for (const o of document.querySelectorAll("th")) o.className = "";
    th.className = state.dir > 0 ? "asc" : "desc";
    refresh();
  });
  document.getElementById("prev").addEventListener("click", () => { state.page--; draw(); });
  document.getElementById("next").addEventListener("click", () => { state.page++; draw(); });
  if (!D.comparison)
    for (const th of document.querySelectorAll('th[data-key="base"]')) th.textContent = "";
}

header();
history();
controls();
refresh();
document.body.setAttribute("data-ready", "1");
})();
"""
