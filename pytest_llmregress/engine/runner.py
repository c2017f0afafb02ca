"""The concurrent execution engine: golden cases run ahead of pytest's one-item loop.

pytest runs one item at a time, but model calls are network-bound. The ``Runner`` runs every
case it is given at once, bounded by separate candidate and judge budgets that back off on
429, in the runner process (``runner_process.py``); each pytest item only waits for its own
result. Every call takes one path (``Runner._call_one``: cache, budget, timeout, the retry
policy of ``retries.py``); the SDKs' own retries are off. A fallback chain is not a second
engine: its rules (``providers/fallback.walk_chain``) walk that same path once per model.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import random
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pytest_llmregress.cases.golden import GoldenCase
from pytest_llmregress.core.masking import mask_url, mask_urls_in
from pytest_llmregress.engine.batch import BatchJournal, BatchQueue, custom_id
from pytest_llmregress.engine.budget import Budget
from pytest_llmregress.engine.cache import ResponseCache, request_key
from pytest_llmregress.providers.base import (
    ChatMessage,
    Completion,
    Provider,
    ProviderError,
    Request,
)
from pytest_llmregress.providers.registry import Endpoints, ModelRef
from pytest_llmregress.providers.retries import RetryPolicy, call_with_retries, complete_within
from pytest_llmregress.runtime.fallback import FALL_THROUGH_AT_ONCE, LOGGER_NAME, walk_chain
from pytest_llmregress.scoring.judge import (
    JUDGE_PARAMS,
    JUDGE_PROMPT_VERSION,
    Rubric,
    build_judge_prompt,
    parse_judge_reply,
)
from pytest_llmregress.scoring.panel import PanelMode, combine, in_order_sample
from pytest_llmregress.scoring.score import RECORD_SCORER, Score, ScorerError, Vote, decide
from pytest_llmregress.scoring.scorers import needs_reference, score_deterministic
from pytest_llmregress.settings import RunnerSettings
from pytest_llmregress.verdict.results import CaseResult

CallKind = Literal["candidate", "judge"]
_BATCHED: contextvars.ContextVar[bool] = contextvars.ContextVar("llmregress_batched", default=False)
"""Set while a golden case runs in batch mode: its calls go to the Batch API (the ``llm``
fixture's calls, made one at a time by test bodies, stay online)."""
CaseRun = tuple[CaseResult, CaseResult | None]
SystemPrompt = tuple[str | None, str | None]
"""A case's system prompt for one model, or why it could not be resolved (text, problem)."""


class AdaptiveLimiter:
    """A concurrency limit that backs off while the server pushes back.

    At most ``limit`` holders at once, never more. A call holds its slot through its retries,
    waits included, so fresh calls cannot take the room a rate-limited call is waiting for.
    A 429 halves the effective limit, and one with ``retry-after`` also holds every *new*
    call back until that time has passed; every ``recover_after`` successes add one slot
    back, up to ``limit``. One reaction per "generation": the other calls that were already
    in flight when it reacted do not make it react again.

    Measured against a real limit (a token bucket, ``bench/run.py``): holding back alone let
    the woken retries collide again (five rejections per answer); halving with one slot back
    per success keeps the run near the limit's own pace with about one rejection in two
    answers.

    A server that queues instead of refusing (a self-hosted model on one GPU generates one
    request at a time) says so by its latency: an answer sent while other calls were in
    flight that took ``QUEUE_FACTOR`` times as long as the quickest answer seen, both in all
    and per token, waited in a queue, and a timeout may have; both halve the limit as a 429
    does. The limit grows back only on answers that did not wait (at most ``GROW_FACTOR``
    times the quickest, in all or per token). Both measures, because neither alone tells a
    queue from a long answer: per token, a long answer of a real server is as quick as a
    short one; in all, a server whose time does not grow with the answer (the local server)
    is as quick for every answer. The per-token time counts ``FIRST_TOKEN_WEIGHT`` tokens for
    the time to the first token.

    Both are measured against no less than ``QUICKEST_FLOOR_S`` (in all; per token, that time
    over ``FIRST_TOKEN_WEIGHT`` tokens): an answer within a few times 50 ms waited too little
    to tell a queue from the caller's own machine. Measured: without the floor, the local
    server at zero latency, answering in 1 to 30 ms as three processes shared two CPUs, read
    as a queue and backed 16 calls in flight down to 1, taking a different path each run.
    """

    QUEUE_FACTOR = 3.0
    GROW_FACTOR = 2.0
    FIRST_TOKEN_WEIGHT = 20
    QUICKEST_FLOOR_S = 0.05

    def __init__(self, limit: int, recover_after: int = 1) -> None:
        self.limit = limit
        self.current = limit
        self.lowest = limit  # the lowest the limit went in the run
        self.in_use = 0
        self.peak = 0
        self.generation = 0
        self.held = 0  # how many times a retry-after held new calls back
        self._recover_after = recover_after
        self._successes = 0
        self._hold_until = 0.0  # loop time before which no new call starts
        self._quickest: tuple[float, float] | None = None  # the fewest seconds, in all and
        # per token, an answer took
        # Calls waiting for a slot, first come first served: a freed slot is handed to the
        # oldest waiter, never taken by a newcomer (pytest reports cases in order, so a case
        # pushed back by later ones would stall the run's progress).
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._wake_at: asyncio.TimerHandle | None = None  # a wake-up when a hold ends

    async def acquire(self) -> None:
        """Wait for a slot, in turn, and for any hold to pass."""
        loop = asyncio.get_running_loop()
        if not self._waiters and self.in_use < self.current and self._hold_until <= loop.time():
            self._take()
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._wake()  # a hold that ends needs a wake-up; nothing else may come to give one
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled
                self.in_use -= 1
            elif waiter in self._waiters:  # else ``_wake`` already passed over it
                self._waiters.remove(waiter)
            self._wake()
            raise

    def _take(self) -> None:
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def _wake(self) -> None:
        """Hand free slots to the oldest waiters, unless a hold is in force (then wake up
        again when it ends)."""
        loop = asyncio.get_running_loop()
        hold = self._hold_until - loop.time()
        if hold > 0:
            if self._waiters and self._wake_at is None:
                self._wake_at = loop.call_later(hold, self._end_hold)
            return
        while self._waiters and self.in_use < self.current:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while waiting
                continue
            self._take()
            waiter.set_result(None)

    def _end_hold(self) -> None:
        self._wake_at = None
        self._wake()

    async def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def on_rate_limit(self, generation: int, retry_after: float | None = None) -> None:
        """A 429 to a call that started in ``generation``.

        Only a call that started after the last reaction makes a new one (halve, and hold new
        calls for ``retry_after``): the calls already in flight then were sent before it.
        """
        if not self.back_off(generation):
            return
        if retry_after is not None and retry_after > 0:
            self._hold_until = asyncio.get_running_loop().time() + retry_after
            self.held += 1

    def back_off(self, generation: int) -> bool:
        """Halve the limit, once per generation (a 429, a timeout, a queued answer); whether
        this call made the reaction."""
        if generation != self.generation:
            return False
        self.generation += 1
        self._successes = 0
        self.current = max(1, self.current // 2)
        self.lowest = min(self.lowest, self.current)
        return True

    async def on_success(
        self, generation: int = -1, seconds: float = 0.0, tokens: int = 0, crowded: bool = False
    ) -> None:
        """An answer in ``seconds`` with ``tokens`` output tokens, sent while other calls of
        its kind were in flight (``crowded``) or not."""
        if seconds > 0:
            pace = seconds / (tokens + self.FIRST_TOKEN_WEIGHT)
            quickest, fastest = self._quickest or (seconds, pace)
            quickest, fastest = self._quickest = (min(quickest, seconds), min(fastest, pace))
            floor = self.QUICKEST_FLOOR_S
            slower = min(  # by the kinder measure
                seconds / max(quickest, floor),
                pace / max(fastest, floor / self.FIRST_TOKEN_WEIGHT),
            )
            if crowded and slower > self.QUEUE_FACTOR:
                self.back_off(generation)
                return
            if slower > self.GROW_FACTOR:
                return  # neither quick nor queued: hold the limit where it is
        if self.current >= self.limit:
            return
        self._successes += 1
        if self._successes >= self._recover_after:
            self._successes = 0
            self.current += 1
            self._wake()


@dataclass
class Traffic:
    """What the calls of one kind met on the network in a run, for the summary: a run that
    spent its time retrying says so instead of passing slowly in silence."""

    calls: int = 0  # calls that went to the network (cache hits are not)
    requests: int = 0  # requests sent for them, retries included
    timeouts: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0  # seconds spent waiting to retry (backoff, retry-after)

    def describe(self, kind: str, limiter: AdaptiveLimiter) -> str | None:
        """``judge calls: 40 calls, 52 requests (...)``, or None when nothing happened
        (``limiter``: the kind's, for how far the limit backed off)."""
        retries = self.requests - self.calls
        met = [
            f"{count} {name}"
            for count, name in (
                (retries, "retries"),
                (self.timeouts, "timed out"),
                (self.rate_limited, "rate limited"),
            )
            if count
        ]
        if not met and limiter.lowest >= limiter.limit:
            return None
        text = f"{kind} calls: {self.calls} calls, {self.requests} requests"
        if met:
            text += f" ({', '.join(met)})"
        if self.waited_s:
            text += f", {self.waited_s:.1f} s waiting to retry"
        if limiter.lowest < limiter.limit:
            text += f"; concurrency backed off from {limiter.limit} to {limiter.lowest}"
        return text


# Words with which servers refuse a parameter (not a value out of range, which is the case's).
_REFUSAL = re.compile(
    r"unsupported|not supported|unrecognized|does not support|not allowed|not permitted|"
    r"extra inputs|extra_forbidden|unknown (?:parameter|field|argument)",
    re.IGNORECASE,
)
_WIRE_NAMES = {"max_completion_tokens": "max_tokens", "stop_sequences": "stop"}


class UnreadableVerdict(ScorerError):
    """The judge answered, but not with a verdict: the case's error keeps the judge's reply
    (its tokens and the model that answered count as for any other call)."""

    def __init__(self, message: str, completion: Completion) -> None:
        super().__init__(message)
        self.completion = completion


def refused_param(error: ProviderError, request: Request) -> str | None:
    """The request parameter a 400 says the model does not take, or None.

    Read from the error's ``param`` (OpenAI's error bodies name it) or from the words of the
    message, and only when the message says it is refused, not that its value is wrong.
    """
    if error.kind != "bad_request" or not request.params or not _REFUSAL.search(error.message):
        return None
    words = [error.param] if error.param else re.findall(r"[A-Za-z_]+", error.message)
    for word in words:
        name = _WIRE_NAMES.get(word, word)
        if name in request.params:
            return name
    return None


def with_params(defaults: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """A call's parameters: its own over the suite's defaults; a default of None is not sent."""
    merged = {**defaults, **own}
    return {name: value for name, value in merged.items() if value is not None}


def _without(refused: Mapping[str, str], request: Request) -> Request:
    """``request`` without the parameters its model refused earlier in the run."""
    if not refused.keys() & request.params.keys():
        return request
    return replace(request, params={k: v for k, v in request.params.items() if k not in refused})


def judge_request_params(judge_params: Mapping[str, Any]) -> dict[str, Any]:
    """What every judge call sends: ``--llm-judge-params`` over ``JUDGE_PARAMS``."""
    return with_params({**JUDGE_PARAMS, **judge_params}, {})


class Runner:
    """Runs golden cases and single calls on the running event loop.

    It lives in the runner process (``runner_process.py``), which serves every pytest process
    of a session; tests drive it directly with ``asyncio.run``.
    """

    def __init__(
        self,
        *,
        candidate: ModelRef | None,
        judge: ModelRef | None,
        endpoints: Endpoints,
        settings: RunnerSettings,
        cache: ResponseCache | None = None,
        compare: ModelRef | None = None,
        fallbacks: tuple[ModelRef, ...] = (),
        panel: tuple[ModelRef, ...] = (),
        prices: Mapping[str, tuple[float, float]] | None = None,
        batch_prices: Mapping[str, tuple[float, float]] | None = None,
        base_delay: float = RetryPolicy.base_delay,
    ) -> None:
        self.candidate = candidate
        self.compare = compare  # a second model run on every case, paired (A/B or A/A)
        self._record = settings.record
        # The candidate's fallback chain: the models its calls walk, in order (walk_chain).
        self.chain: tuple[ModelRef, ...] = (
            (candidate, *fallbacks) if candidate and fallbacks else ()
        )
        # Models the preflight found gone (404/410): a chain records them failed, uncalled.
        self.unavailable: dict[ModelRef, ProviderError] = {}
        self._logger = logging.getLogger(LOGGER_NAME)
        self.judge = judge
        # Every judge of the panel, the first being ``judge`` (--llm-judge-model=A,B,C).
        self.judges: tuple[ModelRef, ...] = (judge, *panel) if judge else ()
        self._repeat = settings.repeat
        self._judge_repeat = settings.judge_repeat
        self._panel_mode: PanelMode = "majority" if settings.judge_panel == "majority" else "mean"
        self._order_sample = settings.judge_order_sample
        # The run's spend (its priced models' answered calls), against --llm-max-cost if set:
        # every call reserves its most at its model's price first (``prices``, and through a
        # Batch API ``batch_prices``: (input, output) USD per million tokens by provider:model).
        self.budget = Budget(settings.max_cost, dict(prices or {}), dict(batch_prices or {}))
        self._endpoints = endpoints
        self._timeout = settings.timeout
        self._case_deadline = settings.case_deadline
        self._policy = RetryPolicy(
            retries=settings.retries,
            base_delay=base_delay,
            rate_limit_wait=settings.rate_limit_wait,
        )
        self.limiters: dict[CallKind, AdaptiveLimiter] = {
            "candidate": AdaptiveLimiter(settings.concurrency),
            "judge": AdaptiveLimiter(settings.judge_concurrency),
        }
        self._cache = cache
        self._cache_mode = settings.cache_mode
        self._judge_cache = settings.judge_cache and cache is not None
        self._providers: dict[str, Provider] = {}
        self._cache_urls: dict[str, str] = {}  # each provider's base URL as cache keys hold it
        self._openai_extra_params = settings.openai_extra_params
        # Suite-level parameters: the candidate's under each case's own, the judge's over
        # JUDGE_PARAMS (temperature 0). A model that refuses one has it dropped, once.
        self._params = dict(settings.params)
        self._judge_params = judge_request_params(settings.judge_params)
        self.refused_params: dict[ModelRef, dict[str, str]] = {}
        self.traffic: dict[CallKind, Traffic] = {kind: Traffic() for kind in self.limiters}
        self._rng = random.Random(0)
        # Judges that refused structured output (a 400), with the refusal: asked in plain text.
        self.plain_judges: dict[ModelRef, str] = {}
        # --llm-batch: the golden cases' calls through the providers' Batch APIs.
        self.batch: BatchQueue | None = None
        self._batch_online = settings.batch_failed == "online"
        if settings.batch:
            journal = BatchJournal(settings.batch_journal, resume=settings.batch_resume)
            self.batch = BatchQueue(
                self._provider, journal, poll=settings.batch_poll, logger=self._logger
            )

    def status(self) -> dict[str, Any]:
        """What the calls are doing now, for the progress line: calls in flight, each kind's
        limit against its maximum, and how long new calls are still held (retry-after)."""
        loop = asyncio.get_running_loop()
        held = max(0.0, max(lim._hold_until for lim in self.limiters.values()) - loop.time())
        return {
            "in_flight": {kind: lim.in_use for kind, lim in self.limiters.items()},
            "limit": {kind: lim.current for kind, lim in self.limiters.items()},
            "max": {kind: lim.limit for kind, lim in self.limiters.items()},
            "held_s": round(held, 1),
            "spent": self.budget.spent if self.budget.known else None,
            "batches": self.batch.status() if self.batch is not None else [],
        }

    def traffic_lines(self) -> dict[str, str | None]:
        """Each kind's ``Traffic.describe``: what its calls met, or None when nothing did."""
        return {
            kind: traffic.describe(kind, self.limiters[kind])
            for kind, traffic in self.traffic.items()
        }

    async def run_case(
        self, key: str, case: GoldenCase, systems: Mapping[str, SystemPrompt] | None = None
    ) -> CaseRun:
        """One golden case against the candidate (and the compare model, paired).

        ``key`` is the item's node id. ``systems`` holds the system prompt resolved for each
        model (``str(ref)``) by the pytest process, which owns the prompt library; a model
        not in it gets the case's literal system prompt.
        """
        assert self.candidate is not None
        systems = systems or {}
        if self.budget.stopped:
            message = (
                f"not run: the budget was reached ({self.budget.describe()}); a partial run "
                "is never a pass"
            )
            compare = case_error(key, case, message, "budget") if self.compare else None
            return case_error(key, case, message, "budget"), compare
        batched = _BATCHED.set(self.batch is not None)
        try:
            if self.compare is None:
                return await self._run_repeats(key, case, self.candidate, systems), None
            result, baseline = await asyncio.gather(
                self._run_repeats(key, case, self.candidate, systems),
                self._run_repeats(key, case, self.compare, systems),
            )
            return result, baseline
        finally:
            _BATCHED.reset(batched)

    async def _run_repeats(
        self, nodeid: str, case: GoldenCase, model: ModelRef, systems: Mapping[str, SystemPrompt]
    ) -> CaseResult:
        """One case against one model, ``--llm-repeat`` times at once, each repeat its own
        call (and cache entry); one result of them all (``CaseResult.of_repeats``)."""
        if self._repeat == 1:
            return await self._run_model(nodeid, case, model, systems, 0)
        runs = await asyncio.gather(
            *(self._run_model(nodeid, case, model, systems, n) for n in range(self._repeat))
        )
        return CaseResult.of_repeats(tuple(runs))

    async def complete(self, request: Request) -> Completion:
        """One call of the model under test from a test body (the ``llm`` fixture): cache,
        limiter, timeout and retries as for golden cases."""
        if self.candidate is None:
            raise RuntimeError("no model under test (--llm-model)")
        request = replace(request, params=with_params(self._params, request.params))
        return await self._call("candidate", self.candidate, request)

    async def check_models(self, refs: Iterable[ModelRef]) -> dict[ModelRef, str]:
        """The preflight: check each distinct model once, all at once; why each unavailable
        one is (URLs in it masked: it is shown and stored)."""

        async def check(ref: ModelRef) -> str | None:
            provider = self._provider(ref.provider)
            try:
                async with asyncio.timeout(self._timeout):
                    await provider.check_model(ref.model)
            except ProviderError as error:
                if error.kind == "not_found":  # retired or unknown: no later call can succeed
                    self.unavailable[ref] = ProviderError(
                        "not called: the preflight found it unavailable "
                        f"({mask_urls_in(error.message)})",
                        provider=ref.provider,
                        model=ref.model,
                        kind=error.kind,
                        status=error.status,
                        request_id=error.request_id,
                        attempts=0,  # what a case records: no call was made for it
                    )
                answer = str(error).removeprefix(f"{ref}: ")
                return mask_urls_in(f"{ref} at {provider.base_url}: {answer}")
            except TimeoutError:
                where = mask_url(provider.base_url)
                return f"{ref} at {where}: no answer within {self._timeout:g} s"
            return None

        distinct = list(dict.fromkeys(refs))
        answers = await asyncio.gather(*(check(ref) for ref in distinct))
        return {ref: answer for ref, answer in zip(distinct, answers, strict=True) if answer}

    async def aclose(self) -> None:
        """Close the HTTP clients and the cache (batches go on at the provider)."""
        if self.batch is not None:
            await self.batch.aclose()
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        if self._cache is not None:
            self._cache.close()

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = self._endpoints.build(
                name, self._timeout, self._openai_extra_params
            )
            self._cache_urls[name] = mask_url(self._providers[name].base_url)
        return self._providers[name]

    async def _call(
        self,
        kind: CallKind,
        ref: ModelRef,
        request: Request,
        systems: Mapping[str, SystemPrompt] | None = None,
        repeat: int = 0,
    ) -> Completion:
        """One logical call; the candidate's walks its fallback chain when it has one.

        ``repeat``: which repeat of the same request this is (``--llm-repeat``,
        ``--llm-judge-repeat``); each has its own cache entry.

        Each model of the chain is one ``_call_one`` (its cache, the candidate budget, its
        retries), so replay, record and the budgets hold with a chain as without. A timeout
        or a lost connection is not retried there: the next model is the retry. A fallback
        gets its own system prompt from ``systems`` (prompts are versioned per model) when
        the pytest process resolved one for it.
        """
        if kind != "candidate" or not self.chain or ref != self.candidate:
            return await self._call_one(kind, ref, request, repeat=repeat)

        async def attempt(member: ModelRef) -> Completion:
            system, problem = (systems or {}).get(str(member), (request.system, None))
            if problem is not None:
                system = request.system  # no prompt of its own: the candidate's
            member_request = replace(request, model=member.model, system=system)
            return await self._call_one(
                kind, member, member_request, give_up=FALL_THROUGH_AT_ONCE, repeat=repeat
            )

        result = await walk_chain(self.chain, attempt, logger=self._logger, skip=self.unavailable)
        return result.completion

    async def _call_one(
        self,
        kind: CallKind,
        ref: ModelRef,
        request: Request,
        *,
        give_up: Collection[str] = (),
        repeat: int = 0,
    ) -> Completion:
        """One model's call: the cache first where allowed, then the network with retries.

        A replay miss is a ``not_found`` error (a chain falls through it to the next model's
        cache). ``give_up``: error kinds raised without a retry. In batch mode (a golden case's
        call, ``--llm-batch``) the network part is the Batch API's (``_send_batched``), and the
        call counts as preparing while it is not waiting on a batch (``BatchQueue``).
        """
        if self.batch is None or not _BATCHED.get():
            return await self._call_cached(kind, ref, request, give_up=give_up, repeat=repeat)
        with self.batch.preparing():
            return await self._call_cached(
                kind, ref, request, give_up=give_up, repeat=repeat, batched=True
            )

    async def _call_cached(
        self,
        kind: CallKind,
        ref: ModelRef,
        request: Request,
        *,
        give_up: Collection[str],
        repeat: int,
        batched: bool = False,
    ) -> Completion:
        provider = self._provider(ref.provider)
        use_cache = self._cache is not None and (
            (kind == "candidate" and self._cache_mode != "off")
            or (kind == "judge" and (self._judge_cache or self._cache_mode == "replay"))
        )
        key = ""
        if use_cache or batched:
            key = request_key(
                kind=kind,
                provider=ref.provider,
                base_url=self._cache_urls[ref.provider],  # a new password keeps the cache
                request=request,
                repeat=repeat,
                salt=JUDGE_PROMPT_VERSION if kind == "judge" else "",
            )
        if use_cache:
            assert self._cache is not None
            if self._cache_mode != "refresh" or kind == "judge":
                hit = await asyncio.to_thread(self._cache.get, key, kind)
                if hit is not None:
                    return hit
            if self._cache_mode == "replay":
                raise ProviderError(
                    "no cached reply for this request (--llm-cache=replay makes no network "
                    "calls; record one with --llm-cache=record)",
                    provider=ref.provider,
                    model=request.model,
                    kind="not_found",
                )
        if batched:
            completion = await self._send_batched(kind, ref, provider, request, key, give_up)
        else:
            completion = await self._send(kind, ref, provider, request, give_up)
        if use_cache and completion.text.strip():
            assert self._cache is not None
            await asyncio.to_thread(self._cache.put, key, kind, completion)
        return completion

    async def _send(
        self,
        kind: CallKind,
        ref: ModelRef,
        provider: Provider,
        request: Request,
        give_up: Collection[str],
    ) -> Completion:
        """The network part of a call: its kind's budget, the timeout, the retry policy.

        A parameter the model refuses (a 400 that names it) is left out of its requests for
        the rest of the run, and the request is sent again at once without it. The cache key
        stays the request as asked.
        """
        limiter = self.limiters[kind]
        traffic = self.traffic[kind]
        refused = self.refused_params.setdefault(ref, {})

        budget = self.budget
        request = budget.with_bound(request)

        async def attempt() -> Completion:
            while True:
                sent = _without(refused, request)
                try:
                    return await send(sent)
                except ProviderError as error:
                    param = refused_param(error, sent)
                    if param is None:
                        raise
                    if param not in refused:
                        refused[param] = str(error)
                        self._logger.warning(
                            "%s refused %s (%s): sent without it", ref, param, error
                        )

        async def send(request: Request) -> Completion:
            generation = limiter.generation
            crowded = limiter.in_use > 1
            reserved = budget.reserve(
                str(ref), ref.provider, request, starts_case=kind == "candidate"
            )
            traffic.requests += 1
            completion: Completion | None = None
            try:
                completion = await self._complete_in_time(provider, ref, request)
            except ProviderError as error:
                if error.kind == "rate_limit":
                    traffic.rate_limited += 1
                    limiter.on_rate_limit(generation, error.retry_after)
                elif error.kind == "timeout":
                    traffic.timeouts += 1
                    limiter.back_off(generation)
                raise
            finally:
                budget.settle(str(ref), reserved, completion)
            await limiter.on_success(
                generation, completion.latency_s, completion.output_tokens, crowded
            )
            return completion

        async def wait(seconds: float) -> None:
            traffic.waited_s += seconds
            await asyncio.sleep(seconds)

        # The slot is held through the retries and their waits (see AdaptiveLimiter).
        await limiter.acquire()
        traffic.calls += 1
        try:
            return await call_with_retries(attempt, self._policy, self._rng, wait, give_up=give_up)
        finally:
            await limiter.release()

    async def _send_batched(
        self,
        kind: CallKind,
        ref: ModelRef,
        provider: Provider,
        request: Request,
        key: str,
        give_up: Collection[str],
    ) -> Completion:
        """The network part of a batched call: the budget at the batch price, the request in
        the next batch (``BatchQueue.call``). A request that failed or expired there is an
        error of its case, or, with ``--llm-batch-failed=online``, sent again online."""
        assert self.batch is not None
        budget = self.budget
        request = budget.with_bound(request)
        sent = _without(self.refused_params.get(ref, {}), request)
        reserved = budget.reserve(
            str(ref), ref.provider, sent, starts_case=kind == "candidate", batch=True
        )
        completion: Completion | None = None
        try:
            completion = await self.batch.call(kind, ref, sent, custom_id(key))
            return completion
        except ProviderError as error:
            if not self._batch_online or error.kind == "budget":
                raise
            self._logger.warning("%s; sent again online (--llm-batch-failed=online)", error)
        finally:
            budget.settle(str(ref), reserved, completion)
        with self.batch.waiting():
            return await self._send(kind, ref, provider, request, give_up)

    async def _complete_in_time(
        self, provider: Provider, ref: ModelRef, request: Request
    ) -> Completion:
        """One attempt within ``--llm-timeout``; running out of it is a ``timeout`` error."""
        return await complete_within(provider, ref.provider, request, self._timeout)

    async def _run_model(
        self,
        nodeid: str,
        case: GoldenCase,
        model: ModelRef,
        systems: Mapping[str, SystemPrompt],
        repeat: int = 0,
    ) -> CaseResult:
        """One case (one repeat of it) against one model, within the case deadline."""
        started = time.perf_counter()
        try:
            if self._case_deadline is None:
                result = await self._score_case(nodeid, case, started, model, systems, repeat)
            else:
                async with asyncio.timeout(self._case_deadline):
                    result = await self._score_case(nodeid, case, started, model, systems, repeat)
        except TimeoutError:
            result = _error_result(
                nodeid,
                case,
                started,
                f"case deadline of {self._case_deadline:g} s exceeded (--llm-case-deadline)",
                "timeout",
            )
        return result

    async def _score_case(
        self,
        nodeid: str,
        case: GoldenCase,
        started: float,
        model: ModelRef,
        systems: Mapping[str, SystemPrompt],
        repeat: int = 0,
    ) -> CaseResult:
        system, problem = systems.get(str(model), (case.system, None))
        if problem is not None:  # a prompt that cannot be resolved for this model
            return _error_result(nodeid, case, started, f"prompt: {problem}", "prompt")
        request = Request(
            model=model.model,
            messages=tuple(ChatMessage(m.role, m.content) for m in case.messages),
            system=system,
            params=with_params(self._params, case.params),
        )
        try:
            completion = await self._call("candidate", model, request, systems, repeat)
        except ProviderError as error:
            failed = "not run" if error.kind == "budget" else "model call failed"
            return _error_result(nodeid, case, started, f"{failed}: {error}", error.kind)
        scores: list[Score] = []
        judge_completion: Completion | None = None
        # A case none of whose scorers uses a reference (exact with its own value) is judged.
        recording = any(needs_reference(spec) for spec in case.scorers) and (
            self._record == "all" or (self._record == "missing" and case.reference is None)
        )
        if recording:
            # The output becomes the reference: only scorers that need no reference apply.
            scores.append(Score(RECORD_SCORER, 1.0, True, f"reference recorded from {model}"))
        try:
            for spec in case.scorers:
                if spec.in_pytest or (recording and needs_reference(spec)):
                    continue  # a team's scorer (scored by the pytest process), or recording
                if spec.name == "judge":
                    score, judge_completion = await self._judge(
                        case, spec.options, completion, repeat
                    )
                    scores.append(score)
                else:
                    scores.append(score_deterministic(spec, completion.text, case))
        except (ScorerError, ProviderError) as error:
            judged = isinstance(error, ProviderError)
            if isinstance(error, UnreadableVerdict):
                judge_completion = error.completion
            return _error_result(
                nodeid,
                case,
                started,
                f"{'judge call failed' if judged else 'scoring failed'}: {error}",
                error.kind if isinstance(error, ProviderError) else "scorer",
                completion=completion,
                judge_completion=judge_completion,
                scores=scores,
            )
        outcome, recorded = decide(scores, recording=recording, output=completion.text)
        return CaseResult(
            outcome=outcome,
            recorded=recorded,
            output=completion.text,
            completion=completion,
            judge_completion=judge_completion,
            scores=tuple(scores),
            duration_s=time.perf_counter() - started,
            **_case_fields(nodeid, case),
        )

    async def _judge(
        self, case: GoldenCase, options: Any, completion: Completion, repeat: int = 0
    ) -> tuple[Score, Completion]:
        """The judge's score of one repeat's output; the judge calls of each repeat have cache
        entries of their own, so a replayed run gives every repeat the verdicts it had."""
        if case.reference is None:
            raise ScorerError(
                "the case has no reference to judge against (record references from a validated "
                "run with --llm-record=missing)"
            )
        threshold = float(options.get("threshold", case.threshold))
        return await self.judge_text(
            task=case.user,
            reference=case.reference,
            output=completion.text,
            threshold=threshold,
            rubric=case.rubric,
            order_check=in_order_sample(case.id, self._order_sample),
            first_repeat=repeat * self._judge_repeat,
        )

    async def judge_text(
        self,
        *,
        task: str,
        reference: str,
        output: str,
        threshold: float,
        rubric: Rubric = (),
        order_check: bool = False,
        first_repeat: int = 0,
    ) -> tuple[Score, Completion]:
        """Judge one output against a reference (also the ``llm_judge`` fixture).

        Every judge of the panel, ``--llm-judge-repeat`` times each, at once; their votes make
        one score (``scoring/panel.combine``). ``order_check``: the first judge also sees the
        candidate before the reference, a vote measured and not counted. ``first_repeat``:
        the cache's repeat index of the first call of each judge (a case's repeat ``n`` judges
        from ``n * J``), so every judging of every repeat has its own entry. A counted call that
        fails fails the judging (an error outcome, never a vote less); a failed order check
        only leaves its vote out. The completion returned is the first judge's first.
        """
        if not self.judges:
            raise ScorerError(
                "scoring needs the judge but no judge model is set (--llm-judge-model)"
            )
        calls = [(ref, n, False) for ref in self.judges for n in range(self._judge_repeat)]
        if order_check:
            calls.append((self.judges[0], 0, True))
        if len(calls) == 1:  # one judge, once: no task of its own (the common case's CPU)
            return await self._judge_once(
                self.judges[0],
                task=task,
                reference=reference,
                output=output,
                threshold=threshold,
                rubric=rubric,
                repeat=first_repeat,
                swapped=False,
            )
        answers = await asyncio.gather(
            *(
                self._judge_once(
                    ref,
                    task=task,
                    reference=reference,
                    output=output,
                    threshold=threshold,
                    rubric=rubric,
                    repeat=first_repeat + n,
                    swapped=swapped,
                )
                for ref, n, swapped in calls
            ),
            return_exceptions=True,
        )
        scores: list[Score] = []
        votes: list[Vote] = []
        for (ref, n, swapped), answer in zip(calls, answers, strict=True):
            if isinstance(answer, BaseException):
                if swapped and isinstance(answer, (ProviderError, ScorerError)):
                    continue
                raise answer
            score, call = answer
            if not swapped:
                scores.append(score)
            votes.append(
                Vote(
                    str(ref),
                    score.value,
                    score.passed,
                    n,
                    swapped,
                    call.input_tokens,
                    call.output_tokens,
                    call.cached,
                    call.batch,
                )
            )
        first = answers[0]
        assert not isinstance(first, BaseException)
        return combine(scores, votes, self._panel_mode), first[1]

    async def _judge_once(
        self,
        judge: ModelRef,
        *,
        task: str,
        reference: str,
        output: str,
        threshold: float,
        rubric: Rubric,
        repeat: int,
        swapped: bool,
    ) -> tuple[Score, Completion]:
        """One judge call: ``judge``'s ``repeat``-th verdict on the output.

        A rubric's criteria are in the judge's system prompt and reply schema, so they are
        part of the request the judge cache is keyed by: a changed rubric is judged again.
        """
        prompt = build_judge_prompt(
            task=task, reference=reference, candidate=output, rubric=rubric, swapped=swapped
        )
        request = Request(
            model=judge.model,
            messages=(ChatMessage("user", prompt.user),),
            system=prompt.system,
            params=self._judge_params,
            # The verdict as structured output, unless this judge refused it earlier.
            reply_schema=None if judge in self.plain_judges else prompt.reply_schema,
        )
        try:
            judged = await self._call("judge", judge, request, repeat=repeat)
        except ProviderError as error:
            # Self-hosted compatible servers may refuse tools / response_format with a 400:
            # ask in plain text (the parser still takes exactly one object) for the rest of
            # the run. Remembered only once the plain call has worked, so a 400 for another
            # reason (a prompt too long) does not turn structured output off.
            if request.reply_schema is None or error.kind != "bad_request":
                raise
            judged = await self._call(
                "judge", judge, replace(request, reply_schema=None), repeat=repeat
            )
            if judge not in self.plain_judges:
                self.plain_judges[judge] = str(error)
                logging.getLogger("pytest_llmregress.judge").warning(
                    "the judge %s refused structured output (%s); its verdicts are asked for "
                    "as plain text for the rest of the run",
                    judge,
                    error,
                )
        try:
            score = parse_judge_reply(
                judged.text, judge_model=str(judge), threshold=threshold, rubric=rubric
            )
        except ScorerError as error:
            raise UnreadableVerdict(str(error), judged) from None
        return score, judged


def _case_fields(nodeid: str, case: GoldenCase) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "nodeid": nodeid,
        "path": case.path,
        "line": case.line,
        "threshold": case.threshold,
        "reference": case.reference,
        "tags": case.tags,
    }


def case_error(nodeid: str, case: GoldenCase, message: str, kind: str) -> CaseResult:
    """An ``error`` result for a case that could not be run at all."""
    return _error_result(nodeid, case, time.perf_counter(), message, kind)


def _error_result(
    nodeid: str,
    case: GoldenCase,
    started: float,
    message: str,
    kind: str,
    *,
    completion: Completion | None = None,
    judge_completion: Completion | None = None,
    scores: Iterable[Score] = (),
) -> CaseResult:
    return CaseResult(
        outcome="error",
        output=completion.text if completion is not None else None,
        completion=completion,
        judge_completion=judge_completion,
        scores=tuple(scores),
        error=message,
        error_kind=kind,
        duration_s=time.perf_counter() - started,
        **_case_fields(nodeid, case),
    )
