"""Anthropic Messages API through the official ``anthropic`` SDK (imported on first use)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_llmregress.providers._http import SDKProvider
from pytest_llmregress.providers.base import Completion, Request

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
_PARAM_NAMES = {"max_tokens": "max_tokens", "stop": "stop_sequences"}
# The SDK (2.x) has no arguments for the sampling parameters; the wire format still carries
# them for the models that accept them, so they go in the body and the API decides.
_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


class AnthropicProvider(SDKProvider):
    """One attempt per ``complete`` call; retries belong to the runner, so the SDK's are off."""

    name = "anthropic"
    default_base_url = DEFAULT_BASE_URL
    client_class = "AsyncAnthropic"
    path = "/v1/messages"
    request_id_header = "request-id"
    auth_headers = ("X-Api-Key", "Authorization")

    def build_body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": DEFAULT_MAX_TOKENS,
        }
        if request.system:
            body["system"] = request.system
        for key, value in request.params.items():
            if key in _SAMPLING_PARAMS:
                body[key] = value
                continue
            if key not in _PARAM_NAMES:
                raise self.unsupported(key, request, "Anthropic Messages API")
            if key == "stop" and isinstance(value, str):
                value = [value]
            body[_PARAM_NAMES[key]] = value
        schema = request.reply_schema
        if schema is not None:
            # One tool the model must call, once: the reply is its input, an object the API
            # has already parsed, never prose that could quote some other object. Forced tool
            # use works on every Claude model; `strict` and `output_config.format` do not.
            tool: dict[str, Any] = {"name": schema.name, "input_schema": dict(schema.schema)}
            if schema.description:
                tool["description"] = schema.description
            body["tools"] = [tool]
            body["tool_choice"] = {
                "type": "tool",
                "name": schema.name,
                "disable_parallel_tool_use": True,
            }
        return body

    def parse(
        self, data: Mapping[str, Any], request: Request, request_id: str | None
    ) -> Completion:
        text = "".join(
            block.get("text", "") for block in data["content"] if block.get("type") == "text"
        )
        if request.reply_schema is not None:
            name = request.reply_schema.name
            calls = [
                block["input"]
                for block in data["content"]
                if block.get("type") == "tool_use" and block.get("name") == name
            ]
            if calls:
                # Several calls (despite disable_parallel_tool_use) become several objects,
                # which the judge's parser refuses; none: a server that ignored the tool, whose
                # text is parsed as it stands.
                text = "\n".join(json.dumps(call, ensure_ascii=False) for call in calls)
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            provider=self.name,
            requested_model=request.model,
            resolved_model=data["model"],
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            request_id=request_id,
        )
