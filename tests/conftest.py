"""Shared fixtures: a local provider server per test and the three ways to run pytest."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import anthropic  # see below
import openai
import pytest
import yaml  # noqa: F401

from pytest_llmregress.engine.forkserver import ENVIRONMENT_VARIABLE, Forkserver
from pytest_llmregress.engine.runner_process import RunnerClient, RunnerProcess, runner_config
from pytest_llmregress.settings import RunnerSettings
from pytest_llmregress.testing.server import LocalProviderServer

# pytester's in-process runs restore sys.modules afterwards: a module first imported inside a
# run (the SDKs and their HTTP stack, PyYAML) would be dropped and imported anew, while objects
# from the first import live on (cached classes, exception types other modules catch).
# Importing them here keeps one copy of each for the whole session.

pytest_plugins = ["pytester"]

CANDIDATE = "claude-sonnet-4-6"
JUDGE = "gpt-5.5-2026-04-23"


@pytest.fixture(scope="session", autouse=True)
def _warm_imports() -> None:
    """Import the whole package and every module a real call touches, once, up front.

    Besides the sys.modules restore (above), the plugin's modules are marked for assertion
    rewriting: one first imported inside an in-process pytester run would be rewritten and
    compiled there, at a deep stack, where CPython 3.11.7 can fail with "AST constructor
    recursion depth mismatch".
    """
    import asyncio
    import importlib
    import pkgutil
    import socket

    import pytest_llmregress

    for module in pkgutil.walk_packages(pytest_llmregress.__path__, "pytest_llmregress."):
        if not module.name.endswith(".__main__"):  # runs its command when imported
            importlib.import_module(module.name)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with LocalProviderServer({"models": {"*": {"default_reply": "ok"}}}) as server:

        async def calls() -> None:
            for url in (server.url, closed):
                clients = (
                    anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0),
                    openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0),
                )
                try:
                    await clients[0].messages.create(
                        model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                    )
                    await clients[1].chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "hi"}]
                    )
                except (anthropic.APIConnectionError, openai.APIConnectionError):
                    pass
                finally:
                    for client in clients:
                        await client.close()

        asyncio.run(calls())


# Tests whose runners start the production way, with subprocess.Popen, not through the
# forkserver (below): the runner process's own tests (its command line, lifeline, signals,
# crashes) and the end-to-end tests of a pytest killed or interrupted under it.
POPEN_RUNNERS = (
    "tests/test_runner_process.py::",
    "tests/test_reliability.py::test_ctrl_c_keeps_finished_results_and_says_what_is_missing",
    "tests/test_reliability.py::test_a_killed_worker_keeps_its_finished_results_and_resume_",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(POPEN_RUNNERS):
            item.add_marker(pytest.mark.popen_runner)


_forkserver: list[Forkserver] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Runner processes started warm: a forkserver that has imported the SDKs once, named by
    ``LLMREGRESS_RUNNER_FORKSERVER`` to every ``RunnerProcess`` of the session, in-process
    and subprocess pytester runs included (see "How the tests run fast" in
    docs/architecture.md). Started here, so that it imports while pytest collects; not in an
    xdist controller, which runs no test. ``LLMREGRESS_RUNNER_FORKSERVER=off`` runs the suite
    without it."""
    config = session.config
    if os.environ.get(ENVIRONMENT_VARIABLE) == "off":
        del os.environ[ENVIRONMENT_VARIABLE]
    elif hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no":
        _forkserver.append(Forkserver.start())
        os.environ[ENVIRONMENT_VARIABLE] = _forkserver[0].socket_path


@pytest.fixture(scope="session", autouse=True)
def _runner_forkserver() -> Iterator[None]:
    """Stops the session's forkserver after the last test (raises if it had crashed)."""
    yield
    while _forkserver:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
        _forkserver.pop().stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A session that ran no test still stops its forkserver (which would also stop when this
    process ends: its stdin is its lifeline)."""
    while _forkserver:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
        with contextlib.suppress(RuntimeError):
            _forkserver.pop().stop()


@pytest.fixture(autouse=True)
def _popen_runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked ``popen_runner`` start their runners with ``subprocess.Popen``."""
    if request.node.get_closest_marker("popen_runner"):
        monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture
def make_server() -> Iterator[Callable[[dict[str, Any]], LocalProviderServer]]:
    """Start local provider servers with the given scenarios; all stop after the test."""
    servers: list[LocalProviderServer] = []

    def make(scenario: dict[str, Any]) -> LocalProviderServer:
        server = LocalProviderServer(scenario).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def provider_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[LocalProviderServer], None]:
    """Point both SDKs at a server through their own environment variables, with keys."""

    def point(server: LocalProviderServer) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret-0001")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-0002")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)

    return point


@pytest.fixture(params=["no-xdist", "n0", "n2"])
def run_mode(request: pytest.FixtureRequest) -> list[str]:
    """Extra pytest arguments: without xdist options, with -n0, with two workers."""
    return {"no-xdist": [], "n0": ["-n0"], "n2": ["-n2"]}[request.param]


@pytest.fixture
def start_runner() -> Iterator[Callable[..., tuple[RunnerProcess, RunnerClient]]]:
    """Start real runner processes (``runner_config`` keywords, and ``RunnerSettings`` fields
    over their defaults: ``timeout=10``); all stop after the test."""
    started: list[tuple[RunnerProcess, RunnerClient]] = []
    tuning = {f.name for f in fields(RunnerSettings)}

    def start(**config: Any) -> tuple[RunnerProcess, RunnerClient]:
        on_result = config.pop("on_result", None)
        settings = RunnerSettings.defaults(**{k: config.pop(k) for k in tuning & set(config)})
        process = RunnerProcess(runner_config(settings=settings, **config))
        client = RunnerClient(process.address, on_result=on_result)
        started.append((process, client))
        return process, client

    yield start
    for process, client in started:
        client.close()
        process.stop()


def runner_in_a_child(config: dict[str, Any], tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """A child process that starts a runner with ``config`` and waits: the child, and the line
    it printed once the runner's preflight passed: the runner's kind (``Popen`` or
    ``ForkedProcess``), its pid and its socket. Kill the child to test what the runner does
    when the process that started it dies."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys, time\n"
            "from pytest_llmregress.engine.runner_process import RunnerProcess\n"
            "process = RunnerProcess(json.load(open(sys.argv[1])))\n"
            "assert process.preflight_problems() == {}\n"
            "print(type(process._process).__name__, process._process.pid,"
            " process.address.socket_path, flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path / "config.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, child.stdout.readline()
