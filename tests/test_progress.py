"""The progress line of long runs (issue 16): in CI logs (no TTY) and under xdist, off with -q."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.session.progress import Progress, progress_text
from pytest_llmregress.testing.server import LocalProviderServer
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

LINE = re.compile(
    r"llmregress: (\d+)/24 cases \(\d+%\)(, pass rate [\d.]+% so far)?, \d+ errors?"
    r"(; in flight: \d+ candidate, \d+ judge calls)?(; backing off: [^;]+)?"
    r"(; spent \$\d+\.\d\d)?(; ETA .+)?$"
)


def test_the_line_says_counts_runner_state_and_eta() -> None:
    status = {
        "in_flight": {"candidate": 16, "judge": 12},
        "limit": {"candidate": 8, "judge": 32},
        "max": {"candidate": 32, "judge": 32},
        "held_s": 1.5,
        "spent": 0.4213,
    }
    text = progress_text(
        done=120, total=500, passed=110, failed=10, errors=2, elapsed_s=30.0, status=status
    )
    assert text == (
        "llmregress: 120/500 cases (24%), pass rate 91.7% so far, 2 errors; in flight: 16 "
        "candidate, 12 judge calls; backing off: candidate limit 8 of 32, new calls held 1.5 s "
        "(retry-after); spent $0.42; ETA 1 min 35 s"
    )
    assert progress_text(
        done=0, total=10, passed=0, failed=0, errors=1, elapsed_s=1.0, status=None
    ) == ("llmregress: 0/10 cases (0%), 1 error")


def test_the_line_comes_at_most_once_per_interval_and_not_at_the_end() -> None:
    now = [100.0]
    lines: list[str] = []
    asked: list[int] = []

    def status() -> dict[str, Any] | None:
        asked.append(1)
        raise ConnectionError("the runner is gone")  # the line goes on without its part

    progress = Progress(
        write=lines.append, status=status, interval=5.0, clock=lambda: now[0], started=95.5
    )
    counts = {"passed": 1, "failed": 0, "errors": 0}
    assert not progress.due()
    assert not progress.tick(done=1, total=10, **counts)  # too soon after the start
    now[0] += 0.5
    assert progress.due()
    assert progress.tick(done=2, total=10, **counts)
    assert not progress.tick(done=3, total=10, **counts)
    now[0] += 7.0
    assert not progress.tick(done=10, total=10, **counts)  # the summary says the end
    assert len(lines) == 1
    assert lines[0].startswith("llmregress: 2/10 cases (20%), pass rate 100.0% so far, 0 errors")
    assert len(asked) == 1


def slow_run(pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv) -> None:
    """24 cases whose calls take 1 s each, two at a time per kind: the run cannot end before
    12 s (24 x 1 s / 2 for the candidate calls alone), well past the 5 s interval."""
    cases = qa_cases(24)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["latency_ms"] = 1000
    provider_env(make_server(scripted))


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_long_run_in_a_ci_log_says_its_progress(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, mode: list[str]
) -> None:
    slow_run(pytester, make_server, provider_env)

    result = pytester.runpytest_subprocess(
        *model_args("--llm-concurrency=2", "--llm-judge-concurrency=2"), *mode
    )

    result.assert_outcomes(passed=24)
    lines = [line for line in result.outlines if line.startswith("llmregress: ") and "/24" in line]
    assert lines, result.stdout.str()
    for line in lines:
        match = LINE.match(line)
        assert match, line
        assert 0 < int(match.group(1)) < 24
        assert match.group(3), line  # the runner's calls in flight, in either mode
        assert match.group(5), line  # the spend so far: both models have a price


def test_quiet_runs_say_no_progress(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    slow_run(pytester, make_server, provider_env)
    result = pytester.runpytest_subprocess(
        *model_args("--llm-concurrency=2", "--llm-judge-concurrency=2"), "-q"
    )
    result.assert_outcomes(passed=24)
    assert not [line for line in result.outlines if "/24 cases" in line]
