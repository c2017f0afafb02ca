"""The local server behaving like self-hosted servers, and the plugin showing what they say.

Error bodies in the shapes of FastAPI, Ollama, TGI, vLLM and plain-text gateways; models that
refuse a parameter; an endpoint that refuses unknown fields; ``transformers serve``'s cold-start
model listing; keyless servers; one generation slot, with the queue it makes. Every request goes
through the real SDKs (mostly through the plugin's providers) over real HTTP; tests wait on the
server's counters, never on the clock.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from pytest_llmregress.providers.anthropic import AnthropicProvider
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.providers.openai import OpenAIProvider
from pytest_llmregress.testing.scenario import ScenarioError, load_scenario
from pytest_llmregress.testing.server import LocalProviderServer
from tests.test_plugin_e2e import answers, qa_cases, write_cases
from tests.test_providers import call

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PROVIDERS = ["anthropic", "openai"]
HELD = 600_000  # a latency no test waits out: update_model(..., latency_ms=0) releases it


def provider_at(name: str, server_url: str, timeout: float = 10) -> Any:
    if name == "anthropic":
        return AnthropicProvider(api_key="k", base_url=server_url, timeout=timeout)
    return OpenAIProvider(api_key="k", base_url=server_url + "/v1", timeout=timeout)


def complete(provider: Any, model: str = "m", **params: Any) -> Completion:
    return call(
        provider, Request(model=model, messages=(ChatMessage("user", "hi"),), params=params)
    )


def failure(provider: Any, model: str = "m", **params: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(provider, model, **params)
    return info.value


def raw(
    server: LocalProviderServer,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One plain HTTP request: status, content type, body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def chat_body(model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


# -- error bodies in the shapes of self-hosted servers -----------------------------------------

WORDS = "Server is pinned to 'tiny-chat-v1'; requested 'tiny-chat-v2'"
SHAPES = [
    ("detail", WORDS, {"detail": WORDS}),
    ("error_string", WORDS, {"error": WORDS}),
    ("message", WORDS, {"message": WORDS}),
    (
        "detail_list",
        "body.model: Field required",
        {"detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}]},
    ),
]


@pytest.mark.parametrize("provider_name", PROVIDERS)
@pytest.mark.parametrize(("shape", "shown", "body"), SHAPES, ids=[s[0] for s in SHAPES])
def test_the_plugin_shows_the_servers_own_words_in_every_json_shape(
    make_server: MakeServer, provider_name: str, shape: str, shown: str, body: dict[str, Any]
) -> None:
    rule: dict[str, Any] = {"status": 400, "shape": shape, "message": body_message(body)}
    if shape == "detail_list":
        rule.update(param="model", type="missing")
    server = make_server({"models": {"m": {"errors": [rule]}}})
    status, content_type, payload = raw(
        server, "POST", "/v1/chat/completions", chat_body(), {"authorization": "Bearer k"}
    )
    assert (status, content_type, json.loads(payload)) == (400, "application/json", body)

    error = failure(provider_at(provider_name, server.url))
    assert (error.kind, error.status, error.message) == ("bad_request", 400, shown)
    assert str(error) == f"{provider_name}:m: HTTP 400 bad_request: {shown}"


def body_message(body: dict[str, Any]) -> str:
    value = next(iter(body.values()))
    return value if isinstance(value, str) else value[0]["msg"]


@pytest.mark.parametrize("provider_name", PROVIDERS)
def test_a_plain_text_error_is_shown_on_one_line_and_cut_short(
    make_server: MakeServer, provider_name: str
) -> None:
    text = "upstream   http://user:pw@10.0.0.7:8000/v1 refused:\n\tCUDA out of memory. " + "x" * 600
    server = make_server(
        {"models": {"m": {"errors": [{"status": 503, "shape": "text", "message": text}]}}}
    )
    status, content_type, payload = raw(
        server, "POST", "/v1/messages", chat_body(max_tokens=5), {"x-api-key": "k"}
    )
    assert (status, content_type, payload.decode()) == (503, "text/plain; charset=utf-8", text)

    error = failure(provider_at(provider_name, server.url))
    assert (error.kind, error.status) == ("server", 503)
    assert error.message.startswith(
        "upstream http://***:***@10.0.0.7:8000/v1 refused: CUDA out of memory. xxx"
    )
    assert error.message.endswith("...")
    assert len(error.message) <= 400


def test_a_pinned_server_answers_every_other_model_in_its_own_words(
    make_server: MakeServer,
) -> None:
    pinned = "Server is pinned to 'tiny-chat-v1'; requested '{model}'"
    server = make_server(
        {
            "server": {"unknown_model": {"status": 400, "shape": "detail", "message": pinned}},
            "models": {"tiny-chat-v1": {"default_reply": "hi"}},
        }
    )
    error = failure(provider_at("openai", server.url), "tiny-chat-v2")
    assert (error.status, error.message) == (400, WORDS)
    assert complete(provider_at("openai", server.url), "tiny-chat-v1").text == "hi"
    status, _, payload = raw(
        server, "POST", "/v1/chat/completions", chat_body("other"), {"authorization": "Bearer k"}
    )
    assert (status, json.loads(payload)) == (
        400,
        {"detail": "Server is pinned to 'tiny-chat-v1'; requested 'other'"},
    )


def test_the_servers_error_shape_applies_to_its_own_errors(make_server: MakeServer) -> None:
    """An Ollama-like server: every error is ``{"error": "..."}``, an unknown model's too."""
    server = make_server({"server": {"error_shape": "error_string"}, "models": {"m": {}}})
    error = failure(provider_at("openai", server.url), "llama9")
    assert (error.kind, error.message) == (
        "not_found",
        "The model `llama9` does not exist or you do not have access to it.",
    )
    status, _, payload = raw(server, "POST", "/v1/chat/completions", chat_body())
    assert (status, json.loads(payload)) == (
        401,
        {
            "error": "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        },
    )


def test_the_taxonomy_still_reads_codes_and_retry_after(make_server: MakeServer) -> None:
    server = make_server(
        {
            "models": {
                "quota": {"errors": [{"status": 429, "quota": True}]},
                "busy": {"errors": [{"status": 429, "shape": "error_string", "retry_after": 2}]},
            }
        }
    )
    error = failure(provider_at("openai", server.url), "quota")
    assert (error.kind, error.retryable) == ("quota", False)
    assert error.message.startswith("You exceeded your current quota")
    error = failure(provider_at("anthropic", server.url), "busy")
    assert (error.kind, error.retry_after) == ("rate_limit", 2.0)
    assert "Rate limit exceeded" in error.message


# -- connection failures and timeouts name the host --------------------------------------------


@pytest.mark.parametrize("provider_name", PROVIDERS)
def test_a_connection_error_names_the_host_it_could_not_reach(provider_name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    error = failure(provider_at(provider_name, f"http://user:secret@127.0.0.1:{port}"))
    assert error.kind == "connection"
    assert (
        error.message == f"connection failed: could not reach 127.0.0.1:{port} (Connection refused)"
    )


@pytest.mark.parametrize("provider_name", PROVIDERS)
def test_a_timeout_names_the_host_and_the_answer_is_counted_as_lost(
    make_server: MakeServer, provider_name: str
) -> None:
    server = make_server({"models": {"m": {"latency_ms": HELD}}})
    error = failure(provider_at(provider_name, server.url, timeout=0.5))
    assert error.kind == "timeout"
    assert (
        error.message
        == f"request timed out after 0.5 s waiting for 127.0.0.1:{server.port} to answer"
    )
    server.update_model("m", latency_ms=0)  # the server finishes the answer nobody waits for
    assert server.wait_until(lambda s: s["lost_answers"] == 1)
    stats = server.stats()
    assert (stats["started"], stats["finished"], stats["by_status"]) == (1, 1, {200: 1})


# -- parameters a model refuses, fields an endpoint refuses --------------------------------------


def test_a_model_that_refuses_a_parameter_names_it(make_server: MakeServer) -> None:
    server = make_server({"models": {"m": {"refuses_params": ["temperature"]}}})
    error = failure(provider_at("openai", server.url), temperature=0.2)
    assert (error.kind, error.status, error.param) == ("bad_request", 400, "temperature")
    assert error.message == "Unsupported parameter: 'temperature' is not supported with this model."
    status, _, payload = raw(
        server,
        "POST",
        "/v1/chat/completions",
        chat_body(temperature=0.2),
        {"authorization": "Bearer k"},
    )
    assert (status, json.loads(payload)) == (
        400,
        {
            "error": {
                "message": "Unsupported parameter: 'temperature' is not supported with this model.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_parameter",
            }
        },
    )

    error = failure(provider_at("anthropic", server.url), temperature=0.2)
    assert (error.kind, error.message) == (
        "bad_request",
        "`temperature` is not supported by this model.",
    )
    assert complete(provider_at("openai", server.url), max_tokens=5).resolved_model == "m"
    assert complete(provider_at("anthropic", server.url)).resolved_model == "m"


def test_the_openai_endpoint_refuses_unknown_fields_unless_accepted(
    make_server: MakeServer,
) -> None:
    strict = make_server({"models": {"m": {}}})
    vllm = make_server({"server": {"accepts_params": ["top_k"]}, "models": {"m": {}}})
    with openai.OpenAI(base_url=strict.openai_base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 5}
            )
        assert info.value.body == {
            "message": "Unrecognized request argument supplied: top_k",
            "type": "invalid_request_error",
            "param": "top_k",
            "code": None,
        }
        reply = client.with_options(base_url=vllm.openai_base_url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 5}
        )
        assert reply.model == "m"
    assert vllm.requests[0].params == {"top_k": 5}
    # the Anthropic endpoint takes top_k as the API does
    with anthropic.Anthropic(base_url=strict.url, api_key="k", max_retries=0) as claude:
        claude.messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"top_k": 5},
        )


# -- the models endpoint of transformers serve ---------------------------------------------------


def test_loaded_models_endpoint_lists_what_has_answered_and_has_no_retrieve_route(
    make_server: MakeServer,
) -> None:
    server = make_server(
        {"server": {"models_endpoint": "loaded"}, "models": {"tiny": {}, "other": {}}}
    )
    headers = {"authorization": "Bearer k"}
    assert raw(server, "GET", "/v1/models/tiny", headers=headers)[::2] == (
        404,
        b'{"detail": "Not Found"}',
    )
    with openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == []  # cold: nothing answered yet
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("tiny")
        assert complete(provider_at("openai", server.url), "tiny").resolved_model == "tiny"
        assert [m.id for m in client.models.list()] == ["tiny"]
    error = failure(provider_at("openai", server.url), "missing")
    assert (error.kind, error.message) == (
        "not_found",
        "The model `missing` does not exist or you do not have access to it.",
    )
    with anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0) as claude:
        assert [m.id for m in claude.models.list()] == ["tiny"]


def test_no_models_endpoint_at_all(make_server: MakeServer) -> None:
    server = make_server({"server": {"models_endpoint": "none"}, "models": {"m": {}}})
    for path in ("/v1/models", "/v1/models/m"):
        status, _, payload = raw(server, "GET", path, headers={"authorization": "Bearer k"})
        assert (status, json.loads(payload)) == (404, {"detail": "Not Found"})
    assert complete(provider_at("openai", server.url)).text


# -- keyless servers ---------------------------------------------------------------------------


def ask_without_a_key(server: LocalProviderServer) -> tuple[Any, Any]:
    """Both SDKs sending no key at all. Neither sends a request with an empty key (the
    Anthropic SDK sends ``Authorization: Bearer ``, which h11 refuses to write; the OpenAI SDK
    refuses to build a client), so a key is given and its header omitted."""
    claude = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    gpt = openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    with claude, gpt:
        return (
            claude.messages.create(
                model="m",
                max_tokens=5,
                messages=messages,
                extra_headers={"Authorization": anthropic.omit},
            ),
            gpt.chat.completions.create(
                model="m", messages=messages, extra_headers={"Authorization": openai.omit}
            ),
        )


def test_a_keyless_server_answers_requests_without_a_key(make_server: MakeServer) -> None:
    server = make_server({"server": {"auth": "none"}, "models": {"m": {"default_reply": "ok"}}})
    message, completion = ask_without_a_key(server)
    assert message.content[0].text == completion.choices[0].message.content == "ok"
    assert raw(server, "GET", "/v1/models")[0] == 200


def test_a_server_that_requires_a_key_refuses_a_request_without_one(
    make_server: MakeServer,
) -> None:
    server = make_server({"models": {"m": {}}})
    with pytest.raises(anthropic.AuthenticationError) as info:
        ask_without_a_key(server)
    assert info.value.type == "authentication_error"
    with (
        openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as gpt,
        pytest.raises(openai.AuthenticationError) as o_info,
    ):
        gpt.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"Authorization": openai.omit},
        )
    assert o_info.value.code == "invalid_api_key"


# -- one generation slot -----------------------------------------------------------------------


async def _ask(client: openai.AsyncOpenAI, model: str, text: str) -> str:
    reply = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return reply.model


def _until(server: LocalProviderServer, condition: Callable[[dict[str, Any]], bool]) -> Any:
    return asyncio.to_thread(server.wait_until, condition, 30.0)


@pytest.mark.parametrize("where", ["model", "server"])
def test_one_slot_generates_one_request_at_a_time_and_queues_the_rest(
    make_server: MakeServer, where: str
) -> None:
    models: dict[str, Any] = {"a": {"latency_ms": HELD}, "b": {"latency_ms": HELD}}
    if where == "model":
        models["a"]["slots"] = 1
        scenario: dict[str, Any] = {"models": models}
        asked = ["a", "a", "a"]
    else:
        scenario = {"server": {"slots": 1}, "models": models}
        asked = ["a", "b", "a"]
    server = make_server(scenario)

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="k", max_retries=0
        ) as client:
            tasks = [asyncio.ensure_future(_ask(client, m, str(i))) for i, m in enumerate(asked)]
            assert await _until(server, lambda s: s["started"] == 1 and s["queued"] == 2)
            stats = server.stats()
            assert (stats["generating"], stats["in_flight"]) == (1, 3)
            server.update_model("a", latency_ms=0)
            server.update_model("b", latency_ms=0)
            return list(await asyncio.gather(*tasks))

    assert asyncio.run(run()) == asked
    stats = server.stats()
    assert (stats["started"], stats["finished"], stats["queued"]) == (3, 3, 0)
    assert (stats["max_generating"], stats["max_in_flight"]) == (1, 3)
    assert (stats["dropped"], stats["lost_answers"]) == (0, 0)


def test_a_queued_request_whose_client_left_is_dropped_not_generated(
    make_server: MakeServer,
) -> None:
    server = make_server({"models": {"m": {"slots": 1, "latency_ms": HELD}}})

    async def run() -> str:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="k", max_retries=0
        ) as client:
            first = asyncio.ensure_future(_ask(client, "m", "first"))
            assert await _until(server, lambda s: s["started"] == 1)
            second = asyncio.ensure_future(_ask(client, "m", "second"))
            assert await _until(server, lambda s: s["queued"] == 1)
            second.cancel()  # the client gives up: its connection closes
            assert await _until(server, lambda s: s["dropped"] == 1)
            server.update_model("m", latency_ms=0)
            return await first

    assert asyncio.run(run()) == "m"
    stats = server.stats()
    assert (stats["started"], stats["finished"], stats["dropped"]) == (1, 1, 1)
    assert stats["by_status"] == {200: 1, 499: 1}
    assert [r.user_text for r in server.requests] == ["second", "first"]


def test_handle_drops_a_queued_request_when_client_gone_says_so() -> None:
    """The same without HTTP: ``handle``'s ``client_gone`` is how the server sees a client."""
    server = LocalProviderServer({"models": {"m": {"slots": 1, "latency_ms": HELD}}})
    body = json.dumps(chat_body(max_tokens=5)).encode()
    headers = {"x-api-key": "k"}
    statuses: list[int] = []

    def ask() -> None:
        statuses.append(server.handle("POST", "/v1/messages", headers, body).status)

    first = threading.Thread(target=ask)
    first.start()
    assert server.wait_until(lambda s: s["generating"] == 1)
    gone = server.handle("POST", "/v1/messages", headers, body, client_gone=lambda: True)
    assert gone.status == 499
    server.update_model("m", latency_ms=0)
    first.join(timeout=30)
    assert statuses == [200]
    stats = server.stats()
    assert (stats["started"], stats["dropped"], stats["lost_answers"]) == (1, 1, 0)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "fragment"),
    [
        ({"server": {"auth": "optional"}}, "server.auth: expected one of required, none"),
        ({"server": {"models_endpoint": "list"}}, "server.models_endpoint: expected one of"),
        ({"server": {"slots": 0}}, "server.slots: must be >= 1"),
        ({"server": {"error_shape": "html"}}, "server.error_shape: expected one of provider,"),
        ({"server": {"accepts_params": [""]}}, "server.accepts_params[0]: expected a field name"),
        (
            {"server": {"unknown_model": {"first_n": 1}}},
            "server.unknown_model.first_n: unknown key",
        ),
        ({"server": {"slot": 1}}, "server.slot: unknown key 'slot'"),
        ({"models": {"m": {"slots": 1.5}}}, "models.m.slots: expected an integer"),
        ({"models": {"m": {"refuses_params": {}}}}, "models.m.refuses_params: expected a list"),
        (
            {"models": {"m": {"errors": [{"status": 400, "shape": "json"}]}}},
            "models.m.errors[0].shape: expected one of",
        ),
        ({"api_key": "k", "server": {"auth": "none"}}, "api_key: server.auth is none"),
    ],
)
def test_new_scenario_keys_are_validated(scenario: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert fragment in str(info.value)


# -- end to end --------------------------------------------------------------------------------


def test_a_case_error_shows_the_servers_words(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: Callable[[LocalProviderServer], None],
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    error = {"status": 400, "shape": "detail", "message": WORDS}
    server = make_server(
        {
            "models": {
                "tiny-chat-v2": {"answers": answers(cases), "errors": [error]},
                "claude-opus-4-7": {"judge": True},
            }
        }
    )
    provider_env(server)
    result = pytester.runpytest(
        "--llm-model=openai:tiny-chat-v2", "--llm-judge-model=claude-opus-4-7", "--llm-retries=0"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [f"*model call failed: openai:tiny-chat-v2: HTTP 400 bad_request: {WORDS}*"]
    )
    result.stdout.no_fnmatch_line("*Error code: 400*")
