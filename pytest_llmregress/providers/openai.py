"""OpenAI Chat Completions (and any OpenAI-compatible server) through the ``openai`` SDK."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
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


BATCH_ENDPOINT = "/v1/chat/completions"  # the Batch API's name for the route its lines call
_ENDED = ("completed", "failed", "expired", "cancelled")


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

    # -- the Batch API: a JSONL file of requests, uploaded, then a batch of it ----------------

    async def batch_create(self, items: Sequence[tuple[str, Request]]) -> str:
        client = self._get_client()
        headers = self._options.get("headers")
        lines = [
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": BATCH_ENDPOINT, "body": body},
                ensure_ascii=False,
            )
            for cid, body in ((cid, self.build_body(r)) for cid, r in items)
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            uploaded = await client.files.create(
                file=("llmregress-batch.jsonl", data, "application/jsonl"),
                purpose="batch",
                extra_headers=headers,
            )
            batch = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint=BATCH_ENDPOINT,
                completion_window="24h",
                extra_headers=headers,
            )
        except Exception as exc:
            raise self._translate(exc, items[0][1].model) from exc
        return str(batch.id)

    async def _batch(self, batch_id: str) -> Any:
        try:
            return await self._get_client().batches.retrieve(
                batch_id, extra_headers=self._options.get("headers")
            )
        except Exception as exc:
            raise self._translate(exc, batch_id) from exc

    async def batch_state(self, batch_id: str) -> BatchState:
        batch = await self._batch(batch_id)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        total = counts.total if counts else 0
        return BatchState(batch.id, batch.status, batch.status in _ENDED, done, total)

    async def batch_results(
        self, batch_id: str, requests: Mapping[str, Request]
    ) -> dict[str, Completion | ProviderError]:
        batch = await self._batch(batch_id)
        outcomes: dict[str, Completion | ProviderError] = {}
        if batch.status == "failed":  # the input file was refused: no request ran
            problems = [
                f"line {e.line}: {e.message}" if e.line else str(e.message)
                for e in ((batch.errors.data or []) if batch.errors else [])
            ]
            why = "; ".join(problems[:3]) or "no reason given"
            for cid, request in requests.items():
                outcomes[cid] = ProviderError(
                    f"batch {batch_id} failed validation: {why}",
                    provider=self.name,
                    model=request.model,
                    kind="bad_request",
                )
            return outcomes
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                content = await self._get_client().files.content(
                    file_id, extra_headers=self._options.get("headers")
                )
            except Exception as exc:
                raise self._translate(exc, batch_id) from exc
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                asked = requests.get(line.get("custom_id"))
                if asked is not None:
                    outcomes[line["custom_id"]] = self._batch_outcome(line, asked, batch_id)
        for cid, request in requests.items():
            if cid not in outcomes:
                outcomes[cid] = self.batch_missing(request, batch_id, batch.status)
        return outcomes

    def _batch_outcome(
        self, line: Mapping[str, Any], request: Request, batch_id: str
    ) -> Completion | ProviderError:
        """One line of the output or error file."""
        response = line.get("response")
        if not response:
            error = line.get("error") or {}
            code = error.get("code") or ""
            status = "expired" if code == "batch_expired" else "cancelled"
            if code not in ("batch_expired", "batch_cancelled"):
                return ProviderError(
                    f"batch {batch_id}: {code or 'error'}: {error.get('message') or ''}",
                    provider=self.name,
                    model=request.model,
                    kind="bad_response",
                )
            return self.batch_missing(request, batch_id, status)
        status_code = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        request_id = response.get("request_id")
        if status_code == 200:
            try:
                completion = self.parse(body, request, request_id)
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                return self.bad_response(
                    request, f"the batch's result lacks a field the plugin reads ({exc!r})", None
                )
            return replace(completion, batch=True)
        error = body.get("error") if isinstance(body, Mapping) else None
        error = error if isinstance(error, Mapping) else {}
        return ProviderError(
            f"batch {batch_id}: {error.get('message') or f'HTTP {status_code}'}",
            provider=self.name,
            model=request.model,
            kind=kind_for_status(status_code, error.get("code")),
            status=status_code,
            request_id=request_id,
            param=error.get("param"),
        )

    async def batch_cancel(self, batch_id: str) -> None:
        try:
            await self._get_client().batches.cancel(
                batch_id, extra_headers=self._options.get("headers")
            )
        except Exception as exc:
            raise self._translate(exc, batch_id) from exc
