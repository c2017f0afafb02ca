"""Migration verdicts in the plugin: paired runs, baselines, markdown, JUnit, history."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.cli.compare import main as compare_main
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import JUDGE
from tests.test_plugin_e2e import answers, qa_cases, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
PRODUCTION = "claude-sonnet-4-6"
CANDIDATE = "claude-sonnet-5"


def exact_cases(count: int) -> list[dict[str, Any]]:
    """Cases scored by `exact` only: the comparison needs no judge calls."""
    return [{**case, "scorers": ["exact"]} for case in qa_cases(count)]


def two_models(cases: list[dict[str, Any]], drift: float) -> dict[str, Any]:
    candidate: dict[str, Any] = {"answers": answers(cases)}
    if drift:
        candidate["drift"] = {"share": drift, "seed": 5, "reply": "Something else entirely."}
    return {
        "models": {
            PRODUCTION: {"answers": answers(cases)},
            CANDIDATE: candidate,
            JUDGE: {"judge": True},
        }
    }


def test_same_model_twice_is_within_noise(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(40)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(two_models(cases, drift=0))
    provider_env(server)
    result = pytester.runpytest(f"--llm-model={PRODUCTION}", f"--llm-compare-model={PRODUCTION}")
    result.assert_outcomes(passed=40)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [f"WITHIN NOISE: anthropic:{PRODUCTION} against anthropic:{PRODUCTION} on 40 paired cases"]
    )
    assert sum(1 for r in server.requests if r.requested_model == PRODUCTION) == 80


def test_ten_point_drift_is_a_significant_regression(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(300)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(two_models(cases, drift=0.10)))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-compare-model={PRODUCTION}",
        "--llm-min-pass-rate=0",
        "--llm-concurrency=16",
        "-q",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"REGRESSION: anthropic:{CANDIDATE} against anthropic:{PRODUCTION} on 300 paired cases",
            "flips: * pass->fail, 0 fail->pass; exact McNemar p = *",
        ]
    )
    result.stdout.fnmatch_lines(["*reason: regression: *"])


def test_one_point_drift_is_within_noise_and_says_what_it_could_detect(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(300)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(two_models(cases, drift=0.01)))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-compare-model={PRODUCTION}",
        "--llm-min-pass-rate=0.9",
        "--llm-concurrency=16",
        "-q",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            f"WITHIN NOISE: anthropic:{CANDIDATE} against anthropic:{PRODUCTION} on 300 paired*",
            "smallest detectable drop: * points*",
        ]
    )


def test_baseline_file_markdown_junit_and_history(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = exact_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(two_models(cases, drift=0.5)))
    pytester.runpytest(f"--llm-model={PRODUCTION}", "--llm-report=prod.json").assert_outcomes(
        passed=30
    )
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        "--llm-baseline=prod.json",
        "--llm-min-pass-rate=0",
        "--llm-markdown=out/summary.md",
        "--llm-history=history",
        "--junitxml=junit.xml",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The baseline is named by the model its results file records, not by the file.
    result.stdout.fnmatch_lines(
        [f"REGRESSION: anthropic:{CANDIDATE} against anthropic:{PRODUCTION} on 30 paired cases"]
    )
    markdown = (pytester.path / "out/summary.md").read_text()
    assert "regression" in markdown.lower()
    assert f"| Baseline | `anthropic:{PRODUCTION}` |" in markdown
    assert markdown in summary.read_text()
    history = list((pytester.path / "history").glob("*.json"))
    assert len(history) == 1
    document = json.loads(history[0].read_text())
    assert document["metadata"]["candidate"] == f"anthropic:{CANDIDATE}"
    comparison = document["metadata"]["comparison"]
    assert comparison["verdict"] == "regression"
    assert comparison["baseline"]["model"] == f"anthropic:{PRODUCTION}"
    # The cases that regressed, next to the statistics that judged them.
    failed = [case for case in document["cases"] if case["outcome"] == "failed"]
    assert failed
    assert comparison["regressed"] == [
        {
            "case_id": case["case_id"],
            "path": case["path"],
            "nodeid": case["nodeid"],
            "baseline_outcome": "passed",
            "candidate_outcome": "failed",
            "baseline_score": 1.0,
            "candidate_score": 0.0,
        }
        for case in sorted(failed, key=lambda case: case["line"])
    ]
    assert comparison["improved"] == []
    assert comparison["pass_to_fail"] == len(failed)
    tree = ET.parse(pytester.path / "junit.xml")
    properties = {
        (case.get("name"), prop.get("name")): prop.get("value")
        for case in tree.iter("testcase")
        for prop in case.iter("property")
    }
    assert properties[("case-001", "llm_threshold")] == "1.0"  # its exact scorer decided
    assert properties[("case-001", "llm_outcome")] in ("passed", "failed")
    assert ("case-001", "llm_score") in properties


def test_a_baseline_file_without_a_model_is_named_by_the_file(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(two_models(cases, drift=0)))
    pytester.runpytest(f"--llm-model={PRODUCTION}", "--llm-report=prod.json").assert_outcomes(
        passed=4
    )
    stored = json.loads((pytester.path / "prod.json").read_text())
    del stored["metadata"]["candidate"]  # as a results file from elsewhere may be
    (pytester.path / "prod.json").write_text(json.dumps(stored))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-baseline=prod.json")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [f"WITHIN NOISE: anthropic:{CANDIDATE} against baseline prod.json on 4 paired cases"]
    )


def test_the_compare_model_is_shown_and_recorded_with_the_id_it_answered_with(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(20)
    write_cases(pytester, "qa.jsonl", cases)
    scenario = two_models(cases, drift=0.5)
    scenario["aliases"] = {"claude-sonnet-latest": PRODUCTION}
    provider_env(make_server(scenario))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        "--llm-compare-model=claude-sonnet-latest",
        "--llm-min-pass-rate=0",
        "--llm-report=run.json",
        "--llm-markdown=summary.md",
    )
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    shown = f"anthropic:claude-sonnet-latest (answered as {PRODUCTION})"
    result.stdout.fnmatch_lines(
        [f"* anthropic:{CANDIDATE} against {shown} on 20 paired cases", f"  {shown}: pass rate *"]
    )
    assert f"| Baseline | `{shown}` |" in (pytester.path / "summary.md").read_text()
    document = json.loads((pytester.path / "run.json").read_text())
    baseline = document["metadata"]["comparison"]["baseline"]
    assert baseline["label"] == shown
    assert baseline["model"] == "anthropic:claude-sonnet-latest"
    assert baseline["answered_as"] == {PRODUCTION: 20}
    candidate = document["metadata"]["comparison"]["candidate"]
    assert (candidate["model"], candidate["answered_as"]) == (
        f"anthropic:{CANDIDATE}",
        {CANDIDATE: 20},
    )
    regressed = document["metadata"]["comparison"]["regressed"]
    failed = {case["nodeid"] for case in document["cases"] if case["outcome"] == "failed"}
    assert {case["nodeid"] for case in regressed} == failed
    assert {case["case_id"] for case in regressed} == {
        nodeid.rpartition("::")[2] for nodeid in failed
    }


def test_a_missing_baseline_file_fails_the_gate(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(two_models(cases, drift=0)))
    result = pytester.runpytest(f"--llm-model={PRODUCTION}", "--llm-baseline=nowhere.json")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["  reason: --llm-baseline: no results at *nowhere.json*"])


def test_resume_with_a_compare_model_keeps_every_case_paired(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    models = [f"--llm-model={CANDIDATE}", f"--llm-compare-model={PRODUCTION}"]
    gate = ["--llm-min-pass-rate=0", "--llm-judge-cache=off"]
    provider_env(make_server(two_models(cases, drift=0.3)))
    full = pytester.runpytest(*models, *gate, "--llm-report=full.json")
    full.stdout.fnmatch_lines(["*against anthropic:claude-sonnet-4-6 on 30 paired cases*"])
    flips = [line for line in full.outlines if line.lstrip().startswith("flips:")]

    # Interrupted: -x stops at the first case the drifted candidate fails.
    interrupted = pytester.runpytest(*models, *gate, "--llm-report=run.json", "-x")
    earlier = load_results(pytester.path / "run.json")
    assert 0 < len(earlier.cases) < 30
    assert {c.nodeid for c in earlier.compare_cases} == {c.nodeid for c in earlier.cases}
    assert interrupted.ret == pytest.ExitCode.TESTS_FAILED

    server = make_server(two_models(cases, drift=0.3))
    provider_env(server)
    resumed = pytester.runpytest(*models, *gate, "--llm-resume=run.json")
    resumed.stdout.fnmatch_lines(
        [
            f"resumed: {len(earlier.cases)} cases taken from the earlier run*",
            "*against anthropic:claude-sonnet-4-6 on 30 paired cases*",
        ]
    )
    assert [line for line in resumed.outlines if line.lstrip().startswith("flips:")] == flips
    # Only the cases the earlier run lacked were called again, by both models.
    for model in (CANDIDATE, PRODUCTION):
        calls = sum(1 for r in server.requests if r.requested_model == model)
        assert calls == 30 - len(earlier.cases)
    final = load_results(pytester.path / "run.json")
    assert len(final.cases) == len(final.compare_cases) == 30


def test_resume_with_another_compare_model_runs_every_case_again(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = exact_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(two_models(cases, drift=0))
    provider_env(server)
    pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-report=run.json").assert_outcomes(
        passed=6
    )
    server.reset_stats()
    resumed = pytester.runpytest(
        f"--llm-model={CANDIDATE}", f"--llm-compare-model={PRODUCTION}", "--llm-resume=run.json"
    )
    resumed.assert_outcomes(passed=6)
    resumed.stdout.fnmatch_lines(["*on 6 paired cases*"])
    assert sum(1 for r in server.requests if r.requested_model == CANDIDATE) == 6


ATTRIBUTION_PROMPTS = f"""\
task: qa
versions:
  default: Answer the question.
  {PRODUCTION}: Answer the question briefly.
  {CANDIDATE}: Answer the question in one line.
"""


def test_a_2x2_of_runs_records_its_prompts_and_is_checked_before_attribution(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = [
        {key: value for key, value in case.items() if key != "system"} | {"prompt": "qa"}
        for case in exact_cases(20)
    ]
    write_cases(pytester, "qa.jsonl", cases)
    (pytester.path / "prompts").mkdir()
    (pytester.path / "prompts" / "qa.yaml").write_text(ATTRIBUTION_PROMPTS)
    server = make_server(two_models(cases, drift=0.5))
    provider_env(server)
    gate = ["--llm-min-pass-rate=0", "-q"]
    cells = {
        "old_old.json": [f"--llm-model={PRODUCTION}"],
        "old_new.json": [f"--llm-model={PRODUCTION}", f"--llm-prompt-model={CANDIDATE}"],
        "new_old.json": [f"--llm-model={CANDIDATE}", f"--llm-prompt-model={PRODUCTION}"],
        "new_new.json": [f"--llm-model={CANDIDATE}"],
    }
    for name, args in cells.items():
        result = pytester.runpytest(*args, *gate, f"--llm-report={name}")
        assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    sent = {(r.requested_model, r.system) for r in server.requests}
    assert sent == {
        (PRODUCTION, "Answer the question briefly."),
        (PRODUCTION, "Answer the question in one line."),
        (CANDIDATE, "Answer the question briefly."),
        (CANDIDATE, "Answer the question in one line."),
    }
    meta = {name: load_results(pytester.path / name).metadata for name in cells}
    assert [meta[name]["prompt_model"] for name in cells] == [None, CANDIDATE, PRODUCTION, None]
    digests = [meta[name]["prompts"]["digest"] for name in cells]
    assert digests[0] == digests[2] != digests[1] == digests[3]

    paths = [str(pytester.path / name) for name in cells]
    assert compare_main(["compare", "--attribute", *paths, "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "attribution over 20 cases scored in all four runs:" in out
    assert (
        f"  new model, old prompt  40.0%  (anthropic:{CANDIDATE}, prompts {digests[0][:12]})" in out
    )

    old_old, old_new, new_old, new_new = paths
    assert compare_main(["compare", "--attribute", old_old, new_old, old_new, new_new]) == 2
    err = capsys.readouterr().err
    assert f"  - {new_old} and {old_new} are swapped: " in err
    assert err.rstrip().endswith(f"give them in the order {old_old} {old_new} {new_old} {new_new}")
