"""Model identity in the plugin: retired and alias ids, roles from config, resolved versions."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import answers, model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
ALIAS = "claude-haiku-4-5"  # an alias without a retirement date in the bundled data
SNAPSHOT = "claude-haiku-4-5-20251001"


def all_output(result: pytest.RunResult) -> pytest.LineMatcher:
    return pytest.LineMatcher((result.stdout.str() + result.stderr.str()).splitlines())


def test_retired_model_is_an_error_before_any_call(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    result = pytester.runpytest(
        "--llm-model=claude-sonnet-4-20250514", f"--llm-judge-model={JUDGE}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    all_output(result).fnmatch_lines(
        [
            "*no case was run*",
            "*candidate: claude-sonnet-4-20250514 retired on 2026-06-15; every request to it "
            "fails (HTTP 404)*",
        ]
    )
    assert server.requests == []


def alias_scenario(cases: list[dict[str, Any]]) -> dict[str, Any]:
    scripted = scenario(cases)
    scripted["models"][SNAPSHOT] = {"answers": answers(cases)}
    scripted["models"]["claude-haiku-4-5-20260301"] = {"answers": answers(cases)}
    del scripted["models"][CANDIDATE]
    scripted["aliases"] = {ALIAS: SNAPSHOT}
    return scripted


def test_alias_warns_and_require_pinned_refuses_it(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = alias_scenario(cases)
    moved = "claude-haiku-4-5-20260301"  # the API points the alias elsewhere than the data says
    scripted["aliases"] = {ALIAS: moved}
    server = make_server(scripted)
    provider_env(server)
    warned = pytester.runpytest(f"--llm-model={ALIAS}", f"--llm-judge-model={JUDGE}")
    warned.assert_outcomes(passed=2)
    warned.stdout.fnmatch_lines(
        [
            "llmregress: 1 model warning (lifecycle data as of *), listed in the summary",
            f"answered by: anthropic:{ALIAS} -> {moved} x2",
            # Said once, with the snapshot the API answered as (not the lifecycle data's guess).
            f"model warning: candidate: alias {ALIAS} answered as {moved} in this run; pin a "
            "dated snapshot",
        ]
    )
    assert warned.stdout.str().count(f"alias {ALIAS}") == 1
    assert "LLMRegressWarning" not in warned.stdout.str()
    server.reset_stats()
    refused = pytester.runpytest(
        f"--llm-model={ALIAS}", f"--llm-judge-model={JUDGE}", "--llm-require-pinned"
    )
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    all_output(refused).fnmatch_lines(["*--llm-require-pinned is set*", f"*alias {ALIAS}*"])
    assert server.requests == []


def test_retirement_warning_from_project_overrides(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(1)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    soon = dt.date.today() + dt.timedelta(days=10)
    pytester.makepyprojecttoml(
        f"""
        [[tool.llmregress.lifecycle]]
        id = "{CANDIDATE}"
        retires_on = "{soon.isoformat()}"
        """
    )
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"*candidate: {CANDIDATE} retires on {soon.isoformat()} (in 10 days)*"]
    )
    quiet = pytester.runpytest(*model_args("--llm-retirement-warning-days=5"))
    quiet.stdout.no_fnmatch_line("*retires on*")


def test_roles_from_the_model_config(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    pytester.makepyprojecttoml(
        f"""
        [tool.llmregress.models.chat]
        id = "{CANDIDATE}"
        [tool.llmregress.models.judge]
        id = "{JUDGE}"
        """
    )
    result = pytester.runpytest("--llm-model=@chat")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [f"llmregress: model anthropic:{CANDIDATE} at *, judge openai:{JUDGE}*"]
    )
    unknown = pytester.runpytest("--llm-model=@summary")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    all_output(unknown).fnmatch_lines(["*summary*chat*judge*"])


def test_alias_moving_within_a_run_is_flagged(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(10)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = alias_scenario(cases)
    scripted["latency_ms"] = 20
    server = make_server(scripted)
    provider_env(server)

    def repoint() -> None:
        while sum(1 for r in server.requests if r.requested_model == ALIAS) < 3:
            time.sleep(0.002)
        server.set_alias(ALIAS, "claude-haiku-4-5-20260301")

    mover = threading.Thread(target=repoint, daemon=True)
    mover.start()
    result = pytester.runpytest(
        f"--llm-model={ALIAS}", f"--llm-judge-model={JUDGE}", "--llm-concurrency=1"
    )
    mover.join(5)
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            f"answered by: anthropic:{ALIAS} -> claude-haiku-4-5-20251001 x*, "
            "claude-haiku-4-5-20260301 x*",
            f"  alias moved: anthropic:{ALIAS} answered as 2 versions in one run",
        ]
    )
