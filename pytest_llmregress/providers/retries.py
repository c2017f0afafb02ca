"""The one retry policy of every model call: the runner's and the fallback chain's.

The SDKs' own retries are off; a call is retried here. Two kinds of trouble, two bounds:

- **Rate limits** (429) are the server saying when to come back. They are waited out, not
  counted against ``retries``: each wait is the server's ``retry-after`` plus up to a quarter
  more of jitter (so calls rejected together do not come back together), or exponential
  backoff with full jitter when the server names no time. A call gives up only when waiting
  again would take its total time waited on rate limits past ``rate_limit_wait``.
- **Other transient failures** (5xx, 529, timeouts, lost connections) are retried up to
  ``retries`` times with exponential backoff and full jitter (a ``retry-after`` on them is
  honoured up to ``max_delay``).

Nothing here imports an SDK.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace

from pytest_llmregress.providers.base import Completion, Provider, ProviderError, Request

DEFAULT_RATE_LIMIT_WAIT = 300.0
"""Seconds one call may spend waiting out rate limits, in total (``--llm-rate-limit-wait``)."""

RETRY_AFTER_JITTER = 0.25
"""A rate-limited call waits ``retry-after`` times 1 to 1 + this."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with jitter; rate limits waited out within ``rate_limit_wait`` seconds."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: anywhere up to ``base_delay * 2 ** (attempt - 1)``, capped."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` of its kind (rate limit or other)."""
        if error.retry_after is not None and error.retry_after > 0:
            if error.kind == "rate_limit":
                return error.retry_after * (1 + rng.uniform(0, RETRY_AFTER_JITTER))
            return min(error.retry_after, self.max_delay)
        return self.backoff(attempt, rng)


async def call_with_retries(
    call: Callable[[], Awaitable[Completion]],
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    give_up: Collection[str] = (),
) -> Completion:
    """Run ``call``; wait out rate limits and retry transient failures per ``policy``.

    ``attempts`` on the completion or the raised error counts every call made. Errors whose
    kind is in ``give_up`` are raised at once even when retryable: a fallback chain passes
    its fall-through-at-once kinds (a timeout), for which the next model is the retry.
    """
    attempt = 1
    failures = 0  # transient failures other than rate limits
    limited = 0  # rate limits
    waited = 0.0  # seconds spent waiting out rate limits
    while True:
        try:
            completion = await call()
        except ProviderError as error:
            error.attempts = attempt
            if not error.retryable or error.kind in give_up:
                raise
            if error.kind == "rate_limit":
                limited += 1
                delay = policy.delay(limited, error, rng)
                if waited + delay > policy.rate_limit_wait:
                    error.message += (
                        f" (still rate limited after waiting {waited:.3g} s of the "
                        f"{policy.rate_limit_wait:g} s allowed)"
                    )
                    raise
                waited += delay
            else:
                failures += 1
                if failures > policy.retries:
                    raise
                delay = policy.delay(failures, error, rng)
            await sleep(delay)
            attempt += 1
            continue
        if attempt > 1:
            completion = replace(completion, attempts=attempt)
        return completion


async def complete_within(
    provider: Provider, name: str, request: Request, timeout: float
) -> Completion:
    """One attempt of ``request`` on ``provider`` (named ``name``) with a hard deadline of
    ``timeout`` seconds; running out of it is a ``timeout`` error."""
    try:
        async with asyncio.timeout(timeout):
            return await provider.complete(request)
    except TimeoutError:
        raise ProviderError(
            f"no answer within {timeout:g} s", provider=name, model=request.model, kind="timeout"
        ) from None
