"""``--llm-max-cost`` (issue 16): no call is sent that could take the spend past the budget;
cases not run are reported, and the gate fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.engine.budget import BUDGET_MAX_TOKENS, Budget
from pytest_llmregress.models.prices import bundled_prices
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def completion(input_tokens: int, output_tokens: int) -> Completion:
    return Completion(
        text="x",
        provider="openai",
        requested_model="m",
        resolved_model="m",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_s=0.1,
    )


def test_a_call_reserves_its_most_and_settles_at_its_usage() -> None:
    budget = Budget(1.0, {"openai:m": (2.0, 10.0)})  # USD per million tokens
    request = Request(
        model="m", messages=(ChatMessage("user", "héllo"),), system="be brief", params={}
    )
    bounded = budget.with_bound(request)
    assert bounded.params["max_tokens"] == BUDGET_MAX_TOKENS
    assert budget.with_bound(bounded) is bounded
    # 8 + 6 UTF-8 bytes of text, 8 tokens per message and for the system prompt.
    expected = ((8 + 6 + 16) * 2.0 + BUDGET_MAX_TOKENS * 10.0) / 1_000_000
    assert budget.bound("openai:m", bounded) == pytest.approx(expected)
    reserved = budget.reserve("openai:m", "openai", bounded)
    assert budget.reserved == pytest.approx(expected)
    budget.settle("openai:m", reserved, completion(100, 50))
    assert budget.reserved == 0
    assert budget.spent == pytest.approx((100 * 2.0 + 50 * 10.0) / 1_000_000)


def test_a_call_that_could_pass_the_budget_is_not_sent() -> None:
    budget = Budget(0.02, {"openai:m": (2.0, 10.0)})
    request = Request(model="m", messages=(ChatMessage("user", "hi"),), params={"max_tokens": 1000})
    first = budget.reserve("openai:m", "openai", request)  # about $0.01
    with pytest.raises(ProviderError) as raised:
        budget.reserve("openai:m", "openai", request)  # two in flight could pass $0.02
    assert raised.value.kind == "budget"
    assert not raised.value.retryable
    assert "not sent: --llm-max-cost $0.02 would be passed" in str(raised.value)
    assert budget.stopped
    assert budget.refused == 1
    budget.settle("openai:m", first, None)  # a failed call costs nothing
    assert budget.spent == 0


def prices_of(provider: str, model: str) -> tuple[float, float]:
    price = bundled_prices().lookup(provider, model)
    assert price is not None, model
    return price.input, price.output


def answered_cost(server: LocalProviderServer, run: Any) -> float:
    """What every answered call cost, from the usage the results recorded."""
    total = 0.0
    for case in run.cases:
        for completion_ in (case.completion, case.judge_completion):
            if completion_ is None:
                continue
            price_in, price_out = prices_of(completion_.provider, completion_.requested_model)
            total += (
                completion_.input_tokens * price_in + completion_.output_tokens * price_out
            ) / 1_000_000
    return total


def test_a_budget_too_small_for_one_call_sends_none(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-max-cost=0.001", "--llm-preflight=off"))

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=5)
    assert server.requests == []  # not one model request
    result.stdout.fnmatch_lines(
        [
            "0 passed, 0 failed, 0 errors, 5 not run (budget)*",
            "  reason: the budget (--llm-max-cost) stopped the run: 5 cases not run or not "
            "finished; a partial run is never a pass",
        ]
    )


def test_a_budget_stops_new_cases_and_is_never_passed(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """One call of each kind at a time: the budget is one judge call's bound plus a little, so
    a few cases run and then their spend leaves no room for the next judge call."""
    cases = qa_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    limit = 0.06  # a judge call reserves about $0.04, a candidate call about $0.016

    result = pytester.runpytest(
        *model_args(
            f"--llm-max-cost={limit}",
            "--llm-concurrency=1",
            "--llm-judge-concurrency=1",
            "--llm-max-error-rate=1",
            "--llm-report=b.json",
        )
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    run = load_results(pytester.path / "b.json")
    outcomes = [c.outcome for c in run.cases]
    assert "passed" in outcomes
    not_run = [c for c in run.cases if c.error_kind == "budget"]
    assert not_run
    assert answered_cost(server, run) <= limit
    # A case refused before its first call made no request at all.
    asked = {r.user_text for r in server.requests}
    untouched = [c for c in not_run if c.completion is None]
    assert untouched
    for case in untouched:
        user = next(c["user"] for c in cases if c["id"] == case.case_id)
        assert user not in asked
    result.stdout.fnmatch_lines(["*not run (budget)*", "*reason: the budget (--llm-max-cost)*"])


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_generous_budget_changes_nothing_and_the_header_bounds_the_cost(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, mode: list[str]
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(*model_args("--llm-max-cost=100", "--llm-report=g.json"), *mode)

    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.OK
    line = next(text for text in result.outlines if text.startswith("llmregress: budget $100.00"))
    match = re.search(r"the 6 selected cases cost at most about \$([\d.]+) if every answer", line)
    assert match, line
    spent = answered_cost(server, load_results(pytester.path / "g.json"))
    assert 0 < spent <= float(match.group(1))


def test_a_budget_needs_every_models_price(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}", "--llm-judge-model=openai:judge-x", "--llm-max-cost=1"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--llm-max-cost needs the price of every model of the run; none is known for "
            "openai:judge-x*"
        ]
    )
    assert JUDGE  # the suite's judge is priced: see test_a_generous_budget_changes_nothing
