"""The batch APIs of the local provider server: Anthropic Message Batches, OpenAI Batch + Files.

:class:`BatchStore` keeps the batches and files in memory (a restarted server has none), speaks
both wire formats and runs each batch's state machine. It does not answer the requests itself:
the server hands it an ``answer`` function, the same logic as an online request to the model
without its latency, rate limit, slots or online counters (``LocalProviderServer``'s
``_batch_answer``), so a batched request gets the answer, error or judge verdict the online
one would.

A batch ends on a retrieval, never on the clock alone, so tests wait on events: it ends on its
``polls``-th retrieval (``BatchesConfig``), unless :meth:`BatchStore.hold` holds every batch,
and :meth:`BatchStore.release` ends them all at once. Its requests are answered when it ends
(or earlier, by :meth:`BatchStore.process`); :meth:`BatchStore.expire` and a cancel end it with
the requests not answered yet expired or canceled. See ``docs/local-server.md``.
"""

from __future__ import annotations

import datetime as _dt
import email.parser
import email.policy
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmregress.testing.scenario import BatchesConfig

__all__ = [
    "BatchAPIError",
    "BatchAnswer",
    "BatchInfo",
    "BatchReply",
    "BatchStore",
    "anthropic_page",
]

Provider = Literal["anthropic", "openai"]

ANTHROPIC_BATCHES_PATH = "/v1/messages/batches"
OPENAI_BATCHES_PATH = "/v1/batches"
FILES_PATH = "/v1/files"
OPENAI_BATCH_ENDPOINT = "/v1/chat/completions"

_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ANTHROPIC_MAX_REQUESTS = 100_000
_OPENAI_MAX_REQUESTS = 50_000
_EXPIRY_S = 24 * 3600
_FILE_PURPOSES = (
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
)

Outcome = Literal["succeeded", "errored", "canceled", "expired"]


class BatchAPIError(Exception):
    """An error answer of a batch route, written in the provider's error format by the server
    (``error_type`` None: the usual type for ``status``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type


@dataclass(frozen=True)
class BatchAnswer:
    """One batched request's answer: its status (200, or the error status the online request
    would get), its body (the Message or ChatCompletion, or the provider's error body), the
    request id, and the model id requested and the snapshot that answered (None if unknown)."""

    status: int
    body: dict[str, Any]
    request_id: str
    requested: str | None = None
    resolved: str | None = None
    usage: tuple[int, int] = (0, 0)  # input, output tokens


@dataclass(frozen=True)
class BatchReply:
    """What a batch route answers: a status and a JSON payload, or raw bytes."""

    status: int
    payload: object = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchInfo:
    """A batch as :meth:`LocalProviderServer.batches` lists it: its id, provider, status as
    the provider names it (Anthropic ``processing_status``, OpenAI ``status``), the custom ids
    of its requests in order, and each answered or ended request's outcome by custom id
    (``succeeded``, ``errored``, ``canceled``, ``expired``)."""

    id: str
    provider: Provider
    status: str
    custom_ids: tuple[str, ...]
    outcomes: Mapping[str, str]
    retrievals: int


@dataclass
class _Item:
    custom_id: str
    body: object
    answer: BatchAnswer | None = None
    outcome: Outcome | None = None  # set when answered or when the batch ends


@dataclass
class _Batch:
    id: str
    provider: Provider
    items: list[_Item]
    created: float
    state: Literal["validating", "in_progress", "canceling", "ended", "failed"] = "in_progress"
    ending: Literal["completed", "canceled", "expired"] | None = None
    retrievals: int = 0
    cancel_at: float | None = None
    in_progress_at: float | None = None
    ended_at: float | None = None
    # OpenAI only
    input_file_id: str | None = None
    completion_window: str = "24h"
    metadata: dict[str, Any] | None = None
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created: float


def _now_iso(when: float) -> str:
    moment = _dt.datetime.fromtimestamp(when, tz=_dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _int_time(when: float | None) -> int | None:
    return None if when is None else int(when)


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n" for line in lines)


class BatchStore:
    """The batches and files of one server, in memory, behind one lock.

    ``answer(provider, body)`` answers one batched request (never called with the lock held);
    ``settings()`` gives the current :class:`BatchesConfig`; ``changed()`` is called after
    every change of a counter (the server's ``wait_until`` wakes up); ``check_model(model)``
    says why an OpenAI input file's model cannot run (the online 404's message), or None.
    """

    def __init__(
        self,
        answer: Callable[[Provider, object], BatchAnswer],
        settings: Callable[[], BatchesConfig],
        changed: Callable[[], None] = lambda: None,
        check_model: Callable[[str], str | None] = lambda model: None,
    ) -> None:
        self._answer = answer
        self._check_model = check_model
        self._settings = settings
        self._changed = changed
        self._lock = threading.Lock()
        self._ending = threading.Lock()  # one batch ends at a time, outside self._lock
        self._batches: dict[str, _Batch] = {}
        self._files: dict[str, _File] = {}
        self._held = False
        self._counters = self._zero()

    # -- counters and control --------------------------------------------------------------

    @staticmethod
    def _zero() -> dict[str, Any]:
        return {
            "created": {"anthropic": 0, "openai": 0},
            "files_uploaded": 0,
            "retrievals": 0,
            "results_downloads": 0,
            "cancels": 0,
            "requests": 0,
            "by_model": {},
            "by_resolved_model": {},
        }

    def counters(self) -> dict[str, Any]:
        """A copy of the counters (see ``docs/local-server.md``)."""
        with self._lock:
            copy = dict(self._counters)
            copy["created"] = dict(self._counters["created"])
            copy["by_model"] = dict(self._counters["by_model"])
            copy["by_resolved_model"] = dict(self._counters["by_resolved_model"])
            copy["held"] = self._held
            copy["in_progress"] = sum(
                b.state in ("validating", "in_progress", "canceling")
                for b in self._batches.values()
            )
            return copy

    def reset_counters(self) -> None:
        """Zero the counters; the batches and files stay."""
        with self._lock:
            self._counters = self._zero()
        self._changed()

    def _count(self, key: str) -> None:
        with self._lock:
            self._counters[key] += 1
        self._changed()

    def hold(self) -> None:
        """Hold every batch: none ends (retrievals still count) until :meth:`release`."""
        with self._lock:
            self._held = True
        self._changed()

    def release(self) -> None:
        """Stop holding and end every batch in progress now (canceling ones are canceled)."""
        with self._lock:
            self._held = False
            pending = self._pending()
        for batch in pending:
            self._end(batch, None)
        self._changed()

    def expire(self) -> None:
        """End every batch in progress now as expired: the requests already answered keep
        their answer, the others are expired (canceling batches are canceled)."""
        with self._lock:
            pending = self._pending()
        for batch in pending:
            self._end(batch, "expired")
        self._changed()

    def process(self, count: int | None = None) -> None:
        """Answer the next ``count`` unanswered requests (all when None) of every batch in
        progress, without ending it: they keep their answer if it is canceled or expires."""
        with self._lock:
            pending = [b for b in self._pending() if b.state == "in_progress"]
        with self._ending:
            for batch in pending:
                todo = [item for item in batch.items if item.answer is None]
                self._answer_items(batch, todo if count is None else todo[:count])
        self._changed()

    def infos(self) -> list[BatchInfo]:
        """Every batch, oldest first."""
        with self._lock:
            return [
                BatchInfo(
                    id=b.id,
                    provider=b.provider,
                    status=self._status(b),
                    custom_ids=tuple(item.custom_id for item in b.items),
                    outcomes={i.custom_id: i.outcome for i in b.items if i.outcome is not None},
                    retrievals=b.retrievals,
                )
                for b in self._batches.values()
            ]

    # -- the state machine ---------------------------------------------------------------------

    def _status(self, batch: _Batch) -> str:
        if batch.provider == "anthropic":
            return batch.state
        return {
            "validating": "validating",
            "failed": "failed",
            "in_progress": "in_progress",
            "canceling": "cancelling",
            "ended": {"completed": "completed", "canceled": "cancelled", "expired": "expired"}[
                batch.ending or "completed"
            ],
        }[batch.state]

    def _pending(self) -> list[_Batch]:
        """The batches not ended, validated first (call with the lock held)."""
        for batch in self._batches.values():
            self._validate(batch)
        return [b for b in self._batches.values() if b.state in ("in_progress", "canceling")]

    @staticmethod
    def _validate(batch: _Batch) -> None:
        """An OpenAI batch still validating moves on: failed, or in progress (call with the
        lock held). Its input file was read at creation; it only shows now."""
        if batch.state == "validating":
            if batch.errors:
                batch.state, batch.ended_at = "failed", time.time()
            else:
                batch.state, batch.in_progress_at = "in_progress", time.time()

    def _retrieved(self, batch: _Batch) -> None:
        """A retrieval of ``batch``: counted, and the batch moves on (validated, ended) when
        it is due."""
        settings = self._settings()
        with self._lock:
            self._counters["retrievals"] += 1
            batch.retrievals += 1
            self._validate(batch)
            due = not self._held and (
                batch.state == "canceling"
                or (
                    batch.state == "in_progress"
                    and batch.retrievals >= settings.polls
                    and time.time() >= batch.created + settings.delay_s
                )
            )
        if due:
            self._end(batch, None)
        self._changed()

    def _end(self, batch: _Batch, how: Literal["expired"] | None) -> None:
        """End ``batch``: answer its requests (up to ``expire_after`` of them), or, when
        canceling or ``how`` is expired, mark the unanswered ones canceled or expired."""
        with self._ending:
            with self._lock:
                if batch.state not in ("in_progress", "canceling"):
                    return
                if batch.state == "canceling":
                    ending: Literal["completed", "canceled", "expired"] = "canceled"
                elif how == "expired":
                    ending = "expired"
                else:
                    ending = "completed"
                limit = self._settings().expire_after if ending == "completed" else None
            todo = [item for item in batch.items if item.answer is None]
            if ending == "completed":
                answered = len(batch.items) - len(todo)
                if limit is not None and len(batch.items) > limit:
                    todo = todo[: max(0, limit - answered)]
                    ending = "expired"
                self._answer_items(batch, todo)
            rest: Outcome = "canceled" if ending == "canceled" else "expired"
            with self._lock:
                for item in batch.items:
                    if item.outcome is None:
                        item.outcome = rest
                batch.state, batch.ending, batch.ended_at = "ended", ending, time.time()
                if batch.provider == "openai":
                    self._write_openai_files(batch)

    def _answer_items(self, batch: _Batch, items: list[_Item]) -> None:
        """Answer ``items`` (call with ``self._ending`` held, not ``self._lock``)."""
        for item in items:
            answer = self._answer(batch.provider, item.body)
            with self._lock:
                item.answer = answer
                item.outcome = "succeeded" if answer.status == 200 else "errored"
                counters = self._counters
                counters["requests"] += 1
                key = answer.requested if answer.requested is not None else "<none>"
                counters["by_model"][key] = counters["by_model"].get(key, 0) + 1
                if answer.resolved is not None:
                    by_resolved = counters["by_resolved_model"]
                    by_resolved[answer.resolved] = by_resolved.get(answer.resolved, 0) + 1

    def _find(self, provider: Provider, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None or batch.provider != provider:
            if provider == "anthropic":
                raise BatchAPIError(404, f"Message batch not found: {batch_id}")
            raise BatchAPIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    # -- routing ---------------------------------------------------------------------------

    def handle(
        self,
        provider: Provider,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        base_url: str,
    ) -> BatchReply:
        """Answer one request to a batch or file route (auth already checked); raises
        :class:`BatchAPIError` for an error answer."""
        if provider == "anthropic":
            return self._anthropic(method, path, query, body, base_url)
        if path == FILES_PATH or path.startswith(FILES_PATH + "/"):
            return self._files_route(method, path, query, headers, body)
        return self._openai(method, path, query, body)

    @staticmethod
    def routes(path: str) -> Provider | None:
        """Which provider's batch routes ``path`` belongs to, or None."""
        if path == ANTHROPIC_BATCHES_PATH or path.startswith(ANTHROPIC_BATCHES_PATH + "/"):
            return "anthropic"
        for prefix in (OPENAI_BATCHES_PATH, FILES_PATH):
            if path == prefix or path.startswith(prefix + "/"):
                return "openai"
        return None

    @staticmethod
    def _no_route(method: str, path: str) -> BatchAPIError:
        return BatchAPIError(404, f"No route for {method} {path}")

    # -- Anthropic Message Batches -----------------------------------------------------------

    def _anthropic(
        self, method: str, path: str, query: Mapping[str, str], body: bytes, base_url: str
    ) -> BatchReply:
        rest = path[len(ANTHROPIC_BATCHES_PATH) :].strip("/")
        parts = rest.split("/") if rest else []
        if not parts:
            if method == "POST":
                batch = self._anthropic_create(body)
                return BatchReply(200, self._anthropic_object(batch, base_url))
            if method == "GET":
                return BatchReply(200, self._anthropic_list(query, base_url))
            raise self._no_route(method, path)
        batch = self._find("anthropic", parts[0])
        if len(parts) == 1 and method == "GET":
            self._retrieved(batch)
            return BatchReply(200, self._anthropic_object(batch, base_url))
        if len(parts) == 1 and method == "DELETE":
            with self._lock:
                if batch.state != "ended":
                    raise BatchAPIError(
                        400,
                        f"Message batch {batch.id} cannot be deleted while it is still "
                        "processing; cancel it and wait for it to end first.",
                    )
                del self._batches[batch.id]
            self._changed()
            return BatchReply(200, {"id": batch.id, "type": "message_batch_deleted"})
        if parts[1:] == ["cancel"] and method == "POST":
            self._cancel(batch)
            return BatchReply(200, self._anthropic_object(batch, base_url))
        if parts[1:] == ["results"] and method == "GET":
            with self._lock:
                if batch.state != "ended":
                    raise BatchAPIError(
                        400,
                        f"Message batch {batch.id} has not ended yet; its results are "
                        "available once processing_status is ended.",
                    )
                lines = [self._anthropic_line(item) for item in batch.items]
            self._count("results_downloads")
            # what the API sends (it once sent no Content-Type, which broke SDKs that check it)
            disposition = f"attachment; filename*=utf-8''{batch.id}_results.jsonl"
            return BatchReply(
                200,
                raw=_jsonl(lines),
                content_type="application/x-jsonl",
                headers={"content-disposition": disposition},
            )
        raise self._no_route(method, path)

    def _anthropic_create(self, body: bytes) -> _Batch:
        data = _json_object(body)
        requests = data.get("requests")
        if requests is None:
            raise BatchAPIError(400, "requests: Field required")
        if not isinstance(requests, list):
            raise BatchAPIError(400, "requests: Input should be a valid list")
        if not requests:
            raise BatchAPIError(
                400, "requests: List should have at least 1 item after validation, not 0"
            )
        if len(requests) > _ANTHROPIC_MAX_REQUESTS:
            raise BatchAPIError(
                400,
                f"requests: List should have at most {_ANTHROPIC_MAX_REQUESTS} items after "
                f"validation, not {len(requests)}",
            )
        unknown = [key for key in data if key != "requests"]
        if unknown:
            raise BatchAPIError(400, f"{unknown[0]}: Extra inputs are not permitted")
        items: list[_Item] = []
        seen: set[str] = set()
        for index, request in enumerate(requests):
            where = f"requests.{index}"
            if not isinstance(request, dict):
                raise BatchAPIError(400, f"{where}: Input should be a valid dictionary")
            for key in ("custom_id", "params"):
                if key not in request:
                    raise BatchAPIError(400, f"{where}.{key}: Field required")
            extra = [key for key in request if key not in ("custom_id", "params")]
            if extra:
                raise BatchAPIError(400, f"{where}.{extra[0]}: Extra inputs are not permitted")
            custom_id = request["custom_id"]
            if not isinstance(custom_id, str):
                raise BatchAPIError(400, f"{where}.custom_id: Input should be a valid string")
            if not _CUSTOM_ID.fullmatch(custom_id):
                raise BatchAPIError(
                    400,
                    f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'",
                )
            if custom_id in seen:
                raise BatchAPIError(
                    400,
                    f"{where}.custom_id: Duplicate custom_id {custom_id!r}; each request's "
                    "custom_id must be unique within the batch.",
                )
            seen.add(custom_id)
            if not isinstance(request["params"], dict):
                raise BatchAPIError(400, f"{where}.params: Input should be a valid dictionary")
            items.append(_Item(custom_id, request["params"]))
        now = time.time()
        batch = _Batch(
            id="msgbatch_" + secrets.token_hex(12),
            provider="anthropic",
            items=items,
            created=now,
            in_progress_at=now,
        )
        with self._lock:
            self._batches[batch.id] = batch
            self._counters["created"]["anthropic"] += 1
        self._changed()
        return batch

    def _anthropic_object(self, batch: _Batch, base_url: str) -> dict[str, Any]:
        with self._lock:
            counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
            for item in batch.items:
                # a request moves out of processing only when the whole batch ends
                key = item.outcome if batch.state == "ended" and item.outcome else "processing"
                counts[key] += 1
            ended = batch.state == "ended"
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": batch.state,
                "request_counts": counts,
                "ended_at": _now_iso(batch.ended_at) if batch.ended_at is not None else None,
                "created_at": _now_iso(batch.created),
                "expires_at": _now_iso(batch.created + _EXPIRY_S),
                "cancel_initiated_at": (
                    _now_iso(batch.cancel_at) if batch.cancel_at is not None else None
                ),
                "archived_at": None,
                "results_url": (
                    f"{base_url}{ANTHROPIC_BATCHES_PATH}/{batch.id}/results" if ended else None
                ),
            }

    def _anthropic_list(self, query: Mapping[str, str], base_url: str) -> dict[str, Any]:
        limit = _limit(query, "limit")
        with self._lock:
            batches = [b for b in reversed(self._batches.values()) if b.provider == "anthropic"]
        return anthropic_page([self._anthropic_object(b, base_url) for b in batches], query, limit)

    @staticmethod
    def _anthropic_line(item: _Item) -> dict[str, Any]:
        answer = item.answer
        if item.outcome in ("canceled", "expired") or answer is None:
            return {"custom_id": item.custom_id, "result": {"type": item.outcome or "expired"}}
        if answer.status == 200:
            result: dict[str, Any] = {"type": "succeeded", "message": answer.body}
        else:
            error = {key: value for key, value in answer.body.items() if key != "request_id"}
            result = {"type": "errored", "error": error}
        return {"custom_id": item.custom_id, "result": result}

    def _cancel(self, batch: _Batch) -> None:
        with self._lock:
            self._validate(batch)
            if batch.state in ("ended", "failed"):
                status = self._status(batch)
                if batch.provider == "anthropic":
                    raise BatchAPIError(
                        409, f"Message batch {batch.id} has already ended and cannot be canceled."
                    )
                raise BatchAPIError(409, f"Cannot cancel a batch with status '{status}'.")
            if batch.state != "canceling":
                batch.state, batch.cancel_at = "canceling", time.time()
            self._counters["cancels"] += 1
        self._changed()

    # -- OpenAI Files ----------------------------------------------------------------------

    def _files_route(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> BatchReply:
        rest = path[len(FILES_PATH) :].strip("/")
        parts = rest.split("/") if rest else []
        if not parts:
            if method == "POST":
                return BatchReply(200, self._file_object(self._upload(headers, body)))
            if method == "GET":
                return BatchReply(200, self._files_list(query))
            raise self._no_route(method, path)
        with self._lock:
            found = self._files.get(parts[0])
        if found is None:
            raise BatchAPIError(404, f"No such File object: {parts[0]}", param="id")
        if len(parts) == 1 and method == "GET":
            return BatchReply(200, self._file_object(found))
        if len(parts) == 1 and method == "DELETE":
            with self._lock:
                self._files.pop(found.id, None)
            return BatchReply(200, {"id": found.id, "object": "file", "deleted": True})
        if parts[1:] == ["content"] and method == "GET":
            if found.purpose == "batch_output":
                self._count("results_downloads")
            return BatchReply(200, raw=found.data, content_type="application/octet-stream")
        raise self._no_route(method, path)

    def _upload(self, headers: Mapping[str, str], body: bytes) -> _File:
        content_type = headers.get("content-type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            raise BatchAPIError(
                400,
                "The request must be multipart/form-data with the fields 'file' and 'purpose'.",
            )
        fields: dict[str, tuple[str | None, bytes]] = {}
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(name, str) and isinstance(payload, bytes):
                    fields[name] = (part.get_filename(), payload)
        if "file" not in fields:
            raise BatchAPIError(
                400,
                "Missing required parameter: 'file'.",
                param="file",
                code="missing_required_parameter",
            )
        if "purpose" not in fields:
            raise BatchAPIError(
                400,
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        purpose = fields["purpose"][1].decode("utf-8", "replace")
        if purpose not in _FILE_PURPOSES:
            raise BatchAPIError(
                400,
                f"Invalid value: '{purpose}'. Supported values are: "
                + ", ".join(f"'{p}'" for p in _FILE_PURPOSES)
                + ".",
                param="purpose",
                code="invalid_value",
            )
        filename, data = fields["file"]
        return self._add_file(filename or "upload", purpose, data, uploaded=True)

    def _add_file(self, filename: str, purpose: str, data: bytes, *, uploaded: bool) -> _File:
        """Store a file (call without the lock held)."""
        new = _File(
            id="file-" + secrets.token_hex(11),
            filename=filename,
            purpose=purpose,
            data=data,
            created=time.time(),
        )
        with self._lock:
            self._files[new.id] = new
            if uploaded:
                self._counters["files_uploaded"] += 1
        if uploaded:
            self._changed()
        return new

    @staticmethod
    def _file_object(found: _File) -> dict[str, Any]:
        return {
            "id": found.id,
            "object": "file",
            "bytes": len(found.data),
            "created_at": int(found.created),
            "filename": found.filename,
            "purpose": found.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _files_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            files = list(reversed(self._files.values()))
        purpose = query.get("purpose")
        if purpose:
            files = [f for f in files if f.purpose == purpose]
        return _cursor_page([self._file_object(f) for f in files], query)

    # -- OpenAI Batch ----------------------------------------------------------------------

    def _openai(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> BatchReply:
        rest = path[len(OPENAI_BATCHES_PATH) :].strip("/")
        parts = rest.split("/") if rest else []
        if not parts:
            if method == "POST":
                return BatchReply(200, self._openai_object(self._openai_create(body)))
            if method == "GET":
                with self._lock:
                    batches = [
                        b for b in reversed(self._batches.values()) if b.provider == "openai"
                    ]
                objects = [self._openai_object(b) for b in batches]
                return BatchReply(200, _cursor_page(objects, query))
            raise self._no_route(method, path)
        batch = self._find("openai", parts[0])
        if len(parts) == 1 and method == "GET":
            self._retrieved(batch)
            return BatchReply(200, self._openai_object(batch))
        if parts[1:] == ["cancel"] and method == "POST":
            self._cancel(batch)
            return BatchReply(200, self._openai_object(batch))
        raise self._no_route(method, path)

    def _openai_create(self, body: bytes) -> _Batch:
        data = _json_object(body)
        for name in ("input_file_id", "endpoint", "completion_window"):
            if data.get(name) is None:
                raise BatchAPIError(
                    400,
                    f"Missing required parameter: '{name}'.",
                    param=name,
                    code="missing_required_parameter",
                )
        endpoint, window = data["endpoint"], data["completion_window"]
        if endpoint != OPENAI_BATCH_ENDPOINT:
            raise BatchAPIError(
                400,
                f"Invalid value: '{endpoint}'. The llmregress local server supports the "
                f"endpoint '{OPENAI_BATCH_ENDPOINT}' only.",
                param="endpoint",
                code="invalid_value",
            )
        if window != "24h":
            raise BatchAPIError(
                400,
                f"Invalid value: '{window}'. Supported values are: '24h'.",
                param="completion_window",
                code="invalid_value",
            )
        metadata = data.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
        ):
            raise BatchAPIError(
                400,
                "Invalid type for 'metadata': expected an object with string values.",
                param="metadata",
                code="invalid_type",
            )
        file_id = str(data["input_file_id"])
        with self._lock:
            found = self._files.get(file_id)
        if found is None:
            raise BatchAPIError(404, f"No such File object: {file_id}", param="input_file_id")
        if found.purpose != "batch":
            raise BatchAPIError(
                400,
                f"Invalid 'input_file_id': the file {file_id} has purpose '{found.purpose}'; "
                "a batch's input file must have purpose 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        items, model, errors = _read_input_file(found.data)
        problem = None if errors or model is None else self._check_model(model)
        if problem is not None:
            errors = [_line_error(1, "model_not_found", problem, "body.model")]
        batch = _Batch(
            id="batch_" + secrets.token_hex(16),
            provider="openai",
            items=items,
            created=time.time(),
            state="validating",
            input_file_id=file_id,
            completion_window=window,
            metadata=dict(metadata) if metadata is not None else None,
            model=model,
            errors=errors,
        )
        with self._lock:
            self._batches[batch.id] = batch
            self._counters["created"]["openai"] += 1
        self._changed()
        return batch

    def _openai_object(self, batch: _Batch) -> dict[str, Any]:
        with self._lock:
            status = self._status(batch)
            answered = [i.answer for i in batch.items if i.answer is not None]
            completed = sum(a.status == 200 for a in answered)
            failed = sum(i.outcome not in (None, "succeeded") for i in batch.items)
            total = 0 if batch.state in ("validating", "failed") else len(batch.items)
            ended = batch.ended_at if batch.state == "ended" else None
            input_tokens = sum(a.usage[0] for a in answered)
            output_tokens = sum(a.usage[1] for a in answered)
            return {
                "id": batch.id,
                "object": "batch",
                "endpoint": OPENAI_BATCH_ENDPOINT,
                "model": batch.model,
                "errors": (
                    {"object": "list", "data": [dict(e) for e in batch.errors]}
                    if batch.state == "failed"
                    else None
                ),
                "input_file_id": batch.input_file_id,
                "completion_window": batch.completion_window,
                "status": status,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "created_at": int(batch.created),
                "in_progress_at": _int_time(batch.in_progress_at),
                "expires_at": int(batch.created + _EXPIRY_S),
                "finalizing_at": _int_time(ended if batch.ending == "completed" else None),
                "completed_at": _int_time(ended if batch.ending == "completed" else None),
                "failed_at": _int_time(batch.ended_at if batch.state == "failed" else None),
                "expired_at": _int_time(ended if batch.ending == "expired" else None),
                "cancelling_at": _int_time(batch.cancel_at),
                "cancelled_at": _int_time(ended if batch.ending == "canceled" else None),
                "request_counts": {"total": total, "completed": completed, "failed": failed},
                "usage": {
                    "input_tokens": input_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": output_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": input_tokens + output_tokens,
                },
                "metadata": batch.metadata,
            }

    def _write_openai_files(self, batch: _Batch) -> None:
        """The output and error files of an ended batch (call with the lock held); a file with
        no line is not written, as the API does."""
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in batch.items:
            line: dict[str, Any] = {"id": "batch_req_" + secrets.token_hex(16)}
            line["custom_id"] = item.custom_id
            answer = item.answer
            if answer is None:
                code = "batch_expired" if item.outcome == "expired" else "batch_cancelled"
                message = (
                    "This request could not be executed before the completion window expired."
                    if item.outcome == "expired"
                    else "This request was not executed because the batch was cancelled."
                )
                line |= {"response": None, "error": {"code": code, "message": message}}
                errors.append(line)
                continue
            line["response"] = {
                "status_code": answer.status,
                "request_id": answer.request_id,
                "body": answer.body,
            }
            line["error"] = None
            (output if answer.status == 200 else errors).append(line)
        for lines, attribute, name in (
            (output, "output_file_id", "output"),
            (errors, "error_file_id", "error"),
        ):
            if lines:
                new = _File(
                    id="file-" + secrets.token_hex(11),
                    filename=f"{batch.id}_{name}.jsonl",
                    purpose="batch_output",
                    data=_jsonl(lines),
                    created=time.time(),
                )
                self._files[new.id] = new
                setattr(batch, attribute, new.id)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchAPIError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BatchAPIError(400, "The request body must be a JSON object.")
    return data


def anthropic_page(
    entries: list[dict[str, Any]], query: Mapping[str, str], limit: int
) -> dict[str, Any]:
    """One page of an Anthropic list (models, batches): ``after_id`` / ``before_id`` cursors,
    ``has_more``, ``first_id``, ``last_id``."""
    ids = [entry["id"] for entry in entries]
    after, before = query.get("after_id"), query.get("before_id")
    if before:
        end = ids.index(before) if before in ids else len(ids)
        page = entries[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        page = entries[start : start + limit]
        has_more = start + limit < len(entries)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _limit(query: Mapping[str, str], name: str, default: int = 20) -> int:
    try:
        return max(1, min(1000, int(query.get(name, str(default)))))
    except ValueError:
        raise BatchAPIError(400, f"{name}: Input should be a valid integer", param=name) from None


def _cursor_page(objects: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """An OpenAI list page: newest first, ``after`` an id, ``limit`` 1..100 (default 20)."""
    limit = min(100, _limit(query, "limit"))
    ids = [obj["id"] for obj in objects]
    after = query.get("after")
    start = ids.index(after) + 1 if after in ids else 0
    page = objects[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(objects),
    }


def _line_error(line: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _read_input_file(data: bytes) -> tuple[list[_Item], str | None, list[dict[str, Any]]]:
    """The requests of an OpenAI batch input file, its model, and its problems as the API
    lists them in a failed batch's ``errors`` (one per line at most; none: the file is valid).
    The bodies themselves are checked when each request runs, as the API does."""
    items: list[_Item] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    lines = data.decode("utf-8", "replace").splitlines()
    numbered = [(number, text) for number, text in enumerate(lines, 1) if text.strip()]
    if not numbered:
        return [], None, [_line_error(1, "empty_file", "The batch input file is empty.")]
    if len(numbered) > _OPENAI_MAX_REQUESTS:
        message = (
            f"The batch input file has {len(numbered)} requests; a batch may have at most "
            f"{_OPENAI_MAX_REQUESTS}."
        )
        return [], None, [_line_error(1, "too_many_tasks", message)]
    for number, text in numbered:
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            message = "This line is not parseable as valid JSON."
            errors.append(_line_error(number, "invalid_json_line", message))
            continue
        missing = next(
            (key for key in ("custom_id", "method", "url", "body") if key not in request), None
        )
        if missing is not None:
            errors.append(
                _line_error(
                    number,
                    "missing_required_parameter",
                    f"Missing required parameter: '{missing}'.",
                    missing,
                )
            )
            continue
        custom_id, body = request["custom_id"], request["body"]
        if not isinstance(custom_id, str) or not custom_id:
            message = "Invalid 'custom_id': expected a non-empty string."
            errors.append(_line_error(number, "invalid_value", message, "custom_id"))
            continue
        if custom_id in seen:
            message = (
                f"The custom_id '{custom_id}' is used by more than one request; each request's "
                "custom_id must be unique in the file."
            )
            errors.append(_line_error(number, "duplicate_custom_id", message, "custom_id"))
            continue
        seen.add(custom_id)
        if request["method"] != "POST":
            message = f"Invalid value: '{request['method']}'. Supported values are: 'POST'."
            errors.append(_line_error(number, "invalid_value", message, "method"))
            continue
        if request["url"] != OPENAI_BATCH_ENDPOINT:
            message = (
                f"The provided URL '{request['url']}' does not match the batch endpoint "
                f"'{OPENAI_BATCH_ENDPOINT}'."
            )
            errors.append(_line_error(number, "url_mismatch", message, "url"))
            continue
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            message = "Missing required parameter: 'body.model'."
            errors.append(_line_error(number, "missing_required_parameter", message, "body.model"))
            continue
        if model is None:
            model = body["model"]
        elif body["model"] != model:
            message = (
                f"The model '{body['model']}' does not match the model '{model}' of the file's "
                "other requests; a batch input file may use one model only."
            )
            errors.append(_line_error(number, "model_mismatch", message, "body.model"))
            continue
        items.append(_Item(custom_id, body))
    return items, model, errors
