"""Anthropic Messages API through the official ``anthropic`` SDK (imported on first use)."""

from __future__ import annotations

from typing import Any

from pytest_llmregress.providers._http import SDKProvider
from pytest_llmregress.providers.base import Completion, Request

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
_PARAM_NAMES = {"max_tokens": "max_tokens", "stop": "stop_sequences"}
# The SDK (2.x) no longer exposes sampling parameters; the wire format still carries them for
# the models that accept them, so they travel in the body and the API decides.
_BODY_PARAMS = ("temperature", "top_p", "top_k")


class AnthropicProvider(SDKProvider):
    """One attempt per ``complete`` call; retries belong to the runner, so the SDK's are off."""

    name = "anthropic"
    default_base_url = DEFAULT_BASE_URL
    client_class = "AsyncAnthropic"

    def build_kwargs(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": DEFAULT_MAX_TOKENS,
        }
        if request.system:
            kwargs["system"] = request.system
        extra_body: dict[str, Any] = {}
        for key, value in request.params.items():
            if key in _BODY_PARAMS:
                extra_body[key] = value
                continue
            if key not in _PARAM_NAMES:
                raise self.unsupported(key, request, "Anthropic Messages API")
            if key == "stop" and isinstance(value, str):
                value = [value]
            kwargs[_PARAM_NAMES[key]] = value
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    async def _send(self, client: Any, kwargs: dict[str, Any], request: Request) -> Completion:
        message = await client.messages.create(**kwargs)
        text = "".join(
            getattr(block, "text", "") for block in message.content if block.type == "text"
        )
        usage = message.usage
        return Completion(
            text=text,
            provider=self.name,
            requested_model=request.model,
            resolved_model=message.model,
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            request_id=getattr(message, "_request_id", None),
        )
