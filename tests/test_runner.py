"""The runner's building blocks: retries, the adaptive limiter, the response cache."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from pytest_llmregress.cache import ResponseCache, request_key
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.runner import AdaptiveLimiter, RetryPolicy, call_with_retries
from pytest_llmregress.session import golden_units


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
    assert slept[0] == 0.25  # the server's retry-after wins
    assert 0 <= slept[1] <= 1.0  # second attempt: full jitter up to base * 2


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


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=5.0)
    assert policy.delay(1, error("rate_limit", 429, retry_after=120), random.Random(0)) == 5.0


def test_limiter_never_exceeds_its_limit_and_backs_off() -> None:
    async def scenario() -> tuple[int, int, int]:
        limiter = AdaptiveLimiter(4, recover_after=2)
        in_flight = 0
        peak = 0

        async def work(rate_limited: bool) -> None:
            nonlocal in_flight, peak
            generation = await limiter.acquire()
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
