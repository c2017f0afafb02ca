"""Self-hosted and OpenAI-compatible servers through the plugin: sampling that is stated (suite
parameters, the judge's temperature 0, a refused parameter learnt once, ``top_k`` refused at
load), keyless servers, a preflight that never blocks a model that works, and concurrency that
reads a server that queues. Each against the local provider server, through the real SDKs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_llmregress.engine.runner import AdaptiveLimiter, Runner
from pytest_llmregress.providers.registry import local_server_endpoints, parse_model
from pytest_llmregress.settings import RunnerSettings
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import (
    MakeServer,
    PointEnv,
    answers,
    model_args,
    qa_cases,
    scenario,
    write_cases,
)

SELF_HOSTED = "tiny-chat-v1"


def judge_requests(server: Any) -> list[Any]:
    return [r for r in server.requests if r.requested_model == JUDGE]


def candidate_requests(server: Any, model: str = CANDIDATE) -> list[Any]:
    return [r for r in server.requests if r.requested_model == model]


# -- sampling, stated ----------------------------------------------------------------------------


def test_suite_params_go_under_each_case_and_the_judge_samples_at_zero(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    cases[1]["params"] = {"temperature": 0.7}
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-params=temperature=0,max_tokens=64"))

    result.assert_outcomes(passed=3)
    sent = {r.user_text: r.params for r in candidate_requests(server)}
    assert [sent[c["user"]]["temperature"] for c in cases] == [0, 0.7, 0]
    assert {p["max_tokens"] for p in sent.values()} == {64}
    assert [r.params.get("temperature") for r in judge_requests(server)] == [0, 0, 0]
    result.stdout.fnmatch_lines(
        [
            f"llmregress: sampling: anthropic:{CANDIDATE} temperature=0,max_tokens=64 "
            f"(--llm-params), under a case's own params; judge openai:{JUDGE} temperature=0",
            "*rerun with*--llm-params=temperature=0,max_tokens=64*",
        ]
    )


def test_suite_params_from_pyproject_tables(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    pytester.makepyprojecttoml(
        """
        [tool.llmregress]
        params = {temperature = 0.25, stop = ["###"]}
        judge_params = {temperature = "none", seed = 7}
        """
    )
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args())

    result.assert_outcomes(passed=2)
    assert [r.params.get("temperature") for r in candidate_requests(server)] == [0.25, 0.25]
    judged = judge_requests(server)
    assert [("temperature" in r.params, r.params.get("seed")) for r in judged] == [(False, 7)] * 2
    result.stdout.fnmatch_lines([f"*judge openai:{JUDGE} seed=7"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tempreature=0", "unknown parameter 'tempreature' *did you mean 'temperature'?"),
        ("temperature=5", "temperature: expected a number between 0 and 2, got integer 5"),
        ("temperature", "expected name=value, got 'temperature'"),
        ('{"temperature": ', "invalid JSON object*"),
    ],
)
def test_bad_suite_params_are_usage_errors(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    result = pytester.runpytest(f"--llm-params={value}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--llm-params*{message}*"])


def test_a_parameter_the_judge_refuses_is_learnt_once(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(8)
    write_cases(pytester, "qa.jsonl", cases)
    setup = scenario(cases)
    setup["models"][JUDGE]["refuses_params"] = ["temperature"]
    server = make_server(setup)
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-judge-concurrency=1"))

    result.assert_outcomes(passed=8)
    judged = judge_requests(server)
    assert [(r.status, "temperature" in r.params) for r in judged] == [(400, True)] + [
        (200, False)
    ] * 8
    result.stdout.fnmatch_lines(
        [
            f"model warning: openai:{JUDGE} refused the parameter temperature (*temperature*); "
            "its calls were sent without it"
        ]
    )


def test_top_k_for_openai_is_refused_when_the_file_is_loaded(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [dict(c, scorers=["exact"]) for c in qa_cases(3)]
    cases[2]["params"] = {"top_k": 5}
    write_cases(pytester, "qa.jsonl", cases)
    setup: dict[str, Any] = {
        "server": {"accepts_params": ["top_k"]},
        "models": {SELF_HOSTED: {"answers": answers(cases)}},
    }
    server = make_server(setup)
    provider_env(server)
    args = [f"--llm-model=openai:{SELF_HOSTED}"]

    refused = pytester.runpytest(*args)

    refused.stdout.fnmatch_lines(
        [
            "*golden_cases/qa.jsonl:3: case 'case-002': field 'params.top_k': the OpenAI Chat "
            f"Completions API takes no top_k (openai:{SELF_HOSTED} runs this case): remove it, "
            "or send it to a compatible server that takes it (vLLM, llama.cpp) with "
            "--llm-openai-extra-params=top_k"
        ]
    )
    assert refused.ret != pytest.ExitCode.OK
    assert candidate_requests(server, SELF_HOSTED) == []

    sent = pytester.runpytest(*args, "--llm-openai-extra-params=top_k")

    sent.assert_outcomes(passed=3)
    by_user = {r.user_text: r.params for r in candidate_requests(server, SELF_HOSTED)}
    assert by_user[cases[2]["user"]]["top_k"] == 5
    assert "top_k" not in by_user[cases[0]["user"]]


# -- keyless servers -----------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["none", "required"])
def test_a_base_url_of_your_own_needs_no_key(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    auth: str,
) -> None:
    cases = [dict(c, scorers=["exact"]) for c in qa_cases(3)]
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(
        {"server": {"auth": auth}, "models": {SELF_HOSTED: {"answers": answers(cases)}}}
    )
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)

    result = pytester.runpytest(
        f"--llm-model=openai:{SELF_HOSTED}", f"--llm-openai-base-url={server.openai_base_url}"
    )

    if auth == "none":
        result.assert_outcomes(passed=3)
        assert len(candidate_requests(server, SELF_HOSTED)) == 3
    else:  # the server wants a key: the preflight's answer names the variable to set
        assert result.ret != pytest.ExitCode.OK
        result.stderr.fnmatch_lines(
            ["*HTTP 401*no key was sent: the server wants one, set OPENAI_API_KEY*"]
        )


# -- the preflight -------------------------------------------------------------------------------


def test_the_preflight_accepts_a_model_a_cold_server_does_not_list(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [dict(c, scorers=["exact"]) for c in qa_cases(3)]
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(
        {
            "server": {"models_endpoint": "loaded", "error_shape": "detail"},
            "models": {SELF_HOSTED: {"answers": answers(cases)}},
        }
    )
    provider_env(server)

    works = pytester.runpytest(f"--llm-model=openai:{SELF_HOSTED}")

    works.assert_outcomes(passed=3)
    sent = candidate_requests(server, SELF_HOSTED)
    probes = [r for r in sent if r.params.get("max_completion_tokens") == 1]
    assert len(probes) == 1  # the one-token request of the preflight

    unknown = pytester.runpytest("--llm-model=openai:tiny-chat-v9")

    assert unknown.ret != pytest.ExitCode.OK
    unknown.stderr.fnmatch_lines(
        [
            "*preflight: no case was run*",
            "*openai:tiny-chat-v9 at http://127.0.0.1:*/v1: HTTP 404 not_found: the preflight "
            "asked three ways: GET models/tiny-chat-v9 answered HTTP 404 *; GET models listed 1 "
            "model, not this one; a one-token request answered HTTP 404 *",
        ]
    )


def test_a_model_the_server_fails_to_load_is_refused_after_a_second_probe(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    write_cases(pytester, "qa.jsonl", [dict(c, scorers=["exact"]) for c in qa_cases(2)])
    server = make_server(
        {
            "server": {
                "models_endpoint": "loaded",
                "unknown_model": {"status": 500, "shape": "text", "message": "Internal Error"},
            },
            "models": {SELF_HOSTED: {}},
        }
    )
    provider_env(server)

    result = pytester.runpytest("--llm-model=openai:tiny-chat-v9")

    assert result.ret != pytest.ExitCode.OK
    result.stderr.fnmatch_lines(
        ["*listed 0 models, not this one; a one-token request answered HTTP 500 Internal Error"]
    )
    assert [r.status for r in candidate_requests(server, "tiny-chat-v9")] == [500, 500]


# -- concurrency that reads the server -----------------------------------------------------------


def test_the_limit_halves_on_answers_that_queued_and_grows_on_fast_ones() -> None:
    async def run() -> list[int]:
        limiter = AdaptiveLimiter(8)
        seen = []
        await limiter.on_success(limiter.generation, 1.0, 0, crowded=True)  # the fastest
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, 2.5, 0, crowded=True)  # slow, not queued
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, 3.5, 0, crowded=False)  # alone: not queued
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, 3.5, 0, crowded=True)  # queued
        seen.append(limiter.current)
        stale = limiter.generation - 1
        await limiter.on_success(stale, 9.0, 0, crowded=True)  # sent before the reaction
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, 11.0, 200, crowded=True)  # long, not slow
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, 1.0, 100, crowded=True)  # the quickest
        seen.append(limiter.current)
        # As quick in all, six times slower per token: a server whose time does not grow with
        # the answer (the local server's fixed latency) is not queueing.
        await limiter.on_success(limiter.generation, 1.0, 0, crowded=True)
        seen.append(limiter.current)
        assert limiter.back_off(limiter.generation)  # a timeout
        seen.append(limiter.current)
        seen.append(limiter.lowest)
        return seen

    assert asyncio.run(run()) == [8, 8, 8, 4, 4, 5, 6, 7, 3, 3]


def test_answers_of_a_few_milliseconds_are_measured_against_the_floor() -> None:
    """A server that answers in a millisecond when idle and in 30 ms on a busy machine is not
    queueing; an answer of more than three times the floor still is."""
    floor = AdaptiveLimiter.QUICKEST_FLOOR_S

    async def run() -> list[int]:
        limiter = AdaptiveLimiter(16)
        seen = []
        await limiter.on_success(limiter.generation, 0.001, 0, crowded=True)  # the quickest
        await limiter.on_success(limiter.generation, 0.03, 0, crowded=True)  # 30x, not queued
        await limiter.on_success(limiter.generation, floor * 2.9, 0, crowded=True)
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, floor * 3.1, 0, crowded=True)  # queued
        seen.append(limiter.current)
        await limiter.on_success(limiter.generation, floor * 1.9, 0, crowded=True)  # grows
        await limiter.on_success(limiter.generation, floor * 2.1, 0, crowded=True)  # holds
        seen.append(limiter.current)
        return seen

    assert asyncio.run(run()) == [16, 8, 9]


def test_a_server_that_generates_one_request_at_a_time(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [dict(c, scorers=["exact"]) for c in qa_cases(16)]
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(
        {
            "server": {"slots": 1},
            "models": {SELF_HOSTED: {"answers": answers(cases), "latency_ms": 100}},
        }
    )
    provider_env(server)

    result = pytester.runpytest(
        f"--llm-model=openai:{SELF_HOSTED}",
        "--llm-timeout=0.45",
        "--llm-retries=6",
        "--llm-concurrency=8",
    )

    result.assert_outcomes(passed=16)
    result.stdout.fnmatch_lines(
        ["candidate calls: 16 calls, *; concurrency backed off from 8 to *"]
    )
    assert server.stats()["max_generating"] == 1


def test_timeouts_halve_the_limit(make_server: MakeServer) -> None:
    server = make_server({"server": {"slots": 1}, "models": {SELF_HOSTED: {"latency_ms": 300}}})
    runner = Runner(
        candidate=parse_model(f"openai:{SELF_HOSTED}"),
        judge=None,
        endpoints=local_server_endpoints(server.url),
        settings=RunnerSettings.defaults(
            concurrency=4, judge_concurrency=1, timeout=0.5, retries=0
        ),
    )

    async def run() -> None:
        from pytest_llmregress.providers.base import ChatMessage, ProviderError, Request

        request = Request(model=SELF_HOSTED, messages=(ChatMessage("user", "hi"),))
        try:
            outcomes = await asyncio.gather(
                *(runner.complete(request) for _ in range(4)), return_exceptions=True
            )
        finally:
            await runner.aclose()
        assert any(isinstance(o, ProviderError) and o.kind == "timeout" for o in outcomes)

    asyncio.run(run())
    assert runner.limiters["candidate"].lowest < 4
    line = runner.traffic_lines()["candidate"]
    assert line is not None
    assert "timed out" in line
    assert "backed off from 4" in line
