"""The two SDK providers read the API's JSON themselves: answers they cannot use are
``bad_response`` errors, never a crash or an empty success.

The local provider server only speaks the wire formats correctly, so these tests answer from
a tiny HTTP server of their own; the requests still go through the real SDK clients. The
structured-output requests also go to the local server, which checks them as the APIs do.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_llmregress.providers.anthropic import AnthropicProvider
from pytest_llmregress.providers.base import (
    ChatMessage,
    Completion,
    ProviderError,
    ReplySchema,
    Request,
)
from pytest_llmregress.providers.openai import OpenAIProvider
from pytest_llmregress.scoring.judge import build_judge_prompt
from pytest_llmregress.testing.server import LocalProviderServer


class Canned:
    """An HTTP server that answers every POST with the body it is given, and records it."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                canned.requests.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: Any, **headers: str) -> None:
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = headers


@pytest.fixture
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.server.shutdown()
    server.server.server_close()


REQUEST = Request(
    model="m-1",
    messages=(ChatMessage("user", "hi"),),
    system="Be brief.",
    params={"max_tokens": 10, "temperature": 0.5, "stop": "END"},
)


def call(provider: Any, request: Request = REQUEST) -> Completion:
    """``request`` through ``provider`` (then closed), from synchronous test code."""

    async def run() -> Completion:
        try:
            completion: Completion = await provider.complete(request)
            return completion
        finally:
            await provider.aclose()

    return asyncio.run(run())


def anthropic_at(url: str) -> AnthropicProvider:
    return AnthropicProvider(api_key="k", base_url=url, timeout=5)


def openai_at(url: str) -> OpenAIProvider:
    return OpenAIProvider(api_key="k", base_url=url + "/v1", timeout=5)


def test_anthropic_reads_text_model_usage_and_the_request_id_header(canned: Canned) -> None:
    canned.answer(
        {
            "model": "m-1-20260101",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Hel"},
                {"type": "text", "text": "lo"},
            ],
            "usage": {"input_tokens": 3, "output_tokens": 2},
        },
        **{"request-id": "req_abc"},
    )
    completion = call(anthropic_at(canned.url))
    assert (completion.text, completion.resolved_model) == ("Hello", "m-1-20260101")
    assert (completion.input_tokens, completion.output_tokens) == (3, 2)
    assert completion.request_id == "req_abc"
    [(path, body)] = canned.requests
    assert path == "/v1/messages"
    assert body == {
        "model": "m-1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "system": "Be brief.",
        "temperature": 0.5,
        "stop_sequences": ["END"],
    }


def test_openai_reads_text_fingerprint_usage_and_the_request_id_header(canned: Canned) -> None:
    canned.answer(
        {
            "model": "m-1-2026",
            "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1},
        },
        **{"x-request-id": "req_xyz"},
    )
    completion = call(openai_at(canned.url))
    assert (completion.text, completion.resolved_model) == ("Hi", "m-1-2026")
    assert (completion.system_fingerprint, completion.request_id) == ("fp_1", "req_xyz")
    assert (completion.input_tokens, completion.output_tokens) == (4, 1)
    [(path, body)] = canned.requests
    assert path == "/v1/chat/completions"
    assert body == {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        "max_completion_tokens": 10,
        "temperature": 0.5,
        "stop": "END",
    }


@pytest.mark.parametrize("make", [anthropic_at, openai_at], ids=["anthropic", "openai"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>gateway</html>", "not JSON"),
        ([1, 2], "not an object"),
        ({"content": [], "choices": [{"message": {}}]}, "lacks a field"),
    ],
    ids=["not-json", "array", "no-model"],
)
def test_an_unusable_answer_is_a_bad_response_error(
    canned: Canned, make: Any, body: Any, expected: str
) -> None:
    canned.answer(body, **{"request-id": "req_1", "x-request-id": "req_1"})
    with pytest.raises(ProviderError) as info:
        call(make(canned.url))
    assert info.value.kind == "bad_response"
    assert expected in info.value.message
    assert info.value.request_id == "req_1"
    assert not info.value.retryable


def test_openai_without_choices_is_a_bad_response_error(canned: Canned) -> None:
    canned.answer({"model": "m-1", "choices": []})
    with pytest.raises(ProviderError, match="without choices") as info:
        call(openai_at(canned.url))
    assert info.value.kind == "bad_response"


# -- structured output (the judge's verdict) ----------------------------------------------------

SCHEMA = ReplySchema(
    name="record_verdict",
    description="Record the verdict.",
    schema={
        "type": "object",
        "properties": {"reason": {"type": "string"}, "accuracy": {"type": "number"}},
        "required": ["reason", "accuracy"],
        "additionalProperties": False,
    },
)
STRUCTURED = replace(REQUEST, params={}, reply_schema=SCHEMA)


def call_structured(provider: Any, request: Request = STRUCTURED) -> Completion:
    async def run() -> Completion:
        try:
            completion: Completion = await provider.complete(request)
            return completion
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_anthropic_asks_for_one_forced_tool_call_and_returns_its_input(canned: Canned) -> None:
    verdict = {"reason": "same", "accuracy": 1}
    canned.answer(
        {
            "model": "m-1",
            "content": [
                {"type": "text", "text": 'Let me record it: {"accuracy": 0}'},
                {"type": "tool_use", "id": "toolu_1", "name": "record_verdict", "input": verdict},
            ],
        }
    )
    completion = call_structured(anthropic_at(canned.url))
    assert json.loads(completion.text) == verdict  # the tool's input alone, not the prose
    [(_, body)] = canned.requests
    assert body["tools"] == [
        {
            "name": "record_verdict",
            "description": "Record the verdict.",
            "input_schema": dict(SCHEMA.schema),
        }
    ]
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "record_verdict",
        "disable_parallel_tool_use": True,
    }


def test_anthropic_several_tool_calls_are_several_objects(canned: Canned) -> None:
    call_block = {"type": "tool_use", "id": "t", "name": "record_verdict", "input": {"a": 1}}
    canned.answer({"model": "m-1", "content": [call_block, call_block]})
    assert call_structured(anthropic_at(canned.url)).text == '{"a": 1}\n{"a": 1}'
    # a server that ignored the tool: its text stands, for the parser to judge
    canned.answer({"model": "m-1", "content": [{"type": "text", "text": "plain"}]})
    assert call_structured(anthropic_at(canned.url)).text == "plain"


def test_openai_asks_for_a_strict_json_schema(canned: Canned) -> None:
    canned.answer(
        {"model": "m-1", "choices": [{"message": {"content": '{"reason": "x", "accuracy": 0}'}}]}
    )
    assert call_structured(openai_at(canned.url)).text == '{"reason": "x", "accuracy": 0}'
    [(_, body)] = canned.requests
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "record_verdict",
            "strict": True,
            "schema": dict(SCHEMA.schema),
            "description": "Record the verdict.",
        },
    }
    # a structured-output refusal has no content: its refusal is the text
    canned.answer(
        {"model": "m-1", "choices": [{"message": {"content": None, "refusal": "I can't."}}]}
    )
    assert call_structured(openai_at(canned.url)).text == "I can't."


@pytest.mark.parametrize("provider_name", ["anthropic", "openai"])
def test_structured_requests_against_the_local_server(provider_name: str) -> None:
    scenario = {
        "models": {
            "judge": {"judge": True},
            "judge-plain": {"judge": True, "structured_output": False},
        }
    }
    prompt = build_judge_prompt(task="2+2?", reference="4", candidate="4")
    request = Request(
        model="judge",
        messages=(ChatMessage("user", prompt.user),),
        system=prompt.system,
        reply_schema=prompt.reply_schema,
    )
    with LocalProviderServer(scenario) as server:
        make = anthropic_at if provider_name == "anthropic" else openai_at
        completion = call_structured(make(server.url), request)
        verdict = json.loads(completion.text)
        assert verdict == {
            "accuracy": 1.0,
            "completeness": 1.0,
            "format": 1.0,
            "reason": "The candidate matches the reference (similarity 1.00).",
        }
        with pytest.raises(ProviderError) as info:
            call_structured(make(server.url), replace(request, model="judge-plain"))
        assert (info.value.kind, info.value.status) == ("bad_request", 400)
        assert "structured_output: false" in info.value.message
        plain = call_structured(make(server.url), replace(request, reply_schema=None))
        assert plain.text == completion.text
        [structured, refused, _] = server.requests
        assert [r.status for r in server.requests] == [200, 400, 200]
    key = "tool_choice" if provider_name == "anthropic" else "response_format"
    assert key in structured.params
    assert key in refused.params
