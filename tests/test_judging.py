"""The pure parts of issue 15's wiring: a panel's score from its votes, a case from its
repeats, and what results say about their noise (``scoring/panel.py``, ``verdict/judging.py``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pytest_llmregress.scoring.panel import combine, in_order_sample, judge_values
from pytest_llmregress.scoring.score import Score, Vote
from pytest_llmregress.verdict.agreement import krippendorff_alpha
from pytest_llmregress.verdict.gate import decide
from pytest_llmregress.verdict.judging import flaky_sources, noise, order_report, panel_report
from pytest_llmregress.verdict.results import CaseResult


def judge_score(value: float, judge: str = "openai:a", threshold: float = 0.8) -> Score:
    return Score("judge", value, value >= threshold, f"{judge} says {value}", threshold, judge)


def votes_of(*items: tuple[str, float, int, bool], threshold: float = 0.8) -> list[Vote]:
    return [Vote(j, v, v >= threshold, n, swapped) for j, v, n, swapped in items]


def test_one_call_is_its_own_score() -> None:
    score = judge_score(0.9)
    assert combine([score], votes_of(("openai:a", 0.9, 0, False)), "mean") is score


@pytest.mark.parametrize(
    ("values", "mode", "value", "passed"),
    [
        ((0.2, 1.0, 0.9), "mean", 0.7, False),
        ((0.2, 1.0, 0.9), "majority", 0.9, True),  # two of three pass
        ((0.2, 0.3, 0.9), "majority", 0.3, False),  # one of three
        ((0.2, 0.9, 0.9, 0.3), "majority", 0.3, False),  # a tie fails
        ((0.2, 0.9, 0.9, 0.85), "majority", 0.85, True),  # three of four
    ],
)
def test_a_panel_decides_by_its_mean_or_by_more_than_half(
    values: tuple[float, ...], mode: str, value: float, passed: bool
) -> None:
    judges = [f"openai:j{i}" for i in range(len(values))]
    scores = [judge_score(v, j) for v, j in zip(values, judges, strict=True)]
    votes = votes_of(*((j, v, 0, False) for j, v in zip(judges, values, strict=True)))
    combined = combine(scores, votes, mode)  # type: ignore[arg-type]
    assert combined.value == pytest.approx(value)
    assert combined.passed is passed
    # The verdict and the value agree: the value is never above the threshold of a fail.
    assert (combined.value >= 0.8) is combined.passed
    assert combined.votes == tuple(votes)
    assert combined.judge_model == ",".join(judges)
    assert combined.reason.startswith(f"[panel of {len(values)} judges")


def test_a_judges_repeats_are_averaged_and_swapped_votes_not_counted() -> None:
    votes = votes_of(
        ("openai:a", 1.0, 0, False),
        ("openai:a", 0.6, 1, False),
        ("openai:a", 0.2, 0, True),  # the order check: measured, not counted
    )
    assert judge_values(votes) == {"openai:a": pytest.approx(0.8)}
    combined = combine([judge_score(1.0), judge_score(0.6)], votes, "mean")
    assert combined.value == pytest.approx(0.8)
    assert combined.passed
    assert "each judge 2 times" in combined.reason


def test_criteria_are_averaged_over_the_counted_scores() -> None:
    first = replace(judge_score(1.0), criteria={"tone": 1.0, "facts": 1.0})
    second = replace(judge_score(0.5), criteria={"tone": 0.0, "facts": 1.0})
    votes = votes_of(("openai:a", 1.0, 0, False), ("openai:a", 0.5, 1, False))
    assert combine([first, second], votes, "mean").criteria == {"tone": 0.5, "facts": 1.0}


def test_the_order_sample_is_stable_and_about_its_share() -> None:
    ids = [f"case-{i}" for i in range(4000)]
    chosen = [i for i in ids if in_order_sample(i, 0.25)]
    assert chosen == [i for i in ids if in_order_sample(i, 0.25)]
    assert 900 < len(chosen) < 1100
    assert not any(in_order_sample(i, 0.0) for i in ids)
    assert all(in_order_sample(i, 1.0) for i in ids)
    # A larger share keeps the smaller one's cases (one draw per case).
    assert set(chosen) <= {i for i in ids if in_order_sample(i, 0.5)}


def run(outcome: str, output: str | None = "x", scores: tuple[Score, ...] = ()) -> CaseResult:
    return CaseResult(
        case_id="c",
        nodeid="g.jsonl::c",
        path="g.jsonl",
        line=1,
        outcome=outcome,  # type: ignore[arg-type]
        threshold=0.8,
        output=output,
        scores=scores,
        error="boom" if outcome == "error" else None,
        error_kind="server" if outcome == "error" else None,
    )


def test_a_case_from_its_repeats() -> None:
    passed, failed, errored = run("passed", "a"), run("failed", "b"), run("error", None)
    case = CaseResult.of_repeats((passed, failed, errored, passed))
    assert case.outcome == "failed"  # pass^K: one failing repeat shows the case failing
    assert case.output == "b"  # the first failing repeat's fields
    assert case.repeat_outcomes == (True, False, None, True)
    assert case.pass_fraction == pytest.approx(2 / 3)
    assert CaseResult.of_repeats((passed, passed)).outcome == "passed"
    only_errors = CaseResult.of_repeats((errored, errored))
    assert only_errors.outcome == "error"
    assert only_errors.error == "every one of 2 repeats errored; the first: boom"
    assert only_errors.pass_fraction is None
    again = CaseResult.from_dict(case.to_dict())
    assert again == case


def test_the_gate_reads_the_mean_or_pass_hat_k() -> None:
    p, f = run("passed"), run("failed")
    cases = [
        replace(CaseResult.of_repeats((p, p, f, p)), nodeid="a"),  # 3/4
        replace(CaseResult.of_repeats((p, p, p, p)), nodeid="b"),  # 4/4
    ]
    mean = decide(cases, min_pass_rate=0.8, max_error_rate=0.0)
    assert mean.pass_rate == pytest.approx(0.875)
    assert mean.ok
    assert mean.rate_name == "mean pass rate over 4 repeats"
    every = decide(cases, min_pass_rate=0.8, max_error_rate=0.0, gate="all")
    assert every.pass_rate == pytest.approx(0.5)
    assert not every.ok
    assert every.reasons == (
        "pass^4 rate (every repeat passed) 50.0% (1/2) is below the minimum 80.0%",
    )
    single = decide([p, f], min_pass_rate=0.5, max_error_rate=0.0)
    assert single.rate_name == "pass rate"
    assert single.interval == pytest.approx((0.0945, 0.9055), abs=1e-3)  # Wilson, as before


def test_flakiness_is_the_models_or_the_judges() -> None:
    same_output = [run("passed", "a"), run("failed", "a")]  # one answer, two verdicts
    other_output = [run("passed", "a"), run("failed", "b")]  # two answers
    voted = judge_score(0.5)
    self_disagreeing = replace(
        voted,
        votes=tuple(votes_of(("openai:a", 0.9, 0, False), ("openai:a", 0.1, 1, False))),
    )
    judge_noise = [run("failed", "a", (self_disagreeing,)), run("failed", "a")]
    results = [
        replace(CaseResult.of_repeats(tuple(same_output)), nodeid="judge"),
        replace(CaseResult.of_repeats(tuple(other_output)), nodeid="model"),
        replace(CaseResult.of_repeats(tuple(judge_noise)), nodeid="judge-votes"),
    ]
    sources = flaky_sources(results)
    assert sources.model == ("model",)
    assert sources.judge == ("judge", "judge-votes")
    measured = noise(results)
    assert measured.judge_repeats == 2
    assert measured.to_dict()["flaky_sources"] == {
        "model": ["model"],
        "judge": ["judge", "judge-votes"],
    }


def test_panel_agreement_is_krippendorffs_alpha_of_the_judges_verdicts() -> None:
    table = {
        "openai:a": [1.0, 1.0, 0.2, 1.0, 0.1],
        "openai:b": [1.0, 0.3, 0.2, 1.0, 0.9],
    }
    results = []
    for unit in range(5):
        votes = votes_of(*((j, values[unit], 0, False) for j, values in table.items()))
        results.append(run("passed", scores=(replace(judge_score(0.5), votes=tuple(votes)),)))
    report = panel_report(results)
    assert report is not None
    assert report.outputs == 5
    assert [(r.judge, r.passed, r.judged) for r in report.judges] == [
        ("openai:a", 3, 5),
        ("openai:b", 3, 5),
    ]
    expected = krippendorff_alpha([[v >= 0.8 for v in values] for values in table.values()])
    assert report.alpha == pytest.approx(expected)
    assert panel_report([run("passed", scores=(judge_score(0.9),))]) is None


def test_the_order_report_counts_changed_verdicts() -> None:
    def checked(first: float, swapped: float) -> CaseResult:
        votes = votes_of(("openai:a", first, 0, False), ("openai:a", swapped, 0, True))
        return run("passed", scores=(replace(judge_score(first), votes=tuple(votes)),))

    report = order_report([checked(0.7, 0.9), checked(0.9, 0.95), checked(0.5, 0.5)])
    assert report is not None
    assert report.checked == 3
    assert len(report.changed) == 1
    assert report.change_rate == pytest.approx(1 / 3)
    assert math.isclose(report.mean_shift, (0.2 + 0.05 + 0.0) / 3)
    assert order_report([run("passed")]) is None
