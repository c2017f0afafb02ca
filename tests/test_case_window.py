"""The runner process starts golden cases a window at a time (``CaseBoard``): at most twice
the budgets' slots are started tasks, the rest wait as the messages they came in, so that 5,000
submitted cases do not hold 5,000 tasks. Against the real runner process and the local
server: every case beyond the window still runs, in the order asked, and a case queued behind
the window whose client leaves never starts, unless asked for again (then once).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from pytest_llmregress.cases.golden import GoldenCase, Message, ScorerSpec
from pytest_llmregress.engine.runner import SystemPrompt
from pytest_llmregress.engine.runner_process import RunnerClient, RunnerProcess
from pytest_llmregress.providers.registry import local_server_endpoints, parse_model
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
StartRunner = Callable[..., tuple[RunnerProcess, RunnerClient]]

COUNT = 12  # cases; budgets of 1 + 1 make a window of 4
SLOW = "take your time"


def question(i: int) -> str:
    return f"Question {i}: what is {i} times 7?"


def golden(i: int, user: str | None = None) -> GoldenCase:
    return GoldenCase(
        id=f"case-{i:03d}",
        messages=(Message("user", user if user is not None else question(i)),),
        reference=f"{i} times 7 is {i * 7}.",
        scorers=(ScorerSpec("exact"),),
        path="golden/qa.jsonl",
        line=i + 1,
    )


def key(case: GoldenCase) -> str:
    return f"golden/qa.jsonl::{case.id}"


def no_systems(case: GoldenCase) -> dict[str, SystemPrompt]:
    return {}


def make_scenario(**candidate: Any) -> dict[str, Any]:
    return {
        "models": {
            CANDIDATE: {
                "answers": [
                    {"match": question(i), "reply": f"{i} times 7 is {i * 7}."}
                    for i in range(COUNT)
                ],
                **candidate,
            },
            JUDGE: {"judge": True},
        }
    }


def start(start_runner: StartRunner, server: LocalProviderServer) -> tuple[Any, RunnerClient]:
    return start_runner(
        endpoints=local_server_endpoints(server.url),
        candidate=parse_model(CANDIDATE),
        retries=0,
        preflight=False,
        timeout=30,
        concurrency=1,
        judge_concurrency=1,
    )


def asked(server: LocalProviderServer) -> list[str | None]:
    return [r.user_text for r in server.requests if r.requested_model == CANDIDATE]


def test_cases_beyond_the_window_all_run_in_the_order_asked(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(make_scenario(latency_ms=20))
    _, client = start(start_runner, server)
    cases = [golden(i) for i in range(COUNT)]

    client.submit([(key(case), case) for case in cases], no_systems)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:  # a window that stopped starting cases would leave the last ones waiting
        wait = pool.submit(lambda: [client.result(key(c), c, no_systems)[0] for c in cases])
        results = wait.result(timeout=20)
    finally:
        pool.shutdown(wait=False)  # closing the client ends a wait still going

    assert [r.outcome for r in results] == ["passed"] * COUNT
    # One slot: the server answers them one by one, in the order they were asked for.
    assert asked(server) == [question(i) for i in range(COUNT)]


def test_a_case_queued_behind_the_window_of_a_client_that_left_never_starts(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    # The first case holds the only slot for 20 s, so the others wait, most behind the window.
    server = make_server(
        make_scenario(errors=[{"status": 500, "match": SLOW, "latency_ms": 20_000}])
    )
    process, leaving = start(start_runner, server)
    cases = [golden(0, user=f"{question(0)} {SLOW}")] + [golden(i) for i in range(1, COUNT)]
    leaving.submit([(key(case), case) for case in cases], no_systems)
    assert server.wait_for_in_flight(1)

    leaving.close()

    last = cases[-1]  # queued behind the window when its client left; now asked for again
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with contextlib.closing(RunnerClient(process.address)) as staying:
            # Within 10 s, so not after the slow call: cancelling it freed the slot.
            result, _ = pool.submit(staying.result, key(last), last, no_systems).result(10)
    finally:
        pool.shutdown(wait=False)  # closing the client ends a wait still going
    assert result.outcome == "passed"
    # Nothing else the leaving client queued was asked for, and the case asked for again was
    # asked once (the slow call, cancelled, is not answered yet: the server has not logged it).
    assert Counter(asked(server)) == Counter([question(COUNT - 1)])
