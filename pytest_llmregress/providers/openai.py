"""OpenAI Chat Completions (and any OpenAI-compatible server) through the ``openai`` SDK."""

from __future__ import annotations

from typing import Any

from pytest_llmregress.providers._http import SDKProvider
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


class OpenAIProvider(SDKProvider):
    """One attempt per ``complete`` call; retries belong to the runner, so the SDK's are off."""

    name = "openai"
    default_base_url = DEFAULT_BASE_URL
    client_class = "AsyncOpenAI"

    def build_kwargs(self, request: Request) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = {"model": request.model, "messages": messages}
        for key, value in request.params.items():
            if key not in _PARAM_NAMES:
                raise self.unsupported(key, request, "OpenAI Chat Completions API")
            kwargs[_PARAM_NAMES[key]] = value
        return kwargs

    async def _send(self, client: Any, kwargs: dict[str, Any], request: Request) -> Completion:
        completion = await client.chat.completions.create(**kwargs)
        if not completion.choices:
            raise ProviderError(
                "the API answered without choices",
                provider=self.name,
                model=request.model,
                kind="bad_response",
                request_id=getattr(completion, "_request_id", None),
            )
        usage = completion.usage
        return Completion(
            text=completion.choices[0].message.content or "",
            provider=self.name,
            requested_model=request.model,
            resolved_model=completion.model,
            system_fingerprint=completion.system_fingerprint,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            request_id=getattr(completion, "_request_id", None),
        )
