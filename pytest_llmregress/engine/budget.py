"""``--llm-max-cost``: no call is sent that could take the run's spend past the budget.

Before a request goes out, it reserves the most it can cost: its input tokens at most (a
token is at least one byte of UTF-8, so the request's bytes bound them, plus a few tokens per
message for the roles) at the model's input price, and its ``max_tokens`` at the output
price. A call without ``max_tokens`` is sent with ``BUDGET_MAX_TOKENS`` so that it has a
bound. When the spend so far plus every reservation in flight plus this one would pass the
budget, the call is not sent: a ``budget`` error, and from then on no new case starts. When
an answer arrives, its reservation is replaced by what its usage says it cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_llmregress.providers.base import Completion, ProviderError, Request

BUDGET_MAX_TOKENS = 1024
"""The output bound of a call that sets no ``max_tokens`` (the Anthropic provider's default)."""
PER_MESSAGE_TOKENS = 8
"""Tokens a message's role and delimiters may add to its text."""
PER_MILLION = 1_000_000


def call_cost(
    prices: Mapping[str, tuple[float, float]], model: str, completion: Completion
) -> float:
    """USD of one answered call by its usage at ``prices``; 0 for a model without one."""
    price_in, price_out = prices.get(model, (0.0, 0.0))
    return (completion.input_tokens * price_in + completion.output_tokens * price_out) / PER_MILLION


@dataclass
class Budget:
    """The run's spend, the one ledger of it, against ``limit`` (USD; None: no limit, the
    spend is only counted, for the progress line). ``prices``: each model's (input, output)
    USD per million tokens, by ``provider:model``; ``batch_prices``: the same through the
    Batch API (``--llm-batch``; a model missing there is priced at ``prices``)."""

    limit: float | None
    prices: Mapping[str, tuple[float, float]]
    batch_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    spent: float = 0.0
    reserved: float = 0.0
    refused: int = 0  # calls not sent
    stopped: bool = field(default=False)  # a call was refused: no new case starts

    def _prices(self, batch: bool) -> Mapping[str, tuple[float, float]]:
        return {**self.prices, **self.batch_prices} if batch else self.prices

    def bound(self, model: str, request: Request, *, batch: bool = False) -> float:
        """The most ``request`` to ``model`` can cost (through the Batch API: ``batch``)."""
        price_in, price_out = self._prices(batch)[model]
        texts = [request.system or "", *(m.content for m in request.messages)]
        tokens_in = sum(len(t.encode("utf-8")) for t in texts)
        tokens_in += PER_MESSAGE_TOKENS * (len(request.messages) + 1)
        if request.reply_schema is not None:
            tokens_in += len(json.dumps(request.reply_schema.schema).encode("utf-8")) + 64
        tokens_out = int(request.params.get("max_tokens") or BUDGET_MAX_TOKENS)
        return (tokens_in * price_in + tokens_out * price_out) / PER_MILLION

    def reserve(
        self,
        model: str,
        provider: str,
        request: Request,
        *,
        starts_case: bool = True,
        batch: bool = False,
    ) -> float:
        """Reserve the call's bound, or raise a ``budget`` error without sending it.

        Once a call was refused, no call that would start a case (``starts_case``: a candidate
        call) is sent any more; a judge call still finishes a case already answered if it
        fits."""
        if self.limit is None:
            return 0.0
        bound = self.bound(model, request, batch=batch)
        over = self.spent + self.reserved + bound > self.limit
        if over or (self.stopped and starts_case):
            self.refused += 1
            self.stopped = True
            why = "would be passed" if over else "stopped new cases"
            raise ProviderError(
                f"not sent: --llm-max-cost ${self.limit:.2f} {why} (${self.spent:.4f} "
                f"spent, ${self.reserved:.4f} in flight, this call up to ${bound:.4f})",
                provider=provider,
                model=request.model,
                kind="budget",
                attempts=0,
            )
        self.reserved += bound
        return bound

    def settle(self, model: str, bound: float, completion: Completion | None) -> None:
        """The call is over: its reservation goes, its cost (from its usage) counts."""
        self.reserved = max(0.0, self.reserved - bound)
        if completion is not None:
            self.spent += call_cost(self._prices(completion.batch), model, completion)

    @property
    def known(self) -> bool:
        """Whether any model of the run has a price (else the spend is not known at all)."""
        return bool(self.prices)

    def with_bound(self, request: Request) -> Request:
        """``request`` with ``max_tokens`` set, so that its output has a bound (as it is
        without a limit)."""
        if self.limit is None or request.params.get("max_tokens"):
            return request
        from dataclasses import replace

        return replace(request, params={**request.params, "max_tokens": BUDGET_MAX_TOKENS})

    def describe(self) -> str:
        limit = "no limit" if self.limit is None else f"${self.limit:.2f}"
        return f"budget: ${self.spent:.4f} spent of {limit} (--llm-max-cost)" + (
            f"; {self.refused} calls not sent" if self.refused else ""
        )


JUDGE_PROMPT_BYTES = 3000
"""About what the judge's instructions and delimiters add to a case's texts (for estimates)."""
BYTES_PER_OUTPUT_TOKEN = 4


def estimate(
    cases: Iterable[tuple[str, str, int | None, bool]],
    *,
    answering: Sequence[tuple[float, float]],
    judges: Sequence[tuple[float, float]],
    repeat: int = 1,
    judge_repeat: int = 1,
) -> float:
    """The most the selected cases can cost if every answer is as long as its ``max_tokens``
    allows, for the header: ``cases`` as (prompt text, reference or "", max_tokens, judged);
    the
    prices of the models that answer (candidate, compare) and of the judges. The judge's input
    is an estimate: the task, the reference, the longest answer and its instructions."""
    total = 0.0
    for prompt, reference, max_tokens, judged in cases:
        tokens_out = max_tokens or BUDGET_MAX_TOKENS
        tokens_in = len(prompt.encode("utf-8")) + 2 * PER_MESSAGE_TOKENS
        per_answer = sum((tokens_in * pi + tokens_out * po) for pi, po in answering)
        judge_in = (
            len(prompt.encode("utf-8"))
            + len(reference.encode("utf-8"))
            + tokens_out * BYTES_PER_OUTPUT_TOKEN
            + JUDGE_PROMPT_BYTES
        )
        per_judging = sum(judge_in * pi + BUDGET_MAX_TOKENS * po for pi, po in judges)
        if not judged:
            per_judging = 0.0
        total += repeat * (per_answer + judge_repeat * per_judging * len(answering))
    return total / PER_MILLION
