"""pytest hooks and fixtures of pytest-llmregress. Thin: every decision lives in a library module.

Loading this module imports neither SDK nor YAML. A run with a model starts the runner
process (``engine/runner_process.py``), which imports the SDKs while pytest collects; pytest's
own processes never import them. Every hook talks to the session (``session/``): its
``plan`` (resolved at start-up), its ``gathered`` results, and the outputs written from both.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmregress.cases.golden import GOLDEN_SUFFIXES
from pytest_llmregress.session import (
    SESSION_KEY,
    LLMRegressSession,
    find_session,
    pyproject_path,
)
from pytest_llmregress.session.outputs import header_lines, summary
from pytest_llmregress.session.plan import NO_MODEL_REASON
from pytest_llmregress.settings import (
    OPTIONS,
    SettingsError,
    read_pyproject_section,
    resolve_settings,
)

if TYPE_CHECKING:
    from pytest_llmregress.collect.llm_fixture import LLMClient
    from pytest_llmregress.scoring.score import Score
    from pytest_llmregress.testing.server import LocalProviderServer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmregress", "LLM regression testing (pytest-llmregress)")
    for option in OPTIONS:
        if option.switch:
            group.addoption(
                option.flag, dest=option.ini, action="store_const", const=True, help=option.help
            )
        elif option.cli:
            group.addoption(
                option.flag,
                dest=option.ini,
                type=option.parse,
                default=None,
                metavar=option.metavar,
                help=option.help,
            )
        if option.name == "golden_files":
            parser.addini(option.ini, option.help, type="linelist", default=[])
        else:
            parser.addini(option.ini, option.help, type="string", default="")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from pytest_llmregress.collect.llm_fixture import LLM_CASE_HELP

    config.addinivalue_line("markers", LLM_CASE_HELP)
    if config.option.help:
        return  # --help only prints: no settings to check, no process to start
    pyproject = pyproject_path(config)
    try:
        settings = resolve_settings(
            cli={o.name: config.getoption(o.ini) for o in OPTIONS if o.cli},
            ini={o.name: config.getini(o.ini) for o in OPTIONS},
            pyproject=read_pyproject_section(pyproject),
            pyproject_path=str(pyproject or ""),
        )
    except SettingsError as exc:
        raise pytest.UsageError(f"pytest-llmregress: {exc}") from None
    session = LLMRegressSession(config, settings)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_ReportHooks(session), "llmregress-reports")
    # An xdist controller runs no items: it only serves, schedules and gathers.
    distributing = config.pluginmanager.hasplugin("dsession")
    session.start(run_cases=not distributing)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


class _ReportHooks:
    """Hooks whose arguments carry no config: they reach the session through ``self``."""

    def __init__(self, session: LLMRegressSession) -> None:
        self.session = session

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.session.note_collect_error(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.gather_report(report)


# Every hook below looks the session up with ``find_session`` and does nothing without one:
# a config whose ``pytest_configure`` did not run this plugin's (``pytester.parseconfig``,
# ``--help``) must see nothing of it.


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    session = find_session(node.config)
    if session is not None:
        session.configure_worker(node.workerinput)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    session = find_session(config)
    if session is None or config.getvalue("dist") != "load" or session.plan.candidate is None:
        return None
    from pytest_llmregress.collect.scheduling import GoldenScheduling

    return GoldenScheduling(config, log, session.plan.scope_of)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in GOLDEN_SUFFIXES:
        return None
    session = find_session(parent.config)
    if session is None or not session.plan.is_golden_path(file_path):
        return None
    from pytest_llmregress.collect.items import GoldenFile

    golden: GoldenFile = GoldenFile.from_parent(parent, path=file_path)
    return golden


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_llmregress.collect.shard import select_shard

    select_shard(config, items)  # --llm-shard: the other shards' cases are deselected


def pytest_collection_finish(session: pytest.Session) -> None:
    llm_session = find_session(session.config)
    if llm_session is not None and not llm_session.is_worker:
        llm_session.expect([item.nodeid for item in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    session = find_session(node.config)
    if session is not None:
        session.expect(ids)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    llm_session = find_session(session.config)
    if llm_session is not None:
        llm_session.before_run(session)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    session = find_session(item.config)
    if call.when == "call" and session is not None:
        from pytest_llmregress.collect.items import GoldenItem

        if not isinstance(item, GoldenItem):
            # A test that used the `llm` fixture or a judged reference is a golden case too.
            from pytest_llmregress.collect.llm_fixture import case_result

            result = case_result(item, report)
            item.case_result = result  # type: ignore[attr-defined]
            if result is not None and session.journal is not None:
                session.journal.add(result)
        session.annotate_report(item, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    from pytest_llmregress.collect.items import GoldenItem
    from pytest_llmregress.collect.llm_fixture import judging

    session = find_session(item.config)
    if session is None or isinstance(item, GoldenItem):  # golden items: judged by the runner
        return (yield)
    judge = session.judge_sync if session.plan.judge is not None and session.runner else None
    with judging(item, judge):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: Any, right: Any
) -> Generator[None, list[list[str]], list[list[str]]]:
    explanations = yield
    if "SnapshotAssertion" in (type(left).__name__, type(right).__name__):
        from pytest_llmregress.collect.snapshot import explain_judged

        return [explain_judged(left, right, lines) for lines in explanations]
    return explanations


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    if getattr(report, "llmregress_outcome", None) == "error":  # a golden case's (annotate_report)
        return "error", "E", ("ERROR", {"red": True})
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = find_session(config)
    return header_lines(session.plan) if session is not None else []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    llm_session = find_session(session.config)
    if llm_session is not None:
        llm_session.conclude(session)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    session = find_session(config)
    lines = summary(session.plan, session.gathered, session.recorded) if session else []
    if not lines:
        return
    terminalreporter.write_sep("=", "llmregress")
    for line in lines:
        markup = {line.style: True} if line.style else {}
        terminalreporter.write_line(line.text, **markup)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def llm(request: pytest.FixtureRequest) -> LLMClient:
    """The model under test (--llm-model), called from a test body: ``llm.complete(user=...)``."""
    from pytest_llmregress.collect.llm_fixture import LLMClient

    session = _fixture_session(request)
    candidate = session.plan.candidate
    if session.runner is None or candidate is None:
        pytest.skip(NO_MODEL_REASON)
    return LLMClient.for_item(request.node, session.runner.complete_sync, candidate)


@pytest.fixture
def llm_judge(request: pytest.FixtureRequest) -> Callable[..., Score]:
    """Judge an output against a reference with the session's judge model; returns a Score."""
    session = _fixture_session(request)
    if session.plan.judge is None:
        pytest.skip("no judge model: run with --llm-judge-model=ID")
    return session.judge_sync


def _fixture_session(request: pytest.FixtureRequest) -> LLMRegressSession:
    """The session behind a model fixture; a missing API key fails the test that needs it."""
    session = find_session(request.config)
    if session is None:
        pytest.skip("pytest-llmregress is not configured in this session")
    if session.plan.key_problem:
        pytest.fail(session.plan.key_problem, pytrace=False)
    return session


@pytest.fixture
def llm_server_scenario() -> dict[str, Any]:
    """The scenario the ``llm_server`` fixture serves; override it to script the server."""
    return {"models": {"*": {"default_reply": "ok"}}}


@pytest.fixture
def llm_server(llm_server_scenario: Any) -> Iterator[LocalProviderServer]:
    """A local provider server speaking the Anthropic and OpenAI wire formats, for one test."""
    from pytest_llmregress.testing.server import LocalProviderServer

    server = LocalProviderServer(llm_server_scenario).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Our hooks for a team's conftest.py and plugins (``hookspecs.py``)."""
    from pytest_llmregress import hookspecs

    pluginmanager.add_hookspecs(hookspecs)
