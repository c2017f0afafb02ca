"""--llm-fallback: the golden suite through the configured fallback chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import answers, qa_cases, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
FALLBACK = "claude-opus-4-7"


def chain_project(pytester: pytest.Pytester, cases: list[dict[str, Any]]) -> dict[str, Any]:
    write_cases(pytester, "qa.jsonl", cases)
    pytester.makepyprojecttoml(
        f"""
        [tool.llmregress.models.chat]
        id = "{CANDIDATE}"
        fallbacks = ["{FALLBACK}"]
        [tool.llmregress.models.judge]
        id = "{JUDGE}"
        """
    )
    return {
        "latency_ms": 10,
        "models": {
            CANDIDATE: {"answers": answers(cases)},
            FALLBACK: {"answers": answers(cases)},
            JUDGE: {"judge": True},
        },
    }


def answered_by(server: LocalProviderServer, model: str) -> int:
    return sum(1 for r in server.requests if r.resolved_model == model and r.status == 200)


def test_primary_retired_mid_run_moves_later_calls_to_the_fallback(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(12)
    server = make_server(chain_project(pytester, cases))
    provider_env(server)

    def retire() -> None:
        while answered_by(server, CANDIDATE) < 4:
            time.sleep(0.002)
        server.update_model(CANDIDATE, retired=True)

    retirer = threading.Thread(target=retire, daemon=True)
    retirer.start()
    result = pytester.runpytest(
        "--llm-model=@chat", "--llm-fallback", "--llm-concurrency=1", "--llm-min-pass-rate=0.5"
    )
    retirer.join(5)
    primary = answered_by(server, CANDIDATE)
    assert 4 <= primary < 12
    assert answered_by(server, FALLBACK) == 12 - primary
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(
        [
            f"{primary} passed, 0 failed, 0 errors*",
            f"{12 - primary} cases answered by a fallback (reported apart, not counted as the "
            "primary's passes):",
            f"  {FALLBACK}: {12 - primary}/{12 - primary} passed (100.0%)",
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_retired_primary_at_start_only_warns_with_a_fallback(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    scripted = chain_project(pytester, cases)
    scripted["models"][CANDIDATE]["retired"] = True
    provider_env(make_server(scripted))
    result = pytester.runpytest("--llm-model=@chat", "--llm-fallback")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "  reason: the primary model answered no case: fallbacks answered all 3",
            f"model warning: anthropic:{CANDIDATE} at *404*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_fallback_needs_a_configured_chain(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-fallback")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-fallback: no role in the model config has*"])
