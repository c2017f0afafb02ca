"""Issue 15 end to end: repeats, judge repeats, judge panels and the order check, through
pytest against the local provider server over real HTTP (both official SDKs)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.core.text import p_value
from pytest_llmregress.testing.server import LocalProviderServer, answers_normally
from pytest_llmregress.verdict.agreement import krippendorff_alpha
from pytest_llmregress.verdict.repeats import CaseRepeats, compare_repeated
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import drifted, model_args, qa_cases, scenario, write_cases

try:  # an independent implementation (dev extra); imported once: it loads numpy
    import krippendorff
except ImportError:  # pragma: no cover
    krippendorff = None

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

JUDGE_B = "gpt-5.2-2025-12-11"
JUDGE_C = "gpt-5.5"


def candidate_calls(server: LocalProviderServer) -> Counter[str]:
    return Counter(r.user_text for r in server.requests if r.requested_model == CANDIDATE)


def judge_calls(server: LocalProviderServer, model: str = JUDGE) -> int:
    return sum(1 for r in server.requests if r.requested_model == model)


# -- repeats ---------------------------------------------------------------------------------


def test_each_case_runs_k_times_once_each_and_reports_its_repeats(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases, scripted = drifted(6, bad=2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(
        *model_args("--llm-repeat=3", "--llm-min-pass-rate=0.5", "--llm-report=out.json"),
        *run_mode,
    )

    result.assert_outcomes(passed=4, failed=2)
    assert result.ret == pytest.ExitCode.OK
    # Every case exactly K times, whatever the xdist mode; each repeat judged once.
    assert candidate_calls(server) == Counter({c["user"]: 3 for c in cases})
    assert judge_calls(server) == 18
    result.stdout.fnmatch_lines(
        [
            "mean pass rate over 3 repeats 66.7% (95% CI *) against minimum 50.0%",
            "4 passed, 2 failed, 0 errors*",
            "repeats: each case 3 times; mean pass rate 66.7% (95% CI *, bootstrap over cases),"
            " pass^3 66.7%, pass@3 66.7%",
            "flaky: 0 of 6 cases (0.0%) passed some repeats and failed others",
            "  why: the model answered differently in 0 cases *, the judge scored the same "
            "answer differently in 0 cases *",
        ]
    )
    run = load_results(pytester.path / "out.json")
    assert {len(case.repeats) for case in run.cases} == {3}
    assert run.metadata["settings"]["repeat"] == 3
    assert run.metadata["verdict"]["rate_name"] == "mean pass rate over 3 repeats"
    assert run.metadata["noise"]["repeats"]["k"] == 3
    assert run.metadata["noise"]["repeats"]["pass_hat_k"] == pytest.approx(4 / 6)


def test_the_gate_reads_the_mean_or_every_repeat(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """Mean and pass^K disagree when a case passes some repeats (here with sampling: the
    first case never passes, the others always; the two rates agree; see
    test_a_flaky_case_counts_by_its_share_of_passes for a case in between)."""
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    # The first case's every repeat is answered wrong: its share of passes is 0 of 3.
    scripted["models"][CANDIDATE]["sampling"] = {
        "share": 1.0,
        "pass_rate": 1.0,
        "pass_rates": [{"match": cases[0]["user"], "pass_rate": 0.0}],
    }
    server = make_server(scripted)
    provider_env(server)

    mean = pytester.runpytest(*model_args("--llm-repeat=3", "--llm-min-pass-rate=0.6"))
    mean.assert_outcomes(passed=2, failed=1)
    assert mean.ret == pytest.ExitCode.OK
    mean.stdout.fnmatch_lines(["mean pass rate over 3 repeats 66.7% *"])

    every = pytester.runpytest(
        *model_args("--llm-repeat=3", "--llm-min-pass-rate=0.7", "--llm-gate=all")
    )
    every.assert_outcomes(passed=2, failed=1)
    assert every.ret == pytest.ExitCode.TESTS_FAILED
    every.stdout.fnmatch_lines(
        [
            "pass^3 rate (every repeat passed) 66.7% *",
            "  reason: pass^3 rate (every repeat passed) 66.7% (2/3) is below the minimum 70.0%",
        ]
    )


def test_repeats_are_cached_apart_and_replayed_all(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    first = pytester.runpytest(*model_args("--llm-repeat=2", "--llm-cache=record"))
    first.assert_outcomes(passed=4)
    assert sum(candidate_calls(server).values()) == 8
    server.reset_stats()

    again = pytester.runpytest(*model_args("--llm-repeat=2", "--llm-cache=replay"))
    again.assert_outcomes(passed=4)
    assert server.requests == []  # K candidate replies and K verdicts per case, all cached
    third = pytester.runpytest(*model_args("--llm-repeat=3", "--llm-cache=replay"))
    third.assert_outcomes(passed=4)
    assert server.requests == []
    # One repeat per case has no recording: replay says so as an error of that repeat.
    third.stdout.fnmatch_lines(
        ["repeats: each case 3 times*; 4 repeats errored (not in the rates)"]
    )


def test_a_repeat_that_errors_is_not_a_failure(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][CANDIDATE]["errors"] = [
        {"status": 400, "first_n": 1, "message": "injected bad request"}
    ]
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-repeat=3", "--llm-report=out.json"))

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*1 repeats errored (not in the rates)*"])
    run = load_results(pytester.path / "out.json")
    outcomes = sorted(r.outcome for case in run.cases for r in case.repeats)
    assert outcomes == ["error", "passed", "passed", "passed", "passed", "passed"]


def test_every_repeat_erroring_is_an_error(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][CANDIDATE]["errors"] = [
        {"status": 400, "match": cases[0]["user"], "message": "injected bad request"}
    ]
    provider_env(make_server(scripted))

    result = pytester.runpytest(*model_args("--llm-repeat=2", "--llm-max-error-rate=0.5"))

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*every one of 2 repeats errored; the first: model call failed*"])


def test_recording_refuses_repeats(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(*model_args("--llm-repeat=2", "--llm-record=missing"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-record takes one output per case*--llm-repeat*"])


# -- judges ----------------------------------------------------------------------------------


def panel_scenario(cases: list[dict[str, Any]], bad: int) -> dict[str, Any]:
    """A judge that grades by similarity (JUDGE), one that passes everything (B, 1.0) and one
    that scores 0.9 (C): the ``bad`` wrong answers fail A's verdict only."""
    scripted = scenario(cases)
    for rule in scripted["models"][CANDIDATE]["answers"][:bad]:
        rule["reply"] = "Completely unrelated text about gardening tools."
    names = ("accuracy", "completeness", "format")
    scripted["models"][JUDGE_B] = {"judge": True, "judge_scores": dict.fromkeys(names, 1.0)}
    scripted["models"][JUDGE_C] = {"judge": True, "judge_scores": dict.fromkeys(names, 0.9)}
    return scripted


@pytest.mark.parametrize(("mode", "passed"), [("mean", 6), ("majority", 10)])
def test_a_panel_decides_by_mean_or_majority_and_reports_its_agreement(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    mode: str,
    passed: int,
) -> None:
    cases = qa_cases(10)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(panel_scenario(cases, bad=4))
    provider_env(server)

    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-judge-model={JUDGE},{JUDGE_B},{JUDGE_C}",
        f"--llm-judge-panel={mode}",
        "--llm-min-pass-rate=0",
        "--llm-report=out.json",
        "-n2",
    )

    result.assert_outcomes(passed=passed, failed=10 - passed)
    assert [judge_calls(server, m) for m in (JUDGE, JUDGE_B, JUDGE_C)] == [10, 10, 10]
    # A fails the 4 wrong answers, B and C pass all: alpha from the same table by hand.
    table = [[i >= 4 for i in range(10)], [True] * 10, [True] * 10]
    alpha = krippendorff_alpha(table)
    if krippendorff is None:
        pytest.skip("krippendorff is not installed")
    independent = krippendorff.alpha(
        reliability_data=[[float(v) for v in row] for row in table],
        level_of_measurement="nominal",
    )
    assert alpha == pytest.approx(independent)
    result.stdout.fnmatch_lines(
        [
            f"*judge panel ({mode}) openai:{JUDGE}, openai:{JUDGE_B}, openai:{JUDGE_C}*",
            f"judge panel: pass rates openai:{JUDGE} 60.0%, openai:{JUDGE_B} 100.0%, "
            f"openai:{JUDGE_C} 100.0% on 10 outputs; agreement Krippendorff's alpha = "
            f"{alpha:.2f}",
        ]
    )
    run = load_results(pytester.path / "out.json")
    assert run.metadata["judges"] == [f"openai:{m}" for m in (JUDGE, JUDGE_B, JUDGE_C)]
    panel = run.metadata["noise"]["panel"]
    assert panel["krippendorff_alpha"] == pytest.approx(alpha)
    votes = [len(c.scores[0].votes) for c in run.cases]
    assert votes == [3] * 10
    # The token line counts every judge call of the panel, not only the first judge's.
    judge_in = sum(v.input_tokens for c in run.cases for v in c.scores[0].votes)
    firsts = sum(c.judge_completion.input_tokens for c in run.cases if c.judge_completion)
    assert judge_in > 2 * firsts
    result.stdout.fnmatch_lines([f"tokens: candidate * in / * out; judge {judge_in} in / * out"])


def test_a_judge_twice_in_a_panel_is_refused(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", f"--llm-judge-model={JUDGE},{JUDGE}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--llm-judge-model names openai:{JUDGE} more than once*"])


def test_require_cross_family_refuses_a_same_family_judge_in_a_panel(
    pytester: pytest.Pytester,
) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-judge-model={JUDGE},claude-opus-4-7",
        "--llm-require-cross-family",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the judge anthropic:claude-opus-4-7 is of the same family*"])


def test_the_order_check_measures_position_bias(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """A judge that adds 0.2 when it sees the candidate first: answers just under the
    threshold pass that way. Every case is in the sample (share 1), so the changes are known."""
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    rules = scripted["models"][CANDIDATE]["answers"]
    for rule in rules[:3]:  # a near miss: a prefix, similarity 2L/(N+L) about 0.78 < 0.85
        rule["reply"] = rule["reply"][: round(len(rule["reply"]) * 0.64)]
    scripted["models"][JUDGE]["judge_order_bias"] = 0.2
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(
        *model_args("--llm-judge-order-sample=1", "--llm-min-pass-rate=0", "--llm-report=o.json")
    )

    result.assert_outcomes(passed=3, failed=3)  # the swapped verdict is measured, not counted
    assert judge_calls(server) == 12
    run = load_results(pytester.path / "o.json")
    near = [c for c in run.cases if c.outcome == "failed"]
    shifted = [c.scores[0].votes for c in near]
    assert all(
        v[1].swapped and v[1].value == pytest.approx(min(1.0, v[0].value + 0.2), abs=2e-3)
        for v in shifted
    )
    changed = sum(1 for v in shifted if v[1].passed != v[0].passed)
    assert changed == 3
    result.stdout.fnmatch_lines(
        [
            "order check: the verdict changed with the order on 3 of 6 outputs judged both "
            "ways (50.0%); the candidate shown first moved scores by +0.* on average"
        ]
    )
    assert run.metadata["noise"]["order"]["checked"] == 6


def test_a_sample_of_the_cases_is_order_checked(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    from pytest_llmregress.scoring.panel import in_order_sample

    cases = qa_cases(40)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-judge-order-sample=0.25"))

    result.assert_outcomes(passed=40)
    sampled = sum(1 for c in cases if in_order_sample(c["id"], 0.25))
    assert 0 < sampled < 40
    assert judge_calls(server) == 40 + sampled
    result.stdout.fnmatch_lines([f"order check: *on 0 of {sampled} outputs judged both ways*"])


def test_judge_repeats_are_apart_from_model_repeats(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """Deterministic candidate, a judge that scores one answer 1.0 or 0.0 from call to call
    on a fixed share of answers: every flaky case is the judge's, none the model's."""
    cases = qa_cases(8)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][JUDGE]["judge_noise"] = {"share": 1.0, "flip": 0.5, "seed": 3}
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(
        *model_args(
            "--llm-repeat=2",
            "--llm-judge-repeat=3",
            "--llm-judge-cache=off",
            "--llm-min-pass-rate=0",
            "--llm-report=j.json",
        )
    )

    assert judge_calls(server) == 8 * 2 * 3
    assert sum(candidate_calls(server).values()) == 16
    run = load_results(pytester.path / "j.json")
    sources = run.metadata["noise"]["flaky_sources"]
    assert sources["model"] == []
    noisy = [
        c.nodeid
        for c in run.cases
        if any(
            len({v.passed for v in r.scores[0].votes}) > 1 or r.outcome != c.repeats[0].outcome
            for r in c.repeats
        )
    ]
    assert noisy  # the seed makes some judgements flip: the test would see none otherwise
    assert sorted(sources["judge"]) == sorted(noisy)
    result.stdout.fnmatch_lines(
        [
            f"  why: the model answered differently in 0 cases *, the judge scored the same answer "
            f"differently in {len(noisy)} case*"
        ]
    )


def test_old_results_files_without_repeats_or_votes_still_read(tmp_path: Any) -> None:
    from pytest_llmregress.verdict.results import CaseResult

    record = {
        "case_id": "a",
        "nodeid": "g.jsonl::a",
        "path": "g.jsonl",
        "line": 1,
        "outcome": "passed",
        "threshold": 0.8,
        "scores": [{"scorer": "judge", "value": 0.9, "passed": True, "reason": "ok"}],
    }
    result = CaseResult.from_dict(record)
    assert result.repeats == ()
    assert result.scores[0].votes == ()
    assert "repeats" not in result.to_dict()
    assert "votes" not in result.to_dict()["scores"][0]
    assert json.loads(json.dumps(result.to_dict())) == {**result.to_dict()}
    assert math.isclose(result.pass_fraction or 0, 1.0)


# -- a model that samples ------------------------------------------------------------------

PRODUCTION = "claude-opus-4-6"


def sampling_scenario(
    cases: list[dict[str, Any]], pass_rates: list[float], seed: int, models: tuple[str, ...]
) -> dict[str, Any]:
    """Every model of ``models`` answers case i right with probability ``pass_rates[i]``."""
    scripted = scenario(cases)
    config = scripted["models"].pop(CANDIDATE)
    sampling = {
        "share": 1.0,
        "pass_rate": 1.0,
        "seed": seed,
        "pass_rates": [
            {"match": c["user"], "pass_rate": rate}
            for c, rate in zip(cases, pass_rates, strict=True)
        ],
    }
    for model in models:
        scripted["models"][model] = {**config, "sampling": json.loads(json.dumps(sampling))}
    return scripted


def predicted(
    server: LocalProviderServer, model: str, cases: list[dict[str, Any]], k: int
) -> list[CaseRepeats]:
    """Each case's passes of K, as the server's own draw function decides them."""
    sampling = server.scenario.models[model].sampling
    return [
        CaseRepeats.of(c["id"], [answers_normally(sampling, model, c["user"], n) for n in range(k)])
        for c in cases
    ]


def test_a_sampling_model_is_flaky_as_predicted(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(12)
    write_cases(pytester, "qa.jsonl", cases)
    rates = [0.2, 0.5, 0.8, 1.0] * 3
    server = make_server(sampling_scenario(cases, rates, seed=7, models=(CANDIDATE,)))
    provider_env(server)
    expected = predicted(server, CANDIDATE, cases, 5)
    flaky = [c for c in expected if c.flipped]
    assert flaky  # a seed that shows flaky cases and steady ones
    assert any(c.all_pass for c in expected)

    result = pytester.runpytest(
        *model_args("--llm-repeat=5", "--llm-min-pass-rate=0", "--llm-report=s.json"), *run_mode
    )

    passes = sum(1 for c in expected if c.all_pass)
    result.assert_outcomes(passed=passes, failed=12 - passes)
    mean = sum(c.passes / 5 for c in expected) / 12
    result.stdout.fnmatch_lines(
        [
            f"mean pass rate over 5 repeats {mean:.1%} *",
            f"flaky: {len(flaky)} of 12 cases ({len(flaky) / 12:.1%}) passed some repeats*",
            f"  why: the model answered differently in {len(flaky)} case*, the judge scored the "
            "same answer differently in 0 cases*",
        ]
    )
    run = load_results(pytester.path / "s.json")
    by_id = {c.case_id: c for c in run.cases}
    assert {c.nodeid: (c.passes, c.trials) for c in expected} == {
        case_id: (sum(r.outcome == "passed" for r in got.repeats), 5)
        for case_id, got in by_id.items()
    }
    noise = run.metadata["noise"]
    assert noise["repeats"]["mean_pass_rate"] == pytest.approx(mean)
    assert sorted(noise["flaky_sources"]["model"]) == sorted(by_id[c.nodeid].nodeid for c in flaky)
    assert noise["flaky_sources"]["judge"] == []


def test_an_a_a_run_with_repeats_is_within_noise(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """Two models that sample alike (own draws each): the paired comparison on pass fractions
    says no regression, with the p-value the predicted outcomes give."""
    cases = qa_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    rates = [0.3 + 0.7 * i / 29 for i in range(30)]
    server = make_server(sampling_scenario(cases, rates, seed=11, models=(CANDIDATE, PRODUCTION)))
    provider_env(server)
    comparison = compare_repeated(
        predicted(server, PRODUCTION, cases, 5), predicted(server, CANDIDATE, cases, 5)
    )
    assert comparison.verdict == "within noise"

    result = pytester.runpytest(
        *model_args("--llm-repeat=5", f"--llm-compare-model={PRODUCTION}", "--llm-min-pass-rate=0"),
        "-n2",
    )

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            f"WITHIN NOISE: anthropic:{CANDIDATE} against anthropic:{PRODUCTION}*",
            f"*paired sign-flip test on per-case pass fractions p = {p_value(comparison.p_value)}*",
        ]
    )


def test_a_real_drop_with_repeats_is_a_regression(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = sampling_scenario(cases, [0.95] * 30, seed=5, models=(CANDIDATE, PRODUCTION))
    for rule in scripted["models"][CANDIDATE]["sampling"]["pass_rates"]:
        rule["pass_rate"] = 0.5
    provider_env(make_server(scripted))

    result = pytester.runpytest(
        *model_args("--llm-repeat=5", f"--llm-compare-model={PRODUCTION}", "--llm-min-pass-rate=0")
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*reason: regression: pass rate fell by * (* -> * on 30 paired cases), more than the "
            "5.0-point margin; the difference is significant: paired sign-flip test on per-case "
            "pass fractions p = *",
            "flips: * pass->fail, * fail->pass (of cases passing every repeat); paired sign-flip "
            "test on per-case pass fractions p = *",
        ]
    )


# -- the judge measured against people ----------------------------------------------------


def test_every_summary_states_the_judges_calibration_or_its_absence(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_llmregress.cli.judge import main as judge_main
    from pytest_llmregress.verdict.calibration import find_calibration

    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    before = pytester.runpytest(*model_args())
    before.stdout.fnmatch_lines(
        [
            f"judge openai:{JUDGE}: uncalibrated (no calibration for judge prompt v* in "
            "golden_cases/judge-calibration.json; run llmregress judge calibrate)"
        ]
    )

    # People labelled six outputs: three right answers pass, three unrelated ones fail.
    labels = pytester.path / "labels.jsonl"
    rows = [
        {
            "id": f"l{i}",
            "task": c["user"],
            "reference": c["reference"],
            "output": c["reference"] if i < 3 else "Something about gardening tools.",
            "label": "pass" if i < 3 else "fail",
        }
        for i, c in enumerate(cases + cases)
    ]
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(pytester.path)
    assert judge_main(["calibrate", str(labels), "--judge-model", JUDGE]) == 0
    capsys.readouterr()
    stored = find_calibration(pytester.path / "golden_cases/judge-calibration.json", JUDGE)
    assert stored is not None
    assert stored.kappa == pytest.approx(1.0)

    after = pytester.runpytest(*model_args(), "--llm-report=c.json")
    after.stdout.fnmatch_lines(
        [f"judge openai:{JUDGE}: κ = 1.00 on 6 labelled cases, {stored.date}"]
    )
    # Another judge prompt version or model is not this calibration.
    assert find_calibration(labels.parent / "golden_cases/judge-calibration.json", "gpt-x") is None


def test_a_run_without_judged_cases_says_nothing_of_calibration(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [{**c, "scorers": ["exact"]} for c in qa_cases(2)]
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=2)
    assert "uncalibrated" not in result.stdout.str()
    assert "run llmregress judge calibrate" not in result.stdout.str()


def test_the_docs_run_summary_is_what_such_a_run_prints(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "reading-verdicts.md").read_text()
    block = doc.split("<!-- run-summary -->\n```\n", 1)[1].split("```", 1)[0]
    cases = qa_cases(12)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(
        make_server(sampling_scenario(cases, [0.2, 0.5, 0.8, 1.0] * 3, seed=7, models=(CANDIDATE,)))
    )

    result = pytester.runpytest(*model_args("--llm-repeat=5", "--llm-min-pass-rate=0.6"))

    result.stdout.fnmatch_lines([line.replace("[", "[[]") for line in block.splitlines()])


def test_a_stored_repeated_run_is_a_baseline_compared_on_pass_fractions(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_llmregress.cli.compare import main as compare_main

    cases = qa_cases(10)
    write_cases(pytester, "qa.jsonl", cases)
    rates = [0.4, 0.6, 0.8, 1.0, 1.0] * 2
    server = make_server(sampling_scenario(cases, rates, seed=2, models=(CANDIDATE, PRODUCTION)))
    provider_env(server)
    expected = predicted(server, PRODUCTION, cases, 3)

    base = pytester.runpytest(
        f"--llm-model={PRODUCTION}",
        f"--llm-judge-model={JUDGE}",
        "--llm-repeat=3",
        "--llm-min-pass-rate=0",
        "--llm-report=base.json",
        "--llm-markdown=base.md",
    )
    assert base.ret == pytest.ExitCode.OK
    stored = json.loads((pytester.path / "base.json").read_text())["metadata"]["noise"]
    per_case = {c["nodeid"].split("::")[1]: c for c in stored["repeats"]["per_case"]}
    for case in expected:
        got = per_case[case.nodeid]
        assert (got["passes"], got["trials"], got["flaky"]) == (
            case.passes,
            case.trials,
            case.flipped,
        )
        assert got["pass_hat_k"] is case.all_pass
    markdown = (pytester.path / "base.md").read_text()
    assert "| Mean pass rate over 3 repeats |" in markdown
    assert "- repeats: each case 3 times;" in markdown

    candidate = pytester.runpytest(
        *model_args("--llm-repeat=3", "--llm-baseline=base.json", "--llm-report=cand.json")
    )
    candidate.stdout.fnmatch_lines(
        ["*; paired sign-flip test on per-case pass fractions p = * (alpha 0.05)"]
    )
    files = [str(pytester.path / "base.json"), str(pytester.path / "cand.json")]
    assert compare_main(["compare", *files]) == 0
    printed = capsys.readouterr().out
    assert "paired sign-flip test on per-case pass fractions" in printed
    assert "mean pass rate over repeats" in printed
    # Priced with the bundled table: the migration's cost per case beside its quality.
    assert re.search(r"cost per case \$[\d.]+ -> \$[\d.]+ \([+-]\d+%\) on 10 cases", printed)
