"""The runner process (``runner_process.py``) for real: a child interpreter started by
``RunnerProcess``, reached by ``RunnerClient``s over its Unix socket, calling the local provider
server over HTTP.

Covered: cases and single calls crossing the process boundary (results, ``on_result``, errors
with their details), per-model system prompts, the preflight, the stdin lifeline, a runner that
dies or cannot start, API keys kept off the command line, and several clients sharing one
runner (one concurrency budget; a client that disconnects loses only its own cases).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases.golden import GoldenCase, Message, ScorerSpec
from pytest_llmregress.engine.runner import SystemPrompt
from pytest_llmregress.engine.runner_process import (
    RunnerClient,
    RunnerError,
    RunnerProcess,
    runner_config,
)
from pytest_llmregress.providers.base import ChatMessage, Completion, ProviderError, Request
from pytest_llmregress.providers.registry import Endpoints, local_server_endpoints, parse_model
from pytest_llmregress.scoring.score import Score, ScorerError
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import CaseResult
from tests.conftest import CANDIDATE, JUDGE, runner_in_a_child

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
StartRunner = Callable[..., tuple[RunnerProcess, RunnerClient]]

CANDIDATE_REF = parse_model(CANDIDATE)
JUDGE_REF = parse_model(JUDGE)
SLOW = "take your time"  # a prompt the candidate answers (with a 500) only after a long wait


def question(i: int) -> str:
    return f"Question {i}: what is {i} times 7?"


def answer(i: int) -> str:
    return f"{i} times 7 is {i * 7}."


def golden(
    i: int, *, scorers: tuple[ScorerSpec, ...] = (ScorerSpec("judge"),), user: str | None = None
) -> GoldenCase:
    """Case ``i``: its question, the reference the scenario's candidate answers it with."""
    return GoldenCase(
        id=f"case-{i:03d}",
        messages=(Message("user", user if user is not None else question(i)),),
        system="Answer briefly.",
        reference=answer(i),
        threshold=0.9,
        scorers=scorers,
        path="golden/qa.jsonl",
        line=i + 1,
    )


def key(case: GoldenCase) -> str:
    return f"golden/qa.jsonl::{case.id}"


def scenario(answered: range, **candidate: Any) -> dict[str, Any]:
    """The candidate answers the questions in ``answered`` right, every other one wrongly."""
    return {
        "models": {
            CANDIDATE: {
                "answers": [{"match": question(i), "reply": answer(i)} for i in answered],
                "default_reply": "I would rather talk about the weather.",
                **candidate,
            },
            JUDGE: {"judge": True},
        }
    }


def candidate_calls(server: LocalProviderServer) -> Counter[str | None]:
    return Counter(r.user_text for r in server.requests if r.requested_model == CANDIDATE)


def no_systems(case: GoldenCase) -> dict[str, SystemPrompt]:
    return {}


def runner_for(
    start_runner: StartRunner, server: LocalProviderServer, **config: Any
) -> tuple[RunnerProcess, RunnerClient]:
    """A runner for the candidate at ``server``: no retries, no preflight, unless ``config``
    says otherwise."""
    defaults = {
        "endpoints": local_server_endpoints(server.url),
        "candidate": CANDIDATE_REF,
        "timeout": 10,
        "retries": 0,
        "preflight": False,
    }
    return start_runner(**(defaults | config))


# -- cases and calls across the process boundary -------------------------------------------------


def test_cases_run_in_the_runner_process_and_come_back_as_case_results(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(3)))  # cases 0-2 answered right, 3-4 wrongly
    seen: list[CaseResult] = []
    seen_lock = threading.Lock()

    def on_result(result: CaseResult, compare: CaseResult | None) -> None:
        assert compare is None  # no compare model
        with seen_lock:
            seen.append(result)

    _, client = runner_for(
        start_runner,
        server,
        judge=JUDGE_REF,
        on_result=on_result,
    )
    cases = [golden(i) for i in range(5)]
    client.submit([(key(case), case) for case in cases], no_systems)

    results: dict[str, CaseResult] = {}
    for case in cases:
        result, baseline = client.result(key(case), case, no_systems)
        with seen_lock:
            assert result in seen  # on_result saw it before (or as) result() returned it
        assert baseline is None
        results[case.id] = result

    assert {case_id: r.outcome for case_id, r in results.items()} == {
        "case-000": "passed",
        "case-001": "passed",
        "case-002": "passed",
        "case-003": "failed",
        "case-004": "failed",
    }
    for i, case in enumerate(cases):
        result = results[case.id]
        assert isinstance(result, CaseResult)
        assert (result.nodeid, result.path, result.line) == (key(case), "golden/qa.jsonl", i + 1)
        assert result.reference == answer(i)
        assert result.completion is not None
        assert result.completion.provider == "anthropic"
        assert result.completion.resolved_model == CANDIDATE
        assert result.judge_completion is not None
        assert result.judge_completion.resolved_model == JUDGE
        [score] = result.scores
        assert score.scorer == "judge"
        assert score.judge_model == str(JUDGE_REF)
        assert score.passed is (i < 3)
        expected_output = answer(i) if i < 3 else "I would rather talk about the weather."
        assert result.output == expected_output

    # Exactly one candidate call and one judge call per case, though result() submits again.
    assert candidate_calls(server) == Counter(question(i) for i in range(5))
    judge_prompts = [r.user_text or "" for r in server.requests if r.requested_model == JUDGE]
    assert len(judge_prompts) == 5
    for i in range(5):
        assert sum(f">>>\n{question(i)}\n<<<END TASK " in p for p in judge_prompts) == 1
    assert server.stats()["requests"] == 10

    # on_result: once per case, with the very result result() returned.
    assert len(seen) == 5
    assert sorted(seen, key=lambda r: r.case_id) == [results[case.id] for case in cases]


def test_systems_set_each_models_prompt_or_make_the_case_an_error(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(2)))
    _, client = runner_for(start_runner, server)
    exact = (ScorerSpec("exact"),)
    custom, unresolved, literal = golden(0, scorers=exact), golden(1, scorers=exact), golden(2)
    custom_systems: dict[str, SystemPrompt] = {str(CANDIDATE_REF): ("Custom system", None)}

    result, _ = client.result(key(custom), custom, lambda _: custom_systems)

    assert result.outcome == "passed", result.error
    [sent] = server.requests
    assert (sent.system, sent.user_text) == ("Custom system", question(0))

    # A prompt that cannot be resolved for the model: an error, and no call at all.
    problem: dict[str, SystemPrompt] = {str(CANDIDATE_REF): (None, "no prompt for this model")}
    result, _ = client.result(key(unresolved), unresolved, lambda _: problem)

    assert result.outcome == "error"
    assert result.error_kind == "prompt"
    assert result.error is not None
    assert "no prompt for this model" in result.error
    assert result.completion is None
    assert len(server.requests) == 1

    # Systems for other models do not apply: the case's own system prompt is sent.
    other: dict[str, SystemPrompt] = {"openai:gpt-4.1": ("Not for this model", None)}
    client.result(key(literal), literal, lambda _: other)
    assert server.requests[-1].system == "Answer briefly."


def test_a_case_the_runner_fails_on_is_a_runner_error_for_that_case_alone(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(2)))
    seen: list[CaseResult] = []
    _, client = runner_for(
        start_runner,
        server,
        on_result=lambda result, _: seen.append(result),
    )
    broken = golden(0, scorers=(ScorerSpec("no-such-scorer"),))  # a bug, not a model failure
    fine = golden(1, scorers=(ScorerSpec("exact"),))
    client.submit([(key(broken), broken), (key(fine), fine)], no_systems)

    with pytest.raises(
        RunnerError, match="the runner failed on this case: ValueError: unknown scorer"
    ):
        client.result(key(broken), broken, no_systems)
    result, _ = client.result(key(fine), fine, no_systems)

    assert result.outcome == "passed"
    assert seen == [result]  # on_result sees results only, not the runner's failures


def test_single_calls_and_their_errors_cross_the_process_boundary(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(
        {
            "models": {
                CANDIDATE: {"answers": [{"match": "capital", "reply": "Paris."}]},
                "claude-gone": {"retired": True},
                JUDGE: {"judge": True},
            }
        }
    )
    _, client = runner_for(
        start_runner,
        server,
        judge=JUDGE_REF,
    )
    request = Request(
        model=CANDIDATE,
        messages=(ChatMessage("user", "What is the capital of France?"),),
        system="Be brief.",
        params={"max_tokens": 20},
    )

    completion = client.complete_sync(request)

    assert isinstance(completion, Completion)
    assert completion.text == "Paris."
    assert (completion.provider, completion.requested_model) == ("anthropic", CANDIDATE)
    assert completion.resolved_model == CANDIDATE
    assert completion.request_id is not None
    assert completion.request_id.startswith("req_")
    [sent] = server.requests
    assert (sent.system, sent.params["max_tokens"]) == ("Be brief.", 20)

    gone = Request(model="claude-gone", messages=(ChatMessage("user", "hello"),))
    with pytest.raises(ProviderError) as info:
        client.complete_sync(gone)
    error = info.value
    assert (error.kind, error.status) == ("not_found", 404)
    assert (error.provider, error.model) == ("anthropic", "claude-gone")
    assert "has been retired" in error.message
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert error.attempts == 1

    score = client.judge_sync(
        task="Capital of France?", reference="Paris.", output="Paris.", threshold=0.8
    )
    assert isinstance(score, Score)
    assert (score.scorer, score.value, score.passed) == ("judge", 1.0, True)
    assert (score.threshold, score.judge_model) == (0.8, str(JUDGE_REF))
    assert server.requests[-1].requested_model == JUDGE

    server.update_model(JUDGE, malformed_share=1.0)  # every verdict is now unparseable
    with pytest.raises(ScorerError, match="judge reply is not JSON"):
        client.judge_sync(task="Capital?", reference="Paris.", output="Lyon.", threshold=0.8)
    assert server.requests[-1].requested_model == JUDGE

    # The connection survives errors: the next call still works.
    assert client.complete_sync(request).text == "Paris."


# -- the preflight -------------------------------------------------------------------------------


def test_preflight_names_the_models_that_are_not_available(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(
        {
            "models": {
                CANDIDATE: {},
                "claude-retired-1": {"retired": True},
                JUDGE: {"judge": True},
            }
        }
    )
    endpoints = local_server_endpoints(server.url)
    broken, _ = start_runner(
        endpoints=endpoints,
        candidate=parse_model("claude-retired-1"),
        compare=parse_model("claude-never-existed"),
        judge=JUDGE_REF,
        timeout=10,
        retries=0,
    )
    healthy, _ = start_runner(
        endpoints=endpoints, candidate=CANDIDATE_REF, judge=JUDGE_REF, timeout=10, retries=0
    )

    problems = broken.preflight_problems()

    assert set(problems) == {"anthropic:claude-retired-1", "anthropic:claude-never-existed"}
    retired = problems["anthropic:claude-retired-1"]
    assert server.url in retired
    assert "404" in retired
    assert "model: claude-retired-1 has been retired and is no longer available" in retired
    assert "model: claude-never-existed" in problems["anthropic:claude-never-existed"]
    assert healthy.preflight_problems() == {}
    assert healthy.preflight_problems() == {}  # asked again: the answer is kept
    assert server.requests == []  # the preflight makes no completion calls


# -- the lifeline and a runner that dies ---------------------------------------------------------


def test_stop_closes_the_lifeline_and_the_runner_exits_and_cleans_up(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(1)))
    process, client = start_runner(
        endpoints=local_server_endpoints(server.url), candidate=CANDIDATE_REF, preflight=False
    )
    assert process.preflight_problems() == {}
    request = Request(model=CANDIDATE, messages=(ChatMessage("user", question(0)),))
    assert client.complete_sync(request).text == answer(0)
    directory = Path(process.address.socket_path).parent
    assert directory.is_dir()
    assert process._process.poll() is None

    process.stop()

    assert process._process.poll() is not None
    assert not directory.exists()


def test_a_runner_that_dies_mid_session_fails_pending_and_new_work(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(2)))
    process, client = runner_for(
        start_runner,
        server,
        timeout=30,
    )
    pending = golden(0, scorers=(ScorerSpec("exact"),))
    server.pause()  # the case's call waits at the server until resume()
    try:
        client.submit([(key(pending), pending)], no_systems)
        assert server.wait_for_in_flight(1)

        process._process.kill()

        with pytest.raises(RunnerError, match="the runner process stopped during the session"):
            client.result(key(pending), pending, no_systems)
        # SIGKILL leaves the log empty; the message still says where it is.
        assert Path(process.address.log_path).read_text() == ""
        with pytest.raises(RunnerError, match=f"its log, {process.address.log_path}, is empty"):
            client.result(key(pending), pending, no_systems)
        later = golden(1, scorers=(ScorerSpec("exact"),))
        with pytest.raises(RunnerError, match="stopped during the session"):
            client.submit([(key(later), later)], no_systems)
        # Asking for the case that could not be sent raises too (the next item's path); it
        # must not wait for an answer that cannot come.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asked = pool.submit(client.result, key(later), later, no_systems)
            with pytest.raises(RunnerError, match="stopped during the session"):
                asked.result(timeout=10)
        with pytest.raises(RunnerError, match="stopped during the session"):
            client.complete_sync(
                Request(model=CANDIDATE, messages=(ChatMessage("user", question(1)),))
            )
    finally:
        server.resume()
    assert process._process.wait(timeout=10) == -signal.SIGKILL
    process.stop()
    log = Path(process.address.log_path)
    assert log.exists()  # kept: the error message names it
    shutil.rmtree(log.parent)


def test_the_error_of_a_crashed_runner_shows_the_end_of_its_log(
    make_server: MakeServer, start_runner: StartRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a crash writes tracebacks to the log
    server = make_server(scenario(range(1)))
    process, client = runner_for(
        start_runner,
        server,
        timeout=30,
    )
    assert process.preflight_problems() == {}
    pending = golden(0, scorers=(ScorerSpec("exact"),))
    server.pause()
    try:
        client.submit([(key(pending), pending)], no_systems)
        assert server.wait_for_in_flight(1)

        process._process.send_signal(signal.SIGABRT)

        with pytest.raises(RunnerError) as info:
            client.result(key(pending), pending, no_systems)
    finally:
        server.resume()
    message = str(info.value)
    assert "the runner process stopped during the session" in message
    assert f"the end of its log ({process.address.log_path})" in message
    log = Path(process.address.log_path).read_text()
    assert "Fatal Python error: Aborted" in log  # faulthandler's report of the crash
    assert log.splitlines()[-1] in message
    process.stop()
    shutil.rmtree(Path(process.address.log_path).parent)  # kept by stop(): the runner crashed


def test_the_runner_says_what_its_cache_answered_in_its_last_words(
    make_server: MakeServer, start_runner: StartRunner, tmp_path: Path
) -> None:
    server = make_server(scenario(range(1)))
    process, client = runner_for(start_runner, server, cache_dir=tmp_path, cache_mode="record")
    request = Request(model=CANDIDATE, messages=(ChatMessage("user", question(0)),))
    assert not client.complete_sync(request).cached
    assert client.complete_sync(request).cached
    client.close()
    process.stop()
    assert process.last_words["cache_use"] == {
        "candidate": {"hits": 1, "misses": 1, "writes": 1},
        "judge": {"hits": 0, "misses": 0, "writes": 0},
    }
    assert len(server.requests) == 1


def test_a_runner_that_cannot_start_reports_the_end_of_its_log(
    make_server: MakeServer,
) -> None:
    server = make_server(scenario(range(1)))
    config = runner_config(
        endpoints=local_server_endpoints(server.url), candidate=CANDIDATE_REF, judge=JUDGE_REF
    )
    config["models"]["candidate"] = "nonsense-model"  # no provider serves this id
    process = RunnerProcess(config)
    try:
        with pytest.raises(RunnerError) as info:
            process.preflight_problems()
        message = str(info.value)
        assert "the runner process exited with status 1 before it was ready" in message
        assert f"the end of its log ({process.address.log_path})" in message
        assert Path(process.address.log_path).read_text().startswith("Traceback")
        assert ", in parse_model" in message  # the traceback's last frames
        assert "ModelSpecError: cannot tell which provider serves 'nonsense-model'" in message
        assert process._process.returncode == 1
    finally:
        process.stop()
    # The log outlives a runner that stopped on its own: the error message points to it.
    log = Path(process.address.log_path)
    assert log.read_text().startswith("Traceback")
    assert not Path(process.address.socket_path).exists()
    shutil.rmtree(log.parent)
    assert server.requests == []
    assert server.stats()["other"] == 0


def test_api_keys_reach_the_runner_on_stdin_never_its_command_line(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    anthropic_key, openai_key = "sk-ant-secret-XYZ", "sk-secret-XYZ"
    server = make_server({"api_key": anthropic_key, **scenario(range(1))})  # checks the key
    endpoints = Endpoints(
        base_urls=local_server_endpoints(server.url).base_urls,
        api_keys={"anthropic": anthropic_key, "openai": openai_key},
    )
    process, client = start_runner(
        endpoints=endpoints, candidate=CANDIDATE_REF, timeout=10, retries=0
    )
    assert process.preflight_problems() == {}  # /v1/models/{id} accepted the key

    completion = client.complete_sync(
        Request(model=CANDIDATE, messages=(ChatMessage("user", question(0)),))
    )

    assert completion.text == answer(0)
    pid = process._process.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"pytest_llmregress.engine.runner_process" in cmdline
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    log = Path(process.address.log_path).read_bytes()
    for secret in (anthropic_key, openai_key):
        assert secret.encode() not in cmdline
        assert secret.encode() not in environ
        assert secret.encode() not in log
    directory = Path(process.address.socket_path).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # the socket's directory: ours alone


# -- several clients on one runner ---------------------------------------------------------------


def test_two_clients_get_their_own_results_and_share_one_budget(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(scenario(range(8), latency_ms=150))
    seen: dict[str, list[CaseResult]] = {"first": [], "second": []}
    process, first = runner_for(
        start_runner,
        server,
        concurrency=2,
        on_result=lambda result, _: seen["first"].append(result),
    )
    exact = (ScorerSpec("exact"),)
    mine = {"first": [golden(i, scorers=exact) for i in range(0, 8, 2)]}
    mine["second"] = [golden(i, scorers=exact) for i in range(1, 8, 2)]
    with contextlib.closing(
        RunnerClient(process.address, on_result=lambda result, _: seen["second"].append(result))
    ) as second:
        clients = {"first": first, "second": second}
        for name, client in clients.items():
            client.submit([(key(case), case) for case in mine[name]], no_systems)

        pool = concurrent.futures.ThreadPoolExecutor(2)
        try:
            waits = {
                name: pool.submit(
                    lambda c, cases: [c.result(key(x), x, no_systems)[0] for x in cases],
                    clients[name],
                    mine[name],
                )
                for name in clients
            }
            results = {name: wait.result(timeout=30) for name, wait in waits.items()}
        finally:
            pool.shutdown(wait=False)  # closing the clients ends any wait still going

    for name in clients:
        assert [r.case_id for r in results[name]] == [case.id for case in mine[name]]
        assert [r.outcome for r in results[name]] == ["passed"] * 4
        assert [r.output for r in results[name]] == [answer(int(c.id[-3:])) for c in mine[name]]
        # Each client's on_result saw its own cases, never the other's.
        assert sorted(r.case_id for r in seen[name]) == [case.id for case in mine[name]]
    assert candidate_calls(server) == Counter(question(i) for i in range(8))
    assert server.stats()["max_in_flight"] == 2  # one budget of 2 for both clients, and used


def test_a_client_that_disconnects_loses_its_cases_and_others_go_on(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(
        scenario(
            range(2),
            # A prompt with SLOW in it is answered (with a 500) only after 20 s.
            errors=[{"status": 500, "match": SLOW, "latency_ms": 20_000}],
        )
    )
    process, leaving = runner_for(
        start_runner,
        server,
        concurrency=1,  # the slow call holds the only slot until the runner cancels it
        timeout=30,
    )
    exact = (ScorerSpec("exact"),)
    slow = golden(0, scorers=exact, user=f"{question(0)} {SLOW}")
    queued = golden(1, scorers=exact)
    leaving.submit([(key(slow), slow), (key(queued), queued)], no_systems)
    assert server.wait_for_in_flight(1)

    leaving.close()

    with pytest.raises(RunnerError, match="the session ended before this result arrived"):
        leaving.result(key(slow), slow, no_systems)
    with pytest.raises(RunnerError, match="the session ended before this result arrived"):
        leaving.result(key(queued), queued, no_systems)

    staying_case = golden(1, scorers=exact)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with contextlib.closing(RunnerClient(process.address)) as staying:
            # Within 10 s, so not after the slow call: the runner cancelled it, freeing its slot.
            wait = pool.submit(staying.result, "other-worker::case-001", staying_case, no_systems)
            result, _ = wait.result(timeout=10)
    finally:
        pool.shutdown(wait=False)  # closing the client ends a wait still going
    assert result.outcome == "passed"
    assert result.nodeid == "other-worker::case-001"
    # The leaving client's queued case was cancelled too: question 1 was asked once, by the
    # client that stayed.
    assert candidate_calls(server)[question(1)] == 1


def test_a_long_temporary_directory_does_not_break_the_socket_path(
    make_server: MakeServer,
    start_runner: StartRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # a socket path this long cannot be bound
    deep.mkdir(parents=True)
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    server = make_server(scenario(range(1)))
    process, client = runner_for(start_runner, server)
    assert process.address.socket_path.startswith("/tmp/llmregress-")
    request = Request(model=CANDIDATE, messages=(ChatMessage("user", question(0)),))
    assert client.complete_sync(request).text == answer(0)


def test_a_killed_pytest_process_takes_its_runner_with_it(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """SIGKILL leaves no time to clean up; the closed lifeline still stops the runner."""
    server = make_server(scenario(range(1)))
    config = runner_config(endpoints=local_server_endpoints(server.url), candidate=CANDIDATE_REF)
    starter, printed = runner_in_a_child(config, tmp_path)
    _, pid, socket_path = printed.split()
    runner_pid = int(pid)
    os.kill(runner_pid, 0)  # the runner is alive
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{runner_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break  # exited and reaped
        if state == "Z":
            break  # exited; whoever inherited it has not reaped it yet
        time.sleep(0.05)
    else:
        pytest.fail(f"the runner process {runner_pid} outlived the process that started it")
    assert not Path(socket_path).parent.exists()  # nobody was left to remove it: it did
