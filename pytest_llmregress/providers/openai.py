"""OpenAI Chat Completions (and any OpenAI-compatible server) through the ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pytest_llmregress.providers._http import SDKProvider
from pytest_llmregress.providers.base import Completion, Request

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
    path = "/chat/completions"
    request_id_header = "x-request-id"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        extra_params: Collection[str] = (),
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, timeout=timeout)
        # Sent as they are, for compatible servers that take them (--llm-openai-extra-params).
        self._extra_params = frozenset(extra_params)

    def build_body(self, request: Request) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        for key, value in request.params.items():
            if key in self._extra_params:
                body[key] = value
            elif key in _PARAM_NAMES:
                body[_PARAM_NAMES[key]] = value
            else:
                raise self.unsupported(key, request, "OpenAI Chat Completions API")
        schema = request.reply_schema
        if schema is not None:
            json_schema: dict[str, Any] = {
                "name": schema.name,
                "strict": True,
                "schema": dict(schema.schema),
            }
            if schema.description:
                json_schema["description"] = schema.description
            body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
        return body

    def parse(
        self, data: Mapping[str, Any], request: Request, request_id: str | None
    ) -> Completion:
        if not data.get("choices"):
            raise self.bad_response(request, "the API answered without choices", request_id)
        usage = data.get("usage") or {}
        message = data["choices"][0]["message"]
        text = message.get("content") or ""
        if not text and request.reply_schema is not None:
            # A structured-output refusal has no content: its text makes the verdict
            # unparseable (an error outcome that shows why), not an empty reply.
            text = message.get("refusal") or ""
        return Completion(
            text=text,
            provider=self.name,
            requested_model=request.model,
            resolved_model=data["model"],
            system_fingerprint=data.get("system_fingerprint"),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            request_id=request_id,
        )
