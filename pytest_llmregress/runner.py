"""The concurrent execution engine: golden cases run ahead of pytest's one-item loop.

pytest runs one item at a time, but model calls are network-bound. The ``Runner`` owns an
event loop on a background thread; the plugin submits the cases a process is going to run,
they start at once (bounded by the concurrency budget), and each pytest item only waits for
its own result. One retry policy lives here; the SDKs' own retries are off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from pytest_llmregress.cases import GoldenCase
from pytest_llmregress.providers.base import (
    ChatMessage,
    Completion,
    Provider,
    ProviderError,
    Request,
)
from pytest_llmregress.providers.registry import Endpoints, ModelRef
from pytest_llmregress.results import CaseResult
from pytest_llmregress.scoring.judge import build_judge_prompt, parse_judge_reply
from pytest_llmregress.scoring.score import Score, ScorerError
from pytest_llmregress.scoring.scorers import score_deterministic

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; the server's retry-after wins, up to a cap."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


async def call_with_retries(
    call: Callable[[], Awaitable[Completion]],
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Completion:
    """Run ``call``; retry transient failures per ``policy``; count the attempts."""
    attempt = 1
    while True:
        try:
            completion = await call()
        except ProviderError as error:
            error.attempts = attempt
            if not error.retryable or attempt > policy.retries:
                raise
            await sleep(policy.delay(attempt, error, rng))
            attempt += 1
            continue
        if attempt > 1:
            completion = Completion(**{**completion.to_dict(), "attempts": attempt})
        return completion


class Runner:
    """Runs golden cases concurrently on a background event loop thread."""

    def __init__(
        self,
        *,
        candidate: ModelRef | None,
        judge: ModelRef | None,
        endpoints: Endpoints,
        concurrency: int,
        timeout: float,
        retries: int,
        base_delay: float = 0.5,
    ) -> None:
        self.candidate = candidate
        self.judge = judge
        self._endpoints = endpoints
        self._timeout = timeout
        self._policy = RetryPolicy(retries=retries, base_delay=base_delay)
        self._concurrency = concurrency
        self._futures: dict[str, concurrent.futures.Future[CaseResult]] = {}
        self._providers: dict[str, Provider] = {}
        self._rng = random.Random(0)
        self._loop = asyncio.new_event_loop()
        self._semaphore: asyncio.Semaphore | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmregress-runner", daemon=True
        )
        self._thread.start()
        self._closed = False

    # -- the pytest side (main thread) -------------------------------------------------------

    def submit(self, key: str, case: GoldenCase) -> None:
        """Start a case now unless it already started; ``key`` is the item's node id."""
        if self._closed:
            raise RuntimeError("runner is closed")
        if key not in self._futures:
            self._futures[key] = self._spawn(self._run_case(key, case))

    def result(self, key: str, case: GoldenCase) -> CaseResult:
        """Wait for a case's result (starting it if nobody did) and forget it."""
        self.submit(key, case)
        future = self._futures[key]
        try:
            return future.result()
        finally:
            if future.done():
                del self._futures[key]

    def close(self) -> None:
        """Cancel what has not finished, close the HTTP clients, stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        try:
            closing = self._spawn(self._aclose())
            closing.result(timeout=10)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    # -- the loop side -----------------------------------------------------------------------

    async def _aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = self._endpoints.build(name, self._timeout)
        return self._providers[name]

    async def _call(self, ref: ModelRef, request: Request) -> Completion:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
        provider = self._provider(ref.provider)
        semaphore = self._semaphore

        async def attempt() -> Completion:
            async with semaphore:
                return await provider.complete(request)

        return await call_with_retries(attempt, self._policy, self._rng)

    def judge_sync(self, *, task: str, reference: str, output: str, threshold: float) -> Score:
        """Judge one output from a test body (the ``llm_judge`` fixture); raises on failure."""
        future = self._spawn(
            self._judge_text(task=task, reference=reference, output=output, threshold=threshold)
        )
        return future.result()[0]

    async def _run_case(self, nodeid: str, case: GoldenCase) -> CaseResult:
        assert self.candidate is not None
        started = time.perf_counter()
        common: dict[str, Any] = {
            "case_id": case.id,
            "nodeid": nodeid,
            "path": case.path,
            "line": case.line,
            "threshold": case.threshold,
            "reference": case.reference,
            "tags": case.tags,
        }
        request = Request(
            model=self.candidate.model,
            messages=tuple(ChatMessage(m.role, m.content) for m in case.messages),
            system=case.system,
            params=dict(case.params),
        )
        try:
            completion = await self._call(self.candidate, request)
        except ProviderError as error:
            return CaseResult(
                outcome="error",
                error=f"model call failed: {error}",
                error_kind=error.kind,
                duration_s=time.perf_counter() - started,
                **common,
            )
        scores: list[Score] = []
        judge_completion: Completion | None = None
        try:
            for spec in case.scorers:
                if spec.name == "judge":
                    score, judge_completion = await self._judge(case, spec.options, completion)
                    scores.append(score)
                else:
                    scores.append(score_deterministic(spec, completion.text, case))
        except (ScorerError, ProviderError) as error:
            kind = error.kind if isinstance(error, ProviderError) else "scorer"
            what = "judge call failed" if isinstance(error, ProviderError) else "scoring failed"
            return CaseResult(
                outcome="error",
                output=completion.text,
                completion=completion,
                judge_completion=judge_completion,
                scores=tuple(scores),
                error=f"{what}: {error}",
                error_kind=kind,
                duration_s=time.perf_counter() - started,
                **common,
            )
        return CaseResult(
            outcome="passed" if all(s.passed for s in scores) else "failed",
            output=completion.text,
            completion=completion,
            judge_completion=judge_completion,
            scores=tuple(scores),
            duration_s=time.perf_counter() - started,
            **common,
        )

    async def _judge(
        self, case: GoldenCase, options: Any, completion: Completion
    ) -> tuple[Score, Completion]:
        if case.reference is None:
            raise ScorerError(f"case {case.id!r} has no reference to judge against")
        threshold = float(options.get("threshold", case.threshold))
        return await self._judge_text(
            task=case.user, reference=case.reference, output=completion.text, threshold=threshold
        )

    async def _judge_text(
        self, *, task: str, reference: str, output: str, threshold: float
    ) -> tuple[Score, Completion]:
        if self.judge is None:
            raise ScorerError(
                "scoring needs the judge but no judge model is set (--llm-judge-model)"
            )
        prompt = build_judge_prompt(task=task, reference=reference, candidate=output)
        request = Request(
            model=self.judge.model,
            messages=(ChatMessage("user", prompt.user),),
            system=prompt.system,
            params={},
        )
        judged = await self._call(self.judge, request)
        score = parse_judge_reply(judged.text, judge_model=str(self.judge), threshold=threshold)
        return score, judged
