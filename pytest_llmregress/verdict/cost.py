"""What a run's model calls cost: per call, per case, per role, and the change a migration
brings. Pure arithmetic over results and a :class:`~pytest_llmregress.models.prices.PriceTable`
(no rendering: the terminal summary, markdown and HTML say it their own way).

The calls of a case are every repeat's candidate call and every judge call behind its judge
score: each vote's tokens when the votes carry them (a panel, ``--llm-judge-repeat``, the
order check), else the repeat's one judge completion. A call whose model has no price is
counted apart by model (an unknown price is said, never guessed); a call served from the
response cache is priced like any other (what the run would have cost), and its share is
reported as not spent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pytest_llmregress.models.prices import PriceTable
    from pytest_llmregress.providers.base import Completion
    from pytest_llmregress.verdict.compare import Comparison
    from pytest_llmregress.verdict.results import CaseResult

Role = Literal["candidate", "judge"]


@dataclass(frozen=True)
class Call:
    """One model call of a case: who made it, its tokens and its price (None: unknown)."""

    role: Role
    model: str
    """``provider:model id`` as asked."""
    input_tokens: int
    output_tokens: int
    cost: float | None
    cached: bool = False
    as_of: date | None = None
    """The date of the price used; None for a project's own price or an unknown one."""
    batch: bool = False
    """Made through a Batch API (``--llm-batch``), priced at the batch price."""

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["as_of"] = self.as_of.isoformat() if self.as_of else None
        return data


def _completion_call(role: Role, completion: Completion, table: PriceTable) -> Call:
    price = table.price_of(completion)
    return Call(
        role,
        f"{completion.provider}:{completion.requested_model}",
        completion.input_tokens,
        completion.output_tokens,
        None
        if price is None
        else price.cost(completion.input_tokens, completion.output_tokens, batch=completion.batch),
        completion.cached,
        None if price is None else price.as_of,
        completion.batch,
    )


def case_calls(result: CaseResult, table: PriceTable) -> list[Call]:
    """Every model call behind one case's result, candidate first in each repeat."""
    calls: list[Call] = []
    for run in result.repeats or (result,):
        if run.completion is not None:
            calls.append(_completion_call("candidate", run.completion, table))
        votes = [v for s in run.scores if s.scorer == "judge" for v in s.votes]
        if votes and any(v.input_tokens or v.output_tokens for v in votes):
            for vote in votes:
                provider, _, model = vote.judge.partition(":")
                price = table.lookup(provider, model)
                calls.append(
                    Call(
                        "judge",
                        vote.judge,
                        vote.input_tokens,
                        vote.output_tokens,
                        None
                        if price is None
                        else price.cost(vote.input_tokens, vote.output_tokens, batch=vote.batch),
                        vote.cached,
                        None if price is None else price.as_of,
                        vote.batch,
                    )
                )
        elif run.judge_completion is not None:
            calls.append(_completion_call("judge", run.judge_completion, table))
    return calls


@dataclass(frozen=True)
class RoleCost:
    """The calls of one role (the candidate's, the judge's) over a run."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    """USD of the calls with a known price."""
    cached_cost: float = 0.0
    """The part of ``cost`` served from the response cache: priced, not spent in this run."""
    unpriced: dict[str, int] = field(default_factory=dict)
    """Calls without a known price, by ``provider:model``."""
    batch_calls: int = 0
    """Calls made through a Batch API (priced at the batch prices)."""

    @property
    def known(self) -> bool:
        """Every call had a price."""
        return not self.unpriced

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "cached_cost": self.cached_cost,
            "unpriced": dict(self.unpriced),
            "batch_calls": self.batch_calls,
        }


class _Tally:
    """A :class:`RoleCost` summed a call at a time."""

    def __init__(self) -> None:
        self.n = self.tokens_in = self.tokens_out = self.batched = 0
        self.total = self.cached = 0.0
        self.unpriced: dict[str, int] = {}

    def add(self, call: Call) -> None:
        self.n += 1
        self.batched += call.batch
        self.tokens_in += call.input_tokens
        self.tokens_out += call.output_tokens
        if call.cost is None:
            self.unpriced[call.model] = self.unpriced.get(call.model, 0) + 1
            return
        self.total += call.cost
        if call.cached:
            self.cached += call.cost

    def sum(self) -> RoleCost:
        unpriced = dict(sorted(self.unpriced.items()))
        return RoleCost(
            self.n, self.tokens_in, self.tokens_out, self.total, self.cached, unpriced, self.batched
        )


@dataclass(frozen=True)
class RunCost:
    """A run's cost: the candidate's calls and the judge's, over ``cases`` cases."""

    candidate: RoleCost
    judge: RoleCost
    cases: int
    """Cases with at least one call."""
    as_of: tuple[date, ...] = ()
    """The dates of the bundled prices used, oldest first."""
    project_prices: bool = False
    """A project's own price (``[tool.llmregress.prices]``) was used."""
    per_case: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    """By node id: ``candidate`` and ``judge`` USD (None when a call's price is unknown) and
    every ``calls`` record (a :class:`PerCase`, worked out as it is read)."""

    @property
    def total(self) -> float:
        """USD of every call with a known price."""
        return self.candidate.cost + self.judge.cost

    @property
    def cached_cost(self) -> float:
        return self.candidate.cached_cost + self.judge.cached_cost

    @property
    def candidate_per_case(self) -> float | None:
        """The candidate's mean cost per case; None when a price is unknown or no case ran."""
        if not self.cases or not self.candidate.known or not self.candidate.calls:
            return None
        return self.candidate.cost / self.cases

    def to_dict(self, *, cases: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "currency": "USD",
            "prices_as_of": [d.isoformat() for d in self.as_of],
            "project_prices": self.project_prices,
            "candidate": self.candidate.to_dict(),
            "judge": self.judge.to_dict(),
            "total": self.total,
            "cases": self.cases,
            "candidate_per_case": self.candidate_per_case,
        }
        if cases:
            data["per_case"] = dict(self.per_case)
        return data

    def to_document(self) -> dict[str, Any]:
        """:meth:`to_dict` for the results document, whose writer reads the cost per case an
        entry at a time (it stays a :class:`PerCase`)."""
        return {**self.to_dict(cases=False), "per_case": self.per_case}


def _sum(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def run_cost(results: Iterable[CaseResult], table: PriceTable) -> RunCost:
    """The cost of every call behind ``results``, in total and per case."""
    tallies: dict[Role, _Tally] = {"candidate": _Tally(), "judge": _Tally()}
    with_calls: dict[str, CaseResult] = {}
    as_of: set[date] = set()
    project_prices = False
    for result in results:
        calls = case_calls(result, table)
        if not calls:
            continue
        with_calls[result.nodeid] = result
        for call in calls:
            tallies[call.role].add(call)
            if call.as_of is not None:
                as_of.add(call.as_of)
            elif call.cost is not None:
                project_prices = True
    return RunCost(
        candidate=tallies["candidate"].sum(),
        judge=tallies["judge"].sum(),
        cases=len(with_calls),
        as_of=tuple(sorted(as_of)),
        project_prices=project_prices,
        per_case=PerCase(with_calls, table),
    )


class PerCase(Mapping[str, dict[str, Any]]):
    """A run's cost per case, by node id, each worked out again when it is read: held as a
    dict, the cost per case of 5,000 cases was 6 MB kept to the end of the run for one field
    of the results document (which writes it as it reads it)."""

    def __init__(self, results: Mapping[str, CaseResult], table: PriceTable) -> None:
        self._results = results
        self._table = table

    def __getitem__(self, nodeid: str) -> dict[str, Any]:
        calls = case_calls(self._results[nodeid], self._table)
        return {
            "candidate": _sum([c.cost for c in calls if c.role == "candidate"]),
            "judge": _sum([c.cost for c in calls if c.role == "judge"]),
            "calls": [c.to_dict() for c in calls],
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


@dataclass(frozen=True)
class CostChange:
    """The candidate model's cost per case in a comparison's two runs, on the cases both
    ran (paired, and errored in either): what the migration does to the bill."""

    baseline_per_case: float | None
    candidate_per_case: float | None
    cases: int
    unpriced: tuple[str, ...] = ()
    """Models whose price is unknown (either run)."""

    @property
    def relative(self) -> float | None:
        """The change as a fraction of the baseline's cost (-0.23: 23% cheaper)."""
        if self.baseline_per_case is None or self.candidate_per_case is None:
            return None
        if self.baseline_per_case == 0:
            return None
        return self.candidate_per_case / self.baseline_per_case - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_per_case": self.baseline_per_case,
            "candidate_per_case": self.candidate_per_case,
            "relative": self.relative,
            "cases": self.cases,
            "unpriced": list(self.unpriced),
        }


def cost_change(comparison: Comparison, table: PriceTable) -> CostChange:
    """The candidate calls' cost per case of both runs of ``comparison``, on the same cases."""
    pairs = [*comparison.pairing.paired, *comparison.pairing.errored]
    baseline = run_cost([p.baseline for p in pairs], table)
    candidate = run_cost([p.candidate for p in pairs], table)
    unpriced = sorted({*baseline.candidate.unpriced, *candidate.candidate.unpriced})

    def per_case(run: RunCost) -> float | None:
        if not pairs or not run.candidate.known or not run.candidate.calls:
            return None
        return run.candidate.cost / len(pairs)

    return CostChange(per_case(baseline), per_case(candidate), len(pairs), tuple(unpriced))
