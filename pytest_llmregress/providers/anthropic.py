"""Anthropic Messages API through the official ``anthropic`` SDK (imported on first use)."""

from __future__ import annotations

import time
from typing import Any

from pytest_llmregress.providers._http import check_model_served, translate_sdk_error
from pytest_llmregress.providers.base import Completion, ProviderError, Request

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
_PARAM_NAMES = {"max_tokens": "max_tokens", "stop": "stop_sequences"}
# The SDK (2.x) no longer exposes sampling parameters; the wire format still carries them for
# the models that accept them, so they travel in the body and the API decides.
_BODY_PARAMS = ("temperature", "top_p", "top_k")


class AnthropicProvider:
    """One attempt per ``complete`` call; retries belong to the runner, so the SDK's are off."""

    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float) -> None:
        self.base_url = base_url or DEFAULT_BASE_URL
        self._api_key = api_key
        self._timeout = timeout
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import anthropic

            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        return self._client

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
                raise ProviderError(
                    f"param {key!r} is not supported by the Anthropic Messages API",
                    provider=self.name,
                    model=request.model,
                    kind="bad_request",
                )
            if key == "stop" and isinstance(value, str):
                value = [value]
            kwargs[_PARAM_NAMES[key]] = value
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    async def complete(self, request: Request) -> Completion:
        kwargs = self.build_kwargs(request)
        client = self._get_client()
        started = time.perf_counter()
        try:
            message = await client.messages.create(**kwargs)
        except Exception as exc:
            error = translate_sdk_error(exc, provider=self.name, model=request.model)
            if error is None:
                raise
            raise error from exc
        latency = time.perf_counter() - started
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
            latency_s=latency,
            request_id=getattr(message, "_request_id", None),
        )

    async def check_model(self, model: str) -> None:
        """Raise ``ProviderError`` unless the models endpoint knows ``model`` (the preflight)."""
        await check_model_served(self._get_client(), model, provider=self.name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
