"""The A/A check of issue 15: two runs of the same sampling model, each golden case repeated
K = 5 times, must not be called a regression at the default alpha in at least 95 of 100
simulated runs; and a real drop must be.

The simulation draws each repeat's outcome with the local server's own draw function
(:func:`answers_normally`), and the HTTP runs check that the server, driven by both SDKs with
the K repeats of a case sent at once, answers exactly those draws: the simulation is the
server's behaviour, not a copy of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import openai

from pytest_llmregress.testing.scenario import SamplingConfig, load_scenario
from pytest_llmregress.testing.server import LocalProviderServer, answers_normally
from pytest_llmregress.verdict.compare import DEFAULT_ALPHA
from pytest_llmregress.verdict.repeats import CaseRepeats, compare_repeated

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
CASES = 40
K = 5
MISS = "Sorry, I lost track of the question."


def case_text(index: int) -> str:
    return f"[case {index:02d}] What does the policy say about item {index}?"


def case_answer(index: int) -> str:
    return f"The policy covers item {index}."


def model_config(*, drop: float = 0.0) -> dict[str, Any]:
    """A model whose 40 cases pass with rates spread evenly over 0.3..1.0 (``drop`` lower)."""
    rates = [round(0.3 + 0.7 * i / (CASES - 1) - drop, 3) for i in range(CASES)]
    return {
        "answers": [{"match": f"[case {i:02d}]", "reply": case_answer(i)} for i in range(CASES)],
        "sampling": {
            "share": 1.0,
            "pass_rate": 1.0,
            "reply": MISS,
            "pass_rates": [
                {"match": f"[case {i:02d}]", "pass_rate": max(0.0, rate)}
                for i, rate in enumerate(rates)
            ],
        },
    }


def sampling_of(config: dict[str, Any]) -> SamplingConfig:
    sampling = load_scenario({"models": {"m": config}}).models["m"].sampling
    assert sampling is not None
    return sampling


def predicted_run(
    sampling: SamplingConfig, snapshot: str, seed: int, first_n: int
) -> list[CaseRepeats]:
    """A run as the server answers it: each case's requests ``first_n .. first_n + K - 1``
    (the second run against one server gets the next K draws of every case)."""
    return [
        CaseRepeats.of(
            f"case_{i:02d}",
            (
                answers_normally(sampling, snapshot, case_text(i), n, scenario_seed=seed)
                for n in range(first_n, first_n + K)
            ),
        )
        for i in range(CASES)
    ]


def test_an_aa_run_is_no_regression_in_at_least_95_of_100_simulated_runs() -> None:
    same = sampling_of(model_config())
    worse = sampling_of(model_config(drop=0.30))
    false_alarms = detected = 0
    for seed in range(100):
        baseline = predicted_run(same, "model", seed, 0)
        rerun = predicted_run(same, "model", seed, K)
        assert baseline != rerun  # the draws differ between the runs: the model samples
        aa = compare_repeated(baseline, rerun, alpha=DEFAULT_ALPHA)
        false_alarms += aa.verdict == "regression"
        dropped = compare_repeated(baseline, predicted_run(worse, "model", seed, K))
        detected += dropped.verdict == "regression"
    assert false_alarms <= 5, f"{false_alarms} of 100 A/A runs called a regression"
    # not trivially passing: the same comparison finds a real drop of 30 points
    assert detected >= 80, f"a 30-point drop was found in only {detected} of 100 runs"


def test_the_server_answers_the_simulated_draws_over_http(make_server: MakeServer) -> None:
    """A few real A/A runs: both SDKs, the K repeats of every case sent at once."""
    for seed in (0, 1):
        server = make_server(
            {"seed": seed, "models": {"claude-s": model_config(), "gpt-s": model_config()}}
        )
        sampling = sampling_of(model_config())
        runs = asyncio.run(two_runs_each(server))
        for model, (first, second) in runs.items():
            assert first == predicted_run(sampling, model, seed, 0), (seed, model)
            assert second == predicted_run(sampling, model, seed, K), (seed, model)
            assert first != second
            assert compare_repeated(first, second).verdict != "regression", (seed, model)
        assert server.stats()["by_status"] == {200: 2 * 2 * CASES * K}


async def two_runs_each(
    server: LocalProviderServer,
) -> dict[str, tuple[list[CaseRepeats], list[CaseRepeats]]]:
    """Two runs one after the other on each model, ``claude-s`` through the Anthropic SDK and
    ``gpt-s`` through the OpenAI SDK at the same time; each run sends the K repeats of a case
    at once, ten cases at a time, and reads each outcome from the reply."""
    claude = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)
    gpt = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    gate = asyncio.Semaphore(10)

    async def via_claude(text: str) -> str:
        message = await claude.messages.create(
            model="claude-s", max_tokens=64, messages=[{"role": "user", "content": text}]
        )
        block = message.content[0]
        assert isinstance(block, anthropic.types.TextBlock)
        return block.text

    async def via_gpt(text: str) -> str:
        completion = await gpt.chat.completions.create(
            model="gpt-s", messages=[{"role": "user", "content": text}]
        )
        return completion.choices[0].message.content or ""

    async def case(ask: Callable[[str], Awaitable[str]], index: int) -> CaseRepeats:
        async with gate:
            replies = await asyncio.gather(*(ask(case_text(index)) for _ in range(K)))
        assert set(replies) <= {case_answer(index), MISS}
        return CaseRepeats.of(f"case_{index:02d}", (r == case_answer(index) for r in replies))

    async def run(ask: Callable[[str], Awaitable[str]]) -> list[CaseRepeats]:
        return list(await asyncio.gather(*(case(ask, i) for i in range(CASES))))

    async def two(ask: Callable[[str], Awaitable[str]]) -> tuple[list[CaseRepeats], ...]:
        return (await run(ask), await run(ask))

    try:
        first_claude, first_gpt = await asyncio.gather(two(via_claude), two(via_gpt))
    finally:
        await claude.close()
        await gpt.close()
    return {
        "claude-s": (first_claude[0], first_claude[1]),
        "gpt-s": (first_gpt[0], first_gpt[1]),
    }
