"""Helpers shared by the SDK-backed providers: retry-after parsing and error translation."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import json
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from pytest_llmregress.core.masking import mask_urls_in
from pytest_llmregress.providers.base import (
    BatchState,
    ChatMessage,
    Completion,
    ErrorKind,
    ProviderError,
    Request,
    kind_for_status,
)
from pytest_llmregress.providers.registry import API_KEY_ENV


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``retry-after``."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


_WORDS_LIMIT = 400  # characters of a server's own words kept in an error message


def _one_line(text: str) -> str:
    """``text`` with its whitespace collapsed, cut to ``_WORDS_LIMIT`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= _WORDS_LIMIT else text[: _WORDS_LIMIT - 3] + "..."


def _words(value: Any) -> str | None:
    """A message field: a string, or a list of them (NestJS), or FastAPI's validation errors
    ``[{"loc", "msg", "type"}]`` read as ``body.model: Field required; ...``."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    parts = []
    for item in value:
        if isinstance(item, Mapping) and "msg" in item:
            loc = ".".join(str(part) for part in item.get("loc") or ())
            parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
        else:
            parts.append(str(item))
    return "; ".join(parts) or None


def _error_body(exc: BaseException) -> Any:
    """What the server wrote: its JSON, or its text when that is not JSON (the SDK's ``body``
    when the response cannot be read). Read from the response, because the SDKs differ in
    what they keep of ``{"error": ...}``."""
    try:
        text = exc.response.text  # type: ignore[attr-defined]
    except Exception:
        return getattr(exc, "body", None)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(code, message, param) from an error body in the shape a server wrote it: Anthropic's
    and OpenAI's ``{"error": {...}}``, vLLM's ``{"message", "type", "code"}``, ``{"error":
    "..."}`` (Ollama, TGI), FastAPI's ``{"detail": ...}`` (a string or a validation list), or
    plain text. ``message`` is None when the body says nothing readable."""
    if isinstance(body, str):
        return None, body.strip() or None, None
    if not isinstance(body, Mapping):
        return None, None, None
    inner = body.get("error", body)
    if isinstance(inner, str):  # {"error": "..."}, or NestJS's {"error": "Bad Request", "message"}
        return None, _words(body.get("message")) or inner, None
    if not isinstance(inner, Mapping):
        inner = body
    code = inner.get("code") or inner.get("type")
    message = _words(inner.get("message")) or _words(body.get("detail"))
    param = inner.get("param")
    return (
        str(code) if code else None,
        str(message) if message else None,
        str(param) if param else None,
    )


def _host(exc: BaseException) -> str | None:
    """``host:port`` the request went to (no user or password, which a URL can carry)."""
    url = getattr(getattr(exc, "request", None), "url", None)
    if url is None:
        return None
    try:
        parts = urlsplit(str(url))
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host or None


def _os_reason(exc: BaseException) -> str | None:
    """Why the connection failed, from the deepest OS error behind the SDK's exception
    ("Connection refused"). Only OS errors: the text of others can quote the request, as h11
    quotes a header value (a key) that it refuses."""
    reason = None
    error = exc.__cause__ or exc.__context__
    for _ in range(20):  # a chain can loop
        if error is None:
            break
        if isinstance(error, ssl.SSLError):
            reason = str(error)
        elif isinstance(error, OSError):
            code = error.errno
            if isinstance(code, int) and code in errno.errorcode:
                reason = os.strerror(code)
            elif error.strerror:
                reason = error.strerror  # a failed DNS lookup: "Name or service not known"
        error = error.__cause__ or error.__context__
    return reason


_TIMEOUT_PHASES = {  # httpx's timeout class -> what the client was doing, and its timeout key
    "ConnectTimeout": ("connecting to {}", "connect"),
    "WriteTimeout": ("sending the request to {}", "write"),
    "PoolTimeout": ("waiting for a free connection to {}", "pool"),
}


def _connection_message(exc: BaseException, *, timed_out: bool) -> str:
    """A failed connection or a timeout, naming the host and the reason."""
    host = _host(exc)
    cause = exc.__cause__ or exc.__context__
    if timed_out:
        doing, key = _TIMEOUT_PHASES.get(type(cause).__name__, ("waiting for {} to answer", "read"))
        extensions = getattr(getattr(exc, "request", None), "extensions", None) or {}
        seconds = (extensions.get("timeout") or {}).get(key)
        after = f" after {seconds:g} s" if isinstance(seconds, int | float) else ""
        return f"request timed out{after} {doing.format(host)}" if host else "request timed out"
    reason = _os_reason(exc) or (type(cause).__name__ if cause is not None else None)
    where = f"could not reach {host}" if host else str(exc)
    return f"connection failed: {where}" + (f" ({_one_line(reason)})" if reason else "")


def translate_sdk_error(exc: BaseException, *, provider: str, model: str) -> ProviderError | None:
    """Turn an ``anthropic`` / ``openai`` exception into a ``ProviderError`` (None if foreign).

    Both SDKs share one exception layout (generated by the same tool), so one function serves
    both: ``APIStatusError`` with ``status_code``, ``response`` and ``body``;
    ``APITimeoutError`` subclassing ``APIConnectionError``.
    """
    name = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module not in ("anthropic", "openai"):
        return None
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        code, message, param = _error_fields(_error_body(exc))
        kind: ErrorKind = kind_for_status(status, code)
        return ProviderError(
            # the server's own words; a gateway may quote its upstream's URL
            mask_urls_in(_one_line(message) if message else str(exc)),
            provider=provider,
            model=model,
            kind=kind,
            status=status,
            retry_after=retry_after_seconds(headers),
            request_id=getattr(exc, "request_id", None),
            param=param,
        )
    is_timeout = "Timeout" in name
    is_connection = is_timeout or any(
        cls.__name__ == "APIConnectionError" for cls in type(exc).__mro__
    )
    if is_connection:
        return ProviderError(
            mask_urls_in(_connection_message(exc, timed_out=is_timeout)),
            provider=provider,
            model=model,
            kind="timeout" if is_timeout else "connection",
        )
    return ProviderError(
        mask_urls_in(str(exc)), provider=provider, model=model, kind="bad_response"
    )


PROBE_RETRY_DELAY = 1.0  # seconds before the preflight's one-token request is sent again


def _answered(error: ProviderError) -> str:
    """What a server answered, in a few words, for the preflight's account of what it tried."""
    status = f"HTTP {error.status} " if error.status is not None else ""
    return f"{status}{error.message}"


class SDKProvider:
    """What both SDK-backed providers share: a lazily built async client with the SDK's own
    retries off (the runner owns retries), error translation, the preflight check, closing.

    Calls go through the SDK client's request method with a plain JSON body
    (``client.post(path, body=..., cast_to=httpx2.Response)``, the SDKs' documented way to
    make a request of their own): the SDK still sends it (authentication, base URL, version
    headers, timeout, its error types), but its typed-parameter transform and pydantic
    response models are skipped. Those cost about 1.3 ms of CPU per case, a fifth of all the
    CPU a case needs (``docs/benchmarks.md``). A subclass gives the API path, builds the body
    in ``build_body`` and reads the answer in ``parse``.
    """

    name: str
    default_base_url: str
    client_class: str  # e.g. "AsyncAnthropic", in the package named ``name``
    path: str  # the API path, relative to the base URL
    request_id_header: str
    # Without a key (a self-hosted server that needs none) these headers are left out of every
    # request, the SDK's documented way to send none; its constructor still wants a value.
    auth_headers: tuple[str, ...] = ("Authorization",)
    keyless_placeholder = "unused: no key is sent"

    def __init__(self, *, api_key: str | None, base_url: str | None, timeout: float) -> None:
        self.base_url = base_url or self.default_base_url
        self._api_key = api_key
        self._timeout = timeout
        self._client: Any = None
        self._raw_response: Any = None  # the SDKs' HTTP response class: "no parsing, please"
        self._options: dict[str, Any] = {}  # per-request options: the omitted auth headers

    def _get_client(self) -> Any:
        if self._client is None:
            import importlib

            import httpx2

            self._raw_response = httpx2.Response
            sdk = importlib.import_module(self.name)
            api_key = self._api_key or self.keyless_placeholder
            if not self._api_key:
                self._options = {"headers": {name: sdk.Omit() for name in self.auth_headers}}
            self._client = getattr(sdk, self.client_class)(
                api_key=api_key, base_url=self.base_url, max_retries=0, timeout=self._timeout
            )
        return self._client

    def _translate(self, exc: Exception, model: str) -> ProviderError:
        """The SDK's exception as a ``ProviderError``; a keyless call's 401/403 says which key
        the server wants."""
        error = translate_sdk_error(exc, provider=self.name, model=model)
        if error is None:
            raise exc
        if error.kind == "auth" and not self._api_key:
            error.message += (
                f" (no key was sent: the server wants one, set {API_KEY_ENV[self.name]})"
            )
        return error

    def unsupported(self, key: str, request: Request, api: str) -> ProviderError:
        return ProviderError(
            f"param {key!r} is not supported by the {api}",
            provider=self.name,
            model=request.model,
            kind="bad_request",
        )

    def bad_response(self, request: Request, message: str, request_id: str | None) -> ProviderError:
        return ProviderError(
            message,
            provider=self.name,
            model=request.model,
            kind="bad_response",
            request_id=request_id,
        )

    def build_body(self, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def parse(
        self, data: Mapping[str, Any], request: Request, request_id: str | None
    ) -> Completion:
        """The API's JSON answer as a ``Completion``; ``ProviderError`` if it has none."""
        raise NotImplementedError

    async def complete(self, request: Request) -> Completion:
        body = self.build_body(request)
        client = self._get_client()
        started = time.perf_counter()
        try:
            response = await client.post(
                self.path, body=body, cast_to=self._raw_response, options=self._options
            )
        except Exception as exc:
            raise self._translate(exc, request.model) from exc
        request_id = response.headers.get(self.request_id_header)
        try:
            data = response.json()
        except ValueError:
            raise self.bad_response(
                request, "the API answered with a body that is not JSON", request_id
            ) from None
        if not isinstance(data, Mapping):
            raise self.bad_response(
                request, "the API answered with a JSON body that is not an object", request_id
            )
        try:
            completion = self.parse(data, request, request_id)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self.bad_response(
                request, f"the API's answer lacks a field the plugin reads ({exc!r})", request_id
            ) from None
        return replace(completion, latency_s=time.perf_counter() - started)

    async def check_model(self, model: str) -> None:
        """Raise ``ProviderError`` unless the server serves ``model`` (the preflight).

        Asked in turn until one says yes: the models endpoint for the id, the model list, and,
        unless the models endpoint said in the API's own error shape that there is no such
        model, a one-token request. The last is for servers whose models endpoints cannot tell
        (a freshly started ``transformers serve`` has no route for one model and lists only
        the models it has loaded), so a model that works is never refused; the refusal of one
        that does not says what was tried and what the server answered each time.
        """
        client = self._get_client()
        try:
            await client.models.retrieve(model, extra_headers=self._options.get("headers"))
            return
        except Exception as exc:
            retrieved = self._translate(exc, model)
            if retrieved.kind != "not_found":
                raise retrieved from exc
            # {"error": {...}} is the API's models route saying "no such model"; any other
            # 404 (FastAPI's {"detail": "Not Found"}) is a server without that route.
            body = _error_body(exc)
            said_so = isinstance(body, Mapping) and isinstance(body.get("error"), Mapping)
        try:
            headers = self._options.get("headers")
            listed = {entry.id async for entry in client.models.list(extra_headers=headers)}
        except Exception as exc:
            listing = f"GET models answered {_answered(self._translate(exc, model))}"
        else:
            if model in listed:
                return
            count = len(listed)
            listing = f"GET models listed {count} model{'' if count == 1 else 's'}, not this one"
        if said_so:
            raise retrieved
        probe = Request(
            model=model, messages=(ChatMessage("user", "Hi"),), params={"max_tokens": 1}
        )
        error = await self._probe(probe)
        if error is None:
            return
        raise ProviderError(
            f"the preflight asked three ways: GET models/{model} answered "
            f"{_answered(retrieved)}; {listing}; a one-token request answered {_answered(error)}",
            provider=self.name,
            model=model,
            kind=error.kind,
            status=error.status,
            request_id=error.request_id,
        )

    async def _probe(self, request: Request) -> ProviderError | None:
        """The preflight's one-token request: None when the model answered, or when the
        server is busy or still loading it (a 429, a timeout: the cases' own calls wait and
        retry); else why not. A 5xx or a lost connection is asked once more first: a server
        that cannot load the model answers 500 every time (``transformers serve``)."""
        for attempt in (1, 2):
            try:
                await self.complete(request)
                return None
            except ProviderError as error:
                if error.kind in ("rate_limit", "timeout"):
                    return None
                if not error.retryable or attempt == 2:
                    return error
            await asyncio.sleep(PROBE_RETRY_DELAY)
        raise AssertionError("unreachable")

    # -- the Batch API (--llm-batch) ---------------------------------------------------------

    async def batch_create(self, items: Sequence[tuple[str, Request]]) -> str:
        """Send ``items`` (custom id, request) as one batch of the provider's Batch API; its id."""
        raise NotImplementedError

    async def batch_state(self, batch_id: str) -> BatchState:
        """How far the batch is (one poll)."""
        raise NotImplementedError

    async def batch_results(
        self, batch_id: str, requests: Mapping[str, Request]
    ) -> dict[str, Completion | ProviderError]:
        """The ended batch's outcome for every custom id of ``requests``: a ``Completion``
        (``batch`` set), or the ``ProviderError`` of a request that failed, expired or was
        canceled, or that the results lack."""
        raise NotImplementedError

    async def batch_cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch (what it already processed stays)."""
        raise NotImplementedError

    def batch_missing(self, request: Request, batch_id: str, status: str) -> ProviderError:
        """The error of a request the ended batch has no result for: expired, canceled, or a
        result the provider lost."""
        kind: ErrorKind
        if status == "expired":
            kind, why = "expired", "expired before the provider processed it"
        elif status in ("canceled", "cancelled", "canceling", "cancelling"):
            kind, why = "canceled", "its batch was canceled before the provider processed it"
        else:
            kind, why = "bad_response", f"the batch ended ({status}) without a result for it"
        return ProviderError(
            f"batch {batch_id}: {why}", provider=self.name, model=request.model, kind=kind
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
