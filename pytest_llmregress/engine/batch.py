"""``--llm-batch``: the golden cases' calls through the providers' Batch APIs.

The runner's cases run as they do online, each its own task walking its one call path
(``Runner._call_one``: cache, fallback chain, budget). In batch mode the network part of a
call is ``BatchQueue.call``: the request joins a queue and its task waits. When every case
task is waiting (none is preparing a call: reading the cache, scoring, starting), the queue
is sent, one batch per model and kind of call, and each batch is polled with back-off until
it has ended; its results wake the tasks, which go on to their next call. So the candidate
calls of the selected cases make one batch per model, and the judge calls made of their
answers make a second, with no second engine: the cache, replay, repeats, panels, the
fallback chain and the budget work as online.

Each batch is written to the batch journal (``RESULTS.partial/batches.jsonl``) the moment
the provider has created it, with the custom ids of its requests (a hash of the request, as
the cache key is). A resumed run (``--llm-resume``) finds its requests there and polls the
same batches instead of paying for new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_llmregress.providers.base import Completion, Provider, ProviderError, Request
from pytest_llmregress.providers.registry import ModelRef

QUIET_TICKS = 8
"""Event-loop turns without a new request before a queue is sent: a case's task goes from one
call to its next (its scorers, a gather of repeats or judges) in fewer turns than this."""
POLL_GROWTH = 1.5
POLL_MAX = 300.0
"""Seconds: the longest wait between two polls of a batch."""
POLL_FAILURES = 5
"""Transient failures of polling in a row (5xx, timeouts) after which a batch's requests fail."""
CUSTOM_ID_LENGTH = 48
MAX_BATCH_REQUESTS = 10_000
"""Requests per batch at most: well inside both providers' limits (Anthropic 100,000 requests
or 256 MB, OpenAI 50,000 requests or 200 MB per input file) for prompts of up to 20 kB."""


def custom_id(key: str) -> str:
    """A request's id in a batch, from its cache key (a SHA-256 hex digest): the same request
    has the same id in every run, which is what lets a resumed run find its batch."""
    return key[:CUSTOM_ID_LENGTH]


class BatchJournal:
    """``batches.jsonl``: one line per batch, appended (and flushed) the moment it exists.

    Read back only when the run resumes another (``resume``); a new run starts the file
    afresh, so that it never waits on the batches of a run it was not asked to continue.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, resume: bool) -> None:
        self.path = Path(path) if path is not None else None
        self._batches: dict[str, str] = {}  # custom id -> batch id
        if self.path is None:
            return
        if resume:
            for line in self.read(self.path):
                for cid in line["requests"]:
                    self._batches[str(cid)] = line["batch"]
        elif self.path.exists():
            self.path.unlink()

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """The journal's batches (``batch``, ``provider``, ``model``, ``kind``, ``created``,
        ``requests``), oldest first; none when there is no journal. A line cut by a kill is
        left out: its batch is paid for again."""
        lines: list[dict[str, Any]] = []
        if not Path(path).is_file():
            return lines
        for raw in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                line = json.loads(raw)
                if isinstance(line["batch"], str) and isinstance(line["requests"], list):
                    lines.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        return lines

    def batch_of(self, cid: str) -> str | None:
        """The journaled batch that holds this request, if any."""
        return self._batches.get(cid)

    def record(self, batch_id: str, ref: ModelRef, kind: str, cids: list[str]) -> None:
        """A batch the provider has just created."""
        for cid in cids:
            self._batches[cid] = batch_id
        if self.path is None:
            return
        line = {
            "batch": batch_id,
            "provider": ref.provider,
            "model": ref.model,
            "kind": kind,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "requests": cids,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class _Waiting:
    """One request in a queue and every task waiting on its answer (identical requests of
    different cases share one line of the batch)."""

    request: Request
    futures: list[asyncio.Future[Completion]] = field(default_factory=list)


@dataclass
class BatchRun:
    """A batch as the progress line shows it."""

    id: str
    ref: ModelRef
    kind: str
    total: int
    done: int = 0
    status: str = "created"
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": str(self.ref),
            "kind": self.kind,
            "total": self.total,
            "done": self.done,
            "status": self.status,
            "resumed": self.resumed,
        }


class BatchQueue:
    """The network part of batched calls: queue, send when every task waits, poll, wake.

    ``preparing`` counts the tasks between two calls (the runner's ``_call_one`` holds
    ``preparing()`` around its work); a queue is sent only when none is preparing, no task
    woken by a batch has resumed yet, and ``QUIET_TICKS`` turns of the loop brought no new
    request.
    """

    def __init__(
        self,
        provider_of: Callable[[str], Provider],
        journal: BatchJournal,
        *,
        poll: float,
        logger: logging.Logger | None = None,
    ) -> None:
        self._provider_of = provider_of
        self.journal = journal
        self._poll = poll
        self._logger = logger or logging.getLogger(__name__)
        self._queued: dict[tuple[str, ModelRef], dict[str, _Waiting]] = {}
        self._preparing = 0
        self._waking = 0
        self._version = 0
        self._settled: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self.runs: dict[str, BatchRun] = {}

    # -- who is busy ------------------------------------------------------------------------

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """Held by a task while it prepares or finishes a call (not while it waits)."""
        self._preparing += 1
        self._version += 1
        try:
            yield
        finally:
            self._preparing -= 1
            self._note_settled()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Within ``preparing``: a stretch the task spends waiting on something other than a
        batch (an online call after a batch failed), so that the others' queue goes out."""
        self._preparing -= 1
        self._note_settled()
        try:
            yield
        finally:
            self._preparing += 1
            self._version += 1

    def _note_settled(self) -> None:
        if self._preparing == 0 and self._waking == 0 and self._settled is not None:
            self._settled.set()

    # -- calls --------------------------------------------------------------------------------

    async def call(self, kind: str, ref: ModelRef, request: Request, cid: str) -> Completion:
        """The answer to ``request`` from a batch (a ``ProviderError`` if it failed there)."""
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        waiting = self._queued.setdefault((kind, ref), {}).setdefault(cid, _Waiting(request))
        waiting.futures.append(future)
        self._version += 1
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_when_quiet())
        with self.waiting():
            try:
                return await future
            finally:
                if future.done() and not future.cancelled():
                    self._waking -= 1

    async def _send_when_quiet(self) -> None:
        if self._settled is None:
            self._settled = asyncio.Event()
        while True:
            if self._preparing or self._waking:
                self._settled.clear()
                await self._settled.wait()
                continue
            seen = self._version
            for _ in range(QUIET_TICKS):
                await asyncio.sleep(0)
            if seen == self._version and not self._preparing and not self._waking:
                break
        queued, self._queued = self._queued, {}
        self._sender = None
        for (kind, ref), requests in queued.items():
            requests = {cid: w for cid, w in requests.items() if _wanted(w)}
            if requests:
                self._start(kind, ref, requests)

    def _start(self, kind: str, ref: ModelRef, requests: dict[str, _Waiting]) -> None:
        """Poll the journaled batches that hold some of ``requests``; send the rest."""
        journaled: dict[str, dict[str, _Waiting]] = {}
        fresh: dict[str, _Waiting] = {}
        for cid, waiting in requests.items():
            batch_id = self.journal.batch_of(cid)
            if batch_id is None:
                fresh[cid] = waiting
            else:
                journaled.setdefault(batch_id, {})[cid] = waiting
        for batch_id, part in journaled.items():
            self._spawn(self._watch(kind, ref, batch_id, part, resumed=True))
        ids = list(fresh)
        for start in range(0, len(ids), MAX_BATCH_REQUESTS):
            chunk = {cid: fresh[cid] for cid in ids[start : start + MAX_BATCH_REQUESTS]}
            self._spawn(self._submit(kind, ref, chunk))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _submit(self, kind: str, ref: ModelRef, requests: dict[str, _Waiting]) -> None:
        provider = self._provider_of(ref.provider)
        items = [(cid, w.request) for cid, w in requests.items()]
        try:
            batch_id = await provider.batch_create(items)
        except ProviderError as error:
            self._fail(requests, error)
            return
        except Exception as error:  # never leave a task waiting forever
            self._fail(requests, _unexpected(ref, error))
            return
        self.journal.record(batch_id, ref, kind, list(requests))
        self._logger.info("batch %s: %d %s requests to %s", batch_id, len(items), kind, ref)
        await self._watch(kind, ref, batch_id, requests)

    async def _watch(
        self,
        kind: str,
        ref: ModelRef,
        batch_id: str,
        requests: dict[str, _Waiting],
        *,
        resumed: bool = False,
    ) -> None:
        """Poll the batch with back-off until it ended, then wake its tasks."""
        provider = self._provider_of(ref.provider)
        run = self.runs[batch_id] = BatchRun(batch_id, ref, kind, len(requests), resumed=resumed)
        delay, failures = self._poll, 0
        try:
            while True:
                try:
                    state = await provider.batch_state(batch_id)
                except ProviderError as error:
                    if resumed and error.kind == "not_found":
                        # The provider no longer knows it (deleted, or a local server that
                        # restarted): its requests go in a batch of their own.
                        self._logger.warning("batch %s is gone (%s): sent again", batch_id, error)
                        del self.runs[batch_id]
                        await self._submit(kind, ref, requests)
                        return
                    failures += 1
                    if not error.retryable or failures >= POLL_FAILURES:
                        self._fail(requests, error)
                        return
                else:
                    failures = 0
                    run.done, run.status = state.done, state.status
                    run.total = state.total or run.total
                    if state.ended:
                        break
                await asyncio.sleep(delay)
                delay = min(delay * POLL_GROWTH, POLL_MAX)
            asked = {cid: w.request for cid, w in requests.items()}
            outcomes = await provider.batch_results(batch_id, asked)
        except ProviderError as error:
            self._fail(requests, error)
            return
        except Exception as error:
            self._fail(requests, _unexpected(ref, error))
            return
        run.status = "read"
        for cid, waiting in requests.items():
            self._wake(waiting, outcomes[cid])

    def _fail(self, requests: Mapping[str, _Waiting], error: ProviderError) -> None:
        for waiting in requests.values():
            self._wake(waiting, error)

    def _wake(self, waiting: _Waiting, outcome: Completion | ProviderError) -> None:
        for future in waiting.futures:
            if future.done():
                continue
            if isinstance(outcome, ProviderError):
                future.set_exception(outcome.copy())
            else:
                future.set_result(outcome)
            self._waking += 1

    # -- the runner's side ----------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [run.to_dict() for run in self.runs.values()]

    async def aclose(self) -> None:
        """Stop polling (the batches go on at the provider; a resumed run polls them)."""
        tasks = [t for t in (*self._watchers, self._sender) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _wanted(waiting: _Waiting) -> bool:
    """Whether a task still waits for the request (its case may have been cancelled)."""
    return any(not f.done() for f in waiting.futures)


def _unexpected(ref: ModelRef, error: Exception) -> ProviderError:
    return ProviderError(
        f"the Batch API call failed: {type(error).__name__}: {error}",
        provider=ref.provider,
        model=ref.model,
        kind="bad_response",
    )
