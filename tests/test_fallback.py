"""FallbackChain against the local provider server, through the real Anthropic and OpenAI SDKs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.providers.base import ChatMessage, ProviderError, Request
from pytest_llmregress.providers.registry import (
    Endpoints,
    ModelRef,
    ModelSpecError,
    local_server_endpoints,
)
from pytest_llmregress.providers.retries import RetryPolicy
from pytest_llmregress.runtime.fallback import (
    FallbackAliasWarning,
    FallbackChain,
    FallbackExhausted,
    FallbackResult,
)
from pytest_llmregress.testing.server import LocalProviderServer

PRIMARY = "claude-sonnet-4-6"
SECOND = "claude-opus-4-7"
OPENAI = "gpt-5.5-2026-04-23"
# Two waits of a 0.004 s retry-after (1.25x with jitter) fit in 0.01 s, a third does not.
FAST_RETRIES = RetryPolicy(retries=2, base_delay=0.001, max_delay=0.01, rate_limit_wait=0.01)

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]


def scenario(changes: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Three models that answer; ``changes`` adds scenario keys per model id."""
    models: dict[str, dict[str, Any]] = {
        PRIMARY: {"default_reply": "primary says hi"},
        SECOND: {"default_reply": "opus says hi"},
        OPENAI: {"default_reply": "gpt says hi"},
    }
    for model, extra in (changes or {}).items():
        models[model].update(extra)
    return {"models": models}


def chain(server: LocalProviderServer, *models: str, **kwargs: Any) -> FallbackChain:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return FallbackChain(list(models), local_server_endpoints(server.url), **kwargs)


def ask(text: str = "hello") -> Request:
    return Request(model="ignored", messages=(ChatMessage("user", text),))


def log(server: LocalProviderServer) -> list[tuple[str | None, int]]:
    return [(r.requested_model, r.status) for r in server.requests]


def settle(server: LocalProviderServer) -> None:
    """Wait until the server has finished every request (a timed-out one answers late)."""
    deadline = time.monotonic() + 5
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- falling through ----------------------------------------------------------------------------


def test_primary_retired_mid_run_moves_every_later_call_to_the_fallback(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(scenario())

    async def run() -> list[FallbackResult]:
        results = []
        async with chain(server, PRIMARY, SECOND) as fallback:
            for i in range(2):
                results.append(await fallback.acomplete(ask(f"before {i}")))
            server.update_model(PRIMARY, retired=True)
            for i in range(3):
                results.append(await fallback.acomplete(ask(f"after {i}")))
        return results

    with caplog.at_level(logging.WARNING, logger="pytest_llmregress.fallback"):
        results = asyncio.run(run())

    assert [r.answered_by for r in results] == [PRIMARY, PRIMARY, SECOND, SECOND, SECOND]
    assert [r.completion.text for r in results[1:3]] == ["primary says hi", "opus says hi"]
    assert [r.completion.fallback_model for r in results] == [None, None, SECOND, SECOND, SECOND]
    assert not results[0].failures
    assert not results[0].used_fallback
    for result in results[2:]:
        assert result.used_fallback
        assert result.ref == ModelRef("anthropic", SECOND)
        assert [(e.kind, e.status, e.model) for e in result.failures] == [
            ("not_found", 404, PRIMARY)
        ]
        assert result.completion.resolved_model == SECOND
    assert log(server) == [
        (PRIMARY, 200),
        (PRIMARY, 200),
        *[(PRIMARY, 404), (SECOND, 200)] * 3,
    ]
    warnings_logged = [r for r in caplog.records if r.name == "pytest_llmregress.fallback"]
    assert len(warnings_logged) == 3
    assert all(r.levelno == logging.WARNING for r in warnings_logged)
    assert f"anthropic:{SECOND} answered after anthropic:{PRIMARY}" in warnings_logged[0].message


def test_sync_api_falls_through_on_a_retired_model(make_server: MakeServer) -> None:
    server = make_server(scenario())
    fallback = chain(server, PRIMARY, SECOND)
    assert fallback.complete(ask()).answered_by == PRIMARY
    server.update_model(PRIMARY, retired=True)
    result = fallback.complete(ask())
    assert result.answered_by == SECOND
    assert result.completion.text == "opus says hi"
    assert log(server) == [(PRIMARY, 200), (PRIMARY, 404), (SECOND, 200)]


def test_unknown_model_falls_through(make_server: MakeServer) -> None:
    server = make_server(scenario())
    result = chain(server, "claude-opus-9", PRIMARY).complete(ask())
    assert result.answered_by == PRIMARY
    assert result.failures[0].kind == "not_found"


def test_cross_provider_chain(make_server: MakeServer) -> None:
    server = make_server(scenario({PRIMARY: {"retired": True}}))
    result = chain(server, PRIMARY, f"openai:{OPENAI}").complete(ask())
    assert result.answered_by == OPENAI
    assert result.ref == ModelRef("openai", OPENAI)
    assert result.completion.provider == "openai"
    assert result.completion.text == "gpt says hi"
    assert result.completion.fallback_model == OPENAI
    assert [r.endpoint for r in server.requests] == ["/v1/messages", "/v1/chat/completions"]
    assert log(server) == [(PRIMARY, 404), (OPENAI, 200)]


def test_timeout_falls_through_without_retrying_the_slow_model(make_server: MakeServer) -> None:
    server = make_server(scenario({PRIMARY: {"latency_ms": 1200}}))
    result = chain(server, PRIMARY, OPENAI, timeout=0.4).complete(ask())
    assert result.answered_by == OPENAI
    assert [(e.kind, e.model, e.attempts) for e in result.failures] == [("timeout", PRIMARY, 1)]
    settle(server)
    # One request to the slow primary (answered after the client gave up), then the fallback.
    assert sorted(log(server)) == sorted([(PRIMARY, 200), (OPENAI, 200)])
    assert [r.requested_model for r in server.requests].count(PRIMARY) == 1


def test_rate_limit_and_server_errors_are_retried_before_falling_through(
    make_server: MakeServer,
) -> None:
    server = make_server(
        scenario(
            {
                PRIMARY: {"errors": [{"status": 429, "retry_after": 0.004}]},
                SECOND: {"errors": [{"status": 503}]},
            }
        )
    )
    result = chain(server, PRIMARY, SECOND, OPENAI).complete(ask())
    assert result.answered_by == OPENAI
    assert [(e.kind, e.status, e.attempts) for e in result.failures] == [
        ("rate_limit", 429, 3),
        ("server", 503, 3),
    ]
    assert log(server) == [(PRIMARY, 429)] * 3 + [(SECOND, 503)] * 3 + [(OPENAI, 200)]


def test_a_timeout_after_a_retry_counts_both_attempts(make_server: MakeServer) -> None:
    server = make_server(
        scenario({PRIMARY: {"latency_ms": 600, "errors": [{"status": 529, "first_n": 1}]}})
    )
    result = chain(server, PRIMARY, OPENAI, timeout=0.3).complete(ask())
    assert result.answered_by == OPENAI
    assert [(e.kind, e.attempts) for e in result.failures] == [("timeout", 2)]
    settle(server)
    assert sorted(log(server)) == sorted([(PRIMARY, 529), (PRIMARY, 200), (OPENAI, 200)])


def test_a_transient_error_is_retried_on_the_same_model(make_server: MakeServer) -> None:
    server = make_server(scenario({PRIMARY: {"errors": [{"status": 500, "first_n": 1}]}}))
    result = chain(server, PRIMARY, SECOND).complete(ask())
    assert result.answered_by == PRIMARY
    assert result.completion.attempts == 2
    assert not result.failures
    assert log(server) == [(PRIMARY, 500), (PRIMARY, 200)]


@pytest.mark.parametrize(
    ("rule", "kind"),
    [
        ({"status": 400, "first_n": 1}, "bad_request"),
        ({"status": 401, "first_n": 1}, "auth"),
        ({"status": 429, "quota": True, "first_n": 1}, "quota"),
    ],
)
def test_other_errors_reraise_without_trying_the_fallback(
    make_server: MakeServer, rule: dict[str, Any], kind: str
) -> None:
    server = make_server(scenario({OPENAI: {"errors": [rule]}}))
    fallback = chain(server, f"openai:{OPENAI}", PRIMARY)
    with pytest.raises(ProviderError) as info:
        fallback.complete(ask())
    assert not isinstance(info.value, FallbackExhausted)
    assert info.value.kind == kind
    assert info.value.status == rule["status"]
    assert log(server) == [(OPENAI, rule["status"])]
    # first_n: 1 -> the next call is answered by the chain's primary again.
    assert fallback.complete(ask()).answered_by == OPENAI


def test_a_400_after_a_fallthrough_carries_the_earlier_failure(make_server: MakeServer) -> None:
    server = make_server(
        scenario({PRIMARY: {"retired": True}, SECOND: {"errors": [{"status": 400}]}})
    )
    with pytest.raises(ProviderError) as info:
        chain(server, PRIMARY, SECOND, OPENAI).complete(ask())
    assert info.value.kind == "bad_request"
    assert any(PRIMARY in note for note in info.value.__notes__)
    assert log(server) == [(PRIMARY, 404), (SECOND, 400)]


def test_unreachable_chain_raises_one_error_naming_each_model() -> None:
    url = closed_port_url()
    endpoints = Endpoints(
        base_urls={"anthropic": url, "openai": url + "/v1"},
        api_keys={"anthropic": "k", "openai": "k"},
    )
    fallback = FallbackChain([PRIMARY, f"openai:{OPENAI}", SECOND], endpoints, timeout=2)
    with pytest.raises(FallbackExhausted) as info:
        fallback.complete(ask())
    error = info.value
    assert isinstance(error, ProviderError)
    assert not error.retryable
    assert [(e.provider, e.model, e.kind) for e in error.failures] == [
        ("anthropic", PRIMARY, "connection"),
        ("openai", OPENAI, "connection"),
        ("anthropic", SECOND, "connection"),
    ]
    message = str(error)
    assert message.startswith("all 3 models in the fallback chain failed")
    for model in (f"anthropic:{PRIMARY}", f"openai:{OPENAI}", f"anthropic:{SECOND}"):
        assert model in message


def test_exhausted_by_retired_models(make_server: MakeServer) -> None:
    server = make_server(scenario({PRIMARY: {"retired": True}, SECOND: {"retired": True}}))

    async def run() -> None:
        async with chain(server, PRIMARY, SECOND) as fallback:
            await fallback.acomplete(ask())

    with pytest.raises(FallbackExhausted) as info:
        asyncio.run(run())
    assert [e.status for e in info.value.failures] == [404, 404]
    assert info.value.kind == "not_found"


# -- sync / async ---------------------------------------------------------------------------------


def test_async_calls_run_concurrently_and_share_clients(make_server: MakeServer) -> None:
    server = make_server(scenario({PRIMARY: {"retired": True}}))

    async def run() -> list[FallbackResult]:
        fallback = chain(server, PRIMARY, f"openai:{OPENAI}")
        try:
            return await asyncio.gather(*(fallback.acomplete(ask(f"q{i}")) for i in range(8)))
        finally:
            await fallback.aclose()

    results = asyncio.run(run())
    assert {r.answered_by for r in results} == {OPENAI}
    assert server.stats()["by_model"] == {PRIMARY: 8, OPENAI: 8}


def test_sync_complete_refuses_inside_a_running_loop(make_server: MakeServer) -> None:
    server = make_server(scenario())
    fallback = chain(server, PRIMARY, SECOND)

    async def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "coroutine was never awaited"
            with pytest.raises(RuntimeError, match="acomplete"):
                fallback.complete(ask())

    asyncio.run(run())
    assert server.requests == []


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "match"),
    [
        ([PRIMARY, SECOND, PRIMARY], "appears twice"),
        ([PRIMARY, f"anthropic:{PRIMARY}"], "appears twice"),
        ([ModelRef("openai", OPENAI), f"openai:{OPENAI}"], "appears twice"),
        (["gpt-5.5", PRIMARY, "gpt-5.5"], "appears twice"),
        (["gpt-5.5", OPENAI], "same model"),
        ([OPENAI, "gpt-5.5"], "same model"),
        ([], "at least one model"),
    ],
)
def test_construction_refusals(models: list[str | ModelRef], match: str) -> None:
    endpoints = local_server_endpoints("http://127.0.0.1:1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackAliasWarning)
        with pytest.raises(ValueError, match=match):
            FallbackChain(models, endpoints, timeout=1)


def test_other_construction_checks() -> None:
    endpoints = local_server_endpoints("http://127.0.0.1:1")
    with pytest.raises(ModelSpecError):
        FallbackChain(["mystery-model"], endpoints, timeout=1)
    with pytest.raises(ValueError, match="timeout"):
        FallbackChain([PRIMARY], endpoints, timeout=0)
    with pytest.raises(TypeError, match="sequence"):
        FallbackChain(PRIMARY, endpoints, timeout=1)
    with pytest.raises(ValueError, match="ModelRef"):
        FallbackChain([ModelRef("google", "gemini-2.5-pro")], endpoints, timeout=1)
    no_openai_key = Endpoints(
        base_urls={"anthropic": None, "openai": None},
        api_keys={"anthropic": "k", "openai": None},
    )
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        FallbackChain([PRIMARY, OPENAI], no_openai_key, timeout=1)


def test_aliases_earn_a_warning() -> None:
    endpoints = local_server_endpoints("http://127.0.0.1:1")
    with pytest.warns(FallbackAliasWarning, match=r"openai:gpt-5\.5 \(points to gpt-5\.5-2026"):
        FallbackChain([PRIMARY, "gpt-5.5"], endpoints, timeout=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pinned = FallbackChain([PRIMARY, SECOND, OPENAI], endpoints, timeout=1)
    assert repr(pinned) == (
        f"FallbackChain(anthropic:{PRIMARY} -> anthropic:{SECOND} -> openai:{OPENAI}, timeout=1)"
    )
