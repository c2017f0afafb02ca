"""What every provider speaks: a ``Request`` in, a ``Completion`` out, or a ``ProviderError``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pytest_llmregress.core.text import shared

_SHARED = frozenset(
    {"provider", "requested_model", "resolved_model", "system_fingerprint", "fallback_model"}
)

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ReplySchema:
    """Ask for the reply as one JSON object of ``schema`` (structured output).

    Anthropic gets it as the one tool the model must call (``tool_choice``), OpenAI as
    ``response_format`` ``json_schema`` in strict mode; either way the ``Completion``'s text
    is the object as JSON. ``name`` names the tool or the format (``[A-Za-z0-9_-]``, at most
    64 characters). The schema should suit OpenAI's strict mode: every property required,
    ``additionalProperties`` false.
    """

    name: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Request:
    """One model call: the model id (without provider prefix), the conversation and params.

    ``reply_schema``, when set, asks the provider for a structured reply (the judge's verdict).
    """

    model: str
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    reply_schema: ReplySchema | None = None


@dataclass(frozen=True)
class Completion:
    """One model answer and everything known about how it was produced."""

    text: str
    provider: str
    requested_model: str
    resolved_model: str  # the `model` field the API answered with
    system_fingerprint: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    request_id: str | None = None
    attempts: int = 1
    fallback_model: str | None = None
    cached: bool = False  # served from the response cache, not the network
    batch: bool = False  # answered through the provider's Batch API (--llm-batch)

    def to_dict(self) -> dict[str, Any]:
        # Only scalar fields: a shallow copy is the JSON-able dict (asdict deep-copies, slowly).
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        # Every result of a run names the same few models: one string each, not one per call.
        return cls(**{k: shared(v) if k in _SHARED else v for k, v in data.items()})


ErrorKind = Literal[
    "not_found",  # unknown or retired model (404, 410)
    "auth",  # 401, 403
    "bad_request",  # 400, 413, 422
    "rate_limit",  # 429 (transient)
    "quota",  # 429 insufficient_quota (permanent)
    "server",  # 5xx, 529, 408, 409
    "timeout",
    "connection",
    "bad_response",  # the API answered 200 with something unusable (no text)
    "budget",  # not sent: --llm-max-cost would be passed (no request was made)
    "expired",  # a batch request the provider did not process in the batch's window
    "canceled",  # a batch request whose batch was canceled before it was processed
]

RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "server", "timeout", "connection"})


class ProviderError(Exception):
    """A model call that failed; ``retryable`` says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        kind: ErrorKind,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.attempts = attempts
        self.param = param  # the request field the error names (OpenAI's `param`), if any

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def copy(self) -> ProviderError:
        """The same error as a new exception object (one raised exception per caller: a
        raised exception carries its traceback)."""
        return ProviderError(
            self.message,
            provider=self.provider,
            model=self.model,
            kind=self.kind,
            status=self.status,
            retry_after=self.retry_after,
            request_id=self.request_id,
            attempts=self.attempts,
            param=self.param,
        )

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status is not None else ""
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.provider}:{self.model}: {status}{self.kind}: {self.message}{tries}"


def kind_for_status(status: int, code: str | None = None) -> ErrorKind:
    """Map an HTTP status (and the error code in the body) to the error taxonomy."""
    if status == 429:
        return "quota" if code == "insufficient_quota" else "rate_limit"
    if status in (404, 410):
        return "not_found"
    if status in (401, 403):
        return "auth"
    if status in (408, 409) or status >= 500:
        return "server"
    return "bad_request"


@dataclass(frozen=True)
class BatchState:
    """A provider batch as its last poll saw it: ``done`` of ``total`` requests processed
    (whatever their outcome); ``ended``: its results can be read; ``status``: the provider's
    own word for its state."""

    id: str
    status: str
    ended: bool
    done: int
    total: int


class Provider(Protocol):
    """A provider turns a ``Request`` into a ``Completion`` (one attempt, no retries)."""

    name: str
    base_url: str

    async def complete(self, request: Request) -> Completion: ...

    async def check_model(self, model: str) -> None:
        """Raise ``ProviderError`` unless the provider serves ``model`` (the preflight)."""

    async def batch_create(self, items: Sequence[tuple[str, Request]]) -> str:
        """Send ``items`` (custom id, request) as one batch of the provider's Batch API."""

    async def batch_state(self, batch_id: str) -> BatchState:
        """How far the batch is (one poll)."""

    async def batch_results(
        self, batch_id: str, requests: Mapping[str, Request]
    ) -> dict[str, Completion | ProviderError]:
        """The ended batch's outcome for every custom id of ``requests``."""

    async def batch_cancel(self, batch_id: str) -> None:
        """Cancel the batch at the provider."""

    async def aclose(self) -> None: ...
