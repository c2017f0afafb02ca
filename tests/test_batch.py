"""``--llm-batch``: golden cases through the providers' Batch APIs, end to end.

Every test runs the plugin against the local provider server, whose Message Batches and
OpenAI Batch (with its files) are driven by the official SDKs over real HTTP. Batches end on
the server's events (a retrieval, ``release_batches``, ``expire_batches``), never on the clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases.golden import GoldenCase, Message
from pytest_llmregress.engine import batch as batch_module
from pytest_llmregress.engine.runner import Runner
from pytest_llmregress.models.prices import bundled_prices
from pytest_llmregress.providers.registry import ModelRef, local_server_endpoints
from pytest_llmregress.settings import RunnerSettings
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import CaseResult, load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import (
    MakeServer,
    PointEnv,
    drifted,
    model_args,
    qa_cases,
    scenario,
    write_cases,
)

BATCH = ("--llm-batch", "--llm-batch-poll=0.01")


def online_completions(server: LocalProviderServer, model: str) -> int:
    """Completion requests the server answered online (the preflight asks the models
    endpoint, not for a completion)."""
    return sum(1 for r in server.requests if r.requested_model == model)


def created(server: LocalProviderServer) -> dict[str, int]:
    return dict(server.stats()["batches"]["created"])


def test_candidate_calls_then_judge_calls_go_as_one_batch_each(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases, scripted = drifted(8, bad=2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(
        *model_args(*BATCH, "--llm-min-pass-rate=0.7", "--llm-report=r.json")
    )

    result.assert_outcomes(passed=6, failed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["llmregress: model * through the Batch APIs (--llm-batch, journaled)"]
    )
    # One Message Batch of the 8 candidate calls, then one OpenAI batch of the 8 judge calls;
    # nothing online.
    assert created(server) == {"anthropic": 1, "openai": 1}
    batches = server.batches()
    assert [(b.provider, len(b.custom_ids)) for b in batches] == [("anthropic", 8), ("openai", 8)]
    assert online_completions(server, CANDIDATE) == 0
    assert online_completions(server, JUDGE) == 0
    run = load_results(pytester.path / "r.json")
    assert {c.completion.batch for c in run.cases if c.completion} == {True}
    assert {c.judge_completion.batch for c in run.cases if c.judge_completion} == {True}
    # Cost at the batch prices (half the standard ones).
    table = bundled_prices()
    expected = sum(
        table.lookup("anthropic", CANDIDATE).cost(  # type: ignore[union-attr]
            c.completion.input_tokens, c.completion.output_tokens, batch=True
        )
        for c in run.cases
        if c.completion
    )
    document = json.loads((pytester.path / "r.json").read_text())
    candidate_cost = document["metadata"]["cost"]["candidate"]["cost"]
    assert candidate_cost == pytest.approx(expected)
    standard = sum(
        table.lookup("anthropic", CANDIDATE).cost(  # type: ignore[union-attr]
            c.completion.input_tokens, c.completion.output_tokens
        )
        for c in run.cases
        if c.completion
    )
    assert candidate_cost == pytest.approx(standard / 2)
    assert document["metadata"]["cost"]["candidate"]["batch_calls"] == 8
    result.stdout.fnmatch_lines(["  16 calls through the Batch APIs, at the batch prices"])


def test_failed_batch_requests_are_errors_of_their_cases_not_failures(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(
        cases,
        errors=[
            {"match": cases[1]["user"], "status": 500, "applies_to": "batch"},
            {"match": cases[4]["user"], "status": 400, "applies_to": "batch"},
        ],
    )
    server = make_server(scripted)
    provider_env(server)

    result = pytester.runpytest(*model_args(*BATCH, "--llm-max-error-rate=0.5"))

    result.assert_outcomes(passed=4, errors=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["2 errored cases, by cause:", "*HTTP 500 server: batch msgbatch_*"]
    )
    assert online_completions(server, CANDIDATE) == 0


def test_failed_and_expired_requests_go_online_by_option(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(
        cases, errors=[{"match": cases[1]["user"], "status": 500, "applies_to": "batch"}]
    )
    scripted["batches"] = {"expire_after": 3}  # every batch: 3 requests answered, the rest expire
    server = make_server(scripted)
    provider_env(server)

    errored = pytester.runpytest(*model_args(*BATCH, "--llm-report=first.json"))
    outcomes = {c.case_id: c for c in load_results(pytester.path / "first.json").cases}
    expired = [c for c in outcomes.values() if c.error and "expired" in c.error]
    assert len(expired) == 3
    assert outcomes[cases[1]["id"]].outcome == "error"
    assert errored.ret == pytest.ExitCode.TESTS_FAILED

    server.reset_stats()
    online = pytester.runpytest(*model_args(*BATCH, "--llm-batch-failed=online"))
    online.assert_outcomes(passed=6)
    # The candidate's expired and failed requests went online: 3 expired + the failed one,
    # unless it was among the expired ones.
    failed_or_expired = online_completions(server, CANDIDATE)
    assert 3 <= failed_or_expired <= 4


def test_the_other_way_round_an_openai_candidate_and_a_claude_judge(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(
        {
            "models": {
                JUDGE: {"answers": [{"match": c["user"], "reply": c["reference"]} for c in cases]},
                CANDIDATE: {"judge": True},
            }
        }
    )
    provider_env(server)

    result = pytester.runpytest(f"--llm-model={JUDGE}", f"--llm-judge-model={CANDIDATE}", *BATCH)

    result.assert_outcomes(passed=4)
    assert [(b.provider, b.status) for b in server.batches()] == [
        ("openai", "completed"),
        ("anthropic", "ended"),
    ]
    assert server.stats()["batches"]["files_uploaded"] == 1
    assert online_completions(server, JUDGE) == online_completions(server, CANDIDATE) == 0


def test_a_batch_the_provider_refuses_makes_every_case_of_it_an_error(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    # The judge is retired after the preflight: its batch's input file names a model the
    # server no longer serves, and OpenAI fails the whole batch at validation.
    server.hold_batches()

    def retire_judge_then_release() -> None:
        assert server.wait_until(lambda s: s["batches"]["retrievals"] >= 1, timeout=60)
        server.update_model(JUDGE, retired=True)
        server.release_batches()

    import threading

    helper = threading.Thread(target=retire_judge_then_release, daemon=True)
    helper.start()
    result = pytester.runpytest(*model_args(*BATCH, "--llm-max-error-rate=1"))
    helper.join(60)

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*batch_* failed validation*"])


def test_a_budget_bounds_batched_calls_at_the_batch_price(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    table = bundled_prices()
    candidate = table.lookup("anthropic", CANDIDATE)
    assert candidate is not None
    # Room for the candidate's four calls at the batch price (each reserves its input bytes
    # and 1024 output tokens), not at the standard price; the judge's are refused.
    per_call_batch = (60 * candidate.batch[0] + 1024 * candidate.batch[1]) / 1e6
    budget = 4.5 * per_call_batch
    assert budget < 4 * (60 * candidate.input + 1024 * candidate.output) / 1e6

    result = pytester.runpytest(*model_args(*BATCH, f"--llm-max-cost={budget:.6f}"))

    # All four candidate calls went out (at the standard price the fourth would not have).
    assert (server.batches()[0].provider, len(server.batches()[0].custom_ids)) == ("anthropic", 4)
    result.stdout.fnmatch_lines(["* not run (budget)*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_once_journaled(
    pytester: pytest.Pytester, server: LocalProviderServer, args: list[str]
) -> None:
    """Run pytest with ``args`` in a child and kill it and its runner process (SIGKILL) once its
    first batch was polled: the batch exists and is journaled (the journal line comes before
    any poll). The runner is killed first, so that it cannot poll on after the kill (a dying
    runner could otherwise still read a released batch and send the judge's). Tests that use
    it start runners with Popen (``popen_runner``), so the runner is the child's child."""
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert server.wait_until(lambda s: s["batches"]["retrievals"] >= 1, timeout=60)
        runners = children_of(child.pid)
        assert runners, "the runner process is the pytest child's child"
        for pid in runners:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


@pytest.mark.popen_runner
def test_a_killed_run_resumed_polls_the_same_batch_instead_of_paying_again(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    server.hold_batches()

    kill_once_journaled(pytester, server, model_args(*BATCH, "--llm-report=run.json"))
    journal = pytester.path / "run.json.partial" / "batches.jsonl"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(line["provider"], line["kind"], len(line["requests"])) for line in lines] == [
        ("anthropic", "candidate", 5)
    ]
    assert lines[0]["batch"] == server.batches()[0].id

    server.release_batches()
    resumed = pytester.runpytest(*model_args(*BATCH, "--llm-resume=run.json"))

    resumed.assert_outcomes(passed=5)
    # The resumed run created no second candidate batch: it read the first one's results.
    assert created(server) == {"anthropic": 1, "openai": 1}
    assert online_completions(server, CANDIDATE) == 0
    assert not journal.exists()  # a complete run drops its journals


@pytest.mark.popen_runner
def test_llmregress_batches_lists_and_cancels_a_killed_runs_batches(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_llmregress.cli.batches import main as batches_main

    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    server.hold_batches()
    kill_once_journaled(pytester, server, model_args(*BATCH, "--llm-report=run.json"))
    results = str(pytester.path / "run.json")

    assert batches_main([results]) == 0
    listed = capsys.readouterr().out
    assert f"{server.batches()[0].id}  anthropic:{CANDIDATE}  candidate  4 requests" in listed
    assert "in_progress, 0/4 processed" in listed
    assert server.stats()["batches"]["cancels"] == 0

    assert batches_main([results, "--cancel"]) == 0
    assert "cancel requested" in capsys.readouterr().out
    assert server.stats()["batches"]["cancels"] == 1
    server.release_batches()

    # The resumed run reads the canceled batch: its unprocessed requests are errors.
    resumed = pytester.runpytest(*model_args(*BATCH, "--llm-resume=run.json"))
    resumed.assert_outcomes(errors=4)
    resumed.stdout.fnmatch_lines(["*its batch was canceled before the provider processed it*"])
    assert created(server) == {"anthropic": 1, "openai": 0}

    assert batches_main([str(pytester.path / "none.json")]) == 2
    assert "no batches journaled" in capsys.readouterr().err


def test_a_new_run_does_not_poll_an_earlier_runs_batches(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    journal = pytester.path / "run.json.partial" / "batches.jsonl"
    journal.parent.mkdir()
    journal.write_text(json.dumps({"batch": "msgbatch_old", "requests": ["x"]}) + "\n")

    result = pytester.runpytest(*model_args(*BATCH, "--llm-report=run.json"))

    result.assert_outcomes(passed=3)
    assert created(server) == {"anthropic": 1, "openai": 1}


def test_cached_replies_make_no_batch_and_replay_reproduces_a_batch_run(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases, scripted = drifted(4, bad=1)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scripted)
    provider_env(server)

    first = pytester.runpytest(*model_args(*BATCH, "--llm-cache=record", "--llm-report=a.json"))
    first.assert_outcomes(passed=3, failed=1)
    assert created(server) == {"anthropic": 1, "openai": 1}

    again = pytester.runpytest(*model_args(*BATCH, "--llm-cache=record"))
    again.assert_outcomes(passed=3, failed=1)
    assert created(server) == {"anthropic": 1, "openai": 1}  # every call from the cache

    replay = pytester.runpytest(*model_args("--llm-cache=replay", "--llm-report=b.json"))
    replay.assert_outcomes(passed=3, failed=1)
    before = {c.case_id: c.output for c in load_results(pytester.path / "a.json").cases}
    after = {c.case_id: c.output for c in load_results(pytester.path / "b.json").cases}
    assert before == after


def test_repeats_and_a_compare_model_share_the_batches(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)

    result = pytester.runpytest(
        *model_args(*BATCH, "--llm-repeat=2", f"--llm-compare-model={CANDIDATE}")
    )

    result.assert_outcomes(passed=3)
    # Candidate and compare model are the same snapshot here: 3 cases x 2 repeats x 2 models
    # = 12 requests, 6 of them identical pairs that share one line; one batch per kind.
    assert created(server) == {"anthropic": 1, "openai": 1}
    first = server.batches()[0]
    assert len(first.custom_ids) == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-n", "2"], "*--llm-batch sends every selected case's calls in the runner's batches*"),
        (["--llm-case-deadline=5"], "*--llm-case-deadline bounds a case in seconds*"),
        (["--llm-batch-failed=later"], "*expected one of error, online, got 'later'*"),
    ],
)
def test_what_batch_mode_refuses(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    extra: list[str],
    message: str,
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    result = pytester.runpytest(*model_args(*BATCH, *extra))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert created(server) == {"anthropic": 0, "openai": 0}


def test_progress_line_names_the_batches(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    from pytest_llmregress.session.progress import progress_text

    status: dict[str, Any] = {
        "in_flight": {"candidate": 0, "judge": 0},
        "batches": [
            {"id": "msgbatch_1", "done": 40, "total": 50, "status": "in_progress"},
            {"id": "batch_2", "done": 10, "total": 10, "status": "read"},
        ],
    }
    text = progress_text(
        done=10, total=50, passed=9, failed=1, errors=0, elapsed_s=60, status=status
    )
    assert "batches: 1 of 2 read, 50/60 requests processed" in text


# -- the runner alone: the queue's batches -----------------------------------------------------

PRIMARY, FALLBACK = "claude-sonnet-4-6", "claude-opus-4-7"


def batch_runner(server: LocalProviderServer, **settings: Any) -> Runner:
    return Runner(
        candidate=ModelRef("anthropic", PRIMARY),
        judge=ModelRef("openai", JUDGE),
        endpoints=local_server_endpoints(server.url),
        settings=RunnerSettings.defaults(timeout=10.0, batch=True, batch_poll=0.01, **settings),
        fallbacks=(ModelRef("anthropic", FALLBACK),),
        base_delay=0.001,
    )


def golden(i: int, reference: str) -> GoldenCase:
    return GoldenCase(f"c-{i}", (Message("user", f"question {i}"),), reference=reference)


def run_all(runner: Runner, cases: list[GoldenCase]) -> list[CaseResult]:
    async def run() -> list[CaseResult]:
        try:
            runs = await asyncio.gather(*(runner.run_case(f"n::{c.id}", c) for c in cases))
            return [result for result, _ in runs]
        finally:
            await runner.aclose()

    return asyncio.run(run())


def test_a_fallback_answers_a_failed_batch_request_through_a_next_batch(
    make_server: MakeServer,
) -> None:
    server = make_server(
        {
            "models": {
                PRIMARY: {
                    "default_reply": "primary says hi",
                    "errors": [{"status": 404, "match": "question 1", "applies_to": "batch"}],
                },
                FALLBACK: {"default_reply": "primary says hi"},
                JUDGE: {"judge": True},
            }
        }
    )
    results = run_all(batch_runner(server), [golden(i, "primary says hi") for i in range(3)])

    assert [r.outcome for r in results] == ["passed"] * 3
    assert results[1].completion is not None
    assert results[1].completion.fallback_model == FALLBACK
    # The primary's batch of 3; then, at once, the fallback's batch of 1 and the judge's
    # batch of the other 2 answers; then the judge's batch of the fallback's answer.
    batches = [(b.provider, len(b.custom_ids)) for b in server.batches()]
    assert batches[0] == ("anthropic", 3)
    assert sorted(batches[1:3]) == [("anthropic", 1), ("openai", 2)]
    assert batches[3:] == [("openai", 1)]
    assert server.requests == []  # nothing online


def test_large_queues_are_sent_in_several_batches(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "MAX_BATCH_REQUESTS", 3)
    server = make_server({"models": {PRIMARY: {"default_reply": "ok"}, JUDGE: {"judge": True}}})
    results = run_all(batch_runner(server), [golden(i, "ok") for i in range(7)])

    assert [r.outcome for r in results] == ["passed"] * 7
    for provider in ("anthropic", "openai"):  # the candidate's calls, then the judge's
        sizes = sorted(len(b.custom_ids) for b in server.batches() if b.provider == provider)
        assert sizes == [1, 3, 3]
