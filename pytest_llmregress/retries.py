"""The one retry policy of every model call: the runner's and the fallback chain's.

The SDKs' own retries are off; a call is retried here, with exponential backoff and full
jitter, and the server's ``retry-after`` honoured up to a cap. Nothing here imports an SDK.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace

from pytest_llmregress.providers.base import Completion, ProviderError


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
    *,
    give_up: Collection[str] = (),
) -> Completion:
    """Run ``call``; retry transient failures per ``policy``; count the attempts.

    Errors whose kind is in ``give_up`` are raised at once even when retryable: a fallback
    chain passes its fall-through-at-once kinds (a timeout), for which the next model is the
    retry.
    """
    attempt = 1
    while True:
        try:
            completion = await call()
        except ProviderError as error:
            error.attempts = attempt
            if not error.retryable or error.kind in give_up or attempt > policy.retries:
                raise
            await sleep(policy.delay(attempt, error, rng))
            attempt += 1
            continue
        if attempt > 1:
            completion = replace(completion, attempts=attempt)
        return completion
