"""The runner forkserver (``engine/forkserver.py``), the test suite's warm start for runner
processes: a runner it forks is the process ``subprocess.Popen`` would have started (the same
program, arguments, directory, environment, ``sys.path``, streams and session), answers, dies
when its lifeline closes, and its exit or crash is reported the same way; where a forked child
could differ, the forkserver refuses and ``RunnerProcess`` starts the runner with ``Popen``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases.golden import GoldenCase, Message, ScorerSpec
from pytest_llmregress.engine.forkserver import (
    ENVIRONMENT_VARIABLE,
    ForkedProcess,
    ForkRefused,
    Forkserver,
    fork_runner,
)
from pytest_llmregress.engine.runner_process import (
    RunnerClient,
    RunnerError,
    RunnerProcess,
    runner_config,
)
from pytest_llmregress.providers.base import ChatMessage, Request
from pytest_llmregress.providers.registry import local_server_endpoints, parse_model
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, runner_in_a_child

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
StartRunner = Callable[..., tuple[RunnerProcess, RunnerClient]]

SCENARIO = {"models": {CANDIDATE: {"default_reply": "forty-two"}}}
PROBE = """
import json, os, sys
print(json.dumps({
    "name": __name__,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "path": sys.path,
    "env": dict(os.environ),
    "own_session": os.getsid(0) == os.getpid(),
    "stdin": sys.stdin.read(),
}), flush=True)
print("to the log", file=sys.stderr, flush=True)
raise SystemExit(int(sys.argv[1]))
"""


@pytest.fixture
def forkserver() -> str:
    """The session's forkserver (``tests/conftest.py``): its socket path."""
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not path:
        pytest.skip(f"{ENVIRONMENT_VARIABLE} is off for this run")
    return path


def start(start_runner: StartRunner, server: LocalProviderServer) -> tuple[RunnerProcess, Any]:
    return start_runner(
        endpoints=local_server_endpoints(server.url),
        candidate=parse_model(CANDIDATE),
        retries=0,
        preflight=False,
    )


def ask(client: RunnerClient) -> str:
    return client.complete_sync(
        Request(model=CANDIDATE, messages=(ChatMessage("user", "q?"),))
    ).text


def test_a_forked_runner_answers_and_exits_like_a_started_one(
    forkserver: str, make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(SCENARIO)
    process, client = start(start_runner, server)
    assert isinstance(process._process, ForkedProcess)
    assert process.preflight_problems() == {}
    assert ask(client) == "forty-two"
    directory = Path(process.address.socket_path).parent
    assert process._process.poll() is None
    cmdline = Path(f"/proc/{process._process.pid}/cmdline").read_bytes()
    assert b"sk-" not in cmdline  # its keys came on stdin, as with Popen

    client.close()
    process.stop()

    assert process._process.returncode == 0
    assert process._process.poll() == 0
    assert not directory.exists()  # the runner removed it on the way out
    assert len(server.requests) == 1


@pytest.mark.popen_runner
def test_a_popen_runner_test_gets_a_started_runner(
    make_server: MakeServer, start_runner: StartRunner
) -> None:
    assert ENVIRONMENT_VARIABLE not in os.environ
    process, client = start(start_runner, make_server(SCENARIO))
    assert isinstance(process._process, subprocess.Popen)
    assert ask(client) == "forty-two"


def test_the_forked_child_is_the_process_popen_starts(
    forkserver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same program as ``python -m probe``: __main__, argv, working directory,
    environment, sys.path, its own session, stdin, stdout, stderr and exit status."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe.py").write_text(PROBE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'lib'}:{os.environ.get('PYTHONPATH', '')}"}
    env["SOME_SETTING"] = "only in the request"
    argv = [sys.executable, "-m", "probe", "3"]
    seen = []
    for how in ("popen", "fork"):
        log_path = tmp_path / f"{how}.log"
        with open(log_path, "wb") as log:
            if how == "popen":
                child: Any = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            else:
                child = fork_runner(forkserver, argv, env=env, stderr=log)
        child.stdin.write(b"the config\n")
        child.stdin.close()  # the lifeline
        report = json.loads(child.stdout.readline())
        assert child.wait(timeout=30) == 3
        child.stdout.close()
        assert log_path.read_text() == "to the log\n"
        seen.append(report)
    popen, fork = seen
    assert fork == popen
    assert fork["name"] == "__main__"
    assert fork["argv"] == [str(tmp_path / "lib" / "probe.py"), "3"]
    assert fork["cwd"] == str(work)
    assert fork["env"]["SOME_SETTING"] == "only in the request"
    assert fork["own_session"] is True
    assert fork["stdin"] == "the config\n"


def test_a_forked_runner_dies_when_its_starter_is_killed(
    forkserver: str, make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(SCENARIO)
    config = runner_config(
        endpoints=local_server_endpoints(server.url), candidate=parse_model(CANDIDATE)
    )
    starter, printed = runner_in_a_child(config, tmp_path)
    kind, pid, _ = printed.split()
    assert kind == "ForkedProcess"  # the environment named the forkserver to the starter too
    runner_pid = int(pid)
    exited = os.pidfd_open(runner_pid)  # readable once the runner has exited
    try:
        assert select.select([exited], [], [], 0)[0] == []  # alive
        starter.kill()
        starter.wait()
        assert select.select([exited], [], [], 10)[0] == [exited], (
            f"the runner {runner_pid} outlived the process that started it"
        )
    finally:
        os.close(exited)


def test_a_killed_forked_runner_is_reported_like_a_killed_started_one(
    forkserver: str, make_server: MakeServer, start_runner: StartRunner
) -> None:
    server = make_server(SCENARIO)
    process, client = start(start_runner, server)
    assert isinstance(process._process, ForkedProcess)
    case = GoldenCase(
        id="c",
        messages=(Message("user", "q?"),),
        reference="forty-two",
        scorers=(ScorerSpec("exact"),),
        path="golden/qa.jsonl",
        line=1,
    )
    server.pause()
    try:
        client.submit([("k", case)], lambda case: {})
        assert server.wait_for_in_flight(1)
        with pytest.raises(subprocess.TimeoutExpired):
            process._process.wait(timeout=0.01)

        process._process.kill()

        with pytest.raises(RunnerError, match="the runner process stopped during the session"):
            client.result("k", case, lambda case: {})
    finally:
        server.resume()
    assert process._process.wait(timeout=10) == -signal.SIGKILL
    assert Path(process.address.log_path).read_text() == ""
    process.stop()
    shutil.rmtree(Path(process.address.log_path).parent)  # kept: the runner did not end well


def test_a_forked_runner_that_cannot_start_reports_the_end_of_its_log(
    forkserver: str, make_server: MakeServer
) -> None:
    server = make_server(SCENARIO)
    config = runner_config(
        endpoints=local_server_endpoints(server.url), candidate=parse_model(CANDIDATE)
    )
    config["models"]["candidate"] = "nonsense-model"
    process = RunnerProcess(config)
    try:
        assert isinstance(process._process, ForkedProcess)
        with pytest.raises(RunnerError) as info:
            process.preflight_problems()
        message = str(info.value)
        assert "the runner process exited with status 1 before it was ready" in message
        assert Path(process.address.log_path).read_text().startswith("Traceback")
        assert "ModelSpecError: cannot tell which provider serves 'nonsense-model'" in message
        assert process._process.returncode == 1
    finally:
        process.stop()
    shutil.rmtree(Path(process.address.log_path).parent)


def test_a_start_up_variable_of_its_own_gets_a_started_runner(
    forkserver: str,
    make_server: MakeServer,
    start_runner: StartRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PYTHONFAULTHANDLER works as the interpreter starts: a fork would not have it."""
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    process, client = start(start_runner, make_server(SCENARIO))
    assert isinstance(process._process, subprocess.Popen)
    assert ask(client) == "forty-two"
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")  # read by the SDK while it is imported
    monkeypatch.delenv("PYTHONFAULTHANDLER")
    process, client = start(start_runner, make_server(SCENARIO))
    assert isinstance(process._process, subprocess.Popen)


def test_a_shadowing_module_or_another_interpreter_is_refused(
    forkserver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "openai.py").write_text("raise SystemExit('a local openai.py')\n")
    monkeypatch.chdir(tmp_path)  # python -m puts the working directory first on sys.path
    argv = [sys.executable, "-m", "pytest_llmregress.engine.runner_process", str(tmp_path)]
    with open(tmp_path / "log", "wb") as log:
        with pytest.raises(
            ForkRefused, match=r"holds modules already loaded otherwise: \['openai'"
        ):
            fork_runner(forkserver, argv, env=dict(os.environ), stderr=log)
        other = ["/usr/bin/python3", *argv[1:]]
        with pytest.raises(ForkRefused, match="another interpreter"):
            fork_runner(forkserver, other, env=dict(os.environ), stderr=log)


def test_an_unreachable_forkserver_is_refused_and_its_stop_reports_a_crash(
    tmp_path: Path,
) -> None:
    server = Forkserver.start()
    assert server.process.stdin is not None
    server.process.kill()
    server.process.wait()
    with open(tmp_path / "log", "wb") as log, pytest.raises(ForkRefused, match="cannot reach"):
        fork_runner(server.socket_path, [sys.executable, "-m", "x"], env={}, stderr=log)
    with pytest.raises(RuntimeError, match="the runner forkserver exited with status -9"):
        server.stop()
    shutil.rmtree(Path(server.socket_path).parent)
