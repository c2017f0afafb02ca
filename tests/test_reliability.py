"""Runs that survive rate limits, faults, retired models, a dying server and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def completions(server: LocalProviderServer, model: str) -> int:
    return sum(1 for r in server.requests if r.requested_model == model)


def slow_cases(pytester: pytest.Pytester, count: int, latency_ms: int) -> dict[str, Any]:
    """``count`` question cases in ``golden_cases/qa.jsonl``; their scenario with latency."""
    cases = qa_cases(count)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["latency_ms"] = latency_ms
    return scripted


def test_rate_limits_are_absorbed(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(30)
    write_cases(pytester, "qa.jsonl", cases)
    limited = scenario(cases)
    for model in (CANDIDATE, JUDGE):
        limited["models"][model]["errors"] = [{"status": 429, "share": 0.2, "retry_after": 0.01}]
    server = make_server(limited)
    provider_env(server)
    result = pytester.runpytest(*model_args("--llm-retries=8"))
    result.assert_outcomes(passed=30)
    assert server.stats()["by_status"].get(429, 0) > 0


def test_server_faults_end_as_errors_never_failures(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(40)
    write_cases(pytester, "qa.jsonl", cases)
    faulty = scenario(cases)
    for model in (CANDIDATE, JUDGE):
        faulty["models"][model]["errors"] = [
            {"status": 500, "share": 0.05},
            {"status": 529, "share": 0.05},
        ]
    provider_env(make_server(faulty))
    result = pytester.runpytest(*model_args("--llm-retries=0", "--llm-max-error-rate=1"))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0
    assert outcomes.get("passed", 0) + outcomes.get("errors", 0) == 40
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("role", ["candidate", "judge"])
def test_retired_model_stops_the_run_before_any_case(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    role: str,
    run_mode: list[str],
) -> None:
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    retired = CANDIDATE if role == "candidate" else JUDGE
    scripted["models"][retired]["retired"] = True
    server = make_server(scripted)
    provider_env(server)
    result = pytester.runpytest(*model_args(), *run_mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = pytest.LineMatcher((result.stdout.str() + result.stderr.str()).splitlines())
    output.fnmatch_lines(
        [
            "*preflight: no case was run, because these models are not available:*",
            f"*{retired}*404*",
        ]
    )
    assert completions(server, CANDIDATE) == 0
    assert completions(server, JUDGE) == 0


def test_replay_makes_no_network_calls(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    pytester.runpytest(*model_args("--llm-cache=record")).assert_outcomes(passed=6)
    server.reset_stats()
    replayed = pytester.runpytest(*model_args("--llm-cache=replay"))
    replayed.assert_outcomes(passed=6)
    assert server.stats()["requests"] == 0
    assert server.requests == []
    replayed.stdout.fnmatch_lines(
        ["cache: candidate 6 hits / 0 misses, judge 6 hits / 0 misses (.llmregress/cache)"]
    )


def test_replay_without_a_recording_is_an_error(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    result = pytester.runpytest(*model_args("--llm-cache=replay"))
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*no cached reply for this request*"])


def test_judge_verdicts_are_cached_by_default(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    pytester.runpytest(*model_args()).assert_outcomes(passed=5)
    server.reset_stats()
    pytester.runpytest(*model_args()).assert_outcomes(passed=5)
    assert completions(server, CANDIDATE) == 5
    assert completions(server, JUDGE) == 0
    server.reset_stats()
    pytester.runpytest(*model_args("--llm-judge-cache=off")).assert_outcomes(passed=5)
    assert completions(server, JUDGE) == 5


def test_the_summary_says_what_the_cache_answered(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """The cache's own counts, from the runner process's last words: a second recording run
    is answered from the cache (under xdist too: one runner, one count)."""
    cases = qa_cases(5)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    first = pytester.runpytest(*model_args("--llm-cache=record"))
    first.assert_outcomes(passed=5)
    first.stdout.fnmatch_lines(
        ["cache: candidate 0 hits / 5 misses, judge 0 hits / 5 misses (.llmregress/cache)"]
    )
    server.reset_stats()

    second = pytester.runpytest(*model_args("--llm-cache=record"), "-n", "2")

    second.assert_outcomes(passed=5)
    second.stdout.fnmatch_lines(
        ["cache: candidate 5 hits / 0 misses, judge 5 hits / 0 misses (.llmregress/cache)"]
    )
    assert server.requests == []
    # The judge's cache alone (the default): the candidate is not looked up, so not named.
    judge_only = pytester.runpytest(*model_args())
    judge_only.assert_outcomes(passed=5)
    judge_only.stdout.fnmatch_lines(["cache: judge 5 hits / 0 misses (.llmregress/cache)"])
    judge_only.stdout.no_fnmatch_line("cache: candidate*")
    # No cache at all: no line.
    uncached = pytester.runpytest(*model_args("--llm-cache=off", "--llm-judge-cache=off"))
    uncached.assert_outcomes(passed=5)
    uncached.stdout.no_fnmatch_line("cache:*")


def test_concurrency_budget_holds_across_workers(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = make_server(slow_cases(pytester, 40, latency_ms=40))
    provider_env(server)
    budget = ["--llm-concurrency=4", "--llm-judge-concurrency=2"]
    result = pytester.runpytest(*model_args(*budget), "-n", "2")
    result.assert_outcomes(passed=40)
    peak = server.stats()["max_in_flight"]
    assert 2 <= peak <= 6
    assert completions(server, CANDIDATE) == 40


def test_dead_server_then_resume_gives_the_same_report(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    scripted = slow_cases(pytester, 20, latency_ms=20)
    reference = make_server(scripted)
    provider_env(reference)
    pytester.runpytest(*model_args("--llm-report=full.json", "--llm-judge-cache=off"))
    full = load_results(pytester.path / "full.json")

    server = make_server(scripted)
    provider_env(server)
    port = server.port

    def kill_after(calls: int) -> None:
        while completions(server, CANDIDATE) < calls:
            time.sleep(0.005)
        server.stop()

    killer = threading.Thread(target=kill_after, args=(6,), daemon=True)
    killer.start()
    args = model_args("--llm-report=run.json", "--llm-retries=1", "--llm-judge-cache=off")
    broken = pytester.runpytest(*args, "--llm-concurrency=2", "--llm-judge-concurrency=2")
    killer.join(5)
    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    broken.stdout.fnmatch_lines(
        ["*errored (*): * model or judge calls failed; not the model's quality*"]
    )
    finished = {
        c.case_id for c in load_results(pytester.path / "run.json").cases if c.outcome != "error"
    }
    assert 1 <= len(finished) < 20

    restarted = make_server(scripted)
    restarted.stop()
    restarted.start(port=port)
    resumed = pytester.runpytest(*model_args("--llm-resume=run.json", "--llm-judge-cache=off"))
    resumed.assert_outcomes(passed=20)
    resumed.stdout.fnmatch_lines([f"resumed: {len(finished)} cases taken from the earlier run*"])
    asked = {r.user_text for r in restarted.requests if r.requested_model == CANDIDATE}
    assert len(asked) == 20 - len(finished)
    final = load_results(pytester.path / "run.json")

    def essence(run: Any) -> list[tuple[str, str, str | None, tuple[float, ...]]]:
        return sorted(
            (c.case_id, c.outcome, c.output, tuple(s.value for s in c.scores)) for c in run.cases
        )

    assert essence(final) == essence(full)
    assert final.metadata["verdict"]["passed"] == 20
    assert not (pytester.path / "run.json.partial").exists()


def test_ctrl_c_keeps_finished_results_and_says_what_is_missing(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = slow_cases(pytester, 30, latency_ms=0)
    # However fast or loaded the machine, the run cannot finish before Ctrl-C: the judge has a
    # server of its own that answers ten requests (ten cases at most) and holds every later
    # one until the test ends. Candidate calls are never held: with one server for both, the
    # candidate calls could take every answer the pause allows and leave no case judged.
    provider_env(make_server(scripted))
    judge_server = make_server(scripted)
    judge_server.pause(after=10)
    monkeypatch.setenv("OPENAI_BASE_URL", judge_server.openai_base_url)
    args = [
        "-p",
        "no:cacheprovider",
        *model_args("--llm-report=run.json"),
        "--llm-concurrency=2",
        "--llm-judge-concurrency=2",
    ]
    # Ctrl-C must raise KeyboardInterrupt however this suite was started: a shell starts a
    # background job with SIGINT ignored, and a Python started so leaves it ignored.
    launcher = (
        "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # a hang shows every thread's stack
    )
    output = ReportedItems(process)
    # Ctrl-C once pytest itself has reported three cases (its journal runs ahead of it).
    assert output.reported.wait(120), f"no case was reported:\n{output.text()}"
    process.send_signal(signal.SIGINT)
    if not output.finished.wait(120):  # a bound on a hang, not a timing assumption
        process.send_signal(signal.SIGABRT)  # faulthandler dumps the stacks
        output.finished.wait(30)
        pytest.fail(f"pytest did not stop on Ctrl-C:\n{output.text()}")
    assert process.wait() == pytest.ExitCode.INTERRUPTED, output.text()
    assert "incomplete: " in output.text()
    assert "--llm-resume=" in output.text()
    kept = load_results(pytester.path / "run.json")
    assert 3 <= len(kept.cases) <= 10
    assert json.loads((pytester.path / "run.json").read_text())["metadata"]["missing"]


class ReportedItems:
    """A pytest process's output, read as it comes: ``reported`` is set once three golden
    items of ``golden_cases/qa.jsonl`` are reported, ``finished`` when the output ends."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._chars: list[str] = []
        self.reported = threading.Event()
        self.finished = threading.Event()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        while char := process.stdout.read(1):
            self._chars.append(char)
            text = self.text()
            if "qa.jsonl " in text and text.split("qa.jsonl ", 1)[1][:3] == "...":
                self.reported.set()
        self.finished.set()

    def text(self) -> str:
        return "".join(self._chars)


def test_a_killed_worker_keeps_its_finished_results_and_resume_completes_the_run(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_server(slow_cases(pytester, 20, latency_ms=100))
    provider_env(server)
    pytester.makeconftest(
        """
        import os, signal

        reported = 0

        def pytest_configure(config):
            global worker
            worker = getattr(config, "workerinput", {}).get("workerid")

        def pytest_runtest_logreport(report):
            global reported
            if report.when == "call" and worker == os.environ["KILL_WORKER"]:
                reported += 1
                if reported == 2:
                    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-run
        """
    )
    monkeypatch.setenv("KILL_WORKER", "gw1")
    args = model_args("--llm-report=run.json", "--llm-judge-cache=off", "--llm-concurrency=2")
    broken = pytester.runpytest_subprocess(*args, "-n", "2", "--max-worker-restart=0")
    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    broken.stdout.fnmatch_lines(["*incomplete: * golden cases have no result*"])
    kept = load_results(pytester.path / "run.json")
    finished = {c.case_id for c in kept.cases}
    assert 2 <= len(finished) < 20
    dead = pytester.path / "run.json.partial" / "gw1.jsonl"
    assert dead.read_text().count('"kind": "case"') >= 2  # the dead worker's, kept

    monkeypatch.setenv("KILL_WORKER", "nobody")
    server.reset_stats()
    resumed = pytester.runpytest(*model_args("--llm-resume=run.json", "--llm-judge-cache=off"))
    resumed.assert_outcomes(passed=20)
    asked = {r.user_text for r in server.requests if r.requested_model == CANDIDATE}
    assert len(asked) == 20 - len(finished)
    assert not (pytester.path / "run.json.partial").exists()
