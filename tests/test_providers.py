"""The two SDK providers read the API's JSON themselves: answers they cannot use are
``bad_response`` errors, never a crash or an empty success.

The local provider server only speaks the wire formats correctly, so these tests answer from
a tiny HTTP server of their own; the requests still go through the real SDK clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_llmregress.providers.anthropic import AnthropicProvider
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.providers.openai import OpenAIProvider


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


def call(provider: Any) -> Completion:
    async def run() -> Completion:
        try:
            completion: Completion = await provider.complete(REQUEST)
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
