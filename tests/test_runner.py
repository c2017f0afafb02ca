"""The runner's building blocks (retries, the adaptive limiter, the response cache) and its one
call path, with and without a fallback chain."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.engine.cache import ResponseCache, cache_use_line, request_key
from pytest_llmregress.engine.runner import AdaptiveLimiter, Runner
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.providers.registry import ModelRef, local_server_endpoints
from pytest_llmregress.providers.retries import RetryPolicy, call_with_retries
from pytest_llmregress.runtime.fallback import FALL_THROUGH_AT_ONCE, FallbackExhausted
from pytest_llmregress.session import golden_units
from pytest_llmregress.settings import CacheMode, RunnerSettings
from pytest_llmregress.testing.server import LocalProviderServer


def completion(text: str = "ok") -> Completion:
    return Completion(text=text, provider="openai", requested_model="m", resolved_model="m-1")


def error(kind: str, status: int | None = None, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        "boom", provider="openai", model="m", kind=kind, status=status, retry_after=retry_after
    )  # type: ignore[arg-type]


class Script:
    """A call that fails with the given errors, then answers."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> Completion:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return completion()


def run_retries(
    script: Script, policy: RetryPolicy
) -> tuple[Completion | ProviderError, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> Completion:
        return await call_with_retries(script, policy, random.Random(1), sleep=sleep)

    try:
        return asyncio.run(go()), slept
    except ProviderError as exc:
        return exc, slept


def test_transient_errors_are_retried_and_counted() -> None:
    script = Script(error("rate_limit", 429, retry_after=0.25), error("server", 529))
    result, slept = run_retries(script, RetryPolicy(retries=3, base_delay=0.5))
    assert isinstance(result, Completion)
    assert result.attempts == 3
    assert 0.25 <= slept[0] <= 0.25 * 1.25  # the server's retry-after, plus jitter
    assert 0 <= slept[1] <= 0.5  # the first non-429 retry: full jitter up to base


def test_rate_limits_are_waited_out_apart_from_the_retries() -> None:
    """Ten 429s with retry-after do not use up one retry; jitter spreads the waits."""
    script = Script(*[error("rate_limit", 429, retry_after=1.0) for _ in range(10)])
    result, slept = run_retries(script, RetryPolicy(retries=1))
    assert isinstance(result, Completion)
    assert result.attempts == 11
    assert all(1.0 <= s <= 1.25 for s in slept)
    assert len(set(slept)) == len(slept)  # no two calls rejected together wake together


def test_rate_limits_give_up_when_waiting_again_passes_the_limit() -> None:
    script = Script(*[error("rate_limit", 429, retry_after=1.0) for _ in range(10)])
    # Two waits of 1 to 1.25 s fit in 2.6 s; a third would not.
    result, slept = run_retries(script, RetryPolicy(rate_limit_wait=2.6))
    assert isinstance(result, ProviderError)
    assert len(slept) == 2
    assert result.attempts == 3
    assert "still rate limited after waiting" in str(result)
    assert "of the 2.6 s allowed" in str(result)


def test_a_retry_after_longer_than_the_limit_gives_up_at_once() -> None:
    script = Script(error("rate_limit", 429, retry_after=120))
    result, slept = run_retries(script, RetryPolicy(rate_limit_wait=60))
    assert isinstance(result, ProviderError)
    assert slept == []


def test_server_errors_still_share_the_retries_after_rate_limits() -> None:
    script = Script(
        error("rate_limit", 429, retry_after=0.1),
        error("server", 500),
        error("rate_limit", 429),  # no retry-after: backoff with full jitter
        error("server", 503),
        error("server", 500),
    )
    result, slept = run_retries(script, RetryPolicy(retries=2, base_delay=0.5))
    assert isinstance(result, ProviderError)
    assert result.kind == "server"
    assert result.attempts == 5
    assert len(slept) == 4


@pytest.mark.parametrize("kind", ["not_found", "auth", "bad_request", "quota", "bad_response"])
def test_permanent_errors_fail_fast(kind: str) -> None:
    script = Script(error(kind, 400))
    result, slept = run_retries(script, RetryPolicy(retries=3))
    assert isinstance(result, ProviderError)
    assert result.kind == kind
    assert script.calls == 1
    assert slept == []


def test_retries_give_up_with_the_last_error() -> None:
    script = Script(*[error("server", 500) for _ in range(5)])
    result, slept = run_retries(script, RetryPolicy(retries=2))
    assert isinstance(result, ProviderError)
    assert result.attempts == 3
    assert len(slept) == 2
    assert "after 3 attempts" in str(result)


def test_retry_after_on_a_server_error_is_capped_at_the_longest_backoff() -> None:
    policy = RetryPolicy(max_delay=5.0)
    assert policy.delay(1, error("server", 503, retry_after=120), random.Random(0)) == 5.0


def test_limiter_never_exceeds_its_limit_and_backs_off() -> None:
    async def scenario() -> tuple[int, int, int]:
        limiter = AdaptiveLimiter(4, recover_after=2)
        in_flight = 0
        peak = 0

        async def work(rate_limited: bool) -> None:
            nonlocal in_flight, peak
            generation = limiter.generation
            await limiter.acquire()
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            if rate_limited:
                limiter.on_rate_limit(generation)
            await limiter.release()
            if not rate_limited:
                await limiter.on_success()

        # Four 429s from calls of one generation halve the limit once, not four times.
        await asyncio.gather(*(work(True) for _ in range(4)))
        after_429 = limiter.current
        await asyncio.gather(*(work(False) for _ in range(40)))
        return peak, after_429, limiter.current

    peak, after_429, recovered = asyncio.run(scenario())
    assert peak == 4
    assert after_429 == 2
    assert recovered == 4


def test_golden_units_are_one_block_of_consecutive_cases_per_worker() -> None:
    ids = [f"golden_cases/a.jsonl::c{i}" for i in range(5)] + ["tests/test_x.py::test_y"]
    ids += [f"golden_cases/b.yaml::d{i}" for i in range(3)]

    def is_golden(nodeid: str) -> bool:
        return nodeid.startswith("golden_cases/")

    units = golden_units(ids, is_golden, worker_count=2)
    assert "tests/test_x.py::test_y" not in units
    first = [n for n in ids if units.get(n) == units["golden_cases/a.jsonl::c0"]]
    second = [n for n in ids if n in units and units[n] != units["golden_cases/a.jsonl::c0"]]
    assert first == [f"golden_cases/a.jsonl::c{i}" for i in range(4)]
    assert second == ["golden_cases/a.jsonl::c4", *(f"golden_cases/b.yaml::d{i}" for i in range(3))]
    assert len(set(golden_units(ids, is_golden, worker_count=3).values())) == 3
    assert len(set(golden_units(ids, is_golden, worker_count=20).values())) == 8


def request(**params: object) -> Request:
    return Request(model="m", messages=(ChatMessage("user", "hi"),), system="s", params=params)


def test_cache_key_covers_everything_that_shapes_the_reply() -> None:
    base = {"kind": "candidate", "provider": "openai", "base_url": "http://x/v1"}
    key = request_key(request=request(temperature=0), **base)
    assert key == request_key(request=request(temperature=0), **base)
    assert key == request_key(
        request=request(temperature=0), **{**base, "base_url": "http://x/v1/"}
    )
    assert key != request_key(request=request(temperature=1), **base)
    assert key != request_key(request=request(temperature=0), repeat=1, **base)
    assert key != request_key(request=request(temperature=0), **{**base, "base_url": "http://y/v1"})
    assert key != request_key(request=request(temperature=0), **{**base, "kind": "judge"})
    assert key != request_key(request=request(temperature=0), salt="2", **base)


def test_cache_round_trip_across_instances(tmp_path: Path) -> None:
    writer = ResponseCache(tmp_path)
    writer.put("k1", "judge", completion("verdict"))
    writer.put("k2", "judge", completion("   "))  # empty replies are not stored
    writer.close()
    reader = ResponseCache(tmp_path)
    hit = reader.get("k1", "judge")
    assert hit is not None
    assert hit.text == "verdict"
    assert hit.cached is True
    assert reader.get("k2", "judge") is None
    assert reader.stats_dict()["judge"] == {"hits": 1, "misses": 1, "writes": 0}


def test_cache_use_line_names_each_kind_the_cache_was_asked_for() -> None:
    def counts(hits: int, misses: int, writes: int = 0) -> dict[str, int]:
        return {"hits": hits, "misses": misses, "writes": writes}

    both = {"candidate": counts(120, 30, 30), "judge": counts(140, 10, 10)}
    assert cache_use_line(both, ".llmregress/cache") == (
        "cache: candidate 120 hits / 30 misses, judge 140 hits / 10 misses (.llmregress/cache)"
    )
    judge_only = {"candidate": counts(0, 0), "judge": counts(1, 1, 1)}
    assert cache_use_line(judge_only, "c") == "cache: judge 1 hit / 1 miss (c)"
    refreshed = {"candidate": counts(0, 0, 4), "judge": counts(4, 0)}
    assert (
        cache_use_line(refreshed, "c") == "cache: candidate 4 stored, judge 4 hits / 0 misses (c)"
    )
    assert cache_use_line({"candidate": counts(0, 0), "judge": counts(0, 0)}, "c") is None
    assert cache_use_line({}, "c") is None


@pytest.mark.parametrize("kind", ["timeout", "connection"])
def test_give_up_kinds_are_raised_without_a_retry(kind: str) -> None:
    script = Script(error(kind), error("server", 503))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> Completion:
        policy = RetryPolicy(retries=3)
        return await call_with_retries(
            script, policy, random.Random(1), sleep=sleep, give_up=FALL_THROUGH_AT_ONCE
        )

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    assert (info.value.kind, info.value.attempts, script.calls, slept) == (kind, 1, 1, [])
    # what is not in give_up is still retried
    script = Script(error("rate_limit", 429, retry_after=0.25), error(kind))
    result, slept = run_retries(script, RetryPolicy(retries=3))
    assert isinstance(result, Completion)
    assert result.attempts == 3
    assert 0.25 <= slept[0] <= 0.25 * 1.25


# -- the runner's one call path, with a fallback chain ------------------------------------------

PRIMARY = "claude-sonnet-4-6"
FALLBACK = "claude-opus-4-7"
MakeServer = Callable[[dict[str, Any]], LocalProviderServer]


def chain_scenario(
    primary: dict[str, Any] | None = None, fallback: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "models": {
            PRIMARY: {"default_reply": "primary says hi", **(primary or {})},
            FALLBACK: {"default_reply": "fallback says hi", **(fallback or {})},
        }
    }


def chain_runner(
    server: LocalProviderServer,
    *,
    concurrency: int = 4,
    retries: int = 2,
    cache: ResponseCache | None = None,
    cache_mode: CacheMode = "off",
) -> Runner:
    """A runner whose candidate is PRIMARY with FALLBACK behind it, against ``server``."""
    return Runner(
        candidate=ModelRef("anthropic", PRIMARY),
        judge=None,
        endpoints=local_server_endpoints(server.url),
        settings=RunnerSettings.defaults(
            concurrency=concurrency,
            judge_concurrency=1,
            timeout=5.0,
            retries=retries,
            # Two waits of a 0.1 s retry-after (up to 1.25x with jitter) fit, a third does not.
            rate_limit_wait=0.27,
            cache_mode=cache_mode,
        ),
        cache=cache,
        fallbacks=(ModelRef("anthropic", FALLBACK),),
        base_delay=0.001,
    )


def question(i: int) -> Request:
    return Request(model=PRIMARY, messages=(ChatMessage("user", f"question {i}"),))


async def ask(runner: Runner, questions: range) -> list[Completion]:
    """The ``llm`` fixture's call (``Runner.complete``) for each question, all at once."""
    return list(await asyncio.gather(*(runner.complete(question(i)) for i in questions)))


def calls(server: LocalProviderServer) -> list[tuple[str | None, str | None, int]]:
    return sorted((r.user_text, r.requested_model, r.status) for r in server.requests)


def test_a_429_storm_on_the_primary_shrinks_the_budget_and_honours_retry_after(
    make_server: MakeServer,
) -> None:
    server = make_server(chain_scenario({"errors": [{"status": 429, "retry_after": 0.1}]}))
    runner = chain_runner(server, concurrency=4, retries=2)
    # No recovery: the shrink stays visible after the successes of the fallback.
    limiter = runner.limiters["candidate"] = AdaptiveLimiter(4, recover_after=10**6)

    async def run() -> list[Completion]:
        try:
            return await ask(runner, range(8))
        finally:
            await runner.aclose()

    answers = asyncio.run(run())
    assert {(c.text, c.fallback_model) for c in answers} == {("fallback says hi", FALLBACK)}
    assert calls(server) == sorted(
        [(f"question {i}", PRIMARY, 429) for i in range(8)] * 3
        + [(f"question {i}", FALLBACK, 200) for i in range(8)]
    )
    assert limiter.current == 1  # halved per generation of 429s: 4 -> 2 -> 1
    assert limiter.held >= 1  # and new calls held back for the server's retry-after
    assert limiter.peak <= 4
    assert server.stats()["max_in_flight"] <= 4
    for i in range(8):  # each retry waited at least the server's retry-after
        times = sorted(
            r.time
            for r in server.requests
            if r.user_text == f"question {i}" and r.requested_model == PRIMARY
        )
        assert all(later - earlier >= 0.095 for earlier, later in itertools.pairwise(times))


def test_the_candidate_budget_holds_for_every_model_of_the_chain(make_server: MakeServer) -> None:
    server = make_server(chain_scenario({"retired": True}, {"latency_ms": 30}))
    runner = chain_runner(server, concurrency=3)

    async def run() -> list[Completion]:
        try:
            return await ask(runner, range(12))
        finally:
            await runner.aclose()

    answers = asyncio.run(run())
    assert [c.fallback_model for c in answers] == [FALLBACK] * 12
    # No preflight: each case asks the retired primary (one 404, no retry), then the fallback.
    assert calls(server) == sorted(
        [(f"question {i}", PRIMARY, 404) for i in range(12)]
        + [(f"question {i}", FALLBACK, 200) for i in range(12)]
    )
    assert runner.limiters["candidate"].peak == 3
    assert server.stats()["max_in_flight"] <= 3


def test_a_primary_the_preflight_found_retired_is_never_called(make_server: MakeServer) -> None:
    server = make_server(chain_scenario({"retired": True}))
    runner = chain_runner(server)

    async def run() -> tuple[dict[ModelRef, str], list[Completion]]:
        try:
            problems = await runner.check_models(runner.chain)
            return problems, await ask(runner, range(5))
        finally:
            await runner.aclose()

    problems, answers = asyncio.run(run())
    assert list(problems) == [ModelRef("anthropic", PRIMARY)]
    assert "404" in problems[ModelRef("anthropic", PRIMARY)]
    assert [(c.text, c.fallback_model) for c in answers] == [("fallback says hi", FALLBACK)] * 5
    # one call per case, to the fallback; the preflight's models request is not a model call
    assert calls(server) == [(f"question {i}", FALLBACK, 200) for i in range(5)]


def test_a_chain_the_preflight_found_all_gone_is_still_tried(make_server: MakeServer) -> None:
    server = make_server(chain_scenario({"retired": True}, {"retired": True}))
    runner = chain_runner(server)

    async def run() -> dict[ModelRef, str]:
        try:
            problems = await runner.check_models(runner.chain)
            await runner.complete(question(0))
            return problems
        finally:
            await runner.aclose()

    with pytest.raises(FallbackExhausted) as info:
        asyncio.run(run())
    assert [(e.model, e.status) for e in info.value.failures] == [(PRIMARY, 404), (FALLBACK, 404)]
    assert [(r.requested_model, r.status) for r in server.requests] == [
        (PRIMARY, 404),
        (FALLBACK, 404),
    ]


def test_record_then_replay_through_the_chain_calls_nothing(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(chain_scenario())

    async def record() -> list[Completion]:
        runner = chain_runner(server, cache=ResponseCache(tmp_path), cache_mode="record")
        try:
            before = await ask(runner, range(3))
            server.update_model(PRIMARY, retired=True)  # retired mid-run
            return before + await ask(runner, range(3, 6))
        finally:
            await runner.aclose()

    async def replay() -> list[Completion]:
        runner = chain_runner(server, cache=ResponseCache(tmp_path), cache_mode="replay")
        try:
            return await ask(runner, range(6))
        finally:
            await runner.aclose()

    recorded = asyncio.run(record())
    assert [c.fallback_model for c in recorded] == [None] * 3 + [FALLBACK] * 3
    server.reset_stats()
    replayed = asyncio.run(replay())
    assert server.stats()["requests"] == 0
    assert [(c.text, c.fallback_model, c.cached) for c in replayed] == [
        (c.text, c.fallback_model, True) for c in recorded
    ]


def test_the_limiter_hands_slots_to_the_oldest_waiter_first() -> None:
    """A freed slot goes to the call that waited longest, not to one that just arrived:
    pytest reports cases in order, so a case passed over by later ones stalls the run."""

    async def scenario() -> tuple[list[int], int, int]:
        limiter = AdaptiveLimiter(2)
        order: list[int] = []
        await limiter.acquire()
        await limiter.acquire()

        async def call(number: int) -> None:
            await limiter.acquire()
            order.append(number)

        waiting = [asyncio.create_task(call(n)) for n in range(5)]
        await asyncio.sleep(0)  # every waiter is queued
        cancelled = waiting.pop(1)
        cancelled.cancel()  # a waiter that gives up loses its place, not a slot
        await limiter.release()
        newcomer = asyncio.create_task(call(99))  # arrives while waiters are queued
        await limiter.release()
        for _ in range(3):
            await asyncio.sleep(0)
        await limiter.release()
        await limiter.release()
        await limiter.release()
        await asyncio.wait_for(asyncio.gather(*waiting, newcomer), 60)  # a bound on a hang
        return order, limiter.in_use, limiter.peak

    order, in_use, peak = asyncio.run(scenario())
    assert order == [0, 2, 3, 4, 99]
    assert in_use == 2  # five slots handed on as five were released: never more than two
    assert peak == 2


def test_the_limiter_wakes_a_waiter_when_a_hold_ends() -> None:
    async def scenario() -> int:
        limiter = AdaptiveLimiter(2)
        limiter.on_rate_limit(limiter.generation, retry_after=0.01)
        await limiter.acquire()  # nothing in use: only the end of the hold can wake it
        return limiter.in_use

    assert asyncio.run(scenario()) == 1
