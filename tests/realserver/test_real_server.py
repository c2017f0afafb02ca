"""The plugin against a real third-party server: Hugging Face ``transformers serve``.

Nothing here is scripted: two tiny chat models are trained at the start of the session
(``models.py``), served over HTTP by ``transformers serve`` (``server.py``), and the plugin
runs exactly as a user runs it, through pytest, with ``--llm-model=openai:<id>`` and
``--llm-openai-base-url``. Version 2 of the model answers a known third of the questions
differently, so it regresses on exactly those cases.

What each test expects is checked against what the server answers when asked directly over
HTTP (``RealServer.direct``), so the same tests run against any OpenAI-compatible server given
by environment variables (``docs/self-hosted.md``); with the local models they also check that
the direct answers are the ones the models were trained on.

Sampling: every run states it with ``--llm-params=temperature=0,max_tokens=...`` (a server
samples at its model's default otherwise), so every call decodes greedily.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases.golden import load_cases
from pytest_llmregress.verdict.results import RunResult, load_results

from .conftest import RealServer
from .models import CORPUS, MAX_TOKENS, REGRESSED, MadeModel, answers
from .server import TransformersServer, ask

pytestmark = pytest.mark.realserver

GOLDEN = "golden_cases/support.yaml"
RUN_TIMEOUT = 600.0  # seconds: a whole pytest run in a subprocess, on a loaded machine
StartServer = Callable[[], TransformersServer]


def golden_yaml() -> str:
    """The golden file: every question of the corpus, no reference yet, scored ``exact``."""
    lines = [
        "# Support answers; references recorded from model version 1.",
        "defaults:",
        "  scorers: [exact]",
        "  tags: [support]",
        "cases:",
    ]
    for case_id, question, _ in CORPUS:
        lines += [f"  - id: {case_id}", f"    user: {json.dumps(question)}"]
    return "\n".join(lines) + "\n"


def clean_env(real: RealServer) -> dict[str, str]:
    """The environment of a pytest subprocess: no outer pytest or provider settings, a key."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "OPENAI_", "ANTHROPIC_"))
    }
    env["OPENAI_API_KEY"] = real.api_key
    return env


SAMPLING = f"--llm-params=temperature=0,max_tokens={MAX_TOKENS}"


def model_args(real: RealServer, model: str, *extra: str) -> list[str]:
    return [
        f"--llm-model=openai:{model}",
        f"--llm-openai-base-url={real.base_url}",
        SAMPLING,
        *extra,
    ]


def run_pytest(
    cwd: Path, real: RealServer, *args: str, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, as a user runs it in their project folder."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=clean_env(real),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def point(real_server: RealServer, monkeypatch: pytest.MonkeyPatch) -> RealServer:
    """In-process pytester runs: the key in the environment, no other provider settings."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", real_server.api_key)
    return real_server


class Recording:
    """A folder whose golden file was filled by a ``--llm-record=missing`` run of v1."""

    def __init__(self, folder: Path, run: subprocess.CompletedProcess[str]) -> None:
        self.folder = folder
        self.run = run
        self.golden = folder / GOLDEN
        self.references = {case.id: case.reference for case in load_cases(self.golden)}

    def copy_to(self, folder: Path) -> Path:
        target = folder / GOLDEN
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.golden, target)
        return target


@pytest.fixture(scope="module")
def recording(real_server: RealServer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """Golden cases without references, recorded once with v1 through the plugin."""
    folder = tmp_path_factory.mktemp("recorded")
    (folder / "golden_cases").mkdir()
    (folder / GOLDEN).write_text(golden_yaml())
    run = run_pytest(
        folder,
        real_server,
        *model_args(real_server, real_server.v1, "--llm-record=missing"),
        "--llm-report=record.json",
    )
    return Recording(folder, run)


def summary(output: str | pytest.RunResult | subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion shows of a run: its llmregress section and what follows (the
    verdict, the preflight's message), not every case's report."""
    if isinstance(output, pytest.RunResult):
        output = output.stdout.str() + "\n" + output.stderr.str()
    elif isinstance(output, subprocess.CompletedProcess):
        output = output.stdout + "\n" + output.stderr
    start = output.rfind("= llmregress =")
    lines = (output[output.rfind("\n", 0, start) + 1 :] if start >= 0 else output).splitlines()
    return "\n".join(lines[-60:])


def ask_models(url: str) -> dict[str, Any]:
    """A models endpoint's answer, straight over HTTP."""
    with urllib.request.urlopen(url, timeout=60) as response:
        data: dict[str, Any] = json.load(response)
        return data


def outcomes(results: RunResult) -> dict[str, str]:
    return {case.case_id: case.outcome for case in results.cases}


def failed_in_summary(stdout: str) -> set[str]:
    """Case ids of the ``FAILED path::id`` lines of pytest's short test summary (``-rf``)."""
    return set(re.findall(rf"^FAILED {re.escape(GOLDEN)}::([\w.-]+)", stdout, re.MULTILINE))


def test_the_direct_answers_are_what_the_models_learnt(real_server: RealServer) -> None:
    """The ground truth of the other tests, asked straight over HTTP, no plugin involved."""
    if real_server.models is None:
        assert real_server.regressed, "v1 and v2 answer every question alike: nothing to catch"
        return
    v1, v2 = real_server.models
    for made in (v1, v2):
        served = real_server.direct[made.path.name]
        assert {case: text for case, (text, _) in served.items()} == answers(made.version)
        assert {model for _, model in served.values()} == {made.path.name}
    assert real_server.regressed == set(REGRESSED)
    assert len(REGRESSED) * 3 == len(CORPUS)


def test_recording_writes_v1s_answers_as_references(
    real_server: RealServer, recording: Recording
) -> None:
    run = recording.run
    assert run.returncode == 0, summary(run)
    assert f"RECORDED: {len(CORPUS)} references from openai:{real_server.v1}" in run.stdout
    assert "PASSED:" not in run.stdout
    assert recording.references == {
        case_id: real_server.answer(real_server.v1, case_id) for case_id, _, _ in CORPUS
    }
    results = load_results(recording.folder / "record.json")
    assert {case.case_id for case in results.cases if case.recorded} == {c[0] for c in CORPUS}


def test_v1_passes_against_its_own_references(
    pytester: pytest.Pytester, point: RealServer, recording: Recording
) -> None:
    recording.copy_to(pytester.path)
    result = pytester.runpytest(*model_args(point, point.v1), "--llm-report=v1.json")

    assert result.ret == pytest.ExitCode.OK, summary(result)
    result.assert_outcomes(passed=len(CORPUS))
    served = {model for _, model in point.direct[point.v1].values()}
    assert len(served) == 1
    (resolved,) = served
    result.stdout.fnmatch_lines(
        [
            f"PASSED: openai:{point.v1} on {len(CORPUS)} golden cases",
            f"answered by: openai:{point.v1} -> {resolved} x{len(CORPUS)}",
        ]
    )
    results = load_results(pytester.path / "v1.json")
    assert results.metadata["resolved_models"] == {f"openai:{point.v1}": {resolved: len(CORPUS)}}
    assert results.metadata["base_urls"]["openai"] == point.base_url
    assert {case.completion.resolved_model for case in results.cases if case.completion} == {
        resolved
    }
    if point.local is not None:
        # Every answer came from this server: its log has each request id the plugin kept.
        logged = set(re.findall(r"Request (\S+) body:", point.local.log_path.read_text()))
        kept = {case.completion.request_id for case in results.cases if case.completion}
        assert kept <= logged, kept - logged


def test_v2_fails_the_gate_naming_exactly_the_regressed_cases(
    pytester: pytest.Pytester, point: RealServer, recording: Recording
) -> None:
    recording.copy_to(pytester.path)
    regressed = point.regressed
    result = pytester.runpytest(
        *model_args(point, point.v2), "--llm-report=v2.json", f"--llm-worst={len(CORPUS)}", "-rf"
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED, summary(result)
    result.assert_outcomes(passed=len(CORPUS) - len(regressed), failed=len(regressed))
    stdout = result.stdout.str()
    assert failed_in_summary(stdout) == regressed
    (resolved,) = {model for _, model in point.direct[point.v2].values()}
    result.stdout.fnmatch_lines(
        [
            f"FAILED: openai:{point.v2} on {len(CORPUS)} golden cases",
            f"*{len(CORPUS) - len(regressed)} passed, {len(regressed)} failed, 0 errors*",
            f"answered by: openai:{point.v2} -> {resolved} x{len(CORPUS)}",
        ]
    )
    results = load_results(pytester.path / "v2.json")
    failed = {case.case_id for case in results.cases if case.outcome == "failed"}
    assert failed == regressed
    for case in results.cases:
        assert case.output == point.answer(point.v2, case.case_id)
        assert case.reference == point.answer(point.v1, case.case_id)
    assert results.metadata["verdict"]["ok"] is False


def test_compare_model_reports_the_regression(
    pytester: pytest.Pytester, point: RealServer, recording: Recording
) -> None:
    recording.copy_to(pytester.path)
    regressed = point.regressed
    result = pytester.runpytest(
        *model_args(point, point.v2, f"--llm-compare-model=openai:{point.v1}"),
        "--llm-report=paired.json",
        "--llm-markdown=paired.md",
        f"--llm-worst={len(CORPUS)}",
        "--llm-min-pass-rate=0",
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED, summary(result)
    stdout = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            f"*REGRESSION: openai:{point.v2} against openai:{point.v1} on {len(CORPUS)} paired*",
            f"flips: {len(regressed)} pass->fail, 0 fail->pass*",
        ]
    )
    results = load_results(pytester.path / "paired.json")
    assert {c.case_id for c in results.compare_cases if c.outcome == "passed"} == {
        c[0] for c in CORPUS
    }
    assert {c.case_id for c in results.cases if c.outcome == "failed"} == regressed
    # Every pass->fail flip is named, in the terminal and in the markdown summary.
    flips = stdout[stdout.index(f"{len(regressed)} of {len(regressed)} pass->fail flips:") :]
    assert set(re.findall(rf"^  {re.escape(GOLDEN)}::([\w.-]+)", flips, re.M)) == regressed
    markdown = (pytester.path / "paired.md").read_text()
    flipped = markdown[markdown.index("### Pass → fail flips") :]
    assert set(re.findall(rf"{re.escape(GOLDEN)}::([\w.-]+)", flipped)) == regressed, markdown


@pytest.fixture
def own_server(local_models: tuple[MadeModel, MadeModel], tmp_path: Path) -> Iterator[StartServer]:
    """Start servers of this test's own (freshly started: no model loaded); all stop after."""
    servers: list[TransformersServer] = []

    def start() -> TransformersServer:
        server = TransformersServer(local_models[0].path.parent, tmp_path / "serve.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# SPEC (issue 13): a freshly started `transformers serve` has no GET /v1/models/{id} route
# and lists only the models it has loaded, so the preflight must not refuse a model it
# cannot confirm there; it falls back to a one-token request.
def test_a_fresh_server_s_valid_model_is_accepted(
    pytester: pytest.Pytester, point: RealServer, recording: Recording, own_server: StartServer
) -> None:
    server: TransformersServer = own_server()
    base_url = server.base_url
    # What the preflight faces: no route for one model, an empty list.
    with pytest.raises(urllib.error.HTTPError, match="404"):
        ask_models(base_url + f"/models/{point.v1}")
    assert ask_models(base_url + "/models")["data"] == []

    recording.copy_to(pytester.path)
    # The first request loads the model: slow on a busy machine, so a generous timeout.
    result = pytester.runpytest(
        f"--llm-model=openai:{point.v1}",
        f"--llm-openai-base-url={base_url}",
        SAMPLING,
        "--llm-timeout=300",
    )

    assert result.ret == pytest.ExitCode.OK, summary(result)
    result.assert_outcomes(passed=len(CORPUS))


# SPEC (issue 13): a model the server does not have is refused before any case runs, with a
# message that says what was tried and what the server answered. `transformers serve`
# answers a chat request for an unknown model with HTTP 500 Internal Server Error (it cannot
# load the model's config), not 404.
def test_an_unknown_model_is_refused_saying_what_was_tried(
    pytester: pytest.Pytester, point: RealServer, recording: Recording
) -> None:
    unknown = "llmregress-no-such-model"
    with pytest.raises(urllib.error.HTTPError) as direct:  # what the server answers, directly
        ask(point.base_url, unknown, "Hi", api_key=point.api_key, max_tokens=1)
    recording.copy_to(pytester.path)
    result = pytester.runpytest(*model_args(point, unknown), "--llm-retries=0")

    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, summary(output)
    assert f"openai:{unknown}" in output
    assert f"models/{unknown}" in output  # the models endpoint was asked for it
    assert str(direct.value.code) in output  # and what a request for it answers
    if point.local is not None:
        assert direct.value.code == 500
        # No case was sent: only one-token requests (the preflight's, and ours) reached it.
        asked = [body for body in point.local.requests() if body.get("model") == unknown]
        assert all(body.get("max_completion_tokens") == 1 for body in asked), asked


def test_no_key_is_needed_for_a_server_that_wants_none(
    pytester: pytest.Pytester,
    point: RealServer,
    recording: Recording,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A self-hosted server given by its base URL is called without a key when none is set."""
    if point.local is None:
        pytest.skip("the server given by LLMREGRESS_REAL_SERVER_URL may want a key")
    monkeypatch.delenv("OPENAI_API_KEY")
    recording.copy_to(pytester.path)
    result = pytester.runpytest(*model_args(point, point.v1))

    assert result.ret == pytest.ExitCode.OK, summary(result)
    result.assert_outcomes(passed=len(CORPUS))


def test_a_server_restart_is_resumed_calling_only_the_missing_cases(
    pytester: pytest.Pytester, point: RealServer, recording: Recording, own_server: StartServer
) -> None:
    server: TransformersServer = own_server()
    server.warm(point.v1)
    recording.copy_to(pytester.path)
    report = pytester.path / "results.json"
    args = [
        f"--llm-model=openai:{point.v1}",
        f"--llm-openai-base-url={server.base_url}",
        SAMPLING,
        "--llm-report=results.json",
    ]
    # One call at a time, and no retries: the cases after the crash fail at once.
    crash_args = ["--llm-concurrency=1", "--llm-retries=0"]
    first = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *crash_args],
        cwd=pytester.path,
        env=clean_env(point),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        kill_after = 6
        wait_for(lambda: finished_cases(report) >= kill_after, first, what=f"{kill_after} results")
        server.kill()
        output, _ = first.communicate(timeout=RUN_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == pytest.ExitCode.TESTS_FAILED, summary(output)

    before = load_results(report)
    scored = {c.case_id for c in before.cases if c.outcome in ("passed", "failed")}
    assert len(scored) >= kill_after, summary(output)
    missing = {c[0] for c in CORPUS} - scored
    assert missing, f"the run finished before the server was killed:\n{output}"
    asked_before = len(server.requests())

    server.start()  # the same port, a new process: no model loaded
    # Loaded here, so that this test does not depend on the preflight's cold start, which
    # test_a_fresh_server_s_valid_model_is_accepted is about.
    server.warm(point.v1)
    resumed = pytester.runpytest(*args[:2], "--llm-resume=results.json")

    assert resumed.ret == pytest.ExitCode.OK, summary(resumed)
    resumed.assert_outcomes(passed=len(CORPUS))
    by_question = {question: case_id for case_id, question, _ in CORPUS}
    asked_after = [
        by_question.get(body["messages"][-1]["content"], "(warm-up)")
        for body in server.requests()[asked_before:]
    ]
    assert sorted(c for c in asked_after if c != "(warm-up)") == sorted(missing)
    final = load_results(report)
    assert outcomes(final) == dict.fromkeys((c[0] for c in CORPUS), "passed")
    assert not (pytester.path / "results.json.partial").exists()


def finished_cases(report: Path) -> int:
    """Cases with a result on disk, in the document or the journals of a run in progress."""
    if not report.exists() and not Path(f"{report}.partial").exists():
        return 0
    try:
        return len(load_results(report).cases)
    except Exception:  # a journal being created
        return 0


def wait_for(
    condition: Callable[[], bool],
    process: subprocess.Popen[str],
    *,
    what: str,
    timeout: float = RUN_TIMEOUT,
) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` ends first or time runs out."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the run ended before {what}:\n{output}")
        if time.perf_counter() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.01)  # the next poll
