"""What a run's repeats and judge votes say about its noise (issue 15), from its results.

- :func:`repeat_report`: with ``--llm-repeat``, the run's repeated-case statistics
  (``repeats.summarize_repeats``) and its flaky cases.
- :func:`flaky_sources`: why cases were flaky, apart: *the model answered differently* (the
  verdict changed between repeats with different outputs: pin the sampling parameters) or
  *the judge scored the same answer differently* (one judge's repeated verdicts on one output
  differ, or two repeats with the same output got different verdicts: change the judge or the
  rubric). A case can be both.
- :func:`panel_report`: a panel of judges: each judge's pass rate and the panel's agreement
  (Krippendorff's alpha, nominal, pass/fail per output).
- :func:`order_report`: the order check: how often a judge's verdict changed when it saw the
  candidate before the reference.

Numbers and node ids only; ``report/`` renders them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_llmregress.scoring.score import Score, Vote
from pytest_llmregress.verdict.agreement import krippendorff_alpha
from pytest_llmregress.verdict.repeats import CaseRepeats, RepeatSummary, summarize_repeats
from pytest_llmregress.verdict.results import CaseResult, in_file_order


def _runs(result: CaseResult) -> tuple[CaseResult, ...]:
    return result.repeats or (result,)


def _judged(results: Iterable[CaseResult]) -> list[Score]:
    """Every judge score with votes, of every run of every case."""
    return [
        score for result in results for run in _runs(result) for score in run.scores if score.votes
    ]


def counted_verdicts(score: Score) -> dict[str, list[bool]]:
    """Each judge's verdicts (one per counted vote) on the score's output."""
    verdicts: dict[str, list[bool]] = {}
    for vote in score.votes:
        if not vote.swapped:
            verdicts.setdefault(vote.judge, []).append(vote.passed)
    return verdicts


@dataclass(frozen=True)
class FlakySources:
    model: tuple[str, ...]  # node ids: the verdict changed with the output
    judge: tuple[str, ...]  # node ids: the same output got different verdicts


def flaky_sources(results: Iterable[CaseResult]) -> FlakySources:
    """Why each flaky case was flaky (see the module's docstring)."""
    model: list[str] = []
    judge: list[str] = []
    for result in results:
        runs = [r for r in _runs(result) if r.outcome != "error" and not r.recorded]
        by_output: dict[str | None, set[str]] = {}
        for run in runs:
            by_output.setdefault(run.output, set()).add(run.outcome)
        passing = {run.output for run in runs if run.outcome == "passed"}
        failing = {run.output for run in runs if run.outcome == "failed"}
        if any(p != f for p in passing for f in failing):
            model.append(result.nodeid)
        self_disagrees = any(
            len(set(verdicts)) > 1
            for run in runs
            for score in run.scores
            if score.votes
            for verdicts in counted_verdicts(score).values()
        )
        if self_disagrees or any(len(outcomes) > 1 for outcomes in by_output.values()):
            judge.append(result.nodeid)
    return FlakySources(tuple(model), tuple(judge))


@dataclass(frozen=True)
class RepeatReport:
    repeats: int  # K: the most runs a case had
    summary: RepeatSummary
    cases: tuple[CaseRepeats, ...]
    errored_repeats: int  # runs that errored in cases with a scored run (not in the rates)


def case_repeats(result: CaseResult) -> CaseRepeats:
    """A case's runs as pass/fail counts (a case run once is one trial)."""
    return CaseRepeats.of(result.nodeid, result.repeat_outcomes)


def repeat_report(results: Sequence[CaseResult], *, seed: int = 0) -> RepeatReport | None:
    """The repeated-case statistics of the cases that count in the gate (not recorded, not
    answered by a fallback); None when no case was repeated. The cases are taken in file
    order, as a results file lists them, so the bootstrap does not depend on the order they
    finished in (a run, its results file and its merged shards give the same interval)."""
    counted = in_file_order(
        r
        for r in results
        if not r.recorded and not (r.completion is not None and r.completion.fallback_model)
    )
    if not any(r.repeats for r in counted):
        return None
    cases = tuple(case_repeats(r) for r in counted)
    return RepeatReport(
        repeats=max(len(_runs(r)) for r in counted),
        summary=summarize_repeats(cases, seed=seed),
        cases=cases,
        errored_repeats=sum(c.errors for c in cases if c.scored),
    )


@dataclass(frozen=True)
class JudgeRate:
    judge: str
    passed: int
    judged: int

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.judged if self.judged else None


@dataclass(frozen=True)
class PanelReport:
    judges: tuple[JudgeRate, ...]
    outputs: int  # outputs judged by two judges or more
    alpha: float  # Krippendorff's alpha, nominal; nan when undefined (no variation)


def _judge_pass(votes: Sequence[Vote], threshold: float | None) -> bool:
    """A judge's verdict on one output from its repeated votes: their mean value against the
    threshold (as the panel counts it)."""
    mean = math.fsum(v.value for v in votes) / len(votes)
    return mean >= (threshold if threshold is not None else 0.0)


def panel_report(results: Iterable[CaseResult]) -> PanelReport | None:
    """A panel's per-judge pass rates and agreement; None when no output had two judges."""
    units: list[dict[str, bool]] = []
    for score in _judged(results):
        by_judge: dict[str, list[Vote]] = {}
        for vote in score.votes:
            if not vote.swapped:
                by_judge.setdefault(vote.judge, []).append(vote)
        if len(by_judge) >= 2:
            units.append(
                {judge: _judge_pass(votes, score.threshold) for judge, votes in by_judge.items()}
            )
    if not units:
        return None
    judges = list(dict.fromkeys(judge for unit in units for judge in unit))
    rates = tuple(
        JudgeRate(
            judge,
            passed=sum(1 for unit in units if unit.get(judge) is True),
            judged=sum(1 for unit in units if judge in unit),
        )
        for judge in judges
    )
    data = [[unit.get(judge) for unit in units] for judge in judges]
    return PanelReport(rates, len(units), krippendorff_alpha(data))


@dataclass(frozen=True)
class OrderReport:
    checked: int  # outputs judged in both orders
    changed: tuple[str, ...]  # node ids whose verdict changed with the order
    mean_shift: float  # mean of (candidate first - reference first) score

    @property
    def change_rate(self) -> float:
        return len(self.changed) / self.checked if self.checked else 0.0


def order_report(results: Iterable[CaseResult]) -> OrderReport | None:
    """The order check's outcome; None when no output was judged in both orders."""
    checked = 0
    changed: list[str] = []
    shifts: list[float] = []
    for result in results:
        for run in _runs(result):
            for score in run.scores:
                for swapped in (v for v in score.votes if v.swapped):
                    same = [
                        v
                        for v in score.votes
                        if not v.swapped and v.judge == swapped.judge and v.repeat == 0
                    ]
                    if not same:
                        continue
                    checked += 1
                    shifts.append(swapped.value - same[0].value)
                    if swapped.passed != same[0].passed:
                        changed.append(result.nodeid)
    if not checked:
        return None
    return OrderReport(checked, tuple(changed), math.fsum(shifts) / len(shifts))


@dataclass(frozen=True)
class Noise:
    """Everything a run's results say about its noise; each part None when not measured."""

    repeats: RepeatReport | None
    sources: FlakySources
    panel: PanelReport | None
    order: OrderReport | None
    judge_repeats: int  # the most counted votes one judge gave one output (--llm-judge-repeat)

    @property
    def measured(self) -> bool:
        return bool(self.repeats or self.panel or self.order or self.judge_repeats > 1)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {}
        if self.repeats is not None:
            summary = self.repeats.summary
            data["repeats"] = {
                "k": self.repeats.repeats,
                "cases": summary.cases,
                "mean_pass_rate": summary.mean_pass_rate,
                "interval95": None
                if summary.interval is None
                else [summary.interval.low, summary.interval.high],
                "pass_hat_k": summary.all_pass_rate,
                "pass_at_k": summary.any_pass_rate,
                "flaky_share": summary.flaky_share,
                "flakiest": [
                    {"nodeid": c.nodeid, "passes": c.passes, "trials": c.trials}
                    for c in summary.flakiest
                ],
                "errored_repeats": self.repeats.errored_repeats,
                "per_case": [
                    {
                        "nodeid": c.nodeid,
                        "passes": c.passes,
                        "trials": c.trials,
                        "errors": c.errors,
                        "pass_hat_k": c.all_pass,
                        "pass_at_k": c.any_pass,
                        "flaky": c.flipped,
                    }
                    for c in self.repeats.cases
                ],
            }
        if self.repeats is not None or self.judge_repeats > 1:
            data["flaky_sources"] = {
                "model": list(self.sources.model),
                "judge": list(self.sources.judge),
            }
        if self.panel is not None:
            data["panel"] = {
                "outputs": self.panel.outputs,
                "krippendorff_alpha": None if math.isnan(self.panel.alpha) else self.panel.alpha,
                "judges": [
                    {"judge": r.judge, "passed": r.passed, "judged": r.judged}
                    for r in self.panel.judges
                ],
            }
        if self.order is not None:
            data["order"] = {
                "checked": self.order.checked,
                "changed": list(self.order.changed),
                "change_rate": self.order.change_rate,
                "mean_shift": self.order.mean_shift,
            }
        return data


def noise(results: Sequence[CaseResult]) -> Noise:
    """What ``results`` say about their noise (repeats, judges, order)."""
    judge_repeats = max(
        (
            len(verdicts)
            for score in _judged(results)
            for verdicts in counted_verdicts(score).values()
        ),
        default=1,
    )
    return Noise(
        repeats=repeat_report(results),
        sources=flaky_sources(results),
        panel=panel_report(results),
        order=order_report(results),
        judge_repeats=judge_repeats,
    )
