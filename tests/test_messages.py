"""Messages that tell the truth: what the summary says matches what happened."""

from __future__ import annotations

import pytest

from tests.conftest import CANDIDATE
from tests.test_plugin_e2e import (
    MakeServer,
    PointEnv,
    model_args,
    qa_cases,
    scenario,
    write_cases,
)


@pytest.mark.parametrize("workers", [[], ["-n2"]], ids=["one-process", "n2"])
def test_a_golden_file_that_fails_to_load_is_named_and_the_suite_does_not_pass(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, workers: list[str]
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "good.jsonl", cases)
    (pytester.path / "golden_cases" / "broken.jsonl").write_text('{"id": "x", "user": 5}\n')
    provider_env(make_server(scenario(cases)))

    result = pytester.runpytest(*model_args(), *workers)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3, errors=1)
    out = result.stdout.str()
    assert "PASSED:" not in out
    result.stdout.fnmatch_lines(
        [
            f"FAILED: anthropic:{CANDIDATE} on 3 golden cases",
            "*reason: 1 golden file could not be loaded (see the collection errors above): "
            "golden_cases/broken.jsonl",
        ]
    )


def test_a_judged_case_without_a_reference_is_a_case_problem_not_a_provider_failure(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    provider_env(make_server(scenario(cases)))
    del cases[1]["reference"]
    write_cases(pytester, "qa.jsonl", cases)

    result = pytester.runpytest(*model_args())

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*reason: 1 of 2 cases errored (50.0% > max error rate 0.0%): 1 cases could not be "
            "scored (a golden-file, prompt or scorer problem); not the model's quality",
        ]
    )
    assert "model or judge calls failed" not in result.stdout.str()


def test_a_preflight_refusal_prints_no_pytest_internals(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][CANDIDATE]["retired"] = True
    provider_env(make_server(scripted))

    result = pytester.runpytest_subprocess(*model_args())

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "ERROR: pytest-llmregress: preflight: no case was run" in output
    assert "_pytest.outcomes" not in output
    assert "Exit:" not in output


def test_model_warnings_are_said_when_no_case_runs(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """The header promises the warnings in the summary; they come even when nothing ran."""
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))

    result = pytester.runpytest(*model_args("--llm-model=claude-haiku-4-5", "-k", "nothing"))

    result.stdout.fnmatch_lines(
        [
            "llmregress: 1 model warning (*), listed in the summary",
            "*= llmregress =*",
            "model warning: candidate: alias claude-haiku-4-5 *",
        ]
    )
