"""OpenAI Chat Completions (and any OpenAI-compatible server) through the ``openai`` SDK."""

from __future__ import annotations

import time
from typing import Any

from pytest_llmregress.providers._http import check_model_served, translate_sdk_error
from pytest_llmregress.providers.base import Completion, ProviderError, Request

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_PARAM_NAMES = {
    # max_tokens is rejected by reasoning models; max_completion_tokens works for all
    # current OpenAI models and for vLLM / most compatible servers.
    "max_tokens": "max_completion_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
}


class OpenAIProvider:
    """One attempt per ``complete`` call; retries belong to the runner, so the SDK's are off."""

    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float) -> None:
        self.base_url = base_url or DEFAULT_BASE_URL
        self._api_key = api_key
        self._timeout = timeout
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        return self._client

    def build_kwargs(self, request: Request) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = {"model": request.model, "messages": messages}
        for key, value in request.params.items():
            if key not in _PARAM_NAMES:
                raise ProviderError(
                    f"param {key!r} is not supported by the OpenAI Chat Completions API",
                    provider=self.name,
                    model=request.model,
                    kind="bad_request",
                )
            kwargs[_PARAM_NAMES[key]] = value
        return kwargs

    async def complete(self, request: Request) -> Completion:
        kwargs = self.build_kwargs(request)
        client = self._get_client()
        started = time.perf_counter()
        try:
            completion = await client.chat.completions.create(**kwargs)
        except Exception as exc:
            error = translate_sdk_error(exc, provider=self.name, model=request.model)
            if error is None:
                raise
            raise error from exc
        latency = time.perf_counter() - started
        if not completion.choices:
            raise ProviderError(
                "the API answered without choices",
                provider=self.name,
                model=request.model,
                kind="bad_response",
                request_id=getattr(completion, "_request_id", None),
            )
        text = completion.choices[0].message.content or ""
        usage = completion.usage
        return Completion(
            text=text,
            provider=self.name,
            requested_model=request.model,
            resolved_model=completion.model,
            system_fingerprint=completion.system_fingerprint,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            request_id=getattr(completion, "_request_id", None),
        )

    async def check_model(self, model: str) -> None:
        """Raise ``ProviderError`` unless the models endpoint knows ``model`` (the preflight)."""
        await check_model_served(self._get_client(), model, provider=self.name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
