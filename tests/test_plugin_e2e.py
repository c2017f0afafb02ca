"""The plugin end to end: pytester runs against a local provider server over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def write_cases(pytester: pytest.Pytester, name: str, cases: list[dict[str, Any]]) -> Path:
    folder = pytester.path / "golden_cases"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(case) + "\n" for case in cases))
    return path


def qa_cases(count: int, prefix: str = "case") -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i:03d}",
            "system": "Answer briefly.",
            "user": f"question number {i} about {prefix}",
            "reference": f"The answer to {prefix} question {i} is {i * 7}.",
        }
        for i in range(count)
    ]


def answers(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"match": c["user"], "reply": c["reference"]} for c in cases]


def scenario(cases: list[dict[str, Any]], **candidate: Any) -> dict[str, Any]:
    return {
        "models": {
            CANDIDATE: {"answers": answers(cases), **candidate},
            JUDGE: {"judge": True, "system_fingerprint": "fp_test"},
        }
    }


def model_args(*extra: str) -> list[str]:
    return [f"--llm-model={CANDIDATE}", f"--llm-judge-model={JUDGE}", *extra]


def test_all_cases_pass_and_each_runs_exactly_once(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(12)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args(), *run_mode)

    result.assert_outcomes(passed=12)
    assert result.ret == pytest.ExitCode.OK
    calls = Counter(
        (r.requested_model, r.user_text) for r in server.requests if r.requested_model == CANDIDATE
    )
    assert sorted(calls) == sorted((CANDIDATE, c["user"]) for c in cases)
    assert set(calls.values()) == {1}
    judge_calls = [r for r in server.requests if r.requested_model == JUDGE]
    assert len(judge_calls) == 12
    result.stdout.fnmatch_lines(
        [
            "*= llmregress =*",
            f"PASSED: anthropic:{CANDIDATE} on 12 golden cases",
            "pass rate 100.0% (95% CI *) against minimum 100.0%",
            "12 passed, 0 failed, 0 errors*",
            f"answered by: anthropic:{CANDIDATE} -> {CANDIDATE} x12",
            f"answered by: openai:{JUDGE} -> {JUDGE} (fp_test) x12",
        ]
    )


def test_without_xdist_plugin(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    result = pytester.runpytest(*model_args(), "-p", "no:xdist")
    result.assert_outcomes(passed=3)


def drifted(count: int, bad: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cases whose first ``bad`` answers are wrong."""
    cases = qa_cases(count)
    scripted = scenario(cases)
    rules = scripted["models"][CANDIDATE]["answers"]
    for rule in rules[:bad]:
        rule["reply"] = "Completely unrelated text about gardening tools."
    return cases, scripted


@pytest.mark.parametrize(
    ("min_pass_rate", "expected"),
    [("0.7", pytest.ExitCode.OK), ("0.9", pytest.ExitCode.TESTS_FAILED)],
)
def test_gate_decides_the_exit_status(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    run_mode: list[str],
    min_pass_rate: str,
    expected: pytest.ExitCode,
) -> None:
    cases, scripted = drifted(10, bad=2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scripted))

    result = pytester.runpytest(*model_args(f"--llm-min-pass-rate={min_pass_rate}"), *run_mode)

    result.assert_outcomes(passed=8, failed=2)
    assert result.ret == expected
    verdict = "PASSED" if expected == pytest.ExitCode.OK else "FAILED"
    result.stdout.fnmatch_lines(
        [f"{verdict}: anthropic:{CANDIDATE} on 10 golden cases", "pass rate 80.0% *"]
    )
    if expected != pytest.ExitCode.OK:
        result.stdout.fnmatch_lines(["  reason: pass rate 80.0% (8/10) is below the minimum 90.0%"])


def test_failing_item_shows_its_verdict_not_a_traceback(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases, scripted = drifted(2, bad=1)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scripted))
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*golden case 'case-000' (golden_cases/qa.jsonl:1) failed: score 0.*, threshold 0.85",
            f"  FAIL judge ?openai:{JUDGE}?: 0.*(threshold 0.85): The candidate differs*",
            "  diff (reference -> output):",
            "    -The answer to case question 0 is 0.",
            "    +Completely unrelated text about gardening tools.",
        ]
    )
    result.stdout.no_fnmatch_line("*pytest_llmregress/*.py:*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_ordinary_test_failures_still_fail_the_session(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases, scripted = drifted(4, bad=1)
    write_cases(pytester, "qa.jsonl", cases)
    pytester.makepyfile(test_plain="def test_broken():\n    assert 1 == 2\n")
    provider_env(make_server(scripted))
    result = pytester.runpytest(*model_args("--llm-min-pass-rate=0.5"))
    result.assert_outcomes(passed=3, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_failed_model_calls_are_errors_not_failures(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    broken = scenario(cases)
    # Permanent for the first three requests: with no retries, three cases error.
    broken["models"][CANDIDATE]["errors"] = [{"status": 500, "first_n": 3}]
    provider_env(make_server(broken))

    result = pytester.runpytest(
        *model_args("--llm-retries=0", "--llm-min-pass-rate=0.5"), *run_mode
    )

    result.assert_outcomes(passed=3, errors=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "pass rate 100.0% (95% CI *) against minimum 50.0%",
            "3 passed, 0 failed, 3 errors*",
            "*reason: 3 of 6 cases errored (50.0% > max error rate 0.0%): 3 model or judge "
            "calls failed; not the model's quality",
        ]
    )
    result.stdout.fnmatch_lines(["*model call failed: anthropic:*HTTP 500*"])


def test_error_budget_allows_some_errors(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    broken = scenario(cases)
    broken["models"][CANDIDATE]["errors"] = [{"status": 404, "first_n": 1}]
    provider_env(make_server(broken))
    result = pytester.runpytest(*model_args("--llm-max-error-rate=0.25"))
    result.assert_outcomes(passed=3, errors=1)
    assert result.ret == pytest.ExitCode.OK


def test_transient_errors_are_retried(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    flaky = scenario(cases)
    flaky["models"][CANDIDATE]["errors"] = [{"status": 429, "first_n": 4, "retry_after": 0.01}]
    flaky["models"][JUDGE]["errors"] = [{"status": 529, "first_n": 2, "retry_after": 0.01}]
    server = make_server(flaky)
    provider_env(server)
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=5)
    assert server.stats()["by_status"][429] == 4


def test_unparseable_judge_reply_is_an_error(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    garbled = scenario(cases)
    garbled["models"][JUDGE]["malformed_share"] = 1.0
    provider_env(make_server(garbled))
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*scoring failed: judge reply is not JSON*"])
    result.stdout.no_fnmatch_line("*score 0.00*")
    # The judge answered: its tokens and the model that answered count all the same.
    result.stdout.fnmatch_lines(
        ["tokens: candidate * judge [1-9]* in / [1-9]* out", f"answered by: openai:{JUDGE} -> *x3"]
    )


def test_results_file(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases, scripted = drifted(5, bad=1)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scripted))
    result = pytester.runpytest(*model_args("--llm-report=out/results.json"), *run_mode)
    result.assert_outcomes(passed=4, failed=1)
    document = json.loads((pytester.path / "out/results.json").read_text())
    assert not (pytester.path / "out/results.json.partial.jsonl").exists()
    assert document["version"] == 1
    meta = document["metadata"]
    assert meta["candidate"] == f"anthropic:{CANDIDATE}"
    assert meta["judge"] == f"openai:{JUDGE}"
    assert meta["verdict"]["passed"] == 4
    assert meta["verdict"]["failed"] == 1
    assert meta["resolved_models"][f"anthropic:{CANDIDATE}"] == {CANDIDATE: 5}
    by_id = {c["case_id"]: c for c in document["cases"]}
    assert sorted(by_id) == [c["id"] for c in cases]
    assert by_id["case-000"]["outcome"] == "failed"
    assert by_id["case-001"]["outcome"] == "passed"
    assert by_id["case-001"]["output"] == cases[1]["reference"]
    assert by_id["case-001"]["completion"]["resolved_model"] == CANDIDATE
    assert by_id["case-001"]["completion"]["request_id"].startswith("req_")
    assert by_id["case-001"]["scores"][0]["scorer"] == "judge"
    text = (pytester.path / "out/results.json").read_text()
    assert "sk-ant-test-secret" not in text
    assert "sk-test-secret" not in text


def test_results_survive_a_crash(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    # Collected after golden_cases/: the process dies hard after the golden cases ran.
    pytester.makepyfile(test_zz_crash="import os\n\ndef test_crash():\n    os._exit(3)\n")
    provider_env(make_server(scenario(cases)))
    result = pytester.runpytest_subprocess(*model_args("--llm-report=results.json"))
    assert result.ret == 3
    assert not (pytester.path / "results.json").exists()
    journal = pytester.path / "results.json.partial" / "main.jsonl"
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "header"
    finished = sorted(json.loads(line)["case"]["case_id"] for line in lines[1:])
    assert finished == [c["id"] for c in cases]
    assert sorted(c.case_id for c in load_results(pytester.path / "results.json").cases) == finished


def test_without_model_golden_items_skip_and_other_tests_run(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(2))
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no model under test: run with --llm-model=ID*"])


def test_missing_api_key_is_one_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-present")
    write_cases(pytester, "qa.jsonl", qa_cases(3))
    result = pytester.runpytest(*model_args())
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*ANTHROPIC_API_KEY is not set, and anthropic:{CANDIDATE} (candidate) needs it.*"]
    )
    assert "OPENAI_API_KEY" not in result.stderr.str()  # the judge has its key
    assert "sk-present" not in result.stdout.str() + result.stderr.str()


def test_selection_by_id_and_tag(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    cases[1]["tags"] = ["rag"]
    cases[2]["tags"] = ["rag", "multi-turn"]
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    result = pytester.runpytest(*model_args("-m", "rag", "--strict-markers"))
    result.assert_outcomes(passed=2)
    result = pytester.runpytest(*model_args("-k", "case-003"))
    result.assert_outcomes(passed=1)
    asked = [r.user_text for r in server.requests if r.requested_model == CANDIDATE]
    assert sorted(asked) == sorted([cases[1]["user"], cases[2]["user"], cases[3]["user"]])


def test_collection_order_and_ids(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "b.jsonl", qa_cases(2, "b"))
    write_cases(pytester, "a.jsonl", qa_cases(2, "a"))
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "golden_cases/a.jsonl::a-000",
            "golden_cases/a.jsonl::a-001",
            "golden_cases/b.jsonl::b-000",
            "golden_cases/b.jsonl::b-001",
        ]
    )


def test_malformed_file_is_a_collection_error_and_other_files_run(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "good.jsonl", cases)
    bad = pytester.path / "golden_cases" / "bad.jsonl"
    bad.write_text('{"id": "ok-1", "user": "hi", "reference": "x"}\n{"id": "oops", "user": 5}\n')
    provider_env(make_server(scenario(cases)))
    result = pytester.runpytest(*model_args(), *run_mode)
    result.assert_outcomes(passed=3, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*ERROR collecting golden_cases/bad.jsonl*", "*bad.jsonl:2*user*"])


def test_python_collection_errors_still_stop_the_session(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "good.jsonl", qa_cases(1))
    pytester.makepyfile(test_broken="import no_such_module_here\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_require_cross_family_refuses_a_same_family_judge_before_any_call(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(1)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"]["claude-opus-4-7"] = {"judge": True}
    server = make_server(scripted)
    provider_env(server)
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        "--llm-judge-model=claude-opus-4-7",
        "--llm-require-cross-family",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*the judge anthropic:claude-opus-4-7 is of the same family (claude)*"
            "--llm-require-cross-family refuses it*"
        ]
    )
    assert server.requests == []


@pytest.mark.parametrize("source", ["command line", "pyproject"])
def test_same_family_judge_warns_at_the_setting_that_chose_it(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, source: str
) -> None:
    cases = qa_cases(1)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"]["claude-opus-4-7"] = {"judge": True}
    provider_env(make_server(scripted))
    if source == "pyproject":
        pytester.makepyprojecttoml(
            f"""
            [tool.pytest.ini_options]
            [tool.llmregress]
            model = "{CANDIDATE}"
            judge_model = "claude-opus-4-7"
            """
        )
        result = pytester.runpytest()
        where = ["*pyproject.toml:4: LLMRegressWarning: the judge*", '*judge_model = "claude-*']
    else:
        result = pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-judge-model=claude-opus-4-7")
        where = [
            "pytest command line (--llm-judge-model)*",
            "*LLMRegressWarning: the judge anthropic:claude-opus-4-7 is of the same family "
            "(claude)*",
        ]
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*warnings summary*", *where])
    assert "pytest_llmregress" not in result.stdout.str()  # located at the user's config


def test_deterministic_scorers_need_no_judge(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [
        {"id": "route", "user": "charged twice", "reference": "billing", "scorers": ["exact"]},
        {"id": "json", "user": "give json", "scorers": [{"json": {"fields": {"a": 1}}}]},
    ]
    write_cases(pytester, "det.jsonl", cases)
    provider_env(
        make_server(
            {
                "models": {
                    CANDIDATE: {
                        "answers": [
                            {"match": "charged twice", "reply": "billing"},
                            {"match": "give json", "reply": '```json\n{"a": 2}\n```'},
                        ]
                    }
                }
            }
        )
    )
    result = pytester.runpytest(f"--llm-model={CANDIDATE}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL json*"])


def test_settings_from_pyproject_and_precedence(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases, scripted = drifted(4, bad=1)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scripted))
    pytester.makepyprojecttoml(
        f"""
        [tool.llmregress]
        model = "{CANDIDATE}"
        judge_model = "{JUDGE}"
        min_pass_rate = 0.5
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.OK
    result = pytester.runpytest("--llm-min-pass-rate=0.9")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_bad_settings_are_clear_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-min-pass-rate=1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--llm-min-pass-rate: expected a number between 0 and 1, got '1.5'*"]
    )
    pytester.makepyprojecttoml("[tool.llmregress]\nmodle = 'x'\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key(s) in ?tool.llmregress?: modle*"])


def test_unknown_provider_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-model=mystery-model-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot tell which provider serves 'mystery-model-1'*"])


def test_openai_compatible_server_via_prefix(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = {
        "models": {"llama-3.3-70b": {"answers": answers(cases)}, "claude-opus-4-7": {"judge": True}}
    }
    server = make_server(scripted)
    provider_env(server)
    result = pytester.runpytest(
        "--llm-model=openai:llama-3.3-70b", "--llm-judge-model=claude-opus-4-7"
    )
    result.assert_outcomes(passed=2)
    assert {r.endpoint for r in server.requests if r.requested_model == "llama-3.3-70b"} == {
        "/v1/chat/completions"
    }


def test_serve_option_runs_with_no_key_and_no_network(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, run_mode: list[str]
) -> None:
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    (pytester.path / "scenario.json").write_text(json.dumps(scenario(cases)))
    result = pytester.runpytest(*model_args("--llm-serve=scenario.json"), *run_mode)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["llmregress: model anthropic:* at http://127.0.0.1:*, local server scenario.json*"]
    )


def test_llm_judge_fixture_in_a_plain_test(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    provider_env(make_server({"models": {JUDGE: {"judge": True}}}))
    pytester.makepyfile(
        test_judged="""
        def test_close(llm_judge):
            score = llm_judge("Paris is the capital.", "Paris is the capital.", threshold=0.9)
            assert score.passed and score.value > 0.9

        def test_far(llm_judge):
            score = llm_judge("Bananas are yellow.", "The capital of France is Paris.")
            assert not score.passed
        """
    )
    result = pytester.runpytest(f"--llm-judge-model={JUDGE}")
    result.assert_outcomes(passed=2)


def test_llm_judge_fixture_takes_a_rubric(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    judge_scores = {"cites_policy": 0.2, "polite": 1.0}
    server = make_server({"models": {JUDGE: {"judge": True, "judge_scores": judge_scores}}})
    provider_env(server)
    pytester.makepyfile(
        test_judged="""
        import pytest

        RUBRIC = [
            {"name": "cites_policy", "description": "names the refund policy", "weight": 3},
            {"name": "polite", "description": "no blame on the customer"},
        ]

        def test_rubric(llm_judge):
            score = llm_judge("Sorry, no refund.", "Policy 4.2: refunds in 30 days.", rubric=RUBRIC)
            assert score.criteria == {"cites_policy": 0.2, "polite": 1.0}
            assert score.value == pytest.approx((0.2 * 3 + 1.0) / 4)
            assert not score.passed

        def test_bad_rubric(llm_judge):
            with pytest.raises(ValueError, match=r"rubric\\[0\\]\\.name: missing"):
                llm_judge("a", "b", rubric=[{"description": "x"}])
        """
    )
    result = pytester.runpytest(f"--llm-judge-model={JUDGE}")
    result.assert_outcomes(passed=2)
    (system,) = [r.system for r in server.requests if r.requested_model == JUDGE]
    assert system is not None
    assert "- cites_policy: names the refund policy" in system


def test_loading_the_plugin_imports_no_sdk() -> None:
    code = (
        "import sys, pytest_llmregress.plugin\n"
        "names = ('anthropic', 'openai', 'yaml', 'httpx', 'httpx2')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "n2"])
def test_pytest_processes_never_import_an_sdk_the_runner_process_does(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, workers: list[str]
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    pytester.makeconftest(
        """
        import json, sys

        def pytest_sessionfinish(session):
            workerinput = getattr(session.config, "workerinput", None)
            name = workerinput["workerid"] if workerinput else "main"
            heavy = sorted({"anthropic", "openai", "httpx2"} & set(sys.modules))
            with open(f"modules-{name}.json", "w") as handle:
                json.dump(heavy, handle)
        """
    )
    result = pytester.runpytest_subprocess(*model_args(), *workers)
    result.assert_outcomes(passed=4)
    seen = {p.name: json.loads(p.read_text()) for p in pytester.path.glob("modules-*.json")}
    expected = {"main"} | ({"gw0", "gw1"} if workers else set())  # the controller and workers
    assert set(seen) == {f"modules-{name}.json" for name in expected}
    assert all(modules == [] for modules in seen.values()), seen


def test_a_session_that_calls_no_model_stops_the_runner_instead_of_waiting(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(1)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    pytester.makepyfile(
        test_plain="""
        from pytest_llmregress.session import get_session

        def test_plain(request):
            session = get_session(request.config)
            assert session.runner_process is None and session.runner is None
        """
    )
    pytester.runpytest(*model_args(), "test_plain.py").assert_outcomes(passed=1)
    # With a golden case selected too, the runner stays and the case runs.
    both = pytester.runpytest(*model_args(), "test_plain.py", "golden_cases")
    both.assert_outcomes(passed=1, failed=1)


def test_golden_items_use_fixtures_like_any_test(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    pytester.makeconftest(
        """
        import pytest

        SEEN = []

        @pytest.fixture(autouse=True)
        def tracked(request):
            SEEN.append(request.node.nodeid)
            yield

        def pytest_sessionfinish(session):
            print("fixture saw:", ",".join(SEEN))
        """
    )
    result = pytester.runpytest(*model_args(), "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*fixture saw: golden_cases/qa.jsonl::case-000,golden_cases/qa.jsonl::case-001*"]
    )


def test_case_deadline_makes_a_slow_case_an_error(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    slow = scenario(cases)
    slow["models"][CANDIDATE]["answers"][0]["reply"] = cases[0]["reference"]
    slow["models"][CANDIDATE]["errors"] = [
        {"status": 500, "match": cases[0]["user"], "latency_ms": 300}
    ]
    provider_env(make_server(slow))
    result = pytester.runpytest(*model_args("--llm-case-deadline=0.5", "--llm-max-error-rate=1"))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*case deadline of 0.5 s exceeded (--llm-case-deadline)*"])


def test_llm_server_fixture_serves_both_wire_formats(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_served="""
        import pytest
        import anthropic
        import openai

        @pytest.fixture
        def llm_server_scenario():
            return {"models": {"gpt-5.5-2026-04-23": {"default_reply": "pong"},
                               "claude-sonnet-4-6": {"default_reply": "pong"}}}

        def test_both(llm_server):
            a = anthropic.Anthropic(api_key="k", base_url=llm_server.url, max_retries=0)
            o = openai.OpenAI(api_key="k", base_url=llm_server.openai_base_url, max_retries=0)
            m = a.messages.create(model="claude-sonnet-4-6", max_tokens=5,
                                  messages=[{"role": "user", "content": "ping"}])
            c = o.chat.completions.create(model="gpt-5.5-2026-04-23",
                                          messages=[{"role": "user", "content": "ping"}])
            assert m.content[0].text == c.choices[0].message.content == "pong"
            assert llm_server.stats()["requests"] == 2
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
