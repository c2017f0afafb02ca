"""Prompts versioned per model in the plugin, and --llm-prompt-model."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
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
