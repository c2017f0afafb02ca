"""Anthropic Messages API through the official ``anthropic`` SDK (imported on first use)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pytest_llmregress.providers._http import SDKProvider
from pytest_llmregress.providers.base import (
    BatchState,
    Completion,
    ProviderError,
    Request,
    kind_for_status,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
_PARAM_NAMES = {"max_tokens": "max_tokens", "stop": "stop_sequences"}
# The SDK (2.x) has no arguments for the sampling parameters; the wire format still carries
# them for the models that accept them, so they go in the body and the API decides.
_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
# A batch request's error names its type, not its HTTP status: the status each type is
# answered with online.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


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

    # -- Message Batches ----------------------------------------------------------------------

    async def batch_create(self, items: Sequence[tuple[str, Request]]) -> str:
        client = self._get_client()
        requests = [{"custom_id": cid, "params": self.build_body(r)} for cid, r in items]
        try:
            batch = await client.messages.batches.create(
                requests=requests, extra_headers=self._options.get("headers")
            )
        except Exception as exc:
            raise self._translate(exc, items[0][1].model) from exc
        return str(batch.id)

    async def batch_state(self, batch_id: str) -> BatchState:
        client = self._get_client()
        try:
            batch = await client.messages.batches.retrieve(
                batch_id, extra_headers=self._options.get("headers")
            )
        except Exception as exc:
            raise self._translate(exc, batch_id) from exc
        counts = batch.request_counts
        done = counts.succeeded + counts.errored + counts.canceled + counts.expired
        status = str(batch.processing_status)
        return BatchState(batch.id, status, status == "ended", done, done + counts.processing)

    async def batch_results(
        self, batch_id: str, requests: Mapping[str, Request]
    ) -> dict[str, Completion | ProviderError]:
        client = self._get_client()
        outcomes: dict[str, Completion | ProviderError] = {}
        try:
            lines = await client.messages.batches.results(
                batch_id, extra_headers=self._options.get("headers")
            )
            async for line in lines:
                request = requests.get(line.custom_id)
                if request is not None:
                    outcomes[line.custom_id] = self._batch_outcome(line.result, request, batch_id)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc, batch_id) from exc
        for cid, request in requests.items():
            if cid not in outcomes:
                outcomes[cid] = self.batch_missing(request, batch_id, "ended")
        return outcomes

    def _batch_outcome(
        self, result: Any, request: Request, batch_id: str
    ) -> Completion | ProviderError:
        """One line of a batch's results: ``succeeded`` is the message, the others errors."""
        kind = result.type
        if kind == "succeeded":
            try:
                completion = self.parse(result.message.model_dump(), request, None)
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                return self.bad_response(
                    request, f"the batch's result lacks a field the plugin reads ({exc!r})", None
                )
            return replace(completion, batch=True)
        if kind == "errored":
            error = result.error.error
            status = _ERROR_STATUS.get(error.type, 500)
            return ProviderError(
                f"batch {batch_id}: {error.type}: {error.message}",
                provider=self.name,
                model=request.model,
                kind=kind_for_status(status),
                status=status,
            )
        return self.batch_missing(request, batch_id, kind)  # canceled or expired

    async def batch_cancel(self, batch_id: str) -> None:
        client = self._get_client()
        try:
            await client.messages.batches.cancel(
                batch_id, extra_headers=self._options.get("headers")
            )
        except Exception as exc:
            raise self._translate(exc, batch_id) from exc
