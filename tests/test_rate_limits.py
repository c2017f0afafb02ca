"""Rate limits cost time, never errors: 429s with ``retry-after`` are waited out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.engine.runner import Runner
from pytest_llmregress.providers.base import ChatMessage, Completion, Request
from pytest_llmregress.providers.registry import ModelRef, local_server_endpoints
from pytest_llmregress.settings import RunnerSettings
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_rate_limited_run_at_default_settings_ends_without_errors(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, seed: int
) -> None:
    """200 cases, a fifth of all requests answered 429 with retry-after: every case passes.

    Five seeds are five different patterns of rejections; default settings throughout.
    """
    cases = qa_cases(200)
    write_cases(pytester, "qa.jsonl", cases)
    limited = scenario(cases)
    limited["seed"] = seed
    for model in (CANDIDATE, JUDGE):
        limited["models"][model]["errors"] = [{"status": 429, "share": 0.2, "retry_after": 0.02}]
    server = make_server(limited)
    provider_env(server)
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=200)
    assert result.ret == pytest.ExitCode.OK
    # Enough rejections that four in a row happened somewhere: what the old policy lost.
    assert server.stats()["by_status"].get(429, 0) > 60


def test_a_real_rate_limit_is_waited_out(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """A token bucket (as providers limit): every request beyond it is a 429 until the time
    it names. The run adapts to the limit and every case is scored."""
    cases = qa_cases(80)
    write_cases(pytester, "qa.jsonl", cases)
    limited = scenario(cases)
    for model in (CANDIDATE, JUDGE):
        limited["models"][model]["rate_limit"] = {"requests_per_second": 40, "burst": 4}
    server = make_server(limited)
    provider_env(server)
    result = pytester.runpytest(*model_args())
    result.assert_outcomes(passed=80)
    assert server.stats()["by_status"].get(429, 0) > 0


def limited_runner(server: LocalProviderServer, concurrency: int) -> Runner:
    return Runner(
        candidate=ModelRef("anthropic", "m"),
        judge=None,
        endpoints=local_server_endpoints(server.url),
        settings=RunnerSettings.defaults(
            concurrency=concurrency,
            judge_concurrency=1,
            timeout=10.0,
            retries=0,  # rate limits do not use them
        ),
        base_delay=0.001,
    )


def ask_all(runner: Runner, count: int) -> list[Completion]:
    async def run() -> list[Completion]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        runner.complete(
                            Request(model="m", messages=(ChatMessage("user", f"q{i}"),))
                        )
                        for i in range(count)
                    )
                )
            )
        finally:
            await runner.aclose()

    return asyncio.run(run())


def first_429(retry_after: float) -> dict[str, Any]:
    rule = {"status": 429, "first_n": 1, "retry_after": retry_after}
    return {"models": {"m": {"default_reply": "ok", "errors": [rule]}}}


def test_a_rate_limited_call_keeps_its_slot_while_it_waits(make_server: MakeServer) -> None:
    """With one slot, the call told to come back is answered before any fresh call starts."""
    server = make_server(first_429(0.05))
    answers = ask_all(limited_runner(server, concurrency=1), 3)
    assert [a.attempts for a in answers].count(2) == 1
    requests = sorted(server.requests, key=lambda r: r.time)
    assert [r.status for r in requests] == [429, 200, 200, 200]
    # the second request is the retry of the first, not a fresh call that took its slot
    assert requests[0].user_text == requests[1].user_text


def test_a_retry_after_holds_new_calls_back(make_server: MakeServer) -> None:
    """Two calls in flight, one told to wait 0.3 s: the ten waiting calls wait too.

    Without the hold, all ten would start (and finish) within those 0.3 s. With it, only the
    calls that started before the client read the 429 can (a few, on a loaded machine).
    """
    server = make_server(first_429(0.3))
    runner = limited_runner(server, concurrency=2)
    answers = ask_all(runner, 12)
    assert all(a.text == "ok" for a in answers)
    requests = sorted(server.requests, key=lambda r: r.time)
    assert requests[0].status == 429
    within = [r.user_text for r in requests[1:] if r.time < requests[0].time + 0.3]
    assert len(within) <= 5, within  # 11 without the hold
    assert runner.limiters["candidate"].held == 1
