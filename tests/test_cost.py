"""What each run costs (issue 16, point 3): the bundled price table, a project's prices, and
cost in the results file, the terminal summary, the markdown and comparisons. The end-to-end
tests price the tokens the local provider server's replies report, by hand, and check the
plugin's figures against them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.models.prices import (
    PriceError,
    PriceTable,
    bundled_prices,
    cost,
    load_prices,
)
from pytest_llmregress.providers.base import Completion
from pytest_llmregress.report.terminal import cost_change_text, money
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.cost import CostChange, case_calls, run_cost
from pytest_llmregress.verdict.results import CaseResult, RunResult, load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

#: USD per million tokens, from the bundled table's sources (models/prices.csv).
SONNET_46 = (3.0, 15.0)
GPT_55 = (5.0, 30.0)
HAIKU_45 = (1.0, 5.0)
GPT_52 = (1.75, 14.0)
AS_OF = "2026-12-05"


def by_hand(prices: tuple[float, float], tokens: list[tuple[int, int]]) -> float:
    return sum(i * prices[0] + o * prices[1] for i, o in tokens) / 1_000_000


def completion(model: str, provider: str, tokens_in: int, tokens_out: int, **kw: Any) -> Completion:
    return Completion(
        text="x",
        provider=provider,
        requested_model=model,
        resolved_model=kw.pop("resolved", model),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        **kw,
    )


# -- the table -------------------------------------------------------------------------------


def test_the_bundled_table_prices_the_models_the_project_names_with_date_and_source() -> None:
    table = bundled_prices()
    for provider, model in [
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-opus-4-6"),
        ("anthropic", "claude-opus-4-7"),
        ("anthropic", "claude-haiku-4-5"),
        ("anthropic", "claude-haiku-4-5-20251001"),
        ("openai", "gpt-5.5"),
        ("openai", "gpt-5.5-2026-04-23"),
        ("openai", "gpt-5.2"),
        ("openai", "gpt-5.2-2025-12-11"),
        ("openai", "gpt-4.1"),
        ("openai", "gpt-4.1-2025-04-14"),
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06"),
    ]:
        price = table.lookup(provider, model)
        assert price is not None, model
        assert price.as_of == date(2026, 12, 5)
        assert price.source.startswith("https://")
        assert 0 < price.input < price.output
        assert price.batch_input == price.input / 2
        assert price.batch_output == price.output / 2
    assert table.lookup("anthropic", "claude-sonnet-4-6").input == 3.0  # type: ignore[union-attr]
    # No price by resemblance: a snapshot the table does not list has no price.
    assert table.lookup("openai", "gpt-4o-2024-05-13") is None
    assert table.lookup("anthropic", "gpt-4o") is None  # another provider's id


def test_a_completion_costs_its_tokens_at_the_resolved_models_price_else_the_requested() -> None:
    table = bundled_prices()
    sonnet = completion("claude-sonnet-4-6", "anthropic", 1200, 300)
    assert cost(sonnet) == pytest.approx((1200 * 3 + 300 * 15) / 1e6)
    # An alias answering as its dated snapshot is priced as the snapshot.
    haiku = completion("claude-haiku-4-5", "anthropic", 1000, 1000, resolved="x-unknown")
    assert table.cost(haiku) == pytest.approx((1000 * 1 + 1000 * 5) / 1e6)
    snapshot = completion("gpt-4o", "openai", 10, 10, resolved="gpt-4o-2024-08-06")
    assert table.price_of(snapshot).model_id == "gpt-4o-2024-08-06"  # type: ignore[union-attr]
    assert table.cost(completion("llama-3", "openai", 10, 10)) is None


def test_project_prices_correct_and_add_models_and_bad_ones_name_file_and_key(
    tmp_path: Path,
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.llmregress.prices."claude-sonnet-4-6"]\ninput = 2.5\nsource = "contract"\n'
        '[tool.llmregress.prices."openai:llama-3"]\ninput = 0.1\noutput = 0.2\n'
        "as_of = 2026-11-30\n"
    )
    table = load_prices(pyproject)
    sonnet = table.lookup("anthropic", "claude-sonnet-4-6")
    assert sonnet is not None
    assert (sonnet.input, sonnet.output, sonnet.source, sonnet.as_of) == (
        2.5,
        15.0,
        "contract",
        None,
    )
    llama = table.lookup("openai", "llama-3")
    assert llama is not None
    assert (llama.input, llama.output) == (0.1, 0.2)
    assert llama.as_of == date(2026, 11, 30)
    assert table.lookup("anthropic", "llama-3") is None
    assert bundled_prices().lookup("anthropic", "claude-sonnet-4-6").input == 3.0  # type: ignore[union-attr]

    toml = tmp_path / "llmregress.toml"
    for body, message in [
        ('[prices."gpt-4o"]\ninptu = 1\n', "prices.gpt-4o.inptu: unknown key"),
        ('[prices."gpt-4o"]\ninput = -1\n', "prices.gpt-4o.input: expected a price"),
        ('[prices."gpt-4o"]\ninput = "cheap"\n', "prices.gpt-4o.input: expected a price"),
        ('[prices."my-model"]\ninput = 1\n', "prices.my-model: no bundled price for 'my-model'"),
        ("prices = 3\n", "prices: expected a table of model ids"),
        ('[prices]\n"gpt-4o" = 2\n', "prices.gpt-4o: expected a table of prices"),
    ]:
        toml.write_text(body)
        with pytest.raises(PriceError) as caught:
            load_prices(toml)
        assert str(caught.value).startswith(f"{toml}: {message}"), str(caught.value)
    toml.write_text('[prices."gpt-4o"]\ninptu = 1\n')
    with pytest.raises(PriceError, match="did you mean 'input'"):
        load_prices(toml)


def test_money_reads_cents_and_fractions_of_a_cent() -> None:
    assert [money(v) for v in (0, 0.42, 12.3, 0.0031, 0.000012, 1234.5)] == [
        "$0",
        "$0.42",
        "$12.30",
        "$0.0031",
        "$0.000012",
        "$1,234.50",
    ]
    change = CostChange(0.0031, 0.0024, 10)
    assert cost_change_text(change) == "cost per case $0.0031 -> $0.0024 (-23%) on 10 cases"
    assert cost_change_text(CostChange(None, 0.1, 3, ("openai:x",))) == (
        "cost per case: unknown price for openai:x"
    )


# -- end to end ------------------------------------------------------------------------------


def tokens(results: list[CaseResult], field: str) -> list[tuple[int, int]]:
    out = []
    for result in results:
        for run in result.repeats or (result,):
            reply = getattr(run, field)
            if reply is not None:
                out.append((reply.input_tokens, reply.output_tokens))
    return out


def test_a_run_reports_its_cost_per_case_in_total_and_in_the_markdown(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))

    result = pytester.runpytest(
        *model_args("--llm-report=out.json", "--llm-markdown=summary.md"), *run_mode
    )

    result.assert_outcomes(passed=6)
    run = load_results(pytester.path / "out.json")
    candidate_tokens = tokens(run.cases, "completion")
    judge_tokens = tokens(run.cases, "judge_completion")
    assert len(candidate_tokens) == len(judge_tokens) == 6
    assert all(i > 0 and o > 0 for i, o in candidate_tokens + judge_tokens)
    candidate = by_hand(SONNET_46, candidate_tokens)
    judge = by_hand(GPT_55, judge_tokens)
    stored = run.metadata["cost"]
    assert stored["candidate"]["cost"] == pytest.approx(candidate)
    assert stored["judge"]["cost"] == pytest.approx(judge)
    assert stored["total"] == pytest.approx(candidate + judge)
    assert stored["candidate"]["calls"] == stored["judge"]["calls"] == 6
    assert stored["prices_as_of"] == [AS_OF]
    assert stored["candidate_per_case"] == pytest.approx(candidate / 6)
    first = run.cases[0]
    per_case = stored["per_case"][first.nodeid]
    assert first.completion is not None
    assert first.judge_completion is not None
    assert per_case["candidate"] == pytest.approx(
        by_hand(SONNET_46, [(first.completion.input_tokens, first.completion.output_tokens)])
    )
    assert [c["role"] for c in per_case["calls"]] == ["candidate", "judge"]
    assert per_case["calls"][1]["model"] == f"openai:{JUDGE}"

    line = (
        f"cost: candidate {money(candidate)}, judge {money(judge)} (prices as of {AS_OF}); "
        f"candidate {money(candidate / 6)} per case"
    )
    result.stdout.fnmatch_lines(["tokens: candidate *", line])
    result.stdout.no_fnmatch_line("*unknown price*")
    markdown = (pytester.path / "summary.md").read_text()
    assert "**Cost**" in markdown
    assert line in markdown


def test_an_unknown_price_is_said_never_guessed(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    unpriced = scenario(cases)
    unpriced["models"]["tiny-chat-v1"] = unpriced["models"].pop(CANDIDATE)
    provider_env(make_server(unpriced))

    result = pytester.runpytest(
        "--llm-model=openai:tiny-chat-v1", f"--llm-judge-model={JUDGE}", "--llm-report=out.json"
    )

    result.assert_outcomes(passed=3)
    run = load_results(pytester.path / "out.json")
    judge = by_hand(GPT_55, tokens(run.cases, "judge_completion"))
    result.stdout.fnmatch_lines(
        [
            f"cost: candidate unknown, judge {money(judge)} (prices as of {AS_OF})",
            "  unknown price for openai:tiny-chat-v1 (3 calls not in the cost): add it under "
            "[tool.llmregress.prices]",
        ]
    )
    result.stdout.no_fnmatch_line("*per case*")
    stored = run.metadata["cost"]
    assert stored["candidate"]["unpriced"] == {"openai:tiny-chat-v1": 3}
    assert stored["candidate_per_case"] is None
    assert all(v["candidate"] is None for v in stored["per_case"].values())


def test_the_projects_prices_are_used_and_said(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    pytester.makepyprojecttoml(
        f'[tool.llmregress.prices."{CANDIDATE}"]\ninput = 1000.0\noutput = 0.0\n'
    )

    result = pytester.runpytest(*model_args("--llm-report=out.json"))

    result.assert_outcomes(passed=3)
    run = load_results(pytester.path / "out.json")
    candidate = by_hand((1000.0, 0.0), tokens(run.cases, "completion"))
    assert run.metadata["cost"]["candidate"]["cost"] == pytest.approx(candidate)
    assert run.metadata["cost"]["project_prices"] is True
    result.stdout.fnmatch_lines(
        [f"cost: candidate {money(candidate)}, judge * (prices as of {AS_OF}; the project's own*"]
    )


def test_a_bad_project_price_is_named_with_its_file_and_key(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    pytester.makepyprojecttoml(f'[tool.llmregress.prices."{CANDIDATE}"]\nintput = 1.0\n')

    result = pytester.runpytest(*model_args())

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"cost: prices not read: *pyproject.toml: tool.llmregress.prices.{CANDIDATE}.intput: "
            "unknown key*did you mean 'input'?"
        ]
    )


def test_every_repeat_and_every_judge_vote_is_counted(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    panel = scenario(cases)
    panel["models"]["gpt-5.2-2025-12-11"] = {"judge": True}
    server = make_server(panel)
    provider_env(server)

    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-judge-model={JUDGE},gpt-5.2-2025-12-11",
        "--llm-repeat=2",
        "--llm-judge-repeat=2",
        "--llm-report=out.json",
    )

    result.assert_outcomes(passed=4)
    calls = [r.requested_model for r in server.requests if r.status == 200]
    run = load_results(pytester.path / "out.json")
    stored = run.metadata["cost"]
    assert stored["candidate"]["calls"] == calls.count(CANDIDATE) == 4 * 2
    judge_calls = calls.count(JUDGE) + calls.count("gpt-5.2-2025-12-11")
    assert stored["judge"]["calls"] == judge_calls == 4 * 2 * 2 * 2
    votes = [
        (v.judge, v.input_tokens, v.output_tokens)
        for case in run.cases
        for rep in case.repeats
        for s in rep.scores
        for v in s.votes
    ]
    assert len(votes) == judge_calls
    assert all(i > 0 and o > 0 for _, i, o in votes)
    judge = by_hand(GPT_55, [(i, o) for j, i, o in votes if j == f"openai:{JUDGE}"]) + by_hand(
        GPT_52, [(i, o) for j, i, o in votes if j == "openai:gpt-5.2-2025-12-11"]
    )
    assert stored["judge"]["cost"] == pytest.approx(judge)
    candidate = by_hand(SONNET_46, tokens(run.cases, "completion"))
    assert stored["candidate"]["cost"] == pytest.approx(candidate)
    result.stdout.fnmatch_lines([f"cost: candidate {money(candidate)}, judge {money(judge)} *"])


def test_a_comparison_says_the_cost_change_next_to_the_quality_change(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    production = "claude-haiku-4-5-20251001"
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    both = scenario(cases)
    both["models"][production] = dict(both["models"][CANDIDATE])
    provider_env(make_server(both))

    result = pytester.runpytest(
        *model_args(
            f"--llm-compare-model={production}", "--llm-report=out.json", "--llm-markdown=s.md"
        )
    )

    result.assert_outcomes(passed=5)
    run = load_results(pytester.path / "out.json")
    new = by_hand(SONNET_46, tokens(run.cases, "completion")) / 5
    old = by_hand(HAIKU_45, tokens(run.compare_cases, "completion")) / 5
    change = new / old - 1
    assert change == pytest.approx(2.0)  # the same tokens at three times the price
    text = f"cost per case {money(old)} -> {money(new)} (+200%) on 5 cases"
    result.stdout.fnmatch_lines(["flips: 0 pass->fail, 0 fail->pass*", text])
    stored = run.metadata["cost"]
    assert stored["change"]["relative"] == pytest.approx(change)
    assert stored["compare"]["candidate"]["cost"] == pytest.approx(old * 5)
    result.stdout.fnmatch_lines(
        [f"cost: candidate {money(new * 5)}, judge *, anthropic:{production} {money(old * 5)} *"]
    )
    assert "| Cost per case | " in (pytester.path / "s.md").read_text()


def test_run_cost_of_a_stored_run_and_old_votes_without_tokens() -> None:
    from pytest_llmregress.scoring.score import Score, Vote

    table = PriceTable(bundled_prices())
    old_votes = Score("judge", 1.0, True, "ok", votes=(Vote("openai:gpt-5.5", 1.0, True),))
    result = CaseResult(
        case_id="a",
        nodeid="n::a",
        path="p",
        line=1,
        outcome="passed",
        threshold=0.8,
        scores=(old_votes,),
        completion=completion("claude-opus-4-7", "anthropic", 2000, 400, cached=True),
        judge_completion=completion("gpt-5.5", "openai", 1000, 50),
    )
    calls = case_calls(result, table)
    assert [(c.role, c.cost) for c in calls] == [
        ("candidate", pytest.approx((2000 * 5 + 400 * 25) / 1e6)),
        ("judge", pytest.approx((1000 * 5 + 50 * 30) / 1e6)),
    ]
    total = run_cost(RunResult({}, [result]).cases, table)
    assert total.cached_cost == pytest.approx(calls[0].cost)
    assert json.loads(json.dumps(total.to_dict()))["cases"] == 1


def test_a_role_with_some_calls_unpriced_is_a_floor_and_none_priced_is_unknown() -> None:
    from pytest_llmregress.report.terminal import cost_texts
    from pytest_llmregress.verdict.cost import RoleCost, RunCost

    partly = RoleCost(calls=3, cost=0.5, unpriced={"openai:x": 1})
    nothing = RoleCost(calls=2, unpriced={"openai:x": 2})
    line = cost_texts(RunCost(candidate=partly, judge=nothing, cases=3))[0]
    assert line.startswith("cost: candidate at least $0.50, judge unknown")
