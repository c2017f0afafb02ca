"""The per-process state of a pytest-llmregress session, kept in ``config.stash``.

``plugin.py``'s hooks talk to ``LLMRegressSession``, which holds what lives as long as the
process: the run plan (``plan.py``, resolved at start-up), the gatherer (``gather.py``), the
local provider server, the runner process and this process's connection to it. Under xdist
each worker has its own session, connected to the one runner process the controller started,
and only the controller gathers results and decides.

Ending takes two steps because pytest's hooks come in that order: ``conclude`` (in
``pytest_sessionfinish``) decides the verdict and the exit status, writes the outputs and then
closes; ``close`` (also in ``pytest_unconfigure``) stops whatever is still running, which is
all there is to do when the session never reached its end (a usage error at start-up).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.junitxml import xml_key as junit_xml_key  # pytest's LogXML, --junitxml

from pytest_llmregress.hookspecs import session_scorers
from pytest_llmregress.scoring.finish import finish_with_team_scorers
from pytest_llmregress.session.gather import Gatherer
from pytest_llmregress.session.outputs import (
    Recorded,
    add_junit_session_properties,
    junit_properties,
    write_outputs,
)
from pytest_llmregress.session.plan import (
    WORKER_DIST,
    WORKER_RUNNER,
    WORKER_SERVER_URL,
    PlanError,
    RunPlan,
    dist_problem,
    resolve_plan,
)
from pytest_llmregress.session.progress import Progress
from pytest_llmregress.settings import Settings
from pytest_llmregress.verdict.results import CaseResult, ResultsJournal

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase
    from pytest_llmregress.collect.items import GoldenItem
    from pytest_llmregress.engine.runner import CaseRun
    from pytest_llmregress.engine.runner_process import (
        RunnerAddress,
        RunnerClient,
        RunnerProcess,
    )
    from pytest_llmregress.scoring.score import Score
    from pytest_llmregress.testing.server import LocalProviderServer

SESSION_KEY = pytest.StashKey["LLMRegressSession"]()


class LLMRegressWarning(pytest.PytestWarning):
    """A warning from pytest-llmregress (model choice, configuration)."""


def get_session(config: pytest.Config) -> LLMRegressSession:
    return config.stash[SESSION_KEY]


def find_session(config: pytest.Config) -> LLMRegressSession | None:
    """The session, or None where this plugin's ``pytest_configure`` did not make one."""
    return config.stash.get(SESSION_KEY, None)


def pyproject_path(config: pytest.Config) -> Path | None:
    """The pyproject.toml pytest reads its configuration from, if it reads one."""
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    return None


def check_dist_mode(config: pytest.Config) -> None:
    """Refuse ``--dist each`` with a model (see ``plan.dist_problem``)."""
    problem = dist_problem(config.getoption("dist", "no"))
    if problem:
        raise pytest.UsageError(problem)


class LLMRegressSession:
    """The plan, the gatherer, the server and the runner of one pytest process."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        # Before collection, in every process: golden files are checked against it.
        self.scorers = session_scorers(config)
        # Until ``start`` resolves it, the plan is the settings alone: no model.
        self.plan = RunPlan(settings=settings, root=config.rootpath, is_worker=self.is_worker)
        self.gathered = Gatherer(self.plan)
        self.recorded = Recorded()
        self.server: LocalProviderServer | None = None
        self.runner_process: RunnerProcess | None = None  # started here (not on a worker)
        self.runner: RunnerClient | None = None  # this process's connection to it
        self.journal: ResultsJournal | None = None
        # A lone process's results (and compare results), by node id, until gathered.
        self._own_results: dict[str, tuple[CaseResult, CaseResult | None]] = {}
        self._submitted_groups: set[str] = set()
        self._groups: dict[str, list[GoldenItem]] | None = None
        self._progress: Progress | bool | None = None  # False: no progress line this run
        self._status_client: RunnerClient | None = None  # the xdist controller's, for it
        self._started = time.monotonic()  # the progress line's ETA counts from here
        self._budget_said = False

    # -- start-up ----------------------------------------------------------------------------

    def start(self, *, run_cases: bool) -> None:
        """Resolve the plan, start the server and the runner, connect to it.

        ``run_cases`` is False on an xdist controller, whose workers run the cases.
        """
        config = self.config
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        try:
            self.plan = resolve_plan(
                self.plan.settings,
                root=config.rootpath,
                pyproject=pyproject_path(config),
                worker=workerinput,
                dist=config.getoption("dist", "no"),
                collect_only=config.option.collectonly,
                start_server=self._start_server,
                started_at=self.plan.started_at,
            )
        except PlanError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.gathered = Gatherer(self.plan)
        for warning in self.plan.setting_warnings:
            self._warn_about_setting(warning.option, warning.message)
        if self.plan.prompts is None:
            return  # nothing will call a model: no runner process, no SDK import
        from pytest_llmregress.engine.runner_process import RunnerAddress, RunnerProcess

        if workerinput is not None:
            given = workerinput.get(WORKER_RUNNER)
            if given is None:
                return
            address = RunnerAddress(*given)
        else:  # last: nothing after this can fail before the session owns the process
            self.runner_process = RunnerProcess(self.plan.runner_config())
            address = self.runner_process.address
        if not run_cases:
            return  # the xdist controller: its workers run the cases
        report_path = self.plan.report_path
        if report_path and self.plan.candidate is not None:
            name = workerinput["workerid"] if workerinput is not None else "main"
            self.journal = ResultsJournal(report_path, name, self.plan.metadata())
        self._connect(address)

    def _start_server(self, scenario: Path) -> str:
        """``--llm-serve``: the local provider server, owned (and stopped) by this session."""
        from pytest_llmregress.testing.server import LocalProviderServer

        self.server = LocalProviderServer(scenario).start()
        return self.server.url

    def _connect(self, address: RunnerAddress) -> None:
        """The one place this process connects to the runner process."""
        from pytest_llmregress.engine.runner_process import RunnerClient

        on_result = self.journal.add if self.journal is not None else None
        self.runner = RunnerClient(
            address, on_result=on_result, finish=finish_with_team_scorers(self.scorers)
        )

    def _warn_about_setting(self, option: str, message: str) -> None:
        """A warning located where the user set ``option`` (their config), not in our code."""
        source = self.plan.settings.sources.get(option, "default")
        where, line = "pytest-llmregress defaults", 0
        if source == "cli":
            where = f"pytest command line (--llm-{option.replace('_', '-')})"
        elif source in ("ini", "pyproject") and self.config.inipath is not None:
            where = str(self.config.inipath)
            key = option if source == "pyproject" else f"llm_{option}"
            with open(where, encoding="utf-8") as handle:
                line = next(
                    (n for n, text in enumerate(handle, 1) if text.lstrip().startswith(key)), 0
                )
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always", LLMRegressWarning)
            warnings.warn_explicit(LLMRegressWarning(message), LLMRegressWarning, where, line)
        for record in records:
            self.config.hook.pytest_warning_recorded.call_historic(
                kwargs={
                    "warning_message": record,
                    "when": "config",
                    "nodeid": "",
                    "location": (where, line, "<config>"),
                }
            )

    def configure_worker(self, workerinput: dict[str, Any]) -> None:
        """Called on the controller for each xdist worker it starts."""
        if self.server is not None:
            workerinput[WORKER_SERVER_URL] = self.server.url
        if self.runner_process is not None:
            address = self.runner_process.address
            workerinput[WORKER_RUNNER] = [address.socket_path, address.log_path]
        workerinput[WORKER_DIST] = self.config.getoption("dist", "no")

    def expect(self, nodeids: Sequence[str]) -> None:
        """Record the golden cases this run should produce (the controller's denominator).

        On an xdist controller this is the first moment it knows that golden cases will run,
        so a missing API key stops the session here.
        """
        expected = self.gathered.expect(nodeids)
        plan = self.plan
        collecting_only = self.config.option.collectonly
        if plan.key_problem and plan.candidate is not None and expected and not collecting_only:
            raise pytest.UsageError(plan.key_problem)
        distributing = self.config.pluginmanager.has_plugin("dsession")
        if (
            distributing
            and expected
            and plan.settings.max_cost is not None
            and not self._budget_said
        ):
            self._budget_said = True  # every worker collects the same cases: said once
            self._say_budget(self._expected_cases())

    def before_run(self, session: pytest.Session) -> None:
        """Just before the first test runs: the preflight verdict, and golden collect errors.

        The runner process checked each distinct model once while pytest collected (instead
        of N identical 404s later); here the session waits for its answer.
        """
        from pytest_llmregress.engine.runner_process import RunnerError

        distributing = session.config.pluginmanager.has_plugin("dsession")
        calls = not session.config.option.collectonly and self._calls_models(session)
        if self.plan.key_problem and not distributing and calls:
            raise pytest.UsageError(self.plan.key_problem)  # (under xdist: ``expect``)
        if (
            self.runner_process is not None
            and not self.is_worker
            and not self._calls_models(session)
        ):
            self._stop_runner()  # e.g. unit tests only: no wait for a runner nobody needs
        if self.runner_process is not None:
            try:
                problems = self.runner_process.preflight_problems()
            except RunnerError as exc:
                pytest.exit(f"pytest-llmregress: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
            refusal = self.gathered.note_preflight(problems)
            if refusal:
                raise pytest.UsageError(refusal)
        if self.gathered.only_golden_files_broken:
            # A malformed golden file fails the session, but the other files still run.
            session.config.option.continue_on_collection_errors = True
        distributing = session.config.pluginmanager.has_plugin("dsession")
        if self.plan.settings.max_cost is not None and not self.is_worker and not distributing:
            from pytest_llmregress.collect.items import GoldenItem

            self._say_budget([i.case for i in session.items if isinstance(i, GoldenItem)])

    def _say_budget(self, cases: Sequence[GoldenCase]) -> None:
        """``--llm-max-cost``: before the first call, what the selected cases may cost (an
        xdist controller, which collects nothing, reads them from their files)."""
        from pytest_llmregress.engine.budget import estimate

        plan, settings = self.plan, self.plan.settings
        prices = plan.batch_prices if settings.batch else plan.prices
        answering = [prices[str(ref)] for ref in (plan.candidate, plan.compare) if ref]
        judges = [prices[str(ref)] for ref in plan.judges]
        bound = estimate(
            (
                (
                    "\n".join(filter(None, [c.system, *(m.content for m in c.messages)])),
                    c.reference or "",
                    c.params.get("max_tokens") or settings.params.get("max_tokens"),
                    any(spec.name == "judge" for spec in c.scorers),
                )
                for c in cases
            ),
            answering=answering,
            judges=judges,
            repeat=settings.repeat,
            judge_repeat=settings.judge_repeat,
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"llmregress: budget ${settings.max_cost:.2f} (--llm-max-cost); the "
                f"{len(cases)} selected cases cost at most about ${bound:.2f} if every answer "
                "is as long as its max_tokens allows"
            )

    def _expected_cases(self) -> list[GoldenCase]:
        """The golden cases of the selected node ids, read from their files."""
        from pytest_llmregress.cases.golden import CaseFileError, load_cases

        by_file: dict[str, set[str]] = {}
        for nodeid in self.gathered.expected:
            path, _, case_id = nodeid.partition("::")
            by_file.setdefault(path, set()).add(case_id)
        found: list[GoldenCase] = []
        for path, ids in by_file.items():
            try:
                found += [c for c in load_cases(self.plan.root / path) if c.id in ids]
            except (CaseFileError, OSError):
                continue  # its collection error is reported already
        return found

    @staticmethod
    def _calls_models(session: pytest.Session) -> bool:
        """Whether a selected test may call a model: a golden case, or a test using a fixture
        that calls one. Unknown on an xdist controller (it collects nothing): True."""
        from pytest_llmregress.collect.items import GoldenItem

        if session.config.pluginmanager.has_plugin("dsession"):
            return True
        model_fixtures = {"llm", "llm_judge", "snapshot"}
        return any(
            isinstance(item, GoldenItem) or model_fixtures & set(getattr(item, "fixturenames", ()))
            for item in session.items
        )

    # -- running -----------------------------------------------------------------------------

    def _group_items(self, item: GoldenItem) -> list[GoldenItem]:
        """The cases to start together with ``item``.

        Without xdist this process runs all of its golden items, so all start at once. Under
        ``--dist load`` a worker runs whole work units (``collect/scheduling.py``), so it
        starts ``item``'s unit. Under every other mode a worker cannot know which cases it will
        be given (``loadfile``, ``loadscope``, ``loadgroup``, ``worksteal``), so it starts them
        all: the runner process runs each case once, whoever asks (``runner_process.CaseBoard``).
        ``--dist each`` is refused at start-up (``plan.dist_problem``).
        """
        from pytest_llmregress.collect.items import GoldenItem

        if self._groups is None:
            golden = [i for i in item.session.items if isinstance(i, GoldenItem)]
            workerinput = getattr(self.config, "workerinput", {})
            if workerinput.get(WORKER_DIST) == "load":
                count = int(workerinput["workercount"])
                scopes = self.plan.scope_of([i.nodeid for i in item.session.items], count)
                self._groups = {}
                for other in golden:
                    self._groups.setdefault(scopes.get(other.nodeid, other.nodeid), []).append(
                        other
                    )
            else:
                self._groups = {"all": golden}
        for name, members in self._groups.items():
            if name not in self._submitted_groups and any(m is item for m in members):
                self._submitted_groups.add(name)
                return members
        return [item]

    def run_item(self, item: GoldenItem) -> CaseRun:
        """Start ``item``'s group if needed, then wait for ``item``'s own result.

        A case the resumed results file already has is not called again. A runner process
        that stopped makes the case an error, like any call that could not be made.
        """
        from pytest_llmregress.engine.runner import case_error
        from pytest_llmregress.engine.runner_process import RunnerError

        assert self.runner is not None
        resumed = self.plan.resumed.get(item.nodeid)
        if resumed is not None:
            if self.journal is not None:
                self.journal.add(*resumed)
            return resumed
        assert self.plan.prompts is not None  # resolved whenever a runner is connected
        systems = self.plan.prompts.systems
        try:
            self.runner.submit(
                (
                    (member.nodeid, member.case)
                    for member in self._group_items(item)
                    if member.nodeid not in self.plan.resumed
                ),
                systems,
            )
            if not self.plan.settings.batch:
                return self.runner.result(item.nodeid, item.case, systems)
            # A batch takes minutes to hours, and nothing is reported meanwhile: the progress
            # line says how far the batches are while the first case waits.
            return self.runner.result(
                item.nodeid, item.case, systems, while_waiting=self._tick_progress
            )
        except RunnerError as exc:
            return case_error(item.nodeid, item.case, str(exc), "runner"), None

    def judge_sync(
        self,
        output: str,
        reference: str,
        *,
        threshold: float = 0.85,
        task: str = "",
        rubric: str | list[dict[str, Any]] | None = None,
    ) -> Score:
        """Score ``output`` against ``reference`` with the judge (the ``llm_judge`` fixture);
        ``rubric`` as a golden file writes it (a ``ValueError`` names what is wrong)."""
        from pytest_llmregress.cases.golden import parse_rubric

        criteria = parse_rubric(rubric) if rubric is not None else ()
        if self.runner is None:
            raise RuntimeError("the judge runs in the processes that run tests")
        return self.runner.judge_sync(
            task=task, reference=reference, output=output, threshold=threshold, rubric=criteria
        )

    # -- gathering (controller) --------------------------------------------------------------

    def annotate_report(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Attach a golden item's result to its call report, to travel to the controller."""
        result: CaseResult | None = getattr(item, "case_result", None)
        if result is None:
            return
        baseline: CaseResult | None = getattr(item, "baseline_result", None)
        report.llmregress_outcome = result.outcome  # type: ignore[attr-defined]
        if not self.is_worker:
            # A lone process gathers the objects themselves: no dict on a report that pytest
            # keeps to the end (at 5,000 cases they were a tenth of the process's memory).
            self._own_results[report.nodeid] = (result, baseline)
        else:
            report.llmregress = result.to_dict()  # type: ignore[attr-defined]
            if baseline is not None:
                report.llmregress_baseline = baseline.to_dict()  # type: ignore[attr-defined]
        properties = junit_properties(result)
        # JUnit XML reads properties from the teardown report, which copies the item's.
        item.user_properties.extend(properties)
        report.user_properties.extend(properties)

    def gather_report(self, report: pytest.TestReport) -> None:
        """On the controller (or a lone process): keep each golden result as it arrives."""
        if self.is_worker:
            return
        if report.skipped:
            self.gathered.note_skipped(report.nodeid)
        if report.when != "call":
            return
        # A lone process holds the objects; xdist's reports carry them as dicts.
        own = self._own_results.pop(report.nodeid, None)
        if own is not None:
            result, compared = own
        else:
            data = getattr(report, "llmregress", None)
            if data is None:
                return
            result = CaseResult.from_dict(data)
            baseline = getattr(report, "llmregress_baseline", None)
            compared = CaseResult.from_dict(baseline) if baseline is not None else None
        self.gathered.add(result, compared, failed=report.failed)
        self._tick_progress()

    def _tick_progress(self) -> None:
        """The progress line (``progress.py``): in CI logs (no TTY) and under xdist, not
        with ``-q``."""
        if self._progress is None:
            self._progress = self._make_progress() or False
        if self._progress is False:
            return
        assert isinstance(self._progress, Progress)
        if not self._progress.due():  # cheap: most reports only look at the clock
            return
        results = self.gathered.results
        outcomes = [r.outcome for r in results]
        self._progress.tick(
            done=len(results),
            total=len(self.gathered.expected) or len(results),
            passed=outcomes.count("passed"),
            failed=outcomes.count("failed"),
            errors=outcomes.count("error"),
        )

    def _make_progress(self) -> Progress | None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() < 0 or self.plan.candidate is None:
            return None
        under_xdist = self.runner is None and self.runner_process is not None
        if reporter.isatty() and not under_xdist and not self.plan.settings.batch:
            return None  # pytest's own progress line says enough (not while batches run)

        def write(text: str) -> None:
            # On a line of progress dots: a line of its own (pytest's ensure_newline knows
            # only the file-name prefix it wrote itself).
            if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
                reporter.write("\n")
            reporter.write_line(text)

        return Progress(write=write, status=self._runner_status, started=self._started)

    def _runner_status(self) -> dict[str, Any] | None:
        """The runner's calls now; the xdist controller asks over a connection of its own."""
        if self.runner is not None:
            return self.runner.status()
        if self.runner_process is None:
            return None
        if self._status_client is None:
            from pytest_llmregress.engine.runner_process import RunnerClient

            self._status_client = RunnerClient(self.runner_process.address)
        return self._status_client.status()

    def note_collect_error(self, nodeid: str) -> None:
        self.gathered.note_collect_error(nodeid)

    # -- the end -----------------------------------------------------------------------------

    def conclude(self, session: pytest.Session) -> None:
        """Decide the exit status for golden cases (controller), write the outputs, close.

        Golden failures follow the gate; anything else that failed still fails the session.
        """
        if self.is_worker:
            self.close()
            return
        self.gathered.conclude()
        # A session finished by something other than pytest's main loop (pytest-xdist's
        # looponfail) has no exit status yet: nothing here decides one then.
        status = getattr(session, "exitstatus", None)
        settled = self.gathered.exit_status(status, session.testsfailed)
        if settled is not None and settled != status:
            session.exitstatus = pytest.ExitCode(settled)
        try:
            if self.plan.candidate is not None and self.gathered.results:
                # Before junitxml's own pytest_sessionfinish writes the file (ours is tryfirst).
                xml = session.config.stash.get(junit_xml_key, None)
                add_junit_session_properties(xml, self.plan, self.gathered)
                self.recorded = write_outputs(self.plan, self.gathered, os.environ)
        finally:
            self.close()
        if self.recorded.failed and getattr(session, "exitstatus", None) == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def close(self) -> None:
        """Stop what this process started and close what it holds; safe to call again."""
        self._stop_runner()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _stop_runner(self) -> None:
        """Disconnect from the runner process and stop it (if this process started it); note
        what it said at its end."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self._status_client is not None:
            self._status_client.close()
            self._status_client = None
        if self.runner_process is not None:
            self.runner_process.stop()
            for notice in self.runner_process.notices:  # a damaged cache file moved aside
                self._warn_about_setting("cache_dir", notice)
            self.gathered.note_last_words(self.runner_process.last_words)
            self.runner_process = None
