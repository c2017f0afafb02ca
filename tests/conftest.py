"""Shared fixtures: a local provider server per test and the three ways to run pytest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import anthropic  # see below
import openai
import pytest
import yaml  # noqa: F401

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
