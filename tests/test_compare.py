"""Paired comparisons of synthetic runs: A/A, real regressions, noise, missing and errored cases."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from pytest_llmregress.prompts.library import PromptLibrary, parse_prompt_yaml, prompts_metadata
from pytest_llmregress.providers.base import Completion
from pytest_llmregress.report.markdown import (
    attribution_markdown,
    cell,
    comparison_markdown,
    run_markdown,
)
from pytest_llmregress.report.terminal import comparison_lines
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.verdict.compare import (
    PROMPTS_RECORDED_SINCE,
    AttributionError,
    Comparison,
    PairedCase,
    alias_moved,
    attribute,
    check_attribution_runs,
    compare_runs,
    pair_runs,
    summarize_run,
    within_run_moves,
)
from pytest_llmregress.verdict.gate import decide
from pytest_llmregress.verdict.results import CaseResult, Outcome, RunResult
from pytest_llmregress.verdict.stats import mcnemar_exact

PRODUCTION = "anthropic:claude-sonnet-4-6"
CANDIDATE = "anthropic:claude-sonnet-5"
JUDGE = "gpt-5.5-2026-04-23"


def make_case(
    index: int,
    outcome: Outcome,
    *,
    score: float | None = None,
    model: str = "claude-sonnet-4-6",
    resolved: str | None = None,
    fingerprint: str | None = None,
    path: str = "golden_cases/support.yaml",
    output: str | None = None,
) -> CaseResult:
    case_id = f"case-{index:03d}"
    value = score if score is not None else (0.9 if outcome == "passed" else 0.2)
    scores = (
        ()
        if outcome == "error"
        else (Score("judge", value, outcome == "passed", f"judge says {value:.1f}", 0.5, JUDGE),)
    )
    completion = Completion(
        text=output or f"answer {index}",
        provider="anthropic",
        requested_model=model,
        resolved_model=resolved or model,
    )
    judge = Completion(
        text="{}",
        provider="openai",
        requested_model=JUDGE,
        resolved_model=JUDGE,
        system_fingerprint=fingerprint,
    )
    return CaseResult(
        case_id=case_id,
        nodeid=f"{path}::{case_id}",
        path=path,
        line=index + 1,
        outcome=outcome,
        threshold=0.5,
        scores=scores,
        output=None if outcome == "error" else (output or f"answer {index}"),
        completion=None if outcome == "error" else completion,
        judge_completion=None if outcome == "error" else judge,
        error="anthropic 529 overloaded" if outcome == "error" else None,
        error_kind="server" if outcome == "error" else None,
    )


def make_run(
    outcomes: Sequence[Outcome],
    *,
    candidate: str = PRODUCTION,
    started_at: str = "2026-05-01T06:00:00+00:00",
    **case_options: object,
) -> RunResult:
    model = candidate.partition(":")[2]
    cases = [
        make_case(i, outcome, model=model, **case_options)  # type: ignore[arg-type]
        for i, outcome in enumerate(outcomes)
    ]
    return RunResult(metadata={"candidate": candidate, "started_at": started_at}, cases=cases)


def outcomes(n: int, passed: int) -> list[Outcome]:
    return ["passed" if i < passed else "failed" for i in range(n)]


def flipped(base: Sequence[Outcome], *, pass_to_fail: int, fail_to_pass: int) -> list[Outcome]:
    """The same verdicts with the first passing cases failed and the first failing passed."""
    result = list(base)
    passing = [i for i, o in enumerate(base) if o == "passed"]
    failing = [i for i, o in enumerate(base) if o == "failed"]
    for i in passing[:pass_to_fail]:
        result[i] = "failed"
    for i in failing[:fail_to_pass]:
        result[i] = "passed"
    return result


BASE = outcomes(300, 255)  # 85% on 300 cases


def compare(baseline: RunResult, candidate: RunResult, **options: Any) -> Comparison:
    """compare_runs with fewer bootstrap resamples, for speed where the bootstrap is not tested."""
    options.setdefault("resamples", 200)
    return compare_runs(baseline, candidate, **options)


# --- scenarios from the issue ----------------------------------------------------------------


def test_identical_model_twice_is_no_difference() -> None:
    comparison = compare(make_run(BASE), make_run(BASE), max_regression=0.05)
    assert comparison.verdict == "within noise"
    assert comparison.p_value == 1.0
    assert (comparison.pass_to_fail, comparison.fail_to_pass) == (0, 0)
    assert not comparison.significant
    assert not comparison.margin_exceeded
    assert comparison.score_delta is not None
    assert comparison.score_delta.mean == 0.0
    assert comparison.alias_moves == ()


def test_a_a_with_symmetric_noise_is_not_significant() -> None:
    noisy = flipped(BASE, pass_to_fail=9, fail_to_pass=8)
    comparison = compare(make_run(BASE), make_run(noisy), max_regression=0.05)
    assert comparison.verdict == "within noise"
    assert comparison.p_value == pytest.approx(mcnemar_exact(9, 8))
    assert comparison.p_value > 0.9


def test_ten_point_drop_on_300_cases_is_a_significant_regression() -> None:
    worse = flipped(BASE, pass_to_fail=36, fail_to_pass=6)
    comparison = compare(make_run(BASE), make_run(worse, candidate=CANDIDATE), max_regression=0.05)
    assert comparison.verdict == "regression"
    assert comparison.is_regression
    assert comparison.difference == pytest.approx(-0.10)
    assert comparison.baseline.pass_rate == pytest.approx(0.85)
    assert comparison.candidate.pass_rate == pytest.approx(0.75)
    assert comparison.p_value < 1e-5
    assert comparison.margin_exceeded
    assert comparison.significant
    text = " ".join(comparison.reasons)
    assert "more than the 5.0-point margin" in text
    assert "significant: exact McNemar p" in text
    assert "36 pass->fail, 6 fail->pass" in text
    assert comparison.candidate_label == CANDIDATE
    assert comparison.baseline_label == PRODUCTION
    low, high = comparison.candidate.interval
    assert low < 0.75 < high
    assert comparison.score_delta is not None
    assert comparison.score_delta.high < 0  # scores fell too


def test_one_point_drop_is_within_noise_and_prints_the_detectable_effect() -> None:
    worse = flipped(BASE, pass_to_fail=6, fail_to_pass=3)
    comparison = compare(make_run(BASE), make_run(worse), max_regression=0.05)
    assert comparison.verdict == "within noise"
    assert comparison.difference == pytest.approx(-0.01)
    assert not comparison.significant
    assert not comparison.margin_exceeded
    assert 0.0 < comparison.min_detectable_effect < 0.05
    lines = [line.text for line in comparison_lines(comparison)]
    detectable = [line for line in lines if line.startswith("smallest detectable drop")]
    assert detectable
    assert f"{comparison.min_detectable_effect * 100:.1f} points" in detectable[0]
    assert "not significant" in " ".join(comparison.reasons)


def test_significant_drop_within_the_margin_says_so() -> None:
    worse = flipped(BASE, pass_to_fail=12, fail_to_pass=0)
    comparison = compare(make_run(BASE), make_run(worse), max_regression=0.05)
    assert comparison.significant
    assert not comparison.margin_exceeded
    assert comparison.verdict == "within noise"
    assert "within the 5.0-point margin" in comparison.reasons[0]


def test_drop_beyond_the_margin_on_a_tiny_set_is_not_significant() -> None:
    base = outcomes(20, 18)
    worse = flipped(base, pass_to_fail=3, fail_to_pass=0)
    comparison = compare(make_run(base), make_run(worse), max_regression=0.05)
    assert comparison.margin_exceeded
    assert not comparison.significant
    assert comparison.verdict == "within noise"
    reasons = " ".join(comparison.reasons)
    assert "more than the 5.0-point margin" in reasons
    assert "too small to detect" in reasons


def test_significant_gain_is_an_improvement() -> None:
    better = flipped(BASE, pass_to_fail=2, fail_to_pass=25)
    comparison = compare(make_run(BASE), make_run(better), max_regression=0.05)
    assert comparison.verdict == "improvement"
    assert "rose by" in comparison.reasons[0]


def test_margin_exactly_met_is_not_exceeded() -> None:
    base = outcomes(100, 90)
    worse = flipped(base, pass_to_fail=5, fail_to_pass=0)
    comparison = compare(make_run(base), make_run(worse), max_regression=0.05)
    assert comparison.difference == pytest.approx(-0.05)
    assert not comparison.margin_exceeded


# --- pairing ---------------------------------------------------------------------------------


def test_cases_in_only_one_run_are_listed_not_dropped() -> None:
    baseline = make_run(outcomes(10, 8))
    candidate = make_run(outcomes(12, 9))  # two extra cases
    del candidate.cases[0]  # and one missing
    pairing = pair_runs(baseline, candidate)
    assert [r.case_id for r in pairing.only_baseline] == ["case-000"]
    assert [r.case_id for r in pairing.only_candidate] == ["case-010", "case-011"]
    assert len(pairing.paired) == 9
    comparison = compare(baseline, candidate)
    assert comparison.n == 9
    assert "3 cases in only one run (1 only in the baseline, 2 only in the candidate)" in " ".join(
        comparison.reasons
    )
    lines = [line.text for line in comparison_lines(comparison)]
    assert "1 case only in the baseline run (not compared):" in lines
    assert "  golden_cases/support.yaml::case-011" in lines


def test_same_id_in_another_file_is_another_case() -> None:
    baseline = make_run(outcomes(3, 3))
    candidate = make_run(outcomes(3, 3), path="golden_cases/sql.yaml")
    pairing = pair_runs(baseline, candidate)
    assert not pairing.paired
    assert len(pairing.only_baseline) == len(pairing.only_candidate) == 3


def test_errors_are_excluded_from_the_statistics_and_listed() -> None:
    base = outcomes(50, 40)
    with_errors: list[Outcome] = list(base)
    with_errors[0] = "error"  # a passing case errored in the candidate
    with_errors[45] = "error"  # a failing one too
    baseline_errors: list[Outcome] = list(base)
    baseline_errors[1] = "error"
    comparison = compare(make_run(baseline_errors), make_run(with_errors))
    errored = comparison.pairing.errored
    assert [p.case_id for p in errored] == ["case-000", "case-001", "case-045"]
    assert comparison.n == 47
    assert comparison.pass_to_fail == comparison.fail_to_pass == 0
    assert all(p.flip is None and p.delta is None for p in errored)
    assert "3 cases errored in either run" in " ".join(comparison.reasons)
    lines = [line.text for line in comparison_lines(comparison)]
    assert any("anthropic 529 overloaded" in line for line in lines)


def test_duplicates_keep_the_first_and_are_reported() -> None:
    baseline = make_run(outcomes(4, 4))
    baseline.cases.append(make_case(0, "failed"))
    pairing = pair_runs(baseline, make_run(outcomes(4, 4)))
    assert pairing.duplicates == (("golden_cases/support.yaml", "case-000"),)
    assert pairing.paired[0].flip is None


def test_paired_case_fields() -> None:
    pair = PairedCase(
        make_case(1, "passed", score=0.8, output="old"),
        make_case(1, "failed", score=0.3, output="new"),
    )
    assert pair.flip == "pass->fail"
    assert pair.delta == pytest.approx(-0.5)
    assert (pair.baseline_output, pair.candidate_output) == ("old", "new")
    assert (pair.baseline_score, pair.candidate_score) == (0.8, 0.3)
    assert PairedCase(make_case(1, "failed"), make_case(1, "passed")).flip == "fail->pass"
    assert PairedCase(make_case(1, "failed"), make_case(1, "failed")).flip is None


def test_no_common_cases_is_reported() -> None:
    comparison = compare(make_run([]), make_run(outcomes(5, 5)))
    assert comparison.n == 0
    assert comparison.verdict == "within noise"
    assert "nothing to compare" in comparison.reasons[0]
    assert comparison.min_detectable_effect == math.inf
    assert json.dumps(comparison.to_dict())


def test_bootstrap_interval_is_seeded_and_covers_the_score_shift() -> None:
    baseline = make_run(BASE)
    candidate = make_run(BASE)
    candidate.cases = [
        make_case(i, c.outcome, score=(c.score or 0) - (0.05 if i % 2 else 0.0))
        for i, c in enumerate(candidate.cases)
    ]
    first = compare_runs(baseline, candidate, seed=1)
    again = compare_runs(baseline, candidate, seed=1)
    other = compare_runs(baseline, candidate, seed=2)
    assert first.score_delta == again.score_delta
    assert first.score_delta != other.score_delta
    assert first.score_delta is not None
    assert first.score_delta.mean == pytest.approx(-0.025)
    assert first.score_delta.low <= -0.025 <= first.score_delta.high
    assert compare(baseline, candidate, resamples=0).score_delta is None


def test_to_dict_is_json() -> None:
    worse = flipped(BASE, pass_to_fail=36, fail_to_pass=6)
    data = compare(make_run(BASE), make_run(worse)).to_dict()
    document = json.loads(json.dumps(data))
    assert document["verdict"] == "regression"
    assert document["pass_to_fail"] == 36
    assert len(document["cases"]) == 300
    assert document["baseline"]["pass_rate"] == pytest.approx(0.85)


def test_the_results_list_the_regressed_and_improved_cases() -> None:
    worse = flipped(outcomes(10, 8), pass_to_fail=2, fail_to_pass=1)
    comparison = compare(make_run(outcomes(10, 8)), make_run(worse, candidate=CANDIDATE))
    document = json.loads(json.dumps(comparison.to_dict(cases=False)))
    assert "cases" not in document
    assert document["regressed"] == [
        {
            "case_id": f"case-{i:03d}",
            "path": "golden_cases/support.yaml",
            "nodeid": f"golden_cases/support.yaml::case-{i:03d}",
            "baseline_outcome": "passed",
            "candidate_outcome": "failed",
            "baseline_score": 0.9,
            "candidate_score": 0.2,
        }
        for i in (0, 1)
    ]
    assert [
        (c["case_id"], c["baseline_outcome"], c["candidate_outcome"]) for c in document["improved"]
    ] == [("case-008", "failed", "passed")]
    assert document["mcnemar_p"] == comparison.p_value
    same = compare(make_run(outcomes(4, 2)), make_run(outcomes(4, 2))).to_dict()
    assert (same["regressed"], same["improved"]) == ([], [])


def test_a_run_is_labelled_by_its_model_and_the_id_it_answered_with() -> None:
    alias = make_run(outcomes(4, 4), candidate="anthropic:claude-sonnet-latest")
    alias.cases = [
        make_case(i, "passed", model="claude-sonnet-latest", resolved="claude-sonnet-4-6")
        for i in range(4)
    ]
    comparison = compare(alias, make_run(outcomes(4, 4), candidate=CANDIDATE))
    assert comparison.baseline_label == (
        "anthropic:claude-sonnet-latest (answered as claude-sonnet-4-6)"
    )
    assert comparison.candidate_label == CANDIDATE  # answered as itself: nothing to add
    data = comparison.to_dict()
    assert data["baseline"]["model"] == "anthropic:claude-sonnet-latest"
    assert data["baseline"]["answered_as"] == {"claude-sonnet-4-6": 4}  # the judge's not counted
    assert data["candidate"]["answered_as"] == {"claude-sonnet-5": 4}
    lines = [line.text for line in comparison_lines(comparison)]
    assert lines[0] == (
        f"WITHIN NOISE: {CANDIDATE} against anthropic:claude-sonnet-latest (answered as "
        "claude-sonnet-4-6) on 4 paired cases"
    )
    markdown = comparison_markdown(comparison)
    assert "| Baseline | `anthropic:claude-sonnet-latest (answered as claude-sonnet-4-6)` |" in (
        markdown
    )


def test_a_fallback_reply_does_not_count_as_the_model_answering() -> None:
    run = make_run(outcomes(3, 3))
    fallback = make_case(0, "passed", model="claude-haiku-4-5")
    assert fallback.completion is not None
    run.cases[0] = replace(
        fallback, completion=replace(fallback.completion, fallback_model="claude-haiku-4-5")
    )
    run.cases[1] = make_case(1, "passed", resolved="claude-sonnet-4-6-0301")
    comparison = compare(run, make_run(outcomes(3, 3), candidate=CANDIDATE))
    assert comparison.to_dict()["baseline"]["answered_as"] == {
        "claude-sonnet-4-6": 1,
        "claude-sonnet-4-6-0301": 1,
    }
    assert comparison.baseline_label == (
        f"{PRODUCTION} (answered as claude-sonnet-4-6, claude-sonnet-4-6-0301)"
    )


def test_a_run_without_a_model_falls_back_to_the_name_given() -> None:
    legacy = make_run(outcomes(3, 3))
    legacy.metadata = {}
    comparison = compare(
        legacy, make_run(outcomes(3, 3), candidate=CANDIDATE), baseline_fallback="prod.json"
    )
    assert comparison.baseline_label == "prod.json"
    assert comparison.to_dict()["baseline"]["model"] is None
    assert compare(legacy, legacy).baseline_label == "baseline"
    forced = compare(make_run(outcomes(3, 3)), legacy, baseline_label="production")
    assert (forced.baseline_label, forced.candidate_label) == ("production", "candidate")


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="max_regression"):
        compare(make_run(BASE), make_run(BASE), max_regression=5)
    with pytest.raises(ValueError, match="alpha"):
        compare(make_run(BASE), make_run(BASE), alpha=0)


# --- drift -----------------------------------------------------------------------------------


def test_alias_moved_between_runs() -> None:
    baseline = make_run(outcomes(5, 5), resolved="claude-sonnet-4-6-20260101", fingerprint="fp_a")
    candidate = make_run(outcomes(5, 5), resolved="claude-sonnet-4-6-20260301", fingerprint="fp_b")
    moves = alias_moved(baseline, candidate)
    assert [(m.requested, m.attribute, m.scope) for m in moves] == [
        ("anthropic:claude-sonnet-4-6", "resolved_model", "between runs"),
        (f"openai:{JUDGE}", "system_fingerprint", "between runs"),
    ]
    assert "claude-sonnet-4-6-20260101 x5 in the baseline" in moves[0].describe()
    assert "claude-sonnet-4-6-20260301 x5 in the candidate run" in moves[0].describe()
    comparison = compare(baseline, candidate)
    assert len(comparison.alias_moves) == 2
    lines = [line.text for line in comparison_lines(comparison)]
    assert any(line.startswith("alias moved: anthropic:claude-sonnet-4-6") for line in lines)


def test_alias_moved_within_a_run_and_not_on_migration() -> None:
    run = make_run(outcomes(4, 4))
    run.cases[3] = make_case(3, "passed", resolved="claude-sonnet-4-6-20260301")
    moves = within_run_moves(run)
    assert len(moves) == 1
    assert moves[0].scope == "within candidate"
    assert "2 versions within the candidate run" in moves[0].describe()
    # Different candidate models (a migration) are not a move; the shared judge is checked.
    migration = alias_moved(make_run(outcomes(3, 3)), make_run(outcomes(3, 3), candidate=CANDIDATE))
    assert migration == []
    # Fingerprints only compared when both runs report them.
    assert alias_moved(make_run(outcomes(3, 3)), make_run(outcomes(3, 3), fingerprint="x")) == []


# --- attribution -----------------------------------------------------------------------------

OLD, NEW = "claude-sonnet-4-6", "claude-sonnet-5"
PROMPT_FILE = """\
task: support-answer
versions:
  default: Answer from the policy.
  claude-sonnet-4-6: Answer from the policy, briefly.
  claude-sonnet-5: Answer from the policy in one sentence.
"""
PROMPTS = PromptLibrary(parse_prompt_yaml(PROMPT_FILE, "prompts/support.yaml"), source="prompts")
_started = itertools.count()


def cell_run(
    passes: Sequence[bool] | Sequence[Outcome],
    model: str,
    prompts_for: str,
    *,
    library: PromptLibrary | None = PROMPTS,
) -> RunResult:
    """A run of ``model`` with the prompts written for ``prompts_for``, its metadata as the
    plugin writes it (``--llm-prompt-model`` when they differ); each run starts at its own time."""
    verdicts: list[Outcome] = [
        p if isinstance(p, str) else ("passed" if p else "failed") for p in passes
    ]
    started = f"2026-05-01T06:{next(_started) % 60:02d}:00+00:00"
    run = make_run(verdicts, candidate=f"anthropic:{model}", started_at=started)
    forced = None if prompts_for == model else prompts_for
    run.metadata.update(prompts_metadata(library, prompts_for, prompt_model=forced))
    return run


def two_by_two(
    old_old: Sequence[bool],
    old_new: Sequence[bool],
    new_old: Sequence[bool],
    new_new: Sequence[bool],
) -> list[RunResult]:
    return [
        cell_run(old_old, OLD, OLD),
        cell_run(old_new, OLD, NEW),
        cell_run(new_old, NEW, OLD),
        cell_run(new_new, NEW, NEW),
    ]


def test_attribution_blames_the_model() -> None:
    n = 200
    old = [i < 180 for i in range(n)]  # 90%
    new_model = [i < 160 for i in range(n)]  # 80%, whatever the prompt
    runs = two_by_two(old, old, new_model, new_model)
    assert check_attribution_runs(runs) == []
    result = attribute(*runs)
    assert result.n == n
    assert result.total == pytest.approx(-0.10)
    assert result.model.estimate == pytest.approx(-0.10)
    assert result.prompt.estimate == pytest.approx(0.0)
    assert result.interaction.estimate == pytest.approx(0.0)
    assert result.model.significant(0.05)
    assert result.model.p_value == pytest.approx(mcnemar_exact(20, 0))
    assert result.prompt.p_value == 1.0
    assert "attributable to the model" in result.reasons[-1]
    assert result.model.interval is not None
    assert result.model.interval.high < 0
    assert result.labels["new_model_old_prompt"] == f"anthropic:{NEW}"
    assert result.prompts["new_model_old_prompt"] == {
        "digest": runs[0].metadata["prompts"]["digest"],
        "model": OLD,
        "prompt_model": OLD,
    }
    assert json.dumps(result.to_dict())


def test_attribution_with_an_interaction() -> None:
    n = 200
    old_old = [i < 180 for i in range(n)]  # 90%
    old_new = [i < 180 for i in range(n)]  # the new prompt does nothing for the old model
    new_old = [i < 180 for i in range(n)]  # the new model does fine with the old prompt
    new_new = [i < 150 for i in range(n)]  # but the pair fails: 75%
    result = attribute(*two_by_two(old_old, old_new, new_old, new_new))
    assert result.total == pytest.approx(-0.15)
    assert result.model.estimate == pytest.approx(-0.075)
    assert result.prompt.estimate == pytest.approx(-0.075)
    assert result.interaction.estimate == pytest.approx(-0.15)
    assert result.model.estimate + result.prompt.estimate == pytest.approx(result.total)
    assert result.model_at_old_prompt + result.prompt_at_old_model + (
        result.interaction.estimate
    ) == pytest.approx(result.total)
    assert result.interaction.significant(0.05)
    assert "interact" in " ".join(result.reasons)
    markdown = attribution_markdown(result)
    assert "| Interaction effect | -15.0 pts |" in markdown


def test_attribution_excludes_cases_errored_in_some_run() -> None:
    runs = two_by_two(*[[i < 9 for i in range(10)]] * 4)
    runs[2].cases[4] = make_case(4, "error", model=NEW)
    runs[3].cases[9] = make_case(9, "error", model=NEW)
    result = attribute(*runs)
    assert result.n == 8
    assert {key[1] for key in result.excluded} == {"case-004", "case-009"}
    assert "2 cases errored in some run" in result.reasons[-1]


def library_of(text: str) -> PromptLibrary:
    return PromptLibrary(parse_prompt_yaml(text, "prompts/support.yaml"), source="prompts")


def test_the_prompt_may_change_between_revisions_of_the_prompt_files() -> None:
    # Prompts written once for every model; the new prompt is an edit of the files.
    before = library_of("task: support-answer\nversions:\n  default: Answer briefly.\n")
    after = library_of("task: support-answer\nversions:\n  default: Answer in one line.\n")
    flags = [i < 9 for i in range(10)]
    runs = [
        cell_run(flags, OLD, OLD, library=before),
        cell_run(flags, OLD, OLD, library=after),
        cell_run(flags, NEW, NEW, library=before),
        cell_run(flags, NEW, NEW, library=after),
    ]
    assert check_attribution_runs(runs) == []
    assert attribute(*runs).n == 10
    # Without --llm-prompt-model anywhere, the order given is all there is to go by.
    problems = check_attribution_runs([runs[0], runs[2], runs[1], runs[3]], ["a", "b", "c", "d"])
    assert len(problems) == 1
    assert problems[0].startswith("b and c are swapped: b (anthropic:claude-sonnet-5 with the ")
    assert problems[0].endswith("; give them in the order a c b d")
    assert "without --llm-prompt-model" not in problems[0]


def test_a_good_2x2_passes_the_check() -> None:
    runs = two_by_two(*[[True, False]] * 4)
    assert check_attribution_runs(runs, ["a", "b", "c", "d"]) == []
    digests = [run.metadata["prompts"]["digest"] for run in runs]
    assert digests[0] == digests[2] != digests[1] == digests[3]


NAMES = ["oo.json", "on.json", "no.json", "nn.json"]


def describe_run(model: str, prompts_for: str) -> str:
    digest = prompts_metadata(PROMPTS, prompts_for, prompt_model=None)["prompts"]["digest"]
    return f"anthropic:{model} with the {prompts_for} prompts {digest[:12]}"


def test_swapped_mixed_runs_are_named() -> None:
    oo, on, no, nn = two_by_two(*[[True, False]] * 4)
    assert check_attribution_runs(
        [oo, no, on, nn], ["oo.json", "no.json", "on.json", "nn.json"]
    ) == [
        f"no.json and on.json are swapped: no.json ({describe_run(NEW, OLD)}) is the new model "
        f"+ old prompt run, on.json ({describe_run(OLD, NEW)}) the old model + new prompt run; "
        "give them in the order oo.json on.json no.json nn.json"
    ]
    with pytest.raises(AttributionError) as info:
        attribute(oo, no, on, nn, names=["oo.json", "no.json", "on.json", "nn.json"])
    assert info.value.problems == tuple(
        check_attribution_runs([oo, no, on, nn], ["oo.json", "no.json", "on.json", "nn.json"])
    )
    assert str(info.value).splitlines()[0] == (
        "the four runs do not form the 2x2 of an attribution (in order: old model + old prompt, "
        "old model + new prompt, new model + old prompt, new model + new prompt):"
    )
    assert str(info.value).splitlines()[1].startswith("  - no.json and on.json are swapped: ")


def test_runs_with_their_own_prompts_belong_first_and_last() -> None:
    oo, on, no, nn = two_by_two(*[[True, False]] * 4)
    # Read by the order alone, swapping the last two would do; but oo and nn ran without
    # --llm-prompt-model, so the first two are swapped.
    names = ["on.json", "oo.json", "no.json", "nn.json"]
    assert check_attribution_runs([on, oo, no, nn], names) == [
        f"on.json and oo.json are swapped: on.json ({describe_run(OLD, NEW)}) is the old model "
        f"+ new prompt run, oo.json ({describe_run(OLD, OLD)}) the old model + old prompt run "
        "(oo.json and nn.json ran without --llm-prompt-model, each with its own model's "
        "prompts, so they are the old model + old prompt and new model + new prompt runs); "
        "give them in the order oo.json on.json no.json nn.json"
    ]
    [problem] = check_attribution_runs(
        [on, oo, nn, no], ["on.json", "oo.json", "nn.json", "no.json"]
    )
    assert problem.startswith("the runs are not in their places: on.json (")
    assert problem.endswith("give them in the order oo.json on.json no.json nn.json")


def test_a_run_given_twice_is_named() -> None:
    oo, on, _, nn = two_by_two(*[[True, False]] * 4)
    names = ["oo.json", "on.json", "on.json", "nn.json"]
    assert check_attribution_runs([oo, on, on, nn], names) == [
        "on.json is given 2 times (given as old model + new prompt and new model + old prompt)",
        f"no run is {describe_run(NEW, OLD)}",
    ]


def test_a_copy_of_a_run_is_named() -> None:
    oo, on, _, nn = two_by_two(*[[True, False]] * 4)
    copy = RunResult(dict(nn.metadata), list(nn.cases))
    started = nn.metadata["started_at"]
    assert check_attribution_runs([oo, on, copy, nn], ["oo", "on", "copy", "nn"]) == [
        f"copy and nn are copies of one run, started {started} (given as new model + old prompt "
        "and new model + new prompt); copy ran without --llm-prompt-model",
        f"no run is {describe_run(NEW, OLD)}",
    ]


def test_a_mixed_run_without_the_prompt_model_is_a_duplicate_cell() -> None:
    oo, on, _, nn = two_by_two(*[[True, False]] * 4)
    forgot = cell_run([True, False], NEW, NEW)  # meant: --llm-prompt-model=claude-sonnet-4-6
    assert check_attribution_runs([oo, on, forgot, nn], NAMES) == [
        f"no.json and nn.json both ran {describe_run(NEW, NEW)} (given as new model + old prompt "
        "and new model + new prompt); no.json ran without --llm-prompt-model",
        f"no run is {describe_run(NEW, OLD)}",
    ]


def test_the_model_and_the_prompt_must_each_take_two_values() -> None:
    oo, on, _, nn = two_by_two(*[[True, False]] * 4)
    other = cell_run([True, False], "claude-opus-4-6", OLD)
    assert check_attribution_runs([oo, on, other, nn], NAMES) == [
        "the runs ran 3 models where a 2x2 has two: oo.json and on.json ran "
        "anthropic:claude-sonnet-4-6; no.json ran anthropic:claude-opus-4-6; nn.json ran "
        "anthropic:claude-sonnet-5"
    ]
    same_model = [cell_run([True], OLD, p) for p in (OLD, NEW, OLD, NEW)]
    assert check_attribution_runs(same_model, NAMES) == [
        "all four runs ran anthropic:claude-sonnet-4-6: the model did not change, so nothing "
        "can be attributed to it"
    ]
    same_prompts = [cell_run([True], m, OLD) for m in (OLD, OLD, NEW, NEW)]
    digest = same_prompts[0].metadata["prompts"]["digest"]
    assert check_attribution_runs(same_prompts, NAMES) == [
        f"all four runs used the same prompts (prompts {digest[:12]}): the prompt did not "
        "change, so nothing can be attributed to it (run the old model + new prompt and new "
        "model + old prompt runs with --llm-prompt-model set to the other model)"
    ]
    no_files = [cell_run([True], m, m, library=None) for m in (OLD, OLD, NEW, NEW)]
    assert "(no prompt files)" in check_attribution_runs(no_files, NAMES)[0]


def test_prompts_edited_between_runs_name_the_task() -> None:
    oo, on, _, nn = two_by_two(*[[True, False]] * 4)
    edited = library_of(PROMPT_FILE.replace("briefly", "in two lines"))
    stale = cell_run([True, False], NEW, OLD, library=edited)
    before = oo.metadata["prompts"]["tasks"]["support-answer"]["digest"]
    after = stale.metadata["prompts"]["tasks"]["support-answer"]["digest"]
    problems = check_attribution_runs([oo, on, stale, nn], NAMES)
    assert problems == [
        "the runs used 3 different prompts where a 2x2 has two: oo.json used the "
        f"claude-sonnet-4-6 prompts {oo.metadata['prompts']['digest'][:12]}; on.json and nn.json "
        f"used the claude-sonnet-5 prompts {nn.metadata['prompts']['digest'][:12]}; no.json used "
        f"the claude-sonnet-4-6 prompts {stale.metadata['prompts']['digest'][:12]}",
        "oo.json and no.json should use the same (old) prompts but differ in task(s) "
        f"'support-answer' ('claude-sonnet-4-6' {before} vs 'claude-sonnet-4-6' {after})",
    ]


def test_runs_must_hold_the_same_cases() -> None:
    oo, on, no, nn = two_by_two(*[[i < 9 for i in range(10)]] * 4)
    del oo.cases[3]
    del no.cases[3]
    del no.cases[5]  # case-006 after the first deletion
    nn.cases.append(make_case(10, "passed", model=NEW))
    assert check_attribution_runs([oo, on, no, nn], NAMES) == [
        "1 case missing from oo.json and no.json: golden_cases/support.yaml::case-003; the four "
        "runs must hold the same cases",
        "1 case missing from no.json: golden_cases/support.yaml::case-006; the four runs must "
        "hold the same cases",
        "1 case missing from oo.json, on.json and no.json: golden_cases/support.yaml::case-010; "
        "the four runs must hold the same cases",
    ]
    many = cell_run([True] * 3, OLD, OLD)
    [problem] = check_attribution_runs([many, *two_by_two(*[[True] * 10] * 4)[1:]], NAMES)
    assert problem == (
        "7 cases missing from oo.json: golden_cases/support.yaml::case-003, "
        "golden_cases/support.yaml::case-004, golden_cases/support.yaml::case-005, "
        "golden_cases/support.yaml::case-006, golden_cases/support.yaml::case-007 and 2 more; "
        "the four runs must hold the same cases"
    )


def test_results_files_without_prompt_metadata_are_refused() -> None:
    oo, on, no, nn = two_by_two(*[[True, False]] * 4)
    old_file = make_run(["passed", "failed"], candidate=f"anthropic:{OLD}")
    assert "prompts" not in old_file.metadata
    assert check_attribution_runs([old_file, on, no, nn], NAMES) == [
        "oo.json does not record its prompt version; rerun it with pytest-llmregress >= "
        f"{PROMPTS_RECORDED_SINCE}"
    ]
    no_model = RunResult({k: v for k, v in nn.metadata.items() if k != "candidate"}, nn.cases)
    assert check_attribution_runs([oo, on, no, no_model]) == [
        "the new model + new prompt run does not record its model (metadata.candidate)"
    ]
    with pytest.raises(AttributionError, match="does not record its prompt version"):
        attribute(old_file, on, no, nn)
    assert check_attribution_runs([oo, on, no]) == ["an attribution takes 4 runs, got 3"]


# --- summaries -------------------------------------------------------------------------------


def test_summarize_run() -> None:
    run = make_run(["passed", "passed", "failed", "error"])
    summary = summarize_run(run)
    assert (summary.passed, summary.failed, summary.errors) == (2, 1, 1)
    assert summary.pass_rate == pytest.approx(2 / 3)
    assert summary.mean_score == pytest.approx((0.9 + 0.9 + 0.2) / 3)
    assert summary.label == PRODUCTION


def test_comparison_markdown() -> None:
    worse = flipped(BASE, pass_to_fail=36, fail_to_pass=6)
    candidate = make_run(worse, candidate=CANDIDATE)
    candidate.cases[0] = make_case(0, "failed", model="claude-sonnet-5", output="a | b\nc")
    candidate.cases[299] = make_case(299, "error", model="claude-sonnet-5")
    markdown = comparison_markdown(compare(make_run(BASE), candidate))
    assert markdown.startswith("## ❌ LLM regression check: regression\n")
    assert "| Baseline | `anthropic:claude-sonnet-4-6` | 85.3% |" in markdown
    assert "| Candidate | `anthropic:claude-sonnet-5` |" in markdown
    assert "### Pass → fail flips (36, significant overall)" in markdown
    assert "a \\| b c" in markdown  # pipes escaped, newlines flattened
    assert "Errored in either run, not compared (1)" in markdown
    assert "Smallest detectable drop" in markdown
    assert "<summary>Fail → pass flips (6)</summary>" in markdown
    for line in markdown.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")


def test_cell_escaping() -> None:
    assert cell("x|y <b>\n z") == "x\\|y &lt;b&gt; z"
    assert cell("") == " "
    assert cell("a" * 300, 10) == "a" * 9 + "…"


def test_run_markdown_from_verdict_run_and_dict() -> None:
    verdicts: list[Outcome] = [*outcomes(9, 8), "error"]
    results = [make_case(i, o) for i, o in enumerate(verdicts)]
    verdict = decide(results, min_pass_rate=0.9, max_error_rate=0.2)
    markdown = run_markdown(verdict, results=results, candidate=PRODUCTION)
    assert markdown.startswith("## ❌ LLM golden suite — `anthropic:claude-sonnet-4-6`: failed")
    assert "| 88.9% |" in markdown
    assert "below the minimum" in markdown
    assert "### Worst 1 of 1 failed cases" in markdown
    assert "1 errored cases, by cause" in markdown

    run = RunResult(
        metadata={"candidate": PRODUCTION, "settings": {"min_pass_rate": 0.8}}, cases=results
    )
    from_run = run_markdown(run)
    assert "## ✅" in from_run
    assert "| 80.0% |" in from_run  # the minimum column

    from_dict = run_markdown(
        {"ok": True, "passed": 3, "failed": 0, "errors": 0, "pass_rate": 1.0, "reasons": []}
    )
    assert from_dict.startswith("## ✅ LLM golden suite: passed")
