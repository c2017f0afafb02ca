"""Prompts versioned per model in the plugin, and --llm-prompt-model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.prompts.library import prompts_digest
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

PROMPTS = f"""\
task: support-answer
variables: [policy]
versions:
  default: "Default prompt. Policy: {{policy}}"
  {CANDIDATE}: "Claude prompt. Policy: {{policy}}"
  {JUDGE}: "GPT prompt. Policy: {{policy}}"
"""

CASE = {
    "id": "refund",
    "prompt": {"task": "support-answer", "vars": {"policy": "30 days"}},
    "user": "Can I return it?",
    "reference": "Yes, within 30 days.",
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "golden_cases").mkdir()
    (pytester.path / "golden_cases" / "support.jsonl").write_text(json.dumps(CASE) + "\n")
    (pytester.path / "prompts").mkdir()
    (pytester.path / "prompts" / "support.yaml").write_text(PROMPTS)
    return pytester


def serve(make_server: MakeServer, provider_env: PointEnv) -> LocalProviderServer:
    rules = [{"match": CASE["user"], "reply": CASE["reference"]}]
    server = make_server({"models": {CANDIDATE: {"answers": rules}, JUDGE: {"judge": True}}})
    provider_env(server)
    return server


def systems(server: LocalProviderServer) -> list[str | None]:
    return [r.system for r in server.requests if r.requested_model == CANDIDATE]


def test_each_model_gets_its_own_prompt_version(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = serve(make_server, provider_env)
    project.runpytest(*model_args()).assert_outcomes(passed=1)
    assert systems(server) == ["Claude prompt. Policy: 30 days"]


def test_prompt_model_runs_the_candidate_with_another_models_prompts(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = serve(make_server, provider_env)
    project.runpytest(*model_args(f"--llm-prompt-model={JUDGE}")).assert_outcomes(passed=1)
    assert systems(server) == ["GPT prompt. Policy: 30 days"]


def test_a_case_with_a_prompt_and_no_prompt_folder_is_an_error(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = serve(make_server, provider_env)
    result = project.runpytest(*model_args("--llm-prompts-dir=nowhere"))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*prompt: *"])
    assert systems(server) == []


def test_a_broken_prompt_file_is_one_usage_error(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    serve(make_server, provider_env)
    (project.path / "prompts" / "support.yaml").write_text(
        "task: support-answer\nversions:\n  default: 'Uses {undeclared'\n"
    )
    result = project.runpytest(*model_args())
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*prompt files:*", "*prompts/support.yaml:*"])


def test_results_record_the_prompt_model_and_the_prompts_digest(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    serve(make_server, provider_env)
    project.runpytest(*model_args("--llm-report=own.json"), *run_mode).assert_outcomes(passed=1)
    own = load_results(project.path / "own.json").metadata
    assert own["prompt_model"] is None
    assert own["prompts"]["model"] == CANDIDATE
    assert own["prompts"]["source"] == "prompts"
    assert own["prompts"]["digest"] == prompts_digest(
        {"support-answer": "Claude prompt. Policy: {policy}"}
    )
    assert own["prompts"]["tasks"]["support-answer"]["version"] == CANDIDATE

    borrowed = model_args(f"--llm-prompt-model={JUDGE}", "--llm-report=borrowed.json")
    project.runpytest(*borrowed, *run_mode).assert_outcomes(passed=1)
    other = load_results(project.path / "borrowed.json").metadata
    assert other["prompt_model"] == other["prompts"]["model"] == JUDGE
    assert other["prompts"]["digest"] == prompts_digest(
        {"support-answer": "GPT prompt. Policy: {policy}"}
    )
    assert other["prompts"]["tasks"]["support-answer"] == {
        "version": JUDGE,
        "match": "exact",
        "digest": hashlib.sha256(b"GPT prompt. Policy: {policy}").hexdigest()[:12],
    }


def test_a_prompt_model_that_matches_no_version_is_a_usage_error(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    server = serve(make_server, provider_env)
    result = project.runpytest(*model_args("--llm-prompt-model=claude-sonet-4-6"), *run_mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*pytest-llmregress: --llm-prompt-model 'claude-sonet-4-6' matches no prompt version "
            "in prompts, so every task would get its 'default' (versions written for a model: "
            f"{CANDIDATE}, {JUDGE}); did you mean '{CANDIDATE}'?"
        ]
    )
    assert server.requests == []


def test_a_prompt_model_without_prompt_files_is_a_usage_error(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = serve(make_server, provider_env)
    result = project.runpytest(*model_args(f"--llm-prompt-model={JUDGE}", "--llm-prompts-dir=none"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--llm-prompt-model '{JUDGE}' matches no prompt version: no prompt files in none"]
    )
    assert server.requests == []


def test_a_fallback_answers_with_its_own_prompt_version(
    project: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    fallback = "claude-opus-4-7"
    (project.path / "prompts" / "support.yaml").write_text(
        PROMPTS + f'  {fallback}: "Opus prompt. Policy: {{policy}}"\n'
    )
    project.makepyprojecttoml(
        f"""
        [tool.pytest.ini_options]
        [tool.llmregress.models.chat]
        id = "{CANDIDATE}"
        fallbacks = ["{fallback}"]
        """
    )
    rules = [{"match": CASE["user"], "reply": CASE["reference"]}]
    server = make_server(
        {
            "models": {
                CANDIDATE: {"answers": rules, "retired": True},
                fallback: {"answers": rules},
                JUDGE: {"judge": True},
            }
        }
    )
    provider_env(server)
    result = project.runpytest("--llm-model=@chat", f"--llm-judge-model={JUDGE}", "--llm-fallback")
    result.assert_outcomes(passed=1)
    sent = [r.system for r in server.requests if r.requested_model == fallback]
    assert sent == ["Opus prompt. Policy: 30 days"]
